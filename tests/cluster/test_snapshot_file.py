"""A dump file with a flipped bit anywhere is refused before anything is installed."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from cluster.event_log import EventLog
from cluster.snapshot_file import (
    META_NAME,
    SnapshotFileError,
    SnapshotMeta,
    extract_event_log,
    read_snapshot_meta,
    verify_event_log,
    write_snapshot_file,
)
from engine import Exchange
from engine.commands import CreateAccount


def make_dump(tmp_path: Path) -> Path:
    ex = Exchange()
    ex.apply(CreateAccount("alice"), 1)
    event_log = EventLog.open(tmp_path / "events")
    try:
        event_log.checkpoint(tmp_path / "checkpoint")
    finally:
        event_log.close()
    meta = SnapshotMeta(7, (b"e", 7, 1), (b"d", 6, 1), ["127.0.0.1:1"], [], ex.snapshot())
    dump = tmp_path / "raft.dump"
    write_snapshot_file(dump, meta, tmp_path / "checkpoint")
    return dump


def flip_inside(dump: Path, member_name: str) -> None:
    with tarfile.open(dump) as tar:
        member = next(
            m
            for m in tar.getmembers()
            if m.name == member_name
            or (
                member_name == "events"
                and m.isfile()
                and m.name.startswith("events/")
                and m.size > 0
            )
        )
        offset = member.offset_data + member.size // 2
    data = bytearray(dump.read_bytes())
    data[offset] ^= 0x01
    dump.write_bytes(bytes(data))


def test_a_good_dump_round_trips(tmp_path: Path) -> None:
    dump = make_dump(tmp_path)
    meta = read_snapshot_meta(dump)
    assert meta.applied_index == 7 and Exchange.restore(meta.engine).accounts.keys() >= {"alice"}
    extract_event_log(dump, tmp_path / "restored", meta.event_log_digests or {})
    restored = EventLog.open(tmp_path / "restored")
    try:
        assert restored.applied_index() == 0
    finally:
        restored.close()


@pytest.mark.parametrize("member", [META_NAME, "events"])
def test_a_flipped_bit_is_refused(tmp_path: Path, member: str) -> None:
    dump = make_dump(tmp_path)
    flip_inside(dump, member)
    with pytest.raises(SnapshotFileError):
        meta = read_snapshot_meta(dump)
        extract_event_log(dump, tmp_path / "restored", meta.event_log_digests or {})
    assert not (tmp_path / "restored").exists()


def test_a_flipped_bit_in_the_event_log_is_found_without_unpacking_it(tmp_path: Path) -> None:
    """A node that keeps its own event log checks that part of its dump anyway: it would
    send the dump whole to a peer that needs a snapshot."""
    dump = make_dump(tmp_path)
    digests = read_snapshot_meta(dump).event_log_digests or {}
    verify_event_log(dump, digests)
    flip_inside(dump, "events")
    assert read_snapshot_meta(dump).event_log_digests == digests
    with pytest.raises(SnapshotFileError, match="does not match its digest"):
        verify_event_log(dump, digests)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "events", "raft.dump"]
