"""The run ledger (issue 16, items 3, 4 and 7): every run accounted, no work refused or lost.

* Counts after a crash: a dispatch of a few thousand items is SIGKILLed at several points (a batch accepted
  but not yet counted, right after its first delivery, mid-delivery, a record archived but not counted);
  a plain re-run started AT ONCE (same clock: no lease expiry helps) is not refused, finishes and
  reconciles; the dead run is STALLED with the number of items it really published; every record is stored
  once. A backfill re-run right after a kill does not abort at its first day.
* ``goldthread runs`` never prints a false equation: only finished runs are summed, unfinished ones are
  listed apart with their counts.
* Leases by heartbeat: a silent holder is taken over after ``lease_timeout`` (settable clock), a heartbeat
  keeps it, a holder whose process is gone (same host) is taken over at once, a live one is not.
* No phantom letters: a loaded item forwarded to the dead-letter topic is no open letter, and a
  redelivery after the hot document of an archived record was deleted is a duplicate, not NOT_FOUND.

The expected figures come from what the test itself observed (messages the bus accepted, logged by the
kill hook; hot records still unarchived before the re-run; rows in the warehouse), not from the run records.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from goldthread import report
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings, load_settings
from goldthread.errors import ConcurrentRunError, ConfigError
from goldthread.models.hot import JobMetadata, RunStatus
from goldthread.models.warehouse import row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline import dispatcher, local_runtime, runs
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import handle_dead_letter, list_dead_letters
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.ports.bus import BusMessage
from goldthread.ports.hot_store import Where
from goldthread.writer import POSITIONS
from rich.console import Console

from tests.conftest import DS, NIGHT_AFTER, SESSION, Clock, Factory, PinnedBroker, deliver, rows

REPO = Path(__file__).resolve().parents[1]
PER_DAY = {DS: 2000, DS + dt.timedelta(days=1): 150, DS + dt.timedelta(days=2): 150}
N = PER_DAY[DS]
_MP = multiprocessing.get_context("forkserver")


# -- the stack the worker and the re-run share ----------------------------------------------------------


def open_stack(home: Path, clock: Callable[[], dt.datetime] | None = None) -> Context:
    """The embedded stack over files in ``home`` (the warehouse a DuckDB file, so it survives a kill)."""
    clock = clock or Clock(NIGHT_AFTER)
    market = SyntheticMarketData()
    ctx = Context(
        Settings(home=home / "home"), clock=clock, hot=SqliteHotStore(home / "hot.sqlite"),
        bus=LocalBus(project="ledger"), warehouse=DuckDbWarehouse(home / "warehouse.duckdb"),
        broker=PinnedBroker(home / "broker.sqlite", clock=clock, market=market), market_data=market,
    )
    wire_local_bus(ctx, batch_size=250, min_backoff=0)
    return ctx


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Closed trades written by the bot: 2000 on DS, 150 on each of the two days after."""
    home = tmp_path_factory.mktemp("ledger-template")
    ctx = open_stack(home)
    make = Factory(ctx)
    make.strategy()
    for day, n in PER_DAY.items():
        opened = SESSION + (day - DS)
        for i in range(n):
            make.closed_trade(f"pos-{day:%d}-{i:05d}", opened_at=opened)
    ctx.close()
    (home / "warehouse.duckdb").unlink()  # each copy starts with an empty warehouse
    return home


def copy_of(template: Path, home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    for name in ("hot.sqlite", "broker.sqlite"):
        shutil.copyfile(template / name, home / name)
    return home


# -- the worker that kills itself ----------------------------------------------------------------------

HOOKS: dict[str, tuple[type, str]] = {
    "LocalBus.publish_batch": (LocalBus, "publish_batch"),
    "SqliteHotStore.record_outcomes": (SqliteHotStore, "record_outcomes"),
    "SqliteHotStore.claim": (SqliteHotStore, "claim"),
    "DuckDbWarehouse.insert_rows": (DuckDbWarehouse, "insert_rows"),
}


def install_kill(kill_at: str | None, accepted_log: Path) -> None:
    """SIGKILL this process at the Nth call of a hooked function (``Class.method:N:before|after``), and log
    the size of every batch of work items the bus accepted (written before any kill that follows it)."""
    target, nth, when = (kill_at.split(":") if kill_at else ("", "0", ""))
    seen: dict[str, int] = {}
    log = os.open(accepted_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for name, (owner, attr) in HOOKS.items():
        real = getattr(owner, attr)

        def hooked(*args: Any, __name: str = name, __real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            seen[__name] = seen.get(__name, 0) + 1
            fatal = __name == target and seen[__name] == int(nth)
            if fatal and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = __real(*args, **kwargs)
            if __name == "LocalBus.publish_batch" and "dead-letters" not in args[1]:
                os.write(log, f"{len(args[2])}\n".encode())
            if fatal and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        setattr(owner, attr, functools.wraps(real)(hooked))


def dispatch_and_die(home: str, kill_at: str) -> None:
    """Worker: Loop A for DS in batches of 250 (delivered every 500 waiting), killed at ``kill_at``."""
    path = Path(home)
    out = os.open(path / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    dispatcher.PUBLISH_BATCH = 250
    local_runtime.DRAIN_BACKLOG = 500
    install_kill(kill_at, path / "accepted.log")
    ctx = open_stack(path)
    run_loop(ctx, "trades", DS)
    ctx.close()


def backfill_and_die(home: str, kill_at: str) -> None:
    """Worker: ``goldthread backfill trades`` over the three days, killed at ``kill_at`` (in the first day)."""
    path = Path(home)
    out = os.open(path / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.environ["GOLDTHREAD_HOME"] = home
    dispatcher.PUBLISH_BATCH = 100
    install_kill(kill_at, path / "accepted.log")
    from goldthread.cli import main

    main(["backfill", "trades", "--start", DS.isoformat(), "--end", (DS + dt.timedelta(days=2)).isoformat()])


def run_killed(target: Callable[[str, str], None], home: Path, kill_at: str) -> None:
    process = _MP.Process(target=target, args=(str(home), kill_at), daemon=True)
    process.start()
    process.join(120)
    assert process.exitcode == -signal.SIGKILL, (process.exitcode, (home / "worker.log").read_text()[-3000:])


def accepted(home: Path) -> list[int]:
    text = (home / "accepted.log").read_text() if (home / "accepted.log").exists() else ""
    return [int(line) for line in text.split()]


def unarchived(ctx: Context, ids: set[str]) -> set[str]:
    return {doc_id for doc_id, _ in ctx.hot.query(POSITIONS, [Where("archived_run_id", "==", None)]) if doc_id in ids}


def summary_text(run_list: list[JobMetadata]) -> str:
    console = Console(record=True, width=250, color_system=None)
    report.print_runs(console, run_list)
    report.print_run_summary(console, run_list)
    return console.export_text()


KILLS = [
    "LocalBus.publish_batch:1:after",  # a batch accepted, its count not yet recorded, nothing delivered
    "SqliteHotStore.record_outcomes:1:after",  # right after the first delivery was counted
    "DuckDbWarehouse.insert_rows:4:before",  # in the middle of the second delivery round
    "SqliteHotStore.claim:3:after",  # a batch archived, its outcomes not yet counted
    "LocalBus.publish_batch:6:before",  # late in the dispatch, several rounds delivered
]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", KILLS)
def test_a_rerun_right_after_a_sigkill_takes_over_finishes_and_reconciles(
    template: Path, tmp_path: Path, kill_at: str
) -> None:
    home = copy_of(template, tmp_path / "home")
    run_killed(dispatch_and_die, home, kill_at)
    batches = accepted(home)
    ctx = open_stack(home)  # the same clock: the dead run's lease has not expired
    try:
        day_ids = {f"pos-{DS:%d}-{i:05d}" for i in range(N)}
        left = unarchived(ctx, day_ids)
        (dead,) = runs.list_runs(ctx, "trades")
        again = run_loop(ctx, "trades", DS)  # not refused: the dead dispatcher's process is gone
        assert again.status is RunStatus.SUCCEEDED and again.reconciled, again
        assert again.published == len(left) == again.loaded  # exactly what the dead run left, each once
        dead = runs.get_run(ctx, dead.run_id) or dead
        assert dead.status is RunStatus.STALLED, dead
        assert "gone" in (dead.error or "") or "taken over" in (dead.error or "")
        # its published count is what the bus accepted, give or take the one batch a kill can land between
        # the accept and the record; never below what has an outcome (never "published 0, 1000 loaded")
        assert sum(batches[:-1]) <= dead.published <= sum(batches), (batches, dead)
        assert dead.published >= dead.processed
        assert dead.details.get("due") == N
        stored = ctx.warehouse.query("SELECT position_id, COUNT(*) AS n FROM fact_trades GROUP BY position_id")
        assert {r["position_id"] for r in stored} == day_ids and {r["n"] for r in stored} == {1}
        assert unarchived(ctx, day_ids) == set()
        text = summary_text(runs.list_runs(ctx, "trades"))
        assert f"1 finished runs: published {again.published} = loaded + duplicates + dead-lettered " \
               f"{again.published}: all finished runs reconcile" in text
        assert "1 unfinished runs (1 STALLED), not summed above" in text
        assert f"{dead.run_id} STALLED: published {dead.published}, loaded {dead.loaded}" in text
    finally:
        ctx.close()


@pytest.mark.slow
def test_a_backfill_rerun_right_after_a_kill_does_not_abort_at_its_first_day(template: Path, tmp_path: Path) -> None:
    home = copy_of(template, tmp_path / "home")
    run_killed(backfill_and_die, home, "LocalBus.publish_batch:3:after")
    env = {**os.environ, "GOLDTHREAD_HOME": str(home), "GOLDTHREAD_LOG_LEVEL": "ERROR",
           "PYTHONPATH": os.pathsep.join([str(REPO / "shared"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "goldthread.cli", "backfill", "trades", "--start", DS.isoformat(),
         "--end", (DS + dt.timedelta(days=2)).isoformat()],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "refused" not in done.stdout and "SUCCEEDED: 3" in done.stdout
    warehouse = DuckDbWarehouse(home / "warehouse.duckdb", read_only=True)
    try:
        stored = warehouse.query("SELECT COUNT(*) AS n, COUNT(DISTINCT row_id) AS k FROM fact_trades")[0]
    finally:
        warehouse.close()
    assert stored == {"n": sum(PER_DAY.values()), "k": sum(PER_DAY.values())}
    hot = SqliteHotStore(home / "hot.sqlite")
    try:
        statuses = sorted(JobMetadata.model_validate(d).status.value for _, d in hot.query("job_metadata"))
    finally:
        hot.close()
    assert statuses == ["STALLED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
