"""What each node uses over a run (memory, open files, journal and store on disk, apply
time), sampled from /proc, the data directory and the node's metrics, and the check that
none of it grows without bound.

Leaks show as a slope, not as a level: a node that holds 300 MB is fine, one that gains
10 MB a minute for half an hour is not. So the checker fits a line to each series over the
last half of the run, on the samples since the node's last start caught up (a restart or
a wipe resets everything, and until a node has applied what the leader had committed it
is taking in a snapshot and a backlog, its store growing by megabytes while the
acknowledged writes hardly move), and fails a slope above its limit. A node started
during the run whose catch-up was not seen (it was still catching up at the end) is not
judged. The line is Theil-Sen's (the median of the slopes between every two
samples), not least squares': a leak moves every sample, a slow second on shared cores or
a GC pause moves a few, and a half-hour soak failed on one node's apply time whose least-
squares slope such a tail made. Open files and apply time are judged per minute. The journal and the
store grow with the writes by design (the store is the history), so they are judged per
acknowledged write: a journal that snapshots stop from growing, and a store that gains
no more per write than a write's events take.

Memory is judged both ways. For its first minutes a node's memory grows with every write
by design, into buffers that stop growing later: each RocksDB memtable until it is
flushed, the Raft log until a snapshot compacts it (20,000 entries or 10 minutes), the
engine's at-most-once table of client ids for its 24 hours. Measured here, that is about
4 KiB a write, some 16 MiB a minute under the chaos clients' load: a short run cannot
tell it from a leak by the minute. So memory is judged per write always (a limit of four
times that footprint), and per minute only over a steady window long enough to take in
a flush and a compaction (the soak's). Apply time too is judged only over such a window:
over less, a node's first minutes after a catch-up make its trend.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import theilslopes

from chaos.history import FaultRecord, ResourceSample

# Limits on each fitted slope (see the module docstring for the units).
RSS_BYTES_PER_MIN_MAX = 16 * 1024 * 1024
RSS_BYTES_PER_WRITE_MAX = 16 * 1024.0
# Memory and apply time are judged by the minute only over at least this much steady time.
TREND_WINDOW_MIN_S = 300.0
# Client and peer connections come and go by the dozen within a short window; a leak of
# this rate would hold 1,800 more files after a half-hour soak.
FDS_PER_MIN_MAX = 60.0
JOURNAL_BYTES_PER_WRITE_MAX = 4096.0
STORE_BYTES_PER_WRITE_MAX = 16384.0
# An entry's apply time is a few ms and noisy second to second on shared cores; growing by
# this much a minute would be 150 ms an entry after a half-hour soak.
APPLY_MS_PER_MIN_MAX = 5.0
# Samples this soon after a node's start are catch-up, not steady state.
SETTLE_S = 10.0
# A catch-up is recorded after the process starts; its first sample may come this late.
SAMPLE_LAG_S = 1.5
SAMPLES_MIN = 10
# A slope over less steady time than this says more about warm-up than about leaks: a
# node with less (a short run, or one restarted late) is not judged.
STEADY_WINDOW_MIN_S = 25.0
JOURNAL_PREFIX = "raft.journal"


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (the node and its projector)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                queue.extend(int(child) for child in children)
        except OSError:
            continue
    return found


def rss_and_fds(pid: int) -> tuple[int, int]:
    rss = fds = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
            fds += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            continue
    return rss, fds


def disk_usage(node_dir: Path) -> tuple[int, int]:
    """(journal bytes, everything else: event log, projection, snapshots)."""
    journal = store = 0
    for root, _, files in os.walk(node_dir):
        for name in files:
            try:
                size = os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
            if name.startswith(JOURNAL_PREFIX):
                journal += size
            else:
                store += size
    return journal, store


def apply_totals(metrics_text: str) -> tuple[float, float]:
    """(seconds, count) of raftex_apply_seconds from a node's /metrics."""
    total = count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "raftex_apply_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return total, count


class ApplyClock:
    """Turns each node's cumulative apply histogram into a mean per sampling interval."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], tuple[float, float]] = {}

    def mean_ms(self, node: str, pid: int, metrics_text: str) -> float | None:
        total, count = apply_totals(metrics_text)
        before = self.last.get((node, pid))
        self.last[(node, pid)] = (total, count)
        if before is None or count <= before[1]:
            return None
        return (total - before[0]) / (count - before[1]) * 1000


def sample_node(
    time_s: float,
    node: str,
    pid: int,
    node_dir: Path,
    apply_ms: float | None,
    acknowledged: int,
) -> ResourceSample:
    rss, fds = rss_and_fds(pid)
    journal, store = disk_usage(node_dir)
    return ResourceSample(time_s, node, pid, rss, fds, journal, store, apply_ms, acknowledged)


def slope(points: list[tuple[float, float]]) -> float:
    """Theil-Sen slope of y over x (0 where every x is the same)."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    return float(theilslopes(ys, xs).slope)


def steady_samples(
    samples: list[ResourceSample], faults: list[FaultRecord]
) -> dict[str, list[ResourceSample]]:
    """Each node's samples in the last half of the run, from its last process only, past
    that process's first SETTLE_S and, for one started during the run, past its catch-up.
    A node gone before the end (a joiner removed again) or never seen caught up after its
    last start is left out: its last minutes were a catch-up, never a steady state."""
    if not samples:
        return {}
    first, end = min(s.time_s for s in samples), max(s.time_s for s in samples)
    caught_up: dict[str, list[float]] = {}
    for fault in faults:
        for node, at_s in fault.caught_up_at_s.items():
            caught_up.setdefault(node, []).append(at_s)
    by_node: dict[str, list[ResourceSample]] = {}
    for sample in samples:
        by_node.setdefault(sample.node, []).append(sample)
    steady = {}
    for node, rows in by_node.items():
        if rows[-1].time_s < end - SETTLE_S:
            continue
        last_pid = rows[-1].pid
        started = next(r.time_s for r in rows if r.pid == last_pid)
        from_s = max(end / 2, started + SETTLE_S)
        if started > first + SETTLE_S:
            after = [at for at in caught_up.get(node, []) if at >= started - SAMPLE_LAG_S]
            if not after:
                continue
            from_s = max(from_s, min(after))
        steady[node] = [r for r in rows if r.pid == last_pid and r.time_s >= from_s]
    return steady


def growth_problems(
    samples: list[ResourceSample], faults: list[FaultRecord]
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Every series whose fitted slope is above its limit, and each node's slopes (`faults`
    say when each restarted node caught up)."""
    problems: list[str] = []
    slopes: dict[str, dict[str, float]] = {}
    for node, rows in sorted(steady_samples(samples, faults).items()):
        if len(rows) < SAMPLES_MIN or rows[-1].time_s - rows[0].time_s < STEADY_WINDOW_MIN_S:
            continue
        judged = {"fds_per_min": (slope([(r.time_s / 60, r.fds) for r in rows]), FDS_PER_MIN_MAX)}
        if rows[-1].time_s - rows[0].time_s >= TREND_WINDOW_MIN_S:
            judged["rss_bytes_per_min"] = (
                slope([(r.time_s / 60, r.rss_bytes) for r in rows]),
                RSS_BYTES_PER_MIN_MAX,
            )
            applies = [(r.time_s / 60, r.apply_ms) for r in rows if r.apply_ms is not None]
            if len(applies) >= SAMPLES_MIN:
                judged["apply_ms_per_min"] = (slope(applies), APPLY_MS_PER_MIN_MAX)
        writes = [r.acknowledged for r in rows]
        if writes[-1] > writes[0]:
            judged["rss_bytes_per_write"] = (
                slope([(r.acknowledged, r.rss_bytes) for r in rows]),
                RSS_BYTES_PER_WRITE_MAX,
            )
            judged["journal_bytes_per_write"] = (
                slope([(r.acknowledged, r.journal_bytes) for r in rows]),
                JOURNAL_BYTES_PER_WRITE_MAX,
            )
            judged["store_bytes_per_write"] = (
                slope([(r.acknowledged, r.store_bytes) for r in rows]),
                STORE_BYTES_PER_WRITE_MAX,
            )
        slopes[node] = {name: round(value, 3) for name, (value, _) in judged.items()}
        for name, (value, limit) in judged.items():
            if value > limit:
                problems.append(f"{node}: {name} {value:,.1f} above the limit {limit:,.1f}")
    return problems, slopes
