"""The power nemesis's disk (chaos/lazyfs.py), mounted for real: what a power cut keeps and
loses, and the full and failing disk modes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from chaos.disks import LazyDisks, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


def _write(path: Path, data: bytes, sync: bool, mode: str = "wb") -> None:
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def test_a_power_cut_loses_what_was_not_synced_and_keeps_what_was(
    lazy_disk: tuple[LazyDisks, Path],
) -> None:
    disks, root = lazy_disk
    _write(root / "synced", b"a" * 10_000, sync=True)
    _write(root / "synced", b"b" * 5_000, sync=False, mode="ab")
    _write(root / "unsynced", b"c" * 3_000, sync=False)
    assert (root / "synced").read_bytes() == b"a" * 10_000 + b"b" * 5_000
    assert (root / "unsynced").stat().st_size == 3_000

    lost = disks.cut("n1")

    assert lost >= 5_000 + 3_000
    assert (root / "synced").read_bytes() == b"a" * 10_000
    # The name was made at once, its data never reached the disk.
    assert (root / "unsynced").read_bytes() == b""


def test_a_file_renamed_before_its_data_was_synced_comes_back_empty(
    lazy_disk: tuple[LazyDisks, Path],
) -> None:
    disks, root = lazy_disk
    _write(root / "state", b"old", sync=True)
    _write(root / "state.tmp", b"new", sync=False)
    os.rename(root / "state.tmp", root / "state")
    assert (root / "state").read_bytes() == b"new"

    disks.cut("n1")

    assert (root / "state").read_bytes() == b""


def test_truncation_and_overwrites_read_back_before_and_after_sync(
    lazy_disk: tuple[LazyDisks, Path],
) -> None:
    disks, root = lazy_disk
    path = root / "log"
    _write(path, bytes(range(256)) * 64, sync=True)
    with open(path, "r+b") as f:
        f.truncate(100)
        f.seek(8_000)
        f.write(b"tail")
        f.seek(10)
        f.write(b"XY")
    expected = bytes(range(10)) + b"XY" + bytes(range(12, 100)) + bytes(7_900) + b"tail"
    assert path.read_bytes() == expected
    with open(path, "r+b") as f:
        os.fsync(f.fileno())
    disks.cut("n1")
    assert path.read_bytes() == expected


def test_a_directory_empties_while_another_process_still_reads_an_unlinked_file(
    lazy_disk: tuple[LazyDisks, Path],
) -> None:
    _, root = lazy_disk
    (root / "db").mkdir()
    _write(root / "db" / "000001.sst", b"table", sync=True)
    with open(root / "db" / "000001.sst", "rb") as reader:
        os.unlink(root / "db" / "000001.sst")
        os.rmdir(root / "db")
        assert reader.read() == b"table"
    assert not (root / "db").exists()


def test_a_full_disk_refuses_writes_and_a_failing_one_reads_too(
    lazy_disk: tuple[LazyDisks, Path],
) -> None:
    disks, root = lazy_disk
    _write(root / "kept", b"kept", sync=True)
    disks.set_mode("n1", "full")
    with pytest.raises(OSError) as full:
        _write(root / "kept", b"more", sync=True, mode="ab")
    assert full.value.errno == errno.ENOSPC
    assert (root / "kept").read_bytes() == b"kept"

    disks.set_mode("n1", "eio")
    with pytest.raises(OSError) as failing:
        (root / "kept").read_bytes()
    assert failing.value.errno == errno.EIO

    disks.set_mode("n1", "ok")
    _write(root / "kept", b"more", sync=True, mode="ab")
    assert (root / "kept").read_bytes() == b"keptmore"


def test_unmount_puts_the_files_back_in_the_directory(tmp_path: Path) -> None:
    disks = LazyDisks(tmp_path / "backing")
    mountpoint = tmp_path / "n1"
    disks.mount("n1", mountpoint)
    _write(mountpoint / "f", b"data", sync=False)
    disks.unmount_all()
    assert not os.path.ismount(mountpoint)
    assert (mountpoint / "f").read_bytes() == b"data"
