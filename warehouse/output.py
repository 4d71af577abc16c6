"""Rows as people and other programs read them: plain decimals, CSV, JSON."""

from __future__ import annotations

import csv
import datetime
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa


def plain(value: Any) -> Any:
    """A decimal without the trailing zeros of the warehouse's 18 places (190.5, not
    190.500000000000000000); dates and times in ISO 8601; everything else as it is."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def plain_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in rows]


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(plain_rows(rows))
    return out.getvalue()


def to_json(rows: Any) -> str:
    return json.dumps(rows, default=lambda v: str(plain(v)))


def plain_sql(expression: str) -> str:
    """SQL that writes a warehouse decimal as `plain` does: without the trailing zeros of its
    18 places (and without a bare point)."""
    return f"rtrim(rtrim(CAST({expression} AS VARCHAR), '0'), '.')"


def write_csv(table: pa.Table, path: Path) -> None:
    """A large table as CSV, written by DuckDB (vectorized): decimals plain, as `plain`
    writes them; fields quoted only where needed."""
    columns = []
    for field in table.schema:
        name = '"' + field.name.replace('"', '""') + '"'
        if pa.types.is_decimal(field.type):
            columns.append(f"{plain_sql(name)} AS {name}")
        else:
            columns.append(name)
    target = str(path).replace("'", "''")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("report_rows", table)
        select = f"SELECT {', '.join(columns)} FROM report_rows"
        con.execute(f"COPY ({select}) TO '{target}' (HEADER, DELIMITER ',')")
    finally:
        con.close()
