"""The derived tables, recomputed with DuckDB from the fact tables for the dates a build
touched: each order's latest state, daily OHLCV per symbol, daily activity per account and
per member.

Every query orders its rows, so a partition's file depends only on the facts it is
computed from (the warehouse built in steps equals the one built at once).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb

from warehouse.partitions import partition_path, write_partition
from warehouse.query import connect

ORDERS = """
SELECT order_id, account, member, owner, capacity, client_order_id, symbol, side,
       order_type, tif, price, stop_price, qty, leaves, cum_qty,
       CASE WHEN event = 'filled' THEN 'filled'
            WHEN event = 'expired' THEN 'expired'
            WHEN event = 'cancelled' AND leaves = 0 THEN 'cancelled'
            WHEN cum_qty > 0 THEN 'partially_filled'
            ELSE 'open' END AS status,
       accepted_ts, ts AS last_ts, events, fills
FROM (
    SELECT *,
           row_number() OVER (PARTITION BY order_id ORDER BY seq DESC) AS newest,
           count(*) OVER (PARTITION BY order_id) AS events,
           count(trade_id) OVER (PARTITION BY order_id) AS fills
    FROM order_events
    WHERE CAST(accepted_ts AS DATE) = $day
)
WHERE newest = 1
ORDER BY order_id
"""

OHLCV_DAILY = """
SELECT symbol,
       arg_min(price, seq) AS open, max(price) AS high, min(price) AS low,
       arg_max(price, seq) AS close,
       CAST(sum(notional) AS DOUBLE) / CAST(sum(qty) AS DOUBLE) AS vwap,
       sum(qty) AS volume, count(*) AS trades, sum(notional) AS turnover
FROM trades WHERE date = $day
GROUP BY symbol ORDER BY symbol
"""

# Activity per KEY (account or member): orders entered, cancels, amends (MiFID RTS 9
# counts each new order or cancel 1 and each amend 2), fills, volumes, and the ratios.
ACTIVITY = """
WITH entered AS (
    SELECT {key}, arg_max({other}, seq) AS {other},
           count(*) FILTER (event = 'accepted') AS orders,
           count(*) FILTER (event = 'cancelled' AND reason IN ('user', 'mass_cancel'))
               AS cancels,
           count(*) FILTER (event = 'amended') AS amends,
           coalesce(sum(qty) FILTER (event = 'accepted'), 0) AS ordered_qty
    FROM order_events WHERE date = $day GROUP BY {key}
), traded AS (
    SELECT {key}, count(*) AS fills, sum(qty) AS traded_qty, sum(notional) AS notional,
           sum(fee) AS fees
    FROM executions WHERE date = $day GROUP BY {key}
)
SELECT coalesce(e.{key}, t.{key}) AS {key}, e.{other},
       coalesce(e.orders, 0) AS orders, coalesce(e.cancels, 0) AS cancels,
       coalesce(e.amends, 0) AS amends, coalesce(t.fills, 0) AS fills,
       coalesce(e.ordered_qty, 0) AS ordered_qty, coalesce(t.traded_qty, 0) AS traded_qty,
       coalesce(t.notional, 0) AS notional, coalesce(t.fees, 0) AS fees,
       CAST(coalesce(e.orders, 0) + coalesce(e.cancels, 0) + 2 * coalesce(e.amends, 0)
            AS DOUBLE) / nullif(t.fills, 0) AS order_to_trade,
       CAST(coalesce(e.ordered_qty, 0) AS DOUBLE)
            / nullif(CAST(t.traded_qty AS DOUBLE), 0) AS order_to_trade_volume
FROM entered e FULL OUTER JOIN traded t ON e.{key} = t.{key}
ORDER BY 1
"""

QUERIES = {
    "ohlcv_daily": OHLCV_DAILY,
    "account_daily": ACTIVITY.format(key="account", other="member"),
    "member_daily": ACTIVITY.format(key="member", other="account"),
}


def recompute(out: Path, dates: list[str]) -> None:
    """Rewrites the derived partitions of `dates` (and the `orders` partitions of the dates
    on which orders with events on them were accepted)."""
    if not dates:
        return
    con = connect(out)
    try:
        for day in dates:
            for table, sql in QUERIES.items():
                _write(con, sql, day, partition_path(out, table, day))
        accepted_days = con.execute(
            "SELECT DISTINCT CAST(CAST(accepted_ts AS DATE) AS VARCHAR) FROM order_events "
            "WHERE list_contains($days, CAST(date AS VARCHAR)) ORDER BY 1",
            {"days": dates},
        ).fetchall()
        for (day,) in accepted_days:
            _write(con, ORDERS, day, partition_path(out, "orders", day))
    finally:
        con.close()


def _write(con: duckdb.DuckDBPyConnection, sql: str, day: str, path: Path) -> None:
    datetime.date.fromisoformat(day)  # a date this module computed, never a user's text
    table = con.sql(sql.replace("$day", f"DATE '{day}'")).to_arrow_table()
    if table.num_rows == 0:
        path.unlink(missing_ok=True)
        return
    write_partition(table, path)
