"""Binance's spot order entry: new, test, query, cancel, cancel-replace, open and all orders.

Orders become the engine's own commands, signed with the request's signature, so
a retried request (same signature) is applied at most once in the whole cluster
and answered with what the first one did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from api.binance_market import ORDER_TYPES, STP_MODES
from api.binance_params import BinanceError
from api.binance_request import (
    ID_MAX,
    int_param,
    param,
    refuse_replay,
    signed_request,
    symbol_of,
    time_window,
)
from api.errors import ApiError
from api.gateway import Gateway, Principal, WriteOutcome
from api.numbers import is_decimal
from api.orders import DERIVED_CLIENT_ID_PREFIX
from cluster.rocks import READ_LIMIT_MAX
from cluster.views import InstrumentView
from engine.codes import OrderType, Scope, SelfTradePrevention, Side, TimeInForce
from engine.commands import CLIENT_ID_LEN_MAX, CancelOrder, MassCancel, PlaceOrder
from engine.events import Accepted, Trade
from engine.order_status import OrderStatus

ORDERS_LIMIT_DEFAULT = 500
ALL_ORDERS_SPAN_MS_MAX = 86_400_000
# How many pages of an account's orders a time-windowed allOrders reads at most.
ALL_ORDERS_PAGES_MAX = 20
TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
STP = {
    "EXPIRE_TAKER": SelfTradePrevention.CANCEL_NEWEST,
    "EXPIRE_MAKER": SelfTradePrevention.CANCEL_OLDEST,
    "EXPIRE_BOTH": SelfTradePrevention.CANCEL_BOTH,
    "DECREMENT": SelfTradePrevention.DECREMENT,
}
RESPONSE_TYPES = ("ACK", "RESULT", "FULL")
ORDER_FIELDS = frozenset(
    {
        "symbol",
        "side",
        "type",
        "timeInForce",
        "quantity",
        "quoteOrderQty",
        "price",
        "newClientOrderId",
        "stopPrice",
        "icebergQty",
        "newOrderRespType",
        "selfTradePreventionMode",
    }
)
TEST_PARAMS = ORDER_FIELDS | {"computeCommissionRates"}
ORDER_PARAMS = frozenset({"symbol", "orderId", "origClientOrderId"})
CANCEL_PARAMS = ORDER_PARAMS | {"newClientOrderId", "cancelRestrictions"}
REPLACE_PARAMS = ORDER_FIELDS | {
    "cancelReplaceMode",
    "cancelOrderId",
    "cancelOrigClientOrderId",
    "cancelNewClientOrderId",
    "cancelRestrictions",
}
OPEN_PARAMS = frozenset({"symbol"})
ALL_ORDERS_PARAMS = frozenset({"symbol", "orderId", "limit", "startTime", "endTime"})

_STATUS = {
    OrderStatus.ARMED: "NEW",
    OrderStatus.OPEN: "NEW",
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELLED: "CANCELED",
    OrderStatus.EXPIRED: "EXPIRED",
}
_KIND = {
    OrderType.MARKET: "MARKET",
    OrderType.STOP: "STOP_LOSS",
    OrderType.STOP_LIMIT: "STOP_LOSS_LIMIT",
}
# Which parameters each Binance order type needs, and which it must not have.
_NEEDS = {
    "LIMIT": ("price", "timeInForce"),
    "LIMIT_MAKER": ("price",),
    "MARKET": (),
    "STOP_LOSS": ("stopPrice",),
    "STOP_LOSS_LIMIT": ("price", "stopPrice", "timeInForce"),
}
_REFUSES = {
    "LIMIT": ("stopPrice",),
    "LIMIT_MAKER": ("stopPrice", "timeInForce"),
    "MARKET": ("price", "timeInForce", "stopPrice", "icebergQty"),
    "STOP_LOSS": ("price", "timeInForce", "icebergQty"),
    "STOP_LOSS_LIMIT": (),
}


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order as Binance's parameters describe it, read into the engine's command."""

    command: PlaceOrder
    kind: str
    response_type: str
    stp_mode: str


def read_order(
    gw: Gateway, principal: Principal, params: dict[str, str], part: int = 0
) -> OrderRequest:
    """Every order parameter checked, in Binance's order and with its codes. Without a
    `newClientOrderId` the client order id derives from the request's signature (and
    `part`), so a retried request names the same order."""
    inst = symbol_of(gw, params)
    side_text = param(params, "side")
    if side_text not in ("BUY", "SELL"):
        raise BinanceError(400, -1117, "Invalid side.")
    kind = param(params, "type")
    if kind not in ORDER_TYPES:
        raise BinanceError(400, -1116, "Invalid orderType.")
    if "quoteOrderQty" in params:
        raise BinanceError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
    for name in _NEEDS[kind]:
        param(params, name)
    for name in _REFUSES[kind]:
        if name in params:
            raise BinanceError(400, -1106, f"Parameter '{name}' sent when not required.")
    qty = _units(gw.qty_units, inst, param(params, "quantity"), "quantity")
    price = _optional_units(gw.price_units, inst, params, "price")
    stop = _optional_units(gw.price_units, inst, params, "stopPrice")
    display = _optional_units(gw.qty_units, inst, params, "icebergQty")
    tif = TimeInForce.IOC if kind in ("MARKET", "STOP_LOSS") else TimeInForce.GTC
    if "timeInForce" in params:
        if params["timeInForce"] not in TIFS:
            raise BinanceError(400, -1115, "Invalid timeInForce.")
        tif = TIFS[params["timeInForce"]]
    stp_mode = params.get("selfTradePreventionMode", "EXPIRE_TAKER")
    if stp_mode not in STP:
        raise BinanceError(
            400, -1102, f"selfTradePreventionMode must be one of {', '.join(STP_MODES)}."
        )
    client_order_id = (
        params.get("newClientOrderId")
        or (DERIVED_CLIENT_ID_PREFIX + principal.signature + (str(part) if part else ""))[
            :CLIENT_ID_LEN_MAX
        ]
    )
    if len(client_order_id) > CLIENT_ID_LEN_MAX:
        raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'.")
    response_type = params.get("newOrderRespType", "FULL")
    if response_type not in RESPONSE_TYPES:
        raise BinanceError(400, -1102, "Parameter 'newOrderRespType' must be ACK, RESULT or FULL.")
    order_type = {
        "MARKET": OrderType.MARKET,
        "STOP_LOSS": OrderType.STOP,
        "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
    }.get(kind, OrderType.LIMIT)
    command = PlaceOrder(
        account=principal.account,
        symbol=inst.symbol,
        side=Side.BUY if side_text == "BUY" else Side.SELL,
        qty=qty,
        price=price,
        order_type=order_type,
        tif=tif,
        client_order_id=client_order_id,
        stop_price=stop,
        display_qty=display,
        post_only=kind == "LIMIT_MAKER",
        stp=STP[stp_mode],
    )
    return OrderRequest(command, kind, response_type, stp_mode)


def _optional_units(
    convert: Callable[..., int], inst: InstrumentView, params: dict[str, str], name: str
) -> int:
    return _units(convert, inst, params[name], name) if name in params else 0


def _units(convert: Callable[..., int], inst: InstrumentView, text: str | None, name: str) -> int:
    if not is_decimal(text):
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    try:
        return convert(inst, text, name)
    except ApiError:
        raise BinanceError(400, -1111, f"Parameter '{name}' has too much precision.") from None


async def new_order(request: web.Request) -> web.Response:
    gw, principal, params = await signed_request(request, Scope.TRADE, ORDER_FIELDS)
    order = read_order(gw, principal, params)
    outcome = await gw.submit(principal.signed(order.command))
    refused = placement_refusal(outcome)
    if refused is not None:
        raise refused
    return web.json_response(await placed(gw, outcome, order))


async def test_order(request: web.Request) -> web.Response:
    """Checks an order as POST /order would, and places nothing: {} (with the account's
    rates when `computeCommissionRates` is true)."""
    gw, principal, params = await signed_request(request, Scope.TRADE, TEST_PARAMS)
    order = read_order(gw, principal, params)
    compute = params.get("computeCommissionRates", "false")
    if compute not in ("true", "false"):
        raise BinanceError(400, -1102, "Parameter 'computeCommissionRates' must be true or false.")
    if compute == "false":
        return web.json_response({})
    inst = gw.instrument(order.command.symbol)
    return web.json_response(
        {
            "standardCommissionForOrder": {
                "maker": rate_text(inst.maker_fee_bps),
                "taker": rate_text(inst.taker_fee_bps),
            },
            "taxCommissionForOrder": {"maker": rate_text(0), "taker": rate_text(0)},
            "discount": {
                "enabledForAccount": False,
                "enabledForSymbol": False,
                "discountAsset": None,
                "discount": rate_text(0),
            },
        }
    )


def rate_text(bps: int) -> str:
    """Basis points as Binance's fraction with eight places (10 bps -> "0.00100000")."""
    return f"{bps // 10_000}.{bps % 10_000:04d}0000"


def placement_refusal(outcome: WriteOutcome) -> BinanceError | None:
    """The engine's refusal of a new order as Binance's -2010, the reason in the message."""
    rejected = outcome.rejected
    if rejected is None:
        return None
    refuse_replay(rejected)
    return BinanceError(400, -2010, f"{rejected.message} ({rejected.code})")


async def placed(gw: Gateway, outcome: WriteOutcome, order: OrderRequest) -> dict[str, Any]:
    """A placed order's answer at its response type (ACK, RESULT or FULL with its fills)."""
    head = outcome.first(Accepted)
    if head is None:
        raise BinanceError(500, -1000, "The order got no outcome.")
    inst = gw.instrument(order.command.symbol)
    ack = {
        "symbol": inst.symbol,
        "orderId": head.order_id,
        "orderListId": -1,
        "clientOrderId": order.command.client_order_id,
        "transactTime": head.ts_ms,
    }
    if order.response_type == "ACK":
        return ack
    history = await gw.history_at(outcome.seq)
    record = await asyncio.to_thread(history.order, head.order_id)
    if record is None:
        raise BinanceError(503, -1007, "Order status unknown; query it by clientOrderId.")
    answer = {**ack, **order_row(gw, inst, record), "selfTradePreventionMode": order.stp_mode}
    if order.response_type == "FULL":
        answer["fills"] = [
            {
                "price": gw.price_text(inst, e.price),
                "qty": gw.qty_text(inst, e.qty),
                "commission": gw.quote_text(inst, e.taker_fee),
                "commissionAsset": inst.quote,
                "tradeId": e.trade_id,
            }
            for e in outcome.events
            if type(e) is Trade and e.taker_order_id == head.order_id
        ]
    return answer


def order_row(gw: Gateway, inst: InstrumentView, record: dict[str, Any]) -> dict[str, Any]:
    """An order as Binance's order queries show it."""
    kind = _KIND.get(OrderType(record["order_type"]))
    if kind is None:
        kind = "LIMIT_MAKER" if record["post_only"] else "LIMIT"
    tif = TimeInForce(record["tif"]).name
    return {
        "symbol": inst.symbol,
        "orderId": record["order_id"],
        "orderListId": -1,
        "clientOrderId": record["client_order_id"],
        "price": gw.price_text(inst, record["price"]),
        "origQty": gw.qty_text(inst, record["original_qty"]),
        "executedQty": gw.qty_text(inst, record["filled_qty"]),
        "cummulativeQuoteQty": gw.quote_text(inst, record["notional"]),
        "status": _STATUS[OrderStatus(record["status"])],
        "timeInForce": tif if tif in TIFS else "GTC",
        "type": kind,
        "side": Side(record["side"]).name,
        "stopPrice": gw.price_text(inst, record["stop_price"]),
        "icebergQty": gw.qty_text(inst, record["display_qty"]),
        "time": record["accepted_ms"],
        "updateTime": record["updated_ms"],
        "isWorking": record["status"] in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED),
        "workingTime": record["accepted_ms"],
        "origQuoteOrderQty": gw.quote_text(inst, 0),
        "selfTradePreventionMode": "EXPIRE_TAKER",
    }


async def find_order(
    gw: Gateway,
    principal: Principal,
    inst: InstrumentView,
    order_id: int,
    client_order_id: str,
    names: tuple[str, str] = ("origClientOrderId", "orderId"),
) -> dict[str, Any]:
    """The account's order in this symbol, by engine id or else by client order id."""
    if not order_id and not client_order_id:
        raise BinanceError(
            400,
            -1102,
            f"Param '{names[0]}' or '{names[1]}' must be sent, but both were empty/null!",
        )
    history = await gw.history_store()
    if order_id:
        record = await asyncio.to_thread(history.order, order_id)
    else:
        record = await asyncio.to_thread(
            history.order_by_client_id, principal.account, client_order_id
        )
    if record is None or record["account"] != principal.account or record["symbol"] != inst.symbol:
        raise BinanceError(400, -2013, "Order does not exist.")
    return record


async def _named_order(
    gw: Gateway, principal: Principal, params: dict[str, str]
) -> tuple[InstrumentView, dict[str, Any]]:
    inst = symbol_of(gw, params)
    order_id = int_param(params, "orderId", 0, 0, ID_MAX) or 0
    record = await find_order(gw, principal, inst, order_id, params.get("origClientOrderId", ""))
    return inst, record


async def query_order(request: web.Request) -> web.Response:
    gw, principal, params = await signed_request(request, Scope.READ, ORDER_PARAMS)
    inst, record = await _named_order(gw, principal, params)
    return web.json_response(order_row(gw, inst, record))


async def cancel_record(
    gw: Gateway, principal: Principal, inst: InstrumentView, record: dict[str, Any], part: int = 0
) -> dict[str, Any]:
    """Cancels one order and answers as Binance's cancel does (-2011 when it is not open)."""
    command = CancelOrder(principal.account, record["order_id"])
    outcome = await gw.submit(principal.signed(command, part))
    if outcome.rejected is not None:
        refuse_replay(outcome.rejected)
        raise BinanceError(400, -2011, "Unknown order sent.")
    history = await gw.history_at(outcome.seq)
    record = await asyncio.to_thread(history.order, record["order_id"]) or record
    row = order_row(gw, inst, record)
    return {**row, "origClientOrderId": row["clientOrderId"], "transactTime": record["updated_ms"]}


async def cancel_order(request: web.Request) -> web.Response:
    gw, principal, params = await signed_request(request, Scope.TRADE, CANCEL_PARAMS)
    _restrictions(params)
    inst, record = await _named_order(gw, principal, params)
    return web.json_response(await cancel_record(gw, principal, inst, record))


def _restrictions(params: dict[str, str]) -> None:
    """`cancelRestrictions` is read and refused when it asks for a state check raftex does
    not make, rather than ignored."""
    if "cancelRestrictions" in params:
        raise BinanceError(400, -1102, "Parameter 'cancelRestrictions' is not supported.")


async def cancel_replace(request: web.Request) -> web.Response:
    """Cancels an order, then places a new one (two commands of one signed request, each
    applied at most once). STOP_ON_FAILURE places nothing when the cancel fails;
    ALLOW_FAILURE places the new order anyway. A failure answers -2021/-2022 with what
    each step did in `data`, as Binance does."""
    gw, principal, params = await signed_request(request, Scope.TRADE, REPLACE_PARAMS)
    _restrictions(params)
    mode = param(params, "cancelReplaceMode")
    if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
        raise BinanceError(
            400, -1102, "cancelReplaceMode must be STOP_ON_FAILURE or ALLOW_FAILURE."
        )
    order = read_order(gw, principal, params, part=1)
    inst = gw.instrument(order.command.symbol)
    order_id = int_param(params, "cancelOrderId", 0, 0, ID_MAX) or 0
    names = ("cancelOrigClientOrderId", "cancelOrderId")
    cancelled: dict[str, Any] | BinanceError
    try:
        record = await find_order(
            gw, principal, inst, order_id, params.get("cancelOrigClientOrderId", ""), names
        )
        cancelled = await cancel_record(gw, principal, inst, record)
    except BinanceError as exc:
        if exc.code not in (-2011, -2013):
            raise
        cancelled = exc
    if isinstance(cancelled, BinanceError) and mode == "STOP_ON_FAILURE":
        raise _replace_failed(-2022, "Order cancel-replace failed.", cancelled, None)
    outcome = await gw.submit(principal.signed(order.command, 1))
    refused = placement_refusal(outcome)
    new: dict[str, Any] | BinanceError = refused or await placed(gw, outcome, order)
    if isinstance(cancelled, BinanceError) or isinstance(new, BinanceError):
        both_failed = isinstance(cancelled, BinanceError) and isinstance(new, BinanceError)
        code, msg = (
            (-2022, "Order cancel-replace failed.")
            if both_failed
            else (
                -2021,
                "Order cancel-replace partially failed.",
            )
        )
        raise _replace_failed(code, msg, cancelled, new)
    return web.json_response(
        {
            "cancelResult": "SUCCESS",
            "newOrderResult": "SUCCESS",
            "cancelResponse": cancelled,
            "newOrderResponse": new,
        }
    )


def _replace_failed(
    code: int,
    msg: str,
    cancelled: dict[str, Any] | BinanceError,
    new: dict[str, Any] | BinanceError | None,
) -> BinanceError:
    """Binance's answer to a cancel-replace that did not do both steps: what each did."""

    def step(result: dict[str, Any] | BinanceError) -> dict[str, Any]:
        if isinstance(result, BinanceError):
            return {"code": result.code, "msg": result.msg}
        return result

    return BinanceError(
        400,
        code,
        msg,
        data={
            "cancelResult": "FAILURE" if isinstance(cancelled, BinanceError) else "SUCCESS",
            "newOrderResult": (
                "NOT_ATTEMPTED"
                if new is None
                else "FAILURE"
                if isinstance(new, BinanceError)
                else "SUCCESS"
            ),
            "cancelResponse": step(cancelled),
            "newOrderResponse": None if new is None else step(new),
        },
    )


async def cancel_open_orders(request: web.Request) -> web.Response:
    """DELETE openOrders: every open order of the account in the symbol, cancelled at once
    (one MassCancel in the log), answered as the cancelled orders."""
    gw, principal, params = await signed_request(request, Scope.TRADE, OPEN_PARAMS)
    inst = symbol_of(gw, params)
    history = await gw.history_store()
    rows = await asyncio.to_thread(
        lambda: history.orders_of(
            principal.account, open_only=True, after_order_id=0, limit=READ_LIMIT_MAX
        )
    )
    order_ids = [r["order_id"] for r in rows if r["symbol"] == inst.symbol]
    if not order_ids:
        raise BinanceError(400, -2011, "Unknown order sent.")
    outcome = await gw.submit(principal.signed(MassCancel(principal.account, inst.symbol)))
    if outcome.rejected is not None:
        refuse_replay(outcome.rejected)
        raise BinanceError(400, -2011, f"{outcome.rejected.message} ({outcome.rejected.code})")
    history = await gw.history_at(outcome.seq)
    answer = []
    for order_id in order_ids:
        record = await asyncio.to_thread(history.order, order_id)
        if record is not None:
            row = order_row(gw, inst, record)
            answer.append({**row, "origClientOrderId": row["clientOrderId"]})
    return web.json_response(answer)


async def open_orders(request: web.Request) -> web.Response:
    gw, principal, params = await signed_request(request, Scope.READ, OPEN_PARAMS)
    symbol = symbol_of(gw, params).symbol if "symbol" in params else None
    history = await gw.history_store()
    rows = await asyncio.to_thread(
        lambda: history.orders_of(
            principal.account, open_only=True, after_order_id=0, limit=READ_LIMIT_MAX
        )
    )
    return web.json_response(
        [
            order_row(gw, gw.instrument(r["symbol"]), r)
            for r in rows
            if symbol is None or r["symbol"] == symbol
        ]
    )


async def all_orders(request: web.Request) -> web.Response:
    """The account's orders in the symbol from `orderId` on, or placed within
    [startTime, endTime] (at most a day apart), oldest first, up to `limit`."""
    gw, principal, params = await signed_request(request, Scope.READ, ALL_ORDERS_PARAMS)
    inst = symbol_of(gw, params)
    limit = int_param(params, "limit", ORDERS_LIMIT_DEFAULT, 1, READ_LIMIT_MAX) or 1
    after = (int_param(params, "orderId", 1, 1, ID_MAX) or 1) - 1
    start, end = time_window(params, ALL_ORDERS_SPAN_MS_MAX)
    history = await gw.history_store()
    found: list[dict[str, Any]] = []
    for _ in range(ALL_ORDERS_PAGES_MAX):
        page = await asyncio.to_thread(
            lambda after=after: history.orders_of(
                principal.account, open_only=False, after_order_id=after, limit=READ_LIMIT_MAX
            )
        )
        found += [
            r for r in page if r["symbol"] == inst.symbol and start <= r["accepted_ms"] <= end
        ]
        if len(page) < READ_LIMIT_MAX or len(found) >= limit or page[-1]["accepted_ms"] > end:
            break
        after = page[-1]["order_id"]
    return web.json_response([order_row(gw, inst, r) for r in found[:limit]])
