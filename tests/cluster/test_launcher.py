"""Stopping a local cluster's nodes: a node that does not obey SIGTERM is still ended,
with its projector, instead of leaving the caller with an exception and a live process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

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
