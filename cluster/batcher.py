"""Gathers commands submitted on this node into Raft log entries, and routes outcomes back.

Throughput comes from batching: a batch is sent as soon as fewer than
`in_flight_max` batches are waiting for commit, so under load each entry grows
(up to BATCH_COMMANDS_MAX / BATCH_BYTES_MAX) while an idle order still goes out
at once. Every submitter holds a Future that the apply thread resolves with the
command's events, or that resolves to `NotCommitted` on timeout or when Raft
refuses the batch: the command may still commit later, so the client must
retry with the same client order id (safe: the engine applies it at most once).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from cluster.entry import BATCH_BYTES_MAX, BATCH_COMMANDS_MAX, encode_entry
from cluster.metrics import COMMIT_SECONDS
from engine.commands import Tick, command_to_bytes

log = logging.getLogger("raftex.batcher")

IN_FLIGHT_MAX = 4
PENDING_MAX = 50_000
IDLE_TICK_MS = 1_000
SWEEP_PERIOD_S = 0.05
# What an idle leader appends: a Tick, which only moves log time.
TICK = command_to_bytes(Tick())


@dataclass(frozen=True, slots=True)
class NotCommitted:
    """The command's fate is unknown: retry it with the same client order id."""

    reason: str


class Overloaded(Exception):
    """Too many commands are already waiting on this node."""


@dataclass(slots=True)
class _Pending:
    request_no: int
    command: bytes
    future: Future
    submitted: float
    deadline: float
    size: int


SendEntry = Callable[[bytes, Callable[[Any, Any], None]], None]


class Batcher:
    """One thread per node; `submit` is safe from any thread."""

    def __init__(
        self,
        node_id: str,
        send_entry: SendEntry,
        is_leader: Callable[[], bool],
        in_flight_max: int = IN_FLIGHT_MAX,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        """`clock_ms`: the wall clock entries are stamped with (the engine's log time)."""
        self._node_id = node_id
        self._clock_ms = clock_ms
        self._send_entry = send_entry
        self._is_leader = is_leader
        self._in_flight_max = in_flight_max
        self._lock = threading.Condition()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._waiting: dict[int, _Pending] = {}
        self._in_flight = 0
        self._next_request_no = 1
        self._hash_mark_waiters: list[Future] = []
        self._last_sent = time.monotonic()
        self._last_sweep = self._last_sent
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self._thread.join(timeout=5)
        with self._lock:
            for pending in list(self._waiting.values()):
                _settle(pending.future, NotCommitted("node stopping"))
            self._waiting.clear()
            self._queue.clear()

    def submit(self, command: bytes, timeout_s: float) -> Future:
        """`command`: its bytes, as engine.commands.command_to_bytes made them at the edge."""
        size = len(command)
        future: Future = Future()
        with self._lock:
            if len(self._waiting) >= PENDING_MAX:
                raise Overloaded(f"{PENDING_MAX} commands already waiting on this node")
            request_no = self._next_request_no
            self._next_request_no += 1
            now = time.monotonic()
            pending = _Pending(request_no, command, future, now, now + timeout_s, size)
            self._waiting[request_no] = pending
            self._queue.append(pending)
            self._lock.notify()
        return future

    def request_hash_mark(self) -> Future:
        """An empty entry that makes every node record its state hash; resolves to its index."""
        future: Future = Future()
        with self._lock:
            self._hash_mark_waiters.append(future)
            self._lock.notify()
        return future

    def tag_of(self, request_no: int) -> str:
        return f"{self._node_id}/{request_no}"

    def resolve(self, tag: str, result: Any) -> None:
        """Called by the apply thread for every applied command; ignores other nodes' tags."""
        node_id, _, number = tag.rpartition("/")
        if node_id != self._node_id:
            return
        with self._lock:
            pending = self._waiting.pop(int(number), None)
        if pending is not None:
            _settle(pending.future, result)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._sweep_timeouts()
                while not self._stopped and not self._ready_to_send():
                    self._lock.wait(SWEEP_PERIOD_S)
                    self._sweep_timeouts()
                    if self._idle_tick_due():
                        break
                if self._stopped:
                    return
                batch = self._take_batch()
                marks = self._hash_mark_waiters
                self._hash_mark_waiters = []
                self._in_flight += 1
                self._last_sent = time.monotonic()
            self._send(batch, marks)

    def _ready_to_send(self) -> bool:
        has_work = bool(self._queue) or bool(self._hash_mark_waiters)
        return has_work and self._in_flight < self._in_flight_max

    def _idle_tick_due(self) -> bool:
        idle_s = time.monotonic() - self._last_sent
        return (
            self._in_flight == 0
            and not self._queue
            and idle_s * 1000 >= IDLE_TICK_MS
            and self._is_leader()
        )

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        queue = self._queue
        while queue and len(batch) < BATCH_COMMANDS_MAX:
            size += queue[0].size
            if batch and size > BATCH_BYTES_MAX:
                break
            batch.append(queue.popleft())
        return batch

    def _send(self, batch: list[_Pending], marks: list[Future]) -> None:
        items = [(self.tag_of(p.request_no), p.command) for p in batch]
        if not items and not marks:
            items = [(self.tag_of(0), TICK)]
        payload = encode_entry(self._clock_ms(), items, hash_mark=bool(marks))

        def on_done(result: Any, error: Any) -> None:
            with self._lock:
                self._in_flight -= 1
                self._lock.notify()
            if error:
                reason = f"raft refused the batch (reason {error})"
                for future in marks:
                    _settle(future, NotCommitted(reason))
                for pending in batch:
                    self._fail(pending.request_no, reason)
            else:
                if batch:
                    COMMIT_SECONDS.observe(time.monotonic() - batch[0].submitted)
                for future in marks:
                    _settle(future, result)

        try:
            self._send_entry(payload, on_done)
        except Exception as exc:  # the Raft queue refused: the batch never entered the log
            log.warning("event=batch_refused error=%r", exc)
            on_done(None, exc)

    def _fail(self, request_no: int, reason: str) -> None:
        with self._lock:
            pending = self._waiting.pop(request_no, None)
        if pending is not None:
            _settle(pending.future, NotCommitted(reason))

    def _sweep_timeouts(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_PERIOD_S:
            return
        self._last_sweep = now
        expired = [p for p in self._waiting.values() if p.deadline <= now]
        for pending in expired:
            del self._waiting[pending.request_no]
            _settle(pending.future, NotCommitted("not committed before the timeout"))


def _settle(future: Future, result: Any) -> None:
    # Already settled by a timeout or by the apply thread: the first answer wins.
    with contextlib.suppress(InvalidStateError):
        future.set_result(result)
