"""The surveillance rules: each reads one day of the warehouse with DuckDB and returns its
alerts, each with the orders and trades that raised it and a score in [0, 1] (how far past
its thresholds the pattern went: 1 when it is twice as strong as the least that alerts, or
certain, as a wash trade is).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import duckdb


@dataclass(frozen=True, slots=True)
class Alert:
    rule: str
    score: float
    account: str
    symbol: str
    ts: datetime.datetime
    description: str
    order_ids: list[int] = field(default_factory=list)
    trade_ids: list[int] = field(default_factory=list)


def _score(strength: float) -> float:
    """1.0 at twice the threshold or more; strength 1.0 is exactly at the threshold."""
    return round(min(1.0, max(0.0, strength / 2)), 3)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict]:
    return con.sql(sql, params=params).to_arrow_table().to_pylist()


WASH_TRADES = """
SELECT b.trade_id, b.ts, b.symbol, b.account AS buyer, s.account AS seller, b.owner,
       b.order_id AS buy_order, s.order_id AS sell_order, b.qty, b.notional
FROM executions b JOIN executions s USING (trade_id)
WHERE b.date = $day AND b.side = 'buy' AND s.side = 'sell' AND b.owner = s.owner
ORDER BY b.seq
"""


def wash_trades(
    con: duckdb.DuckDBPyConnection, day: datetime.date, p: dict[str, float]
) -> list[Alert]:
    return [
        Alert(
            "wash_trades",
            1.0,
            row["buyer"],
            row["symbol"],
            row["ts"],
            f"trade {row['trade_id']}: {row['buyer']} bought {row['qty'].normalize():f} from "
            f"{row['seller']}, both owned by {row['owner']}",
            [row["buy_order"], row["sell_order"]],
            [row["trade_id"]],
        )
        for row in _rows(con, WASH_TRADES, {"day": day})
    ]


SPOOFING = """
WITH fills AS (
    SELECT account, symbol, side, seq, ts, trade_id, qty,
           sum(qty) OVER (PARTITION BY account, symbol, side ORDER BY ts
                          RANGE BETWEEN $look_back PRECEDING AND CURRENT ROW) AS filled
    FROM executions WHERE date = $day
), opposite AS (
    SELECT a.account, a.symbol, a.side, a.order_id, a.ts AS placed_ts, a.qty, a.price,
           c.ts AS cancelled_ts, coalesce(c.cancelled_qty, 0) AS cancelled_qty
    FROM order_events a
    LEFT JOIN order_events c ON c.order_id = a.order_id AND c.event = 'cancelled'
                            AND c.reason IN ('user', 'mass_cancel')
    WHERE a.event = 'accepted' AND a.date = $day
), anchored AS (
    SELECT f.account, f.symbol, f.side, f.ts, f.trade_id, f.filled,
           sum(o.qty) AS placed,
           coalesce(sum(o.cancelled_qty) FILTER (
               o.cancelled_ts <= f.ts + $cancel_after), 0) AS cancelled,
           count(DISTINCT o.price) FILTER (
               o.cancelled_qty > 0 AND o.cancelled_ts <= f.ts + $cancel_after) AS levels,
           count(*) FILTER (
               o.cancelled_qty > 0 AND o.cancelled_ts <= f.ts + $cancel_after) AS cancels,
           list(o.order_id ORDER BY o.order_id) FILTER (
               o.cancelled_qty > 0 AND o.cancelled_ts <= f.ts + $cancel_after) AS orders
    FROM fills f JOIN opposite o
      ON o.account = f.account AND o.symbol = f.symbol AND o.side != f.side
     AND o.placed_ts BETWEEN f.ts - $look_back AND f.ts
    GROUP BY ALL
)
SELECT *, CAST(cancelled AS DOUBLE) / CAST(placed AS DOUBLE) AS cancelled_share,
       CAST(cancelled AS DOUBLE) / CAST(filled AS DOUBLE) AS cancelled_to_filled
FROM anchored
WHERE CAST(cancelled AS DOUBLE) >= $share_min * CAST(placed AS DOUBLE)
  AND CAST(cancelled AS DOUBLE) >= $filled_min * CAST(filled AS DOUBLE)
  AND cancels >= $cancels_min
ORDER BY account, symbol, cancelled_to_filled DESC
"""


def spoofing(
    con: duckdb.DuckDBPyConnection, day: datetime.date, p: dict[str, float]
) -> list[Alert]:
    params = {
        "day": day,
        "look_back": datetime.timedelta(minutes=p["look_back_minutes"]),
        "cancel_after": datetime.timedelta(minutes=p["cancel_after_minutes"]),
        "share_min": p["cancelled_to_placed_min"],
        "filled_min": p["cancelled_to_filled_min"],
        "cancels_min": p["cancelled_orders_min"],
    }
    alerts: dict[tuple[str, str], Alert] = {}
    for row in _rows(con, SPOOFING, params):
        key = (row["account"], row["symbol"])
        if key in alerts:
            continue  # the strongest fill of this account and symbol is already taken
        layering = row["levels"] >= p["layering_levels_min"]
        rule = "layering" if layering else "spoofing"
        alerts[key] = Alert(
            rule,
            _score(row["cancelled_to_filled"] / p["cancelled_to_filled_min"]),
            row["account"],
            row["symbol"],
            row["ts"],
            f"{row['account']} filled {row['filled'].normalize():f} {row['side']} while it "
            f"placed {row['placed'].normalize():f} and cancelled "
            f"{row['cancelled'].normalize():f} on the other side"
            + (f" across {row['levels']} price levels" if layering else ""),
            list(row["orders"] or []),
            [row["trade_id"]],
        )
    return list(alerts.values())


MARKING_THE_CLOSE = """
WITH closes AS (
    SELECT symbol, max(ts) AS close_ts, sum(qty) AS day_volume
    FROM trades WHERE date = $day GROUP BY symbol
), windowed AS (
    SELECT x.*, c.close_ts, c.day_volume
    FROM executions x JOIN closes c USING (symbol)
    WHERE x.date = $day AND x.ts >= c.close_ts - $window
), window_volume AS (
    SELECT symbol, sum(qty) / 2 AS volume FROM windowed GROUP BY symbol
), touched AS (
    SELECT w.*, (b.bid_price + b.ask_price) / 2 AS mid
    FROM windowed w ASOF LEFT JOIN bbo b ON w.symbol = b.symbol AND w.seq > b.seq
)
SELECT t.account, t.symbol, any_value(t.close_ts) AS close_ts,
       sum(t.qty) AS away_volume, any_value(t.day_volume) AS day_volume,
       any_value(v.volume) AS window_volume,
       list(DISTINCT t.trade_id ORDER BY t.trade_id) AS trades,
       list(DISTINCT t.order_id ORDER BY t.order_id) AS orders
FROM touched t JOIN window_volume v USING (symbol)
WHERE t.mid IS NOT NULL
  AND abs(CAST(t.price AS DOUBLE) - CAST(t.mid AS DOUBLE)) >= $away * CAST(t.mid AS DOUBLE)
GROUP BY t.account, t.symbol
HAVING CAST(sum(t.qty) AS DOUBLE) >= $day_share * CAST(any_value(t.day_volume) AS DOUBLE)
    OR CAST(sum(t.qty) AS DOUBLE) >= $window_share * CAST(any_value(v.volume) AS DOUBLE)
ORDER BY t.account, t.symbol
"""


def marking_the_close(
    con: duckdb.DuckDBPyConnection, day: datetime.date, p: dict[str, float]
) -> list[Alert]:
    params = {
        "day": day,
        "window": datetime.timedelta(minutes=p["window_minutes"]),
        "away": p["away_from_touch_min"],
        "day_share": p["share_of_day_min"],
        "window_share": p["share_of_window_min"],
    }
    alerts = []
    for row in _rows(con, MARKING_THE_CLOSE, params):
        share = float(row["away_volume"]) / float(row["window_volume"])
        alerts.append(
            Alert(
                "marking_the_close",
                _score(share / p["share_of_window_min"]),
                row["account"],
                row["symbol"],
                row["close_ts"],
                f"{row['account']} traded {row['away_volume'].normalize():f} of {row['symbol']}"
                f" in the {p['window_minutes']:g} minutes before its close at prices "
                f"{p['away_from_touch_min']:.0%} or more from the mid ({share:.0%} of the "
                "window's volume)",
                list(row["orders"]),
                list(row["trades"]),
            )
        )
    return alerts


# For every aggressive fill, the account's aggressive fills on that side in the window that
# starts there (a sliding window: a run across a minute boundary counts whole); the price
# they reached against the last trade before the first; a fill the other way after.
MOMENTUM_IGNITION = """
WITH aggressive AS (
    SELECT account, symbol, side, seq, ts, price, trade_id, order_id
    FROM executions WHERE date = $day AND role = 'aggressive'
), runs AS (
    SELECT *,
           CASE side WHEN 'buy' THEN max(price) OVER run ELSE min(price) OVER run END
               AS extreme,
           max(ts) OVER run AS last_ts
    FROM aggressive
    WINDOW run AS (PARTITION BY account, symbol, side ORDER BY ts
                   RANGE BETWEEN CURRENT ROW AND {window} FOLLOWING)
), moved AS (
    SELECT r.*, t.price AS before_price,
           CAST(CASE r.side WHEN 'buy' THEN r.extreme - t.price ELSE t.price - r.extreme END
                AS DOUBLE) / CAST(t.price AS DOUBLE) * 10000 AS move_bps
    FROM runs r ASOF JOIN trades t ON r.symbol = t.symbol AND r.seq > t.seq
), reversed AS (
    SELECT m.account, m.symbol, m.side, m.seq, m.ts, m.last_ts, m.before_price, m.move_bps,
           min(x.trade_id) AS reverse_trade
    FROM moved m JOIN executions x
      ON x.account = m.account AND x.symbol = m.symbol AND x.side != m.side
     AND x.ts > m.last_ts AND x.ts <= m.last_ts + $reverse
    WHERE m.move_bps >= $move_bps
    GROUP BY m.account, m.symbol, m.side, m.seq, m.ts, m.last_ts, m.before_price, m.move_bps
    QUALIFY row_number() OVER (PARTITION BY m.account, m.symbol ORDER BY m.move_bps DESC, m.seq)
        = 1
)
SELECT r.*, list(DISTINCT a.trade_id ORDER BY a.trade_id) AS trades,
       list(DISTINCT a.order_id ORDER BY a.order_id) AS orders
FROM reversed r JOIN aggressive a
  ON a.account = r.account AND a.symbol = r.symbol AND a.side = r.side
 AND a.ts BETWEEN r.ts AND r.last_ts
GROUP BY ALL
ORDER BY r.account, r.symbol
"""


def momentum_ignition(
    con: duckdb.DuckDBPyConnection, day: datetime.date, p: dict[str, float]
) -> list[Alert]:
    params = {
        "day": day,
        "reverse": datetime.timedelta(minutes=p["reverse_within_minutes"]),
        "move_bps": p["move_bps_min"],
    }
    # A window frame takes no parameter: the number comes from the checked parameters file.
    window = f"INTERVAL {int(p['window_seconds'] * 1000)} MILLISECONDS"
    sql = MOMENTUM_IGNITION.replace("{window}", window)
    return [
        Alert(
            "momentum_ignition",
            _score(row["move_bps"] / p["move_bps_min"]),
            row["account"],
            row["symbol"],
            row["last_ts"],
            f"{row['account']}'s aggressive {row['side']} orders moved {row['symbol']} "
            f"{row['move_bps']:.0f} bps from {row['before_price'].normalize():f}, then it "
            f"traded the other way (trade {row['reverse_trade']})",
            list(row["orders"]),
            [*row["trades"], row["reverse_trade"]],
        )
        for row in _rows(con, sql, params)
    ]


MESSAGE_RATES = """
SELECT account, any_value(symbol) AS symbol, time_bucket(INTERVAL 1 second, ts) AS second,
       count(*) AS messages, list(DISTINCT order_id) AS orders
FROM order_events
WHERE date = $day AND (event IN ('accepted', 'amended')
                       OR (event = 'cancelled' AND reason IN ('user', 'mass_cancel')))
GROUP BY account, second
HAVING count(*) > $rate_max
ORDER BY account, messages DESC
"""

ORDER_TO_TRADE = """
SELECT account, orders + cancels + 2 * amends AS messages, fills, order_to_trade
FROM account_daily
WHERE date = $day AND orders + cancels + 2 * amends >= $messages_min
  AND (fills = 0 OR order_to_trade > $otr_max)
ORDER BY account
"""


def quote_stuffing(
    con: duckdb.DuckDBPyConnection, day: datetime.date, p: dict[str, float]
) -> list[Alert]:
    alerts: dict[str, Alert] = {}
    rate_max = p["messages_per_second_max"]
    for row in _rows(con, MESSAGE_RATES, {"day": day, "rate_max": rate_max}):
        if row["account"] in alerts:
            continue
        alerts[row["account"]] = Alert(
            "quote_stuffing",
            _score(row["messages"] / rate_max),
            row["account"],
            row["symbol"],
            row["second"],
            f"{row['account']} sent {row['messages']} messages in one second (limit {rate_max:g})",
            list(row["orders"])[:1000],
        )
    try:
        rows = _rows(
            con,
            ORDER_TO_TRADE,
            {"day": day, "messages_min": p["messages_min"], "otr_max": p["order_to_trade_max"]},
        )
    except duckdb.CatalogException:
        rows = []  # no account_daily yet: a warehouse with no order events
    for row in rows:
        if row["account"] in alerts:
            continue
        ratio = row["order_to_trade"]
        alerts[row["account"]] = Alert(
            "quote_stuffing",
            1.0 if ratio is None else _score(ratio / p["order_to_trade_max"]),
            row["account"],
            "",
            datetime.datetime.combine(day, datetime.time(), datetime.UTC),
            f"{row['account']} sent {row['messages']} messages for {row['fills']} fills "
            f"(order-to-trade limit {p['order_to_trade_max']:g})",
        )
    return list(alerts.values())


RULE_FUNCTIONS = {
    "wash_trades": wash_trades,
    "spoofing": spoofing,
    "marking_the_close": marking_the_close,
    "momentum_ignition": momentum_ignition,
    "quote_stuffing": quote_stuffing,
}
