"""The journal encrypted at rest: records sealed under the cluster's data key."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from cluster.journal import (
    RECORD_HEADER,
    SEALED_HEADER_BYTES,
    DurableJournal,
    FsyncPolicy,
    JournalCorruptError,
    JournalKeyError,
)
from cluster.sealed import DATA_KEY_BYTES, DataKey

ENTRIES = [(b"buy 10 AAPL at 190.00 for alice", 1, 1), (b"sell 5 MSFT", 2, 1), (b"x" * 500, 3, 2)]


def new_key() -> DataKey:
    return DataKey(os.urandom(DATA_KEY_BYTES))


def write(path: Path, key: DataKey | None, entries: list[tuple[bytes, int, int]]) -> None:
    journal = DurableJournal(path, FsyncPolicy.ALWAYS, key)
    for entry in entries:
        journal.add(*entry)
    journal.close()


def read(path: Path, key: DataKey | None) -> list[tuple[bytes, int, int]]:
    journal = DurableJournal(path, FsyncPolicy.ALWAYS, key)
    try:
        return journal[:]
    finally:
        journal.close()


def test_sealed_entries_come_back_and_no_order_is_on_disk_in_clear(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "raft.journal"
    write(path, key, ENTRIES)
    assert read(path, key) == ENTRIES
    on_disk = path.read_bytes()
    assert b"AAPL" not in on_disk and b"MSFT" not in on_disk and b"x" * 32 not in on_disk


def test_a_journal_under_another_key_or_none_refuses_to_open(tmp_path: Path) -> None:
    key = new_key()
    sealed, clear = tmp_path / "sealed.journal", tmp_path / "clear.journal"
    write(sealed, key, ENTRIES)
    write(clear, None, ENTRIES)
    with pytest.raises(JournalKeyError, match=r"sealed under data key .* this node holds"):
        read(sealed, new_key())
    with pytest.raises(JournalKeyError, match=r"is encrypted at rest .*key-encryption key"):
        read(sealed, None)
    with pytest.raises(JournalKeyError, match="is in clear, but this node keeps"):
        read(clear, key)
    assert read(sealed, key) == ENTRIES and read(clear, None) == ENTRIES


def test_a_changed_sealed_record_with_fresh_crcs_is_refused(tmp_path: Path) -> None:
    """A CRC stops a flipped bit; only the key stops a change made on purpose."""
    key = new_key()
    path = tmp_path / "raft.journal"
    write(path, key, ENTRIES)
    data = bytearray(path.read_bytes())
    offset = SEALED_HEADER_BYTES
    length, idx, term, _, _ = RECORD_HEADER.unpack_from(data, offset)
    start = offset + RECORD_HEADER.size
    data[start + length - 1] ^= 0x01
    fields = struct.pack("<IQQI", length, idx, term, zlib.crc32(data[start : start + length]))
    data[offset:start] = fields + struct.pack("<I", zlib.crc32(fields))
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match="does not open under the data key"):
        read(path, key)


def test_a_sealed_record_moved_to_another_index_does_not_open(tmp_path: Path) -> None:
    """The raft index and term are the record's AAD: a record replayed in another place fails."""
    key = new_key()
    path = tmp_path / "raft.journal"
    write(path, key, [(b"same size", 1, 1), (b"same size", 2, 1)])
    data = bytearray(path.read_bytes())
    first = SEALED_HEADER_BYTES
    length = RECORD_HEADER.unpack_from(data, first)[0]
    second = first + RECORD_HEADER.size + length
    payload = bytes(data[first + RECORD_HEADER.size : second])
    fields = struct.pack("<IQQI", length, 2, 1, zlib.crc32(payload))
    data[second:] = fields + struct.pack("<I", zlib.crc32(fields)) + payload
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match=r"record 1 .*does not open under the data key"):
        read(path, key)


def test_a_sealed_entry_taken_back_after_a_duplicate_message_is_not_rewritten(
    tmp_path: Path,
) -> None:
    key = new_key()
    path = tmp_path / "raft.journal"
    journal = DurableJournal(path, FsyncPolicy.ALWAYS, key)
    for entry in ENTRIES:
        journal.add(*entry)
    size = path.stat().st_size
    journal.deleteEntriesFrom(1)
    journal.add(*ENTRIES[1])
    journal.add(*ENTRIES[2])
    assert journal.readds_skipped == 2 and path.stat().st_size == size
    journal.add(b"next", 4, 2)
    journal.deleteEntriesTo(2)
    journal.close()
    assert read(path, key) == [ENTRIES[2], (b"next", 4, 2)]
