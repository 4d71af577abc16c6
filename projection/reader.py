"""A node's reads of its projector's history store: up to date to a log index, or not at all.

The projector writes the store in its own process; the node follows it as a
RocksDB secondary instance and catches up on demand, at most once every
CATCH_UP_PERIOD_S (each catch-up reads what the projector wrote since, so a
burst of reads shares one).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cluster.sealed import DataKey
from cluster.store_errors import StoreError
from projection.history import HistoryStore

CATCH_UP_PERIOD_S = 0.002
WAIT_POLL_S = 0.002


class ProjectionUnavailable(Exception):
    """No projection to read here (none runs beside this node, or it has not started yet)."""


class HistoryReader:
    def __init__(
        self, store_dir: Path, follower_dir: Path, data_key: DataKey | None = None
    ) -> None:
        self._store_dir = store_dir
        self._data_key = data_key
        self._follower_dir = follower_dir
        self._lock = threading.Lock()
        self._store: HistoryStore | None = None
        self._caught_up_at = 0.0

    def position(self) -> tuple[int, int, int]:
        """(log index, last seq, log time) the projection has reached; zeros before it starts."""
        try:
            store = self._caught_up()
        except ProjectionUnavailable:
            return (0, 0, 0)
        return store.applied_index(), store.last_seq(), store.log_time_ms()

    def at_least(self, log_index: int, timeout_s: float) -> HistoryStore | None:
        """The store once it has projected `log_index` (None if it has not within
        `timeout_s`; ProjectionUnavailable if there is none by then). Blocking: call it from
        a worker thread."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                store = self._caught_up()
            except ProjectionUnavailable:
                # Starting (the projector writes its store first thing): wait for it too.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(WAIT_POLL_S)
                continue
            if store.applied_index() >= log_index:
                return store
            if time.monotonic() >= deadline:
                return None
            time.sleep(WAIT_POLL_S)

    def _caught_up(self) -> HistoryStore:
        with self._lock:
            store = self._store
            if store is None:
                store = self._store = self._open()
            now = time.monotonic()
            if now - self._caught_up_at >= CATCH_UP_PERIOD_S:
                self._caught_up_at = now
                try:
                    store.catch_up()
                except StoreError as exc:
                    store.close()
                    self._store = None
                    raise ProjectionUnavailable(f"the projection cannot be read: {exc}") from None
            return store

    def _open(self) -> HistoryStore:
        if not (self._store_dir / "CURRENT").exists():
            raise ProjectionUnavailable("no projection has been written beside this node yet")
        try:
            return HistoryStore.follow(self._store_dir, self._follower_dir, self._data_key)
        except StoreError as exc:
            raise ProjectionUnavailable(f"the projection cannot be opened: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
