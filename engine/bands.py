"""Limit up-limit down: price bands around the mean price of the last minutes' trades, a
limit state when the book reaches a band, and a pause when it stays there.

As in the US LULD plan: the reference moves with the trades of a window (five minutes by
default) rather than with every trade, the band is the instrument's tier (doubled near the
open and the close of a calendar's session), and a market that cannot trade inside its
band for `limit_state_ms` pauses and reopens with an auction. Bands are recomputed after
each command (never during one taker's sweep), so what an order may do is decided by the
band as it stood when the command began.
"""

from __future__ import annotations

from engine.books import Books
from engine.codes import RejectCode, Side, StatusReason, TradingPhase
from engine.commands import SetLimitUpLimitDown
from engine.events import BandsChanged, LimitUpLimitDownSet
from engine.exchange_state import ExchangeState
from engine.part import Emit, Part
from engine.state import BPS_DENOMINATOR, Instrument, LimitUpLimitDown, price_band

BUY = Side.BUY.value
SELL = Side.SELL.value
NO_SIDE = -1
CONTINUOUS = TradingPhase.CONTINUOUS.value
DURATION_MAX_MS = 86_400_000


class Bands(Part):
    def __init__(self, state: ExchangeState, emit: Emit, books: Books) -> None:
        super().__init__(state, emit)
        self.books = books
        # What each instrument's BandsChanged last said: only a change is published. (A
        # restored state's bands are worked out again: the snapshot keeps the window.)
        self.published: dict[str, tuple[int, int, int, int, int]] = {}
        for symbol, luld in state.bands.items():
            inst = state.instruments[symbol]
            self._set_band(inst, luld)
            self.published[symbol] = _bands_of(inst, luld)

    def set_luld(self, cmd: SetLimitUpLimitDown) -> None:
        state = self.state
        inst = state.instruments.get(cmd.symbol)
        name = "SetLimitUpLimitDown"
        if inst is None:
            self.reject("", cmd.symbol, name, RejectCode.UNKNOWN_SYMBOL, "unknown symbol")
            return
        problem = _problem(cmd)
        if problem:
            self.reject("", cmd.symbol, name, RejectCode.INVALID_INSTRUMENT, problem)
            return
        self.emit(
            LimitUpLimitDownSet,
            cmd.symbol,
            cmd.band_bps,
            cmd.window_ms,
            cmd.limit_state_ms,
            cmd.pause_ms,
            cmd.open_ms,
            cmd.close_ms,
            cmd.by,
        )
        old = state.bands.pop(cmd.symbol, None)
        self.published.pop(cmd.symbol, None)
        if not cmd.band_bps:
            # Back to the band around the last price.
            inst.set_reference(inst.last_price or inst.reference_price)
            return
        luld = state.bands[cmd.symbol] = LimitUpLimitDown(
            cmd.band_bps, cmd.window_ms, cmd.limit_state_ms, cmd.pause_ms, cmd.open_ms, cmd.close_ms
        )
        if old is not None:
            luld.trades, luld.price_sum = old.trades, old.price_sum
        self._refresh(inst, luld)

    def refresh(self) -> None:
        """Every LULD instrument's reference, band and limit state as of log time."""
        state = self.state
        for symbol in sorted(state.bands):
            self._refresh(state.instruments[symbol], state.bands[symbol])

    def _refresh(self, inst: Instrument, luld: LimitUpLimitDown) -> None:
        now = self.state.now_ms
        trades = luld.trades
        horizon = now - luld.window_ms
        while trades and trades[0][0] <= horizon:
            luld.price_sum -= trades.popleft()[1]
        reference = self._set_band(inst, luld)
        side = luld.limit_side
        if side == NO_SIDE and inst.phase == CONTINUOUS and reference:
            side = BUY if _at_band(inst, BUY) else SELL if _at_band(inst, SELL) else NO_SIDE
            if side != NO_SIDE:  # a limit state begins
                luld.limit_side, luld.limit_until_ms = side, now + luld.limit_state_ms
        elif side != NO_SIDE:
            if inst.phase != CONTINUOUS or not _at_band(inst, side):
                luld.limit_side, luld.limit_until_ms = NO_SIDE, 0
            elif now >= luld.limit_until_ms:
                luld.limit_side, luld.limit_until_ms = NO_SIDE, 0
                self.books.pause(inst, luld.pause_ms, StatusReason.LIMIT_STATE)
        bands = _bands_of(inst, luld)
        if self.published.get(inst.symbol) != bands:
            self.published[inst.symbol] = bands
            self.emit(BandsChanged, inst.symbol, *bands)

    def _set_band(self, inst: Instrument, luld: LimitUpLimitDown) -> int:
        """The reference (the window's mean on the tick grid, else as it was) and the band
        around it; the reference, 0 while there is none."""
        tick = inst.tick_size
        reference = inst.reference_price
        trades = luld.trades
        if trades:
            mean = luld.price_sum // len(trades)
            reference = max((mean + tick // 2) // tick * tick, tick)
        if reference:
            bps = luld.band_bps * (2 if self._near_open_or_close(inst, luld) else 1)
            bps = min(bps, BPS_DENOMINATOR - 1)
            inst.reference_price = reference
            inst.band_lo, inst.band_hi = price_band(reference, bps, tick)
        return reference

    def _near_open_or_close(self, inst: Instrument, luld: LimitUpLimitDown) -> bool:
        """Within `open_ms` after the session's opening auction or `close_ms` before its
        closing auction (only for an instrument with a calendar)."""
        clock = self.state.sessions.get(inst.symbol)
        if clock is None or not clock.close_ms:
            return False
        calendar = clock.calendar
        opened = clock.start_ms + (calendar.open_s - calendar.pre_open_s) * 1000
        now = self.state.now_ms
        return now < opened + luld.open_ms or now >= clock.close_ms - luld.close_ms


def _bands_of(inst: Instrument, luld: LimitUpLimitDown) -> tuple[int, int, int, int, int]:
    return (
        inst.reference_price,
        inst.band_lo,
        inst.band_hi,
        luld.limit_side,
        luld.limit_until_ms,
    )


def _at_band(inst: Instrument, side: int) -> bool:
    """Whether the book is at a band on `side`: limit up while the best bid is at (or, after
    the band moved, beyond) the upper band, limit down while the best ask is at the lower."""
    if side == BUY:
        return bool(inst.bids) and inst.bids.peekitem(0)[1].price >= inst.band_hi
    return bool(inst.asks) and inst.asks.peekitem(0)[1].price <= inst.band_lo


def _problem(cmd: SetLimitUpLimitDown) -> str:
    if not 0 <= cmd.band_bps < BPS_DENOMINATOR:
        return f"a band is 0 (off) to {BPS_DENOMINATOR - 1} basis points"
    durations = (
        cmd.window_ms,
        cmd.limit_state_ms,
        cmd.pause_ms,
        cmd.open_ms,
        cmd.close_ms,
    )
    if not all(0 <= d <= DURATION_MAX_MS for d in durations):
        return "every duration is at most a day"
    if min(cmd.window_ms, cmd.limit_state_ms, cmd.pause_ms) <= 0:
        return "the window, the limit state and the pause last a positive time"
    return ""
