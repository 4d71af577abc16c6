"""WebSocket feeds from followers: book snapshot plus deltas, resume across nodes, user channel."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from typing import Any

import aiohttp
import pytest

from tests.api.conftest import ApiCluster

pytestmark = pytest.mark.asyncio
FEED_WAIT_S = 20.0


def apply_book_message(book: dict[str, dict[str, str]], message: dict[str, Any]) -> None:
    if message["type"] == "snapshot":
        book["buy"] = {price: qty for price, qty, _ in message["bids"]}
        book["sell"] = {price: qty for price, qty, _ in message["asks"]}
        return
    for _, side, price, qty, _ in message["changes"]:
        if qty == "0":
            book[side].pop(price, None)
        else:
            book[side][price] = qty


async def test_a_followers_book_snapshot_plus_deltas_equals_the_leaders_book(
    api: ApiCluster,
) -> None:
    follower = api.followers[0]
    async with api.client("alice") as alice, api.client("bob", "hmac") as bob:
        book: dict[str, dict[str, str]] = {"buy": {}, "sell": {}}
        stream = alice.stream("book", "AAPL", nodes=[follower])
        async with asyncio.timeout(FEED_WAIT_S):
            first = await anext(stream)
            assert first["type"] == "snapshot"
            apply_book_message(book, first)
            resting = [
                await alice.place_order("AAPL", "buy", str(n), price=f"18{n}.00")
                for n in range(1, 5)
            ]
            await bob.place_order("AAPL", "sell", "3", price="184.00")
            await bob.place_order("AAPL", "sell", "2", price="199.00")
            last = await alice.cancel_order(resting[0]["order_id"])
            async for message in stream:
                apply_book_message(book, message)
                if message["seq"] >= last["seq"]:
                    break
        await stream.aclose()
        leader_book = await alice.book("AAPL", depth=100, node=api.leader_http, min_seq=last["seq"])
        assert leader_book["seq"] == last["seq"], "something else traded AAPL meanwhile"
        assert book["buy"] == {p: q for p, q, _ in leader_book["bids"]}
        assert book["sell"] == {p: q for p, q, _ in leader_book["asks"]}
        await alice.mass_cancel("AAPL")
        await bob.mass_cancel("AAPL")


async def test_a_subscriber_that_switches_nodes_sees_every_trade_exactly_once(
    api: ApiCluster,
) -> None:
    first, second = api.followers
    first_id = next(n.node_id for n in api.harness.cluster.nodes if n.http == first)
    async with (
        api.client("carol", node=api.leader_http) as carol,
        api.client("dave", node=api.leader_http) as dave,
    ):
        since = (await carol.cluster(node=first))["last_seq"]
        stream = carol.stream("trades", "TSLA", since=since, nodes=[first, second])
        seen: list[int] = []

        async def trade_burst(count: int) -> int:
            last = 0
            for _ in range(count):
                await carol.place_order(
                    "TSLA", "sell", "1", price="250.00", client_order_id=uuid.uuid4().hex
                )
                hit = await dave.place_order("TSLA", "buy", "1", order_type="market", tif="ioc")
                last = hit["seq"]
            return last

        try:
            async with asyncio.timeout(FEED_WAIT_S * 2):
                last = await trade_burst(5)
                async for message in stream:
                    seen.append(message["seq"])
                    if message["seq"] >= last - 10 and len(seen) >= 5:
                        break
                api.harness.cluster.kill(first_id, signal.SIGKILL)
                last = await trade_burst(5)
                async for message in stream:
                    seen.append(message["seq"])
                    if len(seen) >= 10:
                        break
        finally:
            await stream.aclose()
            api.harness.cluster.start_one(first_id)
        history = (await carol.trades("TSLA", limit=1000))["trades"]
        expected = sorted(t["seq"] for t in history if t["seq"] > since)
        assert seen == expected and len(set(seen)) == len(seen) == 10
        await _caught_up(api, first, last)


async def _caught_up(api: ApiCluster, node: str, seq: int) -> None:
    async with api.client() as client:
        for _ in range(200):
            try:
                if (await client.cluster(node=node))["last_seq"] >= seq:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{node} did not catch up to {seq}")


async def test_user_channel_after_a_signed_login(api: ApiCluster) -> None:
    async with api.client("bob") as bob:
        # The stream subscribes on first use: `since` makes it start exactly here.
        since = (await bob.cluster(node=api.followers[0]))["last_seq"]
        stream = bob.stream("user", since=since, nodes=api.followers)
        async with asyncio.timeout(FEED_WAIT_S):
            placed = await bob.place_order("MSFT", "buy", "2", price="400.00")
            kinds = []
            async for message in stream:
                kinds.append(message["type"])
                if message["type"] == "accepted":
                    assert message["order_id"] == placed["order_id"]
                if message["type"] == "balancechanged":
                    assert message["account"] == "bob" and message["asset"] == "USD"
                    break
        await stream.aclose()
        assert "accepted" in kinds
        await bob.cancel_order(placed["order_id"])


@pytest.mark.parametrize(
    ("op", "code"),
    [
        ({"op": "subscribe", "channel": "weather", "symbol": "AAPL"}, "bad_channel"),
        ({"op": "subscribe", "channel": "book", "symbol": "NOPE"}, "unknown_symbol"),
        ({"op": "subscribe", "channel": "book"}, "bad_symbol"),
        ({"op": "subscribe", "channel": "user"}, "unauthenticated"),
        ({"op": "subscribe", "channel": "trades", "symbol": "AAPL", "since": -1}, "bad_since"),
        ({"op": "dance"}, "bad_op"),
        ({"op": "login", "key": "k", "timestamp": "1", "signature": "00"}, "unknown_key"),
    ],
)
async def test_bad_feed_messages_get_an_error_message(api: ApiCluster, op: dict, code: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://{api.followers[0]}/v1/ws") as ws,
    ):
        await ws.send_json(op)
        async with asyncio.timeout(FEED_WAIT_S):
            while True:
                message = json.loads((await ws.receive()).data)
                if message["type"] != "heartbeat":
                    break
        assert message["type"] == "error" and message["code"] == code


def apply_l3_message(book: dict[str, dict[str, list]], message: dict[str, Any]) -> None:
    if message["type"] == "snapshot":
        book["buy"] = {price: queue for price, queue in message["bids"]}
        book["sell"] = {price: queue for price, queue in message["asks"]}
        return
    for side, price, queue in message["levels"]:
        if queue:
            book[side][price] = queue
        else:
            book[side].pop(price, None)


async def test_order_by_order_book_from_a_follower_matches_the_leaders(api: ApiCluster) -> None:
    async with (
        api.client("carol") as carol,
        api.client("dave") as dave,
        api.client("bob") as bob,
    ):
        book: dict[str, dict[str, list]] = {"buy": {}, "sell": {}}
        stream = carol.stream("book.l3", "NVDA", nodes=[api.followers[1]])
        async with asyncio.timeout(FEED_WAIT_S):
            apply_l3_message(book, await anext(stream))
            first = await carol.place_order("NVDA", "buy", "3", price="138.00")
            second = await dave.place_order("NVDA", "buy", "5", price="138.00")
            last = await bob.place_order("NVDA", "sell", "4", price="138.00", tif="ioc")
            async for message in stream:
                apply_l3_message(book, message)
                if message["seq"] >= last["seq"]:
                    break
        await stream.aclose()
        leader = await carol.request(
            "GET",
            "/v1/book/NVDA/l3",
            params={"depth": 50, "min_seq": last["seq"]},
            signed=False,
            node=api.leader_http,
        )
        assert leader["seq"] == last["seq"]
        assert book["buy"] == dict((p, q) for p, q in leader["bids"])
        # Time priority: carol's order filled first, then 1 of dave's 5.
        assert book["buy"]["138.00"] == [[second["order_id"], "4"]]
        assert first["order_id"] not in {oid for oid, _ in book["buy"]["138.00"]}
        assert "account" not in json.dumps(leader)
        await dave.mass_cancel("NVDA")
        await carol.mass_cancel("NVDA")


async def test_ticker_and_candle_channels_follow_trades(api: ApiCluster) -> None:
    async with api.client("alice") as alice, api.client("dave") as dave:
        since = (await alice.cluster(node=api.followers[0]))["last_seq"]
        ticker = alice.stream("ticker", "TSLA", nodes=[api.followers[0]])
        candles = alice.stream("candles", "TSLA", nodes=[api.followers[0]])
        async with asyncio.timeout(FEED_WAIT_S):
            await anext(ticker)  # the current ticker
            await alice.place_order("TSLA", "sell", "1", price="252.00")
            hit = await dave.place_order("TSLA", "buy", "1", order_type="market", tif="ioc")
            assert hit["status"] == "filled"
            async for message in ticker:
                if message["seq"] >= hit["seq"]:
                    assert message["last"] == "252.00" and message["trades_24h"] >= 1
                    break
            async for message in candles:
                if message["seq"] >= hit["seq"]:
                    assert message["close"] == "252.00" and message["interval"] == "1m"
                    break
        await ticker.aclose()
        await candles.aclose()
        assert since < hit["seq"]


async def test_a_subscription_waits_for_min_seq_or_says_behind(api: ApiCluster) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://{api.followers[0]}/v1/ws") as ws,
    ):
        await ws.send_json(
            {"op": "subscribe", "channel": "trades", "symbol": "AAPL", "min_seq": 10**12, "id": 7}
        )
        async with asyncio.timeout(FEED_WAIT_S):
            message = json.loads((await ws.receive()).data)
        assert message["type"] == "error" and message["code"] == "behind" and message["id"] == 7
