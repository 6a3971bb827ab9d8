"""Guarantee 2, crash safety: SIGKILL the worker at many points of a night's work; after each kill, a new
process that redelivers what was never acknowledged and runs the night again ends with every record
archived exactly once or dead-lettered, every run finished and reconciled (the killed ones STALLED or
finished, none RUNNING), and the same warehouse as a night that was never killed.

The worker (``crash_worker.py``) runs in a forked process (``multiprocessing`` forkserver, so each kill
costs milliseconds, not an interpreter start) and kills itself with SIGKILL at the Nth call of a hooked
function, before or after it: the order claims (``create_many``), the warehouse write, the marks
(``claim``), the outcome count (with a loaded record's archive mark, ``record_outcomes``), run-record
updates, and publishing. A first, unkilled ``count`` run records which step makes each call. The kill
points are the ones the issue names (between the order claims and the row, between the warehouse write and
the archive mark with its count, between a dead letter's mark and its count, a dispatch half-published, the
middle of the price and fee patches, a replay half-done), then (step, function) pairs taken round-robin
over the night's steps, 28 in all.
``GOLDTHREAD_CRASH_KILLS=N`` changes the number; ``=all`` kills at every call of every hooked function,
before and after (about 200 kills, several minutes).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.config import Settings
from goldthread.ledger import runs
from goldthread.models.hot import RunStatus
from goldthread.models.warehouse import row_id_for
from goldthread.pipeline.context import Context

from tests.conftest import ledger_mark
from tests.reliability import crash_worker
from tests.reliability.harness import FACT_TABLES, Month, build_month, reader_view, record, run_problems, view_diff

pytestmark = pytest.mark.slow

WAREHOUSE = "warehouse.duckdb"
BOOKKEEPING = ("fact_trades", "fact_rejected_signals", "fact_signals_expired", "snapshot_accounts", "dim_strategy",
               "dead_letters", "dead_letter_replays", "patch_audit", "job_runs")
PARALLEL = 2
_KILLS = os.environ.get("GOLDTHREAD_CRASH_KILLS", "")
KILLS = int(_KILLS) if _KILLS.isdigit() else 28  # "all": every call of every hook, before and after

_MP = multiprocessing.get_context("forkserver")
_MP.set_forkserver_preload(["tests.reliability.crash_worker"])


def run_worker(home: Path, phase: str, kill_at: str | None = None, timeout: float = 120) -> int:
    """Run one worker phase in a forked process; returns its exit code (-9 when it killed itself)."""
    process = _MP.Process(target=crash_worker.work, args=(str(home), phase, kill_at), daemon=True)
    process.start()
    process.join(timeout)
    if process.is_alive():  # pragma: no cover - a hung worker is a failure, not a wait
        process.kill()
        process.join()
        raise AssertionError(f"worker {phase} {kill_at} hung for {timeout} s")
    assert process.exitcode is not None
    return process.exitcode


def without_snapshot_time(view: dict[str, list[str]]) -> dict[str, list[str]]:
    """``snapshot_at`` is when Loop D looked at the account, which a re-run after a crash does later."""
    return {
        table: sorted(json.dumps({k: v for k, v in json.loads(row).items() if k != "snapshot_at"}, sort_keys=True)
                      for row in rows)
        for table, rows in view.items()
    }


@dataclass
class Night:
    """The month's stores, the bars-only warehouse, the unkilled night's view and its calls."""

    month: Month
    template: Path
    reference: dict[str, list[str]]
    calls: list[tuple[str, int, str]]

    def fresh(self, home: Path) -> Path:
        self.month.copy_to(home)
        shutil.copyfile(self.template, home / WAREHOUSE)
        return home


def open_view(home: Path) -> dict[str, list[str]]:
    warehouse = DuckDbWarehouse(home / WAREHOUSE, read_only=True)
    try:
        return without_snapshot_time(reader_view(warehouse))
    finally:
        warehouse.close()


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Night:
    """Build the data, run the night once unkilled (the reference), keep its bars, and count the calls."""
    root = tmp_path_factory.mktemp("crash")
    month = build_month(root / "month", days=6, seed=11, per_strategy_day=(2, 3))
    clean = root / "clean"
    month.copy_to(clean)
    assert run_worker(clean, "run") == 0
    reference = open_view(clean)
    template = root / "bars.duckdb"
    shutil.copyfile(clean / WAREHOUSE, template)
    warehouse = DuckDbWarehouse(template)
    for table in BOOKKEEPING:
        warehouse.execute_script(f"DELETE FROM {table}")
    warehouse.execute_script("CHECKPOINT")
    warehouse.close()
    counted = Night(month, template, reference, []).fresh(root / "count")
    assert run_worker(counted, "count") == 0
    report = json.loads((counted / "count.json").read_text())
    assert report["unacked"] == 0
    assert open_view(counted) == reference, "a night on the bars-only warehouse differs from the first night"
    return Night(month, template, reference, [tuple(c) for c in report["calls"]])  # type: ignore[misc]


def kill_points(calls: list[tuple[str, int, str]], budget: int = KILLS) -> list[tuple[str, str]]:
    """The points the issue names, then (step, function) pairs round-robin over the steps (each at its
    middle call, alternately before and after) up to ``budget`` kills; or, with
    ``GOLDTHREAD_CRASH_KILLS=all``, every call before and after. Returns (step, kill_at) pairs."""
    if os.environ.get("GOLDTHREAD_CRASH_KILLS") == "all":
        return [(step, f"{hook}:{n}:{when}") for hook, n, step in calls for when in ("before", "after")]
    by_pair: dict[tuple[str, str], list[int]] = {}
    for hook, n, step in calls:
        by_pair.setdefault((step, hook), []).append(n)
    points: list[tuple[str, str]] = []
    named = [  # the points the issue names, whatever the alternation picked
        ("loop_trades", "SqliteHotStore.create_many", "after"),  # orders claimed, the row not yet written
        ("loop_trades", "DuckDbWarehouse.insert_rows", "after"),  # written, not yet marked archived and counted
        ("loop_trades", "SqliteHotStore.claim", "after"),  # a dead letter's mark made, not yet counted
        ("loop_trades", "JournalBus.publish_batch", "after"),  # a dispatch half-published
        ("patch_prices", "SqliteHotStore.update", "after"),  # a patch half-applied
        ("patch_fees", "DuckDbWarehouse.insert_rows", "after"),  # audit written, fees not yet
        ("replay", "JournalBus.publish_batch", "after"),  # replay published, not yet recorded
    ]
    for step, hook, when in named:
        ns = by_pair.get((step, hook), [])
        if ns:
            points.append((step, f"{hook}:{ns[0]}:{when}"))
    per_step: dict[str, list[str]] = {}
    for i, ((step, hook), ns) in enumerate(sorted(by_pair.items())):
        per_step.setdefault(step, []).append(f"{hook}:{ns[len(ns) // 2]}:{'after' if i % 2 else 'before'}")
    while len(points) < budget and any(per_step.values()):
        for step, queue in per_step.items():
            if queue and len(points) < budget and (step, queue[0]) not in points:
                points.append((step, queue.pop(0)))
            elif queue and (step, queue[0]) in points:
                queue.pop(0)
    return points


@dataclass
class Outcome:
    """What one kill and recovery produced."""

    step: str
    kill_at: str
    killed: bool
    problems: list[str]
    redelivered: int
    stalled: int
    lost: int
    doubled: int


def crash_and_recover(night: Night, home: Path, step: str, kill_at: str) -> Outcome:
    night.fresh(home)
    code = run_worker(home, "run", kill_at)
    killed = code == -9 or (code == 255 and (home / "killed").exists())  # 255: the forkserver lost the status
    if not killed:  # the kill point was never reached: say why, from the worker's own log
        tail = (home / "run.log").read_text(errors="replace")[-2000:]
        return Outcome(step, kill_at, killed, [f"not killed (exit {code}); run.log ends:\n{tail}"], 0, 0, 0, 0)
    if run_worker(home, "rerun") != 0:
        tail = (home / "rerun.log").read_text(errors="replace")[-3000:]
        return Outcome(step, kill_at, killed, [f"the re-run failed:\n{tail}"], 0, 0, 0, 0)
    report = json.loads((home / "rerun.json").read_text())
    problems: list[str] = []
    view = open_view(home)
    if view != night.reference:
        problems.append("warehouse differs from the unkilled night:\n" + view_diff(view, night.reference))
    lost = sum(len(set(night.reference[t]) - set(view[t])) for t in FACT_TABLES)
    doubled = sum(len(view[t]) - len(set(view[t])) for t in FACT_TABLES)
    hot = SqliteHotStore(home / "hot.sqlite")
    ctx = Context(Settings(home=home), hot=hot)
    try:
        problems += run_problems(ctx)
        problems += [f"{r.run_id} is {r.status.value}" for r in runs.list_runs(ctx) if r.status is RunStatus.RUNNING]
        problems += records_problems(ctx, home, night.month)
    finally:
        hot.close()
    if report["unacked"]:
        problems.append(f"{report['unacked']} messages never acknowledged")
    return Outcome(step, kill_at, killed, problems, report["redelivered"], len(report["stalled"]), lost, doubled)


def records_problems(ctx: Context, home: Path, month: Month) -> list[str]:
    """Each valid closed position archived once with its row; each broken record dead-lettered or fixed."""
    problems = []
    warehouse = DuckDbWarehouse(home / WAREHOUSE, read_only=True)
    try:
        trades = {r["row_id"]: r["n"] for r in warehouse.query(
            "SELECT row_id, COUNT(*) AS n FROM fact_trades GROUP BY row_id")}
    finally:
        warehouse.close()
    for doc_id in sorted(month.closed_positions):
        doc = ledger_mark(ctx, "live_positions", doc_id)  # goldthread's marks, in its ledger
        rows = trades.get(row_id_for("fact_trades", doc_id), 0)
        if doc_id in month.broken and doc_id != crash_worker.FIXABLE:
            if not doc.get("dead_lettered_run_id") or rows:
                problems.append(f"broken {doc_id}: dead-lettered={doc.get('dead_lettered_run_id')} rows={rows}")
        elif rows != 1 or not doc.get("archived_run_id"):
            problems.append(f"{doc_id}: {rows} fact_trades rows, archived_run_id={doc.get('archived_run_id')}")
    return problems


def test_every_kill_recovers_with_nothing_lost_or_doubled(night: Night, tmp_path: Path) -> None:
    points = kill_points(night.calls)
    steps = {step for step, _ in points}
    assert {name for name, _ in crash_worker.STEPS} <= steps  # a kill in every step of the night
    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(
            lambda job: crash_and_recover(night, tmp_path / f"kill{job[0]}", *job[1]), enumerate(points)
        ))
    failures = [f"{o.step} {o.kill_at}:\n  " + "\n  ".join(o.problems) for o in outcomes if o.problems]
    killed = [o for o in outcomes if o.killed]
    record("crash_safety", kill_points=len(points), kills=len(killed), steps_killed_in=len({o.step for o in killed}),
           functions_killed_in=len({o.kill_at.split(":")[0] for o in killed}),
           messages_redelivered=sum(o.redelivered for o in outcomes),
           runs_marked_stalled=sum(o.stalled for o in outcomes),
           rows_lost=sum(o.lost for o in outcomes), rows_doubled=sum(o.doubled for o in outcomes),
           records_per_night=sum(len(night.reference[t]) for t in FACT_TABLES))
    assert not failures, f"{len(failures)} of {len(outcomes)} kills did not recover:\n" + "\n".join(failures)
    assert len(killed) == len(points), [o.kill_at for o in outcomes if not o.killed]

