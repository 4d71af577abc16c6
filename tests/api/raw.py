"""Requests built by hand, byte for byte, as an attacker or a Binance client library sends them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yarl

# A stalled subscriber's receive buffer: small, so a little data shows the stall.
RECEIVE_BYTES = 4 * 1024


async def raw_call(
    node: str, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict]:
    url = f"http://{node}{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.text())


async def binance_call(
    node: str,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    key: dict[str, Any] | None = None,
    *,
    secret: str | None = None,
    timestamp_ms: int | None = None,
) -> tuple[int, Any]:
    params = dict(params or {})
    headers = {}
    body = ""
    query = urlencode(params)
    if key is not None:
        params["timestamp"] = timestamp_ms or int(time.time() * 1000)
        encoded = urlencode(params)
        signature = binance_signature(secret or key["secret"], encoded)
        headers["X-MBX-APIKEY"] = key["api_key"]
        if method == "POST":
            body, query = f"{encoded}&signature={signature}", ""
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            query = f"{encoded}&signature={signature}"
    url = f"http://{node}{path}" + (f"?{query}" if query else "")
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.text())


def binance_signature(secret: str, signed_text: str) -> str:
    """Binance's HMAC-SHA256 signature over the query string concatenated with the body."""
    return hmac.new(secret.encode(), signed_text.encode(), hashlib.sha256).hexdigest()


async def binance_raw(
    node: str, method: str, path: str, api_key: str, query: str, body: str = ""
) -> tuple[int, Any]:
    """A Binance request whose query and body are exactly the given texts."""
    headers = {"X-MBX-APIKEY": api_key}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    url = f"http://{node}{path}" + (f"?{query}" if query else "")
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, yarl.URL(url, encoded=True), data=body, headers=headers) as answer,
    ):
        return answer.status, json.loads(await answer.text())


def stalled_subscriber(http: str, subscribes: list[dict]) -> socket.socket:
    """A WebSocket client on a raw socket with a small receive buffer that will not read:
    a client library would read into its own memory and hide the stall."""
    host, port = http.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BYTES)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v1/ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    for subscribe in subscribes:
        payload = json.dumps(subscribe).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(bytes((0x81, 0x80 | len(payload))) + mask + masked)
    return sock


def close_code(data: bytes) -> int | None:
    """The code of the close frame among the server's frames (unmasked), if there is one."""
    position = 0
    while position + 2 <= len(data):
        opcode, size = data[position] & 0x0F, data[position + 1] & 0x7F
        position += 2
        if size == 126:
            size = int.from_bytes(data[position : position + 2], "big")
            position += 2
        elif size == 127:
            size = int.from_bytes(data[position : position + 8], "big")
            position += 8
        if opcode == 0x8:
            return int.from_bytes(data[position : position + 2], "big")
        position += size
    return None


def read_to_end(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
