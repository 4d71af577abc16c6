"""An order's status, decided once: from the events that concern it, by one function.

The history projection keeps it per order as events come; a write's answer
folds the events its command caused; both dialects (native and Binance) show
what this says, never a status of their own making.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from engine.codes import OrderType
from engine.events import Accepted, Cancelled, Event, Expired, Trade, Triggered


class OrderStatus(StrEnum):
    ARMED = "armed"  # a stop order waiting for its trigger price
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"  # may have filled in part first: see its filled quantity
    EXPIRED = "expired"


OPEN_STATUSES = frozenset({OrderStatus.ARMED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})
_STOP_TYPES = (OrderType.STOP.value, OrderType.STOP_LIMIT.value)


def next_status(status: str, event: Event, order_id: int) -> str:
    """The status of order `order_id` after `event` (one that concerns it), from `status`
    ("" before its Accepted)."""
    kind = type(event)
    if kind is Accepted:
        return OrderStatus.ARMED if event.order_type in _STOP_TYPES else OrderStatus.OPEN
    if kind is Trade:
        leaves = event.maker_leaves if event.maker_order_id == order_id else event.taker_leaves
        return OrderStatus.PARTIALLY_FILLED if leaves else OrderStatus.FILLED
    if kind is Cancelled:
        return status if event.leaves else OrderStatus.CANCELLED
    if kind is Expired:
        return OrderStatus.EXPIRED
    if kind is Triggered:
        return OrderStatus.OPEN
    return status  # amended or replenished: what it was


def status_of(order_id: int, events: Iterable[Event]) -> str:
    """The status of order `order_id` after these events, in order (those about other orders
    are passed over): what a placement answers with."""
    status = ""
    for event in events:
        if _concerns(event, order_id):
            status = next_status(status, event, order_id)
    return status


def _concerns(event: Event, order_id: int) -> bool:
    if type(event) is Trade:
        return order_id in (event.maker_order_id, event.taker_order_id)
    return getattr(event, "order_id", None) == order_id
