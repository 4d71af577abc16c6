"""The warehouse's tables: their columns, as Parquet (pyarrow) schemas.

Amounts (prices, quantities, notionals, fees) are exact decimals in the asset's units,
DECIMAL(38, 18): the engine's minor units scaled by the asset's decimals (at most 18), so
no amount is ever rounded. Timestamps are UTC, in microseconds (log time has milliseconds).
Every fact table has the event sequence `seq` of the row's event: rows sort by it, and an
incremental build resumes after the last one.
"""

from __future__ import annotations

import pyarrow as pa

AMOUNT = pa.decimal128(38, 18)
TIME = pa.timestamp("us", tz="UTC")

ORDER_EVENTS = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("event", pa.string()),  # accepted amended cancelled expired triggered filled ...
        ("order_id", pa.int64()),
        ("account", pa.string()),
        ("member", pa.string()),
        ("owner", pa.string()),
        ("capacity", pa.string()),  # DEAL MTCH AOTC
        ("client_order_id", pa.string()),
        ("symbol", pa.string()),
        ("side", pa.string()),  # buy sell
        ("order_type", pa.string()),  # limit market stop stop_limit
        ("tif", pa.string()),  # gtc ioc fok day gtd
        ("price", AMOUNT),
        ("stop_price", AMOUNT),
        ("qty", AMOUNT),  # the order's quantity now (an amend changes it)
        ("leaves", AMOUNT),  # remaining after this event
        ("display_qty", AMOUNT),  # 0: all of it is displayed
        ("traded_qty", AMOUNT),  # this event's fill, else 0
        ("cancelled_qty", AMOUNT),  # what this event cancelled (or let expire), else 0
        ("cum_qty", AMOUNT),  # filled so far
        ("trade_id", pa.int64()),  # a fill's trade, else null
        ("role", pa.string()),  # a fill's: passive aggressive
        ("reason", pa.string()),  # a cancel's reason
        ("accepted_ts", TIME),  # the order's acceptance (RTS 24's priority time, with amends)
        ("priority_ts", TIME),  # when the order last took its place in the queue
        ("expire_at", TIME),
    ]
)

EXECUTIONS = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("trade_id", pa.int64()),
        ("symbol", pa.string()),
        ("order_id", pa.int64()),
        ("account", pa.string()),
        ("member", pa.string()),
        ("owner", pa.string()),
        ("side", pa.string()),
        ("role", pa.string()),  # passive (the resting maker) or aggressive (the taker)
        ("price", AMOUNT),
        ("qty", AMOUNT),
        ("notional", AMOUNT),
        ("fee", AMOUNT),
        ("leaves", AMOUNT),
    ]
)

TRADES = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("trade_id", pa.int64()),
        ("symbol", pa.string()),
        ("price", AMOUNT),
        ("qty", AMOUNT),
        ("notional", AMOUNT),
        ("aggressor_side", pa.string()),
        ("buy_order_id", pa.int64()),
        ("buy_account", pa.string()),
        ("sell_order_id", pa.int64()),
        ("sell_account", pa.string()),
        # opening_auction closing_auction volatility_auction; null in continuous trading
        ("auction", pa.string()),
    ]
)

BBO = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("symbol", pa.string()),
        ("bid_price", AMOUNT),  # null: no bid
        ("bid_qty", AMOUNT),
        ("ask_price", AMOUNT),
        ("ask_qty", AMOUNT),
    ]
)

HALTS = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("symbol", pa.string()),
        ("status", pa.string()),  # open halted closed
        ("reason", pa.string()),
        ("resume_at", TIME),
        ("changed_by", pa.string()),  # the operator, for a halt or resumption by hand
    ]
)

PHASES = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("symbol", pa.string()),
        # continuous closed pre_open opening_auction pre_close closing_auction post_close
        # volatility_auction
        ("phase", pa.string()),
        ("reason", pa.string()),  # calendar circuit_breaker pause_ended admin
        ("until", TIME),  # when the phase is next due to change; null: not scheduled
        ("changed_by", pa.string()),
    ]
)

SESSIONS = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("symbol", pa.string()),
        ("session_start", TIME),
        ("local_date", pa.string()),  # the session's date on the exchange's wall clock
        ("close_price", AMOUNT),  # the official close; null: the symbol never traded
        ("from_auction", pa.bool_()),  # the closing auction's price, else the last trade's
    ]
)

PRICE_BANDS = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("symbol", pa.string()),
        ("reference", AMOUNT),  # limit up-limit down: the mean of the window's trades
        ("band_lo", AMOUNT),
        ("band_hi", AMOUNT),
        ("limit_state", pa.string()),  # limit_up limit_down; null: none
        ("limit_until", TIME),  # when the pause is due if the book stays at the band
    ]
)

CONTROL_BREACHES = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("account", pa.string()),
        ("member", pa.string()),
        ("client_id", pa.string()),
        ("command", pa.string()),
        ("code", pa.string()),
        ("message", pa.string()),
    ]
)

BALANCE_CHANGES = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("account", pa.string()),
        ("asset", pa.string()),
        ("available", AMOUNT),
        ("held", AMOUNT),
    ]
)

TRANSFERS = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("account", pa.string()),
        ("member", pa.string()),
        ("asset", pa.string()),
        ("amount", AMOUNT),  # > 0 a deposit, < 0 a withdrawal
        ("request_id", pa.string()),
    ]
)

REFERENCE_CHANGES = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", TIME),
        ("kind", pa.string()),  # instrument account_profile account asset rate_limit
        ("key", pa.string()),
        ("detail", pa.string()),  # the change, as JSON
        ("changed_by", pa.string()),  # the operator who made it (the admin CLI's --operator)
    ]
)

# Fact tables: one row per event, appended in sequence order.
FACT_TABLES: dict[str, pa.Schema] = {
    "order_events": ORDER_EVENTS,
    "executions": EXECUTIONS,
    "trades": TRADES,
    "bbo": BBO,
    "halts": HALTS,
    "phases": PHASES,
    "sessions": SESSIONS,
    "price_bands": PRICE_BANDS,
    "control_breaches": CONTROL_BREACHES,
    "balance_changes": BALANCE_CHANGES,
    "transfers": TRANSFERS,
    "reference_changes": REFERENCE_CHANGES,
}

# Derived tables: recomputed with DuckDB (warehouse/derived.py) for every date a build
# touched.
DERIVED_TABLES = ("orders", "ohlcv_daily", "account_daily", "member_daily")
