"""Embedded warehouse: a DuckDB file with the tables generated from the models.

Rows arrive as validated models and are written in one Arrow batch per call inside a transaction;
the deterministic ``row_id`` is the primary key, so the same record arriving twice is stored once and
reported as a duplicate. SQL is written in BigQuery's dialect and translated by ``sqlglot``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import sqlglot

from goldthread.errors import ConfigError, PermanentError, StoreUnavailableError, WarehouseWriteError
from goldthread.models.columns import arrow_schema as arrow_schema
from goldthread.models.columns import columns_of, duckdb_ddl, rows_to_arrow
from goldthread.models.warehouse import ALL_TABLES, WarehouseRow
from goldthread.ports.warehouse import InsertResult, Warehouse, safe_identifier


@functools.lru_cache(maxsize=512)
def to_duckdb_sql(sql: str) -> str:
    """Translate GoogleSQL (``@param``, BigQuery functions) to DuckDB's dialect, once per text."""
    return sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]


def _connect_waiting(
    path: str, read_only: bool, wait_seconds: float, on_wait: Callable[[str], None] | None
) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, waiting up to ``wait_seconds`` while another process holds it.

    DuckDB lets one process open a file at a time. A second goldthread command on the same home (a
    backfill running, a replay, a reader) therefore waits for the first to finish instead of failing,
    saying once what it waits for (``on_wait``); past the bound it gives up with a ``StoreUnavailableError``
    naming the holder, before any run has started.
    """
    deadline = time.monotonic() + wait_seconds
    pause, told = 0.05, False
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            held = "lock" in str(exc).lower()
            if not held or time.monotonic() >= deadline:
                why = f"held by another process for more than {wait_seconds:.0f} s" if held else "cannot be opened"
                raise StoreUnavailableError(f"warehouse {path} {why}: {exc}") from exc
            if not told and on_wait is not None:
                holder = str(exc).split("Conflicting lock is held in", 1)[-1].split(". See", 1)[0].strip()
                on_wait(f"waiting up to {wait_seconds:.0f} s for the warehouse {path}, held by {holder}")
                told = True
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 2.0)
        except duckdb.Error as exc:
            raise WarehouseWriteError(f"cannot open warehouse {path}: {exc}") from exc


_STORED_TYPE = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}  # how information_schema spells a DDL type


def migration_steps(model: type[WarehouseRow], stored: Mapping[str, tuple[str, bool]]) -> list[str]:
    """The statements that bring a stored table to ``model``'s columns, or ``ConfigError`` naming each column
    that cannot be migrated without losing data (removed from the model, or of another type)."""
    table = safe_identifier(model.__table__)
    columns = {c.name: c for c in columns_of(model)}
    problems = [f"{table}.{name} is stored but the model has no such column (removed?)"
                for name in stored if name not in columns]
    steps = []
    for name, column in columns.items():
        if name not in stored:
            steps.append(f"ALTER TABLE {table} ADD COLUMN {safe_identifier(name)} {column.duckdb_type}")
            continue
        stored_type, nullable = stored[name]
        wanted = _STORED_TYPE.get(column.duckdb_type, column.duckdb_type)
        if stored_type != wanted:
            problems.append(f"{table}.{name} is stored as {stored_type} but the model says {wanted}")
        elif not nullable and not column.required and name != model.__key__:
            steps.append(f"ALTER TABLE {table} ALTER COLUMN {safe_identifier(name)} DROP NOT NULL")
    if problems:
        raise ConfigError("the warehouse was written by a version whose schema cannot be migrated: "
                          + "; ".join(problems))
    return steps


class DuckDbWarehouse(Warehouse):
    """The embedded warehouse (default). ``path`` is the DuckDB file (or ``:memory:``)."""

    name: ClassVar[str] = "duckdb"
    views_follow_tables: ClassVar[bool] = True

    def __init__(
        self,
        path: Path | str = ":memory:",
        read_only: bool = False,
        wait_seconds: float = 0.0,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.read_only = read_only and str(path) != ":memory:" and Path(path).exists()
        """Opened read-only (its tables are as stored; nothing is created). Asked read-only of a missing file,
        it is an empty in-memory warehouse instead, so a reading command on a fresh home creates no file."""
        if read_only and not self.read_only:
            path, read_only = ":memory:", False
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = _connect_waiting(str(path), read_only, wait_seconds, on_wait)
        self._db.execute("SET TimeZone = 'UTC'")

    def ensure_tables(self) -> None:
        """Create every model's table if missing and migrate the ones an earlier release built.

        The BI marts over them are not this adapter's business (they are ``goldthread.bi``'s, a layer above):
        the ``Context`` creates them right after this, since ``views_follow_tables`` says they live here.

        A warehouse the previous release wrote opens as it is: a column a model added is added (nullable, at
        the end, where the schema generator puts it too), a column a model no longer requires drops its NOT
        NULL, and a new table is created; every row stays. A column the model removed or retyped cannot be
        migrated without losing data, so it is refused with a ``ConfigError`` naming it, before anything changes.
        """
        with self._lock:
            existing = self.stored_columns()
            plan = [step for model in ALL_TABLES if model.__table__ in existing
                    for step in migration_steps(model, existing[model.__table__])]
            for model in ALL_TABLES:
                if model.__table__ not in existing:
                    self._db.execute(duckdb_ddl(model))
            for step in plan:
                self._db.execute(step)

    def stored_columns(self) -> dict[str, dict[str, tuple[str, bool]]]:
        """The stored tables' columns: table -> column -> (DuckDB type, nullable)."""
        found: dict[str, dict[str, tuple[str, bool]]] = {}
        for table, column, data_type, nullable in self._db.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ).fetchall():
            found.setdefault(table, {})[column] = (data_type, nullable == "YES")
        return found

    def create_view(self, name: str, sql: str) -> None:
        """Create or replace a view from GoogleSQL text (used by the BI marts)."""
        with self._lock:
            self._db.execute(f"CREATE OR REPLACE VIEW {safe_identifier(name)} AS {to_duckdb_sql(sql)}")

    def insert_rows(
        self, model: type[WarehouseRow], rows: Sequence[WarehouseRow], *, keys_are_new: bool = False
    ) -> InsertResult:
        """Insert rows whose key is new; report the others as duplicates. One transaction.

        The primary key checks every key at no cost, so ``keys_are_new`` changes nothing here.
        """
        if not rows:
            return InsertResult()
        key = safe_identifier(model.__key__)
        seen: set[str] = set()
        unique: list[WarehouseRow] = []
        in_batch: list[str] = []
        for row in rows:
            row_key = getattr(row, key)
            if row_key in seen:
                in_batch.append(row_key)
            else:
                seen.add(row_key)
                unique.append(row)
        result = self.load_arrow(model, rows_to_arrow(model, unique))
        result.duplicates.extend(in_batch)
        return result

    def load_arrow(self, model: type[WarehouseRow], incoming: pa.Table) -> InsertResult:
        """Insert an Arrow table (unique keys, the model's schema) in one transaction; skip existing keys."""
        result = InsertResult()
        if incoming.num_rows == 0:
            return result
        table, key = safe_identifier(model.__table__), safe_identifier(model.__key__)
        with self._lock:
            try:
                existing = self._insert_new(table, key, incoming)
                self._db.execute("COMMIT")
            except duckdb.Error as exc:
                self._db.execute("ROLLBACK")
                raise WarehouseWriteError(f"insert into {table} failed: {exc}") from exc
            finally:
                self._db.unregister("incoming_rows")
        for row_key in incoming.column(key).to_pylist():
            (result.duplicates if row_key in existing else result.inserted).append(row_key)
        return result

    def _insert_new(self, table: str, key: str, incoming: pa.Table) -> set[str]:
        """Insert the rows whose key is new, in an open transaction; return the keys that already existed.

        Optimistic: a plain INSERT checks each key against the primary-key index, and succeeds when every
        key is new (the usual case). Only a batch holding a stored key pays for the anti-join, which scans
        the table: doing that for every batch made a backfill quadratic.
        """
        self._db.execute("BEGIN TRANSACTION")
        self._db.register("incoming_rows", incoming)
        try:
            self._db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_rows")
            return set()
        except duckdb.ConstraintException:
            self._db.execute("ROLLBACK")
        self._db.execute("BEGIN TRANSACTION")
        self._db.register("incoming_rows", incoming)
        existing = {
            r[0]
            for r in self._db.execute(
                f"SELECT i.{key} FROM incoming_rows i JOIN {table} t ON t.{key} = i.{key}"
            ).fetchall()
        }
        self._db.execute(
            f"INSERT INTO {table} BY NAME SELECT * FROM incoming_rows i "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{key} = i.{key})"
        )
        return existing

    def upsert_rows(
        self, model: type[WarehouseRow], rows: Sequence[WarehouseRow], columns: Sequence[str]
    ) -> int:
        """Update ``columns`` by key, inserting missing rows, in one statement."""
        if not rows:
            return 0
        table, key = safe_identifier(model.__table__), safe_identifier(model.__key__)
        sets = ", ".join(f"{safe_identifier(c)} = excluded.{safe_identifier(c)}" for c in columns)
        incoming = rows_to_arrow(model, rows)
        with self._lock:
            try:
                self._db.register("upsert_rows", incoming)
                self._db.execute(
                    f"INSERT INTO {table} BY NAME SELECT * FROM upsert_rows ON CONFLICT ({key}) DO UPDATE SET {sets}"
                )
            except duckdb.Error as exc:
                raise WarehouseWriteError(f"upsert into {table} failed: {exc}") from exc
            finally:
                self._db.unregister("upsert_rows")
        return len(rows)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run GoogleSQL translated to DuckDB; values are bound as parameters, never spliced."""
        translated = to_duckdb_sql(sql)
        with self._lock:
            try:
                cur = self._db.execute(translated, dict(params or {}))
                names = [d[0] for d in cur.description or []]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            except duckdb.Error as exc:
                if isinstance(exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)):
                    raise PermanentError(f"query failed: {exc}") from exc
                raise WarehouseWriteError(f"query failed: {exc}") from exc

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run GoogleSQL and return an Arrow table (no per-row Python objects)."""
        with self._lock:
            try:
                return self._db.sql(to_duckdb_sql(sql), params=dict(params or {})).to_arrow_table()
            except duckdb.Error as exc:
                raise WarehouseWriteError(f"query failed: {exc}") from exc

    def execute_script(self, sql: str) -> None:
        """Run DuckDB-native SQL (maintenance only; never with untrusted text)."""
        with self._lock:
            self._db.execute(sql)

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()


