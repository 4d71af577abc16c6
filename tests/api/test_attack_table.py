"""The README's attack table, the rows not covered elsewhere, each against the real cluster:
signed requests from the wrong time, another account's orders, the admin and client
credentials swapped, an oversized body, garbage on the Raft port, and 10,000 idle or
slow connections while a client trades. Nothing changes state, nothing crashes, and the
trading client keeps being answered."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import time
import uuid

import pytest

from api.client import ClientError, RaftexClient
from api.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    hmac_signature,
    signing_payload,
)
from tests.api.conftest import ApiCluster, fresh_account
from tests.api.raw import raw_call

pytestmark = pytest.mark.asyncio

IDLE_CONNECTIONS = 10_000
TRADES_UNDER_LOAD = 20
# Far above an order's usual round trip here (tens of ms): only a stall fails it.
ANSWER_WITHIN_S = 2.0


def _signed(key: dict, method: str, path: str, timestamp_ms: int, body: bytes = b"") -> dict:
    payload = signing_payload(timestamp_ms, method, path, "", body)
    return {
        KEY_HEADER: key["api_key"],
        TIMESTAMP_HEADER: str(timestamp_ms),
        SIGNATURE_HEADER: hmac_signature(key["secret"].encode(), payload),
    }


@pytest.mark.parametrize(("offset_ms", "what"), [(-120_000, "stale"), (120_000, "future")])
async def test_a_correctly_signed_request_from_the_wrong_time_is_refused(
    api: ApiCluster, offset_ms: int, what: str
) -> None:
    key = api.key("alice", "hmac")
    body = b'{"symbol": "AAPL", "side": "buy", "type": "limit", "qty": "1", "price": "100.00"}'
    headers = _signed(key, "POST", "/v1/orders", int(time.time() * 1000) + offset_ms, body)
    headers["Content-Type"] = "application/json"
    status, answer = await raw_call(api.leader_http, "POST", "/v1/orders", headers, body)
    assert (status, answer["code"]) == (401, "stale_request"), what


async def test_another_accounts_order_cannot_be_read_cancelled_or_amended(
    api: ApiCluster,
) -> None:
    owner = await fresh_account(api, "owner")
    thief = await fresh_account(api, "thief")
    client_order_id = uuid.uuid4().hex
    async with await owner.client(["read", "trade"]) as mine:
        placed = await mine.place_order(
            "AAPL", "buy", "3", price="185.00", client_order_id=client_order_id
        )
        async with await thief.client(["read", "trade"]) as theirs:
            for by in ({"order_id": placed["order_id"]}, {"client_order_id": client_order_id}):
                for attempt in (
                    theirs.order(**by),
                    theirs.cancel_order(**by),
                    theirs.amend_order("AAPL", qty="1", **by),
                ):
                    with pytest.raises(ClientError) as refused:
                        await attempt
                    # The same answer as for an order that does not exist: nothing leaks.
                    assert (refused.value.status, refused.value.code) == (404, "unknown_order")
        still = await mine.order(order_id=placed["order_id"])
    assert still["status"] == "open" and still["qty"] == "3"


async def test_admin_and_client_credentials_do_not_open_each_others_doors(
    api: ApiCluster,
) -> None:
    key = api.key("alice", "hmac")
    headers = _signed(key, "GET", "/v1/admin/status", int(time.time() * 1000))
    status, answer = await raw_call(api.leader_http, "GET", "/v1/admin/status", headers)
    assert status == 401 and answer["code"] == "unauthorized"
    bearer = {"Authorization": f"Bearer {api.harness.token}"}
    status, answer = await raw_call(api.leader_http, "GET", "/v1/account", bearer)
    assert status == 401 and answer["code"] == "unauthenticated"


async def test_an_oversized_body_is_refused_before_it_is_read(api: ApiCluster) -> None:
    key = api.key("alice", "hmac")
    body = b'{"symbol": "' + b"A" * (8 * 1024 * 1024) + b'"}'
    headers = _signed(key, "POST", "/v1/orders", int(time.time() * 1000), body)
    headers["Content-Type"] = "application/json"
    status, answer = await raw_call(api.leader_http, "POST", "/v1/orders", headers, body)
    assert status == 413 and answer["code"] == "request_entity_too_large"


async def test_garbage_on_the_raft_port_changes_nothing(api: ApiCluster) -> None:
    harness = api.harness
    follower = next(n for n in harness.cluster.nodes if harness.http(n.node_id) != api.leader_http)
    host, port = follower.raft.rsplit(":", 1)
    before = {s["id"]: (s["term"], s["role"]) for s in await asyncio.to_thread(harness.status)}
    messages = [
        os.urandom(4096),
        # A length prefix promising more than ever comes, then the connection closes.
        (1 << 30).to_bytes(4, "big") + os.urandom(16),
        b"\x00\x00\x00\x10" + b"\x00" * 16,
        b"",
    ]
    for message in messages * 5:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(message)
    async with api.client("alice", node=api.leader_http) as alice:
        placed = await alice.place_order("MSFT", "buy", "1", price="400.00")
        await api.applied_everywhere(placed["seq"])
        await alice.cancel_order(order_id=placed["order_id"])
    await asyncio.to_thread(harness.wait_hashes_agree)
    after = {s["id"]: (s["term"], s["role"]) for s in await asyncio.to_thread(harness.status)}
    assert after == before


async def test_ten_thousand_idle_and_slow_connections_do_not_stop_trading(
    api: ApiCluster,
) -> None:
    host, port = api.leader_http.rsplit(":", 1)
    async with api.client("bob", node=api.leader_http) as bob:
        baseline = [await _timed_order(bob) for _ in range(5)]
        sockets = await asyncio.to_thread(_open_idle, host, int(port), IDLE_CONNECTIONS)
        try:
            loaded = [await _timed_order(bob) for _ in range(TRADES_UNDER_LOAD)]
        finally:
            for sock in sockets:
                sock.close()
    assert max(loaded) < ANSWER_WITHIN_S, (statistics.median(baseline), loaded)


async def _timed_order(client: RaftexClient) -> float:
    started = time.monotonic()
    placed = await asyncio.wait_for(
        client.place_order("NVDA", "sell", "1", price="150.00"), ANSWER_WITHIN_S * 2
    )
    await client.cancel_order(order_id=placed["order_id"])
    return time.monotonic() - started


def _open_idle(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` connections: most send nothing, every tenth a request line and then stalls
    mid-header (slowloris)."""
    opened = []
    for n in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((host, port))
        opened.append(sock)
        if n % 10 == 0:
            time.sleep(0)
    time.sleep(0.5)
    for sock in opened[::10]:
        with contextlib.suppress(OSError):
            sock.send(b"GET /v1/time HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return opened
