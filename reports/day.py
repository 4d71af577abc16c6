"""What every report starts from: the warehouse, one day (or month) in it, a place to write."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import duckdb

from cluster.durable_file import replace_file
from warehouse.query import WarehouseError, connect


class ReportError(Exception):
    """A report that cannot be made as asked; the message says why."""


def parse_day(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--date {text!r} is not a date (YYYY-MM-DD)") from None


def parse_month(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(f"{text}-01")
    except ValueError:
        raise ReportError(f"--month {text!r} is not a month (YYYY-MM)") from None


def open_warehouse(warehouse: Path) -> duckdb.DuckDBPyConnection:
    try:
        return connect(warehouse)
    except WarehouseError as exc:
        raise ReportError(str(exc)) from None


def out_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot write reports to {out}: {exc.strerror}") from None
    return out


def write_file(path: Path, data: bytes) -> str:
    """Replaces `path` atomically (cluster/durable_file.py); its SHA-256."""
    replace_file(path, data, 0o644)
    return hashlib.sha256(data).hexdigest()
