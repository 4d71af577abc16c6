"""What a node's children do first: never outlive the node, and never slow it down.

A child of a killed node (its projector, a forked hash or snapshot writer) that
lived on would go on writing into the node's data directory: into a directory
an operator is wiping, or beside the node restarted on it. Linux delivers the
signal asked for here the moment the parent (the thread that started the
child) is gone, kill -9 included.

A forked child that reads the whole engine (a state hash, a snapshot) is CPU
work of seconds. Linux's autogroup scheduler (on by default) shares the CPU
between sessions first and by nice value only within one: a child in its
node's session was charged to the node, whose Raft thread then waited up to
0.7 s for a CPU while three such children ran on two cores (measured: elections
during `admin hash` of a million events). In a session of its own, at the
lowest priority the kernel has, it runs only on a CPU no one else wants.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 1
AUTOGROUP_FILE = Path("/proc/self/autogroup")
AUTOGROUP_NICENESS = 19

_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in the child: SIGKILL when the parent ends (every write the
    children make is atomic or redone, so nothing needs a graceful end). Exits at once if
    the parent is already gone."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)


def run_when_idle() -> None:
    """For a forked child of the node: its own session (so its own autogroup, niced), and
    the SCHED_IDLE policy, so any thread of the node that wakes takes the CPU from it."""
    os.setsid()
    # A kernel without autogroup has no such file: SCHED_IDLE alone does the job there.
    with contextlib.suppress(OSError):
        AUTOGROUP_FILE.write_text(str(AUTOGROUP_NICENESS))
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
