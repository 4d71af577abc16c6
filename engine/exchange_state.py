"""Everything the exchange remembers, in one object: what a snapshot encodes and decodes.

The parts that change it (ledger, risk, books, access) each own a share of its
fields; the dispatcher alone moves `seq` and `now_ms`. Keeping the state apart
from the code that changes it lets the snapshot read and build it without
importing the engine, and lets the parts share it without owning each other.
"""

from __future__ import annotations

from engine.commands import Command
from engine.events import Event
from engine.state import Account, ApiKey, Instrument, LimitUpLimitDown, Order, SessionClock

FEE_ACCOUNT = "fees"
OPEN_ORDERS_PER_ACCOUNT_MAX = 1_000


class ExchangeState:
    """`seq` is the sequence number of the last event emitted; `now_ms` is log time,
    never behind any command's time."""

    def __init__(self, open_orders_per_account_max: int = OPEN_ORDERS_PER_ACCOUNT_MAX) -> None:
        self.open_orders_per_account_max = open_orders_per_account_max
        self.seq = 0
        self.now_ms = 0
        self.next_order_id = 1
        self.next_trade_id = 1
        # Books: instruments with their books and stops, open orders, their expiries
        # (a heap of (time, order id)) and pauses (symbol -> when it reopens).
        self.instruments: dict[str, Instrument] = {}
        self.orders: dict[int, Order] = {}
        self.expiries: list[tuple[int, int]] = []
        self.paused: dict[str, int] = {}
        # Sessions: instruments with a trading calendar, and the earliest time one of them
        # changes phase (what apply compares log time with).
        self.sessions: dict[str, SessionClock] = {}
        self.next_phase_ms = 0
        # Instruments under limit up-limit down bands.
        self.bands: dict[str, LimitUpLimitDown] = {}
        # Ledger: the assets' decimals; balances live in their accounts.
        self.assets: dict[str, int] = {}
        # Access: accounts, keys, second factors, spent signatures and TOTP steps.
        self.accounts: dict[str, Account] = {FEE_ACCOUNT: Account(FEE_ACCOUNT)}
        self.api_keys: dict[str, ApiKey] = {}
        self.second_factors: dict[str, str] = {}
        # Digest of a signed write's signature -> the log time until which it is remembered;
        # a heap of (until, digest), for forgetting each at its own time (they are not
        # applied in the order they expire: a write signed ahead of log time lives longer).
        self.signatures: dict[str, int] = {}
        self.signature_expiries: list[tuple[int, str]] = []
        # Account -> the last TOTP time step a write of it spent.
        self.totp_steps: dict[str, int] = {}
        # Risk: member -> [message-rate limit, current second of log time, messages in it].
        self.member_rates: dict[str, list[int]] = {}
        # Retries: (account, client id) -> (the original command, its outcome event), in
        # the order the outcomes happened.
        self.client_ids: dict[tuple[str, str], tuple[Command, Event]] = {}
