"""BigQuery warehouse: the production adapter of the ``Warehouse`` port (``GOLDTHREAD_WAREHOUSE=bigquery``).

Tables come from the models (``bigquery_schema``): DAY partitioning on the model's ``__partition__``
column, clustering from ``__cluster__``, and next to each table a deduplicating view ``<table>_dedup``
that shows each key once.

**Writes.** ``insert_rows`` first asks which keys already exist (one parameterised
``IN UNNEST(@keys)`` query), skips those as duplicates (and repeats within the batch), and streams the
rest with ``insert_rows_json`` using the deterministic key as each row's ``insertId``. The insertId makes
a retried streaming request (say, after a timeout whose first attempt did land) collapse into one row on
BigQuery's side; that deduplication is best-effort (about a minute), so readers never rely on it: the
port's ``get_rows`` and the ``_dedup`` views keep one row per key even if a key was streamed twice (two
concurrent writers can both pass the existence check).

``upsert_rows`` loads the rows into a ``_staging_<table>_<uuid>`` table with a load job, runs ONE
``MERGE`` from it (update the chosen columns of matching keys, insert missing rows) and drops the
staging table. A load job rather than streaming, because DML cannot touch rows still in the streaming
buffer: real BigQuery refuses ``UPDATE``/``MERGE`` on rows streamed in the last ~90 minutes. The design
lives with that: the fee patch runs at T+1, long after the buffer flushed; if it ever meets the buffer,
the error is reported as ``WarehouseWriteError`` (transient), so the work is retried later.

**Reads.** ``query`` takes GoogleSQL with ``@name`` parameters typed from the Python values and
unqualified table names (the dataset is the job's default dataset). Rows are read through the REST API
(``create_bqstorage_client=False`` for Arrow), so NUMERIC comes back as an exact ``Decimal`` and
TIMESTAMP as an aware UTC ``datetime``.

**Client.** With ``endpoint`` (or ``GOLDTHREAD_BIGQUERY_ENDPOINT``) set, the client talks to that
endpoint with anonymous credentials (the bqemulator in tests); otherwise Application Default
Credentials. The SDK is imported lazily and errors are translated here: unavailable, deadline, 429/5xx
become ``WarehouseWriteError`` on writes and ``StoreUnavailableError`` on reads; credentials and
permissions ``ConfigError``; bad SQL or rows ``PermanentError``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar

from goldthread.adapters.google_errors import translate, translated
from goldthread.errors import (
    ConfigError,
    GoldthreadError,
    PermanentError,
    StoreUnavailableError,
    TransientError,
    WarehouseWriteError,
)
from goldthread.models.columns import bigquery_schema
from goldthread.models.warehouse import ALL_TABLES, WarehouseRow
from goldthread.ports.warehouse import InsertResult, Warehouse, safe_identifier

ENDPOINT_ENV = "GOLDTHREAD_BIGQUERY_ENDPOINT"
DEDUP_SUFFIX = "_dedup"
STAGING_PREFIX = "_staging_"
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9.:\-]{0,127}$")
_STREAM_CHUNK = 500  # rows per insertAll request (BigQuery's recommended maximum)
_KEY_CHUNK = 10_000  # keys per existence query
_TRANSIENT_REASONS = frozenset({"backendError", "internalError", "timeout", "rateLimitExceeded", "quotaExceeded"})


# -- error translation ---------------------------------------------------------------------------


def translate_error(exc: BaseException, action: str, transient: type[TransientError]) -> GoldthreadError:
    """Map one vendor exception to ``transient``, ``ConfigError`` or ``PermanentError``.

    BigQuery adds one transient case: DML on rows still in the streaming buffer.
    """
    message = f"bigquery {action}: {type(exc).__name__}: {exc}"
    if "streaming buffer" in str(exc).lower():
        return transient(message + " (rows still in the streaming buffer; retry after it flushes)")
    return translate(exc, message, transient)


@contextmanager
def vendor_errors(action: str, transient: type[TransientError] = WarehouseWriteError) -> Iterator[None]:
    """Translate Google API errors raised inside the block into goldthread's error tree."""
    with translated(action, lambda exc, act: translate_error(exc, act, transient)):
        yield


# -- values --------------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A value as BigQuery's JSON row format takes it (exact decimals as text, UTC timestamps)."""
    if isinstance(value, Enum):
        return json_value(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a time zone")
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def json_row(row: WarehouseRow) -> dict[str, Any]:
    """A validated model as one BigQuery JSON row."""
    return {name: json_value(getattr(row, name)) for name in type(row).model_fields}


def query_parameter(name: str, value: Any) -> Any:
    """A typed ``ScalarQueryParameter`` / ``ArrayQueryParameter`` for a Python value.

    str -> STRING, bool -> BOOL, int -> INT64, float -> FLOAT64, Decimal -> NUMERIC (BIGNUMERIC past
    9 places), datetime -> TIMESTAMP (aware only), date -> DATE, bytes -> BYTES, list/tuple/set -> ARRAY
    of the first non-null element's type (STRING when empty).
    """
    from google.cloud import bigquery

    safe_identifier(name)
    if isinstance(value, (list, tuple, set, frozenset)):
        values = list(value)
        sample = next((v for v in values if v is not None), None)
        element = "STRING" if sample is None else _scalar_type(sample)
        return bigquery.ArrayQueryParameter(name, element, [_param_value(v) for v in values])
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), _param_value(value))


def _scalar_type(value: Any) -> str:
    if value is None:
        return "STRING"
    if isinstance(value, Enum):
        return _scalar_type(value.value)
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        small = isinstance(exponent, int) and exponent >= -9 and abs(value) < Decimal(10) ** 29
        return "NUMERIC" if small else "BIGNUMERIC"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime parameter {value!r}: timestamps must carry a time zone")
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, bytes):
        return "BYTES"
    if isinstance(value, str):
        return "STRING"
    raise ConfigError(f"no BigQuery parameter type for {type(value).__name__}")


def _param_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return value


# -- the adapter ---------------------------------------------------------------------------------


class BigQueryWarehouse(Warehouse):
    """Warehouse on Google BigQuery (or the bqemulator when an endpoint is given).

    ``project``/``dataset`` name the dataset every unqualified table in SQL refers to; ``location`` is
    the dataset's location when it is created; ``endpoint`` overrides ``GOLDTHREAD_BIGQUERY_ENDPOINT``;
    ``client`` injects a ready ``google.cloud.bigquery.Client``; ``tables`` are the models to create.
    ``timeout`` bounds each API request, ``retry_deadline`` the SDK's retries of transient errors and
    ``job_timeout`` the wait for a query or load job; past them the call fails with a transient error
    instead of hanging (the SDK's own retry deadline is 10 minutes).
    """

    name: ClassVar[str] = "bigquery"
    key_check_is_billed: ClassVar[bool] = True

    def __init__(
        self,
        project: str,
        dataset: str,
        *,
        location: str | None = None,
        endpoint: str | None = None,
        client: Any | None = None,
        tables: Sequence[type[WarehouseRow]] = ALL_TABLES,
        timeout: float = 60.0,
        retry_deadline: float = 120.0,
        job_timeout: float = 600.0,
    ) -> None:
        if not _PROJECT.match(project):
            raise ConfigError(f"invalid BigQuery project id {project!r}")
        self.project = project
        self.dataset = safe_identifier(dataset)
        self.location = location
        self.tables = tuple(tables)
        self.endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or None
        if client is None:
            with vendor_errors("connect", StoreUnavailableError):
                from google.cloud import bigquery

                if self.endpoint:
                    from google.auth.credentials import AnonymousCredentials

                    client = bigquery.Client(
                        project=project,
                        location=location,
                        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                        client_options={"api_endpoint": self.endpoint},
                    )
                else:
                    client = bigquery.Client(project=project, location=location)
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        self._client = client
        self.timeout = timeout
        self.job_timeout = job_timeout
        self._retry = DEFAULT_RETRY.with_deadline(retry_deadline)

    @property
    def _rt(self) -> dict[str, Any]:
        return {"retry": self._retry, "timeout": self.timeout}

    def _run_query(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Start a query job and wait for it; returns the finished job.

        ``job_retry=None``: the SDK would otherwise re-issue a failed query for up to 10 minutes; here a
        failed job surfaces at once as a transient error and the bus redelivers the work item.
        """
        job = self._client.query(
            sql, job_config=self._job_config(params), retry=self._retry, timeout=self.timeout, job_retry=None
        )
        job.result(retry=self._retry, timeout=self.job_timeout)
        return job

    @property
    def client(self) -> Any:
        """The underlying ``google.cloud.bigquery.Client``."""
        return self._client

    def table_id(self, table: str) -> str:
        """``project.dataset.table`` for an unqualified table name."""
        return f"{self.project}.{self.dataset}.{safe_identifier(table)}"

    def _quoted(self, table: str) -> str:
        return f"`{self.table_id(table)}`"

    # -- tables ----------------------------------------------------------------------------------
    def ensure_tables(self) -> None:
        """Create whatever is missing of the dataset, every model's table (partitioned, clustered) and
        its ``_dedup`` view.

        Existing objects are looked up first and left alone: in production Terraform creates them, and a
        least-privilege function account may read the dataset but not create datasets in the project
        (BigQuery checks ``bigquery.datasets.create`` even for ``exists_ok=True``).
        """
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        with vendor_errors("ensure_tables"):
            ds = bigquery.Dataset(f"{self.project}.{self.dataset}")
            if self.location:
                ds.location = self.location
            try:
                self._client.get_dataset(ds.reference, **self._rt)
            except gexc.NotFound:
                self._client.create_dataset(ds, exists_ok=True, **self._rt)
            existing = {t.table_id for t in self._client.list_tables(ds.reference, **self._rt)}
            for model in self.tables:
                if model.__table__ in existing and f"{model.__table__}{DEDUP_SUFFIX}" in existing:
                    continue
                table = bigquery.Table(self.table_id(model.__table__), schema=self.schema(model))
                table.description = model.__description__
                if model.__partition__:
                    table.time_partitioning = bigquery.TimePartitioning(
                        type_=bigquery.TimePartitioningType.DAY, field=safe_identifier(model.__partition__)
                    )
                if model.__cluster__:
                    table.clustering_fields = [safe_identifier(c) for c in model.__cluster__]
                self._client.create_table(table, exists_ok=True, **self._rt)
                key = safe_identifier(model.__key__)
                self.create_view(
                    f"{model.__table__}{DEDUP_SUFFIX}",
                    f"SELECT * FROM {safe_identifier(model.__table__)} WHERE TRUE "
                    f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {model.__latest_first__}) = 1",
                )

    @staticmethod
    def schema(model: type[WarehouseRow]) -> list[Any]:
        """The model's columns as ``SchemaField`` objects (from ``bigquery_schema``)."""
        from google.cloud import bigquery

        return [
            bigquery.SchemaField(f["name"], f["type"], mode=f["mode"], description=f["description"])
            for f in bigquery_schema(model)
        ]

    def create_view(self, name: str, sql: str) -> None:
        """Create or replace a view from GoogleSQL with unqualified table names (qualified here,
        because a BigQuery view cannot rely on a default dataset)."""
        qualified = self.qualify_sql(sql)
        with vendor_errors(f"create view {name}"):
            self._run_query(f"CREATE OR REPLACE VIEW {self._quoted(name)} AS {qualified}")

    def qualify_sql(self, sql: str) -> str:
        """Rewrite unqualified table names as ``project.dataset.table`` (CTE names stay as they are)."""
        import sqlglot
        from sqlglot.optimizer.qualify_tables import qualify_tables

        try:
            tree = sqlglot.parse_one(sql, read="bigquery")
        except sqlglot.errors.ParseError as exc:
            raise PermanentError(f"cannot parse view SQL: {exc}") from exc
        return str(qualify_tables(tree, db=self.dataset, catalog=self.project).sql(dialect="bigquery"))

    # -- writes ----------------------------------------------------------------------------------
    def existing_keys(self, model: type[WarehouseRow], keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` the table already holds (parameterised ``IN UNNEST(@keys)``)."""
        table, key = safe_identifier(model.__table__), safe_identifier(model.__key__)
        found: set[str] = set()
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _KEY_CHUNK):
            rows = self.query(
                f"SELECT DISTINCT {key} AS k FROM {table} WHERE {key} IN UNNEST(@keys)",
                {"keys": unique[i : i + _KEY_CHUNK]},
            )
            found.update(str(r["k"]) for r in rows)
        return found

    def insert_rows(
        self, model: type[WarehouseRow], rows: Sequence[WarehouseRow], *, keys_are_new: bool = False
    ) -> InsertResult:
        """Stream rows whose key is new (``insertId`` = key); report the others as duplicates.

        Which keys exist is one query per call, billed at the 10 MB minimum: with ``keys_are_new`` (the
        caller proved no earlier attempt wrote them) it is skipped and every row is streamed.
        """
        result = InsertResult()
        if not rows:
            return result
        key = safe_identifier(model.__key__)
        seen: set[str] = set()
        unique: list[WarehouseRow] = []
        for row in rows:
            row_key = str(getattr(row, key))
            if row_key in seen:
                result.duplicates.append(row_key)
            else:
                seen.add(row_key)
                unique.append(row)
        existing = set() if keys_are_new else self.existing_keys(model, list(seen))
        fresh = [r for r in unique if str(getattr(r, key)) not in existing]
        for i in range(0, len(fresh), _STREAM_CHUNK):
            self._stream(model, fresh[i : i + _STREAM_CHUNK])
        for row in unique:
            row_key = str(getattr(row, key))
            (result.duplicates if row_key in existing else result.inserted).append(row_key)
        return result

    def _stream(self, model: type[WarehouseRow], rows: Sequence[WarehouseRow]) -> None:
        key = model.__key__
        with vendor_errors(f"insert into {model.__table__}"):
            errors = self._client.insert_rows_json(
                self.table_id(model.__table__),
                [json_row(r) for r in rows],
                row_ids=[str(getattr(r, key)) for r in rows],
                **self._rt,
            )
        if errors:
            reasons = {e.get("reason") for entry in errors for e in entry.get("errors", [])}
            details = [
                {
                    "loc": f"{model.__table__}[{entry.get('index')}]",
                    "msg": e.get("message", ""),
                    "type": e.get("reason"),
                }
                for entry in errors
                for e in entry.get("errors", [])
                if e.get("reason") != "stopped"
            ]
            message = f"bigquery refused rows of {model.__table__}: {details[:5]}"
            if reasons - {"stopped"} <= _TRANSIENT_REASONS:
                raise WarehouseWriteError(message)
            raise PermanentError(message, details or None)

    def upsert_rows(self, model: type[WarehouseRow], rows: Sequence[WarehouseRow], columns: Sequence[str]) -> int:
        """Update ``columns`` of rows by key and insert missing rows: load to staging, ONE ``MERGE``, drop.

        Returns the number of target rows the MERGE changed or inserted.
        """
        if not rows:
            return 0
        from google.cloud import bigquery

        table, key = safe_identifier(model.__table__), safe_identifier(model.__key__)
        names = list(model.model_fields)
        cols = [safe_identifier(c) for c in columns]
        unknown = [c for c in cols if c not in names]
        if unknown or key in cols:
            raise ConfigError(f"cannot upsert columns {unknown or [key]} of {table}")
        by_key = {str(getattr(r, key)): r for r in rows}  # the last row of a key wins
        staging = f"{STAGING_PREFIX}{table}_{uuid.uuid4().hex}"
        staging_table = bigquery.Table(self.table_id(staging), schema=self.schema(model))
        staging_table.expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)  # a crash leaves no litter
        sets = ", ".join(f"{c} = S.{c}" for c in cols) or f"{key} = S.{key}"
        all_cols = ", ".join(safe_identifier(c) for c in names)
        merge = (
            f"MERGE {self._quoted(table)} T USING {self._quoted(staging)} S ON T.{key} = S.{key} "
            f"WHEN MATCHED THEN UPDATE SET {sets} "
            f"WHEN NOT MATCHED THEN INSERT ({all_cols}) VALUES ({', '.join(f'S.{c}' for c in names)})"
        )
        try:
            with vendor_errors(f"upsert into {table}"):
                self._client.create_table(staging_table, **self._rt)
                load = self._client.load_table_from_json(
                    [json_row(r) for r in by_key.values()],
                    self.table_id(staging),
                    job_config=bigquery.LoadJobConfig(
                        schema=self.schema(model),
                        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
                    ),
                    timeout=self.timeout,
                )
                load.result(retry=self._retry, timeout=self.job_timeout)
                return int(self._run_query(merge).num_dml_affected_rows or 0)
        finally:
            try:
                with vendor_errors(f"drop {staging}"):
                    self._client.delete_table(self.table_id(staging), not_found_ok=True, **self._rt)
            except GoldthreadError:
                pass  # the staging table expires by itself

    # -- reads -----------------------------------------------------------------------------------
    def _job_config(self, params: Mapping[str, Any] | None = None) -> Any:
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(
            default_dataset=bigquery.DatasetReference(self.project, self.dataset),
            query_parameters=[query_parameter(k, v) for k, v in (params or {}).items()],
        )

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run GoogleSQL with typed ``@name`` parameters; rows as dicts (exact Decimal, UTC datetime)."""
        with vendor_errors("query", StoreUnavailableError):
            job = self._run_query(sql, params)
            rows = job.result(retry=self._retry, timeout=self.job_timeout)
            return [dict(row.items()) for row in rows]

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Like ``query`` but returns a ``pyarrow.Table`` (read over REST, no Storage API client)."""
        with vendor_errors("query", StoreUnavailableError):
            job = self._run_query(sql, params)
            rows = job.result(retry=self._retry, timeout=self.job_timeout)
            return rows.to_arrow(create_bqstorage_client=False)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one DML/DDL statement (maintenance, scripts); returns the affected row count."""
        with vendor_errors("execute"):
            return int(self._run_query(sql, params).num_dml_affected_rows or 0)

    def close(self) -> None:
        """Close the client's HTTP session."""
        close = getattr(self._client, "close", None)
        if callable(close):
            close()
