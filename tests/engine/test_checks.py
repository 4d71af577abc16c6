"""Pre-trade checks and every other rejection: each one names its stable code, emits one
Rejected event and changes nothing else."""

from typing import Any

import pytest
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
    make_exchange,
    place,
    rejected,
    rest,
)

from engine import (
    Exchange,
    OrderType,
    RejectCode,
    Side,
    TimeInForce,
    TradingStatus,
)
from engine.commands import (
    AddInstrument,
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    SetTradingStatus,
    UpdateInstrument,
    Withdraw,
)
from engine.ledger import BALANCE_MAX

LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
STOP = OrderType.STOP
STOP_LIMIT = OrderType.STOP_LIMIT
R = RejectCode


def order(
    account: str = BOB, side: Side = BUY, qty: int = 10, price: int = 100, **fields: Any
) -> PlaceOrder:
    return PlaceOrder(account, SYMBOL, side, qty, price, **fields)


# (story, instrument settings, order, code). Reference price 100, band [90, 110].
PLACE_REJECTIONS: list[tuple[str, dict[str, int], PlaceOrder, str]] = [
    ("unknown account", {}, order(account="mallory"), R.UNKNOWN_ACCOUNT),
    ("unknown symbol", {}, PlaceOrder(BOB, "NOPE", BUY, 10, 100), R.UNKNOWN_SYMBOL),
    ("qty not a lot multiple", {"lot_size": 10, "min_qty": 10}, order(qty=15), R.LOT_SIZE),
    ("zero qty", {}, order(qty=0), R.LOT_SIZE),
    ("negative qty", {}, order(qty=-5), R.LOT_SIZE),
    ("qty below the minimum", {"lot_size": 10, "min_qty": 30}, order(qty=20), R.QTY_TOO_SMALL),
    ("qty above the maximum", {"max_qty": 50}, order(qty=60), R.QTY_TOO_LARGE),
    ("price off the tick", {"tick_size": 5}, order(price=101), R.TICK_SIZE),
    ("limit without a price", {}, order(price=0), R.TICK_SIZE),
    (
        "stop price off the tick",
        {"tick_size": 5},
        order(order_type=STOP_LIMIT, stop_price=102),
        R.TICK_SIZE,
    ),
    ("stop without a stop price", {}, order(price=0, order_type=STOP), R.TICK_SIZE),
    ("price above the band", {}, order(price=111), R.PRICE_OUT_OF_BAND),
    ("price below the band", {}, order(side=SELL, price=89), R.PRICE_OUT_OF_BAND),
    ("notional above the maximum", {"max_notional": 999}, order(), R.NOTIONAL_TOO_LARGE),
    (
        "market notional at its protection price",
        {"max_notional": 1_000},
        order(price=0, order_type=MARKET),
        R.NOTIONAL_TOO_LARGE,
    ),
    ("buy beyond the cash", {}, order(qty=10_000, price=101), R.INSUFFICIENT_FUNDS),
    (
        "buy whose fee does not fit",
        {"taker_fee_bps": 10},
        order(qty=10_000, price=100),
        R.INSUFFICIENT_FUNDS,
    ),
    (
        "market buy beyond the cash at its protection price",
        {},
        order(qty=9_500, price=0, order_type=MARKET),
        R.INSUFFICIENT_FUNDS,
    ),
    ("sell beyond the shares", {}, order(side=SELL, qty=SHARES + 1), R.INSUFFICIENT_SHARES),
    (
        "market order without a reference price",
        {"reference_price": 0},
        order(price=0, order_type=MARKET),
        R.NO_REFERENCE_PRICE,
    ),
    ("market order with a price", {}, order(order_type=MARKET), R.INVALID_ORDER),
    (
        "market order good for the day",
        {},
        order(price=0, order_type=MARKET, tif=TimeInForce.DAY),
        R.INVALID_ORDER,
    ),
    (
        "post-only market order",
        {},
        order(price=0, order_type=MARKET, post_only=True),
        R.INVALID_ORDER,
    ),
    (
        "iceberg market order",
        {},
        order(price=0, order_type=MARKET, display_qty=5),
        R.INVALID_ORDER,
    ),
    ("limit order with a stop price", {}, order(stop_price=105), R.INVALID_ORDER),
    ("post-only IOC", {}, order(post_only=True, tif=TimeInForce.IOC), R.INVALID_ORDER),
    ("post-only FOK", {}, order(post_only=True, tif=TimeInForce.FOK), R.INVALID_ORDER),
    ("iceberg showing all of it", {}, order(display_qty=10), R.INVALID_ORDER),
    ("iceberg showing more than all", {}, order(display_qty=11), R.INVALID_ORDER),
    ("iceberg IOC", {}, order(display_qty=5, tif=TimeInForce.IOC), R.INVALID_ORDER),
    (
        "iceberg display off the lot",
        {"lot_size": 10, "min_qty": 10},
        order(qty=100, display_qty=15),
        R.INVALID_ORDER,
    ),
    (
        "stop order IOC",
        {},
        order(price=0, order_type=STOP, stop_price=105, tif=TimeInForce.IOC),
        R.INVALID_ORDER,
    ),
    (
        "stop order FOK",
        {},
        order(price=0, order_type=STOP, stop_price=105, tif=TimeInForce.FOK),
        R.INVALID_ORDER,
    ),
    ("stop order with a price", {}, order(order_type=STOP, stop_price=105), R.INVALID_ORDER),
    (
        "post-only stop-limit",
        {},
        order(order_type=STOP_LIMIT, stop_price=105, post_only=True),
        R.INVALID_ORDER,
    ),
    (
        "iceberg stop-limit",
        {},
        order(order_type=STOP_LIMIT, stop_price=105, display_qty=5),
        R.INVALID_ORDER,
    ),
    (
        "GTD expiring in the past",
        {},
        order(tif=TimeInForce.GTD, expire_time_ms=T0 - 1),
        R.INVALID_EXPIRY,
    ),
    ("GTD expiring now", {}, order(tif=TimeInForce.GTD, expire_time_ms=T0), R.INVALID_EXPIRY),
    ("GTD without an expire time", {}, order(tif=TimeInForce.GTD), R.INVALID_EXPIRY),
    ("expire time on a GTC order", {}, order(expire_time_ms=T0 + 1_000), R.INVALID_EXPIRY),
    (
        "expire time on a DAY order",
        {},
        order(tif=TimeInForce.DAY, expire_time_ms=T0 + 1_000),
        R.INVALID_EXPIRY,
    ),
]


@pytest.mark.parametrize(
    ("instrument", "command", "code"),
    [pytest.param(inst, cmd, code, id=story) for story, inst, cmd, code in PLACE_REJECTIONS],
)
def test_an_order_that_fails_a_check_is_rejected_and_changes_nothing(
    instrument: dict[str, int], command: PlaceOrder, code: str
) -> None:
    ex = make_exchange(**instrument)
    event = apply_rejected(ex, command, code)
    assert (event.account, event.command, event.ts_ms) == (command.account, "PlaceOrder", T0)


def test_orders_on_a_halted_instrument_are_rejected(ex: Exchange) -> None:
    ex.apply(SetTradingStatus(SYMBOL, TradingStatus.HALTED))
    apply_rejected(ex, order(), R.HALTED)


def test_orders_on_a_closed_instrument_are_rejected(ex: Exchange) -> None:
    ex.apply(SetTradingStatus(SYMBOL, TradingStatus.CLOSED))
    apply_rejected(ex, order(), R.MARKET_CLOSED)


def test_a_disabled_account_cannot_place_orders(ex: Exchange) -> None:
    ex.apply(SetAccountEnabled(BOB, False))
    apply_rejected(ex, order(), R.ACCOUNT_DISABLED)


def test_an_account_at_its_open_order_limit_cannot_open_another() -> None:
    ex = make_exchange(open_orders_per_account_max=2)
    rest(ex, BOB, BUY, 1, 95)
    rest(ex, BOB, BUY, 1, 96)
    apply_rejected(ex, order(price=97), R.TOO_MANY_OPEN_ORDERS)
    # Other accounts have their own limit.
    rest(ex, ALICE, BUY, 1, 97)


def test_a_post_only_order_that_would_take_is_rejected(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 5, 101)
    apply_rejected(ex, order(price=101, post_only=True), R.POST_ONLY_WOULD_TAKE)
    # One tick away it makes liquidity.
    rest(ex, BOB, BUY, 5, 100, post_only=True)


def test_shares_already_offered_cannot_be_sold_twice(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, SHARES - 5, 105)
    apply_rejected(ex, order(account=ALICE, side=SELL, qty=6, price=106), R.INSUFFICIENT_SHARES)


def test_a_stop_that_would_trigger_at_once_is_rejected(ex: Exchange) -> None:
    rest(ex, ALICE, SELL, 1, 100)
    place(ex, BOB, BUY, 1, 100)  # last trade 100
    for side, stop in ((BUY, 100), (BUY, 99), (SELL, 100), (SELL, 101)):
        command = order(side=side, price=0, order_type=STOP, stop_price=stop)
        apply_rejected(ex, command, R.INVALID_ORDER)


def test_a_client_order_id_used_for_another_order_is_rejected(ex: Exchange) -> None:
    rest(ex, BOB, BUY, 5, 99, client_order_id="b-1")
    s = ex.seq
    event = rejected(place(ex, BOB, BUY, 6, 99, client_order_id="b-1"), R.DUPLICATE_CLIENT_ORDER_ID)
    assert (event.seq, event.client_id) == (s + 1, "b-1")
    assert ex.depth(SYMBOL) == ([(99, 5, 1)], [])


def test_a_command_the_engine_does_not_know_is_rejected(ex: Exchange) -> None:
    event = rejected(ex.apply(object()), R.UNKNOWN_COMMAND)  # type: ignore[arg-type]
    assert event.command == "object"


# ------------------------------------------------------------- deposits and withdrawals

TRANSFER_REJECTIONS: list[tuple[str, Command, str]] = [
    ("deposit to an unknown account", Deposit("mallory", QUOTE, 10), R.UNKNOWN_ACCOUNT),
    ("deposit of an unknown asset", Deposit(BOB, "EUR", 10), R.UNKNOWN_ASSET),
    ("deposit of nothing", Deposit(BOB, QUOTE, 0), R.INVALID_AMOUNT),
    ("negative deposit", Deposit(BOB, QUOTE, -10), R.INVALID_AMOUNT),
    ("deposit at the balance limit", Deposit(BOB, QUOTE, BALANCE_MAX), R.INVALID_AMOUNT),
    (
        "deposit that would overflow the balance",
        Deposit(BOB, QUOTE, BALANCE_MAX - CASH),
        R.INVALID_AMOUNT,
    ),
    ("withdrawal from an unknown account", Withdraw("mallory", QUOTE, 10), R.UNKNOWN_ACCOUNT),
    ("withdrawal of an unknown asset", Withdraw(BOB, "EUR", 10), R.UNKNOWN_ASSET),
    ("withdrawal of nothing", Withdraw(BOB, QUOTE, 0), R.INVALID_AMOUNT),
    ("withdrawal beyond the balance", Withdraw(BOB, QUOTE, CASH + 1), R.INSUFFICIENT_FUNDS),
    ("withdrawal of shares not owned", Withdraw(BOB, BASE, SHARES + 1), R.INSUFFICIENT_FUNDS),
]


@pytest.mark.parametrize(
    ("command", "code"),
    [pytest.param(cmd, code, id=story) for story, cmd, code in TRANSFER_REJECTIONS],
)
def test_a_bad_transfer_is_rejected_and_changes_nothing(
    ex: Exchange, command: Command, code: str
) -> None:
    apply_rejected(ex, command, code)


def test_a_withdrawal_from_an_account_that_never_held_the_asset_leaves_no_trace(
    ex: Exchange,
) -> None:
    ex.apply(CreateAccount("dave"))
    apply_rejected(ex, Withdraw("dave", QUOTE, 1), R.INSUFFICIENT_FUNDS)
    assert ex.accounts["dave"].balances == {}


def test_a_request_id_reused_for_a_different_transfer_is_rejected(ex: Exchange) -> None:
    ex.apply(Deposit(BOB, QUOTE, 10, request_id="dep-1"))
    event = rejected(
        ex.apply(Deposit(BOB, QUOTE, 11, request_id="dep-1")), R.DUPLICATE_CLIENT_ORDER_ID
    )
    assert event.client_id == "dep-1"
    assert ex.balance(BOB, QUOTE) == (CASH + 10, 0)


# ------------------------------------------------------------- cancels and amends


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(CancelOrder(BOB, 999), id="cancel unknown id"),
        pytest.param(CancelOrder(BOB), id="cancel without any id"),
        pytest.param(CancelOrder(BOB, client_order_id="never"), id="cancel unknown client id"),
        pytest.param(CancelOrder("mallory", 1), id="cancel from an unknown account"),
        pytest.param(AmendOrder(BOB, 999, qty=1), id="amend unknown id"),
        pytest.param(AmendOrder(BOB, client_order_id="never", qty=1), id="amend unknown cid"),
    ],
)
def test_cancelling_or_amending_an_order_nobody_placed_is_unknown_order(
    ex: Exchange, command: Command
) -> None:
    apply_rejected(ex, command, R.UNKNOWN_ORDER)


def test_nobody_can_cancel_or_amend_another_accounts_open_order(ex: Exchange) -> None:
    alices = rest(ex, ALICE, SELL, 5, 101, client_order_id="a-1")
    apply_rejected(ex, CancelOrder(BOB, alices), R.UNKNOWN_ORDER)
    apply_rejected(ex, CancelOrder(BOB, client_order_id="a-1"), R.UNKNOWN_ORDER)
    apply_rejected(ex, AmendOrder(BOB, alices, qty=1), R.UNKNOWN_ORDER)
    assert ex.depth(SYMBOL) == ([], [(101, 5, 1)])


def test_another_accounts_finished_order_is_unknown_not_closed(ex: Exchange) -> None:
    alices = rest(ex, ALICE, SELL, 5, 101)
    ex.apply(CancelOrder(ALICE, alices))
    # Bob learns nothing about Alice's orders, open or closed.
    apply_rejected(ex, CancelOrder(BOB, alices), R.UNKNOWN_ORDER)


def test_a_filled_or_cancelled_order_is_no_longer_open(ex: Exchange) -> None:
    """By client order id the owner learns the order is closed; by engine id a closed
    order looks like any id that is not one of the account's open orders, so that no
    account can probe another's orders."""
    filled = rest(ex, ALICE, SELL, 5, 100, client_order_id="a-1")
    place(ex, BOB, BUY, 5, 100)
    cancelled = rest(ex, ALICE, SELL, 5, 101, client_order_id="a-2")
    ex.apply(CancelOrder(ALICE, cancelled))
    apply_rejected(ex, CancelOrder(ALICE, client_order_id="a-1"), R.ORDER_NOT_OPEN)
    apply_rejected(ex, CancelOrder(ALICE, client_order_id="a-2"), R.ORDER_NOT_OPEN)
    apply_rejected(ex, AmendOrder(ALICE, client_order_id="a-1", qty=1), R.ORDER_NOT_OPEN)
    apply_rejected(ex, CancelOrder(ALICE, filled), R.UNKNOWN_ORDER)
    apply_rejected(ex, AmendOrder(ALICE, cancelled, price=102), R.UNKNOWN_ORDER)


# ------------------------------------------------------------- admin


def instrument(**fields: Any) -> AddInstrument:
    return AddInstrument(**{"symbol": "BETA", "base": "BETA", "quote": QUOTE, **fields})


INSTRUMENT_REJECTIONS: list[tuple[str, Command, str]] = [
    ("add a symbol that exists", AddInstrument(SYMBOL, BASE, QUOTE), R.ALREADY_EXISTS),
    ("add without a symbol", instrument(symbol=""), R.INVALID_INSTRUMENT),
    ("add without a base", instrument(base=""), R.INVALID_INSTRUMENT),
    ("add with base equal to quote", instrument(base=QUOTE), R.INVALID_INSTRUMENT),
    ("add with a zero tick", instrument(tick_size=0), R.INVALID_INSTRUMENT),
    ("add with a zero lot", instrument(lot_size=0), R.INVALID_INSTRUMENT),
    ("add with min qty off the lot", instrument(lot_size=10, min_qty=15), R.INVALID_INSTRUMENT),
    ("add with max qty below min", instrument(min_qty=10, max_qty=5), R.INVALID_INSTRUMENT),
    ("add with no notional", instrument(max_notional=0), R.INVALID_INSTRUMENT),
    ("add with a zero band", instrument(price_band_bps=0), R.INVALID_INSTRUMENT),
    ("add with a 100% band", instrument(price_band_bps=10_000), R.INVALID_INSTRUMENT),
    ("add with a fee above the limit", instrument(taker_fee_bps=1_001), R.INVALID_INSTRUMENT),
    ("add with a negative fee", instrument(maker_fee_bps=-1), R.INVALID_INSTRUMENT),
    (
        "add with a reference off the tick",
        instrument(tick_size=5, reference_price=101),
        R.INVALID_INSTRUMENT,
    ),
    ("add with a negative reference", instrument(reference_price=-5), R.INVALID_INSTRUMENT),
    ("add with a negative pause", instrument(halt_pause_ms=-1), R.INVALID_INSTRUMENT),
    ("update an unknown symbol", UpdateInstrument("NOPE", max_qty=5), R.UNKNOWN_SYMBOL),
    ("update to a zero band", UpdateInstrument(SYMBOL, price_band_bps=0), R.INVALID_INSTRUMENT),
    ("update to max below min", UpdateInstrument(SYMBOL, max_qty=0), R.INVALID_INSTRUMENT),
    (
        "update to a reference off the tick",
        UpdateInstrument(SYMBOL, tick_size=3),
        R.INVALID_INSTRUMENT,
    ),
    (
        "halt an unknown symbol",
        SetTradingStatus("NOPE", TradingStatus.HALTED),
        R.UNKNOWN_SYMBOL,
    ),
    ("create an account that exists", CreateAccount(BOB), R.ALREADY_EXISTS),
    ("create the fee account", CreateAccount("fees"), R.ALREADY_EXISTS),
    ("create an account without a name", CreateAccount(""), R.INVALID_ORDER),
    ("disable an unknown account", SetAccountEnabled("mallory", False), R.UNKNOWN_ACCOUNT),
    ("mass cancel for an unknown account", MassCancel("mallory"), R.UNKNOWN_ACCOUNT),
    ("mass cancel on an unknown symbol", MassCancel(BOB, "NOPE"), R.UNKNOWN_SYMBOL),
]


@pytest.mark.parametrize(
    ("command", "code"),
    [pytest.param(cmd, code, id=story) for story, cmd, code in INSTRUMENT_REJECTIONS],
)
def test_a_bad_admin_command_is_rejected_and_changes_nothing(
    ex: Exchange, command: Command, code: str
) -> None:
    apply_rejected(ex, command, code)


def test_tick_and_lot_sizes_change_only_while_the_book_is_empty(ex: Exchange) -> None:
    rest(ex, BOB, BUY, 5, 100)
    apply_rejected(ex, UpdateInstrument(SYMBOL, tick_size=5), R.INVALID_INSTRUMENT)
    apply_rejected(ex, UpdateInstrument(SYMBOL, lot_size=5), R.INVALID_INSTRUMENT)
    # Limits that do not move prices or quantities change at any time.
    ex.apply(UpdateInstrument(SYMBOL, max_qty=500))
    assert ex.instruments[SYMBOL].max_qty == 500
