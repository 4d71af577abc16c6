"""The projector: follows a node's event log and keeps its projections up to date.

The consumer side of the LMAX split: the node (the core) journals each entry's
commands and events once; the projector, in a process of its own, reads them in
log order and builds what queries need. It opens the node's event log as a
RocksDB secondary instance (the node stays its only writer) and its own store as
the only writer, writes each batch of entries atomically with the last log index
it covers, and so resumes after any crash at the next entry, never applying one
twice.

The interface every consumer uses (history now; the warehouse and reports
later): `EventLog.entries_after(position, limit)` gives `LoggedEntry`s in log
order, each with its commands and their typed events; a consumer keeps its
position beside its data, in the same atomic write.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from inotify_simple import INotify, flags

from cluster.child_process import BACKGROUND_NICENESS, die_with_parent, run_behind_node
from cluster.event_log import EventLog
from cluster.sealed import DataKey
from cluster.store_errors import StoreError
from projection.history import HistoryStore

log = logging.getLogger("raftex.projector")

# Entries per read and per write: one RocksDB WriteBatch for all of them.
ENTRIES_PER_WRITE_MAX = 256
WRITE_EVENTS = flags.MODIFY | flags.CREATE | flags.MOVED_TO
# Waits for the node's next write are woken by inotify; the timeout is only a safety net
# (a write the watch missed is projected this much later at worst).
IDLE_WAIT_S = 0.5
# Without inotify, how often the event log is polled.
POLL_FALLBACK_S = 0.005
# A stop (SIGTERM) is seen within this while the projector waits for a directory to appear.
PAUSE_STEP_S = 0.05
REOPEN_PAUSE_S = 0.5
STATUS_LOG_PERIOD_S = 30.0


def projection_dir(data_dir: Path) -> Path:
    """Where a node's projector keeps its store, beside the node's own data."""
    return data_dir / "projection"


class Projector:
    """Projects one node's event log into a history store, until `stop()`."""

    def __init__(
        self, event_log_dir: Path, store_dir: Path, data_key: DataKey | None = None
    ) -> None:
        self._event_log_dir = event_log_dir
        self._store_dir = store_dir
        self._data_key = data_key
        # A plain flag, not a threading.Event: stop() runs in a signal handler too, and an
        # Event set from a handler that interrupted a wait on the same Event deadlocks.
        self._stopped = False
        self.entries_projected = 0

    def _pause(self, seconds: float) -> bool:
        """Sleeps up to `seconds`, in steps short enough to see a stop; True if stopped."""
        deadline = time.monotonic() + seconds
        while not self._stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, PAUSE_STEP_S))
        return self._stopped

    def stop(self) -> None:
        self._stopped = True

    def run(self) -> None:
        """Projects until stopped; follows the event log again when the node replaces it (a
        node that installed a snapshot extracts a new one) or it cannot be followed. A
        projection that cannot be written stops it (StoreError): it must not skip entries."""
        with HistoryStore.open(self._store_dir, self._data_key) as store:
            log.info(
                "event=projector_started store=%s position=%d",
                self._store_dir,
                store.applied_index(),
            )
            while not self._stopped:
                try:
                    self._follow(store)
                except _EventLogLost as exc:
                    log.warning("event=event_log_followed_again reason=%s", exc)
                    self._pause(REOPEN_PAUSE_S)

    def _follow(self, store: HistoryStore) -> None:
        while not (self._event_log_dir / "CURRENT").exists():
            if self._pause(REOPEN_PAUSE_S):
                return
        identity = _identity(self._event_log_dir)
        # Every write of the node's RocksDB (its WAL, a flush, a compaction) changes a file
        # in this directory; watched before the log is opened, so no write falls in between.
        writes = _watch_writes(self._event_log_dir)
        try:
            event_log = EventLog.follow(
                self._event_log_dir,
                self._store_dir.with_name("projector-follower"),
                self._data_key,
            )
        except StoreError as exc:
            if writes is not None:
                writes.close()
            raise _EventLogLost(str(exc)) from None
        try:
            logged_at = time.monotonic()
            while not self._stopped:
                entries = event_log.entries_after(store.applied_index(), ENTRIES_PER_WRITE_MAX)
                if entries:
                    store.write_entries(entries)
                    self.entries_projected += len(entries)
                    continue
                if _identity(self._event_log_dir) != identity:
                    return
                if time.monotonic() - logged_at > STATUS_LOG_PERIOD_S:
                    logged_at = time.monotonic()
                    log.info("event=projector_position position=%d", store.applied_index())
                if writes is not None:
                    writes.read(timeout=int(IDLE_WAIT_S * 1000))
                else:
                    self._pause(POLL_FALLBACK_S)
                try:
                    event_log.catch_up()
                except StoreError as exc:
                    raise _EventLogLost(str(exc)) from None
        finally:
            if writes is not None:
                writes.close()
            event_log.close()


def _watch_writes(directory: Path) -> INotify | None:
    """An inotify watch of the directory, or None where the system gives none (its limits on
    instances or watches reached): the projector then polls."""
    writes: INotify | None = None
    try:
        writes = INotify()
        writes.add_watch(str(directory), WRITE_EVENTS)
    except OSError as exc:
        if writes is not None:
            writes.close()
        log.warning("event=inotify_unavailable reason=%s: polling the event log", exc)
        return None
    return writes


class _EventLogLost(Exception):
    """The node's event log cannot be followed now (replaced, or being replaced)."""


def _identity(directory: Path) -> tuple[int, int]:
    """The event log directory as the file system knows it: it changes when the node
    replaces the log (a snapshot's, extracted beside it and renamed into place)."""
    try:
        status = os.stat(directory)
    except OSError:
        return (0, 0)
    return (status.st_dev, status.st_ino)


def run_projector(
    event_log_dir: Path, store_dir: Path, parent_pid: int = 0, data_key: DataKey | None = None
) -> int:
    """`raftex project`: runs until SIGTERM or SIGINT (or, given, the end of `parent_pid`,
    the node that started it)."""
    # Behind the node in CPU priority: on a busy machine the core (Raft, apply) goes first
    # and the projection lags instead. Run alone from a terminal, it stays in the terminal's
    # session so that Ctrl-C reaches it.
    if parent_pid:
        die_with_parent(parent_pid)
        run_behind_node()
    else:
        os.nice(BACKGROUND_NICENESS)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s level=%(levelname)s process=projector logger=%(name)s %(message)s",
    )
    projector = Projector(event_log_dir, store_dir, data_key)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: projector.stop())
    try:
        projector.run()
    except StoreError as exc:
        log.critical("event=projector_failed reason=%s", exc)
        return 1
    return 0
