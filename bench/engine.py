"""`raftex bench engine`: the standard workload applied to one engine in one process.

The reference matcher from shared/bench runs in the same invocation, so the
figure that matters is the ratio between the two, not the absolute speed of a
shared, noisy machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.auction import UncrossBench, run_uncross_bench
from bench.workload import COMMANDS_PER_MS, standard_workload
from cluster.gc_policy import tune_gc_for_apply
from engine import Exchange

REFERENCE_MATCHER = (
    Path(__file__).resolve().parents[2] / "shared" / "bench" / "reference_matcher.py"
)
REFERENCE_OPS = 200_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a fixed log time for repeatable runs


@dataclass(frozen=True, slots=True)
class EngineBench:
    commands: int
    seed: int
    events: int
    seconds: float
    commands_per_s: float
    events_per_s: float
    latency_us_p50: float
    latency_us_p99: float
    latency_us_p999: float
    rss_mb_peak: float
    state_hash: str
    reference_ops_per_s: float | None
    ratio_to_reference: float | None
    # A call auction of `uncross.orders` resting orders (bench/auction.py); None if not run.
    uncross: UncrossBench | None = None


UNCROSS_ORDERS = 100_000


def run_engine_bench(
    commands: int, seed: int, reference: Path | None, uncross_orders: int = UNCROSS_ORDERS
) -> EngineBench:
    workload = standard_workload(commands, seed)
    ex = Exchange()
    for command in workload.setup:
        ex.apply(command, START_MS)
    tune_gc_for_apply()
    apply = ex.apply
    clock = time.perf_counter_ns
    latencies = [0] * commands
    events = 0
    started = clock()
    for n, command in enumerate(workload.commands):
        t0 = clock()
        events += len(apply(command, START_MS + n // COMMANDS_PER_MS))
        latencies[n] = clock() - t0
    elapsed_s = (clock() - started) / 1e9
    latencies.sort()
    reference_ops = _run_reference(reference) if reference is not None else None
    return EngineBench(
        commands=commands,
        seed=seed,
        events=events,
        seconds=round(elapsed_s, 3),
        commands_per_s=round(commands / elapsed_s),
        events_per_s=round(events / elapsed_s),
        latency_us_p50=_percentile_us(latencies, 0.50),
        latency_us_p99=_percentile_us(latencies, 0.99),
        latency_us_p999=_percentile_us(latencies, 0.999),
        rss_mb_peak=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        state_hash=ex.state_hash(),
        reference_ops_per_s=round(reference_ops) if reference_ops else None,
        ratio_to_reference=round(commands / elapsed_s / reference_ops, 3)
        if reference_ops
        else None,
        uncross=run_uncross_bench(uncross_orders, seed) if uncross_orders else None,
    )


def _percentile_us(sorted_ns: list[int], q: float) -> float:
    index = min(len(sorted_ns) - 1, int(q * len(sorted_ns)))
    return round(sorted_ns[index] / 1000, 1)


def _run_reference(path: Path) -> float | None:
    """Ops/s of the bare reference matcher, in a child process on the same machine."""
    if not path.is_file():
        return None
    done = subprocess.run(
        [sys.executable, str(path), str(REFERENCE_OPS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ops_per_s"])


def format_engine_bench(result: EngineBench, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(result))
    lines = [
        f"commands          {result.commands:>12,}  (seed {result.seed})",
        f"events            {result.events:>12,}",
        f"commands/s        {result.commands_per_s:>12,.0f}",
        f"events/s          {result.events_per_s:>12,.0f}",
        f"latency p50       {result.latency_us_p50:>12.1f} us",
        f"latency p99       {result.latency_us_p99:>12.1f} us",
        f"latency p99.9     {result.latency_us_p999:>12.1f} us",
        f"peak RSS          {result.rss_mb_peak:>12.1f} MB",
    ]
    if result.reference_ops_per_s:
        lines.append(f"reference ops/s   {result.reference_ops_per_s:>12,.0f}")
        lines.append(f"ratio             {result.ratio_to_reference:>12.3f}x")
    lines.append(f"state hash        {result.state_hash}")
    auction = result.uncross
    if auction is not None:
        lines.append(
            f"uncross           {auction.uncross_ms:>12.1f} ms  ({auction.orders:,} orders,"
            f" {auction.trades:,} trades, {auction.uncross_us_per_order} us/order;"
            f" indicative {auction.indicative_ms} ms)"
        )
    return "\n".join(lines)
