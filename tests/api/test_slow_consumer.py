"""A subscriber that stops reading is cut with close code 4008; the node and the other
subscribers carry on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from engine.codes import Side
from engine.commands import PlaceOrder, command_to_wire
from tests.api.raw import close_code, read_to_end, stalled_subscriber
from tests.cluster.harness import ClusterHarness

pytestmark = pytest.mark.asyncio
BUFFER_BYTES_MAX = 64 * 1024
ORDER_BATCHES = 20
ORDERS_PER_BATCH = 200
ACCOUNTS = ("alice", "bob", "carol", "dave")


async def test_a_subscriber_that_stops_reading_is_cut(tmp_path: Path) -> None:
    harness = ClusterHarness(
        tmp_path / "cluster",
        # Small buffers in the kernel and in the node, so a little data shows the stall.
        settings={"feed_buffer_bytes_max": BUFFER_BYTES_MAX, "feed_socket_send_bytes": 65_536},
    )
    try:
        await asyncio.to_thread(harness.start)
        await asyncio.to_thread(harness.seed)
        leader = await asyncio.to_thread(harness.wait_leader)
        follower = next(n.node_id for n in harness.cluster.nodes if n.node_id != leader)
        url = f"ws://{harness.http(follower)}/v1/ws"
        # Every entry sends the whole queue of the level it grew: a lot of data, fast.
        subscribe = {"op": "subscribe", "channel": "book.l3", "symbol": "AAPL"}
        stalled = stalled_subscriber(harness.http(follower), [subscribe])
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as reader:
            await reader.send_json(subscribe)
            assert json.loads((await reader.receive()).data)["type"] == "subscribed"
            updates = 0
            for batch in range(ORDER_BATCHES):
                wires = [
                    command_to_wire(
                        PlaceOrder(
                            ACCOUNTS[n % len(ACCOUNTS)],
                            "AAPL",
                            Side.BUY,
                            1,
                            18_500,
                            client_order_id=f"slow-{batch}-{n}",
                        )
                    )
                    for n in range(ORDERS_PER_BATCH)
                ]
                await asyncio.to_thread(harness.submit_batch, leader, wires)
                # The reader keeps up, draining what arrived so far.
                while True:
                    try:
                        message = await asyncio.wait_for(reader.receive(), 0.05)
                    except TimeoutError:
                        break
                    if json.loads(message.data).get("type") == "update":
                        updates += 1
            received = await asyncio.to_thread(read_to_end, stalled)
            stalled.close()
            assert close_code(received) == 4008
            assert updates >= ORDER_BATCHES, "the reader kept receiving"
            assert not reader.closed
    finally:
        await asyncio.to_thread(harness.stop)


async def test_requests_in_flight_are_bounded(tmp_path: Path) -> None:
    """WebSocket connections hold their slot for their lifetime: the open-connection bound."""
    harness = ClusterHarness(tmp_path / "cluster", settings={"requests_in_flight_max": 2})
    try:
        await asyncio.to_thread(harness.start)
        node = harness.http(harness.cluster.nodes[0].node_id)
        async with aiohttp.ClientSession() as session:
            first = await session.ws_connect(f"ws://{node}/v1/ws")
            second = await session.ws_connect(f"ws://{node}/v1/ws")
            async with session.get(f"http://{node}/v1/time") as response:
                body = await response.json()
                assert response.status == 503 and body["code"] == "busy"
                assert response.headers["Retry-After"] == "1"
            await first.close()
            await asyncio.sleep(0.2)
            async with session.get(f"http://{node}/v1/time") as response:
                assert response.status == 200
            await second.close()
    finally:
        await asyncio.to_thread(harness.stop)
