"""Private files (launch plans, node configs, keys) are read by other processes while they
change: a reader sees the old text or the new, never an empty or half-written file."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from cluster.private_file import replace_private

REWRITES = 300
TEXTS = ("{" + '"a": 1, ' * 2000 + '"end": 0}', "{" + '"b": 2, ' * 3000 + '"end": 1}')


def _rewrite(path: Path, texts: tuple[str, str], times: int) -> None:
    for n in range(times):
        replace_private(path, texts[n % 2])


def test_readers_and_a_second_writer_never_see_a_torn_file(tmp_path: Path) -> None:
    """`raftex up` once read its launch plan empty while a harness attached to the same
    cluster rewrote it: each was in its own process, so this test uses two writers that are
    processes and reads from a third."""
    path = tmp_path / "launch.json"
    replace_private(path, TEXTS[0])
    writers = [
        multiprocessing.get_context("fork").Process(target=_rewrite, args=(path, TEXTS, REWRITES))
        for _ in range(2)
    ]
    for writer in writers:
        writer.start()
    seen: set[str] = set()
    try:
        while any(writer.is_alive() for writer in writers):
            seen.add(path.read_text())
    finally:
        for writer in writers:
            writer.join()
    assert [writer.exitcode for writer in writers] == [0, 0]
    assert seen <= set(TEXTS), sorted(len(text) for text in seen)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["launch.json"]
