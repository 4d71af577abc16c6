"""`raftex report execq --month M`: execution quality in the style of SEC Rule 605, per order
category and size bucket, for one calendar month (UTC).

Stop orders are not covered (they are live only from their trigger). An order's category
comes from the best bid and offer just before it arrived (the `bbo`
table, as of the sequence before its acceptance): market orders (and stops); limit orders
that were marketable, inside the quote, at the quote, or away from it. Size buckets are by
the order's quantity. Per category and bucket: covered orders and shares, shares cancelled,
shares executed in all and within 0-1 s, 1-10 s, 10-60 s and 60 s or more of arrival,
the share-weighted average effective spread (twice the distance from the execution price
to the midpoint at arrival), and price improvement against the quote at arrival (shares
improved and their average improvement). Quote-based figures need a two-sided quote at
arrival; orders without one count in everything else.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from reports.day import open_warehouse, out_dir, write_file
from warehouse.output import plain_rows, to_csv

EXECUTION_QUALITY = """
WITH arrived AS (
    SELECT order_id, seq, ts, symbol, side, order_type, price, qty
    FROM order_events
    WHERE event = 'accepted' AND date >= $start AND date < $end
      AND order_type NOT IN ('stop', 'stop_limit')  -- not covered: live only once triggered
), quoted AS (
    SELECT a.*, b.bid_price, b.ask_price,
           (b.bid_price + b.ask_price) / 2 AS mid
    FROM arrived a ASOF LEFT JOIN bbo b ON a.symbol = b.symbol AND a.seq > b.seq
), classified AS (
    SELECT *,
        CASE WHEN order_type IN ('market', 'stop') THEN 'market'
             WHEN side = 'buy' AND price >= ask_price THEN 'marketable_limit'
             WHEN side = 'sell' AND price <= bid_price THEN 'marketable_limit'
             WHEN side = 'buy' AND price > bid_price THEN 'inside_quote_limit'
             WHEN side = 'sell' AND price < ask_price THEN 'inside_quote_limit'
             WHEN (side = 'buy' AND price = bid_price) OR (side = 'sell' AND price = ask_price)
                 THEN 'at_quote_limit'
             ELSE 'away_from_quote_limit' END AS category,
        CASE WHEN qty < 100 THEN '1-99' WHEN qty < 500 THEN '100-499'
             WHEN qty < 2000 THEN '500-1999' WHEN qty < 5000 THEN '2000-4999'
             ELSE '5000+' END AS size_bucket
    FROM quoted
), cancelled AS (
    SELECT order_id, sum(cancelled_qty) AS shares FROM order_events
    WHERE event IN ('cancelled', 'expired') AND date >= $start GROUP BY order_id
), executed AS (
    SELECT c.category, c.size_bucket, x.qty, CAST(x.qty AS DOUBLE) AS shares,
           epoch_ms(x.ts) - epoch_ms(c.ts) AS delay_ms,
           CAST(2 * abs(x.price - c.mid) AS DOUBLE) AS effective_spread,
           CAST(CASE c.side WHEN 'buy' THEN c.ask_price - x.price
                            ELSE x.price - c.bid_price END AS DOUBLE) AS improvement,
           c.mid IS NOT NULL AS quoted
    FROM executions x JOIN classified c USING (order_id)
), orders AS (
    SELECT category, size_bucket, count(*) AS covered_orders, sum(qty) AS covered_shares,
           coalesce(sum(k.shares), 0) AS cancelled_shares
    FROM classified LEFT JOIN cancelled k USING (order_id)
    GROUP BY category, size_bucket
), fills AS (
    SELECT category, size_bucket, sum(qty) AS executed_shares,
           coalesce(sum(qty) FILTER (delay_ms < 1000), 0) AS executed_0_1s,
           coalesce(sum(qty) FILTER (delay_ms >= 1000 AND delay_ms < 10000), 0)
               AS executed_1_10s,
           coalesce(sum(qty) FILTER (delay_ms >= 10000 AND delay_ms < 60000), 0)
               AS executed_10_60s,
           coalesce(sum(qty) FILTER (delay_ms >= 60000), 0) AS executed_60s_plus,
           sum(effective_spread * shares) FILTER (quoted)
               / nullif(sum(shares) FILTER (quoted), 0) AS avg_effective_spread,
           coalesce(sum(qty) FILTER (quoted AND improvement > 0), 0) AS shares_improved,
           sum(improvement * shares) FILTER (quoted AND improvement > 0)
               / nullif(sum(shares) FILTER (quoted AND improvement > 0), 0) AS avg_improvement
    FROM executed GROUP BY category, size_bucket
)
SELECT o.category, o.size_bucket, o.covered_orders, o.covered_shares, o.cancelled_shares,
       coalesce(f.executed_shares, 0) AS executed_shares,
       coalesce(f.executed_0_1s, 0) AS executed_0_1s,
       coalesce(f.executed_1_10s, 0) AS executed_1_10s,
       coalesce(f.executed_10_60s, 0) AS executed_10_60s,
       coalesce(f.executed_60s_plus, 0) AS executed_60s_plus,
       f.avg_effective_spread, coalesce(f.shares_improved, 0) AS shares_improved,
       f.avg_improvement
FROM orders o LEFT JOIN fills f USING (category, size_bucket)
ORDER BY o.category, o.size_bucket
"""


def write_execution_quality(warehouse: Path, month: datetime.date, out: Path) -> dict[str, Any]:
    start = month.replace(day=1)
    end = (start + datetime.timedelta(days=32)).replace(day=1)
    sql = EXECUTION_QUALITY.replace("$start", f"DATE '{start.isoformat()}'").replace(
        "$end", f"DATE '{end.isoformat()}'"
    )
    con = open_warehouse(warehouse)
    try:
        table = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    rows = table.to_pylist()
    out = out_dir(out)
    stem = f"execq-{start.strftime('%Y-%m')}"
    write_file(out / f"{stem}.csv", to_csv(table.schema.names, rows).encode())
    report = {"report": "execq", "month": start.strftime("%Y-%m"), "rows": plain_rows(rows)}
    write_file(out / f"{stem}.json", (json.dumps(report, indent=2) + "\n").encode())
    return report
