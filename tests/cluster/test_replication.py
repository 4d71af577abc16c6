"""Stories of a real 3-node cluster: processes on 127.0.0.1, RocksDB, journals on disk."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.admin_client import AdminError
from cluster.launcher import HOST, free_port
from engine.codes import Side
from engine.commands import PlaceOrder, command_to_wire
from tests.cluster.harness import ClusterHarness


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterHarness]:
    with ClusterHarness(tmp_path / "cluster", nodes=3).running() as harness:
        yield harness


def _order(cid: str, side: Side = Side.BUY, price: int = 18_990) -> list:
    return command_to_wire(PlaceOrder("alice", "AAPL", side, 3, price, client_order_id=cid))


def test_orders_submitted_on_leader_and_followers_reach_every_node(
    cluster: ClusterHarness,
) -> None:
    leader = cluster.wait_leader()
    follower = next(n.node_id for n in cluster.cluster.nodes if n.node_id != leader)
    on_leader = cluster.submit(leader, _order("via-leader"))
    on_follower = cluster.submit(follower, _order("via-follower"))

    assert on_leader["led_by"] == leader
    assert on_follower["led_by"] == leader, "a follower forwards writes to the leader"
    assert on_follower["events"][0]["type"] == "accepted"
    result = cluster.wait_hashes_agree()
    assert result["agree"]
    for node in cluster.cluster.nodes:
        counts = cluster.accepted_counts(node.node_id)
        assert counts[("alice", "via-leader")] == 1
        assert counts[("alice", "via-follower")] == 1


def test_a_retried_order_is_applied_once_and_returns_the_original_outcome(
    cluster: ClusterHarness,
) -> None:
    leader = cluster.wait_leader()
    first = cluster.submit(leader, _order("retry-me"))
    again = cluster.submit(leader, _order("retry-me"))

    assert again["events"] == first["events"][:1]
    assert cluster.accepted_counts(leader)[("alice", "retry-me")] == 1


def test_kill_9_of_the_leader_under_load_loses_no_acknowledged_order(
    cluster: ClusterHarness,
) -> None:
    old_leader = cluster.wait_leader()

    def kill_leader() -> None:
        cluster.cluster.kill(old_leader, signal.SIGKILL)

    result = cluster.run_load(orders=300, concurrency=8, prefix="kill", during=kill_leader)
    new_leader = cluster.wait_leader([n for n in cluster.cluster.processes])
    assert new_leader != old_leader
    for node_id in cluster.cluster.processes:
        counts = cluster.accepted_counts(node_id)
        assert all(counts[key] == 1 for key in result.acked), "every ack exactly once"

    cluster.cluster.start_one(old_leader)
    agreed = cluster.wait_hashes_agree()
    assert len(agreed["nodes"]) == 3
    counts = cluster.accepted_counts(old_leader)
    assert all(counts[key] == 1 for key in result.acked)


def test_kill_9_of_every_node_then_restart_keeps_every_acknowledged_order(
    cluster: ClusterHarness,
) -> None:
    result = cluster.run_load(orders=200, concurrency=6, prefix="all")
    for node_id in list(cluster.cluster.processes):
        cluster.cluster.kill(node_id, signal.SIGKILL)
    cluster.start()

    cluster.wait_hashes_agree()
    for node in cluster.cluster.nodes:
        counts = cluster.accepted_counts(node.node_id)
        assert all(counts[key] == 1 for key in result.acked)
        audit = cluster.call(node.node_id, "GET", "/v1/admin/audit/verify")
        assert audit["ok"], audit


def test_a_node_with_a_wiped_disk_rejoins_from_a_snapshot(cluster: ClusterHarness) -> None:
    cluster.run_load(orders=100, concurrency=4, prefix="before")
    for node in cluster.cluster.nodes:
        cluster.call(node.node_id, "POST", "/v1/admin/snapshot", {})
    leader = cluster.wait_leader()
    _wait_snapshot_everywhere(cluster)
    victim = next(n for n in cluster.cluster.nodes if n.node_id != leader)
    cluster.cluster.kill(victim.node_id, signal.SIGKILL)
    shutil.rmtree(cluster.cluster.data_dir / victim.node_id)
    cluster.run_load(orders=50, concurrency=4, prefix="while-away")

    cluster.cluster.start_one(victim.node_id)
    cluster.wait_hashes_agree()
    status = cluster.call(victim.node_id, "GET", "/v1/admin/status")
    assert status["last_snapshot_index"] > 0, "the wiped node was rebuilt from a snapshot"


def test_a_wiped_voter_does_not_elect_a_leader_before_it_has_the_log_again(
    cluster: ClusterHarness,
) -> None:
    """A wiped voter forgot whom it voted for: with it and one other voter up, electing a
    leader could make a second leader in a term it had already voted in. The cluster waits
    for a voter that kept its disk, then the wiped one catches up."""
    before = cluster.run_load(orders=20, concurrency=2, prefix="before")
    leader = cluster.wait_leader()
    wiped, survivor = [n.node_id for n in cluster.cluster.nodes if n.node_id != leader]
    cluster.cluster.kill(leader, signal.SIGKILL)
    cluster.cluster.kill(wiped, signal.SIGKILL)
    shutil.rmtree(cluster.cluster.data_dir / wiped)
    cluster.cluster.start_one(wiped)

    time.sleep(4)  # a dozen election timeouts of the survivor's
    roles = {s["id"]: s["role"] for s in cluster.status()}
    assert set(roles) == {wiped, survivor} and "leader" not in roles.values(), roles

    cluster.cluster.start_one(leader)
    cluster.wait_hashes_agree()
    counts = cluster.accepted_counts(wiped)
    assert before.acked and all(counts[key] == 1 for key in before.acked)


def _wait_snapshot_everywhere(cluster: ClusterHarness) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(s.get("last_snapshot_index", 0) > 0 for s in cluster.status()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no snapshot on every node: {cluster.status()}")


def test_a_node_with_the_wrong_secret_cannot_join_or_change_anything(
    cluster: ClusterHarness, tmp_path: Path
) -> None:
    cluster.wait_hashes_agree()
    terms_before = {s["id"]: s["term"] for s in cluster.status()}
    seqs_before = {s["id"]: s["last_seq"] for s in cluster.status()}
    leader_before = cluster.wait_leader()
    intruder_raft = f"{HOST}:{free_port()}"
    intruder_http = f"{HOST}:{free_port()}"
    peers = "".join(
        f'[[peers]]\nid = "{n.node_id}"\nraft = "{n.raft}"\nhttp = "{n.http}"\n'
        for n in cluster.cluster.nodes
    )
    config = tmp_path / "intruder.toml"
    config.write_text(
        f'node_id = "intruder"\nraft = "{intruder_raft}"\nhttp = "{intruder_http}"\n'
        f'data_dir = "{tmp_path / "intruder"}"\nsecret = "not-the-cluster-secret-at-all"\n'
        f'admin_token = "intruder-token"\n{peers}'
    )
    intruder = subprocess.Popen(
        [sys.executable, "-m", "raftex.cli", "node", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(4)  # several election timeouts of the intruder
    finally:
        intruder.send_signal(signal.SIGTERM)
        intruder.wait(timeout=10)

    cluster.wait_hashes_agree()
    # Idle ticks move log time (and so the hash); the event history must not move.
    assert {s["id"]: s["last_seq"] for s in cluster.status()} == seqs_before
    assert {s["id"]: s["term"] for s in cluster.status()} == terms_before
    assert cluster.wait_leader() == leader_before
    members = cluster.call(leader_before, "GET", "/v1/admin/members")
    assert "intruder" not in {m["id"] for m in members["members"]}


def test_nodes_join_and_leave_under_load(cluster: ClusterHarness) -> None:
    """Add a 4th and a 5th node, then remove one, while orders keep flowing."""
    removed: list[str] = []

    def change_membership() -> None:
        for _ in range(2):
            members = [n.node_id for n in cluster.cluster.nodes]
            joiner = cluster.cluster.plan_joiner()
            cluster.cluster.start_one(joiner.node_id)
            body = {"action": "add", "id": joiner.node_id, "raft": joiner.raft, "http": joiner.http}
            cluster.call(cluster.wait_leader(members), "POST", "/v1/admin/members", body)
            cluster.cluster.admitted(joiner.node_id)
        # An operator removes a node only once the joiners follow the leader, and
        # removes a follower (the leader refuses to remove itself).
        leader = cluster.wait_leader()
        victim = next(n.node_id for n in cluster.cluster.nodes if n.node_id != leader)
        cluster.call(leader, "POST", "/v1/admin/members", {"action": "remove", "id": victim})
        cluster.cluster.kill(victim, signal.SIGTERM)
        cluster.cluster.forget(victim)
        removed.append(victim)

    result = cluster.run_load(orders=300, concurrency=6, prefix="members", during=change_membership)

    everyone = {"n1", "n2", "n3", "n4", "n5"} - set(removed)
    agreed = cluster.wait_hashes_agree()
    assert len(removed) == 1
    assert {row["id"] for row in agreed["nodes"]} == everyone
    members = cluster.call(cluster.wait_leader(), "GET", "/v1/admin/members")
    assert {m["id"] for m in members["members"]} == everyone
    for node in cluster.cluster.nodes:
        counts = cluster.accepted_counts(node.node_id)
        assert all(counts[key] == 1 for key in result.acked)


def test_removing_a_node_that_would_cost_the_quorum_is_refused(cluster: ClusterHarness) -> None:
    leader = cluster.wait_leader()
    others = [n.node_id for n in cluster.cluster.nodes if n.node_id != leader]
    cluster.cluster.kill(others[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while others[0] in cluster.call(leader, "GET", "/v1/admin/status")["peers_connected"]:
        assert time.monotonic() < deadline, f"{leader} still connected to the killed {others[0]}"
        time.sleep(0.05)
    with pytest.raises(AdminError) as refused:
        cluster.call(leader, "POST", "/v1/admin/members", {"action": "remove", "id": others[1]})
    assert refused.value.code == "would_lose_quorum"
    members = cluster.call(leader, "GET", "/v1/admin/members")
    assert len(members["members"]) == 3


def test_a_follower_with_a_corrupted_journal_refuses_to_start(cluster: ClusterHarness) -> None:
    cluster.run_load(orders=40, concurrency=2, prefix="corrupt")
    leader = cluster.wait_leader()
    victim = next(n for n in cluster.cluster.nodes if n.node_id != leader)
    cluster.cluster.kill(victim.node_id, signal.SIGTERM)
    journal = cluster.cluster.data_dir / victim.node_id / "raft.journal"
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0xFF
    journal.write_bytes(bytes(data))

    done = subprocess.run(  # noqa: PLW1510 - the exit status is the point
        [sys.executable, "-m", "raftex.cli", "node", "--config", str(victim.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "refusing to start" in done.stderr
    assert "raft.journal" in done.stderr
    # The rest of the cluster carries on.
    assert cluster.submit(leader, _order("after-corruption"))["events"][0]["type"] == "accepted"
