"""`raftex warehouse build`: the event history into Parquet, partitioned by UTC date.

Layout: `OUT/TABLE/date=YYYY-MM-DD/data.parquet` (hive style), one file per table and
date, rows in sequence order, and `OUT/_state.msgpack`, where the build stopped and what
it needs to go on. A build reads the events after that sequence, rewrites the partitions
of the dates they touch (the old rows, then the new), recomputes the derived tables for
those dates with DuckDB, and saves the state last. So a build is incremental, and a
warehouse built in several steps holds byte for byte the files one built at once holds.

A build reads to the source's tip, which is always the end of a log entry (the node
writes an entry's events at once), so the warehouse never holds half a command's events:
a trade without the balances it moved would not reconcile. A build that stops half-way
(a crash, Ctrl-C) leaves the partitions it rewrote ahead of the
saved state: the next build drops the rows after the saved sequence before appending, so
no row is written twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cluster.durable_file import replace_file
from warehouse.derived import recompute
from warehouse.facts import FactBuilder
from warehouse.partitions import day_text, partition_path, write_partition
from warehouse.source import EventSource
from warehouse.tables import FACT_TABLES

STATE_FILE_NAME = "_state.msgpack"
ROWS_PER_BATCH = 100_000


@dataclass(frozen=True, slots=True)
class BuildResult:
    first_seq: int
    last_seq: int
    events: int
    rows: int
    dates: list[str]
    seconds: float


def load_builder(out: Path) -> FactBuilder:
    path = out / STATE_FILE_NAME
    if not path.exists():
        return FactBuilder()
    return FactBuilder(FactBuilder.state_from_bytes(path.read_bytes()))


def build(
    source: EventSource, out: Path, progress: Callable[[int], None] | None = None
) -> BuildResult:
    """Reads every event after the warehouse's last sequence and writes it in.

    Rows become Arrow columns every ROWS_PER_BATCH rows (compact, unlike Python lists) and
    each touched partition is written once, at the end: rewriting a growing partition at
    every batch would cost the square of a day's size."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    builder = load_builder(out)
    first_seq = builder.last_seq
    events = rows = 0
    batches: dict[tuple[str, int], list[pa.Table]] = {}
    while True:
        page = source.events_after(builder.last_seq)
        for event in page:
            builder.add(event)
        events += len(page)
        if not page or (builder.rows and _pending(builder) >= ROWS_PER_BATCH):
            for key, columns in builder.take_rows().items():
                batch = pa.Table.from_pydict(dict(columns), schema=FACT_TABLES[key[0]])
                batches.setdefault(key, []).append(batch)
                rows += batch.num_rows
            if progress is not None:
                progress(builder.last_seq)
        if not page:
            break
    for (table, day), new in sorted(batches.items()):
        _write(out, table, day, new, first_seq)
    dates = sorted({day_text(day) for _, day in batches})
    recompute(out, dates)
    replace_file(out / STATE_FILE_NAME, builder.state_bytes(), 0o644)
    return BuildResult(
        first_seq, builder.last_seq, events, rows, dates, round(time.perf_counter() - started, 3)
    )


def _pending(builder: FactBuilder) -> int:
    return sum(len(columns["seq"]) for columns in builder.rows.values())


def _write(out: Path, table: str, day: int, new: list[pa.Table], first_seq: int) -> None:
    """A partition: the rows it had up to `first_seq` (rows after it come from a build that
    stopped before saving its state: they come again now), then this build's."""
    path = partition_path(out, table, day_text(day))
    if path.exists():
        old = pq.read_table(path, schema=FACT_TABLES[table])
        new = [old.filter(pc.less_equal(old["seq"], first_seq)), *new]
    write_partition(pa.concat_tables(new), path)
