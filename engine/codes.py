"""The small vocabularies that cross the wire: sides, order kinds, reason codes.

Integer enums keep the hot path on plain int comparisons; the string enums are
the stable codes that the API maps to HTTP statuses and that clients match on.
"""

from enum import IntEnum, StrEnum


class Side(IntEnum):
    BUY = 0
    SELL = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1
    STOP = 2
    STOP_LIMIT = 3


class TimeInForce(IntEnum):
    GTC = 0
    IOC = 1
    FOK = 2
    DAY = 3
    GTD = 4
    # Only for the auction being called: entered in the opening call (pre-open) or the
    # closing call (pre-close), what the uncross leaves of it is cancelled.
    AT_OPEN = 5
    AT_CLOSE = 6


class SelfTradePrevention(IntEnum):
    """What happens when an order would trade against its own account."""

    CANCEL_NEWEST = 0
    CANCEL_OLDEST = 1
    CANCEL_BOTH = 2
    DECREMENT = 3


class TradingCapacity(IntEnum):
    """MiFID II trading capacity (the RTS 24 order record): dealing on own account, matched
    principal, any other capacity (agency). On an order, ACCOUNT_DEFAULT takes the
    account's."""

    ACCOUNT_DEFAULT = 0
    DEAL = 1
    MTCH = 2
    AOTC = 3


class TradingStatus(IntEnum):
    OPEN = 0
    HALTED = 1
    CLOSED = 2


class TradingPhase(IntEnum):
    """Where an instrument is in its trading day (its calendar), or in a volatility pause.

    Call phases (pre-open, pre-close, volatility auction) take orders without matching
    them and end in an uncross; the two auction phases are the uncross itself, passed
    through within one entry. An instrument without a calendar trades continuously.
    """

    CONTINUOUS = 0
    CLOSED = 1
    PRE_OPEN = 2
    OPENING_AUCTION = 3
    PRE_CLOSE = 4
    CLOSING_AUCTION = 5
    POST_CLOSE = 6
    VOLATILITY_AUCTION = 7


CALL_PHASES = frozenset(
    {TradingPhase.PRE_OPEN, TradingPhase.PRE_CLOSE, TradingPhase.VOLATILITY_AUCTION}
)


class KeyKind(IntEnum):
    """How requests made with an API key are signed."""

    ED25519 = 0
    HMAC = 1


class Scope(IntEnum):
    """What an API key may do; a key holds a bit mask of these."""

    READ = 1
    TRADE = 2
    WITHDRAW = 4
    ADMIN = 8
    # Managing the account's own access: creating and revoking keys, the second factor.
    SECURITY = 16


SCOPES_ALL = Scope.READ | Scope.TRADE | Scope.WITHDRAW | Scope.ADMIN | Scope.SECURITY


class RejectCode(StrEnum):
    """Why a command changed nothing. Stable: clients and the API match on these."""

    UNKNOWN_SYMBOL = "unknown_symbol"
    UNKNOWN_ACCOUNT = "unknown_account"
    UNKNOWN_ORDER = "unknown_order"
    UNKNOWN_ASSET = "unknown_asset"
    HALTED = "halted"
    MARKET_CLOSED = "market_closed"
    TICK_SIZE = "tick_size"
    LOT_SIZE = "lot_size"
    PRICE_OUT_OF_BAND = "price_out_of_band"
    QTY_TOO_SMALL = "qty_too_small"
    QTY_TOO_LARGE = "qty_too_large"
    NOTIONAL_TOO_LARGE = "notional_too_large"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INSUFFICIENT_SHARES = "insufficient_shares"
    ACCOUNT_DISABLED = "account_disabled"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    TOO_MANY_OPEN_ORDERS = "too_many_open_orders"
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    NO_REFERENCE_PRICE = "no_reference_price"
    INVALID_ORDER = "invalid_order"
    INVALID_EXPIRY = "invalid_expiry"
    INVALID_AMOUNT = "invalid_amount"
    ORDER_NOT_OPEN = "order_not_open"
    ALREADY_EXISTS = "already_exists"
    INVALID_INSTRUMENT = "invalid_instrument"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_ASSET = "invalid_asset"
    INVALID_KEY = "invalid_key"
    UNKNOWN_KEY = "unknown_key"
    TOO_MANY_KEYS = "too_many_keys"
    REPLAYED_REQUEST = "replayed_request"
    STALE_REQUEST = "stale_request"
    SECOND_FACTOR_USED = "second_factor_used"
    INVALID_PROFILE = "invalid_profile"
    RATE_LIMITED = "rate_limited"
    INVALID_CALENDAR = "invalid_calendar"
    WRONG_PHASE = "wrong_phase"


class CancelReason(StrEnum):
    """Why an order (or part of one) left the book without trading."""

    USER = "user"
    MASS_CANCEL = "mass_cancel"
    KILL_SWITCH = "kill_switch"
    IOC = "ioc"
    FOK = "fok"
    SELF_TRADE = "self_trade"
    CIRCUIT_BREAKER = "circuit_breaker"
    # What an auction left of a market order or an order only for that auction.
    AUCTION_OVER = "auction_over"
    # A taker stopped at a limit up-limit down band (the symbol enters a limit state).
    PRICE_BAND = "price_band"


class StatusReason(StrEnum):
    """Why an instrument's trading status changed."""

    ADMIN = "admin"
    CIRCUIT_BREAKER = "circuit_breaker"
    PAUSE_ENDED = "pause_ended"
    CALENDAR = "calendar"
    LIMIT_STATE = "limit_state"
