"""A FUSE file system that holds written data the way a kernel's page cache does, so that a
power cut can lose it.

Jepsen's LazyFS showed that a database which passes every kill -9 test can still lose
acknowledged writes when the machine loses power: kill -9 leaves the kernel's page cache
intact, a power cut does not. This file system passes every call through to a backing
directory except file data: a write lands in memory (4 KiB pages per file) and reaches the
backing file only on fsync/fdatasync of that file, or after `writeback_s` (the kernel's
dirty_expire, 30 s by default). `cut` throws away every page not yet written back, which is
what a power cut does to the page cache. Metadata (create, rename, unlink, mkdir) reaches
the backing directory at once: the model loses data, not names, so a file renamed before its
data was synced comes back with the data it had on disk, as on a real file system.

The mount is made with `direct_io` and no attribute caching, so that the kernel keeps no
copy of its own that would survive a cut.

It can also play a disk that fills (`mode full`: writes, creates and fsyncs fail with
ENOSPC) or fails (`mode eio-write`: writes and fsyncs fail with EIO; `mode eio`: reads too).

Run as `python -m chaos.lazyfs BACKING MOUNTPOINT CONTROL_SOCKET`; commands on the control
socket, one line each, answered with one line: `cut`, `sync`, `mode ok|full|eio-write|eio`,
`stats`.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mfusepy

PAGE = 4096
HIDDEN_PREFIX = ".fuse_hidden"
MODES = ("ok", "full", "eio-write", "eio")
WRITEBACK_CHECK_S = 1.0


@dataclass(slots=True)
class DirtyFile:
    """A file's data that is in memory only: pages by index, the size the file has for its
    readers, and the lowest size it was truncated to since its last write-back (backing
    bytes beyond that are gone for its readers)."""

    fd: int
    size: int
    truncated_to: int
    pages: dict[int, bytearray] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)


class LazyFs(mfusepy.Operations):
    use_ns = True

    def __init__(self, backing: Path, writeback_s: float) -> None:
        self.backing = backing
        # libfuse keeps a file that is unlinked while open under a hidden name in its
        # directory (.fuse_hidden*), which a real file system does not: rmdir of a RocksDB
        # directory whose files another process still reads failed. Such files live here
        # instead, outside every directory, until libfuse unlinks them at the last close.
        self.orphan_dir = backing.with_name(backing.name + ".orphans")
        self.orphan_dir.mkdir(exist_ok=True)
        self.orphans: dict[str, str] = {}
        self.writeback_s = writeback_s
        self.mutex = threading.RLock()
        self.dirty: dict[tuple[int, int], DirtyFile] = {}
        self.mode = "ok"
        self.dropped_bytes = 0
        self.cuts = 0

    # ------------------------------------------------------------ control

    def cut(self) -> int:
        """Power cut: every page not written back is gone. Returns the bytes lost."""
        with self.mutex:
            lost = sum(len(p) for d in self.dirty.values() for p in d.pages.values())
            for dirty in self.dirty.values():
                os.close(dirty.fd)
            self.dirty.clear()
            self.dropped_bytes += lost
            self.cuts += 1
            return lost

    def sync(self) -> None:
        with self.mutex:
            for key in list(self.dirty):
                self._write_back(key, durable=True)

    def write_back_expired(self) -> None:
        now = time.monotonic()
        with self.mutex:
            for key, dirty in list(self.dirty.items()):
                if now - dirty.since >= self.writeback_s:
                    self._write_back(key, durable=False)

    def stats(self) -> dict[str, Any]:
        with self.mutex:
            return {
                "mode": self.mode,
                "dirty_files": len(self.dirty),
                "dirty_bytes": sum(len(p) for d in self.dirty.values() for p in d.pages.values()),
                "dropped_bytes": self.dropped_bytes,
                "cuts": self.cuts,
            }

    # ------------------------------------------------------------ helpers

    def _path(self, path: str) -> str:
        return self.orphans.get(path) or str(self.backing) + path

    def _key(self, path: str) -> tuple[int, int] | None:
        try:
            st = os.lstat(self._path(path))
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _failing(self, writing: bool) -> None:
        if self.mode == "eio" or (writing and self.mode == "eio-write"):
            raise mfusepy.FuseOSError(errno.EIO)
        if writing and self.mode == "full":
            raise mfusepy.FuseOSError(errno.ENOSPC)

    def _dirty_for(self, path: str | None, fh: int | None = None) -> DirtyFile:
        """The file's in-memory state, by its open handle when it has one (the path of a
        file unlinked while open is gone), else by its path."""
        if fh is not None:
            st = os.fstat(fh)
        else:
            assert path is not None
            st = os.lstat(self._path(path))
        key = (st.st_dev, st.st_ino)
        dirty = self.dirty.get(key)
        if dirty is None:
            fd = os.dup(fh) if fh is not None else os.open(self._path(path or ""), os.O_RDWR)
            dirty = DirtyFile(fd=fd, size=st.st_size, truncated_to=st.st_size)
            self.dirty[key] = dirty
        return dirty

    def _backing_range(self, fd: int, offset: int, length: int, limit: int) -> bytearray:
        """Backing bytes [offset, offset+length) as readers see them: zeros past the
        backing file's end and past `limit` (a truncation not yet written back)."""
        data = bytearray(os.pread(fd, length, offset)) if offset < limit else bytearray()
        keep = max(0, min(len(data), limit - offset))
        del data[keep:]
        data.extend(bytes(length - len(data)))
        return data

    def _write_back(self, key: tuple[int, int], durable: bool) -> None:
        dirty = self.dirty.pop(key)
        try:
            if dirty.truncated_to < os.fstat(dirty.fd).st_size:
                os.ftruncate(dirty.fd, dirty.truncated_to)
            for index, page in sorted(dirty.pages.items()):
                start = index * PAGE
                if start < dirty.size:
                    os.pwrite(dirty.fd, bytes(page[: dirty.size - start]), start)
            os.ftruncate(dirty.fd, dirty.size)
            if durable:
                os.fsync(dirty.fd)
        finally:
            os.close(dirty.fd)

    # ------------------------------------------------------------ metadata, passed through

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self.mutex:
            self._failing(writing=False)
            try:
                st = (
                    os.fstat(fh)
                    if path is None and fh is not None
                    else os.lstat(self._path(path or "/"))
                )
            except OSError as exc:
                raise mfusepy.FuseOSError(exc.errno) from None
            attrs = {
                key: getattr(st, key)
                for key in (
                    "st_mode",
                    "st_nlink",
                    "st_uid",
                    "st_gid",
                    "st_size",
                    "st_atime_ns",
                    "st_mtime_ns",
                    "st_ctime_ns",
                )
            }
            attrs["st_atime"] = attrs.pop("st_atime_ns")
            attrs["st_mtime"] = attrs.pop("st_mtime_ns")
            attrs["st_ctime"] = attrs.pop("st_ctime_ns")
            dirty = self.dirty.get((st.st_dev, st.st_ino))
            if dirty is not None:
                attrs["st_size"] = dirty.size
            return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        self._failing(writing=False)
        return [".", "..", *os.listdir(self._path(path))]

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._path(path))
        stats = {key: getattr(st, key) for key in dir(st) if key.startswith("f_")}
        if self.mode == "full":
            stats["f_bavail"] = stats["f_bfree"] = 0
        return stats

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._path(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._failing(writing=True)
        os.mkdir(self._path(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._path(path))
        return 0

    def unlink(self, path: str) -> int:
        with self.mutex:
            key = self._key(path)
            os.unlink(self._path(path))
            self.orphans.pop(path, None)
            if key is not None and self._key_gone(key):
                os.close(self.dirty.pop(key).fd)
            return 0

    def _key_gone(self, key: tuple[int, int]) -> bool:
        dirty = self.dirty.get(key)
        return dirty is not None and os.fstat(dirty.fd).st_nlink == 0

    def rename(self, old: str, new: str) -> int:
        with self.mutex:
            if os.path.basename(new).startswith(HIDDEN_PREFIX):
                orphan = str(self.orphan_dir / f"{len(self.orphans)}-{time.monotonic_ns()}")
                os.rename(self._path(old), orphan)
                self.orphans[new] = orphan
                return 0
            replaced = self._key(new)
            os.rename(self._path(old), self._path(new))
            if replaced is not None and self._key_gone(replaced):
                os.close(self.dirty.pop(replaced).fd)
            return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._path(source), self._path(target))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._path(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._path(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._path(path), ns=times)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self._failing(writing=True)
        return 0

    # ------------------------------------------------------------ data, held in memory

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self._failing(writing=True)
        return os.open(self._path(path), os.O_CREAT | os.O_RDWR | os.O_TRUNC, mode)

    def open(self, path: str, flags: int) -> int:
        with self.mutex:
            self._failing(writing=bool(flags & (os.O_WRONLY | os.O_RDWR)))
            if flags & os.O_TRUNC:
                self.truncate(path, 0)
            # Every handle can read and write the backing file: what the caller may do was
            # checked by the kernel against the mode bits already.
            return os.open(self._path(path), os.O_RDWR)

    def release(self, path: str | None, fh: int) -> int:
        os.close(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self.mutex:
            self._failing(writing=False)
            st = os.fstat(fh)
            dirty = self.dirty.get((st.st_dev, st.st_ino))
            if dirty is None:
                return os.pread(fh, size, offset)
            size = max(0, min(size, dirty.size - offset))
            data = self._backing_range(dirty.fd, offset, size, dirty.truncated_to)
            for index in range(offset // PAGE, (offset + size + PAGE - 1) // PAGE):
                page = dirty.pages.get(index)
                if page is None:
                    continue
                start = max(offset, index * PAGE)
                end = min(offset + size, (index + 1) * PAGE)
                within = index * PAGE
                data[start - offset : end - offset] = page[start - within : end - within]
            return bytes(data)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self.mutex:
            self._failing(writing=True)
            dirty = self._dirty_for(path, fh)
            position = 0
            while position < len(data):
                at = offset + position
                index, within = divmod(at, PAGE)
                page = dirty.pages.get(index)
                if page is None:
                    page = self._backing_range(dirty.fd, index * PAGE, PAGE, dirty.truncated_to)
                    dirty.pages[index] = page
                take = min(PAGE - within, len(data) - position)
                page[within : within + take] = data[position : position + take]
                position += take
            dirty.size = max(dirty.size, offset + len(data))
            return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self.mutex:
            self._failing(writing=True)
            dirty = self._dirty_for(path)
            for index in [i for i in dirty.pages if i * PAGE >= length]:
                del dirty.pages[index]
            tail = dirty.pages.get(length // PAGE)
            if tail is not None:
                within = length % PAGE
                tail[within:] = bytes(PAGE - within)
            dirty.size = length
            dirty.truncated_to = min(dirty.truncated_to, length)
            return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self.mutex:
            self._failing(writing=True)
            st = os.fstat(fh)
            key = (st.st_dev, st.st_ino)
            if key in self.dirty:
                self._write_back(key, durable=True)
            return 0


def _serve_control(fs: LazyFs, sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                words = line.split()
                if words == ["cut"]:
                    answer = f"ok {fs.cut()}"
                elif words == ["sync"]:
                    fs.sync()
                    answer = "ok"
                elif len(words) == 2 and words[0] == "mode" and words[1] in MODES:
                    fs.mode = words[1]
                    answer = "ok"
                elif words == ["stats"]:
                    answer = json.dumps(fs.stats())
                else:
                    answer = f"error: unknown command {line.strip()!r}"
                stream.write(answer + "\n")
                stream.flush()


def _write_back_loop(fs: LazyFs) -> None:
    while True:
        time.sleep(WRITEBACK_CHECK_S)
        fs.write_back_expired()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.lazyfs")
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("control", type=Path)
    parser.add_argument("--writeback-s", type=float, default=30.0)
    args = parser.parse_args()
    fs = LazyFs(args.backing.resolve(), args.writeback_s)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(str(args.control))
    control.listen(4)
    threading.Thread(target=_serve_control, args=(fs, control), daemon=True).start()
    threading.Thread(target=_write_back_loop, args=(fs,), daemon=True).start()
    mfusepy.FUSE(
        fs,
        str(args.mountpoint),
        foreground=True,
        direct_io=True,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
        fsname="raftex-lazyfs",
    )


if __name__ == "__main__":
    main()
