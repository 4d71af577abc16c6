"""A Binance-compatible subset (`/api/v3/...`), so existing client libraries and bots trade
on raftex unchanged.

Shapes, parameter names, signing and error bodies follow Binance's spot REST
API: `X-MBX-APIKEY`, HMAC-SHA256 (or Ed25519, base64) `signature` over the
query string concatenated with the body, `timestamp` and `recvWindow`, and
errors as `{"code": -NNNN, "msg": "..."}`. Everything goes through the same
gateway as the native API: the same keys, scopes, limits and log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from api.amounts import from_units
from api.binance_params import BinanceError, read_params, read_signed_params
from api.candles import INTERVAL_MS
from api.errors import ApiError
from api.gateway import Gateway, Principal, WriteOutcome, gateway
from api.numbers import is_decimal, parse_count
from api.orders import DERIVED_CLIENT_ID_PREFIX
from api.signing import check_fresh, verify_signature_bytes
from cluster.rocks import READ_LIMIT_MAX
from cluster.views import InstrumentView, KeyView
from engine.codes import (
    KeyKind,
    OrderType,
    RejectCode,
    Scope,
    Side,
    TimeInForce,
    TradingPhase,
    TradingStatus,
)
from engine.commands import CLIENT_ID_LEN_MAX, CancelOrder, MassCancel, PlaceOrder
from engine.events import Accepted, Rejected, Trade
from engine.order_status import OrderStatus
from engine.state import price_band

API_KEY_HEADER = "X-MBX-APIKEY"
REPLAYED_MESSAGE = "Signature for this request was already used."
DEPTH_LIMIT_MAX = 100
TRADES_LIMIT_DEFAULT = 500
KLINES_LIMIT_DEFAULT = 500
ORDERS_LIMIT_DEFAULT = 500

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Native codes -> Binance's (HTTP status is kept from the native error).
_CODE_MAP = {
    "unknown_symbol": -1121,
    "unknown_key": -2015,
    "missing_scope": -2015,
    "bad_signature": -1022,
    "stale_request": -1021,
    "bad_timestamp": -1021,
    "rate_limited": -1003,
    "not_committed": -1007,
    "overloaded": -1008,
    "unknown_order": -2013,
    "behind": -1007,
}
_STATUS = {
    OrderStatus.ARMED: "NEW",
    OrderStatus.OPEN: "NEW",
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELLED: "CANCELED",
    OrderStatus.EXPIRED: "EXPIRED",
}
_TRADING = {
    TradingStatus.OPEN: "TRADING",
    TradingStatus.HALTED: "HALT",
    TradingStatus.CLOSED: "BREAK",
}
ORDER_TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER")
TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
# What each endpoint reads; anything else is refused (-1104), as Binance does.
SYMBOL_PARAMS = frozenset({"symbol"})
LIST_PARAMS = frozenset({"symbol", "limit"})
KLINE_PARAMS = frozenset({"symbol", "interval", "limit"})
NEW_ORDER_PARAMS = frozenset(
    {
        "symbol",
        "side",
        "type",
        "timeInForce",
        "quantity",
        "quoteOrderQty",
        "price",
        "newClientOrderId",
        "newOrderRespType",
    }
)
ORDER_PARAMS = frozenset({"symbol", "orderId", "origClientOrderId"})
ALL_ORDERS_PARAMS = frozenset({"symbol", "orderId", "limit"})
MY_TRADES_PARAMS = frozenset({"symbol", "fromId", "limit"})


def binance_route(handler: Handler) -> Handler:
    """Every failure in Binance's error shape; the native middleware never sees one."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BinanceError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status)
        except ApiError as exc:
            code = _CODE_MAP.get(exc.code, -1102 if exc.code.startswith("bad_") else -1000)
            return web.json_response(
                {"code": code, "msg": exc.message}, status=exc.status, headers=exc.headers
            )

    return wrapped


def add_binance_routes(app: web.Application) -> None:
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/api/v3/ping", ping),
        ("GET", "/api/v3/time", server_time),
        ("GET", "/api/v3/exchangeInfo", exchange_info),
        ("GET", "/api/v3/depth", depth),
        ("GET", "/api/v3/trades", trades),
        ("GET", "/api/v3/aggTrades", agg_trades),
        ("GET", "/api/v3/klines", klines),
        ("GET", "/api/v3/ticker/24hr", ticker_24hr),
        ("GET", "/api/v3/ticker/price", ticker_price),
        ("GET", "/api/v3/ticker/bookTicker", book_ticker),
        ("POST", "/api/v3/order", new_order),
        ("GET", "/api/v3/order", query_order),
        ("DELETE", "/api/v3/order", cancel_order),
        ("GET", "/api/v3/openOrders", open_orders),
        ("DELETE", "/api/v3/openOrders", cancel_open_orders),
        ("GET", "/api/v3/allOrders", all_orders),
        ("GET", "/api/v3/account", account),
        ("GET", "/api/v3/myTrades", my_trades),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, binance_route(handler))
    # Last: what no route above answers, whatever its method.
    for prefix in ("/api/v3", "/api/v1"):
        app.router.add_route("*", prefix + "/{tail:.*}", binance_route(unsupported))


# ------------------------------------------------------------------ parameters


def _param(params: dict[str, str], name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise BinanceError(
                400,
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return None
    return value


def _int_param(
    params: dict[str, str], name: str, default: int | None, low: int, high: int
) -> int | None:
    text = _param(params, name, required=default is None)
    if text is None:
        return default
    value = parse_count(text)
    if value is None:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    if not low <= value <= high:
        raise BinanceError(400, -1102, f"Parameter '{name}' must be {low}..{high}.")
    return value


def _symbol(gw: Gateway, params: dict[str, str]) -> InstrumentView:
    symbol = _param(params, "symbol")
    inst = gw.node.view.instruments.get(symbol)
    if inst is None:
        raise BinanceError(400, -1121, "Invalid symbol.")
    return inst


def _public_params(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    return read_params((request.rel_url.raw_query_string,), allowed)


async def _signed(
    request: web.Request, scope: Scope, allowed: frozenset[str]
) -> tuple[Gateway, Principal, dict[str, str]]:
    """Checks the parameters (those `allowed`, and timestamp and recvWindow), the key, the
    signature over query + body, the timestamp window and the scope."""
    gw = gateway(request)
    key_id = request.headers.get(API_KEY_HEADER)
    if not key_id:
        raise BinanceError(401, -2014, "API-key format invalid.")
    try:
        key = await gw.known_key(key_id)
    except ApiError:
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.") from None
    try:
        body = (await gw.body(request)).decode("utf-8")
    except UnicodeDecodeError:
        raise BinanceError(400, -1100, "Illegal characters found in a parameter.") from None
    signed = read_signed_params(request.rel_url.raw_query_string, body, allowed)
    params = signed.params
    now_ms = int(time.time() * 1000)
    try:
        timestamp_ms = check_fresh(
            _param(params, "timestamp") or "", params.get("recvWindow"), now_ms
        )
    except ApiError:
        raise BinanceError(
            400, -1021, "Timestamp for this request is outside of the recvWindow."
        ) from None
    canonical = _verify(gw, key, signed.payload.encode(), signed.signature)
    gw.key_limits.take(key_id)
    try:
        gw.replay.check(canonical, now_ms)
    except ApiError:
        raise BinanceError(400, -1022, REPLAYED_MESSAGE) from None
    if not key.scopes & scope:
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    return gw, Principal(key.account, key_id, key.scopes, canonical, timestamp_ms), params


def _verify(gw: Gateway, key: KeyView, payload: bytes, signature: str) -> str:
    """HMAC keys sign in hex, Ed25519 keys in (url-encoded) base64. Returns the signature's
    bytes in hex: one identity per request however the text was spelled or encoded."""
    try:
        text = unquote(signature, errors="strict")
        if not text.isascii():
            raise ValueError("not ASCII")
        raw = (
            bytes.fromhex(text)
            if key.kind == KeyKind.HMAC
            else base64.b64decode(text, validate=True)
        )
        verify_signature_bytes(key, gw.sealer, payload, raw)
    except (ApiError, ValueError, binascii.Error):
        raise BinanceError(400, -1022, "Signature for this request is not valid.") from None
    return raw.hex()


# ------------------------------------------------------------------ market data


async def ping(request: web.Request) -> web.Response:
    return web.json_response({})


async def server_time(request: web.Request) -> web.Response:
    return web.json_response({"serverTime": int(time.time() * 1000)})


async def exchange_info(request: web.Request) -> web.Response:
    gw = gateway(request)
    params = _public_params(request, SYMBOL_PARAMS)
    instruments = sorted(gw.node.view.instruments.items())
    wanted = params.get("symbol")
    if wanted is not None:
        instruments = [(s, i) for s, i in instruments if s == wanted]
        if not instruments:
            raise BinanceError(400, -1121, "Invalid symbol.")
    config = gw.node.config
    return web.json_response(
        {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "SECOND",
                    "intervalNum": 1,
                    "limit": int(config.rate_limit_key_per_s),
                }
            ],
            "exchangeFilters": [],
            "symbols": [_symbol_info(gw, inst) for _, inst in instruments],
        }
    )


# Binance's symbol statuses for the phases of a trading day: a call phase gathers orders for
# an auction (AUCTION_MATCH), pre-open is PRE_TRADING, after the close POST_TRADING and
# END_OF_DAY. An admin halt or close wins over the phase.
_PHASE_STATUS = {
    TradingPhase.CONTINUOUS: "TRADING",
    TradingPhase.PRE_OPEN: "PRE_TRADING",
    TradingPhase.OPENING_AUCTION: "AUCTION_MATCH",
    TradingPhase.PRE_CLOSE: "AUCTION_MATCH",
    TradingPhase.CLOSING_AUCTION: "AUCTION_MATCH",
    TradingPhase.VOLATILITY_AUCTION: "AUCTION_MATCH",
    TradingPhase.POST_CLOSE: "POST_TRADING",
    TradingPhase.CLOSED: "END_OF_DAY",
}


def _symbol_status(inst: InstrumentView) -> str:
    if inst.status != TradingStatus.OPEN:
        return _TRADING[TradingStatus(inst.status)]
    return _PHASE_STATUS[TradingPhase(inst.phase)]


def _symbol_info(gw: Gateway, inst: InstrumentView) -> dict[str, Any]:
    qty_places = gw.scales(inst)[1]
    low, high = price_band(inst.reference_price, inst.price_band_bps, inst.tick_size)
    return {
        "symbol": inst.symbol,
        "status": _symbol_status(inst),
        "baseAsset": inst.base,
        "baseAssetPrecision": qty_places,
        "quoteAsset": inst.quote,
        "quotePrecision": gw.decimals(inst.quote),
        "quoteAssetPrecision": gw.decimals(inst.quote),
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": True,
        "ocoAllowed": False,
        "quoteOrderQtyMarketAllowed": False,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": gw.price_text(inst, low),
                "maxPrice": gw.price_text(inst, high),
                "tickSize": gw.price_text(inst, inst.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": gw.qty_text(inst, inst.min_qty),
                "maxQty": gw.qty_text(inst, inst.max_qty),
                "stepSize": gw.qty_text(inst, inst.lot_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": gw.quote_text(inst, 0),
                "applyMinToMarket": False,
                "maxNotional": gw.quote_text(inst, inst.max_notional),
                "applyMaxToMarket": True,
                "avgPriceMins": 0,
            },
        ],
        "permissions": ["SPOT"],
        "defaultSelfTradePreventionMode": "EXPIRE_TAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


async def depth(request: web.Request) -> web.Response:
    gw = gateway(request)
    params = _public_params(request, LIST_PARAMS)
    inst = _symbol(gw, params)
    limit = _int_param(params, "limit", 100, 1, 5000) or 100
    view = gw.node.view
    book = view.books.get(inst.symbol)

    def levels(rows: tuple) -> list[list[str]]:
        return [[gw.price_text(inst, p), gw.qty_text(inst, q)] for p, q, _ in rows[:limit]]

    return web.json_response(
        {
            "lastUpdateId": view.last_seq,
            "bids": levels(book.bids) if book else [],
            "asks": levels(book.asks) if book else [],
        }
    )


async def _recent_trades(
    request: web.Request,
) -> tuple[Gateway, InstrumentView, list[dict[str, Any]]]:
    """The symbol's latest trades (up to `limit`), oldest first."""
    gw = gateway(request)
    params = _public_params(request, LIST_PARAMS)
    inst = _symbol(gw, params)
    limit = _int_param(params, "limit", TRADES_LIMIT_DEFAULT, 1, READ_LIMIT_MAX) or 1
    history = await gw.history_store()
    rows = await asyncio.to_thread(history.trades, inst.symbol, limit, 0)
    return gw, inst, rows[::-1]


async def agg_trades(request: web.Request) -> web.Response:
    """Binance's compressed trades. Every raftex trade is its own aggregate (first and last
    trade id equal): a fill is already one price, one taker and one maker."""
    gw, inst, rows = await _recent_trades(request)
    return web.json_response(
        [
            {
                "a": row["trade_id"],
                "p": gw.price_text(inst, row["price"]),
                "q": gw.qty_text(inst, row["qty"]),
                "f": row["trade_id"],
                "l": row["trade_id"],
                "T": row["ts_ms"],
                "m": row["aggressor_side"] == Side.SELL,
                "M": True,
            }
            for row in rows
        ]
    )


async def trades(request: web.Request) -> web.Response:
    gw, inst, rows = await _recent_trades(request)
    return web.json_response(
        [
            {
                "id": row["trade_id"],
                "price": gw.price_text(inst, row["price"]),
                "qty": gw.qty_text(inst, row["qty"]),
                "quoteQty": gw.quote_text(inst, row["price"] * row["qty"]),
                "time": row["ts_ms"],
                "isBuyerMaker": row["aggressor_side"] == Side.SELL,
                "isBestMatch": True,
            }
            for row in rows
        ]
    )


async def klines(request: web.Request) -> web.Response:
    gw = gateway(request)
    params = _public_params(request, KLINE_PARAMS)
    inst = _symbol(gw, params)
    interval = _param(params, "interval")
    if interval not in INTERVAL_MS:
        raise BinanceError(400, -1120, "Invalid interval.")
    limit = _int_param(params, "limit", KLINES_LIMIT_DEFAULT, 1, 1000) or 1
    width_ms = INTERVAL_MS[interval]
    return web.json_response(
        [
            [
                c.open_ms,
                gw.price_text(inst, c.open),
                gw.price_text(inst, c.high),
                gw.price_text(inst, c.low),
                gw.price_text(inst, c.close),
                gw.qty_text(inst, c.volume),
                c.open_ms + width_ms - 1,
                gw.quote_text(inst, c.quote_volume),
                c.trades,
                "0",
                "0",
                "0",
            ]
            for c in gw.candles.candles(inst.symbol, interval, limit)
        ]
    )


def _instruments(gw: Gateway, params: dict[str, str]) -> list[InstrumentView] | InstrumentView:
    if "symbol" in params:
        return _symbol(gw, params)
    return [inst for _, inst in sorted(gw.node.view.instruments.items())]


def _top(gw: Gateway, inst: InstrumentView) -> dict[str, str]:
    book = gw.node.view.books.get(inst.symbol)
    bid = book.bids[0] if book and book.bids else (0, 0, 0)
    ask = book.asks[0] if book and book.asks else (0, 0, 0)
    return {
        "bidPrice": gw.price_text(inst, bid[0]),
        "bidQty": gw.qty_text(inst, bid[1]),
        "askPrice": gw.price_text(inst, ask[0]),
        "askQty": gw.qty_text(inst, ask[1]),
    }


def _one_or_all(
    gw: Gateway, params: dict[str, str], row: Callable[[Gateway, InstrumentView], dict]
) -> web.Response:
    chosen = _instruments(gw, params)
    if isinstance(chosen, list):
        return web.json_response([row(gw, inst) for inst in chosen])
    return web.json_response(row(gw, chosen))


async def ticker_24hr(request: web.Request) -> web.Response:
    return _one_or_all(gateway(request), _public_params(request, SYMBOL_PARAMS), _ticker_row)


def _ticker_row(gw: Gateway, inst: InstrumentView) -> dict[str, Any]:
    view = gw.node.view
    now_ms = view.log_time_ms
    day = gw.candles.ticker(inst.symbol, now_ms)
    last = view.last_trades.get(inst.symbol)
    last_price = last.price if last else 0
    open_price = day.open if day else last_price
    change = last_price - open_price
    percent = f"{change * 100 / open_price:.3f}" if open_price else "0.000"
    weighted = day.quote_volume // day.volume if day and day.volume else last_price
    return {
        "symbol": inst.symbol,
        "priceChange": gw.price_text(inst, change),
        "priceChangePercent": percent,
        "weightedAvgPrice": gw.price_text(inst, weighted),
        "prevClosePrice": gw.price_text(inst, open_price),
        "lastPrice": gw.price_text(inst, last_price),
        "lastQty": gw.qty_text(inst, last.qty if last else 0),
        **_top(gw, inst),
        "openPrice": gw.price_text(inst, open_price),
        "highPrice": gw.price_text(inst, day.high if day else last_price),
        "lowPrice": gw.price_text(inst, day.low if day else last_price),
        "volume": gw.qty_text(inst, day.volume if day else 0),
        "quoteVolume": gw.quote_text(inst, day.quote_volume if day else 0),
        "openTime": now_ms - 86_400_000,
        "closeTime": now_ms,
        "firstId": -1,
        "lastId": -1,
        "count": day.trades if day else 0,
    }


async def ticker_price(request: web.Request) -> web.Response:
    def row(gw: Gateway, inst: InstrumentView) -> dict[str, str]:
        last = gw.node.view.last_trades.get(inst.symbol)
        return {"symbol": inst.symbol, "price": gw.price_text(inst, last.price if last else 0)}

    return _one_or_all(gateway(request), _public_params(request, SYMBOL_PARAMS), row)


async def book_ticker(request: web.Request) -> web.Response:
    def row(gw: Gateway, inst: InstrumentView) -> dict[str, str]:
        return {"symbol": inst.symbol, **_top(gw, inst)}

    return _one_or_all(gateway(request), _public_params(request, SYMBOL_PARAMS), row)


# ------------------------------------------------------------------ orders


async def new_order(request: web.Request) -> web.Response:
    gw, principal, params = await _signed(request, Scope.TRADE, NEW_ORDER_PARAMS)
    inst = _symbol(gw, params)
    side_text = _param(params, "side")
    if side_text not in ("BUY", "SELL"):
        raise BinanceError(400, -1117, "Invalid side.")
    kind = _param(params, "type")
    if kind not in ORDER_TYPES:
        raise BinanceError(400, -1116, "Invalid orderType.")
    if "quoteOrderQty" in params:
        raise BinanceError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
    qty = _units(gw.qty_units, inst, _param(params, "quantity"), "quantity")
    tif = TimeInForce.GTC
    price = 0
    if kind == "MARKET":
        for name in ("price", "timeInForce"):
            if name in params:
                raise BinanceError(400, -1106, f"Parameter '{name}' sent when not required.")
        order_type, tif = OrderType.MARKET, TimeInForce.IOC
    else:
        order_type = OrderType.LIMIT
        price = _units(gw.price_units, inst, _param(params, "price"), "price")
        if kind == "LIMIT":
            tif_text = _param(params, "timeInForce")
            if tif_text not in TIFS:
                raise BinanceError(400, -1115, "Invalid timeInForce.")
            tif = TIFS[tif_text]
        elif "timeInForce" in params:
            raise BinanceError(400, -1106, "Parameter 'timeInForce' sent when not required.")
    client_order_id = (
        params.get("newClientOrderId")
        or (DERIVED_CLIENT_ID_PREFIX + principal.signature)[:CLIENT_ID_LEN_MAX]
    )
    if len(client_order_id) > CLIENT_ID_LEN_MAX:
        raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'.")
    response_type = params.get("newOrderRespType", "FULL")
    if response_type not in ("ACK", "RESULT", "FULL"):
        raise BinanceError(400, -1102, "Parameter 'newOrderRespType' must be ACK, RESULT or FULL.")
    command = PlaceOrder(
        account=principal.account,
        symbol=inst.symbol,
        side=Side.BUY if side_text == "BUY" else Side.SELL,
        qty=qty,
        price=price,
        order_type=order_type,
        tif=tif,
        client_order_id=client_order_id,
        post_only=kind == "LIMIT_MAKER",
    )
    outcome = await gw.submit(principal.signed(command))
    return await _new_order_answer(gw, inst, outcome, command, kind, response_type)


def _units(convert: Callable[..., int], inst: InstrumentView, text: str | None, name: str) -> int:
    if not is_decimal(text):
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    try:
        return convert(inst, text, name)
    except ApiError:
        raise BinanceError(400, -1111, f"Parameter '{name}' has too much precision.") from None


async def _new_order_answer(
    gw: Gateway,
    inst: InstrumentView,
    outcome: WriteOutcome,
    command: PlaceOrder,
    kind: str,
    response_type: str,
) -> web.Response:
    rejected = outcome.rejected
    if rejected is not None:
        _refuse_replay(rejected)
        raise BinanceError(400, -2010, f"{rejected.message} ({rejected.code})")
    head = outcome.first(Accepted)
    if head is None:
        raise BinanceError(500, -1000, "The order got no outcome.")
    ack = {
        "symbol": inst.symbol,
        "orderId": head.order_id,
        "orderListId": -1,
        "clientOrderId": command.client_order_id,
        "transactTime": head.ts_ms,
    }
    if response_type == "ACK":
        return web.json_response(ack)
    history = await gw.history_at(outcome.seq)
    record = await asyncio.to_thread(history.order, head.order_id)
    if record is None:
        raise BinanceError(503, -1007, "Order status unknown; query it by clientOrderId.")
    answer = {**ack, **_order_row(gw, inst, record, kind)}
    if response_type == "FULL":
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
    return web.json_response(answer)


def _refuse_replay(rejected: Rejected) -> None:
    """A write the state machine refused for its signature, in Binance's words."""
    if rejected.code == RejectCode.REPLAYED_REQUEST:
        raise BinanceError(400, -1022, REPLAYED_MESSAGE)
    if rejected.code == RejectCode.STALE_REQUEST:
        raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


def _order_row(
    gw: Gateway, inst: InstrumentView, record: dict[str, Any], kind: str | None = None
) -> dict[str, Any]:
    if kind is None:
        if record["order_type"] == OrderType.MARKET:
            kind = "MARKET"
        else:
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


async def _find_order(
    gw: Gateway, principal: Principal, params: dict[str, str], inst: InstrumentView
) -> dict[str, Any]:
    order_id = _int_param(params, "orderId", 0, 0, 2**63 - 1)
    client_order_id = params.get("origClientOrderId", "")
    if not order_id and not client_order_id:
        raise BinanceError(
            400,
            -1102,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
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


async def query_order(request: web.Request) -> web.Response:
    gw, principal, params = await _signed(request, Scope.READ, ORDER_PARAMS)
    inst = _symbol(gw, params)
    record = await _find_order(gw, principal, params, inst)
    return web.json_response(_order_row(gw, inst, record))


async def cancel_order(request: web.Request) -> web.Response:
    gw, principal, params = await _signed(request, Scope.TRADE, ORDER_PARAMS)
    inst = _symbol(gw, params)
    record = await _find_order(gw, principal, params, inst)
    outcome = await gw.submit(principal.signed(CancelOrder(principal.account, record["order_id"])))
    rejected = outcome.rejected
    if rejected is not None:
        _refuse_replay(rejected)
        raise BinanceError(400, -2011, "Unknown order sent.")
    history = await gw.history_at(outcome.seq)
    record = await asyncio.to_thread(history.order, record["order_id"]) or record
    row = _order_row(gw, inst, record)
    row["origClientOrderId"] = row["clientOrderId"]
    return web.json_response(row)


async def cancel_open_orders(request: web.Request) -> web.Response:
    """DELETE openOrders: every open order of the account in the symbol, cancelled at once
    (one MassCancel in the log), answered as the cancelled orders."""
    gw, principal, params = await _signed(request, Scope.TRADE, SYMBOL_PARAMS)
    if "symbol" not in params:
        raise BinanceError(400, -1102, "Mandatory parameter 'symbol' was not sent.")
    inst = _symbol(gw, params)
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
        _refuse_replay(outcome.rejected)
        raise BinanceError(400, -2011, f"{outcome.rejected.message} ({outcome.rejected.code})")
    history = await gw.history_at(outcome.seq)
    answer = []
    for order_id in order_ids:
        record = await asyncio.to_thread(history.order, order_id)
        if record is not None:
            row = _order_row(gw, inst, record)
            row["origClientOrderId"] = row["clientOrderId"]
            answer.append(row)
    return web.json_response(answer)


async def unsupported(request: web.Request) -> web.Response:
    """Any other path or method under /api/v3 and /api/v1: Binance's error shape, so that
    a client library raises its own clean error instead of failing to parse an answer."""
    raise BinanceError(
        404, -1020, f"This operation is not supported: {request.method} {request.path}"
    )


async def _orders(
    request: web.Request, allowed: frozenset[str], open_only: bool
) -> tuple[Gateway, Principal, dict[str, str], list[dict[str, Any]]]:
    gw, principal, params = await _signed(request, Scope.READ, allowed)
    symbol = params.get("symbol")
    if symbol is not None:
        _symbol(gw, params)
    after = (_int_param(params, "orderId", 1, 1, 2**63 - 1) or 1) - 1
    limit = _int_param(params, "limit", ORDERS_LIMIT_DEFAULT, 1, READ_LIMIT_MAX) or 1
    history = await gw.history_store()
    rows = await asyncio.to_thread(
        lambda: history.orders_of(
            principal.account, open_only=open_only, after_order_id=after, limit=READ_LIMIT_MAX
        )
    )
    rows = [r for r in rows if symbol is None or r["symbol"] == symbol][:limit]
    return gw, principal, params, rows


async def open_orders(request: web.Request) -> web.Response:
    gw, _, _, rows = await _orders(request, SYMBOL_PARAMS, open_only=True)
    return web.json_response([_order_row(gw, gw.instrument(r["symbol"]), r) for r in rows])


async def all_orders(request: web.Request) -> web.Response:
    gw, _, params, rows = await _orders(request, ALL_ORDERS_PARAMS, open_only=False)
    if "symbol" not in params:
        raise BinanceError(400, -1102, "Mandatory parameter 'symbol' was not sent.")
    return web.json_response([_order_row(gw, gw.instrument(r["symbol"]), r) for r in rows])


async def account(request: web.Request) -> web.Response:
    gw, principal, _ = await _signed(request, Scope.READ, frozenset())
    view = gw.node.view
    assets = view.balances.get(principal.account, {})
    fee_bps = [
        (inst.maker_fee_bps, inst.taker_fee_bps) for _, inst in sorted(view.instruments.items())
    ]
    maker, taker = max(fee_bps, default=(0, 0))
    return web.json_response(
        {
            "makerCommission": maker,
            "takerCommission": taker,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": f"{maker / 10_000:.8f}",
                "taker": f"{taker / 10_000:.8f}",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": bool(principal.scopes & Scope.TRADE),
            "canWithdraw": bool(principal.scopes & Scope.WITHDRAW),
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": view.log_time_ms,
            "accountType": "SPOT",
            "balances": [
                {
                    "asset": asset,
                    "free": _amount(gw, asset, assets[asset][0]),
                    "locked": _amount(gw, asset, assets[asset][1]),
                }
                for asset in sorted(assets)
            ],
            "permissions": ["SPOT"],
            "uid": 0,
        }
    )


def _amount(gw: Gateway, asset: str, units: int) -> str:
    return from_units(units, gw.decimals(asset))


async def my_trades(request: web.Request) -> web.Response:
    gw, principal, params = await _signed(request, Scope.READ, MY_TRADES_PARAMS)
    inst = _symbol(gw, params)
    after = (_int_param(params, "fromId", 1, 1, 2**63 - 1) or 1) - 1
    limit = _int_param(params, "limit", ORDERS_LIMIT_DEFAULT, 1, READ_LIMIT_MAX) or 1
    history = await gw.history_store()
    rows = await asyncio.to_thread(history.fills_of, principal.account, after, READ_LIMIT_MAX)
    rows = [r for r in rows if r["symbol"] == inst.symbol][:limit]
    return web.json_response(
        [
            {
                "symbol": inst.symbol,
                "id": r["trade_id"],
                "orderId": r["order_id"],
                "orderListId": -1,
                "price": gw.price_text(inst, r["price"]),
                "qty": gw.qty_text(inst, r["qty"]),
                "quoteQty": gw.quote_text(inst, r["price"] * r["qty"]),
                "commission": gw.quote_text(inst, r["fee"]),
                "commissionAsset": inst.quote,
                "time": r["ts_ms"],
                "isBuyer": r["side"] == Side.BUY,
                "isMaker": r["role"] == "maker",
                "isBestMatch": True,
            }
            for r in rows
        ]
    )
