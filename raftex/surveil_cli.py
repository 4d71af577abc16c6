"""`raftex surveil`: market-abuse surveillance over one day of the warehouse."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from reports.day import ReportError, parse_day
from surveillance.config import RULES, ConfigError, load_parameters
from surveillance.run import surveil
from warehouse.output import plain_rows
from warehouse.query import WarehouseError


def add_surveil_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "surveil", help="run the market-abuse rules over a day; alerts go to the warehouse"
    )
    parser.add_argument("--date", required=True, help="the UTC day, YYYY-MM-DD")
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument(
        "--rules",
        default=",".join(RULES),
        help=f"comma-separated, of: {', '.join(RULES)} (default: all)",
    )
    parser.add_argument(
        "--config", type=Path, help="parameters (default: surveillance/rules.toml's)"
    )
    parser.add_argument("--json", action="store_true")


def run_surveil(args: argparse.Namespace) -> int:
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = [r for r in rules if r not in RULES]
    if unknown or not rules:
        print(
            f"raftex surveil: unknown rule(s) {', '.join(unknown) or '(none given)'}; "
            f"rules: {', '.join(RULES)}",
            file=sys.stderr,
        )
        return 2
    try:
        day = parse_day(args.date)
        alerts = surveil(args.warehouse, day, rules, load_parameters(args.config))
    except (ReportError, ConfigError, WarehouseError, OSError) as exc:
        print(f"raftex surveil: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(plain_rows([asdict(a) for a in alerts]), default=str))
        return 0
    print(f"surveillance {day}: {len(alerts)} alert(s) (stored in {args.warehouse}/alerts)")
    for a in alerts:
        print(f"  {a.score:.2f}  {a.rule:<18} {a.account:<10} {a.symbol:<6} {a.description}")
    return 0
