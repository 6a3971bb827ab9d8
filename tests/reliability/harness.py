"""What the reliability tests share: a month of bot data, embedded contexts over copies of it, the
warehouse "as its readers see it" with one checksum per table, and the figures the tests measure.

* ``build_month`` runs the simulated bot (``goldthread.sim.bot.SimBot``) for a month, breaks a few
  documents the way buggy bots do, and leaves ``hot.sqlite`` and ``broker.sqlite`` in a directory that
  each test copies, so every example starts from the same bytes.
* ``reader_view`` is what the marts, the dashboard and ``goldthread dead-letters list`` can see: every
  fact and dimension table without the columns that say *which run* wrote a row or *when* (``run_id``,
  ``loaded_at``, ``updated_at``), the dead letters still open (not replayed) without their run-derived
  ids, and every business mart except pipeline health (which is about runs). Run bookkeeping
  (``job_runs``, ``patch_audit``, ``dead_letter_replays``) is history, not state, and is checked
  separately. ``reader_checksums`` hashes each table's view; ``view_diff`` says which rows differ.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.ledger import runs
from goldthread.models.hot import TERMINAL_STATUSES, JobMetadata, RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import wire_local_bus
from goldthread.ports.warehouse import Warehouse
from goldthread.sim.bot import SimBot

REPO_ROOT = Path(__file__).resolve().parents[2]
FIGURES: dict[str, dict[str, Any]] = {}
"""Section -> figures; written to ``test-artifacts/reliability-figures.json`` by this package's conftest."""


def record(section: str, **numbers: Any) -> None:
    """Add measured figures to ``section`` (later values of a key replace earlier ones)."""
    FIGURES.setdefault(section, {}).update(numbers)


def bump(section: str, **numbers: int) -> None:
    """Add to counters of ``section``."""
    figures = FIGURES.setdefault(section, {})
    for key, value in numbers.items():
        figures[key] = figures.get(key, 0) + value


# -- the warehouse as its readers see it --------------------------------------------------------------

FACT_TABLES = ("fact_trades", "fact_rejected_signals", "fact_signals_expired", "snapshot_accounts")
RUN_COLUMNS = {"run_id", "loaded_at"}
EXCLUDED: dict[str, set[str]] = {
    **{t: RUN_COLUMNS for t in FACT_TABLES},
    "dim_strategy": {"updated_at"},
}
MARKET_BARS = (  # a hundred thousand bars, compared per symbol, day and timeframe
    "SELECT symbol, timeframe, source, ds, COUNT(*) AS n, MIN(ts) AS first_ts, MAX(ts) AS last_ts, "
    "SUM(open) AS sum_open, SUM(high) AS sum_high, SUM(low) AS sum_low, SUM(close) AS sum_close, "
    "SUM(volume) AS sum_volume, COUNT(DISTINCT row_id) AS keys FROM market_bars GROUP BY symbol, timeframe, source, ds"
)
OPEN_DEAD_LETTERS = (  # which records wait in the dead letters, and why (not which run's item found out)
    "SELECT DISTINCT d.loop, d.doc_id, d.reason_code, d.errors_json FROM dead_letters d "
    "WHERE NOT EXISTS (SELECT 1 FROM dead_letter_replays r WHERE r.dead_letter_id = d.row_id)"
)
RUN_MARTS = {"mart_pipeline_health", "mart_golden_thread", "mart_dead_letters"}
"""Marts about runs, not records: a dead letter is one per run and item, so their counts depend on the runs."""


def canonical(value: Any) -> Any:
    """A value in one comparable form: decimals normalised, timestamps as UTC ISO text."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value else "NaN"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):  # a mart's float aggregate may differ in the last bit with the row order
        return f"{value:.12g}"
    return value


def _rows(warehouse: Warehouse, sql: str, drop: Iterable[str] = ()) -> list[str]:
    skip = set(drop)
    out = [
        json.dumps({k: canonical(v) for k, v in row.items() if k not in skip}, sort_keys=True, default=str)
        for row in warehouse.query(sql)
    ]
    return sorted(out)


def business_marts() -> list[str]:
    """The marts that show business figures (not run bookkeeping), if the BI module is there."""
    try:
        from goldthread.bi.marts import MART_NAMES
    except ImportError:  # pragma: no cover - the BI module is optional for these tests
        return []
    return [m for m in MART_NAMES if m not in RUN_MARTS]


def reader_view(warehouse: Warehouse) -> dict[str, list[str]]:
    """Each table (and business mart) as canonical JSON rows, sorted, without run-specific columns."""
    view = {table: _rows(warehouse, f"SELECT * FROM {table}", drop) for table, drop in EXCLUDED.items()}
    view["market_bars"] = _rows(warehouse, MARKET_BARS)
    view["open_dead_letters"] = _rows(warehouse, OPEN_DEAD_LETTERS)
    for mart in business_marts():
        view[mart] = _rows(warehouse, f"SELECT * FROM {mart}")
    return view


def checksums(view: dict[str, list[str]]) -> dict[str, str]:
    """One sha256 per table of a ``reader_view`` (with its row count, for a readable failure)."""
    return {
        table: f"{len(rows)}:{hashlib.sha256(chr(10).join(rows).encode()).hexdigest()[:16]}"
        for table, rows in view.items()
    }


def reader_checksums(warehouse: Warehouse) -> dict[str, str]:
    """``checksums(reader_view(warehouse))``."""
    return checksums(reader_view(warehouse))


def view_diff(got: dict[str, list[str]], want: dict[str, list[str]], limit: int = 3) -> str:
    """Which tables differ, and a few rows only one side has."""
    lines = []
    for table in sorted(set(got) | set(want)):
        a, b = set(got.get(table, [])), set(want.get(table, []))
        if a == b and len(got.get(table, [])) == len(want.get(table, [])):
            continue
        lines.append(f"{table}: {len(got.get(table, []))} rows, expected {len(want.get(table, []))}")
        lines += [f"  unexpected {row[:400]}" for row in sorted(a - b)[:limit]]
        lines += [f"  missing    {row[:400]}" for row in sorted(b - a)[:limit]]
        if a == b:
            lines.append("  (same rows, different multiplicity: a row is doubled)")
    return "\n".join(lines)


# -- run records --------------------------------------------------------------------------------------


def run_problems(ctx: Context, allow_running: bool = False) -> list[str]:
    """Runs that break the rules: RUNNING (unless allowed), or finished without reconciling."""
    problems = []
    for run in runs.list_runs(ctx):
        if run.status is RunStatus.RUNNING and not allow_running:
            problems.append(f"{run.run_id} still RUNNING ({describe(run)})")
        if run.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL) and not run.reconciled:
            problems.append(f"{run.run_id} {run.status.value} but does not reconcile ({describe(run)})")
        if run.status not in TERMINAL_STATUSES and run.status is not RunStatus.RUNNING:
            problems.append(f"{run.run_id} has unknown status {run.status}")  # pragma: no cover
    return problems


def describe(run: JobMetadata) -> str:
    """``published=.. loaded=.. duplicates=.. dead_lettered=..``."""
    return (f"{run.loop} published={run.published} loaded={run.loaded} duplicates={run.duplicates} "
            f"dead_lettered={run.dead_lettered}")


# -- a month of bot data ------------------------------------------------------------------------------

MONTH_START = dt.date(2024, 4, 1)
MONTH_DAYS = 30
STORE_FILES = ("hot.sqlite", "broker.sqlite")


class FixedClock:
    """A clock that stays where it is put (so account snapshots and ``loaded_at`` are reproducible)."""

    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment

    def __call__(self) -> dt.datetime:
        return self.moment


@dataclass
class Month:
    """A month of simulated trading in ``home`` (``hot.sqlite``, ``broker.sqlite``), and what it holds."""

    home: Path
    start: dt.date
    days: int
    closed_positions: set[str] = field(default_factory=set)
    broken: list[str] = field(default_factory=list)

    @property
    def end(self) -> dt.date:
        """The last simulated day."""
        return self.start + dt.timedelta(days=self.days - 1)

    @property
    def settle_time(self) -> dt.datetime:
        """A moment when every loop may run for every day of the month and every fee is posted."""
        return dt.datetime.combine(self.end + dt.timedelta(days=10), dt.time(6), dt.UTC)

    def copy_to(self, target: Path) -> Path:
        """Copy the month's stores into ``target`` (created); returns it."""
        target.mkdir(parents=True, exist_ok=True)
        for name in STORE_FILES:
            shutil.copyfile(self.home / name, target / name)
        return target


def build_month(
    home: Path, *, start: dt.date = MONTH_START, days: int = MONTH_DAYS, seed: int = 7,
    per_strategy_day: tuple[int, int] = (1, 3),
) -> Month:
    """Simulate ``days`` days of the bot (three strategies, one upgraded mid-month) and break some
    documents half-way (negative quantity, time travel, unknown strategy version, stop on the wrong side,
    naive timestamp). Only the hot store and the broker's ledger are written: no loop has run."""
    home.mkdir(parents=True, exist_ok=True)
    clock = FixedClock(dt.datetime.combine(start, dt.time(), dt.UTC))
    market = SyntheticMarketData()
    broker = SimulatedBroker(home / "broker.sqlite", clock=clock, market=market)
    hot = SqliteHotStore(home / "hot.sqlite")
    bot = SimBot(hot, broker, market, start, seed=seed, signals_per_strategy_day=per_strategy_day)
    bot.register_strategies()
    month = Month(home, start, days)
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        bot.trade_day(day)
        if offset == days // 2:
            month.broken = bot.break_some_documents(day)
    month.closed_positions = {doc_id for doc_id, data in hot.query("live_positions")
                              if data.get("status") == "CLOSED"}
    hot.close()
    broker.close()
    return month


def month_context(
    home: Path, clock: Callable[[], dt.datetime], *, warehouse: str | Path = ":memory:",
    settings: Settings | None = None, batch_size: int = 500,
) -> Context:
    """The embedded stack over the stores in ``home``, wired like the local runner (no backoff sleeps)."""
    market = SyntheticMarketData()
    ctx = Context(
        settings or Settings(home=home), clock=clock, hot=SqliteHotStore(home / "hot.sqlite"),
        bus=LocalBus(project="reliability"), warehouse=DuckDbWarehouse(warehouse),
        broker=SimulatedBroker(home / "broker.sqlite", clock=clock, market=market), market_data=market,
    )
    wire_local_bus(ctx, batch_size=batch_size, min_backoff=0)
    return ctx


def local_bus(ctx: Context) -> LocalBus:
    """The context's bus, which these tests always build as a ``LocalBus``."""
    bus = ctx.bus
    assert isinstance(bus, LocalBus)
    return bus
