"""Public market data, served by whichever node the client reached (leader or follower).

Every answer carries the sequence number it reflects, so a client can compare
nodes and join a feed where a snapshot left off.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from api.amounts import from_units
from api.candles import INTERVAL_MS, Candle
from api.errors import ApiError
from api.gateway import Gateway, gateway
from api.l3 import l3_json, read_l3
from api.query import int_param
from cluster.rocks import READ_LIMIT_MAX
from cluster.views import BOOK_VIEW_DEPTH, BookView, InstrumentView, NodeView
from engine.codes import Side, TradingPhase, TradingStatus

TRADES_LIMIT_DEFAULT = 100
CANDLES_LIMIT_DEFAULT = 500
CANDLES_LIMIT_MAX = 1_500


def add_public_routes(app: web.Application) -> None:
    app.router.add_get("/v1/time", server_time)
    app.router.add_get("/v1/instruments", instruments)
    app.router.add_get("/v1/instruments/{symbol}", instrument)
    app.router.add_get("/v1/book/{symbol}", book)
    app.router.add_get("/v1/book/{symbol}/l3", book_l3)
    app.router.add_get("/v1/trades/{symbol}", trades)
    app.router.add_get("/v1/candles/{symbol}", candles)
    app.router.add_get("/v1/ticker/{symbol}", ticker)
    app.router.add_get("/v1/cluster", cluster)


async def server_time(request: web.Request) -> web.Response:
    gw = gateway(request)
    return web.json_response(
        {"server_time_ms": int(time.time() * 1000), "log_time_ms": gw.node.view.log_time_ms}
    )


def instrument_json(gw: Gateway, inst: InstrumentView) -> dict[str, Any]:
    price_places, qty_places = gw.scales(inst)
    return {
        "symbol": inst.symbol,
        "base": inst.base,
        "quote": inst.quote,
        "status": TradingStatus(inst.status).name.lower(),
        "resume_at_ms": inst.resume_at_ms,
        "phase": TradingPhase(inst.phase).name.lower(),
        "phase_until_ms": inst.phase_until_ms,
        "auction": auction_json(gw, inst),
        "official_close": gw.price_text(inst, inst.official_close) if inst.official_close else None,
        "price_band": [gw.price_text(inst, price) for price in inst.band] if inst.band[1] else None,
        "limit_state": LIMIT_STATES.get(inst.limit_side),
        "limit_until_ms": inst.limit_until_ms,
        "price_decimals": price_places,
        "qty_decimals": qty_places,
        "tick_size": gw.price_text(inst, inst.tick_size),
        "lot_size": gw.qty_text(inst, inst.lot_size),
        "min_qty": gw.qty_text(inst, inst.min_qty),
        "max_qty": gw.qty_text(inst, inst.max_qty),
        "max_notional": from_units(inst.max_notional, gw.decimals(inst.quote)),
        "price_band_bps": inst.price_band_bps,
        "reference_price": gw.price_text(inst, inst.reference_price),
        "maker_fee_bps": inst.maker_fee_bps,
        "taker_fee_bps": inst.taker_fee_bps,
    }


# Limit up-limit down: which side's best price is at its band.
LIMIT_STATES = {int(Side.BUY): "limit_up", int(Side.SELL): "limit_down"}


def auction_name(phase: int) -> str | None:
    """The auction that made a trade (opening_auction, closing_auction, volatility_auction),
    None for continuous trading."""
    return TradingPhase(phase).name.lower() if phase else None


def auction_json(gw: Gateway, inst: InstrumentView) -> dict[str, Any] | None:
    """In a call phase, the uncross as it stands (indicative_json); None otherwise."""
    if inst.indicative is None:
        return None
    return indicative_json(gw, inst, *inst.indicative)


def indicative_json(
    gw: Gateway, inst: InstrumentView, price: int, volume: int, imbalance: int, side: int
) -> dict[str, Any]:
    """An uncross as it stands: indicative price (None while nothing would trade), matched
    volume, and the imbalance with its side."""
    return {
        "indicative_price": gw.price_text(inst, price) if volume else None,
        "matched_qty": gw.qty_text(inst, volume),
        "imbalance_qty": gw.qty_text(inst, imbalance),
        "imbalance_side": Side(side).name.lower() if imbalance else None,
    }


async def instruments(request: web.Request) -> web.Response:
    gw = gateway(request)
    await gw.wait_for_seq(request)
    view = gw.node.view
    rows = [instrument_json(gw, inst) for _, inst in sorted(view.instruments.items())]
    return web.json_response({"seq": view.last_seq, "instruments": rows})


async def instrument(request: web.Request) -> web.Response:
    gw = gateway(request)
    await gw.wait_for_seq(request)
    inst = gw.instrument(request.match_info["symbol"])
    return web.json_response({"seq": gw.node.view.last_seq, **instrument_json(gw, inst)})


async def book(request: web.Request) -> web.Response:
    """L2: aggregated levels, best first, as of `seq`."""
    gw = gateway(request)
    await gw.wait_for_seq(request)
    inst = gw.instrument(request.match_info["symbol"])
    depth = int_param(request, "depth", 20, 1, BOOK_VIEW_DEPTH)
    view = gw.node.view
    return web.json_response(
        {
            "symbol": inst.symbol,
            # The book's own seq can be older than the view's: nothing in it changed since.
            "seq": view.last_seq,
            **book_sides(gw, inst, view.books.get(inst.symbol), depth),
        }
    )


def book_sides(
    gw: Gateway, inst: InstrumentView, book: BookView | None, depth: int = BOOK_VIEW_DEPTH
) -> dict[str, list[list[Any]]]:
    """L2 levels as [price, qty, orders], best first, as REST and the `book` feed show them."""

    def levels(rows: tuple) -> list[list[Any]]:
        return [[gw.price_text(inst, p), gw.qty_text(inst, q), n] for p, q, n in rows[:depth]]

    return {
        "bids": levels(book.bids) if book else [],
        "asks": levels(book.asks) if book else [],
    }


async def book_l3(request: web.Request) -> web.Response:
    """L3: every visible order (id and quantity, never its owner) per level, time priority."""
    gw = gateway(request)
    await gw.wait_for_seq(request)
    inst = gw.instrument(request.match_info["symbol"])
    depth = int_param(request, "depth", 20, 1, BOOK_VIEW_DEPTH)
    seq, bids, asks = await read_l3(gw, inst.symbol, depth)
    return web.json_response(l3_json(gw, inst.symbol, seq, bids, asks))


async def trades(request: web.Request) -> web.Response:
    gw = gateway(request)
    await gw.wait_for_seq(request)
    inst = gw.instrument(request.match_info["symbol"])
    limit = int_param(request, "limit", TRADES_LIMIT_DEFAULT, 1, READ_LIMIT_MAX)
    before = int_param(request, "before_trade_id", 0, 0, 2**63)
    history = await gw.history_store()
    rows = await asyncio.to_thread(history.trades, inst.symbol, limit, before)
    return web.json_response(
        {
            "symbol": inst.symbol,
            "trades": [
                {
                    "trade_id": row["trade_id"],
                    "seq": row["seq"],
                    "ts_ms": row["ts_ms"],
                    "price": gw.price_text(inst, row["price"]),
                    "qty": gw.qty_text(inst, row["qty"]),
                    "aggressor_side": Side(row["aggressor_side"]).name.lower(),
                    "auction": auction_name(row["auction"]),
                }
                for row in rows
            ],
        }
    )


async def candles(request: web.Request) -> web.Response:
    gw = gateway(request)
    await gw.wait_for_seq(request)
    inst = gw.instrument(request.match_info["symbol"])
    interval = request.query.get("interval", "1m")
    if interval not in INTERVAL_MS:
        raise ApiError(400, "bad_interval", f"interval must be one of {', '.join(INTERVAL_MS)}")
    limit = int_param(request, "limit", CANDLES_LIMIT_DEFAULT, 1, CANDLES_LIMIT_MAX)
    rows = gw.candles.candles(inst.symbol, interval, limit)
    return web.json_response(
        {
            "symbol": inst.symbol,
            "interval": interval,
            "candles": [candle_json(gw, inst, c) for c in rows],
        }
    )


def candle_json(gw: Gateway, inst: InstrumentView, c: Candle) -> dict[str, Any]:
    return {
        "open_ms": c.open_ms,
        "open": gw.price_text(inst, c.open),
        "high": gw.price_text(inst, c.high),
        "low": gw.price_text(inst, c.low),
        "close": gw.price_text(inst, c.close),
        "volume": gw.qty_text(inst, c.volume),
        "quote_volume": gw.quote_text(inst, c.quote_volume),
        "trades": c.trades,
    }


def ticker_json(gw: Gateway, inst: InstrumentView, view: NodeView | None = None) -> dict[str, Any]:
    """L1 and 24h figures as of `view` (by default the node's latest)."""
    view = view or gw.node.view
    book = view.books.get(inst.symbol)
    day = gw.candles.ticker(inst.symbol, view.log_time_ms)
    best_bid = book.bids[0] if book and book.bids else None
    best_ask = book.asks[0] if book and book.asks else None
    out: dict[str, Any] = {
        "symbol": inst.symbol,
        "seq": view.last_seq,
        "bid": gw.price_text(inst, best_bid[0]) if best_bid else None,
        "bid_qty": gw.qty_text(inst, best_bid[1]) if best_bid else None,
        "ask": gw.price_text(inst, best_ask[0]) if best_ask else None,
        "ask_qty": gw.qty_text(inst, best_ask[1]) if best_ask else None,
        "last": None,
        "open_24h": None,
        "high_24h": None,
        "low_24h": None,
        "volume_24h": gw.qty_text(inst, 0),
        "trades_24h": 0,
    }
    last = view.last_trades.get(inst.symbol)
    if last is not None:
        out["last"] = gw.price_text(inst, last.price)
    if day is not None:
        out.update(
            open_24h=gw.price_text(inst, day.open),
            high_24h=gw.price_text(inst, day.high),
            low_24h=gw.price_text(inst, day.low),
            volume_24h=gw.qty_text(inst, day.volume),
            trades_24h=day.trades,
        )
    return out


async def ticker(request: web.Request) -> web.Response:
    gw = gateway(request)
    await gw.wait_for_seq(request)
    return web.json_response(ticker_json(gw, gw.instrument(request.match_info["symbol"])))


async def cluster(request: web.Request) -> web.Response:
    """The cluster as this node sees it: where to send writes, and how far behind it is."""
    node = gateway(request).node
    status = node.status()
    members = [
        {"id": p.node_id, "role": "voter" if p.voter else "replica", "http": p.http}
        for p in sorted(node.members.values(), key=lambda p: p.node_id)
    ]
    return web.json_response(
        {
            "id": status["id"],
            "role": status["role"],
            "leader": status["leader"],
            "leader_http": node.leader_http(),
            "term": status["term"],
            "applied_index": status["applied_index"],
            "commit_index": status["commit_index"],
            "lag": status["lag"],
            "last_seq": status["last_seq"],
            "members": members,
        }
    )
