"""Reads of the whole engine that run in a forked child, never on the apply thread.

A state hash or a full invariant check walks every order, account and
remembered id: at a million events it took 3.6 s, and on the apply thread
(the Raft thread) that was long enough for the followers to elect a new
leader, every time. Forking costs milliseconds; the child holds a
copy-on-write image of the engine exactly as it is between two entries, runs
the read on it and pipes the (pickled) result back, while the parent goes on
applying entries. A thread in the parent collects each result.

Like the dump writer (cluster/snapshot_file.py), the child runs no collector,
logs nothing, touches no store and always leaves through os._exit.
"""

from __future__ import annotations

import gc
import os
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from cluster.child_process import die_with_parent, run_when_idle
from engine import Exchange

READ_CHUNK_BYTES = 64 * 1024


class ForkedReadError(RuntimeError):
    """The child died without an answer (killed, out of memory, or the read raised)."""


class EngineForks:
    """Forked reads under way, so their collectors can be waited for at shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collectors: set[threading.Thread] = set()

    def read(self, engine: Exchange, read: Callable[[Exchange], Any]) -> Future:
        """Forks now; the future gets `read(engine)` as the engine is at this instant.
        Call it only where the engine is not changing (the apply thread, between entries)."""
        future: Future = Future()
        readable, writable = os.pipe()
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _run_in_child(engine, read, readable, writable, parent_pid)
        os.close(writable)
        collector = threading.Thread(
            target=self._collect, args=(pid, readable, future), name="engine-fork", daemon=True
        )
        with self._lock:
            self._collectors.add(collector)
        collector.start()
        return future

    def _collect(self, pid: int, readable: int, future: Future) -> None:
        try:
            chunks = []
            while chunk := os.read(readable, READ_CHUNK_BYTES):
                chunks.append(chunk)
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0 or not chunks:
                future.set_exception(ForkedReadError(f"forked read {pid} ended with {status}"))
            else:
                future.set_result(pickle.loads(b"".join(chunks)))
        finally:
            os.close(readable)
            with self._lock:
                self._collectors.discard(threading.current_thread())

    def wait(self, timeout_s: float) -> None:
        with self._lock:
            collectors = list(self._collectors)
        for collector in collectors:
            collector.join(timeout_s)


def _run_in_child(
    engine: Exchange,
    read: Callable[[Exchange], Any],
    readable: int,
    writable: int,
    parent_pid: int,
) -> None:
    gc.disable()
    code = 1
    try:
        die_with_parent(parent_pid)
        run_when_idle()
        os.close(readable)
        data = pickle.dumps(read(engine), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(writable, view) :]
        code = 0
    finally:
        os._exit(code)
