"""Records for ``datasets.create`` from a CSV file, by declared columns (and schema files).

Column types, bounds and categories are public: they are declared, never read off the data
(bounds or categories inferred from the records would leak them). The CSV's header row names
the columns; declared columns are taken in declared order, others are left out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = ["UsageError", "read_csv", "read_header", "read_schema"]


class UsageError(ValueError):
    """A CSV or schema file that cannot be used as given (names the file and line)."""


def read_schema(path: str | Path) -> list[dict[str, Any]]:
    """Columns from a JSON file: ``{"columns": [...]}`` or the bare list."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read schema {path}: {exc}") from None
    columns = data.get("columns") if isinstance(data, dict) else data
    if not isinstance(columns, list) or not all(isinstance(c, dict) for c in columns):
        raise UsageError(f"schema {path} must hold a list of columns or {{'columns': [...]}}")
    return columns


def read_csv(path: str | Path, columns: Sequence[Mapping[str, Any] | BaseModel]) -> list[list[Any]]:
    """Records of the declared ``columns`` (mappings or column models) from a CSV file with a
    header row: float columns parsed as numbers, category columns as text, in column order.

    Bounds and categories are checked by the service, whose 422 names ``records[i][j]``
    (row i counts data rows from 0, so it is line i + 2 of the file).
    """
    path = Path(path)
    specs = [c.model_dump() if isinstance(c, BaseModel) else dict(c) for c in columns]
    names = [str(c.get("name")) for c in specs]
    missing = [n for n in names if n not in read_header(path)]
    if missing:
        raise UsageError(f"{path}: no column {', '.join(missing)} in the header")
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
            return [_row(path, reader.line_num, row, specs) for row in reader]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def read_header(path: str | Path) -> list[str]:
    """The column names in the CSV file's header row."""
    try:
        with Path(path).open(newline="") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _row(
    path: Path, line: int, row: Mapping[str, str | None], columns: Sequence[Mapping[str, Any]]
) -> list[Any]:
    out: list[Any] = []
    for column in columns:
        name = column["name"]
        text = (row.get(name) or "").strip()
        if column.get("type") == "float":
            try:
                out.append(float(text))
            except ValueError:
                raise UsageError(
                    f"{path}:{line}: column {name!r}: {text!r} is not a number"
                ) from None
        else:
            out.append(text)
    return out
