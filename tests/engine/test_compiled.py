"""The mypyc build of the engine (setup.py, RAFTEX_MYPYC=1) is the Python engine, faster:
built from a copy of the source, it gives the same events and the same state hash on the
standard workload with a trading calendar (so call phases and auctions run compiled too),
and it is the compiled modules that get imported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from bench.workload import standard_workload, symbols
from engine.commands import SetCalendar, command_to_wire

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 600
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COMMANDS = 20_000
# 20,000 commands 10 ms apart span 200 s of log time: with a one-minute trading day, three
# sessions with their call phases and auctions.
STEP_MS = 10

REPLAY = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
import msgpack
import engine.books
from engine import Exchange
from engine.commands import command_from_wire
from engine.events import event_to_wire
with open(sys.argv[2], "rb") as f:
    steps = msgpack.unpackb(f.read(), raw=False)
ex = Exchange()
digest = hashlib.sha256()
for ts_ms, wire in steps:
    for event in ex.apply(command_from_wire(wire), ts_ms):
        digest.update(msgpack.packb(event_to_wire(event)))
print(engine.books.__file__.rsplit(".", 1)[-1], digest.hexdigest(), ex.state_hash())
"""


def _replay(source: Path, steps_file: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", REPLAY, str(source), str(steps_file)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for mypyc's output")
def test_the_compiled_engine_gives_the_same_events_and_state_hash(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copytree(ROOT / "engine", source / "engine", ignore=shutil.ignore_patterns("*.so"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=source, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        env={**os.environ, "RAFTEX_MYPYC": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]

    workload = standard_workload(COMMANDS, seed=5)
    first = symbols(1)[0]
    calendar = SetCalendar(first, "UTC", 0, 10, 45, 50, 55, day_s=60, trading_days=0b1111111)
    steps = [(START_MS, command_to_wire(c)) for c in [*workload.setup, calendar]]
    steps += [(START_MS + n * STEP_MS, command_to_wire(c)) for n, c in enumerate(workload.commands)]
    steps_file = tmp_path / "steps.msgpack"
    steps_file.write_bytes(msgpack.packb(steps, use_bin_type=True))

    compiled = _replay(source, steps_file)
    pure = _replay(ROOT, steps_file)
    assert compiled[0] == "so", "the compiled module was not the one imported"
    assert pure[0] == "py"
    assert compiled[1:] == pure[1:], "the compiled engine emitted other events or state"
