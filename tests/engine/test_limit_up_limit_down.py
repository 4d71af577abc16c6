"""Limit up-limit down: bands around the mean price of the last five minutes' trades, a
limit state when the book reaches a band, a pause and a reopening auction when it stays."""

import pytest
from conftest import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    SELL,
    SYMBOL,
    T0,
    apply_rejected,
    make_exchange,
    of_type,
    one,
    place,
    rest,
)

from engine import CancelReason, Exchange, RejectCode, StatusReason
from engine.codes import OrderType, TradingPhase
from engine.commands import PlaceOrder, SetCalendar, SetLimitUpLimitDown, Tick
from engine.events import Accepted, BandsChanged, Cancelled, PhaseChanged, Trade

WINDOW_MS = 300_000
LIMIT_STATE_MS = 15_000
PAUSE_MS = 300_000


@pytest.fixture
def ex() -> Exchange:
    """ACME (reference 100) under a 5% tier: band [95, 105]."""
    exchange = make_exchange()
    events = exchange.apply(SetLimitUpLimitDown(SYMBOL, 500), T0)
    assert events[-1] == BandsChanged(events[-1].seq, T0, SYMBOL, 100, 95, 105, -1, 0)
    return exchange


def trade(ex: Exchange, price: int, ts_ms: int) -> None:
    rest(ex, ALICE, SELL, 1, price)
    one(place(ex, BOB, BUY, 1, price, ts_ms=ts_ms), Trade)


def test_the_reference_is_the_mean_of_the_windows_trades_and_stays_without_trades(
    ex: Exchange,
) -> None:
    trade(ex, 100, T0 + 1_000)
    trade(ex, 102, T0 + 2_000)
    trade(ex, 104, T0 + 3_000)
    inst = ex.instruments[SYMBOL]
    # Mean 102; 5% of it is 5: [97, 107]. A last price of 104 alone would give [99, 109].
    assert (inst.reference_price, inst.band_lo, inst.band_hi) == (102, 97, 107)
    ex.apply(Tick(), T0 + 1_000 + WINDOW_MS)  # the trade at 100 leaves the window
    assert (inst.reference_price, inst.band_lo, inst.band_hi) == (103, 98, 108)
    ex.apply(Tick(), T0 + 10 * WINDOW_MS)  # no trades left: the reference stays
    assert (inst.reference_price, inst.band_lo, inst.band_hi) == (103, 98, 108)
    apply_rejected(
        ex,
        PlaceOrder(CAROL, SYMBOL, BUY, 1, 109),
        RejectCode.PRICE_OUT_OF_BAND,
        T0 + 10 * WINDOW_MS,
    )


def test_a_bid_at_the_upper_band_is_a_limit_state_that_ends_when_it_trades(
    ex: Exchange,
) -> None:
    events = place(ex, ALICE, BUY, 3, 105, ts_ms=T0 + 1_000)
    bands = one(events, BandsChanged)
    assert (bands.limit_side, bands.limit_until_ms) == (BUY, T0 + 1_000 + LIMIT_STATE_MS)
    # Carol sells into the bid at the band: the bid is gone and so is the limit state.
    events = place(ex, CAROL, SELL, 3, 105, ts_ms=T0 + 5_000)
    assert one(events, Trade).price == 105
    assert one(events, BandsChanged).limit_side == -1
    assert ex.instruments[SYMBOL].phase == TradingPhase.CONTINUOUS


def test_a_book_that_stays_at_the_band_pauses_and_reopens_by_auction(ex: Exchange) -> None:
    place(ex, ALICE, SELL, 2, 95, ts_ms=T0 + 1_000)  # limit down
    ex.apply(Tick(), T0 + 1_000 + LIMIT_STATE_MS - 1)
    assert ex.instruments[SYMBOL].phase == TradingPhase.CONTINUOUS
    events = ex.apply(Tick(), T0 + 1_000 + LIMIT_STATE_MS)
    paused = one(events, PhaseChanged)
    assert (paused.phase, paused.reason) == (
        TradingPhase.VOLATILITY_AUCTION,
        StatusReason.LIMIT_STATE,
    )
    assert paused.until_ms == T0 + 1_000 + LIMIT_STATE_MS + PAUSE_MS
    rest(ex, BOB, BUY, 1, 97)  # orders gather; the book crosses
    events = ex.apply(Tick(), paused.until_ms)
    reopened = one(events, Trade)
    assert (reopened.price, reopened.qty, reopened.auction) == (
        95,
        1,
        TradingPhase.VOLATILITY_AUCTION,
    )
    assert ex.instruments[SYMBOL].phase == TradingPhase.CONTINUOUS


def test_nothing_executes_outside_the_band(ex: Exchange) -> None:
    """A stop-limit priced when the band was higher fires into asks that today's band no
    longer reaches: it does not trade there, and what is left of it is cancelled."""
    rest(ex, ALICE, SELL, 1, 101)
    stop = place(ex, BOB, BUY, 1, 103, order_type=OrderType.STOP_LIMIT, stop_price=99)
    stop_id = one(stop, Accepted).order_id
    trade(ex, 95, T0 + 1_000)  # the mean is 95: the band is [91, 99]
    assert ex.instruments[SYMBOL].band_hi == 99
    rest(ex, ALICE, BUY, 1, 99)
    events = place(ex, CAROL, SELL, 1, 99, ts_ms=T0 + 2_000)  # trades at 99, fires the stop
    assert [t.price for t in of_type(events, Trade)] == [99]
    cancelled = one(events, Cancelled)
    assert (cancelled.order_id, cancelled.reason) == (stop_id, CancelReason.PRICE_BAND)
    assert ex.depth(SYMBOL)[1] == [(101, 1, 1)]


def test_bands_double_after_the_open_and_before_the_close() -> None:
    exchange = make_exchange()
    # A ten-minute UTC day: open at 60 s, close at 540 s; doubled for 100 s after the open
    # and 100 s before the close.
    session = T0 - 200_000  # T0 is 200 s into a session
    exchange.apply(
        SetCalendar(SYMBOL, "UTC", 0, 60, 480, 540, 570, day_s=600, trading_days=0b1111111), T0
    )
    exchange.apply(SetLimitUpLimitDown(SYMBOL, 500, open_ms=100_000, close_ms=100_000), T0)
    inst = exchange.instruments[SYMBOL]
    assert (inst.band_lo, inst.band_hi) == (95, 105)
    exchange.apply(Tick(), session + 600_000 + 120_000)  # 60 s after the next open
    assert (inst.band_lo, inst.band_hi) == (90, 110)
    exchange.apply(Tick(), session + 600_000 + 300_000)
    assert (inst.band_lo, inst.band_hi) == (95, 105)
    exchange.apply(Tick(), session + 600_000 + 450_000)  # 90 s before the close
    assert (inst.band_lo, inst.band_hi) == (90, 110)


def test_turning_the_bands_off_goes_back_to_the_band_around_the_last_price(ex: Exchange) -> None:
    trade(ex, 104, T0 + 1_000)
    ex.apply(SetLimitUpLimitDown(SYMBOL, 0), T0 + 2_000)
    inst = ex.instruments[SYMBOL]
    assert (inst.reference_price, inst.band_lo, inst.band_hi) == (104, 94, 114)
    assert not ex.state.bands


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"band_bps": 10_000}, "basis points"),
        ({"band_bps": 500, "window_ms": 0}, "positive time"),
        ({"band_bps": 500, "limit_state_ms": 0}, "positive time"),
        ({"band_bps": 500, "pause_ms": 86_400_001}, "at most a day"),
    ],
)
def test_bad_parameters_are_refused(ex: Exchange, fields: dict, message: str) -> None:
    rejected = apply_rejected(
        ex, SetLimitUpLimitDown(SYMBOL, **fields), RejectCode.INVALID_INSTRUMENT
    )
    assert message in rejected.message


def test_snapshot_and_restore_keep_the_window_and_the_limit_state(ex: Exchange) -> None:
    trade(ex, 102, T0 + 1_000)  # the band is [97, 107]
    bands = one(place(ex, ALICE, BUY, 3, 107, ts_ms=T0 + 2_000), BandsChanged)
    assert bands.limit_side == BUY
    restored = Exchange.restore(ex.snapshot(), checked=True)
    assert restored.state_hash() == ex.state_hash()
    at = T0 + 2_000 + LIMIT_STATE_MS
    assert restored.apply(Tick(), at) == ex.apply(Tick(), at)
    assert ex.instruments[SYMBOL].phase == TradingPhase.VOLATILITY_AUCTION
