"""The warehouse columns of a model: one mapping from a field's Python type to each engine's column type.

``COLUMN_TYPES`` is the only place a type is mapped; the BigQuery schema, the DuckDB DDL, the Arrow schema of a
bulk load and the generated files (``goldthread.schema.generate``) all derive from ``columns_of``. It sits
with the models, below the ports and adapters, so an adapter creates its tables without importing the
generator, and code that builds Arrow rows (Loops B and C's bar cache) needs no warehouse adapter.
"""

from __future__ import annotations

import datetime as dt
import functools
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from goldthread.models.warehouse import WarehouseRow

# logical type -> (BigQuery type, DuckDB type)
COLUMN_TYPES: dict[str, tuple[str, str]] = {
    "string": ("STRING", "VARCHAR"),
    "int": ("INT64", "BIGINT"),
    "bool": ("BOOL", "BOOLEAN"),
    "decimal": ("NUMERIC", "DECIMAL(38,9)"),
    "timestamp": ("TIMESTAMP", "TIMESTAMPTZ"),
    "date": ("DATE", "DATE"),
}


@dataclass(frozen=True)
class Column:
    """One warehouse column as derived from a model field."""

    name: str
    logical: str
    required: bool
    description: str

    @property
    def bigquery_type(self) -> str:
        """The BigQuery column type."""
        return COLUMN_TYPES[self.logical][0]

    @property
    def duckdb_type(self) -> str:
        """The DuckDB column type."""
        return COLUMN_TYPES[self.logical][1]


def _logical_type(annotation: Any) -> tuple[str, bool]:
    """Map a field annotation to (logical type, nullable)."""
    nullable = False
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _logical_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"unsupported union {annotation!r}")
        logical, inner_nullable = _logical_type(args[0])
        return logical, nullable or inner_nullable
    if annotation is AwareDatetime:
        return "timestamp", nullable
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "bool", nullable
        if issubclass(annotation, Enum) or issubclass(annotation, str):
            return "string", nullable
        if issubclass(annotation, int):
            return "int", nullable
        if issubclass(annotation, Decimal):
            return "decimal", nullable
        if issubclass(annotation, dt.datetime):
            return "timestamp", nullable
        if issubclass(annotation, dt.date):
            return "date", nullable
    raise TypeError(f"no warehouse type for {annotation!r}")


def added_in(field: FieldInfo) -> str | None:
    """The release that added a column (``models.warehouse.added_in``), None for the first release's."""
    extra = field.json_schema_extra
    return str(extra["added_in"]) if isinstance(extra, dict) and "added_in" in extra else None


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@functools.lru_cache(maxsize=64)
def columns_of(model: type[BaseModel]) -> list[Column]:
    """The columns of a warehouse model: the first release's in field order, then each later release's added
    columns (oldest release first), as ``ALTER TABLE ... ADD COLUMN`` appends them to an existing table.

    An added column must be nullable (the rows already stored have no value for it)."""
    original, added = [], []
    for name, field in model.model_fields.items():
        logical, nullable = _logical_type(field.annotation)
        column = Column(name, logical, not nullable, _description(field))
        release = added_in(field)
        if release is None:
            original.append(column)
        elif not nullable:
            raise TypeError(f"{model.__name__}.{name} was added in {release} and so must be nullable")
        else:
            added.append((_release(release), column))
    return original + [column for _, column in sorted(added, key=lambda pair: pair[0])]


def _description(field: FieldInfo) -> str:
    return field.description or ""


def bigquery_schema(model: type[WarehouseRow]) -> list[dict[str, str]]:
    """The BigQuery JSON schema of a table (the format ``bq`` and Terraform's ``schema`` take)."""
    return [
        {
            "name": c.name,
            "type": c.bigquery_type,
            "mode": "REQUIRED" if c.required else "NULLABLE",
            "description": c.description,
        }
        for c in columns_of(model)
    ]


def duckdb_ddl(model: type[WarehouseRow]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for DuckDB, keyed by the model's key column."""
    lines = []
    for c in columns_of(model):
        null = " NOT NULL" if c.required else ""
        key = " PRIMARY KEY" if c.name == model.__key__ else ""
        lines.append(f"    {c.name} {c.duckdb_type}{null}{key}")
    body = ",\n".join(lines)
    return f"CREATE TABLE IF NOT EXISTS {model.__table__} (\n{body}\n);\n"


_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "decimal": pa.decimal128(38, 9),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}


@functools.lru_cache(maxsize=64)
def arrow_schema(model: type[WarehouseRow]) -> pa.Schema:
    """The Arrow schema of a warehouse model (derived from the same column mapping as the DDL)."""
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.logical], nullable=not c.required) for c in columns_of(model)])


def rows_to_arrow(model: type[WarehouseRow], rows: Sequence[WarehouseRow]) -> pa.Table:
    """Validated rows to an Arrow table in the model's column order, each through ``model_dump``.

    Reading the rows' ``__dict__`` instead saved ~2 us of the ~150 us a Loop A record takes (under 5%,
    ``python -m bench.fast_paths``), so the plain way stays."""
    return pa.Table.from_pylist([r.model_dump() for r in rows], schema=arrow_schema(model))
