"""The local launcher: a node that does not obey SIGTERM is still ended, with its projector,
instead of leaving the caller with an exception and a live process; the nodes' configs
follow the membership."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cluster.config import load_config
from cluster.launcher import LocalCluster, LocalNode
from tests.cluster.harness import ClusterHarness


def test_a_node_that_ignores_sigterm_is_killed_with_its_projector(tmp_path: Path) -> None:
    with ClusterHarness(tmp_path / "cluster").running() as harness:
        harness.wait_leader()
        pid = harness.cluster.processes["n3"].pid
        # A stopped process leaves SIGTERM pending: as hung as a node can be.
        os.kill(pid, signal.SIGSTOP)
        harness.cluster.kill("n3", signal.SIGTERM)
        assert "n3" not in harness.cluster.processes
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # no process of the node's group is left: projector included
        assert harness.wait_leader(list(harness.cluster.processes)) in ("n1", "n2")


def _peer_ids(node: LocalNode) -> set[str]:
    return {peer.node_id for peer in load_config(node.config_path, {}).peers}


def test_every_config_follows_the_membership_so_a_wiped_member_knows_the_leader(
    tmp_path: Path,
) -> None:
    """A node on an empty disk starts from its config alone: were a joiner missing from it,
    the node would drop the joiner's connections and never hear it lead. Named before its
    add commits, a member starting meanwhile would count it a member and, leading, refuse
    to add it."""
    cluster = LocalCluster(tmp_path / "cluster", 3, replicas=1)
    joiner = cluster.plan_joiner()
    assert {n.node_id: _peer_ids(n) for n in cluster.nodes} == {
        "n1": {"n1", "n2", "n3"},
        "n2": {"n1", "n2", "n3"},
        "n3": {"n1", "n2", "n3"},
        "r1": {"n1", "n2", "n3"},
        joiner.node_id: {"n1", "n2", "n3", joiner.node_id},
    }
    cluster.admitted(joiner.node_id)
    assert {n.node_id: _peer_ids(n) for n in cluster.nodes} == {
        node_id: {"n1", "n2", "n3", "n4"} for node_id in ("n1", "n2", "n3", "r1", "n4")
    }
    second = cluster.plan_joiner()
    cluster.forget("n2")
    assert {n.node_id: _peer_ids(n) for n in cluster.nodes} == {
        "n1": {"n1", "n3", "n4"},
        "n3": {"n1", "n3", "n4"},
        "r1": {"n1", "n3", "n4"},
        "n4": {"n1", "n3", "n4"},
        second.node_id: {"n1", "n3", "n4", second.node_id},
    }
