"""The regulator-style reports, made from a warehouse built over a real event log."""

from __future__ import annotations

import csv
import datetime
import gzip
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cluster.event_log import EventLog
from engine.codes import TimeInForce, TradingCapacity
from engine.commands import (
    AddAsset,
    AmendOrder,
    CancelOrder,
    Deposit,
    PlaceOrder,
    SetAccountProfile,
    SetRateLimit,
    Withdraw,
)
from reports.audit_trail import write_audit_trail
from reports.end_of_day import end_of_day
from reports.execution_quality import write_execution_quality
from reports.order_record import write_order_record
from reports.order_to_trade import write_order_to_trade
from tests.cli_process import raftex
from tests.cluster.logged_node import BUY, SELL, LoggedNode, market_setup
from tests.warehouse.test_build import Slice, workload_log
from warehouse.build import build
from warehouse.partitions import partition_path
from warehouse.source import DataDirSource

DAY = datetime.date(2026, 1, 1)  # LoggedNode's log time starts at its midnight


@pytest.fixture
def story(tmp_path: Path) -> dict:
    """A day of ACME: a maker that quotes and re-quotes, a taker, a spoofer-like canceller,
    a deposit and a withdrawal; its warehouse."""
    log = EventLog.open(tmp_path / "n1" / "events")
    node = LoggedNode(log)
    node.run(AddAsset("USD", 2), AddAsset("ACME", 0), *market_setup())
    node.run(
        SetAccountProfile("alice", "MAKR", "alice", "", TradingCapacity.DEAL),
        SetAccountProfile("bob", "BRKR", "bob", "", TradingCapacity.AOTC),
        SetAccountProfile("carol", "BRKR", "carol", "", TradingCapacity.AOTC),
    )
    [ask] = node.run(PlaceOrder("alice", "ACME", SELL, 10, 1_002, client_order_id="ask"))
    node.run(PlaceOrder("alice", "ACME", BUY, 10, 998, client_order_id="bid"))
    ask_id = node.order_id(ask)
    node.run(AmendOrder("alice", ask_id, price=1_001, qty=10))
    node.time_ms += 2_500
    node.run(PlaceOrder("bob", "ACME", BUY, 4, 1_001, tif=TimeInForce.IOC, client_order_id="take"))
    for n in range(6):  # carol places and cancels, never trades
        [placed] = node.run(PlaceOrder("carol", "ACME", SELL, 50, 1_009, client_order_id=f"c{n}"))
        node.run(CancelOrder("carol", node.order_id(placed)))
    node.run(SetRateLimit("carol", 100, by="ops-ann"))
    node.run(Deposit("bob", "USD", 5_000, request_id="dep"))
    node.run(Withdraw("carol", "ACME", 7, request_id="wd"))
    node.run(CancelOrder("alice", ask_id))
    log.close()
    source = DataDirSource(tmp_path / "n1", None, None)
    try:
        build(source, tmp_path / "warehouse")
    finally:
        source.close()
    return {"root": tmp_path, "warehouse": tmp_path / "warehouse", "ask": ask_id}


def test_the_order_record_follows_an_order_through_its_rts24_events(story: dict) -> None:
    out = story["root"] / "out"
    summary = write_order_record(story["warehouse"], DAY, out)
    with open(out / "orders-2026-01-01.csv") as f:
        rows = list(csv.DictReader(f))
    assert summary["rows"] == len(rows)
    ask = [r for r in rows if r["order_id"] == str(story["ask"])]
    assert [r["event_type"] for r in ask] == ["NEWO", "REME", "PARF", "CAME"]
    new, amended, filled, cancelled = ask
    assert (new["submitting_member"], new["client_id"], new["trading_capacity"]) == (
        "MAKR",
        "alice",
        "DEAL",
    )
    assert (new["side"], new["validity_period"], new["limit_price"]) == ("SELL", "GTCV", "10.02")
    assert (
        amended["limit_price"] == "10.01" and amended["priority_timestamp"] == amended["timestamp"]
    )
    assert new["timestamp"].endswith("Z") and len(new["timestamp"].split(".")[1]) == 7
    assert (filled["traded_quantity"], filled["remaining_quantity"]) == ("4", "6")
    assert (filled["passive_aggressive"], filled["initial_quantity"]) == ("PASV", "10")
    assert filled["transaction_id"] and cancelled["remaining_quantity"] == "0"
    take = next(r for r in rows if r["client_order_id"] == "take" and r["event_type"] == "FILL")
    assert (take["passive_aggressive"], take["validity_period"]) == ("AGRE", "IOCV")
    assert pq.read_table(out / "orders-2026-01-01.parquet").num_rows == len(rows)


def test_the_cat_files_match_their_manifest(story: dict) -> None:
    out = story["root"] / "cat"
    manifest = write_audit_trail(story["warehouse"], DAY, out, records_per_file=7)
    assert len(manifest["files"]) > 1 and manifest["records"] == sum(
        f["records"] for f in manifest["files"]
    )
    assert json.loads((out / "CAT_20260101_manifest.json").read_text()) == manifest
    records = []
    for entry in manifest["files"]:
        data = (out / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        lines = gzip.decompress(data).decode().splitlines()
        assert len(lines) == entry["records"]
        records += [json.loads(line) for line in lines]
    trade = next(r for r in records if r["type"] == "MEOT")
    assert (trade["price"], trade["quantity"], trade["aggressorSide"]) == ("10.01", "4", "B")
    new = next(r for r in records if r["type"] == "MENO" and r["clientOrderID"] == "take")
    assert new["timeInForce"] == "IOC" and len(new["eventTimestamp"]) == 19
    assert manifest["types"]["MEOC"] == 7  # carol's six cancels and alice's ask


def test_otr_counts_rts9_messages_and_flags_a_member_that_never_trades(story: dict) -> None:
    report = write_order_to_trade(story["warehouse"], DAY, story["root"] / "otr", 3, 3)
    rows = {r["member"]: r for r in report["rows"]}
    carol = rows["BRKR"]
    assert carol["transactions"] == 1  # bob's fill; carol's six orders and cancels never trade
    assert (carol["new_orders"], carol["cancellations"]) == (7, 6)
    maker = rows["MAKR"]
    assert (maker["new_orders"], maker["modifications"], maker["cancellations"]) == (2, 1, 1)
    assert maker["messages"] == 2 + 1 + 2 * 1 and maker["ratio_by_number"] == 4.0
    assert report["flagged"] == ["BRKR ACME", "MAKR ACME"]


def test_eod_reconciles_clean_and_finds_a_lost_transfer(story: dict) -> None:
    out = story["root"] / "eod"
    source = DataDirSource(story["root"] / "n1", None, None)
    try:
        report = end_of_day(story["warehouse"], DAY, out, source)
    finally:
        source.close()
    assert report["ok"], report["reconciliation"]
    assert {c["check"] for c in report["reconciliation"]} >= {
        "trades_balanced",
        "balances_explained",
        "assets_conserved",
        "trade_count",
        "trade_count_in_history",
        "audit_chain",
    }
    [limit] = [c for c in report["control_changes"] if c["kind"] == "rate_limit"]
    assert (limit["key"], limit["changed_by"]) == ("carol", "ops-ann")  # who, and when:
    assert limit["ts"].startswith("2026-01-01T")
    [acme] = report["daily_list"]
    assert (acme["open"], acme["close"], acme["volume"]) == ("10.01", "10.01", "4")
    html = (out / "eod-2026-01-01.html").read_text()
    assert "data:image/png;base64," in html and "clean" in html
    assert (out / "eod-2026-01-01-ACME.png").read_bytes()[:4] == b"\x89PNG"

    partition_path(story["warehouse"], "transfers", "2026-01-01").unlink()
    broken = end_of_day(story["warehouse"], DAY, story["root"] / "eod-broken")
    failed = {c["check"] for c in broken["reconciliation"] if not c["ok"]}
    assert not broken["ok"] and failed == {"balances_explained", "assets_conserved"}


def test_execq_classifies_orders_by_the_quote_at_arrival(story: dict) -> None:
    report = write_execution_quality(story["warehouse"], DAY, story["root"] / "execq")
    rows = {(r["category"], r["size_bucket"]): r for r in report["rows"]}
    take = rows[("marketable_limit", "1-99")]
    assert (take["covered_orders"], take["executed_shares"]) == (1, "4")
    assert take["executed_0_1s"] == "4"
    assert take["avg_effective_spread"] == pytest.approx(0.03)  # 2 x |10.01 - 9.995|


def test_report_cli_says_what_is_wrong(story: dict) -> None:
    for args, message in (
        (("eod",), "needs --date"),
        (("execq",), "needs --month"),
        (("orders", "--date", "2026-02-30"), "not a date"),
    ):
        done = raftex("report", *args, "--warehouse", str(story["warehouse"]))
        assert done.returncode == 1 and message in done.stderr, done
    done = raftex(
        "report", "eod", "--date", "2026-01-01", "--warehouse", str(story["warehouse"]),
        "--out", str(story["root"] / "cli"),
    )  # fmt: skip
    assert done.returncode == 0 and "reconciliation clean" in done.stdout, done


def test_eod_checks_a_history_that_went_on_only_up_to_the_warehouse(tmp_path: Path) -> None:
    """A running node's history grows after a build: the day's trades are counted only up
    to the sequence the warehouse reached."""
    ends = workload_log(tmp_path, 3_000)
    source = DataDirSource(tmp_path / "n1", None, None)
    try:
        build(Slice(source, ends[len(ends) // 2]), tmp_path / "warehouse")
        report = end_of_day(tmp_path / "warehouse", DAY, tmp_path / "eod", source)
    finally:
        source.close()
    assert report["ok"], report["reconciliation"]
    [history] = [c for c in report["reconciliation"] if c["check"] == "trade_count_in_history"]
    assert int(history["detail"].split()[0]) > 0
