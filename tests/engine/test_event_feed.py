"""The event feed: gap-free sequence numbers, log time, and the balance and level views
that close every command."""

from conftest import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    CASH,
    NEXT_MIDNIGHT_MS,
    QUOTE,
    SELL,
    SYMBOL,
    T0,
    balance_views,
    core,
    place,
    rest,
)

from engine import Exchange, OrderType, SelfTradePrevention, TimeInForce
from engine.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    Deposit,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    Tick,
    Withdraw,
)
from engine.events import BalanceChanged, Event, LevelChanged


def test_sequence_numbers_have_no_gaps_across_every_kind_of_command(ex: Exchange) -> None:
    start = ex.seq
    commands: list[tuple[Command, int]] = [
        (PlaceOrder(ALICE, SYMBOL, SELL, 5, 101, tif=TimeInForce.DAY), 0),
        (PlaceOrder(ALICE, SYMBOL, SELL, 3, 102, display_qty=1), 0),
        (PlaceOrder(BOB, SYMBOL, BUY, 4, 0, order_type=OrderType.STOP, stop_price=102), 0),
        (PlaceOrder(BOB, SYMBOL, BUY, 999_999, 100), 0),  # rejected
        (PlaceOrder(CAROL, SYMBOL, BUY, 6, 102), 0),  # trades, triggers the stop
        (PlaceOrder(ALICE, SYMBOL, SELL, 2, 103, stp=SelfTradePrevention.DECREMENT), 0),
        (PlaceOrder(ALICE, SYMBOL, BUY, 1, 103, stp=SelfTradePrevention.DECREMENT), 0),
        (PlaceOrder(BOB, SYMBOL, BUY, 5, 95, client_order_id="b-1"), 0),
        (AmendOrder(BOB, client_order_id="b-1", qty=3), 0),
        (AmendOrder(BOB, client_order_id="b-1", price=96), 0),
        (CancelOrder(BOB, 12_345), 0),  # rejected
        (Deposit(CAROL, QUOTE, 10), 0),
        (Withdraw(CAROL, QUOTE, CASH * 2), 0),  # rejected
        (PlaceOrder(CAROL, SYMBOL, SELL, 4, 104, tif=TimeInForce.DAY), 0),
        (MassCancel(BOB), 0),
        (SetAccountEnabled(ALICE, False), 0),
        (Tick(), NEXT_MIDNIGHT_MS),  # Carol's DAY order expires
    ]
    seqs: list[int] = []
    for command, ts_ms in commands:
        seqs += [event.seq for event in ex.apply(command, ts_ms)]
    assert seqs == list(range(start + 1, ex.seq + 1))


def test_balance_and_level_views_close_the_command_one_per_change(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 3, 101)
    rest(ex, CAROL, SELL, 4, 102)
    events = place(ex, BOB, BUY, 5, 102)

    def is_view(event: Event) -> bool:
        return isinstance(event, BalanceChanged | LevelChanged)

    first_view = next(i for i, event in enumerate(events) if is_view(event))
    assert all(is_view(event) for event in events[first_view:])
    assert len(core(events)) == first_view
    # One view per touched balance and level, holding its final values.
    assert len(balance_views(events)) == 6
    assert ex.balance(BOB, QUOTE) == balance_views(events)[(BOB, QUOTE)]


def test_events_carry_log_time_and_time_never_goes_back(ex: Exchange) -> None:
    events = place(ex, BOB, BUY, 1, 99, ts_ms=T0 + 500)
    assert {event.ts_ms for event in events} == {T0 + 500}
    events = place(ex, BOB, BUY, 1, 98, ts_ms=T0 + 100)
    assert {event.ts_ms for event in events} == {T0 + 500}
    assert ex.now_ms == T0 + 500


def test_a_deposit_in_the_same_command_as_an_expiry_reports_the_balance_once(
    ex: Exchange,
) -> None:
    rest(ex, BOB, BUY, 5, 99, tif=TimeInForce.DAY)
    events = ex.apply(Deposit(BOB, QUOTE, 10), NEXT_MIDNIGHT_MS)
    assert balance_views(events) == {(BOB, QUOTE): (CASH + 10, 0)}
