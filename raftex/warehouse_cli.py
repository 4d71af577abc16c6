"""`raftex warehouse build|sql|check`: the data warehouse from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from cluster.admin_client import AdminError, read_admin_token, read_cluster_ca, read_cluster_file
from cluster.keyring import KEK_ENV, KeyringError
from cluster.store_errors import StoreError
from raftex.text_table import format_rows
from warehouse.build import build
from warehouse.output import plain_rows, to_csv, to_json
from warehouse.query import WarehouseError, run_sql
from warehouse.reconcile import reconcile
from warehouse.source import DataDirSource, EventSource, NodeSource, SourceError

SQL_ROWS_PRINTED_MAX = 10_000


def add_warehouse_parser(commands: argparse._SubParsersAction) -> None:
    warehouse = commands.add_parser(
        "warehouse", help="the data warehouse: Parquet tables built from the event log"
    )
    actions = warehouse.add_subparsers(dest="warehouse_action", required=True)
    build_cmd = actions.add_parser(
        "build", help="build or extend a warehouse from a node's event history (incremental)"
    )
    add_source_arguments(build_cmd)
    build_cmd.add_argument("--out", type=Path, required=True, help="the warehouse directory")
    build_cmd.add_argument("--json", action="store_true")
    sql = actions.add_parser("sql", help="query the warehouse with DuckDB")
    sql.add_argument("query", help='e.g. "SELECT * FROM ohlcv_daily"')
    sql.add_argument("--warehouse", type=Path, required=True)
    shape = sql.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="rows as a JSON array")
    shape.add_argument("--csv", action="store_true", help="rows as CSV")
    check = actions.add_parser(
        "check", help="reconcile the warehouse with the history it was built from"
    )
    add_source_arguments(check)
    check.add_argument("--warehouse", type=Path, required=True)
    check.add_argument("--json", action="store_true")


def add_source_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--data-dir or --node (with --cluster or --token-file), and --kek-file."""
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--data-dir", type=Path, help="a node's data directory (e.g. data/n1)")
    where.add_argument("--node", help="a running node's HTTP address (host:port, or its URL)")
    parser.add_argument(
        "--cluster", type=Path, help="with --node: cluster.json, for the admin token beside it"
    )
    parser.add_argument("--token-file", type=Path, help="with --node: a file holding the token")
    parser.add_argument(
        "--kek-file",
        type=Path,
        help=f"with --data-dir of an encrypted cluster: its key-encryption key (else ${KEK_ENV}"
        " or the local cluster's)",
    )


def source_of(args: argparse.Namespace) -> EventSource:
    if args.data_dir is not None:
        return DataDirSource(args.data_dir, args.kek_file, os.environ.get(KEK_ENV))
    token = ""
    ca_file = None
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
    elif args.cluster is not None:
        token = read_admin_token(args.cluster)
        ca_file = read_cluster_ca(args.cluster)
        read_cluster_file(args.cluster)  # a cluster file that cannot be read says so
    if not token:
        raise SourceError("--node needs the admin token: --cluster cluster.json or --token-file")
    # host:port, or a URL as a browser shows it (http://127.0.0.1:8080/).
    address = args.node.split("://", 1)[-1].rstrip("/")
    return NodeSource(address, token, ca_file)


def run_warehouse(args: argparse.Namespace) -> int:
    try:
        if args.warehouse_action == "sql":
            return _print_sql(args)
        source = source_of(args)
        try:
            if args.warehouse_action == "build":
                result: dict[str, Any] = asdict(build(source, args.out)) | {"out": str(args.out)}
                text = (
                    f"warehouse {args.out}: events {result['first_seq'] + 1}..{result['last_seq']}"
                    f" ({result['events']:,} events, {result['rows']:,} rows) in "
                    f"{result['seconds']} s; dates {', '.join(result['dates']) or 'none'}"
                )
            else:
                result = reconcile(source, args.warehouse)
                verdict = "reconciles" if result["ok"] else "DOES NOT reconcile"
                text = "\n".join(
                    [
                        f"warehouse {args.warehouse} {verdict} with the history up to seq "
                        f"{result['last_seq']}: {result['trades']:,} trades, "
                        f"{result['balances']:,} balances",
                        *result["problems"],
                    ]
                )
        finally:
            source.close()
    except (
        SourceError,
        WarehouseError,
        StoreError,
        KeyringError,
        AdminError,
        OSError,
        ValueError,
    ) as exc:
        print(f"raftex warehouse: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else text)
    return 0 if result.get("ok", True) else 1


def _print_sql(args: argparse.Namespace) -> int:
    table = run_sql(args.warehouse, args.query)
    rows = table.slice(0, SQL_ROWS_PRINTED_MAX).to_pylist()
    print(format_table(table.schema, rows, "json" if args.json else "csv" if args.csv else ""))
    return 0


def format_table(schema: pa.Schema, rows: list[dict[str, Any]], shape: str) -> str:
    if shape == "json":
        return to_json(plain_rows(rows))
    if shape == "csv":
        return to_csv(schema.names, rows).rstrip("\n")
    return format_rows(plain_rows(rows), tuple(schema.names))
