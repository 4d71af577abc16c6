"""An unchanged ccxt Binance client (sync and async) against a real cluster: every spot method
raftex supports (markets, book, trades and candles since a time, tickers, balance, orders of
each type, edit by cancel-replace, order history, own trades, fees, test orders, cancel-all);
an unsupported call fails with ccxt's own clean error, never a parse crash."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import ccxt
import ccxt.async_support as ccxt_async
import pytest

from tests.api.conftest import ApiCluster


def _client(api: ApiCluster, account: str) -> ccxt.binance:
    """ccxt's Binance for `account`, pointed at a follower: only its base URLs change."""
    key = api.key(account, "hmac")
    client = ccxt.binance(
        {
            "apiKey": key["api_key"],
            "secret": key["secret"],
            "options": {"fetchMarkets": ["spot"], "fetchMargins": False, "fetchCurrencies": False},
        }
    )
    _point(client, f"http://{api.followers[0]}")
    return client


def _point(client: ccxt.binance | ccxt_async.binance, base: str) -> None:
    """Only the base URLs change: the library is used as it ships."""
    client.urls["api"]["public"] = f"{base}/api/v3"
    client.urls["api"]["private"] = f"{base}/api/v3"
    client.urls["api"]["v1"] = f"{base}/api/v1"
    client.urls["api"]["sapi"] = f"{base}/sapi/v1"


@pytest.fixture
def binance(api: ApiCluster) -> Iterator[ccxt.binance]:
    yield _client(api, "carol")


def test_markets_book_trades_and_balance(binance: ccxt.binance) -> None:
    markets = binance.load_markets()
    assert "AAPL/USD" in markets and markets["AAPL/USD"]["spot"]
    book = binance.fetch_order_book("AAPL/USD")
    assert "bids" in book and "asks" in book
    trades = binance.fetch_trades("AAPL/USD", limit=20)
    assert all(t["symbol"] == "AAPL/USD" and t["price"] > 0 for t in trades)
    balance = binance.fetch_balance()
    assert balance["USD"]["total"] > 0


def test_a_trade_shows_in_fetch_trades_and_cancel_all_cancels_every_open_order(
    api: ApiCluster, binance: ccxt.binance
) -> None:
    markets = binance.load_markets()
    reference = Decimal(
        api.harness.call(api.leader, "GET", "/v1/instruments/MSFT")["reference_price"]
    )
    placed = [
        binance.create_order("MSFT/USD", "limit", "buy", 1, float(reference - 5 - n))
        for n in range(3)
    ]
    assert {o["status"] for o in placed} == {"open"}
    cancelled = binance.cancel_all_orders("MSFT/USD")
    assert {o["id"] for o in cancelled} == {o["id"] for o in placed}
    assert {o["status"] for o in cancelled} == {"canceled"}
    assert binance.fetch_open_orders("MSFT/USD") == []
    with pytest.raises(ccxt.OrderNotFound):
        binance.cancel_all_orders("MSFT/USD")  # nothing left to cancel
    seller = _client(api, "dave")
    seller.markets = markets
    seller.create_order("MSFT/USD", "limit", "sell", 2, float(reference + 1))
    filled = binance.create_order("MSFT/USD", "market", "buy", 2)
    assert filled["status"] == "closed" and filled["filled"] == 2
    last = binance.fetch_trades("MSFT/USD", limit=5)[-1]
    assert (last["price"], last["side"]) == (float(reference + 1), "buy")


def test_tickers_candles_and_trades_since_a_time(api: ApiCluster, binance: ccxt.binance) -> None:
    binance.load_markets()
    since = binance.milliseconds() - 600_000
    seller = _client(api, "dave")
    seller.markets = binance.markets
    reference = Decimal(
        api.harness.call(api.leader, "GET", "/v1/instruments/AAPL")["reference_price"]
    )
    seller.create_order("AAPL/USD", "limit", "sell", 1, float(reference + 2))
    binance.create_order("AAPL/USD", "market", "buy", 1)
    assert abs(binance.fetch_time() - binance.milliseconds()) < 60_000
    ticker = binance.fetch_ticker("AAPL/USD")
    assert ticker["symbol"] == "AAPL/USD" and ticker["last"] > 0 and ticker["baseVolume"] >= 1
    assert set(binance.fetch_tickers(["AAPL/USD", "MSFT/USD"])) == {"AAPL/USD", "MSFT/USD"}
    assert "AAPL/USD" in binance.fetch_bids_asks(["AAPL/USD"])
    assert binance.fetch_last_prices(["AAPL/USD"])["AAPL/USD"]["price"] > 0
    candles = binance.fetch_ohlcv("AAPL/USD", "1m", since=since)
    assert candles and all(row[0] >= since - 60_000 for row in candles)
    assert candles[-1][5] >= 1
    recent = binance.fetch_trades("AAPL/USD", since=since)
    assert recent and all(t["timestamp"] >= since for t in recent)
    assert binance.fetch_trades("AAPL/USD", since=binance.milliseconds() + 60_000) == []


def test_edit_fetch_and_order_history(api: ApiCluster, binance: ccxt.binance) -> None:
    binance.load_markets()
    reference = Decimal(
        api.harness.call(api.leader, "GET", "/v1/instruments/MSFT")["reference_price"]
    )
    order = binance.create_order("MSFT/USD", "limit", "buy", 2, float(reference - 7))
    assert binance.fetch_order(order["id"], "MSFT/USD")["status"] == "open"
    edited = binance.edit_order(order["id"], "MSFT/USD", "limit", "buy", 3, float(reference - 8))
    assert edited["id"] != order["id"] and edited["status"] == "open"
    assert (edited["amount"], edited["price"]) == (3, float(reference - 8))
    assert binance.fetch_order(order["id"], "MSFT/USD")["status"] == "canceled"
    assert [o["id"] for o in binance.fetch_open_orders("MSFT/USD")] == [edited["id"]]
    binance.cancel_order(edited["id"], "MSFT/USD")
    history = {o["id"]: o["status"] for o in binance.fetch_orders("MSFT/USD")}
    assert history[order["id"]] == history[edited["id"]] == "canceled"
    assert {o["id"] for o in binance.fetch_canceled_orders("MSFT/USD")} >= {
        order["id"],
        edited["id"],
    }
    with pytest.raises(ccxt.ExchangeError) as raised:  # Binance's -2022, as ccxt knows it
        binance.edit_order(order["id"], "MSFT/USD", "limit", "buy", 1, float(reference - 9))
    assert "NOT_ATTEMPTED" in str(raised.value)


def test_my_trades_order_trades_fees_and_a_stop_limit(
    api: ApiCluster, binance: ccxt.binance
) -> None:
    binance.load_markets()
    since = binance.milliseconds() - 1_000
    reference = Decimal(
        api.harness.call(api.leader, "GET", "/v1/instruments/MSFT")["reference_price"]
    )
    seller = _client(api, "dave")
    seller.markets = binance.markets
    seller.create_order("MSFT/USD", "limit", "sell", 1, float(reference + 3))
    bought = binance.create_order("MSFT/USD", "market", "buy", 1)
    mine = binance.fetch_my_trades("MSFT/USD", since=since)
    assert [t["order"] for t in mine][-1] == bought["id"]
    assert binance.fetch_order_trades(bought["id"], "MSFT/USD")[0]["amount"] == 1
    fee = binance.fetch_trading_fee("MSFT/USD")
    assert fee["symbol"] == "MSFT/USD" and fee["maker"] >= 0 and fee["taker"] >= 0
    stop = binance.create_order(
        "MSFT/USD",
        "STOP_LOSS_LIMIT",
        "sell",
        1,
        float(reference - 20),
        {"stopPrice": float(reference - 19), "timeInForce": "GTC"},
    )
    fetched = binance.fetch_order(stop["id"], "MSFT/USD")
    assert fetched["status"] == "open" and fetched["triggerPrice"] == float(reference - 19)
    binance.cancel_order(stop["id"], "MSFT/USD")
    before = binance.fetch_open_orders("MSFT/USD")
    binance.create_order("MSFT/USD", "limit", "buy", 1, float(reference - 5), {"test": True})
    assert binance.fetch_open_orders("MSFT/USD") == before


def test_the_async_client_trades_too(api: ApiCluster) -> None:
    reference = Decimal(
        api.harness.call(api.leader, "GET", "/v1/instruments/AAPL")["reference_price"]
    )

    async def session() -> None:
        key = api.key("carol", "hmac")
        client = ccxt_async.binance(
            {
                "apiKey": key["api_key"],
                "secret": key["secret"],
                "options": {
                    "fetchMarkets": ["spot"],
                    "fetchMargins": False,
                    "fetchCurrencies": False,
                },
            }
        )
        _point(client, f"http://{api.followers[1]}")
        try:
            await client.load_markets()
            book = await client.fetch_order_book("AAPL/USD", limit=5)
            assert len(book["bids"]) <= 5
            order = await client.create_order("AAPL/USD", "limit", "buy", 1, float(reference - 6))
            assert (await client.fetch_order(order["id"], "AAPL/USD"))["status"] == "open"
            await client.cancel_order(order["id"], "AAPL/USD")
            assert (await client.fetch_balance())["USD"]["free"] > 0
        finally:
            await client.close()

    asyncio.run(session())


def test_an_unsupported_call_fails_with_a_clean_library_error(binance: ccxt.binance) -> None:
    binance.load_markets()
    with pytest.raises(ccxt.ExchangeError) as raised:
        binance.private_get_ratelimit_order()
    assert "not supported" in str(raised.value)
    with pytest.raises(ccxt.ExchangeError) as raised:
        binance.private_post_orderlist_oco(
            {"symbol": "AAPL", "side": "SELL", "quantity": "1", "aboveType": "LIMIT_MAKER"}
        )
    assert "not supported" in str(raised.value)
