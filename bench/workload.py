"""The standard seeded workload: the yardstick for every performance claim.

Generated entirely before timing from a seeded `random.Random`, so the same
seed gives the same command list on every machine. The mix follows the
engine benchmark's definition: about 70% passive limits near the touch, 8%
crossing limits, 5% market or IOC, 2% FOK or post-only, 15% cancels and
amends, over 1,000 accounts and 10 symbols.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cluster.market import Market
from engine.codes import OrderType, Side, TimeInForce
from engine.commands import (
    AddInstrument,
    AmendOrder,
    CancelOrder,
    Command,
    PlaceOrder,
)

QUOTE_ASSET = "USD"
MID_PRICE_START = 10_000
CASH_PER_ACCOUNT = 10**12
SHARES_PER_ACCOUNT = 10**9
LIVE_ORDERS_TRACKED_MAX = 50_000
COMMANDS_PER_MS = 10


@dataclass(frozen=True, slots=True)
class Workload:
    """The market it runs on, its set-up commands (the market's) and the measured commands."""

    market: Market
    setup: list[Command]
    commands: list[Command]


def symbols(count: int) -> list[str]:
    return [f"S{n:02d}" for n in range(count)]


def workload_market(accounts: list[str], symbol_names: list[str]) -> Market:
    return Market(
        quote=QUOTE_ASSET,
        quote_decimals=2,
        instruments=tuple(
            AddInstrument(
                symbol=symbol,
                base=symbol,
                quote=QUOTE_ASSET,
                tick_size=1,
                lot_size=1,
                max_qty=1_000_000,
                price_band_bps=2_000,
                maker_fee_bps=1,
                taker_fee_bps=3,
                reference_price=MID_PRICE_START,
            )
            for symbol in symbol_names
        ),
        accounts=tuple(accounts),
        cash=CASH_PER_ACCOUNT,
        shares=SHARES_PER_ACCOUNT,
    )


def standard_workload(
    commands: int, seed: int, account_count: int = 1_000, symbol_count: int = 10
) -> Workload:
    rng = random.Random(seed)
    accounts = [f"acct{n:04d}" for n in range(account_count)]
    names = symbols(symbol_count)
    mids = dict.fromkeys(names, MID_PRICE_START)
    live: list[tuple[str, str]] = []  # (account, client order id) of resting candidates
    out: list[Command] = []
    for n in range(commands):
        symbol = rng.choice(names)
        account = rng.choice(accounts)
        mid = mids[symbol]
        if rng.random() < 0.02:
            mids[symbol] = mid = max(100, mid + rng.choice((-1, 1)))
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        sign = -1 if side == Side.BUY else 1
        qty = rng.randint(1, 100)
        cid = f"c{n}"
        r = rng.random()
        if r < 0.70:
            price = mid + sign * rng.randint(1, 8)
            out.append(PlaceOrder(account, symbol, side, qty, price, client_order_id=cid))
            live.append((account, cid))
            if len(live) > LIVE_ORDERS_TRACKED_MAX:
                live.pop(rng.randrange(len(live)))
        elif r < 0.78:
            price = mid - sign * rng.randint(0, 3)
            out.append(PlaceOrder(account, symbol, side, qty, price, client_order_id=cid))
            live.append((account, cid))
        elif r < 0.83:
            if rng.random() < 0.5:
                order = PlaceOrder(
                    account,
                    symbol,
                    side,
                    qty,
                    order_type=OrderType.MARKET,
                    tif=TimeInForce.IOC,
                    client_order_id=cid,
                )
            else:
                price = mid - sign * rng.randint(0, 2)
                order = PlaceOrder(
                    account, symbol, side, qty, price, tif=TimeInForce.IOC, client_order_id=cid
                )
            out.append(order)
        elif r < 0.85:
            if rng.random() < 0.5:
                price = mid - sign * rng.randint(0, 2)
                order = PlaceOrder(
                    account, symbol, side, qty, price, tif=TimeInForce.FOK, client_order_id=cid
                )
            else:
                price = mid + sign * rng.randint(0, 3)
                order = PlaceOrder(
                    account, symbol, side, qty, price, post_only=True, client_order_id=cid
                )
                live.append((account, cid))
            out.append(order)
        elif live:
            owner, target = live.pop(rng.randrange(len(live)))
            if r < 0.95:
                out.append(CancelOrder(owner, client_order_id=target))
            else:
                out.append(AmendOrder(owner, client_order_id=target, qty=rng.randint(1, 50)))
                live.append((owner, target))
        else:
            out.append(PlaceOrder(account, symbol, side, qty, mid + sign, client_order_id=cid))
    market = workload_market(accounts, names)
    return Workload(market, market.commands(), out)
