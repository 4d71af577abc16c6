"""The Binance-compatible subset, checked against the shapes Binance documents for spot REST.

Requests are built and signed exactly as Binance clients do: parameters
url-encoded in the query (GET, DELETE) or the form body (POST), `timestamp`
in ms, and `signature` = hex HMAC-SHA256 of query + body, sent last.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api.conftest import ApiCluster
from tests.api.raw import binance_call as call

pytestmark = pytest.mark.asyncio

ORDER_KEYS = {
    "symbol",
    "orderId",
    "orderListId",
    "clientOrderId",
    "price",
    "origQty",
    "executedQty",
    "cummulativeQuoteQty",
    "status",
    "timeInForce",
    "type",
    "side",
    "stopPrice",
    "icebergQty",
    "time",
    "updateTime",
    "isWorking",
    "workingTime",
    "origQuoteOrderQty",
}


async def test_public_endpoints_have_binance_shapes(api: ApiCluster) -> None:
    node = api.followers[0]
    async with api.client("alice") as alice, api.client("bob") as bob:
        await alice.place_order("MSFT", "sell", "1", price="420.00")
        traded = await bob.place_order("MSFT", "buy", "1", order_type="market", tif="ioc")
        await bob.book("MSFT", node=node, min_seq=traded["seq"])
    assert await call(node, "GET", "/api/v3/ping") == (200, {})
    status, now = await call(node, "GET", "/api/v3/time")
    assert status == 200 and abs(now["serverTime"] - time.time() * 1000) < 60_000
    status, info = await call(node, "GET", "/api/v3/exchangeInfo")
    symbol = next(s for s in info["symbols"] if s["symbol"] == "AAPL")
    assert symbol["status"] == "TRADING" and symbol["baseAsset"] == "AAPL"
    assert symbol["quoteAsset"] == "USD" and "LIMIT_MAKER" in symbol["orderTypes"]
    filters = {f["filterType"]: f for f in symbol["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01"
    assert filters["LOT_SIZE"]["stepSize"] == "1" and filters["LOT_SIZE"]["minQty"] == "1"
    assert set(filters["NOTIONAL"]) >= {"minNotional", "maxNotional", "applyMinToMarket"}
    status, depth = await call(node, "GET", "/api/v3/depth", {"symbol": "AAPL", "limit": 5})
    assert status == 200 and set(depth) == {"lastUpdateId", "bids", "asks"}
    assert all(len(level) == 2 for level in depth["bids"] + depth["asks"])
    status, trades = await call(node, "GET", "/api/v3/trades", {"symbol": "MSFT", "limit": 5})
    assert status == 200 and trades
    assert set(trades[0]) == {
        "id",
        "price",
        "qty",
        "quoteQty",
        "time",
        "isBuyerMaker",
        "isBestMatch",
    }
    assert [t["id"] for t in trades] == sorted(t["id"] for t in trades)
    status, klines = await call(node, "GET", "/api/v3/klines", {"symbol": "MSFT", "interval": "1m"})
    assert status == 200 and len(klines[-1]) == 12 and klines[-1][6] == klines[-1][0] + 59_999
    status, day = await call(node, "GET", "/api/v3/ticker/24hr", {"symbol": "MSFT"})
    assert {"priceChange", "lastPrice", "volume", "count", "bidPrice", "askPrice"} <= set(day)
    status, prices = await call(node, "GET", "/api/v3/ticker/price")
    assert status == 200 and {p["symbol"] for p in prices} >= {"AAPL", "MSFT", "NVDA", "TSLA"}
    status, top = await call(node, "GET", "/api/v3/ticker/bookTicker", {"symbol": "AAPL"})
    assert set(top) == {"symbol", "bidPrice", "bidQty", "askPrice", "askQty"}


async def test_order_lifecycle_with_hmac_signed_requests(api: ApiCluster) -> None:
    node = api.followers[1]
    key = api.key("alice", "hmac")
    client_id = uuid.uuid4().hex[:20]
    status, placed = await call(
        node,
        "POST",
        "/api/v3/order",
        {
            "symbol": "NVDA",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "3",
            "price": "135.00",
            "newClientOrderId": client_id,
        },
        key,
    )
    assert status == 200, placed
    assert set(placed) >= ORDER_KEYS and placed["status"] == "NEW" and placed["fills"] == []
    assert placed["clientOrderId"] == client_id and placed["origQty"] == "3"
    status, got = await call(
        node, "GET", "/api/v3/order", {"symbol": "NVDA", "origClientOrderId": client_id}, key
    )
    assert status == 200 and got["orderId"] == placed["orderId"] and got["isWorking"] is True
    status, listed = await call(node, "GET", "/api/v3/openOrders", {"symbol": "NVDA"}, key)
    assert placed["orderId"] in [o["orderId"] for o in listed]
    status, cancelled = await call(
        node, "DELETE", "/api/v3/order", {"symbol": "NVDA", "orderId": placed["orderId"]}, key
    )
    assert status == 200 and cancelled["status"] == "CANCELED"
    status, history = await call(node, "GET", "/api/v3/allOrders", {"symbol": "NVDA"}, key)
    assert any(o["orderId"] == placed["orderId"] and o["status"] == "CANCELED" for o in history)
    status, account = await call(node, "GET", "/api/v3/account", {}, key)
    assert status == 200 and account["canTrade"] is True and account["accountType"] == "SPOT"
    usd = next(b for b in account["balances"] if b["asset"] == "USD")
    assert set(usd) == {"asset", "free", "locked"}


async def test_market_order_fills_and_shows_in_my_trades(api: ApiCluster) -> None:
    node = api.followers[0]
    seller, buyer = api.key("carol", "hmac"), api.key("dave", "hmac")
    await call(
        node,
        "POST",
        "/api/v3/order",
        {
            "symbol": "TSLA",
            "side": "SELL",
            "type": "LIMIT_MAKER",
            "quantity": "2",
            "price": "251.00",
        },
        seller,
    )
    status, bought = await call(
        node,
        "POST",
        "/api/v3/order",
        {"symbol": "TSLA", "side": "BUY", "type": "MARKET", "quantity": "2"},
        buyer,
    )
    assert status == 200 and bought["status"] == "FILLED", bought
    assert bought["fills"] and bought["fills"][0]["commissionAsset"] == "USD"
    status, mine = await call(node, "GET", "/api/v3/myTrades", {"symbol": "TSLA"}, buyer)
    trade_ids = {f["tradeId"] for f in bought["fills"]}
    assert {t["id"] for t in mine if t["isBuyer"] and not t["isMaker"]} >= trade_ids


@pytest.mark.parametrize(
    ("path", "params", "change", "status", "code"),
    [
        ("/api/v3/depth", {"symbol": "NOPE"}, None, 400, -1121),
        ("/api/v3/depth", {}, None, 400, -1102),
        ("/api/v3/klines", {"symbol": "AAPL", "interval": "7m"}, None, 400, -1120),
        ("/api/v3/account", {}, {"secret": "wrong"}, 400, -1022),
        ("/api/v3/account", {}, {"timestamp_ms": 1_000}, 400, -1021),
        ("/api/v3/account", {}, {"api_key": "nope"}, 401, -2015),
        ("/api/v3/order", {"symbol": "AAPL", "orderId": 999_999_999}, {}, 400, -2013),
        ("/api/v3/order", {"symbol": "AAPL"}, {}, 400, -1102),
    ],
)
async def test_errors_have_binance_codes(
    api: ApiCluster, path: str, params: dict, change: dict | None, status: int, code: int
) -> None:
    key = None
    extra: dict[str, Any] = {}
    if change is not None:
        key = {**api.key("bob", "hmac"), **{k: v for k, v in change.items() if k == "api_key"}}
        extra = {k: v for k, v in change.items() if k != "api_key"}
    got_status, body = await call(api.followers[0], "GET", path, params, key, **extra)
    assert (got_status, body["code"]) == (status, code) and body["msg"]


async def test_bad_orders_are_refused_with_binance_codes(api: ApiCluster) -> None:
    key = api.key("bob", "hmac")
    cases = [
        ({"symbol": "AAPL", "side": "HOLD", "type": "LIMIT", "quantity": "1"}, -1117),
        ({"symbol": "AAPL", "side": "BUY", "type": "STOP", "quantity": "1"}, -1116),
        (
            {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "190.00"},
            -1102,
        ),
        (
            {
                "symbol": "AAPL",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTX",
                "quantity": "1",
                "price": "190.00",
            },
            -1115,
        ),
        (
            {
                "symbol": "AAPL",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "1.5",
                "price": "190.00",
            },
            -1111,
        ),
        (
            {"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quantity": "1", "price": "190.00"},
            -1106,
        ),
        (
            {
                "symbol": "AAPL",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "1",
                "price": "9999.00",
            },
            -2010,
        ),
    ]
    for params, code in cases:
        status, body = await call(api.followers[0], "POST", "/api/v3/order", params, key)
        assert status == 400 and body["code"] == code, (params, body)


async def test_ed25519_keys_sign_binance_requests_in_base64(api: ApiCluster) -> None:
    key = api.key("carol", "ed25519")
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key["secret"]))
    query = urlencode({"timestamp": int(time.time() * 1000)})
    signature = quote(base64.b64encode(private.sign(query.encode())).decode(), safe="")
    url = f"http://{api.followers[0]}/api/v3/account?{query}&signature={signature}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"X-MBX-APIKEY": key["api_key"]}) as response,
    ):
        body = json.loads(await response.text())
    assert response.status == 200 and body["accountType"] == "SPOT", body


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v3/noSuchThing"), ("PUT", "/api/v3/order"), ("GET", "/api/v1/ping")],
)
async def test_unknown_paths_and_methods_answer_in_binances_shape(
    api: ApiCluster, method: str, path: str
) -> None:
    status, answer = await call(api.followers[0], method, path)
    assert status == 404
    assert answer["code"] == -1020 and "not supported" in answer["msg"]
