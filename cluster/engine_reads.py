"""Reads of the engine that other threads queue and the apply thread runs between two
entries: the single writer is then the only one touching the engine, so a read never sees
it change (L3 books, the engine half of a forked read)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from engine import Exchange


class EngineReads:
    """Queued by any thread (`add`); run by the apply thread alone (`run`)."""

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[Callable[[Exchange], Any], Future]] = (
            collections.deque()
        )

    def add(self, read: Callable[[Exchange], Any]) -> Future:
        """The future gets `read(engine)` at the apply thread's next pass, or its error."""
        future: Future = Future()
        self._queue.append((read, future))
        return future

    def run(self, engine: Exchange) -> None:
        """Runs every read queued so far. A reader that stopped waiting has cancelled its
        future: setting a cancelled future raises (a soak's logs held such tracebacks), so
        each future is claimed first, the way an executor claims its work, and a cancelled
        read is skipped."""
        queue = self._queue
        while queue:
            read, future = queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(read(engine))
            except Exception as exc:  # the reader's error goes back to the reader
                future.set_exception(exc)
