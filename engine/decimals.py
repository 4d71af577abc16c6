"""Integer minor units as the decimal text people read.

The engine counts in minor units (an asset's decimals say how many make one
unit; a price is quote minor units per base minor unit). Whatever it says to a
person, a refusal's message included, shows amounts as decimals of the asset:
"price outside [171.00, 209.00]", never "[17100, 20900]".
"""

from __future__ import annotations


def decimal_text(units: int, places: int) -> str:
    """1234 with 2 places -> "12.34"; always exactly `places` places (none if <= 0, where
    the units are multiples of 10**-places)."""
    if places <= 0:
        return str(units * 10**-places)
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}"
