"""Signed writes: one effect per signature and per TOTP step, in the whole replicated state.

A node's gateway checks a signature and a TOTP code; only the state machine, which every
node applies in the same order, can tell that another node already let the same ones in.
"""

import pytest
from conftest import ALICE, BOB, BUY, QUOTE, SYMBOL, T0, apply_rejected, one, rest

from engine import Exchange, RejectCode
from engine.access import SIGNATURE_RETENTION_MS
from engine.codes import KeyKind, Scope
from engine.commands import (
    AddApiKey,
    CancelOrder,
    CommandDecodeError,
    MassCancel,
    PlaceOrder,
    SetSecondFactor,
    Signed,
    Withdraw,
    command_from_wire,
    command_to_wire,
    signed_inner,
)
from engine.events import Accepted, ApiKeyChanged, BalanceChanged, Cancelled, Rejected

SIG_A = "a" * 32
SIG_B = "b" * 32
STEP = 56_666_666


def signed(command: object, signature: str = SIG_A, ts_ms: int = T0, step: int = 0) -> Signed:
    return Signed(signature, ts_ms, step, command)  # type: ignore[arg-type]


def test_a_signed_order_places_once_and_its_replay_gets_the_original_outcome(
    ex: Exchange,
) -> None:
    order = PlaceOrder(ALICE, SYMBOL, BUY, 5, 95, client_order_id="c1")
    first = one(ex.apply(signed(order), T0), Accepted)
    again = ex.apply(signed(order), T0 + 1_000)
    assert again == [first]
    assert len(ex.orders) == 1


def test_a_signature_moved_onto_another_write_is_refused(ex: Exchange) -> None:
    """The same signature with other parameters (a request re-split between query and body)."""
    ex.apply(signed(PlaceOrder(ALICE, SYMBOL, BUY, 5, 95, client_order_id="bn-77")), T0)
    moved = PlaceOrder(ALICE, SYMBOL, BUY, 5, 95, client_order_id="bn-7")
    event = apply_rejected(ex, signed(moved), RejectCode.REPLAYED_REQUEST)
    assert (event.account, event.client_id, event.command) == (ALICE, "bn-7", "PlaceOrder")


def test_a_replayed_mass_cancel_leaves_later_orders_alone(ex: Exchange) -> None:
    rest(ex, ALICE, BUY, 1, 95)
    cancelled = ex.apply(signed(MassCancel(ALICE, SYMBOL)), T0)
    assert len([e for e in cancelled if isinstance(e, Cancelled)]) == 1
    later = rest(ex, ALICE, BUY, 1, 96)
    apply_rejected(ex, signed(MassCancel(ALICE, SYMBOL)), RejectCode.REPLAYED_REQUEST)
    assert later in ex.orders


def test_a_signature_that_reached_the_log_counts_even_if_its_write_was_refused(
    ex: Exchange,
) -> None:
    """A replay must not apply, later, a write whose first try the engine refused."""
    order_id = rest(ex, BOB, BUY, 1, 95)
    refused = ex.apply(signed(CancelOrder(ALICE, order_id)), T0)
    assert one(refused, Rejected).code == RejectCode.UNKNOWN_ORDER
    apply_rejected(ex, signed(CancelOrder(ALICE, order_id)), RejectCode.REPLAYED_REQUEST)


def test_signatures_are_forgotten_once_no_gateway_could_accept_them(ex: Exchange) -> None:
    ex.apply(signed(MassCancel(ALICE)), T0)
    assert SIG_A in ex.signatures
    later = T0 + SIGNATURE_RETENTION_MS + 1
    ex.apply(signed(MassCancel(BOB), SIG_B, later), later)
    assert list(ex.signatures) == [SIG_B]
    stale = apply_rejected(ex, signed(MassCancel(ALICE)), RejectCode.STALE_REQUEST)
    assert "log time" in stale.message


def test_each_signature_is_forgotten_at_its_own_time(ex: Exchange) -> None:
    """A write signed ahead of log time is remembered longer than one applied after it: the
    later one is still forgotten when its own time is up (found by the property test)."""
    ahead = T0 + 60_000
    ex.apply(signed(MassCancel(ALICE), SIG_A, ahead), T0)
    ex.apply(signed(MassCancel(BOB), SIG_B, T0 + 1), T0 + 1)
    past_b = T0 + 1 + SIGNATURE_RETENTION_MS + 1
    ex.apply(signed(MassCancel(BOB), "c" * 32, past_b), past_b)
    assert set(ex.signatures) == {SIG_A, "c" * 32}


def test_a_timestamp_far_ahead_of_log_time_is_refused(ex: Exchange) -> None:
    ahead = T0 + SIGNATURE_RETENTION_MS + 1
    apply_rejected(ex, signed(MassCancel(ALICE), ts_ms=ahead), RejectCode.STALE_REQUEST, T0)


def test_a_totp_step_is_spent_once_in_order_and_only_by_a_write_that_succeeds(
    ex: Exchange,
) -> None:
    too_much = Withdraw(ALICE, QUOTE, 10**9, "w1")
    refused = ex.apply(signed(too_much, SIG_A, step=STEP), T0)
    assert one(refused, Rejected).code == RejectCode.INSUFFICIENT_FUNDS
    assert ALICE not in ex.totp_steps, "a refused withdrawal spent its code"
    done = ex.apply(signed(Withdraw(ALICE, QUOTE, 100, "w2"), SIG_B, step=STEP), T0)
    assert one(done, BalanceChanged).available == 1_000_000 - 100
    assert ex.totp_steps == {ALICE: STEP}
    for step, signature in ((STEP, "c" * 32), (STEP - 1, "d" * 32)):
        apply_rejected(
            ex,
            signed(Withdraw(ALICE, QUOTE, 100, f"w-{step}"), signature, step=step),
            RejectCode.SECOND_FACTOR_USED,
        )
    # Another account's steps are its own.
    one(ex.apply(signed(Withdraw(BOB, QUOTE, 1, "b1"), "e" * 32, step=STEP), T0), BalanceChanged)


def test_a_retry_of_a_write_that_spent_a_code_gets_its_original_outcome(ex: Exchange) -> None:
    """The client's retry: a new signature, the same request id, the same (spent) step."""
    withdrawal = Withdraw(ALICE, QUOTE, 100, "w1")
    first = ex.apply(signed(withdrawal, SIG_A, step=STEP), T0)
    assert ex.apply(signed(withdrawal, SIG_B, step=STEP), T0) == [first[-1]]  # the balance
    assert ex.balance(ALICE, QUOTE)[0] == 1_000_000 - 100


def test_security_actions_spend_codes_too(ex: Exchange) -> None:
    key = AddApiKey(ALICE, "k1", KeyKind.HMAC, "sealed", int(Scope.READ))
    one(ex.apply(signed(key, step=STEP), T0), ApiKeyChanged)
    factor = SetSecondFactor(ALICE, "sealed-2", "sig-x")
    apply_rejected(ex, signed(factor, SIG_B, step=STEP), RejectCode.SECOND_FACTOR_USED)


def test_signatures_and_steps_survive_a_snapshot_and_count_in_the_hash(ex: Exchange) -> None:
    before = ex.state_hash()
    ex.apply(signed(Withdraw(ALICE, QUOTE, 1, "w1"), SIG_A, step=STEP), T0)
    ex.apply(signed(MassCancel(BOB), SIG_B, T0 + 5), T0 + 5)
    assert ex.state_hash() != before
    restored = Exchange.restore(ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    assert [digest for _, digest in sorted(restored.signature_expiries)] == [SIG_A, SIG_B]
    assert restored.totp_steps == {ALICE: STEP}
    apply_rejected(restored, signed(MassCancel(BOB), SIG_B), RejectCode.REPLAYED_REQUEST)


def test_the_signed_wire_carries_the_command_and_refuses_nesting() -> None:
    command = signed(PlaceOrder(ALICE, SYMBOL, BUY, 5, 95, client_order_id="c1"), step=7)
    wire = command_to_wire(command)
    assert command_from_wire(wire) == command
    assert signed_inner(wire) == command_to_wire(command.command)
    nested = [wire[0], SIG_A, T0, 0, wire]
    with pytest.raises(CommandDecodeError, match="signed command inside another"):
        command_from_wire(nested)
    with pytest.raises(CommandDecodeError):
        command_from_wire([wire[0], SIG_A, T0, 0, "not a command"])
