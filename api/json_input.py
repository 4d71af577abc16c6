"""JSON from outside (request bodies, WebSocket messages), parsed with limits.

Python's json module recurses once per level of nesting and turns any run of
digits into an int: 2,000 brackets inside 64 KiB raise RecursionError, and a
60,000-digit number raises ValueError from int() (or, below Python's digit
limit, costs quadratic time to convert). Neither is a JSON error the caller
expects, so both became 500s. Here nesting deeper than JSON_DEPTH_MAX and
numbers longer than JSON_NUMBER_CHARS_MAX are refused before they are built,
and NaN and Infinity (not JSON) are refused too, as are numbers beyond a float (1e400).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

JSON_DEPTH_MAX = 32
JSON_NUMBER_CHARS_MAX = 40
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class JsonRefused(ValueError):
    """Text that is not JSON, or JSON beyond the limits; the message says which."""


class JsonBeyondLimits(JsonRefused):
    """JSON nested too deep or with a number too long: not a mistake a client makes."""


def parse_json(raw: bytes | str) -> Any:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    _check_depth(data)
    try:
        return json.loads(
            data,
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=_constant,
        )
    except JsonRefused:
        raise
    except RecursionError:  # guarded by _check_depth; kept so no input can escape as a 500
        raise JsonBeyondLimits(f"JSON nested deeper than {JSON_DEPTH_MAX} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise JsonRefused("not JSON") from None


def _check_depth(data: bytes) -> None:
    # Most bodies have a handful of brackets: no scan at all for them.
    if data.count(b"[") + data.count(b"{") <= JSON_DEPTH_MAX:
        return
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            if depth > JSON_DEPTH_MAX:
                raise JsonBeyondLimits(f"JSON nested deeper than {JSON_DEPTH_MAX} levels")
        else:
            depth -= 1


def _number(kind: type) -> Any:
    def parse(text: str) -> Any:
        if len(text) > JSON_NUMBER_CHARS_MAX:
            raise JsonBeyondLimits(f"a JSON number longer than {JSON_NUMBER_CHARS_MAX} characters")
        number = kind(text)
        # 1e400 is a short JSON number that float() makes infinite: echoed back (an op's id),
        # it would be written as Infinity, which is not JSON either.
        if kind is float and not math.isfinite(number):
            raise JsonBeyondLimits(f"the JSON number {text} is beyond a 64-bit float")
        return number

    return parse


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")
