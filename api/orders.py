"""Order entry and order reads for the signing account.

Writes become engine commands for the signer's account and go through the
log; their answer is the outcome the state machine gave (accepted, filled,
rejected with its code), the sequence it was applied at and the node that led.
A write without a client order id gets one derived from its signature, so a
replay of the same signed request, to any node, is answered with the original
outcome instead of placing a second order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api.errors import ApiError
from api.gateway import Gateway, Principal, WriteOutcome, gateway
from api.json_input import JsonRefused, parse_json
from api.numbers import parse_count
from api.query import choice, int_param, known_fields, text_field
from cluster.rocks import READ_LIMIT_MAX
from engine.codes import (
    OrderType,
    RejectCode,
    Scope,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.commands import (
    CLIENT_ID_LEN_MAX,
    NAME_LEN_MAX,
    AmendOrder,
    CancelOrder,
    MassCancel,
    PlaceOrder,
)
from engine.events import Accepted, Amended, Cancelled, Rejected, Trade
from engine.order_status import status_of
from projection.history import HistoryStore

SIDES = {"buy": Side.BUY, "sell": Side.SELL}
ORDER_TYPES = {t.name.lower(): t for t in OrderType}
TIFS = {t.name.lower(): t for t in TimeInForce}
STP_MODES = {m.name.lower(): m for m in SelfTradePrevention}
ORDERS_LIMIT_DEFAULT = 100
ORDERS_PER_REQUEST_MAX = 20
DERIVED_CLIENT_ID_PREFIX = "sig-"
PLACE_FIELDS = {
    "symbol",
    "side",
    "type",
    "qty",
    "price",
    "tif",
    "client_order_id",
    "stop_price",
    "display_qty",
    "post_only",
    "stp",
    "expire_time_ms",
}
# An engine rejection is the client's problem, not the server's: 4xx, never 5xx.
REJECT_STATUS = {
    RejectCode.UNKNOWN_ORDER: 404,
    RejectCode.ORDER_NOT_OPEN: 409,
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: 409,
    RejectCode.ACCOUNT_DISABLED: 403,
    RejectCode.HALTED: 409,
    RejectCode.MARKET_CLOSED: 409,
    RejectCode.TOO_MANY_OPEN_ORDERS: 429,
    RejectCode.REPLAYED_REQUEST: 401,
    RejectCode.STALE_REQUEST: 401,
    RejectCode.SECOND_FACTOR_USED: 401,
}


def add_order_routes(app: web.Application) -> None:
    app.router.add_post("/v1/orders", place)
    app.router.add_post("/v1/orders/batch", place_batch)
    app.router.add_get("/v1/orders", list_orders)
    app.router.add_delete("/v1/orders", mass_cancel)
    app.router.add_get("/v1/orders/{order_id:[0-9]+}", get_order)
    app.router.add_delete("/v1/orders/{order_id:[0-9]+}", cancel)
    app.router.add_patch("/v1/orders/{order_id:[0-9]+}", amend)
    app.router.add_get("/v1/orders/by-client-id/{client_order_id}", get_order_by_client_id)
    app.router.add_delete("/v1/orders/by-client-id/{client_order_id}", cancel)
    app.router.add_patch("/v1/orders/by-client-id/{client_order_id}", amend)
    app.router.add_get("/v1/fills", fills)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The already-read (and signed) body as a JSON object; empty body is `{}`."""
    raw = await gateway(request).body(request)
    if not raw:
        return {}
    return json_object_of(raw)


def json_object_of(raw: bytes) -> dict[str, Any]:
    """A JSON object from outside, parsed with limits (api/json_input.py), or 400 bad_json."""
    try:
        body = parse_json(raw)
    except JsonRefused as exc:
        raise ApiError(400, "bad_json", f"request body refused: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "request body must be a JSON object")
    return body


def derived_client_id(principal: Principal) -> str:
    return (DERIVED_CLIENT_ID_PREFIX + principal.signature)[:CLIENT_ID_LEN_MAX]


async def place(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.TRADE)
    body = await json_object(request)
    command = place_command(gw, principal, body, derived_client_id(principal))
    outcome = await gw.submit(principal.signed(command))
    status, answer = await placement(gw, outcome, command.client_order_id)
    return web.json_response(answer, status=status)


async def place_batch(request: web.Request) -> web.Response:
    """Up to ORDERS_PER_REQUEST_MAX orders in one signed request, each with its own outcome.

    Every order is checked before any is submitted: one bad order refuses the whole
    request and changes nothing. The orders may share log entries with others'.
    """
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.TRADE)
    body = await json_object(request)
    known_fields(body, {"orders"})
    orders = body.get("orders")
    if not isinstance(orders, list) or not 0 < len(orders) <= ORDERS_PER_REQUEST_MAX:
        raise ApiError(400, "bad_orders", f"orders is a list of 1..{ORDERS_PER_REQUEST_MAX}")
    commands = []
    for index, order in enumerate(orders):
        if not isinstance(order, dict):
            raise ApiError(400, "bad_orders", f"orders[{index}] is not an object")
        try:
            derived = f"{DERIVED_CLIENT_ID_PREFIX}{principal.signature[:56]}-{index}"
            commands.append(place_command(gw, principal, order, derived))
        except ApiError as exc:
            raise ApiError(exc.status, exc.code, f"orders[{index}]: {exc.message}") from None
    outcomes = await gw.submit_many([principal.signed(c, part) for part, c in enumerate(commands)])
    rows = []
    for command, outcome in zip(commands, outcomes, strict=True):
        if isinstance(outcome, ApiError):
            rows.append(
                {
                    "client_order_id": command.client_order_id,
                    "code": outcome.code,
                    "message": outcome.message,
                }
            )
            continue
        rows.append((await placement(gw, outcome, command.client_order_id))[1])
    return web.json_response({"outcomes": rows})


def place_command(
    gw: Gateway, principal: Principal, body: dict[str, Any], derived_cid: str
) -> PlaceOrder:
    """The engine command for one order body, every field checked; `derived_cid` serves
    when the client gave no client order id."""
    known_fields(body, PLACE_FIELDS)
    symbol = text_field(body, "symbol", NAME_LEN_MAX, required=True)
    inst = gw.instrument(symbol)
    order_type = choice(body, "type", ORDER_TYPES, "limit")
    needs_price = order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
    if needs_price and "price" not in body:
        raise ApiError(400, "bad_price", f"a {order_type.name.lower()} order needs a price")
    if not needs_price and "price" in body:
        raise ApiError(400, "bad_price", f"a {order_type.name.lower()} order takes no price")
    if needs_stop != ("stop_price" in body):
        raise ApiError(400, "bad_stop_price", "stop_price goes with stop and stop_limit orders")
    post_only = body.get("post_only", False)
    if type(post_only) is not bool:
        raise ApiError(400, "bad_post_only", "post_only must be true or false")
    expire_time_ms = body.get("expire_time_ms", 0)
    if type(expire_time_ms) is not int or expire_time_ms < 0:
        raise ApiError(400, "bad_expire_time_ms", "expire_time_ms must be a Unix time in ms")
    client_order_id = text_field(body, "client_order_id", CLIENT_ID_LEN_MAX)
    if client_order_id.startswith(DERIVED_CLIENT_ID_PREFIX):
        raise ApiError(400, "bad_client_order_id", "client order ids starting sig- are reserved")
    return PlaceOrder(
        account=principal.account,
        symbol=symbol,
        side=choice(body, "side", SIDES, None),
        qty=gw.qty_units(inst, body.get("qty")),
        price=gw.price_units(inst, body["price"]) if needs_price else 0,
        order_type=order_type,
        tif=choice(body, "tif", TIFS, "gtc"),
        client_order_id=client_order_id or derived_cid,
        stop_price=gw.price_units(inst, body["stop_price"], "stop_price") if needs_stop else 0,
        display_qty=gw.qty_units(inst, body["display_qty"], "display_qty")
        if "display_qty" in body
        else 0,
        post_only=post_only,
        stp=choice(body, "stp", STP_MODES, "cancel_newest"),
        expire_time_ms=expire_time_ms,
    )


async def placement(
    gw: Gateway, outcome: WriteOutcome, client_order_id: str
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) of one placement: accepted or rejected, and the fills it took.

    A retry of an accepted placement gets only the original Accepted event back
    (it changed nothing); its answer is then the order as it stands now.
    """
    events = outcome.events
    head = next((e for e in events if type(e) is Accepted or type(e) is Rejected), None)
    base = {**outcome.where, "client_order_id": client_order_id}
    if head is None:
        raise ApiError(500, "no_outcome", "the state machine gave this command no outcome")
    if type(head) is Rejected:
        return rejection_answer(head, base)
    assert type(head) is Accepted
    order_id = head.order_id
    inst = gw.instrument(head.symbol)
    if len(events) == 1:
        history = await gw.history_at(outcome.seq)
        record = await asyncio.to_thread(history.order, order_id)
        if record is not None:
            return 200, {
                **base,
                "retried": True,
                "status": record["status"],
                "order": order_json(gw, record),
            }
    taker_fills = [e for e in events if type(e) is Trade and e.taker_order_id == order_id]
    fills = [
        {
            "trade_id": e.trade_id,
            "seq": e.seq,
            "price": gw.price_text(inst, e.price),
            "qty": gw.qty_text(inst, e.qty),
            "fee": gw.quote_text(inst, e.taker_fee),
        }
        for e in taker_fills
    ]
    cancelled = next((e for e in events if type(e) is Cancelled and e.order_id == order_id), None)
    return 200, {
        **base,
        "status": str(status_of(order_id, events)),
        "retried": False,
        "order_id": order_id,
        "symbol": head.symbol,
        "qty": gw.qty_text(inst, head.qty),
        "filled_qty": gw.qty_text(inst, sum(e.qty for e in taker_fills)),
        "cancel_reason": str(cancelled.reason) if cancelled else None,
        "fills": fills,
    }


def rejection_answer(event: Rejected, base: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    code = str(event.code)
    answer = {**base, "status": "rejected", "code": code, "message": event.message}
    return REJECT_STATUS.get(code, 400), answer


def rejection(event: Rejected, base: dict[str, Any]) -> web.Response:
    status, answer = rejection_answer(event, base)
    return web.json_response(answer, status=status)


def refusal(outcome: WriteOutcome, base: dict[str, Any]) -> web.Response | None:
    """The 4xx answer to a command the state machine rejected, or None if it did not."""
    rejected = outcome.rejected
    return rejection(rejected, base) if rejected is not None else None


async def cancel(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.TRADE)
    order_id, client_order_id = _order_ref(request)
    command = CancelOrder(principal.account, order_id, client_order_id)
    outcome = await gw.submit(principal.signed(command))
    return _change_answer(outcome, Cancelled)


async def amend(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.TRADE)
    body = await json_object(request)
    known_fields(body, {"symbol", "qty", "price"})
    order_id, client_order_id = _order_ref(request)
    # Amounts are decimals in the order's instrument; the client names it.
    inst = gw.instrument(text_field(body, "symbol", NAME_LEN_MAX, required=True))
    if "qty" not in body and "price" not in body:
        raise ApiError(400, "bad_amend", "an amend changes qty, price or both")
    command = AmendOrder(
        principal.account,
        order_id,
        client_order_id,
        qty=gw.qty_units(inst, body["qty"]) if "qty" in body else 0,
        price=gw.price_units(inst, body["price"]) if "price" in body else 0,
    )
    outcome = await gw.submit(principal.signed(command))
    return _change_answer(outcome, Amended)


async def mass_cancel(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.TRADE)
    symbol = request.query.get("symbol", "")
    if symbol:
        gw.instrument(symbol)
    outcome = await gw.submit(principal.signed(MassCancel(principal.account, symbol)))
    cancelled = [e.order_id for e in outcome.events if type(e) is Cancelled]
    if (refused := refusal(outcome, outcome.where)) is not None:
        return refused
    return web.json_response({**outcome.where, "status": "cancelled", "order_ids": cancelled})


def _order_ref(request: web.Request) -> tuple[int, str]:
    if "order_id" in request.match_info:
        order_id = parse_count(request.match_info["order_id"])
        if order_id is None or not 0 < order_id < 2**63:
            raise ApiError(400, "bad_order_id", "order id out of range")
        return order_id, ""
    client_order_id = request.match_info["client_order_id"]
    if len(client_order_id) > CLIENT_ID_LEN_MAX:
        raise ApiError(400, "bad_client_order_id", "client order id too long")
    return 0, client_order_id


def _change_answer(outcome: WriteOutcome, done: type[Cancelled] | type[Amended]) -> web.Response:
    if (refused := refusal(outcome, outcome.where)) is not None:
        return refused
    event = outcome.first(done)
    if event is None:
        raise ApiError(500, "no_outcome", "the state machine gave this command no outcome")
    status = "cancelled" if done is Cancelled else "amended"
    return web.json_response({**outcome.where, "status": status, "order_id": event.order_id})


# ------------------------------------------------------------------ reads


async def get_order(request: web.Request) -> web.Response:
    gw, principal, history = await _reader(request)
    order_id, _ = _order_ref(request)
    record = await asyncio.to_thread(history.order, order_id)
    if record is None or record["account"] != principal.account:
        raise ApiError(404, "unknown_order", "no such order for this account")
    return web.json_response(order_json(gw, record))


async def get_order_by_client_id(request: web.Request) -> web.Response:
    gw, principal, history = await _reader(request)
    record = await asyncio.to_thread(
        history.order_by_client_id, principal.account, request.match_info["client_order_id"]
    )
    if record is None:
        raise ApiError(404, "unknown_order", "no order with this client order id")
    return web.json_response(order_json(gw, record))


async def list_orders(request: web.Request) -> web.Response:
    """Open orders (`status=open`, default) or all orders, ascending id, `after` as cursor."""
    gw, principal, history = await _reader(request)
    status = request.query.get("status", "open")
    if status not in ("open", "all"):
        raise ApiError(400, "bad_status", "status must be open or all")
    after = int_param(request, "after", 0, 0, 2**63)
    limit = int_param(request, "limit", ORDERS_LIMIT_DEFAULT, 1, READ_LIMIT_MAX)
    rows = await asyncio.to_thread(
        lambda: history.orders_of(
            principal.account, open_only=status == "open", after_order_id=after, limit=limit
        )
    )
    return web.json_response(
        {
            "orders": [order_json(gw, row) for row in rows],
            "next": rows[-1]["order_id"] if len(rows) == limit else None,
        }
    )


async def fills(request: web.Request) -> web.Response:
    gw, principal, history = await _reader(request)
    after = int_param(request, "after", 0, 0, 2**63)
    limit = int_param(request, "limit", ORDERS_LIMIT_DEFAULT, 1, READ_LIMIT_MAX)
    rows = await asyncio.to_thread(history.fills_of, principal.account, after, limit)
    out = []
    for row in rows:
        inst = gw.instrument(row["symbol"])
        out.append(
            {
                **row,
                "side": Side(row["side"]).name.lower(),
                "price": gw.price_text(inst, row["price"]),
                "qty": gw.qty_text(inst, row["qty"]),
                "fee": gw.quote_text(inst, row["fee"]),
            }
        )
    return web.json_response(
        {"fills": out, "next": rows[-1]["trade_id"] if len(rows) == limit else None}
    )


async def _reader(request: web.Request) -> tuple[Gateway, Principal, HistoryStore]:
    """A signed read of the signer's history, as of `min_seq` if the client gave one."""
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.READ)
    await gw.wait_for_seq(request)
    return gw, principal, await gw.history_store()


def order_json(gw: Gateway, record: dict[str, Any]) -> dict[str, Any]:
    inst = gw.instrument(record["symbol"])
    out = dict(record)
    for name in ("price", "stop_price"):
        out[name] = gw.price_text(inst, record[name])
    for name in ("original_qty", "qty", "filled_qty", "leaves", "cancelled_qty", "display_qty"):
        out[name] = gw.qty_text(inst, record[name])
    out["side"] = Side(record["side"]).name.lower()
    out["type"] = OrderType(out.pop("order_type")).name.lower()
    out["tif"] = TimeInForce(record["tif"]).name.lower()
    for name in ("notional", "fees"):
        out[name] = gw.quote_text(inst, record[name])
    # A buy holds quote, a sell holds base.
    out["hold"] = (
        gw.quote_text(inst, record["hold"])
        if record["side"] == Side.BUY
        else gw.qty_text(inst, record["hold"])
    )
    return out
