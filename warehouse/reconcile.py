"""`raftex warehouse check`: the warehouse against the history it was built from.

A second, independent pass over the source's events counts every trade and its quantity
per symbol, takes every account's last balance of every asset, and counts the events each
fact table has one row for (acceptances, amends, cancels and expiries in order_events,
two executions per trade, balance changes, transfers); the warehouse must answer the same
from its Parquet files up to the sequence it has reached. A missing or damaged partition,
a row written twice or lost, shows here.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.events import (
    Accepted,
    Amended,
    AssetAdded,
    BalanceChanged,
    Cancelled,
    Expired,
    InstrumentChanged,
    Trade,
    Transferred,
)
from warehouse.build import load_builder
from warehouse.query import connect
from warehouse.source import EventSource, events_upto

# The rows a fact table has per event of a kind: name -> the table (and filter) to count.
ROW_COUNTS = {
    "accepted": "order_events WHERE event = 'accepted'",
    "amended": "order_events WHERE event = 'amended'",
    "cancelled": "order_events WHERE event = 'cancelled'",
    "expired": "order_events WHERE event = 'expired'",
    "executions": "executions",
    "balance_changes": "balance_changes",
    "transfers": "transfers",
}
_ROWS_OF = {
    Accepted: "accepted",
    Amended: "amended",
    Cancelled: "cancelled",
    Expired: "expired",
    Trade: "executions",
    BalanceChanged: "balance_changes",
    Transferred: "transfers",
}


def reconcile(source: EventSource, warehouse: Path) -> dict[str, Any]:
    last_seq = load_builder(warehouse).last_seq
    decimals: dict[str, int] = {}
    base_of: dict[str, str] = {}
    trades: dict[str, list[Any]] = {}
    balances: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    rows: dict[str, int] = dict.fromkeys(ROW_COUNTS, 0)
    for event in events_upto(source, last_seq):
        counted = _ROWS_OF.get(type(event))
        if counted is not None:
            rows[counted] += 2 if counted == "executions" else 1
        if isinstance(event, AssetAdded):
            decimals[event.asset] = event.decimals
        elif isinstance(event, InstrumentChanged):
            base_of[event.symbol] = event.base
        elif isinstance(event, Trade):
            row = trades.setdefault(event.symbol, [0, 0])
            row[0] += 1
            row[1] += event.qty
        elif isinstance(event, BalanceChanged):
            scale = decimals.get(event.asset, 0)
            balances[(event.account, event.asset)] = (
                Decimal(event.available).scaleb(-scale),
                Decimal(event.held).scaleb(-scale),
            )
    expected_trades = {
        symbol: (count, Decimal(qty).scaleb(-decimals.get(base_of.get(symbol, ""), 0)))
        for symbol, (count, qty) in trades.items()
    }
    con = connect(warehouse)
    try:
        found_trades = {
            symbol: (count, qty)
            for symbol, count, qty in con.execute(
                "SELECT symbol, count(*), sum(qty) FROM trades GROUP BY symbol"
            ).fetchall()
        }
        found_balances = {
            (account, asset): (available, held)
            for account, asset, available, held in con.execute(
                "SELECT account, asset, arg_max(available, seq), arg_max(held, seq) "
                "FROM balance_changes GROUP BY account, asset"
            ).fetchall()
        }
        found_rows = {
            name: con.execute(f"SELECT count(*) FROM {sql}").fetchone()[0]
            for name, sql in ROW_COUNTS.items()
        }
    finally:
        con.close()
    problems = [
        f"{name}: the history has {rows[name]} rows' worth, the warehouse {found_rows[name]}"
        for name in ROW_COUNTS
        if rows[name] != found_rows[name]
    ]
    problems += [
        f"trades of {symbol}: the history has {expected_trades.get(symbol)}, the warehouse "
        f"{found_trades.get(symbol)} (count, quantity)"
        for symbol in sorted(set(expected_trades) | set(found_trades))
        if expected_trades.get(symbol) != found_trades.get(symbol)
    ]
    problems += [
        f"balance of {account} in {asset}: the history has {balances.get((account, asset))},"
        f" the warehouse {found_balances.get((account, asset))} (available, held)"
        for account, asset in sorted(set(balances) | set(found_balances))
        if balances.get((account, asset)) != found_balances.get((account, asset))
    ]
    return {
        "ok": not problems,
        "last_seq": last_seq,
        "trades": sum(count for count, _ in expected_trades.values()),
        "balances": len(balances),
        "problems": problems[:100],
    }
