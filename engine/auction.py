"""Call-auction uncrossing: the one price at which a crossed book trades, and what is left over.

The rules are Xetra's auction price determination (T7 Market Model for the trading
venue Xetra, §11.1.1), which Euronext and Nasdaq share up to the last tie-break. They
are applied to every whole price from the lowest limit in the book to the highest:

1. the most executable volume, min(demand, supply);
2. of those, the smallest surplus |demand - supply|;
3. market pressure: a buy surplus would push the price up, so of the prices with a buy
   surplus only the highest stays, and of those with a sell surplus only the lowest;
4. of what remains, the price closest to the reference price (the reference itself when
   it lies between them). Without a reference, the lower median of what remains.

The rules narrow the prices to an interval (volume is quasi-concave in price and the
surplus falls as price rises), and to at most two adjacent prices when the surplus
changes sides, so rule 4 never meets a tie. The range ends at the book's outermost limits
because outside it nothing changes but the price: with more market buys than all the
asks, rule 3 would otherwise climb without end instead of stopping at the highest limit.

A book of market orders alone has no limits: it trades at the reference price (Xetra's
rule), or not at all without one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from engine.codes import Side

# A price level: (price, qty), in minor units and lots like everything in the engine.
Level = tuple[int, int]

NO_SURPLUS = -1


@dataclass(frozen=True, slots=True)
class Uncross:
    """Where an auction trades, how much, and the imbalance it leaves to publish."""

    price: int  # the auction price; 0 when nothing can execute
    volume: int  # executable quantity at that price (0: no cross)
    surplus: int  # |demand - supply| at that price: the imbalance size
    imbalance_side: int  # Side.BUY (more to buy), Side.SELL, or NO_SURPLUS (balanced)


NO_CROSS = Uncross(0, 0, 0, NO_SURPLUS)


def uncross(
    bids: Sequence[Level],
    asks: Sequence[Level],
    market_buy: int,
    market_sell: int,
    reference: int,
) -> Uncross:
    """The auction price by the rules above, in one pass over the levels.

    `bids` best (highest) first and `asks` best (lowest) first, as the book holds them;
    `market_buy`/`market_sell` the total quantity of market orders, which execute at any
    price; `reference` the last price, 0 if there is none.
    """
    assert reference >= 0 and market_buy >= 0 and market_sell >= 0
    if bids or asks:
        runs = _runs(bids, asks, market_buy, market_sell)
    elif reference:
        runs = iter(((reference, reference, market_buy, market_sell),))
    else:
        return NO_CROSS
    # After rules 1 and 2: the candidate interval [first, last], its volume and surplus
    # size, its highest price with a buy surplus and its lowest with a sell surplus (0: none).
    best_volume = best_size = first = last = buy_top = sell_bottom = 0
    for low, high, demand, supply in runs:
        volume = demand if demand < supply else supply
        if volume == 0 or volume < best_volume:
            continue
        surplus = demand - supply
        size = surplus if surplus >= 0 else -surplus
        if volume > best_volume or size < best_size:
            best_volume, best_size, first, buy_top, sell_bottom = volume, size, low, 0, 0
        elif size > best_size:
            continue
        last = high
        if surplus > 0:
            buy_top = high
        elif surplus < 0 and not sell_bottom:
            sell_bottom = low
    if not best_volume:
        return NO_CROSS
    # Rule 3 leaves one price when the surplus is all on one side, the two adjacent prices
    # where it changes sides, or the whole interval when there is none.
    low, high = buy_top or sell_bottom or first, sell_bottom or buy_top or last
    price = min(max(reference, low), high) if reference else (low + high) // 2
    if not best_size:
        return Uncross(price, best_volume, 0, NO_SURPLUS)
    side = Side.BUY if price <= buy_top else Side.SELL
    return Uncross(price, best_volume, best_size, int(side))


def _runs(
    bids: Sequence[Level], asks: Sequence[Level], market_buy: int, market_sell: int
) -> Iterator[tuple[int, int, int, int]]:
    """Every price from the lowest limit to the highest, as runs (low, high, demand, supply)
    over which demand and supply are constant, lowest first.

    Each limit price is a run of its own; the prices strictly between two adjacent limits
    form one run with the demand of the limit above (no bid lies between) and the supply
    of the limit below (no ask lies between). That run can hold less imbalance than either
    neighbour, when market orders alone meet there.
    """
    demand = market_buy + sum(qty for _, qty in bids)
    supply = market_sell
    b = len(bids) - 1  # bids come highest first: walk them from the end
    a = 0
    previous = 0
    while b >= 0 or a < len(asks):
        bid_price = bids[b][0] if b >= 0 else 0
        ask_price = asks[a][0] if a < len(asks) else 0
        price = ask_price if not bid_price or (ask_price and ask_price < bid_price) else bid_price
        assert price > previous, f"levels out of order or repeated at {price}"
        if previous and price > previous + 1:
            yield previous + 1, price - 1, demand, supply
        if price == ask_price:
            supply += asks[a][1]
            a += 1
        yield price, price, demand, supply
        if price == bid_price:
            demand -= bids[b][1]
            b -= 1
        previous = price
