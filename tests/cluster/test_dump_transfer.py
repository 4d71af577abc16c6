"""A snapshot received from the leader, then a power cut: on the power nemesis's disk
(chaos/lazyfs.py, mounted for real), pysyncobj's own receive loses the dump and ours keeps
the new one."""

from __future__ import annotations

import os
from pathlib import Path

import pysyncobj.syncobj
import pysyncobj.version
import pytest
from pysyncobj.serializer import Serializer

from chaos.disks import LazyDisks
from cluster.dump_transfer import (
    DurableSerializer,
    install_durable_dump_transfer,
    uninstall_durable_dump_transfer,
)
from cluster.snapshot_file import read_snapshot_meta, verify_snapshot_file
from tests.cluster.test_snapshot_file import make_dump

OLD_DUMP = b"old snapshot " * 1_000
NEW_DUMP = bytes(range(256)) * 400


def _receive(serializer: Serializer, chunk_size: int = 10_000) -> bool:
    """Feed NEW_DUMP as pysyncobj's append_entries messages carry it; the last answer."""
    chunks = [NEW_DUMP[i : i + chunk_size] for i in range(0, len(NEW_DUMP), chunk_size)]
    answers = [
        serializer.setTransmissionData((chunk, i == 0, i == len(chunks) - 1))
        for i, chunk in enumerate(chunks)
    ]
    assert not any(answers[:-1])
    return bool(answers[-1])


def _old_dump_on_disk(root: Path) -> Path:
    dump = root / "raft.dump"
    with open(dump, "wb") as f:
        f.write(OLD_DUMP)
        f.flush()
        os.fsync(f.fileno())
    return dump


def test_a_received_snapshot_survives_a_power_cut_right_after_it_is_installed(
    lazy_disk: tuple[LazyDisks, Path],
) -> None:
    disks, root = lazy_disk
    dump = _old_dump_on_disk(root)
    serializer = DurableSerializer(str(dump), 10_000, False, None, None, None)

    assert _receive(serializer)
    disks.cut("n1")

    assert dump.read_bytes() == NEW_DUMP
    assert sorted(p.name for p in root.iterdir()) == ["raft.dump"]


def test_pysyncobjs_own_receive_loses_both_dumps_to_the_same_cut(
    lazy_disk: tuple[LazyDisks, Path],
) -> None:
    """What the hook is for: without it the cut leaves an empty dump."""
    disks, root = lazy_disk
    dump = _old_dump_on_disk(root)
    serializer = Serializer(str(dump), 10_000, False, None, None, None)

    assert serializer.setTransmissionData((NEW_DUMP, True, True))
    disks.cut("n1")

    assert dump.read_bytes() == b""


def test_a_transfer_cut_short_leaves_the_installed_dump_untouched(
    lazy_disk: tuple[LazyDisks, Path],
) -> None:
    disks, root = lazy_disk
    dump = _old_dump_on_disk(root)
    serializer = DurableSerializer(str(dump), 10_000, False, None, None, None)

    assert not serializer.setTransmissionData((NEW_DUMP[:5_000], True, False))
    # A chunk that does not follow a first one (the leader restarted the transfer) is refused.
    fresh = DurableSerializer(str(dump), 10_000, False, None, None, None)
    assert not fresh.setTransmissionData((NEW_DUMP[5_000:], False, True))
    disks.cut("n1")

    assert dump.read_bytes() == OLD_DUMP
    # The leader sends it again from the start, and this time it lands whole.
    assert _receive(serializer)
    assert dump.read_bytes() == NEW_DUMP


def test_every_syncobj_built_after_the_install_receives_durably(tmp_path: Path) -> None:
    install_durable_dump_transfer()
    try:
        conf = pysyncobj.SyncObjConf(fullDumpFile=str(tmp_path / "raft.dump"), autoTick=False)
        node = pysyncobj.SyncObj("127.0.0.1:0", [], conf)
        try:
            assert isinstance(node._SyncObj__serializer, DurableSerializer)
        finally:
            node.destroy()
    finally:
        uninstall_durable_dump_transfer()
    assert pysyncobj.syncobj.Serializer is Serializer


def test_the_hook_refuses_a_pysyncobj_it_was_not_checked_against(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pysyncobj.version, "VERSION", "0.4.0")
    with pytest.raises(RuntimeError, match="verified against pysyncobj"):
        install_durable_dump_transfer()
    assert pysyncobj.syncobj.Serializer is Serializer


def test_a_transfer_with_a_lost_chunk_is_thrown_away_and_the_resend_lands(
    tmp_path: Path,
) -> None:
    """pysyncobj's leader goes on after a dropped connection from the chunk after the
    last one it sent: the follower must not install the file with the hole."""
    sent = make_dump(tmp_path / "leader").read_bytes()
    dump = _old_dump_on_disk(tmp_path)
    serializer = DurableSerializer(
        str(dump), 10_000, False, None, None, None, check=verify_snapshot_file
    )
    chunks = [sent[i : i + 4_096] for i in range(0, len(sent), 4_096)]
    assert len(chunks) > 3
    with_a_hole = [c for i, c in enumerate(chunks) if i != 2]

    answers = [
        serializer.setTransmissionData((c, i == 0, i == len(with_a_hole) - 1))
        for i, c in enumerate(with_a_hole)
    ]
    assert not any(answers)
    assert dump.read_bytes() == OLD_DUMP
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["raft.dump"]

    answers = [
        serializer.setTransmissionData((c, i == 0, i == len(chunks) - 1))
        for i, c in enumerate(chunks)
    ]
    assert answers[-1] and not any(answers[:-1])
    assert dump.read_bytes() == sent
    assert read_snapshot_meta(dump).applied_index == 7
