"""A leader without a quorum acknowledges nothing: 503 not_committed, and a retry with the
same client order id after the quorum is back places the order exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from api.client import ClientError, RaftexClient
from cluster.demo_keys import issue_demo_keys
from cluster.launcher import DEMO_ACCOUNTS
from tests.cluster.harness import ClusterHarness

pytestmark = pytest.mark.asyncio


async def test_no_quorum_no_acknowledgement_then_exactly_once(tmp_path: Path) -> None:
    harness = ClusterHarness(tmp_path / "cluster", nodes=3)
    try:
        await asyncio.to_thread(harness.start)
        await asyncio.to_thread(harness.seed)
        leader = await asyncio.to_thread(harness.wait_leader)
        keys = await issue_demo_keys(
            harness.http(leader), harness.token, tmp_path / "cluster", DEMO_ACCOUNTS
        )
        key = next(k for k in keys if k["account"] == "bob" and k["kind"] == "hmac")
        followers = [n.node_id for n in harness.cluster.nodes if n.node_id != leader]
        for node_id in followers:
            harness.cluster.kill(node_id)
        body = {
            "symbol": "AAPL",
            "side": "buy",
            "type": "limit",
            "qty": "2",
            "price": "186.00",
            "client_order_id": "no-quorum-1",
        }
        async with RaftexClient(
            [harness.http(leader)], key["api_key"], key["secret"], "hmac"
        ) as bob:
            with pytest.raises(ClientError) as caught:
                await bob.request("POST", "/v1/orders", body=body)
            assert (caught.value.status, caught.value.code) == (503, "not_committed")
            assert "same client order id" in caught.value.message
            for node_id in followers:
                harness.cluster.start_one(node_id)
            await asyncio.to_thread(harness.wait_leader)
            placed = await bob.write("POST", "/v1/orders", body)
            again = await bob.write("POST", "/v1/orders", body)
            order_id = placed["order_id"] if "order_id" in placed else placed["order"]["order_id"]
            assert again["retried"] is True and again["order"]["order_id"] == order_id
            mine = await bob.orders("all", limit=1000, min_seq=again["seq"])
            same = [o for o in mine["orders"] if o["client_order_id"] == "no-quorum-1"]
            assert len(same) == 1, json.dumps(same)
    finally:
        await asyncio.to_thread(harness.stop)


async def test_a_write_forwarded_to_a_leader_that_stops_answers_when_the_lead_moves(
    tmp_path: Path,
) -> None:
    """The follower does not wait out its forward to a paused leader: once it sees the new
    leader it answers not_committed, and the retry with the same id places the order once."""
    harness = ClusterHarness(tmp_path / "cluster", nodes=3)
    paused = None
    try:
        await asyncio.to_thread(harness.start)
        await asyncio.to_thread(harness.seed)
        leader = await asyncio.to_thread(harness.wait_leader)
        keys = await issue_demo_keys(
            harness.http(leader), harness.token, tmp_path / "cluster", DEMO_ACCOUNTS
        )
        key = next(k for k in keys if k["account"] == "carol" and k["kind"] == "hmac")
        follower = next(n.node_id for n in harness.cluster.nodes if n.node_id != leader)
        body = {
            "symbol": "MSFT",
            "side": "sell",
            "type": "limit",
            "qty": "3",
            "price": "425.00",
            "client_order_id": "lead-moved-1",
        }
        async with RaftexClient(
            [harness.http(follower)], key["api_key"], key["secret"], "hmac", timeout_s=30.0
        ) as carol:
            paused = harness.cluster.processes[leader]
            paused.send_signal(signal.SIGSTOP)
            with pytest.raises(ClientError) as caught:
                await carol.request("POST", "/v1/orders", body=body)
            assert (caught.value.status, caught.value.code) == (503, "not_committed")
            assert "lost the lead" in caught.value.message
            paused.send_signal(signal.SIGCONT)
            paused = None
            placed = await carol.write("POST", "/v1/orders", body)
            again = await carol.write("POST", "/v1/orders", body)
            assert again["retried"] is True
            assert again["order"]["order_id"] == placed["order_id"]
            mine = await carol.orders("all", limit=1000, min_seq=again["seq"])
            same = [o for o in mine["orders"] if o["client_order_id"] == "lead-moved-1"]
            assert len(same) == 1, json.dumps(same)
    finally:
        if paused is not None:
            paused.send_signal(signal.SIGCONT)
        await asyncio.to_thread(harness.stop)


async def test_a_client_on_a_leader_that_stops_answering_moves_to_the_new_one(
    tmp_path: Path,
) -> None:
    """The client's request timeout is two minutes; the write lands on the new leader long
    before, while the old one is still paused, and only once."""
    harness = ClusterHarness(tmp_path / "cluster", nodes=3)
    paused = None
    try:
        await asyncio.to_thread(harness.start)
        await asyncio.to_thread(harness.seed)
        leader = await asyncio.to_thread(harness.wait_leader)
        keys = await issue_demo_keys(
            harness.http(leader), harness.token, tmp_path / "cluster", DEMO_ACCOUNTS
        )
        key = next(k for k in keys if k["account"] == "dave" and k["kind"] == "ed25519")
        nodes = [harness.http(n.node_id) for n in harness.cluster.nodes]
        async with RaftexClient(nodes, key["api_key"], key["secret"], timeout_s=120.0) as dave:
            first = await dave.place_order(
                "NVDA", "buy", "1", price="140.00", client_order_id="pinned-1"
            )
            assert first["led_by"] == leader
            paused = harness.cluster.processes[leader]
            paused.send_signal(signal.SIGSTOP)
            moved = await asyncio.wait_for(
                dave.place_order("NVDA", "buy", "1", price="140.00", client_order_id="pinned-2"),
                timeout=30.0,
            )
            assert moved["led_by"] != leader
            paused.send_signal(signal.SIGCONT)
            paused = None
            mine = await dave.orders("all", limit=1000, min_seq=moved["seq"])
            same = [o for o in mine["orders"] if o["client_order_id"] == "pinned-2"]
            assert len(same) == 1, json.dumps(same)
    finally:
        if paused is not None:
            paused.send_signal(signal.SIGCONT)
        await asyncio.to_thread(harness.stop)
