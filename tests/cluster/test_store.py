"""The node's RocksDB store, fed by a real engine: what a batch leaves behind and how it lasts.

Every test applies commands to an `engine.Exchange` and writes what it returned,
as the node's apply loop does, into a real RocksDB under tmp_path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from rocksdict import Options, Rdict

import cluster.store
from bench.workload import standard_workload
from cluster.store import (
    BATCH_COMMANDS_MAX,
    BLOCK_ROWS_MAX,
    CF_AUDIT,
    CF_META,
    COLUMN_FAMILIES,
    EMPTY_AUDIT_HEAD,
    HASH_BYTES,
    READ_LIMIT_MAX,
    AppliedCommand,
    Store,
    StoreCorruptionError,
    StoreError,
    StoreOrderError,
    StoreQueryError,
    u64_key,
)
from engine import Exchange, OrderType, Side, TimeInForce
from engine.commands import (
    AddInstrument,
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    PlaceOrder,
    Tick,
    command_to_wire,
)
from engine.events import Accepted, BalanceChanged, Cancelled, Event, event_to_wire

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 10
CASH = 1_000_000
SHARES = 1_000
PRICE = 1_000
BUY = Side.BUY
SELL = Side.SELL


class Node:
    """An engine and its store, applied to together like a node's apply loop does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.exchange = Exchange()
        self.log_index = store.applied_index()
        self.time_ms = START_MS
        self.request_no = 0

    def run(self, *commands: Command, write: bool = True) -> list[AppliedCommand]:
        """Applies `commands` as the next log entry and (by default) writes it."""
        self.log_index += 1
        self.time_ms += STEP_MS
        applied = [self.applied(command) for command in commands]
        if write:
            self.store.write_batch(self.log_index, self.time_ms, applied)
        return applied

    def applied(self, command: Command) -> AppliedCommand:
        self.request_no += 1
        events = self.exchange.apply(command, self.time_ms)
        return AppliedCommand(f"n1/{self.request_no}", command_to_wire(command), events)

    def order_id(self, applied: AppliedCommand) -> int:
        accepted = [e for e in applied.events if isinstance(e, Accepted)]
        assert len(accepted) == 1, applied.events
        return accepted[0].order_id


def market_setup() -> list[Command]:
    return [
        AddInstrument(
            "ACME", "ACME", "USD", maker_fee_bps=10, taker_fee_bps=20, reference_price=PRICE
        ),
        *(CreateAccount(name) for name in ("alice", "bob", "carol")),
        *(Deposit(name, "USD", CASH) for name in ("alice", "bob", "carol")),
        *(Deposit(name, "ACME", SHARES) for name in ("alice", "bob", "carol")),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "store")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def node(store: Store) -> Node:
    market = Node(store)
    market.run(*market_setup())
    return market


def order_ids(store: Store, account: str, *, open_only: bool) -> list[int]:
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


def rewrite_audit(path: Path, change: Callable[[Rdict], None]) -> None:
    """Opens a closed store's RocksDB directly and lets `change` edit its audit records."""
    options = Options(raw_mode=True)
    db = Rdict(
        str(path), options, column_families={n: Options(raw_mode=True) for n in COLUMN_FAMILIES}
    )
    audit = db.get_column_family(CF_AUDIT)
    try:
        change(audit)
    finally:
        audit.close()
        db.close()


# ---------------------------------------------------------------- a fresh store


def test_an_empty_store_is_at_index_zero_with_a_zero_audit_head(store: Store) -> None:
    assert store.applied_index() == 0
    assert store.audit_head() == "0" * 64 == EMPTY_AUDIT_HEAD
    assert store.last_seq() == 0
    assert store.events_since(0, 10) == []
    assert store.order(1) is None
    assert store.verify_audit().ok
    assert store.verify_audit().records == 0


# ---------------------------------------------------------------- one batch, one trade


def test_a_crossing_order_gives_the_order_the_trade_fills_for_both_accounts_and_balances(
    node: Node,
) -> None:
    sell, buy = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE, client_order_id="a1"),
        PlaceOrder("bob", "ACME", BUY, 4, PRICE, client_order_id="b1"),
    )
    store = node.store
    maker_id, taker_id = node.order_id(sell), node.order_id(buy)

    maker = store.order(maker_id)
    assert maker is not None
    assert maker["status"] == "partially_filled"
    assert (maker["qty"], maker["filled_qty"], maker["leaves"]) == (10, 4, 6)
    assert maker["notional"] == 4 * PRICE and maker["fees"] == 4  # 10 bps of 4,000
    assert kinds(maker["history"]) == ["accepted", "trade"]
    taker = store.order(taker_id)
    assert taker is not None
    assert taker["status"] == "filled" and taker["leaves"] == 0 and taker["fees"] == 8
    assert store.order_by_client_id("bob", "b1") == {
        k: v for k, v in taker.items() if not k.startswith("history")
    }

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


def test_events_are_stored_once_each_and_read_back_as_the_engine_emitted_them(node: Node) -> None:
    applied = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE),
        PlaceOrder("bob", "ACME", BUY, 4, PRICE),
    )
    store = node.store
    assert store.last_seq() == node.exchange.seq
    stored = store.events_since(0, READ_LIMIT_MAX)
    assert [e.seq for e in stored] == list(range(1, node.exchange.seq + 1))
    tail = [event_to_wire(e) for a in applied for e in a.events]
    assert [event_to_wire(e) for e in stored[-len(tail) :]] == tail


def test_each_command_gets_an_audit_record_with_its_outcome(node: Node) -> None:
    placed, rejected = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE),
        PlaceOrder("bob", "ACME", BUY, 10**9, PRICE),
    )
    records = node.store.audit_records(len(market_setup()), 10)
    assert [r["submitter"] for r in records] == [placed.submitter, rejected.submitter]
    assert records[0]["command"] == command_to_wire(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    assert records[0]["log_index"] == node.log_index and records[0]["log_time_ms"] == node.time_ms
    assert records[0]["outcome"]["result"] == "accepted"
    assert records[0]["outcome"]["order_id"] == node.order_id(placed)
    assert records[0]["outcome"]["seqs"] == [e.seq for e in placed.events]
    assert records[1]["outcome"]["result"] == "rejected"
    assert records[1]["outcome"]["code"] == "qty_too_large"
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert records[1]["hash"] == node.store.audit_head()


# ---------------------------------------------------------------- order and replay


def test_a_replayed_log_index_raises_and_changes_nothing(node: Node) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    store = node.store
    before = (store.applied_index(), store.audit_head(), store.last_seq(), store.audit_count())
    replay = node.applied(PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    for index in (store.applied_index(), store.applied_index() - 1, 0):
        with pytest.raises(StoreOrderError, match="already applied"):
            store.write_batch(index, node.time_ms, [replay])
    assert (store.applied_index(), store.audit_head(), store.last_seq(), store.audit_count()) == (
        before
    )
    assert store.trades("ACME", 10) == []
    assert store.events_since(before[2], 10) == []
    assert store.verify_audit().ok


def test_a_gap_in_event_sequences_raises_and_changes_nothing(node: Node) -> None:
    store = node.store
    before = (store.applied_index(), store.audit_head(), store.last_seq())
    placed = node.applied(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    gapped = AppliedCommand(placed.submitter, placed.command, placed.events[1:])
    with pytest.raises(StoreOrderError, match="gap-free"):
        store.write_batch(node.log_index + 1, node.time_ms, [gapped])
    assert (store.applied_index(), store.audit_head(), store.last_seq()) == before
    assert store.orders_of("alice", open_only=False, after_order_id=0, limit=10) == []


def test_a_store_closed_right_after_a_refused_batch_reopens_at_once(node: Node) -> None:
    placed = node.applied(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    gapped = AppliedCommand(placed.submitter, placed.command, placed.events[1:])
    with pytest.raises(StoreOrderError) as refused:  # keeps the traceback, and its frames, alive
        node.store.write_batch(node.log_index + 1, node.time_ms, [gapped])
    node.store.close()
    with Store.open(node.store.path) as again:
        assert again.applied_index() == node.log_index
    assert refused.value.code == "store_order"


def test_log_indexes_may_skip_but_never_go_back(node: Node) -> None:
    store = node.store
    head = store.audit_head()
    store.write_batch(node.log_index + 1, node.time_ms, [])  # an entry with no commands
    assert (store.applied_index(), store.audit_head()) == (node.log_index + 1, head)
    node.log_index += 5  # entries that are not batches (Raft no-ops, membership changes)
    node.run(Tick())
    assert store.applied_index() == node.log_index
    with pytest.raises(StoreOrderError):
        store.write_batch(node.log_index - 2, node.time_ms, [])


def test_a_retried_order_is_audited_with_its_original_outcome_and_stored_once(node: Node) -> None:
    order = PlaceOrder("alice", "ACME", SELL, 10, PRICE, client_order_id="same")
    (first,) = node.run(order)
    store = node.store
    seq_after_first = store.last_seq()
    (retry,) = node.run(order)  # the client timed out and sent it again
    assert [e.seq for e in retry.events] == [first.events[0].seq]  # its original Accepted
    assert store.last_seq() == seq_after_first == node.exchange.seq
    record = store.audit_records(store.audit_count() - 1, 1)[0]
    assert record["outcome"]["retry"] is True
    assert record["outcome"]["result"] == "accepted"
    assert record["outcome"]["order_id"] == node.order_id(first)
    assert record["outcome"]["seqs"] == [e.seq for e in retry.events]
    assert len(store.orders_of("alice", open_only=False, after_order_id=0, limit=10)) == 1
    assert store.verify_audit().ok


def test_a_retry_inside_the_same_batch_is_also_stored_once(node: Node) -> None:
    order = PlaceOrder("bob", "ACME", BUY, 5, PRICE, client_order_id="twice")
    first, _ = node.run(order, order)
    store = node.store
    assert store.last_seq() == node.exchange.seq
    assert [e.seq for e in store.events_since(0, READ_LIMIT_MAX)] == list(
        range(1, node.exchange.seq + 1)
    )
    last_two = store.audit_records(store.audit_count() - 2, 2)
    assert [r["outcome"]["retry"] for r in last_two] == [False, True]
    assert last_two[1]["outcome"]["order_id"] == node.order_id(first)


def test_a_batch_over_the_command_limit_is_refused(node: Node) -> None:
    ticks = [AppliedCommand("n1/t", command_to_wire(Tick()), [])] * (BATCH_COMMANDS_MAX + 1)
    with pytest.raises(StoreError, match="over the limit"):
        node.store.write_batch(node.log_index + 1, node.time_ms, ticks)


def test_a_batch_the_store_missed_shows_up_as_a_gap(node: Node) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), write=False)
    with pytest.raises(StoreOrderError, match="does not follow"):
        node.run(PlaceOrder("bob", "ACME", BUY, 4, PRICE))


def test_an_event_about_an_order_the_store_never_saw_is_corruption(node: Node) -> None:
    store = node.store
    before = (store.applied_index(), store.audit_head(), store.last_seq())
    # Hand-built: a gap-free engine cannot produce it, a corrupted store or engine could.
    seq = store.last_seq() + 1
    stray = Cancelled(seq, node.time_ms, 999, "alice", "ACME", SELL, PRICE, 1, 0, "user")
    command = AppliedCommand("n1/1", command_to_wire(CancelOrder("alice", 999)), [stray])
    with pytest.raises(StoreCorruptionError, match="never saw"):
        store.write_batch(node.log_index + 1, node.time_ms, [command])
    assert (store.applied_index(), store.audit_head(), store.last_seq()) == before


# ---------------------------------------------------------------- order lifecycles


def test_a_cancelled_order_leaves_the_open_orders_and_keeps_its_history(node: Node) -> None:
    (placed,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    order_id = node.order_id(placed)
    node.run(CancelOrder("alice", order_id))
    order = node.store.order(order_id)
    assert order is not None
    assert order["status"] == "cancelled" and order["reason"] == "user"
    assert (order["leaves"], order["cancelled_qty"], order["original_qty"]) == (0, 10, 10)
    assert kinds(order["history"]) == ["accepted", "cancelled"]
    assert node.store.orders_of("alice", open_only=True, after_order_id=0, limit=10) == []
    assert len(node.store.orders_of("alice", open_only=False, after_order_id=0, limit=10)) == 1


def test_an_ioc_order_that_fills_in_part_ends_cancelled_with_its_fill(node: Node) -> None:
    _, ioc = node.run(
        PlaceOrder("alice", "ACME", SELL, 3, PRICE),
        PlaceOrder("bob", "ACME", BUY, 5, PRICE, tif=TimeInForce.IOC),
    )
    order = node.store.order(node.order_id(ioc))
    assert order is not None
    assert order["status"] == "cancelled" and order["reason"] == "ioc"
    assert (order["filled_qty"], order["cancelled_qty"], order["leaves"]) == (3, 2, 0)
    assert kinds(order["history"]) == ["accepted", "trade", "cancelled"]


def test_an_amendment_changes_the_quantity_and_price_of_the_order(node: Node) -> None:
    (placed,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE + 60))
    order_id = node.order_id(placed)
    node.run(AmendOrder("alice", order_id, qty=6))
    node.run(AmendOrder("alice", order_id, price=PRICE + 70))
    order = node.store.order(order_id)
    assert order is not None
    assert (order["qty"], order["price"], order["leaves"], order["status"]) == (
        6,
        PRICE + 70,
        6,
        "open",
    )
    assert kinds(order["history"]) == ["accepted", "amended", "amended"]


def test_a_gtd_order_expires_when_a_tick_passes_its_time(node: Node) -> None:
    expire_ms = node.time_ms + 1_000
    (placed,) = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE, tif=TimeInForce.GTD, expire_time_ms=expire_ms)
    )
    node.time_ms = expire_ms
    (tick,) = node.run(Tick())
    order = node.store.order(node.order_id(placed))
    assert order is not None
    assert order["status"] == "expired" and order["leaves"] == 0
    assert node.store.orders_of("alice", open_only=True, after_order_id=0, limit=10) == []
    record = node.store.audit_records(node.store.audit_count() - 1, 1)[0]
    assert record["outcome"]["result"] == "applied"
    assert record["outcome"]["seqs"] == [e.seq for e in tick.events]


def test_a_stop_order_is_armed_until_a_trade_triggers_it(node: Node) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 1, PRICE), PlaceOrder("bob", "ACME", BUY, 1, PRICE))
    (stop,) = node.run(
        PlaceOrder("carol", "ACME", BUY, 2, order_type=OrderType.STOP, stop_price=PRICE + 10)
    )
    stop_id = node.order_id(stop)
    armed = node.store.order(stop_id)
    assert armed is not None and armed["status"] == "armed"
    assert order_ids(node.store, "carol", open_only=True) == [stop_id]
    node.run(
        PlaceOrder("alice", "ACME", SELL, 5, PRICE + 10),
        PlaceOrder("bob", "ACME", BUY, 1, PRICE + 10),
    )
    fired = node.store.order(stop_id)
    assert fired is not None
    assert kinds(fired["history"]) == ["accepted", "triggered", "trade"]
    assert fired["status"] == "filled" and fired["filled_qty"] == 2
    assert node.store.orders_of("carol", open_only=True, after_order_id=0, limit=10) == []


def test_an_iceberg_shows_its_replenishment_in_its_history(node: Node) -> None:
    (iceberg,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE + 50, display_qty=3))
    node.run(PlaceOrder("bob", "ACME", BUY, 3, PRICE + 50))
    order = node.store.order(node.order_id(iceberg))
    assert order is not None
    assert kinds(order["history"]) == ["accepted", "trade", "replenished"]
    assert (order["status"], order["leaves"]) == ("partially_filled", 7)


def test_an_order_filled_twice_and_cancelled_in_one_batch_ends_with_all_of_it(node: Node) -> None:
    (placed,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    order_id = node.order_id(placed)
    applied = node.run(
        PlaceOrder("bob", "ACME", BUY, 2, PRICE),
        PlaceOrder("carol", "ACME", BUY, 3, PRICE),
        CancelOrder("alice", order_id),
    )
    order = node.store.order(order_id)
    assert order is not None
    assert kinds(order["history"]) == ["accepted", "trade", "trade", "cancelled"]
    assert (order["status"], order["filled_qty"], order["cancelled_qty"]) == ("cancelled", 5, 5)
    assert order["notional"] == 5 * PRICE and order["event_count"] == 4
    assert order["updated_seq"] == order["history"][-1]["seq"]
    assert node.store.orders_of("alice", open_only=True, after_order_id=0, limit=10) == []
    # Every change of alice's balances in that batch is in her history; the latest is her balance.
    changes = [
        e for a in applied for e in a.events if type(e) is BalanceChanged and e.account == "alice"
    ]
    assert len(changes) > 2
    history = node.store.balance_history("alice", changes[0].seq - 1, READ_LIMIT_MAX)
    assert [(h["seq"], h["asset"], h["available"], h["held"]) for h in history] == [
        (e.seq, e.asset, e.available, e.held) for e in changes
    ]
    latest = node.store.balances("alice")
    for asset in ("USD", "ACME"):
        assert (latest[asset]["available"], latest[asset]["held"]) == node.exchange.balance(
            "alice", asset
        )


def test_an_order_history_is_cut_at_the_read_limit(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster.store, "ORDER_HISTORY_READ_MAX", 3)
    (placed,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    order_id = node.order_id(placed)
    for _ in range(4):
        node.run(PlaceOrder("bob", "ACME", BUY, 1, PRICE))
    order = node.store.order(order_id)
    assert order is not None
    assert kinds(order["history"]) == ["accepted", "trade", "trade"]
    assert order["history_truncated"] is True and order["event_count"] == 5
    assert order["filled_qty"] == 4  # the record itself has every event


# ---------------------------------------------------------------- durability


def test_state_survives_close_and_reopen(node: Node, tmp_path: Path) -> None:
    (sell, _) = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE)
    )
    store = node.store
    before = (store.applied_index(), store.audit_head(), store.last_seq(), store.audit_count())
    order, trades = store.order(node.order_id(sell)), store.trades("ACME", 10)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.order(1)

    with Store.open(tmp_path / "store") as reopened:
        assert (
            reopened.applied_index(),
            reopened.audit_head(),
            reopened.last_seq(),
            reopened.audit_count(),
        ) == before
        assert reopened.order(node.order_id(sell)) == order
        assert reopened.trades("ACME", 10) == trades
        node.store = reopened
        node.run(PlaceOrder("bob", "ACME", BUY, 6, PRICE))  # and it goes on from there
        assert reopened.applied_index() == before[0] + 1
        assert reopened.last_seq() == node.exchange.seq
        assert reopened.verify_audit().ok


def test_a_checkpoint_opens_as_a_store_with_the_same_index_head_and_data(
    node: Node, tmp_path: Path
) -> None:
    (sell, _) = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE)
    )
    store = node.store
    at_checkpoint = (store.applied_index(), store.audit_head(), store.last_seq())
    events = store.events_since(0, READ_LIMIT_MAX)
    order, trades = store.order(node.order_id(sell)), store.trades("ACME", 10)
    bob = store.balances("bob")
    store.checkpoint(tmp_path / "snapshots" / "cp1")
    node.run(PlaceOrder("bob", "ACME", BUY, 6, PRICE))  # after the checkpoint: not in it
    with pytest.raises(StoreError, match="already exists"):
        store.checkpoint(tmp_path / "snapshots" / "cp1")

    with Store.open(tmp_path / "snapshots" / "cp1") as copy:
        assert (copy.applied_index(), copy.audit_head(), copy.last_seq()) == at_checkpoint
        assert copy.verify_audit().ok
        assert copy.events_since(0, READ_LIMIT_MAX) == events
        assert copy.order(node.order_id(sell)) == order
        assert copy.trades("ACME", 10) == trades
        assert copy.balances("bob") == bob != store.balances("bob")


def test_a_store_in_use_cannot_be_opened_again(store: Store) -> None:
    with pytest.raises(StoreError, match="cannot open store"):
        Store.open(store.path)


def test_a_path_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    with pytest.raises(StoreError, match="not a directory"):
        Store.open(a_file)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "CURRENT").write_text("junk\n")
    with pytest.raises(StoreError, match="cannot open store"):
        Store.open(garbage)


def test_a_store_without_fsync_keeps_every_written_batch_through_kill_9(tmp_path: Path) -> None:
    # The writer opens with fsync=False, writes batches and is killed with SIGKILL: every
    # batch went through the WAL, so every one is there, whole, after a restart.
    path = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from cluster.store import AppliedCommand, Store
        from bench.workload import standard_workload
        from engine import Exchange
        from engine.commands import command_to_wire

        workload = standard_workload(600, seed=3, account_count=20, symbol_count=2)
        commands = workload.setup + workload.commands
        exchange = Exchange()
        store = Store.open(Path({str(path)!r}), fsync=False)
        for index, start in enumerate(range(0, len(commands), 50), 1):
            applied = [
                AppliedCommand(f"n1/{{n}}", command_to_wire(c), exchange.apply(c, index))
                for n, c in enumerate(commands[start : start + 50], start)
            ]
            store.write_batch(index, index, applied)
        print(index, exchange.seq, store.audit_head(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    repo = Path(__file__).resolve().parents[2]
    killed = subprocess.run(
        [sys.executable, "-c", script],
        check=False,  # it dies of SIGKILL on purpose
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    last_index, last_seq, audit_head = killed.stdout.split()
    with Store.open(path) as store:
        assert store.applied_index() == int(last_index)
        assert store.last_seq() == int(last_seq)
        assert store.audit_head() == audit_head
        assert store.verify_audit().ok
        assert [e.seq for e in store.events_since(int(last_seq) - 5, 10)] == list(
            range(int(last_seq) - 4, int(last_seq) + 1)
        )


def test_a_store_of_another_format_is_refused(tmp_path: Path) -> None:
    older = tmp_path / "older"
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    # Format 1 kept an order's history as keys in a column family of its own.
    families = {name: Options(raw_mode=True) for name in (*COLUMN_FAMILIES, "order_events")}
    Rdict(str(older), options, column_families=families).close()
    with pytest.raises(StoreError, match="another build"):
        Store.open(older)

    newer = tmp_path / "newer"
    Store.open(newer).close()
    db = Rdict(
        str(newer),
        Options(raw_mode=True),
        column_families={n: Options(raw_mode=True) for n in COLUMN_FAMILIES},
    )
    meta = db.get_column_family(CF_META)
    meta[b"format"] = u64_key(99)
    meta.close()
    db.close()
    with pytest.raises(StoreError, match="format 99"):
        Store.open(newer)


# ---------------------------------------------------------------- the audit chain


def audited_node(node: Node) -> Node:
    """A few more audited commands on top of the set-up batch."""
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    node.run(Deposit("carol", "USD", 5))
    node.store.close()
    return node


def test_a_tampered_audit_record_is_found_by_verification(node: Node) -> None:
    path = audited_node(node).store.path

    def forge_submitter(audit: Rdict) -> None:
        value = audit[u64_key(3)]
        fields = msgpack.unpackb(value[2 * HASH_BYTES :])
        fields[3] = "mallory/1"
        audit[u64_key(3)] = value[: 2 * HASH_BYTES] + msgpack.packb(fields)

    rewrite_audit(path, forge_submitter)
    with Store.open(path) as store:
        report = store.verify_audit()
        assert not report.ok
        assert report.first_bad == 3 and report.records == 2
        assert "hash mismatch" in report.reason


def test_a_tampered_record_with_a_recomputed_hash_breaks_the_next_link(node: Node) -> None:
    path = audited_node(node).store.path

    def forge_and_rehash(audit: Rdict) -> None:
        value = audit[u64_key(5)]
        prev_hash = value[:HASH_BYTES]
        fields = msgpack.unpackb(value[2 * HASH_BYTES :])
        fields[4] = command_to_wire(Deposit("mallory", "USD", 10**6))
        body = msgpack.packb(fields)
        audit[u64_key(5)] = prev_hash + hashlib.sha256(prev_hash + body).digest() + body

    rewrite_audit(path, forge_and_rehash)
    with Store.open(path) as store:
        report = store.verify_audit()
        assert (report.ok, report.first_bad) == (False, 6)
        assert "broken link" in report.reason


def test_a_deleted_audit_record_is_reported_missing(node: Node) -> None:
    path = audited_node(node).store.path
    rewrite_audit(path, lambda audit: audit.delete(u64_key(4)))
    with Store.open(path) as store:
        report = store.verify_audit()
        assert (report.ok, report.first_bad, report.records) == (False, 4, 3)
        assert "missing record" in report.reason


def test_a_store_whose_last_audit_record_is_gone_refuses_to_open(node: Node) -> None:
    store = audited_node(node).store
    last = store.audit_count()
    rewrite_audit(store.path, lambda audit: audit.delete(u64_key(last)))
    with pytest.raises(StoreCorruptionError, match="audit"):
        Store.open(store.path)


# ---------------------------------------------------------------- pagination


def busy_node(node: Node, rounds: int) -> Node:
    """`rounds` batches in which alice rests a sell and bob takes part of it."""
    for n in range(rounds):
        node.run(
            PlaceOrder("alice", "ACME", SELL, 3, PRICE + n % 5),
            PlaceOrder("bob", "ACME", BUY, 1, PRICE + n % 5),
        )
    return node


def test_orders_page_by_order_id_cursor(node: Node) -> None:
    store = busy_node(node, 25).store
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
    assert all(o["status"] in ("open", "partially_filled") for o in open_ones)


def test_trades_page_newest_first_with_a_before_cursor(node: Node) -> None:
    store = busy_node(node, 25).store
    newest = store.trades("ACME", 10)
    pages = [newest]
    while pages[-1]:
        pages.append(store.trades("ACME", 10, before_trade_id=pages[-1][-1]["trade_id"]))
    ids = [t["trade_id"] for page in pages for t in page]
    assert ids == list(range(25, 0, -1))
    assert store.trades("NOPE", 10) == []


def test_fills_balance_history_audit_and_events_page_ascending(node: Node) -> None:
    store = busy_node(node, 12).store
    fills = all_pages(lambda after: store.fills_of("bob", after, 5), "trade_id")
    assert [f["trade_id"] for f in fills] == list(range(1, 13))
    history = all_pages(lambda after: store.balance_history("bob", after, 5), "seq")
    assert [h["seq"] for h in history] == sorted({h["seq"] for h in history})
    assert len(history) == 2 + 2 * 12  # two deposits, then USD and ACME per trade
    records = all_pages(lambda after: store.audit_records(after, 9), "audit_no")
    assert [r["audit_no"] for r in records] == list(range(1, store.audit_count() + 1))
    events, cursor = [], 0
    while page := store.events_since(cursor, 50):
        events.extend(page)
        cursor = page[-1].seq
    assert [e.seq for e in events] == list(range(1, store.last_seq() + 1))


def test_events_and_balance_history_read_the_same_from_any_cursor_across_blocks(
    store: Store,
) -> None:
    # Big batches over few accounts: many events per batch and many balance changes per
    # account per batch, so both are stored over several blocks.
    workload = standard_workload(2_000, seed=11, account_count=5, symbol_count=2)
    node = Node(store)
    node.run(*workload.setup)
    emitted: list[Event] = []
    for start in range(0, len(workload.commands), 1_000):
        applied = node.run(*workload.commands[start : start + 1_000])
        emitted.extend(e for a in applied for e in a.events)
    assert len(emitted) > 4 * BLOCK_ROWS_MAX
    by_seq = {e.seq: event_to_wire(e) for e in emitted}
    first, last = emitted[0].seq, store.last_seq()
    for cursor in range(first - 1, last + 1, 7):
        page = store.events_since(cursor, 50)
        assert [event_to_wire(e) for e in page] == [
            by_seq[seq] for seq in range(cursor + 1, min(cursor + 50, last) + 1)
        ], cursor

    fees = [e for e in emitted if type(e) is BalanceChanged and e.account == "fees"]
    assert len(fees) > 2 * BLOCK_ROWS_MAX  # more than a block in each of the two batches
    for cursor in [fees[0].seq - 1, *(e.seq for e in fees[::13]), fees[-1].seq]:
        expected = [(e.seq, e.asset, e.available, e.held) for e in fees if e.seq > cursor][:30]
        page = store.balance_history("fees", cursor, 30)
        assert [(h["seq"], h["asset"], h["available"], h["held"]) for h in page] == expected


def test_a_bad_limit_or_cursor_is_a_query_error(store: Store) -> None:
    for limit in (0, -1, READ_LIMIT_MAX + 1):
        with pytest.raises(StoreQueryError, match="limit"):
            store.events_since(0, limit)
    with pytest.raises(StoreQueryError, match="after_order_id"):
        store.orders_of("alice", open_only=False, after_order_id=-1, limit=10)
    with pytest.raises(StoreQueryError, match="before_trade_id"):
        store.trades("ACME", 10, before_trade_id=-5)


# ---------------------------------------------------------------- the standard workload


def test_the_standard_workload_leaves_the_store_agreeing_with_the_engine(store: Store) -> None:
    workload = standard_workload(3_000, seed=7, account_count=40, symbol_count=3)
    node = Node(store)
    batch_commands = 100
    for commands in (workload.setup, workload.commands):
        for start in range(0, len(commands), batch_commands):
            node.run(*commands[start : start + batch_commands])
    ex = node.exchange
    assert store.last_seq() == ex.seq
    assert store.audit_count() == len(workload.setup) + len(workload.commands)
    assert store.verify_audit().ok
    for name, account in ex.accounts.items():
        open_orders = all_pages(
            lambda after, name=name: store.orders_of(
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
        latest = store.balances(name)
        for asset, balance in account.balances.items():
            assert (latest[asset]["available"], latest[asset]["held"]) == (
                balance.available,
                balance.held,
            )
    stored_trades = sum(
        len(all_pages(lambda after, s=s: store.fills_of(s, after, 100), "trade_id"))
        for s in ex.accounts
    )
    assert stored_trades == 2 * (ex.next_trade_id - 1)  # a maker and a taker fill per trade
