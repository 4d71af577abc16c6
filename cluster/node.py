"""A raftex node: pysyncobj Raft around the engine, the event log and the published views.

The Raft thread is the apply thread: it alone touches the engine (single
writer). One log entry is one batch of commands; applying it runs every
command through the engine at the entry's log time, hands the results to the
event-log writer (one record per entry, tagged with its log index, written on its
own thread), swaps in a new read view, and hands each command's events back to
its submitter. Nothing per order is indexed here: histories are projections of
the event log, built beside the node (projection/).

Replay safety: the engine is rebuilt from the last snapshot plus the journal;
the event log remembers the last log index it wrote, so a replayed entry updates
the engine but never writes twice. A log index that does not move forward is
the pysyncobj hazard described in shared/PYSYNCOBJ.md: the node stops loudly.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from cluster.batcher import Batcher, NotCommitted
from cluster.config import NodeConfig, Peer
from cluster.engine_fork import EngineForks, ForkedReadError
from cluster.engine_reads import EngineReads
from cluster.entry import MEMBER_TAG, decode_entry
from cluster.event_log import AppliedCommand, EventLog
from cluster.event_log_writer import EventLogWriter
from cluster.fault_hooks import FaultState, PartitionableTransport
from cluster.fingerprints import node_state_hash, secret_check
from cluster.journal import JournalError
from cluster.metrics import (
    APPLY_SECONDS,
    COMMANDS_APPLIED,
    COMMANDS_REFUSED,
    ENTRIES_APPLIED,
    ENTRY_COMMANDS,
    SNAPSHOT_SECONDS,
)
from cluster.port import BackupFailed, EntryApplied, EntryListener
from cluster.snapshot_file import (
    DumpChild,
    SnapshotFileError,
    SnapshotMeta,
    extract_event_log,
    read_snapshot_meta,
    verify_event_log,
)
from cluster.views import NodeView, full_view, next_view
from cluster.vote_guard import VoteGuardTransport
from engine import Exchange, InvariantBroken
from engine.commands import CommandDecodeError, command_from_wire, wire_from_bytes
from engine.events import Event, Rejected

log = logging.getLogger("raftex.node")

HASH_MARKS_KEPT = 64
DUMP_FILE_NAME = "raft.dump"
JOURNAL_FILE_NAME = "raft.journal"
BACKUPS_DIR_NAME = "backups"
BACKUP_NAME = re.compile(r"backup-[0-9]{1,20}\.tar")
BACKUP_POLL_S = 0.05
BACKUP_KEEP_S = 3600.0
# A node that cannot commit an entry within this (no quorum) cannot take a consistent backup.
BACKUP_COMMIT_WAIT_S = 10.0
EXIT_DIVERGED = 70
EXIT_JOURNAL_FAILED = 74
RAFT_MIN_TIMEOUT_S = 0.4
RAFT_MAX_TIMEOUT_S = 1.0
LEADER_FALLBACK_TIMEOUT_S = 1.0
APPEND_ENTRIES_PERIOD_S = 0.05
AUTO_TICK_PERIOD_S = 0.005
CONNECTION_TIMEOUT_S = 2.0
# pysyncobj starts an election only while connected to some peer, and retries a lost
# connection every 5 s by default: a node that restarted could leave a survivor of the
# next leader failure unconnected, and so without an election, for seconds.
CONNECTION_RETRY_S = 0.2
COMMANDS_QUEUE_SIZE = 1_000
LOG_COMPACTION_MIN_ENTRIES = 20_000
LOG_COMPACTION_MIN_TIME_S = 600
FORKED_READ_WAIT_S = 30.0


class ExchangeNode(SyncObj):
    def __init__(self, config: NodeConfig, event_log: EventLog) -> None:
        self.config = config
        self.node_id = config.node_id
        self.writer = EventLogWriter(event_log, config.node_id)
        self.event_log_dir = event_log_dir(config.data_dir)
        self.engine = Exchange()
        self.applied_index = 0
        self.view = NodeView()
        self.members: dict[str, Peer] = {p.node_id: p for p in config.peers}
        self.hash_marks: collections.OrderedDict[int, str] = collections.OrderedDict()
        self.hash_marks_changed = threading.Condition()
        # Marks whose hash a forked child is still computing.
        self.hash_marks_pending: set[int] = set()
        self.last_snapshot_index = 0
        self.snapshot_failures = 0
        self._dump: DumpChild | None = None
        self.forks = EngineForks()
        self.started_monotonic = time.monotonic()
        self._listeners: list[EntryListener] = []
        # Reads of the engine itself (L3 books) run on the apply thread, between entries.
        self._engine_reads = EngineReads()
        self.faults = FaultState()
        self.batcher = Batcher(
            config.node_id, self._send_entry, self._isLeader, clock_ms=self.faults.now_ms
        )
        conf = SyncObjConf(
            password=config.secret,
            journalFile=str(config.data_dir / JOURNAL_FILE_NAME),
            fullDumpFile=str(config.data_dir / DUMP_FILE_NAME),
            serializer=self._write_dump,
            deserializer=self._load_dump,
            serializeChecker=self._dump_status,
            dynamicMembershipChange=True,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=APPEND_ENTRIES_PERIOD_S,
            autoTickPeriod=AUTO_TICK_PERIOD_S,
            raftMinTimeout=RAFT_MIN_TIMEOUT_S,
            raftMaxTimeout=RAFT_MAX_TIMEOUT_S,
            leaderFallbackTimeout=LEADER_FALLBACK_TIMEOUT_S,
            connectionTimeout=CONNECTION_TIMEOUT_S,
            connectionRetryTime=CONNECTION_RETRY_S,
            commandsQueueSize=COMMANDS_QUEUE_SIZE,
            logCompactionMinEntries=LOG_COMPACTION_MIN_ENTRIES,
            logCompactionMinTime=LOG_COMPACTION_MIN_TIME_S,
        )
        # (role, term, leader) as the end of the last tick left them, for status(). Read
        # field by field from another thread they can tear: pysyncobj sets a new term before
        # it steps down, and its journal write in between lets the reader in, so a leader of
        # term 704 read as leader of 705 while another node led 705 (two leaders in one
        # term, to a half-hour soak's checker).
        self._raft_view: tuple[str, int, str | None] = (
            "replica" if config.replica else "candidate",
            0,
            None,
        )
        transport = PartitionableTransport if config.fault_hooks else VoteGuardTransport
        # A replica is pysyncobj's read-only node: no address of its own (it connects to
        # every voter), never a candidate, never counted for a quorum.
        super().__init__(
            None if config.replica else config.raft,
            [p.raft for p in config.others if p.voter],
            conf,
            transportClass=transport,
        )
        self.batcher.start()

    # ------------------------------------------------------------ submit

    def submit(self, command: bytes, timeout_s: float) -> Future:
        """Queues a command (its bytes) for the next batch; the future resolves to its events
        or NotCommitted."""
        return self.batcher.submit(command, timeout_s)

    def subscribe(self, listener: EntryListener) -> Callable[[], None]:
        """Calls `listener(EntryApplied)` on the apply thread after each entry (one with new
        events); it must not block."""
        self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            self._listeners = [fn for fn in self._listeners if fn is not listener]

        return unsubscribe

    def read_engine(self, read: Callable[[Exchange], Any]) -> Future:
        """Runs `read(engine)` on the apply thread between two entries (single writer: the
        engine is never read while it changes); the future holds its result. Only for
        reads bounded by a small part of the state (read_engine_copy for the rest)."""
        return self._engine_reads.add(read)

    def read_engine_copy(self, read: Callable[[Exchange], Any]) -> Future:
        """Runs `read(engine)` in a child forked between two entries: the engine as it is
        then, at the cost of a fork on the apply thread whatever the read costs."""
        result: Future = Future()

        def forked(started: Future) -> None:
            if not result.set_running_or_notify_cancel():
                return  # the reader stopped waiting: the child's answer goes nowhere
            try:
                running = started.result()
            except Exception as exc:  # the fork itself failed: the reader hears of it
                result.set_exception(exc)
                return
            running.add_done_callback(lambda done: _pass_on(done, result))

        self.read_engine(lambda engine: self.forks.read(engine, read)).add_done_callback(forked)
        return result

    def _send_entry(self, payload: bytes, callback: Callable[[Any, Any], None]) -> None:
        self.apply_entry(payload, callback=callback)

    # ------------------------------------------------------------ apply

    @replicated
    def apply_entry(self, payload: bytes) -> int:
        """Never raises: an exception here would stall every replica on the same entry."""
        index = self.raftLastApplied + 1
        try:
            self._apply(index, payload)
        except BaseException:
            log.critical(
                "event=apply_failed node=%s index=%d: stopping rather than run diverged",
                self.node_id,
                index,
                exc_info=True,
            )
            os._exit(EXIT_DIVERGED)
        return index

    def _apply(self, index: int, payload: bytes) -> None:
        if index <= self.applied_index:
            log.critical(
                "event=log_backwards node=%s index=%d applied=%d",
                self.node_id,
                index,
                self.applied_index,
            )
            os._exit(EXIT_DIVERGED)
        started = time.perf_counter()
        entry = decode_entry(payload)
        engine = self.engine
        applied: list[AppliedCommand] = []
        resolved: list[tuple[str, Any]] = []
        new_events: list[Event] = []
        for tag, data in entry.items:
            try:
                wire = wire_from_bytes(data)
                if wire and wire[0] == MEMBER_TAG:
                    self._apply_member(wire[1:])
                    resolved.append((tag, []))
                    continue
                command = command_from_wire(wire)
            except CommandDecodeError as exc:
                # Still a sequence number, deterministically: every node refuses it alike.
                events = [engine.reject_malformed(str(exc))]
            else:
                events = engine.apply(command, entry.ts_ms)
            if len(events) == 1 and type(events[0]) is Rejected:
                COMMANDS_REFUSED.labels(events[0].code).inc()
            applied.append(AppliedCommand(tag, data, events))
            resolved.append((tag, events))
            new_events.extend(e for e in events if e.seq > self.view.last_seq)
        if self.config.checked:
            self._check_invariants(index, new_events)
        self.writer.submit(index, entry.ts_ms, applied)
        self.applied_index = index
        self.view = next_view(self.view, engine, index, new_events)
        for tag, events in resolved:
            self.batcher.resolve(tag, events)
        if entry.hash_mark:
            self._record_hash(index)
        if new_events and self._listeners:
            applied = EntryApplied(new_events, self.view, engine.level_queue)
            for listener in self._listeners:
                listener(applied)
        ENTRIES_APPLIED.inc()
        COMMANDS_APPLIED.inc(len(entry.items))
        ENTRY_COMMANDS.observe(len(entry.items))
        APPLY_SECONDS.observe(time.perf_counter() - started)

    def _check_invariants(self, index: int, new_events: list[Event]) -> None:
        """Checked mode: a state that breaks an invariant is never written or served; the
        node stops with the problem in its log (a bug to find, not a state to run on)."""
        try:
            self.engine.check(new_events)
        except InvariantBroken as exc:
            log.critical(
                "event=invariant_broken node=%s index=%d problems=%s", self.node_id, index, exc
            )
            os._exit(EXIT_DIVERGED)

    def _apply_member(self, wire: list[Any]) -> None:
        action, node_id, raft, http = wire
        if action == "add":
            self.members[node_id] = Peer(node_id, raft, http)
        else:
            self.members.pop(node_id, None)

    def _record_hash(self, index: int) -> None:
        """The hash of the state after entry `index`: the engine's hash in a forked child
        (cluster/engine_fork.py) and the audit chain's head once the event-log writer holds
        the entry, so however large the state or long the writer's queue, the apply thread
        goes on at once."""
        with self.hash_marks_changed:
            self.hash_marks_pending.add(index)
        audit: Future = Future()
        self.writer.when_written(
            index, lambda: audit.set_result(self.event_log.audit_head_at(index))
        )
        hashed = self.forks.read(self.engine, Exchange.state_hash)

        def record(engine_done: Future, audit_done: Future) -> None:
            try:
                digest = node_state_hash(engine_done.result(), audit_done.result())
            except ForkedReadError:
                log.error("event=hash_failed node=%s index=%d", self.node_id, index, exc_info=True)
                digest = None
            self._keep_hash(index, digest)

        hashed.add_done_callback(
            lambda engine_done: audit.add_done_callback(
                lambda audit_done: record(engine_done, audit_done)
            )
        )

    def _keep_hash(self, index: int, digest: str | None) -> None:
        with self.hash_marks_changed:
            self.hash_marks_pending.discard(index)
            if digest is not None:
                self.hash_marks[index] = digest
                while len(self.hash_marks) > HASH_MARKS_KEPT:
                    self.hash_marks.popitem(last=False)
            self.hash_marks_changed.notify_all()

    @property
    def event_log(self) -> EventLog:
        """For reads; it may trail the engine by a few entries (see wait_for_event_log)."""
        return self.writer.event_log

    def wait_for_event_log(self, timeout_s: float) -> bool:
        """Waits until the event log holds everything applied when this was called."""
        return self.writer.wait_for(self.applied_index, timeout_s)

    def hash_at(self, index: int, timeout_s: float) -> str | None:
        """The hash recorded when `index` was applied, waiting up to `timeout_s` for it."""
        deadline = time.monotonic() + timeout_s
        with self.hash_marks_changed:
            while index not in self.hash_marks:
                remaining = deadline - time.monotonic()
                passed = (
                    index not in self.hash_marks_pending
                    and self.hash_marks
                    and min(self.hash_marks) > index
                )
                if remaining <= 0 or passed:
                    return None
                self.hash_marks_changed.wait(remaining)
            return self.hash_marks[index]

    def request_hash_mark(self, timeout_s: float) -> int | NotCommitted:
        try:
            result = self.batcher.request_hash_mark().result(timeout_s)
        except TimeoutError:
            return NotCommitted("hash mark not committed before the timeout")
        return result

    # ------------------------------------------------------------ snapshots

    def take_backup(self, timeout_s: float) -> Path:
        """A consistent copy of this node's whole state at one applied index: the snapshot
        dump of a log compaction forced now (written by a forked child while the node goes
        on), hard-linked under backups/ so that a later compaction cannot replace it. A
        hash mark first makes sure there is an entry the last dump does not hold."""
        deadline = time.monotonic() + timeout_s
        mark = self.request_hash_mark(min(timeout_s, BACKUP_COMMIT_WAIT_S))
        if isinstance(mark, NotCommitted):
            raise BackupFailed(f"this node cannot commit now ({mark.reason})")
        failures = self.snapshot_failures
        self.compact_log()
        while self.last_snapshot_index < mark:
            if self.snapshot_failures > failures:
                raise BackupFailed("the snapshot dump failed; see the node's log")
            if time.monotonic() > deadline:
                raise BackupFailed(f"no snapshot written within {timeout_s:.0f} s")
            time.sleep(BACKUP_POLL_S)
        backups = self.config.data_dir / BACKUPS_DIR_NAME
        backups.mkdir(exist_ok=True)
        _forget_old_backups(backups)
        staged = backups / f"taking-{os.getpid()}-{threading.get_ident()}.tar"
        try:
            staged.unlink(missing_ok=True)
            os.link(self.config.data_dir / DUMP_FILE_NAME, staged)
            index = read_snapshot_meta(staged, self.config.data_key).applied_index
            final = backups / f"backup-{index}.tar"
            os.replace(staged, final)
        except (OSError, SnapshotFileError) as exc:
            staged.unlink(missing_ok=True)
            raise BackupFailed(f"the backup could not be set aside: {exc}") from None
        return final

    def backup_file(self, name: str) -> Path | None:
        """A backup this node took (by the name take_backup gave it), if it is still here."""
        if not BACKUP_NAME.fullmatch(name):
            return None
        path = self.config.data_dir / BACKUPS_DIR_NAME / name
        return path if path.is_file() else None

    def secret_check(self) -> str:
        return secret_check(self.config.secret)

    def _write_dump(self, tmp_path: str, data: Any) -> None:
        """pysyncobj serializer, called on the apply thread between two entries.

        Writing a large dump takes tens of seconds (1 million orders of history:
        30 s), far longer than an election timeout, so the Raft thread only takes
        the event log's checkpoint (hard links) and forks: the child holds a
        copy-on-write image of the engine exactly at this index, writes the dump
        beside the real one and renames it into place. `_dump_status` (pysyncobj's
        serializeChecker) reports the child's progress; only on success does
        pysyncobj drop the journal entries the dump covers.

        pysyncobj then tries to rename `tmp_path` over the dump; it must not exist,
        so that rename fails harmlessly instead of replacing a good dump.
        """
        last_entry, prev_entry, cluster = data
        if last_entry[1] != self.raftLastApplied:
            raise RuntimeError("dump requested for an index other than the applied one")
        Path(tmp_path).unlink(missing_ok=True)
        if self._dump is not None:
            return
        checkpoint = self.config.data_dir / "checkpoint.tmp"
        shutil.rmtree(checkpoint, ignore_errors=True)
        self.writer.drain()
        self.event_log.checkpoint(checkpoint)
        meta = SnapshotMeta(
            applied_index=self.applied_index,
            last_entry=tuple(last_entry),
            prev_entry=tuple(prev_entry),
            cluster=sorted(node.id for node in cluster if node is not None),
            members=[[p.node_id, p.raft, p.http] for p in self.members.values()],
            engine=b"",
        )
        self._dump = DumpChild.start(
            self.engine,
            meta,
            checkpoint,
            self.config.data_dir / DUMP_FILE_NAME,
            self.config.data_key,
        )

    def _dump_status(self) -> int:
        """pysyncobj serializeChecker: the state of the dump being written, if any."""
        dump = self._dump
        if dump is None:
            return SERIALIZER_STATE.NOT_SERIALIZING
        finished = dump.poll()
        if finished is None:
            return SERIALIZER_STATE.SERIALIZING
        self._dump = None
        if not finished:
            self.snapshot_failures += 1
            log.error("event=snapshot_failed node=%s index=%d", self.node_id, dump.index)
            return SERIALIZER_STATE.FAILED
        self.last_snapshot_index = dump.index
        SNAPSHOT_SECONDS.observe(dump.seconds)
        log.info(
            "event=snapshot_written node=%s index=%d seconds=%.3f",
            self.node_id,
            dump.index,
            dump.seconds,
        )
        return SERIALIZER_STATE.SUCCESS

    def _load_dump(self, path: str) -> tuple[Any, Any, list[TCPNode]]:
        """pysyncobj deserializer: local dump at start-up, or a snapshot sent by the leader.

        pysyncobj logs and ignores a failing deserializer, which would leave this
        node running on whatever state it had: a snapshot we cannot load stops the
        node instead. A dump received from the leader is already on disk by now
        (cluster/dump_transfer.py), before the journal is cleared for it.
        """
        try:
            return self._install_dump(path)
        except BaseException:
            log.critical(
                "event=snapshot_unusable node=%s file=%s: refusing to run without it",
                self.node_id,
                path,
                exc_info=True,
            )
            os._exit(EXIT_DIVERGED)

    def _install_dump(self, path: str) -> tuple[Any, Any, list[TCPNode]]:
        data_key = self.config.data_key
        meta = read_snapshot_meta(Path(path), data_key)
        self.writer.drain()
        if self.event_log.applied_index() < meta.applied_index:
            # The snapshot is ahead of our event log (a new or wiped node): take its too.
            self.event_log.close()
            shutil.rmtree(self.event_log_dir, ignore_errors=True)
            digests = meta.event_log_digests or {}
            extract_event_log(Path(path), self.event_log_dir, digests, data_key)
            self.writer.replace_log(EventLog.open(self.event_log_dir, data_key=data_key))
        else:
            verify_event_log(Path(path), meta.event_log_digests or {}, data_key)
        self.engine = Exchange.restore(meta.engine)
        self.applied_index = meta.applied_index
        self.members = {m[0]: Peer(m[0], m[1], m[2]) for m in meta.members}
        self.view = full_view(self.engine, meta.applied_index)
        self.last_snapshot_index = meta.applied_index
        # The state hash at the snapshot's index, as `admin hash` would have recorded it
        # there: what a restored cluster is checked against (raftex drill).
        engine_hash = hashlib.sha256(meta.engine).hexdigest()
        audit_head = self.event_log.audit_head_at(meta.applied_index)
        self._keep_hash(meta.applied_index, node_state_hash(engine_hash, audit_head))
        log.info("event=snapshot_loaded node=%s index=%d", self.node_id, meta.applied_index)
        return meta.last_entry, meta.prev_entry, [TCPNode(addr) for addr in meta.cluster]

    def last_log_term(self) -> int:
        """The term of the last entry in this node's Raft log (0: no leader's entry yet,
        cluster/vote_guard.py). pysyncobj keeps its log private; called on its thread."""
        return self._SyncObj__raftLog[-1][2]

    def _onTick(self, timeToWait: float = 0.0) -> None:
        """pysyncobj retries a tick that raised, forever: a journal that can no longer
        write would leave a leader sending heartbeats it cannot back. Stop instead, so
        the others elect a leader that can."""
        self._engine_reads.run(self.engine)
        try:
            super()._onTick(timeToWait)
        except JournalError:
            log.critical("event=journal_failed node=%s: stopping", self.node_id, exc_info=True)
            os._exit(EXIT_JOURNAL_FAILED)
        self._raft_view = (self.role(), self.raftCurrentTerm, self.leader_id())

    # ------------------------------------------------------------ status

    def is_leader(self) -> bool:
        return self._isLeader()

    def peer_connected(self, raft: str) -> bool:
        return self.isNodeConnected(TCPNode(raft))

    def change_membership(
        self, action: str, raft: str, callback: Callable[[Any, Any], None]
    ) -> None:
        """Raft's own membership change (after the record of it is in the log)."""
        change = self.addNodeToCluster if action == "add" else self.removeNodeFromCluster
        change(raft, callback=callback)

    def compact_log(self) -> None:
        """Asks for a snapshot now (written by a forked child, see _write_dump)."""
        self.forceLogCompaction()

    def leader_id(self) -> str | None:
        leader = self._getLeader()
        if leader is None:
            return None
        peer = self.config.peer_by_raft(leader.id)
        if peer is not None:
            return peer.node_id
        return next((p.node_id for p in self.members.values() if p.raft == leader.id), leader.id)

    def led_by(self) -> str:
        """Which node led a write this node just saw applied: the leader now. Usually this
        node; but a command submitted here while this node believed it still led (a paused or
        cut-off leader, back) is forwarded by pysyncobj to the new leader, which commits it.
        A leader that commits an entry has it in every later leader's log, so naming the
        current one never names a node that could not have committed it."""
        return self.leader_id() or self.node_id

    def leader_http(self) -> str | None:
        leader = self._getLeader()
        if leader is None:
            return None
        return next((p.http for p in self.members.values() if p.raft == leader.id), None)

    def role(self) -> str:
        if self.config.replica:
            return "replica"
        if self.is_leader():
            return "leader"
        return "follower" if self._getLeader() is not None else "candidate"

    def status(self) -> dict[str, Any]:
        role, term, leader = self._raft_view
        view = self.view
        commit = self.raftCommitIndex
        with self.hash_marks_changed:  # the apply thread adds marks while we read
            hash_index, digest = next(reversed(self.hash_marks.items()), (0, ""))
        return {
            "id": self.node_id,
            "role": role,
            "pid": os.getpid(),
            "http": self.config.http,
            "raft": self.config.raft,
            "term": term,
            "leader": leader,
            "commit_index": commit,
            "applied_index": view.applied_index,
            "raft_applied_index": self.raftLastApplied,
            "lag": max(0, commit - self.raftLastApplied),
            "last_seq": view.last_seq,
            "state_hash": digest,
            "state_hash_index": hash_index,
            "uptime_s": round(time.monotonic() - self.started_monotonic, 1),
            "last_snapshot_index": self.last_snapshot_index,
            "event_log_index": self.writer.written_index,
            "members": sorted(self.members),
            # The data key's id when the node encrypts at rest (never the key), else None.
            "data_key_id": None if self.config.data_key is None else self.config.data_key.key_id,
            # The voters this node has a Raft connection to now (what a removal's quorum
            # check counts).
            "peers_connected": sorted(
                p.node_id
                for p in self.members.values()
                if p.voter and p.node_id != self.node_id and self.peer_connected(p.raft)
            ),
        }

    def close(self) -> None:
        self.batcher.stop()
        self.destroy_synchronous()
        if self._dump is not None:
            self._dump.wait()
        self.forks.wait(FORKED_READ_WAIT_S)
        self.writer.close()
        self.event_log.close()


def event_log_dir(data_dir: Path) -> Path:
    return data_dir / "events"


def _forget_old_backups(backups: Path) -> None:
    """A backup the operator's copy never came back to delete (the copy failed, the CLI
    died) would pin a whole state on this disk: each is kept BACKUP_KEEP_S at most."""
    horizon = time.time() - BACKUP_KEEP_S
    for path in backups.iterdir():
        try:
            if path.stat().st_mtime < horizon:
                path.unlink()
        except OSError:
            continue


def _pass_on(done: Future, to: Future) -> None:
    exc = done.exception()
    if exc is not None:
        to.set_exception(exc)
    else:
        to.set_result(done.result())
