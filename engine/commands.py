"""Commands: the only inputs of the state machine.

Commands are built at the edges (API, admin CLI, workload generator) and travel
through the Raft log as msgpack arrays `[tag, field, ...]`. They are frozen so
that the idempotency table can keep the original command and compare a retry
with it field by field.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

import msgpack

from engine.codes import (
    KeyKind,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TradingCapacity,
    TradingStatus,
)

CLIENT_ID_LEN_MAX = 64
NAME_LEN_MAX = 32
# Key material: an Ed25519 public key in hex, or a secret sealed with the cluster key.
MATERIAL_LEN_MAX = 512
# A calendar's holidays: a few years of ISO dates, comma-separated.
HOLIDAYS_LEN_MAX = 4_096


class CommandDecodeError(ValueError):
    """A wire command that cannot be turned into a typed command (bad tag, field or type)."""


@dataclass(slots=True, frozen=True)
class AddInstrument:
    symbol: str
    base: str
    quote: str
    tick_size: int = 1
    lot_size: int = 1
    min_qty: int = 1
    max_qty: int = 1_000_000
    max_notional: int = 10**12
    price_band_bps: int = 1000
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    reference_price: int = 0
    halt_pause_ms: int = 60_000
    status: TradingStatus = TradingStatus.OPEN
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class UpdateInstrument:
    """Changes the limits and fees of an instrument; a field left at -1 keeps its value."""

    symbol: str
    tick_size: int = -1
    lot_size: int = -1
    min_qty: int = -1
    max_qty: int = -1
    max_notional: int = -1
    price_band_bps: int = -1
    maker_fee_bps: int = -1
    taker_fee_bps: int = -1
    reference_price: int = -1
    halt_pause_ms: int = -1
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class SetTradingStatus:
    symbol: str
    status: TradingStatus
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class CreateAccount:
    account: str


@dataclass(slots=True, frozen=True)
class Deposit:
    account: str
    asset: str
    amount: int
    request_id: str = ""


@dataclass(slots=True, frozen=True)
class Withdraw:
    account: str
    asset: str
    amount: int
    request_id: str = ""


@dataclass(slots=True, frozen=True)
class SetAccountEnabled:
    """The kill switch: disabling an account cancels its open orders and blocks new ones."""

    account: str
    enabled: bool
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class PlaceOrder:
    account: str
    symbol: str
    side: Side
    qty: int
    price: int = 0
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    client_order_id: str = ""
    stop_price: int = 0
    display_qty: int = 0
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    expire_time_ms: int = 0
    capacity: TradingCapacity = TradingCapacity.ACCOUNT_DEFAULT


@dataclass(slots=True, frozen=True)
class CancelOrder:
    """Cancels by engine order id, or by client order id when order_id is 0."""

    account: str
    order_id: int = 0
    client_order_id: str = ""


@dataclass(slots=True, frozen=True)
class AmendOrder:
    """New total quantity and/or price of an order (by id, or by client order id when
    order_id is 0); 0 keeps the current value.

    Quantity down keeps time priority; a price change or quantity up loses it.
    """

    account: str
    order_id: int = 0
    client_order_id: str = ""
    qty: int = 0
    price: int = 0


@dataclass(slots=True, frozen=True)
class MassCancel:
    account: str
    symbol: str = ""


@dataclass(slots=True, frozen=True)
class Tick:
    """Carries only time: an idle leader appends one so expiries and pauses still end."""


@dataclass(slots=True, frozen=True)
class AddAsset:
    """Fixes how many decimals the API shows for an asset's integer minor units.

    Set once: changing it later would silently rescale every balance a client sees.
    """

    asset: str
    decimals: int


@dataclass(slots=True, frozen=True)
class AddApiKey:
    """Registers an API key of an account.

    `material` is the Ed25519 public key (hex) or, for HMAC keys, the shared
    secret sealed with the cluster key: no usable secret enters the log.
    """

    account: str
    key_id: str
    kind: KeyKind
    material: str
    scopes: int


@dataclass(slots=True, frozen=True)
class RevokeApiKey:
    account: str
    key_id: str


@dataclass(slots=True, frozen=True)
class SetSecondFactor:
    """Enrols (or replaces) an account's TOTP secret, sealed with the cluster key.

    `request_id` makes it apply at most once: a replayed request (a new secret under
    the same id) is rejected, so a replay can never swap in a secret its sender sees.
    """

    account: str
    material: str
    request_id: str = ""


@dataclass(slots=True, frozen=True)
class SetAccountProfile:
    """An account's reference data for compliance: the member firm it trades through, its
    beneficial owner (what wash-trade surveillance compares), an optional LEI, and the
    trading capacity its orders carry unless they say otherwise."""

    account: str
    member: str
    owner: str
    lei: str = ""
    capacity: TradingCapacity = TradingCapacity.DEAL
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class SetRateLimit:
    """A pre-trade control: at most `messages_per_s` order messages (new orders, amends,
    cancels) of the account in one second of log time; 0 lifts the limit. Counted on log
    time, so every node refuses the same message."""

    account: str
    messages_per_s: int
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class SetMemberRateLimit:
    """The same control for a member firm: at most `messages_per_s` order messages of all
    its accounts together in one second of log time; 0 lifts it."""

    member: str
    messages_per_s: int
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class SetCalendar:
    """An instrument's trading day, in its own time zone (an IANA name; "" clears the
    calendar: continuous trading all the time).

    Times are seconds after the start of a session on the local wall clock; a session
    lasts `day_s` (86,400: one a day; a divisor of it for a short demo day). Pre-open
    (the opening call) runs from `pre_open_s`, the opening auction uncrosses at `open_s`,
    the closing call runs from `pre_close_s` to the closing auction at `close_s`, post-close
    until `post_close_s`, then closed. Sessions run on the weekdays of `trading_days`
    (bit 0 Monday) except `holidays` (comma-separated ISO dates).
    """

    symbol: str
    time_zone: str
    pre_open_s: int = 0
    open_s: int = 0
    pre_close_s: int = 0
    close_s: int = 0
    post_close_s: int = 0
    day_s: int = 86_400
    trading_days: int = 0b0011111
    holidays: str = ""
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class SetLimitUpLimitDown:
    """Price bands as in the US Limit Up-Limit Down plan, in place of the band around the
    last price (`band_bps` 0 turns them off).

    The reference is the mean price of the trades of the last `window_ms` (it stays put
    while there are none); the band is `band_bps` either side of it (the instrument's tier),
    doubled in the first `open_ms` after the opening auction and the last `close_ms` before
    the closing auction of a calendar's session. Nothing executes outside the band; when
    the best bid reaches the upper band (or the best ask the lower) the symbol is in a
    limit state, and if the book is still there `limit_state_ms` later, trading pauses for
    `pause_ms` and reopens with an auction.
    """

    symbol: str
    band_bps: int
    window_ms: int = 300_000
    limit_state_ms: int = 15_000
    pause_ms: int = 300_000
    open_ms: int = 900_000
    close_ms: int = 1_500_000
    # Who made the change (an operator's name, from the admin CLI's --operator): audited.
    by: str = ""


@dataclass(slots=True, frozen=True)
class Signed:
    """A client's write with what its signature and second factor proved at the edge.

    A node's gateway checks the signature and the TOTP code; the state machine makes
    both single-use in the whole cluster, which no node can do alone: the digest of a
    signature that reached the log is remembered for as long as its timestamp could
    still pass a gateway, and an account's TOTP time steps are spent in order, by
    writes that succeed. `totp_step` 0: the write spends no code.
    """

    signature: str
    timestamp_ms: int
    totp_step: int
    command: Command


Command = (
    AddInstrument
    | UpdateInstrument
    | SetTradingStatus
    | CreateAccount
    | Deposit
    | Withdraw
    | SetAccountEnabled
    | PlaceOrder
    | CancelOrder
    | AmendOrder
    | MassCancel
    | Tick
    | AddAsset
    | AddApiKey
    | RevokeApiKey
    | SetSecondFactor
    | Signed
    | SetAccountProfile
    | SetRateLimit
    | SetMemberRateLimit
    | SetCalendar
    | SetLimitUpLimitDown
)

# Wire tags are part of the log format: never renumber, only append.
COMMAND_TAGS: dict[type, int] = {
    AddInstrument: 1,
    UpdateInstrument: 2,
    SetTradingStatus: 3,
    CreateAccount: 4,
    Deposit: 5,
    Withdraw: 6,
    SetAccountEnabled: 7,
    PlaceOrder: 8,
    CancelOrder: 9,
    AmendOrder: 10,
    MassCancel: 11,
    Tick: 12,
    AddAsset: 13,
    AddApiKey: 14,
    RevokeApiKey: 15,
    SetSecondFactor: 16,
    Signed: 17,
    SetAccountProfile: 18,
    SetRateLimit: 19,
    SetMemberRateLimit: 20,
    SetCalendar: 21,
    SetLimitUpLimitDown: 22,
}
_CLASS_BY_TAG = {tag: cls for cls, tag in COMMAND_TAGS.items()}
_ENUM_FIELDS = {
    "side": Side,
    "order_type": OrderType,
    "tif": TimeInForce,
    "stp": SelfTradePrevention,
    "status": TradingStatus,
    "kind": KeyKind,
    "capacity": TradingCapacity,
}
_ENUMS = frozenset(_ENUM_FIELDS.values())
# An int field that callers fill with an enum member as often as with a plain int (a key's
# scopes: one Scope, or several or-ed together).
_MEMBER_OR_INT_FIELDS = frozenset({"scopes"})
_FIELD_KINDS: dict[str, type] = {"str": str, "int": int, "bool": bool, "Command": list}
_FIELDS: dict[type, tuple[tuple[str, type], ...]] = {}
for _cls in COMMAND_TAGS:
    _FIELDS[_cls] = tuple(
        # Annotations are strings here (postponed evaluation): the kind's name.
        (f.name, _ENUM_FIELDS.get(f.name) or _FIELD_KINDS[str(f.type)])
        for f in fields(_cls)
    )


def _getter(names: tuple[str, ...]) -> Callable[[Command], tuple[Any, ...]]:
    """attrgetter answers a tuple only for two names or more."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    return lambda command: tuple(getattr(command, name) for name in names)


# One C-level getter per class, and the positions (in the wire form) of the fields that
# need converting: a snapshot converts every remembered client order id's command.
_WIRE_GETTERS = {cls: _getter(tuple(name for name, _ in kinds)) for cls, kinds in _FIELDS.items()}
_CONVERTED = {
    cls: tuple(
        i
        for i, (name, kind) in enumerate(kinds, 1)
        if kind is list or kind in _ENUMS or name in _MEMBER_OR_INT_FIELDS
    )
    for cls, kinds in _FIELDS.items()
}


def command_to_wire(command: Command) -> list[Any]:
    """The msgpack-ready form: `[tag, field, ...]` in declaration order, enums as ints."""
    cls = type(command)
    wire = [COMMAND_TAGS[cls], *_WIRE_GETTERS[cls](command)]
    for i in _CONVERTED[cls]:
        wire[i] = _plain(wire[i])
    return wire


def _plain(value: Any) -> Any:
    """Enum members as their int values and a carried command as its own wire form, so the
    wire form is plain JSON and msgpack."""
    if isinstance(value, IntEnum):
        return value.value
    return command_to_wire(value) if type(value) in COMMAND_TAGS else value


def command_to_bytes(command: Command) -> bytes:
    """The form a command travels in, from the edge that validated it to every node's apply:
    the msgpack bytes of its wire form. Raises CommandDecodeError for a value msgpack cannot
    carry (an integer beyond 64 bits)."""
    return wire_to_bytes(command_to_wire(command))


def checked_bytes(command: Command) -> bytes:
    """`command`'s bytes, once every field is checked as the nodes' apply will check it
    (types, lengths, ranges, enum members): a command built at the edge that would not decode
    is refused there (CommandDecodeError), never sent into the log."""
    wire = command_to_wire(command)
    command_from_wire(wire)
    return wire_to_bytes(wire)


def wire_to_bytes(wire: list[Any]) -> bytes:
    """The bytes of a wire form (a command's, or a membership record's)."""
    try:
        return msgpack.packb(wire, use_bin_type=True)
    except (OverflowError, TypeError, ValueError) as exc:
        raise CommandDecodeError(f"command cannot be encoded: {exc}") from None


def wire_from_bytes(data: Any) -> list[Any]:
    """The wire form in a command's bytes; CommandDecodeError if they are not a wire."""
    if type(data) is not bytes:
        raise CommandDecodeError("a command travels as bytes")
    try:
        wire = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CommandDecodeError(f"command bytes do not decode: {exc}") from None
    if type(wire) is not list:
        raise CommandDecodeError("a command is a non-empty array")
    return wire


def command_from_bytes(data: Any) -> Command:
    """A command from the bytes it travelled in: decoded once, where it is applied."""
    return command_from_wire(wire_from_bytes(data))


def command_from_wire(wire: Any) -> Command:
    """Checks every field's type and length; raises CommandDecodeError on anything else.

    Runs for every command on every node (at submission and at apply), so the
    checks are type identity tests against a per-class table, and the message
    of an error is only built when there is one.
    """
    return _from_wire(wire, "")


def _from_wire(wire: Any, carried_by: str) -> Command:
    """`carried_by`: the field of a Signed this command is carried in ("" at the top). A
    signed command inside another is refused before its own fields are read: a thousand
    nested in one message would otherwise take the decoder past Python's recursion limit."""
    if (type(wire) is not list and type(wire) is not tuple) or not wire:
        raise CommandDecodeError("a command is a non-empty array")
    tag = wire[0]
    decoder = _DECODERS.get(tag) if type(tag) is int else None
    if decoder is None:
        raise CommandDecodeError(f"unknown command tag {tag!r}")
    cls, spec = decoder
    if carried_by and cls is Signed:
        raise CommandDecodeError(f"{carried_by}: a signed command inside another")
    count = len(wire) - 1
    if count > len(spec):
        raise CommandDecodeError(f"{cls.__name__}: too many fields")
    values = []
    for position in range(count):
        value = wire[position + 1]
        name, kind, limit, members = spec[position]
        if kind is str:
            if type(value) is not str or len(value) > limit:
                raise _field_error(cls, name, kind, limit, value)
        elif kind is int:
            if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
                raise _field_error(cls, name, kind, limit, value)
        elif kind is bool:
            if type(value) is not bool:
                raise _field_error(cls, name, kind, limit, value)
        elif kind is list:
            value = _from_wire(value, f"{cls.__name__}.{name}")
        else:
            member = members.get(value) if type(value) is int else None
            if member is None:
                raise _field_error(cls, name, kind, limit, value)
            value = member
        values.append(value)
    try:
        return cls(*values)
    except TypeError as exc:
        raise CommandDecodeError(f"{cls.__name__}: {exc}") from None


def signed_inner(wire: list[Any]) -> list[Any]:
    """The wire of the command a Signed wire carries; any other wire as it is. For readers of
    audit records (the chaos checkers), who look at what a client asked for."""
    return wire[4] if wire and wire[0] == COMMAND_TAGS[Signed] and len(wire) == 5 else wire


def _len_max(name: str) -> int:
    if name == "material":
        return MATERIAL_LEN_MAX
    if name == "holidays":
        return HOLIDAYS_LEN_MAX
    return CLIENT_ID_LEN_MAX if name.endswith("_id") else NAME_LEN_MAX


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_DECODERS: dict[int, tuple[type, tuple[tuple[str, type, int, dict[int, Any]], ...]]] = {
    tag: (
        cls,
        tuple(
            (
                name,
                kind,
                _len_max(name),
                {member.value: member for member in kind} if issubclass(kind, IntEnum) else {},
            )
            for name, kind in _FIELDS[cls]
        ),
    )
    for cls, tag in COMMAND_TAGS.items()
}


def _field_error(cls: type, name: str, kind: type, limit: int, value: Any) -> CommandDecodeError:
    where = f"{cls.__name__}.{name}"
    if kind is bool:
        return CommandDecodeError(f"{where}: expected a boolean")
    if kind is str:
        if type(value) is not str:
            return CommandDecodeError(f"{where}: expected a string")
        return CommandDecodeError(f"{where}: longer than {limit} characters")
    if type(value) is not int:
        return CommandDecodeError(f"{where}: expected an integer")
    if kind is int:
        return CommandDecodeError(f"{where}: out of the 64-bit range")
    return CommandDecodeError(f"{where}: {value} is not a valid {kind.__name__}")
