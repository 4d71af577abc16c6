"""Signed requests: what is signed, how a signature is checked, and replay refusal.

A request carries `X-Raftex-Key`, `X-Raftex-Timestamp` (Unix ms) and
`X-Raftex-Signature` over

    "{timestamp}\\n{METHOD}\\n{path}\\n{raw query}\\n" + raw body

Ed25519 keys sign it (the cluster stores only the public key); HMAC keys send
hex HMAC-SHA256 of it under their secret. A request is refused if its
timestamp is outside the receive window or its signature was already seen.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.errors import ApiError
from api.numbers import parse_count
from api.sealing import Sealer, SealError
from cluster.views import KeyView
from engine.codes import KeyKind

KEY_HEADER = "X-Raftex-Key"
TIMESTAMP_HEADER = "X-Raftex-Timestamp"
SIGNATURE_HEADER = "X-Raftex-Signature"
RECV_WINDOW_HEADER = "X-Raftex-Recv-Window"
RECV_WINDOW_MS_DEFAULT = 5_000
RECV_WINDOW_MS_MAX = 60_000
SEEN_SIGNATURES_MAX = 200_000
SIGNATURE_HEX_LEN_MAX = 128


def signing_payload(timestamp_ms: int, method: str, path: str, query: str, body: bytes) -> bytes:
    return f"{timestamp_ms}\n{method.upper()}\n{path}\n{query}\n".encode() + body


def check_fresh(timestamp_text: str, window_text: str | None, now_ms: int | None = None) -> int:
    """The request's timestamp, if it is inside the receive window around now."""
    timestamp_ms = parse_count(timestamp_text)
    window_ms = parse_count(window_text) if window_text else RECV_WINDOW_MS_DEFAULT
    if timestamp_ms is None or window_ms is None:
        raise ApiError(401, "bad_timestamp", "timestamp and window are integer ms")
    if not 0 < window_ms <= RECV_WINDOW_MS_MAX:
        raise ApiError(401, "bad_timestamp", f"receive window must be 1..{RECV_WINDOW_MS_MAX} ms")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now_ms - timestamp_ms) > window_ms:
        raise ApiError(
            401,
            "stale_request",
            f"timestamp {timestamp_ms} is {now_ms - timestamp_ms} ms from server time {now_ms}",
        )
    return timestamp_ms


def verify_signature(key: KeyView, sealer: Sealer, payload: bytes, signature_hex: str) -> str:
    """Checks a hex signature; returns it in canonical form (lowercase hex of its bytes), the
    one identity of the request for replay refusal and derived ids, however it was spelled."""
    if not 0 < len(signature_hex) <= SIGNATURE_HEX_LEN_MAX or not signature_hex.isascii():
        raise ApiError(401, "bad_signature", "signature must be hex")
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        raise ApiError(401, "bad_signature", "signature must be hex") from None
    verify_signature_bytes(key, sealer, payload, signature)
    return signature.hex()


def verify_signature_bytes(key: KeyView, sealer: Sealer, payload: bytes, signature: bytes) -> None:
    if key.kind == KeyKind.ED25519:
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.material)).verify(
                signature, payload
            )
        except (InvalidSignature, ValueError):
            raise ApiError(401, "bad_signature", "signature does not verify") from None
        return
    expected = hmac.new(unseal_hmac_secret(key, sealer), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise ApiError(401, "bad_signature", "signature does not verify")


def hmac_signature(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def unseal_hmac_secret(key: KeyView, sealer: Sealer) -> bytes:
    try:
        return sealer.unseal(key.material)
    except SealError:
        # The key was sealed by a cluster with another secret: unusable here.
        raise ApiError(401, "bad_signature", "key unusable in this cluster") from None


class ReplayGuard:
    """Signatures seen within the largest receive window; a second sighting is a replay.

    Per node: a request replayed to another node passes here, which is why
    every write without a client order id gets one derived from its signature
    (the state machine then answers the replay with the original outcome).
    """

    def __init__(self, size_max: int = SEEN_SIGNATURES_MAX) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._size_max = size_max

    def check(self, signature_hex: str, now_ms: int) -> None:
        """`signature_hex` in canonical form (what verify_signature returns)."""
        seen = self._seen
        horizon = now_ms - 2 * RECV_WINDOW_MS_MAX
        while seen and (next(iter(seen.values())) < horizon or len(seen) >= self._size_max):
            seen.popitem(last=False)
        key = signature_hex
        if key in seen:
            raise ApiError(401, "replayed_request", "this signed request was already received")
        seen[key] = now_ms
