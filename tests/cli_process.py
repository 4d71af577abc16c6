"""The `raftex` command run as a user runs it: a process of its own, output captured."""

from __future__ import annotations

import subprocess
import sys

CLI_WAIT_S = 300


def raftex(*args: str, timeout_s: float = CLI_WAIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftex.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
