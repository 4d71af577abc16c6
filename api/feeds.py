"""Market data and private feeds over WebSocket (`/v1/ws`), from any node.

Channels per symbol: `book` (L2 snapshot, then deltas), `trades`, `ticker`
(L1 and 24h figures), `candles` (the current 1m candle); and `user` (own
orders, fills and balances) after a signed login. Every message carries the
engine sequence number; because every node applies the same log, seq N is
the same event everywhere, so a client that reconnects (to any node)
subscribes with `since` = the last seq it saw and gets exactly what it
missed, replayed from the node's event history, then the live stream.

The apply thread hands each entry's events to the event loop in one call;
the hub renders each channel's message once and queues the same string for
every subscriber. A subscriber whose queue fills is cut with close code 4008
rather than slowing the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import socket
import struct
import termios
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from api.candles import Candle
from api.errors import ApiError
from api.gateway import Gateway
from api.json_input import JsonBeyondLimits, JsonRefused, parse_json
from api.l3 import l3_json, read_l3
from api.metrics import SLOW_CONSUMERS_CUT
from api.public import (
    LIMIT_STATES,
    auction_json,
    auction_name,
    book_sides,
    candle_json,
    indicative_json,
    ticker_json,
)
from api.signing import check_fresh, signing_payload, verify_signature
from cluster.port import EntryApplied
from cluster.rocks import READ_LIMIT_MAX
from cluster.views import NodeView
from engine.codes import Scope, Side, TradingPhase
from engine.events import (
    Accepted,
    Amended,
    AuctionIndicated,
    BalanceChanged,
    BandsChanged,
    Cancelled,
    Event,
    Expired,
    LevelChanged,
    PhaseChanged,
    Rejected,
    Trade,
    Triggered,
    event_to_dict,
)

log = logging.getLogger("raftex.feeds")

WS_CONNECTIONS_MAX = 1_000
SUBSCRIPTIONS_PER_CONNECTION_MAX = 50
REPLAY_EVENTS_MAX = 200_000
HEARTBEAT_S = 5.0
# A feed peer that acknowledges none of what was sent for this long is gone (TCP_USER_TIMEOUT).
PEER_SILENT_MS_MAX = 30_000
CLOSE_SLOW_CONSUMER = 4008
# A cut subscriber's unread data and close frame stay queued for it this long, then the
# connection is dropped (a client that never reads again would hold them for ever).
CLOSE_LINGER_S = 30.0
SHUTDOWN_CLOSE_WAIT_S = 1.0
# How many times per buffer_bytes_max written the kernel's send queue is looked at.
KERNEL_CHECKS = 8
CLOSE_TOO_MANY = 4029
MESSAGE_BYTES_MAX = 4_096
PUBLIC_CHANNELS = ("book", "book.l3", "trades", "ticker", "candles", "auction")
L3_DEPTH_LEVELS = 50
USER_CHANNEL = "user"
_USER_EVENTS = (Accepted, Cancelled, Expired, Amended, Triggered, BalanceChanged)

Key = tuple[str, str]  # (channel, symbol or account)
Rows = dict[Key, list[tuple[int, str]]]
# Another dialect's share of an entry (the Binance streams, api/binance_streams.py): `capture`
# runs on the apply thread and takes what must be read as it stands right after the entry;
# `render` runs on the loop, once per entry, for the keys its subscribers hold.
Capture = Callable[[EntryApplied, Any], Any]
Renderer = Callable[[list[Event], Any, "EntryState"], Rows]


def text_frame(text: str) -> bytes:
    """One unmasked WebSocket text frame (RFC 6455 5.2): what a server sends. Built once per
    message and written as is to every subscriber, instead of once per subscriber."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65_536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class Subscriber:
    """One WebSocket connection: its transport, its subscriptions, its login.

    Messages are written straight to the connection's transport, in order, on the
    event loop. A client that lets `buffer_bytes_max` pile up unread, counting what
    the kernel's send queue holds as well as the transport's buffer, is cut (close
    code 4008) rather than buffered without bound or allowed to slow others. The
    kernel's share is read (one ioctl) every `buffer_bytes_max // KERNEL_CHECKS` bytes
    written: with an autotuned send buffer the kernel alone can hold megabytes, which
    a look at the transport's buffer never sees.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        buffer_bytes_max: int,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.buffer_bytes_max = buffer_bytes_max
        sock = transport.get_extra_info("socket") if transport is not None else None
        self.fd = sock.fileno() if sock is not None else -1
        self.check_every_bytes = max(1, buffer_bytes_max // KERNEL_CHECKS)
        self.unchecked_bytes = 0
        self.keys: set[Key] = set()
        self.account: str | None = None
        # While a subscription replays history, live messages for it wait here.
        self.held: dict[Key, list[tuple[int, bytes]]] = {}
        # The last seq a subscription has covered: a node behind the client's `since`
        # must not send it again what it already has.
        self.floor: dict[Key, int] = {}
        self.cut = False
        self.cut_event = asyncio.Event()
        self.sent_at = 0.0
        # When the client last sent a message (or connected).
        self.heard_at = time.monotonic()
        self.node_seq: Any = None

    def last_seq_hint(self) -> int:
        """The node's applied sequence, for heartbeats (a client sees how far it has got)."""
        return self.node_seq() if self.node_seq is not None else 0

    def send(self, key: Key, seq: int, frame: bytes) -> None:
        held = self.held.get(key)
        if held is not None:
            held.append((seq, frame))
            return
        if seq > self.floor.get(key, -1):
            self.write(frame)

    def put(self, text: str) -> None:
        self.write(text_frame(text))

    def write(self, frame: bytes) -> None:
        if self.cut:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            self._cut()
            return
        transport.write(frame)
        self.sent_at = time.monotonic()
        unread = transport.get_write_buffer_size()
        self.unchecked_bytes += len(frame)
        if self.unchecked_bytes >= self.check_every_bytes:
            self.unchecked_bytes = 0
            unread += kernel_unsent_bytes(self.fd)
        if unread > self.buffer_bytes_max:
            self._cut()

    def _cut(self) -> None:
        self.cut = True
        self.cut_event.set()


def kernel_unsent_bytes(fd: int) -> int:
    """Bytes in a socket's kernel send queue, not yet acknowledged by the peer (SIOCOUTQ)."""
    if fd < 0:
        return 0
    try:
        raw = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return struct.unpack("i", raw)[0]


@dataclass
class FeedHub:
    """Routes each applied entry's events to the subscribers of the channels they touch."""

    gw: Gateway
    loop: asyncio.AbstractEventLoop
    subscribers: dict[Key, set[Subscriber]] = field(default_factory=lambda: defaultdict(set))
    connections: set[Subscriber] = field(default_factory=set)
    delivered: int = 0
    # The view published after the previous entry, kept whether or not anyone listens: a
    # Binance depth diff's first update id is the book's seq in it, plus one.
    previous_view: NodeView | None = None
    captures: list[Capture] = field(default_factory=list)
    renderers: list[Renderer] = field(default_factory=list)

    async def close_all(self, app: web.Application) -> None:
        """At shutdown (aiohttp's on_shutdown, before it waits for handlers): every feed gets
        a going-away close, and a connection that has not taken it within
        SHUTDOWN_CLOSE_WAIT_S (a client that stopped reading) is dropped, so a node stops
        at once whatever its subscribers do."""
        subscribers = list(self.connections)
        closing = [
            asyncio.ensure_future(
                s.ws.close(code=WSCloseCode.GOING_AWAY, message=b"node stopping", drain=False)
            )
            for s in subscribers
        ]
        if closing:
            await asyncio.wait(closing, timeout=SHUTDOWN_CLOSE_WAIT_S)
        for task in closing:
            task.cancel()
        for subscriber in subscribers:
            if subscriber.transport is not None:
                subscriber.transport.abort()

    def on_entry(self, applied: EntryApplied) -> None:
        """Apply thread: one hop to the loop per entry, and none when nobody listens.

        What messages show beyond the events themselves (L3 queues, tickers, candles) is
        taken here, as it stands right after this entry: a message stamped with the entry's
        seq never shows a later state.
        """
        before, self.previous_view = self.previous_view, applied.view
        subscribers = self.subscribers
        if not subscribers:
            return
        queues: dict[tuple[str, int, int], list[tuple[int, int]]] = {}
        candles: dict[str, Candle | None] = {}
        for event in applied.events:
            kind = type(event)
            if kind is LevelChanged and ("book.l3", event.symbol) in subscribers:
                where = (event.symbol, event.side, event.price)
                if where not in queues:
                    queues[where] = applied.level_queue(*where)
            elif kind is Trade and ("candles", event.symbol) in subscribers:
                rows = self.gw.candles.candles(event.symbol, "1m", 1)
                candles[event.symbol] = rows[0] if rows else None
        captured = tuple(capture(applied, subscribers) for capture in self.captures)
        state = EntryState(applied.view, queues, candles, before, captured)
        self.loop.call_soon_threadsafe(self.publish, applied.events, state)

    def publish(self, events: list[Event], state: EntryState) -> None:
        wanted = self.subscribers.keys()
        rows_by_key = render(self.gw, events, wanted, state)
        for renderer in self.renderers:
            rows_by_key.update(renderer(events, wanted, state))
        for key, rows in rows_by_key.items():
            frames = [(seq, text_frame(text)) for seq, text in rows]
            for subscriber in tuple(self.subscribers.get(key, ())):
                for seq, frame in frames:
                    subscriber.send(key, seq, frame)
                    self.delivered += 1

    def add(self, key: Key, subscriber: Subscriber) -> None:
        self.subscribers[key].add(subscriber)
        subscriber.keys.add(key)

    def remove(self, key: Key, subscriber: Subscriber) -> None:
        subscribers = self.subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self.subscribers[key]
        subscriber.keys.discard(key)
        subscriber.held.pop(key, None)
        subscriber.floor.pop(key, None)


@dataclass(frozen=True, slots=True)
class EntryState:
    """The state right after an entry, taken on the apply thread: the view, the queues of the
    levels it touched (for L3 subscribers) and the current 1m candle of the symbols it traded
    (for candle subscribers); with the view before the entry and what other dialects'
    captures took."""

    view: NodeView
    queues: dict[tuple[str, int, int], list[tuple[int, int]]]
    candles: dict[str, Candle | None]
    # The view after the entry before this one (None: unknown, e.g. the hub's first entry).
    before: NodeView | None = None
    # What each of the hub's captures took, in their order.
    captured: tuple[Any, ...] = ()


def render(
    gw: Gateway, events: list[Event], wanted: Any, state: EntryState | None = None
) -> dict[Key, list[tuple[int, str]]]:
    """The messages each wanted channel gets for these events: (seq, JSON text) in seq order.

    Used for live entries and for replays from history alike, so both say the same; a
    replay (no `state`) carries the channels that are made of events alone (book deltas,
    trades, user events).
    """
    out: dict[Key, list[tuple[int, str]]] = defaultdict(list)
    book_changes: dict[str, list[list[Any]]] = defaultdict(list)
    touched: set[str] = set()
    for event in events:
        kind = type(event)
        if kind is LevelChanged:
            if ("book", event.symbol) in wanted:
                inst = gw.instrument(event.symbol)
                book_changes[event.symbol].append(
                    [
                        event.seq,
                        Side(event.side).name.lower(),
                        gw.price_text(inst, event.price),
                        gw.qty_text(inst, event.qty),
                        event.orders,
                    ]
                )
            touched.add(event.symbol)
        elif kind is Trade:
            touched.add(event.symbol)
            if ("trades", event.symbol) in wanted:
                inst = gw.instrument(event.symbol)
                out[("trades", event.symbol)].append(
                    (
                        event.seq,
                        _dump(
                            {
                                "channel": "trades",
                                "type": "trade",
                                "symbol": event.symbol,
                                "seq": event.seq,
                                "ts_ms": event.ts_ms,
                                "trade_id": event.trade_id,
                                "price": gw.price_text(inst, event.price),
                                "qty": gw.qty_text(inst, event.qty),
                                "aggressor_side": Side(event.aggressor_side).name.lower(),
                                "auction": auction_name(event.auction),
                            }
                        ),
                    )
                )
            for account in (event.maker_account, event.taker_account):
                _user(out, wanted, account, event)
        elif kind in _USER_EVENTS or (kind is Rejected and event.account):
            _user(out, wanted, event.account, event)
        elif (kind is PhaseChanged or kind is AuctionIndicated or kind is BandsChanged) and (
            ("auction", event.symbol) in wanted
        ):
            out[("auction", event.symbol)].append((event.seq, _auction_message(gw, event)))
    if state is not None and state.queues:
        _render_l3(gw, events, state.queues, out)
    # Log time of the entry: how late a delivery is, measured by the receiver.
    ts_ms = events[-1].ts_ms if events else 0
    for symbol, changes in book_changes.items():
        last = changes[-1][0]
        out[("book", symbol)].append(
            (
                last,
                _dump(
                    {
                        "channel": "book",
                        "type": "update",
                        "symbol": symbol,
                        "seq": last,
                        "ts_ms": ts_ms,
                        "changes": changes,
                    }
                ),
            )
        )
    if events and state is not None:
        last_seq = events[-1].seq
        for symbol in sorted(touched):
            if ("ticker", symbol) in wanted:
                row = ticker_json(gw, gw.instrument(symbol), state.view)
                out[("ticker", symbol)].append(
                    (
                        last_seq,
                        _dump({"channel": "ticker", "type": "ticker", **row, "seq": last_seq}),
                    )
                )
            candle = state.candles.get(symbol)
            if ("candles", symbol) in wanted and candle is not None:
                out[("candles", symbol)].append(
                    (last_seq, _candle_message(gw, symbol, last_seq, candle))
                )
    return out


def _render_l3(
    gw: Gateway, events: list[Event], queues: dict, out: dict[Key, list[tuple[int, str]]]
) -> None:
    """One message per symbol: each touched level replaced by its whole queue."""
    last_seq = events[-1].seq
    by_symbol: dict[str, list[list[Any]]] = defaultdict(list)
    for (symbol, side, price), queue in queues.items():
        inst = gw.instrument(symbol)
        by_symbol[symbol].append(
            [
                Side(side).name.lower(),
                gw.price_text(inst, price),
                [[order_id, gw.qty_text(inst, qty)] for order_id, qty in queue],
            ]
        )
    for symbol, levels in sorted(by_symbol.items()):
        out[("book.l3", symbol)].append(
            (
                last_seq,
                _dump(
                    {
                        "channel": "book.l3",
                        "type": "update",
                        "symbol": symbol,
                        "seq": last_seq,
                        "levels": levels,
                    }
                ),
            )
        )


def _auction_message(gw: Gateway, event: PhaseChanged | AuctionIndicated | BandsChanged) -> str:
    """A phase change, the indicative uncross after a change in a call phase, or limit
    up-limit down bands and limit state."""
    head = {"channel": "auction", "symbol": event.symbol, "seq": event.seq, "ts_ms": event.ts_ms}
    if type(event) is BandsChanged:
        inst = gw.instrument(event.symbol)
        return _dump(
            {
                **head,
                "type": "bands",
                "reference": gw.price_text(inst, event.reference),
                "price_band": [gw.price_text(inst, p) for p in (event.band_lo, event.band_hi)],
                "limit_state": LIMIT_STATES.get(event.limit_side),
                "limit_until_ms": event.limit_until_ms,
            }
        )
    if type(event) is PhaseChanged:
        return _dump(
            {
                **head,
                "type": "phase",
                "phase": TradingPhase(event.phase).name.lower(),
                "reason": event.reason,
                "until_ms": event.until_ms,
            }
        )
    inst = gw.instrument(event.symbol)
    uncross = (event.price, event.volume, event.imbalance, event.imbalance_side)
    return _dump(
        {
            **head,
            "type": "indicative",
            "phase": TradingPhase(event.phase).name.lower(),
            **indicative_json(gw, inst, *uncross),
        }
    )


def _user(out: dict[Key, list[tuple[int, str]]], wanted: Any, account: str, event: Event) -> None:
    key = (USER_CHANNEL, account)
    if key in wanted:
        row = event_to_dict(event)
        out[key].append((event.seq, _dump({"channel": USER_CHANNEL, **row})))


def _candle_message(gw: Gateway, symbol: str, seq: int, candle: Candle) -> str:
    return _dump(
        {
            "channel": "candles",
            "type": "candle",
            "symbol": symbol,
            "interval": "1m",
            "seq": seq,
            **candle_json(gw, gw.instrument(symbol), candle),
        }
    )


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


HUB_KEY = web.AppKey("feed_hub", FeedHub)


def add_feed_routes(app: web.Application) -> None:
    app.router.add_get("/v1/ws", websocket)


async def open_feed_socket(request: web.Request, hub: FeedHub, max_msg_size: int) -> Subscriber:
    """Accept one feed WebSocket (native or Binance's), within the node's connection limit.

    No per-message compression: one rendered message goes to many subscribers as is.
    No aiohttp heartbeat either: its ping waits behind whatever the client has not read,
    so a client a few megabytes behind missed the pong deadline and was dropped with no
    close frame, before the buffer limit (and its 4008) could apply. Heartbeat messages
    keep data flowing, and TCP_USER_TIMEOUT drops a peer that stops acknowledging it.
    """
    if len(hub.connections) >= WS_CONNECTIONS_MAX:
        raise ApiError(503, "too_many_connections", f"this node serves {WS_CONNECTIONS_MAX} feeds")
    ws = web.WebSocketResponse(max_msg_size=max_msg_size, compress=False)
    await ws.prepare(request)
    config = hub.gw.node.config
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, PEER_SILENT_MS_MAX)
        if config.feed_socket_send_bytes:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.feed_socket_send_bytes)
    return Subscriber(ws, request.transport, config.feed_buffer_bytes_max)


async def websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    subscriber = await open_feed_socket(request, hub, MESSAGE_BYTES_MAX)
    ws = subscriber.ws
    config = hub.gw.node.config
    subscriber.node_seq = lambda: hub.gw.node.view.last_seq
    hub.connections.add(subscriber)
    try:
        async with asyncio.TaskGroup() as tasks:
            reason = f"slow consumer: over {subscriber.buffer_bytes_max} bytes unread; resubscribe"
            closer = tasks.create_task(close_when_cut(subscriber, f"{reason} with since"))
            heartbeat = tasks.create_task(_heartbeat_loop(subscriber, config.feed_idle_timeout_s))
            try:
                await _receive_loop(request, hub, subscriber)
            finally:
                closer.cancel()
                heartbeat.cancel()
    finally:
        hub.connections.discard(subscriber)
        for key in tuple(subscriber.keys):
            hub.remove(key, subscriber)
    return ws


async def close_when_cut(subscriber: Subscriber, reason: str) -> None:
    """The close frame goes behind what the client has not read yet, at once (no wait for
    the buffer to drain: the client is not reading); the connection is dropped after
    CLOSE_LINGER_S if it never reads that far."""
    await subscriber.cut_event.wait()
    transport = subscriber.transport
    if transport is not None:
        asyncio.get_running_loop().call_later(CLOSE_LINGER_S, transport.abort)
    SLOW_CONSUMERS_CUT.inc()
    await subscriber.ws.close(code=CLOSE_SLOW_CONSUMER, message=reason.encode(), drain=False)


async def _heartbeat_loop(subscriber: Subscriber, idle_timeout_s: float) -> None:
    """A message at least every HEARTBEAT_S, so a client can tell a quiet feed from a dead one;
    a connection that subscribes to nothing and says nothing for `idle_timeout_s` is closed."""
    while not subscriber.cut:
        await asyncio.sleep(HEARTBEAT_S)
        if not subscriber.keys and time.monotonic() - subscriber.heard_at >= idle_timeout_s:
            await subscriber.ws.close(
                code=WSCloseCode.GOING_AWAY, message=b"idle: no subscription and no message"
            )
            return
        if time.monotonic() - subscriber.sent_at >= HEARTBEAT_S:
            subscriber.put(
                _dump(
                    {
                        "type": "heartbeat",
                        "ts_ms": int(time.time() * 1000),
                        "seq": subscriber.last_seq_hint(),
                    }
                )
            )


async def _receive_loop(request: web.Request, hub: FeedHub, subscriber: Subscriber) -> None:
    """Answers each client message; a bad one gets an error message, one beyond the JSON
    limits also a close (1008), and an oversized one aiohttp closes (1009)."""
    async for message in subscriber.ws:
        subscriber.heard_at = time.monotonic()
        if message.type != WSMsgType.TEXT:
            if message.type == WSMsgType.ERROR:
                return
            continue
        try:
            op = parse_json(message.data)
        except JsonRefused as exc:
            subscriber.put(_error("bad_message", f"a message is a JSON object with an op: {exc}"))
            if isinstance(exc, JsonBeyondLimits):
                await subscriber.ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=str(exc).encode()[:120]
                )
                return
            continue
        op_id = op.get("id") if isinstance(op, dict) else None
        try:
            if not isinstance(op, dict):
                raise ApiError(400, "bad_message", "a message is a JSON object with an op")
            await _handle(request, hub, subscriber, op)
        except ApiError as exc:
            subscriber.put(_error(exc.code, exc.message, op_id))
        if subscriber.cut:
            return


def _error(code: str, message: str, op_id: Any = None) -> str:
    return _dump({"type": "error", "code": code, "message": message, "id": op_id})


async def _handle(request: web.Request, hub: FeedHub, subscriber: Subscriber, op: dict) -> None:
    gw = hub.gw
    name = op.get("op")
    if name == "login":
        subscriber.account = await _login(gw, op)
        subscriber.put(_dump({"type": "login", "account": subscriber.account, "id": op.get("id")}))
        return
    if name not in ("subscribe", "unsubscribe"):
        raise ApiError(400, "bad_op", "op is login, subscribe or unsubscribe")
    channel = op.get("channel")
    if channel == USER_CHANNEL:
        if subscriber.account is None:
            raise ApiError(401, "unauthenticated", "log in before subscribing to user")
        key = (USER_CHANNEL, subscriber.account)
    elif channel in PUBLIC_CHANNELS:
        symbol = op.get("symbol")
        if type(symbol) is not str:
            raise ApiError(400, "bad_symbol", "symbol is required")
        gw.instrument(symbol)
        key = (channel, symbol)
    else:
        raise ApiError(400, "bad_channel", f"channel is one of {', '.join(PUBLIC_CHANNELS)}, user")
    if name == "unsubscribe":
        hub.remove(key, subscriber)
        subscriber.put(_dump({"type": "unsubscribed", "channel": key[0], "id": op.get("id")}))
        return
    if key in subscriber.keys:
        raise ApiError(409, "already_subscribed", f"already subscribed to {key[0]} {key[1]}")
    if len(subscriber.keys) >= SUBSCRIPTIONS_PER_CONNECTION_MAX:
        raise ApiError(429, "too_many_subscriptions", f"at most {SUBSCRIPTIONS_PER_CONNECTION_MAX}")
    since = op.get("since")
    if since is not None and (type(since) is not int or not 0 <= since < 2**63):
        raise ApiError(400, "bad_since", "since is the last sequence number seen")
    await _wait_min_seq(gw, op.get("min_seq"))
    await _subscribe(hub, subscriber, key, since, op.get("id"))


async def _login(gw: Gateway, op: dict) -> str:
    """Signed like an HTTP request: GET /v1/ws with query `login` and an empty body."""
    key_id, timestamp, signature = op.get("key"), op.get("timestamp"), op.get("signature")
    if not all(type(v) is str for v in (key_id, timestamp, signature)):
        raise ApiError(401, "unauthenticated", "login needs key, timestamp and signature strings")
    key = await gw.known_key(key_id)
    now_ms = int(time.time() * 1000)
    timestamp_ms = check_fresh(timestamp, None, now_ms)
    canonical = verify_signature(
        key, gw.sealer, signing_payload(timestamp_ms, "GET", "/v1/ws", "login", b""), signature
    )
    gw.replay.check(canonical, now_ms)
    if not key.scopes & Scope.READ:
        raise ApiError(403, "missing_scope", "the user channel needs a read key")
    return key.account


async def _wait_min_seq(gw: Gateway, min_seq: object) -> None:
    if min_seq is None:
        return
    if type(min_seq) is not int:
        raise ApiError(400, "bad_min_seq", "min_seq must be an integer")
    await gw.wait_until_applied(min_seq)


async def _subscribe(
    hub: FeedHub, subscriber: Subscriber, key: Key, since: int | None, op_id: Any
) -> None:
    subscriber.held[key] = []
    hub.add(key, subscriber)
    try:
        await _start(hub, subscriber, key, since, op_id)
    except BaseException:
        # A subscription that could not start leaves nothing behind; the client may retry.
        hub.remove(key, subscriber)
        raise


async def _start(
    hub: FeedHub, subscriber: Subscriber, key: Key, since: int | None, op_id: Any
) -> None:
    gw = hub.gw
    channel = key[0]
    view = gw.node.view
    replayable = channel in ("book", "trades", "auction", USER_CHANNEL)
    if since is not None and replayable and view.last_seq - since <= REPLAY_EVENTS_MAX:
        start = f"replay from {since}"
        subscriber.put(_subscribed(key, since, start, op_id))
        last = await _replay(gw, subscriber, key, since)
    elif channel == "book.l3":
        last, bids, asks = await read_l3(gw, key[1], L3_DEPTH_LEVELS)
        subscriber.put(_subscribed(key, last, "snapshot", op_id))
        row = l3_json(gw, key[1], last, bids, asks)
        subscriber.put(_dump({"channel": "book.l3", "type": "snapshot", **row}))
    else:
        last = view.last_seq
        subscriber.put(_subscribed(key, last, "snapshot", op_id))
        snapshot = _snapshot(gw, view, key)
        if snapshot is not None:
            subscriber.put(snapshot)
    subscriber.floor[key] = last
    held = subscriber.held.pop(key, [])
    for seq, frame in held:
        if seq > last:
            subscriber.write(frame)


def _subscribed(key: Key, seq: int, start: str, op_id: Any) -> str:
    return _dump(
        {
            "type": "subscribed",
            "channel": key[0],
            "key": key[1],
            "seq": seq,
            "start": start,
            "id": op_id,
        }
    )


async def _replay(gw: Gateway, subscriber: Subscriber, key: Key, since: int) -> int:
    """History after `since` for one channel; returns the last seq covered."""
    event_log = await gw.event_log_caught_up()
    position = since
    wanted = {key}
    while True:
        events = await asyncio.to_thread(event_log.events_since, position, READ_LIMIT_MAX)
        if not events:
            return position
        for _, rows in render(gw, events, wanted).items():
            for _, text in rows:
                subscriber.put(text)
        position = events[-1].seq
        if subscriber.cut:
            return position


def _snapshot(gw: Gateway, view: NodeView, key: Key) -> str | None:
    """The channel's state in one published view: the book and its seq agree."""
    channel, name = key
    seq = view.last_seq
    if channel == "book":
        inst = gw.instrument(name)
        book = view.books.get(name)
        return _dump(
            {
                "channel": "book",
                "type": "snapshot",
                "symbol": name,
                "seq": seq,
                **book_sides(gw, inst, book),
            }
        )
    if channel == "ticker":
        return _dump(
            {
                "channel": "ticker",
                "type": "ticker",
                **ticker_json(gw, gw.instrument(name), view),
                "seq": seq,
            }
        )
    if channel == "auction":
        inst = gw.instrument(name)
        return _dump(
            {
                "channel": "auction",
                "type": "snapshot",
                "symbol": name,
                "seq": seq,
                "phase": TradingPhase(inst.phase).name.lower(),
                "until_ms": inst.phase_until_ms,
                "auction": auction_json(gw, inst),
            }
        )
    if channel == "candles":
        rows = gw.candles.candles(name, "1m", 1)
        return _candle_message(gw, name, seq, rows[0]) if rows else None
    return None


@contextlib.asynccontextmanager
async def feed_hub(app: web.Application, gw: Gateway):  # type: ignore[no-untyped-def]
    hub = FeedHub(gw, asyncio.get_running_loop())
    app[HUB_KEY] = hub
    app.on_shutdown.append(hub.close_all)
    unsubscribe = gw.node.subscribe(hub.on_entry)
    try:
        yield hub
    finally:
        unsubscribe()
