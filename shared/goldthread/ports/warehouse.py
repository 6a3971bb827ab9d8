"""The warehouse port: typed tables created from the models, idempotent writes, parameterised reads.

SQL handed to ``query`` is written once in BigQuery's dialect (GoogleSQL, ``@name`` parameters,
unqualified table names); each adapter translates it for its engine (DuckDB through ``sqlglot``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from goldthread.errors import ConfigError
from goldthread.models.warehouse import WarehouseRow

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def safe_identifier(name: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise ``ConfigError``.

    Table, dataset and column names can never be query parameters, so every one that reaches SQL text
    passes through here first.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConfigError(f"unsafe SQL identifier: {name!r}")
    return name


@dataclass
class InsertResult:
    """Which rows a write stored and which it skipped because their key already existed."""

    inserted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


class Warehouse(ABC):
    """Abstract warehouse. Implementations: ``DuckDbWarehouse`` (embedded), ``BigQueryWarehouse``."""

    name: ClassVar[str]
    key_check_is_billed: ClassVar[bool] = False
    """True where finding which keys a table holds costs a billed query (BigQuery: one per call, at the
    10 MB minimum). A caller that can prove its keys were never written before passes ``keys_are_new``."""
    views_follow_tables: ClassVar[bool] = False
    """True where the BI views live beside the tables and are made whenever the tables are (the embedded DuckDB
    file: the ``Context`` creates the marts right after ``ensure_tables``); False where Terraform declares them
    (BigQuery). The adapter itself never knows the marts: they belong to ``goldthread.bi``, above it."""

    @abstractmethod
    def ensure_tables(self) -> None:
        """Create every table the models declare (and any view derived from one table alone), if missing."""

    @abstractmethod
    def insert_rows(
        self, model: type[WarehouseRow], rows: Sequence[WarehouseRow], *, keys_are_new: bool = False
    ) -> InsertResult:
        """Write validated rows; a row whose key exists already is skipped and reported as duplicate.

        ``keys_are_new``: the caller holds proof that no earlier attempt wrote these keys (the
        subscriber's ``loading_run_id`` mark), so an engine whose key check is billed may skip it; rows
        are still written with their key as the de-duplication id, and duplicates within ``rows`` are
        still reported.
        """

    @abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a parameterised GoogleSQL query and return its rows as dicts."""

    @abstractmethod
    def upsert_rows(
        self, model: type[WarehouseRow], rows: Sequence[WarehouseRow], columns: Sequence[str]
    ) -> int:
        """Atomically update ``columns`` of existing rows by key, inserting missing ones (one MERGE).

        Returns the number of rows changed or inserted.
        """

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """The same query as a columnar Arrow table (bars for vectorised maths). Engines override this."""
        return pa.Table.from_pylist(self.query(sql, params))

    def load_arrow(self, model: type[WarehouseRow], table: pa.Table) -> InsertResult:
        """Bulk-load columnar rows already in the model's schema, skipping existing keys.

        The default validates each row through the model and streams it; engines with a native bulk
        path (DuckDB's Arrow scan, BigQuery load jobs) override it.
        """
        rows = [model.model_validate(r) for r in table.to_pylist()]
        return self.insert_rows(model, rows)

    def get_rows(self, model: type[WarehouseRow], keys: Sequence[str]) -> list[dict[str, Any]]:
        """Rows of ``model`` by key: each key once (its latest revision), even if a streaming backend holds
        it twice."""
        if not keys:
            return []
        table = safe_identifier(model.__table__)
        key = safe_identifier(model.__key__)
        return self.query(
            f"SELECT * FROM {table} WHERE {key} IN UNNEST(@keys) "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {model.__latest_first__}) = 1",
            {"keys": list(keys)},
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
