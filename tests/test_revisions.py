"""Revisions: a record corrected after it was archived reaches the warehouse as a new revision of its row.

The row keeps its ``row_id``; ``revision`` goes up by one; the values it replaced are kept in
``row_revisions``; a redelivery of the same revision stays a duplicate; the marts read the latest
revision. Corrections are written both through the writer API and straight into the hot store, as a
bot writing its own Firestore documents would (a whole new document, without goldthread's marks).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

import pytest
from goldthread.models.hot import RunStatus
from goldthread.models.warehouse import FactTrade, row_id_for
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from goldthread.writer import POSITIONS, REJECTED, document_of

from tests.conftest import DS, NIGHT_AFTER, SESSION, Clock, Factory, rows

DAY = dt.timedelta(days=1)


def trade(ctx: Context, position_id: str) -> dict:
    (row,) = rows(ctx, "fact_trades", "position_id = @p", p=position_id)
    return row


def revisions(ctx: Context, table: str = "fact_trades") -> list[dict]:
    return rows(ctx, "row_revisions", "table_name = @t", t=table)


def archive_two_trades(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1", broker_entry=D("100"), broker_exit=D("110"), bot_entry=D("100"), bot_exit=D("110"),
                      fee=D("0.50"))
    make.closed_trade("pos-2", broker_entry=D("50"), broker_exit=D("55"), bot_entry=D("50"), bot_exit=D("55"))
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 2)


def test_a_correction_through_the_writer_api_is_a_new_revision(ctx: Context, make: Factory, clock: Clock) -> None:
    archive_two_trades(ctx, make)
    first = trade(ctx, "pos-1")
    assert first["revision"] == 1 and first["est_fee_usd"] == D("0.5")

    # the bot finds its fee estimate was wrong and saves the corrected position after it was archived
    make.writer.save_position(_corrected(make, "pos-1", est_fee_usd=D("0.80")))
    clock.advance(DAY)
    run = run_loop(ctx, "trades", DS + DAY)

    assert (run.status, run.published, run.loaded, run.duplicates, run.dead_lettered) == (
        RunStatus.SUCCEEDED, 1, 1, 0, 0
    )
    (row,) = rows(ctx, "fact_trades", "row_id = @r", r=row_id_for("fact_trades", "pos-1"))  # one row, replaced
    assert row["revision"] == 2 and row["run_id"] == run.run_id
    # (110 - 100) x 3 = 30 gross; net 30 - 0.80
    assert row["est_fee_usd"] == D("0.8") and row["net_pnl_usd"] == D("29.2") and row["gross_pnl_usd"] == D("30")
    (kept,) = revisions(ctx)
    assert (kept["record_row_id"], kept["revision"], kept["superseded_by_revision"]) == (row["row_id"], 1, 2)
    assert kept["superseded_by_run_id"] == run.run_id
    assert json.loads(kept["changed_columns"]) == ["est_fee_usd", "net_pnl_usd", "return_pct"]
    old = json.loads(kept["row_json"])
    assert D(old["est_fee_usd"]) == D("0.5") and D(old["net_pnl_usd"]) == D("29.5") and old["revision"] == 1
    assert trade(ctx, "pos-2")["revision"] == 1  # the other trade is untouched
    # the marts read the latest revision: the day's net P&L is 29.2 + (55 - 50) x 3 - 0.5
    (pnl,) = ctx.warehouse.query("SELECT SUM(net_pnl_usd) AS net FROM mart_daily_pnl WHERE ds = @ds", {"ds": DS})
    assert pnl["net"] == D("29.2") + D("14.5")


def _corrected(make: Factory, position_id: str, **changes: object):  # type: ignore[no-untyped-def]
    from goldthread.models import LivePosition

    return LivePosition.model_validate({**make.position_doc(position_id), **changes})


def test_a_bot_rewriting_its_document_straight_into_the_store_is_a_new_revision(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    archive_two_trades(ctx, make)
    doc = make.position_doc("pos-1")
    # a bot writes its whole document again as it keeps it, goldthread's marks null (a document lacking the
    # fields altogether is issue 16's ledger: Firestore cannot query a field that is absent)
    bot_doc = {**doc, "archived_run_id": None, "archived_at": None, "loading_run_id": None,
               "exit_filled_avg_price": "109.5"}
    ctx.hot.put(POSITIONS, "pos-1", bot_doc)
    clock.advance(DAY)
    run = run_loop(ctx, "trades", DS + DAY)

    assert (run.status, run.published, run.loaded, run.duplicates) == (RunStatus.SUCCEEDED, 1, 1, 0)
    row = trade(ctx, "pos-1")
    # the bot's exit price changes, the broker's fill (110) and so the P&L do not: (109.5 - 110) / 110 bps
    assert row["revision"] == 2 and row["exit_price"] == D("109.5") and row["gross_pnl_usd"] == D("30")
    assert row["exit_discrepancy_bps"] == D("-45.454545455")
    (kept,) = revisions(ctx)
    assert json.loads(kept["changed_columns"]) == ["exit_discrepancy_bps", "exit_price"]


def test_the_same_revision_delivered_again_stays_a_duplicate(ctx: Context, make: Factory, clock: Clock) -> None:
    archive_two_trades(ctx, make)
    # the record loses its archive mark without changing (a restore, a bot rewriting the same values)
    doc = make.position_doc("pos-1")
    ctx.hot.put(POSITIONS, "pos-1", {**doc, "archived_run_id": None, "archived_at": None})
    clock.advance(DAY)
    run = run_loop(ctx, "trades", DS + DAY)

    assert (run.status, run.published, run.loaded, run.duplicates) == (RunStatus.SUCCEEDED, 1, 0, 1)
    assert trade(ctx, "pos-1")["revision"] == 1 and revisions(ctx) == []


def test_corrected_twice_keeps_every_old_revision(ctx: Context, make: Factory, clock: Clock) -> None:
    archive_two_trades(ctx, make)
    for n, fee in enumerate(("0.60", "0.70"), start=1):
        make.writer.save_position(_corrected(make, "pos-1", est_fee_usd=D(fee)))
        clock.advance(DAY)
        run_loop(ctx, "trades", DS + n * DAY)
    row = trade(ctx, "pos-1")
    assert row["revision"] == 3 and row["est_fee_usd"] == D("0.7")
    kept = sorted(revisions(ctx), key=lambda r: r["revision"])
    assert [(r["revision"], D(json.loads(r["row_json"])["est_fee_usd"])) for r in kept] == [(1, D("0.5")),
                                                                                             (2, D("0.6"))]


def test_a_crash_between_keeping_the_old_row_and_replacing_it_repeats_cleanly(
    ctx: Context, make: Factory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goldthread.errors import WarehouseWriteError

    archive_two_trades(ctx, make)
    make.writer.save_position(_corrected(make, "pos-1", est_fee_usd=D("0.90")))
    warehouse = ctx.warehouse
    real_upsert = warehouse.upsert_rows
    failures = []

    def upsert_once_failing(model, rows_, columns):  # type: ignore[no-untyped-def]
        if model is FactTrade and not failures:
            failures.append(1)
            raise WarehouseWriteError("connection reset while replacing the row")
        return real_upsert(model, rows_, columns)

    monkeypatch.setattr(warehouse, "upsert_rows", upsert_once_failing)
    clock.advance(DAY)
    run = run_loop(ctx, "trades", DS + DAY)  # the local bus redelivers after the transient failure

    assert failures == [1]
    assert (run.status, run.loaded, run.duplicates, run.dead_lettered) == (RunStatus.SUCCEEDED, 1, 0, 0)
    assert trade(ctx, "pos-1")["revision"] == 2 and len(revisions(ctx)) == 1


def test_a_rejected_signal_corrected_after_archiving_is_a_new_revision(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    make.signal("sig-r", created_at=SESSION)
    rejected = make.writer.reject_signal("sig-r", "MAX_EXPOSURE", SESSION + dt.timedelta(seconds=1))
    clock.set(NIGHT_AFTER + 8 * DAY)
    first = run_loop(ctx, "rejected_signals", DS)
    assert first.loaded == 1
    # the bot straight into the store: the same document with a corrected reason code, no marks
    ctx.hot.put(REJECTED, "sig-r", {**document_of(rejected), "rejection_reason": "MAX_DRAWDOWN"})
    second = run_loop(ctx, "rejected_signals", DS + DAY)

    assert (second.loaded, second.duplicates) == (1, 0)
    (row,) = rows(ctx, "fact_rejected_signals")
    assert (row["rejection_reason"], row["revision"]) == ("MAX_DRAWDOWN", 2)
    (kept,) = revisions(ctx, "fact_rejected_signals")
    assert json.loads(kept["changed_columns"]) == ["rejection_reason"]
    (cost,) = ctx.warehouse.query("SELECT rejection_reason FROM mart_rejection_cost")
    assert cost["rejection_reason"] == "MAX_DRAWDOWN"


def test_a_later_run_the_same_day_replaces_the_intraday_account_snapshot(ctx: Context, clock: Clock) -> None:
    from tests.test_loop_accounts import DS_CLOSE, expected_equity, fills

    fills(ctx)
    midday = SESSION + dt.timedelta(hours=1)
    clock.set(midday)
    first = run_loop(ctx, "accounts", DS)
    clock.set(DS_CLOSE)
    second = run_loop(ctx, "accounts", DS)

    assert (first.loaded, second.loaded, second.duplicates) == (1, 1, 0)
    (row,) = rows(ctx, "snapshot_accounts")
    assert (row["revision"], row["run_id"], row["source"]) == (2, second.run_id, "live_account")
    assert row["equity"] == expected_equity(ctx, DS_CLOSE) and row["snapshot_at"] == DS_CLOSE
    (kept,) = revisions(ctx, "snapshot_accounts")
    old = json.loads(kept["row_json"])
    assert D(old["equity"]) == expected_equity(ctx, midday) and old["snapshot_at"] == midday.isoformat()
    assert "equity" in json.loads(kept["changed_columns"])


def test_a_backfill_of_a_past_day_never_replaces_its_live_snapshot(ctx: Context, clock: Clock) -> None:
    from tests.test_loop_accounts import DS_CLOSE, fills

    fills(ctx)
    clock.set(DS_CLOSE)
    live = run_loop(ctx, "accounts", DS)
    clock.set(DS_CLOSE + 3 * DAY)  # days later the day is past: its figures would come from the history
    backfill = run_loop(ctx, "accounts", DS)

    assert (backfill.published, backfill.loaded, backfill.duplicates) == (1, 0, 1)
    (row,) = rows(ctx, "snapshot_accounts")
    assert (row["run_id"], row["source"], row["revision"]) == (live.run_id, "live_account", 1)
    assert row["delta"] is not None and row["cash"] is not None  # the live figures the history cannot give
    assert revisions(ctx, "snapshot_accounts") == []


def test_a_row_an_older_version_wrote_is_kept_whole_when_a_revision_replaces_it(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    archive_two_trades(ctx, make)
    row_id = row_id_for("fact_trades", "pos-1")
    # as an older version left it: no revision yet (null), no price flag
    ctx.warehouse.query("UPDATE fact_trades SET revision = NULL, price_discrepancy_flagged = NULL "
                        "WHERE row_id = @r", {"r": row_id})
    make.writer.save_position(_corrected(make, "pos-1", est_fee_usd=D("0.65")))
    clock.advance(DAY)
    run = run_loop(ctx, "trades", DS + DAY)

    assert (run.loaded, run.duplicates, run.dead_lettered) == (1, 0, 0)
    row = trade(ctx, "pos-1")
    assert (row["revision"], row["est_fee_usd"]) == (2, D("0.65"))
    (kept,) = revisions(ctx)
    assert kept["revision"] == 1 and json.loads(kept["row_json"])["revision"] is None
