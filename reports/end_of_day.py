"""`raftex report eod`: the end-of-day report: the daily list, member activity, halts,
control breaches and changes, and a reconciliation that must come out clean.

The reconciliation re-derives the day from the warehouse's facts, independently of the
derived tables: every trade has one buyer and one seller for the same quantity (one
passive, one aggressive side); every account's change in every asset over the day
(closing minus opening balance, available plus held) equals what its fills, fees and
transfers explain; every asset is conserved (the accounts' changes, the fee account's
included, sum to the day's transfers); the trade count agrees across trades, executions
and the order events' fills. Given the history it was built from (`--data-dir`/`--node`),
it also counts the day's trades there and re-hashes the audit chain.

Written as JSON and as HTML with a price and volume chart per symbol (matplotlib PNGs,
embedded, so the file stands alone).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
from pathlib import Path
from typing import Any

import duckdb
from matplotlib.figure import Figure

from engine.events import Trade
from reports.day import open_warehouse, out_dir, write_file
from warehouse.build import load_builder
from warehouse.facts import DAY_MS
from warehouse.output import plain, plain_rows
from warehouse.query import has_table
from warehouse.source import EventSource, events_upto
from warehouse.tables import DERIVED_TABLES

BREACHES_LISTED_MAX = 200
PROBLEMS_LISTED_MAX = 50
FEE_ACCOUNT = "fees"

UNBALANCED_TRADES = """
SELECT trade_id, count(*) AS sides,
       coalesce(sum(qty) FILTER (side = 'buy'), 0) AS bought,
       coalesce(sum(qty) FILTER (side = 'sell'), 0) AS sold,
       count(*) FILTER (role = 'passive') AS passive
FROM executions WHERE date = $day GROUP BY trade_id
HAVING count(*) != 2 OR bought != sold OR passive != 1
ORDER BY trade_id
"""

# Every account's change in every asset over the day, and what explains it.
BALANCES_EXPLAINED = """
WITH instruments AS (
    SELECT key AS symbol, arg_max(json_extract_string(detail, '$.base'), seq) AS base,
           arg_max(json_extract_string(detail, '$.quote'), seq) AS quote
    FROM reference_changes WHERE kind = 'instrument' GROUP BY key
), opening AS (
    SELECT account, asset, arg_max(available + held, seq) AS total
    FROM balance_changes WHERE date < $day GROUP BY account, asset
), closing AS (
    SELECT account, asset, arg_max(available + held, seq) AS total
    FROM balance_changes WHERE date <= $day GROUP BY account, asset
), moved AS (
    SELECT e.account, i.base AS asset,
           CASE e.side WHEN 'buy' THEN e.qty ELSE -e.qty END AS amount
    FROM executions e JOIN instruments i USING (symbol) WHERE e.date = $day
    UNION ALL
    SELECT e.account, i.quote,
           CASE e.side WHEN 'buy' THEN -e.notional ELSE e.notional END - e.fee
    FROM executions e JOIN instruments i USING (symbol) WHERE e.date = $day
    UNION ALL
    SELECT '{fee_account}', i.quote, e.fee
    FROM executions e JOIN instruments i USING (symbol) WHERE e.date = $day AND e.fee != 0
    UNION ALL
    SELECT account, asset, amount FROM transfers WHERE date = $day
), explained AS (
    SELECT account, asset, sum(amount) AS amount FROM moved GROUP BY account, asset
), changed AS (
    SELECT coalesce(c.account, x.account) AS account, coalesce(c.asset, x.asset) AS asset,
           coalesce(c.total, 0) - coalesce(o.total, 0) AS change,
           coalesce(x.amount, 0) AS explained
    FROM closing c
    LEFT JOIN opening o USING (account, asset)
    FULL OUTER JOIN explained x ON c.account = x.account AND c.asset = x.asset
)
SELECT * FROM changed ORDER BY account, asset
""".replace("{fee_account}", FEE_ACCOUNT)

CONSERVATION = """
WITH changes AS ({balances})
SELECT c.asset, sum(c.change) AS change,
       coalesce((SELECT sum(amount) FROM transfers t WHERE t.date = $day AND t.asset = c.asset), 0)
           AS transfers
FROM changes c GROUP BY c.asset ORDER BY c.asset
"""

TRADE_COUNTS = """
SELECT (SELECT count(*) FROM trades WHERE date = $day) AS trades,
       (SELECT count(DISTINCT trade_id) FROM executions WHERE date = $day) AS executed,
       (SELECT count(DISTINCT trade_id) FROM order_events
         WHERE date = $day AND trade_id IS NOT NULL) AS filled
"""

MINUTE_BARS = """
SELECT symbol, time_bucket(INTERVAL 1 minute, ts) AS minute,
       CAST(arg_max(price, seq) AS DOUBLE) AS close, CAST(sum(qty) AS DOUBLE) AS volume
FROM trades WHERE date = $day GROUP BY symbol, minute ORDER BY symbol, minute
"""


def _rows(con: duckdb.DuckDBPyConnection, sql: str, day: datetime.date) -> list[dict[str, Any]]:
    return con.sql(sql.replace("$day", f"DATE '{day.isoformat()}'")).to_arrow_table().to_pylist()


def _table_rows(
    con: duckdb.DuckDBPyConnection, warehouse: Path, table: str, day: datetime.date
) -> list[dict[str, Any]]:
    if table in DERIVED_TABLES and not has_table(warehouse, table):
        return []
    return _rows(con, f"SELECT * EXCLUDE (date) FROM {table} WHERE date = $day", day)


def end_of_day(
    warehouse: Path, day: datetime.date, out: Path, source: EventSource | None = None
) -> dict[str, Any]:
    con = open_warehouse(warehouse)
    try:
        daily_list = _table_rows(con, warehouse, "ohlcv_daily", day)
        members = _table_rows(con, warehouse, "member_daily", day)
        halts = _table_rows(con, warehouse, "halts", day)
        closes = _table_rows(con, warehouse, "sessions", day)
        interruptions = _rows(
            con,
            "SELECT seq, ts, symbol, until AS reopens FROM phases "
            "WHERE date = $day AND phase = 'volatility_auction' ORDER BY seq",
            day,
        )
        breaches = _table_rows(con, warehouse, "control_breaches", day)
        changes = _rows(
            con,
            "SELECT seq, ts, kind, key, detail, changed_by FROM reference_changes "
            "WHERE date = $day AND kind IN ('instrument', 'rate_limit', 'member_rate_limit', "
            "'account_profile', 'account', 'calendar') "
            "ORDER BY seq",
            day,
        )
        reconciliation, trade_count = _reconcile(con, day)
        bars = _rows(con, MINUTE_BARS, day)
    finally:
        con.close()
    if source is not None:
        upto = load_builder(warehouse).last_seq
        reconciliation += _against_history(source, day, trade_count, upto)
    breach_counts: dict[str, int] = {}
    for row in breaches:
        key = f"{row['member'] or '-'} {row['code']}"
        breach_counts[key] = breach_counts.get(key, 0) + 1
    report = {
        "report": "eod",
        "date": day.isoformat(),
        "ok": all(check["ok"] for check in reconciliation),
        "daily_list": plain_rows(daily_list),
        "member_activity": plain_rows(members),
        "official_closes": plain_rows(closes),
        "volatility_interruptions": plain_rows(interruptions),
        "halts": plain_rows(halts),
        "control_breaches": {
            "count": len(breaches),
            "by_member_and_code": dict(sorted(breach_counts.items())),
            "first": plain_rows(breaches[:BREACHES_LISTED_MAX]),
        },
        "control_changes": plain_rows(changes),
        "reconciliation": reconciliation,
    }
    charts = _charts(bars)
    out = out_dir(out)
    stem = f"eod-{day.isoformat()}"
    write_file(out / f"{stem}.json", (json.dumps(report, indent=2) + "\n").encode())
    write_file(out / f"{stem}.html", _html(report, charts).encode())
    for symbol, png in charts.items():
        write_file(out / f"{stem}-{symbol}.png", png)
    report["files"] = [f"{stem}.json", f"{stem}.html", *(f"{stem}-{s}.png" for s in charts)]
    return report


def _check(name: str, problems: list[Any], detail: str) -> dict[str, Any]:
    return {
        "check": name,
        "ok": not problems,
        "detail": detail,
        "problems": [plain(p) if not isinstance(p, dict) else plain_rows([p])[0] for p in problems][
            :PROBLEMS_LISTED_MAX
        ],
    }


def _reconcile(
    con: duckdb.DuckDBPyConnection, day: datetime.date
) -> tuple[list[dict[str, Any]], int]:
    """The checks, and the day's trade count in the warehouse."""
    unbalanced = _rows(con, UNBALANCED_TRADES, day)
    balances = _rows(con, BALANCES_EXPLAINED, day)
    unexplained = [row for row in balances if row["change"] != row["explained"]]
    conservation = _rows(con, CONSERVATION.replace("{balances}", BALANCES_EXPLAINED), day)
    leaks = [row for row in conservation if row["change"] != row["transfers"]]
    [counts] = _rows(con, TRADE_COUNTS, day)
    mismatch = [counts] if len(set(counts.values())) != 1 else []
    checks = [
        _check(
            "trades_balanced",
            unbalanced,
            "every trade: one buyer and one seller, the same quantity, one passive side",
        ),
        _check(
            "balances_explained",
            unexplained,
            f"{len(balances)} account-asset changes equal their fills, fees and transfers",
        ),
        _check(
            "assets_conserved",
            leaks,
            f"{len(conservation)} assets: the accounts' changes sum to the day's transfers",
        ),
        _check(
            "trade_count",
            mismatch,
            f"{counts['trades']} trades in trades, executions and order events alike",
        ),
    ]
    return checks, counts["trades"]


def _against_history(
    source: EventSource, day: datetime.date, in_warehouse: int, upto: int
) -> list[dict[str, Any]]:
    """The day's trades in the history up to the sequence the warehouse has reached (a
    running node's history goes on), and the audit chain."""
    start_ms = (day - datetime.date(1970, 1, 1)).days * DAY_MS
    trades = sum(
        1
        for event in events_upto(source, upto)
        if isinstance(event, Trade) and start_ms <= event.ts_ms < start_ms + DAY_MS
    )
    audit = source.verify_audit()
    return [
        _check(
            "trade_count_in_history",
            [] if trades == in_warehouse else [f"history {trades}, warehouse {in_warehouse}"],
            f"{trades} trades of the day in the event history",
        ),
        _check(
            "audit_chain",
            [] if audit["ok"] else [audit],
            f"{audit['records']} audited commands re-hashed from the first",
        ),
    ]


def _charts(bars: list[dict[str, Any]]) -> dict[str, bytes]:
    """A PNG per symbol: the last price of every minute, and its volume below."""
    if not bars:
        return {}
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    for row in bars:
        by_symbol.setdefault(row["symbol"], []).append(row)
    charts = {}
    for symbol, rows in sorted(by_symbol.items()):
        figure = Figure(figsize=(8, 4))
        price, volume = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        minutes = [row["minute"] for row in rows]
        price.plot(minutes, [row["close"] for row in rows], color="#1f6feb", linewidth=1.2)
        price.set_title(f"{symbol}: last price per minute (UTC)")
        price.grid(alpha=0.3)
        volume.bar(minutes, [row["volume"] for row in rows], width=1 / 1440, color="#8b949e")
        volume.set_ylabel("volume")
        figure.autofmt_xdate()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
        charts[symbol] = buffer.getvalue()
    return charts


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='none'>none</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(report: dict[str, Any], charts: dict[str, bytes]) -> str:
    verdict = "clean" if report["ok"] else "NOT CLEAN"
    checks = [
        {"check": c["check"], "ok": c["ok"], "detail": c["detail"], "problems": c["problems"]}
        for c in report["reconciliation"]
    ]
    images = "".join(
        f"<figure><img alt='{html.escape(s)}' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}'></figure>"
        for s, png in charts.items()
    )
    breaches = report["control_breaches"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>raftex end of day {report["date"]}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; }}
th {{ background: #f6f8fa; }} .none {{ color: #8b949e; }}
.clean {{ color: #1a7f37; }} .dirty {{ color: #cf222e; }}
</style></head><body>
<h1>End of day {report["date"]}</h1>
<p>Reconciliation: <strong class="{"clean" if report["ok"] else "dirty"}">{verdict}</strong></p>
<h2>Daily list</h2>{_html_table(report["daily_list"])}
{images}
<h2>Member activity</h2>{_html_table(report["member_activity"])}
<h2>Official closes</h2>{_html_table(report["official_closes"])}
<h2>Volatility interruptions</h2>{_html_table(report["volatility_interruptions"])}
<h2>Halts</h2>{_html_table(report["halts"])}
<h2>Control breaches ({breaches["count"]})</h2>
{_html_table([{"member code": k, "count": v} for k, v in breaches["by_member_and_code"].items()])}
<h2>Control and reference changes</h2>{_html_table(report["control_changes"])}
<h2>Reconciliation</h2>{_html_table(checks)}
</body></html>
"""
