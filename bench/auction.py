"""The cost of a call auction: 100,000 orders gathered in pre-open, then the uncross.

Half the orders cross the other side (the auction trades them at one price), half rest
away from it; each account's orders alternate sides so that self-trade prevention meets
some pairs. Timed: the indicative uncross as the feeds publish it after a change, and
the opening auction itself (the entry at the open: the uncross, its trades, holds and
fees settled, and the views of every touched balance and level).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from engine import Exchange
from engine.commands import (
    AddInstrument,
    CreateAccount,
    Deposit,
    PlaceOrder,
    SetCalendar,
    Tick,
)
from engine.events import Trade

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: 0 s into a 600 s session
SESSION_S = 600
OPEN_S = 60
ACCOUNTS = 2_000
REFERENCE = 10_000
SPREAD_TICKS = 200


@dataclass(frozen=True, slots=True)
class UncrossBench:
    orders: int
    indicative_ms: float
    uncross_ms: float
    uncross_us_per_order: float
    trades: int
    events: int
    price: int


def run_uncross_bench(orders: int, seed: int) -> UncrossBench:
    ex = Exchange()
    ex.apply(
        AddInstrument("ACME", "ACME", "USD", max_qty=10**6, max_notional=10**15,
                      price_band_bps=5_000, maker_fee_bps=1, taker_fee_bps=3,
                      reference_price=REFERENCE),
        START_MS,
    )  # fmt: skip
    ex.apply(SetCalendar("ACME", "UTC", 0, OPEN_S, 480, 540, 570, day_s=SESSION_S), START_MS)
    accounts = [f"a{n:05d}" for n in range(ACCOUNTS)]
    for account in accounts:
        ex.apply(CreateAccount(account), START_MS)
        ex.apply(Deposit(account, "USD", 10**13), START_MS)
        ex.apply(Deposit(account, "ACME", 10**9), START_MS)
    rng = random.Random(seed)
    for n in range(orders):
        side = n % 2
        crossing = rng.random() < 0.5
        offset = rng.randint(1, SPREAD_TICKS)
        # Buys above the reference and sells below it cross; the others rest away.
        price = REFERENCE + offset if (side == 0) == crossing else REFERENCE - offset
        command = PlaceOrder(accounts[n % ACCOUNTS], "ACME", side, rng.randint(1, 100), price)
        ex.apply(command, START_MS + 1)
    inst = ex.instruments["ACME"]
    started = time.perf_counter()
    result = ex.books.indicative(inst)
    indicative_s = time.perf_counter() - started
    started = time.perf_counter()
    events = ex.apply(Tick(), START_MS + OPEN_S * 1000)
    uncross_s = time.perf_counter() - started
    return UncrossBench(
        orders=orders,
        indicative_ms=round(indicative_s * 1000, 2),
        uncross_ms=round(uncross_s * 1000, 1),
        uncross_us_per_order=round(uncross_s * 1e6 / orders, 2),
        trades=sum(1 for e in events if type(e) is Trade),
        events=len(events),
        price=result.price,
    )
