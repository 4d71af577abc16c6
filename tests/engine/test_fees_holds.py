"""Fees (maker and taker rates, rounding down, the fee account) and the holds that pay them."""

from conftest import (
    ALICE,
    BASE,
    BOB,
    BUY,
    CAROL,
    CASH,
    QUOTE,
    SELL,
    SHARES,
    SYMBOL,
    T0,
    TRADERS,
    assert_holds_exact,
    balance_views,
    core,
    make_exchange,
    of_type,
    one,
    place,
    rest,
    total,
)

from engine import FEE_ACCOUNT, Exchange
from engine.commands import UpdateInstrument
from engine.events import Accepted, Trade


def fee_exchange(reference_price: int = 1_000) -> Exchange:
    """Maker 10 bps, taker 20 bps."""
    return make_exchange(reference_price=reference_price, maker_fee_bps=10, taker_fee_bps=20)


def test_a_buy_that_crosses_two_levels_fills_both_at_their_prices_and_pays_the_taker_fee() -> None:
    ex = fee_exchange()
    ask_1 = rest(ex, ALICE, SELL, 3, 1_000)
    ask_2 = rest(ex, CAROL, SELL, 4, 1_010)
    s = ex.seq
    events = place(ex, BOB, BUY, 5, 1_010)
    accepted = one(events, Accepted)
    # The hold covers 5 x 1010 plus the dearer fee (20 bps) on it.
    assert accepted.hold == 5_050 + 10
    taker = accepted.order_id
    assert core(events)[1:] == [
        Trade(s + 2, T0, 1, SYMBOL, 1_000, 3, BUY, ask_1, ALICE, 3, 0, taker, BOB, 6, 2),
        Trade(s + 3, T0, 2, SYMBOL, 1_010, 2, BUY, ask_2, CAROL, 2, 2, taker, BOB, 4, 0),
    ]
    assert balance_views(events) == {
        (BOB, QUOTE): (CASH - 3_000 - 6 - 2_020 - 4, 0),
        (BOB, BASE): (SHARES + 5, 0),
        (ALICE, BASE): (SHARES - 3, 0),
        (ALICE, QUOTE): (CASH + 3_000 - 3, 0),
        (CAROL, BASE): (SHARES - 4, 2),
        (CAROL, QUOTE): (CASH + 2_020 - 2, 0),
        (FEE_ACCOUNT, QUOTE): (15, 0),
    }
    assert total(ex, QUOTE) == len(TRADERS) * CASH
    assert_holds_exact(ex)


def test_the_resting_side_pays_the_maker_fee_and_the_incoming_side_the_taker_fee() -> None:
    ex = fee_exchange()
    rest(ex, BOB, BUY, 10, 1_000)
    assert ex.balance(BOB, QUOTE) == (CASH - 10_020, 10_020)
    trade = one(place(ex, ALICE, SELL, 10, 1_000), Trade)
    assert (trade.maker_account, trade.maker_fee) == (BOB, 10)
    assert (trade.taker_account, trade.taker_fee) == (ALICE, 20)
    # Bob held for the taker rate but paid the maker rate: the 10 left over comes back.
    assert ex.balance(BOB, QUOTE) == (CASH - 10_010, 0)
    assert ex.balance(ALICE, QUOTE) == (CASH + 10_000 - 20, 0)
    assert ex.balance(FEE_ACCOUNT, QUOTE) == (30, 0)


def test_a_buy_filled_below_its_limit_gets_the_unused_hold_back() -> None:
    ex = fee_exchange()
    rest(ex, ALICE, SELL, 10, 1_000)
    events = place(ex, BOB, BUY, 10, 1_010)
    assert one(events, Accepted).hold == 10_100 + 20
    assert one(events, Trade).taker_fee == 20
    assert balance_views(events)[(BOB, QUOTE)] == (CASH - 10_000 - 20, 0)


def test_fees_round_down() -> None:
    ex = fee_exchange(reference_price=333)
    rest(ex, ALICE, SELL, 3, 333)
    trade = one(place(ex, BOB, BUY, 3, 333), Trade)
    # 999 x 10 bps = 0.999 and 999 x 20 bps = 1.998.
    assert (trade.maker_fee, trade.taker_fee) == (0, 1)
    assert ex.balance(BOB, QUOTE) == (CASH - 1_000, 0)
    assert ex.balance(ALICE, QUOTE) == (CASH + 999, 0)
    assert ex.balance(FEE_ACCOUNT, QUOTE) == (1, 0)


def test_fees_round_down_per_fill_not_per_order() -> None:
    ex = fee_exchange(reference_price=333)
    rest(ex, ALICE, SELL, 3, 333)
    rest(ex, CAROL, SELL, 3, 333)
    trades = of_type(place(ex, BOB, BUY, 6, 333), Trade)
    # Two fills of 999: 1 + 1, not 1998 x 20 bps = 3.
    assert [trade.taker_fee for trade in trades] == [1, 1]
    assert ex.balance(BOB, QUOTE) == (CASH - 1_998 - 2, 0)
    assert_holds_exact(ex)


def test_the_fee_account_collects_both_fees_in_the_quote_asset() -> None:
    ex = fee_exchange()
    rest(ex, ALICE, SELL, 5, 1_000)
    place(ex, BOB, BUY, 5, 1_000)
    assert ex.balance(FEE_ACCOUNT, QUOTE) == (5 + 10, 0)
    assert ex.balance(FEE_ACCOUNT, BASE) == (0, 0)
    assert total(ex, QUOTE) == len(TRADERS) * CASH
    assert total(ex, BASE) == len(TRADERS) * SHARES


def test_with_zero_fees_nobody_pays_and_the_fee_account_is_untouched(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 5, 100)
    events = place(ex, BOB, BUY, 5, 100)
    trade = one(events, Trade)
    assert (trade.maker_fee, trade.taker_fee) == (0, 0)
    assert (FEE_ACCOUNT, QUOTE) not in balance_views(events)
    assert ex.balance(FEE_ACCOUNT, QUOTE) == (0, 0)
    assert ex.balance(BOB, QUOTE) == (CASH - 500, 0)
    assert ex.balance(ALICE, QUOTE) == (CASH + 500, 0)


def test_fee_rates_are_fixed_when_an_order_is_accepted() -> None:
    ex = fee_exchange()
    rest(ex, BOB, BUY, 10, 1_000)
    ex.apply(UpdateInstrument(SYMBOL, maker_fee_bps=0, taker_fee_bps=0))
    trade = one(place(ex, ALICE, SELL, 10, 1_000), Trade)
    # Bob's order keeps the maker rate it was accepted with; Alice gets today's rate.
    assert (trade.maker_fee, trade.taker_fee) == (10, 0)


def test_a_partly_filled_buy_holds_exactly_what_its_rest_can_cost() -> None:
    ex = fee_exchange()
    bid = rest(ex, BOB, BUY, 10, 1_000)
    place(ex, ALICE, SELL, 3, 1_000)
    # 7 x 1000 plus 20 bps on it.
    assert ex.orders[bid].held == 7_014
    assert ex.balance(BOB, QUOTE) == (CASH - 3_000 - 3 - 7_014, 7_014)
    assert_holds_exact(ex)
