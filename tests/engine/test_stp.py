"""Self-trade prevention: the incoming order's mode decides what happens when it meets
its own account's resting order."""

from conftest import (
    ALICE,
    BASE,
    BOB,
    BUY,
    CASH,
    QUOTE,
    SELL,
    SHARES,
    SYMBOL,
    T0,
    assert_holds_exact,
    balance_views,
    core,
    level_views,
    of_type,
    one,
    place,
    rest,
)

from engine import CancelReason, Exchange, SelfTradePrevention
from engine.events import Accepted, Cancelled, Trade

SELF_TRADE = CancelReason.SELF_TRADE


def test_cancel_newest_cancels_the_incoming_order_and_leaves_the_resting_one(
    ex: Exchange,
) -> None:
    rest(ex, ALICE, SELL, 5, 100)
    s = ex.seq
    events = place(ex, ALICE, BUY, 5, 100, stp=SelfTradePrevention.CANCEL_NEWEST)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Cancelled(s + 2, T0, taker, ALICE, SYMBOL, BUY, 100, 5, 0, SELF_TRADE)
    ]
    assert balance_views(events) == {(ALICE, QUOTE): (CASH, 0)}
    assert level_views(events) == {}
    assert ex.depth(SYMBOL) == ([], [(100, 5, 1)])
    assert_holds_exact(ex)


def test_cancel_newest_trades_with_others_first_then_stops_at_its_own_order(
    ex: Exchange,
) -> None:
    bobs = rest(ex, BOB, SELL, 2, 100)
    rest(ex, ALICE, SELL, 3, 100)
    s = ex.seq
    events = place(ex, ALICE, BUY, 5, 100)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Trade(s + 2, T0, 1, SYMBOL, 100, 2, BUY, bobs, BOB, 0, 0, taker, ALICE, 0, 3),
        Cancelled(s + 3, T0, taker, ALICE, SYMBOL, BUY, 100, 3, 0, SELF_TRADE),
    ]
    assert ex.depth(SYMBOL) == ([], [(100, 3, 1)])
    assert ex.balance(ALICE, QUOTE) == (CASH - 200, 0)


def test_cancel_oldest_cancels_the_resting_order_and_keeps_matching(ex: Exchange) -> None:
    own = rest(ex, ALICE, SELL, 3, 100)
    bobs = rest(ex, BOB, SELL, 2, 100)
    s = ex.seq
    events = place(ex, ALICE, BUY, 5, 100, stp=SelfTradePrevention.CANCEL_OLDEST)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Cancelled(s + 2, T0, own, ALICE, SYMBOL, SELL, 100, 3, 0, SELF_TRADE),
        Trade(s + 3, T0, 1, SYMBOL, 100, 2, BUY, bobs, BOB, 0, 0, taker, ALICE, 0, 3),
    ]
    # What is left of the buy rests.
    assert level_views(events) == {(SELL, 100): (0, 0), (BUY, 100): (3, 1)}
    assert ex.balance(ALICE, BASE) == (SHARES + 2, 0)
    assert ex.balance(ALICE, QUOTE) == (CASH - 200 - 300, 300)
    assert_holds_exact(ex)


def test_cancel_both_cancels_the_resting_and_the_incoming_order(ex: Exchange) -> None:
    own = rest(ex, ALICE, SELL, 3, 100)
    s = ex.seq
    events = place(ex, ALICE, BUY, 5, 100, stp=SelfTradePrevention.CANCEL_BOTH)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Cancelled(s + 2, T0, own, ALICE, SYMBOL, SELL, 100, 3, 0, SELF_TRADE),
        Cancelled(s + 3, T0, taker, ALICE, SYMBOL, BUY, 100, 5, 0, SELF_TRADE),
    ]
    assert ex.depth(SYMBOL) == ([], [])
    assert ex.balance(ALICE, QUOTE) == (CASH, 0)
    assert ex.balance(ALICE, BASE) == (SHARES, 0)
    assert not ex.orders


def test_decrement_shrinks_both_orders_by_the_overlap_without_a_trade(ex: Exchange) -> None:
    own = rest(ex, ALICE, SELL, 5, 100)
    s = ex.seq
    events = place(ex, ALICE, BUY, 3, 100, stp=SelfTradePrevention.DECREMENT)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Cancelled(s + 2, T0, own, ALICE, SYMBOL, SELL, 100, 3, 2, SELF_TRADE),
        Cancelled(s + 3, T0, taker, ALICE, SYMBOL, BUY, 100, 3, 0, SELF_TRADE),
    ]
    assert level_views(events) == {(SELL, 100): (2, 1)}
    assert ex.orders[own].leaves == 2
    assert ex.balance(ALICE, BASE) == (SHARES - 2, 2)
    assert ex.balance(ALICE, QUOTE) == (CASH, 0)
    assert_holds_exact(ex)


def test_decrement_removes_a_smaller_own_order_and_trades_the_rest_with_others(
    ex: Exchange,
) -> None:
    own = rest(ex, ALICE, SELL, 2, 100)
    bobs = rest(ex, BOB, SELL, 3, 100)
    s = ex.seq
    events = place(ex, ALICE, BUY, 4, 100, stp=SelfTradePrevention.DECREMENT)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Cancelled(s + 2, T0, own, ALICE, SYMBOL, SELL, 100, 2, 0, SELF_TRADE),
        Cancelled(s + 3, T0, taker, ALICE, SYMBOL, BUY, 100, 2, 2, SELF_TRADE),
        Trade(s + 4, T0, 1, SYMBOL, 100, 2, BUY, bobs, BOB, 0, 1, taker, ALICE, 0, 0),
    ]
    assert ex.depth(SYMBOL) == ([], [(100, 1, 1)])
    assert ex.balance(ALICE, QUOTE) == (CASH - 200, 0)
    assert ex.balance(ALICE, BASE) == (SHARES + 2, 0)
    assert_holds_exact(ex)


def test_the_incoming_orders_mode_decides_not_the_resting_orders(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 5, 100, stp=SelfTradePrevention.DECREMENT)
    events = place(ex, ALICE, BUY, 5, 100, stp=SelfTradePrevention.CANCEL_NEWEST)
    cancelled = one(events, Cancelled)
    assert (cancelled.side, cancelled.qty, cancelled.leaves) == (BUY, 5, 0)
    assert ex.depth(SYMBOL) == ([], [(100, 5, 1)])


def test_decrement_against_an_own_iceberg_reduces_both_by_the_whole_overlap(
    ex: Exchange,
) -> None:
    iceberg = rest(ex, ALICE, SELL, 6, 100, display_qty=2)
    events = place(ex, ALICE, BUY, 5, 100, stp=SelfTradePrevention.DECREMENT)
    assert not of_type(events, Trade)
    assert sum(c.qty for c in of_type(events, Cancelled) if c.order_id == iceberg) == 5
    assert ex.orders[iceberg].leaves == 1
    assert ex.depth(SYMBOL) == ([], [(100, 1, 1)])
    assert ex.balance(ALICE, BASE) == (SHARES - 1, 1)
    assert ex.balance(ALICE, QUOTE) == (CASH, 0)
    assert_holds_exact(ex)
