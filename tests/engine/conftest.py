"""An exchange with one instrument and three funded traders, and small helpers to read events.

Setup happens at log time T0; helpers apply commands at ts 0, which the engine
reads as "now" (time only moves forward), so a story moves the clock only when
it says so.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from engine import Exchange, Side
from engine.commands import (
    AddInstrument,
    Command,
    CreateAccount,
    Deposit,
    PlaceOrder,
)
from engine.events import (
    Accepted,
    BalanceChanged,
    Event,
    LevelChanged,
    Rejected,
)
from engine.invariants import invariant_problems

SYMBOL = "ACME"
BASE = "ACME"
QUOTE = "USD"
ALICE = "alice"
BOB = "bob"
CAROL = "carol"
TRADERS = (ALICE, BOB, CAROL)
CASH = 1_000_000
SHARES = 1_000
REFERENCE_PRICE = 100
# 2023-11-14T22:13:20Z: the next UTC midnight is 6_400_000 ms away.
T0 = 1_700_000_000_000
DAY_MS = 86_400_000
NEXT_MIDNIGHT_MS = (T0 // DAY_MS + 1) * DAY_MS
HALT_PAUSE_MS = 60_000

BUY = Side.BUY
SELL = Side.SELL

INSTRUMENT_DEFAULTS: dict[str, int] = {
    "tick_size": 1,
    "lot_size": 1,
    "min_qty": 1,
    "max_qty": 10_000,
    "max_notional": 10_000_000,
    "price_band_bps": 1_000,
    "maker_fee_bps": 0,
    "taker_fee_bps": 0,
    "reference_price": REFERENCE_PRICE,
    "halt_pause_ms": HALT_PAUSE_MS,
}

E = TypeVar("E")


def make_exchange(open_orders_per_account_max: int = 1_000, **instrument: int) -> Exchange:
    """ACME/USD (band 10% around 100, no fees unless asked) and three traders with
    CASH dollars and SHARES shares each, all at log time T0."""
    ex = Exchange(open_orders_per_account_max=open_orders_per_account_max, checked=True)
    setup: list[Command] = [
        AddInstrument(SYMBOL, BASE, QUOTE, **{**INSTRUMENT_DEFAULTS, **instrument})
    ]
    for trader in TRADERS:
        setup += [
            CreateAccount(trader),
            Deposit(trader, QUOTE, CASH),
            Deposit(trader, BASE, SHARES),
        ]
    for command in setup:
        events = ex.apply(command, T0)
        assert not of_type(events, Rejected), events
    return ex


@pytest.fixture
def ex() -> Exchange:
    return make_exchange()


def place(
    ex: Exchange, account: str, side: Side, qty: int, price: int = 0, ts_ms: int = 0, **fields: Any
) -> list[Event]:
    """Applies a PlaceOrder for ACME; `fields` are any other PlaceOrder fields."""
    return ex.apply(PlaceOrder(account, SYMBOL, side, qty, price, **fields), ts_ms)


def rest(ex: Exchange, account: str, side: Side, qty: int, price: int, **fields: Any) -> int:
    """Places an order that must be accepted and stay open; returns its order id."""
    events = place(ex, account, side, qty, price, **fields)
    order_id = one(events, Accepted).order_id
    assert order_id in ex.orders, events
    return order_id


def of_type(events: list[Event], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


def one(events: list[Event], kind: type[E]) -> E:
    found = of_type(events, kind)
    assert len(found) == 1, f"expected one {kind.__name__} in {events}"
    return found[0]


def core(events: list[Event]) -> list[Event]:
    """The events that tell the story: everything but the balance and level views."""
    return [event for event in events if not isinstance(event, BalanceChanged | LevelChanged)]


def balance_views(events: list[Event]) -> dict[tuple[str, str], tuple[int, int]]:
    """(account, asset) -> (available, held) from BalanceChanged; at most one per balance."""
    views = of_type(events, BalanceChanged)
    keyed = {(view.account, view.asset): (view.available, view.held) for view in views}
    assert len(keyed) == len(views), f"a balance changed twice in one command: {views}"
    return keyed


def level_views(events: list[Event]) -> dict[tuple[int, int], tuple[int, int]]:
    """(side, price) -> (qty, orders) from LevelChanged; at most one per level."""
    views = of_type(events, LevelChanged)
    keyed = {(view.side, view.price): (view.qty, view.orders) for view in views}
    assert len(keyed) == len(views), f"a level changed twice in one command: {views}"
    return keyed


def rejected(events: list[Event], code: str) -> Rejected:
    """The command was rejected with `code` and emitted nothing else."""
    assert len(events) == 1 and isinstance(events[0], Rejected), events
    assert events[0].code == code, events[0]
    return events[0]


def apply_rejected(ex: Exchange, command: Command, code: str, ts_ms: int = 0) -> Rejected:
    """Applies a command that must be rejected with `code` and change nothing but one seq.

    Only for commands without a client or request id (those remember their outcome).
    """
    expected = Exchange.restore(ex.snapshot())
    expected.state.seq += 1
    expected.state.now_ms = max(expected.now_ms, ts_ms)
    event = rejected(ex.apply(command, ts_ms), code)
    assert event.seq == expected.seq
    assert ex.state_hash() == expected.state_hash(), "a rejected command changed the state"
    return event


def total(ex: Exchange, asset: str) -> int:
    """All of one asset in the exchange, available plus held, fee account included."""
    return sum(sum(ex.balance(account, asset)) for account in ex.accounts)


def assert_holds_exact(ex: Exchange) -> None:
    """Every open order holds exactly what its leaves can cost, balances hold the sum, no
    balance is negative (and levels add up, and no book is crossed)."""
    problems = invariant_problems(ex)
    assert not problems, problems
