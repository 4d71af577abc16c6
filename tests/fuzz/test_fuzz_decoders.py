"""Every decoder that reads bytes from outside answers any input with its own error.

Two fuzzers over the same checks (checks.py): atheris, coverage-guided, in a child process
per decoder family, starting from real encodings; and hypothesis in-process, with random
bytes, byte edits of the real encodings, and real encodings whose decoded structure has
one part replaced (what byte mutations rarely reach behind msgpack's framing).

The default run is a short budget (a few thousand inputs per family); RAFTEX_SOAK=1 runs
minutes per family. A crash fails with the input's bytes in the message: pin it in
test_fuzz_regressions.py once the decoder is fixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from tests.fuzz.checks import TARGETS, Check
from tests.fuzz.inputs import MODE_FRAMED
from tests.fuzz.targets import SCRATCH_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("RAFTEX_SOAK") == "1"
# Inputs per family and the time they may take: a few thousand in the default run (about a
# second each on an idle core), minutes under RAFTEX_SOAK=1.
ATHERIS_RUNS = -1 if SOAK else 5_000
ATHERIS_SECONDS = 300 if SOAK else 4
# libFuzzer's own limit per input: a decoder that hangs on an input is a crash as well.
INPUT_TIMEOUT_S = 10
# Inputs up to 16 KiB (libFuzzer's default is 4 KiB, or the largest seed): some limits are
# only crossed by long inputs (Python's 4,300 digits, a thousand nested commands).
INPUT_BYTES_MAX = 16 * 1024
# Start-up (imports under instrumentation) and the last input, on a loaded machine.
PROCESS_SLACK_S = 120
ARTIFACT_SHOWN_BYTES_MAX = 4_096
HYPOTHESIS = settings(
    max_examples=2_000 if SOAK else 60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
# The families whose inputs are msgpack (behind a mode byte for the event log and the dump).
MSGPACK_FAMILIES = ("command", "entry", "snapshot", "event_log", "dump")
SHM = Path("/dev/shm")


def scratch_dir(fallback: Path) -> str:
    """Where a check writes its files: memory if the machine has it (fsync is free there)."""
    base = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else fallback
    return tempfile.mkdtemp(prefix="raftex-fuzz-", dir=base)


@pytest.fixture(scope="module")
def checks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Check]]:
    scratch = Path(scratch_dir(tmp_path_factory.mktemp("fuzz")))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        built = {}
        for name, target in TARGETS.items():
            (scratch / name).mkdir()
            built[name] = target.build(scratch / name, stack)
        yield built


@pytest.fixture(scope="module")
def seed_inputs() -> dict[str, list[bytes]]:
    return {name: target.seed_inputs() for name, target in TARGETS.items()}


# -- atheris --------------------------------------------------------------------------------


@pytest.mark.soak
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_coverage_guided_fuzzing_finds_no_input_the_decoder_answers_badly(
    tmp_path: Path, name: str
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = TARGETS[name].seed_inputs()
    for number, seed in enumerate(seeds):
        (corpus / f"seed-{number}").write_bytes(seed)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    scratch = scratch_dir(tmp_path)
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.targets",
        name,
        f"-runs={ATHERIS_RUNS}",
        f"-max_total_time={ATHERIS_SECONDS}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-max_len={max(INPUT_BYTES_MAX, *map(len, seeds))}",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    try:
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, SCRATCH_ENV: scratch},
            capture_output=True,
            text=True,
            errors="replace",
            timeout=ATHERIS_SECONDS + PROCESS_SLACK_S,
            check=False,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    found = sorted(artifacts.iterdir())
    assert done.returncode == 0 and not found, _crash_report(name, done, found)


def _crash_report(name: str, done: subprocess.CompletedProcess[str], found: list[Path]) -> str:
    lines = [f"atheris found a bad answer in {name} (exit {done.returncode}):"]
    for artifact in found:
        data = artifact.read_bytes()
        lines.append(f"{artifact.name} ({len(data)} bytes): {data[:ARTIFACT_SHOWN_BYTES_MAX]!r}")
    lines.append("--- atheris' output (end) ---")
    lines.append(done.stderr[-6_000:])
    return "\n".join(lines)


# -- hypothesis -----------------------------------------------------------------------------


@pytest.mark.soak
@pytest.mark.parametrize("name", sorted(TARGETS))
@HYPOTHESIS
@given(data=st.binary(max_size=2_048))
def test_random_bytes_get_a_clean_answer(checks: dict[str, Check], name: str, data: bytes) -> None:
    checks[name](data)


@st.composite
def edited(draw: DrawFn, seed: bytes) -> bytes:
    """A real encoding with a few bytes flipped, inserted, removed, or the tail cut."""
    out = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        edit = draw(st.sampled_from(("flip", "insert", "delete", "cut")))
        if edit == "flip" and at < len(out):
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del out[at : at + draw(st.integers(1, 8))]
        else:
            del out[at:]
    return bytes(out)


@pytest.mark.soak
@pytest.mark.parametrize("name", sorted(TARGETS))
@HYPOTHESIS
@given(data=st.data())
def test_a_real_encoding_with_bytes_changed_gets_a_clean_answer(
    checks: dict[str, Check], seed_inputs: dict[str, list[bytes]], name: str, data: st.DataObject
) -> None:
    seed = data.draw(st.sampled_from(seed_inputs[name]))
    checks[name](data.draw(edited(seed)))


MSGPACK_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=12),
    st.binary(max_size=12),
)
MSGPACK_VALUES = st.recursive(
    MSGPACK_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a decoded structure, the whole of it first."""
    yield path
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, list):
        return [_replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]
    return {k: _replaced(v, rest, new) if k == head else v for k, v in value.items()}


@st.composite
def restructured(draw: DrawFn, prefix: bytes, body: bytes) -> bytes:
    """A real msgpack encoding (behind its mode byte, if any) with one part of its structure
    replaced by another value, dropped from its list, or given a sibling."""
    value = msgpack.unpackb(body, raw=False, strict_map_key=False)
    path = draw(st.sampled_from(list(_paths(value))))
    change = draw(st.sampled_from(("replace", "drop", "extend")))
    if change != "replace" and path:
        parent = _get(value, path[:-1])
        if isinstance(parent, list):
            items = list(parent)
            if change == "drop":
                del items[path[-1]]
            else:
                items.insert(path[-1], draw(MSGPACK_VALUES))
            value = _replaced(value, path[:-1], items)
            return prefix + msgpack.packb(value, use_bin_type=True)
    value = _replaced(value, path, draw(MSGPACK_VALUES))
    return prefix + msgpack.packb(value, use_bin_type=True)


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _msgpack_seeds(name: str, seeds: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(mode byte, msgpack) of the seeds that are msgpack: the event log's and the dump's
    framed one behind their mode byte, the others as they are."""
    if name == "dump":
        return [(seed[:1], seed[1:]) for seed in seeds if seed[0] == MODE_FRAMED]
    if name == "event_log":
        return [(seed[:1], seed[1:]) for seed in seeds]
    return [(b"", seed) for seed in seeds]


@pytest.mark.soak
@pytest.mark.parametrize("name", MSGPACK_FAMILIES)
@HYPOTHESIS
@given(data=st.data())
def test_a_real_encoding_with_its_structure_changed_gets_a_clean_answer(
    checks: dict[str, Check], seed_inputs: dict[str, list[bytes]], name: str, data: st.DataObject
) -> None:
    prefix, body = data.draw(st.sampled_from(_msgpack_seeds(name, seed_inputs[name])))
    checks[name](data.draw(restructured(prefix, body)))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
FEED_OPS = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(("login", "subscribe", "unsubscribe")) | JSON_VALUES,
        "channel": st.sampled_from(("book", "trades", "user", "l3", "candles")) | JSON_VALUES,
        "symbol": st.just("ACME") | JSON_VALUES,
        "since": JSON_VALUES,
        "min_seq": JSON_VALUES,
        "id": JSON_VALUES,
        "key": JSON_VALUES,
        "timestamp": JSON_VALUES,
        "signature": JSON_VALUES,
    },
)


@pytest.mark.soak
@HYPOTHESIS
@given(op=FEED_OPS | JSON_VALUES)
def test_any_json_message_on_the_feed_gets_one_clean_answer(
    checks: dict[str, Check], op: Any
) -> None:
    checks["ws_message"](json.dumps(op).encode())


# Numbers as a client may write them (json.dumps never writes 1e400 or -0.0e-999).
JSON_NUMBER_TEXTS = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,4})?\Z"
)


@pytest.mark.soak
@HYPOTHESIS
@given(number=JSON_NUMBER_TEXTS, field=st.sampled_from(("id", "since", "min_seq", "symbol")))
def test_any_json_number_in_a_feed_message_gets_one_clean_answer(
    checks: dict[str, Check], number: str, field: str
) -> None:
    message = f'{{"op":"subscribe","channel":"book","symbol":"ACME","{field}":{number}}}'
    checks["ws_message"](message.encode())
