"""Backups of a running cluster, restores into new clusters, and the disaster-recovery drill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cluster.keyring import open_keyring, read_kek_file
from cluster.launcher import LAUNCH_FILE_NAME
from cluster.snapshot_file import read_snapshot_meta
from tests.cli_process import raftex
from tests.cluster.harness import ClusterHarness


def _backup(harness: ClusterHarness, out: Path) -> dict[str, Any]:
    cluster_file = str(harness.cluster.cluster_file)
    done = raftex("admin", "--cluster", cluster_file, "--json", "backup", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _secret_file(harness: ClusterHarness, tmp_path: Path) -> Path:
    secret = json.loads((harness.cluster.data_dir / LAUNCH_FILE_NAME).read_text())["secret"]
    path = tmp_path / "secret"
    path.write_text(secret)
    return path


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A backup of a seeded cluster holding one known resting order, and its secret."""
    root = tmp_path_factory.mktemp("backed-up")
    harness = ClusterHarness(root / "source")
    with harness.running():
        placed = harness.submit("n1", [8, "alice", "AAPL", 0, 7, 18_800, 0, 0, "before-the-backup"])
        assert placed["events"][0]["type"] == "accepted"
        manifest = _backup(harness, root / "backup")
        after = harness.submit("n2", [8, "bob", "AAPL", 0, 3, 18_700, 0, 0, "after-the-backup"])
        assert after["events"][0]["type"] == "accepted"
        secret = _secret_file(harness, root)
    return {
        "root": root,
        "manifest": manifest,
        "secret": secret,
        "backup": root / "backup",
        "kek": harness.kek_file,
    }


def test_a_backup_restores_into_a_new_cluster_with_the_same_state(
    backed_up: dict[str, Any], tmp_path: Path
) -> None:
    manifest = backed_up["manifest"]
    snapshot = (backed_up["backup"] / "snapshot.tar").read_bytes()
    assert len(snapshot) == manifest["snapshot"]["bytes"]
    assert manifest["index"] > 0 and len(manifest["state_hash"]) == 64
    assert manifest["encrypted_at_rest"] and b"before-the-backup" not in snapshot
    restored_dir = tmp_path / "restored"
    done = raftex(
        "restore", "--from", str(backed_up["backup"]), "--data-dir", str(restored_dir),
        "--secret-file", str(backed_up["secret"]), "--kek-file", str(backed_up["kek"]), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["index"] == manifest["index"]
    harness = ClusterHarness(restored_dir)
    with harness.running(seed=False):
        # Elections of the new cluster come after the backup's term, never before it.
        assert all(row["term"] > manifest["term"] for row in harness.status())
        for node in ("n1", "n2", "n3"):
            got = harness.call(
                node, "GET", "/v1/admin/hash", params={"index": str(manifest["index"])}
            )
            assert got["state_hash"] == manifest["state_hash"], node
            assert harness.call(node, "GET", "/v1/admin/audit/verify")["ok"]
        counts = harness.accepted_counts("n3")
        assert counts[("alice", "before-the-backup")] == 1
        assert ("bob", "after-the-backup") not in counts, "the backup holds its index, no more"
        placed = harness.submit("n2", [8, "carol", "AAPL", 0, 1, 18_900, 0, 0, "restored"])
        assert placed["events"][0]["type"] == "accepted"
        harness.wait_hashes_agree()


def test_restore_refuses_bad_input_and_writes_nothing(
    backed_up: dict[str, Any], tmp_path: Path
) -> None:
    backup, secret, kek = backed_up["backup"], backed_up["secret"], backed_up["kek"]
    target = tmp_path / "target"

    done = raftex(
        "restore", "--from", str(backup), "--data-dir", str(target), "--secret-file", str(secret)
    )
    assert done.returncode == 1 and "encrypted at rest: give --kek-file" in done.stderr
    assert not target.exists()
    other_kek = tmp_path / "other.kek"
    assert raftex("new-kek", "--out", str(other_kek)).returncode == 0
    done = raftex(
        "restore", "--from", str(backup), "--data-dir", str(target),
        "--secret-file", str(secret), "--kek-file", str(other_kek),
    )  # fmt: skip
    assert done.returncode == 1 and "wrong key-encryption key" in done.stderr
    assert not target.exists()

    not_empty = tmp_path / "not-empty"
    not_empty.mkdir()
    (not_empty / "keep.txt").write_text("mine")
    done = raftex(
        "restore", "--from", str(backup), "--data-dir", str(not_empty),
        "--secret-file", str(secret), "--kek-file", str(kek),
    )  # fmt: skip
    assert done.returncode == 1 and "not an empty directory" in done.stderr
    assert [p.name for p in not_empty.iterdir()] == ["keep.txt"]

    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-cluster-secret")
    done = raftex(
        "restore", "--from", str(backup), "--data-dir", str(target),
        "--secret-file", str(wrong), "--kek-file", str(kek),
    )  # fmt: skip
    assert done.returncode == 1 and "secret is not the one" in done.stderr
    assert not target.exists()

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "manifest.json").write_bytes((backup / "manifest.json").read_bytes())
    (damaged / "keyring.json").write_bytes((backup / "keyring.json").read_bytes())
    data = bytearray((backup / "snapshot.tar").read_bytes())
    data[len(data) // 2] ^= 0x01
    (damaged / "snapshot.tar").write_bytes(bytes(data))
    done = raftex(
        "restore", "--from", str(damaged), "--data-dir", str(target),
        "--secret-file", str(secret), "--kek-file", str(kek),
    )  # fmt: skip
    assert done.returncode == 1 and "damaged" in done.stderr
    assert "Traceback" not in done.stderr
    assert not target.exists()


def test_a_backup_of_a_cluster_with_no_leader_is_refused(tmp_path: Path) -> None:
    harness = ClusterHarness(tmp_path / "cluster")
    with harness.running(seed=False):
        leader = harness.wait_leader()
        for node in [n for n in ("n1", "n2", "n3") if n != leader][:2]:
            harness.cluster.kill(node)
        out = tmp_path / "backup"
        cluster_file = str(harness.cluster.cluster_file)
        done = raftex("admin", "--cluster", cluster_file, "backup", "--out", str(out))
    assert done.returncode == 1
    assert "raftex admin:" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "snapshot.tar").exists()


def test_the_drill_restores_under_load_and_reports_rpo_and_rto() -> None:
    done = raftex("drill", "--seconds", "4", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["state_hash_at_backup_index_ok"] and result["audit_ok"]
    assert result["orders_acknowledged"] > 0
    assert result["rpo_entries"] >= 0 and result["rpo_ms"] >= 0
    assert 0 < result["rto_s"] < 120
    assert result["last_acknowledged_index"] >= result["backup_index"]


def test_a_backup_in_clear_restored_with_a_key_becomes_an_encrypted_cluster(
    tmp_path: Path,
) -> None:
    """How an existing cluster in clear is encrypted: back it up, restore it with a key."""
    clear = ClusterHarness(tmp_path / "clear", encrypted=False)
    with clear.running():
        placed = clear.submit("n1", [8, "alice", "AAPL", 0, 2, 18_800, 0, 0, "kept-in-clear"])
        assert placed["events"][0]["type"] == "accepted"
        manifest = _backup(clear, tmp_path / "backup")
        secret = _secret_file(clear, tmp_path)
    assert not manifest["encrypted_at_rest"]
    assert b"kept-in-clear" in (tmp_path / "backup" / "snapshot.tar").read_bytes()
    kek = tmp_path / "new.kek"
    assert raftex("new-kek", "--out", str(kek)).returncode == 0
    restored_dir = tmp_path / "restored"
    done = raftex(
        "restore", "--from", str(tmp_path / "backup"), "--data-dir", str(restored_dir),
        "--secret-file", str(secret), "--kek-file", str(kek),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for node in ("n1", "n2", "n3"):
        for name in ("raft.dump", "raft.journal"):
            assert b"kept-in-clear" not in (restored_dir / node / name).read_bytes()
    harness = ClusterHarness(restored_dir)
    with harness.running(seed=False):
        for node in ("n1", "n2", "n3"):
            got = harness.call(
                node, "GET", "/v1/admin/hash", params={"index": str(manifest["index"])}
            )
            assert got["state_hash"] == manifest["state_hash"], node
        assert harness.accepted_counts("n2")[("alice", "kept-in-clear")] == 1


def test_a_backup_taken_before_a_key_rotation_restores_with_the_current_keyring(
    backed_up: dict[str, Any], tmp_path: Path
) -> None:
    """Rotation re-wraps the data key under a new KEK and forgets the old KEK: an older
    backup's own keyring no longer opens, the cluster's current keyring does."""
    keys = tmp_path / "keys"
    keys.mkdir()
    kek = keys / "kek"
    shutil.copyfile(backed_up["kek"], kek)
    kek.chmod(0o600)
    keyring = tmp_path / "keyring.json"
    shutil.copyfile(backed_up["root"] / "source" / "keyring.json", keyring)
    rotated = raftex(
        "admin", "--node", "127.0.0.1:1", "rotate-key", "--keyring", str(keyring),
        "--kek-file", str(kek),
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    args = ("--from", str(backed_up["backup"]), "--secret-file", str(backed_up["secret"]))
    done = raftex("restore", *args, "--data-dir", str(tmp_path / "a"), "--kek-file", str(kek))
    assert done.returncode == 1 and "wrong key-encryption key" in done.stderr
    done = raftex(
        "restore", *args, "--data-dir", str(tmp_path / "b"), "--kek-file", str(kek),
        "--keyring", str(keyring),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data_key = open_keyring(tmp_path / "b" / "keyring.json", read_kek_file(kek))
    meta = read_snapshot_meta(tmp_path / "b" / "n1" / "raft.dump", data_key)
    assert meta.applied_index == backed_up["manifest"]["index"]
