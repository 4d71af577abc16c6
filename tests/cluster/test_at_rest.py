"""A cluster encrypted at rest, with real node processes: what is on disk, a wrong key, a
rotated key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.event_log import COLUMN_FAMILIES as EVENT_LOG_COLUMN_FAMILIES
from cluster.keyring import KEYRING_FILE_NAME, KeyringError, open_keyring, read_kek_file
from cluster.rocks import RocksDb
from cluster.store_errors import StoreKeyError
from tests.cluster.harness import ClusterHarness

SECRET_ORDER_ID = "zz-kept-secret-on-disk"
NODE_EXIT_WAIT_S = 60.0
PROJECTION_DIRS = ("projection", "projection-reader", "projector-follower")
CLI_WAIT_S = 120


def _order(account: str, client_order_id: str, price: int = 18_800) -> list:
    return [8, account, "AAPL", 0, 3, price, 0, 0, client_order_id]


def _files_outside_the_projection(node_dir: Path) -> list[Path]:
    return [
        p
        for p in node_dir.rglob("*")
        if p.is_file() and not any(part in PROJECTION_DIRS for part in p.parts)
    ]


def test_no_order_reaches_the_disk_in_clear(tmp_path: Path) -> None:
    harness = ClusterHarness(tmp_path / "cluster")
    with harness.running():
        placed = harness.submit("n1", _order("alice", SECRET_ORDER_ID))
        assert placed["events"][0]["type"] == "accepted"
        harness.wait_all_applied()
        for node in ("n1", "n2", "n3"):  # each writes its dump and keeps a backup copy
            harness.call(node, "POST", "/v1/admin/backups", {})
        harness.wait_hashes_agree()
        assert harness.accepted_counts("n3")[("alice", SECRET_ORDER_ID)] == 1
    needle = SECRET_ORDER_ID.encode()
    for node in ("n1", "n2", "n3"):
        node_dir = harness.cluster.data_dir / node
        files = _files_outside_the_projection(node_dir)
        assert {"raft.journal", "raft.dump"} <= {p.name for p in files}
        assert any(p.parent.name == "backups" for p in files)
        leaks = [str(p) for p in files if needle in p.read_bytes()]
        assert leaks == [], f"{needle!r} in clear in {leaks}"
        # The stores say they are sealed and refuse to be read without the key.
        with pytest.raises(StoreKeyError, match="encrypted at rest"):
            RocksDb(node_dir / "events", EVENT_LOG_COLUMN_FAMILIES)


def _wait_exit(harness: ClusterHarness, node_id: str) -> int:
    process = harness.cluster.processes.pop(node_id)
    return process.wait(timeout=NODE_EXIT_WAIT_S)


def test_a_node_given_the_wrong_key_refuses_to_start_and_the_rest_trade_on(
    tmp_path: Path,
) -> None:
    harness = ClusterHarness(tmp_path / "cluster")
    with harness.running():
        harness.cluster.kill("n3")
        config = harness.cluster.node("n3").config_path
        right = config.read_text()
        wrong_kek = tmp_path / "wrong.kek"
        subprocess.run(
            [sys.executable, "-m", "raftex.cli", "new-kek", "--out", str(wrong_kek)], check=True
        )
        config.write_text(right.replace(str(harness.kek_file), str(wrong_kek)))
        log = harness.cluster.node("n3").log_path
        before = log.stat().st_size
        harness.cluster.start_one("n3")
        assert _wait_exit(harness, "n3") == 78
        message = log.read_bytes()[before:].decode()
        assert "wrong key-encryption key" in message and "Traceback" not in message
        placed = harness.submit("n1", _order("bob", "while-n3-is-down"))
        assert placed["events"][0]["type"] == "accepted"

        config.write_text(right)
        harness.cluster.start_one("n3")
        harness.wait_hashes_agree()
        assert harness.accepted_counts("n3")[("bob", "while-n3-is-down")] == 1


def test_rotate_key_rewraps_the_data_key_and_the_cluster_restarts_under_the_new_key(
    tmp_path: Path,
) -> None:
    harness = ClusterHarness(tmp_path / "cluster")
    assert harness.kek_file is not None
    keyring = harness.cluster.data_dir / KEYRING_FILE_NAME
    old_kek = read_kek_file(harness.kek_file)
    data_key = open_keyring(keyring, old_kek)
    with harness.running():
        placed = harness.submit("n1", _order("alice", "before-rotation"))
        assert placed["events"][0]["type"] == "accepted"
        done = subprocess.run(
            [
                sys.executable, "-m", "raftex.cli", "admin", "--cluster",
                str(harness.cluster.cluster_file), "rotate-key", "--json",
            ],
            capture_output=True, text=True, timeout=CLI_WAIT_S, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rotated = json.loads(done.stdout)
        assert rotated["data_key_id"] == data_key.key_id
        assert rotated["old_kek_id"] != rotated["new_kek_id"]
        # The running nodes never notice: the data key is the same.
        placed = harness.submit("n2", _order("bob", "after-rotation"))
        assert placed["events"][0]["type"] == "accepted"
    new_kek = read_kek_file(harness.kek_file)
    assert new_kek != old_kek
    with pytest.raises(KeyringError, match="wrong key-encryption key"):
        open_keyring(keyring, old_kek)
    assert open_keyring(keyring, new_kek) == data_key
    with harness.running(seed=False):
        harness.wait_hashes_agree()
        counts = harness.accepted_counts("n3")
        assert counts[("alice", "before-rotation")] == counts[("bob", "after-rotation")] == 1
