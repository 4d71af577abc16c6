"""A crash-safe Raft log for pysyncobj: checksummed records, explicit fsync, refuse on corruption.

pysyncobj's own FileJournal writes through mmap and never calls fsync, so an entry a node
acknowledged can vanish on power loss, and a flipped bit is loaded as if it were a real
command, leaving the node alive but diverged or stuck. `DurableJournal` replaces it behind
the same interface (`pysyncobj.journal.Journal`); `install_durable_journal()` makes every
SyncObj built afterwards in this process use it.

When an entry reaches disk
--------------------------
`FsyncPolicy.ALWAYS`: `add()` writes the framed record with one `pwrite()` at the end of
the file and then calls `fdatasync()`; it returns only after the kernel reports the record
and the new file size on stable storage. SyncObj appends one entry per batch of orders, so
this is one fsync per batch on the leader. A follower calls `add()` once per received entry
and replies to the leader only after the last one returns, so an entry counted towards a
majority is on the disks of that majority. A truncation by `clear`, and one by
`deleteEntriesFrom` when it reaches the file (see "Lazy truncation" below), is fsynced as
well.

`FsyncPolicy.NONE` (an explicit opt-out): `add()` returns once `pwrite()` has copied the
record into the kernel page cache; the kernel writes it back when it chooses (on Linux
typically within 5-30 s). Truncations are not fsynced either.

Under both policies: a term or vote change (`setCurrentTerm`) is fsynced before it returns,
because Raft's election safety depends on it; a compaction rewrite (`deleteEntriesTo`), the
creation of a new journal and the repair of a torn tail are fsynced, because they are rare
and an unsynced rename can leave an empty file after power loss, which would stop the node
instead of merely losing a tail. The raft commit index is written at most once a second
(`onOneSecondTimer`) and on close: it is a hint for replay at start-up, not safety state, and
it is clamped to the last entry on load.

What survives
-------------
kill -9 of the process, both policies: every entry `add()` returned for. The page cache
belongs to the kernel, not to the process. A kill during a write leaves at most a torn last
record, which was never acknowledged; start-up truncates it and logs a warning.

Power loss or kernel crash, `ALWAYS`: every entry `add()` returned for, plus term and vote.
The record being written may be torn and is truncated at start-up. (This assumes the drive
honours flushes; a volatile write cache without power-loss protection defeats any fsync.)

Power loss or kernel crash, `NONE`: entries written in the last seconds may be lost,
acknowledged ones included, so "committed" means "in the page cache of a majority". A
truncation followed by appends can reach the disk out of order and leave a record that fails
its CRC: the node then refuses to start and must be rebuilt from a replica. Term and vote
still survive.

Lazy truncation
---------------
pysyncobj's follower calls `deleteEntriesFrom` on every append_entries whose prevLogIdx is
behind its last entry, which re-sent and duplicate messages make routine, and then `add()`s
the very same entries again. Raft truncates only on a conflict (same index, another term).
So `deleteEntriesFrom` removes the entries from the list SyncObj reads at once, but leaves
their records in the file and remembers them as the pending tail, with their offsets:
- an `add()` equal to the first pending entry (command, index and term) takes it back: the
  record is already in the file at exactly the place it would be written, so there is no
  write and no fsync (counted in `readds_skipped`);
- any other `add()` first truncates the file at the first pending record that did not match
  (fsynced under ALWAYS), drops the pending tail, then appends as usual (counted in
  `truncations`); `close()` truncates a pending tail the same way;
- `clear()` and a compaction (`deleteEntriesTo`) rewrite the file without it.
Reads (`__getitem__`, `__len__`, the commit-index clamp) see only the list, never the pending
tail. The file therefore always holds the list followed by the pending tail, and that is
what a start-up after a crash loads.

Why a crash while a truncation is pending is safe: every pending record was received from a
leader and written by an earlier `add()`, and the file holds exactly the log this node had
before the `deleteEntriesFrom` (the entries taken back since are byte-identical). A restart
therefore finds a state the node really was in, as if the message that caused the
truncation had been lost on the network, which Raft tolerates. The pending entries come
back as an ordinary uncommitted suffix that the leader's consistency check keeps or
replaces. Nothing acknowledged is lost, and nothing that was not received is invented. It is
safer than truncating at once: a duplicate message makes SyncObj truncate entries this node
had already acknowledged (even committed ones), and an eager truncation followed by a crash
before the re-add would erase them from a disk the leader counted on for its majority. No
reply about the new entries has been sent while they are pending: SyncObj replies to the
leader only after the last `add()` of a message, and a diverging `add()` makes the
truncation durable before its own record is written.

Corruption found at start-up (a complete record whose CRC does not match, a bad file header,
indexes that are not consecutive) raises `JournalCorruptError` naming the file, the byte
offset and the record: a node must refuse to start rather than replay a log it cannot trust.

On-disk format (all integers little-endian)
-------------------------------------------
Journal file, `<path>`:
    file header, 16 bytes: magic b"RFXJRNL\\0" (8) | format version u32 | CRC32 of the
        preceding 12 bytes u32; format 2 (encrypted at rest) adds the data key id (8) and
        its CRC32 u32
    records, back to back, each: payload length u32 | raft index u64 | raft term u64 |
        CRC32 of the payload u32 | CRC32 of the preceding 24 header bytes u32 | payload
The header has its own CRC so that a flipped bit in a length field is reported as
corruption, not mistaken for a torn tail (which would silently drop the records after it).
In format 1 the payload is the command; in format 2 it is the command sealed with AES-GCM
under the cluster's data key (cluster/sealed.py), with the raft index and term as AAD, so
a record copied to another place does not open. The CRCs cover what is on disk: a torn or
flipped record is found as before, and a record that passes its CRC but does not open was
written under another key or on purpose. A node with a data key refuses a journal in clear
and a journal under another key; one without refuses a sealed journal. The meta file (term,
vote, commit index) holds no order and stays in clear.

Meta file, `<path>.meta`, replaced atomically (write temp, fsync, rename, fsync directory):
    magic b"RFXMETA\\0" (8) | format version u32 | current term u64 | raft commit index u64 |
    votedFor length u32 (0xFFFFFFFF: no vote) | votedFor UTF-8 node id | CRC32 of all
    preceding bytes u32

`<path>.lock` is held with flock() while the journal is open, so two processes never write
the same log; `<path>.tmp` and `<path>.meta.tmp` are leftovers of an interrupted rewrite and
are removed at start-up (the rename had not happened, so the old file is authoritative).

The journal is not thread-safe: SyncObj calls it only from its Raft thread (and once from
its constructor), which is the single writer.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator

import pysyncobj.syncobj
import pysyncobj.version
from pysyncobj.journal import Journal, MemoryJournal

from cluster.durable_file import fsync_directory
from cluster.metrics import JOURNAL_FSYNC_SECONDS
from cluster.sealed import VALUE_OVERHEAD_BYTES, DataKey, Sealer, SealError

logger = logging.getLogger(__name__)

JournalEntry = tuple[bytes, int, int]
"""(command, raft index, raft term): the tuple SyncObj stores and reads back."""

JOURNAL_MAGIC = b"RFXJRNL\x00"
JOURNAL_FORMAT_VERSION = 1
JOURNAL_FORMAT_SEALED = 2
FILE_HEADER = struct.Struct("<8sII")  # magic, format version, CRC32 of magic + version
FILE_HEADER_BYTES = FILE_HEADER.size
SEALED_HEADER = struct.Struct("<8sI")  # data key id, its CRC32 (format 2 only)
SEALED_HEADER_BYTES = FILE_HEADER_BYTES + SEALED_HEADER.size
INDEX_TERM = struct.Struct("<QQ")  # a sealed record's AAD
RECORD_HEADER = struct.Struct("<IQQII")  # length, index, term, payload CRC32, header CRC32
RECORD_HEADER_BYTES = RECORD_HEADER.size
RECORD_HEADER_CRC_COVERED_BYTES = RECORD_HEADER_BYTES - 4  # the header CRC covers the rest
# One entry is one batch of orders. Far above any batch the node builds; a length past this
# in a record whose header CRC matches can only be a writer bug.
RECORD_PAYLOAD_BYTES_MAX = 64 * 1024 * 1024
RAFT_INDEX_MAX = 2**64 - 1
RAFT_TERM_MAX = 2**64 - 1

META_MAGIC = b"RFXMETA\x00"
META_FORMAT_VERSION = 1
META_FIXED = struct.Struct("<8sIQQI")  # magic, version, term, commit index, votedFor length
META_CRC = struct.Struct("<I")
META_VOTED_FOR_NONE = 0xFFFFFFFF
META_VOTED_FOR_BYTES_MAX = 1024

RAFT_COMMIT_INDEX_DEFAULT = 1  # what pysyncobj's FileJournal reports for a fresh journal

PYSYNCOBJ_VERSION_VERIFIED = "0.3.17"  # the createJournal hook was checked against this

TMP_SUFFIX = ".tmp"
META_SUFFIX = ".meta"
LOCK_SUFFIX = ".lock"
FILE_MODE = 0o600  # the log holds every order: owner only

# fdatasync flushes the data and the file size, which is all a reader needs; fsync also
# flushes timestamps. Platforms without fdatasync (macOS) fall back to fsync.
_sync_file_data: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class FsyncPolicy(enum.StrEnum):
    """When an appended entry is forced to disk; see the module docstring for what survives."""

    ALWAYS = "always"
    NONE = "none"


class JournalError(Exception):
    """Base of the journal's errors; `code` is stable for logs and the admin API."""

    code = "journal_error"


class JournalCorruptError(JournalError):
    """The file on disk is not a journal this code wrote intact: the node must not start."""

    code = "journal_corrupt"

    def __init__(self, path: str, byte_offset: int, record: int | None, reason: str) -> None:
        where = f"byte offset {byte_offset}"
        if record is not None:
            where += f", record {record} (0-based)"
        super().__init__(
            f"journal file {path} is corrupt at {where}: {reason}; refusing to start "
            "rather than replay a log that may have diverged from the cluster"
        )
        self.path = path
        self.byte_offset = byte_offset
        self.record = record


class JournalWriteError(JournalError):
    """A write, fsync, truncate or rename failed.

    After a failed fsync the kernel may already have dropped the dirty pages, so what is on
    disk is unknown: the journal refuses every later change until the process restarts and
    re-reads the file.
    """

    code = "journal_write_failed"


class JournalKeyError(JournalError):
    """A journal sealed under another data key, sealed where the node has none, or in clear
    where the node encrypts at rest: the node must not start on it."""

    code = "journal_key"


class JournalInUseError(JournalError):
    """Another open journal (in this or another process) holds the lock on this path."""

    code = "journal_in_use"


class JournalUsageError(JournalError):
    """The caller asked for something the log must never contain (a gap, a huge entry)."""

    code = "journal_usage"


class DurableJournal(Journal):
    """pysyncobj's Journal interface over an append-only, checksummed, fsynced file.

    Every entry is also kept in a list, so reads never touch the disk; the file exists only
    so that the list can be rebuilt after a restart. Positions passed to `deleteEntriesFrom`,
    `deleteEntriesTo` and `__getitem__` are positions in the journal (as in MemoryJournal),
    not raft indexes.

    Counters, for tests and the node's logs (they start at 0 with each open):
    `readds_skipped` counts `add()` calls that took back a pending entry without writing;
    `truncations` counts pending truncations that reached the file (by a diverging `add()`
    or by `close()`); a pending tail that `clear()` or a compaction rewrites away is not
    counted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fsync_policy: FsyncPolicy,
        data_key: DataKey | None = None,
    ) -> None:
        """`data_key`: seal every record under it (encryption at rest); None keeps them in
        clear."""
        self._path = os.path.abspath(os.fspath(path))
        self._sealer = Sealer(data_key) if data_key is not None else None
        self._file_header = _encode_file_header(data_key)
        self._record_overhead = RECORD_HEADER_BYTES + (
            VALUE_OVERHEAD_BYTES if data_key is not None else 0
        )
        self._dir_path = os.path.dirname(self._path)
        self._tmp_path = self._path + TMP_SUFFIX
        self._meta_path = self._path + META_SUFFIX
        self._meta_tmp_path = self._meta_path + TMP_SUFFIX
        self._fsync_policy = FsyncPolicy(fsync_policy)
        self._entries: list[JournalEntry] = []
        self._record_offsets: list[int] = []  # byte offset of each entry's record
        # Just past the last record in self._entries: where the next new record goes. The
        # file ends here unless a truncation is pending.
        self._end_offset = len(self._file_header)
        # Entries deleteEntriesFrom removed from the list whose records are still in the
        # file, in log order, each with its record's offset; the first starts at _end_offset.
        self._pending_tail: collections.deque[tuple[JournalEntry, int]] = collections.deque()
        self.readds_skipped = 0
        self.truncations = 0
        self._current_term = 0
        self._voted_for_node_id: str | None = None
        self._raft_commit_index = RAFT_COMMIT_INDEX_DEFAULT
        self._meta_dirty = False
        self._failure: JournalWriteError | None = None
        self._fd = -1
        self._lock_fd = self._acquire_lock()
        try:
            self._remove_stale_temp_files()
            if not os.path.exists(self._path):
                self._write_file_atomically(self._path, self._file_header)
            self._fd = os.open(self._path, os.O_RDWR)
            self._load_records()
            self._load_meta()
        except BaseException:
            self.close()
            raise

    # -- the pysyncobj Journal interface -----------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        """Append an entry; under ALWAYS it is on disk when this returns.

        An entry equal to the first one of a pending truncation is taken back without a
        write: its record is already on disk at this place. Any other entry makes the
        pending truncation reach the file first.
        """
        self._check_writable()
        if not isinstance(command, bytes):
            command = bytes(command)
        if self._entries and idx != self._entries[-1][1] + 1:
            raise JournalUsageError(
                f"journal {self._path}: entry index {idx} does not follow the last index "
                f"{self._entries[-1][1]}; a Raft log has no gaps"
            )
        if self._pending_tail and self._pending_tail[0][0] == (command, idx, term):
            self._take_back_pending_entry()
            return
        record = _encode_record(command, idx, term, self._sealer)  # refuses before a truncation
        self._materialize_pending_truncation()
        with self._io("append"):
            _pwrite_all(self._fd, record, self._end_offset)
            if self._fsync_policy is FsyncPolicy.ALWAYS:
                started = time.perf_counter()
                _sync_file_data(self._fd)
                JOURNAL_FSYNC_SECONDS.observe(time.perf_counter() - started)
        self._entries.append((command, idx, term))
        self._record_offsets.append(self._end_offset)
        self._end_offset += len(record)

    def clear(self) -> None:
        """Drop every entry (SyncObj does this before installing a snapshot)."""
        self._check_writable()
        self._truncate_file(len(self._file_header))
        self._entries = []
        self._record_offsets = []
        self._pending_tail.clear()  # the truncation above removed its records as well

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Drop the entries at positions entryFrom.. (a follower's conflicting suffix).

        They leave the list at once but stay in the file as the pending tail until an
        `add()` differs from them or the journal is closed (see "Lazy truncation" in the
        module docstring); this writes nothing.
        """
        self._check_writable()
        start = slice(entryFrom, None).indices(len(self._entries))[0]
        if start >= len(self._entries):
            return
        # The removed records end where an older pending tail starts, so they go before it.
        removed = zip(self._entries[start:], self._record_offsets[start:], strict=True)
        self._pending_tail.extendleft(reversed(list(removed)))
        self._end_offset = self._record_offsets[start]
        del self._entries[start:]
        del self._record_offsets[start:]

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the entries before position entryTo (log compaction after a snapshot).

        The kept entries are written to a temp file that replaces the journal by rename, so
        a crash leaves either the old journal or the new one, never a mix.
        """
        self._check_writable()
        start = slice(entryTo, None).indices(len(self._entries))[0]
        if start == 0:
            return
        kept = self._entries[start:]
        offsets = []
        chunks = [self._file_header]
        offset = len(self._file_header)
        for command, idx, term in kept:
            record = _encode_record(command, idx, term, self._sealer)
            offsets.append(offset)
            chunks.append(record)
            offset += len(record)
        with self._io("compact"):
            self._write_file_atomically(self._path, b"".join(chunks))
            new_fd = os.open(self._path, os.O_RDWR)
            os.close(self._fd)
            self._fd = new_fd
        self._entries = kept
        self._record_offsets = offsets
        self._end_offset = offset
        self._pending_tail.clear()  # the new file was written without it

    def __getitem__(self, item: int | slice) -> JournalEntry | list[JournalEntry]:
        """Same semantics as a list (and MemoryJournal): negative ints, slices give lists."""
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        """SyncObj's name for close()."""
        self.close()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        """Remember the commit index; it reaches disk on the next one-second timer."""
        if raftCommitIndex != self._raft_commit_index:
            self._raft_commit_index = raftCommitIndex
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:
        """The stored commit index, never past the last entry.

        A commit index beyond the log would make SyncObj treat entries it receives later at
        those indexes as committed, though they may differ from the ones that were.
        """
        if self._entries and self._raft_commit_index > self._entries[-1][1]:
            logger.warning(
                "journal.commit_index_clamped path=%s stored=%d last_index=%d",
                self._path,
                self._raft_commit_index,
                self._entries[-1][1],
            )
            return self._entries[-1][1]
        return self._raft_commit_index

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        """Persist term and vote before returning, under every policy (Raft §5.1, §5.2)."""
        self._check_writable()
        if votedForNodeId is not None and not isinstance(votedForNodeId, str):
            raise JournalUsageError(
                f"journal {self._path}: votedFor must be a node id string or None, "
                f"got {type(votedForNodeId).__name__}"
            )
        if (term, votedForNodeId) == (self._current_term, self._voted_for_node_id):
            return
        self._current_term = term
        self._voted_for_node_id = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return self._current_term

    def getVotedForNodeId(self) -> str | None:
        return self._voted_for_node_id

    def onOneSecondTimer(self) -> None:
        """Write the commit index if it moved (SyncObj calls this from its Raft thread)."""
        if self._meta_dirty and self._failure is None:
            self._store_meta()

    # -- outside the pysyncobj interface -----------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def fsync_policy(self) -> FsyncPolicy:
        return self._fsync_policy

    def close(self) -> None:
        """Truncate a pending tail, write a pending commit index, close the file and release
        the lock; idempotent. After a clean close the file holds exactly what reads showed.
        """
        try:
            if self._fd >= 0 and self._failure is None:
                self._materialize_pending_truncation()
                if self._meta_dirty:
                    self._store_meta()
        finally:
            if self._fd >= 0:
                logger.info(
                    "journal.closed path=%s entries=%d readds_skipped=%d truncations=%d",
                    self._path,
                    len(self._entries),
                    self.readds_skipped,
                    self.truncations,
                )
                os.close(self._fd)
                self._fd = -1
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = -1

    # -- internals -----------------------------------------------------------------------

    def _acquire_lock(self) -> int:
        lock_fd = os.open(self._path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise JournalInUseError(
                f"journal {self._path} is already open (lock {self._path + LOCK_SUFFIX} is "
                "held); two writers would interleave their logs"
            ) from None
        except BaseException:
            os.close(lock_fd)
            raise
        return lock_fd

    def _remove_stale_temp_files(self) -> None:
        for tmp_path in (self._tmp_path, self._meta_tmp_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
                logger.warning("journal.stale_temp_removed path=%s", tmp_path)

    def _load_records(self) -> None:
        with open(self._fd, "rb", closefd=False) as f:
            data = f.read()
        _check_file_header(self._path, data, self._file_header)
        view = memoryview(data)
        size = len(data)
        offset = len(self._file_header)
        sealer = self._sealer
        record = 0
        entries = self._entries
        offsets = self._record_offsets
        torn_reason = None
        while offset < size:
            if size - offset < RECORD_HEADER_BYTES:
                torn_reason = "partial record header"
                break
            length, idx, term, payload_crc, header_crc = RECORD_HEADER.unpack_from(view, offset)
            crc_computed = zlib.crc32(view[offset : offset + RECORD_HEADER_CRC_COVERED_BYTES])
            if crc_computed != header_crc:
                raise JournalCorruptError(
                    self._path,
                    offset,
                    record,
                    f"record header CRC mismatch (stored {header_crc:#010x}, "
                    f"computed {crc_computed:#010x})",
                )
            if length > RECORD_PAYLOAD_BYTES_MAX:
                raise JournalCorruptError(
                    self._path,
                    offset,
                    record,
                    f"payload length {length} exceeds {RECORD_PAYLOAD_BYTES_MAX} bytes",
                )
            payload_end = offset + RECORD_HEADER_BYTES + length
            if payload_end > size:
                torn_reason = f"payload has {size - offset - RECORD_HEADER_BYTES} of {length} bytes"
                break
            payload = data[offset + RECORD_HEADER_BYTES : payload_end]
            crc_computed = zlib.crc32(payload)
            if crc_computed != payload_crc:
                raise JournalCorruptError(
                    self._path,
                    offset,
                    record,
                    f"payload CRC mismatch (stored {payload_crc:#010x}, "
                    f"computed {crc_computed:#010x})",
                )
            if entries and idx != entries[-1][1] + 1:
                raise JournalCorruptError(
                    self._path,
                    offset,
                    record,
                    f"raft index {idx} does not follow the previous index {entries[-1][1]}",
                )
            if sealer is not None:
                try:
                    payload = sealer.open(INDEX_TERM.pack(idx, term), payload)
                except SealError:
                    raise JournalCorruptError(
                        self._path,
                        offset,
                        record,
                        "the record passes its CRC but does not open under the data key: "
                        "it was written under another key, or changed on purpose",
                    ) from None
            entries.append((payload, idx, term))
            offsets.append(offset)
            offset = payload_end
            record += 1
        self._end_offset = offset
        if torn_reason is not None:
            # Only the last record can be torn: every earlier one was complete and verified.
            logger.warning(
                "journal.torn_tail_truncated path=%s byte_offset=%d record=%d "
                "bytes_dropped=%d reason=%r",
                self._path,
                offset,
                record,
                size - offset,
                torn_reason,
            )
            with self._io("repair torn tail"):
                os.ftruncate(self._fd, offset)
                _sync_file_data(self._fd)

    def _load_meta(self) -> None:
        try:
            with open(self._meta_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return  # nothing was ever voted or stored: the defaults are the truth
        term, commit_index, voted_for = _decode_meta(self._meta_path, data)
        self._current_term = term
        self._raft_commit_index = commit_index
        self._voted_for_node_id = voted_for

    def _store_meta(self) -> None:
        data = _encode_meta(self._current_term, self._raft_commit_index, self._voted_for_node_id)
        with self._io("store meta"):
            self._write_file_atomically(self._meta_path, data)
        self._meta_dirty = False

    def _take_back_pending_entry(self) -> None:
        """Return the first pending entry to the list: its record is already in the file."""
        entry, offset = self._pending_tail.popleft()
        assert offset == self._end_offset, (
            f"journal {self._path}: pending record at byte offset {offset}, "
            f"expected {self._end_offset}"
        )
        self._entries.append(entry)
        self._record_offsets.append(offset)
        self._end_offset = offset + self._record_overhead + len(entry[0])
        self.readds_skipped += 1

    def _materialize_pending_truncation(self) -> None:
        """Cut the pending tail off the file (fsynced under ALWAYS) and forget it."""
        if not self._pending_tail:
            return
        (_, first_index, first_term), offset = self._pending_tail[0]
        assert offset == self._end_offset, (
            f"journal {self._path}: pending tail at byte offset {offset}, "
            f"expected {self._end_offset}"
        )
        entries_dropped = len(self._pending_tail)
        self._truncate_file(offset)
        self._pending_tail.clear()
        self.truncations += 1
        logger.info(
            "journal.suffix_truncated path=%s byte_offset=%d first_index=%d first_term=%d "
            "entries_dropped=%d",
            self._path,
            offset,
            first_index,
            first_term,
            entries_dropped,
        )

    def _truncate_file(self, offset: int) -> None:
        with self._io("truncate"):
            os.ftruncate(self._fd, offset)
            if self._fsync_policy is FsyncPolicy.ALWAYS:
                _sync_file_data(self._fd)
        self._end_offset = offset

    def _write_file_atomically(self, path: str, data: bytes) -> None:
        """Temp file, fsync, rename over `path`, fsync the directory that names it."""
        tmp_path = path + TMP_SUFFIX
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            _pwrite_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
        fsync_directory(self._dir_path)

    def _check_writable(self) -> None:
        if self._failure is not None:
            raise JournalWriteError(
                f"journal {self._path} refuses changes after an earlier failure: "
                f"{self._failure}; restart the node"
            ) from self._failure
        if self._fd < 0:
            raise JournalUsageError(f"journal {self._path} is closed")

    @contextlib.contextmanager
    def _io(self, operation: str) -> Iterator[None]:
        """Turn an OSError into a JournalWriteError and refuse every later change."""
        try:
            yield
        except OSError as e:
            self._failure = JournalWriteError(f"journal {self._path}: {operation} failed: {e}")
            logger.critical(
                "journal.write_failed path=%s operation=%r error=%r", self._path, operation, e
            )
            raise self._failure from e


def _encode_file_header(data_key: DataKey | None) -> bytes:
    version = JOURNAL_FORMAT_VERSION if data_key is None else JOURNAL_FORMAT_SEALED
    fields = JOURNAL_MAGIC + struct.pack("<I", version)
    header = FILE_HEADER.pack(JOURNAL_MAGIC, version, zlib.crc32(fields))
    if data_key is None:
        return header
    key_id = bytes.fromhex(data_key.key_id)
    return header + SEALED_HEADER.pack(key_id, zlib.crc32(key_id))


def _check_file_header(path: str, data: bytes, expected: bytes) -> None:
    if len(data) < FILE_HEADER_BYTES:
        raise JournalCorruptError(
            path,
            0,
            None,
            f"file is {len(data)} bytes, shorter than its {FILE_HEADER_BYTES}-byte header",
        )
    magic, version, header_crc = FILE_HEADER.unpack_from(data, 0)
    if magic != JOURNAL_MAGIC:
        raise JournalCorruptError(
            path, 0, None, f"bad magic {magic!r}, expected {JOURNAL_MAGIC!r}: not a raftex journal"
        )
    crc_computed = zlib.crc32(data[: FILE_HEADER_BYTES - 4])
    if crc_computed != header_crc:
        raise JournalCorruptError(
            path,
            0,
            None,
            f"file header CRC mismatch (stored {header_crc:#010x}, computed {crc_computed:#010x})",
        )
    if version not in (JOURNAL_FORMAT_VERSION, JOURNAL_FORMAT_SEALED):
        raise JournalCorruptError(
            path,
            0,
            None,
            f"format version {version} is not a supported version "
            f"({JOURNAL_FORMAT_VERSION} or {JOURNAL_FORMAT_SEALED})",
        )
    if version == JOURNAL_FORMAT_SEALED:
        if len(data) < SEALED_HEADER_BYTES:
            raise JournalCorruptError(path, 0, None, "file is shorter than its sealed header")
        key_id, key_id_crc = SEALED_HEADER.unpack_from(data, FILE_HEADER_BYTES)
        if zlib.crc32(key_id) != key_id_crc:
            raise JournalCorruptError(path, FILE_HEADER_BYTES, None, "data key id CRC mismatch")
    if data[: len(expected)] == expected:
        return
    if version == JOURNAL_FORMAT_VERSION:
        raise JournalKeyError(
            f"journal {path} is in clear, but this node keeps its data encrypted at rest: "
            "restore the cluster from a backup with a key-encryption key to encrypt it"
        )
    if len(expected) == FILE_HEADER_BYTES:
        raise JournalKeyError(
            f"journal {path} is encrypted at rest (data key {key_id.hex()}): give the node "
            "its key-encryption key and keyring"
        )
    raise JournalKeyError(
        f"journal {path} was sealed under data key {key_id.hex()}, this node holds "
        f"{expected[FILE_HEADER_BYTES : FILE_HEADER_BYTES + 8].hex()}: another cluster's "
        "journal or another keyring"
    )


def _encode_record(command: bytes, idx: int, term: int, sealer: Sealer | None) -> bytes:
    # The limit is on what is stored (a sealed payload is longer), as the loader checks it.
    stored = len(command) + (VALUE_OVERHEAD_BYTES if sealer is not None else 0)
    if stored > RECORD_PAYLOAD_BYTES_MAX:
        raise JournalUsageError(
            f"entry {idx} is {stored} bytes stored, above the {RECORD_PAYLOAD_BYTES_MAX}-byte limit"
        )
    if not (0 <= idx <= RAFT_INDEX_MAX and 0 <= term <= RAFT_TERM_MAX):
        raise JournalUsageError(f"entry index {idx} or term {term} is outside 0..2**64-1")
    payload = command if sealer is None else sealer.seal(INDEX_TERM.pack(idx, term), command)
    fields = struct.pack("<IQQI", len(payload), idx, term, zlib.crc32(payload))
    return fields + struct.pack("<I", zlib.crc32(fields)) + payload


def _encode_meta(term: int, commit_index: int, voted_for: str | None) -> bytes:
    if voted_for is None:
        voted_for_bytes = b""
        voted_for_length = META_VOTED_FOR_NONE
    else:
        voted_for_bytes = voted_for.encode()
        voted_for_length = len(voted_for_bytes)
        if voted_for_length > META_VOTED_FOR_BYTES_MAX:
            raise JournalUsageError(
                f"votedFor node id is {voted_for_length} bytes, above the "
                f"{META_VOTED_FOR_BYTES_MAX}-byte limit"
            )
    body = (
        META_FIXED.pack(META_MAGIC, META_FORMAT_VERSION, term, commit_index, voted_for_length)
        + voted_for_bytes
    )
    return body + META_CRC.pack(zlib.crc32(body))


def _decode_meta(path: str, data: bytes) -> tuple[int, int, str | None]:
    """(current term, raft commit index, votedFor) from a meta file, or JournalCorruptError."""
    if len(data) < META_FIXED.size + META_CRC.size:
        raise JournalCorruptError(path, 0, None, f"meta file is only {len(data)} bytes")
    magic, version, term, commit_index, voted_for_length = META_FIXED.unpack_from(data, 0)
    if magic != META_MAGIC:
        raise JournalCorruptError(path, 0, None, f"bad magic {magic!r}, expected {META_MAGIC!r}")
    body_end = len(data) - META_CRC.size
    (stored_crc,) = META_CRC.unpack_from(data, body_end)
    crc_computed = zlib.crc32(data[:body_end])
    if crc_computed != stored_crc:
        raise JournalCorruptError(
            path,
            body_end,
            None,
            f"meta CRC mismatch (stored {stored_crc:#010x}, computed {crc_computed:#010x})",
        )
    if version != META_FORMAT_VERSION:
        raise JournalCorruptError(
            path, 0, None, f"meta format version {version} is not {META_FORMAT_VERSION}"
        )
    voted_for_bytes = data[META_FIXED.size : body_end]
    if voted_for_length == META_VOTED_FOR_NONE and not voted_for_bytes:
        return term, commit_index, None
    if voted_for_length != len(voted_for_bytes):
        raise JournalCorruptError(
            path,
            META_FIXED.size,
            None,
            f"votedFor length {voted_for_length} does not match {len(voted_for_bytes)} bytes",
        )
    try:
        voted_for = voted_for_bytes.decode()
    except UnicodeDecodeError:
        raise JournalCorruptError(
            path, META_FIXED.size, None, "votedFor is not a UTF-8 node id"
        ) from None
    return term, commit_index, voted_for


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


# -- making SyncObj use DurableJournal ------------------------------------------------------

_PYSYNCOBJ_CREATE_JOURNAL = pysyncobj.syncobj.createJournal


def install_durable_journal(fsync_policy: FsyncPolicy, data_key: DataKey | None = None) -> None:
    """Make every SyncObj constructed after this call keep its log in a DurableJournal.

    Why a module-level hook: SyncObj.__init__ builds its log with
    `createJournal(conf.journalFile)`, a name imported into `pysyncobj.syncobj`, and neither
    SyncObj nor SyncObjConf takes a journal or a factory. Rebinding that name is the only way
    in short of forking pysyncobj. The hook is process-wide: all SyncObj instances built
    afterwards in this process get `fsync_policy` and `data_key`. A journalFile of None still gives
    pysyncobj's MemoryJournal, as before. Call it once at start-up, before any SyncObj.
    """
    if pysyncobj.version.VERSION != PYSYNCOBJ_VERSION_VERIFIED:
        raise RuntimeError(
            f"the journal hook was verified against pysyncobj {PYSYNCOBJ_VERSION_VERIFIED}, "
            f"found {pysyncobj.version.VERSION}: re-check SyncObj's use of createJournal and "
            "of the Journal interface before changing PYSYNCOBJ_VERSION_VERIFIED"
        )
    pysyncobj.syncobj.createJournal = _DurableJournalFactory(FsyncPolicy(fsync_policy), data_key)


def uninstall_durable_journal() -> None:
    """Give SyncObjs constructed from now on pysyncobj's own journal again (for tests)."""
    pysyncobj.syncobj.createJournal = _PYSYNCOBJ_CREATE_JOURNAL


def installed_fsync_policy() -> FsyncPolicy | None:
    """The policy new SyncObjs get, or None if pysyncobj's own journal is in place."""
    factory = pysyncobj.syncobj.createJournal
    return factory.fsync_policy if isinstance(factory, _DurableJournalFactory) else None


class _DurableJournalFactory:
    """Stands in for pysyncobj's createJournal(journalFile=None)."""

    __slots__ = ("data_key", "fsync_policy")

    def __init__(self, fsync_policy: FsyncPolicy, data_key: DataKey | None) -> None:
        self.fsync_policy = fsync_policy
        self.data_key = data_key

    def __call__(self, journal_file: str | None = None) -> Journal:
        if journal_file is None:
            return MemoryJournal()
        return DurableJournal(journal_file, self.fsync_policy, self.data_key)
