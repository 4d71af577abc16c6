"""The books: instruments, open orders, matching, self-trade prevention, stops, expiries.

Matching is price-time priority at the makers' prices. Money moves only through
the ledger; what the books change is orders, levels and the instruments' trading
state. Touched levels are reported once per command, as they end (`flush`).
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Callable

from sortedcontainers import SortedDict, SortedList

from engine.auction import NO_CROSS, Uncross, uncross
from engine.codes import (
    CALL_PHASES,
    CancelReason,
    OrderType,
    RejectCode,
    SelfTradePrevention,
    Side,
    StatusReason,
    TimeInForce,
    TradingPhase,
    TradingStatus,
)
from engine.commands import (
    AddInstrument,
    AmendOrder,
    CancelOrder,
    MassCancel,
    PlaceOrder,
    SetTradingStatus,
    UpdateInstrument,
)
from engine.events import (
    Accepted,
    Amended,
    AuctionIndicated,
    Cancelled,
    Expired,
    InstrumentChanged,
    LevelChanged,
    PhaseChanged,
    Replenished,
    StatusChanged,
    Trade,
    Triggered,
)
from engine.exchange_state import ExchangeState
from engine.ledger import Ledger
from engine.part import Emit, Part
from engine.retries import Retries
from engine.risk import Risk
from engine.state import (
    BPS_DENOMINATOR,
    INSTRUMENT_SPEC,
    Account,
    Instrument,
    Order,
    PriceLevel,
    instrument_spec,
)

FEE_BPS_MAX = 1_000
BUY = Side.BUY.value
STOP = OrderType.STOP.value
MARKET = OrderType.MARKET.value
IOC = TimeInForce.IOC.value
FOK = TimeInForce.FOK.value
AT_OPEN = TimeInForce.AT_OPEN.value
AT_CLOSE = TimeInForce.AT_CLOSE.value
OPEN = TradingStatus.OPEN.value
CONTINUOUS = TradingPhase.CONTINUOUS.value
VOLATILITY_AUCTION = TradingPhase.VOLATILITY_AUCTION.value
# What each auction ends besides market orders: the orders entered only for it.
ONLY_FOR = {
    TradingPhase.OPENING_AUCTION.value: AT_OPEN,
    TradingPhase.CLOSING_AUCTION.value: AT_CLOSE,
    VOLATILITY_AUCTION: -1,
}
STP_NEWEST = SelfTradePrevention.CANCEL_NEWEST.value
STP_OLDEST = SelfTradePrevention.CANCEL_OLDEST.value
STP_BOTH = SelfTradePrevention.CANCEL_BOTH.value
# Every static field but the instrument's identity (symbol, base, quote).
_UPDATABLE = INSTRUMENT_SPEC[3:]


class Books(Part):
    def __init__(
        self, state: ExchangeState, emit: Emit, ledger: Ledger, risk: Risk, retries: Retries
    ) -> None:
        super().__init__(state, emit)
        self.ledger = ledger
        self.risk = risk
        self.retries = retries
        # Levels changed by the command being applied, in the order touched.
        self.touched: list[tuple[str, PriceLevel]] = []
        self._triggering = False
        # Instruments in a call phase: their indicative uncross is published after changes.
        self.calling: dict[str, Instrument] = {
            symbol: inst for symbol, inst in state.instruments.items() if inst.phase in CALL_PHASES
        }

    def flush(self) -> None:
        """One LevelChanged per touched level (a level emptied and re-created in one
        command is reported once, as it ends)."""
        levels = self.touched
        if len(levels) > 1:
            levels = _last_per_price(levels)
        emit = self.emit
        for symbol, level in levels:
            level.dirty = False
            emit(LevelChanged, symbol, level.side, level.price, level.qty, len(level.orders))
        self.touched = []
        if self.calling:
            for symbol in sorted({symbol for symbol, _ in levels if symbol in self.calling}):
                self._indicate(self.calling[symbol])

    def touch_level(self, symbol: str, level: PriceLevel) -> None:
        if not level.dirty:
            level.dirty = True
            self.touched.append((symbol, level))

    # ------------------------------------------------------------- timers

    def run_expiries(self) -> None:
        """Orders that expire at or before log time."""
        state = self.state
        now = state.now_ms
        expiries = state.expiries
        while expiries and expiries[0][0] <= now:
            expire_at, order_id = heapq.heappop(expiries)
            order = state.orders.get(order_id)
            if order is not None and order.expire_at_ms == expire_at:
                self.emit(
                    Expired,
                    order_id,
                    order.account,
                    order.symbol,
                    order.side,
                    order.price,
                    order.leaves,
                )
                self._remove_open(order, state.instruments[order.symbol])

    # ------------------------------------------------------------- instruments

    def add_instrument(self, cmd: AddInstrument) -> None:
        name = "AddInstrument"
        instruments = self.state.instruments
        if cmd.symbol in instruments:
            self.reject("", cmd.symbol, name, RejectCode.ALREADY_EXISTS, "symbol exists")
            return
        spec = instrument_spec(cmd)
        problem = _instrument_problem(*spec)
        if problem:
            self.reject("", cmd.symbol, name, RejectCode.INVALID_INSTRUMENT, problem)
            return
        inst = Instrument(*spec, int(cmd.status))  # type: ignore[call-arg]
        instruments[cmd.symbol] = inst
        self.emit(InstrumentChanged, *inst.spec(), cmd.by)
        if inst.status != OPEN:
            self._status_event(inst, StatusReason.ADMIN, cmd.by)

    def update_instrument(self, cmd: UpdateInstrument) -> None:
        inst = self.state.instruments.get(cmd.symbol)
        name = "UpdateInstrument"
        if inst is None:
            self.reject("", cmd.symbol, name, RejectCode.UNKNOWN_SYMBOL, "unknown symbol")
            return
        values = {
            field: (getattr(cmd, field) if getattr(cmd, field) != -1 else getattr(inst, field))
            for field in _UPDATABLE
        }
        book_in_use = inst.bids or inst.asks or inst.buy_stops or inst.sell_stops
        if book_in_use and (
            values["tick_size"] != inst.tick_size or values["lot_size"] != inst.lot_size
        ):
            self.reject(
                "",
                cmd.symbol,
                name,
                RejectCode.INVALID_INSTRUMENT,
                "tick and lot size change only with an empty book",
            )
            return
        problem = _instrument_problem(cmd.symbol, inst.base, inst.quote, **values)
        if problem:
            self.reject("", cmd.symbol, name, RejectCode.INVALID_INSTRUMENT, problem)
            return
        reference = values.pop("reference_price")
        for field, value in values.items():
            setattr(inst, field, value)
        inst.set_reference(reference)
        self.emit(InstrumentChanged, *inst.spec(), cmd.by)

    def _status_event(self, inst: Instrument, reason: str, by: str = "") -> None:
        self.emit(StatusChanged, inst.symbol, inst.status, reason, inst.resume_at_ms, by)

    def set_trading_status(self, cmd: SetTradingStatus) -> None:
        inst = self.state.instruments.get(cmd.symbol)
        if inst is None:
            self.reject(
                "", cmd.symbol, "SetTradingStatus", RejectCode.UNKNOWN_SYMBOL, "unknown symbol"
            )
            return
        inst.status = int(cmd.status)
        self._status_event(inst, StatusReason.ADMIN, cmd.by)

    # ------------------------------------------------------------- orders

    def place(self, cmd: PlaceOrder) -> None:
        cid = cmd.client_order_id
        if cid and self.retries.answered_before((cmd.account, cid), cmd, "PlaceOrder"):
            return
        checked = self.risk.check_place(cmd)
        if checked is None:
            return
        order, inst, bal, hold = checked
        state = self.state
        owner = order.owner
        self.ledger.hold(order, bal, hold)
        order_id = order.order_id
        state.next_order_id = order_id + 1
        state.orders[order_id] = order
        owner.orders[order_id] = order
        accepted = self.emit(
            Accepted,
            order_id,
            cmd.account,
            cid,
            cmd.symbol,
            order.side,
            order.order_type,
            order.tif,
            order.price,
            order.qty,
            order.stop_price,
            order.display_qty,
            order.post_only,
            order.expire_at_ms,
            hold,
            cmd.capacity or owner.capacity,
        )
        if cid:
            state.client_ids[(cmd.account, cid)] = (cmd, accepted)
        if order.expire_at_ms:
            heapq.heappush(state.expiries, (order.expire_at_ms, order_id))
        if order.armed:
            if order.side == BUY:
                inst.buy_stops.add((order.stop_price, order_id))
            else:
                inst.sell_stops.add((-order.stop_price, order_id))
            return
        if inst.phase == CONTINUOUS:
            self._execute(order, inst)
        else:
            self._rest(order, inst)  # a call phase: it waits for the uncross

    def _fok_fillable(self, taker: Order, inst: Instrument) -> bool:
        """Whether matching would fill the whole quantity, simulated without changing state.

        Follows what _execute would do: the band moves to each fill's price (a
        level outside it would trip the breaker), an iceberg's next slice joins
        the back of its level, and a self-trade stops the taker unless its STP
        mode cancels the resting order.
        """
        need = taker.leaves
        limit_key = taker.price if taker.side == BUY else -taker.price
        owner = taker.owner
        cancel_oldest = taker.stp == STP_OLDEST
        book = inst.asks if taker.side == BUY else inst.bids
        reference = inst.reference_price
        # Under limit up-limit down the band stays put for the whole command.
        fixed = inst.symbol in self.state.bands
        for key, level in book.items():
            if key > limit_key:
                return False
            if reference:
                if fixed:
                    band_lo, band_hi = inst.band_lo, inst.band_hi
                else:
                    band_lo, band_hi = inst.band_around(reference)
                if not band_lo <= level.price <= band_hi:
                    return False
            queue = collections.deque(
                (maker, maker.visible, maker.leaves - maker.visible)
                for maker in level.orders.values()
            )
            while queue:
                maker, visible, hidden = queue.popleft()
                if maker.owner is owner:
                    if cancel_oldest:
                        continue
                    return False
                take = need if need < visible else visible
                need -= take
                reference = level.price
                if need <= 0:
                    return True
                if hidden:
                    shown = maker.display_qty if maker.display_qty < hidden else hidden
                    queue.append((maker, shown, hidden - shown))
        return False

    # ------------------------------------------------------------- matching

    def _execute(self, taker: Order, inst: Instrument) -> None:
        """Matches a taker at the makers' prices, then rests or cancels what is left."""
        if taker.tif == FOK and not self._fok_fillable(taker, inst):
            self._cancel_order(taker, inst, taker.leaves, CancelReason.FOK)
            return
        side = taker.side
        if side == BUY:
            book = inst.asks
            limit_key = taker.price
        else:
            book = inst.bids
            limit_key = -taker.price
        owner = taker.owner
        traded = False
        stopped = ""
        while taker.leaves and book:
            key, level = book.peekitem(0)
            if key > limit_key:
                break
            price = level.price
            if inst.reference_price and not inst.band_lo <= price <= inst.band_hi:
                if inst.symbol in self.state.bands:
                    # Limit up-limit down: not executed outside the band (engine.bands
                    # decides the limit state from the book).
                    stopped = CancelReason.PRICE_BAND
                else:
                    self._trip_breaker(inst)
                    stopped = CancelReason.CIRCUIT_BREAKER
                break
            orders = level.orders
            while taker.leaves and orders:
                maker = next(iter(orders.values()))
                if maker.owner is owner:
                    stopped = self._prevent_self_trade(taker, maker, inst, level)
                    if stopped:
                        break
                    continue
                self._fill(inst, level, maker, taker, price)
                traded = True
            if not orders:
                # A self-trade cancel may already have removed the emptied level.
                book.pop(key, None)
            if stopped:
                break
        if taker.leaves:
            if stopped:
                self._cancel_order(taker, inst, taker.leaves, stopped)
            elif taker.tif == IOC or taker.tif == FOK:
                self._cancel_order(taker, inst, taker.leaves, CancelReason.IOC)
            else:
                self._rest(taker, inst)
        elif self.state.orders.get(taker.order_id) is taker:
            self._forget(taker)
        if traded and not self._triggering:
            self.trigger_stops(inst)

    def _fill(
        self, inst: Instrument, level: PriceLevel, maker: Order, taker: Order, price: int
    ) -> None:
        qty = taker.leaves if taker.leaves < maker.visible else maker.visible
        notional = price * qty
        maker_fee = notional * maker.maker_fee_bps // BPS_DENOMINATOR
        taker_fee = notional * taker.taker_fee_bps // BPS_DENOMINATOR
        maker.leaves -= qty
        maker.visible -= qty
        taker.leaves -= qty
        level.qty -= qty
        if taker.side == BUY:
            self.ledger.settle(inst, taker, maker, qty, price, taker_fee, maker_fee)
        else:
            self.ledger.settle(inst, maker, taker, qty, price, maker_fee, taker_fee)
        self._trade(inst, price, qty, maker, maker_fee, taker, taker_fee, 0)
        self._traded_at(inst, price)
        if not level.dirty:
            level.dirty = True
            self.touched.append((inst.symbol, level))
        if not maker.visible:
            if maker.leaves:
                self._replenish(maker, level, inst)
            else:
                del level.orders[maker.order_id]
                self._forget(maker)

    def _trade(
        self, inst: Instrument, price: int, qty: int, maker: Order, maker_fee: int,
        taker: Order, taker_fee: int, auction: int,
    ) -> None:  # fmt: skip
        """The Trade event of a fill already settled, numbered with the next trade id."""
        state = self.state
        self.emit(
            Trade,
            state.next_trade_id,
            inst.symbol,
            price,
            qty,
            taker.side,
            maker.order_id,
            maker.account,
            maker_fee,
            maker.leaves,
            taker.order_id,
            taker.account,
            taker_fee,
            taker.leaves,
            auction,
        )
        state.next_trade_id += 1

    def _replenish(self, order: Order, level: PriceLevel, inst: Instrument) -> None:
        """Shows the next iceberg slice at the back of the level (it loses time priority)."""
        del level.orders[order.order_id]
        visible = order.display_qty if order.display_qty < order.leaves else order.leaves
        order.visible = visible
        level.orders[order.order_id] = order
        level.qty += visible
        self.emit(
            Replenished,
            order.order_id,
            inst.symbol,
            order.side,
            order.price,
            visible,
            order.leaves - visible,
        )

    def _prevent_self_trade(
        self, taker: Order, maker: Order, inst: Instrument, level: PriceLevel
    ) -> str:
        """Applies the taker's STP mode; returns a cancel reason when the taker must stop."""
        mode = taker.stp
        reason = CancelReason.SELF_TRADE
        if mode == STP_NEWEST:
            return reason
        if mode == STP_OLDEST or mode == STP_BOTH:
            self._cancel_resting(maker, inst, maker.leaves, reason)
            return reason if mode == STP_BOTH else ""
        qty = taker.leaves if taker.leaves < maker.visible else maker.visible
        self._cancel_resting(maker, inst, qty, reason)
        self._cancel_order(taker, inst, qty, reason)
        return ""

    def _trip_breaker(self, inst: Instrument) -> None:
        self.pause(inst, inst.halt_pause_ms, StatusReason.CIRCUIT_BREAKER)

    def pause(self, inst: Instrument, pause_ms: int, reason: str) -> None:
        """A volatility interruption: the instrument stops matching for `pause_ms`, takes
        orders meanwhile, and reopens with an auction (engine.sessions ends the pause)."""
        inst.resume_at_ms = self.state.now_ms + pause_ms
        self.state.paused[inst.symbol] = inst.resume_at_ms
        self.set_phase(inst, VOLATILITY_AUCTION, reason, inst.resume_at_ms)

    def _traded_at(self, inst: Instrument, price: int) -> None:
        """The last price, and the reference: the trade itself, or under limit up-limit
        down one more trade in the window whose mean it is (engine.bands)."""
        inst.last_price = price
        luld = self.state.bands.get(inst.symbol)
        if luld is not None:
            luld.trades.append((self.state.now_ms, price))
            luld.price_sum += price
        elif price != inst.reference_price:
            inst.set_reference(price)

    def trigger_stops(self, inst: Instrument) -> None:
        """Fires stops in trigger-price then time order; each may trade and fire more."""
        if not (inst.buy_stops or inst.sell_stops):
            return
        self._triggering = True
        try:
            self._fire_stops(inst, inst.buy_stops, inst.sell_stops)
        finally:
            self._triggering = False

    def _fire_stops(self, inst: Instrument, buy_stops: SortedList, sell_stops: SortedList) -> None:
        """The loop of _trigger_stops: iterative, so a long cascade cannot exhaust the stack."""
        while inst.status == OPEN and inst.phase == CONTINUOUS:
            last = inst.last_price
            if buy_stops and buy_stops[0][0] <= last:
                _, order_id = buy_stops.pop(0)
            elif sell_stops and sell_stops[0][0] <= -last:
                _, order_id = sell_stops.pop(0)
            else:
                return
            order = self.state.orders[order_id]
            order.armed = False
            if order.order_type == STOP:
                order.tif = IOC
            self.emit(Triggered, order_id, order.account, inst.symbol, order.stop_price, last)
            self._execute(order, inst)

    def _rest(self, order: Order, inst: Instrument) -> None:
        if order.side == BUY:
            book = inst.bids
            key = -order.price
        else:
            book = inst.asks
            key = order.price
        level = book.get(key)
        if level is None:
            level = book[key] = PriceLevel(order.side, order.price)
        if order.display_qty:
            order.visible = order.display_qty if order.display_qty < order.leaves else order.leaves
        else:
            order.visible = order.leaves
        level.orders[order.order_id] = order
        level.qty += order.visible
        if not level.dirty:
            level.dirty = True
            self.touched.append((inst.symbol, level))

    def _forget(self, order: Order) -> None:
        """Drops a finished order from the open-order indexes."""
        del self.state.orders[order.order_id]
        del order.owner.orders[order.order_id]

    def _emit_cancelled(self, order: Order, qty: int, reason: str) -> None:
        """A Cancelled event for `qty` of `order`, after its leaves were cut by it."""
        self.emit(
            Cancelled,
            order.order_id,
            order.account,
            order.symbol,
            order.side,
            order.price,
            qty,
            order.leaves,
            reason,
        )

    def _cancel_open(self, order: Order, inst: Instrument, reason: str) -> None:
        """Cancels all of an open order (resting or waiting stop) and releases its hold."""
        qty = order.leaves
        self._remove_open(order, inst)
        self._emit_cancelled(order, qty, reason)

    def _cancel_order(self, order: Order, inst: Instrument, qty: int, reason: str) -> None:
        """Cancels `qty` of an order that is not resting in the book (a taker or a stop)."""
        self.ledger.release(order, inst, qty)
        self._emit_cancelled(order, qty, reason)
        if not order.leaves:
            self._forget(order)

    def _cancel_resting(self, order: Order, inst: Instrument, qty: int, reason: str) -> None:
        """Cancels `qty` of a resting order, taking it off its level when nothing is left."""
        book = inst.bids if order.side == BUY else inst.asks
        key = -order.price if order.side == BUY else order.price
        level = book[key]
        shown = qty if qty < order.visible else order.visible
        order.visible -= shown
        level.qty -= shown
        self.ledger.release(order, inst, qty)
        self.touch_level(inst.symbol, level)
        self._emit_cancelled(order, qty, reason)
        if not order.leaves:
            del level.orders[order.order_id]
            if not level.orders:
                del book[key]
            self._forget(order)
        elif not order.visible:
            self._replenish(order, level, inst)

    def _unrest(self, order: Order, inst: Instrument) -> None:
        """Takes a resting order, with what it shows, off its level (and an empty level off
        the book); its hold and its `visible` are the caller's to settle."""
        book = inst.bids if order.side == BUY else inst.asks
        key = -order.price if order.side == BUY else order.price
        level = book[key]
        del level.orders[order.order_id]
        level.qty -= order.visible
        if not level.orders:
            del book[key]
        self.touch_level(inst.symbol, level)

    def _remove_open(self, order: Order, inst: Instrument) -> None:
        """Takes an open order off the book or the stop list and releases its whole hold."""
        if order.armed:
            if order.side == BUY:
                inst.buy_stops.remove((order.stop_price, order.order_id))
            else:
                inst.sell_stops.remove((-order.stop_price, order.order_id))
        else:
            self._unrest(order, inst)
        order.visible = 0
        self.ledger.release(order, inst, order.leaves)
        self._forget(order)

    # ------------------------------------------------------------- cancel, amend

    def _find_own_order(
        self, account: str, order_id: int, client_order_id: str, command: str
    ) -> Order | None:
        own_known = False
        if not order_id and client_order_id:
            prior = self.state.client_ids.get((account, client_order_id))
            if prior is not None and isinstance(prior[1], Accepted):
                order_id = prior[1].order_id
                own_known = True
        order = self.state.orders.get(order_id)
        if order is None or order.account != account:
            # Only the owner learns that an order existed: by id, another account's
            # order and a finished one look the same.
            if order is None and own_known:
                code, msg = RejectCode.ORDER_NOT_OPEN, "order is no longer open"
            else:
                code, msg = RejectCode.UNKNOWN_ORDER, "no open order with this id for this account"
            self.reject(account, client_order_id, command, code, msg)
            return None
        return order

    def cancel(self, cmd: CancelOrder) -> None:
        order = self._find_own_order(cmd.account, cmd.order_id, cmd.client_order_id, "CancelOrder")
        if order is None:
            return
        self.risk.count_cancel(order.owner)
        self._cancel_open(order, self.state.instruments[order.symbol], CancelReason.USER)

    def cancel_all(self, account: Account, symbol: str, reason: str) -> None:
        for order in list(account.orders.values()):
            if symbol and order.symbol != symbol:
                continue
            self._cancel_open(order, self.state.instruments[order.symbol], reason)

    def mass_cancel(self, cmd: MassCancel) -> None:
        account = self.state.accounts.get(cmd.account)
        if account is None:
            self.reject(
                cmd.account, "", "MassCancel", RejectCode.UNKNOWN_ACCOUNT, "unknown account"
            )
        elif cmd.symbol and cmd.symbol not in self.state.instruments:
            self.reject(cmd.account, "", "MassCancel", RejectCode.UNKNOWN_SYMBOL, "unknown symbol")
        else:
            self.risk.count_cancel(account)
            self.cancel_all(account, cmd.symbol, CancelReason.MASS_CANCEL)

    def amend(self, cmd: AmendOrder) -> None:
        order = self._find_own_order(cmd.account, cmd.order_id, cmd.client_order_id, "AmendOrder")
        if order is None:
            return
        inst = self.state.instruments[order.symbol]
        if not self.risk.check_amend(cmd, order, inst):
            return
        new_qty = cmd.qty or order.qty
        new_price = cmd.price or order.price
        reduce_only = new_price == order.price and new_qty <= order.qty
        old_price = order.price
        old_qty = order.qty
        if reduce_only:
            self._amend_in_place(order, inst, new_qty)
        else:
            self._amend_requeue(order, inst, new_qty, new_price)
        self.emit(
            Amended,
            order.order_id,
            order.account,
            order.symbol,
            order.side,
            old_price,
            new_price,
            old_qty,
            new_qty,
            order.leaves,
            reduce_only,
        )
        if not reduce_only:
            if inst.phase == CONTINUOUS:
                self._execute(order, inst)
            else:
                self._rest(order, inst)

    def _amend_in_place(self, order: Order, inst: Instrument, new_qty: int) -> None:
        """Quantity down at the same price: the order keeps its place in the queue."""
        book = inst.bids if order.side == BUY else inst.asks
        level = book[-order.price if order.side == BUY else order.price]
        self.ledger.release(order, inst, order.qty - new_qty)
        if order.visible > order.leaves:
            level.qty -= order.visible - order.leaves
            order.visible = order.leaves
        self.touch_level(inst.symbol, level)

    def _amend_requeue(self, order: Order, inst: Instrument, new_qty: int, new_price: int) -> None:
        """Price change or quantity up: the order leaves the book and re-enters as new.

        The caller re-runs it through matching, so a repriced order that now
        crosses trades like any incoming order.
        """
        self._unrest(order, inst)
        order.leaves += new_qty - order.qty
        order.qty = new_qty
        order.price = new_price
        order.visible = 0
        self.ledger.rehold(order, inst)

    # ------------------------------------------------------------- call phases and auctions

    def set_phase(
        self, inst: Instrument, phase: int, reason: str, until_ms: int, by: str = ""
    ) -> None:
        inst.phase = phase
        self.emit(PhaseChanged, inst.symbol, phase, reason, until_ms, by)
        if phase in CALL_PHASES:
            self.calling[inst.symbol] = inst
            self._indicate(inst)
        else:
            self.calling.pop(inst.symbol, None)

    def indicative(self, inst: Instrument) -> Uncross:
        """Where the book would uncross now (engine.auction), from the visible quantity of
        the levels that cross: only they can trade at any candidate price. Market orders
        rest at the band's edge (their protection price) and count as market orders."""
        bids, asks = inst.bids, inst.asks
        if not bids or not asks:
            return NO_CROSS
        best_bid = bids.peekitem(0)[1].price
        best_ask = asks.peekitem(0)[1].price
        if best_bid < best_ask:
            return NO_CROSS
        tick = inst.tick_size
        hi, lo = inst.band_hi, inst.band_lo
        bid_levels, market_buy = _crossing(
            bids, lambda p: p >= best_ask, lambda p: bool(hi) and p >= hi, tick
        )
        ask_levels, market_sell = _crossing(
            asks, lambda p: p <= best_bid, lambda p: bool(lo) and p <= lo, tick
        )
        reference = (inst.last_price or inst.reference_price) // tick
        result = uncross(bid_levels, ask_levels, market_buy, market_sell, reference)
        return Uncross(result.price * tick, result.volume, result.surplus, result.imbalance_side)

    def _indicate(self, inst: Instrument) -> None:
        result = self.indicative(inst)
        self.emit(
            AuctionIndicated,
            inst.symbol,
            inst.phase,
            result.price,
            result.volume,
            result.surplus,
            result.imbalance_side,
        )

    def run_auction(self, inst: Instrument, auction: int) -> int:
        """Uncrosses the book at one price: bids and asks that reach it trade in price-time
        priority on each side, the older order of each pair the maker. Self-trades are
        prevented by the newer order's mode; when those cancellations leave a cross the
        price cannot clear, the rest uncrosses at the price the rules give the book as it
        then stands, so no call phase ends crossed. Then market orders and orders only for
        this auction leave. Returns the (last) auction price, 0 if nothing traded."""
        price = self.indicative(inst).price
        traded_at = 0  # the last price anything traded at
        unpublished = False  # trades at `price` not yet made the last price
        bids, asks = inst.bids, inst.asks
        while price and bids and asks:
            bid_key, bid_level = bids.peekitem(0)
            ask_key, ask_level = asks.peekitem(0)
            if bid_level.price < price or ask_level.price > price:
                if bid_level.price < ask_level.price:
                    break
                if unpublished:
                    self._traded_at(inst, price)
                    unpublished = False
                price = self.indicative(inst).price
                continue
            buy = next(iter(bid_level.orders.values()))
            sell = next(iter(ask_level.orders.values()))
            if buy.owner is sell.owner:
                self._auction_self_trade(buy, sell, inst)
            else:
                self._auction_fill(inst, bid_level, buy, ask_level, sell, price, auction)
                traded_at, unpublished = price, True
            if not bid_level.orders:
                bids.pop(bid_key, None)
            if not ask_level.orders:
                asks.pop(ask_key, None)
        if unpublished:
            self._traded_at(inst, price)
        only_for = ONLY_FOR[auction]
        symbol = inst.symbol
        for order in [o for o in self.state.orders.values() if o.symbol == symbol]:
            if not order.armed and (order.order_type == MARKET or order.tif == only_for):
                self._cancel_open(order, inst, CancelReason.AUCTION_OVER)
        return traded_at

    def _auction_fill(
        self, inst: Instrument, bid_level: PriceLevel, buy: Order, ask_level: PriceLevel,
        sell: Order, price: int, auction: int,
    ) -> None:  # fmt: skip
        qty = buy.visible if buy.visible < sell.visible else sell.visible
        maker, taker = (buy, sell) if buy.order_id < sell.order_id else (sell, buy)
        notional = price * qty
        maker_fee = notional * maker.maker_fee_bps // BPS_DENOMINATOR
        taker_fee = notional * taker.taker_fee_bps // BPS_DENOMINATOR
        for order, level in ((buy, bid_level), (sell, ask_level)):
            order.leaves -= qty
            order.visible -= qty
            level.qty -= qty
            self.touch_level(inst.symbol, level)
        buyer_fee, seller_fee = (maker_fee, taker_fee) if maker is buy else (taker_fee, maker_fee)
        self.ledger.settle(inst, buy, sell, qty, price, buyer_fee, seller_fee)
        self._trade(inst, price, qty, maker, maker_fee, taker, taker_fee, auction)
        for order, level in ((buy, bid_level), (sell, ask_level)):
            if not order.visible:
                if order.leaves:
                    self._replenish(order, level, inst)
                else:
                    del level.orders[order.order_id]
                    self._forget(order)

    def _auction_self_trade(self, buy: Order, sell: Order, inst: Instrument) -> None:
        """The newer order's STP mode decides, as a taker's does in continuous trading."""
        newer, older = (buy, sell) if buy.order_id > sell.order_id else (sell, buy)
        mode = newer.stp
        reason = CancelReason.SELF_TRADE
        if mode == STP_NEWEST:
            self._cancel_resting(newer, inst, newer.leaves, reason)
        elif mode == STP_OLDEST:
            self._cancel_resting(older, inst, older.leaves, reason)
        elif mode == STP_BOTH:
            self._cancel_resting(newer, inst, newer.leaves, reason)
            self._cancel_resting(older, inst, older.leaves, reason)
        else:
            qty = newer.visible if newer.visible < older.visible else older.visible
            self._cancel_resting(newer, inst, qty, reason)
            self._cancel_resting(older, inst, qty, reason)


def _crossing(
    book: SortedDict,
    crosses: Callable[[int], bool],
    at_edge: Callable[[int], bool],
    tick: int,
) -> tuple[list[tuple[int, int]], int]:
    """A side's levels that cross the other side, best first, as (price in ticks, limit
    quantity), and the quantity of its market orders (at the band's edge or beyond)."""
    levels = []
    market = 0
    for key in book:
        level = book[key]
        price = level.price
        if not crosses(price):
            break
        qty = level.qty
        if at_edge(price):
            at_market = sum(o.visible for o in level.orders.values() if o.order_type == MARKET)
            market += at_market
            qty -= at_market
        if qty:
            levels.append((price // tick, qty))
    return levels, market


def _last_per_price(
    levels: list[tuple[str, PriceLevel]],
) -> list[tuple[str, PriceLevel]]:
    """A level emptied and re-created in one command is reported once, as it ends."""
    latest: dict[tuple[str, int, int], tuple[str, PriceLevel]] = {}
    for symbol, level in levels:
        key = (symbol, level.side, level.price)
        previous = latest.get(key)
        if previous is not None:
            previous[1].dirty = False
        latest[key] = (symbol, level)
    return list(latest.values())


def _instrument_problem(
    symbol: str,
    base: str,
    quote: str,
    tick_size: int,
    lot_size: int,
    min_qty: int,
    max_qty: int,
    max_notional: int,
    price_band_bps: int,
    maker_fee_bps: int,
    taker_fee_bps: int,
    reference_price: int,
    halt_pause_ms: int,
) -> str:
    if not symbol or not base or not quote or base == quote:
        return "symbol, base and quote must be set, base different from quote"
    if tick_size <= 0 or lot_size <= 0:
        return "tick and lot size must be positive"
    if min_qty <= 0 or min_qty % lot_size or max_qty < min_qty:
        return "min quantity must be a positive lot multiple, max quantity at least min"
    if max_notional <= 0:
        return "max notional must be positive"
    if not 0 < price_band_bps < BPS_DENOMINATOR:
        return "price band must be between 1 and 9999 basis points"
    if not 0 <= maker_fee_bps <= FEE_BPS_MAX or not 0 <= taker_fee_bps <= FEE_BPS_MAX:
        return f"fees must be between 0 and {FEE_BPS_MAX} basis points"
    if reference_price < 0 or reference_price % tick_size:
        return "reference price must be a non-negative tick multiple"
    if halt_pause_ms < 0:
        return "halt pause cannot be negative"
    return ""
