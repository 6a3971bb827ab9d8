"""Guarantee 5, concurrency: two dispatches of the same loop and day at the same moment, on the same SQLite
hot store through separate connections, in threads and in separate processes: one wins, the other raises
``ConcurrentRunError`` naming the winner (the command line prints it and exits 2, the HTTP function
answers 409) and leaves no run behind; every record is published once and stored once.

``tests/test_runs.py`` shows the lease refusing a nested dispatch on one connection; these tests race real
connections released by a barrier, round after round, with the winner held inside its dispatch (between
taking the lease and publishing) so that the loser always arrives while the lease is held, and once with
nobody held, so that the lease itself is raced.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from goldthread import entrypoints
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.errors import ConcurrentRunError
from goldthread.ledger import runs
from goldthread.loops import get_loop
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus

from tests.conftest import DS, Factory
from tests.reliability.harness import bump

pytestmark = pytest.mark.slow
ROUNDS = 8
HOLD = 0.3  # seconds the winner spends inside its dispatch, lease held


def stack(home: Path, warehouse: DuckDbWarehouse, clock: Callable[[], dt.datetime]) -> Context:
    """A context with its own connection to the shared hot store and its own bus."""
    market = SyntheticMarketData()
    ctx = Context(Settings(home=home), clock=clock, hot=SqliteHotStore(home / "hot.sqlite"),
                  bus=LocalBus(project="race"), warehouse=warehouse,
                  broker=SimulatedBroker(home / "broker.sqlite", clock=clock, market=market), market_data=market)
    wire_local_bus(ctx, min_backoff=0)
    return ctx


def held_find(ctx: Context, hold: float) -> None:
    """Make this context's dispatch pause after taking the lease (it finds its records slowly)."""
    spec = get_loop("trades")
    real = type(spec).find

    def slow(self: Any, c: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        if c is ctx:
            time.sleep(hold)
        return real(self, c, ds, sweep)

    type(spec).find = slow  # type: ignore[method-assign]


def race(contexts: list[Context], delays: list[float]) -> list[Any]:
    """Start a Loop A dispatch for DS in each context at the same instant (plus its delay); returns each
    run or error."""
    barrier = threading.Barrier(len(contexts))
    results: list[Any] = [None] * len(contexts)

    def go(i: int) -> None:
        barrier.wait()
        time.sleep(delays[i])
        try:
            results[i] = run_loop(contexts[i], "trades", DS)
        except ConcurrentRunError as exc:
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(contexts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_threads_race_for_the_same_loop_and_day(
    tmp_path: Path, make: Factory, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``ctx`` fixture's stores are raced by two more contexts with their own connections and buses."""
    warehouse = ctx.warehouse
    assert isinstance(warehouse, DuckDbWarehouse)
    clock = ctx.now
    home = tmp_path
    contexts = [stack(home, warehouse, clock), stack(home, warehouse, clock)]
    monkeypatch.setattr(type(get_loop("trades")), "find", type(get_loop("trades")).find)
    published = 0
    for round_ in range(ROUNDS):
        for i in range(3):
            make.closed_trade(f"pos-{round_}-{i}")
        held = contexts[round_ % 2] if round_ < ROUNDS - 1 else None  # the last round: nobody is held
        delays = [0.0, 0.0]
        if held is not None:
            held_find(held, HOLD)
            delays[1 - round_ % 2] = HOLD / 3  # the other arrives while the held one has the lease
        outcome = race(contexts, delays)
        monkeypatch.setattr(type(get_loop("trades")), "find", type(get_loop("trades")).find)
        winners = [r for r in outcome if not isinstance(r, ConcurrentRunError)]
        losers = [r for r in outcome if isinstance(r, ConcurrentRunError)]
        if held is not None:
            assert len(winners) == len(losers) == 1, outcome
            assert winners[0].run_id in str(losers[0]) and "stands down" in str(losers[0])
        assert all(w.status is RunStatus.SUCCEEDED for w in winners)
        published += sum(w.published for w in winners)
        bump("concurrency", races=1, refused=len(losers))
    trades = warehouse.query("SELECT position_id, COUNT(*) AS n FROM fact_trades GROUP BY position_id")
    assert len(trades) == 3 * ROUNDS and {t["n"] for t in trades} == {1}
    assert published == 3 * ROUNDS  # no record was published twice
    loop_runs = runs.list_runs(ctx, "trades")
    assert all(r.reconciled and r.duplicates == 0 for r in loop_runs)
    for c in contexts:
        c.hot.close()


# -- separate processes ---------------------------------------------------------------------------------

_MP = multiprocessing.get_context("forkserver")


def real_time() -> dt.datetime:
    """The wall clock (what the command line and a deployed function use)."""
    return dt.datetime.now(dt.UTC)


def dispatch_in_process(home: str, warehouse: str, hold: float, delay: float, barrier: Any, out: Any) -> None:
    """One process: its own hot-store connection and warehouse file, a Loop A dispatch after the barrier
    (and ``delay``), held ``hold`` seconds inside it, on the wall clock."""
    path = Path(home)
    ctx = stack(path, DuckDbWarehouse(path / warehouse), real_time)
    if hold:
        held_find(ctx, hold)
    barrier.wait()
    time.sleep(delay)
    try:
        run = run_loop(ctx, "trades", DS)
        out.put((warehouse, "won", run.run_id, run.published, run.status.value))
    except ConcurrentRunError as exc:
        out.put((warehouse, "refused", str(exc), 0, ""))
    ctx.close()


def test_two_processes_race_and_one_stands_down(tmp_path: Path, make: Factory, ctx: Context) -> None:
    for i in range(5):
        make.closed_trade(f"pos-{i}")
    ctx.hot.close()  # the processes open their own connections
    ctx.broker.close()
    barrier, out = _MP.Barrier(2), _MP.Queue()
    home = str(tmp_path)
    procs = [_MP.Process(target=dispatch_in_process, args=(home, name, hold, delay, barrier, out))
             for name, hold, delay in (("a.duckdb", HOLD * 4, 0.0), ("b.duckdb", 0.0, HOLD))]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert [r[1] for r in results] == ["won", "refused"], results
    winner, loser = results
    assert winner[3] == 5 and winner[4] == "SUCCEEDED" and winner[2] in loser[2]
    counts = {}
    for name in ("a.duckdb", "b.duckdb"):
        warehouse = DuckDbWarehouse(tmp_path / name)
        warehouse.ensure_tables()  # the loser never even created its tables
        counts[name] = warehouse.query("SELECT COUNT(*) AS n FROM fact_trades")[0]["n"]
        warehouse.close()
    assert counts == {"a.duckdb": 5, "b.duckdb": 0}  # the loser never reached its warehouse
    bump("concurrency", races=1, refused=1, processes=2)


def test_the_command_line_and_the_http_function_refuse_a_dispatch_in_progress(
    tmp_path: Path, make: Factory, ctx: Context
) -> None:
    """While a dispatch holds the lease (in another process), ``goldthread run`` prints who holds it and
    exits 2, and the HTTP dispatch function answers 409."""
    make.closed_trade("pos-1")
    ctx.hot.close()
    ctx.broker.close()
    home = tmp_path
    barrier, out = _MP.Barrier(2), _MP.Queue()
    holder = _MP.Process(target=dispatch_in_process, args=(str(home), "holder.duckdb", 5.0, 0.0, barrier, out))
    holder.start()
    barrier.wait()
    time.sleep(1.0)  # the holder has the lease and sits in its dispatch
    env = {**os.environ, "GOLDTHREAD_HOME": str(home), "GOLDTHREAD_LOG_LEVEL": "ERROR"}
    cli = subprocess.run([sys.executable, "-m", "goldthread.cli", "run", "trades", "--ds", DS.isoformat()],
                         capture_output=True, text=True, env=env, timeout=60)
    http_ctx = stack(home, DuckDbWarehouse(home / "http.duckdb"), real_time)
    entrypoints.reset_context(http_ctx)
    try:
        body, status, _ = entrypoints.dispatch_http(_Request({"loop": "trades", "ds": DS.isoformat()}))
    finally:
        entrypoints.reset_context(None)
        http_ctx.close()
    result = out.get(timeout=60)
    holder.join(30)
    assert result[1] == "won"
    printed = " ".join(cli.stdout.split())
    assert cli.returncode == 2, (cli.stdout, cli.stderr)
    assert "already being dispatched" in printed and result[2] in printed
    assert status == 409 and result[2] in body
    bump("concurrency", refused=2)


class _Request:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def get_json(self, silent: bool = False) -> dict[str, Any]:
        return self.body
