"""The channel a node hands its clients' writes to the leader on: authenticated as a node.

A follower forwards a client's write as the bytes it was encoded to at the edge,
to the leader's `/v1/internal/commands`, and gets the outcomes back as event
wires: no JSON, nothing decoded twice, and no admin token. The request is signed
with a key only cluster members hold (derived from the cluster secret):
`X-Raftex-Node-Signature` = HMAC-SHA256(node key, "{timestamp}\\n{node id}\\n" + body),
fresh within NODE_REQUEST_WINDOW_MS.

    request   msgpack [timeout_ms, [command_bytes, ...]]
    answer    msgpack [led_by, [[seq, [event_wire, ...]] | [None, reason], ...]]
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import msgpack
from aiohttp import web

from api.errors import ApiError
from api.numbers import parse_count
from engine.events import Event, event_to_wire

INTERNAL_PATH_PREFIX = "/v1/internal/"
COMMANDS_PATH = "/v1/internal/commands"
NODE_HEADER = "X-Raftex-Node"
NODE_TIMESTAMP_HEADER = "X-Raftex-Node-Timestamp"
NODE_SIGNATURE_HEADER = "X-Raftex-Node-Signature"
NODE_REQUEST_WINDOW_MS = 60_000
CONTENT_TYPE = "application/msgpack"
_KEY_LABEL = b"raftex node channel v1"


def node_key(cluster_secret: str) -> bytes:
    """The key nodes sign their requests to each other with: only members know it."""
    return hmac.new(cluster_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def node_headers(key: bytes, node_id: str, body: bytes) -> dict[str, str]:
    timestamp_ms = int(time.time() * 1000)
    return {
        NODE_HEADER: node_id,
        NODE_TIMESTAMP_HEADER: str(timestamp_ms),
        NODE_SIGNATURE_HEADER: _signature(key, node_id, timestamp_ms, body),
        "Content-Type": CONTENT_TYPE,
    }


def check_node_request(request: web.Request, key: bytes, body: bytes) -> str:
    """The calling node's id, if the request is signed by a member and fresh; else 401."""
    node_id = request.headers.get(NODE_HEADER, "")
    timestamp_ms = parse_count(request.headers.get(NODE_TIMESTAMP_HEADER, ""))
    signature = request.headers.get(NODE_SIGNATURE_HEADER, "")
    if not node_id or timestamp_ms is None or not signature.isascii():
        raise ApiError(401, "unauthorized", "internal requests come from cluster members")
    if abs(time.time() * 1000 - timestamp_ms) > NODE_REQUEST_WINDOW_MS:
        raise ApiError(401, "stale_request", "internal request outside its time window")
    expected = _signature(key, node_id, timestamp_ms, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise ApiError(401, "unauthorized", "internal requests come from cluster members")
    return node_id


def _signature(key: bytes, node_id: str, timestamp_ms: int, body: bytes) -> str:
    message = f"{timestamp_ms}\n{node_id}\n".encode() + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def pack_commands(timeout_ms: int, commands: list[bytes]) -> bytes:
    return msgpack.packb([timeout_ms, commands], use_bin_type=True)


def unpack_commands(body: bytes) -> tuple[int, list[bytes]]:
    """(timeout ms, command bytes) of a forwarded write; 400 for anything else."""
    try:
        timeout_ms, commands = msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise ApiError(400, "bad_request", "internal commands are msgpack") from None
    if type(timeout_ms) is not int or not isinstance(commands, list):
        raise ApiError(400, "bad_request", "internal commands: [timeout_ms, [bytes, ...]]")
    if not all(type(c) is bytes for c in commands):
        raise ApiError(400, "bad_request", "internal commands travel as bytes")
    return timeout_ms, commands


def pack_outcomes(led_by: str, outcomes: list[tuple[int, list[Event]] | str]) -> bytes:
    """Each command's (seq, events) or the reason it was not committed."""
    rows: list[Any] = [
        [None, outcome]
        if isinstance(outcome, str)
        else [outcome[0], [event_to_wire(e) for e in outcome[1]]]
        for outcome in outcomes
    ]
    return msgpack.packb([led_by, rows], use_bin_type=True)


def unpack_outcomes(body: bytes) -> tuple[str, list[Any]]:
    led_by, rows = msgpack.unpackb(body, raw=False)
    return led_by, rows
