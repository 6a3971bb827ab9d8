"""``trace``: one record's journey, for a loaded trade, a dead-lettered then replayed position, a patched trade,
a run, and an id nobody knows; the command prints it and exits 1 for an unknown id."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from decimal import Decimal as D
from pathlib import Path

import pytest
from goldthread import cli
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.bi.runs_sync import sync_job_runs
from goldthread.bi.trace import print_trace, trace
from goldthread.config import Settings
from goldthread.models import LivePosition
from goldthread.patches.fee_patch import patch_fees
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from goldthread.pipeline.replay import replay
from goldthread.writer import HotWriter
from rich.console import Console

from tests.conftest import DEPLOYED, DS, Clock, Factory, PinnedBroker, deliver


def test_a_loaded_trade_from_hot_document_to_marts(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1", broker_entry=D(100), broker_exit=D(103))
    run = run_loop(ctx, "trades", DS)
    report = trace(ctx, "pos-1")

    assert report.kind == "position" and report.found
    hot = report.section("hot documents")
    assert hot.status == "ok"
    assert hot.rows[0]["archived_run_id"] == run.run_id and hot.rows[0].get("dead_lettered_run_id") is None
    assert hot.rows[1]["doc_id"] == "sig-pos-1" and hot.rows[1]["status"] == "EXECUTED"
    items = report.section("work items").rows
    assert [(i["run_id"], i["job"], i["run_status"], i["item_outcome"]) for i in items] == [
        (run.run_id, "trades", "SUCCEEDED", "loaded")]
    facts = report.section("warehouse rows")
    assert facts.status == "ok"
    assert [(r["table"], r["run_id"], r["gross_pnl_usd"]) for r in facts.rows] == [
        ("fact_trades", run.run_id, D(9))]  # (103 - 100) x 3
    assert report.section("dead letters").status == "ok" and not report.section("dead letters").rows
    assert not report.section("patches").rows
    marts = report.section("marts")
    assert marts.status == "ok"
    assert {r["mart"] for r in marts.rows} == {"mart_daily_pnl", "mart_strategy_performance", "mart_fee_drift"}
    daily = next(r for r in marts.rows if r["mart"] == "mart_daily_pnl")
    assert (daily["ds"], daily["strategy_id"], daily["trades"]) == (DS, "momo", 1)

    by_signal = trace(ctx, "sig-pos-1")
    assert by_signal.kind == "signal"
    assert any(r.get("role") == "position of this signal" for r in by_signal.section("hot documents").rows)
    assert [r["position_id"] for r in by_signal.section("warehouse rows").rows] == ["pos-1"]


def test_a_dead_lettered_then_replayed_position(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-ok")
    make.raw_position("pos-bad", base, qty="-2")
    first = run_loop(ctx, "trades", DS)
    fixed = LivePosition.model_validate({**make.position_doc("pos-bad"), "qty": "3"})  # the qty the broker filled
    HotWriter(ctx.hot).save_position(fixed)
    replayed = replay(ctx, ids=["pos-bad"]).run
    assert replayed is not None
    deliver(ctx)

    report = trace(ctx, "pos-bad")
    items = {i["run_id"]: i for i in report.section("work items").rows}
    assert list(items) == [first.run_id, replayed.run_id], "in the order they ran"
    assert (items[first.run_id]["item_outcome"], items[first.run_id]["delivery_attempts"]) == ("dead_lettered", 1)
    assert items[first.run_id]["run_status"] == "PARTIAL"
    assert (items[replayed.run_id]["job"], items[replayed.run_id]["item_outcome"]) == ("replay", "loaded")
    letters = report.section("dead letters")
    assert letters.status == "info" and len(letters.rows) == 1
    letter = letters.rows[0]
    assert letter["reason_code"] == "VALIDATION" and letter["replay_run_id"] == replayed.run_id
    assert any(e.startswith("qty:") for e in letter["errors"])
    assert [r["run_id"] for r in report.section("warehouse rows").rows] == [replayed.run_id]
    assert report.section("hot documents").rows[0]["archived_run_id"] == replayed.run_id

    by_letter = trace(ctx, letter["dead_letter_id"])
    assert by_letter.kind == "position" and by_letter.section("dead letters").rows[0]["doc_id"] == "pos-bad"


def test_a_patched_trade_shows_every_changed_value(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-a", qty=D(10), broker_entry=D(100), broker_exit=D(110))
    run_loop(ctx, "trades", DS)
    fees = patch_fees(ctx, DS).run
    assert fees is not None

    report = trace(ctx, "pos-a")
    patches = report.section("patches")
    assert patches.status == "info"
    changed = {(p["column_name"], p["old_value"], p["new_value"]) for p in patches.rows}
    assert ("fee_finalized", "False", "True") in changed
    assert {p["patch"] for p in patches.rows} == {"patch_fees"}
    assert {p["patch_run_id"] for p in patches.rows} == {fees.run_id}
    row = report.section("warehouse rows").rows[0]
    assert row["fee_finalized"] is True and row["actual_fee_usd"] == D(next(
        p["new_value"] for p in patches.rows if p["column_name"] == "actual_fee_usd"))


def test_a_run(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    base = make.closed_trade("pos-2")
    make.raw_position("pos-bad", base, qty="-2")
    run = run_loop(ctx, "trades", DS)

    unsynced = trace(ctx, run.run_id)
    assert unsynced.kind == "run" and unsynced.section("marts").status == "missing"
    sync_job_runs(ctx)
    report = trace(ctx, run.run_id)
    assert report.section("run").rows[0]["status"] == "PARTIAL"
    assert report.section("work items").note.startswith("dead_lettered: 1, loaded: 2")
    assert report.section("warehouse rows").rows == [{"table": "fact_trades", "rows": 2}]
    assert [d["doc_id"] for d in report.section("dead letters").rows] == ["pos-bad"]
    health = report.section("marts").rows
    assert [(h["mart"], h["job"], h["rows_loaded"], h["rows_dead_lettered"]) for h in health] == [
        ("mart_pipeline_health", "trades", 2, 1)]


def test_an_unknown_id(ctx: Context) -> None:
    report = trace(ctx, "nothing-here")
    assert not report.found and report.kind == "unknown"
    buffer = io.StringIO()
    print_trace(Console(file=buffer, width=200), report)
    assert "nothing known" in buffer.getvalue()


def test_cli_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GOLDTHREAD_"):
            monkeypatch.delenv(key)
    settings = Settings(home=tmp_path / "home")
    monkeypatch.setenv("GOLDTHREAD_HOME", str(settings.home))
    broker = PinnedBroker(settings.broker_path, clock=Clock(dt.datetime.now(dt.UTC)), market=SyntheticMarketData())
    seeded = Context(settings, hot=SqliteHotStore(settings.hot_path), bus=LocalBus(), broker=broker)
    make = Factory(seeded)
    make.strategy("momo", "1.0", deployed_at=DEPLOYED)
    make.closed_trade("pos-1")
    seeded.close()
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buffer, width=250, color_system=None, force_terminal=False))

    assert cli.main(["run", "trades", "--ds", DS.isoformat()]) == 0
    start = buffer.tell()
    assert cli.main(["trace", "pos-1"]) == 0
    text = buffer.getvalue()[start:]
    for stage in ("hot documents: ok", "work items: ok", "warehouse rows: ok", "marts: ok"):
        assert stage in text
    start = buffer.tell()
    assert cli.main(["trace", "pos-1", "--json"]) == 0
    answer = json.loads(buffer.getvalue()[start:])
    assert answer["kind"] == "position" and answer["sections"][2]["rows"][0]["position_id"] == "pos-1"
    assert cli.main(["trace", "no-such-id"]) == 1
