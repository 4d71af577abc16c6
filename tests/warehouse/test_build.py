"""The warehouse built from a real event log: what its tables hold, incremental builds, the
reconciliation check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.workload import standard_workload
from cluster.event_log import EventLog
from engine.codes import OrderType, TimeInForce, TradingCapacity, TradingStatus
from engine.commands import (
    AddAsset,
    AmendOrder,
    CancelOrder,
    PlaceOrder,
    SetAccountProfile,
    SetCalendar,
    SetLimitUpLimitDown,
    SetTradingStatus,
    Tick,
)
from tests.cluster.logged_node import BUY, SELL, START_MS, LoggedNode, market_setup
from warehouse.build import STATE_FILE_NAME, build
from warehouse.facts import DAY_MS
from warehouse.query import WarehouseError, run_sql
from warehouse.reconcile import reconcile
from warehouse.source import DataDirSource

SEED_COMMANDS_PER_ENTRY = 1_000


def _node(root: Path) -> tuple[LoggedNode, EventLog]:
    log = EventLog.open(root / "n1" / "events")
    return LoggedNode(log), log


def _rows(warehouse: Path, sql: str) -> list[dict]:
    return run_sql(warehouse, sql).to_pylist()


def _build(root: Path, out: Path) -> None:
    source = DataDirSource(root / "n1", None, None)
    try:
        build(source, out)
    finally:
        source.close()


def test_a_trading_story_lands_in_every_table(tmp_path: Path) -> None:
    node, log = _node(tmp_path)
    node.run(AddAsset("USD", 2), AddAsset("ACME", 0), *market_setup())
    node.run(SetAccountProfile("alice", "MEMA", "owner-a", "", TradingCapacity.DEAL))
    node.run(SetAccountProfile("bob", "MEMB", "owner-b", "", TradingCapacity.AOTC))
    [placed] = node.run(PlaceOrder("alice", "ACME", SELL, 10, 1_000, client_order_id="a-1"))
    ask = node.order_id(placed)
    node.run(AmendOrder("alice", ask, price=1_001, qty=10))
    node.run(PlaceOrder("bob", "ACME", BUY, 4, 1_001, client_order_id="b-1"))
    node.run(PlaceOrder("bob", "ACME", BUY, 3, 5_000, client_order_id="b-far"))  # out of band
    node.run(CancelOrder("alice", ask))
    node.run(SetTradingStatus("ACME", TradingStatus.HALTED))
    log.close()
    out = tmp_path / "warehouse"
    _build(tmp_path, out)

    events = _rows(
        out,
        "SELECT event, side, price, qty, leaves, traded_qty, cum_qty, role, member, capacity "
        f"FROM order_events WHERE order_id = {ask} ORDER BY seq",
    )
    assert [e["event"] for e in events] == ["accepted", "amended", "partially_filled", "cancelled"]
    assert events[1]["price"] == Decimal("10.01")
    fill = events[2]
    assert (fill["traded_qty"], fill["cum_qty"], fill["leaves"], fill["role"]) == (
        Decimal(4),
        Decimal(4),
        Decimal(6),
        "passive",
    )
    assert {(e["member"], e["capacity"]) for e in events} == {("MEMA", "DEAL")}

    [trade] = _rows(out, "SELECT * FROM trades")
    assert (trade["price"], trade["qty"], trade["notional"], trade["aggressor_side"]) == (
        Decimal("10.01"),
        Decimal(4),
        Decimal("40.04"),
        "buy",
    )
    assert (trade["buy_account"], trade["sell_account"]) == ("bob", "alice")
    sides = _rows(out, "SELECT account, member, role, fee FROM executions ORDER BY role")
    assert [(s["account"], s["member"], s["role"]) for s in sides] == [
        ("bob", "MEMB", "aggressive"),
        ("alice", "MEMA", "passive"),
    ]
    assert sides[0]["fee"] == Decimal("0.08")  # 20 bps of 40.04, in cents rounded down

    [day] = _rows(out, "SELECT * FROM ohlcv_daily")
    assert (day["open"], day["close"], day["volume"], day["trades"]) == (
        Decimal("10.01"),
        Decimal("10.01"),
        Decimal(4),
        1,
    )
    orders = {o["client_order_id"]: o for o in _rows(out, "SELECT * FROM orders")}
    assert orders["a-1"]["status"] == "cancelled" and orders["b-1"]["status"] == "filled"
    [breach] = _rows(out, "SELECT account, member, code FROM control_breaches")
    assert breach == {"account": "bob", "member": "MEMB", "code": "price_out_of_band"}
    [halt] = _rows(out, "SELECT symbol, status, reason FROM halts")
    assert halt == {"symbol": "ACME", "status": "halted", "reason": "admin"}
    tops = _rows(out, "SELECT bid_price, ask_price FROM bbo ORDER BY seq")
    assert tops[0] == {"bid_price": None, "ask_price": Decimal("10.00")}
    assert tops[-1] == {"bid_price": None, "ask_price": None}
    members = {m["member"]: m for m in _rows(out, "SELECT * FROM member_daily")}
    assert members["MEMA"]["orders"] == 1 and members["MEMA"]["amends"] == 1
    assert members["MEMA"]["cancels"] == 1 and members["MEMA"]["fills"] == 1
    assert members["MEMA"]["order_to_trade"] == 4.0  # 1 new + 1 cancel + 2 x 1 amend, 1 fill


class Slice:
    """A history cut at a sequence: what a build saw earlier."""

    def __init__(self, source: DataDirSource, upto: int) -> None:
        self.source = source
        self.upto = upto

    def events_after(self, seq: int) -> list:
        return [e for e in self.source.events_after(seq) if e.seq <= self.upto]

    def verify_audit(self) -> dict:
        return self.source.verify_audit()

    def close(self) -> None:
        return None


def workload_log(root: Path, commands: int) -> list[int]:
    """The standard workload over two UTC days (an entry a minute); the last sequence of
    each entry (the places a build of a live node can end: an entry is written whole)."""
    node, log = _node(root)
    workload = standard_workload(commands, 7, account_count=50, symbol_count=3)
    setup = workload.market.commands()
    for start in range(0, len(setup), SEED_COMMANDS_PER_ENTRY):
        node.run(*setup[start : start + SEED_COMMANDS_PER_ENTRY])
    node.time_ms = (node.time_ms // DAY_MS + 1) * DAY_MS - 3_600_000  # an hour before midnight
    ends = []
    for start in range(0, len(workload.commands), 50):
        node.time_ms += 60_000
        node.run(*workload.commands[start : start + 50])
        ends.append(log.last_seq())
    log.close()
    return ends


def parquet_files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*.parquet"))
        if p.is_file()
    }


def test_built_in_steps_or_at_once_the_files_are_the_same_bytes(tmp_path: Path) -> None:
    last_seq = workload_log(tmp_path, 6_000)[-1]
    at_once = tmp_path / "at-once"
    _build(tmp_path, at_once)

    steps = tmp_path / "steps"
    source = DataDirSource(tmp_path / "n1", None, None)
    try:
        for upto in (last_seq // 3, last_seq // 2, 2 * last_seq // 3):
            build(Slice(source, upto), steps)
        # A build that stopped after writing partitions but before saving its state: the
        # next one must not write those rows twice.
        saved = (steps / STATE_FILE_NAME).read_bytes()
        build(Slice(source, 5 * last_seq // 6), steps)
        (steps / STATE_FILE_NAME).write_bytes(saved)
        build(source, steps)
    finally:
        source.close()

    once, stepped = parquet_files(at_once), parquet_files(steps)
    dates = {name.split("/")[1] for name in once}
    assert len(dates) == 2, "the workload crosses midnight"
    assert {n.split("/")[0] for n in once} >= {"order_events", "trades", "orders", "bbo"}
    assert once.keys() == stepped.keys()
    assert [n for n in once if once[n] != stepped[n]] == []


def test_the_check_reconciles_and_finds_a_lost_partition(tmp_path: Path) -> None:
    workload_log(tmp_path, 3_000)
    out = tmp_path / "warehouse"
    _build(tmp_path, out)
    source = DataDirSource(tmp_path / "n1", None, None)
    try:
        report = reconcile(source, out)
        assert report["ok"] and report["trades"] > 0 and report["balances"] > 0
        shutil.rmtree(sorted((out / "trades").glob("date=*"))[-1])
        shutil.rmtree(sorted((out / "order_events").glob("date=*"))[-1])
        doubled = sorted((out / "transfers").glob("date=*/data.parquet"))[0]
        rows = pq.read_table(doubled)
        pq.write_table(pa.concat_tables([rows, rows]), doubled)
        report = reconcile(source, out)
    finally:
        source.close()
    assert not report["ok"]
    problems = " | ".join(report["problems"])
    assert "trades of " in problems and "accepted:" in problems and "transfers:" in problems


def test_the_machine_time_zone_changes_nothing(tmp_path: Path) -> None:
    """Dates, partitions and report times are UTC on a machine in Tokyo too."""
    workload_log(tmp_path, 3_000)
    _build(tmp_path, tmp_path / "utc")
    done = subprocess.run(
        [sys.executable, "-m", "raftex.cli", "warehouse", "build", "--data-dir",
         str(tmp_path / "n1"), "--out", str(tmp_path / "tokyo")],
        env={**os.environ, "TZ": "Asia/Tokyo"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert parquet_files(tmp_path / "utc") == parquet_files(tmp_path / "tokyo")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC 1", "syntax error"),
        ("COPY (SELECT 1) TO '/tmp/raftex-should-not-exist.csv'", "give one query"),
        ("SELECT 1; SELECT 2", "give one query"),
        ("SELECT * FROM no_such_table", "no_such_table"),
    ],
)
def test_sql_answers_queries_only_and_says_what_is_wrong(
    tmp_path: Path, sql: str, message: str
) -> None:
    node, log = _node(tmp_path)
    node.run(*market_setup())
    log.close()
    _build(tmp_path, tmp_path / "warehouse")
    with pytest.raises(WarehouseError, match=message):
        run_sql(tmp_path / "warehouse", sql)
    assert not Path("/tmp/raftex-should-not-exist.csv").exists()
    assert _rows(tmp_path / "warehouse", "SELECT count(*) AS n FROM trades") == [{"n": 0}]


def test_order_types_and_tifs_are_named(tmp_path: Path) -> None:
    node, log = _node(tmp_path)
    node.run(*market_setup())
    node.run(
        PlaceOrder("carol", "ACME", BUY, 2, 990, order_type=OrderType.LIMIT, tif=TimeInForce.DAY)
    )
    log.close()
    _build(tmp_path, tmp_path / "warehouse")
    [row] = _rows(tmp_path / "warehouse", "SELECT order_type, tif, side FROM orders")
    assert row == {"order_type": "limit", "tif": "day", "side": "buy"}


def test_a_triggered_stop_takes_its_place_in_the_queue_when_it_triggers(tmp_path: Path) -> None:
    node, log = _node(tmp_path)
    node.run(AddAsset("USD", 2), AddAsset("ACME", 0), *market_setup())
    [stop] = node.run(
        PlaceOrder(
            "alice", "ACME", BUY, 5, 1_010, order_type=OrderType.STOP_LIMIT, stop_price=1_005
        )
    )
    node.time_ms += 60_000
    node.run(PlaceOrder("bob", "ACME", SELL, 1, 1_005), PlaceOrder("carol", "ACME", BUY, 1, 1_005))
    log.close()
    out = tmp_path / "warehouse"
    _build(tmp_path, out)
    rows = _rows(
        out,
        "SELECT event, ts, priority_ts, tif FROM order_events "
        f"WHERE order_id = {node.order_id(stop)} ORDER BY seq",
    )
    assert [r["event"] for r in rows][:2] == ["accepted", "triggered"]
    accepted, triggered = rows[0], rows[1]
    assert accepted["priority_ts"] == accepted["ts"]
    assert triggered["priority_ts"] == triggered["ts"] > accepted["ts"]
    assert triggered["tif"] == "gtc"  # a stop-limit keeps its own; a stop becomes IOC


def test_a_trading_day_lands_in_phases_sessions_and_auction_trades(tmp_path: Path) -> None:
    node, log = _node(tmp_path)
    node.run(AddAsset("USD", 2), AddAsset("ACME", 0), *market_setup())
    # A ten-minute UTC day from 2026-01-01T00:00: pre-open now, the open at 60 s, the
    # closing call at 480 s, the close at 540 s.
    node.run(SetCalendar("ACME", "UTC", 0, 60, 480, 540, 570, day_s=600, trading_days=0b1111111))
    node.run(PlaceOrder("alice", "ACME", BUY, 5, 1_010), PlaceOrder("bob", "ACME", SELL, 3, 990))
    node.time_ms = START_MS + 60_000
    node.run(Tick())
    node.time_ms = START_MS + 480_000
    node.run(PlaceOrder("carol", "ACME", SELL, 2, 1_000, tif=TimeInForce.AT_CLOSE))
    node.time_ms = START_MS + 540_000
    node.run(Tick())
    log.close()
    warehouse = tmp_path / "warehouse"
    _build(tmp_path, warehouse)
    phases = _rows(warehouse, "SELECT phase, reason FROM phases ORDER BY seq")
    assert [row["phase"] for row in phases] == [
        "pre_open",
        "opening_auction",
        "continuous",
        "pre_close",
        "closing_auction",
        "post_close",
    ]
    assert {row["reason"] for row in phases} == {"calendar"}
    trades = _rows(warehouse, "SELECT price, qty, auction FROM trades ORDER BY seq")
    assert trades == [
        {"price": Decimal("10.1"), "qty": Decimal(3), "auction": "opening_auction"},
        {"price": Decimal("10.1"), "qty": Decimal(2), "auction": "closing_auction"},
    ]
    [session] = _rows(warehouse, "SELECT local_date, close_price, from_auction FROM sessions")
    assert session == {
        "local_date": "2026-01-01",
        "close_price": Decimal("10.1"),
        "from_auction": True,
    }
    [calendar] = _rows(warehouse, "SELECT key FROM reference_changes WHERE kind = 'calendar'")
    assert calendar == {"key": "ACME"}


def test_limit_up_limit_down_bands_and_limit_states_land_in_price_bands(tmp_path: Path) -> None:
    node, log = _node(tmp_path)
    node.run(AddAsset("USD", 2), AddAsset("ACME", 0), *market_setup())
    node.run(SetLimitUpLimitDown("ACME", 500))  # around 10.00: [9.50, 10.50]
    node.run(PlaceOrder("alice", "ACME", BUY, 1, 1_050))  # a bid at the upper band
    log.close()
    warehouse = tmp_path / "warehouse"
    _build(tmp_path, warehouse)
    rows = _rows(warehouse, "SELECT band_lo, band_hi, limit_state FROM price_bands ORDER BY seq")
    assert rows == [
        {"band_lo": Decimal("9.5"), "band_hi": Decimal("10.5"), "limit_state": None},
        {"band_lo": Decimal("9.5"), "band_hi": Decimal("10.5"), "limit_state": "limit_up"},
    ]
    [change] = _rows(
        warehouse, "SELECT key FROM reference_changes WHERE kind = 'limit_up_limit_down'"
    )
    assert change == {"key": "ACME"}
