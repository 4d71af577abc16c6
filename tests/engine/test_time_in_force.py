"""Time in force: GTC waits, IOC takes what it can, FOK all or nothing, DAY ends at UTC
midnight, GTD at its own time."""

from conftest import (
    ALICE,
    BASE,
    BOB,
    BUY,
    CAROL,
    CASH,
    NEXT_MIDNIGHT_MS,
    QUOTE,
    SELL,
    SHARES,
    SYMBOL,
    T0,
    TRADERS,
    assert_holds_exact,
    core,
    of_type,
    one,
    place,
    rest,
    total,
)

from engine import CancelReason, Exchange, OrderType, TimeInForce, TradingStatus
from engine.commands import CancelOrder, SetTradingStatus, Tick
from engine.events import (
    Accepted,
    BalanceChanged,
    Cancelled,
    Expired,
    LevelChanged,
    Trade,
)

IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
DAY = TimeInForce.DAY
GTD = TimeInForce.GTD


def test_a_gtc_order_stays_open_across_midnight(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 99)
    assert ex.apply(Tick(), NEXT_MIDNIGHT_MS + 1_000) == []
    assert bid in ex.orders


def test_an_ioc_order_takes_what_it_can_and_cancels_the_rest(ex: Exchange) -> None:
    ask = rest(ex, ALICE, SELL, 3, 100)
    s = ex.seq
    events = place(ex, BOB, BUY, 5, 100, tif=IOC)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Trade(s + 2, T0, 1, SYMBOL, 100, 3, BUY, ask, ALICE, 0, 0, taker, BOB, 0, 2),
        Cancelled(s + 3, T0, taker, BOB, SYMBOL, BUY, 100, 2, 0, CancelReason.IOC),
    ]
    assert ex.balance(BOB, QUOTE) == (CASH - 300, 0)
    assert ex.depth(SYMBOL) == ([], [])
    assert not ex.orders


def test_an_ioc_order_with_nothing_to_take_is_cancelled_whole(ex: Exchange) -> None:
    events = place(ex, BOB, BUY, 5, 100, tif=IOC)
    cancelled = one(events, Cancelled)
    assert (cancelled.qty, cancelled.leaves, cancelled.reason) == (5, 0, "ioc")
    assert not of_type(events, LevelChanged)
    assert ex.balance(BOB, QUOTE) == (CASH, 0)


def test_a_fok_order_that_can_fill_fills_across_levels(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 3, 100)
    rest(ex, CAROL, SELL, 4, 101)
    events = place(ex, BOB, BUY, 5, 101, tif=FOK)
    assert [(t.price, t.qty) for t in of_type(events, Trade)] == [(100, 3), (101, 2)]
    assert not of_type(events, Cancelled)
    assert ex.balance(BOB, BASE) == (SHARES + 5, 0)


def test_a_fok_order_that_cannot_fill_is_killed_without_trading(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 3, 100)
    rest(ex, CAROL, SELL, 4, 102)
    s = ex.seq
    events = place(ex, BOB, BUY, 5, 101, tif=FOK)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Cancelled(s + 2, T0, taker, BOB, SYMBOL, BUY, 101, 5, 0, CancelReason.FOK)
    ]
    assert not of_type(events, LevelChanged)
    assert ex.depth(SYMBOL) == ([], [(100, 3, 1), (102, 4, 1)])
    assert ex.balance(BOB, QUOTE) == (CASH, 0)


def test_a_fok_order_does_not_count_its_own_accounts_orders_as_liquidity(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 3, 100)
    rest(ex, BOB, SELL, 3, 100)
    events = place(ex, BOB, BUY, 5, 100, tif=FOK)
    assert one(events, Cancelled).reason == CancelReason.FOK
    assert not of_type(events, Trade)
    assert ex.depth(SYMBOL) == ([], [(100, 6, 2)])


def test_a_fok_market_buy_that_cannot_fill_is_killed(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 3, 100)
    events = place(ex, BOB, BUY, 5, order_type=OrderType.MARKET, tif=FOK)
    assert one(events, Cancelled).reason == CancelReason.FOK
    assert not of_type(events, Trade)
    assert ex.balance(BOB, QUOTE) == (CASH, 0)


def test_a_fok_order_that_would_halt_the_market_halfway_is_killed_without_trading(
    ex: Exchange,
) -> None:
    # Both asks are inside today's band [90, 110], but after a trade at 91 the band
    # is [82, 100]: the second fill could never happen, so nothing may fill.
    rest(ex, ALICE, SELL, 1, 91)
    rest(ex, CAROL, SELL, 1, 110)
    events = place(ex, BOB, BUY, 2, 110, tif=FOK)
    assert not of_type(events, Trade)
    assert one(events, Cancelled).reason == CancelReason.FOK
    assert ex.depth(SYMBOL) == ([], [(91, 1, 1), (110, 1, 1)])
    assert ex.instruments[SYMBOL].status == TradingStatus.OPEN
    assert ex.balance(BOB, QUOTE) == (CASH, 0)


def test_a_fok_order_is_killed_when_an_iceberg_refill_would_queue_behind_its_own_order(
    ex: Exchange,
) -> None:
    # Alice's iceberg shows 2 of 6, then Bob's own ask waits behind it. After the first
    # slice the refill goes behind Bob's ask, so Bob's FOK can take only 2 before it
    # meets itself: it cannot fill completely and must not fill at all.
    rest(ex, ALICE, SELL, 6, 100, display_qty=2)
    rest(ex, BOB, SELL, 3, 100)
    events = place(ex, BOB, BUY, 5, 100, tif=FOK)
    assert not of_type(events, Trade)
    assert one(events, Cancelled).reason == CancelReason.FOK
    assert ex.balance(BOB, QUOTE) == (CASH, 0)
    assert ex.balance(ALICE, BASE) == (SHARES - 6, 6)


def test_a_day_order_expires_at_the_next_utc_midnight(ex: Exchange) -> None:
    bid = one(place(ex, BOB, BUY, 5, 99, tif=DAY), Accepted)
    assert bid.expire_at_ms == NEXT_MIDNIGHT_MS
    assert ex.apply(Tick(), NEXT_MIDNIGHT_MS - 1) == []
    s = ex.seq
    events = ex.apply(Tick(), NEXT_MIDNIGHT_MS)
    at = NEXT_MIDNIGHT_MS
    assert events == [
        Expired(s + 1, at, bid.order_id, BOB, SYMBOL, BUY, 99, 5),
        BalanceChanged(s + 2, at, BOB, QUOTE, CASH, 0),
        LevelChanged(s + 3, at, SYMBOL, BUY, 99, 0, 0),
    ]
    assert bid.order_id not in ex.orders


def test_a_partly_filled_day_order_expires_with_what_is_left(ex: Exchange) -> None:
    ask = rest(ex, ALICE, SELL, 10, 100, tif=TimeInForce.DAY)
    place(ex, BOB, BUY, 4, 100)
    expired = one(ex.apply(Tick(), NEXT_MIDNIGHT_MS), Expired)
    assert (expired.order_id, expired.qty) == (ask, 6)
    assert ex.balance(ALICE, BASE) == (SHARES - 4, 0)


def test_a_sell_after_midnight_does_not_meet_yesterdays_day_bid(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 99, tif=DAY)
    events = place(ex, ALICE, SELL, 5, 99, ts_ms=NEXT_MIDNIGHT_MS + 5)
    assert [type(e) for e in core(events)] == [Expired, Accepted]
    assert one(events, Expired).order_id == bid
    assert ex.depth(SYMBOL) == ([], [(99, 5, 1)])


def test_a_day_order_placed_just_after_midnight_lives_a_whole_day(ex: Exchange) -> None:
    accepted = one(place(ex, BOB, BUY, 5, 99, tif=DAY, ts_ms=NEXT_MIDNIGHT_MS), Accepted)
    assert accepted.expire_at_ms == NEXT_MIDNIGHT_MS + 86_400_000


def test_a_gtd_order_expires_at_its_expire_time(ex: Exchange) -> None:
    expire_at = T0 + 5_000
    bid = one(place(ex, BOB, BUY, 5, 99, tif=GTD, expire_time_ms=expire_at), Accepted)
    assert bid.expire_at_ms == expire_at
    assert ex.apply(Tick(), expire_at - 1) == []
    s = ex.seq
    events = ex.apply(Tick(), expire_at)
    assert core(events) == [Expired(s + 1, expire_at, bid.order_id, BOB, SYMBOL, BUY, 99, 5)]
    assert ex.balance(BOB, QUOTE) == (CASH, 0)
    assert total(ex, QUOTE) == len(TRADERS) * CASH


def test_a_cancelled_day_order_does_not_expire_again(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 99, tif=DAY)
    ex.apply(CancelOrder(BOB, bid))
    assert ex.apply(Tick(), NEXT_MIDNIGHT_MS) == []


def test_a_waiting_day_stop_expires_and_releases_its_hold(ex: Exchange) -> None:
    stop = rest(ex, BOB, BUY, 5, 0, order_type=OrderType.STOP, stop_price=105, tif=DAY)
    events = ex.apply(Tick(), NEXT_MIDNIGHT_MS)
    assert one(events, Expired).order_id == stop
    assert not of_type(events, LevelChanged)
    assert ex.balance(BOB, QUOTE) == (CASH, 0)
    assert not ex.orders
    assert_holds_exact(ex)


def test_a_day_order_expires_even_while_its_instrument_is_halted(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 99, tif=DAY)
    ex.apply(SetTradingStatus(SYMBOL, TradingStatus.HALTED))
    s = ex.seq
    events = ex.apply(Tick(), NEXT_MIDNIGHT_MS)
    assert core(events) == [Expired(s + 1, NEXT_MIDNIGHT_MS, bid, BOB, SYMBOL, BUY, 99, 5)]
    assert ex.balance(BOB, QUOTE) == (CASH, 0)
