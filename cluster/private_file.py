"""Files that hold secrets (keys, tokens, launch plans, node configs): mode 0600."""

from __future__ import annotations

from pathlib import Path

from cluster.durable_file import replace_file


def replace_private(path: Path, text: str) -> None:
    """Replaces `path` whole, atomically and durably (cluster/durable_file.py): another
    process reads these while they change (a node starting on its config, `raftex up`
    reading the launch plan a harness attached to it rewrites), and must see the old text
    or the new, never an empty or half-written file."""
    replace_file(path, text.encode(), 0o600)
