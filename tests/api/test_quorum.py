"""Writes when the leader is lost: a leader without a quorum acknowledges nothing, a follower
does not wait out a forward to a leader that stopped, a client pinned to a silent leader moves
on; every retry with the same client order id places the order exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from api.client import ClientError, RaftexClient, Unavailable
from cluster.demo_keys import issue_demo_keys
from cluster.launcher import DEMO_ACCOUNTS
from tests.cluster.harness import ClusterHarness

pytestmark = pytest.mark.asyncio


@dataclass
class Running:
    harness: ClusterHarness
    leader: str
    keys: list[dict[str, Any]]

    def key(self, account: str, kind: str) -> dict[str, Any]:
        return next(k for k in self.keys if k["account"] == account and k["kind"] == kind)

    def others(self) -> list[str]:
        return [n.node_id for n in self.harness.cluster.nodes if n.node_id != self.leader]

    @contextlib.contextmanager
    def leader_paused(self) -> Iterator[None]:
        """SIGSTOP of the leader for the block; SIGCONT on the way out, whatever happens."""
        process = self.harness.cluster.processes[self.leader]
        process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            process.send_signal(signal.SIGCONT)

    async def only_once(self, client: RaftexClient, client_order_id: str, seq: int) -> None:
        mine = await client.orders("all", limit=1000, min_seq=seq)
        same = [o for o in mine["orders"] if o["client_order_id"] == client_order_id]
        assert len(same) == 1, json.dumps(same)

    async def placed_once(self, client: RaftexClient, body: dict[str, str]) -> None:
        """Places `body` and retries it with the same client order id: one order. An earlier
        attempt that looked lost may have committed, so the first answer may already be the
        retried one; either way both name the same order."""
        placed = await client.write("POST", "/v1/orders", body)
        again = await client.write("POST", "/v1/orders", body)
        assert again["retried"] is True and _order_id(again) == _order_id(placed)
        await self.only_once(client, body["client_order_id"], again["seq"])


@pytest_asyncio.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    harness = ClusterHarness(tmp_path / "cluster", nodes=3)
    try:
        await asyncio.to_thread(harness.start)
        await asyncio.to_thread(harness.seed)
        leader = await asyncio.to_thread(harness.wait_leader)
        keys = await issue_demo_keys(
            harness.http(leader), harness.token, tmp_path / "cluster", DEMO_ACCOUNTS
        )
        await asyncio.to_thread(harness.wait_all_applied)
        yield Running(harness, leader, keys)
    finally:
        await asyncio.to_thread(harness.stop)


def _order_id(answer: dict[str, Any]) -> int:
    """A placement's order id, from a first answer or a retry's (which nests the order)."""
    return answer["order_id"] if "order_id" in answer else answer["order"]["order_id"]


def _limit(side: str, qty: str, price: str, client_order_id: str, symbol: str) -> dict[str, str]:
    return {
        "symbol": symbol,
        "side": side,
        "type": "limit",
        "qty": qty,
        "price": price,
        "client_order_id": client_order_id,
    }


async def test_no_quorum_no_acknowledgement_then_exactly_once(running: Running) -> None:
    harness = running.harness
    key = running.key("bob", "hmac")
    followers = running.others()
    for node_id in followers:
        harness.cluster.kill(node_id)
    body = _limit("buy", "2", "186.00", "no-quorum-1", "AAPL")
    async with RaftexClient(
        [harness.http(running.leader)], key["api_key"], key["secret"], "hmac"
    ) as bob:
        with pytest.raises(ClientError) as caught:
            await bob.request("POST", "/v1/orders", body=body)
        assert (caught.value.status, caught.value.code) == (503, "not_committed")
        assert "same client order id" in caught.value.message
        for node_id in followers:
            harness.cluster.start_one(node_id)
        await asyncio.to_thread(harness.wait_leader)
        await running.placed_once(bob, body)


async def test_a_write_forwarded_to_a_leader_that_stops_answers_when_the_lead_moves(
    running: Running,
) -> None:
    """The follower does not wait out its forward to a paused leader: once it sees the new
    leader it answers not_committed, and the retry with the same id places the order once."""
    key = running.key("carol", "hmac")
    follower = running.harness.http(running.others()[0])
    body = _limit("sell", "3", "425.00", "lead-moved-1", "MSFT")
    leader = running.harness.http(running.leader)
    async with (
        RaftexClient([follower], key["api_key"], key["secret"], "hmac", timeout_s=30.0) as carol,
        RaftexClient([leader], key["api_key"], key["secret"], "hmac", timeout_s=1.0) as hasty,
    ):
        with running.leader_paused():
            forwarded, direct = await asyncio.gather(
                carol.request("POST", "/v1/orders", body=body),
                asyncio.wait_for(hasty.book("MSFT"), timeout=15.0),
                return_exceptions=True,
            )
        # The client's own timeout holds for a node that keeps silent.
        assert isinstance(direct, Unavailable), direct
        assert isinstance(forwarded, ClientError), forwarded
        assert (forwarded.status, forwarded.code) == (503, "not_committed")
        assert "lost the lead" in forwarded.message
        await running.placed_once(carol, body)


async def test_a_client_on_a_leader_that_stops_answering_moves_to_the_new_one(
    running: Running,
) -> None:
    """The client's request timeout is two minutes; the write lands on the new leader long
    before, while the old one is still paused, and only once."""
    key = running.key("dave", "ed25519")
    nodes = [running.harness.http(n.node_id) for n in running.harness.cluster.nodes]
    async with RaftexClient(nodes, key["api_key"], key["secret"], timeout_s=120.0) as dave:
        first = await dave.place_order("NVDA", "buy", "1", price="140.00", client_order_id="p-1")
        assert first["led_by"] == running.leader
        with running.leader_paused():
            moved = await asyncio.wait_for(
                dave.place_order("NVDA", "buy", "1", price="140.00", client_order_id="p-2"),
                timeout=30.0,
            )
            assert moved["led_by"] != running.leader
        await running.only_once(dave, "p-2", moved["seq"])
