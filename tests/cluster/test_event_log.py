"""The voter's event log, fed by a real engine: what an entry leaves behind and how it lasts.

Every test applies commands to an `engine.Exchange` and writes what it returned,
as the node's apply loop does, into a real RocksDB under tmp_path: one record
per log entry, and an audit chain through every command.
"""

from __future__ import annotations

import hashlib
import itertools
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

from cluster.event_log import (
    CF_ENTRIES,
    CF_META,
    COLUMN_FAMILIES,
    ENTRY_COMMANDS_MAX,
    GENESIS_HASH,
    META_TIP,
    AppliedCommand,
    AuditReport,
    EventLog,
    LoggedEntry,
)
from cluster.event_log_writer import EventLogWriter
from cluster.rocks import (
    READ_LIMIT_MAX,
    U64,
)
from cluster.store_errors import StoreCorruptionError, StoreError, StoreOrderError, StoreQueryError
from engine.commands import (
    Deposit,
    PlaceOrder,
    Tick,
    command_to_bytes,
    command_to_wire,
)
from engine.events import Event, Trade, event_to_wire
from tests.cluster.logged_node import (
    BUY,
    PRICE,
    SELL,
    START_MS,
    STEP_MS,
    LoggedNode,
    market_setup,
)

ZERO_HEAD = "0" * 64
SETUP_COMMANDS = len(market_setup())


@pytest.fixture
def event_log(tmp_path: Path) -> Iterator[EventLog]:
    opened = EventLog.open(tmp_path / "events")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def node(event_log: EventLog) -> LoggedNode:
    market = LoggedNode(event_log)
    market.run(*market_setup())
    return market


def tip(event_log: EventLog) -> tuple[int, int, str, int]:
    return (
        event_log.applied_index(),
        event_log.audit_count(),
        event_log.audit_head(),
        event_log.last_seq(),
    )


def wires(events: list[Event]) -> list[list[Any]]:
    return [event_to_wire(e) for e in events]


def all_events(event_log: EventLog) -> list[Event]:
    events: list[Event] = []
    while page := event_log.events_since(events[-1].seq if events else 0, READ_LIMIT_MAX):
        events.extend(page)
    return events


def all_audit_records(event_log: EventLog) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while page := event_log.audit_records(records[-1]["audit_no"] if records else 0, 100):
        records.extend(page)
    return records


def rewrite_entries(path: Path, change: Callable[[Rdict], None]) -> None:
    """Opens a closed log's RocksDB directly and lets `change` edit its entries."""
    db = Rdict(
        str(path),
        Options(raw_mode=True),
        column_families={name: Options(raw_mode=True) for name in COLUMN_FAMILIES},
    )
    entries = db.get_column_family(CF_ENTRIES)
    try:
        change(entries)
    finally:
        entries.close()
        db.close()


def edit_entry(entries: Rdict, log_index: int, change: Callable[[list[Any]], None]) -> None:
    """Rewrites entry `log_index`: `change` edits its decoded
    [log_time_ms, first_audit_no, first_seq, last_seq, [record, ...], [hash, ...]]."""
    key = U64.pack(log_index)
    value = msgpack.unpackb(entries[key], raw=False)
    change(value)
    entries[key] = msgpack.packb(value, use_bin_type=True)


# ---------------------------------------------------------------- a fresh log


def test_an_empty_log_is_at_index_zero_with_a_zero_audit_head(event_log: EventLog) -> None:
    assert tip(event_log) == (0, 0, ZERO_HEAD, 0)
    assert GENESIS_HASH.hex() == ZERO_HEAD
    assert event_log.events_since(0, 10) == []
    assert event_log.entries_after(0, 10) == []
    assert event_log.audit_records(0, 10) == []
    report = event_log.verify_audit()
    assert (report.ok, report.records, report.first_bad) == (True, 0, None)


# ---------------------------------------------------------------- what an entry leaves behind


def test_events_are_logged_once_each_and_read_back_as_the_engine_emitted_them(
    node: LoggedNode,
) -> None:
    applied = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE),
        PlaceOrder("bob", "ACME", BUY, 4, PRICE),
    )
    event_log = node.log
    assert event_log.last_seq() == node.exchange.seq
    stored = all_events(event_log)
    assert [e.seq for e in stored] == list(range(1, node.exchange.seq + 1))
    tail = [e for a in applied for e in a.events]
    assert any(type(e) is Trade for e in tail)
    assert stored[-len(tail) :] == tail  # the same typed events, field for field
    assert wires(stored[-len(tail) :]) == wires(tail)


def test_each_command_gets_an_audit_record_with_its_outcome(node: LoggedNode) -> None:
    placed, rejected = node.run(
        PlaceOrder("alice", "ACME", SELL, 10, PRICE),
        PlaceOrder("bob", "ACME", BUY, 10**9, PRICE),
    )
    event_log = node.log
    assert event_log.audit_count() == SETUP_COMMANDS + 2
    records = event_log.audit_records(SETUP_COMMANDS, 10)
    assert [r["audit_no"] for r in records] == [SETUP_COMMANDS + 1, SETUP_COMMANDS + 2]
    assert [r["submitter"] for r in records] == [placed.submitter, rejected.submitter]
    assert records[0]["command"] == command_to_wire(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    assert records[0]["log_index"] == node.log_index and records[0]["log_time_ms"] == node.time_ms
    assert records[0]["outcome"] == {
        "seqs": [e.seq for e in placed.events],
        "retry": False,
        "result": "accepted",
        "code": "",
        "order_id": node.order_id(placed),
    }
    assert records[1]["outcome"]["result"] == "rejected"
    assert records[1]["outcome"]["code"] == "qty_too_large"
    assert records[1]["outcome"]["order_id"] == 0
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert records[1]["hash"] == event_log.audit_head()


def test_commands_that_change_state_without_an_order_or_change_nothing_say_so(
    node: LoggedNode,
) -> None:
    node.run(Deposit("carol", "USD", 5), Tick())
    deposit, tick = node.log.audit_records(SETUP_COMMANDS, 10)
    # The transfer, then the balance it leaves.
    assert deposit["outcome"]["result"] == "applied" and len(deposit["outcome"]["seqs"]) == 2
    assert tick["outcome"] == {
        "seqs": [],
        "retry": False,
        "result": "none",
        "code": "",
        "order_id": 0,
    }


def test_entries_after_gives_the_entries_in_order_with_their_commands_and_typed_events(
    node: LoggedNode,
) -> None:
    (sell,) = node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    seq_before_trade = node.log.last_seq()
    (buy,) = node.run(PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    node.log_index += 3  # indexes that carried no commands (a Raft no-op, a membership change)
    node.run()

    entries = node.log.entries_after(0, 10)
    assert [e.log_index for e in entries] == [1, 2, 3, 7]
    assert all(type(e) is LoggedEntry for e in entries)
    assert [len(e.commands) for e in entries] == [SETUP_COMMANDS, 1, 1, 0]
    trade_entry = entries[2]
    assert trade_entry.log_time_ms == START_MS + 3 * STEP_MS
    assert (trade_entry.first_seq, trade_entry.last_seq) == (
        seq_before_trade + 1,
        node.exchange.seq,
    )
    assert trade_entry.commands == [buy]  # submitter, command wire and the same typed events
    assert any(type(e) is Trade for e in trade_entry.commands[0].events)
    assert entries[1].commands == [sell]
    empty = entries[3]
    assert (empty.first_seq, empty.last_seq, empty.commands) == (0, node.exchange.seq, [])

    assert node.log.entries_after(1, 2) == entries[1:3]
    assert node.log.entries_after(3, 10) == node.log.entries_after(5, 10) == [empty]
    assert node.log.entries_after(7, 10) == []


# ---------------------------------------------------------------- order and replay


def test_a_replayed_log_index_raises_and_changes_nothing(node: LoggedNode) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    event_log = node.log
    before = tip(event_log)
    entries = event_log.entries_after(0, 10)
    replay = node.applied(PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    for index in (event_log.applied_index(), event_log.applied_index() - 1, 0):
        with pytest.raises(StoreOrderError, match="already applied"):
            event_log.write_entry(index, node.time_ms, [replay])
    assert tip(event_log) == before
    assert event_log.entries_after(0, 10) == entries
    assert event_log.events_since(before[3], 10) == []
    assert event_log.verify_audit().ok


def test_a_gap_in_event_sequences_raises_and_changes_nothing(node: LoggedNode) -> None:
    event_log = node.log
    before = tip(event_log)
    placed = node.applied(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    gapped = AppliedCommand(placed.submitter, placed.command, placed.events[1:])
    with pytest.raises(StoreOrderError, match="gap-free"):
        event_log.write_entry(node.log_index + 1, node.time_ms, [gapped])
    assert tip(event_log) == before
    assert event_log.entries_after(node.log_index, 10) == []


def test_an_entry_the_log_missed_shows_up_as_a_gap(node: LoggedNode) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), write=False)
    before = tip(node.log)
    with pytest.raises(StoreOrderError, match="does not follow"):
        node.run(PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    assert tip(node.log) == before


def test_a_log_closed_right_after_a_refused_entry_reopens_at_once(node: LoggedNode) -> None:
    placed = node.applied(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    gapped = AppliedCommand(placed.submitter, placed.command, placed.events[1:])
    with pytest.raises(StoreOrderError) as refused:  # keeps the traceback, and its frames, alive
        node.log.write_entry(node.log_index + 1, node.time_ms, [gapped])
    node.log.close()
    again = EventLog.open(node.log.path)
    try:
        assert again.applied_index() == node.log_index
    finally:
        again.close()
    assert refused.value.code == "store_order"


def test_log_indexes_may_skip_but_never_go_back(node: LoggedNode) -> None:
    event_log = node.log
    head = event_log.audit_head()
    event_log.write_entry(node.log_index + 1, node.time_ms, [])  # an entry with no commands
    assert (event_log.applied_index(), event_log.audit_head()) == (node.log_index + 1, head)
    node.log_index += 5  # entries that are not batches (Raft no-ops, membership changes)
    node.run(Tick())
    assert event_log.applied_index() == node.log_index
    assert event_log.audit_count() == SETUP_COMMANDS + 1
    with pytest.raises(StoreOrderError):
        event_log.write_entry(node.log_index - 2, node.time_ms, [])
    assert event_log.applied_index() == node.log_index


def test_a_retried_order_is_audited_with_its_original_outcome_and_logged_once(
    node: LoggedNode,
) -> None:
    order = PlaceOrder("alice", "ACME", SELL, 10, PRICE, client_order_id="same")
    (first,) = node.run(order)
    event_log = node.log
    seq_after_first = event_log.last_seq()
    (retry,) = node.run(order)  # the client timed out and sent it again
    assert [e.seq for e in retry.events] == [first.events[0].seq]  # its original Accepted
    assert event_log.last_seq() == seq_after_first == node.exchange.seq
    assert [e.seq for e in all_events(event_log)] == list(range(1, seq_after_first + 1))

    first_record, retry_record = event_log.audit_records(event_log.audit_count() - 2, 2)
    assert first_record["outcome"]["retry"] is False
    assert retry_record["outcome"]["retry"] is True
    assert retry_record["outcome"]["result"] == "accepted"
    assert retry_record["outcome"]["order_id"] == node.order_id(first)
    assert retry_record["outcome"]["seqs"] == [e.seq for e in retry.events]
    retry_entry = event_log.entries_after(node.log_index - 1, 1)[0]
    assert (retry_entry.first_seq, retry_entry.last_seq) == (0, seq_after_first)
    assert retry_entry.commands[0].events == retry.events  # the original outcome, for the audit
    assert event_log.verify_audit().ok


def test_a_retry_inside_the_same_entry_is_also_logged_once(node: LoggedNode) -> None:
    order = PlaceOrder("bob", "ACME", BUY, 5, PRICE, client_order_id="twice")
    first, again = node.run(order, order)
    event_log = node.log
    assert again.events == first.events[:1]  # the original Accepted
    assert event_log.last_seq() == node.exchange.seq
    assert [e.seq for e in all_events(event_log)] == list(range(1, node.exchange.seq + 1))
    last_two = event_log.audit_records(event_log.audit_count() - 2, 2)
    assert [r["outcome"]["seqs"] for r in last_two] == [
        [e.seq for e in first.events],
        [first.events[0].seq],
    ]
    assert last_two[1]["outcome"]["order_id"] == node.order_id(first)


def test_a_retry_inside_the_same_entry_is_audited_as_a_retry(node: LoggedNode) -> None:
    order = PlaceOrder("bob", "ACME", BUY, 5, PRICE, client_order_id="twice")
    node.run(order, order)
    last_two = node.log.audit_records(node.log.audit_count() - 2, 2)
    assert [r["outcome"]["retry"] for r in last_two] == [False, True]


def test_an_entry_over_the_command_limit_is_refused(node: LoggedNode) -> None:
    tick = AppliedCommand("n1/t", command_to_bytes(Tick()), [])
    before = tip(node.log)
    with pytest.raises(StoreError, match="over the limit"):
        node.log.write_entry(node.log_index + 1, node.time_ms, [tick] * (ENTRY_COMMANDS_MAX + 1))
    assert tip(node.log) == before
    node.log.write_entry(node.log_index + 1, node.time_ms, [tick] * ENTRY_COMMANDS_MAX)
    assert node.log.audit_count() == before[1] + ENTRY_COMMANDS_MAX


# ---------------------------------------------------------------- durability


def test_state_survives_close_and_reopen(node: LoggedNode, tmp_path: Path) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    event_log = node.log
    before = tip(event_log)
    entries, records = event_log.entries_after(0, 10), all_audit_records(event_log)
    event_log.close()
    with pytest.raises(StoreError, match="closed"):
        event_log.events_since(0, 10)

    reopened = EventLog.open(tmp_path / "events")
    try:
        assert tip(reopened) == before
        assert reopened.entries_after(0, 10) == entries
        assert all_audit_records(reopened) == records
        node.log = reopened
        node.run(PlaceOrder("bob", "ACME", BUY, 6, PRICE))  # and it goes on from there
        assert reopened.applied_index() == before[0] + 1
        assert reopened.last_seq() == node.exchange.seq
        assert reopened.verify_audit().ok
    finally:
        reopened.close()


def test_a_checkpoint_opens_as_a_log_with_the_same_index_head_and_data(
    node: LoggedNode, tmp_path: Path
) -> None:
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    event_log = node.log
    at_checkpoint = tip(event_log)
    entries, events = event_log.entries_after(0, 10), all_events(event_log)
    records = all_audit_records(event_log)
    event_log.checkpoint(tmp_path / "snapshots" / "cp1")
    node.run(PlaceOrder("bob", "ACME", BUY, 6, PRICE))  # after the checkpoint: not in it
    with pytest.raises(StoreError, match="already exists"):
        event_log.checkpoint(tmp_path / "snapshots" / "cp1")

    copy = EventLog.open(tmp_path / "snapshots" / "cp1")
    try:
        assert tip(copy) == at_checkpoint != tip(event_log)
        assert copy.verify_audit().ok
        assert copy.entries_after(0, 10) == entries
        assert all_events(copy) == events
        assert all_audit_records(copy) == records
    finally:
        copy.close()


def test_a_log_in_use_cannot_be_opened_again(event_log: EventLog) -> None:
    with pytest.raises(StoreError, match="cannot open store"):
        EventLog.open(event_log.path)


def test_a_path_that_is_not_a_log_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    with pytest.raises(StoreError, match="not a directory"):
        EventLog.open(a_file)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "CURRENT").write_text("junk\n")
    with pytest.raises(StoreError, match="cannot open store"):
        EventLog.open(garbage)
    with pytest.raises(StoreError, match="no store"):
        EventLog.follow(tmp_path / "nothing", tmp_path / "follower")


def test_a_log_without_fsync_keeps_every_written_entry_through_kill_9(tmp_path: Path) -> None:
    # The writer opens with fsync=False, writes entries and is killed with SIGKILL: every
    # entry went through the WAL, so every one is there, whole, after a restart.
    path = tmp_path / "events"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from cluster.event_log import AppliedCommand, EventLog
        from bench.workload import standard_workload
        from engine import Exchange
        from engine.commands import command_to_bytes

        workload = standard_workload(600, seed=3, account_count=20, symbol_count=2)
        commands = workload.setup + workload.commands
        exchange = Exchange()
        event_log = EventLog.open(Path({str(path)!r}), fsync=False)
        for index, start in enumerate(range(0, len(commands), 50), 1):
            applied = [
                AppliedCommand(f"n1/{{n}}", command_to_bytes(c), exchange.apply(c, index))
                for n, c in enumerate(commands[start : start + 50], start)
            ]
            event_log.write_entry(index, index, applied)
        print(index, exchange.seq, event_log.audit_count(), event_log.audit_head(), flush=True)
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
    last_index, last_seq, audit_count, audit_head = killed.stdout.split()
    event_log = EventLog.open(path)
    try:
        assert tip(event_log) == (int(last_index), int(audit_count), audit_head, int(last_seq))
        assert event_log.verify_audit().ok
        assert [e.seq for e in event_log.events_since(int(last_seq) - 5, 10)] == list(
            range(int(last_seq) - 4, int(last_seq) + 1)
        )
        assert len(event_log.entries_after(0, READ_LIMIT_MAX)) == int(last_index)
    finally:
        event_log.close()


def test_a_log_of_another_format_is_refused(tmp_path: Path) -> None:
    # The combined store this log replaced kept audit records in a column family of their own.
    older = tmp_path / "older"
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    families = {name: Options(raw_mode=True) for name in (*COLUMN_FAMILIES, "audit")}
    Rdict(str(older), options, column_families=families).close()
    with pytest.raises(StoreError, match="another build"):
        EventLog.open(older)

    newer = tmp_path / "newer"
    EventLog.open(newer).close()
    db = Rdict(
        str(newer),
        Options(raw_mode=True),
        column_families={n: Options(raw_mode=True) for n in COLUMN_FAMILIES},
    )
    meta = db.get_column_family(CF_META)
    fields = msgpack.unpackb(meta[META_TIP], raw=False)
    fields[0] = 99
    meta[META_TIP] = msgpack.packb(fields, use_bin_type=True)
    meta.close()
    db.close()
    with pytest.raises(StoreError, match="format 99"):
        EventLog.open(newer)


# ---------------------------------------------------------------- the audit chain


def audit_report(path: Path) -> AuditReport:
    """What verification says of the closed log at `path`."""
    event_log = EventLog.open(path)
    try:
        return event_log.verify_audit()
    finally:
        event_log.close()


def audited_log(node: LoggedNode) -> Path:
    """Commands 1-10 in entry 1 (the set-up), 11-12 in entry 2, 13 in entry 3; then closed."""
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE))
    node.run(Deposit("carol", "USD", 5))
    assert node.log.audit_count() == SETUP_COMMANDS + 3 == 13
    node.log.close()
    return node.log.path


def test_the_audit_chain_is_sha256_over_the_records_as_stored(node: LoggedNode) -> None:
    path = audited_log(node)
    head = GENESIS_HASH
    records: list[list[Any]] = []

    def read(entries: Rdict) -> None:
        nonlocal head
        for key, value in entries.items():
            _, first_audit_no, _, _, stored, hashes = msgpack.unpackb(value, raw=False)
            assert first_audit_no == len(records) + 1
            for record, digest in zip(stored, hashes, strict=True):
                head = hashlib.sha256(head + record).digest()
                assert digest == head
                records.append(msgpack.unpackb(record, raw=False))
                assert records[-1][1] == U64.unpack(key)[0]  # the record names its log index

    rewrite_entries(path, read)
    assert [r[0] for r in records] == list(range(1, 14))
    assert records[-1][3:5] == ["n1/13", command_to_bytes(Deposit("carol", "USD", 5))]
    event_log = EventLog.open(path)
    try:
        assert event_log.audit_head() == head.hex()
    finally:
        event_log.close()


def test_a_tampered_record_is_found_by_verification_naming_the_command(node: LoggedNode) -> None:
    path = audited_log(node)

    def forge_submitter(value: list[Any]) -> None:
        fields = msgpack.unpackb(value[4][0], raw=False)
        fields[3] = "mallory/1"
        value[4][0] = msgpack.packb(fields, use_bin_type=True)

    rewrite_entries(path, lambda entries: edit_entry(entries, 2, forge_submitter))
    report = audit_report(path)
    assert (report.ok, report.first_bad, report.records) == (False, 11, 10)
    assert "hash mismatch" in report.reason
    assert "command 11 (log index 2, position 0)" in report.reason


def test_a_tampered_stored_hash_is_found_by_verification(node: LoggedNode) -> None:
    path = audited_log(node)

    def forge_hash(value: list[Any]) -> None:
        value[5][1] = bytes(32)

    rewrite_entries(path, lambda entries: edit_entry(entries, 2, forge_hash))
    report = audit_report(path)
    assert (report.ok, report.first_bad, report.records) == (False, 12, 11)
    assert "hash mismatch: command 12 (log index 2, position 1)" in report.reason


def test_a_tampered_record_with_a_recomputed_hash_breaks_the_next_link(node: LoggedNode) -> None:
    path = audited_log(node)

    def forge_and_rehash(value: list[Any]) -> None:
        fields = msgpack.unpackb(value[4][1], raw=False)
        fields[4] = command_to_bytes(Deposit("mallory", "USD", 10**6))
        forged = msgpack.packb(fields, use_bin_type=True)
        value[4][1] = forged
        value[5][1] = hashlib.sha256(value[5][0] + forged).digest()

    rewrite_entries(path, lambda entries: edit_entry(entries, 2, forge_and_rehash))
    report = audit_report(path)
    # Command 12 hashes to its (new) stored hash; command 13, in the next entry, does not.
    assert (report.ok, report.first_bad, report.records) == (False, 13, 12)
    assert "hash mismatch: command 13 (log index 3, position 0)" in report.reason


def test_a_deleted_entry_is_reported_missing(node: LoggedNode) -> None:
    path = audited_log(node)
    rewrite_entries(path, lambda entries: entries.delete(U64.pack(2)))
    report = audit_report(path)
    assert (report.ok, report.first_bad, report.records) == (False, 11, 10)
    assert "missing record" in report.reason and "entry 3 starts at command 13" in report.reason


def test_a_log_whose_last_entry_is_gone_refuses_to_open(node: LoggedNode) -> None:
    path = audited_log(node)
    rewrite_entries(path, lambda entries: entries.delete(U64.pack(3)))
    with pytest.raises(StoreCorruptionError, match="tip does not match entry 2"):
        EventLog.open(path)


# ---------------------------------------------------------------- pagination


def many_small_entries(node: LoggedNode, rounds: int) -> None:
    """`rounds` small entries in which alice rests a sell and bob takes part of it, with a
    retried order, an entry of a Tick with no events, an empty entry and skipped indexes in
    between: entries of every shape for reads by sequence and by audit number to cross."""
    retried = PlaceOrder("carol", "ACME", BUY, 1, PRICE - 100, client_order_id="again")
    for n in range(rounds):
        node.run(
            PlaceOrder("alice", "ACME", SELL, 3, PRICE + n % 5),
            PlaceOrder("bob", "ACME", BUY, 1, PRICE + n % 5),
        )
        if n % 4 == 1:
            node.run(retried)  # accepted the first time, its original outcome after that
        if n % 5 == 2:
            node.run(Tick())
        if n % 7 == 3:
            node.log_index += 2
            node.run()


def test_events_and_audit_records_page_ascending_and_read_the_same_from_any_cursor(
    node: LoggedNode,
) -> None:
    many_small_entries(node, 30)
    event_log = node.log
    events = all_events(event_log)
    assert [e.seq for e in events] == list(range(1, node.exchange.seq + 1))
    assert len(event_log.entries_after(0, READ_LIMIT_MAX)) > 40
    for cursor in range(event_log.last_seq() + 1):
        for limit in (1, 7):
            page = event_log.events_since(cursor, limit)
            assert page == events[cursor : cursor + limit], (cursor, limit)

    records = all_audit_records(event_log)
    assert [r["audit_no"] for r in records] == list(range(1, event_log.audit_count() + 1))
    assert records[0]["prev_hash"] == ZERO_HEAD
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(records))
    assert records[-1]["hash"] == event_log.audit_head()
    assert sum(r["outcome"]["retry"] for r in records) == 7
    for after in range(event_log.audit_count() + 1):
        assert event_log.audit_records(after, 5) == records[after : after + 5], after


def test_a_bad_limit_or_cursor_is_a_query_error(event_log: EventLog) -> None:
    for limit in (0, -1, READ_LIMIT_MAX + 1, "10"):
        with pytest.raises(StoreQueryError, match="limit"):
            event_log.events_since(0, limit)  # type: ignore[arg-type]
        with pytest.raises(StoreQueryError, match="limit"):
            event_log.entries_after(0, limit)  # type: ignore[arg-type]
        with pytest.raises(StoreQueryError, match="limit"):
            event_log.audit_records(0, limit)  # type: ignore[arg-type]
    with pytest.raises(StoreQueryError, match="seq"):
        event_log.events_since(-1, 10)
    with pytest.raises(StoreQueryError, match="log_index"):
        event_log.entries_after(-1, 10)
    with pytest.raises(StoreQueryError, match="after_no"):
        event_log.audit_records(-1, 10)


# ---------------------------------------------------------------- a follower


def test_a_follower_sees_new_entries_only_after_catch_up(node: LoggedNode, tmp_path: Path) -> None:
    follower = EventLog.follow(node.log.path, tmp_path / "follower")
    try:
        assert tip(follower) == tip(node.log)
        seen = follower.entries_after(0, 10)
        assert [e.log_index for e in seen] == [1]

        node.run(
            PlaceOrder("alice", "ACME", SELL, 10, PRICE), PlaceOrder("bob", "ACME", BUY, 4, PRICE)
        )
        assert follower.applied_index() == 1
        assert follower.entries_after(0, 10) == seen
        assert follower.events_since(node.log.last_seq() - 1, 10) == []

        follower.catch_up()
        assert tip(follower) == tip(node.log)
        assert follower.entries_after(0, 10) == node.log.entries_after(0, 10)
        assert all_events(follower) == all_events(node.log)
        assert follower.verify_audit().ok

        with pytest.raises(StoreError, match="read-only"):
            follower.write_entry(node.log_index + 1, node.time_ms, [])
        assert node.log.applied_index() == node.log_index
    finally:
        follower.close()


def test_the_audit_head_at_an_index_stays_what_it_was_after_later_entries(
    node: LoggedNode,
) -> None:
    """What `admin hash` compares at a hash mark: the head after that entry, even when the
    node hashes a replayed or queued entry after the writer went further."""
    event_log = node.log
    node.run(PlaceOrder("alice", "ACME", SELL, 10, PRICE))
    marked, head = node.log_index, event_log.audit_head()
    assert event_log.audit_head_at(marked) == head
    node.run(PlaceOrder("bob", "ACME", BUY, 10, PRICE))
    assert event_log.audit_head() != head
    assert event_log.audit_head_at(marked) == head
    assert event_log.audit_head_at(0) == ZERO_HEAD


def test_the_writer_runs_what_waits_for_an_index_once_it_wrote_it(event_log: EventLog) -> None:
    writer = EventLogWriter(event_log, "n1")
    seen: list[tuple[int, int]] = []
    try:
        writer.when_written(2, lambda: seen.append((2, event_log.applied_index())))
        writer.submit(1, START_MS, [])
        writer.submit(2, START_MS, [])
        writer.drain()
        writer.when_written(1, lambda: seen.append((1, event_log.applied_index())))
    finally:
        writer.close()
    assert seen == [(2, 2), (1, 2)]
