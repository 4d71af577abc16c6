"""The WebSocket clients traders already use, unchanged but for their URLs, against a real
cluster: ccxt.pro's binance (order book by Binance's local book procedure, trades, candles,
own orders and balances) and python-binance's socket manager (trade, depth and user
sockets); and a node killed under a ccxt.pro order book watcher, which carries on from
another node.

Both libraries now take a spot account's user data from Binance's WebSocket API
(`userDataStream.subscribe.signature` on `/ws-api/v3`) rather than from a listen key; the
node serves that method, and the listen key path is tested in test_binance_streams.py."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import ccxt.pro as ccxtpro
import pytest
from binance import AsyncClient, BinanceSocketManager

from engine.codes import Side
from tests.api.binance_ws_market import new_instrument, place
from tests.api.conftest import ApiCluster
from tests.cluster.harness import ClusterHarness

WATCH_TIMEOUT_S = 10.0


def _pro(node: str, key: dict[str, Any] | None = None) -> ccxtpro.binance:
    """ccxt.pro's binance pointed at one node: REST and both WebSocket URLs."""
    config: dict[str, Any] = {
        "options": {"fetchMarkets": ["spot"], "fetchMargins": False, "fetchCurrencies": False}
    }
    if key is not None:
        config.update(apiKey=key["api_key"], secret=key["secret"])
    client = ccxtpro.binance(config)
    _point(client, node)
    return client


def _point(client: ccxtpro.binance, node: str) -> None:
    base = f"http://{node}"
    client.urls["api"]["public"] = f"{base}/api/v3"
    client.urls["api"]["private"] = f"{base}/api/v3"
    client.urls["api"]["v1"] = f"{base}/api/v1"
    client.urls["api"]["ws"]["spot"] = f"ws://{node}/ws"
    client.urls["api"]["ws"]["ws-api"]["spot"] = f"ws://{node}/ws-api/v3"


@pytest.fixture
def symbol(api: ApiCluster) -> str:
    return asyncio.run(new_instrument(api.leader_http, api.harness.token))


def _levels(rows: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in rows]


async def _book_caught_up(
    client: ccxtpro.binance, market: str, seq: int, node: str, symbol: str
) -> None:
    """Watches until the local book has applied `seq`, then checks it against the node's. (A
    watch call returns at the next update: one that came before it is in the book already.)"""
    book = client.orderbooks.get(market)
    if book is None:
        book = await asyncio.wait_for(client.watch_order_book(market), WATCH_TIMEOUT_S)
    while book["nonce"] < seq:
        book = await asyncio.wait_for(client.watch_order_book(market), WATCH_TIMEOUT_S)
    async with client.session.get(
        f"http://{node}/api/v3/depth", params={"symbol": symbol, "limit": "1000"}
    ) as response:
        rest = await response.json()
    assert [tuple(level[:2]) for level in book["bids"]] == _levels(rest["bids"])
    assert [tuple(level[:2]) for level in book["asks"]] == _levels(rest["asks"])


def test_ccxt_pro_order_book_trades_and_candles(api: ApiCluster, symbol: str) -> None:
    token = api.harness.token
    market = f"{symbol}/USD"

    async def go() -> None:
        client = _pro(api.followers[0])
        try:
            await client.load_markets()
            await place(api.leader_http, token, "alice", symbol, Side.BUY, 5, 9_990)
            last = await place(api.leader_http, token, "bob", symbol, Side.SELL, 4, 10_010)
            await _book_caught_up(client, market, last["seq"], api.followers[0], symbol)
            trades = asyncio.create_task(client.watch_trades(market))
            candles = asyncio.create_task(client.watch_ohlcv(market, "1m"))
            await asyncio.sleep(0.5)  # both subscribed
            taken = await place(api.leader_http, token, "carol", symbol, Side.BUY, 3)
            seen = await asyncio.wait_for(trades, WATCH_TIMEOUT_S)
            assert [(t["price"], t["amount"], t["side"]) for t in seen] == [(100.10, 3.0, "buy")]
            ohlcv = await asyncio.wait_for(candles, WATCH_TIMEOUT_S)
            assert ohlcv[-1][1:] == [100.10, 100.10, 100.10, 100.10, 3.0]
            await _book_caught_up(client, market, taken["seq"], api.followers[0], symbol)
        finally:
            await client.close()

    asyncio.run(go())


def test_ccxt_pro_watches_own_orders_and_balance(api: ApiCluster, symbol: str) -> None:
    token = api.harness.token
    market = f"{symbol}/USD"

    async def go() -> None:
        client = _pro(api.followers[1], api.key("carol", "hmac"))
        try:
            await client.load_markets()
            orders = asyncio.create_task(client.watch_orders(market))
            balance = asyncio.create_task(client.watch_balance())
            await asyncio.sleep(1.0)  # subscribed on the WebSocket API
            client_id = uuid.uuid4().hex[:16]
            await place(api.leader_http, token, "carol", symbol, Side.SELL, 2, 10_005, client_id)
            opened = await asyncio.wait_for(orders, WATCH_TIMEOUT_S)
            assert [(o["clientOrderId"], o["status"], o["side"]) for o in opened] == [
                (client_id, "open", "sell")
            ]
            assert (opened[0]["price"], opened[0]["amount"], opened[0]["filled"]) == (100.05, 2, 0)
            held = await asyncio.wait_for(balance, WATCH_TIMEOUT_S)
            assert held[symbol]["used"] == 2
            # A watch call returns at the next update: each is made before its action.
            orders = asyncio.create_task(client.watch_orders(market))
            balance = asyncio.create_task(client.watch_balance())
            await asyncio.sleep(0.2)
            await place(api.leader_http, token, "dave", symbol, Side.BUY, 2)
            filled = await asyncio.wait_for(orders, WATCH_TIMEOUT_S)
            assert (filled[-1]["status"], filled[-1]["filled"], filled[-1]["remaining"]) == (
                "closed",
                2,
                0,
            )
            after = await asyncio.wait_for(balance, WATCH_TIMEOUT_S)
            assert after[symbol]["used"] == 0
        finally:
            await client.close()

    asyncio.run(go())


def test_python_binance_trade_depth_and_user_sockets(api: ApiCluster, symbol: str) -> None:
    token = api.harness.token
    node = api.followers[0]
    key = api.key("dave", "hmac")

    async def go() -> None:
        client = AsyncClient(key["api_key"], key["secret"])
        client.API_URL = f"http://{node}/api"
        client.ws_api._url = f"ws://{node}/ws-api/v3"
        manager = BinanceSocketManager(client)
        manager.STREAM_URL = f"ws://{node}/"
        try:
            async with (
                manager.trade_socket(symbol) as trades,
                manager.depth_socket(symbol, interval=100) as diffs,
                manager.depth_socket(symbol, depth="5") as partial,
                manager.user_socket() as user,
            ):
                first = await asyncio.wait_for(partial.recv(), WATCH_TIMEOUT_S)
                assert first == {"lastUpdateId": first["lastUpdateId"], "bids": [], "asks": []}
                made = await place(api.leader_http, token, "dave", symbol, Side.BUY, 4, 9_995)
                await place(api.leader_http, token, "alice", symbol, Side.SELL, 1)
                trade = await asyncio.wait_for(trades.recv(), WATCH_TIMEOUT_S)
                assert (trade["e"], trade["s"], trade["p"], trade["q"]) == (
                    "trade",
                    symbol,
                    "99.95",
                    "1",
                )
                diff = await asyncio.wait_for(diffs.recv(), WATCH_TIMEOUT_S)
                assert diff["e"] == "depthUpdate" and diff["b"] == [["99.95", "4"]]
                diff = await asyncio.wait_for(diffs.recv(), WATCH_TIMEOUT_S)
                assert diff["b"] == [["99.95", "3"]] and diff["U"] > made["seq"]
                top = await asyncio.wait_for(partial.recv(), WATCH_TIMEOUT_S)
                assert top["bids"] == [["99.95", "4"]]
                reports = []
                while len(reports) < 2:
                    event = await asyncio.wait_for(user.recv(), WATCH_TIMEOUT_S)
                    if event["e"] == "executionReport":
                        reports.append((event["x"], event["X"], event["z"]))
                assert reports == [("NEW", "NEW", "0"), ("TRADE", "PARTIALLY_FILLED", "1")]
        finally:
            await client.close_connection()

    asyncio.run(go())


def test_a_node_killed_under_an_order_book_watcher(tmp_path: Path) -> None:
    """The watcher's node dies; the client points ccxt.pro at another node, which starts
    Binance's procedure again from that node's snapshot, and its book stays exact."""
    harness = ClusterHarness(tmp_path / "cluster", nodes=3, settings={"rate_limit_ip_per_s": 0})
    with harness.running():
        leader = harness.wait_leader()
        http = harness.http(leader)
        followers = [n.node_id for n in harness.cluster.nodes if n.node_id != leader]
        asyncio.run(_watch_through_a_kill(harness, http, followers))


async def _watch_through_a_kill(harness: ClusterHarness, http: str, followers: list[str]) -> None:
    token = harness.token
    symbol = await new_instrument(http, token)
    market = f"{symbol}/USD"
    first, second = (harness.http(n) for n in followers)
    client = _pro(first)
    try:
        await client.load_markets()
        for n in range(6):
            last = await place(http, token, "alice", symbol, Side.BUY, 1 + n, 9_990 - n)
        await _book_caught_up(client, market, last["seq"], first, symbol)
        harness.cluster.kill(followers[0])
        with pytest.raises(ccxtpro.NetworkError):
            while True:
                await asyncio.wait_for(client.watch_order_book(market), WATCH_TIMEOUT_S)
        _point(client, second)
        for n in range(6):
            last = await place(http, token, "bob", symbol, Side.SELL, 1 + n, 10_010 + n)
        last = await place(http, token, "carol", symbol, Side.SELL, 3)
        await _book_caught_up(client, market, last["seq"], second, symbol)
    finally:
        await client.close()
