"""FIX Logon authenticated with an account's API key, the way Binance's FIX API does it.

A Logon (35=A) carries Username(553) = the API key id and RawData(96) = a
signature by that key over the Logon's own header fields, joined by SOH:

    "A" SOH SenderCompID SOH TargetCompID SOH MsgSeqNum SOH SendingTime

Ed25519 keys sign in base64 (Binance's form); HMAC keys send the hex
HMAC-SHA256 of it under their secret. The signed header is fresh by
construction (SendingTime within LOGON_WINDOW_MS of the node's clock) and a
signature is accepted once per node, so a captured Logon cannot be replayed.
No quickfix import here: both the acceptor and the client sign and check with it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.errors import ApiError
from api.gateway import Gateway
from api.signing import hmac_signature, verify_signature_bytes
from engine.codes import KeyKind, Scope

SOH = "\x01"
# A Logon's SendingTime may be this far from the node's clock (either way).
LOGON_WINDOW_MS = 30_000
USERNAME_LEN_MAX = 64
RAW_DATA_LEN_MAX = 256
_TIMESTAMP_LEN_MIN = len("YYYYMMDD-HH:MM:SS")


class LogonRefused(Exception):
    """A Logon the acceptor refuses; the message is the Logout's Text(58)."""


@dataclass(frozen=True, slots=True)
class LogonFields:
    """What a Logon brings for authentication, read off the message on quickfix's thread."""

    sender_comp_id: str
    target_comp_id: str
    msg_seq_num: int
    sending_time: str
    username: str
    raw_data: str


@dataclass(frozen=True, slots=True)
class FixPrincipal:
    """Who a session trades for after its Logon: the account and the key it proved."""

    account: str
    key_id: str


def logon_payload(sender: str, target: str, msg_seq_num: int, sending_time: str) -> bytes:
    return SOH.join(("A", sender, target, str(msg_seq_num), sending_time)).encode()


def sign_logon(kind: str, secret: str, payload: bytes) -> str:
    """RawData(96) for a Logon: base64 Ed25519 (secret: the private key in hex), or hex
    HMAC-SHA256 (secret: the shared secret)."""
    if kind == "ed25519":
        private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
        return base64.b64encode(private.sign(payload)).decode()
    if kind == "hmac":
        return hmac_signature(secret.encode(), payload)
    raise ValueError("kind is ed25519 or hmac")


def utc_timestamp_ms(text: str) -> int | None:
    """A FIX UTCTimestamp ("YYYYMMDD-HH:MM:SS[.fraction]") in Unix ms; None if it is not one."""
    if len(text) < _TIMESTAMP_LEN_MIN or not text.isascii():
        return None
    whole, _, fraction = text.partition(".")
    try:
        moment = datetime.strptime(whole, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    if fraction and not fraction.isdigit():
        return None
    return int(moment.timestamp()) * 1000 + int((fraction + "000")[:3])


async def authenticate_logon(gw: Gateway, logon: LogonFields) -> FixPrincipal:
    """The account a Logon may trade for, or LogonRefused with the reason. Runs on the
    event loop: the key view, the sealer and the replay guard are the loop's."""
    if not logon.username or len(logon.username) > USERNAME_LEN_MAX:
        raise LogonRefused("Username(553) must be the API key id")
    if not logon.raw_data or len(logon.raw_data) > RAW_DATA_LEN_MAX:
        raise LogonRefused("RawData(96) must carry the signature of the Logon")
    now_ms = int(time.time() * 1000)
    sent_ms = utc_timestamp_ms(logon.sending_time)
    if sent_ms is None:
        raise LogonRefused(f"SendingTime {logon.sending_time!r} is not a FIX UTCTimestamp")
    skew_ms = now_ms - sent_ms
    if abs(skew_ms) > LOGON_WINDOW_MS:
        raise LogonRefused(
            f"SendingTime is {skew_ms} ms from server time; the window is {LOGON_WINDOW_MS} ms"
        )
    try:
        key = await gw.known_key(logon.username)
    except ApiError as exc:
        raise LogonRefused(f"unknown API key ({exc.message})") from None
    payload = logon_payload(
        logon.sender_comp_id, logon.target_comp_id, logon.msg_seq_num, logon.sending_time
    )
    try:
        signature = (
            base64.b64decode(logon.raw_data, validate=True)
            if key.kind == KeyKind.ED25519
            else bytes.fromhex(logon.raw_data)
        )
        verify_signature_bytes(key, gw.sealer, payload, signature)
    except (ApiError, ValueError, binascii.Error):
        raise LogonRefused(
            "signature does not verify: RawData(96) signs A|SenderCompID|TargetCompID|"
            "MsgSeqNum|SendingTime (SOH-separated) with the key of Username(553)"
        ) from None
    if not key.scopes & Scope.TRADE:
        raise LogonRefused(f"key {key.key_id} lacks the trade scope FIX order entry needs")
    try:
        gw.replay.check(signature.hex(), now_ms)
    except ApiError:
        raise LogonRefused("this signed Logon was already received") from None
    # Charged only once the signature holds, as for signed HTTP requests.
    try:
        gw.key_limits.take(key.key_id)
    except ApiError as exc:
        raise LogonRefused(exc.message) from None
    return FixPrincipal(key.account, key.key_id)


def same_account(bound: str, principal: FixPrincipal, reset_requested: bool) -> bool:
    """Whether `principal` may take a session last used by account `bound` ("" for never)
    without resetting it: another account would read the stored messages of the first
    through a ResendRequest, so it must log on with ResetSeqNumFlag(141)=Y."""
    return not bound or hmac.compare_digest(bound, principal.account) or reset_requested
