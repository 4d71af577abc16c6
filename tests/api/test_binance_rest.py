"""The rest of Binance's spot REST surface: trade history by id and time, average price,
rolling and trading-day tickers, test orders, cancel-replace, paging by time, commission
rates, request weight, and order lists refused in Binance's words."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from api.binance_weight import USED_WEIGHT_HEADER
from tests.api.conftest import ApiCluster
from tests.api.raw import binance_call as call

pytestmark = pytest.mark.asyncio

NVDA_BUY = {"symbol": "NVDA", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}


async def _trade(api: ApiCluster, node: str, symbol: str, qty: str = "1") -> dict[str, Any]:
    """carol sells at the reference plus a little, dave buys at market: one trade."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{node}/v1/instruments/{symbol}") as answer,
    ):
        reference = Decimal((await answer.json())["reference_price"])
    price = f"{reference + Decimal('0.50'):.2f}"
    sell = {"symbol": symbol, "side": "SELL", "type": "LIMIT", "timeInForce": "GTC"}
    status, _ = await call(
        node,
        "POST",
        "/api/v3/order",
        {**sell, "quantity": qty, "price": price},
        api.key("carol", "hmac"),
    )
    assert status == 200
    buy = {"symbol": symbol, "side": "BUY", "type": "MARKET", "quantity": qty}
    status, bought = await call(node, "POST", "/api/v3/order", buy, api.key("dave", "hmac"))
    assert status == 200 and bought["status"] == "FILLED", bought
    return bought


async def test_trades_by_id_and_by_time(api: ApiCluster) -> None:
    node = api.followers[0]
    before_ms = int(time.time() * 1000) - 1_000
    bought = await _trade(api, node, "TSLA")
    await _trade(api, node, "TSLA")
    trade_id = bought["fills"][0]["tradeId"]
    status, rows = await call(
        node, "GET", "/api/v3/historicalTrades", {"symbol": "TSLA", "fromId": trade_id}
    )
    assert status == 200 and rows[0]["id"] == trade_id and len(rows) >= 2
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    status, rows = await call(
        node, "GET", "/api/v3/aggTrades", {"symbol": "TSLA", "startTime": before_ms}
    )
    assert status == 200 and trade_id in [r["a"] for r in rows]
    assert all(r["T"] >= before_ms for r in rows)
    status, rows = await call(
        node, "GET", "/api/v3/aggTrades", {"symbol": "TSLA", "fromId": trade_id, "limit": 1}
    )
    assert [r["a"] for r in rows] == [trade_id]
    future = int(time.time() * 1000) + 60_000
    assert await call(
        node, "GET", "/api/v3/aggTrades", {"symbol": "TSLA", "startTime": future}
    ) == (200, [])
    status, error = await call(
        node,
        "GET",
        "/api/v3/aggTrades",
        {"symbol": "TSLA", "startTime": before_ms, "endTime": before_ms + 7_200_000},
    )
    assert (status, error["code"]) == (400, -1127)
    status, mine = await call(
        node,
        "GET",
        "/api/v3/myTrades",
        {"symbol": "TSLA", "orderId": bought["orderId"]},
        api.key("dave", "hmac"),
    )
    assert status == 200 and [t["orderId"] for t in mine] == [bought["orderId"]]
    status, mine = await call(
        node,
        "GET",
        "/api/v3/myTrades",
        {"symbol": "TSLA", "startTime": before_ms},
        api.key("dave", "hmac"),
    )
    assert trade_id in [t["id"] for t in mine]


async def test_average_price_rolling_and_trading_day_tickers(api: ApiCluster) -> None:
    node = api.followers[1]
    bought = await _trade(api, node, "TSLA")
    price = bought["fills"][0]["price"]
    status, avg = await call(node, "GET", "/api/v3/avgPrice", {"symbol": "TSLA"})
    assert status == 200 and avg["mins"] == 5 and Decimal(avg["price"]) > 0
    status, rolling = await call(
        node, "GET", "/api/v3/ticker", {"symbol": "TSLA", "windowSize": "15m"}
    )
    assert status == 200 and rolling["symbol"] == "TSLA" and rolling["count"] >= 1
    assert rolling["closeTime"] - rolling["openTime"] == 15 * 60_000
    assert Decimal(rolling["lastPrice"]) == Decimal(price)
    status, mini = await call(
        node,
        "GET",
        "/api/v3/ticker",
        {"symbols": '["TSLA","AAPL"]', "windowSize": "7d", "type": "MINI"},
    )
    assert status == 200 and [t["symbol"] for t in mini] == ["TSLA", "AAPL"]
    assert "priceChange" not in mini[0] and "openPrice" in mini[0]
    status, day = await call(
        node, "GET", "/api/v3/ticker/tradingDay", {"symbol": "TSLA", "timeZone": "-5"}
    )
    assert status == 200 and day["count"] >= 1
    assert (day["openTime"] - 5 * 3_600_000) % 86_400_000 == 0  # midnight in UTC-5
    for bad in ({"windowSize": "60m"}, {"windowSize": "8d"}, {"windowSize": "1w"}):
        status, error = await call(node, "GET", "/api/v3/ticker", {"symbol": "TSLA", **bad})
        assert (status, error["code"]) == (400, -1100)
    status, error = await call(
        node, "GET", "/api/v3/ticker/tradingDay", {"symbol": "TSLA", "timeZone": "+15"}
    )
    assert (status, error["code"]) == (400, -1100)
    status, error = await call(
        node, "GET", "/api/v3/ticker/24hr", {"symbol": "TSLA", "symbols": '["TSLA"]'}
    )
    assert (status, error["code"]) == (400, -1102)
    status, error = await call(node, "GET", "/api/v3/ticker/24hr", {"symbols": '["NOPE"]'})
    assert (status, error["code"]) == (400, -1121)
    status, ui = await call(
        node, "GET", "/api/v3/uiKlines", {"symbol": "TSLA", "interval": "1m", "limit": 2}
    )
    assert status == 200 and len(ui[-1]) == 12


async def test_a_test_order_places_nothing_and_reports_rates(api: ApiCluster) -> None:
    node = api.followers[0]
    key = api.key("alice", "hmac")
    order = {**NVDA_BUY, "quantity": "1", "price": "130.00"}
    _, before = await call(node, "GET", "/api/v3/openOrders", {"symbol": "NVDA"}, key)
    assert await call(node, "POST", "/api/v3/order/test", order, key) == (200, {})
    status, rates = await call(
        node, "POST", "/api/v3/order/test", {**order, "computeCommissionRates": "true"}, key
    )
    assert status == 200 and set(rates["standardCommissionForOrder"]) == {"maker", "taker"}
    status, error = await call(
        node,
        "POST",
        "/api/v3/order/test",
        {**order, "type": "STOP_LOSS", "stopPrice": "120.00"},
        key,
    )
    assert (status, error["code"]) == (400, -1106)  # price sent to a stop-loss
    _, after = await call(node, "GET", "/api/v3/openOrders", {"symbol": "NVDA"}, key)
    assert after == before
    status, fees = await call(node, "GET", "/api/v3/account/commission", {"symbol": "NVDA"}, key)
    assert status == 200 and fees["symbol"] == "NVDA"
    assert Decimal(fees["standardCommission"]["taker"]) >= 0


async def test_cancel_replace_and_its_failures(api: ApiCluster) -> None:
    node = api.followers[1]
    key = api.key("bob", "hmac")
    order = {
        **NVDA_BUY,
        "quantity": "2",
        "price": "131.00",
        "newClientOrderId": uuid.uuid4().hex[:20],
    }
    status, placed = await call(node, "POST", "/api/v3/order", order, key)
    assert status == 200
    replacement = {**order, "price": "131.50", "newClientOrderId": uuid.uuid4().hex[:20]}
    status, both = await call(
        node,
        "POST",
        "/api/v3/order/cancelReplace",
        {**replacement, "cancelReplaceMode": "STOP_ON_FAILURE", "cancelOrderId": placed["orderId"]},
        key,
    )
    assert status == 200, both
    assert (both["cancelResult"], both["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    assert both["cancelResponse"]["status"] == "CANCELED"
    assert both["newOrderResponse"]["price"] == "131.50"
    again = {**replacement, "newClientOrderId": uuid.uuid4().hex[:20]}
    status, failed = await call(
        node,
        "POST",
        "/api/v3/order/cancelReplace",
        {**again, "cancelReplaceMode": "STOP_ON_FAILURE", "cancelOrderId": placed["orderId"]},
        key,
    )
    assert (status, failed["code"]) == (400, -2022)
    assert failed["data"]["newOrderResult"] == "NOT_ATTEMPTED"
    status, partly = await call(
        node,
        "POST",
        "/api/v3/order/cancelReplace",
        {**again, "cancelReplaceMode": "ALLOW_FAILURE", "cancelOrderId": placed["orderId"]},
        key,
    )
    assert (status, partly["code"]) == (400, -2021)
    assert (partly["data"]["cancelResult"], partly["data"]["newOrderResult"]) == (
        "FAILURE",
        "SUCCESS",
    )
    status, open_now = await call(node, "DELETE", "/api/v3/openOrders", {"symbol": "NVDA"}, key)
    assert status == 200 and len(open_now) == 2


async def test_all_orders_in_a_time_window(api: ApiCluster) -> None:
    node = api.followers[0]
    key = api.key("carol", "hmac")
    start = int(time.time() * 1000) - 1_000
    order = {
        "symbol": "MSFT",
        "side": "BUY",
        "type": "LIMIT_MAKER",
        "quantity": "1",
        "price": "401.00",
    }
    status, placed = await call(node, "POST", "/api/v3/order", order, key)
    assert status == 200
    await call(
        node, "DELETE", "/api/v3/order", {"symbol": "MSFT", "orderId": placed["orderId"]}, key
    )
    status, rows = await call(
        node, "GET", "/api/v3/allOrders", {"symbol": "MSFT", "startTime": start}, key
    )
    assert status == 200 and placed["orderId"] in [r["orderId"] for r in rows]
    assert all(r["time"] >= start for r in rows)
    status, rows = await call(
        node, "GET", "/api/v3/allOrders", {"symbol": "MSFT", "endTime": start}, key
    )
    assert placed["orderId"] not in [r["orderId"] for r in rows]
    status, error = await call(
        node,
        "GET",
        "/api/v3/allOrders",
        {"symbol": "MSFT", "startTime": start, "endTime": start + 2 * 86_400_000},
        key,
    )
    assert (status, error["code"]) == (400, -1127)


async def test_every_answer_carries_the_used_weight_and_order_lists_are_refused(
    api: ApiCluster,
) -> None:
    node = api.followers[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{node}/api/v3/exchangeInfo") as answer:
            first = int(answer.headers[USED_WEIGHT_HEADER])
            info = await answer.json()
        async with session.get(f"http://{node}/api/v3/exchangeInfo") as answer:
            assert int(answer.headers[USED_WEIGHT_HEADER]) in (first + 20, 20)
        async with session.get(f"http://{node}/api/v3/nothing") as answer:
            assert USED_WEIGHT_HEADER in answer.headers and answer.status == 404
    assert {"REQUEST_WEIGHT", "ORDERS"} == {r["rateLimitType"] for r in info["rateLimits"]}
    symbol = info["symbols"][0]
    assert symbol["permissionSets"] == [["SPOT"]] and "STOP_LOSS_LIMIT" in symbol["orderTypes"]
    status, chosen = await call(node, "GET", "/api/v3/exchangeInfo", {"symbols": '["MSFT","AAPL"]'})
    assert [s["symbol"] for s in chosen["symbols"]] == ["MSFT", "AAPL"]
    status, error = await call(
        node,
        "POST",
        "/api/v3/orderList/oco",
        {"symbol": "AAPL", "side": "SELL", "quantity": "1"},
        api.key("alice", "hmac"),
    )
    assert (status, error["code"]) == (400, -1013)
