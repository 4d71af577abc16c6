"""The report of a chaos run: summary.json, history.jsonl, timeline.png and a short table."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos.checkers import Verdict
from chaos.history import OK, History
from chaos.resources import growth_problems

SUMMARY_FILE = "summary.json"
HISTORY_FILE = "history.jsonl"
TIMELINE_FILE = "timeline.png"
RESOURCES_FILE = "resources.png"
# More than this between a node's samples is a break in its line.
GAP_S = 3.0
# (field, axis label, scale to the unit shown)
RESOURCE_SERIES = (
    ("rss_bytes", "RSS (MiB)", 1 / (1024 * 1024)),
    ("fds", "open files", 1.0),
    ("journal_bytes", "journal (MiB)", 1 / (1024 * 1024)),
    ("store_bytes", "store (MiB)", 1 / (1024 * 1024)),
    ("apply_ms", "apply per entry (ms)", 1.0),
)
BUCKET_S = 0.5


def write_report(
    out_dir: Path,
    history: History,
    verdicts: list[Verdict],
    gaps: list[dict[str, Any]],
    counts: dict[str, int],
    seed: int,
    families: tuple[str, ...],
    ok: bool,
    plane: str,
) -> None:
    history.write(out_dir / HISTORY_FILE)
    plotted = plot_timeline(history, out_dir / TIMELINE_FILE)
    resources_plotted = plot_resources(history, out_dir / RESOURCES_FILE)
    _, slopes = growth_problems(history.resources, history.faults)
    summary = {
        "ok": ok,
        "seed": seed,
        "plane": plane,
        "nemesis": list(families),
        "verdicts": [asdict(v) for v in verdicts],
        "availability": gaps,
        "counts": counts,
        # Each node's fitted slopes over the last half of the run (chaos/resources.py).
        "resource_slopes": slopes,
        "files": {
            "history": HISTORY_FILE,
            "timeline": TIMELINE_FILE if plotted else None,
            "resources": RESOURCES_FILE if resources_plotted else None,
        },
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def _pyplot() -> Any:
    """matplotlib's pyplot, or None if it is not installed (`pip install raftex[chaos]`)."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: only the plots need it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    return plt


def plot_resources(history: History, path: Path) -> bool:
    """Each node's memory, open files, journal, store and apply time over the run, faults
    shaded. False without matplotlib or samples."""
    plt = _pyplot()
    if plt is None or not history.resources:
        return False
    figure, axes = plt.subplots(len(RESOURCE_SERIES), 1, sharex=True, figsize=(11, 12))
    nodes = sorted({s.node for s in history.resources})
    for axis, (name, label, scale) in zip(axes, RESOURCE_SERIES, strict=True):
        for node in nodes:
            times, values = _with_gaps(
                [
                    (s.time_s, getattr(s, name) * scale)
                    for s in history.resources
                    if s.node == node and getattr(s, name) is not None
                ]
            )
            axis.plot(times, values, label=node, linewidth=0.8)
        axis.set_ylabel(label)
        for fault in history.faults:
            axis.axvspan(fault.start_s, fault.end_s or fault.start_s, color="red", alpha=0.1)
    axes[0].legend(loc="upper left", fontsize=7, ncol=len(nodes))
    axes[-1].set_xlabel("seconds since start")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _with_gaps(rows: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The points, with a break (NaN) where the node was not sampled for a while (down,
    paused), so the plot draws no line across the fault."""
    times: list[float] = []
    values: list[float] = []
    for t, v in rows:
        if times and t - times[-1] > GAP_S:
            times.append(times[-1])
            values.append(float("nan"))
        times.append(t)
        values.append(v)
    return times, values


def plot_timeline(history: History, path: Path) -> bool:
    """Acknowledged writes per second and their latency over time, faults shaded.
    False if matplotlib is not installed (`pip install raftex[chaos]`)."""
    plt = _pyplot()
    if plt is None:
        return False
    acked = [
        (completion.time_s, (completion.time_s - invocation.time_s) * 1000)
        for invocation, completion in history.pairs()
        if completion is not None and completion.kind == OK and invocation.f != "read"
    ]
    end = max((t for t, _ in acked), default=1.0)
    buckets = [0] * (int(end / BUCKET_S) + 1)
    for t, _ in acked:
        buckets[int(t / BUCKET_S)] += 1
    figure, (rate, latency) = plt.subplots(2, 1, sharex=True, figsize=(11, 6))
    rate.plot([i * BUCKET_S for i in range(len(buckets))], [b / BUCKET_S for b in buckets])
    rate.set_ylabel("acknowledged writes/s")
    latency.scatter([t for t, _ in acked], [ms for _, ms in acked], s=2)
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    latency.set_xlabel("seconds since start")
    for fault in history.faults:
        for axis in (rate, latency):
            axis.axvspan(fault.start_s, fault.end_s or end, color="red", alpha=0.15)
        # What happened in it (after a colon) is in the summary; the plot names the fault.
        label = fault.description.split(":")[0]
        rate.annotate(label, (fault.start_s, 0), fontsize=7, rotation=90, va="bottom")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def format_table(summary: dict[str, Any]) -> str:
    verdict = "PASS" if summary["ok"] else "FAIL"
    lines = [f"chaos run, seed {summary['seed']}, {summary['plane']} plane: {verdict}"]
    for verdict in summary["verdicts"]:
        mark = "ok  " if verdict["ok"] else "FAIL"
        lines.append(f"  {mark} {verdict['name']:<28} {verdict['counts']}")
        lines += [f"         {detail}" for detail in verdict["details"][:5]]
    lines.append("  faults (first acknowledged write after each):")
    for row in summary["availability"]:
        after = "none" if row["first_ack_after_s"] is None else f"{row['first_ack_after_s']} s"
        notes = [f"{n} caught up in {t} s" for n, t in row["catch_up_s"].items()]
        if "commit_ms_max" in row:
            notes.append(f"slowest commit {row['commit_ms_max']} ms")
        lines.append(
            f"    {row['start_s']:>7.1f} s  {row['fault']:<48} {after}  {', '.join(notes)}"
        )
    lines.append(f"  operations: {summary['counts']}")
    lines.append(f"  report: {summary['out_dir']}")
    return "\n".join(lines)
