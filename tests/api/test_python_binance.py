"""python-binance's REST client, unchanged but for its base URLs, against a real cluster: the
spot calls it offers that raftex serves, and a clean library error for one it does not."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from binance.client import Client
from binance.exceptions import BinanceAPIException

from tests.api.conftest import ApiCluster


def _client(api: ApiCluster, account: str, node: str) -> Client:
    key = api.key(account, "hmac")
    client = Client(key["api_key"], key["secret"], ping=False)
    client.API_URL = f"http://{node}/api"
    client.MARGIN_API_URL = f"http://{node}/sapi"
    return client


@pytest.fixture
def carol(api: ApiCluster) -> Iterator[Client]:
    client = _client(api, "carol", api.followers[0])
    yield client
    client.close_connection()


def _reference(client: Client, symbol: str) -> Decimal:
    """The middle of the symbol's price filter: a price the band accepts."""
    info = client.get_symbol_info(symbol)
    assert info is not None
    band = next(f for f in info["filters"] if f["filterType"] == "PRICE_FILTER")
    return (Decimal(band["minPrice"]) + Decimal(band["maxPrice"])) / 2


def test_market_data_calls(api: ApiCluster, carol: Client) -> None:
    start_ms = int(time.time() * 1000) - 120_000
    seller = _client(api, "dave", api.followers[1])
    reference = _reference(carol, "TSLA").quantize(Decimal("0.01"))
    seller.order_limit_sell(symbol="TSLA", quantity="1", price=f"{reference + 1}")
    carol.order_market_buy(symbol="TSLA", quantity="1")
    seller.close_connection()
    assert carol.ping() == {}
    assert abs(carol.get_server_time()["serverTime"] - time.time() * 1000) < 60_000
    assert {s["symbol"] for s in carol.get_exchange_info()["symbols"]} >= {"AAPL", "TSLA"}
    book = carol.get_order_book(symbol="TSLA", limit=5)
    assert set(book) == {"lastUpdateId", "bids", "asks"}
    recent = carol.get_recent_trades(symbol="TSLA", limit=3)
    assert recent and Decimal(recent[-1]["price"]) == reference + 1
    older = carol.get_historical_trades(symbol="TSLA", fromId=recent[0]["id"], limit=2)
    assert older[0]["id"] == recent[0]["id"]
    aggregated = list(carol.aggregate_trade_iter("TSLA", start_str=start_ms))
    assert recent[-1]["id"] in [a["a"] for a in aggregated]
    klines = carol.get_historical_klines("TSLA", Client.KLINE_INTERVAL_1MINUTE, start_ms)
    assert klines and klines[-1][0] >= start_ms - 60_000
    assert carol.get_klines(symbol="TSLA", interval="1m", limit=1)[0][8] >= 1
    assert carol.get_ui_klines(symbol="TSLA", interval="1m", limit=1)
    assert Decimal(carol.get_avg_price(symbol="TSLA")["price"]) > 0
    assert carol.get_ticker(symbol="TSLA")["symbol"] == "TSLA"
    assert carol.get_symbol_ticker(symbol="TSLA")["price"] == recent[-1]["price"]
    assert carol.get_symbol_ticker_window(symbol="TSLA", windowSize="1h")["count"] >= 1
    assert {t["symbol"] for t in carol.get_all_tickers()} >= {"AAPL", "TSLA"}
    assert carol.get_orderbook_ticker(symbol="TSLA")["symbol"] == "TSLA"


def test_trading_calls(api: ApiCluster, carol: Client) -> None:
    reference = _reference(carol, "NVDA").quantize(Decimal("0.01"))
    low = f"{reference - 5}"
    assert (
        carol.create_test_order(
            symbol="NVDA", side="BUY", type="LIMIT", timeInForce="GTC", quantity="1", price=low
        )
        == {}
    )
    client_id = uuid.uuid4().hex[:20]
    order = carol.order_limit_buy(
        symbol="NVDA", quantity="2", price=low, newClientOrderId=client_id
    )
    assert order["status"] == "NEW" and order["clientOrderId"] == client_id
    assert (
        carol.get_order(symbol="NVDA", origClientOrderId=client_id)["orderId"] == order["orderId"]
    )
    assert order["orderId"] in [o["orderId"] for o in carol.get_open_orders(symbol="NVDA")]
    replaced = carol.cancel_replace_order(
        symbol="NVDA",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="1",
        price=low,
        cancelReplaceMode="STOP_ON_FAILURE",
        cancelOrderId=order["orderId"],
    )
    assert replaced["cancelResult"] == replaced["newOrderResult"] == "SUCCESS"
    new_id = replaced["newOrderResponse"]["orderId"]
    cancelled = carol.cancel_order(symbol="NVDA", orderId=new_id)
    assert cancelled["status"] == "CANCELED"
    statuses = {o["orderId"]: o["status"] for o in carol.get_all_orders(symbol="NVDA")}
    assert statuses[order["orderId"]] == statuses[new_id] == "CANCELED"
    with pytest.raises(BinanceAPIException) as raised:
        carol.cancel_order(symbol="NVDA", orderId=new_id)
    assert raised.value.code == -2011
    account = carol.get_account()
    assert account["canTrade"] and carol.get_asset_balance(asset="USD")["asset"] == "USD"
    assert isinstance(carol.get_my_trades(symbol="NVDA"), list)
    fees = carol.get_trade_fee(symbol="NVDA")
    assert fees[0]["symbol"] == "NVDA" and Decimal(fees[0]["takerCommission"]) >= 0


def test_unsupported_calls_raise_the_librarys_own_error(carol: Client) -> None:
    with pytest.raises(BinanceAPIException) as raised:
        carol.create_oco_order(
            symbol="AAPL",
            side="SELL",
            quantity="1",
            aboveType="LIMIT_MAKER",
            abovePrice="250.00",
            belowType="STOP_LOSS",
            belowStopPrice="150.00",
        )
    assert raised.value.code == -1013 and raised.value.status_code == 400
    with pytest.raises(BinanceAPIException) as raised:
        carol.get_system_status()
    assert raised.value.code == -1020
