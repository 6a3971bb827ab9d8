"""The BI marts: views over the warehouse, each defined ONCE in GoogleSQL (``bi/mart_*.sql``).

The same text becomes a DuckDB view (translated by ``sqlglot`` in ``DuckDbWarehouse.create_view``) and a
BigQuery view (table names qualified by ``BigQueryWarehouse.create_view``, or by Terraform from
``bigquery_view_sql``). Nothing here is written twice: ``MARTS`` maps each view name to its SQL, in
creation order, and ``MART_DESCRIPTIONS`` to the first comment line of its file.

Every mart reads fact tables through a ``QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ...) = 1`` step
(BigQuery streaming may hold a key twice; DuckDB never does, so it costs nothing there) and drops
canary rows (``NOT is_canary``). The window partitions by the partition column ``ds`` as well as the key
(a row's ``ds`` never changes, so the result is the same), which lets BigQuery push a filter on ``ds`` below
the window and prune partitions; ``pruning_problems`` checks every mart's compiled SQL for that shape.
The one exception to the canary rule is ``mart_golden_thread``, which shows the canary and nothing else.
Metric definitions live in ``goldthread.bi.metrics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    "mart_dead_letters",
    "mart_golden_thread",
)
"""Every mart, in creation order (none depends on another; the order is the dashboard's)."""

CANARY_MART = "mart_golden_thread"
"""The only mart that shows canary rows (the canary's own health record)."""

BUSINESS_MARTS: tuple[str, ...] = tuple(m for m in MART_NAMES if m != CANARY_MART)
"""The marts whose figures must never include a canary row."""


PRUNED_BY_DS: dict[str, bool] = {
    "mart_daily_pnl": True,
    "mart_strategy_performance": False,
    "mart_rejection_cost": True,
    "mart_missed_moonshots": True,
    "mart_equity_curve": False,
    "mart_fee_drift": True,
    "mart_pipeline_health": True,
    "mart_dead_letters": True,
    "mart_golden_thread": True,
}
"""Whether ``WHERE ds = ...`` on the mart reaches its fact tables' partitions (BigQuery prunes them).

Two marts are history-wide by definition and read their tables whole: ``mart_strategy_performance``
(all-time figures per version) and ``mart_equity_curve`` (the running peak needs every earlier day).
Their dedup windows still partition by ``ds``, so nothing else stops pruning once a caller filters the
base data itself."""

HISTORY_WIDE: dict[str, str] = {
    "mart_strategy_performance": "all-time figures per strategy version: every day of fact_trades counts",
    "mart_equity_curve": "the running peak and drawdown of a day depend on every earlier snapshot",
}
"""Why a mart cannot prune on ``ds`` (the marts with ``PRUNED_BY_DS`` False)."""


WHOLE_TABLE_READS: dict[str, set[str]] = {"mart_dead_letters": {"dead_letter_replays"}}
"""Small tables a prunable mart still reads whole: a letter's replays carry the replay day, not the letter's,
so the open/replayed split needs every replay (one short row per replayed letter)."""


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


def ensure_marts(warehouse: Warehouse | Any, names: tuple[str, ...] = MART_NAMES) -> list[str]:
    """Create or replace every mart view in ``warehouse``; returns the names created.

    Called by the ``Context`` right after it ensures the tables of a warehouse whose views live beside them
    (``views_follow_tables``: the embedded DuckDB file, so its marts exist wherever its tables do), by the
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


def _scanned_tables(select: Any, ctes: dict[str, Any]) -> set[str]:
    """Base tables a SELECT reads through its FROM and JOINs, following CTEs."""
    import sqlglot

    found: set[str] = set()
    sources = [select.args.get("from_") or select.args.get("from"), *(select.args.get("joins") or [])]
    for source in sources:
        if source is None:
            continue
        for table in source.find_all(sqlglot.exp.Table):
            if table.name in ctes:
                for inner in ctes[table.name].find_all(sqlglot.exp.Select):
                    found |= _scanned_tables(inner, {k: v for k, v in ctes.items() if k != table.name})
            else:
                found.add(table.name)
    return found


def pruning_problems(name: str, project: str = "p", dataset: str = "d") -> list[str]:
    """What in the mart's compiled BigQuery SQL would stop a ``ds`` filter from pruning partitions.

    Checked on ``bigquery_view_sql`` (what BigQuery runs): every window function over a partitioned table
    must partition by ``ds`` (BigQuery pushes a filter below a window only on its PARTITION BY columns).
    For a mart in ``PRUNED_BY_DS`` additionally: it must output ``ds``, every window and every GROUP BY
    over partitioned data must include ``ds``, and every join of two partitioned sources must equate ``ds``.
    History-wide marts only need their dedup windows (the ones over a base table) to partition by ``ds``.
    """
    import sqlglot

    from goldthread.models.warehouse import TABLES_BY_NAME

    tree = sqlglot.parse_one(bigquery_view_sql(name, project, dataset), read="bigquery")
    ctes = {c.alias: c.this for c in tree.find_all(sqlglot.exp.CTE)}
    partitioned = {t for t, m in TABLES_BY_NAME.items() if m.__partition__ == "ds"}
    strict = PRUNED_BY_DS[name]
    problems: list[str] = []

    def names(nodes: Any) -> set[str]:
        return {n.name for node in nodes or [] for n in node.find_all(sqlglot.exp.Column)}

    for window in tree.find_all(sqlglot.exp.Window):
        select = window.find_ancestor(sqlglot.exp.Select)
        scanned = _scanned_tables(select, ctes) if select is not None else set()
        source = (select.args.get("from_") or select.args.get("from")) if select is not None else None
        direct = {t.name for t in source.find_all(sqlglot.exp.Table)} if source is not None else set()
        over_partitioned = scanned & partitioned
        is_dedup = bool(direct & partitioned)
        if over_partitioned and (strict or is_dedup) and "ds" not in names(window.args.get("partition_by")):
            problems.append(f"{name}: window {window.sql('bigquery')[:80]} does not partition by ds")
    if strict:
        outputs = set(getattr(tree, "named_selects", []))
        if "ds" not in outputs:
            problems.append(f"{name}: no ds column to filter on")
        for select in tree.find_all(sqlglot.exp.Select):
            group = select.args.get("group")
            if group and _scanned_tables(select, ctes) & partitioned and "ds" not in names(group.expressions):
                problems.append(f"{name}: GROUP BY {group.sql('bigquery')[:60]} drops ds")
            for join in select.args.get("joins") or []:
                right: set[str] = set()
                for table in join.this.find_all(sqlglot.exp.Table):
                    inner = ctes[table.name].find(sqlglot.exp.Select) if table.name in ctes else None
                    right |= _scanned_tables(inner, ctes) if inner is not None else {table.name}
                read_whole = right & partitioned - WHOLE_TABLE_READS.get(name, set())
                if read_whole and "ds" not in names([join.args.get("on")] if join.args.get("on") else []):
                    problems.append(f"{name}: join {join.sql('bigquery')[:60]} does not equate ds")
    return problems
