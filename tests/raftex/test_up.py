"""`raftex up`: the local cluster behind `make run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cluster.admin_client import read_admin_token
from tests.cluster.harness import ClusterHarness

UP_WAIT_S = 60.0


def _start_up(data_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "raftex.cli", "up", "--nodes", "3", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + UP_WAIT_S
    assert process.stdout is not None
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "cluster up" in line:
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"raftex up did not come up: {''.join(lines)}")


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_starts_seeds_stops_cleanly_and_keeps_the_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    process = _start_up(data_dir)
    try:
        cluster_file = json.loads((data_dir / "cluster.json").read_text())
        pids = [n["pid"] for n in cluster_file["nodes"]]
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        assert oct((data_dir / "admin.token").stat().st_mode & 0o777) == "0o600"
        harness = ClusterHarness(data_dir, attached=True)
        seeded = harness.call("n1", "GET", "/v1/admin/status")["last_seq"]
        assert seeded > 0, "demo instruments and accounts were seeded"
        placed = harness.submit(
            "n1", [8, "alice", "AAPL", 0, 5, 18_900, 0, 0, "kept-across-restarts"]
        )
        assert placed["events"][0]["type"] == "accepted"
    finally:
        out = _stop(process)
    assert "cluster stopped" in out
    assert not any(_alive(p) for p in pids), "every node process ended"

    process = _start_up(data_dir)
    try:
        harness = ClusterHarness(data_dir, attached=True)
        harness.wait_hashes_agree()
        counts = harness.accepted_counts("n2")
        assert counts[("alice", "kept-across-restarts")] == 1
        assert read_admin_token(data_dir / "cluster.json") == harness.token
    finally:
        _stop(process)
