"""Commands on the wire: `[tag, field, ...]` arrays that survive msgpack, and the decode
errors for anything that is not a well-typed command."""

from typing import Any

import msgpack
import pytest

from engine import OrderType, SelfTradePrevention, Side, TimeInForce, TradingStatus
from engine.commands import (
    CLIENT_ID_LEN_MAX,
    NAME_LEN_MAX,
    AddInstrument,
    AmendOrder,
    CancelOrder,
    Command,
    CommandDecodeError,
    CreateAccount,
    Deposit,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    SetTradingStatus,
    Tick,
    UpdateInstrument,
    Withdraw,
    checked_bytes,
    command_from_bytes,
    command_from_wire,
    command_to_bytes,
    command_to_wire,
)

EVERY_COMMAND: list[Command] = [
    AddInstrument("ACME", "ACME", "USD", 5, 10, 20, 500, 10**9, 300, 1, 2, 200, 1_000),
    AddInstrument("HALT", "HALT", "USD", status=TradingStatus.HALTED),
    UpdateInstrument("ACME", max_qty=900),
    SetTradingStatus("ACME", TradingStatus.CLOSED),
    CreateAccount("alice"),
    Deposit("alice", "USD", 2**62 - 1, request_id="dep-1"),
    Withdraw("alice", "USD", 5),
    SetAccountEnabled("alice", False),
    PlaceOrder(
        "alice",
        "ACME",
        Side.SELL,
        30,
        105,
        OrderType.STOP_LIMIT,
        TimeInForce.GTD,
        "c" * CLIENT_ID_LEN_MAX,
        110,
        10,
        True,
        SelfTradePrevention.DECREMENT,
        1_700_000_000_000,
    ),
    PlaceOrder("bob", "ACME", Side.BUY, 1),
    CancelOrder("alice", 7),
    CancelOrder("alice", client_order_id="c-1"),
    AmendOrder("alice", 7, qty=20, price=-1),
    MassCancel("alice", "ACME"),
    Tick(),
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: type(c).__name__)
def test_every_command_survives_msgpack(command: Command) -> None:
    packed = msgpack.packb(command_to_wire(command), use_bin_type=True)
    decoded = command_from_wire(msgpack.unpackb(packed, raw=False))
    assert decoded == command
    assert type(decoded) is type(command)


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: type(c).__name__)
def test_every_command_decodes_from_its_own_wire_form(command: Command) -> None:
    # A batch built in the same process (no msgpack in between) must decode too.
    assert command_from_wire(command_to_wire(command)) == command


def test_the_wire_form_carries_enums_as_plain_ints() -> None:
    command = PlaceOrder("bob", "ACME", Side.SELL, 3, 101, OrderType.LIMIT, TimeInForce.IOC)
    wire = command_to_wire(command)
    assert [type(value) for value in wire[3:8]] == [int] * 5


def test_the_wire_form_is_the_tag_then_the_fields_in_order() -> None:
    command = PlaceOrder("bob", "ACME", Side.SELL, 3, 101, client_order_id="b-1")
    assert command_to_wire(command) == [
        8,
        "bob",
        "ACME",
        1,
        3,
        101,
        0,
        0,
        "b-1",
        0,
        0,
        False,
        0,
        0,
        0,
    ]
    assert command_to_wire(Tick()) == [12]


def test_enum_fields_decode_to_their_enums() -> None:
    decoded = command_from_wire([8, "bob", "ACME", 1, 3, 101, 1, 2])
    assert isinstance(decoded, PlaceOrder)
    assert decoded.side is Side.SELL
    assert decoded.order_type is OrderType.MARKET
    assert decoded.tif is TimeInForce.FOK


def test_fields_left_off_the_end_take_their_defaults() -> None:
    assert command_from_wire([9, "alice", 7]) == CancelOrder("alice", 7)


BAD_WIRES: list[tuple[str, Any]] = [
    ("not an array", {"tag": 8}),
    ("a string", "PlaceOrder"),
    ("an empty array", []),
    ("an unknown tag", [99]),
    ("tag zero", [0]),
    ("a tag given as a string", ["8", "bob"]),
    ("a tag given as a boolean", [True, "alice"]),
    ("a tag given as a float", [12.0]),
    ("too many fields", [12, "extra"]),
    ("a required field missing", [8, "bob", "ACME"]),
    ("an integer where a string goes", [4, 123]),
    ("bytes where a string goes", [4, b"alice"]),
    ("a string where an integer goes", [5, "alice", "USD", "100"]),
    ("a float where an integer goes", [5, "alice", "USD", 1.5]),
    ("a boolean where an integer goes", [5, "alice", "USD", True]),
    ("None where an integer goes", [5, "alice", "USD", None]),
    ("an integer where a boolean goes", [7, "alice", 0]),
    ("an integer above 64 bits", [5, "alice", "USD", 2**63]),
    ("an integer below 64 bits", [5, "alice", "USD", -(2**63) - 1]),
    ("a side that does not exist", [8, "bob", "ACME", 2, 1]),
    ("an order type that does not exist", [8, "bob", "ACME", 0, 1, 100, 9]),
    ("a time in force that does not exist", [8, "bob", "ACME", 0, 1, 100, 0, -1]),
    ("a trading status that does not exist", [3, "ACME", 7]),
    ("a side given as a string", [8, "bob", "ACME", "BUY", 1]),
    ("an account name too long", [4, "a" * (NAME_LEN_MAX + 1)]),
    ("a client order id too long", [9, "alice", 0, "c" * (CLIENT_ID_LEN_MAX + 1)]),
    ("a request id too long", [5, "alice", "USD", 1, "r" * (CLIENT_ID_LEN_MAX + 1)]),
]


@pytest.mark.parametrize("wire", [pytest.param(w, id=story) for story, w in BAD_WIRES])
def test_a_malformed_wire_command_is_a_decode_error(wire: Any) -> None:
    with pytest.raises(CommandDecodeError):
        command_from_wire(wire)


def test_names_and_ids_at_their_length_limit_decode() -> None:
    name = "a" * NAME_LEN_MAX
    assert command_from_wire([4, name]) == CreateAccount(name)
    request_id = "r" * CLIENT_ID_LEN_MAX
    assert command_from_wire([5, "alice", "USD", 1, request_id]) == Deposit(
        "alice", "USD", 1, request_id
    )


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: type(c).__name__)
def test_every_command_travels_as_bytes_and_decodes_once_where_applied(command: Command) -> None:
    data = checked_bytes(command)
    assert data == command_to_bytes(command)
    assert command_from_bytes(data) == command


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", msgpack.packb({"not": "a wire"}), msgpack.packb([]), "text", None],
)
def test_bytes_that_are_not_a_command_are_a_decode_error(data: Any) -> None:
    with pytest.raises(CommandDecodeError):
        command_from_bytes(data)


def test_a_command_the_nodes_would_refuse_is_refused_at_the_edge() -> None:
    """Built by code at the edge, checked there as every node's apply would check it."""
    too_long = CreateAccount("a" * (NAME_LEN_MAX + 1))
    with pytest.raises(CommandDecodeError, match="longer than"):
        checked_bytes(too_long)
    with pytest.raises(CommandDecodeError, match="cannot be encoded"):
        command_to_bytes(Deposit("alice", "USD", 2**64))
