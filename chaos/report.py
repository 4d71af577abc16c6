"""The report of a chaos run: summary.json, history.jsonl, timeline.png and a short table."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos.checkers import Verdict
from chaos.history import OK, History

SUMMARY_FILE = "summary.json"
HISTORY_FILE = "history.jsonl"
TIMELINE_FILE = "timeline.png"
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
    summary = {
        "ok": ok,
        "seed": seed,
        "plane": plane,
        "nemesis": list(families),
        "verdicts": [asdict(v) for v in verdicts],
        "availability": gaps,
        "counts": counts,
        "files": {
            "history": HISTORY_FILE,
            "timeline": TIMELINE_FILE if plotted else None,
        },
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def plot_timeline(history: History, path: Path) -> bool:
    """Acknowledged writes per second and their latency over time, faults shaded.
    False if matplotlib is not installed (`pip install raftex[chaos]`)."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: only the plot needs it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
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
