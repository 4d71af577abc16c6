"""The replicated state machine: `Exchange.apply(command, ts_ms) -> events`.

Deterministic by construction: no clock (time comes with the command and only
moves forward), no randomness, no iteration over sets, integers only. Every
command is validated before it changes anything; bad input becomes a
`Rejected` event, never an exception.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterator

from sortedcontainers import SortedDict, SortedList

from engine.codes import (
    SCOPES_ALL,
    CancelReason,
    KeyKind,
    OrderType,
    RejectCode,
    SelfTradePrevention,
    Side,
    StatusReason,
    TimeInForce,
    TradingCapacity,
    TradingStatus,
)
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
    SetMemberRateLimit,
    SetRateLimit,
    SetSecondFactor,
    SetTradingStatus,
    Signed,
    Tick,
    UpdateInstrument,
    Withdraw,
)
from engine.decimals import decimal_text
from engine.events import (
    Accepted,
    AccountChanged,
    AccountProfileChanged,
    Amended,
    ApiKeyChanged,
    AssetAdded,
    BalanceChanged,
    Cancelled,
    Event,
    Expired,
    InstrumentChanged,
    LevelChanged,
    MemberRateLimitChanged,
    RateLimitChanged,
    Rejected,
    Replenished,
    SecondFactorSet,
    StatusChanged,
    Trade,
    Transferred,
    Triggered,
)
from engine.snapshot import decode_exchange, encode_exchange
from engine.state import (
    BPS_DENOMINATOR,
    INSTRUMENT_SPEC,
    Account,
    ApiKey,
    Balance,
    Instrument,
    Order,
    PriceLevel,
    buy_cost,
    instrument_spec,
)

FEE_ACCOUNT = "fees"
OPEN_ORDERS_PER_ACCOUNT_MAX = 1_000
BALANCE_MAX = 2**62
FEE_BPS_MAX = 1_000
DAY_MS = 86_400_000
# How long a client order id (or request id) is remembered: a retry within this log time
# gets the original outcome; after it the id may be used again. Bounds the table's memory.
CLIENT_ID_RETENTION_MS = DAY_MS
ASSET_DECIMALS_MAX = 18
RATE_LIMIT_MAX = 1_000_000
API_KEYS_PER_ACCOUNT_MAX = 20
ED25519_PUBLIC_KEY_HEX_LEN = 64
# How long (log time) a signed write's signature is remembered after its timestamp, and how
# far from log time a timestamp may be when the write is applied: three times the largest
# receive window a gateway accepts (60 s), so a signature is forgotten only once no gateway
# can accept it again, with a minute to spare for the leader's clock running ahead of
# the clients'.
SIGNATURE_RETENTION_MS = 180_000

BUY = Side.BUY.value
SELL = Side.SELL.value
LIMIT = OrderType.LIMIT.value
MARKET = OrderType.MARKET.value
STOP = OrderType.STOP.value
STOP_LIMIT = OrderType.STOP_LIMIT.value
GTC = TimeInForce.GTC.value
IOC = TimeInForce.IOC.value
FOK = TimeInForce.FOK.value
DAY = TimeInForce.DAY.value
GTD = TimeInForce.GTD.value
OPEN = TradingStatus.OPEN.value
HALTED = TradingStatus.HALTED.value
STP_NEWEST = SelfTradePrevention.CANCEL_NEWEST.value
STP_OLDEST = SelfTradePrevention.CANCEL_OLDEST.value
STP_BOTH = SelfTradePrevention.CANCEL_BOTH.value
STP_DECREMENT = SelfTradePrevention.DECREMENT.value


class Exchange:
    """Books, balances, holds and the event sequence of one exchange.

    The apply thread is the only writer. `seq` is the sequence number of the
    last event emitted; `now_ms` is log time, never behind any command's time.
    """

    def __init__(self, open_orders_per_account_max: int = OPEN_ORDERS_PER_ACCOUNT_MAX) -> None:
        self.open_orders_per_account_max = open_orders_per_account_max
        self.seq = 0
        self.now_ms = 0
        self.next_order_id = 1
        self.next_trade_id = 1
        self.instruments: dict[str, Instrument] = {}
        self.accounts: dict[str, Account] = {FEE_ACCOUNT: Account(FEE_ACCOUNT)}
        self.orders: dict[int, Order] = {}
        # (account, client id) -> (the original command, its outcome event).
        self.client_ids: dict[tuple[str, str], tuple[Command, Event]] = {}
        self.expiries: list[tuple[int, int]] = []
        self.paused: dict[str, int] = {}
        self.assets: dict[str, int] = {}
        self.api_keys: dict[str, ApiKey] = {}
        self.second_factors: dict[str, str] = {}
        # Digest of a signed write's signature -> the log time until which it is remembered;
        # a heap of (until, digest), for forgetting each at its own time (they are not
        # applied in the order they expire: a write signed ahead of log time lives longer).
        self.signatures: dict[str, int] = {}
        self.signature_expiries: list[tuple[int, str]] = []
        # Account -> the last TOTP time step a write of it spent.
        self.totp_steps: dict[str, int] = {}
        # Member -> [message-rate limit, current second of log time, messages in it].
        self.member_rates: dict[str, list[int]] = {}
        self._out: list[Event] = []
        self._triggering = False
        self._dirty_balances: list[Balance] = []
        self._dirty_levels: list[tuple[str, PriceLevel]] = []
        self._handlers: dict[type, Callable[[Command], None]] = {
            PlaceOrder: self._place,
            CancelOrder: self._cancel,
            AmendOrder: self._amend,
            MassCancel: self._mass_cancel,
            Deposit: self._deposit,
            Withdraw: self._withdraw,
            CreateAccount: self._create_account,
            SetAccountEnabled: self._set_account_enabled,
            SetAccountProfile: self._set_account_profile,
            SetRateLimit: self._set_rate_limit,
            SetMemberRateLimit: self._set_member_rate_limit,
            AddInstrument: self._add_instrument,
            UpdateInstrument: self._update_instrument,
            SetTradingStatus: self._set_trading_status,
            Tick: _ignore,
            AddAsset: self._add_asset,
            AddApiKey: self._add_api_key,
            RevokeApiKey: self._revoke_api_key,
            SetSecondFactor: self._set_second_factor,
            Signed: self._signed,
        }

    # ------------------------------------------------------------------ apply

    def apply(self, command: Command, ts_ms: int = 0) -> list[Event]:
        """Applies one command at log time `ts_ms` and returns the events it caused.

        A retried command whose client id is already known returns its original
        outcome event (with its original sequence number) and emits nothing new.
        """
        self.now_ms = max(self.now_ms, ts_ms)
        out = self._out = []
        client_ids = self.client_ids
        if client_ids and next(iter(client_ids.values()))[1].ts_ms < (
            self.now_ms - CLIENT_ID_RETENTION_MS
        ):
            self._forget_old_client_ids()
        if (self.expiries and self.expiries[0][0] <= self.now_ms) or self.paused:
            self._run_timers()
        handler = self._handlers.get(type(command))
        if handler is None:
            self._reject("", "", type(command).__name__, RejectCode.UNKNOWN_COMMAND, "unknown")
        else:
            handler(command)
        if self._dirty_balances or self._dirty_levels:
            self._flush_views()
        return out

    def reject_malformed(self, detail: str) -> Event:
        """The outcome of a command that could not be decoded (it never reached `apply`):
        a Rejected with the next sequence number, as every node gives it."""
        self._out = []
        return self._reject("", "", "?", RejectCode.UNKNOWN_COMMAND, detail)

    def _forget_old_client_ids(self) -> None:
        """The table is in the order outcomes happened (log time never goes back, restore
        keeps that order), so the expired ids are at its front."""
        horizon = self.now_ms - CLIENT_ID_RETENTION_MS
        client_ids = self.client_ids
        while client_ids:
            key, (_, event) = next(iter(client_ids.items()))
            if event.ts_ms >= horizon:
                break
            del client_ids[key]

    def _flush_views(self) -> None:
        """One BalanceChanged per touched balance and one LevelChanged per touched level."""
        out = self._out
        now = self.now_ms
        seq = self.seq
        for bal in self._dirty_balances:
            bal.dirty = False
            seq += 1
            out.append(BalanceChanged(seq, now, bal.account, bal.asset, bal.available, bal.held))
        levels = self._dirty_levels
        if len(levels) > 1:
            levels = _last_per_price(levels)
        for symbol, level in levels:
            level.dirty = False
            seq += 1
            out.append(
                LevelChanged(
                    seq, now, symbol, level.side, level.price, level.qty, len(level.orders)
                )
            )
        self.seq = seq
        self._dirty_balances = []
        self._dirty_levels = []

    def _reject(self, account: str, client_id: str, command: str, code: str, message: str) -> Event:
        self.seq += 1
        event = Rejected(self.seq, self.now_ms, account, client_id, command, code, message)
        self._out.append(event)
        return event

    def _touch(self, bal: Balance) -> None:
        if not bal.dirty:
            bal.dirty = True
            self._dirty_balances.append(bal)

    def _touch_level(self, symbol: str, level: PriceLevel) -> None:
        if not level.dirty:
            level.dirty = True
            self._dirty_levels.append((symbol, level))

    def _run_timers(self) -> None:
        now = self.now_ms
        for symbol in sorted(self.paused):
            if self.paused[symbol] <= now:
                del self.paused[symbol]
                inst = self.instruments[symbol]
                inst.status = OPEN
                inst.resume_at_ms = 0
                self._status_event(inst, StatusReason.PAUSE_ENDED)
        expiries = self.expiries
        while expiries and expiries[0][0] <= now:
            expire_at, order_id = heapq.heappop(expiries)
            order = self.orders.get(order_id)
            if order is not None and order.expire_at_ms == expire_at:
                self.seq += 1
                self._out.append(
                    Expired(
                        self.seq,
                        now,
                        order_id,
                        order.account,
                        order.symbol,
                        order.side,
                        order.price,
                        order.leaves,
                    )
                )
                self._remove_open(order, self.instruments[order.symbol])

    # ------------------------------------------------------------- admin

    def _add_instrument(self, cmd: AddInstrument) -> None:
        name = "AddInstrument"
        if cmd.symbol in self.instruments:
            self._reject("", cmd.symbol, name, RejectCode.ALREADY_EXISTS, "symbol exists")
            return
        spec = instrument_spec(cmd)
        problem = _instrument_problem(*spec)
        if problem:
            self._reject("", cmd.symbol, name, RejectCode.INVALID_INSTRUMENT, problem)
            return
        inst = Instrument(*spec, int(cmd.status))
        self.instruments[cmd.symbol] = inst
        self._instrument_event(inst, cmd.by)
        if inst.status != OPEN:
            self._status_event(inst, StatusReason.ADMIN, cmd.by)

    def _update_instrument(self, cmd: UpdateInstrument) -> None:
        inst = self.instruments.get(cmd.symbol)
        name = "UpdateInstrument"
        if inst is None:
            self._reject("", cmd.symbol, name, RejectCode.UNKNOWN_SYMBOL, "unknown symbol")
            return
        values = {
            field: (getattr(cmd, field) if getattr(cmd, field) != -1 else getattr(inst, field))
            for field in _UPDATABLE
        }
        book_in_use = inst.bids or inst.asks or inst.buy_stops or inst.sell_stops
        if book_in_use and (
            values["tick_size"] != inst.tick_size or values["lot_size"] != inst.lot_size
        ):
            self._reject(
                "",
                cmd.symbol,
                name,
                RejectCode.INVALID_INSTRUMENT,
                "tick and lot size change only with an empty book",
            )
            return
        problem = _instrument_problem(cmd.symbol, inst.base, inst.quote, **values)
        if problem:
            self._reject("", cmd.symbol, name, RejectCode.INVALID_INSTRUMENT, problem)
            return
        reference = values.pop("reference_price")
        for field, value in values.items():
            setattr(inst, field, value)
        inst.set_reference(reference)
        self._instrument_event(inst, cmd.by)

    def _instrument_event(self, inst: Instrument, by: str) -> None:
        self.seq += 1
        self._out.append(InstrumentChanged(self.seq, self.now_ms, *inst.spec(), by))

    def _status_event(self, inst: Instrument, reason: str, by: str = "") -> None:
        self.seq += 1
        self._out.append(
            StatusChanged(
                self.seq, self.now_ms, inst.symbol, inst.status, reason, inst.resume_at_ms, by
            )
        )

    def _set_trading_status(self, cmd: SetTradingStatus) -> None:
        inst = self.instruments.get(cmd.symbol)
        if inst is None:
            self._reject(
                "", cmd.symbol, "SetTradingStatus", RejectCode.UNKNOWN_SYMBOL, "unknown symbol"
            )
            return
        inst.status = int(cmd.status)
        inst.resume_at_ms = 0
        self.paused.pop(cmd.symbol, None)
        self._status_event(inst, StatusReason.ADMIN, cmd.by)

    def _create_account(self, cmd: CreateAccount) -> None:
        name = "CreateAccount"
        if not cmd.account:
            self._reject("", "", name, RejectCode.INVALID_ORDER, "account id is empty")
        elif cmd.account in self.accounts:
            self._reject(cmd.account, "", name, RejectCode.ALREADY_EXISTS, "account exists")
        else:
            self.accounts[cmd.account] = Account(cmd.account)
            self.seq += 1
            self._out.append(AccountChanged(self.seq, self.now_ms, cmd.account, True))

    def _set_account_enabled(self, cmd: SetAccountEnabled) -> None:
        account = self.accounts.get(cmd.account)
        if account is None:
            self._reject(
                cmd.account, "", "SetAccountEnabled", RejectCode.UNKNOWN_ACCOUNT, "unknown account"
            )
            return
        account.enabled = cmd.enabled
        self.seq += 1
        self._out.append(AccountChanged(self.seq, self.now_ms, cmd.account, cmd.enabled, cmd.by))
        if not cmd.enabled:
            self._cancel_all(account, "", CancelReason.KILL_SWITCH)

    def _set_account_profile(self, cmd: SetAccountProfile) -> None:
        name = "SetAccountProfile"
        account = self.accounts.get(cmd.account)
        if account is None:
            self._reject(cmd.account, "", name, RejectCode.UNKNOWN_ACCOUNT, "unknown account")
        elif not cmd.member or not cmd.owner:
            self._reject(
                cmd.account, "", name, RejectCode.INVALID_PROFILE, "member and owner are required"
            )
        elif cmd.lei and not _is_lei(cmd.lei):
            self._reject(
                cmd.account,
                "",
                name,
                RejectCode.INVALID_PROFILE,
                "an LEI is 20 characters: 18 of upper-case letters and digits, 2 check digits",
            )
        elif cmd.capacity == TradingCapacity.ACCOUNT_DEFAULT:
            self._reject(
                cmd.account, "", name, RejectCode.INVALID_PROFILE, "capacity is DEAL, MTCH or AOTC"
            )
        else:
            account.member, account.owner, account.lei = cmd.member, cmd.owner, cmd.lei
            account.capacity = int(cmd.capacity)
            self.seq += 1
            self._out.append(
                AccountProfileChanged(
                    self.seq,
                    self.now_ms,
                    cmd.account,
                    cmd.member,
                    cmd.owner,
                    cmd.lei,
                    account.capacity,
                    cmd.by,
                )
            )

    # ------------------------------------------------------- reference and access

    def _add_asset(self, cmd: AddAsset) -> None:
        name = "AddAsset"
        if not cmd.asset or not 0 <= cmd.decimals <= ASSET_DECIMALS_MAX:
            self._reject(
                "", "", name, RejectCode.INVALID_ASSET, f"decimals must be 0..{ASSET_DECIMALS_MAX}"
            )
        elif cmd.asset in self.assets:
            self._reject("", "", name, RejectCode.ALREADY_EXISTS, f"{cmd.asset} is defined")
        else:
            self.assets[cmd.asset] = cmd.decimals
            self.seq += 1
            self._out.append(AssetAdded(self.seq, self.now_ms, cmd.asset, cmd.decimals))

    def _add_api_key(self, cmd: AddApiKey) -> None:
        problem = self._api_key_problem(cmd)
        if problem is not None:
            self._reject(cmd.account, "", "AddApiKey", *problem)
            return
        self.api_keys[cmd.key_id] = ApiKey(
            cmd.account, cmd.key_id, int(cmd.kind), cmd.material, cmd.scopes
        )
        self.seq += 1
        self._out.append(
            ApiKeyChanged(
                self.seq, self.now_ms, cmd.account, cmd.key_id, int(cmd.kind), cmd.scopes, True
            )
        )

    def _api_key_problem(self, cmd: AddApiKey) -> tuple[str, str] | None:
        if cmd.account not in self.accounts:
            return RejectCode.UNKNOWN_ACCOUNT, "unknown account"
        if not cmd.key_id or not cmd.material:
            return RejectCode.INVALID_KEY, "key id and key material are required"
        if cmd.key_id in self.api_keys:
            return RejectCode.ALREADY_EXISTS, "key id is taken"
        if not 0 < cmd.scopes <= SCOPES_ALL:
            return RejectCode.INVALID_KEY, f"scopes must be a mask in 1..{int(SCOPES_ALL)}"
        if cmd.kind == KeyKind.ED25519 and not _is_hex(cmd.material, ED25519_PUBLIC_KEY_HEX_LEN):
            return RejectCode.INVALID_KEY, "an Ed25519 public key is 64 hex digits"
        owned = sum(1 for key in self.api_keys.values() if key.account == cmd.account)
        if owned >= API_KEYS_PER_ACCOUNT_MAX:
            return RejectCode.TOO_MANY_KEYS, f"at most {API_KEYS_PER_ACCOUNT_MAX} keys per account"
        return None

    def _revoke_api_key(self, cmd: RevokeApiKey) -> None:
        key = self.api_keys.get(cmd.key_id)
        if key is None or key.account != cmd.account:
            self._reject(cmd.account, "", "RevokeApiKey", RejectCode.UNKNOWN_KEY, "no such key")
            return
        del self.api_keys[cmd.key_id]
        self.seq += 1
        self._out.append(
            ApiKeyChanged(
                self.seq, self.now_ms, key.account, key.key_id, key.kind, key.scopes, False
            )
        )

    def _set_second_factor(self, cmd: SetSecondFactor) -> None:
        name = "SetSecondFactor"
        key = (cmd.account, cmd.request_id)
        if cmd.request_id and self._answered_before(key, cmd, name):
            return
        if cmd.account not in self.accounts:
            self._reject(cmd.account, "", name, RejectCode.UNKNOWN_ACCOUNT, "unknown account")
        elif not cmd.material:
            self._reject(cmd.account, "", name, RejectCode.INVALID_KEY, "secret is required")
        else:
            self.second_factors[cmd.account] = cmd.material
            self.seq += 1
            event = SecondFactorSet(self.seq, self.now_ms, cmd.account)
            self._out.append(event)
            if cmd.request_id:
                self.client_ids[key] = (cmd, event)

    def _signed(self, cmd: Signed) -> None:
        """A client's write, at most once per signature and per TOTP step in the cluster.

        A signature already applied is refused, unless the write is an exact retry of one
        with a client or request id (its original outcome comes back, nothing changes):
        that is how a client retry of the very same signed request is answered. A TOTP
        step at or before the account's last spent one is refused the same way, and a
        step is spent only by a write that succeeded.
        """
        inner = cmd.command
        name = type(inner).__name__
        account = getattr(inner, "account", "")
        now = self.now_ms
        signatures = self.signatures
        expiries = self.signature_expiries
        while expiries and expiries[0][0] < now:
            del signatures[heapq.heappop(expiries)[1]]
        if abs(now - cmd.timestamp_ms) > SIGNATURE_RETENTION_MS:
            self._reject(
                account,
                _client_id(inner),
                name,
                RejectCode.STALE_REQUEST,
                f"signed at {cmd.timestamp_ms}, more than {SIGNATURE_RETENTION_MS} ms from"
                f" log time {now}",
            )
            return
        retry = self._is_retry(inner)
        if not retry:
            if cmd.signature in signatures:
                self._reject(
                    account,
                    _client_id(inner),
                    name,
                    RejectCode.REPLAYED_REQUEST,
                    "this signed request was already applied",
                )
                return
            if cmd.totp_step and cmd.totp_step <= self.totp_steps.get(account, 0):
                self._reject(
                    account,
                    _client_id(inner),
                    name,
                    RejectCode.SECOND_FACTOR_USED,
                    "this TOTP code (or a later one) was already used",
                )
                return
            until = max(cmd.timestamp_ms, now) + SIGNATURE_RETENTION_MS
            signatures[cmd.signature] = until
            heapq.heappush(expiries, (until, cmd.signature))
        out = self._out
        start = len(out)
        self._handlers[type(inner)](inner)
        if cmd.totp_step and not retry and not any(type(e) is Rejected for e in out[start:]):
            self.totp_steps[account] = cmd.totp_step

    def _is_retry(self, cmd: Command) -> bool:
        """Whether `cmd` repeats a remembered command under its client or request id, which
        its handler will answer with the original outcome."""
        client_id = _client_id(cmd)
        if not client_id:
            return False
        prior = self.client_ids.get((cmd.account, client_id))  # type: ignore[union-attr]
        return prior is not None and prior[0] == cmd

    def _known_asset(self, asset: str) -> bool:
        return any(asset in (inst.base, inst.quote) for inst in self.instruments.values())

    def _transfer_problem(self, cmd: Deposit | Withdraw) -> tuple[str, str] | None:
        if cmd.request_id:
            prior = self.client_ids.get((cmd.account, cmd.request_id))
            if prior is not None:
                if prior[0] == cmd:
                    self._out.append(prior[1])
                    return "", ""
                return RejectCode.DUPLICATE_CLIENT_ORDER_ID, "request id already used"
        if cmd.account not in self.accounts:
            return RejectCode.UNKNOWN_ACCOUNT, "unknown account"
        if not self._known_asset(cmd.asset):
            return RejectCode.UNKNOWN_ASSET, f"no instrument trades {cmd.asset!r}"
        if not 0 < cmd.amount < BALANCE_MAX:
            return RejectCode.INVALID_AMOUNT, "amount must be positive"
        return None

    def _deposit(self, cmd: Deposit) -> None:
        self._transfer(cmd, 1)

    def _withdraw(self, cmd: Withdraw) -> None:
        self._transfer(cmd, -1)

    def _transfer(self, cmd: Deposit | Withdraw, sign: int) -> None:
        name = type(cmd).__name__
        problem = self._transfer_problem(cmd)
        if problem is None:
            account = self.accounts[cmd.account]
            existing = account.balances.get(cmd.asset)
            available = existing.available if existing is not None else 0
            if sign > 0 and available + cmd.amount >= BALANCE_MAX:
                problem = RejectCode.INVALID_AMOUNT, "balance would exceed its limit"
            elif sign < 0 and available < cmd.amount:
                problem = RejectCode.INSUFFICIENT_FUNDS, "withdrawal exceeds available balance"
        if problem is not None:
            if problem[0]:
                event = self._reject(cmd.account, cmd.request_id, name, *problem)
                if cmd.request_id and problem[0] != RejectCode.DUPLICATE_CLIENT_ORDER_ID:
                    self.client_ids[(cmd.account, cmd.request_id)] = (cmd, event)
            return
        bal = account.balance(cmd.asset)
        bal.available += sign * cmd.amount
        if bal.dirty:  # touched by an expiry in this command: report it once, here
            bal.dirty = False
            self._dirty_balances.remove(bal)
        self.seq += 1
        self._out.append(
            Transferred(
                self.seq, self.now_ms, cmd.account, cmd.asset, sign * cmd.amount, cmd.request_id
            )
        )
        self.seq += 1
        event = BalanceChanged(
            self.seq, self.now_ms, bal.account, bal.asset, bal.available, bal.held
        )
        self._out.append(event)
        if cmd.request_id:
            self.client_ids[(cmd.account, cmd.request_id)] = (cmd, event)

    # ------------------------------------------------------------- orders

    def _answered_before(self, key: tuple[str, str], cmd: Command, name: str) -> bool:
        """A known id: the same command gets its original outcome again, another command is
        rejected (the id is taken). False for an id not seen (or forgotten)."""
        prior = self.client_ids.get(key)
        if prior is None:
            return False
        if prior[0] == cmd:
            self._out.append(prior[1])
        else:
            self._reject(
                key[0], key[1], name, RejectCode.DUPLICATE_CLIENT_ORDER_ID, "id already used"
            )
        return True

    def _place(self, cmd: PlaceOrder) -> None:
        cid = cmd.client_order_id
        if cid and self._answered_before((cmd.account, cid), cmd, "PlaceOrder"):
            return
        checked = self._check_place(cmd)
        if checked is None:
            return
        order, inst, bal, hold = checked
        owner = order.owner
        # Hold exactly what the order can cost.
        bal.available -= hold
        bal.held += hold
        order.held = hold
        if not bal.dirty:
            bal.dirty = True
            self._dirty_balances.append(bal)
        order_id = order.order_id
        self.orders[order_id] = order
        owner.orders[order_id] = order
        self.seq += 1
        accepted = Accepted(
            self.seq,
            self.now_ms,
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
        self._out.append(accepted)
        if cid:
            self.client_ids[(cmd.account, cid)] = (cmd, accepted)
        if order.expire_at_ms:
            heapq.heappush(self.expiries, (order.expire_at_ms, order_id))
        if order.armed:
            if order.side == BUY:
                inst.buy_stops.add((order.stop_price, order_id))
            else:
                inst.sell_stops.add((-order.stop_price, order_id))
            return
        self._execute(order, inst)

    def _check_place(self, cmd: PlaceOrder) -> tuple[Order, Instrument, Balance, int] | None:
        """Every pre-trade check, cheapest first.

        Returns the order to accept with the balance it holds from and the amount,
        or None after emitting the rejection.
        """
        account = self.accounts.get(cmd.account)
        code = ""
        msg = ""
        inst = self.instruments.get(cmd.symbol)
        order_type = cmd.order_type
        tif = cmd.tif
        price = cmd.price
        qty = cmd.qty
        if account is None:
            code, msg = RejectCode.UNKNOWN_ACCOUNT, "unknown account"
        elif not account.enabled:
            code, msg = RejectCode.ACCOUNT_DISABLED, "account is disabled"
        elif (account.rate_limit or self.member_rates) and (refusal := self._rate_refusal(account)):
            code, msg = RejectCode.RATE_LIMITED, refusal
        elif inst is None:
            code, msg = RejectCode.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}"
        elif inst.status != OPEN:
            if inst.status == HALTED:
                code, msg = RejectCode.HALTED, f"{cmd.symbol} is halted"
            else:
                code, msg = RejectCode.MARKET_CLOSED, f"{cmd.symbol} is closed"
        elif qty <= 0 or qty % inst.lot_size:
            code, msg = (
                RejectCode.LOT_SIZE,
                f"quantity must be a positive multiple of {self._qty_text(inst, inst.lot_size)}",
            )
        elif qty < inst.min_qty:
            code, msg = (
                RejectCode.QTY_TOO_SMALL,
                f"quantity below minimum {self._qty_text(inst, inst.min_qty)}",
            )
        elif qty > inst.max_qty:
            code, msg = (
                RejectCode.QTY_TOO_LARGE,
                f"quantity above maximum {self._qty_text(inst, inst.max_qty)}",
            )
        elif len(account.orders) >= self.open_orders_per_account_max:
            code, msg = (
                RejectCode.TOO_MANY_OPEN_ORDERS,
                f"at most {self.open_orders_per_account_max} open orders",
            )
        else:
            code, msg, price = self._check_order_shape(cmd, inst)
        if code:
            self._reject(cmd.account, cmd.client_order_id, "PlaceOrder", code, msg)
            if cmd.client_order_id:
                self.client_ids[(cmd.account, cmd.client_order_id)] = (cmd, self._out[-1])
            return None
        if order_type == MARKET and tif == GTC:
            tif = IOC
        side = cmd.side
        expire_at = 0
        if tif == DAY:
            expire_at = (self.now_ms // DAY_MS + 1) * DAY_MS
        elif tif == GTD:
            expire_at = cmd.expire_time_ms
        order = Order(
            self.next_order_id,
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
        if not code and cmd.post_only and self._would_take(order, inst):
            code, msg = RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity"
        if code:
            if not msg:
                msg = "not enough available to cover the order"
            self._reject(cmd.account, cmd.client_order_id, "PlaceOrder", code, msg)
            if cmd.client_order_id:
                self.client_ids[(cmd.account, cmd.client_order_id)] = (cmd, self._out[-1])
            return None
        self.next_order_id += 1
        assert bal is not None
        return order, inst, bal, hold

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
                    f"price must be a positive multiple of {self._price_text(inst, tick)}",
                    0,
                )
            if order_type == LIMIT and not inst.in_band(price):
                return (
                    RejectCode.PRICE_OUT_OF_BAND,
                    f"price outside [{self._price_text(inst, inst.band_lo)},"
                    f" {self._price_text(inst, inst.band_hi)}]",
                    0,
                )
        elif price:
            return RejectCode.INVALID_ORDER, "market and stop orders take no price", 0
        if order_type == STOP or order_type == STOP_LIMIT:
            stop = cmd.stop_price
            if stop <= 0 or stop % tick:
                return (
                    RejectCode.TICK_SIZE,
                    f"stop price must be a positive multiple of {self._price_text(inst, tick)}",
                    0,
                )
            if cmd.post_only or cmd.display_qty:
                return RejectCode.INVALID_ORDER, "stop orders cannot be post-only or iceberg", 0
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
            if tif not in (GTC, IOC, FOK):
                return RejectCode.INVALID_ORDER, "market orders are IOC or FOK", 0
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
            if cmd.expire_time_ms <= self.now_ms:
                return RejectCode.INVALID_EXPIRY, "expire time must be in the future", 0
        elif cmd.expire_time_ms:
            return RejectCode.INVALID_EXPIRY, "only GTD orders take an expire time", 0
        if price * cmd.qty > inst.max_notional:
            return (
                RejectCode.NOTIONAL_TOO_LARGE,
                f"notional above {self._notional_text(inst, inst.max_notional)}",
                0,
            )
        return "", "", price

    def _would_take(self, order: Order, inst: Instrument) -> bool:
        if order.side == BUY:
            return bool(inst.asks) and inst.asks.peekitem(0)[0] <= order.price
        return bool(inst.bids) and inst.bids.peekitem(0)[0] <= -order.price

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
        for key, level in book.items():
            if key > limit_key:
                return False
            if reference:
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
        elif self.orders.get(taker.order_id) is taker:
            self._forget(taker)
        if traded and not self._triggering and (inst.buy_stops or inst.sell_stops):
            self._trigger_stops(inst)

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
            buyer, buyer_fee, seller, seller_fee = taker, taker_fee, maker, maker_fee
        else:
            buyer, buyer_fee, seller, seller_fee = maker, maker_fee, taker, taker_fee
        touched = self._dirty_balances
        quote = inst.quote
        base = inst.base
        # Buyer: the hold shrinks to what the rest can cost; the difference pays
        # notional plus fee and any change goes back to available.
        bal = buyer.owner.balances[quote]
        new_held = buy_cost(buyer.leaves, buyer.price, buyer.hold_fee_bps)
        released = buyer.held - new_held
        buyer.held = new_held
        bal.held -= released
        bal.available += released - notional - buyer_fee
        if not bal.dirty:
            bal.dirty = True
            touched.append(bal)
        bal = buyer.owner.balance(base)
        bal.available += qty
        if not bal.dirty:
            bal.dirty = True
            touched.append(bal)
        # Seller: shares leave the hold, proceeds less fee arrive.
        bal = seller.owner.balances[base]
        bal.held -= qty
        seller.held -= qty
        if not bal.dirty:
            bal.dirty = True
            touched.append(bal)
        bal = seller.owner.balance(quote)
        bal.available += notional - seller_fee
        if not bal.dirty:
            bal.dirty = True
            touched.append(bal)
        fees = buyer_fee + seller_fee
        if fees:
            bal = self.accounts[FEE_ACCOUNT].balance(quote)
            bal.available += fees
            if not bal.dirty:
                bal.dirty = True
                touched.append(bal)
        self.seq += 1
        self._out.append(
            Trade(
                self.seq,
                self.now_ms,
                self.next_trade_id,
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
            )
        )
        self.next_trade_id += 1
        inst.last_price = price
        if price != inst.reference_price:
            inst.set_reference(price)
        if not level.dirty:
            level.dirty = True
            self._dirty_levels.append((inst.symbol, level))
        if not maker.visible:
            if maker.leaves:
                self._replenish(maker, level, inst)
            else:
                del level.orders[maker.order_id]
                self._forget(maker)

    def _replenish(self, order: Order, level: PriceLevel, inst: Instrument) -> None:
        """Shows the next iceberg slice at the back of the level (it loses time priority)."""
        del level.orders[order.order_id]
        visible = order.display_qty if order.display_qty < order.leaves else order.leaves
        order.visible = visible
        level.orders[order.order_id] = order
        level.qty += visible
        self.seq += 1
        self._out.append(
            Replenished(
                self.seq,
                self.now_ms,
                order.order_id,
                inst.symbol,
                order.side,
                order.price,
                visible,
                order.leaves - visible,
            )
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
        inst.status = HALTED
        inst.resume_at_ms = self.now_ms + inst.halt_pause_ms
        self.paused[inst.symbol] = inst.resume_at_ms
        self._status_event(inst, StatusReason.CIRCUIT_BREAKER)

    def _trigger_stops(self, inst: Instrument) -> None:
        """Fires stops in trigger-price then time order; each may trade and fire more."""
        buy_stops = inst.buy_stops
        sell_stops = inst.sell_stops
        self._triggering = True
        try:
            self._fire_stops(inst, buy_stops, sell_stops)
        finally:
            self._triggering = False

    def _fire_stops(self, inst: Instrument, buy_stops: SortedList, sell_stops: SortedList) -> None:
        """The loop of _trigger_stops: iterative, so a long cascade cannot exhaust the stack."""
        while inst.status == OPEN:
            last = inst.last_price
            if buy_stops and buy_stops[0][0] <= last:
                _, order_id = buy_stops.pop(0)
            elif sell_stops and sell_stops[0][0] <= -last:
                _, order_id = sell_stops.pop(0)
            else:
                return
            order = self.orders[order_id]
            order.armed = False
            if order.order_type == STOP:
                order.tif = IOC
            self.seq += 1
            self._out.append(
                Triggered(
                    self.seq,
                    self.now_ms,
                    order_id,
                    order.account,
                    inst.symbol,
                    order.stop_price,
                    last,
                )
            )
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
            self._dirty_levels.append((inst.symbol, level))

    def _forget(self, order: Order) -> None:
        """Drops a finished order from the open-order indexes."""
        del self.orders[order.order_id]
        del order.owner.orders[order.order_id]

    def _release(self, order: Order, inst: Instrument, qty: int) -> None:
        """Takes `qty` off an order's quantity and gives back the hold it no longer needs."""
        order.leaves -= qty
        order.qty -= qty
        if order.side == BUY:
            bal = order.owner.balances[inst.quote]
            new_held = buy_cost(order.leaves, order.price, order.hold_fee_bps)
        else:
            bal = order.owner.balances[inst.base]
            new_held = order.leaves
        released = order.held - new_held
        order.held = new_held
        bal.held -= released
        bal.available += released
        self._touch(bal)

    def _emit_cancelled(self, order: Order, qty: int, reason: str) -> None:
        """A Cancelled event for `qty` of `order`, after its leaves were cut by it."""
        self.seq += 1
        self._out.append(
            Cancelled(
                self.seq,
                self.now_ms,
                order.order_id,
                order.account,
                order.symbol,
                order.side,
                order.price,
                qty,
                order.leaves,
                reason,
            )
        )

    def _cancel_open(self, order: Order, inst: Instrument, reason: str) -> None:
        """Cancels all of an open order (resting or waiting stop) and releases its hold."""
        qty = order.leaves
        self._remove_open(order, inst)
        self._emit_cancelled(order, qty, reason)

    def _cancel_order(self, order: Order, inst: Instrument, qty: int, reason: str) -> None:
        """Cancels `qty` of an order that is not resting in the book (a taker or a stop)."""
        self._release(order, inst, qty)
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
        self._release(order, inst, qty)
        self._touch_level(inst.symbol, level)
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
        self._touch_level(inst.symbol, level)

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
        self._release(order, inst, order.leaves)
        self._forget(order)

    # ------------------------------------------------------------- cancel, amend

    def _find_own_order(
        self, account: str, order_id: int, client_order_id: str, command: str
    ) -> Order | None:
        own_known = False
        if not order_id and client_order_id:
            prior = self.client_ids.get((account, client_order_id))
            if prior is not None and isinstance(prior[1], Accepted):
                order_id = prior[1].order_id
                own_known = True
        order = self.orders.get(order_id)
        if order is None or order.account != account:
            # Only the owner learns that an order existed: by id, another account's
            # order and a finished one look the same.
            if order is None and own_known:
                code, msg = RejectCode.ORDER_NOT_OPEN, "order is no longer open"
            else:
                code, msg = RejectCode.UNKNOWN_ORDER, "no open order with this id for this account"
            self._reject(account, client_order_id, command, code, msg)
            return None
        return order

    def _rate_refusal(self, account: Account, refusable: bool = True) -> str:
        """Counts one order message of `account` against its own limit and its member's for
        this second of log time; why it is refused ("" if it is not, or cannot be: a cancel
        counts but is never refused). A refused message is not counted."""
        second = self.now_ms // 1000
        member = self.member_rates.get(account.member) if account.member else None
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

    def _set_member_rate_limit(self, cmd: SetMemberRateLimit) -> None:
        name = "SetMemberRateLimit"
        if not cmd.member or not 0 <= cmd.messages_per_s <= RATE_LIMIT_MAX:
            self._reject(
                "",
                "",
                name,
                RejectCode.INVALID_AMOUNT,
                f"a member and a limit of 0 (none) to {RATE_LIMIT_MAX} messages a second",
            )
            return
        if cmd.messages_per_s:
            self.member_rates[cmd.member] = [cmd.messages_per_s, 0, 0]
        else:
            self.member_rates.pop(cmd.member, None)
        self.seq += 1
        self._out.append(
            MemberRateLimitChanged(self.seq, self.now_ms, cmd.member, cmd.messages_per_s, cmd.by)
        )

    def _set_rate_limit(self, cmd: SetRateLimit) -> None:
        account = self.accounts.get(cmd.account)
        if account is None:
            self._reject(cmd.account, "", "SetRateLimit", RejectCode.UNKNOWN_ACCOUNT, "unknown")
        elif not 0 <= cmd.messages_per_s <= RATE_LIMIT_MAX:
            self._reject(
                cmd.account,
                "",
                "SetRateLimit",
                RejectCode.INVALID_AMOUNT,
                f"a rate limit is 0 (none) to {RATE_LIMIT_MAX} messages a second",
            )
        else:
            account.rate_limit = cmd.messages_per_s
            self.seq += 1
            self._out.append(
                RateLimitChanged(self.seq, self.now_ms, cmd.account, cmd.messages_per_s, cmd.by)
            )

    def _cancel(self, cmd: CancelOrder) -> None:
        order = self._find_own_order(cmd.account, cmd.order_id, cmd.client_order_id, "CancelOrder")
        if order is None:
            return
        owner = order.owner
        if owner.rate_limit or self.member_rates:
            self._rate_refusal(owner, refusable=False)  # counted, never refused: less risk
        inst = self.instruments[order.symbol]
        self._cancel_open(order, inst, CancelReason.USER)

    def _cancel_all(self, account: Account, symbol: str, reason: str) -> None:
        for order in list(account.orders.values()):
            if symbol and order.symbol != symbol:
                continue
            self._cancel_open(order, self.instruments[order.symbol], reason)

    def _mass_cancel(self, cmd: MassCancel) -> None:
        account = self.accounts.get(cmd.account)
        if account is None:
            self._reject(
                cmd.account, "", "MassCancel", RejectCode.UNKNOWN_ACCOUNT, "unknown account"
            )
        elif cmd.symbol and cmd.symbol not in self.instruments:
            self._reject(cmd.account, "", "MassCancel", RejectCode.UNKNOWN_SYMBOL, "unknown symbol")
        else:
            if account.rate_limit or self.member_rates:
                self._rate_refusal(account, refusable=False)  # counted, like a cancel
            self._cancel_all(account, cmd.symbol, CancelReason.MASS_CANCEL)

    def _amend(self, cmd: AmendOrder) -> None:
        name = "AmendOrder"
        order = self._find_own_order(cmd.account, cmd.order_id, cmd.client_order_id, name)
        if order is None:
            return
        inst = self.instruments[order.symbol]
        new_qty = cmd.qty or order.qty
        new_price = cmd.price or order.price
        executed = order.qty - order.leaves
        reduce_only = new_price == order.price and new_qty <= order.qty
        code = msg = ""
        if (order.owner.rate_limit or self.member_rates) and (
            refusal := self._rate_refusal(order.owner)
        ):
            code, msg = RejectCode.RATE_LIMITED, refusal
        elif order.armed or order.order_type == STOP:
            code, msg = RejectCode.INVALID_ORDER, "only resting limit orders can be amended"
        elif cmd.qty < 0 or cmd.price < 0:
            code, msg = RejectCode.INVALID_ORDER, "quantity and price cannot be negative"
        elif inst.status != OPEN and not reduce_only:
            code, msg = RejectCode.HALTED, f"{inst.symbol} only takes reductions now"
        elif new_qty % inst.lot_size:
            code, msg = (
                RejectCode.LOT_SIZE,
                f"quantity must be a multiple of {self._qty_text(inst, inst.lot_size)}",
            )
        elif new_qty <= executed:
            code, msg = (
                RejectCode.QTY_TOO_SMALL,
                f"quantity must exceed executed {self._qty_text(inst, executed)}",
            )
        elif new_qty > inst.max_qty:
            code, msg = (
                RejectCode.QTY_TOO_LARGE,
                f"quantity above maximum {self._qty_text(inst, inst.max_qty)}",
            )
        elif new_price % inst.tick_size:
            code, msg = (
                RejectCode.TICK_SIZE,
                f"price must be a multiple of {self._price_text(inst, inst.tick_size)}",
            )
        elif new_price != order.price and not inst.in_band(new_price):
            code, msg = RejectCode.PRICE_OUT_OF_BAND, "price outside the band"
        elif new_price * new_qty > inst.max_notional:
            code, msg = (
                RejectCode.NOTIONAL_TOO_LARGE,
                f"notional above {self._notional_text(inst, inst.max_notional)}",
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
        if not code and order.post_only and new_price != order.price:
            probe_side_book = inst.asks if order.side == BUY else inst.bids
            key = new_price if order.side == BUY else -new_price
            if probe_side_book and probe_side_book.peekitem(0)[0] <= key:
                code, msg = RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity"
        if code:
            self._reject(cmd.account, cmd.client_order_id, name, code, msg)
            return
        old_price = order.price
        old_qty = order.qty
        if reduce_only:
            self._amend_in_place(order, inst, new_qty)
        else:
            self._amend_requeue(order, inst, new_qty, new_price)
        self.seq += 1
        self._out.append(
            Amended(
                self.seq,
                self.now_ms,
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
        )
        if not reduce_only:
            self._execute(order, inst)

    def _amend_in_place(self, order: Order, inst: Instrument, new_qty: int) -> None:
        """Quantity down at the same price: the order keeps its place in the queue."""
        cut = order.qty - new_qty
        book = inst.bids if order.side == BUY else inst.asks
        level = book[-order.price if order.side == BUY else order.price]
        self._release(order, inst, cut)
        if order.visible > order.leaves:
            level.qty -= order.visible - order.leaves
            order.visible = order.leaves
        self._touch_level(inst.symbol, level)

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
        if order.side == BUY:
            bal = order.owner.balances[inst.quote]
            new_held = buy_cost(order.leaves, new_price, order.hold_fee_bps)
        else:
            bal = order.owner.balances[inst.base]
            new_held = order.leaves
        delta = new_held - order.held
        order.held = new_held
        bal.held += delta
        bal.available -= delta
        self._touch(bal)

    # ------------------------------------------------------------- reads

    def balance(self, account: str, asset: str) -> tuple[int, int]:
        """(available, held) of one asset; (0, 0) for an unknown account or asset."""
        acct = self.accounts.get(account)
        bal = acct.balances.get(asset) if acct is not None else None
        return (bal.available, bal.held) if bal is not None else (0, 0)

    def depth(self, symbol: str, levels: int = 0) -> tuple[list[tuple[int, int, int]], ...]:
        """L2: (bids, asks) as (price, visible qty, order count), best first."""
        inst = self.instruments[symbol]
        sides = []
        for book in (inst.bids, inst.asks):
            sides.append([(lvl.price, lvl.qty, len(lvl.orders)) for lvl in _best(book, levels)])
        return sides[0], sides[1]

    def depth_l3(
        self, symbol: str, levels: int = 0
    ) -> tuple[list[tuple[int, list[tuple[int, int]]]], ...]:
        """L3: (bids, asks) as (price, [(order id, visible qty)] in time priority), best first."""
        inst = self.instruments[symbol]
        sides = []
        for book in (inst.bids, inst.asks):
            sides.append([(lvl.price, level_queue(lvl)) for lvl in _best(book, levels)])
        return sides[0], sides[1]

    def level_queue(self, symbol: str, side: int, price: int) -> list[tuple[int, int]]:
        """One level's orders in time priority; empty if the level is gone."""
        inst = self.instruments[symbol]
        level = inst.bids.get(-price) if side == BUY else inst.asks.get(price)
        return level_queue(level) if level is not None else []

    def best_bid_ask(self, symbol: str) -> tuple[int, int]:
        """(best bid, best ask) prices, 0 where a side is empty."""
        inst = self.instruments[symbol]
        bid = inst.bids.peekitem(0)[1].price if inst.bids else 0
        ask = inst.asks.peekitem(0)[1].price if inst.asks else 0
        return bid, ask

    # A refusal's amounts as the API shows them: an asset no AddAsset declared has 0 decimals.
    def _qty_text(self, inst: Instrument, units: int) -> str:
        return decimal_text(units, self.assets.get(inst.base, 0))

    def _price_text(self, inst: Instrument, units: int) -> str:
        places = self.assets.get(inst.quote, 0) - self.assets.get(inst.base, 0)
        return decimal_text(units, places)

    def _notional_text(self, inst: Instrument, units: int) -> str:
        return f"{decimal_text(units, self.assets.get(inst.quote, 0))} {inst.quote}"

    def state_hash(self) -> str:
        """SHA-256 over the canonical snapshot: equal on every replica at equal sequence."""
        return hashlib.sha256(self.snapshot()).hexdigest()

    def snapshot(self) -> bytes:
        """Canonical msgpack bytes of the whole state (see engine.snapshot)."""
        return encode_exchange(self)

    @classmethod
    def restore(cls, data: bytes) -> Exchange:
        """The exchange a snapshot describes; raises SnapshotError on bytes it cannot trust."""
        return decode_exchange(data, cls)


# Every static field but the instrument's identity (symbol, base, quote).
_UPDATABLE = INSTRUMENT_SPEC[3:]


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


def _client_id(cmd: Command) -> str:
    """The id under which the engine remembers a command's outcome, if it has one."""
    if type(cmd) is PlaceOrder:
        return cmd.client_order_id
    if type(cmd) is Deposit or type(cmd) is Withdraw or type(cmd) is SetSecondFactor:
        return cmd.request_id
    return ""


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _ignore(_: Command) -> None:
    """A Tick only moves time; its work (expiries, pause ends) already ran in apply."""


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


def _is_lei(lei: str) -> bool:
    """ISO 17442: 18 alphanumerics and 2 check digits, ISO 7064 MOD 97-10 over the whole."""
    if len(lei) != 20 or not lei.isascii() or not lei.isalnum() or lei != lei.upper():
        return False
    if not lei[18:].isdigit():
        return False
    return int("".join(str(int(c, 36)) for c in lei)) % 97 == 1
