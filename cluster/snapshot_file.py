"""The full-dump file behind Raft log compaction: engine snapshot plus a RocksDB checkpoint.

pysyncobj calls our serializer on its own thread when it compacts the log and
ships the resulting file to followers that are too far behind. The file is an
uncompressed tar: the event log's checkpoint under `events/`, then `snapshot.msgpack`
(format version, applied index, the two log entries pysyncobj needs, the
membership, the engine snapshot, and the SHA-256 of the engine snapshot and of
every event log file), then `snapshot.sha256`, the SHA-256 of `snapshot.msgpack`.
A flipped bit anywhere is found before anything is installed, so a damaged
dump stops the node instead of starting it on a state that is not the log's.
Uncompressed, because the checkpoint's SST files are already compressed.

Encrypted at rest (a data key given), the whole tar is sealed in chunks (cluster/sealed.py):
the digests inside still find a damaged file, and the AES-GCM tags find one changed on
purpose or sealed under another key. The event log files in it hold sealed values too.
"""

from __future__ import annotations

import gc
import hashlib
import io
import os
import shutil
import tarfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack

from cluster.child_process import die_with_parent, run_when_idle
from cluster.durable_file import fsync_directory, fsync_file
from cluster.sealed import DataKey, SealError, open_for_reading, open_for_writing
from engine import Exchange

SNAPSHOT_FILE_VERSION = 3
META_NAME = "snapshot.msgpack"
META_DIGEST_NAME = "snapshot.sha256"
EVENT_LOG_DIR_NAME = "events"


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
    # event log file name in the tar -> SHA-256 hex; filled in when the file is written
    event_log_digests: dict[str, str] | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def write_snapshot_file(
    path: Path, meta: SnapshotMeta, checkpoint_dir: Path, data_key: DataKey | None = None
) -> None:
    """Writes and fsyncs the tar (sealed under `data_key` if given); the caller (pysyncobj)
    renames it into place."""
    with open_for_writing(path, data_key) as out, tarfile.open(fileobj=out, mode="w") as tar:
        digests = {}
        for file in sorted(p for p in checkpoint_dir.rglob("*") if p.is_file()):
            name = f"{EVENT_LOG_DIR_NAME}/{file.relative_to(checkpoint_dir).as_posix()}"
            digests[name] = file_sha256(file)
            tar.add(file, arcname=name)
        packed = msgpack.packb(
            [
                SNAPSHOT_FILE_VERSION,
                meta.applied_index,
                list(meta.last_entry),
                list(meta.prev_entry),
                meta.cluster,
                meta.members,
                meta.engine,
                _sha256(meta.engine),
                digests,
            ],
            use_bin_type=True,
        )
        for name, data in ((META_NAME, packed), (META_DIGEST_NAME, _sha256(packed).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


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
        cls,
        engine: Exchange,
        meta: SnapshotMeta,
        checkpoint: Path,
        final_path: Path,
        data_key: DataKey | None = None,
    ) -> DumpChild:
        """Forks; the child snapshots `engine` as it is at this instant (copy-on-write),
        writes `final_path.bg` and renames it over `final_path`."""
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _write_in_child(engine, meta, checkpoint, final_path, parent_pid, data_key)
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


def _write_in_child(
    engine: Exchange,
    meta: SnapshotMeta,
    checkpoint: Path,
    final: Path,
    parent_pid: int,
    data_key: DataKey | None,
) -> None:
    """Runs in the forked child only: no logging, no event log, no collector (finalizers of
    objects shared with the parent must not run here), and always os._exit."""
    gc.disable()
    code = 1
    try:
        die_with_parent(parent_pid)
        run_when_idle()
        partial = final.with_name(final.name + ".bg")
        full = replace(meta, engine=engine.snapshot())
        write_snapshot_file(partial, full, checkpoint, data_key)
        os.replace(partial, final)
        fsync_directory(final.parent)
        code = 0
    finally:
        os._exit(code)


def read_snapshot_meta(
    path: Path, data_key: DataKey | None = None, clear_ok: bool = False
) -> SnapshotMeta:
    """The dump's metadata, after checking its digest and the engine snapshot's. A sealed
    dump opens under `data_key`; one in clear is refused where a key is given unless
    `clear_ok` (a restore that encrypts a backup taken in clear)."""
    try:
        with (
            open_for_reading(path, data_key, clear_ok) as source,
            tarfile.open(fileobj=source, mode="r") as tar,
        ):
            meta_file = tar.extractfile(META_NAME)
            digest_file = tar.extractfile(META_DIGEST_NAME)
            if meta_file is None or digest_file is None:
                raise SnapshotFileError(f"{path}: no {META_NAME} or {META_DIGEST_NAME}")
            packed = meta_file.read()
            if _sha256(packed) != digest_file.read().decode("ascii", "replace"):
                raise SnapshotFileError(f"{path}: {META_NAME} does not match its digest")
            fields: Any = msgpack.unpackb(packed, raw=False)
    except SealError as exc:
        raise SnapshotFileError(str(exc)) from None
    except (OSError, tarfile.TarError, KeyError, ValueError, msgpack.UnpackException) as exc:
        raise SnapshotFileError(f"{path}: unreadable snapshot file: {exc}") from None
    return _meta_of(path, fields)


def _meta_of(path: Path, fields: Any) -> SnapshotMeta:
    """The metadata in a dump's snapshot.msgpack, checked for the shape the writer gives it
    (SnapshotFileError otherwise), and the engine snapshot against its digest."""
    if type(fields) is not list or not fields:
        raise SnapshotFileError(f"{path}: {META_NAME} is not a list of fields")
    if fields[0] != SNAPSHOT_FILE_VERSION:
        raise SnapshotFileError(f"{path}: snapshot file version {fields[0]!r} not understood")
    if len(fields) != 9:
        raise SnapshotFileError(f"{path}: {META_NAME} has {len(fields)} fields, not 9")
    _, applied_index, last_entry, prev_entry, cluster, members, engine, engine_sha, files = fields
    if not (
        type(applied_index) is int
        and _is_log_entry(last_entry)
        and _is_log_entry(prev_entry)
        and _is_texts(cluster)
        and type(members) is list
        and all(_is_texts(member) and len(member) == 3 for member in members)
        and type(engine) is bytes
        and type(engine_sha) is str
        and type(files) is dict
        and _is_texts(list(files.keys()))
        and _is_texts(list(files.values()))
    ):
        raise SnapshotFileError(f"{path}: {META_NAME} holds fields of the wrong types")
    if _sha256(engine) != engine_sha:
        raise SnapshotFileError(f"{path}: the engine snapshot does not match its digest")
    return SnapshotMeta(
        applied_index, tuple(last_entry), tuple(prev_entry), cluster, members, engine, files
    )


def _is_log_entry(value: Any) -> bool:
    """A Raft log entry as pysyncobj hands it over: [command, index, term]."""
    return (
        type(value) is list and len(value) == 3 and type(value[1]) is int and type(value[2]) is int
    )


def _is_texts(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def extract_event_log(
    path: Path,
    dest: Path,
    digests: dict[str, str],
    data_key: DataKey | None = None,
    clear_ok: bool = False,
) -> None:
    """Unpacks the event log checkpoint into `dest` (which must not exist yet), each file checked
    against the digest the writer recorded. `data_key`, `clear_ok`: as for
    `read_snapshot_meta`."""
    staging = dest.with_name(dest.name + ".extract")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with (
            open_for_reading(path, data_key, clear_ok) as source,
            tarfile.open(fileobj=source, mode="r") as tar,
        ):
            members = [m for m in tar.getmembers() if m.name.startswith(EVENT_LOG_DIR_NAME + "/")]
            tar.extractall(staging, members=members, filter="data")
        found = {m.name: file_sha256(staging / m.name) for m in members if m.isfile()}
        _check_event_log(path, found, digests)
        _fsync_tree(staging)
    except (OSError, tarfile.TarError, SealError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SnapshotFileError(f"{path}: cannot extract the event log: {exc}") from None
    except SnapshotFileError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging / EVENT_LOG_DIR_NAME, dest)
    fsync_directory(dest.parent)
    shutil.rmtree(staging, ignore_errors=True)


def verify_event_log(path: Path, digests: dict[str, str], data_key: DataKey | None = None) -> None:
    """Reads the whole dump through and checks every event log file in it against its
    digest, unpacking nothing. A node that keeps its own event log never reads that part
    of its dump, yet would send it whole to a peer that needs a snapshot: damage there
    (found by the chaos suite's corrupt fault) must stop the node as damage anywhere does."""
    found = {}
    try:
        with (
            open_for_reading(path, data_key) as source,
            tarfile.open(fileobj=source, mode="r|") as tar,
        ):
            for member in tar:
                if member.isfile() and member.name.startswith(EVENT_LOG_DIR_NAME + "/"):
                    content = tar.extractfile(member)
                    assert content is not None
                    found[member.name] = hashlib.file_digest(content, "sha256").hexdigest()
    except (OSError, tarfile.TarError, SealError) as exc:
        raise SnapshotFileError(f"{path}: unreadable snapshot file: {exc}") from None
    _check_event_log(path, found, digests)


def verify_snapshot_file(path: Path, data_key: DataKey | None = None) -> None:
    """Everything a node installing this dump reads: its metadata, the engine snapshot
    and every event log file, each against its digest."""
    meta = read_snapshot_meta(path, data_key)
    verify_event_log(path, meta.event_log_digests or {}, data_key)


def _check_event_log(path: Path, found: dict[str, str], digests: dict[str, str]) -> None:
    """`found`: each event log file in the dump and its SHA-256, against what the writer
    recorded."""
    if set(found) != set(digests):
        raise SnapshotFileError(f"{path}: event log files differ from the ones recorded")
    if not found:
        raise SnapshotFileError(f"{path}: no event log in the dump (a checkpoint has files)")
    for name, digest in digests.items():
        if found[name] != digest:
            raise SnapshotFileError(f"{path}: {name} does not match its digest")


def _fsync_tree(root: Path) -> None:
    """Every file and directory under `root` on disk before the tree is renamed into place:
    the event log a snapshot brings is the node's history from then on, and the chaos
    suite's power cut found it torn (RocksDB refusing an SST shorter than its manifest
    says) when it was extracted and renamed without a sync."""
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_file(os.path.join(directory, name))
        fsync_directory(directory)
