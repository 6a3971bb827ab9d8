"""The demo end to end: twelve simulated days through every loop and both patches, checked as a whole.

``run_demo(settings, days=12)`` runs once for the module on a fixed calendar (so the seeded bot is
reproducible) in a temporary home. Proves: every loop (A, B, C, D) and both patches ran and left
runs in ``job_metadata``; every finished run reconciles (published = loaded + duplicates +
dead_lettered) and none failed or stalled; the documents the bot broke on purpose are all in
``dead_letters`` with the right reason codes and none reached a fact table; the fixed and replayed
``pos-broken-qty`` ends in ``fact_trades``; every fact row validates against its model, keys are
unique, no canary rows; the counterfactual rows agree with their signals (``ds``, fee model); the
patches left their mark (finalised fees, repaired prices, audit rows). Then the installed
``goldthread demo`` command exits 0.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from goldthread.config import Settings
from goldthread.demo import DemoResult, run_demo
from goldthread.ledger.runs import list_runs
from goldthread.loops.rejected_signals import fee_per_unit
from goldthread.models import (
    FactRejectedSignal,
    FactSignalExpired,
    FactTrade,
    LiveSignal,
    PatchAudit,
    RejectedSignal,
    SnapshotAccount,
)
from goldthread.models.hot import RunStatus
from goldthread.models.warehouse import DeadLetter, WarehouseRow
from goldthread.pipeline.context import Context
from goldthread.writer import POSITIONS, REJECTED, SIGNALS
from rich.console import Console

from tests.conftest import ledger_mark

END = dt.date(2024, 3, 15)  # a Friday: the twelve days span two weekends' worth of calendar
DAYS = 12
BROKEN = {
    "pos-broken-qty": ("trades", "VALIDATION"),
    "pos-broken-time": ("trades", "VALIDATION"),
    "pos-wrong-version": ("trades", "SCD_CONFLICT"),
    "sig-broken-barrier": ("rejected_signals", "VALIDATION"),
    "sig-naive-time": ("expired_signals", "VALIDATION"),
    "pos-wrong-side": ("trades", "BROKER_MISMATCH"),
    "pos-double-claim": ("trades", "ORDER_CLAIMED"),
}
FACTS: dict[str, type[WarehouseRow]] = {
    "fact_trades": FactTrade,
    "fact_rejected_signals": FactRejectedSignal,
    "fact_signals_expired": FactSignalExpired,
    "snapshot_accounts": SnapshotAccount,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Context, DemoResult]]:
    home = tmp_path_factory.mktemp("demo") / "home"
    ctx, result = run_demo(Settings(home=home), days=DAYS, end=END, console=Console(quiet=True))
    yield ctx, result
    ctx.close()


def query(ctx: Context, sql: str, **params: object) -> list[dict]:
    return ctx.warehouse.query(sql, params)


def test_every_loop_and_both_patches_ran(demo: tuple[Context, DemoResult]) -> None:
    ctx, result = demo
    assert (result.start, result.end) == (END - dt.timedelta(days=DAYS - 1), END)
    jobs = {"trades", "accounts", "expired_signals", "rejected_signals", "patch_prices", "patch_fees"}
    assert {job for job, _ in result.steps} == jobs
    runs = list_runs(ctx)
    assert {r.loop for r in runs} == jobs | {"replay"}
    # Loop B runs for each day whose 7-day window has ended: the first five of the twelve
    window_days = sorted(ds for job, ds in result.steps if job == "rejected_signals")
    assert window_days == [result.start + dt.timedelta(days=i) for i in range(DAYS - 7)]
    for table in FACTS:
        assert query(ctx, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] > 0, table


def test_every_finished_run_reconciles(demo: tuple[Context, DemoResult]) -> None:
    ctx, _ = demo
    runs = list_runs(ctx)
    assert runs
    for run in runs:
        assert run.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL), (run.run_id, run.status, run.error)
        assert run.reconciled, run.run_id
        assert run.published == run.loaded + run.duplicates + run.dead_lettered, run.run_id
        assert (run.status is RunStatus.PARTIAL) == (run.dead_lettered > 0), run.run_id
        assert run.finished_at is not None


def test_the_broken_documents_are_dead_lettered_with_their_reasons(demo: tuple[Context, DemoResult]) -> None:
    ctx, result = demo
    assert set(result.broken) == set(BROKEN)
    letters = [DeadLetter.model_validate(r) for r in query(ctx, "SELECT * FROM dead_letters")]
    assert {d.doc_id: (d.loop, d.reason_code) for d in letters} == BROKEN  # each once, nothing else
    for letter in letters:  # each says which field failed and why
        errors = json.loads(letter.errors_json)
        assert errors and all(e["msg"] for e in errors), letter.doc_id
    scd = next(d for d in letters if d.reason_code == "SCD_CONFLICT")
    assert "0.9" in scd.error_message and json.loads(scd.errors_json)[0]["loc"] == "strategy_version"
    side = next(d for d in letters if d.reason_code == "BROKER_MISMATCH")
    bot_side = ctx.hot.get(POSITIONS, "pos-wrong-side")["side"]
    errors = json.loads(side.errors_json)  # the one field, from each order, with both values
    assert [(e["loc"], e["bot"]) for e in errors] == [("side", bot_side)] * 2
    assert {e["broker"] for e in errors} == {"buy", "sell"} and f"side: bot {bot_side}" in side.error_message
    claimed = next(d for d in letters if d.reason_code == "ORDER_CLAIMED")
    original = ctx.hot.get(POSITIONS, "pos-double-claim")["entry_order_id"]
    holder = ctx.hot.get("order_claims", original)["position_id"]
    assert holder != "pos-double-claim" and holder in claimed.error_message
    assert ctx.warehouse.query("SELECT position_id FROM fact_trades WHERE entry_order_id = @o", {"o": original}) == [
        {"position_id": holder}]  # the order backs one trade, not two
    # none of them (apart from the one fixed and replayed) reached a fact table
    others = sorted(set(BROKEN) - {"pos-broken-qty"})
    for table, column in (("fact_trades", "position_id"), ("fact_rejected_signals", "signal_id"),
                          ("fact_signals_expired", "signal_id")):
        found = ctx.warehouse.query(f"SELECT {column} AS id FROM {table} WHERE {column} IN UNNEST(@ids)",
                                    {"ids": others})
        assert found == [], table


def test_the_replayed_position_ends_in_fact_trades(demo: tuple[Context, DemoResult]) -> None:
    ctx, result = demo
    (row,) = ctx.warehouse.query("SELECT * FROM fact_trades WHERE position_id = 'pos-broken-qty'")
    trade = FactTrade.model_validate(row)
    assert trade.qty == D(5)
    (replayed,) = query(ctx, "SELECT * FROM dead_letter_replays")
    assert replayed["doc_id"] == "pos-broken-qty"
    assert trade.run_id == replayed["replay_run_id"]
    (replay_run,) = list_runs(ctx, "replay")
    assert (replay_run.status, replay_run.published, replay_run.loaded) == (RunStatus.SUCCEEDED, 1, 1)
    assert ledger_mark(ctx, POSITIONS, "pos-broken-qty")["archived_run_id"] == replay_run.run_id
    assert any("pos-broken-qty" in note and "SUCCEEDED" in note for note in result.extras["notes"])


def test_the_position_corrected_after_archiving_is_revision_2(demo: tuple[Context, DemoResult]) -> None:
    ctx, result = demo
    (kept,) = query(ctx, "SELECT * FROM row_revisions")
    (row,) = query(ctx, "SELECT * FROM fact_trades WHERE row_id = @r", r=kept["record_row_id"])
    old = json.loads(kept["row_json"])
    assert (kept["table_name"], kept["revision"], row["revision"]) == ("fact_trades", 1, 2)
    assert row["est_fee_usd"] - D(old["est_fee_usd"]) == D("0.25")  # what the demo corrected, nothing else
    assert "est_fee_usd" in json.loads(kept["changed_columns"])
    assert any(f"{row['position_id']} after it was archived" in note for note in result.extras["notes"])


def test_fact_rows_are_valid_unique_and_not_canaries(demo: tuple[Context, DemoResult]) -> None:
    ctx, _ = demo
    for table, model in FACTS.items():
        raw = query(ctx, f"SELECT * FROM {table}")
        parsed = [model.model_validate(r) for r in raw]  # a row the contract refuses fails here
        assert len({r.row_id for r in parsed}) == len(parsed), table
        assert not any(getattr(r, "is_canary", False) for r in parsed), table
    counts = query(ctx, "SELECT COUNT(*) AS n, COUNT(DISTINCT row_id) AS k FROM patch_audit")[0]
    assert counts["n"] == counts["k"]
    for r in query(ctx, "SELECT * FROM patch_audit"):
        PatchAudit.model_validate(r)
    bars = query(ctx, "SELECT COUNT(*) AS n, COUNT(DISTINCT row_id) AS k FROM market_bars")[0]
    assert bars["n"] == bars["k"] > 0


def test_counterfactual_rows_agree_with_their_signals(demo: tuple[Context, DemoResult]) -> None:
    ctx, _ = demo
    for r in query(ctx, "SELECT * FROM fact_rejected_signals"):
        row = FactRejectedSignal.model_validate(r)
        signal = RejectedSignal.model_validate(ctx.hot.get(REJECTED, row.signal_id))
        assert row.ds == signal.created_at.date()
        assert row.window_end == signal.created_at + dt.timedelta(days=7)
        if row.exit_reason == "NO_DATA":
            assert row.bars_observed == 0 and row.est_fee_per_unit is None
        else:
            assert row.entry_price is not None and row.exit_price is not None
            assert row.est_fee_per_unit == fee_per_unit(signal, row.entry_price, row.exit_price)
            assert row.entry_time is not None and row.entry_time > signal.created_at
    for r in query(ctx, "SELECT * FROM fact_signals_expired"):
        row = FactSignalExpired.model_validate(r)
        signal = LiveSignal.model_validate(ctx.hot.get(SIGNALS, row.signal_id))
        assert signal.status.value in ("EXPIRED", "ACTIVE")
        assert row.ds == signal.expires_at.date()
        assert row.lookahead_end == signal.expires_at + dt.timedelta(hours=24)


def test_the_patches_left_their_mark(demo: tuple[Context, DemoResult]) -> None:
    ctx, _ = demo
    trades = [FactTrade.model_validate(r) for r in query(ctx, "SELECT * FROM fact_trades")]
    finalised = [t for t in trades if t.fee_finalized]
    assert finalised and len(finalised) < len(trades)  # the last day's fees are not posted yet
    for t in finalised:
        assert t.actual_fee_usd is not None
        if t.gross_pnl_usd is not None:
            assert t.net_pnl_usd == t.gross_pnl_usd - t.actual_fee_usd
    audited = {(r["patch"], r["table_name"]) for r in query(ctx, "SELECT patch, table_name FROM patch_audit")}
    assert {("patch_fees", "fact_trades"), ("patch_prices", "live_positions")} <= audited
    # no position the price patch could repair is left with a zero price once its orders filled
    repaired = {r["record_key"] for r in query(ctx, "SELECT record_key FROM patch_audit WHERE patch = 'patch_prices'")}
    for doc_id in repaired:
        doc = ctx.hot.get(POSITIONS, doc_id)
        assert doc is not None and D(str(doc["entry_filled_avg_price"])) > 0


def test_the_goldthread_demo_command_exits_0(tmp_path: Path) -> None:
    command = shutil.which("goldthread", path=str(Path(sys.executable).parent)) or "goldthread"
    env = {**os.environ, "GOLDTHREAD_HOME": str(tmp_path / "home"), "GOLDTHREAD_LOG_LEVEL": "ERROR"}
    done = subprocess.run([command, "demo", "--days", "8"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all finished runs reconcile" in done.stdout
    assert (tmp_path / "home" / "warehouse.duckdb").exists()


def test_loop_d_snapshots_each_day_live_at_its_close(demo: tuple[Context, DemoResult]) -> None:
    """As scheduled in production (17:00 New York, the day itself): one live snapshot a day, weekends too,
    with the option book's Greeks, each describing 22:00 UTC of its own day."""
    ctx, result = demo
    snapshots = [SnapshotAccount.model_validate(r) for r in query(ctx, "SELECT * FROM snapshot_accounts")]
    assert sorted(s.ds for s in snapshots) == [result.start + dt.timedelta(days=i) for i in range(DAYS)]
    for s in snapshots:
        assert s.source == "live_account" and s.snapshot_at == dt.datetime.combine(s.ds, dt.time(22), dt.UTC)
        assert s.option_positions and s.delta is not None
