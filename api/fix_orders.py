"""FIX application messages in, typed order requests out: every field checked at the edge.

The acceptor reads the tags it knows off a quickfix message (on quickfix's
thread) into a `FixInbound`; this module turns one into a request the session
acts on: a NewOrderSingle into the engine's PlaceOrder (ClOrdID as its client
order id, so a resent order is applied at most once), the others into what
they ask for. Bad input raises `FixRefusal` with the Text(58) and the FIX
reason code the answer carries: never a traceback, and nothing is submitted.
No quickfix import: pure data, testable without the engine library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from api.errors import ApiError
from api.fix_logon import utc_timestamp_ms
from api.gateway import Gateway
from cluster.views import InstrumentView
from engine.codes import OrderType, Side, TimeInForce
from engine.commands import CLIENT_ID_LEN_MAX, NAME_LEN_MAX, PlaceOrder

E = TypeVar("E")

# Tags read off inbound messages (the header's MsgType and MsgSeqNum besides).
CL_ORD_ID = 11
EXEC_INST = 18
ORDER_ID = 37
ORDER_QTY = 38
ORD_TYPE = 40
ORIG_CL_ORD_ID = 41
PRICE = 44
SIDE = 54
SYMBOL = 55
TIME_IN_FORCE = 59
STOP_PX = 99
MAX_FLOOR = 111
EXPIRE_TIME = 126
MASS_CANCEL_REQUEST_TYPE = 530
TAGS_READ = (
    CL_ORD_ID,
    EXEC_INST,
    ORDER_ID,
    ORDER_QTY,
    ORD_TYPE,
    ORIG_CL_ORD_ID,
    PRICE,
    SIDE,
    SYMBOL,
    TIME_IN_FORCE,
    STOP_PX,
    MAX_FLOOR,
    EXPIRE_TIME,
    MASS_CANCEL_REQUEST_TYPE,
)

NEW_ORDER_SINGLE = "D"
ORDER_CANCEL_REQUEST = "F"
ORDER_CANCEL_REPLACE_REQUEST = "G"
ORDER_STATUS_REQUEST = "H"
ORDER_MASS_CANCEL_REQUEST = "q"
SUPPORTED_MSG_TYPES = frozenset(
    {
        NEW_ORDER_SINGLE,
        ORDER_CANCEL_REQUEST,
        ORDER_CANCEL_REPLACE_REQUEST,
        ORDER_STATUS_REQUEST,
        ORDER_MASS_CANCEL_REQUEST,
    }
)

SIDES = {"1": Side.BUY, "2": Side.SELL}
ORD_TYPES = {
    "1": OrderType.MARKET,
    "2": OrderType.LIMIT,
    "3": OrderType.STOP,
    "4": OrderType.STOP_LIMIT,
}
# TimeInForce(59); absent means Day, as FIX 4.4 says.
TIFS = {
    "0": TimeInForce.DAY,
    "1": TimeInForce.GTC,
    "3": TimeInForce.IOC,
    "4": TimeInForce.FOK,
    "6": TimeInForce.GTD,
}
# ExecInst(18) "6": participate, don't initiate (a post-only order).
EXEC_INST_POST_ONLY = "6"
MASS_CANCEL_BY_SYMBOL = "1"
MASS_CANCEL_ALL = "7"

# OrdRejReason(103) and CxlRejReason(102) values used for refusals at the edge.
ORD_REJ_UNKNOWN_SYMBOL = 1
ORD_REJ_UNSUPPORTED = 11
ORD_REJ_INCORRECT_QUANTITY = 13
ORD_REJ_OTHER = 99
CXL_REJ_UNKNOWN_ORDER = 1
CXL_REJ_OTHER = 99
# An order id is below 2**63: 19 digits. Longer text is refused before int() reads it (past
# 4,300 digits int() raises ValueError, and below that it costs quadratic time).
ORDER_ID_DIGITS_MAX = len(str(2**63 - 1))


class FixRefusal(Exception):
    """Input refused at the edge: `text` for Text(58), `reason` for OrdRejReason(103) or
    CxlRejReason(102), whichever the answer carries."""

    def __init__(self, text: str, reason: int = ORD_REJ_OTHER) -> None:
        super().__init__(text)
        self.text = text
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FixInbound:
    """One application message as read on quickfix's thread: type, sequence number, and the
    TAGS_READ it carries, as text."""

    msg_type: str
    msg_seq_num: int
    fields: dict[int, str]

    def get(self, tag: int) -> str:
        return self.fields.get(tag, "")


@dataclass(frozen=True, slots=True)
class NewOrder:
    cl_ord_id: str
    command: PlaceOrder


@dataclass(frozen=True, slots=True)
class CancelRequest:
    cl_ord_id: str
    orig_cl_ord_id: str
    # The engine's order id when the client sent OrderID(37), else 0.
    order_id: int
    symbol: str


@dataclass(frozen=True, slots=True)
class ReplaceRequest:
    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: int
    symbol: str
    order_type: OrderType
    # New total quantity (filled included) and price, in engine units; 0 keeps it.
    qty: int
    price: int


@dataclass(frozen=True, slots=True)
class MassCancelRequest:
    cl_ord_id: str
    request_type: str
    symbol: str


@dataclass(frozen=True, slots=True)
class StatusRequest:
    cl_ord_id: str
    order_id: int
    symbol: str


FixRequest = NewOrder | CancelRequest | ReplaceRequest | MassCancelRequest | StatusRequest


def decode(gw: Gateway, account: str, inbound: FixInbound) -> FixRequest:
    """The request one supported message makes for `account`, or FixRefusal."""
    kind = inbound.msg_type
    if kind == NEW_ORDER_SINGLE:
        return new_order(gw, account, inbound)
    if kind == ORDER_CANCEL_REQUEST:
        return CancelRequest(
            _cl_ord_id(inbound),
            _client_id(inbound, ORIG_CL_ORD_ID, "OrigClOrdID(41)"),
            _order_id(inbound),
            _symbol(gw, inbound).symbol,
        )
    if kind == ORDER_CANCEL_REPLACE_REQUEST:
        return replace_request(gw, inbound)
    if kind == ORDER_MASS_CANCEL_REQUEST:
        request_type = inbound.get(MASS_CANCEL_REQUEST_TYPE)
        symbol = ""
        if request_type == MASS_CANCEL_BY_SYMBOL:
            symbol = _symbol(gw, inbound).symbol
        return MassCancelRequest(_cl_ord_id(inbound), request_type, symbol)
    if kind == ORDER_STATUS_REQUEST:
        return StatusRequest(_cl_ord_id(inbound), _order_id(inbound), inbound.get(SYMBOL))
    raise AssertionError(f"decode called with unsupported MsgType {kind!r}")


def new_order(gw: Gateway, account: str, inbound: FixInbound) -> NewOrder:
    cl_ord_id = _cl_ord_id(inbound)
    inst = _symbol(gw, inbound)
    order_type = _choice(inbound, ORD_TYPE, ORD_TYPES, "OrdType(40)")
    needs_price = order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
    if needs_price != bool(inbound.get(PRICE)):
        raise FixRefusal(
            f"Price(44) goes with limit and stop-limit orders, not with OrdType {order_type.name}",
            ORD_REJ_UNSUPPORTED,
        )
    if needs_stop != bool(inbound.get(STOP_PX)):
        raise FixRefusal(
            f"StopPx(99) goes with stop and stop-limit orders, not with OrdType {order_type.name}",
            ORD_REJ_UNSUPPORTED,
        )
    tif = (
        _choice(inbound, TIME_IN_FORCE, TIFS, "TimeInForce(59)")
        if inbound.get(TIME_IN_FORCE)
        else TimeInForce.DAY
    )
    expire_time_ms = 0
    if tif == TimeInForce.GTD:
        if not inbound.get(EXPIRE_TIME):
            raise FixRefusal("a GTD order needs ExpireTime(126)", ORD_REJ_UNSUPPORTED)
        expire_time_ms = utc_timestamp_ms(inbound.get(EXPIRE_TIME)) or 0
        if not expire_time_ms:
            raise FixRefusal("ExpireTime(126) is not a UTCTimestamp", ORD_REJ_UNSUPPORTED)
    elif inbound.get(EXPIRE_TIME):
        raise FixRefusal("ExpireTime(126) goes with TimeInForce GTD (6)", ORD_REJ_UNSUPPORTED)
    exec_inst = inbound.get(EXEC_INST).split()
    if any(flag != EXEC_INST_POST_ONLY for flag in exec_inst):
        raise FixRefusal("ExecInst(18) supports only 6 (post only)", ORD_REJ_UNSUPPORTED)
    command = PlaceOrder(
        account=account,
        symbol=inst.symbol,
        side=_choice(inbound, SIDE, SIDES, "Side(54)"),
        qty=_qty(gw, inst, inbound.get(ORDER_QTY), "OrderQty(38)"),
        price=_price(gw, inst, inbound.get(PRICE), "Price(44)") if needs_price else 0,
        order_type=order_type,
        tif=tif,
        client_order_id=cl_ord_id,
        stop_price=_price(gw, inst, inbound.get(STOP_PX), "StopPx(99)") if needs_stop else 0,
        display_qty=_qty(gw, inst, inbound.get(MAX_FLOOR), "MaxFloor(111)")
        if inbound.get(MAX_FLOOR)
        else 0,
        post_only=bool(exec_inst),
        expire_time_ms=expire_time_ms,
    )
    return NewOrder(cl_ord_id, command)


def replace_request(gw: Gateway, inbound: FixInbound) -> ReplaceRequest:
    """A replace changes quantity and/or price only (the engine's amend): the order's type,
    side and symbol stay; the session checks them against the order it names."""
    inst = _symbol(gw, inbound)
    order_type = _choice(inbound, ORD_TYPE, ORD_TYPES, "OrdType(40)")
    price_text = inbound.get(PRICE)
    qty_text = inbound.get(ORDER_QTY)
    return ReplaceRequest(
        _cl_ord_id(inbound),
        _client_id(inbound, ORIG_CL_ORD_ID, "OrigClOrdID(41)"),
        _order_id(inbound),
        inst.symbol,
        order_type,
        _qty(gw, inst, qty_text, "OrderQty(38)") if qty_text else 0,
        _price(gw, inst, price_text, "Price(44)") if price_text else 0,
    )


def _cl_ord_id(inbound: FixInbound) -> str:
    return _client_id(inbound, CL_ORD_ID, "ClOrdID(11)")


def _client_id(inbound: FixInbound, tag: int, name: str) -> str:
    value = inbound.get(tag)
    if not value or len(value) > CLIENT_ID_LEN_MAX:
        raise FixRefusal(f"{name} must be 1..{CLIENT_ID_LEN_MAX} characters")
    return value


def _order_id(inbound: FixInbound) -> int:
    text = inbound.get(ORDER_ID)
    if not text:
        return 0
    if (
        not (text.isascii() and text.isdigit())
        or len(text) > ORDER_ID_DIGITS_MAX
        or not 0 < int(text) < 2**63
    ):
        raise FixRefusal(
            f"OrderID(37) {text[:ORDER_ID_DIGITS_MAX]!r} is not an order id of this exchange"
        )
    return int(text)


def _symbol(gw: Gateway, inbound: FixInbound) -> InstrumentView:
    symbol = inbound.get(SYMBOL)
    inst = gw.node.view.instruments.get(symbol) if len(symbol) <= NAME_LEN_MAX else None
    if inst is None:
        raise FixRefusal(f"unknown symbol {symbol!r}", ORD_REJ_UNKNOWN_SYMBOL)
    return inst


def _choice(inbound: FixInbound, tag: int, choices: dict[str, E], name: str) -> E:
    value = inbound.get(tag)
    if value not in choices:
        raise FixRefusal(
            f"{name} {value!r} is not supported; use one of {', '.join(choices)}",
            ORD_REJ_UNSUPPORTED,
        )
    return choices[value]


def _qty(gw: Gateway, inst: InstrumentView, text: str, name: str) -> int:
    try:
        return gw.qty_units(inst, text, name)
    except ApiError as exc:
        raise FixRefusal(exc.message, ORD_REJ_INCORRECT_QUANTITY) from None


def _price(gw: Gateway, inst: InstrumentView, text: str, name: str) -> int:
    try:
        return gw.price_units(inst, text, name)
    except ApiError as exc:
        raise FixRefusal(exc.message, ORD_REJ_OTHER) from None
