"""Admin reads of the whole state never cost availability: on a large state (a million
events with RAFTEX_SOAK=1, 300,000 in `make test`), `raftex admin hash` and the invariant
check run beside the apply thread, and the cluster keeps its leader and term (on a million
events the hash took 3.6 s on the Raft thread: an election every time; 300,000 is still
several election timeouts' worth).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.admin_client import AdminClient
from engine.codes import Side, TimeInForce
from engine.commands import PlaceOrder, command_to_wire
from tests.cluster.harness import ClusterHarness

SOAK = os.environ.get("RAFTEX_SOAK") == "1"
EVENTS_MIN = 1_000_000 if SOAK else 300_000
COMMANDS_PER_REQUEST = 200
REQUESTS_AT_ONCE = 4
HASH_ROUNDS = 2


def _crossing_pairs() -> Iterator[list]:
    """A resting sell and the buy that takes it, between two demo accounts in turn, each with
    a client order id (which the engine remembers for a day: the state grows with them)."""
    pair = 0
    while True:
        maker, taker = ("alice", "bob") if pair % 2 else ("carol", "dave")
        yield command_to_wire(
            PlaceOrder(maker, "MSFT", Side.SELL, 1, 42_000, client_order_id=f"m{pair}")
        )
        yield command_to_wire(
            PlaceOrder(
                taker, "MSFT", Side.BUY, 1, 42_000, TimeInForce.IOC, client_order_id=f"t{pair}"
            )
        )
        pair += 1


async def _load(harness: ClusterHarness, leader: str) -> int:
    """Applies crossing pairs until the event history holds EVENTS_MIN events."""
    commands = _crossing_pairs()
    last_seq = 0
    async with AdminClient(harness.token, timeout_s=30.0) as admin:

        async def one_request() -> int:
            wires = [next(commands) for _ in range(COMMANDS_PER_REQUEST)]
            answer = await admin.call(
                harness.http(leader),
                "POST",
                "/v1/admin/commands/batch",
                {"commands": wires, "detail": "summary", "timeout_ms": 30_000},
            )
            return max(row["seq"] for row in answer["outcomes"])

        while last_seq < EVENTS_MIN:
            seqs = await asyncio.gather(*(one_request() for _ in range(REQUESTS_AT_ONCE)))
            last_seq = max(last_seq, *seqs)
    return last_seq


@pytest.mark.soak
def test_the_state_hash_of_a_large_state_costs_no_election(tmp_path: Path) -> None:
    with ClusterHarness(tmp_path / "cluster").running() as harness:
        leader = harness.wait_leader()
        last_seq = asyncio.run(_load(harness, leader))
        assert last_seq >= EVENTS_MIN
        before = {row["id"]: row["term"] for row in harness.status()}
        for _ in range(HASH_ROUNDS):
            hashes = harness.hashes()
            assert hashes["agree"], hashes
        invariants = harness.call(leader, "GET", "/v1/admin/invariants")
        assert invariants["ok"] and invariants["seq"] >= last_seq, invariants["problems"]
        after = {row["id"]: row["term"] for row in harness.status()}
        assert after == before, f"terms moved while hashing: {before} -> {after}"
        assert harness.wait_leader() == leader
