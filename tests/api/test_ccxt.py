"""An unchanged ccxt Binance client against a real cluster: markets, book, trades (Binance's
aggTrades), balance, orders, and cancel-all; an unsupported call fails with ccxt's own
clean error, never a parse crash."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import ccxt
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
    base = f"http://{api.followers[0]}"
    client.urls["api"]["public"] = f"{base}/api/v3"
    client.urls["api"]["private"] = f"{base}/api/v3"
    client.urls["api"]["v1"] = f"{base}/api/v1"
    return client


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


def test_an_unsupported_call_fails_with_a_clean_library_error(binance: ccxt.binance) -> None:
    binance.load_markets()
    with pytest.raises(ccxt.ExchangeError) as raised:
        binance.public_get_avgprice({"symbol": "AAPLUSD"})  # not served yet
    assert "not supported" in str(raised.value)
