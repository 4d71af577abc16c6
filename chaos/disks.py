"""The nodes' disks for the power and disk nemeses: each node's data directory is a mount of
chaos/lazyfs.py over a backing directory, one FUSE process per node, so a power cut or a
failing disk hits one node and not the others.

Needs root (or access to /dev/fuse), Debian's fuse3 (libfuse3 and fusermount3) and the
`mfusepy` binding; `unavailable_reason()` says which is missing. `unmount_all()` puts each
node's files back where they were, so everything after the run reads them as usual.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

MOUNT_WAIT_S = 10.0
CONTROL_TIMEOUT_S = 30.0


class DiskError(RuntimeError):
    """A node's disk could not be mounted or answered its control socket wrongly."""


def unavailable_reason() -> str | None:
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "no access to /dev/fuse (run as root)"
    if shutil.which("fusermount3") is None or ctypes.util.find_library("fuse3") is None:
        return "Debian's fuse3 is not installed (apt-get install fuse3)"
    if importlib.util.find_spec("mfusepy") is None:
        return "the mfusepy package is not installed (pip install -e '.[dev]')"
    return None


class LazyDisks:
    def __init__(self, backing_root: Path, writeback_s: float = 30.0) -> None:
        self.backing_root = backing_root
        self.writeback_s = writeback_s
        self.mounts: dict[str, tuple[Path, Path, subprocess.Popen]] = {}

    def mount(self, node_id: str, mountpoint: Path) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise DiskError(f"the power and disk nemeses need FUSE: {reason}")
        backing = self.backing_root / node_id
        backing.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        for entry in mountpoint.iterdir():
            shutil.move(str(entry), backing / entry.name)
        control = self.backing_root / f"{node_id}.control"
        control.unlink(missing_ok=True)
        # The child keeps its own copy of the log's descriptor; ours closes here.
        with open(self.backing_root / f"{node_id}.lazyfs.log", "ab") as errors:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chaos.lazyfs",
                    str(backing),
                    str(mountpoint),
                    str(control),
                    f"--writeback-s={self.writeback_s}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        self.mounts[node_id] = (mountpoint, backing, process)
        deadline = time.monotonic() + MOUNT_WAIT_S
        while not (os.path.ismount(mountpoint) and control.exists()):
            if process.poll() is not None or time.monotonic() > deadline:
                self.unmount(node_id)
                raise DiskError(f"{node_id}'s disk did not mount at {mountpoint}")
            time.sleep(0.02)

    def command(self, node_id: str, line: str) -> str:
        control = self.backing_root / f"{node_id}.control"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONTROL_TIMEOUT_S)
            sock.connect(str(control))
            with sock.makefile("rw") as stream:
                stream.write(line + "\n")
                stream.flush()
                answer = stream.readline().strip()
        if answer.startswith("error"):
            raise DiskError(f"{node_id}'s disk: {answer}")
        return answer

    def cut(self, node_id: str) -> int:
        """The power goes: what the node's disk held in memory only is lost (bytes)."""
        return int(self.command(node_id, "cut").split()[1])

    def set_mode(self, node_id: str, mode: str) -> None:
        self.command(node_id, f"mode {mode}")

    def unmount(self, node_id: str) -> None:
        mountpoint, backing, process = self.mounts.pop(node_id)
        if process.poll() is None:
            with contextlib.suppress(DiskError, OSError):
                self.command(node_id, "mode ok")
                self.command(node_id, "sync")
        subprocess.run(
            ["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, check=False
        )
        try:
            process.wait(timeout=MOUNT_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if backing.exists() and not os.path.ismount(mountpoint):
            for entry in backing.iterdir():
                shutil.move(str(entry), mountpoint / entry.name)
            shutil.rmtree(backing.with_name(backing.name + ".orphans"), ignore_errors=True)

    def unmount_all(self) -> None:
        for node_id in list(self.mounts):
            self.unmount(node_id)
