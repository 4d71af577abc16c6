"""Outbound FIX 4.4 application messages: ExecutionReport, OrderCancelReject and
OrderMassCancelReport, with amounts as decimal text.

Engine units become decimals here, with the gateway's own conversions, so a
FIX client sees the same prices and quantities as the native and Binance
APIs. Every field FIX 4.4 requires is set (the counterparty validates against
its data dictionary and would reject a report that lacks one).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import quickfix

from api.fix_tracking import Execution
from api.gateway import Gateway
from engine.codes import OrderType, Side, TimeInForce

BEGIN_STRING = "FIX.4.4"
# Tags of the outbound messages.
ACCOUNT = 1
AVG_PX = 6
CL_ORD_ID = 11
CUM_QTY = 14
EXEC_ID = 17
LAST_PX = 31
LAST_QTY = 32
ORDER_ID = 37
ORDER_QTY = 38
ORD_STATUS = 39
ORD_TYPE = 40
ORIG_CL_ORD_ID = 41
PRICE = 44
SIDE = 54
SYMBOL = 55
TEXT = 58
TIME_IN_FORCE = 59
TRANSACT_TIME = 60
STOP_PX = 99
CXL_REJ_REASON = 102
ORD_REJ_REASON = 103
EXEC_TYPE = 150
LEAVES_QTY = 151
CXL_REJ_RESPONSE_TO = 434
MASS_CANCEL_REQUEST_TYPE = 530
MASS_CANCEL_RESPONSE = 531
MASS_CANCEL_REJECT_REASON = 532
TOTAL_AFFECTED_ORDERS = 533

EXECUTION_REPORT = "8"
ORDER_CANCEL_REJECT = "9"
ORDER_MASS_CANCEL_REPORT = "r"
# CxlRejResponseTo(434): what the refused request was.
RESPONSE_TO_CANCEL = "1"
RESPONSE_TO_REPLACE = "2"
MASS_CANCEL_REJECTED = "0"
FIX_SIDES = {Side.BUY: "1", Side.SELL: "2"}
FIX_ORD_TYPES = {
    OrderType.MARKET: "1",
    OrderType.LIMIT: "2",
    OrderType.STOP: "3",
    OrderType.STOP_LIMIT: "4",
}
FIX_TIFS = {
    TimeInForce.DAY: "0",
    TimeInForce.GTC: "1",
    TimeInForce.AT_OPEN: "2",
    TimeInForce.IOC: "3",
    TimeInForce.FOK: "4",
    TimeInForce.GTD: "6",
    TimeInForce.AT_CLOSE: "7",
}
# AvgPx shows this many places more than the instrument's prices (it is a mean).
AVG_PX_EXTRA_PLACES = 4


def message(msg_type: str) -> quickfix.Message:
    out = quickfix.Message()
    out.getHeader().setField(quickfix.BeginString(BEGIN_STRING))
    out.getHeader().setField(quickfix.MsgType(msg_type))
    return out


def utc_timestamp(ms: int) -> str:
    """A FIX UTCTimestamp with milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y%m%d-%H:%M:%S.") + f"{ms % 1000:03d}"


def now_ms() -> int:
    return int(time.time() * 1000)


def execution_report(gw: Gateway, account: str, execution: Execution) -> quickfix.Message:
    e, order = execution, execution.order
    inst = gw.node.view.instruments.get(order.symbol)
    out = message(EXECUTION_REPORT)
    out.setField(ORDER_ID, str(order.order_id) if order.order_id else "NONE")
    out.setField(EXEC_ID, e.exec_id)
    out.setField(EXEC_TYPE, e.exec_type)
    out.setField(ORD_STATUS, e.ord_status)
    out.setField(ACCOUNT, account)
    out.setField(SYMBOL, order.symbol or "NONE")
    out.setField(SIDE, FIX_SIDES.get(order.side, "1"))
    if order.cl_ord_id:
        out.setField(CL_ORD_ID, order.cl_ord_id)
    if order.orig_cl_ord_id:
        out.setField(ORIG_CL_ORD_ID, order.orig_cl_ord_id)
    if order.order_type in FIX_ORD_TYPES:
        out.setField(ORD_TYPE, FIX_ORD_TYPES[OrderType(order.order_type)])
    if order.tif in FIX_TIFS:
        out.setField(TIME_IN_FORCE, FIX_TIFS[TimeInForce(order.tif)])
    out.setField(TRANSACT_TIME, utc_timestamp(e.transact_ms))
    if e.text:
        out.setField(TEXT, e.text)
    if e.ord_rej_reason >= 0:
        out.setField(ORD_REJ_REASON, str(e.ord_rej_reason))
    if inst is None:
        # A refusal of an unknown symbol: nothing to scale amounts by.
        for tag in (ORDER_QTY, LEAVES_QTY, CUM_QTY, AVG_PX):
            out.setField(tag, "0")
        return out
    out.setField(ORDER_QTY, gw.qty_text(inst, order.qty))
    out.setField(LEAVES_QTY, gw.qty_text(inst, order.leaves))
    out.setField(CUM_QTY, gw.qty_text(inst, order.cum_qty))
    out.setField(AVG_PX, avg_px_text(order.notional, order.cum_qty, gw.scales(inst)[0]))
    if order.price:
        out.setField(PRICE, gw.price_text(inst, order.price))
    if order.stop_price:
        out.setField(STOP_PX, gw.price_text(inst, order.stop_price))
    if e.last_qty:
        out.setField(LAST_QTY, gw.qty_text(inst, e.last_qty))
        out.setField(LAST_PX, gw.price_text(inst, e.last_px))
    return out


def avg_px_text(notional: int, cum_qty: int, price_decimals: int) -> str:
    """Mean fill price as a decimal: notional (price units x qty units) over quantity."""
    if not cum_qty:
        return "0"
    mean = Decimal(notional) / Decimal(cum_qty) / Decimal(10) ** price_decimals
    places = Decimal(1).scaleb(-(max(price_decimals, 0) + AVG_PX_EXTRA_PLACES))
    text = format(mean.quantize(places), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def cancel_reject(
    cl_ord_id: str,
    orig_cl_ord_id: str,
    order_id: int,
    ord_status: str,
    response_to: str,
    reason: int,
    text: str,
) -> quickfix.Message:
    """OrderCancelReject: a cancel (`response_to` 1) or replace (2) that changed nothing."""
    out = message(ORDER_CANCEL_REJECT)
    out.setField(ORDER_ID, str(order_id) if order_id else "NONE")
    out.setField(CL_ORD_ID, cl_ord_id)
    out.setField(ORIG_CL_ORD_ID, orig_cl_ord_id)
    out.setField(ORD_STATUS, ord_status)
    out.setField(CXL_REJ_RESPONSE_TO, response_to)
    out.setField(CXL_REJ_REASON, str(reason))
    out.setField(TRANSACT_TIME, utc_timestamp(now_ms()))
    out.setField(TEXT, text)
    return out


def mass_cancel_report(
    cl_ord_id: str,
    request_type: str,
    response: str,
    affected: int,
    text: str = "",
    reject_reason: str = "",
    symbol: str = "",
) -> quickfix.Message:
    """OrderMassCancelReport: `response` is the request type when done, 0 when refused."""
    out = message(ORDER_MASS_CANCEL_REPORT)
    out.setField(CL_ORD_ID, cl_ord_id)
    out.setField(ORDER_ID, "NONE")
    out.setField(MASS_CANCEL_REQUEST_TYPE, request_type or "7")
    out.setField(MASS_CANCEL_RESPONSE, response)
    if reject_reason:
        out.setField(MASS_CANCEL_REJECT_REASON, reject_reason)
    out.setField(TOTAL_AFFECTED_ORDERS, str(affected))
    if symbol:
        out.setField(SYMBOL, symbol)
    out.setField(TRANSACT_TIME, utc_timestamp(now_ms()))
    if text:
        out.setField(TEXT, text)
    return out
