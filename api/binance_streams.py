"""Binance's WebSocket market streams on every node: `/ws/<stream>` (raw payloads), `/ws` then
SUBSCRIBE, `/stream?streams=a/b/c` (combined: {"stream": name, "data": payload}), and the
WebSocket API's user data subscription (`/ws-api/v3`), in Binance's names and shapes, so that
ccxt.pro, python-binance and bots written for Binance read raftex unchanged.

They ride the native feed hub (api/feeds.py): its subscriber registry, its write path with
the slow-consumer cut, and one render per entry shared by every subscriber of a stream. A
stream is a hub key, (RAW, name) or (COMBINED, name), and both texts are rendered once.

Diff depth (`@depth`, `@depth@100ms`) numbers its updates in the engine's global sequence:
`u` is the book's seq after the entry (BookView.seq) and `U` one past the book's seq in the
view before the entry. A book's view is rebuilt exactly when one of its levels changes, so
nothing changed the book between U-1 and u: a REST snapshot (`/api/v3/depth`, whose
lastUpdateId is the view's last seq) at any id in between, plus the diffs after it, is the
book exactly, which is Binance's "how to manage a local order book" procedure. Seq N is the
same on every node, so it holds against any node and after a reconnect to another. Each diff
lists the absolute quantity of every level the entry changed ("0": gone).

Streams are pushed per entry (Binance batches into 100 ms or 1 s), so `@100ms` names are the
same streams. Klines carry no first trade id (`f` -1) and no taker-buy volumes (the candle
book keeps neither) and are never marked closed (`x`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from api.binance_params import BinanceError
from api.binance_user_stream import (
    USER_COMBINED,
    USER_RAW,
    USER_STREAMS_KEY,
    USER_WS_API,
    WS_API_SUBSCRIPTION_ID,
    UserStreams,
    listen_key_expired,
    wrap_user_event,
    ws_api_key,
)
from api.candles import INTERVAL_MS, Candle
from api.feeds import (
    HUB_KEY,
    EntryState,
    FeedHub,
    Key,
    Rows,
    Subscriber,
    close_when_cut,
    open_feed_socket,
)
from api.gateway import Gateway
from api.json_input import JsonRefused, parse_json
from cluster.port import EntryApplied
from cluster.views import BookView, InstrumentView, NodeView
from engine.codes import Side
from engine.events import Event, LevelChanged, Trade

RAW = "binance"
COMBINED = "binance.stream"
ALL_MINI_TICKERS = "!miniTicker@arr"
DEPTH_PARTIAL_LEVELS = (5, 10, 20)
KLINE_KINDS = tuple(f"kline_{interval}" for interval in INTERVAL_MS)
DIFF_DEPTH_KINDS = ("depth", "depth@100ms")
PARTIAL_DEPTH_KINDS = {
    f"depth{levels}{rate}": levels for levels in DEPTH_PARTIAL_LEVELS for rate in ("", "@100ms")
}
SYMBOL_KINDS = frozenset(
    {
        "trade",
        "aggTrade",
        "miniTicker",
        "ticker",
        "bookTicker",
        *KLINE_KINDS,
        *DIFF_DEPTH_KINDS,
        *PARTIAL_DEPTH_KINDS,
    }
)
# Streams per connection as on Binance; messages a client may send a second: twice Binance's 5,
# as clients (ccxt.pro) send one SUBSCRIBE per watch call, several at once.
STREAMS_PER_CONNECTION_MAX = 1_024
INCOMING_MESSAGES_PER_S_MAX = 10
# A SUBSCRIBE naming many streams is larger than a native feed message.
MESSAGE_BYTES_MAX = 64 * 1024
# Binance pings every 20 s; a client that stops answering is dropped by TCP_USER_TIMEOUT.
PING_INTERVAL_S = 20.0
LISTEN_KEY_CHECK_S = 5.0
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS")
# Binance's WebSocket error codes.
ERROR_UNKNOWN_PROPERTY = 0
ERROR_BAD_VALUE_TYPE = 1
ERROR_BAD_REQUEST = 2
ERROR_BAD_JSON = 3


@dataclass(frozen=True, slots=True)
class Stream:
    """A market stream as the client named it (`aapl@depth@100ms`): the instrument (empty for
    `!miniTicker@arr`) and the kind after the first `@`."""

    name: str
    symbol: str
    kind: str


def parse_stream(view: NodeView, name: str) -> Stream | None:
    """The stream a name stands for, or None: symbols are lowercase in stream names, as on
    Binance."""
    if name == ALL_MINI_TICKERS:
        return Stream(name, "", name)
    head, at, kind = name.partition("@")
    if not at or kind not in SYMBOL_KINDS or head != head.lower():
        return None
    symbol = next((s for s in view.instruments if s.lower() == head), None)
    return None if symbol is None else Stream(name, symbol, kind)


def depth_update_ids(symbol: str, events: list[Event], state: EntryState) -> tuple[int, int]:
    """(U, u) of a book's diff for one entry. Without the view right before the entry (the
    hub's first entry, or the node loaded a snapshot in between), U is the entry's first seq:
    a narrower claim, still true, that makes a client whose last u is older start again."""
    after = state.view.books[symbol].seq
    before = state.before
    first_seq = events[0].seq
    if before is not None and before.last_seq == first_seq - 1:
        book = before.books.get(symbol)
        if book is not None:
            return book.seq + 1, after
    return first_seq, after


def _wanted(wanted: Any, name: str) -> bool:
    return (RAW, name) in wanted or (COMBINED, name) in wanted


def _emit(out: Rows, wanted: Any, name: str, seq: int, payload: Any) -> None:
    text = _dump(payload)
    if (RAW, name) in wanted:
        out[(RAW, name)].append((seq, text))
    if (COMBINED, name) in wanted:
        out[(COMBINED, name)].append((seq, f'{{"stream":"{name}","data":{text}}}'))


class MarketStreams:
    """What the hub calls for the Binance market streams: a capture on the apply thread (the
    candles klines show, as they stand after the entry) and a renderer on the loop."""

    def __init__(self, gw: Gateway, capture_index: int) -> None:
        self.gw = gw
        self.capture_index = capture_index

    def capture(self, applied: EntryApplied, wanted: Any) -> dict[tuple[str, str], Candle]:
        klines: dict[tuple[str, str], Candle] = {}
        for event in applied.events:
            if type(event) is not Trade:
                continue
            lower = event.symbol.lower()
            for interval in INTERVAL_MS:
                where = (event.symbol, interval)
                if where not in klines and _wanted(wanted, f"{lower}@kline_{interval}"):
                    rows = self.gw.candles.candles(event.symbol, interval, 1)
                    if rows:
                        klines[where] = rows[0]
        return klines

    def render(self, events: list[Event], wanted: Any, state: EntryState) -> Rows:
        out: Rows = defaultdict(list)
        trades: dict[str, list[Trade]] = {}
        levels: dict[str, dict[tuple[int, int], int]] = {}
        for event in events:
            kind = type(event)
            if kind is Trade:
                trades.setdefault(event.symbol, []).append(event)
            elif kind is LevelChanged:
                levels.setdefault(event.symbol, {})[(event.side, event.price)] = event.qty
        if not trades and not levels:
            return out
        gw = self.gw
        view = state.view
        last_seq = events[-1].seq
        ts_ms = events[-1].ts_ms
        klines = state.captured[self.capture_index] if state.captured else {}
        minis = []
        for symbol, symbol_trades in trades.items():
            inst = gw.instrument(symbol)
            lower = symbol.lower()
            for kind in ("trade", "aggTrade"):
                name = f"{lower}@{kind}"
                if _wanted(wanted, name):
                    for trade in symbol_trades:
                        _emit(out, wanted, name, trade.seq, self._trade(inst, trade, kind))
            for interval in INTERVAL_MS:
                candle = klines.get((symbol, interval))
                if candle is not None:
                    payload = self._kline(inst, interval, candle, symbol_trades[-1], ts_ms)
                    _emit(out, wanted, f"{lower}@kline_{interval}", last_seq, payload)
            if _wanted(wanted, f"{lower}@ticker"):
                _emit(out, wanted, f"{lower}@ticker", last_seq, self.ticker(inst, view, ts_ms))
            if _wanted(wanted, f"{lower}@miniTicker") or _wanted(wanted, ALL_MINI_TICKERS):
                mini = self.mini_ticker(inst, view, ts_ms)
                minis.append(mini)
                _emit(out, wanted, f"{lower}@miniTicker", last_seq, mini)
        if minis and _wanted(wanted, ALL_MINI_TICKERS):
            _emit(out, wanted, ALL_MINI_TICKERS, last_seq, minis)
        for symbol, changed in levels.items():
            self._render_book(out, wanted, symbol, changed, events, state)
        return out

    def _render_book(
        self,
        out: Rows,
        wanted: Any,
        symbol: str,
        changed: dict[tuple[int, int], int],
        events: list[Event],
        state: EntryState,
    ) -> None:
        gw = self.gw
        inst = gw.instrument(symbol)
        lower = symbol.lower()
        book = state.view.books[symbol]
        diffs = [
            name for name in (f"{lower}@{k}" for k in DIFF_DEPTH_KINDS) if _wanted(wanted, name)
        ]
        if diffs:
            first, last = depth_update_ids(symbol, events, state)
            rows = sorted(changed.items(), key=lambda row: (row[0][0], -row[0][1]))
            sides: dict[int, list[list[str]]] = {Side.BUY: [], Side.SELL: []}
            for (side, price), qty in rows:
                sides[side].append([gw.price_text(inst, price), gw.qty_text(inst, qty)])
            sides[Side.SELL].reverse()  # asks from the best (lowest) up
            payload = {
                "e": "depthUpdate",
                "E": events[-1].ts_ms,
                "s": symbol,
                "U": first,
                "u": last,
                "b": sides[Side.BUY],
                "a": sides[Side.SELL],
            }
            for name in diffs:
                _emit(out, wanted, name, last, payload)
        for kind, depth in PARTIAL_DEPTH_KINDS.items():
            name = f"{lower}@{kind}"
            if _wanted(wanted, name):
                _emit(out, wanted, name, book.seq, self.partial_depth(inst, book, depth))
        name = f"{lower}@bookTicker"
        if _wanted(wanted, name):
            before = state.before.books.get(symbol) if state.before is not None else None
            if before is None or _top(before) != _top(book):
                _emit(out, wanted, name, book.seq, self.book_ticker(inst, book))

    # ------------------------------------------------------------ payloads

    def _trade(self, inst: InstrumentView, trade: Trade, kind: str) -> dict[str, Any]:
        gw = self.gw
        price, qty = gw.price_text(inst, trade.price), gw.qty_text(inst, trade.qty)
        # The buyer is the maker when the aggressor sold.
        buyer_maker = trade.aggressor_side == Side.SELL
        if kind == "trade":
            return {
                "e": "trade",
                "E": trade.ts_ms,
                "s": inst.symbol,
                "t": trade.trade_id,
                "p": price,
                "q": qty,
                "T": trade.ts_ms,
                "m": buyer_maker,
                "M": True,
            }
        # Every raftex trade is its own aggregate, as in /api/v3/aggTrades.
        return {
            "e": "aggTrade",
            "E": trade.ts_ms,
            "s": inst.symbol,
            "a": trade.trade_id,
            "p": price,
            "q": qty,
            "f": trade.trade_id,
            "l": trade.trade_id,
            "T": trade.ts_ms,
            "m": buyer_maker,
            "M": True,
        }

    def _kline(
        self, inst: InstrumentView, interval: str, candle: Candle, last: Trade, ts_ms: int
    ) -> dict[str, Any]:
        gw = self.gw
        zero_qty, zero_quote = gw.qty_text(inst, 0), gw.quote_text(inst, 0)
        return {
            "e": "kline",
            "E": ts_ms,
            "s": inst.symbol,
            "k": {
                "t": candle.open_ms,
                "T": candle.open_ms + INTERVAL_MS[interval] - 1,
                "s": inst.symbol,
                "i": interval,
                "f": -1,
                "L": last.trade_id,
                "o": gw.price_text(inst, candle.open),
                "c": gw.price_text(inst, candle.close),
                "h": gw.price_text(inst, candle.high),
                "l": gw.price_text(inst, candle.low),
                "v": gw.qty_text(inst, candle.volume),
                "n": candle.trades,
                "x": False,
                "q": gw.quote_text(inst, candle.quote_volume),
                "V": zero_qty,
                "Q": zero_quote,
                "B": "0",
            },
        }

    def mini_ticker(self, inst: InstrumentView, view: NodeView, ts_ms: int) -> dict[str, Any]:
        gw = self.gw
        day = gw.candles.ticker(inst.symbol, view.log_time_ms)
        last = view.last_trades.get(inst.symbol)
        last_price = last.price if last else 0
        return {
            "e": "24hrMiniTicker",
            "E": ts_ms,
            "s": inst.symbol,
            "c": gw.price_text(inst, last_price),
            "o": gw.price_text(inst, day.open if day else last_price),
            "h": gw.price_text(inst, day.high if day else last_price),
            "l": gw.price_text(inst, day.low if day else last_price),
            "v": gw.qty_text(inst, day.volume if day else 0),
            "q": gw.quote_text(inst, day.quote_volume if day else 0),
        }

    def ticker(self, inst: InstrumentView, view: NodeView, ts_ms: int) -> dict[str, Any]:
        """The 24 hour rolling ticker as of `view`, computed as /api/v3/ticker/24hr does."""
        gw = self.gw
        now_ms = view.log_time_ms
        day = gw.candles.ticker(inst.symbol, now_ms)
        last = view.last_trades.get(inst.symbol)
        last_price = last.price if last else 0
        open_price = day.open if day else last_price
        change = last_price - open_price
        weighted = day.quote_volume // day.volume if day and day.volume else last_price
        book = view.books.get(inst.symbol)
        bid, ask = _top(book) if book is not None else ((0, 0), (0, 0))
        return {
            "e": "24hrTicker",
            "E": ts_ms,
            "s": inst.symbol,
            "p": gw.price_text(inst, change),
            "P": f"{change * 100 / open_price:.3f}" if open_price else "0.000",
            "w": gw.price_text(inst, weighted),
            "x": gw.price_text(inst, open_price),
            "c": gw.price_text(inst, last_price),
            "Q": gw.qty_text(inst, last.qty if last else 0),
            "b": gw.price_text(inst, bid[0]),
            "B": gw.qty_text(inst, bid[1]),
            "a": gw.price_text(inst, ask[0]),
            "A": gw.qty_text(inst, ask[1]),
            "o": gw.price_text(inst, open_price),
            "h": gw.price_text(inst, day.high if day else last_price),
            "l": gw.price_text(inst, day.low if day else last_price),
            "v": gw.qty_text(inst, day.volume if day else 0),
            "q": gw.quote_text(inst, day.quote_volume if day else 0),
            "O": now_ms - 86_400_000,
            "C": now_ms,
            "F": -1,
            "L": -1,
            "n": day.trades if day else 0,
        }

    def book_ticker(self, inst: InstrumentView, book: BookView) -> dict[str, Any]:
        gw = self.gw
        bid, ask = _top(book)
        return {
            "u": book.seq,
            "s": inst.symbol,
            "b": gw.price_text(inst, bid[0]),
            "B": gw.qty_text(inst, bid[1]),
            "a": gw.price_text(inst, ask[0]),
            "A": gw.qty_text(inst, ask[1]),
        }

    def partial_depth(self, inst: InstrumentView, book: BookView, depth: int) -> dict[str, Any]:
        gw = self.gw

        def side(levels: tuple) -> list[list[str]]:
            return [[gw.price_text(inst, p), gw.qty_text(inst, q)] for p, q, _ in levels[:depth]]

        return {"lastUpdateId": book.seq, "bids": side(book.bids), "asks": side(book.asks)}

    def current(self, stream: Stream) -> Any:
        """What a new subscriber of a state stream (partial depth, book and 24h tickers, the
        current kline) gets at once, instead of waiting for the next change; None for event
        streams (trades, diffs)."""
        gw = self.gw
        view = gw.node.view
        if stream.kind == ALL_MINI_TICKERS:
            return None
        inst = gw.instrument(stream.symbol)
        book = view.books.get(stream.symbol) or BookView(stream.symbol, view.last_seq, (), ())
        ts_ms = view.log_time_ms
        if stream.kind in PARTIAL_DEPTH_KINDS:
            return self.partial_depth(inst, book, PARTIAL_DEPTH_KINDS[stream.kind])
        if stream.kind == "bookTicker":
            return self.book_ticker(inst, book)
        if stream.kind == "ticker":
            return self.ticker(inst, view, ts_ms)
        if stream.kind == "miniTicker":
            return self.mini_ticker(inst, view, ts_ms)
        return None


def _top(book: BookView) -> tuple[tuple[int, int], tuple[int, int]]:
    bid = book.bids[0][:2] if book.bids else (0, 0)
    ask = book.asks[0][:2] if book.asks else (0, 0)
    return bid, ask


def _dump(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


# ------------------------------------------------------------------ connections

MARKET_STREAMS_KEY = web.AppKey("binance_market_streams", MarketStreams)


def add_binance_stream_routes(app: web.Application) -> None:
    app.router.add_get("/ws", raw_streams)
    app.router.add_get("/ws/{streams:.*}", raw_streams)
    app.router.add_get("/stream", combined_streams)
    app.router.add_get("/ws-api/v3", ws_api)


def attach_binance_streams(app: web.Application, hub: FeedHub) -> None:
    """At start-up, once the hub exists: the market streams' capture and renderer, and the
    user streams' renderer, join the hub's."""
    gw = hub.gw
    market = MarketStreams(gw, len(hub.captures))
    hub.captures.append(market.capture)
    hub.renderers.append(market.render)
    users = UserStreams(gw, gw.node.config.secret)
    hub.renderers.append(users.render)
    app[MARKET_STREAMS_KEY] = market
    app[USER_STREAMS_KEY] = users


class StreamError(Exception):
    """A client message refused with Binance's WebSocket error code."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass
class BinanceConnection:
    """One client's Binance WebSocket: its hub subscriber and the streams it holds, by name
    in subscription order (LIST_SUBSCRIPTIONS answers in it)."""

    hub: FeedHub
    market: MarketStreams
    users: UserStreams
    subscriber: Subscriber
    combined: bool
    streams: dict[str, Key] = field(default_factory=dict)
    # listen key -> its account, for the user streams this connection holds.
    listen_keys: dict[str, str] = field(default_factory=dict)
    message_times: list[float] = field(default_factory=list)

    def subscribe(self, names: list[str]) -> None:
        """All the names or none: an unknown one refuses the whole request."""
        view = self.hub.gw.node.view
        adding: list[tuple[str, Stream | None, str | None]] = []
        for name in names:
            if name in self.streams:
                continue
            stream = parse_stream(view, name)
            account = None if stream is not None else self.users.account_of(name)
            if stream is None and account is None:
                raise StreamError(ERROR_BAD_REQUEST, f"Invalid request: unknown stream '{name}'")
            adding.append((name, stream, account))
        if len(self.streams) + len(adding) > STREAMS_PER_CONNECTION_MAX:
            raise StreamError(
                ERROR_BAD_REQUEST,
                f"Invalid request: at most {STREAMS_PER_CONNECTION_MAX} streams per connection",
            )
        for name, stream, account in adding:
            if account is not None:
                self.add_user(name, account, USER_COMBINED if self.combined else USER_RAW)
                continue
            key = (COMBINED if self.combined else RAW, name)
            self.hub.add(key, self.subscriber)
            self.streams[name] = key
            if stream is not None:
                current = self.market.current(stream)
                if current is not None:
                    text = _dump(current)
                    if self.combined:
                        text = f'{{"stream":"{name}","data":{text}}}'
                    self.subscriber.put(text)

    def add_user(self, listen_key: str, account: str, channel: str) -> None:
        key = (channel, listen_key)
        self.hub.add(key, self.subscriber)
        self.users.listen(account, key)
        self.streams[listen_key] = key
        self.listen_keys[listen_key] = account

    def unsubscribe(self, names: list[str]) -> None:
        for name in names:
            key = self.streams.pop(name, None)
            if key is None:
                continue
            self.hub.remove(key, self.subscriber)
            account = self.listen_keys.pop(name, None)
            if account is not None:
                self.users.stop_listening(account, key)

    def close(self) -> None:
        self.unsubscribe(list(self.streams))

    def over_message_rate(self) -> bool:
        now = time.monotonic()
        self.message_times = [t for t in self.message_times if now - t < 1.0]
        self.message_times.append(now)
        return len(self.message_times) > INCOMING_MESSAGES_PER_S_MAX


async def raw_streams(request: web.Request) -> web.StreamResponse:
    names = [n for n in request.match_info.get("streams", "").split("/") if n]
    return await _serve(request, names, combined=False)


async def combined_streams(request: web.Request) -> web.StreamResponse:
    names = [n for n in request.query.get("streams", "").split("/") if n]
    return await _serve(request, names, combined=True)


async def ws_api(request: web.Request) -> web.StreamResponse:
    return await _serve(request, [], combined=False, ws_api_mode=True)


async def _serve(
    request: web.Request, names: list[str], combined: bool, ws_api_mode: bool = False
) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    subscriber = await open_feed_socket(request, hub, MESSAGE_BYTES_MAX)
    ws = subscriber.ws
    connection = BinanceConnection(
        hub, request.app[MARKET_STREAMS_KEY], request.app[USER_STREAMS_KEY], subscriber, combined
    )
    hub.connections.add(subscriber)
    try:
        # Names in the URL that are no stream are ignored, as Binance does: ccxt.pro opens
        # `/ws/<n>` and then SUBSCRIBEs.
        view = hub.gw.node.view
        valid = [
            n
            for n in names
            if parse_stream(view, n) is not None or connection.users.account_of(n) is not None
        ]
        connection.subscribe(valid[:STREAMS_PER_CONNECTION_MAX])
        async with asyncio.TaskGroup() as tasks:
            closer = tasks.create_task(close_when_cut(subscriber, "slow consumer: reconnect"))
            pinger = tasks.create_task(_ping_loop(ws))
            expiry = tasks.create_task(_expiry_loop(connection))
            try:
                if ws_api_mode:
                    await _ws_api_loop(request, connection)
                else:
                    await _receive_loop(connection)
            finally:
                closer.cancel()
                pinger.cancel()
                expiry.cancel()
    finally:
        hub.connections.discard(subscriber)
        connection.close()
    return ws


async def _ping_loop(ws: web.WebSocketResponse) -> None:
    while not ws.closed:
        await asyncio.sleep(PING_INTERVAL_S)
        with contextlib.suppress(ConnectionError):
            await ws.ping()


async def _expiry_loop(connection: BinanceConnection) -> None:
    """A listen key that expired or was closed on this node, or whose API key was revoked,
    gets `listenKeyExpired` and its connection is closed, as on Binance."""
    while not connection.subscriber.cut:
        await asyncio.sleep(LISTEN_KEY_CHECK_S)
        for listen_key, key in list(connection.streams.items()):
            if listen_key not in connection.listen_keys:
                continue
            # A WebSocket API subscription is signed, not a listen key: only revocation ends it.
            if key[0] == USER_WS_API:
                alive = connection.users.key_of(listen_key) is not None
            else:
                alive = connection.users.account_of(listen_key) is not None
            if not alive:
                connection.subscriber.put(wrap_user_event(key, listen_key_expired(listen_key)))
                await connection.subscriber.ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=b"listen key expired"
                )
                return


async def _requests(connection: BinanceConnection) -> AsyncIterator[str]:
    """The client's text messages until it goes, errs, or sends more than its message rate
    (then closed with 1008, as Binance does)."""
    ws = connection.subscriber.ws
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            if message.type == WSMsgType.ERROR:
                return
            continue
        if connection.over_message_rate():
            await ws.close(
                code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages per second"
            )
            return
        yield message.data


async def _receive_loop(connection: BinanceConnection) -> None:
    subscriber = connection.subscriber
    async for text in _requests(connection):
        subscriber.put(_answer(connection, text))
        if subscriber.cut:
            return


def _answer(connection: BinanceConnection, data: str) -> str:
    """The answer to one SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS, or Binance's error."""
    request_id = None
    try:
        try:
            request = parse_json(data)
        except JsonRefused as exc:
            raise StreamError(ERROR_BAD_JSON, f"Invalid JSON: {exc}") from None
        if not isinstance(request, dict):
            raise StreamError(ERROR_BAD_JSON, "Invalid JSON: a request is an object")
        request_id = request.get("id")
        if request_id is not None and (type(request_id) is not int and type(request_id) is not str):
            request_id = None
            raise StreamError(ERROR_BAD_VALUE_TYPE, "Invalid value type: expected u64 or string")
        unknown = set(request) - {"method", "params", "id"}
        if unknown:
            raise StreamError(ERROR_UNKNOWN_PROPERTY, f"Unknown property: {sorted(unknown)[0]}")
        method = request.get("method")
        if method not in METHODS:
            raise StreamError(
                ERROR_BAD_REQUEST,
                f"Invalid request: unknown variant `{method}`, expected one of "
                + ", ".join(f"`{m}`" for m in METHODS),
            )
        if method == "LIST_SUBSCRIPTIONS":
            return _dump({"result": list(connection.streams), "id": request_id})
        params = request.get("params")
        if not isinstance(params, list) or not all(type(p) is str for p in params):
            raise StreamError(
                ERROR_BAD_VALUE_TYPE, "Invalid value type: params is a list of streams"
            )
        if method == "SUBSCRIBE":
            connection.subscribe(params)
        else:
            connection.unsubscribe(params)
        return _dump({"result": None, "id": request_id})
    except StreamError as exc:
        return _dump({"error": {"code": exc.code, "msg": exc.msg}, "id": request_id})


async def _ws_api_loop(request: web.Request, connection: BinanceConnection) -> None:
    """The WebSocket API's user data methods (`userDataStream.subscribe.signature`,
    `userDataStream.unsubscribe`), `ping` and `time`; any other method is refused in
    Binance's shape."""
    subscriber = connection.subscriber
    async for text in _requests(connection):
        request_id: Any = None
        try:
            try:
                call = parse_json(text)
            except JsonRefused:
                raise BinanceError(400, -1102, "Invalid JSON request.") from None
            if not isinstance(call, dict):
                raise BinanceError(400, -1102, "A request is a JSON object.")
            request_id = call.get("id")
            result = _ws_api_call(connection, call.get("method"), call.get("params", {}))
            subscriber.put(_dump({"id": request_id, "status": 200, "result": result}))
        except BinanceError as exc:
            error = {"code": exc.code, "msg": exc.msg}
            subscriber.put(_dump({"id": request_id, "status": exc.status, "error": error}))
        if subscriber.cut:
            return


def _ws_api_call(connection: BinanceConnection, method: object, params: object) -> Any:
    gw = connection.hub.gw
    if method == "ping":
        return {}
    if method == "time":
        return {"serverTime": int(time.time() * 1000)}
    if method == "userDataStream.subscribe.signature":
        key = ws_api_key(gw, params)
        listen_key = connection.users.listen_key(key.key_id)
        if listen_key not in connection.streams:
            connection.add_user(listen_key, key.account, USER_WS_API)
        return {"subscriptionId": WS_API_SUBSCRIPTION_ID}
    if method == "userDataStream.unsubscribe":
        connection.unsubscribe(list(connection.listen_keys))
        return {}
    raise BinanceError(400, -1020, f"This operation is not supported: {method}")
