"""Sessions: each instrument's trading day, and the volatility pauses inside it.

Phase changes happen at log time: when an entry's time reaches a scheduled change,
the change is applied before the entry's commands, with that entry's time, so every
node switches at the same command. Leaving a call phase (pre-open, pre-close, a
volatility pause) runs its auction; leaving pre-close also closes the session with
its official price, which the next session opens with as its reference.
"""

from __future__ import annotations

from engine.books import Books
from engine.calendar import Calendar, calendar_problem, session_at
from engine.codes import CALL_PHASES, RejectCode, StatusReason, TradingPhase
from engine.commands import SetCalendar
from engine.events import CalendarSet, SessionClosed
from engine.exchange_state import ExchangeState
from engine.part import Emit, Part
from engine.state import Instrument, SessionClock

CONTINUOUS = TradingPhase.CONTINUOUS.value
PRE_OPEN = TradingPhase.PRE_OPEN.value
PRE_CLOSE = TradingPhase.PRE_CLOSE.value
VOLATILITY_AUCTION = TradingPhase.VOLATILITY_AUCTION.value
# The phases of a session in which orders are taken (DAY orders expire at its close).
OPEN_PHASES = (PRE_OPEN, CONTINUOUS, PRE_CLOSE)
# The auction that ends each call phase.
AUCTION_OF = {
    PRE_OPEN: TradingPhase.OPENING_AUCTION.value,
    PRE_CLOSE: TradingPhase.CLOSING_AUCTION.value,
    VOLATILITY_AUCTION: VOLATILITY_AUCTION,
}


class Sessions(Part):
    def __init__(self, state: ExchangeState, emit: Emit, books: Books) -> None:
        super().__init__(state, emit)
        self.books = books

    def run_due(self) -> None:
        """Every phase change due by log time, in time order per instrument, symbols in
        name order; then the volatility pauses that end."""
        state = self.state
        now = state.now_ms
        for symbol in sorted(state.sessions):
            clock = state.sessions[symbol]
            while clock.due_ms <= now:
                self._advance(state.instruments[symbol], clock, clock.due_ms)
        paused = state.paused
        for symbol in sorted(paused):
            if paused[symbol] <= now:
                del paused[symbol]
                inst = state.instruments[symbol]
                inst.resume_at_ms = 0
                scheduled = state.sessions.get(symbol)
                self._enter(
                    inst,
                    scheduled.phase if scheduled is not None else CONTINUOUS,
                    StatusReason.PAUSE_ENDED,
                    scheduled.due_ms if scheduled is not None else 0,
                )
        self._schedule()

    def set_calendar(self, cmd: SetCalendar) -> None:
        state = self.state
        inst = state.instruments.get(cmd.symbol)
        name = "SetCalendar"
        if inst is None:
            self.reject("", cmd.symbol, name, RejectCode.UNKNOWN_SYMBOL, "unknown symbol")
            return
        calendar = Calendar(
            cmd.time_zone,
            cmd.pre_open_s,
            cmd.open_s,
            cmd.pre_close_s,
            cmd.close_s,
            cmd.post_close_s,
            cmd.day_s,
            cmd.trading_days,
            cmd.holidays,
        )
        problem = calendar_problem(calendar)
        if problem:
            self.reject("", cmd.symbol, name, RejectCode.INVALID_CALENDAR, problem)
            return
        self.emit(CalendarSet, cmd.symbol, *calendar.fields(), cmd.by)
        old = state.sessions.pop(cmd.symbol, None)
        if not cmd.time_zone:
            if inst.phase != VOLATILITY_AUCTION:
                self._enter(inst, CONTINUOUS, StatusReason.ADMIN, 0, cmd.by)
        else:
            clock = state.sessions[cmd.symbol] = SessionClock(calendar)
            if old is not None:
                clock.close_price, clock.closed_start_ms = old.close_price, old.closed_start_ms
            self._advance(inst, clock, state.now_ms, cmd.by)
        self._schedule()

    def _advance(self, inst: Instrument, clock: SessionClock, at_ms: int, by: str = "") -> None:
        """Moves an instrument to the phase its calendar has at `at_ms`."""
        session = session_at(clock.calendar, at_ms)
        phase = session.phase
        clock.due_ms = session.until_ms
        previous = clock.phase
        clock.phase = phase
        if phase in OPEN_PHASES:
            # DAY orders entered in this session expire at its close.
            clock.start_ms, clock.close_ms = session.start_ms, session.close_ms
            clock.local_date = session.local_date
            if phase == PRE_OPEN and previous != PRE_OPEN and clock.close_price:
                inst.set_reference(clock.close_price)
        else:
            clock.close_ms = 0
        if inst.phase == VOLATILITY_AUCTION and phase in (CONTINUOUS, PRE_CLOSE):
            return  # the pause goes on; its end enters the scheduled phase
        if inst.phase == VOLATILITY_AUCTION:
            self.state.paused.pop(inst.symbol, None)
            inst.resume_at_ms = 0
        reason = StatusReason.ADMIN if by else StatusReason.CALENDAR
        auction_price = 0
        if inst.phase != phase:
            auction_price = self._enter(inst, phase, reason, clock.due_ms, by)
        if previous == PRE_CLOSE and phase != PRE_CLOSE:
            self._close_session(inst, clock, auction_price)

    def _enter(self, inst: Instrument, phase: int, reason: str, until_ms: int, by: str = "") -> int:
        """Leaves the current phase (running its auction if it is a call phase) for `phase`;
        the auction's price, 0 if there was none or it traded nothing."""
        books = self.books
        price = 0
        if inst.phase in CALL_PHASES and phase != inst.phase:
            auction = AUCTION_OF[inst.phase]
            if auction != inst.phase:  # a volatility pause is its own auction's phase
                books.set_phase(inst, auction, reason, 0, by)
            price = books.run_auction(inst, auction)
        books.set_phase(inst, phase, reason, until_ms, by)
        if phase == CONTINUOUS:
            books.trigger_stops(inst)
        return price

    def _close_session(self, inst: Instrument, clock: SessionClock, auction_price: int) -> None:
        """The official close: the closing auction's price, else the last trade's."""
        from_auction = bool(auction_price)
        price = auction_price or inst.last_price
        clock.close_price = price
        clock.closed_start_ms = clock.start_ms
        self.emit(SessionClosed, inst.symbol, clock.start_ms, clock.local_date, price, from_auction)

    def _schedule(self) -> None:
        sessions = self.state.sessions
        self.state.next_phase_ms = min((c.due_ms for c in sessions.values()), default=0)
