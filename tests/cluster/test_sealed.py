"""The AES-GCM formats of encryption at rest: values, files, and RocksDB stores."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.event_log import CF_META, META_TIP, EventLog
from cluster.sealed import (
    DATA_KEY_BYTES,
    FILE_CHUNK_BYTES,
    FILE_HEADER,
    FILE_SEALED_CHUNK_BYTES,
    DataKey,
    Sealer,
    SealError,
    open_for_reading,
    open_for_writing,
)
from cluster.store_errors import StoreCorruptionError, StoreKeyError

KEY = DataKey(os.urandom(DATA_KEY_BYTES))


def test_a_value_opens_only_with_its_key_and_its_place() -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal(b"orders\x00key-1", b"alice buys 10 AAPL")
    assert b"alice" not in sealed
    assert Sealer(KEY).open(b"orders\x00key-1", sealed) == b"alice buys 10 AAPL"
    with pytest.raises(SealError, match="does not open"):
        sealer.open(b"orders\x00key-2", sealed)  # moved to another key
    with pytest.raises(SealError, match="does not open"):
        Sealer(DataKey(os.urandom(DATA_KEY_BYTES))).open(b"orders\x00key-1", sealed)


def test_no_nonce_repeats_within_a_writer_or_across_a_fork() -> None:
    """Each writer session has its own subkey (a fresh salt) and counts its nonces; a forked
    child draws a new salt, so parent and child never count under one subkey."""
    sealer = Sealer(KEY)
    prefixes = {sealer.seal(b"", b"x")[:17] for _ in range(1_000)}
    assert len(prefixes) == 1_000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, sealer.seal(b"", b"x")[:17])
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64)
    os.close(read)
    os.close(write)
    parent = sealer.seal(b"", b"x")[:17]
    assert child[1:9] != parent[1:9], "the child kept the parent's salt"


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 3 * FILE_CHUNK_BYTES + 7), seek=st.integers(0, 4 * FILE_CHUNK_BYTES))
def test_a_sealed_file_reads_back_from_any_position(
    tmp_path_factory: pytest.TempPathFactory, size: int, seek: int
) -> None:
    path = tmp_path_factory.mktemp("sealed") / "file"
    data = os.urandom(size)
    with open_for_writing(path, KEY) as out:
        out.write(data)
    with open_for_reading(path, KEY) as source:
        assert source.read() == data
        source.seek(seek)
        assert source.read() == data[seek:]


def _sealed_tar(path: Path) -> bytes:
    payload = os.urandom(3 * FILE_CHUNK_BYTES)
    with open_for_writing(path, KEY) as out, tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("payload")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return payload


def test_a_sealed_tar_opens_and_a_cut_or_changed_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / "dump"
    payload = _sealed_tar(path)
    with open_for_reading(path, KEY) as source, tarfile.open(fileobj=source) as tar:
        member = tar.extractfile("payload")
        assert member is not None and member.read() == payload
    raw = path.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(raw[: FILE_HEADER.size + 2 * FILE_SEALED_CHUNK_BYTES])  # at a chunk edge
    flipped = tmp_path / "flipped"
    flipped.write_bytes(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:])
    for damaged in (cut, flipped):
        with (
            pytest.raises(SealError, match="does not open"),
            open_for_reading(damaged, KEY) as source,
        ):
            source.read()
    with pytest.raises(SealError, match=r"sealed under data key .* this node holds"):
        open_for_reading(path, DataKey(os.urandom(DATA_KEY_BYTES)))
    with pytest.raises(SealError, match="encrypted at rest"):
        open_for_reading(path, None)
    clear = tmp_path / "clear"
    clear.write_bytes(b"plain")
    with pytest.raises(SealError, match="in clear"):
        open_for_reading(clear, KEY)
    with open_for_reading(clear, KEY, clear_ok=True) as source:
        assert source.read() == b"plain"


def test_a_store_refuses_another_key_no_key_or_clear_data(tmp_path: Path) -> None:
    sealed, clear = tmp_path / "sealed", tmp_path / "clear"
    EventLog.open(sealed, data_key=KEY).close()
    EventLog.open(clear).close()
    with pytest.raises(StoreKeyError, match="sealed under data key"):
        EventLog.open(sealed, data_key=DataKey(os.urandom(DATA_KEY_BYTES)))
    with pytest.raises(StoreKeyError, match="is encrypted at rest"):
        EventLog.open(sealed)
    with pytest.raises(StoreKeyError, match="is in clear"):
        EventLog.open(clear, data_key=KEY)
    EventLog.open(sealed, data_key=KEY).close()
    EventLog.open(clear).close()


def test_a_store_value_moved_to_another_key_does_not_open(tmp_path: Path) -> None:
    """The column family and key are each value's AAD: a copy made on disk under another
    key is found on read, not served."""
    path = tmp_path / "events"
    log = EventLog.open(path, data_key=KEY)
    raw = log._db._raw_cfs[0]  # CF_META without the sealer
    assert log._db.cfs[CF_META].get(META_TIP) is not None
    raw.put(b"another-key", raw.get(META_TIP))
    with pytest.raises(StoreCorruptionError, match="does not open"):
        log._db.cfs[CF_META].get(b"another-key")
    log.close()
