"""Inputs the fuzzers (or reading the decoders while writing them) found answered badly, each
pinned with its bytes: every one now gets the decoder's own error.

Before the fix each of these raised something else out of the decoder: a ValueError from
msgpack or from unpacking, a KeyError, a ZeroDivisionError, a TypeError, a
UnicodeDecodeError, a RecursionError, a FileNotFoundError, or (JSON) an answer that was not
JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from api.fix_orders import FixInbound, FixRefusal, decode
from api.json_input import JsonBeyondLimits, parse_json
from cluster.entry import EntryDecodeError, decode_entry
from cluster.event_log import CF_ENTRIES, AppliedCommand, EventLog
from cluster.journal import DurableJournal, FsyncPolicy, JournalCorruptError
from cluster.rocks import U64
from cluster.snapshot_file import (
    META_DIGEST_NAME,
    META_NAME,
    SnapshotFileError,
    extract_event_log,
    read_snapshot_meta,
)
from cluster.store_errors import StoreCorruptionError
from engine import Exchange, SnapshotError
from engine.commands import CommandDecodeError, CreateAccount, command_from_bytes, command_to_bytes


@pytest.mark.parametrize(
    "payload",
    [
        # An item of three fields: ValueError (too many values to unpack).
        b"\x94\x02\xcf\x00\x00\x01\x8b\xcf\xe5h\x00\xc2\x91\x93\xa4n1/1\xc4\x02\x91\x0c\xa1x",
        # An item that is a number: TypeError (cannot unpack a non-iterable int).
        b"\x94\x02\xcf\x00\x00\x01\x8b\xcf\xe5h\x00\xc2\x91\x07",
    ],
    ids=["three-fields", "a-number"],
)
def test_a_log_entry_whose_item_is_not_submitter_and_command_is_refused(payload: bytes) -> None:
    with pytest.raises(EntryDecodeError, match=r"not a \[submitter, command\] pair"):
        decode_entry(payload)


def test_a_thousand_signed_commands_nested_in_one_are_refused_not_recursed_into() -> None:
    # [17, "", 0, 0, [17, "", 0, 0, ... [12]]]: 5 bytes a level, RecursionError at a thousand.
    payload = b"\x95\x11\xa0\x00\x00" * 1_000 + b"\x91\x0c"
    with pytest.raises(CommandDecodeError, match=r"Signed\.command: a signed command inside"):
        command_from_bytes(payload)


def test_a_journal_meta_whose_vote_is_not_utf8_stops_the_node_by_name(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    DurableJournal(path, FsyncPolicy.NONE).close()
    # Term 3, commit index 1, votedFor b"\xf8" (one byte), with a good CRC.
    Path(f"{path}.meta").write_bytes(
        b"RFXMETA\x00\x01\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00"
        b"\x00\x00\x01\x00\x00\x00\xf8V\r\xbe+"
    )
    with pytest.raises(JournalCorruptError, match="votedFor is not a UTF-8 node id"):
        DurableJournal(path, FsyncPolicy.NONE)


@pytest.mark.parametrize(
    "snapshot",
    [
        # Accounts without the fee account: KeyError('fees') building the ledger.
        b"\xdc\x00\x13\x05\xcd\x03\x00\x91\x94\x01\x01\x90\xa4fees\xc3\x90\x97\xa0\xa4fees\xa0"
        b"\x01\x00\x00\x00\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90",
        # An instrument of tick size 0: ZeroDivisionError computing its price band.
        b"\xdc\x00\x13\x05\xcd\x03\xe8\x01\x01\x01\x01\x91\xdc\x00\x13\xa4ACME\xa4ACME\xa3USD\x00"
        b"\x01\x01\xce\x00\x0fB@\xcf\x00\x00\x00\xe8\xd4\xa5\x10\x00\xcd\x03\xe8\x00\x00d\xcd\xea"
        b"`\x00\x00\x00\x90\x90\x00\x91\x94\xa4fees\xc3\x90\x97\xa0\xa4fees\xa0\x01\x00\x00\x00"
        b"\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90",
    ],
    ids=["no-fee-account", "tick-size-zero"],
)
def test_a_snapshot_of_a_state_no_engine_wrote_is_refused(snapshot: bytes) -> None:
    with pytest.raises(SnapshotError):
        Exchange.restore(snapshot)


def write_dump(path: Path, packed_meta: bytes, files: dict[str, bytes] | None = None) -> None:
    """A dump file holding `packed_meta` as its snapshot.msgpack, with the right digest."""
    with tarfile.open(path, "w") as tar:
        for name, content in (
            *(files or {}).items(),
            (META_NAME, packed_meta),
            (META_DIGEST_NAME, hashlib.sha256(packed_meta).hexdigest().encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def test_a_dump_whose_metadata_is_not_a_list_is_refused(tmp_path: Path) -> None:
    # The number 7: TypeError ('int' object is not subscriptable) reading its version.
    write_dump(tmp_path / "raft.dump", b"\x07")
    with pytest.raises(SnapshotFileError, match="is not a list of fields"):
        read_snapshot_meta(tmp_path / "raft.dump")


def test_a_dump_whose_engine_snapshot_is_not_bytes_is_refused(tmp_path: Path) -> None:
    # [3, 7, [-17, "d35c780", 17203], ...]: TypeError hashing the engine snapshot (an int).
    write_dump(tmp_path / "raft.dump", b"\x99\x03\x07\x93\xefd35c780\xcd43")
    with pytest.raises(SnapshotFileError, match="wrong types"):
        read_snapshot_meta(tmp_path / "raft.dump")


def test_a_dump_without_event_log_files_is_refused_when_extracted(tmp_path: Path) -> None:
    engine = Exchange().snapshot()
    # [3, 7, [b"e", 7, 1], [b"d", 6, 1], [], [], engine, its digest, {}]
    packed = (
        b"\x99\x03\x07\x93\xc4\x01e\x07\x01\x93\xc4\x01d\x06\x01\x90\x90\xc5"
        + len(engine).to_bytes(2, "big")
        + engine
        + b"\xd9@"
        + hashlib.sha256(engine).hexdigest().encode()
        + b"\x80"
    )
    write_dump(tmp_path / "raft.dump", packed)
    meta = read_snapshot_meta(tmp_path / "raft.dump")
    assert meta.event_log_digests == {}
    # FileNotFoundError renaming an event log directory the tar never had.
    with pytest.raises(SnapshotFileError, match="no event log"):
        extract_event_log(tmp_path / "raft.dump", tmp_path / "events", {})
    assert not (tmp_path / "events").exists()


def test_an_event_log_entry_that_does_not_decode_is_reported_as_corruption(
    tmp_path: Path,
) -> None:
    log = EventLog.open(tmp_path / "events")
    try:
        command = command_to_bytes(CreateAccount("alice"))
        events = Exchange().apply(CreateAccount("alice"), 1)
        log.write_entry(1, 1, [AppliedCommand("n1/1", command, events)])
        # An empty value: ValueError from msgpack (Unpack failed: incomplete input).
        log._db.cf(CF_ENTRIES)[U64.pack(1)] = b""
        for read in (
            lambda: log.entries_after(0, 10),
            lambda: log.events_since(0, 10),
            lambda: log.audit_records(0, 10),
            lambda: log.audit_head_at(1),
        ):
            with pytest.raises(StoreCorruptionError, match="entry 1 does not decode"):
                read()
        report = log.verify_audit()
        assert not report.ok and report.first_bad == 1
    finally:
        log.close()


def test_a_json_number_beyond_a_float_is_refused_not_echoed_as_infinity() -> None:
    # float("1e400") is inf: an op's id echoed back was written as Infinity (not JSON).
    message = b'{"op":"subscribe","channel":"book","symbol":"ACME","id":1e400}'
    with pytest.raises(JsonBeyondLimits, match="beyond a 64-bit float"):
        parse_json(message)
    assert json.loads(json.dumps(parse_json(b'{"id": 1e308}'), allow_nan=False)) == {"id": 1e308}


def test_a_fix_order_id_of_thousands_of_digits_is_refused_at_the_edge() -> None:
    # OrderCancelRequest with OrderID(37) of 5,000 digits: ValueError from int() (past 4,300).
    inbound = FixInbound("F", 2, {11: "c-2", 41: "c-1", 37: "1" * 5_000, 55: "ACME"})
    with pytest.raises(FixRefusal, match="is not an order id of this exchange"):
        decode(None, "alice", inbound)  # type: ignore[arg-type]
