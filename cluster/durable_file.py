"""Files replaced so that a crash leaves the old content or the new, never a mix or an empty
file: written beside, fsynced, renamed over, the directory that names them fsynced."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a create or rename in `directory` durable (the file's own fsync does not)."""
    _fsync_path(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Put a file someone else wrote (a library, an archive) on disk."""
    _fsync_path(path, os.O_RDONLY)


def _fsync_path(path: str | os.PathLike[str], flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    # A name of this process's own: two processes replacing the same file (`raftex up` and
    # a harness attached to its cluster, both writing the launch plan) must not write into
    # one partial file and rename it over half-written.
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    fsync_directory(path.parent)
