"""Binance's user data stream: listen keys (`/api/v3/userDataStream`) and the account's events
(`executionReport`, `outboundAccountPosition`, `balanceUpdate`, `listenKeyExpired`) on
`/ws/<listenKey>`, in combined streams, and on the WebSocket API's
`userDataStream.subscribe.signature` (what ccxt.pro and python-binance use for spot now).

A listen key must work on every node, because a client reconnects to another node after a
failover, and no node may need another's memory to check it. So a listen key is not stored:
it is the API key id and a MAC of it under a key every node derives from the cluster secret
(HKDF, its own `info`, like api/sealing.py's sealing key). Any node verifies it; it stops
working everywhere the moment its API key is revoked (the replicated view no longer has
the key). Keep-alive, close and the 60 minute expiry are tracked per node, in memory: a node
that has not seen a listen key starts its clock at first use, and a close on one node does
not close it on another. That is weaker than Binance, where a key lives in one place, and
the price of needing no shared state; a revoked API key is the cluster-wide stop.

Execution reports need what a Trade event does not carry (client order id, type, quantity,
cumulative quote): the node tracks the open orders of the accounts someone listens to, on
the event loop, from the Accepted events it renders and, for orders placed before the first
listener came, from the history projection's open orders.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from api.amounts import from_units
from api.binance_params import BinanceError, read_params
from api.binance_request import API_KEY_HEADER, binance_route
from api.errors import ApiError
from api.feeds import Key, Rows
from api.gateway import Gateway, gateway
from api.signing import check_fresh, verify_signature_bytes
from cluster.rocks import READ_LIMIT_MAX
from cluster.views import KeyView
from engine.codes import CancelReason, KeyKind, OrderType, Scope, Side, TimeInForce
from engine.events import (
    Accepted,
    Amended,
    BalanceChanged,
    Cancelled,
    Event,
    Expired,
    Trade,
    Transferred,
)

LISTEN_KEY_INFO = b"raftex binance listen key v1"
LISTEN_KEY_MAC_BYTES = 24
LISTEN_KEY_TTL_MS = 60 * 60 * 1000
# Listen keys whose keep-alive this node remembers; beyond it the oldest are forgotten (and
# start a new clock at their next use).
LISTEN_KEYS_TRACKED_MAX = 10_000
# Open orders tracked for execution reports, over all listened accounts.
ORDERS_TRACKED_MAX = 100_000
LISTEN_KEY_PARAMS = frozenset({"listenKey"})
# Binance's request weight of each userDataStream call.
USER_DATA_STREAM_WEIGHT = 2
WS_API_SIGNED_PARAMS = frozenset({"apiKey", "timestamp", "recvWindow", "signature"})

# Hub channels; the key's second part is the listen key (its account comes from the view).
USER_RAW = "binance.user"
USER_COMBINED = "binance.user.stream"
USER_WS_API = "binance.user.ws-api"
USER_CHANNELS = (USER_RAW, USER_COMBINED, USER_WS_API)
# One user data subscription per WebSocket API connection, numbered as Binance numbers them.
WS_API_SUBSCRIPTION_ID = 0

_ORDER_TYPES = {
    OrderType.LIMIT: "LIMIT",
    OrderType.MARKET: "MARKET",
    OrderType.STOP: "STOP_LOSS",
    OrderType.STOP_LIMIT: "STOP_LOSS_LIMIT",
}
_TIFS = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}
# What Binance calls an order that leaves the book without trading, by raftex's reason.
_EXPIRING_REASONS = frozenset({CancelReason.IOC, CancelReason.FOK, CancelReason.AUCTION_OVER})


@dataclass(slots=True)
class TrackedOrder:
    """An open order of a listened account, as its execution reports describe it."""

    order_id: int
    account: str
    client_order_id: str
    symbol: str
    side: int
    type_name: str
    tif_name: str
    price: int
    stop_price: int
    display_qty: int
    qty: int  # filled + leaves
    filled: int
    notional: int
    accepted_ms: int


class UserStreams:
    """Listen keys, who listens to which account on this node, and their open orders."""

    def __init__(self, gw: Gateway, cluster_secret: str) -> None:
        self.gw = gw
        self._mac_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=LISTEN_KEY_INFO
        ).derive(cluster_secret.encode())
        # listen key -> when it expires on this node (ms); 0: closed here.
        self._expires_at_ms: OrderedDict[str, int] = OrderedDict()
        # account -> the hub keys listening to it (a count per key: one per connection).
        self.listeners: dict[str, dict[Key, int]] = {}
        self.orders: OrderedDict[int, TrackedOrder] = OrderedDict()

    # ------------------------------------------------------------ listen keys

    def listen_key(self, key_id: str) -> str:
        """The API key's listen key: its id (hex) and a MAC any node of the cluster checks."""
        mac = hmac.new(self._mac_key, key_id.encode(), hashlib.sha256).digest()
        return key_id.encode().hex() + mac[:LISTEN_KEY_MAC_BYTES].hex()

    def key_of(self, listen_key: str) -> KeyView | None:
        """The active API key a listen key was made for; None if it is forged or the key is
        revoked (or not known here yet)."""
        mac_hex_len = LISTEN_KEY_MAC_BYTES * 2
        if len(listen_key) <= mac_hex_len or not listen_key.isascii():
            return None
        try:
            key_id = bytes.fromhex(listen_key[:-mac_hex_len]).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(self.listen_key(key_id), listen_key):
            return None
        return self.gw.node.view.access.api_keys.get(key_id)

    def open(self, key_id: str) -> str:
        listen_key = self.listen_key(key_id)
        self._set_expiry(listen_key, _now_ms() + LISTEN_KEY_TTL_MS)
        return listen_key

    def keep_alive(self, listen_key: str) -> None:
        self._set_expiry(listen_key, _now_ms() + LISTEN_KEY_TTL_MS)

    def close(self, listen_key: str) -> None:
        self._set_expiry(listen_key, 0)

    def account_of(self, listen_key: str) -> str | None:
        """The account a live listen key streams; None if it is invalid, revoked, lacks the
        read scope, or has expired or been closed on this node. A listen key this node has
        not seen starts its clock here."""
        key = self.key_of(listen_key)
        if key is None or not key.scopes & Scope.READ:
            return None
        expires_at_ms = self._expires_at_ms.get(listen_key)
        if expires_at_ms is None:
            self.keep_alive(listen_key)
        elif expires_at_ms <= _now_ms():
            return None
        return key.account

    def _set_expiry(self, listen_key: str, expires_at_ms: int) -> None:
        self._expires_at_ms[listen_key] = expires_at_ms
        self._expires_at_ms.move_to_end(listen_key)
        while len(self._expires_at_ms) > LISTEN_KEYS_TRACKED_MAX:
            self._expires_at_ms.popitem(last=False)

    # ------------------------------------------------------------ listeners

    def listen(self, account: str, key: Key) -> None:
        keys = self.listeners.setdefault(account, {})
        keys[key] = keys.get(key, 0) + 1

    def stop_listening(self, account: str, key: Key) -> None:
        keys = self.listeners.get(account)
        if keys is None or key not in keys:
            return
        keys[key] -= 1
        if keys[key] == 0:
            del keys[key]
        if not keys:
            del self.listeners[account]
            for order_id in [i for i, o in self.orders.items() if o.account == account]:
                del self.orders[order_id]

    async def seed_orders(self, account: str) -> None:
        """The account's open orders from the history projection, for orders placed before
        anyone listened here; without a projection, reports of those orders carry only what
        their fills say."""
        try:
            store = await self.gw.history_store()
        except ApiError:
            return
        rows = await asyncio.to_thread(
            lambda: store.orders_of(account, open_only=True, after_order_id=0, limit=READ_LIMIT_MAX)
        )
        for row in rows:
            if row["order_id"] in self.orders or account not in self.listeners:
                continue
            self._track(
                TrackedOrder(
                    row["order_id"],
                    account,
                    row["client_order_id"],
                    row["symbol"],
                    row["side"],
                    _type_name(row["order_type"], row["post_only"]),
                    _TIFS.get(row["tif"], "GTC"),
                    row["price"],
                    row["stop_price"],
                    row["display_qty"],
                    row["qty"],
                    row["filled_qty"],
                    row["notional"],
                    row["accepted_ms"],
                )
            )

    def _track(self, order: TrackedOrder) -> None:
        self.orders[order.order_id] = order
        while len(self.orders) > ORDERS_TRACKED_MAX:
            self.orders.popitem(last=False)

    # ------------------------------------------------------------ rendering

    def render(self, events: list[Event], wanted: Any, state: Any) -> Rows:
        """The user events of listened accounts in this entry, each rendered once and wrapped
        for each kind of listener; one outboundAccountPosition per account at the end."""
        out: Rows = defaultdict(list)
        listeners = self.listeners
        if not listeners:
            return out
        positions: dict[str, dict[str, tuple[int, int]]] = {}
        last_seq = 0
        for event in events:
            kind = type(event)
            if kind is Trade:
                for maker in (True, False):
                    account = event.maker_account if maker else event.taker_account
                    if account in listeners:
                        self._emit(out, account, event.seq, self._fill(event, maker))
            elif kind is BalanceChanged:
                if event.account in listeners:
                    positions.setdefault(event.account, {})[event.asset] = (
                        event.available,
                        event.held,
                    )
                    last_seq = event.seq
            elif (
                kind is Accepted or kind is Cancelled or kind is Expired or kind is Amended
            ) and event.account in listeners:
                self._emit(out, event.account, event.seq, self._order_event(event))
            elif kind is Transferred and event.account in listeners:
                payload = {
                    "e": "balanceUpdate",
                    "E": event.ts_ms,
                    "a": event.asset,
                    "d": from_units(event.amount, self.gw.decimals(event.asset)),
                    "T": event.ts_ms,
                }
                self._emit(out, event.account, event.seq, payload)
        ts_ms = events[-1].ts_ms if events else 0
        for account, assets in positions.items():
            balances = [
                {
                    "a": asset,
                    "f": from_units(free, self.gw.decimals(asset)),
                    "l": from_units(locked, self.gw.decimals(asset)),
                }
                for asset, (free, locked) in sorted(assets.items())
            ]
            payload = {"e": "outboundAccountPosition", "E": ts_ms, "u": ts_ms, "B": balances}
            self._emit(out, account, last_seq, payload)
        return out

    def _emit(self, out: Rows, account: str, seq: int, payload: dict[str, Any]) -> None:
        text = _dump(payload)
        for key in self.listeners.get(account, ()):
            out[key].append((seq, wrap_user_event(key, text)))

    def _order_event(self, event: Accepted | Cancelled | Expired | Amended) -> dict[str, Any]:
        kind = type(event)
        if kind is Accepted:
            order = TrackedOrder(
                event.order_id,
                event.account,
                event.client_order_id,
                event.symbol,
                event.side,
                _type_name(event.order_type, event.post_only),
                _TIFS.get(TimeInForce(event.tif), "GTC"),
                event.price,
                event.stop_price,
                event.display_qty,
                event.qty,
                0,
                0,
                event.ts_ms,
            )
            self._track(order)
            return self._report(order, event, "NEW", "NEW")
        order = self.orders.get(event.order_id) or self._unknown(event)
        if kind is Amended or (kind is Cancelled and event.leaves):
            # An amendment, or part of an order cancelled (self-trade prevention): it stays.
            order.price = event.price
            order.qty = order.filled + event.leaves
            status = "PARTIALLY_FILLED" if order.filled else "NEW"
            return self._report(order, event, "REPLACED", status, working=True)
        self.orders.pop(event.order_id, None)
        if kind is Cancelled and event.reason == CancelReason.SELF_TRADE:
            return self._report(order, event, "TRADE_PREVENTION", "EXPIRED_IN_MATCH")
        if kind is Expired or event.reason in _EXPIRING_REASONS:
            return self._report(order, event, "EXPIRED", "EXPIRED")
        report = self._report(order, event, "CANCELED", "CANCELED")
        report["C"] = order.client_order_id
        return report

    def _fill(self, trade: Trade, maker: bool) -> dict[str, Any]:
        order_id = trade.maker_order_id if maker else trade.taker_order_id
        leaves = trade.maker_leaves if maker else trade.taker_leaves
        order = self.orders.get(order_id)
        if order is None:
            side = trade.aggressor_side if not maker else _other(trade.aggressor_side)
            order = TrackedOrder(
                order_id,
                trade.maker_account if maker else trade.taker_account,
                "",
                trade.symbol,
                side,
                "LIMIT",
                "GTC",
                trade.price,
                0,
                0,
                trade.qty + leaves,
                0,
                0,
                trade.ts_ms,
            )
        order.filled += trade.qty
        order.notional += trade.price * trade.qty
        order.qty = order.filled + leaves
        if not leaves:
            self.orders.pop(order_id, None)
        elif order_id not in self.orders:
            self._track(order)
        report = self._report(
            order, trade, "TRADE", "PARTIALLY_FILLED" if leaves else "FILLED", working=leaves > 0
        )
        gw = self.gw
        inst = gw.instrument(trade.symbol)
        report.update(
            l=gw.qty_text(inst, trade.qty),
            L=gw.price_text(inst, trade.price),
            n=gw.quote_text(inst, trade.maker_fee if maker else trade.taker_fee),
            N=inst.quote,
            t=trade.trade_id,
            m=maker,
            Y=gw.quote_text(inst, trade.price * trade.qty),
        )
        return report

    def _unknown(self, event: Cancelled | Expired | Amended) -> TrackedOrder:
        """An order placed before anyone listened and not in the projection: what the event
        itself says."""
        qty = getattr(event, "qty", 0)
        return TrackedOrder(
            event.order_id,
            event.account,
            "",
            event.symbol,
            event.side,
            "LIMIT",
            "GTC",
            event.price,
            0,
            0,
            qty,
            0,
            0,
            event.ts_ms,
        )

    def _report(
        self, order: TrackedOrder, event: Event, exec_type: str, status: str, working: bool = False
    ) -> dict[str, Any]:
        gw = self.gw
        inst = gw.instrument(order.symbol)
        return {
            "e": "executionReport",
            "E": event.ts_ms,
            "s": order.symbol,
            "c": order.client_order_id,
            "S": Side(order.side).name,
            "o": order.type_name,
            "f": order.tif_name,
            "q": gw.qty_text(inst, order.qty),
            "p": gw.price_text(inst, order.price),
            "P": gw.price_text(inst, order.stop_price),
            "F": gw.qty_text(inst, order.display_qty),
            "g": -1,
            "C": "",
            "x": exec_type,
            "X": status,
            "r": "NONE",
            "i": order.order_id,
            "l": gw.qty_text(inst, 0),
            "z": gw.qty_text(inst, order.filled),
            "L": gw.price_text(inst, 0),
            "n": gw.quote_text(inst, 0),
            "N": None,
            "T": event.ts_ms,
            "t": -1,
            "I": event.seq,
            "w": working or (status == "NEW" and order.type_name != "MARKET"),
            "m": False,
            "M": False,
            "O": order.accepted_ms,
            "Z": gw.quote_text(inst, order.notional),
            "Y": gw.quote_text(inst, 0),
            "Q": gw.quote_text(inst, 0),
            "W": order.accepted_ms,
            "V": "NONE",
        }


def wrap_user_event(key: Key, text: str) -> str:
    """A user event as each kind of listener reads it: bare on `/ws/<listenKey>`, with its
    stream name in a combined stream, with its subscription on the WebSocket API."""
    channel, listen_key = key
    if channel == USER_COMBINED:
        return f'{{"stream":"{listen_key}","data":{text}}}'
    if channel == USER_WS_API:
        return f'{{"subscriptionId":{WS_API_SUBSCRIPTION_ID},"event":{text}}}'
    return text


def listen_key_expired(listen_key: str) -> str:
    return _dump({"e": "listenKeyExpired", "E": _now_ms(), "listenKey": listen_key})


def _type_name(order_type: int, post_only: bool) -> str:
    if post_only:
        return "LIMIT_MAKER"
    return _ORDER_TYPES.get(OrderType(order_type), "LIMIT")


def _other(side: int) -> int:
    return Side.SELL if side == Side.BUY else Side.BUY


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


# ------------------------------------------------------------------ WebSocket API signature


def ws_api_key(gw: Gateway, params: object) -> KeyView:
    """The key a WebSocket API `userDataStream.subscribe.signature` request is signed with.

    Binance's WebSocket API signs the parameters sorted by name, joined as a query string,
    without `signature`; ccxt joins them raw and python-binance URL-encodes them, which
    differ only for characters neither puts in these parameters (both are tried)."""
    if not isinstance(params, dict) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in params.values()
    ):
        raise BinanceError(400, -1102, "params must be an object of strings and numbers.")
    unknown = set(params) - WS_API_SIGNED_PARAMS
    if unknown:
        raise BinanceError(400, -1104, f"Not all sent parameters were read: {sorted(unknown)}.")
    key_id, signature = params.get("apiKey"), params.get("signature")
    if not isinstance(key_id, str) or not isinstance(signature, str):
        raise BinanceError(400, -1102, "Mandatory parameters 'apiKey' and 'signature'.")
    key = gw.node.view.access.api_keys.get(key_id)
    if key is None:
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    now_ms = _now_ms()
    window = params.get("recvWindow")
    try:
        check_fresh(str(params.get("timestamp", "")), None if window is None else str(window))
    except ApiError:
        raise BinanceError(
            400, -1021, "Timestamp for this request is outside of the recvWindow."
        ) from None
    signed = sorted((k, str(v)) for k, v in params.items() if k != "signature")
    payloads = {
        "&".join(f"{k}={v}" for k, v in signed),
        "&".join(f"{k}={quote(v, safe='')}" for k, v in signed),
    }
    raw = _signature_bytes(key, signature)
    for payload in payloads:
        try:
            verify_signature_bytes(key, gw.sealer, payload.encode(), raw)
        except ApiError:
            continue
        try:
            gw.replay.check(raw.hex(), now_ms)
        except ApiError:
            raise BinanceError(400, -1022, "Signature for this request was already used.") from None
        if not key.scopes & Scope.READ:
            break
        return key
    raise BinanceError(400, -1022, "Signature for this request is not valid.")


def _signature_bytes(key: KeyView, signature: str) -> bytes:
    try:
        text = unquote(signature, errors="strict")
        if key.kind == KeyKind.HMAC:
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise BinanceError(400, -1022, "Signature for this request is not valid.") from None


# ------------------------------------------------------------------ REST: listen keys

USER_STREAMS_KEY = web.AppKey("binance_user_streams", UserStreams)


def add_user_data_stream_routes(app: web.Application) -> None:
    """Create, keep alive and close a listen key, on /api/v3 (spot) and /api/v1 (old paths)."""
    for prefix in ("/api/v3", "/api/v1"):
        path = prefix + "/userDataStream"
        app.router.add_post(path, binance_route(create_listen_key, USER_DATA_STREAM_WEIGHT))
        app.router.add_put(path, binance_route(keep_alive_listen_key, USER_DATA_STREAM_WEIGHT))
        app.router.add_delete(path, binance_route(close_listen_key, USER_DATA_STREAM_WEIGHT))


def user_streams(request: web.Request) -> UserStreams:
    """The node's user streams (made at start-up, with the feed hub they render for)."""
    streams = request.app.get(USER_STREAMS_KEY)
    if streams is None:
        raise BinanceError(503, -1007, "The user data stream is not running on this node.")
    return streams


async def _api_key(request: web.Request) -> KeyView:
    """Like Binance: the X-MBX-APIKEY header alone, no signature."""
    key_id = request.headers.get(API_KEY_HEADER)
    if not key_id:
        raise BinanceError(401, -2014, "API-key format invalid.")
    try:
        key = await gateway(request).known_key(key_id)
    except ApiError:
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.") from None
    if not key.scopes & Scope.READ:
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    return key


async def _listen_key_param(request: web.Request, key: KeyView) -> str:
    body = (await gateway(request).body(request)).decode("utf-8", errors="replace")
    params = read_params((request.rel_url.raw_query_string, body), LISTEN_KEY_PARAMS)
    listen_key = params.get("listenKey")
    if not listen_key:
        raise BinanceError(400, -1102, "Mandatory parameter 'listenKey' was not sent.")
    streams = user_streams(request)
    if streams.key_of(listen_key) is None or listen_key != streams.listen_key(key.key_id):
        raise BinanceError(400, -1125, "This listenKey does not exist.")
    return listen_key


async def create_listen_key(request: web.Request) -> web.Response:
    key = await _api_key(request)
    await request.read()
    return web.json_response({"listenKey": user_streams(request).open(key.key_id)})


async def keep_alive_listen_key(request: web.Request) -> web.Response:
    key = await _api_key(request)
    user_streams(request).keep_alive(await _listen_key_param(request, key))
    return web.json_response({})


async def close_listen_key(request: web.Request) -> web.Response:
    key = await _api_key(request)
    user_streams(request).close(await _listen_key_param(request, key))
    return web.json_response({})
