"""`raftex bench warehouse`: the warehouse and its reports over N commands of the standard
workload.

Writes a node's event log from the workload (engine plus a real RocksDB event log), then
times `warehouse build` over it (events and rows a second), compares the Parquet files'
size with the event log's, and times every report and the surveillance rules for the day
the workload ran on.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.engine import START_MS
from bench.event_history import write_workload_log
from cluster.event_log import EventLog
from reports.audit_trail import write_audit_trail
from reports.end_of_day import end_of_day
from reports.execution_quality import write_execution_quality
from reports.order_record import write_order_record
from reports.order_to_trade import write_order_to_trade
from surveillance.config import RULES, load_parameters
from surveillance.run import surveil
from warehouse.build import build
from warehouse.facts import DAY_MS
from warehouse.source import DataDirSource


@dataclass(frozen=True, slots=True)
class WarehouseBench:
    commands: int
    events: int
    rows: int
    write_log_s: float
    build_s: float
    events_per_s: float
    rows_per_s: float
    event_log_mb: float
    warehouse_mb: float
    size_ratio: float
    report_s: dict[str, float]
    surveil_s: float
    alerts: int
    alerts_by_rule: dict[str, int]
    eod_clean: bool


def _mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _timed(step: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = step()
    return result, round(time.perf_counter() - started, 2)


def run_warehouse_bench(commands: int, seed: int) -> WarehouseBench:
    day = datetime.date(1970, 1, 1) + datetime.timedelta(days=START_MS // DAY_MS)
    with tempfile.TemporaryDirectory(prefix="raftex-warehouse-") as tmp:
        root = Path(tmp)
        event_log = EventLog.open(root / "n1" / "events")
        _, write_log_s = _timed(lambda: write_workload_log(event_log, commands, seed))
        event_log.close()
        warehouse = root / "warehouse"
        out = root / "reports"
        source = DataDirSource(root / "n1", None, None)
        try:
            built, build_s = _timed(lambda: build(source, warehouse))
            reports = {
                "orders": lambda: write_order_record(warehouse, day, out),
                "cat": lambda: write_audit_trail(warehouse, day, out),
                "otr": lambda: write_order_to_trade(warehouse, day, out),
                "execq": lambda: write_execution_quality(warehouse, day, out),
                "eod": lambda: end_of_day(warehouse, day, out, source),
            }
            report_s: dict[str, float] = {}
            results: dict[str, Any] = {}
            for name, make in reports.items():
                results[name], report_s[name] = _timed(make)
        finally:
            source.close()
        alerts, surveil_s = _timed(
            lambda: surveil(warehouse, day, list(RULES), load_parameters(None))
        )
        log_mb, warehouse_mb = _mb(root / "n1" / "events"), _mb(warehouse)
        return WarehouseBench(
            commands=commands,
            events=built.events,
            rows=built.rows,
            write_log_s=write_log_s,
            build_s=build_s,
            events_per_s=round(built.events / build_s),
            rows_per_s=round(built.rows / build_s),
            event_log_mb=round(log_mb, 1),
            warehouse_mb=round(warehouse_mb, 1),
            size_ratio=round(warehouse_mb / log_mb, 3),
            report_s=report_s,
            surveil_s=surveil_s,
            alerts=len(alerts),
            alerts_by_rule={
                rule: sum(1 for a in alerts if a.rule == rule)
                for rule in sorted({a.rule for a in alerts})
            },
            eod_clean=results["eod"]["ok"],
        )


def format_warehouse_bench(result: WarehouseBench, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(result))
    return "\n".join(f"{k:16s} {v}" for k, v in asdict(result).items())
