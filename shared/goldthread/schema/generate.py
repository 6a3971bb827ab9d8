"""Generate BigQuery schema files, DuckDB DDL and ``docs/schema.md`` from the warehouse models.

The models in ``goldthread.models.warehouse`` are the single source of truth. This module maps each
field's Python type to the engine's column type once (``COLUMN_TYPES``), and every artifact is derived
from that mapping. ``goldthread schema check`` (and a test) fails when a committed file is stale.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from goldthread.models.warehouse import ALL_TABLES, WarehouseRow

REPO_ROOT = Path(__file__).resolve().parents[3]

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


def schema_markdown() -> str:
    """The human-readable data dictionary ``docs/schema.md``."""
    parts = [
        "# Warehouse schema\n",
        "Generated by `goldthread schema generate` from `shared/goldthread/models/warehouse.py`; "
        "do not edit by hand.\n",
        "Money and quantities are exact decimals (BigQuery NUMERIC, DuckDB DECIMAL(38,9)); "
        "timestamps are UTC.\n",
    ]
    for model in ALL_TABLES:
        part = model.__partition__ or "none"
        cluster = ", ".join(model.__cluster__) or "none"
        parts.append(f"\n## `{model.__table__}`\n\n{model.__description__}\n")
        parts.append(f"\nKey `{model.__key__}`; partitioned by `{part}` (DAY); clustered by {cluster}.\n")
        parts.append("\n| column | BigQuery | DuckDB | mode | description |\n|---|---|---|---|---|\n")
        for c in columns_of(model):
            mode = "REQUIRED" if c.required else "NULLABLE"
            desc = c.description.replace("|", "\\|")
            parts.append(f"| `{c.name}` | {c.bigquery_type} | {c.duckdb_type} | {mode} | {desc} |\n")
    return "".join(parts)


def artifacts(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every generated file and its expected content."""
    files: dict[Path, str] = {}
    for model in ALL_TABLES:
        files[root / "terraform" / "schemas" / f"{model.__table__}.json"] = (
            json.dumps(bigquery_schema(model), indent=2) + "\n"
        )
    files[root / "shared" / "goldthread" / "schema" / "duckdb.sql"] = (
        "-- Generated by `goldthread schema generate` from the warehouse models; do not edit.\n\n"
        + "\n".join(duckdb_ddl(m) for m in ALL_TABLES)
    )
    files[root / "docs" / "schema.md"] = schema_markdown()
    files.update(deployment_artifacts(root))
    return files


def deployment_artifacts(root: Path = REPO_ROOT) -> dict[Path, str]:
    """What Terraform reads that the code defines: the BI views and the Firestore composite indexes.

    Views are the marts' GoogleSQL with tables qualified as ``${project}.${dataset}.table`` (Terraform's
    ``templatefile`` fills them in); the indexes file is in the Firebase CLI's format.
    """
    from goldthread.adapters.firestore_hot_store import FIRESTORE_INDEXES
    from goldthread.bi.marts import MARTS, bigquery_view_sql

    files: dict[Path, str] = {}
    for name in sorted(MARTS):
        sql = bigquery_view_sql(name, "tfproject", "tfdataset")
        sql = sql.replace("tfproject.tfdataset.", "`${project}`.`${dataset}`.")
        if "tfproject" in sql or "tfdataset" in sql:
            raise ValueError(f"{name}: a table reference was not qualified the usual way")
        files[root / "terraform" / "views" / f"{name}.sql"] = (
            f"-- Generated by `goldthread schema generate` from shared/goldthread/bi/{name}.sql; do not edit.\n"
            + sql + "\n"
        )
    files[root / "firestore.indexes.json"] = json.dumps(
        {"indexes": FIRESTORE_INDEXES, "fieldOverrides": []}, indent=2
    ) + "\n"
    return files


def write_artifacts(root: Path = REPO_ROOT) -> list[Path]:
    """Write every generated file; return those whose content changed."""
    changed = []
    for path, content in artifacts(root).items():
        if not path.exists() or path.read_text() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            changed.append(path)
    return changed


def stale_artifacts(root: Path = REPO_ROOT) -> list[Path]:
    """Generated files that are missing or differ from what the models say."""
    return [p for p, content in artifacts(root).items() if not p.exists() or p.read_text() != content]
