"""Order types on their own: limit orders that rest, market orders and their protection
price, and cancelling by engine id or client id."""

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
    make_exchange,
    one,
    place,
    rest,
)

from engine import CancelReason, Exchange, OrderType, TimeInForce
from engine.codes import TradingCapacity
from engine.commands import CancelOrder, UpdateInstrument
from engine.events import Accepted, BalanceChanged, Cancelled, LevelChanged, Trade

LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET


def test_a_limit_buy_that_does_not_cross_rests_and_holds_its_cost(ex: Exchange) -> None:
    s = ex.seq
    events = place(ex, BOB, BUY, 5, 99, client_order_id="b-1")
    order_id = one(events, Accepted).order_id
    assert events == [
        Accepted(
            seq=s + 1,
            ts_ms=T0,
            order_id=order_id,
            account=BOB,
            client_order_id="b-1",
            symbol=SYMBOL,
            side=BUY,
            order_type=LIMIT,
            tif=TimeInForce.GTC,
            price=99,
            qty=5,
            stop_price=0,
            display_qty=0,
            post_only=False,
            expire_at_ms=0,
            hold=495,
            capacity=TradingCapacity.DEAL,  # an account with no profile deals on own account
        ),
        BalanceChanged(s + 2, T0, BOB, QUOTE, CASH - 495, 495),
        LevelChanged(s + 3, T0, SYMBOL, BUY, 99, 5, 1),
    ]
    assert ex.balance(BOB, QUOTE) == (CASH - 495, 495)
    assert ex.depth(SYMBOL) == ([(99, 5, 1)], [])
    assert ex.best_bid_ask(SYMBOL) == (99, 0)


def test_a_limit_sell_that_does_not_cross_rests_and_holds_its_shares(ex: Exchange) -> None:
    events = place(ex, ALICE, SELL, 7, 101)
    assert one(events, Accepted).hold == 7
    assert balance_views(events) == {(ALICE, BASE): (SHARES - 7, 7)}
    assert level_views(events) == {(SELL, 101): (7, 1)}
    assert ex.depth(SYMBOL) == ([], [(101, 7, 1)])
    assert ex.balance(ALICE, QUOTE) == (CASH, 0)


def test_orders_at_one_price_share_a_level(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 3, 101)
    events = place(ex, CAROL, SELL, 4, 101)
    assert level_views(events) == {(SELL, 101): (7, 2)}
    assert ex.depth(SYMBOL) == ([], [(101, 7, 2)])


def test_a_market_buy_is_held_at_the_band_high_and_gets_back_what_it_did_not_spend(
    ex: Exchange,
) -> None:
    ask_1 = rest(ex, ALICE, SELL, 3, 101)
    ask_2 = rest(ex, CAROL, SELL, 4, 102)
    s = ex.seq
    events = place(ex, BOB, BUY, 5, order_type=MARKET)
    accepted = one(events, Accepted)
    # Reference 100, band 10%: a market buy may pay at most 110 and holds for that.
    # A GTC market order is an IOC.
    assert (accepted.price, accepted.tif, accepted.hold) == (110, TimeInForce.IOC, 550)
    taker = accepted.order_id
    assert core(events) == [
        accepted,
        Trade(s + 2, T0, 1, SYMBOL, 101, 3, BUY, ask_1, ALICE, 0, 0, taker, BOB, 0, 2),
        Trade(s + 3, T0, 2, SYMBOL, 102, 2, BUY, ask_2, CAROL, 0, 2, taker, BOB, 0, 0),
    ]
    assert balance_views(events) == {
        (BOB, QUOTE): (CASH - 507, 0),
        (BOB, BASE): (SHARES + 5, 0),
        (ALICE, BASE): (SHARES - 3, 0),
        (ALICE, QUOTE): (CASH + 303, 0),
        (CAROL, BASE): (SHARES - 4, 2),
        (CAROL, QUOTE): (CASH + 204, 0),
    }
    assert level_views(events) == {(SELL, 101): (0, 0), (SELL, 102): (2, 1)}
    assert taker not in ex.orders
    assert_holds_exact(ex)


def test_a_market_buy_never_pays_above_its_protection_price(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 5, 105)
    # The band moves down to [86, 104]: the ask at 105 is beyond any market buy now.
    ex.apply(UpdateInstrument(SYMBOL, reference_price=95))
    s = ex.seq
    events = place(ex, BOB, BUY, 5, order_type=MARKET)
    taker = one(events, Accepted)
    assert (taker.price, taker.hold) == (104, 520)
    assert core(events) == [
        taker,
        Cancelled(s + 2, T0, taker.order_id, BOB, SYMBOL, BUY, 104, 5, 0, CancelReason.IOC),
    ]
    assert balance_views(events) == {(BOB, QUOTE): (CASH, 0)}
    assert ex.depth(SYMBOL) == ([], [(105, 5, 1)])


def test_a_market_sell_sweeps_the_bids_down_to_the_band_low_and_cancels_the_rest(
    ex: Exchange,
) -> None:
    bid_1 = rest(ex, BOB, BUY, 2, 99)
    bid_2 = rest(ex, CAROL, BUY, 3, 95)
    s = ex.seq
    events = place(ex, ALICE, SELL, 10, order_type=MARKET, tif=TimeInForce.IOC)
    taker = one(events, Accepted)
    assert (taker.price, taker.hold) == (90, 10)
    t = taker.order_id
    assert core(events) == [
        taker,
        Trade(s + 2, T0, 1, SYMBOL, 99, 2, SELL, bid_1, BOB, 0, 0, t, ALICE, 0, 8),
        Trade(s + 3, T0, 2, SYMBOL, 95, 3, SELL, bid_2, CAROL, 0, 0, t, ALICE, 0, 5),
        Cancelled(s + 4, T0, t, ALICE, SYMBOL, SELL, 90, 5, 0, CancelReason.IOC),
    ]
    assert ex.balance(ALICE, BASE) == (SHARES - 5, 0)
    assert ex.balance(ALICE, QUOTE) == (CASH + 198 + 285, 0)
    assert ex.depth(SYMBOL) == ([], [])
    assert_holds_exact(ex)


def test_a_market_buy_on_an_empty_book_is_cancelled_and_refunded(ex: Exchange) -> None:
    s = ex.seq
    events = place(ex, BOB, BUY, 5, order_type=MARKET)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Cancelled(s + 2, T0, taker, BOB, SYMBOL, BUY, 110, 5, 0, CancelReason.IOC)
    ]
    assert ex.balance(BOB, QUOTE) == (CASH, 0)
    assert not ex.orders


def test_without_a_reference_price_the_first_trade_sets_the_band() -> None:
    ex = make_exchange(reference_price=0)
    # No band yet: any positive price is accepted.
    rest(ex, ALICE, SELL, 1, 500)
    rest(ex, ALICE, SELL, 1, 540)
    place(ex, BOB, BUY, 1, 500)
    inst = ex.instruments[SYMBOL]
    assert (inst.reference_price, inst.band_lo, inst.band_hi) == (500, 450, 550)
    market = one(place(ex, BOB, BUY, 1, order_type=MARKET), Accepted)
    assert (market.price, market.hold) == (550, 550)
    assert ex.balance(BOB, QUOTE) == (CASH - 500 - 540, 0)


def test_cancelling_a_resting_buy_by_id_releases_its_hold_and_empties_the_level(
    ex: Exchange,
) -> None:
    order_id = rest(ex, BOB, BUY, 5, 99)
    s = ex.seq
    events = ex.apply(CancelOrder(BOB, order_id))
    assert events == [
        Cancelled(s + 1, T0, order_id, BOB, SYMBOL, BUY, 99, 5, 0, CancelReason.USER),
        BalanceChanged(s + 2, T0, BOB, QUOTE, CASH, 0),
        LevelChanged(s + 3, T0, SYMBOL, BUY, 99, 0, 0),
    ]
    assert ex.depth(SYMBOL) == ([], [])
    assert order_id not in ex.orders
    assert not ex.accounts[BOB].orders


def test_cancelling_by_client_order_id_finds_the_order(ex: Exchange) -> None:
    order_id = rest(ex, ALICE, SELL, 4, 103, client_order_id="mine")
    events = ex.apply(CancelOrder(ALICE, client_order_id="mine"))
    cancelled = one(events, Cancelled)
    assert (cancelled.order_id, cancelled.qty, cancelled.reason) == (order_id, 4, "user")
    assert ex.balance(ALICE, BASE) == (SHARES, 0)


def test_cancelling_a_partly_filled_order_cancels_only_what_is_left(ex: Exchange) -> None:
    order_id = rest(ex, ALICE, SELL, 10, 100)
    place(ex, BOB, BUY, 4, 100)
    cancelled = one(ex.apply(CancelOrder(ALICE, order_id)), Cancelled)
    assert (cancelled.qty, cancelled.leaves) == (6, 0)
    assert ex.balance(ALICE, BASE) == (SHARES - 4, 0)
    assert ex.balance(ALICE, QUOTE) == (CASH + 400, 0)
