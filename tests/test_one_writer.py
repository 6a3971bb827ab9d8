"""One writer, waited for: two commands on one home both succeed; a local lock never fails a run.

DuckDB lets one process hold its file. A second command on the same home waits (bounded by
``GOLDTHREAD_WAREHOUSE_WAIT_SECONDS``), says on stderr what it waits for, then goes on; past the bound it
stops before any run starts, so no run is FAILED and no item is dead-lettered. The local bus retries with
the Pub/Sub retry policy the settings (and Terraform) declare.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from goldthread.adapters.local_bus import LocalBus
from goldthread.config import Settings, load_settings
from goldthread.errors import ConfigError
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import wire_local_bus

HOLD = """
import sys, time
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
wh = DuckDbWarehouse(sys.argv[1])
wh.ensure_tables()
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
wh.close()
"""


def goldthread(home: Path, *args: str, wait: float | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "GOLDTHREAD_HOME": str(home), "GOLDTHREAD_RETRY_MIN_BACKOFF_SECONDS": "0",
           "GOLDTHREAD_RETRY_MAX_BACKOFF_SECONDS": "0"}
    if wait is not None:
        env["GOLDTHREAD_WAREHOUSE_WAIT_SECONDS"] = str(wait)
    return subprocess.Popen([sys.executable, "-m", "goldthread.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def hold_warehouse(home: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(home / "warehouse.duckdb"), str(seconds)],
                              text=True, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


@pytest.mark.slow
def test_a_command_waits_for_the_warehouse_another_holds_then_succeeds(tmp_path: Path) -> None:
    home = tmp_path / "home"
    holder = hold_warehouse(home, 3.0)
    started = time.monotonic()
    cmd = goldthread(home, "run", "accounts", "--ds", today(), "--json", wait=60)
    out, err = cmd.communicate(timeout=120)
    holder.wait(timeout=30)
    assert cmd.returncode == 0, (out, err)
    assert "waiting up to 60 s for the warehouse" in err and "warehouse.duckdb" in err
    assert time.monotonic() - started >= 2.5  # it waited for the holder rather than failing
    assert '"status": "SUCCEEDED"' in out


@pytest.mark.slow
def test_past_the_bound_it_stops_before_any_run_starts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    holder = hold_warehouse(home, 8.0)
    try:
        cmd = goldthread(home, "run", "accounts", "--ds", today(), wait=1)
        out, err = cmd.communicate(timeout=60)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert cmd.returncode == 1, (out, err)
    assert "held by another process for more than 1 s" in " ".join(out.split())
    ctx = Context(load_settings({"GOLDTHREAD_HOME": str(home)}))
    try:
        assert list(ctx.hot.query("job_metadata")) == []  # no run was started, so none FAILED
    finally:
        ctx.close()


@pytest.mark.slow
def test_two_commands_started_together_on_one_home_both_succeed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = goldthread(home, "run", "accounts", "--ds", today(), wait=120)
    second = goldthread(home, "backfill", "trades", "--start", "2024-03-04", "--end", "2024-03-06", wait=120)
    results = [(*p.communicate(timeout=240), p.returncode) for p in (first, second)]
    assert [code for _, _, code in results] == [0, 0], results
    ctx = Context(load_settings({"GOLDTHREAD_HOME": str(home)}))
    try:
        statuses = sorted((d["loop"], d["status"]) for _, d in ctx.hot.query("job_metadata"))
    finally:
        ctx.close()
    assert statuses == [("accounts", "SUCCEEDED")] + [("trades", "SUCCEEDED")] * 3


def test_the_local_bus_retries_with_the_pubsub_policy_of_the_settings(tmp_path: Path) -> None:
    settings = load_settings({"GOLDTHREAD_HOME": str(tmp_path), "GOLDTHREAD_RETRY_MIN_BACKOFF_SECONDS": "2",
                              "GOLDTHREAD_RETRY_MAX_BACKOFF_SECONDS": "30"})
    ctx = Context(settings, bus=LocalBus())
    bus = wire_local_bus(ctx)
    sub = bus.subscription(settings.subscription("trades"))
    assert (sub.min_backoff, sub.max_backoff) == (2.0, 30.0)
    defaults = Settings()
    assert (defaults.retry_min_backoff, defaults.retry_max_backoff) == (dt.timedelta(seconds=10),
                                                                        dt.timedelta(seconds=600))


@pytest.mark.parametrize("env", [
    {"GOLDTHREAD_RETRY_MIN_BACKOFF_SECONDS": "20", "GOLDTHREAD_RETRY_MAX_BACKOFF_SECONDS": "10"},
    {"GOLDTHREAD_RETRY_MAX_BACKOFF_SECONDS": "601"},
    {"GOLDTHREAD_WAREHOUSE_WAIT_SECONDS": "-1"},
    {"GOLDTHREAD_WAREHOUSE_WAIT_SECONDS": "soon"},
])
def test_impossible_retry_or_wait_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(env)
