"""What every client route needs: the node, authentication, limits, read-your-writes, writes.

One `Gateway` per node process, built at start-up and stored in the app.
Writes are authenticated on the node the client reached; a follower then
hands the resulting engine command to the leader over the admin channel, so
the leader never needs the client's signature or secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyotp
from aiohttp import web

from api.amounts import from_units, price_decimals, to_units
from api.candles import CandleBook
from api.errors import ApiError
from api.forwarding import Forwarder
from api.node_channel import unpack_outcomes
from api.numbers import parse_count
from api.query import read_body
from api.rate_limits import RateLimiter
from api.sealing import Sealer, SealError
from api.signing import (
    KEY_HEADER,
    RECV_WINDOW_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    check_fresh,
    signing_payload,
    verify_signature,
)
from api.submission import NOT_COMMITTED_MESSAGE, submit_all
from cluster.batcher import NotCommitted
from cluster.event_log import EventLog
from cluster.port import NodePort
from cluster.views import InstrumentView, KeyView
from engine.codes import Scope
from engine.commands import Command, CommandDecodeError, Signed, checked_bytes
from engine.events import Event, Rejected, event_from_wire
from projection.history import HistoryStore
from projection.reader import HistoryReader, ProjectionUnavailable

SUBMIT_TIMEOUT_MS = 5_000
MIN_SEQ_WAIT_MS_MAX = 2_000
MIN_SEQ_POLL_S = 0.005
KEY_WAIT_S = 1.0
# An idle leader appends a time tick every second: applied log time older than this
# means the node is behind (or cut off).
APPLIED_STALE_MS = 3_000
STORE_WAIT_S = 5.0
TOTP_HEADER = "X-Raftex-TOTP"
TOTP_CODE_DIGITS = 6


SIGNATURE_DIGEST_HEX_LEN = 32
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who signed a request, with which key, and the request's signature (canonical: the
    lowercase hex of its bytes, however the client spelled it) and signed timestamp."""

    account: str
    key_id: str
    scopes: int
    signature: str
    timestamp_ms: int

    def signed(self, command: Command, part: int = 0, totp_step: int = 0) -> Signed:
        """`command` as this request's write: the state machine applies it at most once per
        (signature, part) in the whole cluster, whichever nodes the request reaches. `part`
        tells the commands of one request apart (a batch of orders); `totp_step` is the time
        step of the second factor code it spends."""
        digest = hashlib.sha256(bytes.fromhex(self.signature) + part.to_bytes(2, "big"))
        return Signed(
            digest.hexdigest()[:SIGNATURE_DIGEST_HEX_LEN], self.timestamp_ms, totp_step, command
        )


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What the state machine did with one command: its events (typed), the seq they end
    at, and the node that led."""

    events: list[Event]
    seq: int
    led_by: str

    @property
    def rejected(self) -> Rejected | None:
        """The command's Rejected event, if the state machine refused it."""
        return next((e for e in self.events if type(e) is Rejected), None)

    @property
    def where(self) -> dict[str, Any]:
        """What every write answer carries: the seq it was applied at, the node that led."""
        return {"seq": self.seq, "led_by": self.led_by}

    def first(self, kind: type[E]) -> E | None:
        """The first of the command's events of this kind."""
        return next((e for e in self.events if type(e) is kind), None)


@dataclass(slots=True)
class Gateway:
    node: NodePort
    sealer: Sealer
    ip_limits: RateLimiter
    key_limits: RateLimiter
    candles: CandleBook
    replay: ReplayGuard = field(default_factory=ReplayGuard)
    # The history projection this node reads (None: it runs none).
    history: HistoryReader | None = None
    # What this node signs (and checks) node-channel requests with.
    node_key: bytes = b""
    forwarder: Forwarder | None = None

    # ------------------------------------------------------------ auth

    async def authenticate(self, request: web.Request, scope: Scope) -> Principal:
        key_id = request.headers.get(KEY_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not key_id or not timestamp or not signature:
            raise ApiError(
                401,
                "unauthenticated",
                f"signed requests need {KEY_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}",
            )
        key = await self.known_key(key_id)
        now_ms = int(time.time() * 1000)
        timestamp_ms = check_fresh(timestamp, request.headers.get(RECV_WINDOW_HEADER), now_ms)
        body = await self.body(request)
        # Exactly what the client sent and signed: the path and query before decoding.
        url = request.rel_url
        payload = signing_payload(
            timestamp_ms, request.method, url.raw_path, url.raw_query_string, body
        )
        canonical = verify_signature(key, self.sealer, payload, signature)
        # Charged only once the signature holds: nobody can spend another's key budget.
        self.key_limits.take(key_id)
        self.replay.check(canonical, now_ms)
        principal = Principal(key.account, key_id, key.scopes, canonical, timestamp_ms)
        require_scope(principal, scope, "this request")
        return principal

    async def body(self, request: web.Request) -> bytes:
        return await read_body(request, self.node.config.http_body_timeout_s)

    async def known_key(self, key_id: str) -> KeyView:
        """A key created a moment ago on the leader may not be applied here yet: while this
        node is behind its commit index, wait (bounded) for it before calling it unknown."""
        deadline = time.monotonic() + KEY_WAIT_S
        node = self.node
        while node.view.access.api_keys.get(key_id) is None and time.monotonic() < deadline:
            if not self._catching_up():
                break
            await asyncio.sleep(MIN_SEQ_POLL_S)
        if node.view.access.api_keys.get(key_id) is None and self._catching_up():
            # Catching up (or cut off): it cannot tell an unknown key from a new one yet.
            raise ApiError(
                503, "behind", f"node {node.node_id} is catching up; retry here or elsewhere"
            )
        return self.key(key_id)

    def _catching_up(self) -> bool:
        """No leader known, or what this node applied is older than the idle leader's ticks
        allow (a follower's own commit index cannot tell: it never runs ahead of its log)."""
        node = self.node
        stale_ms = time.time() * 1000 - node.view.log_time_ms
        return node.leader_id() is None or stale_ms > APPLIED_STALE_MS

    def key(self, key_id: str) -> KeyView:
        key = self.node.view.access.api_keys.get(key_id)
        if key is None:
            raise ApiError(401, "unknown_key", "no such API key (revoked, or not yet applied)")
        return key

    def second_factor_step(self, account: str, code: object) -> int:
        """The TOTP time step of a current code of the account (the one before and the one
        after count too, for clock drift). The code is spent by the write that carries the
        step, in the replicated state: once in the whole cluster, and only if it succeeds."""
        sealed = self.node.view.access.second_factors.get(account)
        if sealed is None:
            raise ApiError(
                403, "second_factor_required", "enrol a TOTP second factor for this account first"
            )
        if type(code) is not str or not (
            code.isascii() and code.isdigit() and len(code) == TOTP_CODE_DIGITS
        ):
            raise ApiError(401, "bad_second_factor", f"send the current TOTP code in {TOTP_HEADER}")
        try:
            totp = pyotp.TOTP(self.sealer.unseal(sealed).decode())
        except SealError:
            raise ApiError(401, "bad_second_factor", "second factor unusable here") from None
        now_step = int(time.time()) // totp.interval
        for step in (now_step, now_step - 1, now_step + 1):
            if hmac.compare_digest(totp.at(step * totp.interval), code):
                return step
        raise ApiError(401, "bad_second_factor", "TOTP code is wrong or expired")

    # ------------------------------------------------------------ reads

    async def wait_for_seq(self, request: web.Request) -> None:
        """Read-your-writes: with `min_seq`, wait (bounded) until this node applied that far."""
        text = request.query.get("min_seq")
        if text is None:
            return
        min_seq = parse_count(text)
        if min_seq is None:
            raise ApiError(400, "bad_min_seq", "min_seq must be a whole number (ASCII digits)")
        await self.wait_until_applied(min_seq)

    async def wait_until_applied(self, min_seq: int) -> None:
        """Waits (bounded) until this node applied `min_seq`, or answers 409 `behind`."""
        if not await self._applied(min_seq):
            status = self.node.status()
            raise ApiError(
                409,
                "behind",
                f"node {status['id']} has applied seq {status['last_seq']} < {min_seq};"
                f" lag {status['lag']} entries; retry or ask another node",
            )

    async def _applied(self, seq: int) -> bool:
        deadline = time.monotonic() + MIN_SEQ_WAIT_MS_MAX / 1000
        while self.node.view.last_seq < seq:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(MIN_SEQ_POLL_S)
        return True

    async def history_store(self) -> HistoryStore:
        """The history projection once it holds everything this node has applied (so a
        read after `wait_for_seq` sees that seq), or 503 `behind` / `no_projection`."""
        if self.history is None:
            raise ApiError(
                503,
                "no_projection",
                f"node {self.node.node_id} keeps no history; ask a node that runs a projection",
            )
        target = self.node.applied_index
        try:
            store = await asyncio.to_thread(self.history.at_least, target, STORE_WAIT_S)
        except ProjectionUnavailable as exc:
            raise ApiError(503, "no_projection", str(exc)) from None
        if store is None:
            raise ApiError(503, "behind", "this node's projection is behind its log; retry")
        return store

    async def projection_status(self) -> dict[str, Any]:
        """How far this node's projection has got: the log index it reached, and its lag
        behind the node in entries and in log time."""
        if self.history is None:
            return {"state": "none"}
        index, _, log_time_ms = await asyncio.to_thread(self.history.position)
        node = self.node
        return {
            "state": "running" if index else "starting",
            "index": index,
            "lag_entries": max(0, node.applied_index - index),
            "lag_ms": max(0, node.view.log_time_ms - log_time_ms) if index else None,
        }

    async def event_log_caught_up(self) -> EventLog:
        """The event log once it holds what this node has applied, or 503 `behind`."""
        if not await asyncio.to_thread(self.node.wait_for_event_log, STORE_WAIT_S):
            raise ApiError(503, "behind", "this node's event log is behind its log; retry")
        return self.node.event_log

    async def history_at(self, seq: int) -> HistoryStore:
        """The history projection once it holds `seq` (a write led elsewhere), or 503."""
        if not await self._applied(seq):
            raise ApiError(503, "behind", f"this node has not applied seq {seq} yet; retry")
        return await self.history_store()

    def instrument(self, symbol: str) -> InstrumentView:
        inst = self.node.view.instruments.get(symbol)
        if inst is None:
            raise ApiError(404, "unknown_symbol", f"no instrument {symbol!r}")
        return inst

    def decimals(self, asset: str) -> int:
        return self.node.view.access.assets.get(asset, 0)

    def scales(self, inst: InstrumentView) -> tuple[int, int]:
        """(price decimals, quantity decimals) of an instrument."""
        base = self.decimals(inst.base)
        return price_decimals(base, self.decimals(inst.quote)), base

    def price_text(self, inst: InstrumentView, units: int) -> str:
        return from_units(units, self.scales(inst)[0])

    def qty_text(self, inst: InstrumentView, units: int) -> str:
        return from_units(units, self.scales(inst)[1])

    def quote_text(self, inst: InstrumentView, units: int) -> str:
        """An amount of the quote asset: notionals, holds and fees."""
        return from_units(units, self.decimals(inst.quote))

    def price_units(self, inst: InstrumentView, text: object, name: str = "price") -> int:
        return to_units(text, self.scales(inst)[0], name)

    def qty_units(self, inst: InstrumentView, text: object, name: str = "qty") -> int:
        return to_units(text, self.scales(inst)[1], name)

    # ------------------------------------------------------------ writes

    async def submit(self, command: Command, timeout_ms: int = SUBMIT_TIMEOUT_MS) -> WriteOutcome:
        """Through the log on the leader (here, or forwarded once); 503 if not confirmed."""
        outcome = (await self.submit_many([command], timeout_ms))[0]
        if isinstance(outcome, ApiError):
            raise outcome
        return outcome

    async def submit_many(
        self, commands: list[Command], timeout_ms: int = SUBMIT_TIMEOUT_MS
    ) -> list[WriteOutcome | ApiError]:
        """Each command's outcome, or the 503 `not_committed` that stands for it. Commands are
        checked and encoded here, once: they travel as bytes to the nodes that apply them."""
        try:
            encoded = [checked_bytes(c) for c in commands]
        except CommandDecodeError as exc:
            raise ApiError(400, "bad_command", str(exc)) from None
        node = self.node
        if not node.is_leader():
            return await self._forward(encoded, timeout_ms)
        return [
            _not_committed(outcome.reason)
            if isinstance(outcome, NotCommitted)
            else WriteOutcome(outcome, last_seq(outcome, node), node.led_by())
            for outcome in await submit_all(node, encoded, timeout_ms)
        ]

    async def _forward(
        self, commands: list[bytes], timeout_ms: int
    ) -> list[WriteOutcome | ApiError]:
        """To the leader on the node channel; its answer's event wires become events again."""
        if self.forwarder is None:
            raise ApiError(503, "not_committed", f"node starting; {NOT_COMMITTED_MESSAGE}")
        status, raw = await self.forwarder.post_commands(commands, timeout_ms)
        if status != 200:
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {}
            raise ApiError(
                503 if status >= 500 else status,
                payload.get("code", "not_committed"),
                payload.get("message", NOT_COMMITTED_MESSAGE),
            )
        led_by, rows = unpack_outcomes(raw)
        return [
            ApiError(503, "not_committed", f"{NOT_COMMITTED_MESSAGE} ({payload})")
            if seq is None
            else WriteOutcome([event_from_wire(w) for w in payload], seq, led_by)
            for seq, payload in rows
        ]


def last_seq(events: list[Event], node: NodePort) -> int:
    """The seq a write answer names: its last event's, or (no events) what the node has
    applied."""
    return max((e.seq for e in events), default=node.view.last_seq)


def _not_committed(reason: str) -> ApiError:
    return ApiError(503, "not_committed", f"{NOT_COMMITTED_MESSAGE} ({reason})")


def require_scope(principal: Principal, scope: Scope, action: str) -> None:
    if not principal.scopes & scope:
        raise ApiError(
            403,
            "missing_scope",
            f"{action} needs a key with the {scope.name.lower()} scope;"
            f" key {principal.key_id} lacks it",
        )


GATEWAY_KEY = web.AppKey("gateway", Gateway)


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY_KEY]


def totp_code(request: web.Request) -> str | None:
    return request.headers.get(TOTP_HEADER)
