"""An asyncio client for raftex's native API: signed requests, leader hints, safe retries.

    async with RaftexClient(["127.0.0.1:8001", ...], key_id, secret, kind="ed25519") as c:
        order = await c.place_order("AAPL", "buy", "10", price="190.00")

Writes go to the node the client believes leads (followers would forward them,
at the cost of a hop). A write that fails in a way that leaves its fate open
(timeout, node down, 503 `not_committed`) is retried on another node with the
same client order id or request id, which the exchange applies at most once.
A write to a leader that stops answering (paused, cut off) is not waited out:
once it has taken LEADER_SUSPECT_S, the client asks the other nodes, and if
they follow another leader it retries there at once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pyotp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yarl import URL

from api.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    hmac_signature,
    signing_payload,
)
from cluster.tls import client_context

REQUEST_TIMEOUT_S = 10.0
WRITE_ATTEMPTS_MAX = 6
RETRY_PAUSE_S = 0.25
RETRYABLE_CODES = ("not_committed", "overloaded")
LEADER_SUSPECT_S = 0.5
LEADER_PROBE_TIMEOUT_S = 1.0
FEED_RECONNECT_PAUSE_S = 0.2
FEED_CONTROL_TYPES = ("subscribed", "heartbeat", "login", "unsubscribed")


class ClientError(Exception):
    """An answer other than success: HTTP status, the API's stable code, its message."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class Unavailable(ClientError):
    """No node answered: the request may or may not have been applied."""


class RaftexClient:
    def __init__(
        self,
        nodes: Sequence[str],
        key_id: str = "",
        secret: str = "",
        kind: str = "ed25519",
        totp_secret: str = "",
        timeout_s: float = REQUEST_TIMEOUT_S,
        ca_file: Path | None = None,
    ) -> None:
        """`ca_file`: the nodes serve HTTPS with this certificate (or one it signed)."""
        if not nodes:
            raise ValueError("give at least one node address host:port")
        if kind not in ("ed25519", "hmac"):
            raise ValueError("kind is ed25519 or hmac")
        self.nodes = list(nodes)
        self.key_id = key_id
        self.kind = kind
        self._secret = secret
        self._private = (
            Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
            if (kind == "ed25519" and secret)
            else None
        )
        self._totp = pyotp.TOTP(totp_secret) if totp_secret else None
        self._totp_step = 0
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ssl = client_context(ca_file) if ca_file is not None else None
        self._scheme = "https" if ca_file is not None else "http"
        self.preferred = self.nodes[0]
        self._leader_id: str | None = None
        # The node the others last named as leader (None until asked).
        self._leader_http: str | None = None

    async def __aenter__(self) -> RaftexClient:
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False)
        self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ transport

    def sign(self, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
        timestamp_ms = int(time.time() * 1000)
        payload = signing_payload(timestamp_ms, method, path, query, body)
        if self._private is not None:
            signature = self._private.sign(payload).hex()
        else:
            signature = hmac_signature(self._secret.encode(), payload)
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: str(timestamp_ms),
            SIGNATURE_HEADER: signature,
        }

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        signed: bool = True,
        node: str | None = None,
        second_factor: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        """One request to one node (the preferred one unless named); raises ClientError."""
        assert self._session is not None, "use RaftexClient as an async context manager"
        node = node or self.preferred
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        raw = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if raw else {}
        if signed:
            headers.update(self.sign(method, path, query, raw))
        spent_step = self._totp_step
        if second_factor:
            headers["X-Raftex-TOTP"] = await self.next_totp_code()
        # Sent exactly as signed: no re-encoding of the query on the way out.
        url = URL(f"{self._scheme}://{node}{path}" + (f"?{query}" if query else ""), encoded=True)
        # The session's timeout unless this request has its own (an explicit None would
        # mean no timeout at all to aiohttp).
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s is not None else self._timeout
        try:
            async with self._session.request(
                method, url, data=raw, headers=headers, timeout=timeout
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(0, "unavailable", f"{node}: {exc.__class__.__name__}") from None
        try:
            payload = json.loads(text) if text else {}
        except ValueError:
            raise ClientError(response.status, "bad_response", text[:200]) from None
        if response.status >= 400:
            code = payload.get("code", "") if isinstance(payload, dict) else ""
            message = payload.get("message", text) if isinstance(payload, dict) else text
            if second_factor and response.status < 500 and code != "second_factor_used":
                # Refused: the cluster spends a code only with a write that succeeds.
                self._totp_step = spent_step
            raise ClientError(response.status, str(code), str(message), payload)
        return payload

    async def next_totp_code(self) -> str:
        """A code of a time step after the last one this client spent: the cluster takes each
        step once, in order. The next step's code is accepted early (the nodes allow a step
        of clock drift); a third action in one step waits for the step to pass."""
        if self._totp is None:
            raise ValueError("this call needs the account's TOTP secret (totp_secret=...)")
        interval = self._totp.interval
        step = max(int(time.time()) // interval, self._totp_step + 1)
        wait_s = (step - 1) * interval - time.time()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        self._totp_step = step
        return self._totp.at(step * interval)

    async def write(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A write whose body (or path) carries a client order id or request id, so a
        retry after an unclear failure is applied at most once."""
        error: ClientError | None = None
        for attempt in range(WRITE_ATTEMPTS_MAX):
            try:
                answer = await self._attempt(method, path, body)
            except ClientError as exc:
                if not isinstance(exc, Unavailable) and exc.code not in RETRYABLE_CODES:
                    raise
                error = exc
            else:
                led_by = answer.get("led_by") if isinstance(answer, dict) else None
                if led_by and led_by != self._leader_id:
                    # The leader hint: send the next writes there, saving the follower's hop.
                    self._leader_id = led_by
                    await self._find_leader()
                return answer
            await self._find_leader(skip=self.preferred if attempt == 0 else None)
            await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))
        assert error is not None
        raise error

    async def _attempt(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """One try on the preferred node, abandoned (as Unavailable) if it is the leader and,
        while it keeps silent, the other nodes name another one."""
        node = self.preferred
        sent = asyncio.ensure_future(self.request(method, path, body=body, node=node))
        try:
            done, _ = await asyncio.wait({sent}, timeout=LEADER_SUSPECT_S)
            while not done:
                named = await self._ask_leader(skip=node) if node == self._leader_http else None
                if named is not None and named != node:
                    sent.cancel()
                    raise Unavailable(0, "unavailable", f"{node} no longer leads")
                done, _ = await asyncio.wait({sent}, timeout=LEADER_SUSPECT_S)
        except asyncio.CancelledError:
            sent.cancel()
            raise
        return sent.result()

    async def _ask_leader(self, skip: str | None = None) -> str | None:
        """The leader the nodes name (the one of the highest term), asked all at once with a
        short timeout, so a paused or cut-off node costs no more than that."""

        async def ask(node: str) -> dict[str, Any] | None:
            try:
                return await self.request(
                    "GET", "/v1/cluster", signed=False, node=node, timeout_s=LEADER_PROBE_TIMEOUT_S
                )
            except ClientError:
                return None

        answers = await asyncio.gather(*(ask(n) for n in self.nodes if n != skip))
        named = [a for a in answers if isinstance(a, dict) and a.get("leader_http")]
        if not named:
            return None
        return str(max(named, key=lambda a: a.get("term", 0))["leader_http"])

    async def _find_leader(self, skip: str | None = None) -> None:
        """Asks the nodes who leads; prefers it (or just the next node if nobody knows)."""
        leader_http = await self._ask_leader(skip)
        if leader_http is not None:
            self.preferred = self._leader_http = leader_http
            if leader_http not in self.nodes:
                self.nodes.append(leader_http)
            return
        position = self.nodes.index(self.preferred) if self.preferred in self.nodes else -1
        self.preferred = self.nodes[(position + 1) % len(self.nodes)]

    # ------------------------------------------------------------ public

    async def server_time(self) -> Any:
        return await self.request("GET", "/v1/time", signed=False)

    async def cluster(self, node: str | None = None) -> Any:
        return await self.request("GET", "/v1/cluster", signed=False, node=node)

    async def instruments(self) -> Any:
        return await self.request("GET", "/v1/instruments", signed=False)

    async def book(
        self, symbol: str, depth: int = 20, node: str | None = None, **params: Any
    ) -> Any:
        return await self.request(
            "GET", f"/v1/book/{symbol}", params={"depth": depth, **params}, signed=False, node=node
        )

    async def trades(self, symbol: str, limit: int = 100) -> Any:
        return await self.request(
            "GET", f"/v1/trades/{symbol}", params={"limit": limit}, signed=False
        )

    async def candles(self, symbol: str, interval: str = "1m", limit: int = 100) -> Any:
        params = {"interval": interval, "limit": limit}
        return await self.request("GET", f"/v1/candles/{symbol}", params=params, signed=False)

    async def ticker(self, symbol: str) -> Any:
        return await self.request("GET", f"/v1/ticker/{symbol}", signed=False)

    # ------------------------------------------------------------ orders

    async def place_order(
        self,
        symbol: str,
        side: str,
        qty: str,
        price: str | None = None,
        order_type: str = "limit",
        tif: str = "gtc",
        client_order_id: str | None = None,
        **extra: Any,
    ) -> Any:
        body: dict[str, Any] = {
            "symbol": symbol,
            "side": side,
            "type": order_type,
            "qty": qty,
            "tif": tif,
            "client_order_id": client_order_id or uuid.uuid4().hex,
            **extra,
        }
        if price is not None:
            body["price"] = price
        return await self.write("POST", "/v1/orders", body)

    async def place_orders(self, orders: list[dict[str, Any]]) -> Any:
        """Up to 20 orders in one request; each gets a client order id if it has none, so
        the whole request can be retried safely."""
        body = {"orders": [{"client_order_id": uuid.uuid4().hex, **order} for order in orders]}
        return await self.write("POST", "/v1/orders/batch", body)

    async def cancel_order(self, order_id: int = 0, client_order_id: str = "") -> Any:
        return await self.write("DELETE", _order_path(order_id, client_order_id))

    async def amend_order(
        self, symbol: str, order_id: int = 0, client_order_id: str = "", **change: str
    ) -> Any:
        return await self.write(
            "PATCH", _order_path(order_id, client_order_id), {"symbol": symbol, **change}
        )

    async def mass_cancel(self, symbol: str = "") -> Any:
        return await self.request("DELETE", "/v1/orders", params={"symbol": symbol or None})

    async def order(
        self, order_id: int = 0, client_order_id: str = "", node: str | None = None, **params: Any
    ) -> Any:
        path = _order_path(order_id, client_order_id)
        return await self.request("GET", path, params=params, node=node)

    async def orders(
        self, status: str = "open", after: int = 0, limit: int = 100, **params: Any
    ) -> Any:
        params = {"status": status, "after": after, "limit": limit, **params}
        return await self.request("GET", "/v1/orders", params=params)

    async def fills(self, after: int = 0, limit: int = 100, **params: Any) -> Any:
        params = {"after": after, "limit": limit, **params}
        return await self.request("GET", "/v1/fills", params=params)

    # ------------------------------------------------------------ account

    async def account(self) -> Any:
        return await self.request("GET", "/v1/account")

    async def balances(self, **params: Any) -> Any:
        return await self.request("GET", "/v1/account/balances", params=params)

    async def balance_history(self, after_seq: int = 0, limit: int = 100) -> Any:
        params = {"after_seq": after_seq, "limit": limit}
        return await self.request("GET", "/v1/account/balance-history", params=params)

    async def keys(self) -> Any:
        return await self.request("GET", "/v1/account/keys")

    async def create_key(self, kind: str, scopes: list[str], public_key: str = "") -> Any:
        body: dict[str, Any] = {"kind": kind, "scopes": scopes}
        if public_key:
            body["public_key"] = public_key
        return await self.request("POST", "/v1/account/keys", body=body, second_factor=True)

    async def revoke_key(self, key_id: str) -> Any:
        """Revoking another key than this one is a security action: it takes a TOTP code (sent
        when this client has the secret; the node refuses it without one)."""
        other = key_id != self.key_id and self._totp is not None
        return await self.request("DELETE", f"/v1/account/keys/{key_id}", second_factor=other)

    async def withdraw(self, asset: str, amount: str, request_id: str | None = None) -> Any:
        body = {"asset": asset, "amount": amount, "request_id": request_id or uuid.uuid4().hex}
        return await self.request("POST", "/v1/account/withdrawals", body=body, second_factor=True)

    # ------------------------------------------------------------ feeds

    async def stream(
        self,
        channel: str,
        symbol: str = "",
        since: int | None = None,
        nodes: Sequence[str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Messages of one channel, forever, across node failures: on a lost connection
        it subscribes on the next node with `since` = the last seq it delivered, so
        nothing is missed and nothing is delivered twice."""
        assert self._session is not None, "use RaftexClient as an async context manager"
        order = list(nodes or self.nodes)
        last = since
        attempt = 0
        while True:
            node = order[attempt % len(order)]
            attempt += 1
            try:
                scheme = "wss" if self._scheme == "https" else "ws"
                async with self._session.ws_connect(f"{scheme}://{node}/v1/ws") as ws:
                    if channel == "user":
                        await ws.send_json(self._login_message())
                    op = {"op": "subscribe", "channel": channel, "symbol": symbol}
                    if last is not None:
                        op["since"] = last
                    await ws.send_json(op)
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        data = json.loads(message.data)
                        kind = data.get("type")
                        if kind == "error":
                            raise ClientError(0, data["code"], data["message"], data)
                        if kind in FEED_CONTROL_TYPES:
                            continue
                        data = _unseen(data, last)
                        if data is None:
                            continue
                        last = data["seq"]
                        yield data
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(FEED_RECONNECT_PAUSE_S)

    def _login_message(self) -> dict[str, str]:
        headers = self.sign("GET", "/v1/ws", "login", b"")
        return {
            "op": "login",
            "key": headers[KEY_HEADER],
            "timestamp": headers[TIMESTAMP_HEADER],
            "signature": headers[SIGNATURE_HEADER],
        }


def _unseen(data: dict[str, Any], last: int | None) -> dict[str, Any] | None:
    """The part of a message after `last`: book updates carry one seq per change."""
    if last is None or data.get("type") == "snapshot":
        return data
    if data.get("type") == "update" and "changes" in data:
        changes = [c for c in data["changes"] if c[0] > last]
        return {**data, "changes": changes} if changes else None
    return data if data["seq"] > last else None


def _order_path(order_id: int, client_order_id: str) -> str:
    if bool(order_id) == bool(client_order_id):
        raise ValueError("name the order by order_id or by client_order_id")
    return f"/v1/orders/{order_id}" if order_id else f"/v1/orders/by-client-id/{client_order_id}"
