"""The resource checker: a series that keeps growing over the last half of a run fails it,
one that levels off or starts over after a restart does not."""

from __future__ import annotations

from chaos.history import FaultRecord, ResourceSample
from chaos.resources import (
    RSS_BYTES_PER_MIN_MAX,
    RSS_BYTES_PER_WRITE_MAX,
    growth_problems,
    slope,
)

MIB = 1024 * 1024


def _caught_up(at_s: float) -> list[FaultRecord]:
    """A restart of n1 that the nemesis saw catch up at `at_s`."""
    restart = FaultRecord("restart", "restart leader", ["n1"], at_s - 5, at_s - 4)
    restart.caught_up_at_s = {"n1": at_s}
    return [restart]


def _run(
    rss_of,
    pid_of=lambda t: 100,
    journal_of=lambda t, w: 1_000,
    writes_per_s=10,
    seconds=120,
    apply_of=lambda t: 0.5,
):
    return [
        ResourceSample(
            time_s=float(t),
            node="n1",
            pid=pid_of(t),
            rss_bytes=int(rss_of(t)),
            fds=50,
            journal_bytes=int(journal_of(t, t * writes_per_s)),
            store_bytes=t * writes_per_s * 500,
            apply_ms=apply_of(t),
            acknowledged=t * writes_per_s,
        )
        for t in range(0, seconds)
    ]


def test_a_slope_that_a_few_outliers_do_not_make() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == 2
    assert slope([(1, 7), (1, 9)]) == 0
    flat_with_a_slow_tail = [(t, 2.0) for t in range(100)] + [(100, 400.0), (101, 350.0)]
    assert slope(flat_with_a_slow_tail) == 0


def test_apply_time_is_judged_per_minute_only_over_a_steady_window() -> None:
    # Two slow seconds at the end of a flat half hour: no trend.
    tail = _run(lambda t: 300 * MIB, seconds=1800, apply_of=lambda t: 2.0 if t < 1795 else 300.0)
    problems, slopes = growth_problems(tail, [])
    assert problems == [] and slopes["n1"]["apply_ms_per_min"] == 0
    # Warm-up after a late restart: apply time rising for the node's last two minutes.
    late = _run(
        lambda t: 300 * MIB,
        seconds=1800,
        pid_of=lambda t: 100 if t < 1680 else 200,
        apply_of=lambda t: 1.0 + max(0, t - 1680) / 6,
    )
    problems, slopes = growth_problems(late, _caught_up(1685.0))
    assert problems == [] and "apply_ms_per_min" not in slopes["n1"]
    # Every entry slower by a further 10 ms each minute: a trend, whatever the noise.
    growing = _run(
        lambda t: 300 * MIB, seconds=1800, apply_of=lambda t: 2.0 + t / 6 + (t % 7 == 0) * 90
    )
    problems, _ = growth_problems(growing, [])
    assert any(p.startswith("n1: apply_ms_per_min") for p in problems)


def test_memory_that_levels_off_passes_and_a_leak_fails() -> None:
    levelled = _run(lambda t: 300 * MIB + min(t, 40) * MIB, seconds=720)
    assert growth_problems(levelled, [])[0] == []
    # Under the per-write limit (100 writes a second), over the per-minute one.
    leaking = _run(
        lambda t: 300 * MIB + t * (RSS_BYTES_PER_MIN_MAX / 30), writes_per_s=100, seconds=720
    )
    problems, slopes = growth_problems(leaking, [])
    assert len(problems) == 1 and "rss_bytes_per_min" in problems[0]
    assert slopes["n1"]["rss_bytes_per_min"] > RSS_BYTES_PER_MIN_MAX


def test_a_short_run_judges_memory_per_write_not_per_minute() -> None:
    # Buffers filling at 4 KiB a write: 24 MiB a minute at 100 writes a second, fine.
    filling = _run(lambda t: 300 * MIB + t * 100 * 4096, writes_per_s=100)
    problems, slopes = growth_problems(filling, [])
    assert problems == [] and "rss_bytes_per_min" not in slopes["n1"]
    leaking = _run(lambda t: 300 * MIB + t * 10 * 2 * RSS_BYTES_PER_WRITE_MAX)
    problems, _ = growth_problems(leaking, [])
    assert len(problems) == 1 and "rss_bytes_per_write" in problems[0]


def test_only_the_last_process_past_its_catch_up_is_judged() -> None:
    # Memory climbs fast after a restart at 70 s (catch-up), then stays flat.
    restarted = _run(
        lambda t: 300 * MIB if t < 70 else 100 * MIB + min(t - 70, 8) * 25 * MIB,
        pid_of=lambda t: 100 if t < 70 else 200,
    )
    problems, slopes = growth_problems(restarted, _caught_up(72.0))
    assert problems == [] and "n1" in slopes


def test_a_node_still_catching_up_is_not_judged_until_it_has() -> None:
    # Restarted at 210 s, it takes in a snapshot and the backlog: 100 MiB of store in 100 s
    # (100 KiB per acknowledged write), then grows with the writes again.
    def store(t: float) -> int:
        return 1_000 + int(min(max(t - 210, 0), 100)) * MIB + int(t) * 500

    catching_up = [
        ResourceSample(
            s.time_s, "n1", s.pid, s.rss_bytes, 50, 1_000, store(s.time_s), None, s.acknowledged
        )
        for s in _run(lambda t: 300 * MIB, pid_of=lambda t: 100 if t < 210 else 200, seconds=400)
    ]
    problems, slopes = growth_problems(catching_up, [])
    assert problems == [] and slopes == {}
    # Seen caught up at 310 s: from then on it is steady, and judged.
    problems, slopes = growth_problems(catching_up, _caught_up(310.0))
    assert problems == [] and "n1" in slopes
    # Judged from its start instead, the catch-up reads as a leak.
    problems, _ = growth_problems(catching_up, _caught_up(210.5))
    assert any("store_bytes_per_write" in p for p in problems)


def test_a_journal_that_snapshots_never_trim_fails_per_write() -> None:
    trimmed = _run(lambda t: 300 * MIB, journal_of=lambda t, w: 1_000 + (w % 200) * 300)
    assert growth_problems(trimmed, [])[0] == []
    untrimmed = _run(lambda t: 300 * MIB, journal_of=lambda t, w: w * 10_000)
    problems, _ = growth_problems(untrimmed, [])
    assert any("journal_bytes_per_write" in p for p in problems)


def test_a_node_gone_before_the_end_is_not_judged() -> None:
    steady = _run(lambda t: 300 * MIB)
    # A joiner catching up from a snapshot, then removed at 90 s of 120.
    joiner = [
        ResourceSample(
            s.time_s,
            "n11",
            300,
            100 * MIB + int(s.time_s) * 50 * MIB,
            40,
            0,
            0,
            None,
            s.acknowledged,
        )
        for s in _run(lambda t: 0, seconds=90)
    ]
    problems, slopes = growth_problems(steady + joiner, [])
    assert problems == [] and list(slopes) == ["n1"]
    problems, _ = growth_problems(
        steady + joiner + [ResourceSample(119.0, "n11", 300, 20_000 * MIB, 40, 0, 0, None, 1190)],
        [],
    )
    assert any(p.startswith("n11: rss_bytes_per_write") for p in problems)
