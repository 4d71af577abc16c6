"""DuckDB over the warehouse: one view per table, reading its Parquet partitions in place.

A fact table with no partition yet is an empty view of its schema, so a query over a
young warehouse answers no rows rather than failing; `date` is the partition's DATE.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse.tables import DERIVED_TABLES, FACT_TABLES

ALERTS_TABLE = "alerts"


class WarehouseError(Exception):
    """A warehouse that is missing, or a query it cannot answer; the message says why."""


def files_of(warehouse: Path, table: str) -> str:
    return str(warehouse / table / "*" / "*.parquet")


def has_table(warehouse: Path, table: str) -> bool:
    return any((warehouse / table).glob("date=*/*.parquet"))


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    if not warehouse.is_dir():
        raise WarehouseError(f"no warehouse at {warehouse}: run `raftex warehouse build` first")
    con = duckdb.connect()
    # Dates, partitions and report timestamps are UTC, whatever zone the machine is in.
    con.execute("SET TimeZone = 'UTC'")
    for table, schema in FACT_TABLES.items():
        _view(con, warehouse, table, schema)
    for table in (*DERIVED_TABLES, ALERTS_TABLE):
        if has_table(warehouse, table):
            _view(con, warehouse, table, None)
    return con


def _view(
    con: duckdb.DuckDBPyConnection, warehouse: Path, table: str, schema: pa.Schema | None
) -> None:
    """A table's partitions as one view; by column name, so partitions written before a
    column was added read it as null."""
    if has_table(warehouse, table):
        path = files_of(warehouse, table).replace("'", "''")
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{path}', "
            "hive_partitioning = true, hive_types = {'date': DATE}, union_by_name = true)"
        )
        return
    assert schema is not None
    empty = schema.empty_table().append_column("date", pa.array([], pa.date32()))
    con.register(f"_{table}_empty", empty)
    con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM _{table}_empty")


def run_sql(warehouse: Path, sql: str) -> pa.Table:
    """One read-only query's rows: the warehouse's files are never written through SQL."""
    con = connect(warehouse)
    try:
        statements = con.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise WarehouseError("give one query (SELECT, WITH, FROM, DESCRIBE); nothing else runs")
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise WarehouseError(str(exc).splitlines()[0]) from None
    finally:
        con.close()
