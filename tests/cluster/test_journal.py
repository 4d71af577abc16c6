"""The durable Raft journal: what a restarted node finds on disk, and what makes it refuse.

Records are built by hand here from the format in cluster/journal.py's docstring, so these
tests also pin the on-disk format.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pysyncobj.syncobj
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.journal import MemoryJournal

from cluster import journal as journal_module
from cluster.journal import (
    FILE_HEADER_BYTES,
    RECORD_HEADER_BYTES,
    DurableJournal,
    FsyncPolicy,
    JournalCorruptError,
    JournalInUseError,
    JournalUsageError,
    JournalWriteError,
    install_durable_journal,
    installed_fsync_policy,
    uninstall_durable_journal,
)

REPLAY_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 5.0
CRASHING_WRITER_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parents[2]

JournalEntry = tuple[bytes, int, int]


def record_bytes(command: bytes, idx: int, term: int) -> bytes:
    """One record exactly as the module docstring describes it."""
    fields = struct.pack("<IQQI", len(command), idx, term, zlib.crc32(command))
    return fields + struct.pack("<I", zlib.crc32(fields)) + command


def file_bytes(entries: list[JournalEntry]) -> bytes:
    """A whole journal file holding `entries`, exactly as the module docstring describes it."""
    header_fields = b"RFXJRNL\x00" + struct.pack("<I", 1)
    header = header_fields + struct.pack("<I", zlib.crc32(header_fields))
    return header + b"".join(record_bytes(*entry) for entry in entries)


def open_journal(path: Path, policy: FsyncPolicy = FsyncPolicy.ALWAYS) -> DurableJournal:
    return DurableJournal(path, policy)


def write_entries(path: Path, entries: list[tuple[bytes, int, int]]) -> None:
    journal = open_journal(path)
    for entry in entries:
        journal.add(*entry)
    journal.close()


def read_entries(path: Path) -> list[tuple[bytes, int, int]]:
    journal = open_journal(path)
    try:
        return journal[:]
    finally:
        journal.close()


THREE_ENTRIES = [(b"\x00", 1, 0), (b"order batch 2", 2, 1), (b"order batch 3", 3, 1)]


@pytest.mark.parametrize("policy", list(FsyncPolicy))
def test_entries_written_before_a_restart_are_read_back_after_it(
    tmp_path: Path, policy: FsyncPolicy
) -> None:
    path = tmp_path / "raft.journal"
    journal = open_journal(path, policy)
    for entry in THREE_ENTRIES:
        journal.add(*entry)
    assert journal[:] == THREE_ENTRIES
    journal.close()

    reopened = open_journal(path, policy)
    assert reopened[:] == THREE_ENTRIES
    assert reopened[-1] == (b"order batch 3", 3, 1)
    assert len(reopened) == 3
    reopened.add(b"order batch 4", 4, 2)
    reopened.close()
    assert read_entries(path) == [*THREE_ENTRIES, (b"order batch 4", 4, 2)]


def test_file_is_the_documented_header_followed_by_records(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    write_entries(path, THREE_ENTRIES)
    header_fields = b"RFXJRNL\x00" + struct.pack("<I", 1)
    expected = header_fields + struct.pack("<I", zlib.crc32(header_fields))
    expected += b"".join(record_bytes(*entry) for entry in THREE_ENTRIES)
    assert path.read_bytes() == expected
    assert file_bytes(THREE_ENTRIES) == expected


# -- the same answers as MemoryJournal for any sequence of operations -----------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.binary(max_size=40), st.integers(0, 2)),
        st.tuples(st.just("add"), st.binary(max_size=40), st.integers(0, 2)),
        st.tuples(st.just("add_first"), st.integers(1, 1_000), st.integers(0, 50)),
        st.tuples(st.just("delete_from"), st.integers(-12, 12)),
        st.tuples(st.just("delete_from"), st.integers(-12, 12)),
        # A follower re-receiving what it just deleted, as pysyncobj re-sends it.
        st.tuples(st.just("readd")),
        st.tuples(st.just("readd")),
        # The Raft conflict: the same index from a later term.
        st.tuples(st.just("readd_diverging"), st.integers(1, 3)),
        st.tuples(st.just("delete_to"), st.integers(-12, 12)),
        st.tuples(st.just("clear")),
        st.tuples(st.just("reopen")),
        st.tuples(st.just("crash")),
        st.tuples(
            st.just("slice"),
            st.none() | st.integers(-15, 15),
            st.none() | st.integers(-15, 15),
            st.none() | st.sampled_from([1, 2, -1, 3]),
        ),
    ),
    max_size=40,
)


def assert_reads_match(journal: DurableJournal, model: MemoryJournal) -> None:
    assert len(journal) == len(model)
    assert journal[:] == model[:]
    for i in range(-len(model) - 1, len(model) + 1):
        if -len(model) <= i < len(model):
            assert journal[i] == model[i]
        else:
            with pytest.raises(IndexError):
                journal[i]


class DiskModel:
    """What the file must hold: the entries reads show, then the pending tail.

    The pending tail is what deleteEntriesFrom removed and no add() has yet taken back or
    diverged from; the counters are what the open DurableJournal must report.
    """

    def __init__(self) -> None:
        self.pending_tail: list[JournalEntry] = []
        self.readds_skipped = 0
        self.truncations = 0

    def added(self, entry: JournalEntry) -> None:
        if self.pending_tail and self.pending_tail[0] == entry:
            del self.pending_tail[0]
            self.readds_skipped += 1
        elif self.pending_tail:
            self.pending_tail = []
            self.truncations += 1

    def deleted_from(self, removed: list[JournalEntry]) -> None:
        self.pending_tail = removed + self.pending_tail

    def rewritten(self) -> None:
        """clear() or a compaction wrote the file without the pending tail."""
        self.pending_tail = []

    def closed_cleanly(self) -> None:
        if self.pending_tail:
            self.truncations += 1
        self.pending_tail = []

    def reopened(self) -> None:
        assert not self.pending_tail
        self.readds_skipped = 0
        self.truncations = 0


def model_of(entries: list[JournalEntry]) -> MemoryJournal:
    model = MemoryJournal()
    for entry in entries:
        model.add(*entry)
    return model


def copy_as_a_kill_leaves_it(path: Path, copy_path: Path) -> None:
    """The journal's files as a kill -9 right now would leave them (the page cache survives)."""
    shutil.copyfile(path, copy_path)
    meta_path = path.with_name(path.name + ".meta")
    if meta_path.exists():
        shutil.copyfile(meta_path, copy_path.with_name(copy_path.name + ".meta"))


@settings(max_examples=200, deadline=None)
@given(policy=st.sampled_from(list(FsyncPolicy)), ops=operations)
def test_reads_and_deletes_behave_like_memory_journal_across_reopens_and_crashes(
    policy: FsyncPolicy, ops: list[tuple]
) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        path = Path(tmp_dir) / "raft.journal"
        journal = open_journal(path, policy)
        model = MemoryJournal()
        disk = DiskModel()
        crashes = 0
        try:
            for op in ops:
                kind = op[0]
                if kind == "add":
                    _, command, term_step = op
                    if len(model) == 0:
                        idx, term = 1, term_step
                    else:
                        idx, term = model[-1][1] + 1, model[-1][2] + term_step
                    journal.add(command, idx, term)
                    model.add(command, idx, term)
                    disk.added((command, idx, term))
                elif kind == "add_first":
                    # After clear() or a compaction the log starts wherever the snapshot
                    # left it, so a first entry may have any index.
                    if len(model) != 0:
                        continue
                    _, idx, term = op
                    journal.add(b"first", idx, term)
                    model.add(b"first", idx, term)
                    disk.added((b"first", idx, term))
                elif kind in {"readd", "readd_diverging"}:
                    if not disk.pending_tail:
                        continue
                    command, idx, term = disk.pending_tail[0]
                    if kind == "readd_diverging":
                        term += op[1]
                    journal.add(command, idx, term)
                    model.add(command, idx, term)
                    disk.added((command, idx, term))
                elif kind == "delete_from":
                    before = model[:]
                    journal.deleteEntriesFrom(op[1])
                    model.deleteEntriesFrom(op[1])
                    disk.deleted_from(before[len(model) :])
                elif kind == "delete_to":
                    length_before = len(model)
                    journal.deleteEntriesTo(op[1])
                    model.deleteEntriesTo(op[1])
                    if len(model) != length_before:
                        disk.rewritten()
                elif kind == "clear":
                    journal.clear()
                    model.clear()
                    disk.rewritten()
                elif kind == "reopen":
                    journal.close()
                    disk.closed_cleanly()
                    assert (journal.readds_skipped, journal.truncations) == (
                        disk.readds_skipped,
                        disk.truncations,
                    )
                    journal = open_journal(path, policy)
                    disk.reopened()
                elif kind == "crash":
                    # The process dies with the truncation still pending: the restarted
                    # journal finds the pending tail as an ordinary suffix of its log.
                    crashes += 1
                    crash_path = Path(tmp_dir) / f"crashed-{crashes}.journal"
                    copy_as_a_kill_leaves_it(path, crash_path)
                    journal.close()  # the dead process's journal; its file is left behind
                    path = crash_path
                    journal = open_journal(path, policy)
                    model = model_of(model[:] + disk.pending_tail)
                    disk.rewritten()
                    disk.reopened()
                else:
                    _, start, stop, step = op
                    assert journal[start:stop:step] == model[start:stop:step]
                assert_reads_match(journal, model)
                assert path.read_bytes() == file_bytes(model[:] + disk.pending_tail)
                assert (journal.readds_skipped, journal.truncations) == (
                    disk.readds_skipped,
                    disk.truncations,
                )
            journal.close()
            disk.closed_cleanly()
            assert journal.truncations == disk.truncations
            assert path.read_bytes() == file_bytes(model[:])
            journal = open_journal(path, policy)
            assert_reads_match(journal, model)
        finally:
            journal.close()


# -- truncation and compaction --------------------------------------------------------------


def test_a_conflicting_suffix_deleted_by_a_follower_stays_deleted_after_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raft.journal"
    entries = [(f"batch {i}".encode(), i, 1) for i in range(1, 11)]
    journal = open_journal(path)
    for entry in entries:
        journal.add(*entry)
    journal.deleteEntriesFrom(6)  # a position in the journal: drops raft indexes 7..10
    journal.add(b"leader 2 batch 7", 7, 2)
    journal.close()

    expected = [*entries[:6], (b"leader 2 batch 7", 7, 2)]
    assert read_entries(path) == expected
    assert path.stat().st_size == FILE_HEADER_BYTES + sum(
        len(record_bytes(*entry)) for entry in expected
    )


TEN_ENTRIES = [(f"batch {i}".encode(), i, 1) for i in range(1, 11)]


def journal_with(path: Path, entries: list[JournalEntry]) -> DurableJournal:
    journal = open_journal(path)
    for entry in entries:
        journal.add(*entry)
    return journal


def test_a_resent_suffix_identical_to_the_deleted_one_writes_and_syncs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raft.journal"
    journal = journal_with(path, TEN_ENTRIES)
    syncs = count_file_syncs(monkeypatch)
    before = path.stat()

    journal.deleteEntriesFrom(4)  # a duplicate append_entries with prevLogIdx 4
    assert journal[:] == TEN_ENTRIES[:4], "reads never see the pending tail"
    assert len(journal) == 4
    assert journal[-1] == TEN_ENTRIES[3]
    for entry in TEN_ENTRIES[4:]:
        journal.add(*entry)

    assert journal[:] == TEN_ENTRIES
    assert (journal.readds_skipped, journal.truncations) == (6, 0)
    assert syncs == []
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    journal.add(b"batch 11", 11, 1)  # a new entry goes after the taken-back ones
    assert len(syncs) == 1
    journal.close()
    assert read_entries(path) == [*TEN_ENTRIES, (b"batch 11", 11, 1)]


def test_a_follower_receiving_every_entry_twice_writes_each_record_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pysyncobj with appendEntriesUseBatch=False: one entry per message, and a re-sent
    # message makes the follower delete from prevLogIdx + 1 and add the entry again.
    path = tmp_path / "raft.journal"
    journal = open_journal(path)
    syncs = count_file_syncs(monkeypatch)
    for position, entry in enumerate(TEN_ENTRIES):
        journal.add(*entry)
        journal.deleteEntriesFrom(position)
        journal.add(*entry)
    assert journal[:] == TEN_ENTRIES
    assert len(syncs) == len(TEN_ENTRIES)
    assert (journal.readds_skipped, journal.truncations) == (10, 0)
    journal.close()
    assert path.read_bytes() == file_bytes(TEN_ENTRIES)


def test_an_entry_that_differs_from_the_deleted_one_truncates_the_file_exactly_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raft.journal"
    journal = journal_with(path, TEN_ENTRIES)
    syncs = count_file_syncs(monkeypatch)
    journal.deleteEntriesFrom(6)
    assert path.read_bytes() == file_bytes(TEN_ENTRIES), "nothing written yet"

    journal.add(b"leader 2 batch 7", 7, 2)

    expected = [*TEN_ENTRIES[:6], (b"leader 2 batch 7", 7, 2)]
    assert journal[:] == expected
    assert path.read_bytes() == file_bytes(expected)
    assert len(syncs) == 2, "the truncation, then the new record"
    assert (journal.readds_skipped, journal.truncations) == (0, 1)
    journal.close()
    assert read_entries(path) == expected


def test_a_suffix_that_matches_then_conflicts_is_truncated_at_the_first_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "raft.journal"
    journal = journal_with(path, TEN_ENTRIES)
    offset_of_index_6 = len(file_bytes(TEN_ENTRIES[:5]))
    syncs = count_file_syncs(monkeypatch)
    journal.deleteEntriesFrom(3)  # pending: indexes 4..10
    journal.add(*TEN_ENTRIES[3])
    journal.add(*TEN_ENTRIES[4])
    assert syncs == []
    conflict = (TEN_ENTRIES[5][0], 6, 2)  # the same command at index 6, from a later term
    with caplog.at_level(logging.INFO, logger="cluster.journal"):
        journal.add(*conflict)

    expected = [*TEN_ENTRIES[:5], conflict]
    assert journal[:] == expected
    assert path.read_bytes() == file_bytes(expected)
    assert len(syncs) == 2
    assert (journal.readds_skipped, journal.truncations) == (2, 1)
    assert (
        f"journal.suffix_truncated path={path} byte_offset={offset_of_index_6} "
        "first_index=6 first_term=1 entries_dropped=5" in caplog.text
    )
    journal.add(b"leader 2 batch 7", 7, 2)
    journal.close()
    assert read_entries(path) == [*expected, (b"leader 2 batch 7", 7, 2)]


def test_deletes_before_a_re_add_extend_the_pending_tail_backwards(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = journal_with(path, TEN_ENTRIES)
    journal.deleteEntriesFrom(8)
    journal.deleteEntriesFrom(5)  # an older duplicate arrives later
    assert journal[:] == TEN_ENTRIES[:5]
    for entry in TEN_ENTRIES[5:]:
        journal.add(*entry)
    assert (journal.readds_skipped, journal.truncations) == (5, 0)
    assert path.read_bytes() == file_bytes(TEN_ENTRIES)
    journal.close()


CRASHING_WRITER = """
import os, signal, sys
from cluster.journal import DurableJournal, FsyncPolicy

journal = DurableJournal(sys.argv[1], FsyncPolicy.ALWAYS)
for i in range(1, 11):
    journal.add(f"batch {i}".encode(), i, 1)
journal.deleteEntriesFrom(3)
journal.add(b"batch 4", 4, 1)
assert len(journal) == 4
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_follower_killed_while_a_truncation_is_pending_restarts_with_the_old_suffix(
    tmp_path: Path,
) -> None:
    # Documented behaviour: the records are entries this node received from a leader, so
    # after the restart they are an ordinary uncommitted suffix for Raft to keep or replace.
    path = tmp_path / "raft.journal"
    killed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=CRASHING_WRITER_TIMEOUT_S,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()

    restarted = open_journal(path)
    assert restarted[:] == TEN_ENTRIES
    restarted.deleteEntriesFrom(6)
    restarted.add(b"leader 2 batch 7", 7, 2)  # the new leader replaces the old suffix
    restarted.close()
    assert read_entries(path) == [*TEN_ENTRIES[:6], (b"leader 2 batch 7", 7, 2)]


def test_a_clean_close_makes_a_pending_truncation_reach_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raft.journal"
    journal = journal_with(path, TEN_ENTRIES)
    syncs = count_file_syncs(monkeypatch)
    journal.deleteEntriesFrom(7)
    journal._destroy()  # what SyncObj calls on shutdown
    assert len(syncs) == 1
    assert journal.truncations == 1
    assert path.read_bytes() == file_bytes(TEN_ENTRIES[:7])
    assert read_entries(path) == TEN_ENTRIES[:7]


def test_a_compaction_while_a_truncation_is_pending_keeps_only_the_visible_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raft.journal"
    journal = journal_with(path, TEN_ENTRIES)
    journal.deleteEntriesFrom(6)
    journal.deleteEntriesTo(2)
    assert path.read_bytes() == file_bytes(TEN_ENTRIES[2:6])
    syncs = count_file_syncs(monkeypatch)
    journal.add(*TEN_ENTRIES[6])  # no longer pending: written like any new entry
    assert len(syncs) == 1
    assert (journal.readds_skipped, journal.truncations) == (0, 0)
    journal.close()
    assert read_entries(path) == TEN_ENTRIES[2:7]


def test_a_failed_pending_truncation_adds_nothing_and_stops_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raft.journal"
    journal = journal_with(path, TEN_ENTRIES)
    journal.deleteEntriesFrom(6)

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module, "_sync_file_data", failing_sync)
    with pytest.raises(JournalWriteError, match="truncate failed"):
        journal.add(b"leader 2 batch 7", 7, 2)
    monkeypatch.undo()
    assert journal[:] == TEN_ENTRIES[:6]
    with pytest.raises(JournalWriteError, match="refuses changes"):
        journal.add(*TEN_ENTRIES[6])
    journal.close()


def test_entries_compacted_away_after_a_snapshot_stay_gone_after_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raft.journal"
    entries = [(f"batch {i}".encode(), i, 3) for i in range(1, 11)]
    journal = open_journal(path)
    for entry in entries:
        journal.add(*entry)
    journal.deleteEntriesTo(4)  # keeps positions 4.. (raft indexes 5..10)
    assert journal[0] == (b"batch 5", 5, 3)
    journal.add(b"batch 11", 11, 3)
    journal.close()

    assert read_entries(path) == [*entries[4:], (b"batch 11", 11, 3)]
    assert not (tmp_path / "raft.journal.tmp").exists()


def test_a_compaction_interrupted_before_its_rename_leaves_the_old_journal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raft.journal"
    write_entries(path, THREE_ENTRIES)
    (tmp_path / "raft.journal.tmp").write_bytes(b"half-written compaction")

    assert read_entries(path) == THREE_ENTRIES
    assert not (tmp_path / "raft.journal.tmp").exists()


def test_clear_then_snapshot_entries_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = open_journal(path)
    for entry in THREE_ENTRIES:
        journal.add(*entry)
    journal.clear()
    journal.add(b"snapshot prev", 41, 5)
    journal.add(b"snapshot last", 42, 5)
    journal.close()
    assert read_entries(path) == [(b"snapshot prev", 41, 5), (b"snapshot last", 42, 5)]


# -- start-up after a crash: torn tails are repaired, corruption refuses ---------------------


@pytest.mark.parametrize(
    ("bytes_cut", "what"),
    [(3, "payload cut short"), (len(b"order batch 3") + 10, "record header cut short")],
)
def test_a_write_torn_by_a_crash_is_truncated_and_the_earlier_entries_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bytes_cut: int, what: str
) -> None:
    path = tmp_path / "raft.journal"
    write_entries(path, THREE_ENTRIES)
    good_size = path.stat().st_size - len(record_bytes(*THREE_ENTRIES[2]))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - bytes_cut)

    with caplog.at_level(logging.WARNING, logger="cluster.journal"):
        journal = open_journal(path)
    assert journal[:] == THREE_ENTRIES[:2], what
    assert "journal.torn_tail_truncated" in caplog.text
    assert f"byte_offset={good_size} record=2" in caplog.text
    assert path.stat().st_size == good_size
    journal.add(b"order batch 3 again", 3, 1)
    journal.close()
    assert read_entries(path) == [*THREE_ENTRIES[:2], (b"order batch 3 again", 3, 1)]


def test_a_flipped_byte_in_the_middle_record_refuses_start_naming_the_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raft.journal"
    write_entries(path, THREE_ENTRIES)
    middle_offset = FILE_HEADER_BYTES + len(record_bytes(*THREE_ENTRIES[0]))
    data = bytearray(path.read_bytes())
    data[middle_offset + RECORD_HEADER_BYTES + 4] ^= 0x01  # inside "order batch 2"
    path.write_bytes(bytes(data))

    with pytest.raises(JournalCorruptError) as error:
        open_journal(path)
    message = str(error.value)
    assert str(path) in message
    assert f"byte offset {middle_offset}" in message
    assert "record 1" in message
    assert "payload CRC mismatch" in message
    assert (error.value.byte_offset, error.value.record) == (middle_offset, 1)


def test_a_flipped_length_bit_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    # Without a header CRC this length would run past the end of the file and look like
    # a torn write, and the restart would silently drop two acknowledged entries.
    path = tmp_path / "raft.journal"
    write_entries(path, THREE_ENTRIES)
    data = bytearray(path.read_bytes())
    data[FILE_HEADER_BYTES + 2] ^= 0x40  # length of record 0 grows by 4 MiB
    path.write_bytes(bytes(data))

    with pytest.raises(JournalCorruptError, match=r"record 0 .*record header CRC mismatch"):
        open_journal(path)
    assert len(path.read_bytes()) == len(data), "nothing may be truncated on corruption"


def test_indexes_that_are_not_consecutive_refuse_start(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    write_entries(path, [])
    with open(path, "ab") as f:
        f.write(record_bytes(b"a", 1, 1) + record_bytes(b"b", 3, 1))
    gap_offset = FILE_HEADER_BYTES + len(record_bytes(b"a", 1, 1))

    with pytest.raises(JournalCorruptError, match=f"byte offset {gap_offset}, record 1 "):
        open_journal(path)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"PYSYNCOBJ" + bytes(31), "bad magic"),
        (b"RFXJRNL\x00" + struct.pack("<II", 1, 0), "file header CRC mismatch"),
        (
            b"RFXJRNL\x00"
            + struct.pack("<I", 3)
            + struct.pack("<I", zlib.crc32(b"RFXJRNL\x00" + struct.pack("<I", 3))),
            "format version 3",
        ),
        (b"RFXJ", "file is 4 bytes, shorter than its 16-byte header"),
    ],
)
def test_a_file_without_a_valid_journal_header_refuses_start(
    tmp_path: Path, header: bytes, reason: str
) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(header)
    with pytest.raises(JournalCorruptError, match=f"byte offset 0: {reason}"):
        open_journal(path)


# -- term, vote and commit index ------------------------------------------------------------


def test_term_vote_and_commit_index_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = open_journal(path, FsyncPolicy.NONE)
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId()) == (0, None)
    for entry in THREE_ENTRIES:
        journal.add(*entry)
    journal.setCurrentTerm(7, "127.0.0.1:4321")
    journal.setRaftCommitIndex(3)
    journal.onOneSecondTimer()
    journal.close()

    reopened = open_journal(path, FsyncPolicy.NONE)
    assert reopened.getCurrentTerm() == 7
    assert reopened.getVotedForNodeId() == "127.0.0.1:4321"
    assert reopened.getRaftCommitIndex() == 3
    reopened.setCurrentTerm(8, None)
    reopened.close()

    again = open_journal(path)
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (8, None)
    again.close()


def test_a_commit_index_past_the_last_entry_is_clamped(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = open_journal(path)
    for entry in THREE_ENTRIES:
        journal.add(*entry)
    journal.setRaftCommitIndex(3)
    journal.deleteEntriesFrom(1)
    assert journal.getRaftCommitIndex() == 1
    journal.close()


def test_a_corrupt_meta_file_refuses_start(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = open_journal(path)
    journal.setCurrentTerm(3, "127.0.0.1:4321")
    journal.close()
    meta_path = tmp_path / "raft.journal.meta"
    data = bytearray(meta_path.read_bytes())
    data[12] ^= 0x01  # the term
    meta_path.write_bytes(bytes(data))

    with pytest.raises(JournalCorruptError, match=r"raft\.journal\.meta .*meta CRC mismatch"):
        open_journal(path)


# -- fsync policy, write failures, misuse ---------------------------------------------------


def count_file_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    syncs: list[int] = []
    real_sync = journal_module._sync_file_data

    def counting_sync(fd: int) -> None:
        syncs.append(fd)
        real_sync(fd)

    monkeypatch.setattr(journal_module, "_sync_file_data", counting_sync)
    return syncs


def test_always_syncs_each_entry_before_add_returns_and_none_never_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = count_file_syncs(monkeypatch)
    always = open_journal(tmp_path / "always.journal", FsyncPolicy.ALWAYS)
    never = open_journal(tmp_path / "none.journal", FsyncPolicy.NONE)
    for entry in THREE_ENTRIES:
        always.add(*entry)
        never.add(*entry)
    never.deleteEntriesFrom(1)
    assert len(syncs) == 3
    always.close()
    never.close()


def test_a_term_change_reaches_disk_even_with_fsync_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    journal = open_journal(tmp_path / "raft.journal", FsyncPolicy.NONE)
    fsyncs.clear()
    journal.setCurrentTerm(2, "127.0.0.1:4321")
    assert len(fsyncs) == 2  # the temp meta file, then the directory after the rename
    journal.setCurrentTerm(2, "127.0.0.1:4321")
    assert len(fsyncs) == 2, "an unchanged term and vote is already durable"
    journal.close()


def test_a_failed_fsync_stops_the_journal_accepting_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raft.journal"
    journal = open_journal(path)
    journal.add(*THREE_ENTRIES[0])

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module, "_sync_file_data", failing_sync)
    with pytest.raises(JournalWriteError, match="append failed"):
        journal.add(*THREE_ENTRIES[1])
    monkeypatch.undo()
    assert journal[:] == THREE_ENTRIES[:1]
    with pytest.raises(JournalWriteError, match="refuses changes"):
        journal.add(*THREE_ENTRIES[1])
    with pytest.raises(JournalWriteError):
        journal.setCurrentTerm(9, None)
    journal.close()


def test_an_entry_that_would_leave_a_gap_is_refused(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "raft.journal")
    journal.add(b"a", 1, 1)
    with pytest.raises(JournalUsageError, match="index 3 does not follow the last index 1"):
        journal.add(b"c", 3, 1)
    assert journal[:] == [(b"a", 1, 1)]
    journal.close()


def test_a_second_writer_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    first = open_journal(path)
    with pytest.raises(JournalInUseError):
        open_journal(path)
    first.close()
    open_journal(path).close()


# -- SyncObj with the journal installed -----------------------------------------------------


@pytest.fixture
def durable_journal_installed() -> Iterator[None]:
    install_durable_journal(FsyncPolicy.ALWAYS)
    yield
    uninstall_durable_journal()


def test_install_replaces_the_journal_pysyncobj_creates(
    tmp_path: Path, durable_journal_installed: object
) -> None:
    assert installed_fsync_policy() is FsyncPolicy.ALWAYS
    assert isinstance(pysyncobj.syncobj.createJournal(None), MemoryJournal)
    journal = pysyncobj.syncobj.createJournal(str(tmp_path / "raft.journal"))
    assert isinstance(journal, DurableJournal)
    assert journal.fsync_policy is FsyncPolicy.ALWAYS
    journal._destroy()
    uninstall_durable_journal()
    assert installed_fsync_policy() is None


class ReplicatedCounter(SyncObj):
    value = 0  # a class default, so a replay that starts before __init__ returns finds it

    def __init__(self, self_address: str, journal_file: Path) -> None:
        conf = SyncObjConf(
            journalFile=str(journal_file),
            raftMinTimeout=0.05,
            raftMaxTimeout=0.1,
            autoTickPeriod=0.01,
            appendEntriesPeriod=0.01,
        )
        super().__init__(self_address, [], conf)

    @replicated
    def add(self, amount: int) -> int:
        self.value += amount
        return self.value


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(node: SyncObj) -> None:
    node.destroy_synchronous()  # destroy(), then join the Raft thread
    assert not node.tick_thread_alive()


def test_a_restarted_node_replays_its_journal_to_the_same_state(
    tmp_path: Path, durable_journal_installed: object
) -> None:
    address = f"127.0.0.1:{free_local_port()}"
    journal_file = tmp_path / "node1.journal"
    commands = 25

    node = ReplicatedCounter(address, journal_file)
    try:
        assert isinstance(node._SyncObj__raftLog, DurableJournal)
        for _ in range(commands):
            node.add(1, sync=True, timeout=COMMAND_TIMEOUT_S)
        assert node.value == commands
    finally:
        stop(node)

    restarted = ReplicatedCounter(address, journal_file)
    try:
        deadline = time.monotonic() + REPLAY_TIMEOUT_S
        while restarted.value < commands and time.monotonic() < deadline:
            time.sleep(0.01)
        assert restarted.value == commands
        assert restarted.add(1, sync=True, timeout=COMMAND_TIMEOUT_S) == commands + 1
        assert restarted.value == commands + 1
    finally:
        stop(restarted)

    host, port = address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, int(port)))  # the Raft port was released
