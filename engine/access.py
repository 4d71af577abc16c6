"""Access: accounts, their compliance profiles, API keys, second factors, and signed writes.

A signed write is applied at most once per signature in the whole cluster and a
TOTP step at most once per account: both are remembered here in log time, so
every node refuses the same replay.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from engine.codes import SCOPES_ALL, CancelReason, KeyKind, RejectCode, TradingCapacity
from engine.commands import (
    AddApiKey,
    Command,
    CreateAccount,
    RevokeApiKey,
    SetAccountEnabled,
    SetAccountProfile,
    SetSecondFactor,
    Signed,
)
from engine.events import (
    AccountChanged,
    AccountProfileChanged,
    ApiKeyChanged,
    Event,
    Rejected,
    SecondFactorSet,
)
from engine.exchange_state import ExchangeState
from engine.part import Emit, Part
from engine.retries import Retries, client_id_of
from engine.state import Account, ApiKey

API_KEYS_PER_ACCOUNT_MAX = 20
ED25519_PUBLIC_KEY_HEX_LEN = 64
# How long (log time) a signed write's signature is remembered after its timestamp, and how
# far from log time a timestamp may be when the write is applied: three times the largest
# receive window a gateway accepts (60 s), so a signature is forgotten only once no gateway
# can accept it again, with a minute to spare for the leader's clock running ahead of
# the clients'.
SIGNATURE_RETENTION_MS = 180_000


class Access(Part):
    def __init__(
        self,
        state: ExchangeState,
        emit: Emit,
        retries: Retries,
        cancel_all: Callable[[Account, str, str], None],
        dispatch: Callable[[Command], None],
        events: Callable[[], list[Event]],
    ) -> None:
        super().__init__(state, emit)
        self.retries = retries
        self.cancel_all = cancel_all
        self.dispatch = dispatch
        # The events of the command being applied: a signed write spends its TOTP step only
        # if its own command emitted no rejection.
        self.events = events

    def create_account(self, cmd: CreateAccount) -> None:
        name = "CreateAccount"
        accounts = self.state.accounts
        if not cmd.account:
            self.reject("", "", name, RejectCode.INVALID_ORDER, "account id is empty")
        elif cmd.account in accounts:
            self.reject(cmd.account, "", name, RejectCode.ALREADY_EXISTS, "account exists")
        else:
            accounts[cmd.account] = Account(cmd.account)
            self.emit(AccountChanged, cmd.account, True)

    def set_account_enabled(self, cmd: SetAccountEnabled) -> None:
        account = self.state.accounts.get(cmd.account)
        if account is None:
            self.reject(
                cmd.account, "", "SetAccountEnabled", RejectCode.UNKNOWN_ACCOUNT, "unknown account"
            )
            return
        account.enabled = cmd.enabled
        self.emit(AccountChanged, cmd.account, cmd.enabled, cmd.by)
        if not cmd.enabled:
            self.cancel_all(account, "", CancelReason.KILL_SWITCH)

    def set_account_profile(self, cmd: SetAccountProfile) -> None:
        name = "SetAccountProfile"
        account = self.state.accounts.get(cmd.account)
        if account is None:
            self.reject(cmd.account, "", name, RejectCode.UNKNOWN_ACCOUNT, "unknown account")
        elif not cmd.member or not cmd.owner:
            self.reject(
                cmd.account, "", name, RejectCode.INVALID_PROFILE, "member and owner are required"
            )
        elif cmd.lei and not _is_lei(cmd.lei):
            self.reject(
                cmd.account,
                "",
                name,
                RejectCode.INVALID_PROFILE,
                "an LEI is 20 characters: 18 of upper-case letters and digits, 2 check digits",
            )
        elif cmd.capacity == TradingCapacity.ACCOUNT_DEFAULT:
            self.reject(
                cmd.account, "", name, RejectCode.INVALID_PROFILE, "capacity is DEAL, MTCH or AOTC"
            )
        else:
            account.member, account.owner, account.lei = cmd.member, cmd.owner, cmd.lei
            account.capacity = int(cmd.capacity)
            self.emit(
                AccountProfileChanged,
                cmd.account,
                cmd.member,
                cmd.owner,
                cmd.lei,
                account.capacity,
                cmd.by,
            )

    # ------------------------------------------------------------- keys and factors

    def add_api_key(self, cmd: AddApiKey) -> None:
        problem = self._api_key_problem(cmd)
        if problem is not None:
            self.reject(cmd.account, "", "AddApiKey", *problem)
            return
        self.state.api_keys[cmd.key_id] = ApiKey(
            cmd.account, cmd.key_id, int(cmd.kind), cmd.material, cmd.scopes
        )
        self.emit(ApiKeyChanged, cmd.account, cmd.key_id, int(cmd.kind), cmd.scopes, True)

    def _api_key_problem(self, cmd: AddApiKey) -> tuple[str, str] | None:
        api_keys = self.state.api_keys
        if cmd.account not in self.state.accounts:
            return RejectCode.UNKNOWN_ACCOUNT, "unknown account"
        if not cmd.key_id or not cmd.material:
            return RejectCode.INVALID_KEY, "key id and key material are required"
        if cmd.key_id in api_keys:
            return RejectCode.ALREADY_EXISTS, "key id is taken"
        if not 0 < cmd.scopes <= SCOPES_ALL:
            return RejectCode.INVALID_KEY, f"scopes must be a mask in 1..{int(SCOPES_ALL)}"
        if cmd.kind == KeyKind.ED25519 and not _is_hex(cmd.material, ED25519_PUBLIC_KEY_HEX_LEN):
            return RejectCode.INVALID_KEY, "an Ed25519 public key is 64 hex digits"
        owned = sum(1 for key in api_keys.values() if key.account == cmd.account)
        if owned >= API_KEYS_PER_ACCOUNT_MAX:
            return RejectCode.TOO_MANY_KEYS, f"at most {API_KEYS_PER_ACCOUNT_MAX} keys per account"
        return None

    def revoke_api_key(self, cmd: RevokeApiKey) -> None:
        key = self.state.api_keys.get(cmd.key_id)
        if key is None or key.account != cmd.account:
            self.reject(cmd.account, "", "RevokeApiKey", RejectCode.UNKNOWN_KEY, "no such key")
            return
        del self.state.api_keys[cmd.key_id]
        self.emit(ApiKeyChanged, key.account, key.key_id, key.kind, key.scopes, False)

    def set_second_factor(self, cmd: SetSecondFactor) -> None:
        name = "SetSecondFactor"
        if cmd.request_id and self.retries.answered_before(
            (cmd.account, cmd.request_id), cmd, name
        ):
            return
        if cmd.account not in self.state.accounts:
            self.reject(cmd.account, "", name, RejectCode.UNKNOWN_ACCOUNT, "unknown account")
        elif not cmd.material:
            self.reject(cmd.account, "", name, RejectCode.INVALID_KEY, "secret is required")
        else:
            self.state.second_factors[cmd.account] = cmd.material
            event = self.emit(SecondFactorSet, cmd.account)
            self.retries.remember(cmd.account, cmd.request_id, cmd, event)

    def signed(self, cmd: Signed) -> None:
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
        state = self.state
        now = state.now_ms
        signatures = state.signatures
        expiries = state.signature_expiries
        while expiries and expiries[0][0] < now:
            del signatures[heapq.heappop(expiries)[1]]
        if abs(now - cmd.timestamp_ms) > SIGNATURE_RETENTION_MS:
            self.reject(
                account,
                client_id_of(inner),
                name,
                RejectCode.STALE_REQUEST,
                f"signed at {cmd.timestamp_ms}, more than {SIGNATURE_RETENTION_MS} ms from"
                f" log time {now}",
            )
            return
        retry = self.retries.is_retry(inner)
        if not retry:
            if cmd.signature in signatures:
                self.reject(
                    account,
                    client_id_of(inner),
                    name,
                    RejectCode.REPLAYED_REQUEST,
                    "this signed request was already applied",
                )
                return
            if cmd.totp_step and cmd.totp_step <= state.totp_steps.get(account, 0):
                self.reject(
                    account,
                    client_id_of(inner),
                    name,
                    RejectCode.SECOND_FACTOR_USED,
                    "this TOTP code (or a later one) was already used",
                )
                return
            until = max(cmd.timestamp_ms, now) + SIGNATURE_RETENTION_MS
            signatures[cmd.signature] = until
            heapq.heappush(expiries, (until, cmd.signature))
        start = len(self.events())
        self.dispatch(inner)
        spent = cmd.totp_step and not retry
        if spent and not any(type(e) is Rejected for e in self.events()[start:]):
            state.totp_steps[account] = cmd.totp_step


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _is_lei(lei: str) -> bool:
    """ISO 17442: 18 alphanumerics and 2 check digits, ISO 7064 MOD 97-10 over the whole."""
    if len(lei) != 20 or not lei.isascii() or not lei.isalnum() or lei != lei.upper():
        return False
    if not lei[18:].isdigit():
        return False
    return int("".join(str(int(c, 36)) for c in lei)) % 97 == 1
