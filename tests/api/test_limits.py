"""Connections that hold a node's resources without using them: a feed subscriber that stops
reading, a client that trickles its request head or body, a feed connection that says
nothing. Each is cut by a limit a user can read in the config; these nodes have small ones.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import aiohttp
import pytest

from engine.codes import Side
from engine.commands import CancelOrder, PlaceOrder, command_to_wire
from tests.api.raw import close_code, read_to_end, stalled_subscriber
from tests.cluster.harness import ClusterHarness

FEED_BUFFER_BYTES_MAX = 256 * 1024
IDLE_TIMEOUT_S = 3.0
BODY_TIMEOUT_S = 1.0
FEED_IDLE_TIMEOUT_S = 3.0
FILL_BATCHES = 15
CHURN_BATCHES = 20
ORDERS_PER_BATCH = 200
ACCOUNTS = ("alice", "bob", "carol", "dave")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHarness]:
    """Kernel send buffers left to autotuning (the default), as in the attack run."""
    settings = {
        "feed_buffer_bytes_max": FEED_BUFFER_BYTES_MAX,
        "http_idle_timeout_s": IDLE_TIMEOUT_S,
        "http_body_timeout_s": BODY_TIMEOUT_S,
        "feed_idle_timeout_s": FEED_IDLE_TIMEOUT_S,
    }
    cluster_dir = tmp_path_factory.mktemp("limits") / "cluster"
    with ClusterHarness(cluster_dir, settings=settings).running() as harness:
        yield harness


def _follower(harness: ClusterHarness) -> str:
    leader = harness.wait_leader()
    return harness.http(next(n.node_id for n in harness.cluster.nodes if n.node_id != leader))


def _level_churn() -> Iterator[list[list]]:
    """Batches of admin commands that grow one AAPL level to thousands of orders, then cancel
    and replace orders in it: every entry sends book.l3 subscribers the level's whole queue."""
    resting: list[tuple[str, str]] = []
    for batch in range(FILL_BATCHES + CHURN_BATCHES):
        wires = []
        if batch >= FILL_BATCHES:
            for account, client_id in resting[: ORDERS_PER_BATCH // 2]:
                wires.append(command_to_wire(CancelOrder(account, client_order_id=client_id)))
            del resting[: ORDERS_PER_BATCH // 2]
        while len(wires) < ORDERS_PER_BATCH:
            account = ACCOUNTS[len(wires) % len(ACCOUNTS)]
            client_id = f"churn-{batch}-{len(wires)}"
            wires.append(
                command_to_wire(
                    PlaceOrder(account, "AAPL", Side.BUY, 1, 18_400, client_order_id=client_id)
                )
            )
            resting.append((account, client_id))
        yield wires


@pytest.mark.asyncio
async def test_a_subscriber_that_stops_reading_is_cut_counting_the_kernels_queue(
    limited: ClusterHarness,
) -> None:
    """The kernel alone can hold megabytes for it (an autotuned send buffer): counting only
    the node's own buffer, the subscriber was never cut, and aiohttp's ping timeout later
    dropped it with no close frame at all."""
    leader = await asyncio.to_thread(limited.wait_leader)
    node = await asyncio.to_thread(_follower, limited)
    stalled = stalled_subscriber(
        node, [{"op": "subscribe", "channel": "book.l3", "symbol": "AAPL"}]
    )
    try:
        for wires in _level_churn():
            await asyncio.to_thread(limited.submit_batch, leader, wires)
        received = await asyncio.to_thread(read_to_end, stalled)
    finally:
        stalled.close()
    assert close_code(received) == 4008, len(received)
    assert b"slow consumer" in received
    # Cut at the limit: what reached it is bounded by the limit (plus one look's worth).
    assert len(received) < 2 * FEED_BUFFER_BYTES_MAX


def _open(node: str) -> socket.socket:
    host, port = node.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def _closed_after(sock: socket.socket, trickle: bytes = b"") -> float:
    """Seconds until the node closes the connection, sending `trickle` a byte at a time."""
    start = time.monotonic()
    sock.settimeout(0.25)
    position = 0
    while time.monotonic() - start < 4 * IDLE_TIMEOUT_S:
        if position < len(trickle):
            try:
                sock.sendall(trickle[position : position + 1])
            except OSError:
                return time.monotonic() - start
            position += 1
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return float("inf")


@pytest.mark.parametrize(
    "trickle",
    [b"", b"GET /v1/time HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200],
    ids=["idle", "slow-header"],
)
def test_idle_and_slow_header_connections_are_closed(
    limited: ClusterHarness, trickle: bytes
) -> None:
    with _open(_follower(limited)) as sock:
        closed_s = _closed_after(sock, trickle)
    assert IDLE_TIMEOUT_S - 0.5 <= closed_s <= IDLE_TIMEOUT_S + 2, closed_s


def test_a_body_that_does_not_arrive_gets_a_408(limited: ClusterHarness) -> None:
    with _open(_follower(limited)) as sock:
        sock.sendall(
            b"POST /v1/admin/commands HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {limited.token}\r\n".encode()
            + b"Content-Length: 100\r\n\r\n{"
        )
        sock.settimeout(BODY_TIMEOUT_S + 5)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == "request_timeout"


@pytest.mark.asyncio
async def test_a_feed_connection_that_subscribes_to_nothing_is_closed(
    limited: ClusterHarness,
) -> None:
    node = await asyncio.to_thread(_follower, limited)
    async with aiohttp.ClientSession() as session:
        quiet = await session.ws_connect(f"ws://{node}/v1/ws")
        busy = await session.ws_connect(f"ws://{node}/v1/ws")
        await busy.send_json({"op": "subscribe", "channel": "ticker", "symbol": "AAPL"})
        async with asyncio.timeout(FEED_IDLE_TIMEOUT_S + 10):
            while (message := await quiet.receive()).type == aiohttp.WSMsgType.TEXT:
                pass
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001
        assert not busy.closed
        await busy.close()
