"""The circuit breaker: a taker that reaches a price outside the moving band halts the
instrument for halt_pause_ms of log time; admin halts wait for an admin."""

from conftest import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    CASH,
    HALT_PAUSE_MS,
    QUOTE,
    SELL,
    SYMBOL,
    T0,
    apply_rejected,
    core,
    one,
    place,
    rest,
)

from engine import CancelReason, Exchange, RejectCode, StatusReason, TradingStatus
from engine.commands import AmendOrder, CancelOrder, PlaceOrder, SetTradingStatus, Tick
from engine.events import Accepted, Amended, Cancelled, StatusChanged, Trade

HALTED = TradingStatus.HALTED
OPEN = TradingStatus.OPEN
RESUME_AT = T0 + HALT_PAUSE_MS


def trip_breaker(ex: Exchange) -> tuple[int, int]:
    """Asks at 91 and 110 inside the band [90, 110]; a buy takes 91, which moves the band
    to [82, 100], then reaches 110. Returns (ask at 110, the taker's order id)."""
    rest(ex, ALICE, SELL, 1, 91)
    far_ask = rest(ex, CAROL, SELL, 1, 110)
    taker = one(place(ex, BOB, BUY, 2, 110), Accepted).order_id
    return far_ask, taker


def test_a_taker_reaching_a_price_outside_the_band_halts_the_instrument(ex: Exchange) -> None:
    near_ask = rest(ex, ALICE, SELL, 1, 91)
    rest(ex, CAROL, SELL, 1, 110)
    s = ex.seq
    events = place(ex, BOB, BUY, 2, 110)
    taker = one(events, Accepted).order_id
    assert core(events)[1:] == [
        Trade(s + 2, T0, 1, SYMBOL, 91, 1, BUY, near_ask, ALICE, 0, 0, taker, BOB, 0, 1),
        StatusChanged(s + 3, T0, SYMBOL, HALTED, StatusReason.CIRCUIT_BREAKER, RESUME_AT),
        Cancelled(s + 4, T0, taker, BOB, SYMBOL, BUY, 110, 1, 0, CancelReason.CIRCUIT_BREAKER),
    ]
    inst = ex.instruments[SYMBOL]
    assert (inst.status, inst.band_lo, inst.band_hi) == (HALTED, 82, 100)
    assert ex.depth(SYMBOL) == ([], [(110, 1, 1)])
    assert ex.balance(BOB, QUOTE) == (CASH - 91, 0)


def test_while_halted_new_orders_are_rejected_but_cancels_work(ex: Exchange) -> None:
    far_ask, _ = trip_breaker(ex)
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 95), RejectCode.HALTED)
    cancelled = one(ex.apply(CancelOrder(CAROL, far_ask)), Cancelled)
    assert cancelled.reason == CancelReason.USER
    assert ex.depth(SYMBOL) == ([], [])


def test_while_halted_an_order_can_be_cut_but_not_repriced(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 5, 100)
    bid = rest(ex, BOB, BUY, 5, 95)
    ex.apply(SetTradingStatus(SYMBOL, HALTED))
    apply_rejected(ex, AmendOrder(BOB, bid, price=96), RejectCode.HALTED)
    apply_rejected(ex, AmendOrder(BOB, bid, qty=6), RejectCode.HALTED)
    assert one(ex.apply(AmendOrder(BOB, bid, qty=3)), Amended).priority_kept


def test_the_pause_ends_by_itself_at_resume_time(ex: Exchange) -> None:
    trip_breaker(ex)
    assert ex.apply(Tick(), RESUME_AT - 1) == []
    s = ex.seq
    assert ex.apply(Tick(), RESUME_AT) == [
        StatusChanged(s + 1, RESUME_AT, SYMBOL, OPEN, StatusReason.PAUSE_ENDED, 0)
    ]
    assert ex.instruments[SYMBOL].status == OPEN
    one(place(ex, BOB, BUY, 1, 95), Accepted)


def test_an_order_arriving_after_the_pause_sees_the_market_reopen_first(ex: Exchange) -> None:
    trip_breaker(ex)
    events = place(ex, BOB, BUY, 1, 95, ts_ms=RESUME_AT + 10)
    assert [type(e) for e in core(events)] == [StatusChanged, Accepted]
    assert one(events, StatusChanged).reason == StatusReason.PAUSE_ENDED


def test_an_admin_may_reopen_before_the_pause_ends(ex: Exchange) -> None:
    trip_breaker(ex)
    s = ex.seq
    assert ex.apply(SetTradingStatus(SYMBOL, OPEN)) == [
        StatusChanged(s + 1, T0, SYMBOL, OPEN, StatusReason.ADMIN, 0)
    ]
    # No second reopening when the old pause would have ended.
    assert ex.apply(Tick(), RESUME_AT) == []


def test_an_admin_halt_does_not_end_by_itself(ex: Exchange) -> None:
    s = ex.seq
    assert ex.apply(SetTradingStatus(SYMBOL, HALTED)) == [
        StatusChanged(s + 1, T0, SYMBOL, HALTED, StatusReason.ADMIN, 0)
    ]
    assert ex.apply(Tick(), T0 + 10 * HALT_PAUSE_MS) == []
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 95), RejectCode.HALTED)


def test_trades_inside_the_moving_band_do_not_halt(ex: Exchange) -> None:
    # Each trade moves the band: around 100 it is [90, 110], after 105 it is [95, 115].
    rest(ex, ALICE, SELL, 1, 105)
    rest(ex, ALICE, SELL, 1, 110)
    place(ex, BOB, BUY, 1, 105)
    events = place(ex, BOB, BUY, 1, 110)
    assert one(events, Trade).price == 110
    assert ex.instruments[SYMBOL].status == OPEN
