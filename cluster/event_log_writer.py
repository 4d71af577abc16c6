"""Writes applied entries to the event log on a thread of its own, in log order.

Why not on the apply thread: the apply thread is pysyncobj's Raft thread, and
every millisecond it spends in RocksDB is a millisecond of heartbeats and log
replication not done. Acknowledgement does not wait for the event log: an entry
is durable once it is committed in the Raft journals (fsynced on a majority),
and the event log is derived from the log. After a crash the node replays the
entries above `event_log.applied_index()`; it never writes an index twice.

The queue is bounded, so a slow disk slows the apply thread down instead of
growing memory. A write that fails stops the process: an event log that skipped
an entry would serve wrong histories forever.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence

from cluster.event_log import AppliedCommand, EventLog

log = logging.getLogger("raftex.event_log_writer")

QUEUE_ENTRIES_MAX = 256
EXIT_EVENT_LOG_FAILED = 75
_STOP = object()


class EventLogWriter:
    def __init__(self, event_log: EventLog, node_id: str) -> None:
        self._log = event_log
        self._node_id = node_id
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_ENTRIES_MAX)
        self._last_enqueued = event_log.applied_index()
        self._written = self._last_enqueued
        self._progress = threading.Condition()
        # (index, fn): run once the log holds `index`.
        self._waiters: list[tuple[int, Callable[[], None]]] = []
        self._thread = threading.Thread(target=self._run, name="event-log-writer", daemon=True)
        self._thread.start()

    @property
    def event_log(self) -> EventLog:
        return self._log

    @property
    def written_index(self) -> int:
        return self._written

    def submit(self, index: int, ts_ms: int, commands: Sequence[AppliedCommand]) -> None:
        """Queues an applied entry; entries the log already holds (a replay) are skipped."""
        if index <= self._last_enqueued:
            return
        self._last_enqueued = index
        self._queue.put((index, ts_ms, commands))

    def when_written(self, index: int, fn: Callable[[], None]) -> None:
        """Runs `fn` once the event log holds `index`: now, on the caller's thread, if it
        does already, else on the writer's thread right after that write. Lets the apply
        thread ask for something about an index without waiting for the writer."""
        with self._progress:
            if self._written < index:
                self._waiters.append((index, fn))
                return
        fn()

    def drain(self) -> None:
        """Blocks until everything submitted so far is in the event log."""
        target = self._last_enqueued
        with self._progress:
            while self._written < target:
                self._progress.wait()

    def wait_for(self, index: int, timeout_s: float) -> bool:
        """Waits (bounded) until the event log holds `index` (reads of it see that entry)."""
        deadline = time.monotonic() + timeout_s
        with self._progress:
            while self._written < min(index, self._last_enqueued):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    def replace_log(self, event_log: EventLog) -> None:
        """After a snapshot brought a newer event log: continue from its applied index."""
        self.drain()
        self._log = event_log
        self._last_enqueued = self._written = event_log.applied_index()
        self._run_ready(self._written)

    def close(self) -> None:
        self.drain()
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            index, ts_ms, commands = item
            try:
                self._log.write_entry(index, ts_ms, commands)
            except BaseException:
                log.critical(
                    "event=event_log_write_failed node=%s index=%d: stopping",
                    self._node_id,
                    index,
                    exc_info=True,
                )
                os._exit(EXIT_EVENT_LOG_FAILED)
            self._run_ready(index)

    def _run_ready(self, written: int) -> None:
        with self._progress:
            self._written = written
            self._progress.notify_all()
            ready = [fn for at, fn in self._waiters if at <= written]
            if ready:
                self._waiters = [(at, fn) for at, fn in self._waiters if at > written]
        for fn in ready:
            fn()
