"""The history projection, fed from a real event log: orders, trades, fills and balances.

Every test applies commands to an `engine.Exchange`, writes each entry to a real
EventLog as the node does, and projects what the log gives back
(`EventLog.entries_after`) into a real HistoryStore, as the projector does; the
last tests run the projector itself, in a thread and as `raftex project`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rocksdict import Options, Rdict

import projection.history
from bench.workload import standard_workload
from cluster.event_log import AppliedCommand, EventLog
from cluster.rocks import (
    READ_LIMIT_MAX,
    U64,
)
from cluster.store_errors import StoreCorruptionError, StoreError, StoreOrderError, StoreQueryError
from engine import OrderType, TimeInForce
from engine.commands import (
    AmendOrder,
    CancelOrder,
    PlaceOrder,
    Tick,
    command_to_bytes,
)
from engine.events import BalanceChanged, Cancelled, Event, Trade
from projection.history import BLOCK_ROWS_MAX, CF_META, COLUMN_FAMILIES, HistoryStore
from projection.projector import Projector
from tests.cluster.logged_node import (
    BUY,
    CASH,
    PRICE,
    SELL,
    LoggedNode,
    market_setup,
)

WAIT_S = 20.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def event_log(tmp_path: Path) -> Iterator[EventLog]:
    opened = EventLog.open(tmp_path / "events")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def history(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore.open(tmp_path / "projection") as opened:
        yield opened


@pytest.fixture
def node(event_log: EventLog, history: HistoryStore) -> LoggedNode:
    market = LoggedNode(event_log, history)
    market.run(*market_setup())
    return market


def order_ids(store: HistoryStore, account: str, *, open_only: bool) -> list[int]:
    rows = store.orders_of(account, open_only=open_only, after_order_id=0, limit=READ_LIMIT_MAX)
    return [row["order_id"] for row in rows]


def kinds(history: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in history]


def all_pages(read: Callable[[int], list[dict[str, Any]]], cursor_field: str) -> list[Any]:
    """Walks a cursor-paged read to the end, returning every row."""
    rows: list[Any] = []
    cursor = 0
    while page := read(cursor):
        rows.extend(page)
        cursor = page[-1][cursor_field]
    return rows


def all_trades(store: HistoryStore, symbol: str, limit: int = 100) -> list[dict[str, Any]]:
    """A symbol's trades, newest first, walked with the before cursor."""
    rows = store.trades(symbol, limit)
    while rows and (page := store.trades(symbol, limit, before_trade_id=rows[-1]["trade_id"])):
        rows.extend(page)
    return rows


def everything(store: HistoryStore, accounts: list[str], symbols: list[str]) -> dict[str, Any]:
    """Every read the store answers for these accounts and symbols, to compare two stores."""
    out: dict[str, Any] = {"tip": (store.applied_index(), store.last_seq(), store.log_time_ms())}
    for account in accounts:
        orders = all_pages(
            lambda after, a=account: store.orders_of(
                a, open_only=False, after_order_id=after, limit=50
            ),
            "order_id",
        )
        out[f"account {account}"] = {
            "orders": orders,
            "orders with history": [store.order(o["order_id"]) for o in orders],
            "by client id": [
                store.order_by_client_id(account, o["client_order_id"])
                for o in orders
                if o["client_order_id"]
            ],
            "open": all_pages(
                lambda after, a=account: store.orders_of(
                    a, open_only=True, after_order_id=after, limit=50
                ),
                "order_id",
            ),
            "fills": all_pages(lambda after, a=account: store.fills_of(a, after, 50), "trade_id"),
            "balances": store.balances(account),
            "balance history": all_pages(
                lambda after, a=account: store.balance_history(a, after, 50), "seq"
            ),
        }
    for symbol in symbols:
        out[f"symbol {symbol}"] = all_trades(store, symbol)
    return out


def names(node: LoggedNode) -> tuple[list[str], list[str]]:
    """The engine's accounts (the fee account among them) and symbols."""
    return sorted(node.exchange.accounts), sorted(node.exchange.instruments)


# ---------------------------------------------------------------- a fresh store


def test_an_empty_store_is_at_index_zero_and_knows_nothing(history: HistoryStore) -> None:
    assert (history.applied_index(), history.last_seq(), history.log_time_ms()) == (0, 0, 0)
    assert history.order(1) is None
    assert history.order_by_client_id("alice", "a1") is None
    assert history.orders_of("alice", open_only=False, after_order_id=0, limit=10) == []
    assert history.trades("ACME", 10) == []
    assert history.fills_of("alice", 0, 10) == []
    assert history.balances("alice") == {}
    assert history.balance_history("alice", 0, 10) == []
    history.write_entries([])  # nothing to project: nothing changes
    assert history.applied_index() == 0


# ---------------------------------------------------------------- one entry, one trade


def test_a_crossing_order_gives_the_order_the_trade_fills_for_both_accounts_and_balances(
    node: LoggedNode,
) -> None:
    sell, buy = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE, client_order_id="a1"),
        PlaceOrder("bob", "ACME", BUY, 4, PRICE, client_order_id="b1"),
    )
    store = node.history
    assert store is not None
    assert (store.applied_index(), store.last_seq(), store.log_time_ms()) == (
        node.log_index,
        node.exchange.seq,
        node.time_ms,
    )
    maker_id, taker_id = node.order_id(sell), node.order_id(buy)

    maker = store.order(maker_id)
    assert maker is not None
    assert maker["status"] == "partially_filled"
    assert (maker["qty"], maker["filled_qty"], maker["leaves"]) == (10, 4, 6)
    assert maker["notional"] == 4 * PRICE and maker["fees"] == 4  # 10 bps of 4,000
    assert kinds(maker["history"]) == ["accepted", "trade"]
    assert maker["history_truncated"] is False
    taker = store.order(taker_id)
    assert taker is not None
    assert taker["status"] == "filled" and taker["leaves"] == 0 and taker["fees"] == 8
    assert store.order_by_client_id("bob", "b1") == {
        k: v for k, v in taker.items() if not k.startswith("history")
    }
    assert store.order_by_client_id("alice", "b1") is None

    (trade,) = store.trades("ACME", 10)
    assert (trade["price"], trade["qty"], trade["aggressor_side"]) == (PRICE, 4, BUY)
    assert "maker_account" not in trade and "taker_account" not in trade

    (alice_fill,) = store.fills_of("alice", 0, 10)
    assert alice_fill["role"] == "maker" and alice_fill["side"] == SELL
    assert (alice_fill["order_id"], alice_fill["qty"], alice_fill["fee"]) == (maker_id, 4, 4)
    (bob_fill,) = store.fills_of("bob", 0, 10)
    assert bob_fill["role"] == "taker" and bob_fill["side"] == BUY
    assert (bob_fill["order_id"], bob_fill["fee"], bob_fill["leaves"]) == (taker_id, 8, 0)

    for account in ("alice", "bob", "fees"):
        latest = store.balances(account)
        for asset in ("USD", "ACME"):
            if account == "fees" and asset == "ACME":
                continue
            expected = node.exchange.balance(account, asset)
            assert (latest[asset]["available"], latest[asset]["held"]) == expected
    bob_usd = [row for row in store.balance_history("bob", 0, 100) if row["asset"] == "USD"]
    assert bob_usd[0]["available"] == CASH  # the deposit
    assert bob_usd[-1]["available"] == CASH - 4 * PRICE - 8
    assert store.balances("fees")["USD"]["available"] == 12

    assert order_ids(store, "alice", open_only=True) == [maker_id]
    assert order_ids(store, "bob", open_only=True) == []
    assert order_ids(store, "bob", open_only=False) == [taker_id]


# ---------------------------------------------------------------- order and replay


def test_projecting_the_same_entries_twice_raises_and_changes_nothing(node: LoggedNode) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    store = node.history
    assert store is not None
    accounts, symbols = names(node)
    before = everything(store, accounts, symbols)
    projected = node.log.entries_after(0, READ_LIMIT_MAX)
    assert [e.log_index for e in projected] == [1, 2]
    for again in (projected, projected[-1:], projected[:1]):
        with pytest.raises(StoreOrderError, match="already projected"):
            store.write_entries(again)
    assert everything(store, accounts, symbols) == before

    # A new entry with an old one after it: refused whole, the new one is not written either.
    node.run(PlaceOrder("bob", "ACME", BUY, 6, PRICE), project=False)
    (new,) = node.log.entries_after(store.applied_index(), READ_LIMIT_MAX)
    with pytest.raises(StoreOrderError, match="already projected"):
        store.write_entries([new, projected[-1]])
    assert everything(store, accounts, symbols) == before
    store.write_entries([new])
    assert store.applied_index() == new.log_index
    assert len(store.trades("ACME", 10)) == 2


def test_an_entry_the_projection_missed_shows_up_as_a_gap(node: LoggedNode) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), project=False)
    node.run(PlaceOrder("bob", "ACME", BUY, 4, PRICE), project=False)
    store = node.history
    assert store is not None
    skipped, taken = node.log.entries_after(store.applied_index(), 10)
    with pytest.raises(StoreOrderError, match="does not follow"):
        store.write_entries([taken])
    assert store.applied_index() == skipped.log_index - 1
    assert store.trades("ACME", 10) == []
    store.write_entries([skipped, taken])
    assert len(store.trades("ACME", 10)) == 1


def log_stray_cancel(node: LoggedNode) -> None:
    """Logs, as the next entry, the cancel of an order never placed. Hand-built: a gap-free
    engine cannot produce it, a corrupted engine could, and the log takes what it is given."""
    seq = node.log.last_seq() + 1
    stray = Cancelled(seq, node.time_ms, 999, "alice", "ACME", SELL, PRICE, 1, 0, "user")
    command = AppliedCommand("n1/x", command_to_bytes(CancelOrder("alice", 999)), [stray])
    node.log_index += 1
    node.log.write_entry(node.log_index, node.time_ms, [command])


def test_an_event_about_an_order_the_store_never_saw_is_corruption(node: LoggedNode) -> None:
    store = node.history
    assert store is not None
    before = (store.applied_index(), store.last_seq(), store.log_time_ms())
    log_stray_cancel(node)  # the log takes it; the projection refuses to build on it
    with pytest.raises(StoreCorruptionError, match="never saw"):
        node.project()
    assert (store.applied_index(), store.last_seq(), store.log_time_ms()) == before


def test_a_store_closed_right_after_a_refused_write_reopens_at_once(node: LoggedNode) -> None:
    store = node.history
    assert store is not None
    projected = store.applied_index()
    log_stray_cancel(node)
    with pytest.raises(StoreCorruptionError) as refused:  # keeps the traceback, and its frames
        node.project()
    store.close()
    with HistoryStore.open(store.path) as again:
        assert again.applied_index() == projected == node.log_index - 1
    assert refused.value.code == "store_corrupt"


def test_retries_and_entries_without_commands_are_projected_once(node: LoggedNode) -> None:
    order = PlaceOrder("alice", "ACME", SELL, 10, PRICE, client_order_id="same")
    (first,) = node.run(order)
    node.run(order, order)  # the client timed out and sent it again, twice
    node.log_index += 4  # log entries that carry no commands are not in the event log
    node.run()
    node.run(Tick())
    store = node.history
    assert store is not None
    assert (store.applied_index(), store.last_seq()) == (node.log_index, node.exchange.seq)
    (placed,) = store.orders_of("alice", open_only=False, after_order_id=0, limit=10)
    assert placed["order_id"] == node.order_id(first)
    assert placed["event_count"] == 1 and placed["status"] == "open"
    order_record = store.order(placed["order_id"])
    assert order_record is not None and kinds(order_record["history"]) == ["accepted"]
    usd = [h for h in store.balance_history("alice", 0, 100) if h["asset"] == "USD"]
    assert len(usd) == 1  # the deposit; selling holds shares, not cash


# ---------------------------------------------------------------- order lifecycles


def test_a_cancelled_order_leaves_the_open_orders_and_keeps_its_history(node: LoggedNode) -> None:
    (placed,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    order_id = node.order_id(placed)
    node.run(CancelOrder("alice", order_id))
    store = node.history
    assert store is not None
    order = store.order(order_id)
    assert order is not None
    assert order["status"] == "cancelled" and order["reason"] == "user"
    assert (order["leaves"], order["cancelled_qty"], order["original_qty"]) == (0, 10, 10)
    assert kinds(order["history"]) == ["accepted", "cancelled"]
    assert store.orders_of("alice", open_only=True, after_order_id=0, limit=10) == []
    assert len(store.orders_of("alice", open_only=False, after_order_id=0, limit=10)) == 1


def test_an_ioc_order_that_fills_in_part_ends_cancelled_with_its_fill(node: LoggedNode) -> None:
    _, ioc = node.run(
        PlaceOrder("alice", "ACME", SELL, 3, PRICE),
        PlaceOrder("bob", "ACME", BUY, 5, PRICE, tif=TimeInForce.IOC),
    )
    assert node.history is not None
    order = node.history.order(node.order_id(ioc))
    assert order is not None
    assert order["status"] == "cancelled" and order["reason"] == "ioc"
    assert (order["filled_qty"], order["cancelled_qty"], order["leaves"]) == (3, 2, 0)
    assert kinds(order["history"]) == ["accepted", "trade", "cancelled"]


def test_an_amendment_changes_the_quantity_and_price_of_the_order(node: LoggedNode) -> None:
    (placed,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE + 60))
    order_id = node.order_id(placed)
    node.run(AmendOrder("alice", order_id, qty=6))
    node.run(AmendOrder("alice", order_id, price=PRICE + 70))
    assert node.history is not None
    order = node.history.order(order_id)
    assert order is not None
    assert (order["qty"], order["price"], order["leaves"], order["status"]) == (
        6,
        PRICE + 70,
        6,
        "open",
    )
    assert kinds(order["history"]) == ["accepted", "amended", "amended"]


def test_a_gtd_order_expires_when_a_tick_passes_its_time(node: LoggedNode) -> None:
    expire_ms = node.time_ms + 1_000
    (placed,) = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE, tif=TimeInForce.GTD, expire_time_ms=expire_ms)
    )
    node.time_ms = expire_ms
    (tick,) = node.run(Tick())
    store = node.history
    assert store is not None
    order = store.order(node.order_id(placed))
    assert order is not None
    assert order["status"] == "expired" and order["leaves"] == 0
    assert order["updated_seq"] == tick.events[0].seq
    assert order["updated_ms"] == store.log_time_ms() == node.time_ms
    assert store.orders_of("alice", open_only=True, after_order_id=0, limit=10) == []


def test_a_stop_order_is_armed_until_a_trade_triggers_it(node: LoggedNode) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 1, PRICE), PlaceOrder("bob", "ACME", BUY, 1, PRICE))
    (stop,) = node.run(
        PlaceOrder("carol", "ACME", BUY, 2, order_type=OrderType.STOP, stop_price=PRICE + 10)
    )
    store = node.history
    assert store is not None
    stop_id = node.order_id(stop)
    armed = store.order(stop_id)
    assert armed is not None and armed["status"] == "armed"
    assert order_ids(store, "carol", open_only=True) == [stop_id]
    node.run(
        PlaceOrder("alice", "ACME", SELL, 5, PRICE + 10),
        PlaceOrder("bob", "ACME", BUY, 1, PRICE + 10),
    )
    fired = store.order(stop_id)
    assert fired is not None
    assert kinds(fired["history"]) == ["accepted", "triggered", "trade"]
    assert fired["status"] == "filled" and fired["filled_qty"] == 2
    assert store.orders_of("carol", open_only=True, after_order_id=0, limit=10) == []


def test_an_iceberg_shows_its_replenishment_in_its_history(node: LoggedNode) -> None:
    (iceberg,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE + 50, display_qty=3))
    node.run(PlaceOrder("bob", "ACME", BUY, 3, PRICE + 50))
    assert node.history is not None
    order = node.history.order(node.order_id(iceberg))
    assert order is not None
    assert kinds(order["history"]) == ["accepted", "trade", "replenished"]
    assert (order["status"], order["leaves"]) == ("partially_filled", 7)


def test_an_order_filled_twice_and_cancelled_in_one_entry_ends_with_all_of_it(
    node: LoggedNode,
) -> None:
    (placed,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    order_id = node.order_id(placed)
    applied = node.run(
        PlaceOrder("bob", "ACME", BUY, 2, PRICE),
        PlaceOrder("carol", "ACME", BUY, 3, PRICE),
        CancelOrder("alice", order_id),
    )
    store = node.history
    assert store is not None
    order = store.order(order_id)
    assert order is not None
    assert kinds(order["history"]) == ["accepted", "trade", "trade", "cancelled"]
    assert (order["status"], order["filled_qty"], order["cancelled_qty"]) == ("cancelled", 5, 5)
    assert order["notional"] == 5 * PRICE and order["event_count"] == 4
    assert order["updated_seq"] == order["history"][-1]["seq"]
    assert store.orders_of("alice", open_only=True, after_order_id=0, limit=10) == []
    # Every change of alice's balances in that entry is in her history; the latest is her balance.
    changes = [
        e for a in applied for e in a.events if type(e) is BalanceChanged and e.account == "alice"
    ]
    assert len(changes) > 2
    history = store.balance_history("alice", changes[0].seq - 1, READ_LIMIT_MAX)
    assert [(h["seq"], h["asset"], h["available"], h["held"]) for h in history] == [
        (e.seq, e.asset, e.available, e.held) for e in changes
    ]
    latest = store.balances("alice")
    for asset in ("USD", "ACME"):
        assert (latest[asset]["available"], latest[asset]["held"]) == node.exchange.balance(
            "alice", asset
        )


def test_an_order_history_is_cut_at_the_read_limit(
    node: LoggedNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projection.history, "ORDER_HISTORY_READ_MAX", 3)
    (placed,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    order_id = node.order_id(placed)
    for _ in range(4):
        node.run(PlaceOrder("bob", "ACME", BUY, 1, PRICE))
    assert node.history is not None
    order = node.history.order(order_id)
    assert order is not None
    assert kinds(order["history"]) == ["accepted", "trade", "trade"]
    assert order["history_truncated"] is True and order["event_count"] == 5
    assert order["filled_qty"] == 4  # the record itself has every event


# ---------------------------------------------------------------- how it is written


def test_several_entries_in_one_write_give_the_same_store_as_one_write_each(
    event_log: EventLog, tmp_path: Path
) -> None:
    workload = standard_workload(1_500, seed=5, account_count=8, symbol_count=2)
    node = LoggedNode(event_log, None)
    node.run(*workload.setup)
    for start in range(0, len(workload.commands), 25):
        node.run(*workload.commands[start : start + 25])
    entries = event_log.entries_after(0, READ_LIMIT_MAX)
    assert len(entries) == 61

    with (
        HistoryStore.open(tmp_path / "one-each") as one_each,
        HistoryStore.open(tmp_path / "all-at-once") as all_at_once,
    ):
        for entry in entries:
            one_each.write_entries([entry])
        all_at_once.write_entries(entries)
        accounts, symbols = names(node)
        reads = everything(one_each, accounts, symbols)
        assert reads == everything(all_at_once, accounts, symbols)
    assert reads["tip"] == (node.log_index, node.exchange.seq, node.time_ms)
    assert sum(len(reads[f"symbol {s}"]) for s in symbols) == node.exchange.next_trade_id - 1 > 50


def test_state_survives_close_and_reopen_and_goes_on_from_there(
    node: LoggedNode, tmp_path: Path
) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    store = node.history
    assert store is not None
    accounts, symbols = names(node)
    before = everything(store, accounts, symbols)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.order(1)

    with HistoryStore.open(tmp_path / "projection") as reopened:
        assert everything(reopened, accounts, symbols) == before
        node.history = reopened
        node.run(PlaceOrder("bob", "ACME", BUY, 6, PRICE))
        assert reopened.applied_index() == before["tip"][0] + 1
        assert reopened.last_seq() == node.exchange.seq
        assert len(reopened.fills_of("alice", 0, 10)) == 2


def test_a_store_in_use_cannot_be_opened_again(history: HistoryStore) -> None:
    with pytest.raises(StoreError, match="cannot open store"):
        HistoryStore.open(history.path)


def test_a_store_of_another_format_or_kind_is_refused(event_log: EventLog, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="another kind of store"):
        HistoryStore.open(event_log.path)  # a node's event log is not its projection

    newer = tmp_path / "newer"
    HistoryStore.open(newer).close()
    db = Rdict(
        str(newer),
        Options(raw_mode=True),
        column_families={n: Options(raw_mode=True) for n in COLUMN_FAMILIES},
    )
    meta = db.get_column_family(CF_META)
    meta[b"format"] = U64.pack(99)
    meta.close()
    db.close()
    with pytest.raises(StoreError, match="format 99"):
        HistoryStore.open(newer)


# ---------------------------------------------------------------- pagination


def busy_node(node: LoggedNode, rounds: int) -> LoggedNode:
    """`rounds` entries in which alice rests a sell and bob takes part of it."""
    for n in range(rounds):
        node.run(
            PlaceOrder("alice", "ACME", SELL, 3, PRICE + n % 5),
            PlaceOrder("bob", "ACME", BUY, 1, PRICE + n % 5),
        )
    return node


def test_orders_page_by_order_id_cursor(node: LoggedNode) -> None:
    store = busy_node(node, 25).history
    assert store is not None
    every = all_pages(
        lambda after: store.orders_of("alice", open_only=False, after_order_id=after, limit=7),
        "order_id",
    )
    assert len(every) == 25
    assert [o["order_id"] for o in every] == sorted(o["order_id"] for o in every)
    open_ones = all_pages(
        lambda after: store.orders_of("alice", open_only=True, after_order_id=after, limit=4),
        "order_id",
    )
    engine_open = sorted(node.exchange.accounts["alice"].orders)
    assert [o["order_id"] for o in open_ones] == engine_open
    assert 0 < len(engine_open) < 25
    assert all(o["status"] in ("open", "partially_filled") for o in open_ones)


def test_trades_page_newest_first_with_a_before_cursor(node: LoggedNode) -> None:
    store = busy_node(node, 25).history
    assert store is not None
    newest = store.trades("ACME", 10)
    pages = [newest]
    while pages[-1]:
        pages.append(store.trades("ACME", 10, before_trade_id=pages[-1][-1]["trade_id"]))
    ids = [t["trade_id"] for page in pages for t in page]
    assert ids == list(range(25, 0, -1))
    assert [t["trade_id"] for t in store.trades("ACME", 3, before_trade_id=10)] == [9, 8, 7]
    assert store.trades("NOPE", 10) == []


def test_fills_and_balance_history_page_ascending(node: LoggedNode) -> None:
    store = busy_node(node, 12).history
    assert store is not None
    fills = all_pages(lambda after: store.fills_of("bob", after, 5), "trade_id")
    assert [f["trade_id"] for f in fills] == list(range(1, 13))
    history = all_pages(lambda after: store.balance_history("bob", after, 5), "seq")
    assert [h["seq"] for h in history] == sorted({h["seq"] for h in history})
    assert len(history) == 2 + 2 * 12  # two deposits, then USD and ACME per trade


def test_balance_history_and_order_histories_read_the_same_across_blocks(
    event_log: EventLog, history: HistoryStore
) -> None:
    # Big entries over few accounts: many events per entry and many balance changes per
    # account per entry, so both are stored over several blocks.
    workload = standard_workload(2_000, seed=11, account_count=5, symbol_count=2)
    node = LoggedNode(event_log, history)
    node.run(*workload.setup)
    emitted: list[Event] = []
    for start in range(0, len(workload.commands), 1_000):
        applied = node.run(*workload.commands[start : start + 1_000])
        emitted.extend(e for a in applied for e in a.events)
    assert len(emitted) > 4 * BLOCK_ROWS_MAX

    fees = [e for e in emitted if type(e) is BalanceChanged and e.account == "fees"]
    assert len(fees) > 2 * BLOCK_ROWS_MAX  # more than a block in each of the two entries
    for cursor in [fees[0].seq - 1, *(e.seq for e in fees[::13]), fees[-1].seq]:
        expected = [(e.seq, e.asset, e.available, e.held) for e in fees if e.seq > cursor][:30]
        page = history.balance_history("fees", cursor, 30)
        assert [(h["seq"], h["asset"], h["available"], h["held"]) for h in page] == expected

    seqs_of: dict[int, list[int]] = {}
    for e in emitted:
        ids = (e.maker_order_id, e.taker_order_id) if type(e) is Trade else ()
        for order_id in ids or (getattr(e, "order_id", None),):
            if order_id is not None:
                seqs_of.setdefault(order_id, []).append(e.seq)
    busiest = sorted(seqs_of, key=lambda order_id: len(seqs_of[order_id]))[-20:]
    assert len(seqs_of[busiest[-1]]) > 3
    for order_id in busiest:
        order = history.order(order_id)
        assert order is not None
        assert [h["seq"] for h in order["history"]] == seqs_of[order_id], order_id


def test_a_bad_limit_or_cursor_is_a_query_error(history: HistoryStore) -> None:
    for limit in (0, -1, READ_LIMIT_MAX + 1):
        with pytest.raises(StoreQueryError, match="limit"):
            history.orders_of("alice", open_only=False, after_order_id=0, limit=limit)
        with pytest.raises(StoreQueryError, match="limit"):
            history.trades("ACME", limit)
        with pytest.raises(StoreQueryError, match="limit"):
            history.fills_of("alice", 0, limit)
        with pytest.raises(StoreQueryError, match="limit"):
            history.balance_history("alice", 0, limit)
    with pytest.raises(StoreQueryError, match="after_order_id"):
        history.orders_of("alice", open_only=False, after_order_id=-1, limit=10)
    with pytest.raises(StoreQueryError, match="before_trade_id"):
        history.trades("ACME", 10, before_trade_id=-5)
    with pytest.raises(StoreQueryError, match="after_trade_id"):
        history.fills_of("alice", -1, 10)
    with pytest.raises(StoreQueryError, match="after_seq"):
        history.balance_history("alice", -1, 10)
    with pytest.raises(StoreQueryError, match="order_id"):
        history.order(-1)


# ---------------------------------------------------------------- the standard workload


def test_the_standard_workload_leaves_the_store_agreeing_with_the_engine(
    event_log: EventLog, history: HistoryStore
) -> None:
    workload = standard_workload(3_000, seed=7, account_count=40, symbol_count=3)
    node = LoggedNode(event_log, history)
    entry_commands = 100
    for commands in (workload.setup, workload.commands):
        for start in range(0, len(commands), entry_commands):
            node.run(*commands[start : start + entry_commands])
    ex = node.exchange
    assert (history.applied_index(), history.last_seq()) == (node.log_index, ex.seq)
    for name, account in ex.accounts.items():
        open_orders = all_pages(
            lambda after, name=name: history.orders_of(
                name, open_only=True, after_order_id=after, limit=100
            ),
            "order_id",
        )
        assert [o["order_id"] for o in open_orders] == sorted(account.orders), name
        for record in open_orders:
            live = account.orders[record["order_id"]]
            assert (record["qty"], record["leaves"], record["price"]) == (
                live.qty,
                live.leaves,
                live.price,
            )
        latest = history.balances(name)
        for asset, balance in account.balances.items():
            assert (latest[asset]["available"], latest[asset]["held"]) == (
                balance.available,
                balance.held,
            )
    stored_fills = sum(
        len(all_pages(lambda after, s=s: history.fills_of(s, after, 100), "trade_id"))
        for s in ex.accounts
    )
    assert stored_fills == 2 * (ex.next_trade_id - 1) > 0  # a maker and a taker fill per trade


# ---------------------------------------------------------------- the projector


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def following(store_dir: Path, follower_dir: Path) -> Iterator[HistoryStore]:
    """The store a projector writes, read beside it as a node reads it, once it exists
    (RocksDB writes CURRENT before the column families: opening may fail for a moment)."""
    opened: list[HistoryStore] = []

    def open_follower() -> bool:
        try:
            opened.append(HistoryStore.follow(store_dir, follower_dir))
        except StoreError:
            return False
        return True

    wait_until(open_follower, f"the projector to create {store_dir}")
    with opened[0] as follower:
        yield follower


def projected_to(follower: HistoryStore, log_index: int) -> bool:
    follower.catch_up()
    return follower.applied_index() >= log_index


@contextlib.contextmanager
def projector_thread(event_log_dir: Path, store_dir: Path) -> Iterator[Projector]:
    """A real Projector running in a thread for the block's life; it must not fail."""
    projector = Projector(event_log_dir, store_dir)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            projector.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name="projector", daemon=True)
    thread.start()
    try:
        yield projector
    finally:
        projector.stop()
        thread.join(WAIT_S)
    assert not thread.is_alive(), "the projector did not stop"
    assert not failures, failures


def test_a_projector_keeps_up_with_the_log_and_resumes_where_it_stopped(
    event_log: EventLog, tmp_path: Path
) -> None:
    store_dir = tmp_path / "projection"
    node = LoggedNode(event_log, None)
    node.run(*market_setup())

    with projector_thread(event_log.path, store_dir) as first:
        for _ in range(3):  # written while it runs
            node.run(
                PlaceOrder("alice", "ACME", SELL, 2, PRICE),
                PlaceOrder("bob", "ACME", BUY, 1, PRICE),
            )
        with following(store_dir, tmp_path / "reader-1") as reader:
            wait_until(lambda: projected_to(reader, node.log_index), "the first projection")
            assert [f["trade_id"] for f in reader.fills_of("bob", 0, 100)] == [1, 2, 3]
    assert first.entries_projected == node.log_index == 4

    for _ in range(2):  # written while no projector runs
        node.run(
            PlaceOrder("alice", "ACME", SELL, 2, PRICE), PlaceOrder("bob", "ACME", BUY, 1, PRICE)
        )
    with projector_thread(event_log.path, store_dir) as second:
        node.run(PlaceOrder("bob", "ACME", BUY, 1, PRICE))
        with following(store_dir, tmp_path / "reader-2") as reader:
            wait_until(lambda: projected_to(reader, node.log_index), "the second projection")
            assert [f["trade_id"] for f in reader.fills_of("bob", 0, 100)] == [1, 2, 3, 4, 5, 6]
            assert len(reader.fills_of("alice", 0, 100)) == 6
            assert reader.last_seq() == node.exchange.seq
    assert second.entries_projected == 3  # the entries after its position, and only those

    with HistoryStore.open(store_dir) as store:
        assert store.applied_index() == node.log_index
        assert len(store.orders_of("alice", open_only=False, after_order_id=0, limit=100)) == 5
        for account in ("alice", "bob", "fees"):
            latest = store.balances(account)
            assert latest, account
            for asset, balance in latest.items():
                expected = node.exchange.balance(account, asset)
                assert (balance["available"], balance["held"]) == expected


def test_raftex_project_projects_a_data_dir_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "node"
    event_log = EventLog.open(data_dir / "events")  # where a node keeps it
    process: subprocess.Popen[bytes] | None = None
    stderr = (tmp_path / "projector.log").open("wb")
    try:
        node = LoggedNode(event_log, None)
        node.run(*market_setup())
        node.run(
            PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE)
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "raftex.cli", "project", "--data-dir", str(data_dir)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        with following(data_dir / "projection", tmp_path / "reader") as reader:
            wait_until(lambda: projected_to(reader, node.log_index), "raftex project to catch up")
            assert len(reader.fills_of("bob", 0, 10)) == 1
            node.run(PlaceOrder("bob", "ACME", BUY, 6, PRICE))  # and it follows the log on
            wait_until(lambda: projected_to(reader, node.log_index), "the entry written after")
            maker = reader.order(1)  # alice's sell, filled by the two buys
            assert maker is not None and maker["status"] == "filled"
            assert len(reader.fills_of("alice", 0, 10)) == 2
            with pytest.raises(StoreError, match="read-only"):
                reader.write_entries(node.log.entries_after(0, 1))
            assert process.poll() is None

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_S) == 0, (tmp_path / "projector.log").read_text()
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT_S)
        stderr.close()
        event_log.close()

    with HistoryStore.open(data_dir / "projection") as store:
        assert (store.applied_index(), store.last_seq()) == (node.log_index, node.exchange.seq)
        assert len(store.fills_of("alice", 0, 10)) == 2
        assert store.balances("bob")["USD"]["available"] == node.exchange.balance("bob", "USD")[0]


def test_a_projector_started_by_a_node_stops_when_the_node_is_gone(tmp_path: Path) -> None:
    """A node killed with -9 cannot stop its projector; the projector must notice, or it keeps
    the projection locked against the node's next start. Here its parent is a shell that
    starts it in the background and exits; even with no event log to follow yet."""
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    command = (
        f"{sys.executable} -m raftex.cli project --data-dir {data_dir} --parent-pid $$"
        " >/dev/null 2>&1 & echo $!"
    )
    shell = subprocess.run(
        ["sh", "-c", command],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=True,
    )
    pid = int(shell.stdout.strip())
    try:
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the orphaned projector to stop")
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
