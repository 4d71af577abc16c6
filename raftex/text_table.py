"""Rows as an aligned plain-text table, for the CLI's default output."""

from __future__ import annotations

from typing import Any


def format_rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    cells = [
        [str(row.get(c, "")) if row.get(c) is not None else "-" for c in columns] for row in rows
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
