"""Decimal strings at the edge, integer minor units inside.

An asset's decimals say how many minor units make one unit (USD 2: cents).
A price is quote minor units per base minor unit in the engine, so shown as a
decimal it has `quote decimals - base decimals` places.
"""

from __future__ import annotations

from api.errors import ApiError
from api.numbers import is_decimal
from engine.decimals import decimal_text

# What the engine's integer fields hold (signed 64 bits).
UNITS_MAX = 2**63 - 1


def to_units(text: object, decimals: int, field: str) -> int:
    """`"12.34"` with 2 decimals -> 1234; more places than the asset has is an error. Only
    plain decimals (api/numbers.py): no sign, exponent, spaces or other scripts' digits."""
    if not is_decimal(text):
        raise ApiError(
            400,
            f"bad_{field}",
            f'{field} must be a decimal string of digits with at most one point (like "12.5")',
        )
    assert isinstance(text, str)
    whole, _, fraction = text.partition(".")
    extra = fraction[decimals:] if decimals >= 0 else ""
    if extra.strip("0"):
        raise ApiError(400, f"bad_{field}", f"{field} has more than {decimals} decimal places")
    if decimals >= 0:
        units = int(whole + fraction[:decimals].ljust(decimals, "0"))
    else:
        scale = 10**-decimals
        units, rest = divmod(int(whole), scale)
        if rest or fraction.strip("0"):
            raise ApiError(400, f"bad_{field}", f"{field} must be a multiple of {scale}")
    if units > UNITS_MAX:
        raise ApiError(400, f"bad_{field}", f"{field} is out of range")
    return units


def from_units(units: int, decimals: int) -> str:
    """1234 with 2 decimals -> "12.34"; always exactly `decimals` places (none if <= 0)."""
    return decimal_text(units, decimals)


def price_decimals(base_decimals: int, quote_decimals: int) -> int:
    return quote_decimals - base_decimals
