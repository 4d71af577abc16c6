"""Trading calendars: phases at log time, call phases, opening and closing auctions,
time in force by phase, the official close."""

import pytest
from conftest import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    CASH,
    QUOTE,
    SELL,
    SYMBOL,
    T0,
    apply_rejected,
    core,
    make_exchange,
    of_type,
    one,
    place,
    rest,
)

from engine import CancelReason, Exchange, RejectCode
from engine.codes import OrderType, TimeInForce, TradingPhase
from engine.commands import PlaceOrder, SetCalendar, Tick
from engine.events import (
    Accepted,
    AuctionIndicated,
    CalendarSet,
    Cancelled,
    Expired,
    PhaseChanged,
    SessionClosed,
    Trade,
)

P = TradingPhase
# A ten-minute day in UTC (the demo's shape): pre-open from 60 s, the opening auction at
# 120 s, continuous trading, pre-close from 420 s, the closing auction at 480 s, post-close
# until 540 s, closed until the next session 600 s after this one.
DAY_S = 600
# T0 (2023-11-14 22:13:20 UTC, a Tuesday) is 200 s into a session.
SESSION0 = T0 - 200_000


def at(offset_s: int, session: int = 0) -> int:
    return SESSION0 + session * DAY_S * 1000 + offset_s * 1000


def short_day(**fields: object) -> SetCalendar:
    values = dict(
        pre_open_s=60,
        open_s=120,
        pre_close_s=420,
        close_s=480,
        post_close_s=540,
        day_s=DAY_S,
        trading_days=0b1111111,
    )
    values.update(fields)
    return SetCalendar(SYMBOL, "UTC", **values)  # type: ignore[arg-type]


@pytest.fixture
def day() -> Exchange:
    """ACME on the short day, set during continuous trading, then moved to the next
    session's pre-open (the book empty)."""
    ex = make_exchange()
    events = ex.apply(short_day(), T0)
    assert [type(e) for e in events] == [CalendarSet]  # continuous already
    ex.apply(Tick(), at(60, 1))
    assert ex.instruments[SYMBOL].phase == P.PRE_OPEN
    return ex


def test_phases_change_at_log_time_in_order_with_their_next_change() -> None:
    ex = make_exchange()
    ex.apply(short_day(), T0)
    changes = []
    for offset in (419, 420, 480, 540, 600 + 59, 600 + 60, 600 + 120):
        changes += [
            (e.phase, e.until_ms) for e in ex.apply(Tick(), at(offset)) if type(e) is PhaseChanged
        ]
    assert changes == [
        (P.PRE_CLOSE, at(480)),
        (P.CLOSING_AUCTION, 0),
        (P.POST_CLOSE, at(540)),
        (P.CLOSED, at(660)),
        (P.PRE_OPEN, at(720)),
        (P.OPENING_AUCTION, 0),
        (P.CONTINUOUS, at(1020)),
    ]


def test_a_late_entry_runs_every_change_it_passed_before_its_own_command(day: Exchange) -> None:
    """A quiet market: the first entry after the close passes the opening auction,
    continuous trading, pre-close and the closing auction, each at that entry's time."""
    events = day.apply(Tick(), at(500, 1))
    phases = [e.phase for e in events if type(e) is PhaseChanged]
    assert phases == [
        P.OPENING_AUCTION,
        P.CONTINUOUS,
        P.PRE_CLOSE,
        P.CLOSING_AUCTION,
        P.POST_CLOSE,
    ]
    assert {e.ts_ms for e in events} == {at(500, 1)}


def test_pre_open_gathers_orders_without_matching_and_publishes_the_indicative(
    day: Exchange,
) -> None:
    rest(day, ALICE, BUY, 5, 101)
    events = place(day, BOB, SELL, 4, 99)
    assert not of_type(events, Trade)
    assert events[-1] == AuctionIndicated(
        events[-1].seq, T0_OPEN_CALL, SYMBOL, P.PRE_OPEN, 101, 4, 1, BUY
    )
    assert day.depth(SYMBOL) == ([(101, 5, 1)], [(99, 4, 1)])  # crossed until the uncross


T0_OPEN_CALL = at(60, 1)


def test_the_opening_auction_trades_at_one_price_in_price_time_priority(day: Exchange) -> None:
    a = rest(day, ALICE, BUY, 5, 101)
    c = rest(day, CAROL, BUY, 3, 100)
    b1 = rest(day, BOB, SELL, 4, 99)
    b2 = rest(day, BOB, SELL, 4, 100)
    events = core(day.apply(Tick(), at(120, 1)))
    trades = of_type(events, Trade)
    # 99: 8 to buy, 4 to sell; 100: 8 and 8; 101: 5 and 8. The most volume is at 100.
    assert [(t.price, t.qty, t.maker_order_id, t.taker_order_id) for t in trades] == [
        (100, 4, a, b1),
        (100, 1, a, b2),
        (100, 3, c, b2),
    ]
    assert {t.auction for t in trades} == {P.OPENING_AUCTION}
    assert [type(e) for e in events] == [PhaseChanged, Trade, Trade, Trade, PhaseChanged]
    assert day.depth(SYMBOL) == ([], [])
    # Holds settle at the auction price: alice held for 101 and paid 100.
    assert day.balance(ALICE, QUOTE) == (CASH - 500, 0)
    assert day.balance(BOB, QUOTE) == (CASH + 800, 0)
    assert day.instruments[SYMBOL].last_price == 100


def test_auction_fees_charge_the_older_order_as_maker() -> None:
    ex = make_exchange(maker_fee_bps=10, taker_fee_bps=30)
    ex.apply(short_day(), T0)
    ex.apply(Tick(), at(60, 1))
    bid = rest(ex, ALICE, BUY, 10, 100)
    rest(ex, BOB, SELL, 10, 100)
    trade = one(ex.apply(Tick(), at(120, 1)), Trade)
    assert (trade.maker_order_id, trade.maker_fee, trade.taker_fee) == (bid, 1, 3)
    assert ex.balance(ALICE, QUOTE) == (CASH - 1_000 - 1, 0)
    assert ex.balance(BOB, QUOTE) == (CASH + 1_000 - 3, 0)


def test_self_trade_prevention_applies_in_the_auction(day: Exchange) -> None:
    """The newer order's mode decides: cancel-newest cancels bob's own later bid, and the
    auction trades on with carol's."""
    rest(day, BOB, SELL, 5, 100)
    own = rest(day, BOB, BUY, 5, 100)
    rest(day, CAROL, BUY, 5, 100)
    events = day.apply(Tick(), at(120, 1))
    assert one(events, Cancelled).order_id == own
    assert one(events, Cancelled).reason == CancelReason.SELF_TRADE
    assert one(events, Trade).taker_account == CAROL


def test_a_cross_left_by_self_trade_prevention_uncrosses_at_a_new_price(day: Exchange) -> None:
    """Alice's own bid at 101 sets the price; cancelling it leaves carol's bid crossing
    alice's ask at 100, which trades there rather than open continuous trading crossed."""
    rest(day, ALICE, SELL, 1, 100)
    rest(day, CAROL, BUY, 1, 100)
    own = rest(day, ALICE, BUY, 1, 101)
    events = day.apply(Tick(), at(120, 1))
    assert one(events, Cancelled).order_id == own
    trade = one(events, Trade)
    assert (trade.price, trade.qty, trade.taker_account) == (100, 1, CAROL)
    inst = day.state.instruments[SYMBOL]
    assert not inst.bids and not inst.asks
    assert inst.last_price == 100


def test_market_orders_wait_for_the_uncross_and_what_is_left_leaves(day: Exchange) -> None:
    market = one(place(day, ALICE, BUY, 10, order_type=OrderType.MARKET), Accepted).order_id
    rest(day, BOB, SELL, 4, 100)
    events = day.apply(Tick(), at(120, 1))
    assert one(events, Trade).qty == 4
    cancelled = one(events, Cancelled)
    assert (cancelled.order_id, cancelled.qty, cancelled.reason) == (
        market,
        6,
        CancelReason.AUCTION_OVER,
    )
    assert day.balance(ALICE, QUOTE) == (CASH - 400, 0)


def test_at_the_open_orders_live_only_for_the_opening_auction(day: Exchange) -> None:
    opg = rest(day, ALICE, BUY, 5, 101, tif=TimeInForce.AT_OPEN)
    gtc = rest(day, CAROL, BUY, 5, 95)
    rest(day, BOB, SELL, 2, 100)
    events = day.apply(Tick(), at(120, 1))
    assert one(events, Trade).qty == 2
    assert one(events, Cancelled).order_id == opg
    assert gtc in day.orders
    apply_rejected(
        day, PlaceOrder(ALICE, SYMBOL, BUY, 1, 99, tif=TimeInForce.AT_OPEN), RejectCode.WRONG_PHASE
    )


def test_call_phases_refuse_ioc_and_fok_limit_orders(day: Exchange) -> None:
    for tif in (TimeInForce.IOC, TimeInForce.FOK):
        apply_rejected(day, PlaceOrder(ALICE, SYMBOL, BUY, 1, 99, tif=tif), RejectCode.WRONG_PHASE)


def test_the_closing_auction_sets_the_official_close_and_day_orders_expire(
    day: Exchange,
) -> None:
    day.apply(Tick(), at(420, 1))  # pre-close
    day_bid = rest(day, ALICE, BUY, 5, 102, tif=TimeInForce.DAY)
    moc = rest(day, CAROL, SELL, 3, 0, order_type=OrderType.MARKET, tif=TimeInForce.AT_CLOSE)
    apply_rejected(
        day,
        PlaceOrder(BOB, SYMBOL, SELL, 1, 0, OrderType.MARKET, TimeInForce.AT_OPEN),
        RejectCode.WRONG_PHASE,
    )
    events = day.apply(Tick(), at(480, 1))
    trade = one(events, Trade)
    assert (trade.qty, trade.price, trade.auction) == (3, 102, P.CLOSING_AUCTION)
    closed = one(events, SessionClosed)
    assert (closed.close_price, closed.from_auction) == (102, True)
    assert closed.session_start_ms == at(60, 1)
    expired = one(events, Expired)
    assert (expired.order_id, expired.qty) == (day_bid, 2)
    assert moc not in day.orders
    assert day.instruments[SYMBOL].phase == P.POST_CLOSE
    apply_rejected(day, PlaceOrder(BOB, SYMBOL, SELL, 1, 100), RejectCode.MARKET_CLOSED, at(481, 1))
    # The next session opens with the close as its reference: the band is around 102.
    day.apply(Tick(), at(60, 2))
    inst = day.instruments[SYMBOL]
    assert (inst.reference_price, inst.band_lo, inst.band_hi) == (102, 92, 112)


def test_a_closing_auction_that_trades_nothing_closes_at_the_last_price(day: Exchange) -> None:
    rest(day, ALICE, BUY, 1, 100)
    rest(day, BOB, SELL, 1, 100)
    day.apply(Tick(), at(420, 1))
    closed = one(day.apply(Tick(), at(480, 1)), SessionClosed)
    assert (closed.close_price, closed.from_auction) == (100, False)


def test_no_session_on_days_the_calendar_does_not_trade() -> None:
    ex = make_exchange()
    # T0 is a Tuesday: trade Mondays only, and the calendar closes the market at once.
    events = ex.apply(
        short_day(
            trading_days=0b1,
            day_s=86_400,
            pre_open_s=0,
            open_s=60,
            pre_close_s=120,
            close_s=180,
            post_close_s=240,
        ),
        T0,
    )
    assert [(type(e), getattr(e, "phase", None)) for e in events][-1] == (PhaseChanged, P.CLOSED)
    apply_rejected(ex, PlaceOrder(ALICE, SYMBOL, BUY, 1, 100), RejectCode.MARKET_CLOSED)


def test_holidays_are_closed() -> None:
    ex = make_exchange()
    ex.apply(short_day(holidays="2023-11-14"), T0)
    assert ex.instruments[SYMBOL].phase == P.CLOSED


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"open_s": 30}, "pre-open < open"),
        ({"day_s": 7}, "divisor of a day"),
        ({"trading_days": 0}, "weekdays"),
        ({"holidays": "christmas"}, "ISO dates"),
    ],
)
def test_bad_calendars_are_refused_and_change_nothing(fields: dict, problem: str) -> None:
    ex = make_exchange()
    command = short_day(**{k: v for k, v in fields.items() if k != "time_zone"})
    if "time_zone" in fields:
        command = SetCalendar(SYMBOL, fields["time_zone"], 60, 120, 420, 480, 540, DAY_S)
    rejected = apply_rejected(ex, command, RejectCode.INVALID_CALENDAR)
    assert problem in rejected.message


def test_clearing_the_calendar_in_a_call_phase_runs_its_auction(day: Exchange) -> None:
    rest(day, ALICE, BUY, 1, 100)
    rest(day, BOB, SELL, 1, 100)
    events = day.apply(SetCalendar(SYMBOL, ""), at(61, 1))
    assert [type(e) for e in core(events)] == [CalendarSet, PhaseChanged, Trade, PhaseChanged]
    assert day.instruments[SYMBOL].phase == P.CONTINUOUS
    assert not day.state.sessions


def test_snapshot_and_restore_hold_in_a_call_phase(day: Exchange) -> None:
    rest(day, ALICE, BUY, 5, 101)
    rest(day, BOB, SELL, 4, 99)
    restored = Exchange.restore(day.snapshot(), checked=True)
    assert restored.state_hash() == day.state_hash()
    assert day.apply(Tick(), at(120, 1)) == restored.apply(Tick(), at(120, 1))
    assert restored.state_hash() == day.state_hash()
