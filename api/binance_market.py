"""Binance's public market data: exchange info, depth, trades, klines and tickers.

Each read is served by the node the client reached, from its own published view,
candles and history projection, in Binance's field names and number formats.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from api.binance_params import BinanceError
from api.binance_request import (
    ID_MAX,
    int_param,
    param,
    public_params,
    symbol_of,
    time_window,
)
from api.binance_weight import weight_of
from api.candles import DAY_MS, INTERVAL_MS, Ticker24h
from api.gateway import Gateway, gateway
from cluster.rocks import READ_LIMIT_MAX
from cluster.views import InstrumentView
from engine.codes import Side, TradingPhase, TradingStatus
from engine.state import price_band

TRADES_LIMIT_DEFAULT = 500
KLINES_LIMIT_DEFAULT = 500
AGG_TRADES_SPAN_MS_MAX = 3_600_000
AVG_PRICE_MINUTES = 5
ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT")
STP_MODES = ("EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT")
# What each endpoint reads; anything else is refused (-1104), as Binance does.
TICKER_PARAMS = frozenset({"symbol", "symbols", "type"})
ROLLING_PARAMS = frozenset({"symbol", "symbols", "type", "windowSize"})
TRADING_DAY_PARAMS = frozenset({"symbol", "symbols", "type", "timeZone"})
INFO_PARAMS = frozenset({"symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"})
LIST_PARAMS = frozenset({"symbol", "limit"})
HISTORICAL_PARAMS = frozenset({"symbol", "limit", "fromId"})
AGG_PARAMS = frozenset({"symbol", "limit", "fromId", "startTime", "endTime"})
KLINE_PARAMS = frozenset({"symbol", "interval", "limit", "startTime", "endTime", "timeZone"})
SYMBOL_PARAMS = frozenset({"symbol"})

_TRADING = {TradingStatus.HALTED: "HALT", TradingStatus.CLOSED: "BREAK"}
# Binance's symbol statuses for the phases of a trading day: a call phase gathers orders for
# an auction (AUCTION_MATCH), pre-open is PRE_TRADING, after the close POST_TRADING and
# END_OF_DAY. An admin halt or close wins over the phase.
_PHASE_STATUS = {
    TradingPhase.CONTINUOUS: "TRADING",
    TradingPhase.PRE_OPEN: "PRE_TRADING",
    TradingPhase.OPENING_AUCTION: "AUCTION_MATCH",
    TradingPhase.PRE_CLOSE: "AUCTION_MATCH",
    TradingPhase.CLOSING_AUCTION: "AUCTION_MATCH",
    TradingPhase.VOLATILITY_AUCTION: "AUCTION_MATCH",
    TradingPhase.POST_CLOSE: "POST_TRADING",
    TradingPhase.CLOSED: "END_OF_DAY",
}
_WINDOW = re.compile(r"([1-9][0-9]?)([mhd])")
_WINDOW_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": DAY_MS}
_WINDOW_UNIT_MAX = {"m": 59, "h": 23, "d": 7}
_TIME_ZONE = re.compile(r"([+-]?)([0-9]{1,2})(?::([0-5][0-9]))?")


async def ping(request: web.Request) -> web.Response:
    return web.json_response({})


async def server_time(request: web.Request) -> web.Response:
    return web.json_response({"serverTime": int(time.time() * 1000)})


def symbol_status(inst: InstrumentView) -> str:
    if inst.status != TradingStatus.OPEN:
        return _TRADING[TradingStatus(inst.status)]
    return _PHASE_STATUS[TradingPhase(inst.phase)]


def chosen_symbols(gw: Gateway, params: dict[str, str]) -> list[InstrumentView] | None:
    """`symbol` or `symbols` (a JSON array of names), every one known; None when neither
    was sent (every symbol)."""
    if "symbol" in params and "symbols" in params:
        raise BinanceError(400, -1102, "Parameter 'symbol' and 'symbols' cannot be sent together.")
    if "symbol" in params:
        return [symbol_of(gw, params)]
    if "symbols" not in params:
        return None
    try:
        names = json.loads(params["symbols"])
    except ValueError:
        names = None
    if not isinstance(names, list) or not names or not all(type(n) is str for n in names):
        raise BinanceError(400, -1100, "Illegal characters found in parameter 'symbols'.")
    instruments = gw.node.view.instruments
    unknown = [n for n in names if n not in instruments]
    if unknown:
        raise BinanceError(400, -1121, f"Invalid symbol: {unknown[0]}.")
    return [instruments[n] for n in dict.fromkeys(names)]


def _every_or(gw: Gateway, params: dict[str, str]) -> list[InstrumentView]:
    chosen = chosen_symbols(gw, params)
    if chosen is None:
        return [inst for _, inst in sorted(gw.node.view.instruments.items())]
    return chosen


async def exchange_info(request: web.Request) -> web.Response:
    gw = gateway(request)
    params = public_params(request, INFO_PARAMS)
    instruments = _every_or(gw, params)
    if "permissions" in params and "SPOT" not in params["permissions"]:
        instruments = []
    status = params.get("symbolStatus")
    if status is not None:
        instruments = [inst for inst in instruments if symbol_status(inst) == status]
    config = gw.node.config
    return web.json_response(
        {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": weight_of(request).limit_per_min,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 1,
                    "limit": int(config.rate_limit_key_per_s),
                },
            ],
            "exchangeFilters": [],
            "symbols": [symbol_info(gw, inst) for inst in instruments],
        }
    )


def symbol_info(gw: Gateway, inst: InstrumentView) -> dict[str, Any]:
    qty_places = gw.scales(inst)[1]
    low, high = price_band(inst.reference_price, inst.price_band_bps, inst.tick_size)
    return {
        "symbol": inst.symbol,
        "status": symbol_status(inst),
        "baseAsset": inst.base,
        "baseAssetPrecision": qty_places,
        "quoteAsset": inst.quote,
        "quotePrecision": gw.decimals(inst.quote),
        "quoteAssetPrecision": gw.decimals(inst.quote),
        "baseCommissionPrecision": qty_places,
        "quoteCommissionPrecision": gw.decimals(inst.quote),
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": True,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": False,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": gw.price_text(inst, low),
                "maxPrice": gw.price_text(inst, high),
                "tickSize": gw.price_text(inst, inst.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": gw.qty_text(inst, inst.min_qty),
                "maxQty": gw.qty_text(inst, inst.max_qty),
                "stepSize": gw.qty_text(inst, inst.lot_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": gw.qty_text(inst, inst.min_qty),
                "maxQty": gw.qty_text(inst, inst.max_qty),
                "stepSize": gw.qty_text(inst, inst.lot_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": gw.quote_text(inst, 0),
                "applyMinToMarket": False,
                "maxNotional": gw.quote_text(inst, inst.max_notional),
                "applyMaxToMarket": True,
                "avgPriceMins": 0,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_TAKER",
        "allowedSelfTradePreventionModes": list(STP_MODES),
    }


async def depth(request: web.Request) -> web.Response:
    gw = gateway(request)
    params = public_params(request, LIST_PARAMS)
    inst = symbol_of(gw, params)
    limit = int_param(params, "limit", 100, 1, 5000) or 100
    view = gw.node.view
    book = view.books.get(inst.symbol)

    def levels(rows: tuple) -> list[list[str]]:
        return [[gw.price_text(inst, p), gw.qty_text(inst, q)] for p, q, _ in rows[:limit]]

    return web.json_response(
        {
            "lastUpdateId": view.last_seq,
            "bids": levels(book.bids) if book else [],
            "asks": levels(book.asks) if book else [],
        }
    )


def _trade_json(gw: Gateway, inst: InstrumentView, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["trade_id"],
        "price": gw.price_text(inst, row["price"]),
        "qty": gw.qty_text(inst, row["qty"]),
        "quoteQty": gw.quote_text(inst, row["price"] * row["qty"]),
        "time": row["ts_ms"],
        "isBuyerMaker": row["aggressor_side"] == Side.SELL,
        "isBestMatch": True,
    }


def _agg_json(gw: Gateway, inst: InstrumentView, row: dict[str, Any]) -> dict[str, Any]:
    """Every raftex trade is its own aggregate (first and last trade id equal): a fill is
    already one price, one taker and one maker."""
    return {
        "a": row["trade_id"],
        "p": gw.price_text(inst, row["price"]),
        "q": gw.qty_text(inst, row["qty"]),
        "f": row["trade_id"],
        "l": row["trade_id"],
        "T": row["ts_ms"],
        "m": row["aggressor_side"] == Side.SELL,
        "M": True,
    }


async def _latest(gw: Gateway, inst: InstrumentView, limit: int) -> list[dict[str, Any]]:
    """The symbol's latest trades (up to `limit`), oldest first."""
    history = await gw.history_store()
    rows = await asyncio.to_thread(history.trades, inst.symbol, limit, 0)
    return rows[::-1]


def _trade_request(
    request: web.Request, allowed: frozenset[str]
) -> tuple[Gateway, dict[str, str], InstrumentView, int]:
    gw = gateway(request)
    params = public_params(request, allowed)
    inst = symbol_of(gw, params)
    limit = int_param(params, "limit", TRADES_LIMIT_DEFAULT, 1, READ_LIMIT_MAX) or 1
    return gw, params, inst, limit


async def trades(request: web.Request) -> web.Response:
    gw, _, inst, limit = _trade_request(request, LIST_PARAMS)
    return web.json_response([_trade_json(gw, inst, r) for r in await _latest(gw, inst, limit)])


async def historical_trades(request: web.Request) -> web.Response:
    """Older trades from `fromId` on (ascending), or the latest ones."""
    gw, params, inst, limit = _trade_request(request, HISTORICAL_PARAMS)
    from_id = int_param(params, "fromId", 0, 0, ID_MAX) or 0
    if "fromId" not in params:
        rows = await _latest(gw, inst, limit)
    else:
        history = await gw.history_store()
        rows = await asyncio.to_thread(history.trades_from, inst.symbol, from_id, limit)
    return web.json_response([_trade_json(gw, inst, r) for r in rows])


async def agg_trades(request: web.Request) -> web.Response:
    """From `fromId`, or within [startTime, endTime] (at most an hour apart), or the latest."""
    gw, params, inst, limit = _trade_request(request, AGG_PARAMS)
    from_id = int_param(params, "fromId", 0, 0, ID_MAX) or 0
    start, end = time_window(params, AGG_TRADES_SPAN_MS_MAX)
    if "fromId" in params and ("startTime" in params or "endTime" in params):
        raise BinanceError(
            400, -1128, "Combination of optional parameters invalid: fromId with a time window."
        )
    if "fromId" not in params and "startTime" not in params and "endTime" not in params:
        rows = await _latest(gw, inst, limit)
    else:
        history = await gw.history_store()
        if "fromId" not in params:
            from_id = await asyncio.to_thread(history.first_trade_at, inst.symbol, start)
        rows = (
            await asyncio.to_thread(history.trades_from, inst.symbol, from_id, limit)
            if from_id or "fromId" in params
            else []
        )
        rows = [r for r in rows if r["ts_ms"] <= end]
    return web.json_response([_agg_json(gw, inst, r) for r in rows])


async def klines(request: web.Request) -> web.Response:
    gw = gateway(request)
    params = public_params(request, KLINE_PARAMS)
    inst = symbol_of(gw, params)
    interval = param(params, "interval")
    if interval not in INTERVAL_MS:
        raise BinanceError(400, -1120, "Invalid interval.")
    if _time_zone_ms(params) != 0:
        raise BinanceError(400, -1100, "Only timeZone 0 (UTC) is supported for klines.")
    limit = int_param(params, "limit", KLINES_LIMIT_DEFAULT, 1, 1000) or 1
    start, end = time_window(params)
    width_ms = INTERVAL_MS[interval]
    # A candle that started before startTime but covers it counts, as Binance's does.
    first_open = start - start % width_ms
    return web.json_response(
        [
            [
                c.open_ms,
                gw.price_text(inst, c.open),
                gw.price_text(inst, c.high),
                gw.price_text(inst, c.low),
                gw.price_text(inst, c.close),
                gw.qty_text(inst, c.volume),
                c.open_ms + width_ms - 1,
                gw.quote_text(inst, c.quote_volume),
                c.trades,
                "0",
                "0",
                "0",
            ]
            for c in gw.candles.candles(inst.symbol, interval, limit, first_open, end)
        ]
    )


async def avg_price(request: web.Request) -> web.Response:
    """The volume-weighted price of the last five minutes' trades (the last price when none)."""
    gw = gateway(request)
    inst = symbol_of(gw, public_params(request, SYMBOL_PARAMS))
    view = gw.node.view
    now_ms = view.log_time_ms
    window = gw.candles.window(inst.symbol, now_ms - AVG_PRICE_MINUTES * 60_000, now_ms)
    last = view.last_trades.get(inst.symbol)
    price = last.price if last else 0
    if window is not None and window.volume:
        price = window.quote_volume // window.volume
    return web.json_response(
        {
            "mins": AVG_PRICE_MINUTES,
            "price": gw.price_text(inst, price),
            "closeTime": last.ts_ms if last else now_ms,
        }
    )


def _one_or_many(
    gw: Gateway, params: dict[str, str], row: Callable[[InstrumentView], dict[str, Any]]
) -> web.Response:
    """One object for `symbol`, a list for `symbols` or for every symbol."""
    rows = [row(inst) for inst in _every_or(gw, params)]
    return web.json_response(rows[0] if "symbol" in params else rows)


def _full(params: dict[str, str]) -> bool:
    kind = params.get("type", "FULL")
    if kind not in ("FULL", "MINI"):
        raise BinanceError(400, -1102, "Parameter 'type' must be FULL or MINI.")
    return kind == "FULL"


def _stats(
    gw: Gateway,
    inst: InstrumentView,
    window: Ticker24h | None,
    since_ms: int,
    until_ms: int,
    full: bool,
) -> dict[str, Any]:
    """A ticker's figures over one window, in Binance's names (FULL or MINI)."""
    last = gw.node.view.last_trades.get(inst.symbol)
    last_price = last.price if last else 0
    open_price = window.open if window else last_price
    row: dict[str, Any] = {"symbol": inst.symbol}
    if full:
        change = last_price - open_price
        weighted = window.quote_volume // window.volume if window and window.volume else last_price
        row.update(
            priceChange=gw.price_text(inst, change),
            priceChangePercent=f"{change * 100 / open_price:.3f}" if open_price else "0.000",
            weightedAvgPrice=gw.price_text(inst, weighted),
        )
    row.update(
        openPrice=gw.price_text(inst, open_price),
        highPrice=gw.price_text(inst, window.high if window else last_price),
        lowPrice=gw.price_text(inst, window.low if window else last_price),
        lastPrice=gw.price_text(inst, last_price),
        volume=gw.qty_text(inst, window.volume if window else 0),
        quoteVolume=gw.quote_text(inst, window.quote_volume if window else 0),
        openTime=since_ms,
        closeTime=until_ms,
        firstId=-1,
        lastId=-1,
        count=window.trades if window else 0,
    )
    return row


def _top(gw: Gateway, inst: InstrumentView) -> dict[str, str]:
    book = gw.node.view.books.get(inst.symbol)
    bid = book.bids[0] if book and book.bids else (0, 0, 0)
    ask = book.asks[0] if book and book.asks else (0, 0, 0)
    return {
        "bidPrice": gw.price_text(inst, bid[0]),
        "bidQty": gw.qty_text(inst, bid[1]),
        "askPrice": gw.price_text(inst, ask[0]),
        "askQty": gw.qty_text(inst, ask[1]),
    }


async def ticker_24hr(request: web.Request) -> web.Response:
    gw = gateway(request)
    params = public_params(request, TICKER_PARAMS)
    full = _full(params)
    now_ms = gw.node.view.log_time_ms

    def row(inst: InstrumentView) -> dict[str, Any]:
        window = gw.candles.ticker(inst.symbol, now_ms)
        stats = _stats(gw, inst, window, now_ms - DAY_MS, now_ms, full)
        if not full:
            return stats
        last = gw.node.view.last_trades.get(inst.symbol)
        return {
            **stats,
            "prevClosePrice": stats["openPrice"],
            "lastQty": gw.qty_text(inst, last.qty if last else 0),
            **_top(gw, inst),
        }

    return _one_or_many(gw, params, row)


def _window_request(
    request: web.Request, allowed: frozenset[str]
) -> tuple[Gateway, dict[str, str], bool, int]:
    """A windowed ticker's parameters: `symbol` or `symbols` required, FULL or MINI; with
    the node's log time (the window's end)."""
    gw = gateway(request)
    params = public_params(request, allowed)
    full = _full(params)
    if "symbol" not in params and "symbols" not in params:
        raise BinanceError(400, -1102, "Parameter 'symbol' or 'symbols' must be sent.")
    return gw, params, full, gw.node.view.log_time_ms


async def ticker_rolling(request: web.Request) -> web.Response:
    """GET /api/v3/ticker: the figures over `windowSize` (1m..59m, 1h..23h, 1d..7d)."""
    gw, params, full, now_ms = _window_request(request, ROLLING_PARAMS)
    text = params.get("windowSize", "1d")
    match = _WINDOW.fullmatch(text)
    if match is None or int(match[1]) > _WINDOW_UNIT_MAX[match[2]]:
        raise BinanceError(400, -1100, f"Invalid windowSize {text!r}: 1m..59m, 1h..23h, 1d..7d.")
    span_ms = int(match[1]) * _WINDOW_UNIT_MS[match[2]]

    def row(inst: InstrumentView) -> dict[str, Any]:
        window = gw.candles.window(inst.symbol, now_ms - span_ms, now_ms)
        return _stats(gw, inst, window, now_ms - span_ms, now_ms, full)

    return _one_or_many(gw, params, row)


def _time_zone_ms(params: dict[str, str]) -> int:
    """`timeZone` as Binance spells it ("0", "+8", "-1:30"; -12:00..+14:00), in ms."""
    text = params.get("timeZone", "0")
    match = _TIME_ZONE.fullmatch(text)
    if match is None:
        raise BinanceError(400, -1100, f"Invalid timeZone {text!r}: hours like +8 or -1:30.")
    offset_ms = (int(match[2]) * 60 + int(match[3] or 0)) * 60_000
    offset_ms = -offset_ms if match[1] == "-" else offset_ms
    if not -12 * 3_600_000 <= offset_ms <= 14 * 3_600_000:
        raise BinanceError(400, -1100, f"Invalid timeZone {text!r}: -12:00..+14:00.")
    return offset_ms


async def ticker_trading_day(request: web.Request) -> web.Response:
    """The figures since the start of today in `timeZone` (UTC by default)."""
    gw, params, full, now_ms = _window_request(request, TRADING_DAY_PARAMS)
    offset_ms = _time_zone_ms(params)
    day_start = now_ms - (now_ms + offset_ms) % DAY_MS

    def row(inst: InstrumentView) -> dict[str, Any]:
        window = gw.candles.window(inst.symbol, day_start - 1, now_ms)
        return _stats(gw, inst, window, day_start, now_ms, full)

    return _one_or_many(gw, params, row)


async def ticker_price(request: web.Request) -> web.Response:
    gw = gateway(request)

    def row(inst: InstrumentView) -> dict[str, Any]:
        last = gw.node.view.last_trades.get(inst.symbol)
        return {"symbol": inst.symbol, "price": gw.price_text(inst, last.price if last else 0)}

    return _one_or_many(gw, public_params(request, TICKER_PARAMS - {"type"}), row)


async def book_ticker(request: web.Request) -> web.Response:
    gw = gateway(request)

    def row(inst: InstrumentView) -> dict[str, Any]:
        return {"symbol": inst.symbol, **_top(gw, inst)}

    return _one_or_many(gw, public_params(request, TICKER_PARAMS - {"type"}), row)
