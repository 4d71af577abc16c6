"""The apply thread's pass over queued engine reads: a reader that gave up (its future
cancelled by a timeout) costs nothing and stops no other reader."""

from __future__ import annotations

from concurrent.futures import CancelledError

import pytest

from cluster.engine_reads import EngineReads
from engine import Exchange


def test_a_cancelled_read_is_skipped_and_the_others_are_answered() -> None:
    engine = Exchange(checked=True)
    reads = EngineReads()
    first = reads.add(lambda ex: ex.state_hash())
    gave_up = reads.add(lambda ex: pytest.fail("a read nobody waits for ran"))
    failing = reads.add(lambda ex: 1 // 0)
    last = reads.add(lambda ex: ex.state_hash())
    assert gave_up.cancel()

    reads.run(engine)

    assert first.result(timeout=0) == last.result(timeout=0) == engine.state_hash()
    with pytest.raises(CancelledError):
        gave_up.result(timeout=0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=0)
    reads.run(engine)  # nothing left to run
