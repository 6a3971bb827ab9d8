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
import re
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
from goldthread.ledger import runs
from goldthread.models.hot import JobMetadata, RunStatus
from goldthread.models.warehouse import row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline import dispatcher, local_runtime
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import list_dead_letters
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.writer import POSITIONS
from rich.console import Console

from tests.conftest import DS, NIGHT_AFTER, SESSION, Clock, Factory, PinnedBroker, deliver, ledger_mark, rows

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
    "SqliteHotStore.create_many": (SqliteHotStore, "create_many"),
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
    return {doc_id for doc_id in ids if not ledger_mark(ctx, POSITIONS, doc_id)["archived_run_id"]}


def summary_text(run_list: list[JobMetadata]) -> str:
    console = Console(record=True, width=250, color_system=None)
    report.print_runs(console, run_list)
    report.print_run_summary(console, run_list)
    return console.export_text()


KILLS = [
    "LocalBus.publish_batch:1:after",  # a batch accepted, its count not yet recorded, nothing delivered
    "SqliteHotStore.record_outcomes:1:after",  # right after the first delivery was counted
    "DuckDbWarehouse.insert_rows:4:before",  # in the middle of the second delivery round
    "SqliteHotStore.create_many:3:after",  # a batch's orders claimed, its rows not yet written
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


# -- what `goldthread runs` prints -------------------------------------------------------------------------

EQUATION = re.compile(r"published (\d+) (=|!=) loaded \+ duplicates \+ dead-lettered (\d+)")


def a_run(run_id: str, status: RunStatus, published: int, loaded: int, dead: int = 0, dispatched: bool = True,
          due: int | None = None) -> JobMetadata:
    return JobMetadata(
        run_id=run_id, loop="trades", ds=DS, git_hash="test", status=status, started_at=NIGHT_AFTER,
        heartbeat_at=NIGHT_AFTER, dispatched_at=NIGHT_AFTER if dispatched else None, published=published,
        loaded=loaded, dead_lettered=dead, details={} if due is None else {"due": due},
    )


def test_runs_never_prints_a_false_equation() -> None:
    """The issue's case: a STALLED run with ``published 0`` and thousands loaded was summed with a finished
    one into "published 11480 = ... 19500: all finished runs reconcile". Now only finished runs are summed
    and every equation printed holds; the others are listed apart with their counts."""
    listed = [
        a_run("trades-20240305-done", RunStatus.SUCCEEDED, 11480, 11480),
        a_run("trades-20240305-dead", RunStatus.STALLED, 0, 8020, dispatched=False, due=19500),
        a_run("trades-20240305-live", RunStatus.RUNNING, 500, 250, dispatched=False, due=2000),
        a_run("trades-20240305-fail", RunStatus.FAILED, 3, 2, dead=1, dispatched=False),
    ]
    text = summary_text(listed)
    equations = EQUATION.findall(text)
    assert equations == [("11480", "=", "11480")]
    assert all((a == b) == (sign == "=") for a, sign, b in equations)
    assert "3 unfinished runs (1 FAILED, 1 RUNNING, 1 STALLED), not summed above" in text
    assert ("trades-20240305-dead STALLED: published 0, loaded 8020, duplicates 0, dead-lettered 0, "
            "0 published without an outcome, 19500 found but not published") in text
    assert "trades-20240305-live RUNNING: published 500, loaded 250, duplicates 0, dead-lettered 0, " \
           "250 published without an outcome, 1500 found but not published" in text
    assert "unfinished, 1500 not published" in text  # the table's column for the RUNNING run

    broken = [a_run("trades-20240305-odd", RunStatus.SUCCEEDED, 10, 9), a_run("x-1", RunStatus.PARTIAL, 4, 3, 1)]
    text = summary_text(broken)
    assert EQUATION.findall(text) == [("14", "!=", "13")]
    assert "1 finished runs do not reconcile" in text and "unfinished runs" not in text


# -- leases by heartbeat -----------------------------------------------------------------------------------


def test_a_silent_lease_is_taken_over_after_lease_timeout_and_a_heartbeat_keeps_it(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    old = runs.start_run(ctx, "trades", DS)
    name = runs.lease_name("trades", DS)
    # a dispatcher on another machine (no host recorded): only its heartbeat can tell it is alive
    assert ctx.hot.acquire_lease(name, old.run_id, clock(), ctx.settings.lease_timeout) is None
    clock.advance(dt.timedelta(seconds=240))
    runs.record_published(ctx, old.run_id, 0, due=2)  # its heartbeat after a batch
    clock.advance(dt.timedelta(seconds=299))  # 539 s after its start, 299 s after its heartbeat
    with pytest.raises(ConcurrentRunError, match=f"{old.run_id}.*300 s"):
        dispatch(ctx, "trades", DS)
    assert runs.mark_stalled(ctx) == []  # nor is it stalled meanwhile
    clock.advance(dt.timedelta(seconds=2))
    again = run_loop(ctx, "trades", DS)
    assert (again.status, again.published, again.loaded) == (RunStatus.SUCCEEDED, 2, 2)
    dead = runs.get_run(ctx, old.run_id)
    assert dead is not None and dead.status is RunStatus.STALLED and dead.finished_at == clock()
    assert f"taken over by run {again.run_id}: no heartbeat for 0:05:00" in (dead.error or "")
    with pytest.raises(ConcurrentRunError, match="lost its lease"):  # were it alive after all, it stands down
        runs.record_published(ctx, old.run_id, 1)
    assert len(rows(ctx, "fact_trades")) == 2


def test_deliveries_of_a_dispatch_still_publishing_renew_its_lease(ctx: Context, clock: Clock) -> None:
    run = runs.start_run(ctx, "trades", DS)
    name = runs.lease_name("trades", DS)
    clock.advance(dt.timedelta(seconds=200))
    runs.record_outcomes(ctx, run.run_id, {"trades:pos-1": "loaded"})
    lease = ctx.hot.read_lease(name)
    assert lease is not None and lease.heartbeat_at == clock() and lease.expires_at == clock() + dt.timedelta(minutes=5)
    got = runs.get_run(ctx, run.run_id)
    assert got is not None and got.heartbeat_at == clock()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lease_whose_process_is_gone_is_taken_over_at_once_and_a_live_one_is_not(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    make.closed_trade("pos-1")
    host, _ = runs.this_process()
    name = runs.lease_name("trades", DS)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = runs.start_run(ctx, "trades", DS)
        assert ctx.hot.acquire_lease(name, old.run_id, clock(), ctx.settings.lease_timeout,
                                     host=host, pid=alive.pid) is None  # held by another live process
        with pytest.raises(ConcurrentRunError, match=old.run_id):
            dispatch(ctx, "trades", DS)
        assert runs.mark_stalled(ctx) == []
    finally:
        alive.kill()
        alive.wait()
    again = run_loop(ctx, "trades", DS)  # the same instant: no expiry, the process is gone
    assert (again.status, again.loaded) == (RunStatus.SUCCEEDED, 1)
    dead = runs.get_run(ctx, old.run_id)
    assert dead is not None and dead.status is RunStatus.STALLED
    assert f"process {alive.pid} is gone" in (dead.error or "")


def test_goldthread_runs_marks_a_dispatch_whose_process_is_gone_stalled_at_once(ctx: Context, clock: Clock) -> None:
    host, _ = runs.this_process()
    old = runs.start_run(ctx, "trades", DS)
    runs.record_published(ctx, old.run_id, 0, due=7)
    pid = dead_pid()
    ctx.hot.acquire_lease(runs.lease_name("trades", DS), old.run_id, clock(), ctx.settings.lease_timeout,
                          host=host, pid=pid)
    runs.record_outcomes(ctx, old.run_id, {"trades:a": "loaded", "trades:b": "loaded"})  # delivered, not counted
    assert runs.mark_stalled(ctx) == [old.run_id]
    dead = runs.get_run(ctx, old.run_id)
    assert dead is not None and dead.status is RunStatus.STALLED
    assert (dead.published, dead.loaded) == (2, 2)  # what has an outcome was published
    assert f"process {pid} is gone" in (dead.error or "")


def test_a_host_that_cannot_be_judged_is_never_called_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    from goldthread.ports.hot_store import Lease

    pid = dead_pid()
    host, _ = runs.this_process()
    at = NIGHT_AFTER
    assert runs.process_is_gone(Lease("l", "r", at, at, host, pid))
    assert not runs.process_is_gone(Lease("l", "r", at, at, "another-host#boot", pid))
    assert not runs.process_is_gone(Lease("l", "r", at, at, "", pid))
    assert not runs.process_is_gone(Lease("l", "r", at, at, host, os.getpid()))  # this process: alive
    monkeypatch.setenv("K_SERVICE", "goldthread-dispatch")  # Cloud Run / Functions: by heartbeat only
    assert runs.this_process()[0] == ""


def test_an_old_lease_table_gains_the_heartbeat_and_process_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TEXT NOT NULL)")
    db.execute("INSERT INTO leases VALUES (?, ?, ?)",
               ("dispatch:trades:2024-03-05", "run-old", "2024-03-06T04:00:00.000000+00:00"))
    db.commit()
    db.close()
    store = SqliteHotStore(path)
    try:
        lease = store.read_lease("dispatch:trades:2024-03-05")
        assert lease is not None
        assert (lease.holder, lease.host, lease.pid, lease.heartbeat_at) == ("run-old", "", 0, None)
        assert store.acquire_lease("dispatch:trades:2024-03-05", "run-new", NIGHT_AFTER, dt.timedelta(minutes=5),
                                   take_over="run-old", host="h", pid=7) is None
        assert store.read_lease("dispatch:trades:2024-03-05").pid == 7  # type: ignore[union-attr]
    finally:
        store.close()


def test_the_lease_timeout_setting() -> None:
    assert Settings().lease_timeout == dt.timedelta(seconds=300)
    assert load_settings({"GOLDTHREAD_LEASE_TIMEOUT_SECONDS": "60"}).lease_timeout == dt.timedelta(seconds=60)
    for bad in ("5", "abc", "nan", "100000"):
        with pytest.raises(ConfigError, match="GOLDTHREAD_LEASE_TIMEOUT_SECONDS"):
            load_settings({"GOLDTHREAD_LEASE_TIMEOUT_SECONDS": bad})


# -- no phantom letters ------------------------------------------------------------------------------------


def item_message(run_id: str, doc_id: str, loop: Loop = Loop.TRADES, ds: dt.date = DS) -> tuple[bytes, dict[str, str]]:
    return WorkItem(run_id=run_id, loop=loop, ds=ds, doc_id=doc_id, published_at=NIGHT_AFTER).to_message()


def forward_to_dead_letters(ctx: Context, run_id: str, doc_id: str, loop: Loop = Loop.TRADES,
                            ds: dt.date = DS) -> None:
    """What Pub/Sub does with a message whose acks came too late: forward it to the dead-letter topic."""
    data, attributes = item_message(run_id, doc_id, loop, ds)
    ctx.bus.publish(ctx.settings.dead_letter_topic, data, {
        **attributes, "CloudPubSubDeadLetterSourceDeliveryCount": "5",
        "CloudPubSubDeadLetterSourceSubscription": ctx.settings.subscription(loop),
    })
    deliver(ctx)


def test_a_loaded_item_forwarded_to_the_dead_letter_topic_is_no_open_letter(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 2)
    forward_to_dead_letters(ctx, run.run_id, "pos-1")  # its own run loaded it: counted once already
    # a stalled run's item for a record its successor archived: a duplicate in that run
    stalled = runs.start_run(ctx, "trades", DS)
    runs.finish_dispatch(ctx, stalled.run_id, 1)
    forward_to_dead_letters(ctx, stalled.run_id, "pos-2")
    # Loop D: the snapshot's key is account and day
    accounts = run_loop(ctx, "accounts", DS)
    assert accounts.loaded == 1
    account_id = ctx.broker.get_account().account_id
    forward_to_dead_letters(ctx, accounts.run_id, account_id, Loop.ACCOUNTS)
    assert list_dead_letters(ctx, include_replayed=True) == []
    same = runs.get_run(ctx, run.run_id)
    assert same is not None and (same.status, same.loaded, same.duplicates, same.dead_lettered) == (
        RunStatus.SUCCEEDED, 2, 0, 0)
    other = runs.get_run(ctx, stalled.run_id)
    assert other is not None and (other.status, other.duplicates, other.dead_lettered) == (RunStatus.SUCCEEDED, 1, 0)
    assert make.mark("pos-2").get("dead_lettered_run_id") is None
    # a record never archived is still a letter
    make.closed_trade("pos-3")
    late = runs.start_run(ctx, "trades", DS)
    runs.finish_dispatch(ctx, late.run_id, 1)
    forward_to_dead_letters(ctx, late.run_id, "pos-3")
    (letter,) = list_dead_letters(ctx)
    assert (letter["doc_id"], letter["reason_code"]) == ("pos-3", "MAX_ATTEMPTS")


def test_a_redelivery_after_the_hot_document_of_an_archived_record_was_deleted_is_a_duplicate(
    ctx: Context, make: Factory
) -> None:
    base = make.closed_trade("pos-1")
    make.raw_position("pos-raw", base)  # written straight into the hot store, as a bot would
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 2)
    ctx.hot.delete(POSITIONS, "pos-raw")  # the bot cleans up after the archive
    make.raw_position("pos-new", base)
    later = runs.start_run(ctx, "trades", DS)
    topic = ctx.settings.topic(Loop.TRADES)
    ctx.bus.publish_batch(topic, [item_message(later.run_id, d) for d in ("pos-raw", "pos-new", "pos-never")])
    ctx.bus.publish_batch(topic, [item_message(run.run_id, "pos-raw")])  # its own run's redelivery
    runs.finish_dispatch(ctx, later.run_id, 3)
    deliver(ctx)
    done = runs.get_run(ctx, later.run_id)
    assert done is not None
    assert (done.status, done.loaded, done.duplicates, done.dead_lettered) == (RunStatus.PARTIAL, 1, 1, 1)
    assert done.reconciled
    first = runs.get_run(ctx, run.run_id)
    assert first is not None and (first.loaded, first.duplicates, first.dead_lettered) == (2, 0, 0)
    (letter,) = list_dead_letters(ctx)  # only the record that never existed
    assert (letter["doc_id"], letter["reason_code"]) == ("pos-never", "NOT_FOUND")
    assert json.loads(letter["errors_json"])[0]["loc"] == "doc_id"
    stored = rows(ctx, "fact_trades")
    assert sorted(r["position_id"] for r in stored) == ["pos-1", "pos-new", "pos-raw"]
    assert {r["row_id"] for r in stored} == {row_id_for("fact_trades", d) for d in ("pos-1", "pos-new", "pos-raw")}
