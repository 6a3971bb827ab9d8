"""The Golden Thread canary: it passes on the embedded stack without touching real records, and when a hop is
broken on purpose (a stopped bus, a warehouse that refuses writes, a missing mart, a record that fails
validation, a slow signal write) it fails naming that hop, marks its run FAILED, logs an ERROR carrying the
hop, and sets its position aside. Budgets are checked with an injected clock, never with real time.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from goldthread import cli, entrypoints
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus
from goldthread.bi import canary
from goldthread.bi.canary import HOPS, run_canary
from goldthread.ledger import runs
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from goldthread.writer import POSITIONS, HotWriter
from rich.console import Console

from tests.conftest import DS, Factory, ledger_mark, rows
from tests.real.conftest import bigquery_emulator, firestore_emulator, pubsub_emulator  # noqa: F401 - fixtures
from tests.support import emulators
from tests.support.emulators import ManagedProcess, start_function
from tests.support.faults import bus_stopped, warehouse_refusing_writes


class FakeClock:
    """Seconds that move only when a test says so (the canary's hop timer reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def slow(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, method: str, seconds: float) -> None:
    """Make ``HotWriter.<method>`` take ``seconds`` on the fake clock."""
    original: Callable[..., Any] = getattr(HotWriter, method)

    def wrapped(self: HotWriter, *args: Any, **kwargs: Any) -> Any:
        clock.now += seconds
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HotWriter, method, wrapped)


def statuses(result: canary.CanaryResult) -> dict[str, str]:
    """Hop -> ok / FAILED / skipped."""
    return {h.hop: h.status for h in result.hops}


def test_canary_passes_and_leaves_real_records_alone(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-real")  # due for today's trades run, and must stay so
    result = run_canary(ctx, timeout=5)

    assert result.ok, result.to_dict()
    assert [h.hop for h in result.hops] == list(HOPS)
    assert all(h.ms is not None and h.ms >= 0 for h in result.hops)
    assert rows(ctx, "fact_trades", "TRUE")[0]["position_id"] == result.position_id
    assert len(rows(ctx, "fact_trades", "TRUE")) == 1, "the canary archived only its own position"
    assert make.mark("pos-real")["archived_run_id"] is None
    assert rows(ctx, "fact_trades", "is_canary")[0]["run_id"] == result.run_id

    run = runs.get_run(ctx, result.run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED and run.loop == "canary"
    assert (run.published, run.loaded) == (1, 1)
    assert set(run.details["hop_ms"]) == set(HOPS) and run.details["broken_hop"] is None

    golden = ctx.warehouse.query("SELECT * FROM mart_golden_thread")
    assert [(g["run_id"], g["status"], g["position_id"]) for g in golden] == [
        (result.run_id, "SUCCEEDED", result.position_id)]
    assert ctx.warehouse.query("SELECT COUNT(*) AS n FROM mart_daily_pnl")[0]["n"] == 0

    trades = run_loop(ctx, "trades", DS)  # the real run archives the real trade, not the canary's
    assert (trades.published, trades.loaded) == (1, 1)
    assert make.mark("pos-real")["archived_run_id"] == trades.run_id


def test_a_second_canary_reuses_its_orders_and_strategy(ctx: Context, make: Factory) -> None:
    first = run_canary(ctx, timeout=5)
    calls = dict(make.broker.calls)
    second = run_canary(ctx, timeout=5)
    assert first.ok and second.ok
    assert len(rows(ctx, "fact_trades", "is_canary")) == 2
    placed = make.broker.get_orders(list(canary.DEFAULT_ORDERS))
    assert sorted(placed) == sorted(canary.DEFAULT_ORDERS), "two orders for every canary run, placed once"
    assert make.broker.calls["get_orders"] > calls["get_orders"]
    dims = ctx.warehouse.query("SELECT strategy_sk FROM dim_strategy WHERE strategy_id = 'golden_thread_canary'")
    assert [d["strategy_sk"] for d in dims] == ["golden_thread_canary:1"]
    assert ctx.warehouse.query("SELECT COUNT(*) AS n FROM mart_strategy_performance")[0]["n"] == 1, "momo only"


def assert_broken(ctx: Context, result: canary.CanaryResult, hop: str, caplog: pytest.LogCaptureFixture) -> None:
    """The run is FAILED naming ``hop``, later hops skipped, an ERROR carries the hop, the position is set aside."""
    assert not result.ok
    assert result.broken_hop == hop
    assert result.error and f"hop '{hop}' failed" in result.error
    run = runs.get_run(ctx, result.run_id)
    assert run is not None and run.status is RunStatus.FAILED
    assert run.error and f"hop '{hop}'" in run.error and run.details["broken_hop"] == hop
    later = HOPS[HOPS.index(hop) + 1:]
    assert all(statuses(result)[h] == "skipped" for h in later)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and getattr(r, "hop", None) == hop]
    assert errors, "no ERROR log with the hop label"
    doc = ctx.hot.get(POSITIONS, result.position_id)
    mark = ledger_mark(ctx, POSITIONS, result.position_id)
    if doc is not None and mark["archived_run_id"] is None:
        assert mark["dead_lettered_run_id"] == result.run_id, "a broken canary's position must be set aside"


def test_a_stopped_bus_breaks_the_dispatch_hop(ctx: Context, make: Factory, caplog: pytest.LogCaptureFixture) -> None:
    make.closed_trade("pos-real")
    with bus_stopped(ctx.bus):
        result = run_canary(ctx, timeout=1)

    assert_broken(ctx, result, "dispatch", caplog)
    assert statuses(result)["signal_write"] == "ok" and statuses(result)["position_write"] == "ok"
    assert "stopped" in result.hop("dispatch").detail
    trades = run_loop(ctx, "trades", DS)
    assert trades.published == 1, "the set-aside canary position never enters a real run"
    assert make.mark("pos-real")["archived_run_id"] == trades.run_id
    synced = ctx.warehouse.query("SELECT status FROM mart_golden_thread WHERE run_id = @r", {"r": result.run_id})
    assert synced == [{"status": "FAILED"}]


def sink_backs_off(ctx: Context) -> None:
    """The test bus retries with no backoff; give the dead-letter sink the real stack's growing backoff, so a
    sink that keeps failing (the warehouse refuses its row too) leaves ``run_until_idle`` at its deadline."""
    bus = ctx.bus
    assert isinstance(bus, LocalBus)
    bus.subscription(f"{ctx.settings.dead_letter_topic}-sink").min_backoff = 0.05


def test_a_warehouse_refusing_writes_breaks_the_warehouse_write_hop(
    ctx: Context, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_canary(ctx, timeout=5).ok  # the canary strategy is in dim_strategy from here on
    sink_backs_off(ctx)
    with warehouse_refusing_writes(ctx.warehouse):
        result = run_canary(ctx, timeout=0.5)

    assert_broken(ctx, result, "warehouse_write", caplog)
    assert statuses(result)["delivery"] == "ok" and statuses(result)["validation"] == "ok"
    assert "refuses writes" in result.hop("warehouse_write").detail
    assert not rows(ctx, "fact_trades", "run_id = @r", r=result.run_id)


def test_a_warehouse_refusing_writes_from_the_start_names_the_warehouse(
    ctx: Context, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    sink_backs_off(ctx)
    with warehouse_refusing_writes(ctx.warehouse):
        result = run_canary(ctx, timeout=0.5)
        assert_broken(ctx, result, "warehouse_write", caplog)


def test_a_missing_mart_breaks_the_mart_visibility_hop(
    ctx: Context, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    warehouse = ctx.warehouse
    assert isinstance(warehouse, DuckDbWarehouse)
    warehouse.execute_script("DROP VIEW mart_daily_pnl")
    result = run_canary(ctx, timeout=5)

    assert_broken(ctx, result, "mart_visibility", caplog)
    assert "mart_daily_pnl" in result.hop("mart_visibility").detail
    assert all(statuses(result)[h] == "ok" for h in HOPS[:-1])
    assert rows(ctx, "fact_trades", "is_canary"), "the row itself reached the warehouse"


def test_a_record_failing_validation_breaks_the_validation_hop_with_the_dead_letter_reason(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = HotWriter.record_signal

    def garbled(self: HotWriter, signal: Any) -> str:  # a writer bug: the stored time loses its zone
        doc_id = original(self, signal)
        self.hot.update("live_signals", doc_id, {"created_at": "2024-03-05T15:00:00"})
        return doc_id

    monkeypatch.setattr(HotWriter, "record_signal", garbled)
    result = run_canary(ctx, timeout=5)

    assert_broken(ctx, result, "validation", caplog)
    detail = result.hop("validation").detail
    assert "VALIDATION" in detail and "signal.created_at" in detail
    assert statuses(result)["delivery"] == "ok"


def test_a_signal_write_over_its_100ms_budget_fails_that_hop(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    slow(monkeypatch, clock, "record_signal", 0.150)
    result = run_canary(ctx, timeout=5, clock=clock)

    assert result.broken_hop == "signal_write"
    hop = result.hop("signal_write")
    assert hop.ms == pytest.approx(150.0) and hop.budget_ms == 100.0
    assert "over its 100 ms budget" in hop.detail
    assert all(statuses(result)[h] == "ok" for h in HOPS[1:]), "a slow hop is reported; the record still flows"
    run = runs.get_run(ctx, result.run_id)
    assert run is not None and run.status is RunStatus.FAILED


def test_a_signal_write_within_budget_passes(ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    slow(monkeypatch, clock, "record_signal", 0.099)
    slow(monkeypatch, clock, "close_position", 1.5)  # over position_write's 1 s budget
    result = run_canary(ctx, timeout=5, clock=clock)
    assert result.hop("signal_write").ok and result.hop("signal_write").ms == pytest.approx(99.0)
    assert result.broken_hop == "position_write"
    tighter = run_canary(ctx, timeout=5, clock=clock, budgets_ms={"position_write": 2000})
    assert tighter.ok


class Request:
    """The bit of a Flask request ``http_call`` reads."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def get_json(self, silent: bool = False) -> dict[str, Any]:
        return self.body


def test_http_canary_answers_200_when_whole_and_500_naming_the_hop(ctx: Context, make: Factory) -> None:
    entrypoints.reset_context(ctx)
    try:
        body, status, _ = entrypoints.canary_http(Request({"timeout_seconds": 5}))
        assert status == 200 and json.loads(body)["ok"] is True
        with bus_stopped(ctx.bus):
            body, status, _ = entrypoints.canary_http(Request({"timeout_seconds": 1}))
        answer = json.loads(body)
        assert status == 500 and answer["broken_hop"] == "dispatch" and "hop 'dispatch' failed" in answer["error"]
        _, status, _ = entrypoints.canary_http(Request({"timeout_seconds": "soon"}))
        assert status == 400
    finally:
        entrypoints.reset_context(None)


def test_cli_canary_on_a_fresh_embedded_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("GOLDTHREAD_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GOLDTHREAD_HOME", str(tmp_path / "home"))
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buffer, width=250, color_system=None, force_terminal=False))
    assert cli.main(["canary", "--json", "--timeout", "5"]) == 0
    answer = json.loads(buffer.getvalue())
    assert answer["ok"] is True and set(answer["hop_ms"]) == set(HOPS)
    assert answer["hop_ms"]["signal_write"] < 100 or answer["hops"][0]["status"] == "FAILED"
    assert Decimal(str(answer["hop_ms"]["delivery"])) >= 0


@pytest.mark.emulator
def test_canary_on_the_real_stack(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Firestore emulator, Pub/Sub emulator pushing to the real ``subscribe_trades`` function (functions-framework),
    bqemulator with the marts as Terraform declares them, the simulator's ledger shared by file. The emulators are
    not production-fast, so the hop budgets are relaxed here; the budgets themselves are tested above."""
    from goldthread.adapters.pubsub_bus import ensure_loop_topology
    from goldthread.bi.marts import ensure_marts
    from goldthread.config import load_settings

    firestore: ManagedProcess = request.getfixturevalue("firestore_emulator")
    pubsub: ManagedProcess = request.getfixturevalue("pubsub_emulator")
    bigquery: ManagedProcess = request.getfixturevalue("bigquery_emulator")
    tag = uuid.uuid4().hex[:10]
    project = f"gt-canary-{tag}"
    env = {
        **firestore.env, **pubsub.env, **bigquery.env,
        "GOOGLE_CLOUD_PROJECT": project, "GOLDTHREAD_HOT": "firestore", "GOLDTHREAD_BUS": "pubsub",
        "GOLDTHREAD_WAREHOUSE": "bigquery", "GOLDTHREAD_BROKER": "sim", "GOLDTHREAD_HOME": str(tmp_path / "home"),
        "GOLDTHREAD_DATASET": f"canary_{tag}", "GOLDTHREAD_TOPIC_PREFIX": f"c-{tag}", "GOLDTHREAD_LOG_LEVEL": "WARNING",
    }
    settings = load_settings(env)
    function = start_function("subscribe_trades", signature_type="cloudevent", env=env, timeout=120)
    ctx = Context(settings)
    try:
        push = f"{function.url}/projects/{project}/topics/{settings.topic('trades')}"
        ensure_loop_topology(settings, ["trades"], push_endpoints={"trades": push})
        ensure_marts(ctx.warehouse)
        relaxed = {"signal_write": 5000, "position_write": 10000, "dispatch": 10000, "validation": 10000,
                   "warehouse_write": 30000, "mart_visibility": 60000}

        result = run_canary(ctx, timeout=120, budgets_ms=relaxed)
        assert result.ok, (result.to_dict(), function.log_tail())
        shown = ctx.warehouse.query("SELECT status, position_id FROM mart_golden_thread WHERE run_id = @r",
                                    {"r": result.run_id})
        assert shown == [{"status": "SUCCEEDED", "position_id": result.position_id}]
        assert ctx.warehouse.query("SELECT COUNT(*) AS n FROM mart_daily_pnl")[0]["n"] == 0

        ctx.warehouse.execute("DROP VIEW mart_fee_drift")  # type: ignore[attr-defined]
        broken = run_canary(ctx, timeout=120, budgets_ms=relaxed)
        assert broken.broken_hop == "mart_visibility" and "mart_fee_drift" in broken.hop("mart_visibility").detail
    finally:
        client = getattr(ctx.warehouse, "client", None)
        if client is not None:
            client.delete_dataset(f"{project}.{settings.dataset}", delete_contents=True, not_found_ok=True)
        ctx.close()
        function.stop()
        emulators.reset_firestore(firestore.host_port, project)
        emulators.reset_pubsub(project, pubsub.host_port)
