"""Read replicas: real node processes that follow the voters' log without voting.

A replica serves reads from its own state and projection, forwards writes to the
leader, agrees with the voters' state hash at the same index, never counts for a
quorum, and rebuilds from a snapshot plus the log after losing its disk.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from api.client import ClientError, RaftexClient
from cluster.admin_client import AdminError
from cluster.demo_keys import issue_demo_keys
from cluster.launcher import DEMO_ACCOUNTS
from tests.cluster.harness import ClusterHarness

SNAPSHOT_WAIT_S = 30.0
ORDERS_BEFORE_SNAPSHOT = 40


def _client(harness: ClusterHarness, keys: list[dict[str, Any]], node: str) -> RaftexClient:
    key = next(k for k in keys if k["account"] == "alice" and k["kind"] == "hmac")
    return RaftexClient([harness.http(node)], key["api_key"], key["secret"], "hmac")


def _keys(harness: ClusterHarness, tmp_path: Path) -> list[dict[str, Any]]:
    leader = harness.wait_leader()
    keys = asyncio.run(
        issue_demo_keys(harness.http(leader), harness.token, tmp_path, DEMO_ACCOUNTS)
    )
    harness.wait_all_applied()
    return keys


def test_a_replica_reads_forwards_writes_and_agrees_but_never_votes(tmp_path: Path) -> None:
    harness = ClusterHarness(tmp_path / "cluster", replicas=1)
    with harness.running():
        keys = _keys(harness, tmp_path)
        leader = harness.wait_leader()
        rows = {row["id"]: row for row in harness.status()}
        assert rows["r1"]["role"] == "replica" and rows["r1"]["leader"] == leader
        assert rows["r1"]["raft"] == ""
        members = harness.call(leader, "GET", "/v1/admin/members")["members"]
        assert {m["id"]: m["role"] for m in members} == {
            "n1": "voter",
            "n2": "voter",
            "n3": "voter",
            "r1": "replica",
        }

        async def through_the_replica() -> tuple[dict, dict, dict]:
            async with _client(harness, keys, "r1") as client:
                body = {
                    "symbol": "AAPL",
                    "side": "buy",
                    "type": "limit",
                    "qty": "3",
                    "price": "180.17",
                    "tif": "gtc",
                    "client_order_id": "via-replica",
                }
                placed = await client.request("POST", "/v1/orders", body=body)
                seq = placed["seq"]
                book = await client.book("AAPL", min_seq=seq)
                order = await client.order(placed["order_id"], min_seq=seq)
                return placed, book, order

        placed, book, order = asyncio.run(through_the_replica())
        assert placed["led_by"] == leader  # the replica forwarded it; the leader committed it
        assert ["180.17", "3"] in [[level[0], level[1]] for level in book["bids"]]
        assert order["client_order_id"] == "via-replica" and order["status"] == "open"
        hashes = harness.wait_hashes_agree()
        assert sorted(row["id"] for row in hashes["nodes"]) == ["n1", "n2", "n3", "r1"]

        # Membership: a replica is recorded, never a Raft member; bad additions change nothing.
        r1_http = harness.http("r1")
        for body, message in (
            ({"role": "replica", "raft": "127.0.0.1:7000", "http": "127.0.0.1:7001"}, "no raft"),
            ({"role": "replica", "http": "nowhere"}, "not host:port"),
            ({"role": "observer", "http": "127.0.0.1:7001"}, "voter or replica"),
            ({"role": "replica", "http": r1_http}, "already a member"),
        ):
            with pytest.raises(AdminError, match=message):
                harness.call(
                    leader, "POST", "/v1/admin/members", {"action": "add", "id": "r1", **body}
                )
        removed = harness.call(
            leader, "POST", "/v1/admin/members", {"action": "remove", "id": "r1"}
        )
        assert removed["role"] == "replica"
        body = {"action": "add", "id": "r1", "role": "replica", "http": r1_http}
        assert harness.call("r1", "POST", "/v1/admin/members", body)["led_by"] == leader
        assert len(harness.call(leader, "GET", "/v1/admin/members")["members"]) == 4

        # Two voters down: the leader and the replica make two of four processes, and no
        # quorum. A replica that voted would let this write commit.
        others = [n for n in ("n1", "n2", "n3") if n != leader]
        for node_id in others:
            harness.cluster.kill(node_id, signal.SIGKILL)
        with pytest.raises(ClientError) as not_committed:
            asyncio.run(_place_once(harness, keys, "r1", "no-quorum"))
        assert not_committed.value.code == "not_committed"


async def _place_once(
    harness: ClusterHarness, keys: list[dict[str, Any]], node: str, client_order_id: str
) -> dict[str, Any]:
    async with _client(harness, keys, node) as client:
        body = {
            "symbol": "AAPL",
            "side": "sell",
            "type": "limit",
            "qty": "1",
            "price": "195.00",
            "tif": "gtc",
            "client_order_id": client_order_id,
        }
        return await client.request("POST", "/v1/orders", body=body)


def test_a_wiped_replica_rebuilds_from_a_snapshot_and_the_log(tmp_path: Path) -> None:
    harness = ClusterHarness(tmp_path / "cluster", replicas=1)
    with harness.running():
        keys = _keys(harness, tmp_path)
        first = asyncio.run(_place_once(harness, keys, "n1", "before-snapshot-0"))
        for n in range(1, ORDERS_BEFORE_SNAPSHOT):
            asyncio.run(_place_once(harness, keys, "n1", f"before-snapshot-{n}"))
        for node_id in ("n1", "n2", "n3"):
            _snapshot(harness, node_id)
        last = asyncio.run(_place_once(harness, keys, "n2", "after-snapshot"))
        harness.cluster.kill("r1", signal.SIGKILL)
        shutil.rmtree(harness.cluster.data_dir / "r1")
        harness.cluster.start_one("r1")
        harness.wait_all_applied(last["seq"])
        log_text = harness.cluster.node("r1").log_path.read_text()
        assert "event=snapshot_loaded node=r1" in log_text
        hashes = harness.wait_hashes_agree()
        assert len(hashes["nodes"]) == 4

        async def history_on_the_replica() -> tuple[dict, dict]:
            async with _client(harness, keys, "r1") as client:
                before = await client.order(first["order_id"], min_seq=last["seq"])
                after = await client.order(last["order_id"], min_seq=last["seq"])
                return before, after

        before, after = asyncio.run(history_on_the_replica())
        assert before["client_order_id"] == "before-snapshot-0"
        assert after["client_order_id"] == "after-snapshot"


def _snapshot(harness: ClusterHarness, node_id: str) -> None:
    harness.call(node_id, "POST", "/v1/admin/snapshot", {})
    deadline = time.monotonic() + SNAPSHOT_WAIT_S
    while harness.call(node_id, "GET", "/v1/admin/status")["last_snapshot_index"] == 0:
        assert time.monotonic() < deadline, f"{node_id} wrote no snapshot"
        time.sleep(0.2)
