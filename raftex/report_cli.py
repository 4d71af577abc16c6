"""`raftex report KIND`: regulator-style reports from the warehouse `warehouse build` wrote."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cluster.admin_client import AdminError
from cluster.keyring import KeyringError
from cluster.store_errors import StoreError
from raftex.warehouse_cli import add_source_arguments, source_of
from reports.audit_trail import RECORDS_PER_FILE_DEFAULT, write_audit_trail
from reports.day import ReportError, parse_day, parse_month
from reports.end_of_day import end_of_day
from reports.execution_quality import write_execution_quality
from reports.order_record import write_order_record
from reports.order_to_trade import (
    LIMIT_BY_NUMBER_DEFAULT,
    LIMIT_BY_VOLUME_DEFAULT,
    write_order_to_trade,
)
from warehouse.query import WarehouseError
from warehouse.source import SourceError

KINDS = ("orders", "cat", "eod", "otr", "execq")


def add_report_parser(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="regulator-style reports from the warehouse (orders, cat, eod, otr, execq)"
    )
    report.add_argument("kind", choices=KINDS)
    report.add_argument("--date", help="the UTC day, YYYY-MM-DD (every kind but execq)")
    report.add_argument("--month", help="execq: the UTC month, YYYY-MM")
    report.add_argument("--warehouse", type=Path, required=True)
    report.add_argument("--out", type=Path, default=Path("reports-out"), help="where to write")
    report.add_argument("--json", action="store_true", help="print the summary as JSON")
    report.add_argument(
        "--records-per-file",
        type=int,
        default=RECORDS_PER_FILE_DEFAULT,
        help="cat: records per NDJSON file",
    )
    report.add_argument("--limit-number", type=float, default=LIMIT_BY_NUMBER_DEFAULT)
    report.add_argument("--limit-volume", type=float, default=LIMIT_BY_VOLUME_DEFAULT)
    add_source_arguments(report, required=False)


def run_report(args: argparse.Namespace) -> int:
    try:
        result = _make(args)
    except (
        ReportError,
        WarehouseError,
        SourceError,
        StoreError,
        KeyringError,
        AdminError,
        OSError,
    ) as exc:
        print(f"raftex report: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else _summary(result, args.out))
    return 0 if result.get("ok", True) else 1


def _make(args: argparse.Namespace) -> dict[str, Any]:
    if args.kind == "execq":
        if not args.month:
            raise ReportError("execq needs --month YYYY-MM")
        return write_execution_quality(args.warehouse, parse_month(args.month), args.out)
    if not args.date:
        raise ReportError(f"{args.kind} needs --date YYYY-MM-DD")
    day = parse_day(args.date)
    if args.kind == "orders":
        return write_order_record(args.warehouse, day, args.out)
    if args.kind == "cat":
        return write_audit_trail(args.warehouse, day, args.out, args.records_per_file)
    if args.kind == "otr":
        return write_order_to_trade(
            args.warehouse, day, args.out, args.limit_number, args.limit_volume
        )
    source = source_of(args) if args.data_dir or args.node else None
    try:
        return end_of_day(args.warehouse, day, args.out, source)
    finally:
        if source is not None:
            source.close()


def _summary(result: dict[str, Any], out: Path) -> str:
    kind = result["report"]
    when = result.get("date") or result.get("month")
    if kind == "eod":
        lines = [f"end of day {when}: reconciliation {'clean' if result['ok'] else 'NOT CLEAN'}"]
        lines += [
            f"  {'ok  ' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}"
            + "".join(f"\n         {p}" for p in c["problems"][:5])
            for c in result["reconciliation"]
        ]
        return "\n".join([*lines, f"  files in {out}: {', '.join(result['files'])}"])
    if kind == "cat":
        return (
            f"CAT {when}: {result['records']:,} records in {len(result['files'])} file(s) in "
            f"{out}, manifest beside them; {result['types']}"
        )
    if kind == "otr":
        flagged = ", ".join(result["flagged"]) or "none"
        rows = len(result["rows"])
        return f"order-to-trade {when}: {rows} member/instrument rows; flagged: {flagged}"
    if kind == "orders":
        return f"order record {when}: {result['rows']:,} events in {out}; {result['event_types']}"
    return f"execution quality {when}: {len(result['rows'])} category/size rows in {out}"
