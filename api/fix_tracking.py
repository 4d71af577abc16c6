"""An account's orders as its FIX ExecutionReports describe them, folded from the events.

Every ExecutionReport carries the order's ClOrdID, CumQty, LeavesQty and AvgPx;
the engine's events carry only the change (a Trade names order ids and what is
left). The acceptor folds the events of each account that has a FIX session into
one `TrackedOrder` per open order and turns each event into an `Execution`: what
one report says, in engine units. Statuses are engine.order_status's (decided
once); this module maps them to FIX's codes. No quickfix import: pure data.

A FIX replace gives an order a new ClOrdID, which the engine never sees (it
keeps the client order id the order was placed with): the aliases live here,
on the node the session is on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine.codes import CancelReason, OrderType, RejectCode, Side
from engine.commands import PlaceOrder
from engine.events import Accepted, Amended, Cancelled, Event, Expired, Trade, Triggered
from engine.order_status import OPEN_STATUSES, OrderStatus, next_status

# ExecType(150) values of FIX 4.4.
EXEC_NEW = "0"
EXEC_CANCELED = "4"
EXEC_REPLACED = "5"
EXEC_REJECTED = "8"
EXEC_EXPIRED = "C"
EXEC_RESTATED = "D"
EXEC_TRADE = "F"
EXEC_ORDER_STATUS = "I"
# OrdStatus(39) for a refused order.
ORD_STATUS_REJECTED = "8"
FIX_ORD_STATUS = {
    # FIX 4.4 has no status for a stop order waiting for its trigger: it is New.
    OrderStatus.ARMED: "0",
    OrderStatus.OPEN: "0",
    OrderStatus.PARTIALLY_FILLED: "1",
    OrderStatus.FILLED: "2",
    OrderStatus.CANCELLED: "4",
    OrderStatus.EXPIRED: "C",
}
# OrdRejReason(103) for the engine's reject codes; any other is 99 (other).
ORD_REJ_REASONS = {
    RejectCode.UNKNOWN_SYMBOL: 1,
    RejectCode.HALTED: 2,
    RejectCode.MARKET_CLOSED: 2,
    RejectCode.WRONG_PHASE: 2,
    RejectCode.INSUFFICIENT_FUNDS: 3,
    RejectCode.INSUFFICIENT_SHARES: 3,
    RejectCode.NOTIONAL_TOO_LARGE: 3,
    RejectCode.QTY_TOO_LARGE: 3,
    RejectCode.TOO_MANY_OPEN_ORDERS: 3,
    RejectCode.RATE_LIMITED: 3,
    RejectCode.PRICE_OUT_OF_BAND: 3,
    RejectCode.UNKNOWN_ORDER: 5,
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: 6,
    RejectCode.LOT_SIZE: 13,
    RejectCode.QTY_TOO_SMALL: 13,
    RejectCode.UNKNOWN_ACCOUNT: 15,
}
ORD_REJ_OTHER = 99
ORD_REJ_UNKNOWN_ORDER = 5
# CxlRejReason(102) for the engine's reject codes of a cancel or amend.
CXL_REJ_REASONS = {
    RejectCode.ORDER_NOT_OPEN: 0,
    RejectCode.UNKNOWN_ORDER: 1,
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: 6,
}
CXL_REJ_OTHER = 99


@dataclass(slots=True)
class TrackedOrder:
    """One open order of the account, in engine units; `qty` is its total as the engine
    sees it (filled + leaves). An order the engine never accepted has order_id 0 (its
    reports say OrderID NONE)."""

    order_id: int
    symbol: str
    side: int
    order_type: int
    tif: int
    price: int
    stop_price: int
    qty: int
    cum_qty: int
    leaves: int
    # Sum of price * qty over its fills (quote minor units): AvgPx is notional / cum_qty.
    notional: int
    # The ClOrdID that names it now (a replace moves it) and the one before.
    cl_ord_id: str
    orig_cl_ord_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Execution:
    """What one ExecutionReport says, in engine units (rendered by api/fix_reports.py)."""

    exec_id: str
    exec_type: str
    ord_status: str
    # The order as this report tells it: a copy, as the tracked one moves on.
    order: TrackedOrder
    transact_ms: int
    last_px: int = 0
    last_qty: int = 0
    text: str = ""
    ord_rej_reason: int = -1


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A cancel or replace request on its way through the log: its report, when the
    event comes, names the request's ClOrdID and the one it replaces."""

    cl_ord_id: str
    orig_cl_ord_id: str


def execution_of(
    order: TrackedOrder, exec_id: str, exec_type: str, transact_ms: int, **extra: Any
) -> Execution:
    status = FIX_ORD_STATUS[OrderStatus(order.status)]
    return Execution(exec_id, exec_type, status, replace(order), transact_ms, **extra)


def order_from_record(record: dict[str, Any]) -> TrackedOrder:
    """A TrackedOrder from the history projection's order record (projection/history.py)."""
    return TrackedOrder(
        order_id=record["order_id"],
        symbol=record["symbol"],
        side=record["side"],
        order_type=record["order_type"],
        tif=record["tif"],
        price=record["price"],
        stop_price=record["stop_price"],
        qty=record["qty"],
        cum_qty=record["filled_qty"],
        leaves=record["leaves"],
        notional=record["notional"],
        cl_ord_id=record["client_order_id"],
        orig_cl_ord_id="",
        status=record["status"],
    )


class AccountOrders:
    """The open orders of one account, and the cancel and replace requests under way.

    Bounded by the engine: an account holds at most its open-order limit, and an order
    is forgotten with its final report.
    """

    def __init__(self, account: str) -> None:
        self.account = account
        self.orders: dict[int, TrackedOrder] = {}
        self.by_cl_ord_id: dict[str, int] = {}
        self.pending: dict[int, PendingChange] = {}

    def find(self, cl_ord_id: str, order_id: int = 0) -> TrackedOrder | None:
        """The open order named by OrderID (when given) or by any of its ClOrdIDs."""
        if order_id:
            return self.orders.get(order_id)
        found = self.by_cl_ord_id.get(cl_ord_id)
        return self.orders.get(found) if found is not None else None

    def seed(self, record: dict[str, Any]) -> None:
        """An order opened before this account was followed (read from the projection);
        an order the events already brought is newer and stays."""
        if record["order_id"] not in self.orders and record["status"] in OPEN_STATUSES:
            self._add(order_from_record(record))

    def expect_change(self, order_id: int, change: PendingChange) -> None:
        self.pending[order_id] = change

    def drop_change(self, order_id: int) -> None:
        self.pending.pop(order_id, None)

    def on_event(self, event: Event) -> list[Execution]:
        """The reports one event makes for this account (a trade between two of its orders
        makes two)."""
        kind = type(event)
        if kind is Accepted:
            return self._accepted(event)
        if kind is Trade:
            out = []
            if event.maker_account == self.account:
                out += self._fill(event, event.maker_order_id, event.maker_leaves)
            if event.taker_account == self.account:
                out += self._fill(event, event.taker_order_id, event.taker_leaves)
            return out
        if kind is Cancelled:
            return self._cancelled(event)
        if kind is Expired:
            return self._closed(event, event.order_id, EXEC_EXPIRED)
        if kind is Amended:
            return self._amended(event)
        if kind is Triggered:
            order = self.orders.get(event.order_id)
            if order is None:
                return []
            order.status = next_status(order.status, event, order.order_id)
            return [
                execution_of(
                    order,
                    _exec_id(event.seq, order.order_id),
                    EXEC_RESTATED,
                    event.ts_ms,
                    text="stop order triggered",
                )
            ]
        return []

    def _add(self, order: TrackedOrder) -> None:
        self.orders[order.order_id] = order
        self.by_cl_ord_id[order.cl_ord_id] = order.order_id

    def _forget(self, order: TrackedOrder) -> None:
        self.orders.pop(order.order_id, None)
        self.pending.pop(order.order_id, None)
        for name in (order.cl_ord_id, order.orig_cl_ord_id):
            if self.by_cl_ord_id.get(name) == order.order_id:
                del self.by_cl_ord_id[name]

    def _accepted(self, e: Accepted) -> list[Execution]:
        if e.order_id in self.orders:
            return []
        order = TrackedOrder(
            order_id=e.order_id,
            symbol=e.symbol,
            side=e.side,
            order_type=e.order_type,
            tif=e.tif,
            price=e.price,
            stop_price=e.stop_price,
            qty=e.qty,
            cum_qty=0,
            leaves=e.qty,
            notional=0,
            cl_ord_id=e.client_order_id,
            orig_cl_ord_id="",
            status=next_status("", e, e.order_id),
        )
        self._add(order)
        return [execution_of(order, _exec_id(e.seq, e.order_id), EXEC_NEW, e.ts_ms)]

    def _order(self, order_id: int, symbol: str, side: int, price: int) -> TrackedOrder:
        """The tracked order, or (an order this node saw open before it followed the
        account) one made of what the event tells."""
        order = self.orders.get(order_id)
        if order is None:
            order = TrackedOrder(
                order_id, symbol, side, OrderType.LIMIT, 0, price, 0, 0, 0, 0, 0, "", "", "open"
            )
            self._add(order)
        return order

    def _fill(self, e: Trade, order_id: int, leaves: int) -> list[Execution]:
        side = e.aggressor_side if order_id == e.taker_order_id else 1 - e.aggressor_side
        order = self._order(order_id, e.symbol, side, e.price)
        order.cum_qty += e.qty
        order.notional += e.price * e.qty
        order.leaves = leaves
        # OrderQty stays what was ordered (an order this node saw only now: what it knows).
        order.qty = max(order.qty, order.cum_qty + leaves)
        order.status = next_status(order.status, e, order_id)
        report = execution_of(
            order,
            _exec_id(e.seq, order_id),
            EXEC_TRADE,
            e.ts_ms,
            last_px=e.price,
            last_qty=e.qty,
        )
        if not leaves:
            self._forget(order)
        return [report]

    def _cancelled(self, e: Cancelled) -> list[Execution]:
        order = self._order(e.order_id, e.symbol, e.side, e.price)
        # A cancel that leaves the order open (self-trade decrement) lowers its quantity; a
        # full cancel leaves OrderQty as ordered, with nothing left.
        order.qty = order.cum_qty + e.leaves if e.leaves else max(order.qty, order.cum_qty + e.qty)
        order.leaves = e.leaves
        order.status = next_status(order.status, e, e.order_id)
        change = self.pending.pop(e.order_id, None) if e.reason == CancelReason.USER else None
        if change is not None:
            order.cl_ord_id, order.orig_cl_ord_id = change.cl_ord_id, change.orig_cl_ord_id
        exec_type = EXEC_CANCELED if not e.leaves else EXEC_RESTATED
        text = "" if e.reason == CancelReason.USER else f"cancelled: {e.reason}"
        report = execution_of(order, _exec_id(e.seq, e.order_id), exec_type, e.ts_ms, text=text)
        if not e.leaves:
            self._forget(order)
        return [report]

    def _closed(self, e: Expired, order_id: int, exec_type: str) -> list[Execution]:
        order = self._order(order_id, e.symbol, e.side, e.price)
        order.qty = max(order.qty, order.cum_qty + e.qty)
        order.leaves = 0
        order.status = next_status(order.status, e, order_id)
        report = execution_of(order, _exec_id(e.seq, order_id), exec_type, e.ts_ms)
        self._forget(order)
        return [report]

    def _amended(self, e: Amended) -> list[Execution]:
        order = self._order(e.order_id, e.symbol, e.side, e.price)
        order.price = e.price
        order.qty = e.qty
        order.leaves = e.leaves
        change = self.pending.pop(e.order_id, None)
        if change is not None:
            order.orig_cl_ord_id = change.orig_cl_ord_id
            order.cl_ord_id = change.cl_ord_id
            self.by_cl_ord_id[change.cl_ord_id] = e.order_id
        return [execution_of(order, _exec_id(e.seq, e.order_id), EXEC_REPLACED, e.ts_ms)]


def _exec_id(seq: int, order_id: int) -> str:
    """The engine's seq makes it the same report on every node: a client that moves to
    another node after a failover recognises what it already has."""
    return f"{seq}-{order_id}"


def rejected_order(
    exec_id: str,
    cl_ord_id: str,
    command: PlaceOrder | None,
    text: str,
    reason: int,
    transact_ms: int,
    symbol: str = "",
    side: int = Side.BUY,
) -> Execution:
    """The ExecutionReport of an order refused, by the engine (`command` is what it
    refused) or at the edge (no command: `symbol` and `side` as the client sent them)."""
    order = TrackedOrder(
        order_id=0,
        symbol=command.symbol if command else symbol,
        side=command.side if command else side,
        order_type=command.order_type if command else -1,
        tif=command.tif if command else -1,
        price=command.price if command else 0,
        stop_price=command.stop_price if command else 0,
        qty=command.qty if command else 0,
        cum_qty=0,
        leaves=0,
        notional=0,
        cl_ord_id=cl_ord_id,
        orig_cl_ord_id="",
        status="",
    )
    return Execution(
        exec_id,
        EXEC_REJECTED,
        ORD_STATUS_REJECTED,
        order,
        transact_ms,
        text=text,
        ord_rej_reason=reason,
    )


def status_report(order: TrackedOrder, exec_id: str, transact_ms: int) -> Execution:
    """An OrderStatusRequest's answer (ExecType I): the order as it stands."""
    return execution_of(order, exec_id, EXEC_ORDER_STATUS, transact_ms)


def unknown_status(
    exec_id: str, cl_ord_id: str, symbol: str, transact_ms: int, text: str
) -> Execution:
    """An OrderStatusRequest for no order of this account (`text` says why)."""
    report = rejected_order(
        exec_id, cl_ord_id, None, text, ORD_REJ_UNKNOWN_ORDER, transact_ms, symbol
    )
    return replace(report, exec_type=EXEC_ORDER_STATUS)
