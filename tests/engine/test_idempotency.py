"""Retries: a command repeated with the same client or request id is applied once and
the retry gets the original outcome back, changing nothing."""

from conftest import (
    ALICE,
    BASE,
    BOB,
    BUY,
    CASH,
    QUOTE,
    SELL,
    SHARES,
    SYMBOL,
    T0,
    one,
    place,
    rejected,
    rest,
)

from engine import Exchange, RejectCode
from engine.commands import Command, Deposit, PlaceOrder, Withdraw
from engine.events import Accepted, BalanceChanged, Event, Rejected, Transferred
from engine.retries import CLIENT_ID_RETENTION_MS


def retry(ex: Exchange, command: Command, original: Event) -> None:
    """Repeats `command`: the answer is the original event itself and nothing changes."""
    seq, state_hash = ex.seq, ex.state_hash()
    events = ex.apply(command)
    assert len(events) == 1 and events[0] is original
    assert (ex.seq, ex.state_hash()) == (seq, state_hash)


def test_a_retried_order_is_placed_once_and_returns_its_acceptance(ex: Exchange) -> None:
    command = PlaceOrder(BOB, SYMBOL, BUY, 5, 99, client_order_id="b-1")
    accepted = one(ex.apply(command), Accepted)
    retry(ex, command, accepted)
    retry(ex, command, accepted)
    assert ex.depth(SYMBOL) == ([(99, 5, 1)], [])
    assert ex.balance(BOB, QUOTE) == (CASH - 495, 495)


def test_a_retry_after_the_order_filled_does_not_trade_again(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 10, 100)
    command = PlaceOrder(BOB, SYMBOL, BUY, 5, 100, client_order_id="b-1")
    accepted = one(ex.apply(command), Accepted)
    retry(ex, command, accepted)
    assert ex.balance(BOB, BASE) == (SHARES + 5, 0)
    assert ex.depth(SYMBOL) == ([], [(100, 5, 1)])


def test_a_retried_rejection_stays_rejected_even_if_it_would_now_pass(ex: Exchange) -> None:
    command = PlaceOrder(ALICE, SYMBOL, SELL, SHARES + 5, 100, client_order_id="a-1")
    refusal = rejected(ex.apply(command), RejectCode.INSUFFICIENT_SHARES)
    ex.apply(Deposit(ALICE, BASE, 10))
    retry(ex, command, refusal)
    assert not ex.orders


def test_the_same_client_id_for_a_different_order_is_a_duplicate(ex: Exchange) -> None:
    command = PlaceOrder(BOB, SYMBOL, BUY, 5, 99, client_order_id="b-1")
    accepted = one(ex.apply(command), Accepted)
    s = ex.seq
    events = place(ex, BOB, BUY, 5, 98, client_order_id="b-1")
    assert events == [
        Rejected(
            s + 1,
            T0,
            BOB,
            "b-1",
            "PlaceOrder",
            RejectCode.DUPLICATE_CLIENT_ORDER_ID,
            events[0].message,
        )
    ]
    # The first order is still the one the id names.
    retry(ex, command, accepted)
    assert ex.depth(SYMBOL) == ([(99, 5, 1)], [])


def test_client_ids_belong_to_one_account(ex: Exchange) -> None:
    one(place(ex, BOB, BUY, 5, 99, client_order_id="x"), Accepted)
    one(place(ex, ALICE, BUY, 5, 99, client_order_id="x"), Accepted)
    assert ex.depth(SYMBOL) == ([(99, 10, 2)], [])


def test_a_retried_deposit_credits_once(ex: Exchange) -> None:
    command = Deposit(BOB, QUOTE, 250, request_id="dep-1")
    s = ex.seq
    events = ex.apply(command)
    assert events == [
        Transferred(s + 1, T0, BOB, QUOTE, 250, "dep-1"),
        BalanceChanged(s + 2, T0, BOB, QUOTE, CASH + 250, 0),
    ]
    retry(ex, command, events[1])  # the outcome a retry gets: the new balance
    assert ex.balance(BOB, QUOTE) == (CASH + 250, 0)


def test_a_retried_withdrawal_debits_once(ex: Exchange) -> None:
    command = Withdraw(BOB, QUOTE, 250, request_id="wd-1")
    original = one(ex.apply(command), BalanceChanged)
    retry(ex, command, original)
    assert ex.balance(BOB, QUOTE) == (CASH - 250, 0)


def test_a_retried_refused_withdrawal_stays_refused(ex: Exchange) -> None:
    command = Withdraw(BOB, QUOTE, CASH + 1, request_id="wd-1")
    refusal = rejected(ex.apply(command), RejectCode.INSUFFICIENT_FUNDS)
    ex.apply(Deposit(BOB, QUOTE, 10))
    retry(ex, command, refusal)
    assert ex.balance(BOB, QUOTE) == (CASH + 10, 0)


def test_client_ids_are_remembered_for_a_day_of_log_time(ex: Exchange) -> None:
    first = one(place(ex, ALICE, BUY, 1, 95, client_order_id="day-1"), Accepted)
    place(ex, ALICE, BUY, 1, 94, client_order_id="day-2")
    within = place(ex, ALICE, BUY, 1, 95, T0 + CLIENT_ID_RETENTION_MS - 1, client_order_id="day-1")
    assert within == [first], "a retry within the retention gets its original outcome"
    restored = Exchange.restore(ex.snapshot())
    later = T0 + CLIENT_ID_RETENTION_MS + 1
    for exchange in (ex, restored):
        fresh = one(place(exchange, ALICE, BUY, 2, 96, later, client_order_id="day-1"), Accepted)
        assert fresh.order_id != first.order_id and fresh.qty == 2
        assert ("alice", "day-2") not in exchange.client_ids
    assert ex.state_hash() == restored.state_hash()
