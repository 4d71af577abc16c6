"""The mutable records the engine owns: instruments with their books, accounts, orders.

All slotted, all integers for money: these objects sit on the hot path and
there are millions of them. Only the apply thread touches them.
"""

from __future__ import annotations

import collections
import operator

from sortedcontainers import SortedDict, SortedList

from engine.calendar import Calendar
from engine.codes import TradingCapacity

BPS_DENOMINATOR = 10_000


def buy_cost(qty: int, price: int, fee_bps: int) -> int:
    """What a buy of `qty` at `price` can cost at most: notional plus the fee on it.

    Fees are rounded down per fill, and floor(a) + floor(b) <= floor(a + b), so
    a hold of this size always covers every fill at this price or better.
    """
    notional = qty * price
    return notional + notional * fee_bps // BPS_DENOMINATOR


def price_band(reference: int, band_bps: int, tick: int) -> tuple[int, int]:
    """The lowest and highest price on the tick grid within `band_bps` of `reference`."""
    width = reference * band_bps // BPS_DENOMINATOR
    return max(-((width - reference) // tick) * tick, tick), (reference + width) // tick * tick


class ApiKey:
    """A key that signs an account's requests; `material` is opaque to the engine."""

    __slots__ = ("account", "key_id", "kind", "material", "scopes")

    def __init__(self, account: str, key_id: str, kind: int, material: str, scopes: int) -> None:
        self.account = account
        self.key_id = key_id
        self.kind = kind
        self.material = material
        self.scopes = scopes


class Balance:
    __slots__ = ("account", "asset", "available", "held", "dirty")

    def __init__(self, account: str, asset: str, available: int = 0, held: int = 0) -> None:
        self.account = account
        self.asset = asset
        self.available = available
        self.held = held
        self.dirty = False


# An account's compliance reference data and its message-rate control (a snapshot stores
# them in this order).
ACCOUNT_PROFILE_FIELDS = (
    "member",
    "owner",
    "lei",
    "capacity",
    "rate_limit",
    "rate_second",
    "rate_count",
)


class Account:
    __slots__ = ("account_id", "enabled", "balances", "orders", *ACCOUNT_PROFILE_FIELDS)

    def __init__(self, account_id: str, enabled: bool = True) -> None:
        self.account_id = account_id
        self.enabled = enabled
        # Compliance reference data (SetAccountProfile); an account with none set is its
        # own beneficial owner, of no member, dealing on own account.
        self.member = ""
        self.owner = account_id
        self.lei = ""
        self.capacity = int(TradingCapacity.DEAL)
        # The message-rate control (SetRateLimit): at most rate_limit order messages in one
        # second of log time (0: none); rate_count of them so far in second rate_second.
        self.rate_limit = 0
        self.rate_second = 0
        self.rate_count = 0
        self.balances: dict[str, Balance] = {}
        # Open orders (resting and untriggered stops) in acceptance order.
        self.orders: dict[int, Order] = {}

    def balance(self, asset: str) -> Balance:
        bal = self.balances.get(asset)
        if bal is None:
            bal = self.balances[asset] = Balance(self.account_id, asset)
        return bal


class Order:
    """An open order. `visible` is what the book shows; `leaves - visible` is an iceberg's reserve.

    `price` is the limit used for matching and holds: for market and stop orders
    it is the protection price derived from the price band.
    """

    __slots__ = (
        "order_id",
        "account",
        "owner",
        "symbol",
        "side",
        "order_type",
        "tif",
        "price",
        "qty",
        "leaves",
        "visible",
        "display_qty",
        "stop_price",
        "armed",
        "post_only",
        "stp",
        "expire_at_ms",
        "held",
        "maker_fee_bps",
        "taker_fee_bps",
        "hold_fee_bps",
        "client_order_id",
    )

    def __init__(
        self,
        order_id: int,
        owner: Account,
        symbol: str,
        side: int,
        order_type: int,
        tif: int,
        price: int,
        qty: int,
        display_qty: int,
        stop_price: int,
        post_only: bool,
        stp: int,
        expire_at_ms: int,
        maker_fee_bps: int,
        taker_fee_bps: int,
        client_order_id: str,
    ) -> None:
        self.order_id = order_id
        self.account = owner.account_id
        self.owner = owner
        self.symbol = symbol
        self.side = side
        self.order_type = order_type
        self.tif = tif
        self.price = price
        self.qty = qty
        self.leaves = qty
        self.visible = qty
        self.display_qty = display_qty
        self.stop_price = stop_price
        self.armed = stop_price > 0
        self.post_only = post_only
        self.stp = stp
        self.expire_at_ms = expire_at_ms
        self.held = 0
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        # A buy holds for the dearer of the two fees: it may end up maker or taker.
        self.hold_fee_bps = maker_fee_bps if maker_fee_bps > taker_fee_bps else taker_fee_bps
        self.client_order_id = client_order_id


class PriceLevel:
    """Orders at one price in time priority (dict insertion order), with their visible total."""

    __slots__ = ("side", "price", "orders", "qty", "dirty")

    def __init__(self, side: int, price: int) -> None:
        self.side = side
        self.price = price
        self.orders: dict[int, Order] = {}
        self.qty = 0
        self.dirty = False


INSTRUMENT_SPEC = (
    "symbol",
    "base",
    "quote",
    "tick_size",
    "lot_size",
    "min_qty",
    "max_qty",
    "max_notional",
    "price_band_bps",
    "maker_fee_bps",
    "taker_fee_bps",
    "reference_price",
    "halt_pause_ms",
)
# The spec fields of anything that names them: an Instrument, an AddInstrument command.
instrument_spec = operator.attrgetter(*INSTRUMENT_SPEC)


class Instrument:
    """Static limits and fees, trading status, and the two sides of the book.

    Book sides are keyed so that the best level is always first: asks by price,
    bids by minus price. A taker of limit L matches while key <= L (buy) or
    key <= -L (sell). Untriggered stops wait in `buy_stops` (trigger when last
    >= stop) keyed (stop, id) and `sell_stops` (last <= stop) keyed (-stop, id).
    """

    __slots__ = (
        *INSTRUMENT_SPEC,
        "status",
        "phase",
        "resume_at_ms",
        "last_price",
        "band_lo",
        "band_hi",
        "bids",
        "asks",
        "buy_stops",
        "sell_stops",
    )

    def __init__(
        self,
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
        status: int,
    ) -> None:
        self.symbol = symbol
        self.base = base
        self.quote = quote
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.min_qty = min_qty
        self.max_qty = max_qty
        self.max_notional = max_notional
        self.price_band_bps = price_band_bps
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        self.halt_pause_ms = halt_pause_ms
        self.status = status
        # engine.codes.TradingPhase: continuous unless a calendar or a volatility pause says
        # otherwise.
        self.phase = 0
        self.resume_at_ms = 0
        self.last_price = 0
        self.band_lo = 0
        self.band_hi = 0
        self.reference_price = 0
        self.set_reference(reference_price)
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.buy_stops: SortedList = SortedList()
        self.sell_stops: SortedList = SortedList()

    def set_reference(self, price: int) -> None:
        """Moves the price band: [ref - band, ref + band] rounded inwards to whole ticks."""
        self.reference_price = price
        if not price:
            self.band_lo = self.band_hi = 0
            return
        self.band_lo, self.band_hi = self.band_around(price)

    def spec(self) -> tuple:
        """Its static fields in INSTRUMENT_SPEC order: the order of InstrumentChanged's
        fields after seq and time, and of an instrument's row in a snapshot."""
        return instrument_spec(self)

    def band_around(self, reference: int) -> tuple[int, int]:
        """The band a given reference price would give, without moving the current one."""
        return price_band(reference, self.price_band_bps, self.tick_size)

    def in_band(self, price: int) -> bool:
        return not self.reference_price or self.band_lo <= price <= self.band_hi


# A session clock's fields besides its calendar (a snapshot stores them in this order).
SESSION_CLOCK_FIELDS = (
    "phase",
    "due_ms",
    "start_ms",
    "close_ms",
    "local_date",
    "close_price",
    "closed_start_ms",
)


class SessionClock:
    """An instrument's calendar and where it stands: the scheduled phase (the instrument's
    own may be a volatility auction instead), when the phase next changes, the current
    session, and the last official close (the next session's reference)."""

    __slots__ = ("calendar", *SESSION_CLOCK_FIELDS)

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self.phase = 0
        self.due_ms = 0
        self.start_ms = 0
        self.close_ms = 0
        self.local_date = ""
        self.close_price = 0
        self.closed_start_ms = 0


# Limit up-limit down parameters in SetLimitUpLimitDown's order, and the live fields after
# them (a snapshot stores both in this order, then the window's trades).
LULD_PARAMETERS = ("band_bps", "window_ms", "limit_state_ms", "pause_ms", "open_ms", "close_ms")
LULD_FIELDS = (*LULD_PARAMETERS, "price_sum", "limit_side", "limit_until_ms")


class LimitUpLimitDown:
    """An instrument's LULD parameters, the trades of the window (time, price) oldest first
    with the sum of their prices, and its limit state (limit_side -1: none)."""

    __slots__ = (*LULD_FIELDS, "trades")

    def __init__(
        self, band_bps: int, window_ms: int, limit_state_ms: int, pause_ms: int,
        open_ms: int, close_ms: int,
    ) -> None:  # fmt: skip
        self.band_bps = band_bps
        self.window_ms = window_ms
        self.limit_state_ms = limit_state_ms
        self.pause_ms = pause_ms
        self.open_ms = open_ms
        self.close_ms = close_ms
        self.price_sum = 0
        self.limit_side = -1
        self.limit_until_ms = 0
        self.trades: collections.deque[tuple[int, int]] = collections.deque()
