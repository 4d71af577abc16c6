"""Runs one fuzz check (checks.py) under atheris, coverage-guided, in a process of its own.

    python -m tests.fuzz.targets NAME [libFuzzer flags] [corpus dirs]
    python -m tests.fuzz.targets NAME --seeds DIR      # writes the seed corpus to DIR

atheris ends the process itself (sys.exit), so the tests run this as a child. A crash's
input is written to `<-artifact_prefix>crash-<sha1>`. The project's modules are imported
only inside `atheris.instrument_imports()`, which is what gives libFuzzer their coverage:
nothing of the project is imported at the top of this module.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import atheris

# Where a check writes its files (the tests give it a directory under /dev/shm).
SCRATCH_ENV = "RAFTEX_FUZZ_SCRATCH"
# Packages whose code atheris instruments: the decoders, and the stdlib parser of the dump.
INSTRUMENTED = ["engine", "cluster", "api", "tarfile"]


def main(argv: list[str]) -> None:
    name = argv[1]
    if argv[2:3] == ["--seeds"]:
        from tests.fuzz.checks import TARGETS  # noqa: PLC0415 - nothing to instrument

        out = Path(argv[3])
        out.mkdir(parents=True, exist_ok=True)
        for number, seed in enumerate(TARGETS[name].seed_inputs()):
            (out / f"seed-{number}").write_bytes(seed)
        return
    scratch = Path(os.environ.get(SCRATCH_ENV) or tempfile.mkdtemp(prefix="raftex-fuzz-"))
    # The builder imports the decoder: inside the hook, so that its code is instrumented.
    with atheris.instrument_imports(include=INSTRUMENTED):
        from tests.fuzz.checks import TARGETS  # noqa: PLC0415

        check = TARGETS[name].build(scratch, contextlib.ExitStack())
    atheris.Setup([argv[0], *argv[2:]], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
