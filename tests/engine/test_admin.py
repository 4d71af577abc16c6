"""Admin and account commands: instruments, accounts, the kill switch, mass cancel,
deposits and withdrawals."""

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
    apply_rejected,
    balance_views,
    core,
    level_views,
    of_type,
    one,
    place,
    rest,
)

from engine import CancelReason, Exchange, OrderType, RejectCode, StatusReason, TradingStatus
from engine.commands import (
    AddInstrument,
    CreateAccount,
    Deposit,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    SetTradingStatus,
    UpdateInstrument,
    Withdraw,
)
from engine.events import (
    Accepted,
    AccountChanged,
    BalanceChanged,
    Cancelled,
    InstrumentChanged,
    StatusChanged,
    Transferred,
)

BETA = "BETA"


def add_beta(ex: Exchange) -> None:
    """A second instrument, BETA/USD around 50, and BETA shares for Bob."""
    ex.apply(AddInstrument(BETA, BETA, QUOTE, reference_price=50))
    ex.apply(Deposit(BOB, BETA, 100))


def test_adding_an_instrument_announces_all_its_settings() -> None:
    ex = Exchange()
    events = ex.apply(
        AddInstrument("XYZ", "XYZ", QUOTE, 5, 10, 20, 500, 99_999, 300, 1, 2, 200, 1_000), T0
    )
    assert events == [
        InstrumentChanged(1, T0, "XYZ", "XYZ", QUOTE, 5, 10, 20, 500, 99_999, 300, 1, 2, 200, 1_000)
    ]
    inst = ex.instruments["XYZ"]
    # 3% of 200 is 6: the band is [194, 206] rounded inwards to the tick of 5.
    assert (inst.band_lo, inst.band_hi) == (195, 205)


def test_an_instrument_added_closed_takes_no_orders_until_opened(ex: Exchange) -> None:
    s = ex.seq
    events = ex.apply(AddInstrument(BETA, BETA, QUOTE, status=TradingStatus.CLOSED))
    assert [type(e) for e in events] == [InstrumentChanged, StatusChanged]
    assert events[1] == StatusChanged(s + 2, T0, BETA, TradingStatus.CLOSED, StatusReason.ADMIN, 0)
    apply_rejected(ex, PlaceOrder(BOB, BETA, BUY, 1, 10), RejectCode.MARKET_CLOSED)
    ex.apply(SetTradingStatus(BETA, TradingStatus.OPEN))
    one(ex.apply(PlaceOrder(BOB, BETA, BUY, 1, 10)), Accepted)


def test_updating_an_instrument_changes_only_the_fields_given(ex: Exchange) -> None:
    events = ex.apply(UpdateInstrument(SYMBOL, price_band_bps=500, max_qty=50))
    changed = one(events, InstrumentChanged)
    assert (changed.price_band_bps, changed.max_qty) == (500, 50)
    assert (changed.tick_size, changed.min_qty, changed.reference_price) == (1, 1, 100)
    inst = ex.instruments[SYMBOL]
    assert (inst.band_lo, inst.band_hi) == (95, 105)
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 106), RejectCode.PRICE_OUT_OF_BAND)
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 51, 100), RejectCode.QTY_TOO_LARGE)


def test_tick_size_can_change_while_the_book_is_empty(ex: Exchange) -> None:
    one(ex.apply(UpdateInstrument(SYMBOL, tick_size=5)), InstrumentChanged)
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 99), RejectCode.TICK_SIZE)
    one(ex.apply(PlaceOrder(BOB, SYMBOL, BUY, 1, 95)), Accepted)


def test_creating_an_account_announces_it_enabled(ex: Exchange) -> None:
    s = ex.seq
    assert ex.apply(CreateAccount("dave")) == [AccountChanged(s + 1, T0, "dave", True)]
    assert ex.balance("dave", QUOTE) == (0, 0)


def test_the_kill_switch_cancels_every_open_order_and_blocks_new_ones(ex: Exchange) -> None:
    bid = rest(ex, BOB, BUY, 5, 99)
    ask = rest(ex, BOB, SELL, 3, 101)
    stop = rest(ex, BOB, BUY, 2, 0, order_type=OrderType.STOP, stop_price=105)
    alices = rest(ex, ALICE, SELL, 4, 102)
    s = ex.seq
    events = ex.apply(SetAccountEnabled(BOB, False))
    kill = CancelReason.KILL_SWITCH
    assert core(events) == [
        AccountChanged(s + 1, T0, BOB, False),
        Cancelled(s + 2, T0, bid, BOB, SYMBOL, BUY, 99, 5, 0, kill),
        Cancelled(s + 3, T0, ask, BOB, SYMBOL, SELL, 101, 3, 0, kill),
        Cancelled(s + 4, T0, stop, BOB, SYMBOL, BUY, 115, 2, 0, kill),
    ]
    assert balance_views(events) == {(BOB, QUOTE): (CASH, 0), (BOB, BASE): (SHARES, 0)}
    assert level_views(events) == {(BUY, 99): (0, 0), (SELL, 101): (0, 0)}
    assert list(ex.orders) == [alices]
    apply_rejected(ex, PlaceOrder(BOB, SYMBOL, BUY, 1, 99), RejectCode.ACCOUNT_DISABLED)
    # Money can still leave a disabled account.
    one(ex.apply(Withdraw(BOB, QUOTE, 10)), BalanceChanged)
    s = ex.seq
    assert ex.apply(SetAccountEnabled(BOB, True)) == [AccountChanged(s + 1, T0, BOB, True)]
    one(place(ex, BOB, BUY, 1, 99), Accepted)


def test_mass_cancel_without_a_symbol_cancels_all_the_accounts_orders(ex: Exchange) -> None:
    add_beta(ex)
    acme = rest(ex, BOB, BUY, 5, 99)
    beta = one(ex.apply(PlaceOrder(BOB, BETA, SELL, 4, 51)), Accepted).order_id
    alices = rest(ex, ALICE, SELL, 3, 101)
    events = ex.apply(MassCancel(BOB))
    cancelled = of_type(events, Cancelled)
    assert [(c.order_id, c.symbol, c.qty, c.reason) for c in cancelled] == [
        (acme, SYMBOL, 5, CancelReason.MASS_CANCEL),
        (beta, BETA, 4, CancelReason.MASS_CANCEL),
    ]
    assert balance_views(events) == {(BOB, QUOTE): (CASH, 0), (BOB, BETA): (100, 0)}
    assert list(ex.orders) == [alices]


def test_mass_cancel_for_one_symbol_leaves_the_others(ex: Exchange) -> None:
    add_beta(ex)
    acme = rest(ex, BOB, BUY, 5, 99)
    beta = one(ex.apply(PlaceOrder(BOB, BETA, SELL, 4, 51)), Accepted).order_id
    cancelled = one(ex.apply(MassCancel(BOB, BETA)), Cancelled)
    assert (cancelled.order_id, cancelled.reason) == (beta, CancelReason.MASS_CANCEL)
    assert list(ex.orders) == [acme]


def test_mass_cancel_with_nothing_open_does_nothing(ex: Exchange) -> None:
    seq = ex.seq
    assert ex.apply(MassCancel(BOB)) == []
    assert ex.seq == seq


def test_a_deposit_reports_the_new_balance(ex: Exchange) -> None:
    s = ex.seq
    assert ex.apply(Deposit(BOB, QUOTE, 250)) == [
        Transferred(s + 1, T0, BOB, QUOTE, 250, ""),
        BalanceChanged(s + 2, T0, BOB, QUOTE, CASH + 250, 0),
    ]


def test_a_withdrawal_never_takes_held_funds(ex: Exchange) -> None:
    rest(ex, BOB, BUY, 9_000, 100)
    assert ex.balance(BOB, QUOTE) == (CASH - 900_000, 900_000)
    apply_rejected(ex, Withdraw(BOB, QUOTE, 100_001), RejectCode.INSUFFICIENT_FUNDS)
    s = ex.seq
    assert ex.apply(Withdraw(BOB, QUOTE, 100_000)) == [
        Transferred(s + 1, T0, BOB, QUOTE, -100_000, ""),
        BalanceChanged(s + 2, T0, BOB, QUOTE, 0, 900_000),
    ]


def test_shares_offered_for_sale_cannot_be_withdrawn(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, SHARES - 10, 105)
    apply_rejected(ex, Withdraw(ALICE, BASE, 11), RejectCode.INSUFFICIENT_FUNDS)
    one(ex.apply(Withdraw(ALICE, BASE, 10)), BalanceChanged)
    assert ex.balance(ALICE, BASE) == (0, SHARES - 10)
