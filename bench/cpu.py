"""CPU time of the processes of a run, read from /proc: what `cpu_us_per_order` is made of.

Wall-clock rates on a shared 2-core machine move 30% from one run to the next;
CPU time per order moves far less, and it says where the cost is. Each process
is counted with its live descendants (a node's forked children, its projector)
and with what its reaped children used.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Fields of /proc/PID/stat after the command name: state is 0, ppid 1, utime 11,
# stime 12, cutime 13, cstime 14.
_PPID, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 11, 12, 13, 14


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its end.
    return text[text.rindex(")") + 2 :].split()


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[_PPID]), []).append(int(entry.name))
    return children


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each process, its live descendants included unless
    they are listed themselves; this process alone (the nodes it started count as
    themselves)."""
    chosen = set(pids)
    children = _children_by_parent()
    own = os.getpid()
    out: dict[int, float] = {}
    for pid in chosen:
        total = 0
        stack = [pid]
        while stack:
            current = stack.pop()
            fields = _stat(current)
            if fields is None:
                continue
            if current == own:
                total += int(fields[_UTIME]) + int(fields[_STIME])
                continue
            total += sum(int(fields[i]) for i in (_UTIME, _STIME, _CUTIME, _CSTIME))
            stack.extend(c for c in children.get(current, ()) if c not in chosen)
        out[pid] = total / CLOCK_TICKS_PER_S
    return out


def children_running(pid: int, marker: str) -> list[int]:
    """The live child processes of `pid` whose command line contains `marker`."""
    found = []
    for child in _children_by_parent().get(pid, ()):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in command:
            found.append(child)
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds each process spent between two readings."""
    return {pid: max(0.0, after.get(pid, 0.0) - before.get(pid, 0.0)) for pid in before}


def per_order_us(cpu_s: float, orders: int) -> float:
    return round(cpu_s * 1e6 / orders, 1) if orders else 0.0
