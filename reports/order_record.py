"""`raftex report orders`: the exchange's order record for one day, in the shape of MiFID II
RTS 24 (the order data a trading venue keeps), as CSV and Parquet.

One row per order event, in sequence order. Codes follow RTS 24's tables: event type NEWO
(new order), REME (replaced by the member: an amend), REMA (replaced by the market
operator, automatically: an iceberg's refreshed peak), TRIG (a stop triggered), PARF/FILL
(partly/fully filled), CAME/CAMO (cancelled by the member / by the venue: kill switch, IOC
or FOK remainder, self-trade prevention, volatility interruption, auction over), EXPI
(expired); validity DAVY, GTCV, GTTV (good till a time), IOCV, FOKV, VFAU (valid for an
auction: at the open or the close); side BUYI/SELL; PASV/AGRE on fills. Order types are the
venue's own (RTS 24 field 28). Timestamps are UTC with microseconds.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from cluster.snapshot_file import file_sha256
from reports.day import open_warehouse, out_dir
from warehouse.output import write_csv

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

ORDER_RECORD = f"""
WITH initial AS (
    SELECT order_id, qty AS initial_qty FROM order_events WHERE event = 'accepted'
), day AS (
    SELECT * FROM order_events WHERE date = $day
)
SELECT d.member AS submitting_member,
       d.account AS client_id,
       d.capacity AS trading_capacity,
       strftime(d.ts, '{TIME_FORMAT}') AS timestamp,
       CASE d.tif WHEN 'day' THEN 'DAVY' WHEN 'gtc' THEN 'GTCV' WHEN 'gtd' THEN 'GTTV'
                  WHEN 'ioc' THEN 'IOCV' WHEN 'fok' THEN 'FOKV'
                  WHEN 'at_open' THEN 'VFAU' WHEN 'at_close' THEN 'VFAU' END AS validity_period,
       strftime(d.expire_at, '{TIME_FORMAT}') AS validity_date_time,
       strftime(d.priority_ts, '{TIME_FORMAT}') AS priority_timestamp,
       CASE WHEN d.display_qty > 0 THEN least(d.display_qty, d.leaves) ELSE d.leaves END
           AS priority_size,
       d.seq AS sequence_number,
       d.order_id,
       d.client_order_id,
       CASE d.event WHEN 'accepted' THEN 'NEWO' WHEN 'amended' THEN 'REME'
                    WHEN 'replenished' THEN 'REMA' WHEN 'triggered' THEN 'TRIG'
                    WHEN 'partially_filled' THEN 'PARF' WHEN 'filled' THEN 'FILL'
                    WHEN 'expired' THEN 'EXPI'
                    WHEN 'cancelled' THEN CASE WHEN d.reason IN ('user', 'mass_cancel')
                                               THEN 'CAME' ELSE 'CAMO' END END AS event_type,
       d.order_type,
       d.symbol AS instrument,
       CASE WHEN d.order_type IN ('limit', 'stop_limit') THEN d.price END AS limit_price,
       CASE WHEN d.order_type IN ('stop', 'stop_limit') THEN d.stop_price END AS stop_price,
       CASE d.side WHEN 'buy' THEN 'BUYI' ELSE 'SELL' END AS side,
       i.initial_qty AS initial_quantity,
       d.leaves AS remaining_quantity,
       CASE WHEN d.display_qty > 0 THEN least(d.display_qty, d.leaves) ELSE d.leaves END
           AS displayed_quantity,
       d.traded_qty AS traded_quantity,
       CASE d.role WHEN 'passive' THEN 'PASV' WHEN 'aggressive' THEN 'AGRE' END
           AS passive_aggressive,
       true AS self_execution_prevention,
       d.trade_id AS transaction_id,
       CASE WHEN h.status = 'halted' THEN 'HALTED'
            ELSE upper(coalesce(p.phase, 'continuous')) END AS trading_phase
FROM day d
LEFT JOIN initial i USING (order_id)
ASOF LEFT JOIN halts h ON d.symbol = h.symbol AND d.seq >= h.seq
ASOF LEFT JOIN phases p ON d.symbol = p.symbol AND d.seq >= p.seq
ORDER BY d.seq
"""


def write_order_record(warehouse: Path, day: datetime.date, out: Path) -> dict[str, Any]:
    con = open_warehouse(warehouse)
    try:
        table = con.sql(ORDER_RECORD.replace("$day", f"DATE '{day.isoformat()}'")).to_arrow_table()
    finally:
        con.close()
    out = out_dir(out)
    csv_path = out / f"orders-{day.isoformat()}.csv"
    parquet_path = out / f"orders-{day.isoformat()}.parquet"
    write_csv(table, csv_path)
    pq.write_table(table, parquet_path, compression="zstd")
    counts = {
        row["values"]: row["counts"]
        for row in sorted(
            pc.value_counts(table.column("event_type")).to_pylist(), key=lambda r: str(r["values"])
        )
        if row["values"] is not None
    }
    return {
        "report": "orders",
        "date": day.isoformat(),
        "rows": table.num_rows,
        "event_types": counts,
        "files": [
            {"name": csv_path.name, "sha256": file_sha256(csv_path)},
            {"name": parquet_path.name},
        ],
    }
