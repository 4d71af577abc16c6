"""A node never starts on another cluster's data directory, encrypted or in clear."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cluster.config import EXIT_KEY
from cluster.identity import IDENTITY_FILE_NAME, IdentityError, claim_data_dir
from tests.cluster.harness import ClusterHarness

SECRET = "s" * 32
OTHER_SECRET = "o" * 32


def test_the_first_start_claims_the_directory_and_later_ones_must_match(tmp_path: Path) -> None:
    node_dir = tmp_path / "n1"
    claim_data_dir(node_dir, SECRET)
    recorded = (node_dir / IDENTITY_FILE_NAME).read_text()
    assert SECRET not in recorded
    claim_data_dir(node_dir, SECRET)
    with pytest.raises(IdentityError, match="another cluster's data"):
        claim_data_dir(node_dir, OTHER_SECRET)
    assert (node_dir / IDENTITY_FILE_NAME).read_text() == recorded


def test_a_node_given_another_clusters_data_directory_in_clear_refuses_to_start(
    tmp_path: Path,
) -> None:
    with ClusterHarness(tmp_path / "a", encrypted=False).running():
        pass
    other = ClusterHarness(tmp_path / "b", encrypted=False)
    shutil.copytree(tmp_path / "a" / "n1", tmp_path / "b" / "n1")
    other.cluster.start_one("n1")
    process = other.cluster.processes.pop("n1")
    assert process.wait(timeout=60) == EXIT_KEY
    log = other.cluster.node("n1").log_path.read_text()
    assert "refusing to start" in log and "another cluster's data" in log
