"""The invariant check passes on states the engine reaches and catches broken ones."""

import pytest
from conftest import ALICE, BOB, BUY, SELL, make_exchange, rest

from bench.workload import standard_workload
from engine import Exchange, InvariantBroken
from engine.commands import PlaceOrder, Tick
from engine.invariants import invariant_problems
from engine.state import PriceLevel


def test_a_long_workload_keeps_every_invariant() -> None:
    workload = standard_workload(5_000, seed=3, account_count=30, symbol_count=3)
    ex = Exchange()
    for n, command in enumerate(workload.setup + workload.commands):
        ex.apply(command, 1_000 + n)
    assert ex.orders, "the workload leaves orders resting"
    assert invariant_problems(ex) == []


def test_broken_states_are_named(ex: Exchange) -> None:
    buy = rest(ex, ALICE, BUY, 3, 99)
    rest(ex, BOB, SELL, 2, 101)
    assert invariant_problems(ex) == []
    ex.orders[buy].held += 1
    ex.instruments["ACME"].asks.peekitem(0)[1].qty += 5
    ex.accounts[BOB].balances["ACME"].held += 1
    problems = invariant_problems(ex)
    assert any(f"order {buy} holds" in p for p in problems)
    assert any("bob ACME: held" in p for p in problems)
    assert any("ACME level 101" in p for p in problems)


def test_checked_mode_stops_at_the_first_command_after_a_state_goes_wrong(ex: Exchange) -> None:
    rest(ex, ALICE, BUY, 3, 99)
    ex.accounts[BOB].balances["USD"].available += 7  # money from nowhere
    with pytest.raises(InvariantBroken, match=r"USD: .* deposited less withdrawn"):
        ex.apply(Tick(), 2_000)


def test_checked_mode_finds_a_hold_that_does_not_cover_its_order(ex: Exchange) -> None:
    buy = rest(ex, ALICE, BUY, 3, 99)
    ex.orders[buy].held -= 1
    ex.accounts[ALICE].balances["USD"].held -= 1
    ex.accounts[ALICE].balances["USD"].available += 1
    with pytest.raises(InvariantBroken, match=f"order {buy} holds"):
        rest(ex, BOB, SELL, 1, 105)


def test_checked_mode_finds_a_crossed_book(ex: Exchange) -> None:
    rest(ex, BOB, SELL, 1, 101)
    ex.instruments["ACME"].bids[-105] = PriceLevel(BUY, 105)  # above the best ask
    with pytest.raises(InvariantBroken, match="ACME is crossed"):
        rest(ex, BOB, SELL, 1, 109)


def test_a_retry_in_the_same_entry_is_no_break_in_the_numbering() -> None:
    """A node checks a whole entry's events at once; a retry answered with its original
    outcome (an old number) inside that entry is not a gap or a repeat of new events."""
    ex = Exchange.restore(make_exchange().snapshot())
    order = PlaceOrder(ALICE, "ACME", BUY, 1, 99, client_order_id="once")
    entry = ex.apply(order, 2_000) + ex.apply(order, 2_000) + ex.apply(Tick(), 2_000)
    seqs = [event.seq for event in entry]
    assert len(seqs) > len(set(seqs)), "the retry repeats its outcome's number"
    ex.check(entry)


def test_a_gap_in_an_entrys_numbering_is_found() -> None:
    ex = Exchange.restore(make_exchange().snapshot())
    entry = ex.apply(PlaceOrder(ALICE, "ACME", BUY, 1, 99), 2_000)
    with pytest.raises(InvariantBroken, match="numbered"):
        ex.check(entry[1:])
