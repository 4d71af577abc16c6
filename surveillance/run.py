"""`raftex surveil`: run the rules over one day of the warehouse and store what they raise
in its `alerts` table (that day's partition is replaced: a run is repeatable)."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from surveillance.rules import RULE_FUNCTIONS, Alert
from warehouse.partitions import partition_path, write_partition
from warehouse.query import ALERTS_TABLE, connect
from warehouse.tables import TIME

ALERTS = pa.schema(
    [
        ("alert_id", pa.string()),
        ("rule", pa.string()),
        ("score", pa.float64()),
        ("account", pa.string()),
        ("symbol", pa.string()),
        ("ts", TIME),
        ("description", pa.string()),
        ("order_ids", pa.list_(pa.int64())),
        ("trade_ids", pa.list_(pa.int64())),
    ]
)


def surveil(
    warehouse: Path,
    day: datetime.date,
    rules: list[str],
    parameters: dict[str, dict[str, float]],
) -> list[Alert]:
    con = connect(warehouse)
    try:
        alerts = [
            alert for rule in rules for alert in RULE_FUNCTIONS[rule](con, day, parameters[rule])
        ]
    finally:
        con.close()
    alerts.sort(key=lambda a: (a.ts, a.rule, a.account, a.symbol))
    path = partition_path(warehouse, ALERTS_TABLE, day.isoformat())
    if alerts:
        rows = [asdict(a) | {"alert_id": _alert_id(a)} for a in alerts]
        write_partition(pa.Table.from_pylist(rows, schema=ALERTS), path)
    else:
        path.unlink(missing_ok=True)
    return alerts


def _alert_id(alert: Alert) -> str:
    """Stable across runs: the same pattern on the same day has the same id."""
    key = f"{alert.rule}|{alert.account}|{alert.symbol}|{alert.ts.isoformat()}|{alert.trade_ids}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]
