"""The event log: ONE RocksDB record per applied log entry, what a voter writes and nothing more.

Every node applies each Raft log entry (one batch of commands) to its engine and
hands the commands with their events to `EventLog.write_entry`, which writes, in
one RocksDB WriteBatch: the entry's record under its log index, and the log's
tip (applied index, audit count and head, last event sequence). Nothing per
order, account or symbol is indexed here: everything derived (order histories,
fills, trades, balance history) is a projection that reads this log in order
(projection/), beside the node, never on its write path.

    meta     b"tip" -> [format, applied_index, audit_count, audit_head, last_seq]
    entries  log_index u64 -> [log_time_ms, first_audit_no, first_seq, last_seq,
                                [record, ...], [hash, ...]]

A record is the msgpack bytes of one command as applied,
`[audit_no, log_index, log_time_ms, submitter, command_bytes, [event_wire, ...]]`,
stored verbatim so that verification hashes exactly the bytes on disk. The
audit chain runs through every command: `hash = sha256(previous hash + record)`,
the first record of an entry chaining to the last of the entry before; the
entry keeps each of its commands' hashes, so `verify_audit` names the first bad
command, and the last hash (the audit head) is part of the node's state hash.
`first_seq` is the entry's first new event (0: none; a retry's events are its
original outcome, stored where they first happened): reads by sequence find
their entry by binary search over it.

Threading: one writer (the event-log writer thread). Reads may come from other
threads, or from a secondary instance in another process (a projector).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgpack
from rocksdict import WriteOptions

from cluster.rocks import (
    U64,
    U64_MAX,
    Batch,
    RocksDb,
    RocksStore,
    check_cursor,
    check_limit,
    last_item,
    unpack,
)
from cluster.sealed import DataKey
from cluster.store_errors import StoreCorruptionError, StoreError, StoreOrderError
from engine.events import Accepted, Event, Rejected, event_from_wire, event_to_wire

# Bumped when the record layout changes; a log of another format refuses to open.
EVENT_LOG_FORMAT = 3
# Commands per entry. Must stay at or above the cluster's commands per log entry
# (cluster.entry.BATCH_COMMANDS_MAX): the log refusing a committed entry stops the node.
ENTRY_COMMANDS_MAX = 4_096
SUBMITTER_LEN_MAX = 128
HASH_BYTES = 32
GENESIS_HASH = bytes(HASH_BYTES)

CF_META = "meta"
CF_ENTRIES = "entries"
COLUMN_FAMILIES = (CF_META, CF_ENTRIES)
META_TIP = b"tip"

# Positions in an entry's value and in a command record.
_E_TIME, _E_FIRST_AUDIT, _E_FIRST_SEQ, _E_LAST_SEQ, _E_RECORDS, _E_HASHES = range(6)
_R_AUDIT_NO, _R_LOG_INDEX, _R_LOG_TIME, _R_SUBMITTER, _R_COMMAND, _R_EVENTS = range(6)


class OutcomeResult(StrEnum):
    """The compact outcome of one command, as the audit history shows it."""

    ACCEPTED = "accepted"  # an order was accepted (outcome.order_id says which)
    REJECTED = "rejected"  # outcome.code is the engine's reject code
    APPLIED = "applied"  # changed state without accepting an order (cancel, deposit, ...)
    NONE = "none"  # no events at all (a Tick with nothing to expire)


@dataclass(frozen=True, slots=True)
class AppliedCommand:
    """One command of a log entry as the engine applied it."""

    submitter: str  # node id + request tag of whoever submitted it, e.g. "n1/42"
    command: bytes  # as it travelled: engine.commands.command_to_bytes(...)
    events: list[Event]  # what engine Exchange.apply returned for it


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """One applied log entry as the event log holds it: what a projection consumes.

    `first_seq` is its first new event's sequence (0: none): a command's events with
    a lower sequence are a retry's original outcome, applied in an earlier entry.
    """

    log_index: int
    log_time_ms: int
    first_seq: int
    last_seq: int
    commands: list[AppliedCommand]


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The result of re-hashing the audit chain; `records` counts the records found good."""

    ok: bool
    records: int
    first_bad: int | None
    reason: str


class EventLog(RocksStore):
    """A node's event log. `EventLog.open(path)` to write it, `EventLog.follow(path, dir)` to
    read it from another process; close it when done."""

    def __init__(self, db: RocksDb, fsync: bool) -> None:
        """Private: use `open` or `follow`, which turn RocksDB errors into StoreError."""
        self._db = db
        self._write_options = WriteOptions()
        # The WAL stays on either way: it is what makes one WriteBatch all-or-nothing across
        # a crash. `sync` only decides whether write_entry waits for an fsync.
        self._write_options.disable_wal = False
        self._write_options.sync = fsync
        # (applied index, audit count, audit head, last seq) in one tuple, so a reader on
        # another thread never pairs one entry's count with another's head.
        self._tip: tuple[int, int, bytes, int] = (0, 0, GENESIS_HASH, 0)
        self._pack = msgpack.Packer(use_bin_type=True).pack
        try:
            self._load_tip()
        except BaseException:
            db.close()
            raise

    @classmethod
    def open(cls, path: Path, *, fsync: bool = False, data_key: DataKey | None = None) -> EventLog:
        """Opens (creating if missing) the log at `path` as its one writer.

        `fsync=False` is for a node whose Raft journal is the durability source: each
        entry is one atomic WriteBatch through the WAL and survives kill -9 of the
        process; the last entries before a machine crash may be lost, and are
        replayed from the log after `applied_index()`. `data_key`: its values are sealed
        under it (encryption at rest).
        """
        return cls(RocksDb(path, COLUMN_FAMILIES, data_key=data_key), fsync)

    @classmethod
    def follow(cls, path: Path, secondary_dir: Path, data_key: DataKey | None = None) -> EventLog:
        """Opens the log a node writes, read-only, beside it (a projector); `catch_up` shows
        what the node wrote since."""
        return cls(RocksDb(path, COLUMN_FAMILIES, secondary_dir, data_key), fsync=False)

    def _reload(self) -> None:
        self._load_tip()

    def _load_tip(self) -> None:
        """Reads the tip, initialising a fresh log; checks it against the last entry."""
        meta = self._db.cf(CF_META)
        raw = meta.get(META_TIP)
        if raw is None:
            if last_item(self._db.cf(CF_ENTRIES)) is not None:
                raise StoreCorruptionError(f"event log at {self.path} has entries but no tip")
            if not self._db.secondary:
                self._write_tip(self._db.batch(), (0, 0, GENESIS_HASH, 0))
            return
        try:
            fmt, applied_index, audit_count, audit_head, last_seq = unpack(raw)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StoreCorruptionError(f"event log at {self.path}: bad tip: {exc}") from None
        if fmt != EVENT_LOG_FORMAT:
            raise StoreError(
                f"event log at {self.path} has format {fmt}, this build reads {EVENT_LOG_FORMAT}"
            )
        if (
            type(applied_index) is not int
            or type(audit_count) is not int
            or type(last_seq) is not int
            or type(audit_head) is not bytes
            or len(audit_head) != HASH_BYTES
        ):
            raise StoreCorruptionError(f"event log at {self.path}: a tip of the wrong types")
        last = last_item(self._db.cf(CF_ENTRIES))
        if last is not None:
            index = U64.unpack(last[0])[0]
            value = _entry_of(index, last[1])
            if (
                index != applied_index
                or value[_E_LAST_SEQ] != last_seq
                or value[_E_FIRST_AUDIT] + len(value[_E_RECORDS]) - 1 != audit_count
                or (value[_E_HASHES] and value[_E_HASHES][-1] != audit_head)
            ):
                raise StoreCorruptionError(
                    f"event log at {self.path}: the tip does not match entry {index}"
                )
        elif applied_index or audit_count or last_seq:
            raise StoreCorruptionError(f"event log at {self.path}: a tip with no entries")
        self._tip = (applied_index, audit_count, audit_head, last_seq)

    def _write_tip(self, batch: Batch, tip: tuple[int, int, bytes, int]) -> None:
        batch.put(META_TIP, self._pack([EVENT_LOG_FORMAT, *tip]), self._db.handles[CF_META])
        try:
            self._db.write(batch, self._write_options)
        # rocksdict reports RocksDB statuses as a bare Exception; nothing was applied.
        except Exception as exc:
            raise StoreError(f"event log at {self.path}: write failed: {exc}") from None
        self._tip = tip

    # ------------------------------------------------------------ tip

    def applied_index(self) -> int:
        """Log index of the last entry written; 0 for an empty log. Replay starts after it."""
        return self._tip[0]

    def audit_count(self) -> int:
        """Number of commands audited: the audit_no of the last one."""
        return self._tip[1]

    def audit_head(self) -> str:
        """Hex SHA-256 of the last command's record (64 zeros when empty): equal on every
        replica at the same index."""
        return self._tip[2].hex()

    def audit_head_at(self, log_index: int) -> str:
        """The audit chain's head right after entry `log_index` (audit_head() at that
        index), whatever has been written since."""
        check_cursor("log_index", log_index)
        return self._hash_before(log_index + 1).hex()

    def last_seq(self) -> int:
        """Highest event sequence logged; the engine's next event must be this plus one."""
        return self._tip[3]

    # ------------------------------------------------------------ write

    def write_entry(
        self, log_index: int, log_time_ms: int, commands: Sequence[AppliedCommand]
    ) -> None:
        """Writes one applied log entry atomically, or nothing at all.

        Raises StoreOrderError if `log_index` is not above `applied_index()` or if the
        events' new sequences do not continue `last_seq()` without a gap. Events with a
        sequence at or below the last logged one are a retry's original outcome: part of
        that command's record, logged where they first happened.
        """
        if self._db.secondary:
            raise StoreError(f"event log at {self.path} is open read-only")
        applied_index, audit_count, head, last_seq = self._tip
        if type(log_index) is not int or type(log_time_ms) is not int:
            raise StoreError(f"log index {log_index!r} and log time {log_time_ms!r} must be ints")
        if log_index <= applied_index:
            raise StoreOrderError(
                f"log index {log_index} is already applied (the log is at {applied_index}):"
                " a replay must never apply an entry twice"
            )
        if log_index > U64_MAX or not 0 <= log_time_ms <= U64_MAX:
            raise StoreError(f"log index {log_index} / log time {log_time_ms} out of range")
        if len(commands) > ENTRY_COMMANDS_MAX:
            raise StoreError(
                f"entry of {len(commands)} commands is over the limit of {ENTRY_COMMANDS_MAX}"
            )
        pack = self._pack
        sha256 = hashlib.sha256
        records: list[bytes] = []
        hashes: list[bytes] = []
        first_audit_no = audit_count + 1
        first_seq = 0
        for command in commands:
            submitter = command.submitter
            if type(submitter) is not str or len(submitter) > SUBMITTER_LEN_MAX:
                raise StoreError(
                    f"submitter must be a string of at most {SUBMITTER_LEN_MAX} characters"
                )
            wires = []
            for event in command.events:
                seq = event.seq
                if seq > last_seq:
                    if seq != last_seq + 1:
                        raise StoreOrderError(
                            f"log index {log_index}: event seq {seq} does not follow"
                            f" {last_seq} (event sequences must be gap-free)"
                        )
                    last_seq = seq
                    if not first_seq:
                        first_seq = seq
                wires.append(event_to_wire(event))
            audit_count += 1
            try:
                record = pack(
                    [audit_count, log_index, log_time_ms, submitter, command.command, wires]
                )
            except (TypeError, ValueError, OverflowError) as exc:
                raise StoreError(f"command from {submitter} cannot be encoded: {exc}") from None
            head = sha256(head + record).digest()
            records.append(record)
            hashes.append(head)
        batch = self._db.batch()
        batch.put(
            U64.pack(log_index),
            pack([log_time_ms, first_audit_no, first_seq, last_seq, records, hashes]),
            self._db.handles[CF_ENTRIES],
        )
        self._write_tip(batch, (log_index, audit_count, head, last_seq))

    # ------------------------------------------------------------ reads

    def entries_after(self, log_index: int, limit: int) -> list[LoggedEntry]:
        """The entries above `log_index`, ascending: what a projection reads next."""
        check_cursor("log_index", log_index)
        check_limit(limit)
        out: list[LoggedEntry] = []
        if log_index >= U64_MAX:
            return out
        for key, value in self._db.cf(CF_ENTRIES).items(from_key=U64.pack(log_index + 1)):
            index = U64.unpack(key)[0]
            out.append(_logged_entry(index, _entry_of(index, value)))
            if len(out) >= limit:
                break
        return out

    def events_since(self, seq: int, limit: int) -> list[Event]:
        """Events with a sequence above `seq`, ascending: how a feed refills a gap."""
        check_cursor("seq", seq)
        check_limit(limit)
        out: list[Event] = []
        if seq >= self._tip[3]:
            return out
        start = self._entry_holding(_E_FIRST_SEQ, seq + 1)
        for key, value in self._db.cf(CF_ENTRIES).items(from_key=start):
            index = U64.unpack(key)[0]
            entry = _entry_of(index, value)
            first, last = entry[_E_FIRST_SEQ], entry[_E_LAST_SEQ]
            if not first or last <= seq:
                continue
            expected = max(first, seq + 1)
            for record in entry[_E_RECORDS]:
                for wire in _record_of(index, record)[_R_EVENTS]:
                    event_seq = _event_seq(index, wire)
                    if event_seq < expected:
                        continue  # before `seq`, or a retry's original outcome
                    if event_seq != expected:
                        raise StoreCorruptionError(
                            f"entry {index} holds seq {event_seq} where {expected} belongs"
                        )
                    out.append(_event_of(index, wire))
                    expected += 1
                    if len(out) >= limit:
                        return out
        return out

    def audit_records(self, after_no: int, limit: int) -> list[dict[str, Any]]:
        """The commands audited with numbers above `after_no`, ascending, hashes in hex."""
        check_cursor("after_no", after_no)
        check_limit(limit)
        out: list[dict[str, Any]] = []
        if after_no >= self._tip[1]:
            return out
        start = self._entry_holding(_E_FIRST_AUDIT, after_no + 1)
        cf = self._db.cf(CF_ENTRIES)
        prev_hash = self._hash_before(U64.unpack(start)[0])
        for key, value in cf.items(from_key=start):
            index = U64.unpack(key)[0]
            entry = _entry_of(index, value)
            no = entry[_E_FIRST_AUDIT]
            first_seq = entry[_E_FIRST_SEQ]
            # The last sequence logged before each command: a retry's events are at or below.
            logged_before = first_seq - 1 if first_seq else entry[_E_LAST_SEQ]
            for record, digest in zip(entry[_E_RECORDS], entry[_E_HASHES], strict=True):
                row = _audit_record_dict(index, record, prev_hash, digest, logged_before)
                if no > after_no:
                    out.append(row)
                    if len(out) >= limit:
                        return out
                logged_before = max([logged_before, *row["outcome"]["seqs"]])
                prev_hash = digest
                no += 1
        return out

    def _hash_before(self, log_index: int) -> bytes:
        """The last command hash of the entries before `log_index` (genesis: none)."""
        if log_index == 0:
            return GENESIS_HASH
        for key, value in self._db.cf(CF_ENTRIES).items(
            backwards=True, from_key=U64.pack(log_index - 1)
        ):
            hashes = _entry_of(U64.unpack(key)[0], value)[_E_HASHES]
            if hashes:
                return hashes[-1]
        return GENESIS_HASH

    def verify_audit(self) -> AuditReport:
        """Re-hashes the whole chain from the first command and names the first bad one.

        Checks, per command: it is numbered where the chain says, its record decodes,
        and its hash is the SHA-256 of the previous hash and its own stored bytes, as the
        entry says; then that the chain ends with the log's audit head. Covers the
        entries present when it starts, so it may run while entries are written.
        """
        _, count, head, _ = self._tip
        expected_no = 1
        prev_hash = GENESIS_HASH
        for key, value in self._db.cf(CF_ENTRIES).items():
            if expected_no > count:
                break
            index = U64.unpack(key)[0]
            try:
                entry = _entry_of(index, value)
            except StoreCorruptionError as exc:
                return AuditReport(False, expected_no - 1, expected_no, str(exc))
            records, hashes = entry[_E_RECORDS], entry[_E_HASHES]
            first = entry[_E_FIRST_AUDIT]
            if first != expected_no or len(records) != len(hashes):
                return AuditReport(
                    False,
                    expected_no - 1,
                    expected_no,
                    f"missing record: entry {index} starts at command {first}, the chain is at"
                    f" {expected_no}",
                )
            for position, (record, stored) in enumerate(zip(records, hashes, strict=True)):
                problem = _record_problem(expected_no, index, position, record, prev_hash, stored)
                if problem:
                    return AuditReport(False, expected_no - 1, expected_no, problem)
                prev_hash = stored
                expected_no += 1
        records_ok = expected_no - 1
        if records_ok < count:
            return AuditReport(
                False,
                records_ok,
                records_ok + 1,
                f"missing record: the chain ends at {records_ok}, the log counts {count}",
            )
        if prev_hash != head:
            return AuditReport(
                False,
                records_ok,
                records_ok,
                f"head mismatch: command {records_ok} hashes to {prev_hash.hex()}, the log's"
                f" audit head is {head.hex()}",
            )
        return AuditReport(True, records_ok, None, "")

    def checkpoint(self, dest: Path) -> None:
        """A consistent checkpoint of the whole log at `dest` (which must not exist)."""
        self._db.checkpoint(dest)

    def _entry_holding(self, field: int, number: int) -> bytes:
        """The key of the last entry whose `field` (first seq or first audit no, both
        non-decreasing along the log) is at most `number`: where a read by number starts.
        Binary search over log indexes, each probe one seek."""
        cf = self._db.cf(CF_ENTRIES)
        low, high = 0, self._tip[0]
        start = U64.pack(0)
        while low <= high:
            middle = (low + high) // 2
            found = next(iter(cf.items(from_key=U64.pack(middle))), None)
            if found is None:
                high = middle - 1
                continue
            key, value = found
            entry = _entry_of(U64.unpack(key)[0], value)
            # An entry with no new event stands where the next one would be.
            value_number = entry[field] or entry[_E_LAST_SEQ] + 1
            if value_number <= number:
                start = key
                low = U64.unpack(key)[0] + 1
            else:
                high = middle - 1
        return start


def _entry_of(log_index: int, raw: bytes) -> list[Any]:
    """The value of entry `log_index`, checked for the shape write_entry gives it; anything
    else is StoreCorruptionError naming the entry, never an error of msgpack or of indexing."""
    try:
        entry = unpack(raw)
    except (ValueError, msgpack.UnpackException) as exc:
        raise StoreCorruptionError(f"event log entry {log_index} does not decode: {exc}") from None
    if (
        type(entry) is not list
        or len(entry) != 6
        or type(entry[_E_TIME]) is not int
        or type(entry[_E_FIRST_AUDIT]) is not int
        or type(entry[_E_FIRST_SEQ]) is not int
        or type(entry[_E_LAST_SEQ]) is not int
        or type(entry[_E_RECORDS]) is not list
        or type(entry[_E_HASHES]) is not list
        or len(entry[_E_RECORDS]) != len(entry[_E_HASHES])
        or not all(type(record) is bytes for record in entry[_E_RECORDS])
        or not all(type(h) is bytes and len(h) == HASH_BYTES for h in entry[_E_HASHES])
    ):
        raise StoreCorruptionError(f"event log entry {log_index} is not an entry of this log")
    return entry


def _record_of(log_index: int, raw: bytes) -> list[Any]:
    """A command's record in entry `log_index`, checked for its shape (StoreCorruptionError)."""
    try:
        fields = unpack(raw)
    except (ValueError, msgpack.UnpackException) as exc:
        raise StoreCorruptionError(
            f"a record of event log entry {log_index} does not decode: {exc}"
        ) from None
    if (
        type(fields) is not list
        or len(fields) != 6
        or type(fields[_R_AUDIT_NO]) is not int
        or type(fields[_R_LOG_INDEX]) is not int
        or type(fields[_R_LOG_TIME]) is not int
        or type(fields[_R_SUBMITTER]) is not str
        or type(fields[_R_EVENTS]) is not list
    ):
        raise StoreCorruptionError(f"a record of event log entry {log_index} has the wrong shape")
    return fields


def _event_seq(log_index: int, wire: Any) -> int:
    if type(wire) is not list or len(wire) < 2 or type(wire[1]) is not int:
        raise StoreCorruptionError(f"event log entry {log_index} holds an event of no sequence")
    return wire[1]


def _event_of(log_index: int, wire: Any) -> Event:
    """An event of entry `log_index` from its wire form (StoreCorruptionError if it is not one)."""
    _event_seq(log_index, wire)
    try:
        return event_from_wire(wire)
    except (KeyError, TypeError) as exc:
        raise StoreCorruptionError(
            f"event log entry {log_index} holds an event that does not decode: {exc!r}"
        ) from None


def _logged_entry(log_index: int, entry: list[Any]) -> LoggedEntry:
    commands = []
    for record in entry[_E_RECORDS]:
        fields = _record_of(log_index, record)
        events = [_event_of(log_index, wire) for wire in fields[_R_EVENTS]]
        commands.append(AppliedCommand(fields[_R_SUBMITTER], fields[_R_COMMAND], events))
    return LoggedEntry(log_index, entry[_E_TIME], entry[_E_FIRST_SEQ], entry[_E_LAST_SEQ], commands)


def _record_problem(
    no: int, index: int, position: int, record: bytes, prev_hash: bytes, stored: bytes
) -> str:
    """Why command `no` (entry `index`, `position`) is bad, or "" when it is good."""
    where = f"command {no} (log index {index}, position {position})"
    if hashlib.sha256(prev_hash + record).digest() != stored:
        return f"hash mismatch: {where} does not hash to its stored hash"
    try:
        fields = unpack(record)
    except (ValueError, msgpack.UnpackException) as exc:
        return f"{where} does not decode: {exc}"
    if not isinstance(fields, list) or len(fields) != 6 or fields[_R_AUDIT_NO] != no:
        return f"{where} has the wrong shape or number"
    if fields[_R_LOG_INDEX] != index:
        return f"{where} names log index {fields[_R_LOG_INDEX]}"
    return ""


def _audit_record_dict(
    index: int, record: bytes, prev_hash: bytes, digest: bytes, logged_before: int
) -> dict[str, Any]:
    """A command's audit record (of entry `index`) as reads show it; `logged_before` is the
    last event sequence logged before its entry: events at or below it are a retry's
    original outcome."""
    audit_no, log_index, log_time_ms, submitter, command, wires = _record_of(index, record)
    events = [_event_of(index, wire) for wire in wires]
    result, code, order_id = _outcome_summary(events)
    return {
        "audit_no": audit_no,
        "log_index": log_index,
        "log_time_ms": log_time_ms,
        "submitter": submitter,
        "command": _shown_command(command),
        "outcome": {
            "seqs": [event.seq for event in events],
            "retry": any(event.seq <= logged_before for event in events),
            "result": result,
            "code": code,
            "order_id": order_id,
        },
        "prev_hash": prev_hash.hex(),
        "hash": digest.hex(),
    }


def _shown_command(command: Any) -> Any:
    """A command's wire form for the audit; None for bytes that are no command (the node
    applied them as a rejection: still audited, with nothing to show)."""
    try:
        return unpack(command)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None


def _outcome_summary(events: list[Event]) -> tuple[str, str, int]:
    """(result, reject code, order id) of one command from its events.

    Timer events (expiries, pause ends) may come first; a command has at most one
    Accepted or Rejected of its own, and for a retry it is the original one.
    """
    for event in events:
        if type(event) is Accepted:
            return OutcomeResult.ACCEPTED.value, "", event.order_id
        if type(event) is Rejected:
            return OutcomeResult.REJECTED.value, str(event.code), 0
    return (OutcomeResult.APPLIED.value if events else OutcomeResult.NONE.value), "", 0
