"""What every Binance route shares: its error shape, its parameters, its request weight, and
the signed-request check.

Binance answers every failure as `{"code": -NNNN, "msg": "..."}` and every answer
with the weight the caller has used this minute (`X-MBX-USED-WEIGHT-1M`); client
libraries parse both, so no answer under `/api/v3` may take another shape.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from aiohttp import web

from api.binance_params import BinanceError, read_params, read_signed_params
from api.binance_weight import USED_WEIGHT_HEADER, weight_of
from api.errors import ApiError
from api.gateway import Gateway, Principal, gateway
from api.numbers import parse_count
from api.signing import check_fresh, verify_signature_bytes
from cluster.views import InstrumentView, KeyView
from engine.codes import KeyKind, RejectCode, Scope
from engine.events import Rejected

BINANCE_PATH_PREFIXES = ("/api/v3/", "/api/v1/", "/sapi/v1/")
API_KEY_HEADER = "X-MBX-APIKEY"
REPLAYED_MESSAGE = "Signature for this request was already used."
STALE_MESSAGE = "Timestamp for this request is outside of the recvWindow."
BAD_KEY_MESSAGE = "Invalid API-key, IP, or permissions for action."
ID_MAX = 2**63 - 1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Native codes -> Binance's (HTTP status is kept from the native error).
_CODE_MAP = {
    "unknown_symbol": -1121,
    "unknown_key": -2015,
    "missing_scope": -2015,
    "bad_signature": -1022,
    "stale_request": -1021,
    "bad_timestamp": -1021,
    "rate_limited": -1003,
    "not_committed": -1007,
    "overloaded": -1008,
    "unknown_order": -2013,
    "behind": -1007,
}


def binance_route(handler: Handler, weight: int = 1) -> Handler:
    """Every failure in Binance's error shape (the native middleware never sees one), every
    answer with the caller's weight used this minute; a caller over the weight limit gets
    429 with Retry-After before the handler runs."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        used = 0
        try:
            used = weight_of(request).spend(request.remote or "?", weight)
            response = await handler(request)
        except (BinanceError, ApiError) as exc:
            response = error_response(exc)
        if USED_WEIGHT_HEADER not in response.headers:
            response.headers[USED_WEIGHT_HEADER] = str(used)
        return response

    return wrapped


def error_response(exc: BinanceError | ApiError) -> web.Response:
    """A failure as Binance words it; a native error keeps its HTTP status and headers."""
    if isinstance(exc, BinanceError):
        body: dict = {"code": exc.code, "msg": exc.msg}
        if exc.data is not None:
            body["data"] = exc.data
        return web.json_response(body, status=exc.status, headers=exc.headers)
    code = _CODE_MAP.get(exc.code, -1102 if exc.code.startswith("bad_") else -1000)
    return web.json_response(
        {"code": code, "msg": exc.message}, status=exc.status, headers=exc.headers
    )


def param(params: dict[str, str], name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise BinanceError(
                400,
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return None
    return value


def int_param(
    params: dict[str, str], name: str, default: int | None, low: int, high: int
) -> int | None:
    text = param(params, name, required=default is None)
    if text is None:
        return default
    value = parse_count(text)
    if value is None:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    if not low <= value <= high:
        raise BinanceError(400, -1102, f"Parameter '{name}' must be {low}..{high}.")
    return value


def time_window(params: dict[str, str], span_ms_max: int = 0) -> tuple[int, int]:
    """`startTime` and `endTime` (ms, both optional: 0 and ID_MAX), in order, and at most
    `span_ms_max` apart when both are sent (0: any span)."""
    start = int_param(params, "startTime", 0, 0, ID_MAX) or 0
    end = int_param(params, "endTime", ID_MAX, 0, ID_MAX) or 0
    if start > end:
        raise BinanceError(400, -1127, "startTime is after endTime.")
    if span_ms_max and "startTime" in params and "endTime" in params and end - start > span_ms_max:
        raise BinanceError(400, -1127, "More than 24 hours between startTime and endTime.")
    return start, end


def symbol_of(gw: Gateway, params: dict[str, str]) -> InstrumentView:
    symbol = param(params, "symbol")
    inst = gw.node.view.instruments.get(symbol)
    if inst is None:
        raise BinanceError(400, -1121, "Invalid symbol.")
    return inst


def public_params(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    return read_params((request.rel_url.raw_query_string,), allowed)


async def signed_request(
    request: web.Request, scope: Scope, allowed: frozenset[str]
) -> tuple[Gateway, Principal, dict[str, str]]:
    """Checks the parameters (those `allowed`, and timestamp and recvWindow), the key, the
    signature over query + body, the timestamp window and the scope."""
    gw = gateway(request)
    key = await known_key(request)
    try:
        body = (await gw.body(request)).decode("utf-8")
    except UnicodeDecodeError:
        raise BinanceError(400, -1100, "Illegal characters found in a parameter.") from None
    signed = read_signed_params(request.rel_url.raw_query_string, body, allowed)
    params = signed.params
    now_ms = int(time.time() * 1000)
    try:
        timestamp_ms = check_fresh(
            param(params, "timestamp") or "", params.get("recvWindow"), now_ms
        )
    except ApiError:
        raise BinanceError(400, -1021, STALE_MESSAGE) from None
    canonical = _verify(gw, key, signed.payload.encode(), signed.signature)
    gw.key_limits.take(key.key_id)
    try:
        gw.replay.check(canonical, now_ms)
    except ApiError:
        raise BinanceError(400, -1022, REPLAYED_MESSAGE) from None
    if not key.scopes & scope:
        raise BinanceError(401, -2015, BAD_KEY_MESSAGE)
    return gw, Principal(key.account, key.key_id, key.scopes, canonical, timestamp_ms), params


async def known_key(request: web.Request) -> KeyView:
    """The live key named by X-MBX-APIKEY (the only credential of an unsigned call)."""
    key_id = request.headers.get(API_KEY_HEADER)
    if not key_id:
        raise BinanceError(401, -2014, "API-key format invalid.")
    try:
        return await gateway(request).known_key(key_id)
    except ApiError:
        raise BinanceError(401, -2015, BAD_KEY_MESSAGE) from None


def _verify(gw: Gateway, key: KeyView, payload: bytes, signature: str) -> str:
    """HMAC keys sign in hex, Ed25519 keys in (url-encoded) base64. Returns the signature's
    bytes in hex: one identity per request however the text was spelled or encoded."""
    try:
        text = unquote(signature, errors="strict")
        if not text.isascii():
            raise ValueError("not ASCII")
        raw = (
            bytes.fromhex(text)
            if key.kind == KeyKind.HMAC
            else base64.b64decode(text, validate=True)
        )
        verify_signature_bytes(key, gw.sealer, payload, raw)
    except (ApiError, ValueError, binascii.Error):
        raise BinanceError(400, -1022, "Signature for this request is not valid.") from None
    return raw.hex()


def refuse_replay(rejected: Rejected) -> None:
    """A write the state machine refused for its signature, in Binance's words."""
    if rejected.code == RejectCode.REPLAYED_REQUEST:
        raise BinanceError(400, -1022, REPLAYED_MESSAGE)
    if rejected.code == RejectCode.STALE_REQUEST:
        raise BinanceError(400, -1021, STALE_MESSAGE)
