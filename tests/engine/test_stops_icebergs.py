"""Stop and stop-limit orders that wait for a trade price, and icebergs that show a slice."""

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

from engine import CancelReason, Exchange, OrderType
from engine.commands import CancelOrder
from engine.events import (
    Accepted,
    Cancelled,
    LevelChanged,
    Replenished,
    Trade,
    Triggered,
)

STOP = OrderType.STOP
STOP_LIMIT = OrderType.STOP_LIMIT


def test_a_waiting_stop_holds_at_its_protection_price_and_stays_out_of_the_book(
    ex: Exchange,
) -> None:
    events = place(ex, CAROL, BUY, 3, order_type=STOP, stop_price=102)
    accepted = one(events, Accepted)
    # Protection: stop + 10% band = 112.2, floored to the tick.
    assert (accepted.order_type, accepted.stop_price, accepted.price) == (STOP, 102, 112)
    assert accepted.hold == 336
    assert balance_views(events) == {(CAROL, QUOTE): (CASH - 336, 336)}
    assert not of_type(events, LevelChanged)
    assert ex.depth(SYMBOL) == ([], [])
    cancelled = one(ex.apply(CancelOrder(CAROL, accepted.order_id)), Cancelled)
    assert (cancelled.qty, cancelled.reason) == (3, CancelReason.USER)
    assert ex.balance(CAROL, QUOTE) == (CASH, 0)


def test_a_buy_stop_triggers_when_a_trade_reaches_its_stop_and_buys_at_market(
    ex: Exchange,
) -> None:
    first = rest(ex, ALICE, SELL, 2, 102)
    second = rest(ex, ALICE, SELL, 5, 104)
    stop = rest(ex, CAROL, BUY, 3, 0, order_type=STOP, stop_price=102)
    s = ex.seq
    events = place(ex, BOB, BUY, 2, 102)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Trade(s + 2, T0, 1, SYMBOL, 102, 2, BUY, first, ALICE, 0, 0, taker, BOB, 0, 0),
        Triggered(s + 3, T0, stop, CAROL, SYMBOL, 102, 102),
        Trade(s + 4, T0, 2, SYMBOL, 104, 3, BUY, second, ALICE, 0, 2, stop, CAROL, 0, 0),
    ]
    assert ex.balance(CAROL, QUOTE) == (CASH - 312, 0)
    assert ex.balance(CAROL, BASE) == (SHARES + 3, 0)
    assert stop not in ex.orders
    assert_holds_exact(ex)


def test_a_sell_stop_triggers_when_a_trade_falls_to_its_stop(ex: Exchange) -> None:
    rest(ex, BOB, BUY, 2, 98)
    lower = rest(ex, BOB, BUY, 5, 96)
    stop = one(place(ex, ALICE, SELL, 3, order_type=STOP, stop_price=98), Accepted)
    # Protection: 98 - 9 (10%, rounded down) = 89.
    assert (stop.price, stop.hold) == (89, 3)
    events = place(ex, CAROL, SELL, 2, 98)
    triggered = one(events, Triggered)
    assert (triggered.order_id, triggered.stop_price, triggered.last_price) == (
        stop.order_id,
        98,
        98,
    )
    stop_trade = of_type(events, Trade)[1]
    assert (stop_trade.maker_order_id, stop_trade.price, stop_trade.qty) == (lower, 96, 3)
    assert ex.balance(ALICE, BASE) == (SHARES - 3, 0)
    assert ex.balance(ALICE, QUOTE) == (CASH + 288, 0)


def test_a_stop_waits_while_trades_stay_short_of_it(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 2, 101)
    stop = rest(ex, CAROL, BUY, 3, 0, order_type=STOP, stop_price=102)
    events = place(ex, BOB, BUY, 2, 101)
    assert not of_type(events, Triggered)
    assert ex.orders[stop].held == 336


def test_a_triggered_stop_limit_rests_at_its_limit_when_it_cannot_fill(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 2, 102)
    rest(ex, ALICE, SELL, 5, 106)
    stop = rest(ex, CAROL, BUY, 3, 103, order_type=STOP_LIMIT, stop_price=102)
    assert ex.orders[stop].held == 309
    events = place(ex, BOB, BUY, 2, 102)
    assert one(events, Triggered).order_id == stop
    assert len(of_type(events, Trade)) == 1
    assert level_views(events) == {(SELL, 102): (0, 0), (BUY, 103): (3, 1)}
    assert ex.depth(SYMBOL) == ([(103, 3, 1)], [(106, 5, 1)])
    assert ex.orders[stop].held == 309
    assert_holds_exact(ex)


def test_a_triggered_stops_trade_can_trigger_the_next_stop(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 1, 102)
    rest(ex, ALICE, SELL, 3, 104)
    rest(ex, ALICE, SELL, 3, 105)
    first = rest(ex, CAROL, BUY, 3, 0, order_type=STOP, stop_price=102)
    second = rest(ex, BOB, BUY, 2, 0, order_type=STOP, stop_price=104)
    events = place(ex, BOB, BUY, 1, 102)
    assert [type(e) for e in core(events)] == [
        Accepted,
        Trade,
        Triggered,
        Trade,
        Triggered,
        Trade,
    ]
    assert [e.order_id for e in of_type(events, Triggered)] == [first, second]
    assert [(t.price, t.qty) for t in of_type(events, Trade)] == [(102, 1), (104, 3), (105, 2)]
    assert ex.depth(SYMBOL) == ([], [(105, 1, 1)])
    assert not ex.orders.keys() & {first, second}


def test_an_iceberg_shows_only_its_slice_but_holds_everything(ex: Exchange) -> None:
    events = place(ex, BOB, BUY, 10, 99, display_qty=3)
    accepted = one(events, Accepted)
    assert (accepted.display_qty, accepted.hold) == (3, 990)
    assert level_views(events) == {(BUY, 99): (3, 1)}
    assert ex.depth(SYMBOL) == ([(99, 3, 1)], [])


def test_a_consumed_iceberg_slice_is_replaced_at_the_back_of_the_level(ex: Exchange) -> None:
    iceberg = rest(ex, ALICE, SELL, 6, 100, display_qty=2)
    plain = rest(ex, CAROL, SELL, 2, 100)
    assert ex.depth(SYMBOL) == ([], [(100, 4, 2)])
    s = ex.seq
    events = place(ex, BOB, BUY, 2, 100)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Trade(s + 2, T0, 1, SYMBOL, 100, 2, BUY, iceberg, ALICE, 0, 4, taker, BOB, 0, 0),
        Replenished(s + 3, T0, iceberg, SYMBOL, SELL, 100, 2, 2),
    ]
    assert level_views(events) == {(SELL, 100): (4, 2)}
    # The plain order that waited behind the first slice is now ahead of the iceberg.
    assert one(place(ex, BOB, BUY, 2, 100), Trade).maker_order_id == plain
    assert ex.depth(SYMBOL) == ([], [(100, 2, 1)])


def test_a_large_taker_eats_an_iceberg_slice_by_slice(ex: Exchange) -> None:
    iceberg = rest(ex, ALICE, SELL, 6, 100, display_qty=2)
    events = place(ex, BOB, BUY, 5, 100)
    assert [type(e) for e in core(events)] == [
        Accepted,
        Trade,
        Replenished,
        Trade,
        Replenished,
        Trade,
    ]
    assert [(t.qty, t.maker_leaves) for t in of_type(events, Trade)] == [(2, 4), (2, 2), (1, 1)]
    assert [(r.visible_qty, r.hidden_qty) for r in of_type(events, Replenished)] == [
        (2, 2),
        (2, 0),
    ]
    assert level_views(events) == {(SELL, 100): (1, 1)}
    assert ex.orders[iceberg].leaves == 1
    assert ex.balance(ALICE, BASE) == (SHARES - 6, 1)


def test_cancelling_an_iceberg_releases_the_hidden_part_too(ex: Exchange) -> None:
    iceberg = rest(ex, ALICE, SELL, 10, 100, display_qty=2)
    events = ex.apply(CancelOrder(ALICE, iceberg))
    assert one(events, Cancelled).qty == 10
    assert level_views(events) == {(SELL, 100): (0, 0)}
    assert ex.balance(ALICE, BASE) == (SHARES, 0)
