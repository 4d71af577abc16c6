"""Binance's spot REST dialect (`/api/v3/...`), so existing client libraries and bots trade
on raftex unchanged.

Shapes, parameter names, signing and error bodies follow Binance's spot REST
API: `X-MBX-APIKEY`, HMAC-SHA256 (or Ed25519, base64) `signature` over the
query string concatenated with the body, `timestamp` and `recvWindow`, errors
as `{"code": -NNNN, "msg": "..."}`, request weight per IP per minute. Every path
under `/api/v3`, `/api/v1` and `/sapi/v1` answers in that shape, the ones raftex does not
offer (OCO and other order lists, SOR, margin) with Binance's own "unsupported"
error. Everything goes through the same gateway as the native API: the same
keys, scopes, limits and log.
"""

from __future__ import annotations

from aiohttp import web

from api import binance_account, binance_market, binance_orders
from api.binance_params import BinanceError
from api.binance_request import BINANCE_PATH_PREFIXES, Handler, binance_route
from api.binance_user_stream import add_user_data_stream_routes
from api.binance_weight import WEIGHTS_KEY, RequestWeights

# (method, path, handler, request weight), weights as Binance's documentation gives them.
ROUTES: list[tuple[str, str, Handler, int]] = [
    ("GET", "/api/v3/ping", binance_market.ping, 1),
    ("GET", "/api/v3/time", binance_market.server_time, 1),
    ("GET", "/api/v3/exchangeInfo", binance_market.exchange_info, 20),
    ("GET", "/api/v3/depth", binance_market.depth, 5),
    ("GET", "/api/v3/trades", binance_market.trades, 25),
    ("GET", "/api/v3/historicalTrades", binance_market.historical_trades, 25),
    ("GET", "/api/v3/aggTrades", binance_market.agg_trades, 4),
    ("GET", "/api/v3/klines", binance_market.klines, 2),
    ("GET", "/api/v3/uiKlines", binance_market.klines, 2),
    ("GET", "/api/v3/avgPrice", binance_market.avg_price, 2),
    ("GET", "/api/v3/ticker/24hr", binance_market.ticker_24hr, 2),
    ("GET", "/api/v3/ticker/tradingDay", binance_market.ticker_trading_day, 4),
    ("GET", "/api/v3/ticker", binance_market.ticker_rolling, 4),
    ("GET", "/api/v3/ticker/price", binance_market.ticker_price, 2),
    ("GET", "/api/v3/ticker/bookTicker", binance_market.book_ticker, 2),
    ("POST", "/api/v3/order", binance_orders.new_order, 1),
    ("POST", "/api/v3/order/test", binance_orders.test_order, 1),
    ("GET", "/api/v3/order", binance_orders.query_order, 4),
    ("DELETE", "/api/v3/order", binance_orders.cancel_order, 1),
    ("POST", "/api/v3/order/cancelReplace", binance_orders.cancel_replace, 1),
    ("GET", "/api/v3/openOrders", binance_orders.open_orders, 6),
    ("DELETE", "/api/v3/openOrders", binance_orders.cancel_open_orders, 1),
    ("GET", "/api/v3/allOrders", binance_orders.all_orders, 20),
    ("GET", "/api/v3/account", binance_account.account, 20),
    ("GET", "/api/v3/account/commission", binance_account.commission, 20),
    ("GET", "/api/v3/myTrades", binance_account.my_trades, 20),
    ("GET", "/sapi/v1/asset/tradeFee", binance_account.trade_fee, 1),
]
# Order lists (OCO, OTO, OTOCO) and smart order routing: Binance's paths, raftex's refusal.
ORDER_LIST_PATHS = (
    ("POST", "/api/v3/order/oco"),
    ("POST", "/api/v3/orderList/oco"),
    ("POST", "/api/v3/orderList/oto"),
    ("POST", "/api/v3/orderList/otoco"),
    ("DELETE", "/api/v3/orderList"),
    ("GET", "/api/v3/orderList"),
    ("GET", "/api/v3/allOrderList"),
    ("GET", "/api/v3/openOrderList"),
    ("POST", "/api/v3/sor/order"),
    ("POST", "/api/v3/sor/order/test"),
)


def add_binance_routes(app: web.Application, weight_per_min: int) -> None:
    """`weight_per_min`: each caller's request weight a minute (0: counted, not limited)."""
    add_user_data_stream_routes(app)
    app[WEIGHTS_KEY] = RequestWeights(weight_per_min)
    for method, path, handler, weight in ROUTES:
        app.router.add_route(method, path, binance_route(handler, weight))
    for method, path in ORDER_LIST_PATHS:
        app.router.add_route(method, path, binance_route(order_list))
    # Last: what no route above answers, whatever its method.
    for prefix in BINANCE_PATH_PREFIXES:
        app.router.add_route("*", prefix + "{tail:.*}", binance_route(unsupported))


async def order_list(request: web.Request) -> web.Response:
    """Order lists need contingent orders the engine does not have: Binance's answer for a
    symbol that does not allow them."""
    raise BinanceError(400, -1013, "OCO, OTO and OTOCO order lists are not supported.")


async def unsupported(request: web.Request) -> web.Response:
    """Any other path or method under /api/v3, /api/v1 and /sapi/v1: Binance's error shape, so that
    a client library raises its own clean error instead of failing to parse an answer."""
    raise BinanceError(
        404, -1020, f"This operation is not supported: {request.method} {request.path}"
    )
