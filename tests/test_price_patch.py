"""Price patch as a pipeline: zero or missing fill prices in ``live_positions`` are filled from the broker.

The simulated broker reports an equity order placed outside the session as unfilled (price 0) until
the next open, as Alpaca does. Proves: a position with a zero or missing entry or exit price gets the
broker's price (and quantity, when it differs) written to its hot document, with one ``patch_audit``
row per changed value; an order the broker still reports unfilled (placed on a Saturday, before
Monday's open) is left alone and counted, then repaired once filled; an already archived trade has its
``fact_trades`` row corrected in the same run (prices, broker fills, discrepancy, P&L recomputed by
hand); a dry run writes nothing; a second run changes nothing; a failed warehouse write is repaired
by the next run; every run is recorded in ``job_metadata``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from goldthread.errors import RecordValidationError, WarehouseWriteError
from goldthread.ledger.runs import list_runs
from goldthread.loops.base import parse_time
from goldthread.models import FactTrade, PatchAudit
from goldthread.models.hot import RunStatus
from goldthread.patches.price_patch import patch_prices
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from goldthread.writer import POSITIONS

from tests.conftest import DS, UTC, Clock, Factory, rows

PRE_OPEN = dt.datetime(2024, 3, 5, 13, 0, tzinfo=UTC)  # Tuesday, before the 14:30 UTC open
SATURDAY = dt.datetime(2024, 3, 9, 10, 0, tzinfo=UTC)
SUNDAY = dt.datetime(2024, 3, 10, 3, 0, tzinfo=UTC)
MONDAY_OPEN = dt.datetime(2024, 3, 11, 14, 30, tzinfo=UTC)


def doc(ctx: Context, position_id: str) -> dict[str, Any]:
    data = ctx.hot.get(POSITIONS, position_id)
    assert data is not None
    return data


def price(value: Any) -> D | None:
    return None if value is None else D(str(value))


def audit(ctx: Context) -> dict[tuple[str, str, str], tuple[str | None, str | None]]:
    out = {}
    for r in rows(ctx, "patch_audit"):
        a = PatchAudit.model_validate(r)
        out[(a.table_name, a.record_key, a.column_name)] = (a.old_value, a.new_value)
    return out


def trade(ctx: Context, position_id: str) -> FactTrade:
    (row,) = rows(ctx, "fact_trades", "position_id = @p", p=position_id)
    return FactTrade.model_validate(row)


def test_zero_and_missing_prices_get_the_broker_fill(ctx: Context, make: Factory, clock: Clock) -> None:
    # placed before the open: the bot was told 0; the broker filled it at 14:30 at 101.25
    make.closed_trade("pos-zero", opened_at=PRE_OPEN, broker_entry=D("101.25"), broker_exit=D("104"))
    # the bot lost the exit price altogether
    make.closed_trade("pos-none", broker_entry=D("50"), broker_exit=D("51.5"))
    ctx.hot.update(POSITIONS, "pos-none", {"exit_filled_avg_price": None})
    # the bot recorded 4 shares and no price; the broker filled 5
    make.closed_trade("pos-qty", qty=D(5), opened_at=PRE_OPEN, broker_entry=D("20"), broker_exit=D("21"))
    ctx.hot.update(POSITIONS, "pos-qty", {"qty": "4"})
    make.closed_trade("pos-fine", broker_entry=D("10"), broker_exit=D("11"))  # nothing to repair
    assert price(doc(ctx, "pos-zero")["entry_filled_avg_price"]) == 0
    fine_before = doc(ctx, "pos-fine")

    report = patch_prices(ctx)

    assert price(doc(ctx, "pos-zero")["entry_filled_avg_price"]) == D("101.25")
    assert price(doc(ctx, "pos-none")["exit_filled_avg_price"]) == D("51.5")
    assert (price(doc(ctx, "pos-qty")["entry_filled_avg_price"]), price(doc(ctx, "pos-qty")["qty"])) == (
        D(20), D(5)
    )
    assert doc(ctx, "pos-fine") == fine_before
    assert price(doc(ctx, "pos-zero")["exit_filled_avg_price"]) == D(104)  # untouched: it was known
    assert report.unfilled == [] and report.warehouse_rows == 0
    assert audit(ctx) == {
        ("live_positions", "pos-zero", "entry_filled_avg_price"): ("0", "101.25"),
        ("live_positions", "pos-none", "exit_filled_avg_price"): (None, "51.5"),
        ("live_positions", "pos-qty", "entry_filled_avg_price"): ("0", "20"),
        ("live_positions", "pos-qty", "qty"): ("4", "5"),
    }
    run = report.run
    assert run is not None
    assert (run.loop, run.ds, run.status) == ("patch_prices", clock().date(), RunStatus.SUCCEEDED)
    assert (run.published, run.loaded, run.duplicates, run.dead_lettered) == (3, 3, 0, 0)
    assert run.details["unfilled"] == 0 and run.details["fact_trades_corrected"] == 0
    for r in rows(ctx, "patch_audit"):
        assert (r["patch"], r["patch_run_id"], r["ds"]) == ("patch_prices", run.run_id, clock().date())
        assert parse_time(r["changed_at"]) == clock()


def test_orders_still_unfilled_are_left_alone_and_counted(ctx: Context, make: Factory, clock: Clock) -> None:
    # an equity round trip on a Saturday: the broker fills both orders at Monday's open
    make.closed_trade("pos-sat", opened_at=SATURDAY, closed_at=SATURDAY + dt.timedelta(hours=2),
                      broker_entry=D("100"), broker_exit=D("110"))
    clock.set(SUNDAY)
    before = doc(ctx, "pos-sat")

    report = patch_prices(ctx)

    assert report.unfilled == ["pos-sat entry order pos-sat-entry", "pos-sat exit order pos-sat-exit"]
    assert report.changes == []
    assert doc(ctx, "pos-sat") == before
    assert rows(ctx, "patch_audit") == []
    assert report.run is not None and report.run.details["unfilled"] == 2 and report.run.published == 0

    clock.set(MONDAY_OPEN)
    monday = patch_prices(ctx)
    assert monday.unfilled == []
    assert (price(doc(ctx, "pos-sat")["entry_filled_avg_price"]), price(doc(ctx, "pos-sat")["exit_filled_avg_price"])
            ) == (D(100), D(110))


def test_an_archived_trade_is_corrected_in_the_warehouse(ctx: Context, make: Factory, clock: Clock) -> None:
    make.closed_trade("pos-sat", opened_at=SATURDAY, closed_at=SATURDAY + dt.timedelta(hours=2),
                      broker_entry=D("100"), broker_exit=D("110"), qty=D(3), fee=D("0.50"))
    clock.set(SUNDAY)
    archive = run_loop(ctx, "trades", SATURDAY.date())  # archived while the broker still reports nothing
    assert archive.loaded == 1
    stale = trade(ctx, "pos-sat")
    assert (stale.entry_price, stale.broker_entry_price, stale.gross_pnl_usd, stale.net_pnl_usd) == (
        None, None, None, None
    )

    clock.set(MONDAY_OPEN + dt.timedelta(hours=1))
    report = patch_prices(ctx)

    fixed = trade(ctx, "pos-sat")
    assert (fixed.entry_price, fixed.exit_price) == (D(100), D(110))
    assert (fixed.broker_entry_price, fixed.broker_exit_price) == (D(100), D(110))
    assert (fixed.broker_entry_qty, fixed.broker_exit_qty) == (D(3), D(3))
    assert (fixed.entry_discrepancy_bps, fixed.exit_discrepancy_bps) == (D(0), D(0))
    # (110 - 100) x 3 = 30; net 30 - 0.50 (the estimate: fees not posted yet) = 29.50; 29.50 / 300 = 9.8333 %
    assert (fixed.gross_pnl_usd, fixed.net_pnl_usd, fixed.return_pct) == (D(30), D("29.5"), D("9.833333333"))
    assert (fixed.run_id, fixed.fee_finalized, fixed.qty) == (archive.run_id, False, D(3))  # nothing else moves
    assert report.warehouse_rows == 1
    assert report.run is not None and report.run.details["fact_trades_corrected"] == 1
    trail = audit(ctx)
    assert trail[("fact_trades", "pos-sat", "gross_pnl_usd")] == (None, "30")
    assert trail[("fact_trades", "pos-sat", "entry_price")] == (None, "100")
    assert trail[("fact_trades", "pos-sat", "broker_exit_price")] == (None, "110")
    assert trail[("live_positions", "pos-sat", "exit_filled_avg_price")] == ("0", "110")
    assert {k[2] for k in trail if k[0] == "fact_trades"} == {
        "entry_price", "exit_price", "broker_entry_price", "broker_exit_price", "broker_entry_qty",
        "broker_exit_qty", "entry_discrepancy_bps", "exit_discrepancy_bps", "gross_pnl_usd", "net_pnl_usd",
        "return_pct", "price_discrepancy_flagged",
    }
    assert trail[("fact_trades", "pos-sat", "price_discrepancy_flagged")] == (None, "False")  # now comparable: 0 bps


def test_an_archived_trade_with_a_corrected_quantity(ctx: Context, make: Factory, clock: Clock) -> None:
    make.closed_trade("pos-q", qty=D(5), opened_at=SATURDAY, closed_at=SATURDAY + dt.timedelta(hours=2),
                      broker_entry=D(20), broker_exit=D(22), fee=D(0))
    ctx.hot.update(POSITIONS, "pos-q", {"qty": "4"})  # the bot recorded 4 of the 5 shares the broker fills
    clock.set(SUNDAY)
    # archived while the broker reports nothing filled yet (Monday's open): no filled quantity to compare
    run_loop(ctx, "trades", SATURDAY.date())
    assert (trade(ctx, "pos-q").qty, trade(ctx, "pos-q").gross_pnl_usd) == (D(4), None)
    clock.set(MONDAY_OPEN + dt.timedelta(hours=1))

    patch_prices(ctx)

    fixed = trade(ctx, "pos-q")  # the warehouse follows the hot document: 5 x (22 - 20) = 10
    assert (fixed.qty, fixed.entry_price, fixed.gross_pnl_usd, fixed.net_pnl_usd) == (D(5), D(20), D(10), D(10))
    assert fixed.return_pct == D(10)  # 10 / (20 x 5) x 100
    assert price(doc(ctx, "pos-q")["qty"]) == D(5)


def test_an_archived_trade_already_priced_by_the_broker_gets_its_bot_price(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-zero", opened_at=PRE_OPEN, broker_entry=D("101.25"), broker_exit=D("104"), qty=D(2))
    run_loop(ctx, "trades", DS)  # the fill was reported by then: P&L is already at the broker's price
    before = trade(ctx, "pos-zero")
    assert (before.entry_price, before.broker_entry_price, before.gross_pnl_usd) == (None, D("101.25"), D("5.5"))

    patch_prices(ctx)

    after = trade(ctx, "pos-zero")
    assert (after.entry_price, after.entry_discrepancy_bps, after.gross_pnl_usd) == (D("101.25"), D(0), D("5.5"))
    assert {k[2] for k in audit(ctx) if k[0] == "fact_trades"} == {"entry_price", "entry_discrepancy_bps"}


def test_a_dry_run_writes_nothing(ctx: Context, make: Factory, clock: Clock) -> None:
    make.closed_trade("pos-sat", opened_at=SATURDAY, closed_at=SATURDAY + dt.timedelta(hours=2),
                      broker_entry=D("100"), broker_exit=D("110"))
    clock.set(SUNDAY)
    run_loop(ctx, "trades", SATURDAY.date())
    clock.set(MONDAY_OPEN)
    hot_before, wh_before = doc(ctx, "pos-sat"), rows(ctx, "fact_trades")
    runs_before = list_runs(ctx)

    report = patch_prices(ctx, dry_run=True)

    assert report.changes == [{"position_id": "pos-sat", "entry_filled_avg_price": "100",
                               "exit_filled_avg_price": "110"}]
    assert report.warehouse_rows == 1 and report.run is None
    assert doc(ctx, "pos-sat") == hot_before
    assert rows(ctx, "fact_trades") == wh_before
    assert rows(ctx, "patch_audit") == []
    assert list_runs(ctx) == runs_before


def test_a_second_run_changes_nothing(ctx: Context, make: Factory, clock: Clock) -> None:
    make.closed_trade("pos-sat", opened_at=SATURDAY, closed_at=SATURDAY + dt.timedelta(hours=2),
                      broker_entry=D("100"), broker_exit=D("110"))
    make.closed_trade("pos-later", opened_at=MONDAY_OPEN + dt.timedelta(hours=7),  # after Monday's close
                      broker_entry=D("7"), broker_exit=D("8"))
    clock.set(SUNDAY)
    run_loop(ctx, "trades", SATURDAY.date())
    clock.set(MONDAY_OPEN + dt.timedelta(hours=8))
    first = patch_prices(ctx)
    assert [c["position_id"] for c in first.changes] == ["pos-sat"]
    assert len(first.unfilled) == 2  # pos-later fills on Tuesday
    state = (ctx.hot.get(POSITIONS, "pos-sat"), rows(ctx, "fact_trades"), rows(ctx, "patch_audit"))

    clock.advance(dt.timedelta(minutes=5))
    second = patch_prices(ctx)

    assert (second.changes, second.warehouse_rows) == ([], 0)
    assert second.unfilled == first.unfilled
    assert (ctx.hot.get(POSITIONS, "pos-sat"), rows(ctx, "fact_trades"), rows(ctx, "patch_audit")) == state
    assert second.run is not None and (second.run.status, second.run.published) == (RunStatus.SUCCEEDED, 0)
    assert len(list_runs(ctx, "patch_prices")) == 2


def test_a_failed_warehouse_write_is_repaired_by_the_next_run(
    ctx: Context, make: Factory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    make.closed_trade("pos-sat", opened_at=SATURDAY, closed_at=SATURDAY + dt.timedelta(hours=2),
                      broker_entry=D("100"), broker_exit=D("110"))
    clock.set(SUNDAY)
    run_loop(ctx, "trades", SATURDAY.date())
    clock.set(MONDAY_OPEN)
    warehouse = ctx.warehouse

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise WarehouseWriteError("BigQuery is briefly unavailable")

    monkeypatch.setattr(warehouse, "upsert_rows", refuse)
    with pytest.raises(WarehouseWriteError):
        patch_prices(ctx)
    (failed,) = list_runs(ctx, "patch_prices")
    assert failed.status is RunStatus.FAILED and "briefly unavailable" in (failed.error or "")
    monkeypatch.undo()

    clock.advance(dt.timedelta(minutes=5))
    patch_prices(ctx)  # the position must still be found, so that its archived row gets corrected

    assert trade(ctx, "pos-sat").gross_pnl_usd == D(30)
    assert price(doc(ctx, "pos-sat")["entry_filled_avg_price"]) == D(100)


def test_open_positions_and_invalid_documents(ctx: Context, make: Factory) -> None:
    closed = make.closed_trade("pos-base", broker_entry=D(10), broker_exit=D(11))
    # an OPEN position with a zero entry and no exit yet: only the entry is repaired
    make.raw_position("pos-open", closed, entry_filled_avg_price="0", status="OPEN", exit_order_id=None,
                      exit_filled_avg_price=None, closed_at=None)
    # an invalid document (negative quantity) is skipped, not fatal; Loop A dead-letters it
    make.raw_position("pos-bad", closed, entry_filled_avg_price="0", qty="-5")

    report = patch_prices(ctx)

    assert [c["position_id"] for c in report.changes] == ["pos-open"]
    assert price(doc(ctx, "pos-open")["entry_filled_avg_price"]) == D(10)
    assert doc(ctx, "pos-open")["exit_filled_avg_price"] is None
    assert price(doc(ctx, "pos-bad")["entry_filled_avg_price"]) == 0
    assert report.run is not None and report.run.status is RunStatus.SUCCEEDED


def test_a_position_its_orders_contradict_is_not_repaired_from_them(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-base", broker_entry=D(10), broker_exit=D(11))
    # written by a buggy bot: AAPL's orders copied under its own ids, but the position says MSFT
    make.raw_position("pos-msft", base, symbol="MSFT", entry_filled_avg_price="0")
    before = doc(ctx, "pos-msft")

    report = patch_prices(ctx)

    assert report.changes == [] and doc(ctx, "pos-msft") == before  # never given AAPL's price
    (found,) = report.mismatched
    assert found["position_id"] == "pos-msft"
    assert [(e["loc"], e["bot"], e["broker"]) for e in found["errors"]] == [("symbol", "MSFT", "AAPL")] * 2
    assert report.run is not None and report.run.details["mismatched"] == 1


def test_a_corrected_row_that_is_invalid_fails_the_run_naming_it(ctx: Context, make: Factory, clock: Clock) -> None:
    # filled on Monday at prices whose P&L, 100 x (2e27 - 1e27) = 1e29, is beyond the warehouse's 38 digits
    make.closed_trade("pos-huge", opened_at=SATURDAY, closed_at=SATURDAY + dt.timedelta(hours=2), qty=D(100),
                      broker_entry=D("1e27"), broker_exit=D("2e27"))
    clock.set(SUNDAY)
    assert run_loop(ctx, "trades", SATURDAY.date()).loaded == 1  # prices unknown yet: a valid row
    before_rows, before_doc = rows(ctx, "fact_trades"), doc(ctx, "pos-huge")
    clock.set(MONDAY_OPEN + dt.timedelta(hours=1))

    with pytest.raises(RecordValidationError, match="FactTrade 'pos-huge'"):
        patch_prices(ctx)

    assert rows(ctx, "fact_trades") == before_rows and doc(ctx, "pos-huge") == before_doc
    assert rows(ctx, "patch_audit") == []
    (run,) = list_runs(ctx, "patch_prices")
    assert run.status is RunStatus.FAILED and run.error is not None and "pos-huge" in run.error
