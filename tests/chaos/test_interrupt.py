"""`raftex chaos run` stopped by SIGTERM mid-run leaves nothing behind: no node process,
no namespace, no link, no temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from chaos.cluster import resolve_plane
from chaos.netns import PREFIX, tagged

START_WAIT_S = 60.0
STOP_WAIT_S = 30.0


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def test_sigterm_mid_run_stops_and_removes_everything(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    report = str(tmp_path / "report")
    command = ["chaos", "run", "--seconds", "60", "--nemesis", "partition", "--out", report]
    run = subprocess.Popen(
        [sys.executable, "-m", "raftex.cli", *command],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_WAIT_S
        while len(_processes_naming(str(scratch))) < 3:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run's nodes never started"
            time.sleep(0.2)
        time.sleep(2.0)  # the workload and the first fault are under way
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=STOP_WAIT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert _processes_naming(str(scratch)) == []
    assert list(scratch.iterdir()) == []
    if resolve_plane("auto") == "netns":
        assert tagged(f"{PREFIX}{run.pid}") == ([], [])
