"""Amending a resting order: what keeps time priority, what loses it, and what is refused."""

import pytest
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
    apply_rejected,
    assert_holds_exact,
    balance_views,
    core,
    level_views,
    make_exchange,
    one,
    place,
    rest,
)

from engine import Exchange, OrderType, RejectCode, Side
from engine.commands import AmendOrder, CreateAccount, Deposit
from engine.events import Amended, BalanceChanged, LevelChanged, Trade


def queue(ex: Exchange, side: Side, price: int) -> list[int]:
    """Order ids at one level, front of the queue first."""
    inst = ex.instruments[SYMBOL]
    level = inst.bids[-price] if side == BUY else inst.asks[price]
    return list(level.orders)


def test_cutting_the_quantity_keeps_the_place_in_the_queue(ex: Exchange) -> None:
    first = rest(ex, ALICE, SELL, 5, 100)
    second = rest(ex, CAROL, SELL, 5, 100)
    s = ex.seq
    events = ex.apply(AmendOrder(ALICE, first, qty=3))
    assert events == [
        Amended(s + 1, T0, first, ALICE, SYMBOL, SELL, 100, 100, 5, 3, 3, True),
        BalanceChanged(s + 2, T0, ALICE, BASE, SHARES - 3, 3),
        LevelChanged(s + 3, T0, SYMBOL, SELL, 100, 8, 2),
    ]
    assert queue(ex, SELL, 100) == [first, second]
    assert one(place(ex, BOB, BUY, 3, 100), Trade).maker_order_id == first


def test_cutting_a_buy_gives_back_the_hold_it_no_longer_needs(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 10, 99)
    events = ex.apply(AmendOrder(BOB, bid, qty=4))
    assert balance_views(events) == {(BOB, QUOTE): (CASH - 396, 396)}
    assert level_views(events) == {(BUY, 99): (4, 1)}
    assert_holds_exact(ex)


def test_raising_the_quantity_sends_the_order_to_the_back(ex: Exchange) -> None:
    first = rest(ex, ALICE, SELL, 5, 100)
    second = rest(ex, CAROL, SELL, 5, 100)
    s = ex.seq
    events = ex.apply(AmendOrder(ALICE, first, qty=7))
    assert core(events) == [
        Amended(s + 1, T0, first, ALICE, SYMBOL, SELL, 100, 100, 5, 7, 7, False)
    ]
    assert balance_views(events) == {(ALICE, BASE): (SHARES - 7, 7)}
    assert level_views(events) == {(SELL, 100): (12, 2)}
    assert queue(ex, SELL, 100) == [second, first]
    assert one(place(ex, BOB, BUY, 5, 100), Trade).maker_order_id == second


def test_raising_the_only_order_at_a_level_reports_the_level_once(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 99)
    events = ex.apply(AmendOrder(BOB, bid, qty=7))
    # One LevelChanged per touched level, with its final quantity.
    assert level_views(events) == {(BUY, 99): (7, 1)}
    assert ex.depth(SYMBOL) == ([(99, 7, 1)], [])


def test_changing_the_price_sends_the_order_to_the_back_of_its_new_level(ex: Exchange) -> None:
    moved = rest(ex, ALICE, SELL, 5, 101)
    waiting = rest(ex, CAROL, SELL, 5, 100)
    s = ex.seq
    events = ex.apply(AmendOrder(ALICE, moved, price=100))
    assert core(events) == [
        Amended(s + 1, T0, moved, ALICE, SYMBOL, SELL, 101, 100, 5, 5, 5, False)
    ]
    assert level_views(events) == {(SELL, 101): (0, 0), (SELL, 100): (10, 2)}
    assert queue(ex, SELL, 100) == [waiting, moved]


def test_a_buy_repriced_lower_holds_less(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 10, 100)
    events = ex.apply(AmendOrder(BOB, bid, price=95))
    assert balance_views(events) == {(BOB, QUOTE): (CASH - 950, 950)}
    assert_holds_exact(ex)


def test_an_order_repriced_across_the_spread_trades_as_a_taker(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 99)
    ask = rest(ex, ALICE, SELL, 5, 101)
    s = ex.seq
    events = ex.apply(AmendOrder(ALICE, ask, price=99))
    assert core(events) == [
        Amended(s + 1, T0, ask, ALICE, SYMBOL, SELL, 101, 99, 5, 5, 5, False),
        Trade(s + 2, T0, 1, SYMBOL, 99, 5, SELL, bid, BOB, 0, 0, ask, ALICE, 0, 0),
    ]
    assert ex.depth(SYMBOL) == ([], [])
    assert ex.balance(ALICE, QUOTE) == (CASH + 495, 0)
    assert ex.balance(BOB, BASE) == (SHARES + 5, 0)
    assert not ex.orders


def test_a_repriced_order_pays_the_taker_fee_when_it_takes() -> None:
    ex = make_exchange(reference_price=1_000, maker_fee_bps=10, taker_fee_bps=20)
    rest(ex, BOB, BUY, 5, 990)
    ask = rest(ex, ALICE, SELL, 5, 1_010)
    trade = one(ex.apply(AmendOrder(ALICE, ask, price=990)), Trade)
    # 4950 notional: the resting bid pays 4 (10 bps), the repriced ask 9 (20 bps).
    assert (trade.maker_fee, trade.taker_fee, trade.taker_order_id) == (4, 9, ask)


def test_an_amendment_the_account_cannot_pay_for_is_refused_and_changes_nothing(
    ex: Exchange,
) -> None:
    ex.apply(CreateAccount("dave"))
    ex.apply(Deposit("dave", QUOTE, 600))
    bid = rest(ex, "dave", BUY, 5, 100)
    apply_rejected(ex, AmendOrder("dave", bid, qty=7), RejectCode.INSUFFICIENT_FUNDS)
    apply_rejected(ex, AmendOrder("dave", bid, price=110, qty=6), RejectCode.INSUFFICIENT_FUNDS)
    assert ex.balance("dave", QUOTE) == (100, 500)
    # 5 x 110 fits in 600.
    one(ex.apply(AmendOrder("dave", bid, price=110)), Amended)
    assert ex.balance("dave", QUOTE) == (50, 550)


def test_a_sell_amended_beyond_the_shares_owned_is_refused(ex: Exchange) -> None:
    ask = rest(ex, ALICE, SELL, SHARES, 105)
    apply_rejected(ex, AmendOrder(ALICE, ask, qty=SHARES + 1), RejectCode.INSUFFICIENT_SHARES)
    assert ex.orders[ask].leaves == SHARES


def test_the_quantity_cannot_be_cut_to_what_already_traded(ex: Exchange) -> None:
    ask = rest(ex, ALICE, SELL, 10, 100)
    place(ex, BOB, BUY, 6, 100)
    apply_rejected(ex, AmendOrder(ALICE, ask, qty=6), RejectCode.QTY_TOO_SMALL)
    apply_rejected(ex, AmendOrder(ALICE, ask, qty=5), RejectCode.QTY_TOO_SMALL)
    s = ex.seq
    events = ex.apply(AmendOrder(ALICE, ask, qty=8))
    # The new total counts what traded: 8 - 6 executed leaves 2.
    assert core(events) == [Amended(s + 1, T0, ask, ALICE, SYMBOL, SELL, 100, 100, 10, 8, 2, True)]
    assert ex.balance(ALICE, BASE) == (SHARES - 8, 2)


def test_an_order_can_be_amended_by_its_client_order_id(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 99, client_order_id="b-1")
    amended = one(ex.apply(AmendOrder(BOB, client_order_id="b-1", price=98)), Amended)
    assert (amended.order_id, amended.price) == (bid, 98)
    assert ex.depth(SYMBOL) == ([(98, 5, 1)], [])


@pytest.mark.parametrize(
    ("qty", "price", "code"),
    [
        pytest.param(12, 0, RejectCode.LOT_SIZE, id="qty off the lot"),
        pytest.param(105, 0, RejectCode.QTY_TOO_LARGE, id="qty above the maximum"),
        pytest.param(0, 101, RejectCode.TICK_SIZE, id="price off the tick"),
        pytest.param(0, 112, RejectCode.PRICE_OUT_OF_BAND, id="price above the band"),
        pytest.param(25, 0, RejectCode.NOTIONAL_TOO_LARGE, id="notional above the maximum"),
        pytest.param(-5, 0, RejectCode.INVALID_ORDER, id="negative qty"),
        pytest.param(0, -2, RejectCode.INVALID_ORDER, id="negative price"),
    ],
)
def test_an_amendment_that_fails_a_check_is_refused_and_changes_nothing(
    qty: int, price: int, code: str
) -> None:
    ex = make_exchange(tick_size=2, lot_size=5, min_qty=5, max_qty=100, max_notional=2_000)
    bid = rest(ex, BOB, BUY, 10, 100)
    apply_rejected(ex, AmendOrder(BOB, bid, qty=qty, price=price), code)


def test_a_post_only_order_cannot_be_repriced_to_take(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 5, 101)
    bid = rest(ex, BOB, BUY, 5, 99, post_only=True)
    apply_rejected(ex, AmendOrder(BOB, bid, price=101), RejectCode.POST_ONLY_WOULD_TAKE)
    one(ex.apply(AmendOrder(BOB, bid, price=100)), Amended)


def test_an_iceberg_cannot_be_cut_to_its_display_size(ex: Exchange) -> None:
    ask = rest(ex, ALICE, SELL, 10, 100, display_qty=4)
    apply_rejected(ex, AmendOrder(ALICE, ask, qty=4), RejectCode.INVALID_ORDER)
    events = ex.apply(AmendOrder(ALICE, ask, qty=6))
    assert one(events, Amended).leaves == 6
    assert ex.depth(SYMBOL) == ([], [(100, 4, 1)])


def test_a_waiting_stop_cannot_be_amended(ex: Exchange) -> None:
    stop = rest(ex, BOB, BUY, 5, 0, order_type=OrderType.STOP, stop_price=105)
    apply_rejected(ex, AmendOrder(BOB, stop, qty=3), RejectCode.INVALID_ORDER)


def test_a_triggered_stop_limit_resting_in_the_book_can_be_amended(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 2, 102)
    rest(ex, ALICE, SELL, 5, 106)
    stop = rest(ex, CAROL, BUY, 3, 103, order_type=OrderType.STOP_LIMIT, stop_price=102)
    place(ex, BOB, BUY, 2, 102)  # triggers the stop; its limit 103 rests as a bid
    assert ex.depth(SYMBOL) == ([(103, 3, 1)], [(106, 5, 1)])
    s = ex.seq
    events = ex.apply(AmendOrder(CAROL, stop, qty=2))
    assert core(events) == [Amended(s + 1, T0, stop, CAROL, SYMBOL, BUY, 103, 103, 3, 2, 2, True)]
    assert ex.depth(SYMBOL) == ([(103, 2, 1)], [(106, 5, 1)])
