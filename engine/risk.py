"""Pre-trade controls: every check an order or an amendment passes before it changes anything.

Checks run cheapest first and stop at the first refusal; a refusal is a Rejected
event with a stable code and amounts in the asset's decimals. Message-rate limits
(per account and per member firm) are counted here in log time, so every node
refuses the same message.
"""

from __future__ import annotations

from engine.codes import (
    CALL_PHASES,
    OrderType,
    RejectCode,
    Side,
    TimeInForce,
    TradingPhase,
    TradingStatus,
)
from engine.commands import AmendOrder, PlaceOrder, SetMemberRateLimit, SetRateLimit
from engine.decimals import decimal_text
from engine.events import MemberRateLimitChanged, RateLimitChanged
from engine.exchange_state import ExchangeState
from engine.part import Emit, Part
from engine.retries import DAY_MS, Retries
from engine.state import BPS_DENOMINATOR, Account, Balance, Instrument, Order, buy_cost

RATE_LIMIT_MAX = 1_000_000
BUY = Side.BUY.value
LIMIT = OrderType.LIMIT.value
MARKET = OrderType.MARKET.value
STOP = OrderType.STOP.value
STOP_LIMIT = OrderType.STOP_LIMIT.value
GTC = TimeInForce.GTC.value
IOC = TimeInForce.IOC.value
FOK = TimeInForce.FOK.value
DAY = TimeInForce.DAY.value
GTD = TimeInForce.GTD.value
AT_OPEN = TimeInForce.AT_OPEN.value
AT_CLOSE = TimeInForce.AT_CLOSE.value
OPEN = TradingStatus.OPEN.value
PRE_OPEN = TradingPhase.PRE_OPEN.value
PRE_CLOSE = TradingPhase.PRE_CLOSE.value
CONTINUOUS = TradingPhase.CONTINUOUS.value
HALTED = TradingStatus.HALTED.value


class Risk(Part):
    def __init__(self, state: ExchangeState, emit: Emit, retries: Retries) -> None:
        super().__init__(state, emit)
        self.retries = retries

    # ------------------------------------------------------------- orders

    def check_place(self, cmd: PlaceOrder) -> tuple[Order, Instrument, Balance, int] | None:
        """Every pre-trade check of a new order, cheapest first.

        Returns the order to accept (numbered with the next order id, which the books
        take when they accept it) with the balance it holds from and the amount, or
        None after emitting the rejection.
        """
        state = self.state
        account = state.accounts.get(cmd.account)
        code = ""
        msg = ""
        inst = state.instruments.get(cmd.symbol)
        # Plain ints: the time in force may become another below (a market GTC is IOC).
        order_type: int = cmd.order_type
        tif: int = cmd.tif
        price = cmd.price
        qty = cmd.qty
        if account is None:
            code, msg = RejectCode.UNKNOWN_ACCOUNT, "unknown account"
        elif not account.enabled:
            code, msg = RejectCode.ACCOUNT_DISABLED, "account is disabled"
        elif (account.rate_limit or state.member_rates) and (refusal := self.count(account)):
            code, msg = RejectCode.RATE_LIMITED, refusal
        elif inst is None:
            code, msg = RejectCode.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}"
        elif inst.status != OPEN:
            if inst.status == HALTED:
                code, msg = RejectCode.HALTED, f"{cmd.symbol} is halted"
            else:
                code, msg = RejectCode.MARKET_CLOSED, f"{cmd.symbol} is closed"
        elif (inst.phase or tif > GTD) and (
            wrong_phase := _phase_refusal(inst.phase, tif, order_type)
        ):
            code, msg = wrong_phase
        elif qty <= 0 or qty % inst.lot_size:
            code, msg = (
                RejectCode.LOT_SIZE,
                f"quantity must be a positive multiple of {self.qty_text(inst, inst.lot_size)}",
            )
        elif qty < inst.min_qty:
            code, msg = (
                RejectCode.QTY_TOO_SMALL,
                f"quantity below minimum {self.qty_text(inst, inst.min_qty)}",
            )
        elif qty > inst.max_qty:
            code, msg = (
                RejectCode.QTY_TOO_LARGE,
                f"quantity above maximum {self.qty_text(inst, inst.max_qty)}",
            )
        elif len(account.orders) >= state.open_orders_per_account_max:
            code, msg = (
                RejectCode.TOO_MANY_OPEN_ORDERS,
                f"at most {state.open_orders_per_account_max} open orders",
            )
        else:
            code, msg, price = self._check_order_shape(cmd, inst)
        if code:
            self._refuse(cmd, code, msg)
            return None
        assert account is not None and inst is not None
        if order_type == MARKET and tif == GTC:
            tif = IOC
        side = cmd.side
        expire_at = 0
        if tif == DAY:
            clock = state.sessions.get(cmd.symbol)
            if clock is not None and clock.close_ms > state.now_ms:
                expire_at = clock.close_ms  # the session's close, after its closing auction
            else:
                expire_at = (state.now_ms // DAY_MS + 1) * DAY_MS
        elif tif == GTD:
            expire_at = cmd.expire_time_ms
        order = Order(
            state.next_order_id,
            account,
            cmd.symbol,
            side,
            order_type,
            tif,
            price,
            qty,
            cmd.display_qty,
            cmd.stop_price,
            cmd.post_only,
            cmd.stp,
            expire_at,
            inst.maker_fee_bps,
            inst.taker_fee_bps,
            cmd.client_order_id,
        )
        if cmd.display_qty:
            order.visible = cmd.display_qty
        if side == BUY:
            bal = account.balances.get(inst.quote)
            hold = buy_cost(qty, price, order.hold_fee_bps)
            if bal is None or bal.available < hold:
                code = RejectCode.INSUFFICIENT_FUNDS
        else:
            bal = account.balances.get(inst.base)
            hold = qty
            if bal is None or bal.available < hold:
                code = RejectCode.INSUFFICIENT_SHARES
        if not code and cmd.post_only and _would_take(inst, side, price):
            code, msg = RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity"
        if code:
            self._refuse(cmd, code, msg or "not enough available to cover the order")
            return None
        assert bal is not None
        return order, inst, bal, hold

    def _refuse(self, cmd: PlaceOrder, code: str, msg: str) -> None:
        event = self.reject(cmd.account, cmd.client_order_id, "PlaceOrder", code, msg)
        self.retries.remember(cmd.account, cmd.client_order_id, cmd, event)

    def _check_order_shape(self, cmd: PlaceOrder, inst: Instrument) -> tuple[str, str, int]:
        """Type, time in force, price and notional checks; returns (code, message, limit)."""
        order_type = cmd.order_type
        tif = cmd.tif
        price = cmd.price
        tick = inst.tick_size
        if (
            order_type == LIMIT
            and tif != GTD
            and not (cmd.stop_price or cmd.display_qty or cmd.post_only or cmd.expire_time_ms)
            and price > 0
            and not price % tick
            and (not inst.reference_price or inst.band_lo <= price <= inst.band_hi)
            and price * cmd.qty <= inst.max_notional
        ):
            return "", "", price  # the plain limit order: every check below would pass
        if order_type == LIMIT or order_type == STOP_LIMIT:
            if price <= 0 or price % tick:
                return (
                    RejectCode.TICK_SIZE,
                    f"price must be a positive multiple of {self.price_text(inst, tick)}",
                    0,
                )
            if order_type == LIMIT and not inst.in_band(price):
                return (
                    RejectCode.PRICE_OUT_OF_BAND,
                    f"price outside [{self.price_text(inst, inst.band_lo)},"
                    f" {self.price_text(inst, inst.band_hi)}]",
                    0,
                )
        elif price:
            return RejectCode.INVALID_ORDER, "market and stop orders take no price", 0
        if order_type == STOP or order_type == STOP_LIMIT:
            stop = cmd.stop_price
            if stop <= 0 or stop % tick:
                return (
                    RejectCode.TICK_SIZE,
                    f"stop price must be a positive multiple of {self.price_text(inst, tick)}",
                    0,
                )
            if cmd.post_only or cmd.display_qty:
                return RejectCode.INVALID_ORDER, "stop orders cannot be post-only or iceberg", 0
            if tif == AT_OPEN or tif == AT_CLOSE:
                return RejectCode.INVALID_ORDER, "stop orders cannot be for an auction", 0
            last = inst.last_price
            if last and (last >= stop if cmd.side == BUY else last <= stop):
                return RejectCode.INVALID_ORDER, "stop price would trigger immediately", 0
            if order_type == STOP:
                if tif in (IOC, FOK):
                    return RejectCode.INVALID_ORDER, "a stop order waits: use GTC, DAY or GTD", 0
                width = stop * inst.price_band_bps // BPS_DENOMINATOR
                if cmd.side == BUY:
                    price = (stop + width) // tick * tick
                else:
                    price = max(-((width - stop) // tick) * tick, tick)
        elif cmd.stop_price:
            return RejectCode.INVALID_ORDER, "only stop orders take a stop price", 0
        if order_type == MARKET:
            if tif not in (GTC, IOC, FOK, AT_OPEN, AT_CLOSE):
                return RejectCode.INVALID_ORDER, "market orders are IOC, FOK or for an auction", 0
            if cmd.post_only or cmd.display_qty:
                return RejectCode.INVALID_ORDER, "market orders cannot be post-only or iceberg", 0
            if not inst.reference_price:
                return (
                    RejectCode.NO_REFERENCE_PRICE,
                    "no reference price to bound a market order",
                    0,
                )
            price = inst.band_hi if cmd.side == BUY else inst.band_lo
        if cmd.post_only and tif in (IOC, FOK):
            return RejectCode.INVALID_ORDER, "post-only orders cannot be IOC or FOK", 0
        display = cmd.display_qty
        if display and (tif in (IOC, FOK) or not 0 < display < cmd.qty or display % inst.lot_size):
            return (
                RejectCode.INVALID_ORDER,
                "iceberg display must be a lot multiple below the quantity, resting tif",
                0,
            )
        if tif == GTD:
            if cmd.expire_time_ms <= self.state.now_ms:
                return RejectCode.INVALID_EXPIRY, "expire time must be in the future", 0
        elif cmd.expire_time_ms:
            return RejectCode.INVALID_EXPIRY, "only GTD orders take an expire time", 0
        if price * cmd.qty > inst.max_notional:
            return (
                RejectCode.NOTIONAL_TOO_LARGE,
                f"notional above {self.notional_text(inst, inst.max_notional)}",
                0,
            )
        return "", "", price

    def check_amend(self, cmd: AmendOrder, order: Order, inst: Instrument) -> bool:
        """Whether an amendment of `order` to (cmd.qty or its qty, cmd.price or its price)
        may go ahead; emits the refusal if not."""
        new_qty = cmd.qty or order.qty
        new_price = cmd.price or order.price
        executed = order.qty - order.leaves
        reduce_only = new_price == order.price and new_qty <= order.qty
        code = msg = ""
        if (order.owner.rate_limit or self.state.member_rates) and (
            refusal := self.count(order.owner)
        ):
            code, msg = RejectCode.RATE_LIMITED, refusal
        elif order.armed or order.order_type == STOP:
            code, msg = RejectCode.INVALID_ORDER, "only resting limit orders can be amended"
        elif cmd.qty < 0 or cmd.price < 0:
            code, msg = RejectCode.INVALID_ORDER, "quantity and price cannot be negative"
        elif (inst.status != OPEN or _closed(inst.phase)) and not reduce_only:
            code, msg = RejectCode.HALTED, f"{inst.symbol} only takes reductions now"
        elif new_qty % inst.lot_size:
            code, msg = (
                RejectCode.LOT_SIZE,
                f"quantity must be a multiple of {self.qty_text(inst, inst.lot_size)}",
            )
        elif new_qty <= executed:
            code, msg = (
                RejectCode.QTY_TOO_SMALL,
                f"quantity must exceed executed {self.qty_text(inst, executed)}",
            )
        elif new_qty > inst.max_qty:
            code, msg = (
                RejectCode.QTY_TOO_LARGE,
                f"quantity above maximum {self.qty_text(inst, inst.max_qty)}",
            )
        elif new_price % inst.tick_size:
            code, msg = (
                RejectCode.TICK_SIZE,
                f"price must be a multiple of {self.price_text(inst, inst.tick_size)}",
            )
        elif new_price != order.price and not inst.in_band(new_price):
            code, msg = RejectCode.PRICE_OUT_OF_BAND, "price outside the band"
        elif new_price * new_qty > inst.max_notional:
            code, msg = (
                RejectCode.NOTIONAL_TOO_LARGE,
                f"notional above {self.notional_text(inst, inst.max_notional)}",
            )
        elif order.display_qty and order.display_qty >= new_qty:
            code, msg = RejectCode.INVALID_ORDER, "quantity must stay above the iceberg display"
        new_leaves = order.leaves + new_qty - order.qty
        if not code:
            if order.side == BUY:
                bal = order.owner.balances[inst.quote]
                extra = buy_cost(new_leaves, new_price, order.hold_fee_bps) - order.held
                if extra > bal.available:
                    code, msg = RejectCode.INSUFFICIENT_FUNDS, "not enough to cover the amendment"
            else:
                bal = order.owner.balances[inst.base]
                if new_leaves - order.held > bal.available:
                    code, msg = RejectCode.INSUFFICIENT_SHARES, "not enough to cover the amendment"
        repriced = order.post_only and new_price != order.price
        if not code and repriced and _would_take(inst, order.side, new_price):
            code, msg = RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity"
        if code:
            self.reject(cmd.account, cmd.client_order_id, "AmendOrder", code, msg)
            return False
        return True

    # ------------------------------------------------------------- message rates

    def count(self, account: Account, refusable: bool = True) -> str:
        """Counts one order message of `account` against its own limit and its member's for
        this second of log time; why it is refused ("" if it is not, or cannot be: a cancel
        counts but is never refused). A refused message is not counted."""
        second = self.state.now_ms // 1000
        member = self.state.member_rates.get(account.member) if account.member else None
        if account.rate_limit and account.rate_second != second:
            account.rate_second, account.rate_count = second, 0
        if member is not None and member[1] != second:
            member[1], member[2] = second, 0
        if refusable:
            if account.rate_limit and account.rate_count >= account.rate_limit:
                return f"more than {account.rate_limit} order messages in one second"
            if member is not None and member[2] >= member[0]:
                return (
                    f"more than {member[0]} order messages of member {account.member} in one second"
                )
        if account.rate_limit:
            account.rate_count += 1
        if member is not None:
            member[2] += 1
        return ""

    def count_cancel(self, account: Account) -> None:
        """A cancel counts against the limits but is never refused: it lowers risk."""
        if account.rate_limit or self.state.member_rates:
            self.count(account, refusable=False)

    def set_member_rate_limit(self, cmd: SetMemberRateLimit) -> None:
        if not cmd.member or not 0 <= cmd.messages_per_s <= RATE_LIMIT_MAX:
            self.reject(
                "",
                "",
                "SetMemberRateLimit",
                RejectCode.INVALID_AMOUNT,
                f"a member and a limit of 0 (none) to {RATE_LIMIT_MAX} messages a second",
            )
            return
        if cmd.messages_per_s:
            self.state.member_rates[cmd.member] = [cmd.messages_per_s, 0, 0]
        else:
            self.state.member_rates.pop(cmd.member, None)
        self.emit(MemberRateLimitChanged, cmd.member, cmd.messages_per_s, cmd.by)

    def set_rate_limit(self, cmd: SetRateLimit) -> None:
        account = self.state.accounts.get(cmd.account)
        if account is None:
            self.reject(cmd.account, "", "SetRateLimit", RejectCode.UNKNOWN_ACCOUNT, "unknown")
        elif not 0 <= cmd.messages_per_s <= RATE_LIMIT_MAX:
            self.reject(
                cmd.account,
                "",
                "SetRateLimit",
                RejectCode.INVALID_AMOUNT,
                f"a rate limit is 0 (none) to {RATE_LIMIT_MAX} messages a second",
            )
        else:
            account.rate_limit = cmd.messages_per_s
            self.emit(RateLimitChanged, cmd.account, cmd.messages_per_s, cmd.by)

    # A refusal's amounts as the API shows them: an asset no AddAsset declared has 0 decimals.
    def qty_text(self, inst: Instrument, units: int) -> str:
        return decimal_text(units, self.state.assets.get(inst.base, 0))

    def price_text(self, inst: Instrument, units: int) -> str:
        assets = self.state.assets
        return decimal_text(units, assets.get(inst.quote, 0) - assets.get(inst.base, 0))

    def notional_text(self, inst: Instrument, units: int) -> str:
        return f"{decimal_text(units, self.state.assets.get(inst.quote, 0))} {inst.quote}"


def _closed(phase: int) -> bool:
    return phase != CONTINUOUS and phase not in CALL_PHASES


def _phase_refusal(phase: int, tif: int, order_type: int) -> tuple[str, str] | None:
    """Why an order of this time in force cannot enter in this phase (None if it can):
    call phases take no IOC or FOK limit orders (nothing matches until the uncross; a
    market order waits for it), the auction-only orders enter only in their auction's
    call, and after the close nothing enters."""
    if _closed(phase):
        return RejectCode.MARKET_CLOSED, "the market is closed: orders enter from pre-open"
    if tif == AT_OPEN and phase != PRE_OPEN:
        return RejectCode.WRONG_PHASE, "at-the-open orders enter during pre-open only"
    if tif == AT_CLOSE and phase != PRE_CLOSE:
        return RejectCode.WRONG_PHASE, "at-the-close orders enter during pre-close only"
    if phase != CONTINUOUS and (tif == FOK or (tif == IOC and order_type != MARKET)):
        return RejectCode.WRONG_PHASE, "IOC and FOK orders need continuous trading"
    return None


def _would_take(inst: Instrument, side: int, price: int) -> bool:
    """Whether an order at `price` on `side` would trade with the book's best on arrival."""
    if side == BUY:
        return bool(inst.asks) and inst.asks.peekitem(0)[0] <= price
    return bool(inst.bids) and inst.bids.peekitem(0)[0] <= -price
