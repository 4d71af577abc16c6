"""The invariant check passes on states the engine reaches and catches broken ones."""

from conftest import ALICE, BOB, BUY, SELL, rest

from bench.workload import standard_workload
from engine import Exchange
from engine.invariants import invariant_problems


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
