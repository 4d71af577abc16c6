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
during `admin hash` of a million events). So every child that does derived
work (the projector, a hash, a snapshot writer) runs in a session of its own,
niced as a session: the node's threads take the CPU first. The forked children
are also SCHED_IDLE, so a node thread that wakes preempts them at once; they
share what is left with the projectors as equals (measured: a hash niced below
three projectors catching up on a million events waited more than 30 s).
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
BACKGROUND_NICENESS = 10

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


def run_behind_node() -> None:
    """For a child the node started: its own session (so its own autogroup), niced, and the
    process itself niced too, for a kernel without autogroup (which has no such file)."""
    os.setsid()
    with contextlib.suppress(OSError):
        AUTOGROUP_FILE.write_text(str(BACKGROUND_NICENESS))
    # Only ever lower: a node started niced above this (nice -n 15, systemd's Nice=) keeps
    # its children at least as low, and an unprivileged process may not raise its own.
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < BACKGROUND_NICENESS:
        os.setpriority(os.PRIO_PROCESS, 0, BACKGROUND_NICENESS)


def run_when_idle() -> None:
    """For a forked child of the node: behind the node, and SCHED_IDLE, so any thread of the
    node that wakes takes the CPU from it."""
    run_behind_node()
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
