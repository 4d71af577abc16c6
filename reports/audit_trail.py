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
from warehouse.output import plain

RECORDS_PER_FILE_DEFAULT = 100_000
NS_PER_US = 1_000

ORDER_EVENTS = """
SELECT seq, event, epoch_us(ts) AS ts_us, epoch_us(accepted_ts) AS accepted_us, order_id,
       client_order_id, account, member, capacity, symbol, side, order_type, tif, price,
       stop_price, qty, leaves, traded_qty, cancelled_qty, trade_id, role,
       CAST(expire_at AS VARCHAR) AS expire_at
FROM order_events
WHERE date = $day AND event IN ('accepted', 'amended', 'cancelled', 'partially_filled', 'filled')
"""

TRADES = """
SELECT seq, epoch_us(ts) AS ts_us, trade_id, symbol, price, qty, aggressor_side,
       buy_order_id, sell_order_id
FROM trades WHERE date = $day
"""

TYPES = {
    "accepted": "MENO",
    "amended": "MEOM",
    "cancelled": "MEOC",
    "partially_filled": "MEOF",
    "filled": "MEOF",
}
SIDES = {"buy": "B", "sell": "SL"}
ORDER_TYPES = {"limit": "LMT", "market": "MKT", "stop": "STP", "stop_limit": "STL"}


def _ns(us: int) -> str:
    return str(us * NS_PER_US)


def _time_in_force(row: dict[str, Any], day: datetime.date) -> str:
    tif = row["tif"]
    if tif == "day":
        return f"DAY={day.strftime('%Y%m%d')}"
    if tif == "gtd":
        return f"GTT={row['expire_at']}"
    return tif.upper()


def _order_record(row: dict[str, Any], day: datetime.date) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": TYPES[row["event"]],
        "eventTimestamp": _ns(row["ts_us"]),
        "orderKeyDate": _ns(row["accepted_us"]),
        "orderID": str(row["order_id"]),
        "symbol": row["symbol"],
        "side": SIDES[row["side"]],
        "CATReporterIMID": row["member"],
        "accountHolderType": row["capacity"],
        "firmDesignatedID": row["account"],
        "clientOrderID": row["client_order_id"],
    }
    if row["event"] in ("accepted", "amended"):
        record |= {
            "price": plain(row["price"]) if row["order_type"] != "market" else None,
            "quantity": plain(row["qty"]),
            "orderType": ORDER_TYPES.get(row["order_type"], row["order_type"]),
            "timeInForce": _time_in_force(row, day),
        }
        if row["order_type"] in ("stop", "stop_limit"):
            record["stopPrice"] = plain(row["stop_price"])
    elif row["event"] == "cancelled":
        record |= {"cancelQty": plain(row["cancelled_qty"]), "leavesQty": plain(row["leaves"])}
    else:
        record |= {
            "tradeID": str(row["trade_id"]),
            "price": plain(row["price"]),
            "fillQuantity": plain(row["traded_qty"]),
            "leavesQty": plain(row["leaves"]),
            "role": row["role"],
        }
    return record


def _trade_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "MEOT",
        "eventTimestamp": _ns(row["ts_us"]),
        "tradeID": str(row["trade_id"]),
        "symbol": row["symbol"],
        "price": plain(row["price"]),
        "quantity": plain(row["qty"]),
        "buyOrderID": str(row["buy_order_id"]),
        "sellOrderID": str(row["sell_order_id"]),
        "aggressorSide": SIDES[row["aggressor_side"]],
    }


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
        when = f"DATE '{day.isoformat()}'"
        orders = con.sql(ORDER_EVENTS.replace("$day", when)).to_arrow_table().to_pylist()
        trades = con.sql(TRADES.replace("$day", when)).to_arrow_table().to_pylist()
    finally:
        con.close()
    keyed = [(row["seq"], 0, _order_record(row, day)) for row in orders]
    keyed += [(row["seq"], 1, _trade_record(row)) for row in trades]
    keyed.sort(key=lambda item: (item[0], item[1]))
    lines = [json.dumps(record, separators=(",", ":")) for _, _, record in keyed]
    out = out_dir(out)
    stem = f"CAT_{day.strftime('%Y%m%d')}"
    files = []
    for number, start in enumerate(range(0, max(len(lines), 1), records_per_file), start=1):
        chunk = lines[start : start + records_per_file]
        data = ("\n".join(chunk) + "\n").encode() if chunk else b""
        name = f"{stem}_{number:06d}.json.gz"
        compressed = gzip.compress(data, mtime=0)
        write_file(out / name, compressed)
        files.append(
            {
                "name": name,
                "records": len(chunk),
                "sha256": hashlib.sha256(compressed).hexdigest(),
                "uncompressed_sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    types: dict[str, int] = {}
    for _, _, record in keyed:
        types[record["type"]] = types.get(record["type"], 0) + 1
    manifest = {
        "report": "cat",
        "date": day.isoformat(),
        "records": len(lines),
        "types": dict(sorted(types.items())),
        "files": files,
    }
    write_file(out / f"{stem}_manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest
