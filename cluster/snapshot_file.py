"""The full-dump file behind Raft log compaction: engine snapshot plus a RocksDB checkpoint.

pysyncobj calls our serializer on its own thread when it compacts the log and
ships the resulting file to followers that are too far behind. The file is an
uncompressed tar: `snapshot.msgpack` (format version, applied index, the two
log entries pysyncobj needs, the membership, the engine snapshot) and the
store checkpoint under `store/`. Uncompressed, because the checkpoint's SST
files are already compressed and the serializer blocks the Raft thread.
"""

from __future__ import annotations

import gc
import io
import os
import shutil
import tarfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack

from engine import Exchange

SNAPSHOT_FILE_VERSION = 1
META_NAME = "snapshot.msgpack"
STORE_DIR_NAME = "store"


class SnapshotFileError(Exception):
    """A dump file this node cannot trust: refuse it rather than run on it."""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    applied_index: int
    last_entry: tuple[bytes, int, int]
    prev_entry: tuple[bytes, int, int]
    cluster: list[str]
    members: list[list[str]]
    engine: bytes


def write_snapshot_file(path: Path, meta: SnapshotMeta, checkpoint_dir: Path) -> None:
    """Writes and fsyncs the tar; the caller (pysyncobj) renames it into place."""
    packed = msgpack.packb(
        [
            SNAPSHOT_FILE_VERSION,
            meta.applied_index,
            list(meta.last_entry),
            list(meta.prev_entry),
            meta.cluster,
            meta.members,
            meta.engine,
        ],
        use_bin_type=True,
    )
    with open(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(META_NAME)
        info.size = len(packed)
        tar.addfile(info, io.BytesIO(packed))
        tar.add(checkpoint_dir, arcname=STORE_DIR_NAME)
        tar.close()
        raw.flush()
        os.fsync(raw.fileno())


class DumpChild:
    """A forked process writing one dump file while the parent keeps running Raft."""

    def __init__(self, pid: int, index: int, checkpoint: Path) -> None:
        self.pid = pid
        self.index = index
        self.checkpoint = checkpoint
        self.started = time.monotonic()
        self.seconds = 0.0

    @classmethod
    def start(
        cls, engine: Exchange, meta: SnapshotMeta, checkpoint: Path, final_path: Path
    ) -> DumpChild:
        """Forks; the child snapshots `engine` as it is at this instant (copy-on-write),
        writes `final_path.bg` and renames it over `final_path`."""
        pid = os.fork()
        if pid == 0:
            _write_in_child(engine, meta, checkpoint, final_path)
        return cls(pid, meta.applied_index, checkpoint)

    def poll(self) -> bool | None:
        """None while running; then whether the dump is in place."""
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        return self._finish(status)

    def wait(self) -> bool:
        _, status = os.waitpid(self.pid, 0)
        return self._finish(status)

    def _finish(self, status: int) -> bool:
        self.seconds = time.monotonic() - self.started
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        return os.waitstatus_to_exitcode(status) == 0


def _write_in_child(engine: Exchange, meta: SnapshotMeta, checkpoint: Path, final: Path) -> None:
    """Runs in the forked child only: no logging, no store, no collector (finalizers of
    objects shared with the parent must not run here), and always os._exit."""
    gc.disable()
    code = 1
    try:
        partial = final.with_name(final.name + ".bg")
        full = replace(meta, engine=engine.snapshot())
        write_snapshot_file(partial, full, checkpoint)
        os.replace(partial, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        code = 0
    finally:
        os._exit(code)


def read_snapshot_meta(path: Path) -> SnapshotMeta:
    try:
        with tarfile.open(path, mode="r") as tar:
            member = tar.extractfile(META_NAME)
            if member is None:
                raise SnapshotFileError(f"{path}: no {META_NAME}")
            fields: list[Any] = msgpack.unpackb(member.read(), raw=False)
    except (OSError, tarfile.TarError, KeyError, ValueError, msgpack.UnpackException) as exc:
        raise SnapshotFileError(f"{path}: unreadable snapshot file: {exc}") from None
    version, applied_index, last_entry, prev_entry, cluster, members, engine = fields
    if version != SNAPSHOT_FILE_VERSION:
        raise SnapshotFileError(f"{path}: snapshot file version {version} not understood")
    return SnapshotMeta(
        applied_index, tuple(last_entry), tuple(prev_entry), cluster, members, engine
    )


def extract_store(path: Path, dest: Path) -> None:
    """Unpacks the store checkpoint into `dest` (which must not exist yet)."""
    staging = dest.with_name(dest.name + ".extract")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(path, mode="r") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(STORE_DIR_NAME + "/")]
            tar.extractall(staging, members=members, filter="data")
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SnapshotFileError(f"{path}: cannot extract the store: {exc}") from None
    os.replace(staging / STORE_DIR_NAME, dest)
    shutil.rmtree(staging, ignore_errors=True)
