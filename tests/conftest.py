"""Fixtures more than one test directory uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.disks import LazyDisks, unavailable_reason


@pytest.fixture
def lazy_disk(tmp_path: Path) -> Iterator[tuple[LazyDisks, Path]]:
    """The power nemesis's disk, mounted for real at tmp_path/n1, that keeps unsynced
    writes in memory until the test cuts the power (skipped where FUSE is missing)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    disks = LazyDisks(tmp_path / "backing", writeback_s=3600)
    mountpoint = tmp_path / "n1"
    disks.mount("n1", mountpoint)
    try:
        yield disks, mountpoint
    finally:
        disks.unmount_all()
