"""Loop A end to end through the local bus: CLOSED positions become ``fact_trades`` rows.

Every expected figure below is worked out by hand from the prices, quantities and times the test
writes: gross and net P&L at the broker's fills (not the bot's), return on entry notional, holding
time, the bot-versus-broker discrepancy in basis points, the strategy version in force when the
signal was created (``dim_strategy`` SCD type 2), the zero fill price an equity order placed outside
the session reports, and the archive mark written with the run id after the row.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

from goldthread.models import AssetClass, Side
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop

from tests.conftest import DS, NIGHT_AFTER, SESSION, UTC, Clock, Factory, deliver, rows


def trade_row(ctx: Context, position_id: str) -> dict:
    (row,) = rows(ctx, "fact_trades", "position_id = @p", p=position_id)
    return row


def test_long_trade_pnl_at_the_broker_fills(ctx: Context, make: Factory, clock: Clock) -> None:
    closed_at = SESSION + dt.timedelta(hours=2, minutes=30, seconds=15)
    make.closed_trade(
        "pos-long", qty=D("3"), closed_at=closed_at, fee=D("0.50"),
        broker_entry=D("100.00"), broker_exit=D("110.00"), bot_entry=D("100.10"), bot_exit=D("109.89"),
    )
    run = run_loop(ctx, "trades", DS)

    assert (run.status, run.published, run.loaded, run.duplicates, run.dead_lettered) == (
        RunStatus.SUCCEEDED, 1, 1, 0, 0
    )
    row = trade_row(ctx, "pos-long")
    # the broker's fills are the truth: (110 - 100) x 3 = 30; net 30 - 0.50 = 29.50
    assert row["gross_pnl_usd"] == D("30")
    assert row["net_pnl_usd"] == D("29.5")
    # 29.50 / (100 x 3) x 100 = 9.8333...%, rounded to 9 places
    assert row["return_pct"] == D("9.833333333")
    assert row["holding_seconds"] == 2 * 3600 + 30 * 60 + 15
    # the bot's prices are kept beside the broker's: (100.10 - 100) / 100 = +10 bps; (109.89 - 110) / 110 = -10 bps
    assert (row["entry_price"], row["broker_entry_price"]) == (D("100.10"), D("100.00"))
    assert (row["exit_price"], row["broker_exit_price"]) == (D("109.89"), D("110.00"))
    assert row["entry_discrepancy_bps"] == D("10")
    assert row["exit_discrepancy_bps"] == D("-10")
    assert row["broker_entry_qty"] == D("3") and row["broker_exit_qty"] == D("3")
    assert row["est_fee_usd"] == D("0.5") and row["actual_fee_usd"] is None and row["fee_finalized"] is False
    assert row["strategy_sk"] == "momo:1.0" and row["strategy_version"] == "1.0"
    assert row["ds"] == DS and row["run_id"] == run.run_id
    assert row["opened_at"] == SESSION and row["closed_at"] == closed_at
    assert row["side"] == "long" and row["asset_class"] == "equity" and row["symbol"] == "AAPL"

    mark = make.mark("pos-long")  # in goldthread's ledger, never on the bot's document
    assert mark["archived_run_id"] == run.run_id
    assert mark["archived_at"] == clock()
    assert mark["dead_lettered_run_id"] is None
    assert not set(make.position_doc("pos-long")) & {"archived_run_id", "archived_at", "dead_lettered_run_id"}


def test_short_option_trade_uses_the_multiplier(ctx: Context, make: Factory) -> None:
    make.closed_trade(
        "pos-short-opt", symbol="AAPL240119C00190000", asset_class=AssetClass.OPTION, side=Side.SHORT,
        qty=D("2"), multiplier=D("100"), fee=D("1.30"), broker_entry=D("5.00"), broker_exit=D("3.50"),
    )
    run_loop(ctx, "trades", DS)
    row = trade_row(ctx, "pos-short-opt")
    # short: sold at 5.00, bought back at 3.50: (5.00 - 3.50) x 2 x 100 = 300; net 300 - 1.30 = 298.70
    assert row["gross_pnl_usd"] == D("300")
    assert row["net_pnl_usd"] == D("298.7")
    # 298.70 / (5.00 x 2 x 100) x 100 = 29.87%
    assert row["return_pct"] == D("29.87")
    assert row["multiplier"] == D("100")
    # the bot was told the broker's own price, so there is no discrepancy
    assert row["entry_discrepancy_bps"] == 0 and row["exit_discrepancy_bps"] == 0


def test_short_losing_trade(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-short", side=Side.SHORT, qty=D("4"), fee=D("0.20"),
                      broker_entry=D("50.00"), broker_exit=D("51.25"))
    run_loop(ctx, "trades", DS)
    row = trade_row(ctx, "pos-short")
    # (50.00 - 51.25) x 4 = -5.00; net -5.20; -5.20 / 200 x 100 = -2.6%
    assert (row["gross_pnl_usd"], row["net_pnl_usd"], row["return_pct"]) == (D("-5"), D("-5.2"), D("-2.6"))


def test_zero_bot_fill_outside_the_session_uses_the_broker_price(ctx: Context, make: Factory) -> None:
    before_open = dt.datetime(2024, 3, 5, 13, 0, tzinfo=UTC)  # equities open 14:30 UTC
    position = make.closed_trade(
        "pos-preopen", opened_at=before_open, closed_at=dt.datetime(2024, 3, 5, 19, 0, tzinfo=UTC),
        broker_entry=D("100.00"), broker_exit=D("101.00"),
    )
    assert position.entry_filled_avg_price == 0  # what the broker told the bot at 13:00
    run_loop(ctx, "trades", DS)
    row = trade_row(ctx, "pos-preopen")
    assert row["entry_price"] is None and row["broker_entry_price"] == D("100.00")
    assert row["entry_discrepancy_bps"] is None
    # (101 - 100) x 3 = 3; net 2.50; 2.50 / 300 x 100 = 0.8333...%
    assert (row["gross_pnl_usd"], row["net_pnl_usd"], row["return_pct"]) == (D("3"), D("2.5"), D("0.833333333"))


def test_fill_not_yet_reported_by_anyone_leaves_pnl_unknown(ctx: Context, make: Factory, clock: Clock) -> None:
    after_close = dt.datetime(2024, 3, 5, 22, 0, tzinfo=UTC)  # reported at the next open, 2024-03-06 14:30
    make.closed_trade("pos-late", closed_at=after_close, broker_entry=D("100.00"), broker_exit=D("99.00"))
    clock.set(dt.datetime(2024, 3, 5, 23, 0, tzinfo=UTC))
    run = run_loop(ctx, "trades", DS)
    assert run.status is RunStatus.SUCCEEDED
    row = trade_row(ctx, "pos-late")
    assert row["exit_price"] is None and row["broker_exit_price"] is None and row["broker_exit_qty"] is None
    assert row["gross_pnl_usd"] is None and row["net_pnl_usd"] is None and row["return_pct"] is None
    assert row["broker_entry_price"] == D("100.00")


def test_strategy_version_in_force_at_signal_creation(ctx: Context, make: Factory, clock: Clock) -> None:
    upgrade = dt.datetime(2024, 3, 5, 16, 0, tzinfo=UTC)
    make.strategy("momo", "1.1", deployed_at=upgrade)
    # opened after the upgrade, but its signal was created before it: version 1.0 was in force
    make.closed_trade("pos-old", version="1.0", opened_at=upgrade + dt.timedelta(minutes=30),
                      signal_created_at=upgrade - dt.timedelta(minutes=1))
    make.closed_trade("pos-at-boundary", version="1.1", opened_at=upgrade + dt.timedelta(minutes=5),
                      signal_created_at=upgrade)
    make.closed_trade("pos-new", version="1.1", opened_at=upgrade + dt.timedelta(hours=1))
    make.closed_trade("pos-wrong", version="1.0", opened_at=upgrade + dt.timedelta(hours=1))  # 1.1 was in force
    make.closed_trade("pos-ghost", strategy_id="ghost", version="1.0")  # never deployed

    run = run_loop(ctx, "trades", DS)

    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 5, 3, 2)
    assert trade_row(ctx, "pos-old")["strategy_sk"] == "momo:1.0"
    assert trade_row(ctx, "pos-at-boundary")["strategy_sk"] == "momo:1.1"
    assert trade_row(ctx, "pos-new")["strategy_sk"] == "momo:1.1"
    letters = {d["doc_id"]: d for d in rows(ctx, "dead_letters")}
    assert set(letters) == {"pos-wrong", "pos-ghost"}
    assert letters["pos-wrong"]["reason_code"] == "SCD_CONFLICT"
    assert [e["loc"] for e in json.loads(letters["pos-wrong"]["errors_json"])] == ["strategy_version"]
    assert "version 1.1 was in force" in letters["pos-wrong"]["errors_json"]
    assert letters["pos-ghost"]["reason_code"] == "SCD_CONFLICT"
    assert [e["loc"] for e in json.loads(letters["pos-ghost"]["errors_json"])] == ["strategy_id"]
    assert make.mark("pos-wrong")["dead_lettered_run_id"] == run.run_id
    assert make.mark("pos-wrong")["archived_run_id"] is None

    dim = {r["strategy_sk"]: r for r in rows(ctx, "dim_strategy")}
    assert dim["momo:1.0"]["valid_to"] == upgrade and dim["momo:1.0"]["is_current"] is False
    assert dim["momo:1.1"]["valid_from"] == upgrade and dim["momo:1.1"]["valid_to"] is None
    assert dim["momo:1.1"]["is_current"] is True


def test_a_version_deployed_between_runs_closes_the_old_interval(ctx: Context, make: Factory, clock: Clock) -> None:
    make.closed_trade("pos-a")
    run_loop(ctx, "trades", DS)
    assert rows(ctx, "dim_strategy")[0]["is_current"] is True

    upgrade = dt.datetime(2024, 3, 6, 12, 0, tzinfo=UTC)
    make.strategy("momo", "2.0", deployed_at=upgrade)
    make.closed_trade("pos-b", version="2.0", opened_at=dt.datetime(2024, 3, 6, 15, 0, tzinfo=UTC))
    clock.set(NIGHT_AFTER + dt.timedelta(days=1))
    run = run_loop(ctx, "trades", DS + dt.timedelta(days=1))
    assert run.status is RunStatus.SUCCEEDED and run.loaded == 1
    assert trade_row(ctx, "pos-a")["strategy_sk"] == "momo:1.0"  # loaded earlier, untouched
    assert trade_row(ctx, "pos-b")["strategy_sk"] == "momo:2.0"
    dim = {r["strategy_sk"]: r for r in rows(ctx, "dim_strategy")}
    assert dim["momo:1.0"]["valid_to"] == upgrade and dim["momo:1.0"]["is_current"] is False
    assert dim["momo:2.0"]["is_current"] is True and len(dim) == 2


def test_dispatch_selects_closed_unarchived_positions_up_to_the_day(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-today")
    make.closed_trade("pos-yesterday", opened_at=SESSION - dt.timedelta(days=1))
    make.closed_trade("pos-tomorrow", opened_at=SESSION + dt.timedelta(days=1))
    still_open = make.closed_trade("pos-open-later")
    make.raw_position("pos-open", still_open, status="OPEN", exit_order_id=None, exit_filled_avg_price=None,
                      closed_at=None)
    make.raw_position("pos-garbled-time", still_open, closed_at="yesterday-ish")

    run = dispatch(ctx, "trades", DS)
    assert run.status is RunStatus.RUNNING and run.published == 4  # today, yesterday, open-later, garbled
    deliver(ctx)
    archived = {r["position_id"] for r in rows(ctx, "fact_trades")}
    assert archived == {"pos-today", "pos-yesterday", "pos-open-later"}
    (letter,) = rows(ctx, "dead_letters")
    assert letter["doc_id"] == "pos-garbled-time" and letter["reason_code"] == "VALIDATION"
    assert [e["loc"] for e in json.loads(letter["errors_json"])] == ["closed_at"]

    # the next dispatch finds nothing already archived or dead-lettered
    assert dispatch(ctx, "trades", DS).published == 0


def test_missing_signal_and_unknown_orders_are_permanent(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-good")
    make.raw_position("pos-orphan", base, signal_id="sig-nobody")
    make.raw_position("pos-unknown-order", base, exit_order_id="never-sent")
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 1, 2)
    letters = {d["doc_id"]: d for d in rows(ctx, "dead_letters")}
    assert letters["pos-orphan"]["reason_code"] == "PERMANENT"
    assert [e["loc"] for e in json.loads(letters["pos-orphan"]["errors_json"])] == ["signal_id"]
    assert letters["pos-unknown-order"]["reason_code"] == "BROKER_REJECTED"
    assert [e["loc"] for e in json.loads(letters["pos-unknown-order"]["errors_json"])] == ["exit_order_id"]


def test_an_invalid_signal_is_reported_on_the_position(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-bad-barrier")
    make.closed_trade("pos-naive-signal")
    signal = make.signal_doc("sig-pos-bad-barrier")
    assert signal is not None
    ctx.hot.put("live_signals", "sig-pos-bad-barrier", {**signal, "stop_loss": signal["take_profit"]})
    signal = make.signal_doc("sig-pos-naive-signal")
    assert signal is not None
    ctx.hot.put("live_signals", "sig-pos-naive-signal", {**signal, "created_at": "2024-03-05T14:59:00"})
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.dead_lettered) == (RunStatus.PARTIAL, 2)
    letters = {d["doc_id"]: d for d in rows(ctx, "dead_letters")}
    barrier = letters["pos-bad-barrier"]
    assert barrier["reason_code"] == "VALIDATION"
    assert "a long signal needs stop_loss < signal_price < take_profit" in barrier["error_message"]
    assert [e["loc"] for e in json.loads(barrier["errors_json"])] == ["signal"]
    naive = letters["pos-naive-signal"]
    assert [e["loc"] for e in json.loads(naive["errors_json"])] == ["signal.created_at"]
