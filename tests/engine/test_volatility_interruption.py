"""Volatility interruptions: a taker that reaches a price outside the moving band stops
there, and the instrument pauses for halt_pause_ms of log time, taking orders without
matching them, then reopens with an auction. Admin halts wait for an admin."""

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
from engine.codes import TradingPhase
from engine.commands import AmendOrder, CancelOrder, PlaceOrder, SetTradingStatus, Tick
from engine.events import (
    Accepted,
    Amended,
    AuctionIndicated,
    Cancelled,
    PhaseChanged,
    StatusChanged,
    Trade,
)

HALTED = TradingStatus.HALTED
OPEN = TradingStatus.OPEN
PAUSE = TradingPhase.VOLATILITY_AUCTION
CONTINUOUS = TradingPhase.CONTINUOUS
RESUME_AT = T0 + HALT_PAUSE_MS


def trip_breaker(ex: Exchange) -> tuple[int, int]:
    """Asks at 91 and 110 inside the band [90, 110]; a buy takes 91, which moves the band
    to [82, 100], then reaches 110. Returns (ask at 110, the taker's order id)."""
    rest(ex, ALICE, SELL, 1, 91)
    far_ask = rest(ex, CAROL, SELL, 1, 110)
    taker = one(place(ex, BOB, BUY, 2, 110), Accepted).order_id
    return far_ask, taker


def test_a_taker_reaching_a_price_outside_the_band_pauses_the_instrument(ex: Exchange) -> None:
    near_ask = rest(ex, ALICE, SELL, 1, 91)
    rest(ex, CAROL, SELL, 1, 110)
    s = ex.seq
    events = place(ex, BOB, BUY, 2, 110)
    taker = one(events, Accepted).order_id
    assert core(events)[1:4] == [
        Trade(s + 2, T0, 1, SYMBOL, 91, 1, BUY, near_ask, ALICE, 0, 0, taker, BOB, 0, 1),
        PhaseChanged(s + 3, T0, SYMBOL, PAUSE, StatusReason.CIRCUIT_BREAKER, RESUME_AT),
        AuctionIndicated(s + 4, T0, SYMBOL, PAUSE, 0, 0, 0, -1),
    ]
    assert one(events, Cancelled) == Cancelled(
        s + 5, T0, taker, BOB, SYMBOL, BUY, 110, 1, 0, CancelReason.CIRCUIT_BREAKER
    )
    inst = ex.instruments[SYMBOL]
    assert (inst.status, inst.phase, inst.band_lo, inst.band_hi) == (OPEN, PAUSE, 82, 100)
    assert ex.depth(SYMBOL) == ([], [(110, 1, 1)])
    assert ex.balance(BOB, QUOTE) == (CASH - 91, 0)


def test_during_the_pause_orders_gather_without_matching_and_cancels_work(ex: Exchange) -> None:
    far_ask, _ = trip_breaker(ex)
    # The band is [82, 100]: a bid at 95 and an ask at 90 cross, but nothing trades.
    rest(ex, ALICE, SELL, 2, 90)
    events = place(ex, BOB, BUY, 1, 95)
    assert not [e for e in events if isinstance(e, Trade)]
    indicated = events[-1]
    assert isinstance(indicated, AuctionIndicated)
    assert (indicated.volume, indicated.imbalance, indicated.imbalance_side) == (1, 1, SELL)
    cancelled = one(ex.apply(CancelOrder(CAROL, far_ask)), Cancelled)
    assert cancelled.reason == CancelReason.USER
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 95, tif=1), RejectCode.WRONG_PHASE)


def test_the_pause_ends_with_a_reopening_auction(ex: Exchange) -> None:
    trip_breaker(ex)
    ask = rest(ex, ALICE, SELL, 2, 90)
    bid = rest(ex, BOB, BUY, 1, 95)
    assert ex.apply(Tick(), RESUME_AT - 1) == []
    events = core(ex.apply(Tick(), RESUME_AT))
    s = events[0].seq
    # Max volume 1 from 90 to 95, a sell surplus of 1 everywhere: the lowest price, 90.
    assert events == [
        Trade(s, RESUME_AT, 2, SYMBOL, 90, 1, BUY, ask, ALICE, 0, 1, bid, BOB, 0, 0, PAUSE),
        PhaseChanged(s + 1, RESUME_AT, SYMBOL, CONTINUOUS, StatusReason.PAUSE_ENDED, 0),
    ]
    inst = ex.instruments[SYMBOL]
    assert (inst.phase, inst.last_price) == (CONTINUOUS, 90)
    one(place(ex, BOB, BUY, 1, 95), Trade)


def test_an_order_arriving_after_the_pause_sees_the_market_reopen_first(ex: Exchange) -> None:
    trip_breaker(ex)
    events = place(ex, BOB, BUY, 1, 95, ts_ms=RESUME_AT + 10)
    assert [type(e) for e in core(events)] == [PhaseChanged, Accepted]
    assert events[-1].seq > events[0].seq
    assert ex.instruments[SYMBOL].phase == CONTINUOUS


def test_an_admin_halt_during_the_pause_refuses_orders_and_outlasts_it(ex: Exchange) -> None:
    trip_breaker(ex)
    ex.apply(SetTradingStatus(SYMBOL, HALTED))
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 95), RejectCode.HALTED)
    ex.apply(Tick(), RESUME_AT)
    inst = ex.instruments[SYMBOL]
    assert (inst.status, inst.phase) == (HALTED, CONTINUOUS)
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 95), RejectCode.HALTED, RESUME_AT)


def test_while_halted_an_order_can_be_cut_but_not_repriced(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 5, 100)
    bid = rest(ex, BOB, BUY, 5, 95)
    ex.apply(SetTradingStatus(SYMBOL, HALTED))
    apply_rejected(ex, AmendOrder(BOB, bid, price=96), RejectCode.HALTED)
    apply_rejected(ex, AmendOrder(BOB, bid, qty=6), RejectCode.HALTED)
    assert one(ex.apply(AmendOrder(BOB, bid, qty=3)), Amended).priority_kept


def test_an_admin_halt_does_not_end_by_itself(ex: Exchange) -> None:
    s = ex.seq
    assert ex.apply(SetTradingStatus(SYMBOL, HALTED)) == [
        StatusChanged(s + 1, T0, SYMBOL, HALTED, StatusReason.ADMIN, 0)
    ]
    assert ex.apply(Tick(), T0 + 10 * HALT_PAUSE_MS) == []
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 95), RejectCode.HALTED)


def test_trades_inside_the_moving_band_do_not_pause(ex: Exchange) -> None:
    # Each trade moves the band: around 100 it is [90, 110], after 105 it is [95, 115].
    rest(ex, ALICE, SELL, 1, 105)
    rest(ex, ALICE, SELL, 1, 110)
    place(ex, BOB, BUY, 1, 105)
    events = place(ex, BOB, BUY, 1, 110)
    assert one(events, Trade).price == 110
    assert ex.instruments[SYMBOL].phase == CONTINUOUS
