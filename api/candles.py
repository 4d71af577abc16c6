"""OHLCV candles and 24h tickers, built on each node from the trades it applies.

The apply thread adds trades (a listener on the node's event stream); HTTP and
WebSocket handlers read. Candle boundaries use log time, so every node builds
the same candles from the same log.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from cluster.port import EntryApplied
from engine.events import Event, Trade

INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}
CANDLES_PER_SERIES_MAX = 1_500
DAY_MS = 86_400_000


@dataclass(slots=True)
class Candle:
    open_ms: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class Ticker24h:
    open: int
    high: int
    low: int
    last: int
    volume: int
    quote_volume: int
    trades: int


class CandleBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (symbol, interval) -> open_ms -> candle, oldest first
        self._series: dict[tuple[str, str], OrderedDict[int, Candle]] = {}
        self.last_seq = 0
        # While seeding from the store, live trades wait here (the apply thread never blocks).
        self._pending: list[Trade] | None = []

    def on_entry(self, applied: EntryApplied) -> None:
        self.on_events(applied.events)

    def on_events(self, events: Iterable[Event]) -> None:
        with self._lock:
            trades = [e for e in events if type(e) is Trade]
            if self._pending is not None:
                self._pending.extend(trades)
                return
            for trade in trades:
                if trade.seq > self.last_seq:
                    self._add(trade)

    def seed(self, history: Iterable[dict]) -> None:
        """Stored trades (any order) first, then the live ones that came meanwhile."""
        rows = sorted(history, key=lambda row: row["seq"])
        with self._lock:
            for row in rows:
                if row["seq"] > self.last_seq:
                    self._add(
                        Trade(
                            row["seq"],
                            row["ts_ms"],
                            row["trade_id"],
                            row["symbol"],
                            row["price"],
                            row["qty"],
                            row["aggressor_side"],
                            0,
                            "",
                            0,
                            0,
                            0,
                            "",
                            0,
                            0,
                        )
                    )
            pending, self._pending = self._pending or [], None
            for trade in pending:
                if trade.seq > self.last_seq:
                    self._add(trade)

    def _add(self, trade: Trade) -> None:
        for interval, width_ms in INTERVAL_MS.items():
            series = self._series.get((trade.symbol, interval))
            if series is None:
                series = self._series[(trade.symbol, interval)] = OrderedDict()
            open_ms = trade.ts_ms - trade.ts_ms % width_ms
            candle = series.get(open_ms)
            if candle is None:
                # Log time never goes backwards, so a new bucket is always the newest.
                series[open_ms] = Candle(
                    open_ms,
                    trade.price,
                    trade.price,
                    trade.price,
                    trade.price,
                    trade.qty,
                    trade.qty * trade.price,
                    1,
                    trade.seq,
                )
                if len(series) > CANDLES_PER_SERIES_MAX:
                    series.popitem(last=False)
                continue
            candle.high = max(candle.high, trade.price)
            candle.low = min(candle.low, trade.price)
            candle.close = trade.price
            candle.volume += trade.qty
            candle.quote_volume += trade.qty * trade.price
            candle.trades += 1
            candle.last_seq = trade.seq
        self.last_seq = trade.seq

    def candles(
        self, symbol: str, interval: str, limit: int, start_ms: int = 0, end_ms: int = 2**63
    ) -> list[Candle]:
        """Up to `limit` candles opened in [start_ms, end_ms], oldest first: the oldest ones
        when a start is given (a client pages forward), else the newest (copies: the apply
        thread moves on)."""
        with self._lock:
            series = self._series.get((symbol, interval))
            if not series:
                return []
            rows = [c for c in series.values() if start_ms <= c.open_ms <= end_ms]
            rows = rows[:limit] if start_ms else rows[-limit:]
            return [Candle(*(getattr(c, f) for f in Candle.__slots__)) for c in rows]

    def ticker(self, symbol: str, now_ms: int) -> Ticker24h | None:
        """Over the minutes of the last 24 hours of log time; None if nothing traded."""
        return self.window(symbol, now_ms - DAY_MS, now_ms)

    def window(self, symbol: str, since_ms: int, until_ms: int) -> Ticker24h | None:
        """Over the candles opened after `since_ms` up to `until_ms`: minutes for a window
        of a day or less, hours beyond (a day's minutes are all that is kept); None if
        nothing traded."""
        interval = "1m" if until_ms - since_ms <= DAY_MS else "1h"
        with self._lock:
            series = self._series.get((symbol, interval))
            rows = (
                [c for c in series.values() if since_ms < c.open_ms <= until_ms] if series else []
            )
            if not rows:
                return None
            return Ticker24h(
                open=rows[0].open,
                high=max(c.high for c in rows),
                low=min(c.low for c in rows),
                last=rows[-1].close,
                volume=sum(c.volume for c in rows),
                quote_volume=sum(c.quote_volume for c in rows),
                trades=sum(c.trades for c in rows),
            )
