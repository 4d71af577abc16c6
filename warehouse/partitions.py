"""Where a table's rows for one UTC date live, and how a partition file is written."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"


def day_text(day: int) -> str:
    """Days since 1970-01-01 as an ISO date."""
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def partition_path(out: Path, table: str, date: str) -> Path:
    return out / table / f"date={date}" / "data.parquet"


def write_partition(table: pa.Table, path: Path) -> None:
    """One Parquet file, written beside and renamed into place; the same rows always give
    the same bytes (one chunk per column, no timestamps in the metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    pq.write_table(table.combine_chunks(), partial, compression=PARQUET_COMPRESSION)
    os.replace(partial, path)
