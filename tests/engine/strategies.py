"""Hypothesis strategies for the engine property tests: whole command streams.

A stream opens with a set-up of fixed shape (four instruments with different
ticks, lots, fees and bands; six to ten accounts funded with every asset) and
goes on with random commands. Each command is drawn against a shadow engine
that applies it at once, so a cancel or an amend can name an order that is
really open, a crossing order can aim at the real best price and a withdrawal
can ask for just more than the account holds. The stream itself is plain data
(log time and command per step): tests replay it into engines of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import IntEnum
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from engine import (
    FEE_ACCOUNT,
    Exchange,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TradingStatus,
)
from engine.access import SIGNATURE_RETENTION_MS
from engine.commands import (
    AddInstrument,
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    SetCalendar,
    SetLimitUpLimitDown,
    SetTradingStatus,
    Signed,
    Tick,
    UpdateInstrument,
    Withdraw,
    command_from_wire,
    command_to_wire,
)
from engine.events import Accepted
from engine.state import Instrument

T = TypeVar("T")

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
STREAM_COMMANDS_MAX = 150
ACCOUNTS_MIN = 6
ACCOUNTS_MAX = 10
PRICE_SPREAD_TICKS_MAX = 6
# Now and then a price far from the mid: out of band, or a wide book for sweeps to cross.
PRICE_FAR_TICKS_MAX = 30
CROSS_THROUGH_TICKS_MAX = 12
COMMAND_STEP_MS_MAX = 1_500
# Log time starts shortly before a UTC midnight, so DAY orders do expire.
START_DAY = 20_000
# Signed writes draw their signature from a small pool, so replays happen.
SIGNATURES_POOL = 12
TOTP_STEPS_MAX = 6


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    symbol: str
    base: str
    quote: str
    tick_size: int
    lot_size: int
    min_qty: int
    max_qty: int
    max_notional: int
    price_band_bps: int
    reference_price: int
    # Where prices start when the instrument has neither a reference nor a trade.
    mid_price: int
    qty_lots_max: int


INSTRUMENTS = (
    # Narrow band (1 %) and a small max quantity: out-of-band rejections, breakers, qty_too_large.
    InstrumentSpec("ACME/USD", "ACME", "USD", 5, 10, 10, 300, 10**12, 100, 10_000, 10_000, 32),
    # No reference price: market orders are rejected until the first trade sets one.
    InstrumentSpec("BOLT/USD", "BOLT", "USD", 1, 1, 1, 1_000_000, 10**12, 500, 0, 200, 400),
    # Coarse tick, big lot and a max notional that large orders exceed.
    InstrumentSpec(
        "CRUX/EUR", "CRUX", "EUR", 10, 100, 100, 100_000, 5_000_000, 300, 5_000, 5_000, 12
    ),
    # Quoted in ACME, which is also traded as a base: one asset on both sides.
    InstrumentSpec("DUNE/ACME", "DUNE", "ACME", 1, 5, 10, 100_000, 10**12, 2_500, 20, 20, 40),
)
SYMBOLS = tuple(spec.symbol for spec in INSTRUMENTS)
SPEC_BY_SYMBOL = {spec.symbol: spec for spec in INSTRUMENTS}
# One "unit" of each asset: deposits are a multiple of it, ordinary transfers a fraction.
DEPOSIT_UNIT_BY_ASSET = {
    "USD": 1_000_000,
    "ACME": 500,
    "BOLT": 300,
    "CRUX": 2_000,
    "EUR": 2_000_000,
    "DUNE": 100,
}
ASSETS = tuple(DEPOSIT_UNIT_BY_ASSET)
FEE_BPS_CHOICES = (0, 1, 10, 25, 100, 1_000)
HALT_PAUSE_MS_CHOICES = (0, 1, 250, 3_000, 60_000)
WEALTH_CHOICES = (1, 3, 10, 30)
# The engine's default, or a limit low enough that some accounts reach it.
OPEN_ORDERS_PER_ACCOUNT_MAX_CHOICES = (1_000, 1_000, 6, 2)

BUY = Side.BUY
SELL = Side.SELL
SIDES = tuple(Side)
STP_MODES = tuple(SelfTradePrevention)
TRADING_STATUSES = tuple(TradingStatus)

# Command kinds and how often each is drawn. Shrinking moves towards the first kind.
_KIND_WEIGHTS = {
    "tick": 2,
    "limit": 10,
    "cross": 4,
    "market": 1,
    "post_only": 1,
    "iceberg": 2,
    "stop": 2,
    "cancel": 2,
    "amend": 2,
    "mass_cancel": 1,
    "kill_switch": 1,
    "transfer": 2,
    "status": 1,
    "retry": 2,
    "reuse_client_id": 1,
    "invalid": 2,
    "update_instrument": 1,
    "signed": 4,
    "calendar": 1,
    "luld": 1,
}
_KINDS = tuple(kind for kind, weight in _KIND_WEIGHTS.items() for _ in range(weight))


@dataclass(frozen=True, slots=True)
class Stream:
    """Commands with the log time each is applied at (non-decreasing), and the
    open-order limit of the engine they are meant for."""

    open_orders_per_account_max: int
    steps: tuple[tuple[int, Command], ...]

    def new_exchange(self) -> Exchange:
        return Exchange(open_orders_per_account_max=self.open_orders_per_account_max, checked=True)

    def __repr__(self) -> str:
        lines = [f"    ({ts_ms}, {format_command(command)})," for ts_ms, command in self.steps]
        return (
            f"Stream(open_orders_per_account_max={self.open_orders_per_account_max}, steps=(\n"
            + "\n".join(lines)
            + "\n))"
        )


def format_command(command: Command) -> str:
    """Python source for a command, with only the fields that differ from their defaults."""
    parts = []
    for spec in fields(command):
        value = getattr(command, spec.name)
        if (
            spec.default is not MISSING
            and value == spec.default
            and type(value) is type(spec.default)
        ):
            continue
        parts.append(f"{spec.name}={_format_value(value)}")
    return f"{type(command).__name__}({', '.join(parts)})"


def _format_value(value: object) -> str:
    if isinstance(value, IntEnum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


def stream_to_wire(stream: Stream) -> list[Any]:
    """The msgpack-ready form: `[open-order limit, [[ts_ms, command wire], ...]]`."""
    steps = [[ts_ms, command_to_wire(command)] for ts_ms, command in stream.steps]
    return [stream.open_orders_per_account_max, steps]


def stream_from_wire(wire: list[Any]) -> Stream:
    open_orders_max, steps = wire
    commands = tuple((ts_ms, command_from_wire(command)) for ts_ms, command in steps)
    return Stream(open_orders_max, commands)


@dataclass
class _Shadow:
    """The engine a stream is drawn against, and what the drawing has seen so far.

    Not hashable on purpose (a plain dataclass with eq): hypothesis then never
    caches a strategy built around it.
    """

    ex: Exchange
    accounts: list[str]
    ts_ms: int
    client_id_count: int = 0
    # Client order ids and request ids each account has used.
    client_ids_by_account: dict[str, list[str]] = field(default_factory=dict)
    # Commands that carry an id: the candidates for an identical retry.
    keyed_commands: list[Command] = field(default_factory=list)
    # (order id, account) of every order the engine accepted.
    accepted_orders: list[tuple[int, str]] = field(default_factory=list)

    def apply(self, command: Command, ts_ms: int) -> None:
        events = self.ex.apply(command, ts_ms)
        self.ts_ms = ts_ms
        if isinstance(command, Signed):
            command = command.command
        used_id = ""
        if isinstance(command, PlaceOrder):
            used_id = command.client_order_id
        elif isinstance(command, Deposit | Withdraw):
            used_id = command.request_id
        if used_id:
            used = self.client_ids_by_account.setdefault(command.account, [])
            if used_id not in used:
                used.append(used_id)
                self.keyed_commands.append(command)
        for event in events:
            if isinstance(event, Accepted):
                self.accepted_orders.append((event.order_id, event.account))


@st.composite
def streams(draw: DrawFn, commands_max: int = STREAM_COMMANDS_MAX) -> Stream:
    """A set-up followed by up to `commands_max` random commands."""
    start_ms = START_DAY * DAY_MS - draw(st.integers(60_000, 3 * HOUR_MS))
    open_orders_max = _pick(draw, OPEN_ORDERS_PER_ACCOUNT_MAX_CHOICES)
    shadow = _Shadow(Exchange(open_orders_max, checked=True), [], start_ms)
    steps: list[tuple[int, Command]] = []

    def setup(command: Command) -> None:
        shadow.apply(command, start_ms)
        steps.append((start_ms, command))

    for spec in INSTRUMENTS:
        setup(
            AddInstrument(
                spec.symbol,
                spec.base,
                spec.quote,
                tick_size=spec.tick_size,
                lot_size=spec.lot_size,
                min_qty=spec.min_qty,
                max_qty=spec.max_qty,
                max_notional=spec.max_notional,
                price_band_bps=spec.price_band_bps,
                maker_fee_bps=_pick(draw, FEE_BPS_CHOICES),
                taker_fee_bps=_pick(draw, FEE_BPS_CHOICES),
                reference_price=spec.reference_price,
                halt_pause_ms=_pick(draw, HALT_PAUSE_MS_CHOICES),
            )
        )
    accounts_count = draw(st.integers(ACCOUNTS_MIN, ACCOUNTS_MAX))
    shadow.accounts = [f"a{index}" for index in range(accounts_count)]
    for account in shadow.accounts:
        setup(CreateAccount(account))
    for account in shadow.accounts:
        wealth = _pick(draw, WEALTH_CHOICES)
        for asset in ASSETS:
            setup(Deposit(account, asset, DEPOSIT_UNIT_BY_ASSET[asset] * wealth))

    # Every element is drawn, applied to the shadow and appended in order, so
    # later elements see the state the earlier ones left.
    long_stream = draw(st.booleans())
    half = commands_max // 2
    commands_min = draw(st.integers(half, commands_max) if long_stream else st.integers(0, half))
    steps += draw(st.lists(_steps(shadow), min_size=commands_min, max_size=commands_max))
    return Stream(open_orders_max, tuple(steps))


@st.composite
def _steps(draw: DrawFn, shadow: _Shadow) -> tuple[int, Command]:
    kind = _pick(draw, _KINDS)
    ts_ms = shadow.ts_ms + _time_step_ms(draw, shadow, kind)
    shadow.ts_ms = ts_ms
    command = _BUILDERS[kind](draw, shadow)
    shadow.apply(command, ts_ms)
    return ts_ms, command


def _time_step_ms(draw: DrawFn, shadow: _Shadow, kind: str) -> int:
    if kind != "tick":
        return draw(st.integers(0, COMMAND_STEP_MS_MAX))
    mode = _pick(draw, ("short", "short", "short", "long", "midnight"))
    if mode == "short":
        return draw(st.integers(0, 10_000))
    if mode == "long":
        return draw(st.integers(0, 6 * HOUR_MS))
    to_midnight = DAY_MS - shadow.ts_ms % DAY_MS
    return max(0, to_midnight + draw(st.integers(-500, 500)))


# ---------------------------------------------------------------- building blocks


def _pick(draw: DrawFn, options: Sequence[T]) -> T:
    """One of the options, shrinking towards the first.

    Same choices as st.sampled_from, without building a strategy per draw
    (that cost dominated the run time: many options lists are built on the fly).
    """
    return options[draw(st.integers(0, len(options) - 1))]


def _account(draw: DrawFn, shadow: _Shadow) -> str:
    return _pick(draw, shadow.accounts)


def _trader(draw: DrawFn, shadow: _Shadow) -> str:
    """Who places an order: now and then the fee account, which holds only what fees paid it."""
    if draw(st.integers(0, 15)):
        return _account(draw, shadow)
    return FEE_ACCOUNT


def _instrument(draw: DrawFn, shadow: _Shadow) -> Instrument:
    return shadow.ex.instruments[_pick(draw, SYMBOLS)]


def _mid_price(inst: Instrument) -> int:
    tick = inst.tick_size
    price = inst.last_price or inst.reference_price or SPEC_BY_SYMBOL[inst.symbol].mid_price
    return max(price // tick * tick, tick)


def _price_near(draw: DrawFn, inst: Instrument) -> int:
    spread = PRICE_SPREAD_TICKS_MAX if draw(st.integers(0, 4)) else PRICE_FAR_TICKS_MAX
    offset = draw(st.integers(-spread, spread))
    return max(inst.tick_size, _mid_price(inst) + offset * inst.tick_size)


def _crossing_price(draw: DrawFn, inst: Instrument, side: Side) -> int:
    """At or through the best opposite price (the mid when that side is empty)."""
    tick = inst.tick_size
    through = draw(st.integers(0, CROSS_THROUGH_TICKS_MAX)) * tick
    if side == BUY:
        best = inst.asks.peekitem(0)[1].price if inst.asks else _mid_price(inst)
        return best + through
    best = inst.bids.peekitem(0)[1].price if inst.bids else _mid_price(inst)
    return max(tick, best - through)


def _near_or_crossing_price(draw: DrawFn, inst: Instrument, side: Side) -> int:
    if draw(st.booleans()):
        return _crossing_price(draw, inst, side)
    return _price_near(draw, inst)


def _qty(draw: DrawFn, inst: Instrument, lots_min: int = 1) -> int:
    lots_max = max(SPEC_BY_SYMBOL[inst.symbol].qty_lots_max, lots_min)
    return inst.lot_size * draw(st.integers(lots_min, lots_max))


def _client_id(draw: DrawFn, shadow: _Shadow, account: str) -> str:
    """No id, a fresh one, or (rarely) one the account already used for something else."""
    mode = _pick(draw, ("none", "none", *("fresh",) * 9, "reuse"))
    used = shadow.client_ids_by_account.get(account)
    if mode == "none":
        return ""
    if mode == "reuse" and used:
        return _pick(draw, used)
    shadow.client_id_count += 1
    return f"c{shadow.client_id_count}"


def _expire_time_ms(draw: DrawFn, shadow: _Shadow, tif: TimeInForce) -> int:
    if tif != TimeInForce.GTD:
        return 0
    # Mostly ahead of now; sometimes at or behind it (invalid_expiry).
    return shadow.ts_ms + draw(st.integers(-1_000, 60_000))


def _order(
    draw: DrawFn,
    shadow: _Shadow,
    inst: Instrument,
    side: Side,
    *,
    qty: int,
    price: int,
    tifs: tuple[TimeInForce, ...],
    order_type: OrderType = OrderType.LIMIT,
    stop_price: int = 0,
    display_qty: int = 0,
    post_only: bool = False,
) -> PlaceOrder:
    account = _trader(draw, shadow)
    tif = _pick(draw, tifs)
    return PlaceOrder(
        account,
        inst.symbol,
        side,
        qty,
        price=price,
        order_type=order_type,
        tif=tif,
        client_order_id=_client_id(draw, shadow, account),
        stop_price=stop_price,
        display_qty=display_qty,
        post_only=post_only,
        stp=_pick(draw, STP_MODES),
        expire_time_ms=_expire_time_ms(draw, shadow, tif),
    )


_RESTING_TIFS = (TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTD)
_ANY_TIFS = (
    TimeInForce.GTC,
    TimeInForce.GTC,
    TimeInForce.GTC,
    TimeInForce.GTC,
    TimeInForce.DAY,
    TimeInForce.GTD,
    TimeInForce.IOC,
    TimeInForce.FOK,
    TimeInForce.AT_OPEN,
    TimeInForce.AT_CLOSE,
)
# Trading calendars: zones with and without daylight saving, short days of a few sessions
# an hour so that streams pass through every phase.
CALENDAR_ZONES = ("UTC", "America/New_York", "Asia/Tokyo")
CALENDAR_DAY_S_CHOICES = (600, 1_200, 3_600)


# ---------------------------------------------------------------- command kinds


def _tick(draw: DrawFn, shadow: _Shadow) -> Command:
    return Tick()


def _limit(draw: DrawFn, shadow: _Shadow) -> Command:
    inst = _instrument(draw, shadow)
    side = _pick(draw, SIDES)
    qty = _qty(draw, inst)
    return _order(draw, shadow, inst, side, qty=qty, price=_price_near(draw, inst), tifs=_ANY_TIFS)


def _cross(draw: DrawFn, shadow: _Shadow) -> Command:
    inst = _instrument(draw, shadow)
    side = _pick(draw, SIDES)
    qty = _qty(draw, inst)
    price = _crossing_price(draw, inst, side)
    tifs = (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY)
    return _order(draw, shadow, inst, side, qty=qty, price=price, tifs=tifs)


def _market(draw: DrawFn, shadow: _Shadow) -> Command:
    inst = _instrument(draw, shadow)
    side = _pick(draw, SIDES)
    qty = _qty(draw, inst)
    tifs = (TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTC)
    return _order(
        draw, shadow, inst, side, qty=qty, price=0, tifs=tifs, order_type=OrderType.MARKET
    )


def _post_only(draw: DrawFn, shadow: _Shadow) -> Command:
    inst = _instrument(draw, shadow)
    side = _pick(draw, SIDES)
    qty = _qty(draw, inst)
    price = _near_or_crossing_price(draw, inst, side)
    return _order(
        draw, shadow, inst, side, qty=qty, price=price, tifs=_RESTING_TIFS, post_only=True
    )


def _iceberg(draw: DrawFn, shadow: _Shadow) -> Command:
    inst = _instrument(draw, shadow)
    side = _pick(draw, SIDES)
    qty = _qty(draw, inst, lots_min=2)
    display_qty = inst.lot_size * draw(st.integers(1, qty // inst.lot_size - 1))
    price = _near_or_crossing_price(draw, inst, side)
    return _order(
        draw,
        shadow,
        inst,
        side,
        qty=qty,
        price=price,
        tifs=_RESTING_TIFS,
        display_qty=display_qty,
    )


def _stop(draw: DrawFn, shadow: _Shadow) -> Command:
    inst = _instrument(draw, shadow)
    tick = inst.tick_size
    side = _pick(draw, SIDES)
    qty = _qty(draw, inst)
    last = inst.last_price or _mid_price(inst)
    # Mostly beyond the last trade (waits); at or behind it it would trigger at once.
    away = draw(st.integers(-2, 8)) * tick
    stop_price = max(tick, last + away if side == BUY else last - away)
    stop_price = stop_price // tick * tick or tick
    if draw(st.booleans()):
        return _order(
            draw,
            shadow,
            inst,
            side,
            qty=qty,
            price=0,
            tifs=_ANY_TIFS,
            order_type=OrderType.STOP,
            stop_price=stop_price,
        )
    price = max(tick, stop_price + draw(st.integers(-3, 3)) * tick)
    return _order(
        draw,
        shadow,
        inst,
        side,
        qty=qty,
        price=price,
        tifs=_ANY_TIFS,
        order_type=OrderType.STOP_LIMIT,
        stop_price=stop_price,
    )


def _cancel(draw: DrawFn, shadow: _Shadow) -> Command:
    ex = shadow.ex
    mode = _pick(draw, ("open", "open", "open_by_client_id", "closed", "other", "bogus"))
    open_ids = sorted(ex.orders)
    if mode in ("open", "open_by_client_id", "other") and open_ids:
        order = ex.orders[_pick(draw, open_ids)]
        account = order.account
        if mode == "other":
            account = _account(draw, shadow)
        if mode == "open_by_client_id" and order.client_order_id:
            return CancelOrder(account, client_order_id=order.client_order_id)
        return CancelOrder(account, order_id=order.order_id)
    if mode == "closed" and shadow.accepted_orders:
        order_id, account = _pick(draw, shadow.accepted_orders)
        return CancelOrder(account, order_id=order_id)
    account = _account(draw, shadow)
    if draw(st.booleans()):
        return CancelOrder(account, client_order_id=_client_id(draw, shadow, account) or "nope")
    return CancelOrder(account, order_id=ex.next_order_id + draw(st.integers(0, 3)))


def _amend(draw: DrawFn, shadow: _Shadow) -> Command:
    ex = shadow.ex
    open_ids = sorted(ex.orders)
    if not open_ids:
        account = _account(draw, shadow)
        return AmendOrder(account, order_id=ex.next_order_id, qty=10)
    order = ex.orders[_pick(draw, open_ids)]
    inst = ex.instruments[order.symbol]
    lot = inst.lot_size
    tick = inst.tick_size
    executed = order.qty - order.leaves
    qty_mode = _pick(draw, ("keep", "down", "up", "executed", "off_lot"))
    qty = 0
    if qty_mode == "down" and order.qty - lot > executed:
        qty = draw(st.integers((executed + lot) // lot, (order.qty - lot) // lot)) * lot
    elif qty_mode == "up":
        qty = order.qty + lot * draw(st.integers(1, 10))
    elif qty_mode == "executed" and executed:
        qty = executed
    elif qty_mode == "off_lot" and lot > 1:
        qty = order.qty + 1
    price_mode = _pick(draw, ("keep", "keep", "move", "cross"))
    price = 0
    if price_mode == "move":
        price = max(tick, order.price + draw(st.integers(-5, 5)) * tick)
    elif price_mode == "cross":
        price = _crossing_price(draw, inst, Side(order.side))
    if order.client_order_id and draw(st.booleans()):
        return AmendOrder(
            order.account, client_order_id=order.client_order_id, qty=qty, price=price
        )
    return AmendOrder(order.account, order_id=order.order_id, qty=qty, price=price)


def _mass_cancel(draw: DrawFn, shadow: _Shadow) -> Command:
    account = _account(draw, shadow)
    symbol = _pick(draw, ("", *SYMBOLS))
    return MassCancel(account, symbol)


def _kill_switch(draw: DrawFn, shadow: _Shadow) -> Command:
    """Mostly a disabled account back on (so few stay off long), else any account on or off."""
    accounts = shadow.ex.accounts
    disabled = [account for account in shadow.accounts if not accounts[account].enabled]
    if disabled and draw(st.integers(0, 3)):
        return SetAccountEnabled(_pick(draw, disabled), True)
    return SetAccountEnabled(_account(draw, shadow), draw(st.booleans()))


def _transfer(draw: DrawFn, shadow: _Shadow) -> Command:
    withdraw = draw(st.booleans())
    account = _pick(draw, (*shadow.accounts, FEE_ACCOUNT))
    asset = _pick(draw, ASSETS)
    available, _ = shadow.ex.balance(account, asset)
    mode = _pick(draw, ("some", "some", "all", "too_much", "zero"))
    if mode == "some":
        amount = draw(st.integers(1, DEPOSIT_UNIT_BY_ASSET[asset]))
    elif mode == "all":
        amount = available or 1
    elif mode == "too_much":
        amount = available + draw(st.integers(1, 1_000))
    else:
        amount = _pick(draw, (0, -1))
    request_id = _client_id(draw, shadow, account)
    if withdraw:
        return Withdraw(account, asset, amount, request_id)
    return Deposit(account, asset, amount, request_id)


def _calendar(draw: DrawFn, shadow: _Shadow) -> Command:
    """A short trading day for a symbol (its phases cut at random points), or none."""
    symbol = _pick(draw, SYMBOLS)
    if not draw(st.integers(0, 3)):
        return SetCalendar(symbol, "")
    day_s = _pick(draw, CALENDAR_DAY_S_CHOICES)
    cuts = sorted(draw(st.lists(st.integers(0, day_s), min_size=5, max_size=5, unique=True)))
    return SetCalendar(
        symbol,
        _pick(draw, CALENDAR_ZONES),
        *cuts,
        day_s=day_s,
        trading_days=draw(st.integers(1, 0b1111111)),
    )


def _luld(draw: DrawFn, shadow: _Shadow) -> Command:
    """Limit up-limit down bands for a symbol (short windows and pauses, so that streams
    reach limit states and their pauses), or off."""
    symbol = _pick(draw, SYMBOLS)
    if not draw(st.integers(0, 3)):
        return SetLimitUpLimitDown(symbol, 0)
    return SetLimitUpLimitDown(
        symbol,
        _pick(draw, (500, 1_000, 2_000, 50)),
        window_ms=_pick(draw, (300_000, 10_000, 1)),
        limit_state_ms=_pick(draw, (15_000, 1, 1_000)),
        pause_ms=_pick(draw, (300_000, 1, 5_000)),
        open_ms=_pick(draw, (900_000, 0)),
        close_ms=_pick(draw, (1_500_000, 0)),
    )


def _status(draw: DrawFn, shadow: _Shadow) -> Command:
    """Mostly a halted or closed symbol reopened (so few stay shut long), else any status."""
    instruments = shadow.ex.instruments
    shut = [symbol for symbol in SYMBOLS if instruments[symbol].status != TradingStatus.OPEN]
    if shut and draw(st.integers(0, 3)):
        return SetTradingStatus(_pick(draw, shut), TradingStatus.OPEN)
    symbol = _pick(draw, SYMBOLS)
    return SetTradingStatus(symbol, _pick(draw, TRADING_STATUSES))


def _retry(draw: DrawFn, shadow: _Shadow) -> Command:
    """The identical command again, as a client retrying after a timeout would send it."""
    if not shadow.keyed_commands:
        return Tick()
    return _pick(draw, shadow.keyed_commands)


def _reuse_client_id(draw: DrawFn, shadow: _Shadow) -> Command:
    """A different order under a client id the account already used."""
    command = _limit(draw, shadow)
    assert isinstance(command, PlaceOrder)
    used = shadow.client_ids_by_account.get(command.account)
    if not used:
        return command
    return PlaceOrder(
        command.account,
        command.symbol,
        command.side,
        command.qty,
        price=command.price,
        tif=command.tif,
        client_order_id=_pick(draw, used),
        stp=command.stp,
        expire_time_ms=command.expire_time_ms,
    )


def _invalid(draw: DrawFn, shadow: _Shadow) -> Command:
    """A command the engine must reject (or, for a few, treat as a no-op)."""
    inst = _instrument(draw, shadow)
    account = _account(draw, shadow)
    tick = inst.tick_size
    lot = inst.lot_size
    side = _pick(draw, SIDES)
    price = _price_near(draw, inst)
    case = draw(st.integers(0, 19))
    if case == 0:
        return PlaceOrder(account, "NOPE/USD", side, lot, price)
    if case == 1:
        return PlaceOrder("ghost", inst.symbol, side, lot, price, client_order_id="g1")
    if case == 2:
        return PlaceOrder(account, inst.symbol, side, lot + 1 if lot > 1 else 0, price)
    if case == 3:
        return PlaceOrder(account, inst.symbol, side, lot, price + 1 if tick > 1 else -tick)
    if case == 4:
        far = inst.band_hi + tick if inst.reference_price else 10**9
        return PlaceOrder(account, inst.symbol, side, lot, far)
    if case == 5:
        return PlaceOrder(account, inst.symbol, side, lot, price, order_type=OrderType.MARKET)
    if case == 6:
        return PlaceOrder(account, inst.symbol, side, 2 * lot, price, display_qty=2 * lot)
    if case == 7:
        return PlaceOrder(
            account,
            inst.symbol,
            side,
            lot,
            price,
            order_type=OrderType.STOP_LIMIT,
            stop_price=price,
            post_only=True,
        )
    if case == 8:
        tif = _pick(draw, (TimeInForce.GTD, TimeInForce.DAY))
        return PlaceOrder(
            account, inst.symbol, side, lot, price, tif=tif, expire_time_ms=shadow.ts_ms
        )
    if case == 9:
        return PlaceOrder(account, inst.symbol, side, inst.max_qty + lot, price)
    if case == 10:
        return PlaceOrder(account, inst.symbol, side, -lot, price, client_order_id="neg")
    if case == 11:
        return PlaceOrder(
            account, inst.symbol, side, lot, price, tif=TimeInForce.IOC, post_only=True
        )
    if case == 12:
        order_id = _pick(draw, sorted(shadow.ex.orders) or [1])
        return AmendOrder(account, order_id=order_id, qty=-lot, price=-tick)
    if case == 13:
        asset = _pick(draw, ("XYZ", ""))
        return Withdraw(account, asset, 1)
    if case == 14:
        return CreateAccount(_pick(draw, (account, FEE_ACCOUNT, "")))
    if case == 15:
        spec = SPEC_BY_SYMBOL[inst.symbol]
        if draw(st.booleans()):
            return AddInstrument(spec.symbol, spec.base, spec.quote)
        return AddInstrument("SAME/SAME", "SAME", "SAME")
    if case == 16:
        return UpdateInstrument(inst.symbol, price_band_bps=0, maker_fee_bps=-2)
    if case == 17:
        return Deposit("ghost", _pick(draw, ASSETS), 1)
    if case == 18:
        # Past the engine's balance limit (2**62).
        return Deposit(account, _pick(draw, ASSETS), 2**62 - 1)
    return MassCancel("ghost")


def _update_instrument(draw: DrawFn, shadow: _Shadow) -> Command:
    """New fees, band, reference or pause; rarely a new tick (only allowed with an empty book)."""
    inst = _instrument(draw, shadow)
    tick = inst.tick_size
    return UpdateInstrument(
        inst.symbol,
        tick_size=_pick(draw, (-1, -1, -1, tick, 2 * tick)),
        maker_fee_bps=_pick(draw, (-1, -1, *FEE_BPS_CHOICES)),
        taker_fee_bps=_pick(draw, (-1, -1, *FEE_BPS_CHOICES)),
        price_band_bps=_pick(draw, (-1, -1, 50, 300, 2_000)),
        reference_price=_pick(draw, (-1, -1, 0, _mid_price(inst))),
        halt_pause_ms=_pick(draw, (-1, -1, *HALT_PAUSE_MS_CHOICES)),
    )


def _signed(draw: DrawFn, shadow: _Shadow) -> Command:
    """A client's write as a gateway hands it on: a signature from a small pool (so some are
    replays, of the same write or onto another), a timestamp near log time or past the
    retention either way, and now and then a TOTP step, sometimes one already spent."""
    kind = _pick(draw, ("limit", "cross", "cancel", "amend", "mass_cancel", "transfer", "retry"))
    inner = _BUILDERS[kind](draw, shadow)
    if isinstance(inner, Signed | Tick):
        return inner
    signature = f"{draw(st.integers(0, SIGNATURES_POOL)):032x}"
    offset_ms = _pick(
        draw, (0, 0, 0, -5_000, 60_000, SIGNATURE_RETENTION_MS + 1, -SIGNATURE_RETENTION_MS - 1)
    )
    totp_step = _pick(draw, (0, 0, *range(1, TOTP_STEPS_MAX + 1)))
    return Signed(signature, shadow.ts_ms + offset_ms, totp_step, inner)


_BUILDERS = {
    "tick": _tick,
    "limit": _limit,
    "cross": _cross,
    "market": _market,
    "post_only": _post_only,
    "iceberg": _iceberg,
    "stop": _stop,
    "cancel": _cancel,
    "amend": _amend,
    "mass_cancel": _mass_cancel,
    "kill_switch": _kill_switch,
    "transfer": _transfer,
    "status": _status,
    "retry": _retry,
    "reuse_client_id": _reuse_client_id,
    "invalid": _invalid,
    "update_instrument": _update_instrument,
    "signed": _signed,
    "calendar": _calendar,
    "luld": _luld,
}
