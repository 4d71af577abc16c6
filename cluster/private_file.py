"""Files that hold secrets (keys, tokens, launch plans): created with mode 0600."""

from __future__ import annotations

import os
from pathlib import Path

from cluster.durable_file import replace_file


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def replace_private(path: Path, text: str) -> None:
    """Replaces `path` atomically and durably (cluster/durable_file.py), mode 0600."""
    replace_file(path, text.encode(), 0o600)
