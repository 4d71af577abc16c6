"""The replicated state machine: `Exchange.apply(command, ts_ms) -> events`.

Deterministic by construction: no clock (time comes with the command and only
moves forward), no randomness, no iteration over sets, integers only. Every
command is validated before it changes anything; bad input becomes a
`Rejected` event, never an exception.

The exchange is a thin dispatcher over parts that each own a share of the state
(engine.exchange_state): the ledger (balances, holds, fees, transfers), risk
(pre-trade controls), the books (matching, auctions, stops, expiries), sessions
(trading calendars, phases, volatility pauses), bands (limit up-limit down) and
access (accounts, keys, second factors). It alone owns the sequence: every event is
numbered by `emit`. In checked mode it verifies every invariant after every
command (engine.invariants), as the tests and the chaos suite run it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from sortedcontainers import SortedDict

from engine.access import Access
from engine.bands import Bands
from engine.books import Books
from engine.codes import RejectCode, Side
from engine.commands import (
    AddApiKey,
    AddAsset,
    AddInstrument,
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    MassCancel,
    PlaceOrder,
    RevokeApiKey,
    SetAccountEnabled,
    SetAccountProfile,
    SetCalendar,
    SetLimitUpLimitDown,
    SetMemberRateLimit,
    SetRateLimit,
    SetSecondFactor,
    SetTradingStatus,
    Signed,
    Tick,
    UpdateInstrument,
    Withdraw,
)
from engine.events import Event, Rejected, Transferred
from engine.exchange_state import FEE_ACCOUNT, OPEN_ORDERS_PER_ACCOUNT_MAX, ExchangeState
from engine.invariants import InvariantBroken, asset_totals, invariant_problems
from engine.ledger import Ledger
from engine.retries import Retries
from engine.risk import Risk
from engine.sessions import Sessions
from engine.snapshot import MALFORMED_STATE_ERRORS, SnapshotError, decode_state, encode_state
from engine.state import Account, ApiKey, Instrument, Order, PriceLevel

__all__ = ["FEE_ACCOUNT", "Exchange", "InvariantBroken"]

BUY = Side.BUY.value


class Exchange:
    """Books, balances, holds and the event sequence of one exchange.

    The apply thread is the only writer.
    """

    def __init__(
        self,
        open_orders_per_account_max: int = OPEN_ORDERS_PER_ACCOUNT_MAX,
        *,
        checked: bool = False,
        state: ExchangeState | None = None,
    ) -> None:
        self.state = state if state is not None else ExchangeState(open_orders_per_account_max)
        self._out: list[Event] = []
        self.retries = Retries(self.state, self.emit, self._repeat)
        self.ledger = Ledger(self.state, self.emit, self.retries)
        self.risk = Risk(self.state, self.emit, self.retries)
        self.books = Books(self.state, self.emit, self.ledger, self.risk, self.retries)
        self.access = Access(
            self.state, self.emit, self.retries, self.books.cancel_all, self._dispatch, self._events
        )
        self.sessions = Sessions(self.state, self.emit, self.books)
        self.bands = Bands(self.state, self.emit, self.books)
        ledger, risk, books, access = self.ledger, self.risk, self.books, self.access
        # Each handler takes its own command type (typed Any: a dict cannot say which).
        self._handlers: dict[type, Callable[[Any], None]] = {
            PlaceOrder: books.place,
            CancelOrder: books.cancel,
            AmendOrder: books.amend,
            MassCancel: books.mass_cancel,
            Deposit: ledger.deposit,
            Withdraw: ledger.withdraw,
            CreateAccount: access.create_account,
            SetAccountEnabled: access.set_account_enabled,
            SetAccountProfile: access.set_account_profile,
            SetRateLimit: risk.set_rate_limit,
            SetMemberRateLimit: risk.set_member_rate_limit,
            AddInstrument: books.add_instrument,
            UpdateInstrument: books.update_instrument,
            SetTradingStatus: books.set_trading_status,
            SetCalendar: self.sessions.set_calendar,
            SetLimitUpLimitDown: self.bands.set_luld,
            Tick: _ignore,
            AddAsset: ledger.add_asset,
            AddApiKey: access.add_api_key,
            RevokeApiKey: access.revoke_api_key,
            SetSecondFactor: access.set_second_factor,
            Signed: access.signed,
        }
        self.checked = checked
        # For `check`: each asset's deposits less withdrawals (what its total must equal)
        # and the last sequence number checked.
        self._issued: dict[str, int] = asset_totals(self)
        self._checked_seq = self.state.seq

    # ------------------------------------------------------------------ apply

    def apply(self, command: Command, ts_ms: int = 0) -> list[Event]:
        """Applies one command at log time `ts_ms` and returns the events it caused.

        A retried command whose client id is already known returns its original
        outcome event (with its original sequence number) and emits nothing new.
        """
        state = self.state
        state.now_ms = max(state.now_ms, ts_ms)
        out = self._out = []
        now = state.now_ms
        if state.client_ids:
            self.retries.forget_expired()
        if (state.next_phase_ms and state.next_phase_ms <= now) or state.paused:
            self.sessions.run_due()
        if state.expiries and state.expiries[0][0] <= now:
            self.books.run_expiries()
        bands = state.bands
        if bands:
            self.bands.refresh()  # windows and limit states as of log time
        handler = self._handlers.get(type(command))
        if handler is None:
            self._reject_unknown(type(command).__name__)
        else:
            handler(command)
        if bands:
            self.bands.refresh()  # with the command's trades
        ledger = self.ledger
        if ledger.touched:
            ledger.flush()
        books = self.books
        if books.touched:
            books.flush()
        if self.checked:
            self.check(out)
        return out

    def emit(self, event_type: type, *fields: object) -> Event:
        """The one way an event is made: the next sequence number, log time, then `fields`."""
        state = self.state
        seq = state.seq = state.seq + 1
        event = event_type(seq, state.now_ms, *fields)
        self._out.append(event)
        return event

    def _repeat(self, event: Event) -> None:
        """A retry's answer: its original outcome, with its original sequence number."""
        self._out.append(event)

    def _events(self) -> list[Event]:
        return self._out

    def _dispatch(self, command: Command) -> None:
        handler = self._handlers.get(type(command))
        if handler is None:
            self._reject_unknown(type(command).__name__)
        else:
            handler(command)

    def _reject_unknown(self, detail: str) -> Event:
        return self.emit(Rejected, "", "", detail, RejectCode.UNKNOWN_COMMAND, "unknown")

    def reject_malformed(self, detail: str) -> Event:
        """The outcome of a command that could not be decoded (it never reached `apply`):
        a Rejected with the next sequence number, as every node gives it."""
        self._out = []
        return self.emit(Rejected, "", "", "?", RejectCode.UNKNOWN_COMMAND, detail)

    def check(self, events: list[Event]) -> None:
        """The whole state's invariants, every asset conserved, and the events emitted
        since the last check (`events` holds them, maybe with repeated outcomes) numbered
        one after another. Raises InvariantBroken: run in checked mode after every command,
        and by a node in checked mode after every entry."""
        problems = invariant_problems(self)
        issued = self._issued
        last = self._checked_seq
        # A retry's answer repeats an outcome already numbered (maybe earlier in the same
        # entry): only events above every number seen so far are new.
        fresh = []
        top = last
        for event in events:
            if event.seq > top:
                fresh.append(event)
                top = event.seq
        for event in fresh:
            if type(event) is Transferred:
                issued[event.asset] = issued.get(event.asset, 0) + event.amount
        totals = asset_totals(self)
        for asset in sorted(set(totals) | set(issued)):
            held, made = totals.get(asset, 0), issued.get(asset, 0)
            if held != made:
                problems.append(f"{asset}: {held} in accounts, {made} deposited less withdrawn")
        numbers = [event.seq for event in fresh]
        if numbers != list(range(last + 1, self.state.seq + 1)):
            problems.append(f"events since {last} are numbered {numbers[:10]}")
        self._checked_seq = self.state.seq
        if problems:
            raise InvariantBroken("; ".join(problems))

    # ------------------------------------------------------------- state, read-only

    @property
    def seq(self) -> int:
        return self.state.seq

    @property
    def now_ms(self) -> int:
        return self.state.now_ms

    @property
    def open_orders_per_account_max(self) -> int:
        return self.state.open_orders_per_account_max

    @property
    def next_order_id(self) -> int:
        return self.state.next_order_id

    @property
    def next_trade_id(self) -> int:
        return self.state.next_trade_id

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self.state.instruments

    @property
    def accounts(self) -> dict[str, Account]:
        return self.state.accounts

    @property
    def orders(self) -> dict[int, Order]:
        return self.state.orders

    @property
    def assets(self) -> dict[str, int]:
        return self.state.assets

    @property
    def api_keys(self) -> dict[str, ApiKey]:
        return self.state.api_keys

    @property
    def second_factors(self) -> dict[str, str]:
        return self.state.second_factors

    @property
    def signatures(self) -> dict[str, int]:
        return self.state.signatures

    @property
    def signature_expiries(self) -> list[tuple[int, str]]:
        return self.state.signature_expiries

    @property
    def totp_steps(self) -> dict[str, int]:
        return self.state.totp_steps

    @property
    def member_rates(self) -> dict[str, list[int]]:
        return self.state.member_rates

    @property
    def client_ids(self) -> dict[tuple[str, str], tuple[Command, Event]]:
        return self.state.client_ids

    @property
    def expiries(self) -> list[tuple[int, int]]:
        return self.state.expiries

    @property
    def paused(self) -> dict[str, int]:
        return self.state.paused

    # ------------------------------------------------------------- reads

    def balance(self, account: str, asset: str) -> tuple[int, int]:
        """(available, held) of one asset; (0, 0) for an unknown account or asset."""
        acct = self.state.accounts.get(account)
        bal = acct.balances.get(asset) if acct is not None else None
        return (bal.available, bal.held) if bal is not None else (0, 0)

    def depth(self, symbol: str, levels: int = 0) -> tuple[list[tuple[int, int, int]], ...]:
        """L2: (bids, asks) as (price, visible qty, order count), best first."""
        inst = self.state.instruments[symbol]
        sides = []
        for book in (inst.bids, inst.asks):
            sides.append([(lvl.price, lvl.qty, len(lvl.orders)) for lvl in _best(book, levels)])
        return sides[0], sides[1]

    def depth_l3(
        self, symbol: str, levels: int = 0
    ) -> tuple[list[tuple[int, list[tuple[int, int]]]], ...]:
        """L3: (bids, asks) as (price, [(order id, visible qty)] in time priority), best first."""
        inst = self.state.instruments[symbol]
        sides = []
        for book in (inst.bids, inst.asks):
            sides.append([(lvl.price, level_queue(lvl)) for lvl in _best(book, levels)])
        return sides[0], sides[1]

    def level_queue(self, symbol: str, side: int, price: int) -> list[tuple[int, int]]:
        """One level's orders in time priority; empty if the level is gone."""
        inst = self.state.instruments[symbol]
        level = inst.bids.get(-price) if side == BUY else inst.asks.get(price)
        return level_queue(level) if level is not None else []

    def best_bid_ask(self, symbol: str) -> tuple[int, int]:
        """(best bid, best ask) prices, 0 where a side is empty."""
        inst = self.state.instruments[symbol]
        bid = inst.bids.peekitem(0)[1].price if inst.bids else 0
        ask = inst.asks.peekitem(0)[1].price if inst.asks else 0
        return bid, ask

    def state_hash(self) -> str:
        """SHA-256 over the canonical snapshot: equal on every replica at equal sequence."""
        return hashlib.sha256(self.snapshot()).hexdigest()

    def snapshot(self) -> bytes:
        """Canonical msgpack bytes of the whole state (see engine.snapshot)."""
        return encode_state(self.state)

    @classmethod
    def restore(cls, data: bytes, *, checked: bool = False) -> Exchange:
        """The exchange a snapshot describes; raises SnapshotError on bytes it cannot trust."""
        state = decode_state(data)
        try:
            # Building the parts reads the state (the fee account, sessions, bands): values
            # of the wrong type that decoding let through fail here.
            return cls(state=state, checked=checked)
        except MALFORMED_STATE_ERRORS as exc:
            raise SnapshotError(f"snapshot cannot be restored: {exc!r}") from exc


def _best(book: SortedDict, levels: int) -> Iterator[PriceLevel]:
    """The first `levels` levels of a side (all with 0), best first.

    Keys, then dict lookups: SortedDict.values() fetches every level through the
    collections.abc view, which made the published L2 views the largest cost of an
    entry of one order.
    """
    keys = iter(book) if not levels else itertools.islice(book, levels)
    return map(book.__getitem__, keys)


def level_queue(level: PriceLevel) -> list[tuple[int, int]]:
    return [(order_id, order.visible) for order_id, order in level.orders.items()]


def _ignore(_: Command) -> None:
    """A Tick only moves time; its work (expiries, pause ends) already ran in apply."""
