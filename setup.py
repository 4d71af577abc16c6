"""The build: pure Python by default; with RAFTEX_MYPYC=1 the engine's hot modules are
compiled by mypyc (measured about 1.5x on the peers' command stream, with the same events
and state hash: tests/engine/test_compiled.py). Everything else is in pyproject.toml.

An editable install never compiles (a compiled module beside its source would shadow
later edits of it); build a compiled engine into an install or a wheel:
`RAFTEX_MYPYC=1 pip install --no-build-isolation .` with mypy installed, as the
Dockerfile does.
"""

import os

from setuptools import setup

# The modules every command runs through; events, commands and the snapshot stay Python
# (compiling them measured slower: they build and read generic lists and dataclasses).
COMPILED = [
    "engine/exchange.py",
    "engine/exchange_state.py",
    "engine/part.py",
    "engine/ledger.py",
    "engine/risk.py",
    "engine/books.py",
    "engine/sessions.py",
    "engine/bands.py",
    "engine/retries.py",
    "engine/access.py",
    "engine/state.py",
    "engine/auction.py",
]

ext_modules = []
if os.environ.get("RAFTEX_MYPYC") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3")

setup(ext_modules=ext_modules)
