"""What must hold of any exchange state, checked from the state itself.

Used by the chaos suite on live replicas (through the node, on its apply
thread) and by tests. A problem here means a bug or corruption, never bad input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.codes import CALL_PHASES
from engine.state import buy_cost

if TYPE_CHECKING:
    from engine.exchange import Exchange

BUY = 0
PROBLEMS_MAX = 20


class InvariantBroken(AssertionError):
    """Checked mode found the state wrong after a command: a bug, never bad input."""


def invariant_problems(ex: Exchange) -> list[str]:
    """Holds equal open exposure, no negative balance, levels add up, no crossed book."""
    problems: list[str] = []
    held: dict[tuple[str, str], int] = {}
    for order in ex.orders.values():
        inst = ex.instruments[order.symbol]
        if order.side == BUY:
            asset, need = inst.quote, buy_cost(order.leaves, order.price, order.hold_fee_bps)
        else:
            asset, need = inst.base, order.leaves
        if order.held != need:
            problems.append(f"order {order.order_id} holds {order.held}, its leaves need {need}")
        if order.leaves < 0 or order.leaves > order.qty:
            problems.append(f"order {order.order_id} has {order.leaves} left of {order.qty}")
        key = (order.account, asset)
        held[key] = held.get(key, 0) + need
    for account_id in sorted(ex.accounts):
        for asset, balance in sorted(ex.accounts[account_id].balances.items()):
            if balance.held != held.get((account_id, asset), 0):
                problems.append(
                    f"{account_id} {asset}: held {balance.held}, open orders need "
                    f"{held.get((account_id, asset), 0)}"
                )
            if balance.available < 0 or balance.held < 0:
                problems.append(f"{account_id} {asset}: negative balance")
    for symbol in sorted(ex.instruments):
        inst = ex.instruments[symbol]
        for book in (inst.bids, inst.asks):
            for level in book.values():
                visible = sum(order.visible for order in level.orders.values())
                if level.qty != visible:
                    problems.append(f"{symbol} level {level.price}: qty {level.qty} != {visible}")
        best_bid, best_ask = ex.best_bid_ask(symbol)
        calling = inst.phase in CALL_PHASES  # orders gather crossed until the uncross
        if best_bid and best_ask and best_bid >= best_ask and not calling:
            problems.append(f"{symbol} is crossed: bid {best_bid} >= ask {best_ask}")
    return problems[:PROBLEMS_MAX]


def asset_totals(ex: Exchange) -> dict[str, int]:
    """Each asset summed over every account (available plus held), fee account included:
    what deposits minus withdrawals must equal."""
    totals: dict[str, int] = {}
    for account in ex.accounts.values():
        for asset, balance in account.balances.items():
            totals[asset] = totals.get(asset, 0) + balance.available + balance.held
    return dict(sorted(totals.items()))
