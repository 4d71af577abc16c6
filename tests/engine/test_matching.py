"""Price-time priority: who trades first, at what price, and what is left in the book."""

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
    assert_holds_exact,
    balance_views,
    core,
    level_views,
    of_type,
    one,
    place,
    rest,
)

from engine import Exchange
from engine.events import Accepted, Trade


def test_a_buy_that_crosses_two_levels_fills_both_at_their_prices(ex: Exchange) -> None:
    ask_1 = rest(ex, ALICE, SELL, 3, 101)
    ask_2 = rest(ex, CAROL, SELL, 4, 102)
    s = ex.seq
    events = place(ex, BOB, BUY, 5, 102)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Trade(s + 2, T0, 1, SYMBOL, 101, 3, BUY, ask_1, ALICE, 0, 0, taker, BOB, 0, 2),
        Trade(s + 3, T0, 2, SYMBOL, 102, 2, BUY, ask_2, CAROL, 0, 2, taker, BOB, 0, 0),
    ]
    assert ex.depth(SYMBOL) == ([], [(102, 2, 1)])
    assert ex.balance(BOB, QUOTE) == (CASH - 303 - 204, 0)
    assert ex.balance(BOB, BASE) == (SHARES + 5, 0)
    assert_holds_exact(ex)


def test_the_better_price_trades_first_whatever_arrived_first(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 5, 102)
    cheaper = rest(ex, CAROL, SELL, 5, 101)
    trade = one(place(ex, BOB, BUY, 5, 102), Trade)
    assert (trade.maker_order_id, trade.price, trade.qty) == (cheaper, 101, 5)
    assert ex.depth(SYMBOL) == ([], [(102, 5, 1)])


def test_at_one_price_the_order_that_arrived_first_trades_first(ex: Exchange) -> None:
    first = rest(ex, ALICE, SELL, 5, 100)
    second = rest(ex, CAROL, SELL, 5, 100)
    trade = one(place(ex, BOB, BUY, 5, 100), Trade)
    assert trade.maker_order_id == first
    assert list(ex.instruments[SYMBOL].asks[100].orders) == [second]


def test_a_sell_that_crosses_trades_at_the_resting_bid_price(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 100)
    s = ex.seq
    events = place(ex, ALICE, SELL, 5, 95)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Trade(s + 2, T0, 1, SYMBOL, 100, 5, SELL, bid, BOB, 0, 0, taker, ALICE, 0, 0)
    ]
    assert balance_views(events) == {
        (ALICE, BASE): (SHARES - 5, 0),
        (ALICE, QUOTE): (CASH + 500, 0),
        (BOB, QUOTE): (CASH - 500, 0),
        (BOB, BASE): (SHARES + 5, 0),
    }
    assert level_views(events) == {(BUY, 100): (0, 0)}
    assert ex.depth(SYMBOL) == ([], [])


def test_a_partly_filled_maker_keeps_its_place_with_what_is_left(ex: Exchange) -> None:
    maker = rest(ex, ALICE, SELL, 10, 100)
    later = rest(ex, CAROL, SELL, 10, 100)
    events = place(ex, BOB, BUY, 4, 100)
    assert one(events, Trade).maker_leaves == 6
    assert level_views(events) == {(SELL, 100): (16, 2)}
    assert list(ex.instruments[SYMBOL].asks[100].orders) == [maker, later]
    assert ex.balance(ALICE, BASE) == (SHARES - 10, 6)


def test_what_a_limit_buy_cannot_fill_rests_at_its_limit(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 3, 100)
    events = place(ex, BOB, BUY, 5, 101)
    trade = one(events, Trade)
    assert (trade.price, trade.qty, trade.taker_leaves) == (100, 3, 2)
    assert level_views(events) == {(SELL, 100): (0, 0), (BUY, 101): (2, 1)}
    assert ex.depth(SYMBOL) == ([(101, 2, 1)], [])
    # The rest holds exactly 2 x 101; the 3 bought cost 300.
    assert ex.balance(BOB, QUOTE) == (CASH - 300 - 202, 202)
    assert_holds_exact(ex)


def test_the_book_is_never_left_crossed(ex: Exchange) -> None:
    for price in (98, 99, 100):
        rest(ex, BOB, BUY, 2, price)
    for price in (101, 102):
        rest(ex, ALICE, SELL, 2, price)
    place(ex, CAROL, SELL, 4, 99)
    place(ex, CAROL, BUY, 3, 102)
    bid, ask = ex.best_bid_ask(SYMBOL)
    assert (bid, ask) == (98, 102)
    assert ex.depth(SYMBOL) == ([(98, 2, 1)], [(102, 1, 1)])


def test_trade_ids_count_up_across_commands(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 1, 100)
    rest(ex, ALICE, SELL, 1, 101)
    rest(ex, ALICE, SELL, 1, 102)
    first = of_type(place(ex, BOB, BUY, 2, 101), Trade)
    second = of_type(place(ex, BOB, BUY, 1, 102), Trade)
    assert [trade.trade_id for trade in first + second] == [1, 2, 3]
