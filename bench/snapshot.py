"""`raftex bench snapshot`: what a snapshot of N orders of history costs.

Builds the state a node would have after N commands of the standard workload
(engine plus a real RocksDB event log), then times the two halves of a rejoin:
writing the dump file (engine snapshot, event log checkpoint, tar: what the
leader does at compaction) and installing it (extract, open the event log,
restore the engine: what a node with an empty disk does). Moving the
file between nodes costs its size over the network on top.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.event_history import write_workload_log
from cluster.event_log import EventLog
from cluster.snapshot_file import (
    SnapshotMeta,
    extract_event_log,
    read_snapshot_meta,
    write_snapshot_file,
)
from engine import Exchange


@dataclass(frozen=True, slots=True)
class SnapshotBench:
    commands: int
    events: int
    open_orders: int
    build_s: float
    engine_snapshot_mb: float
    dump_file_mb: float
    write_dump_s: float
    install_s: float


def run_snapshot_bench(commands: int, seed: int) -> SnapshotBench:
    with tempfile.TemporaryDirectory(prefix="raftex-snap-") as tmp:
        root = Path(tmp)
        event_log = EventLog.open(root / "events")
        started = time.perf_counter()
        ex = write_workload_log(event_log, commands, seed)
        index = event_log.applied_index()
        build_s = time.perf_counter() - started

        started = time.perf_counter()
        engine_bytes = ex.snapshot()
        checkpoint = root / "checkpoint"
        event_log.checkpoint(checkpoint)
        dump = root / "raft.dump"
        meta = SnapshotMeta(index, (b"", index, 1), (b"", index - 1, 1), [], [], engine_bytes)
        write_snapshot_file(dump, meta, checkpoint)
        write_dump_s = time.perf_counter() - started
        event_log.close()
        shutil.rmtree(checkpoint)

        started = time.perf_counter()
        loaded = read_snapshot_meta(dump)
        extract_event_log(dump, root / "restored", loaded.event_log_digests or {})
        restored_log = EventLog.open(root / "restored")
        restored = Exchange.restore(loaded.engine)
        install_s = time.perf_counter() - started
        assert restored.state_hash() == ex.state_hash(), "restored engine differs"
        assert restored_log.applied_index() == index
        restored_log.close()
        return SnapshotBench(
            commands=commands,
            events=ex.seq,
            open_orders=len(ex.orders),
            build_s=round(build_s, 1),
            engine_snapshot_mb=round(len(engine_bytes) / 2**20, 1),
            dump_file_mb=round(dump.stat().st_size / 2**20, 1),
            write_dump_s=round(write_dump_s, 2),
            install_s=round(install_s, 2),
        )


def format_snapshot_bench(result: SnapshotBench, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(result))
    return "\n".join(f"{k:20s} {v}" for k, v in asdict(result).items())
