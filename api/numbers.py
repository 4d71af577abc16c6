"""The one grammar for numbers that arrive as text, in every dialect (native, Binance, feeds).

Python's int() and Decimal() read far more than a client means to send: signs,
spaces, underscores (`"1_0"`), leading zeros and the digits of every script
(`"٣"`). Here a count is ASCII digits with no leading zero, and a decimal is a
count with at most one point and digits after it: nothing else is a number.
"""

from __future__ import annotations

import re

COUNT_DIGITS_MAX = 19
DECIMAL_TEXT_LEN_MAX = 40
# `re.ASCII`: \d would match every script's digits.
_COUNT = re.compile(r"(?:0|[1-9][0-9]*)", re.ASCII)
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)


def parse_count(text: object) -> int | None:
    """A non-negative integer (at most 19 digits), or None if `text` is not one."""
    if type(text) is not str or len(text) > COUNT_DIGITS_MAX or not _COUNT.fullmatch(text):
        return None
    return int(text)


def is_decimal(text: object) -> bool:
    """Digits, at most one point with digits after it; no sign, space, exponent or
    underscore, no leading zero."""
    return (
        type(text) is str and len(text) <= DECIMAL_TEXT_LEN_MAX and bool(_DECIMAL.fullmatch(text))
    )
