"""Binance request parameters, read as Binance reads them: every one read, none unknown, none
repeated, none empty.

A signed Binance request is signed over the query string concatenated with the
body, with nothing between them, so the signature does not say where the query
ends. The strict reading below is what keeps that boundary from mattering: every
parameter must be `name=value` with a non-empty name and value and no second raw
`=`, so a cut anywhere inside a parameter leaves a piece that is refused, and a
cut between parameters reads the same parameters as no cut at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

SIGNATURE_PARAM = "signature"
# Parameters every signed endpoint reads.
SIGNED_PARAMS = frozenset({"timestamp", "recvWindow"})
PARAM_TEXT_LEN_MAX = 1_024


class BinanceError(Exception):
    """A refusal in Binance's words; `data` is what a partly done request did (Binance's
    cancel-replace answers carry it)."""

    def __init__(
        self,
        status: int,
        code: int,
        msg: str,
        headers: dict[str, str] | None = None,
        data: dict | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers
        self.data = data


@dataclass(frozen=True, slots=True)
class SignedParams:
    params: dict[str, str]
    # What the client signed: query + body without the signature parameter.
    payload: str
    signature: str


def read_params(parts: tuple[str, ...], allowed: frozenset[str]) -> dict[str, str]:
    """The parameters of the query (and body): each name once, every one in `allowed` (read
    by the endpoint), none empty."""
    params: dict[str, str] = {}
    for part in parts:
        for piece in part.split("&") if part else ():
            if not piece:
                continue
            name, value = _pair(piece)
            if name in params:
                raise BinanceError(400, -1101, "Duplicate values for a parameter detected.")
            params[name] = value
    read = sum(1 for name in params if name in allowed)
    if read < len(params):
        raise BinanceError(
            400,
            -1104,
            f"Not all sent parameters were read; read '{read}' parameter(s) but was sent"
            f" '{len(params)}'.",
        )
    empty = next((name for name, value in params.items() if not value), None)
    if empty is not None:
        raise BinanceError(400, -1105, f"Parameter '{empty}' was empty.")
    return params


def read_signed_params(query: str, body: str, allowed: frozenset[str]) -> SignedParams:
    """The parameters of a signed request, the signature, and the text it signs."""
    signature = ""
    kept: list[str] = []
    for part in (query, body):
        pieces = []
        for piece in part.split("&") if part else ():
            if piece.startswith(SIGNATURE_PARAM + "="):
                if signature:
                    raise BinanceError(400, -1101, "Duplicate values for a parameter detected.")
                signature = piece[len(SIGNATURE_PARAM) + 1 :]
            else:
                pieces.append(piece)
        kept.append("&".join(pieces))
    if not signature:
        raise BinanceError(400, -1102, "Mandatory parameter 'signature' was not sent.")
    params = read_params((kept[0], kept[1]), allowed | SIGNED_PARAMS)
    return SignedParams(params, kept[0] + kept[1], signature)


def _pair(piece: str) -> tuple[str, str]:
    """(name, value) of one `name=value`; a piece with no `=` is a name with an empty value
    (a fragment of a parameter, perhaps, cut where the query ends and the body starts)."""
    raw_name, _, raw_value = piece.partition("=")
    if len(piece) > PARAM_TEXT_LEN_MAX or "=" in raw_value:
        raise BinanceError(400, -1100, "Illegal characters found in a parameter.")
    try:
        return unquote_plus(raw_name, errors="strict"), unquote_plus(raw_value, errors="strict")
    except UnicodeDecodeError:
        raise BinanceError(400, -1100, "Illegal characters found in a parameter.") from None
