"""What a node measures of its own work, in Prometheus' model (prometheus-client).

The instruments live in the library's process-wide registry: a node is a
process of its own, and `GET /metrics` (api/metrics.py) exports this registry
together with the node's state read at the time of the scrape. Everything here
is counted per log entry, not per command, except refusals (by their stable
code) and the journal's fsyncs, so the apply path pays a few microseconds per
entry for them.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds, from 0.1 ms (an entry applied on an idle node) to 10 s (an election's worth).
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
# Commands per entry: the batcher gathers up to 512.
ENTRY_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 512)
# A snapshot dump of a large state takes tens of seconds.
SNAPSHOT_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

ENTRIES_APPLIED = Counter("raftex_entries_applied", "Log entries applied to the engine")
COMMANDS_APPLIED = Counter("raftex_commands_applied", "Commands applied (refused ones included)")
COMMANDS_REFUSED = Counter(
    "raftex_commands_refused", "Commands the engine refused, by the refusal's code", ["code"]
)
ENTRY_COMMANDS = Histogram(
    "raftex_entry_commands", "Commands per applied log entry", buckets=ENTRY_SIZE_BUCKETS
)
APPLY_SECONDS = Histogram(
    "raftex_apply_seconds",
    "Applying one entry: decoding, the engine, the views, the event log hand-off",
    buckets=LATENCY_BUCKETS_S,
)
COMMIT_SECONDS = Histogram(
    "raftex_commit_seconds",
    "From the oldest command of an entry submitted on this node to the entry committed and"
    " applied here",
    buckets=LATENCY_BUCKETS_S,
)
JOURNAL_FSYNC_SECONDS = Histogram(
    "raftex_journal_fsync_seconds",
    "fdatasync of one Raft journal record",
    buckets=LATENCY_BUCKETS_S,
)
SNAPSHOT_SECONDS = Histogram(
    "raftex_snapshot_seconds",
    "Writing one snapshot dump (in a forked child)",
    buckets=SNAPSHOT_BUCKETS_S,
)
