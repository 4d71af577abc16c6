"""Decimal strings at the edge, integer minor units inside.

An asset's decimals say how many minor units make one unit (USD 2: cents).
A price is quote minor units per base minor unit in the engine, so shown as a
decimal it has `quote decimals - base decimals` places.
"""

from __future__ import annotations

from decimal import Decimal

from api.errors import ApiError

DECIMAL_TEXT_LEN_MAX = 40
# What the engine's integer fields hold (signed 64 bits).
UNITS_MIN = -(2**63)
UNITS_MAX = 2**63 - 1
DIGITS_MAX = 40


def to_units(text: object, decimals: int, field: str) -> int:
    """`"12.34"` with 2 decimals -> 1234; more places than the asset has is an error."""
    if type(text) is not str or not 0 < len(text) <= DECIMAL_TEXT_LEN_MAX:
        raise ApiError(400, f"bad_{field}", f"{field} must be a decimal string")
    try:
        value = Decimal(text)
        if not value.is_finite():
            raise ApiError(400, f"bad_{field}", f"{field} must be finite")
        # Before any arithmetic: "1E+999999" would otherwise become a million-digit integer,
        # holding the interpreter (and the Raft thread) for seconds.
        if not value.is_zero() and not -DIGITS_MAX <= value.adjusted() <= DIGITS_MAX:
            raise ApiError(400, f"bad_{field}", f"{field} is out of range")
        scaled = value.scaleb(decimals)
        integral = scaled == scaled.to_integral_value()
    except ArithmeticError:  # InvalidOperation, Overflow: not a usable decimal
        raise ApiError(400, f"bad_{field}", f"{field} {text!r} is not a usable decimal") from None
    if not integral:
        raise ApiError(400, f"bad_{field}", f"{field} has more than {decimals} decimal places")
    units = int(scaled)
    if not UNITS_MIN <= units <= UNITS_MAX:
        raise ApiError(400, f"bad_{field}", f"{field} is out of range")
    return units


def from_units(units: int, decimals: int) -> str:
    """1234 with 2 decimals -> "12.34"; always exactly `decimals` places (none if <= 0)."""
    if decimals <= 0:
        return str(units * 10**-decimals)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def price_decimals(base_decimals: int, quote_decimals: int) -> int:
    return quote_decimals - base_decimals
