"""The BI marts: views over the warehouse, each defined ONCE in GoogleSQL (``bi/mart_*.sql``).

The same text becomes a DuckDB view (translated by ``sqlglot`` in ``DuckDbWarehouse.create_view``) and a
BigQuery view (table names qualified by ``BigQueryWarehouse.create_view``, or by Terraform from
``bigquery_view_sql``). Nothing here is written twice: ``MARTS`` maps each view name to its SQL, in
creation order, and ``MART_DESCRIPTIONS`` to the first comment line of its file.

Every mart reads fact tables through a ``QUALIFY ROW_NUMBER() OVER (PARTITION BY row_id ...) = 1`` step
(BigQuery streaming may hold a key twice; DuckDB never does, so it costs nothing there) and drops
canary rows (``NOT is_canary``). The one exception is ``mart_golden_thread``, which shows the canary and
nothing else. Metric definitions live in ``goldthread.bi.metrics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from goldthread.errors import ConfigError, GoldthreadError
from goldthread.ports.warehouse import Warehouse, safe_identifier

SQL_DIR = Path(__file__).resolve().parent

MART_NAMES: tuple[str, ...] = (
    "mart_daily_pnl",
    "mart_strategy_performance",
    "mart_rejection_cost",
    "mart_missed_moonshots",
    "mart_equity_curve",
    "mart_fee_drift",
    "mart_pipeline_health",
    "mart_golden_thread",
)
"""Every mart, in creation order (none depends on another; the order is the dashboard's)."""

CANARY_MART = "mart_golden_thread"
"""The only mart that shows canary rows (the canary's own health record)."""

BUSINESS_MARTS: tuple[str, ...] = tuple(m for m in MART_NAMES if m != CANARY_MART)
"""The marts whose figures must never include a canary row."""


def _load(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    return path.read_text()


def _description(sql: str) -> str:
    lines = []
    for line in sql.lstrip().splitlines():
        if not line.startswith("--"):
            break
        lines.append(line.removeprefix("--").strip())
    text = " ".join(lines)
    text = text.split(":", 1)[1].strip() if ":" in text else text
    return text[:1].upper() + text[1:]


MARTS: dict[str, str] = {name: _load(name) for name in MART_NAMES}
"""View name -> GoogleSQL (unqualified table names), the single definition of every mart."""

MART_DESCRIPTIONS: dict[str, str] = {name: _description(sql) for name, sql in MARTS.items()}
"""View name -> description (the leading comment of its SQL file, without the name)."""


class ViewCreator(Protocol):
    """A warehouse that can create views from GoogleSQL (both adapters can)."""

    def create_view(self, name: str, sql: str) -> None:
        """Create or replace the view ``name``."""


def ensure_marts(warehouse: Warehouse | Any, names: tuple[str, ...] = MART_NAMES) -> list[str]:
    """Create or replace every mart view in ``warehouse``; returns the names created.

    Called by ``DuckDbWarehouse.ensure_tables`` (so embedded marts live and die with the tables), by the
    ``dashboard`` command, and by tests on the BigQuery emulator. In production Terraform declares them.
    """
    create = getattr(warehouse, "create_view", None)
    if create is None:
        raise ConfigError(f"warehouse {type(warehouse).__name__} cannot create views")
    for name in names:
        create(safe_identifier(name), MARTS[name])
    return list(names)


def bigquery_view_sql(name: str, project: str, dataset: str) -> str:
    """The mart's SQL with every table named ``project.dataset.table`` (what a BigQuery view needs).

    Terraform (``bi_views``) and ``BigQueryWarehouse.create_view`` use this same qualification.
    """
    import sqlglot
    from sqlglot.optimizer.qualify_tables import qualify_tables

    try:
        tree = sqlglot.parse_one(MARTS[name], read="bigquery")
    except sqlglot.errors.ParseError as exc:  # pragma: no cover - the tests parse every mart
        raise GoldthreadError(f"cannot parse {name}: {exc}") from exc
    return str(qualify_tables(tree, db=safe_identifier(dataset), catalog=project).sql(dialect="bigquery", pretty=True))


def query_mart(warehouse: Warehouse, name: str, order_by: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """All rows of one mart (``order_by`` is a trusted column list chosen by the caller)."""
    if name not in MARTS:
        raise ConfigError(f"unknown mart {name!r}")
    sql = f"SELECT * FROM {safe_identifier(name)}"
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return warehouse.query(sql)
