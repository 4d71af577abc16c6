"""`raftex report otr`: order-to-trade ratios per member and instrument for one day, counted
as MiFID II RTS 9 counts them, and flagged against the venue's limits.

Messages: each new order or cancellation counts 1, each modification 2 (RTS 9 Art. 3);
cancellations the venue made (kill switch, IOC/FOK remainders, self-trade prevention) are
not the member's messages. By number: messages / transactions - 1. By volume: the volume
of those messages (a new order's quantity, a modification's new quantity counted twice, a
cancel's cancelled quantity) / the traded volume - 1. A member and instrument with
messages and no transaction has an infinite ratio and is flagged whenever it sent more
messages than the limit itself.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

from reports.day import open_warehouse, out_dir, write_file
from warehouse.output import plain_rows, to_csv

LIMIT_BY_NUMBER_DEFAULT = 1_000.0
LIMIT_BY_VOLUME_DEFAULT = 1_000.0
RATIO_COLUMNS = ("ratio_by_number", "ratio_by_volume", "no_transactions", "flagged")

RATIOS = """
WITH messages AS (
    SELECT member, symbol,
           count(*) FILTER (event = 'accepted') AS new_orders,
           count(*) FILTER (event = 'amended') AS modifications,
           count(*) FILTER (event = 'cancelled' AND reason IN ('user', 'mass_cancel'))
               AS cancellations,
           coalesce(sum(qty) FILTER (event = 'accepted'), 0)
             + 2 * coalesce(sum(qty) FILTER (event = 'amended'), 0)
             + coalesce(sum(cancelled_qty)
                   FILTER (event = 'cancelled' AND reason IN ('user', 'mass_cancel')), 0)
               AS message_volume
    FROM order_events WHERE date = $day GROUP BY member, symbol
), traded AS (
    SELECT member, symbol, count(*) AS transactions, sum(qty) AS traded_volume
    FROM executions WHERE date = $day GROUP BY member, symbol
)
SELECT coalesce(m.member, t.member) AS member, coalesce(m.symbol, t.symbol) AS symbol,
       coalesce(new_orders, 0) AS new_orders, coalesce(modifications, 0) AS modifications,
       coalesce(cancellations, 0) AS cancellations,
       coalesce(new_orders, 0) + coalesce(cancellations, 0) + 2 * coalesce(modifications, 0)
           AS messages,
       coalesce(message_volume, 0) AS message_volume,
       coalesce(transactions, 0) AS transactions, coalesce(traded_volume, 0) AS traded_volume
FROM messages m FULL OUTER JOIN traded t ON m.member = t.member AND m.symbol = t.symbol
ORDER BY member, symbol
"""


def _ratio(messages: float, traded: float) -> float:
    return messages / traded - 1 if traded else (math.inf if messages else 0.0)


def write_order_to_trade(
    warehouse: Path,
    day: datetime.date,
    out: Path,
    limit_by_number: float = LIMIT_BY_NUMBER_DEFAULT,
    limit_by_volume: float = LIMIT_BY_VOLUME_DEFAULT,
) -> dict[str, Any]:
    con = open_warehouse(warehouse)
    try:
        rows = con.sql(RATIOS.replace("$day", f"DATE '{day.isoformat()}'")).to_arrow_table()
    finally:
        con.close()
    out_rows = []
    for row in rows.to_pylist():
        by_number = _ratio(row["messages"], row["transactions"])
        by_volume = _ratio(float(row["message_volume"]), float(row["traded_volume"]))
        flags = []
        if by_number > limit_by_number and row["messages"] > limit_by_number:
            flags.append("number")
        if by_volume > limit_by_volume and float(row["message_volume"]) > limit_by_volume:
            flags.append("volume")
        out_rows.append(
            row
            | {
                "ratio_by_number": None if math.isinf(by_number) else round(by_number, 4),
                "ratio_by_volume": None if math.isinf(by_volume) else round(by_volume, 4),
                "no_transactions": row["transactions"] == 0,
                "flagged": ",".join(flags),
            }
        )
    out = out_dir(out)
    stem = f"otr-{day.isoformat()}"
    columns = [
        *rows.schema.names,
        "ratio_by_number",
        "ratio_by_volume",
        "no_transactions",
        "flagged",
    ]
    write_file(out / f"{stem}.csv", to_csv(columns, out_rows).encode())
    report = {
        "report": "otr",
        "date": day.isoformat(),
        "limits": {"by_number": limit_by_number, "by_volume": limit_by_volume},
        "rows": plain_rows(out_rows),
        "flagged": [f"{r['member']} {r['symbol']}" for r in out_rows if r["flagged"]],
    }
    write_file(out / f"{stem}.json", (json.dumps(report, indent=2) + "\n").encode())
    return report
