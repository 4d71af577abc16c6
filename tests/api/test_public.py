"""Public market data through real HTTP, on leader and followers alike."""

from __future__ import annotations

import re

import pytest

from api.client import ClientError
from tests.api.conftest import ApiCluster

pytestmark = pytest.mark.asyncio


async def test_time_instruments_and_cluster_on_every_node(api: ApiCluster) -> None:
    for node in api.all_http:
        async with api.client(node=node) as client:
            now = await client.server_time()
            assert now["server_time_ms"] > 1_700_000_000_000
            listed = await client.instruments()
            aapl = next(i for i in listed["instruments"] if i["symbol"] == "AAPL")
            # USD has 2 decimals and shares none: prices in cents show as dollars.
            assert aapl["tick_size"] == "0.01" and aapl["lot_size"] == "1"
            assert aapl["price_decimals"] == 2 and aapl["qty_decimals"] == 0
            assert re.fullmatch(r"\d+\.\d\d", aapl["reference_price"]) and aapl["status"] == "open"
            info = await client.cluster()
            assert info["leader"] == api.leader and len(info["members"]) == 3
            assert info["role"] in ("leader", "follower")


async def test_book_trades_candles_and_ticker_follow_a_trade(api: ApiCluster) -> None:
    async with api.client("alice") as alice, api.client("bob", "hmac") as bob:
        rest = await alice.place_order("MSFT", "sell", "5", price="421.50")
        hit = await bob.place_order("MSFT", "buy", "2", order_type="market", tif="ioc")
        assert hit["status"] == "filled" and hit["fills"][0]["price"] == "421.50"
        seq = hit["seq"]
        for node in api.followers:
            book = await alice.book("MSFT", depth=5, node=node, min_seq=seq)
            assert book["seq"] >= seq
            assert ["421.50", "3", 1] in book["asks"]
        trades = (await alice.trades("MSFT", limit=5))["trades"]
        assert trades[0]["price"] == "421.50" and trades[0]["aggressor_side"] == "buy"
        candles = (await alice.candles("MSFT", "1m"))["candles"]
        assert candles[-1]["close"] == "421.50" and int(candles[-1]["volume"]) >= 2
        ticker = await alice.ticker("MSFT")
        assert ticker["last"] == "421.50" and ticker["ask"] == "421.50"
        assert ticker["trades_24h"] >= 1
        await alice.cancel_order(rest["order_id"])


@pytest.mark.parametrize(
    ("path", "code", "status"),
    [
        ("/v1/book/NOPE", "unknown_symbol", 404),
        ("/v1/book/AAPL?depth=0", "bad_depth", 400),
        ("/v1/book/AAPL?depth=x", "bad_depth", 400),
        ("/v1/trades/AAPL?limit=100000", "bad_limit", 400),
        ("/v1/candles/AAPL?interval=7m", "bad_interval", 400),
        ("/v1/ticker/NOPE", "unknown_symbol", 404),
        ("/v1/instruments?min_seq=abc", "bad_min_seq", 400),
        ("/v1/nowhere", "not_found", 404),
    ],
)
async def test_bad_public_requests_get_clear_errors(
    api: ApiCluster, path: str, code: str, status: int
) -> None:
    async with api.client() as client:
        with pytest.raises(ClientError) as caught:
            await client.request("GET", path, signed=False)
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_min_seq_beyond_the_log_answers_behind(api: ApiCluster) -> None:
    async with api.client() as client:
        with pytest.raises(ClientError) as caught:
            await client.book("AAPL", min_seq=10**12)
    assert (caught.value.status, caught.value.code) == (409, "behind")
    assert "lag" in caught.value.message
