"""`raftex report cat`: the day's order events in the style of the US Consolidated Audit
Trail, as an exchange would submit them: NDJSON, split into numbered gzip files named by
date, with a manifest of record counts and SHA-256 digests.

Event types (CAT's names for the lifecycle of an order): MENO a new order accepted, MEOM
modified (an amend), MEOC cancelled, MEOF an order's fill, MEOT the trade (both orders).
`eventTimestamp` and `orderKeyDate` (the order's acceptance) are nanoseconds since the epoch,
as strings; prices and quantities are decimal strings.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from reports.day import ReportError, open_warehouse, out_dir, write_file
from warehouse.output import plain_sql

RECORDS_PER_FILE_DEFAULT = 100_000
GZIP_LEVEL = 6  # zlib's default level, not gzip.compress's 9: files for transfer, not archives

# One JSON line per record, built by DuckDB: a record per order event, then per trade, in
# sequence order (an order's fill before the trade it made).
RECORDS = f"""
CREATE OR REPLACE TEMP MACRO plain(x) AS {plain_sql("x")};
CREATE OR REPLACE TEMP MACRO ns(t) AS CAST(epoch_us(t) * 1000 AS VARCHAR);
WITH o AS (
    SELECT e.*, x.price AS fill_price,
           CASE e.side WHEN 'buy' THEN 'B' ELSE 'SL' END AS cat_side,
           CASE e.order_type WHEN 'limit' THEN 'LMT' WHEN 'market' THEN 'MKT'
                WHEN 'stop' THEN 'STP' ELSE 'STL' END AS cat_type,
           CASE e.tif WHEN 'day' THEN 'DAY=' || $yyyymmdd
                      WHEN 'gtd' THEN 'GTT=' || CAST(e.expire_at AS VARCHAR)
                      ELSE upper(e.tif) END AS cat_tif
    FROM order_events e
    LEFT JOIN executions x ON x.order_id = e.order_id AND x.trade_id = e.trade_id
    WHERE e.date = $day
)
SELECT seq, 0 AS kind, CASE event WHEN 'accepted' THEN 'MENO' ELSE 'MEOM' END AS record_type,
to_json(struct_pack(
    type := CASE event WHEN 'accepted' THEN 'MENO' ELSE 'MEOM' END,
    eventTimestamp := ns(ts), orderKeyDate := ns(accepted_ts), orderID := CAST(order_id AS VARCHAR),
    symbol := symbol, side := cat_side, CATReporterIMID := member, tradingCapacity := capacity,
    firmDesignatedID := account, clientOrderID := client_order_id,
    price := CASE WHEN order_type IN ('market', 'stop') THEN NULL ELSE plain(price) END,
    quantity := plain(qty), orderType := cat_type, timeInForce := cat_tif,
    stopPrice := CASE WHEN order_type IN ('stop', 'stop_limit') THEN plain(stop_price) END
)) AS line FROM o WHERE event IN ('accepted', 'amended')
UNION ALL
SELECT seq, 0, 'MEOC', to_json(struct_pack(
    type := 'MEOC', eventTimestamp := ns(ts), orderKeyDate := ns(accepted_ts),
    orderID := CAST(order_id AS VARCHAR), symbol := symbol, side := cat_side,
    CATReporterIMID := member, tradingCapacity := capacity, firmDesignatedID := account,
    clientOrderID := client_order_id, cancelQty := plain(cancelled_qty), leavesQty := plain(leaves)
)) FROM o WHERE event = 'cancelled'
UNION ALL
SELECT seq, 0, 'MEOF', to_json(struct_pack(
    type := 'MEOF', eventTimestamp := ns(ts), orderKeyDate := ns(accepted_ts),
    orderID := CAST(order_id AS VARCHAR), symbol := symbol, side := cat_side,
    CATReporterIMID := member, tradingCapacity := capacity, firmDesignatedID := account,
    clientOrderID := client_order_id, tradeID := CAST(trade_id AS VARCHAR),
    price := plain(fill_price), fillQuantity := plain(traded_qty), leavesQty := plain(leaves),
    role := role
)) FROM o WHERE event IN ('partially_filled', 'filled')
UNION ALL
SELECT seq, 1, 'MEOT', to_json(struct_pack(
    type := 'MEOT', eventTimestamp := ns(ts), tradeID := CAST(trade_id AS VARCHAR),
    symbol := symbol, price := plain(price), quantity := plain(qty),
    buyOrderID := CAST(buy_order_id AS VARCHAR), sellOrderID := CAST(sell_order_id AS VARCHAR),
    aggressorSide := CASE aggressor_side WHEN 'buy' THEN 'B' ELSE 'SL' END
)) FROM trades WHERE date = $day
ORDER BY seq, kind
"""


def write_audit_trail(
    warehouse: Path,
    day: datetime.date,
    out: Path,
    records_per_file: int = RECORDS_PER_FILE_DEFAULT,
) -> dict[str, Any]:
    if records_per_file <= 0:
        raise ReportError("--records-per-file must be positive")
    con = open_warehouse(warehouse)
    try:
        *macros, query = RECORDS.strip().split(";\n")
        for macro in macros:
            con.execute(macro)
        params = {"day": day, "yyyymmdd": day.strftime("%Y%m%d")}
        rows = con.execute(query, params).fetchall()
    finally:
        con.close()
    lines = [line for _, _, _, line in rows]
    types: dict[str, int] = {}
    for _, _, record_type, _ in rows:
        types[record_type] = types.get(record_type, 0) + 1
    out = out_dir(out)
    stem = f"CAT_{day.strftime('%Y%m%d')}"
    files = []
    for number, start in enumerate(range(0, max(len(lines), 1), records_per_file), start=1):
        chunk = lines[start : start + records_per_file]
        data = ("\n".join(chunk) + "\n").encode() if chunk else b""
        name = f"{stem}_{number:06d}.json.gz"
        compressed = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
        write_file(out / name, compressed)
        files.append(
            {
                "name": name,
                "records": len(chunk),
                "sha256": hashlib.sha256(compressed).hexdigest(),
                "uncompressed_sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    manifest = {
        "report": "cat",
        "date": day.isoformat(),
        "records": len(lines),
        "types": dict(sorted(types.items())),
        "files": files,
    }
    write_file(out / f"{stem}_manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest
