"""Fee patch (T+1) as a pipeline: trades archived by Loop A get the fees the simulated broker posted.

The broker posts Alpaca-style FEE (REG, TAF, CAT, rounded up to the cent per day) and CFEE activities
(crypto, in the asset received); the patch allocates them back to ``fact_trades``. Proves, with
hand-computed figures: the allocation adds up exactly to the posted totals for equities and crypto
(trades with legs on two days included); a day not posted yet leaves its trades unfinalised and
reported; a fee posted late (T+2) is left by the T+1 run and picked up by the next; a second run
changes nothing and audits nothing; a dry run writes nothing; ``net_pnl_usd = gross - actual fee``;
every changed value has one complete ``patch_audit`` row; the run is recorded in ``job_metadata``
and all updates are one upsert.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from goldthread.analytics.fees import FeeSchedule, FeeType, Fill, allocate_fees, daily_fee_activities, fee_type_of
from goldthread.errors import RecordValidationError
from goldthread.ledger.runs import list_runs
from goldthread.loops.order_claims import CLAIMS
from goldthread.models import AssetClass, FactTrade, PatchAudit, Side
from goldthread.models.broker import FeeActivity
from goldthread.models.hot import RunStatus
from goldthread.models.warehouse import row_id_for
from goldthread.patches import fee_patch
from goldthread.patches.fee_patch import DayFees, day_fees, order_owners, owned_legs, patch_fees
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DS, SESSION, UTC, Clock, Factory, rows

NEXT = DS + dt.timedelta(days=1)  # Wednesday 6 March
T2 = dt.datetime(2024, 3, 7, 3, tzinfo=UTC)  # both days' fees posted (each at 02:00 the next day)


def posted_usd(activity: FeeActivity) -> D:
    """What an activity charged in USD: FEE and USD CFEE by amount, an asset CFEE at its price."""
    if activity.net_amount != 0:
        return -activity.net_amount
    assert activity.qty is not None and activity.price is not None
    return -activity.qty * activity.price


def trades(ctx: Context) -> dict[str, FactTrade]:
    return {r["position_id"]: FactTrade.model_validate(r) for r in rows(ctx, "fact_trades")}


def audits(ctx: Context) -> list[PatchAudit]:
    return [PatchAudit.model_validate(r) for r in rows(ctx, "patch_audit")]


def count_upserts(ctx: Context) -> list[int]:
    """Record the number of rows of every ``upsert_rows`` call on the warehouse."""
    calls: list[int] = []
    warehouse = ctx.warehouse
    original = warehouse.upsert_rows

    def upsert(model: Any, rows_: Any, columns: Any) -> int:
        if rows_:
            calls.append(len(rows_))
        return original(model, rows_, columns)

    warehouse.upsert_rows = upsert  # type: ignore[method-assign]
    return calls


def equity_pair(make: Factory) -> None:
    """Two equity round trips on DS, worked out in ``test_equity_fees_by_hand``."""
    make.closed_trade("pos-a", qty=D(10), broker_entry=D(100), broker_exit=D(110))
    make.closed_trade("pos-b", qty=D(30), broker_entry=D(50), broker_exit=D(50))


def test_equity_fees_by_hand(ctx: Context, make: Factory, clock: Clock) -> None:
    equity_pair(make)
    run_loop(ctx, "trades", DS)
    upserts = count_upserts(ctx)

    report = patch_fees(ctx, DS)

    # posted on DS: REG (1100 + 1500) x 0.0000278 = 0.07228 -> 0.08; TAF 40 x 0.000166 = 0.00664 -> 0.01;
    # CAT 80 x 0.000035 = 0.0028 -> 0.01. REG by sell notional: 8 cents x 0.03058 / 0.07228 = 3.38 -> 3 for A,
    # 4.62 -> 5 for B (largest remainder); TAF and CAT: their single cent goes to B (30 of 40 shares sold,
    # 60 of 80 shares traded).
    by_id = trades(ctx)
    a, b = by_id["pos-a"], by_id["pos-b"]
    assert (a.actual_fee_usd, b.actual_fee_usd) == (D("0.03"), D("0.07"))
    assert a.fee_finalized and b.fee_finalized
    assert (a.gross_pnl_usd, a.net_pnl_usd, a.return_pct) == (D(100), D("99.97"), D("9.997"))  # 99.97 / 1000
    assert (b.gross_pnl_usd, b.net_pnl_usd, b.return_pct) == (D(0), D("-0.07"), D("-0.004666667"))  # / 1500
    assert a.est_fee_usd == D("0.5")  # the estimate stays beside the actual fee
    assert sum(posted_usd(x) for x in ctx.broker.get_fee_activities(DS)) == D("0.10")

    run = report.run
    assert run is not None
    assert (run.loop, run.ds, run.status) == ("patch_fees", DS, RunStatus.SUCCEEDED)
    assert (run.published, run.loaded, run.duplicates, run.dead_lettered) == (2, 2, 0, 0)
    assert run.finished_at == clock() and run.started_at == clock()
    assert run.details["unfinalised"] == 0 and run.details["days"] == {"2024-03-05": "posted"}
    assert D(run.details["fees_usd"]) == D("0.10")
    assert [r.run_id for r in list_runs(ctx, "patch_fees")] == [run.run_id]
    assert upserts == [2]  # all updates in one statement

    # one audit row per changed value, each naming table, record, column, old and new value and the run
    got = {(x.record_key, x.column_name): (x.old_value, x.new_value) for x in audits(ctx)}
    assert got == {
        ("pos-a", "actual_fee_usd"): (None, "0.03"),
        ("pos-a", "fee_finalized"): ("False", "True"),
        ("pos-a", "net_pnl_usd"): ("99.5", "99.97"),
        ("pos-a", "return_pct"): ("9.95", "9.997"),
        ("pos-b", "actual_fee_usd"): (None, "0.07"),
        ("pos-b", "fee_finalized"): ("False", "True"),
        ("pos-b", "net_pnl_usd"): ("-0.5", "-0.07"),
        ("pos-b", "return_pct"): ("-0.033333333", "-0.004666667"),
    }
    for row in audits(ctx):
        assert (row.patch, row.patch_run_id, row.table_name) == ("patch_fees", run.run_id, "fact_trades")
        assert (row.changed_at, row.ds) == (clock(), clock().date())
    assert {c["position_id"]: D(c["actual_fee_usd"]) for c in report.changes} == {"pos-a": D("0.03"),
                                                                                   "pos-b": D("0.07")}


def test_crypto_fees_in_the_asset_received_are_converted_at_the_fill_price(ctx: Context, make: Factory) -> None:
    crypto = {"asset_class": AssetClass.CRYPTO}
    make.closed_trade("pos-btc", symbol="BTC/USD", qty=D("0.5"), broker_entry=D(60000), broker_exit=D(62000),
                      **crypto)
    make.closed_trade("pos-eth", symbol="ETH/USD", qty=D("0.2"), broker_entry=D(3000), broker_exit=D(2900),
                      **crypto)
    make.closed_trade("pos-sol", symbol="SOL/USD", side=Side.SHORT, qty=D(10), broker_entry=D(150),
                      broker_exit=D(140), **crypto)
    run_loop(ctx, "trades", DS)

    patch_fees(ctx, DS)

    # 25 bps: a buy pays in the coin (0.5 x 0.0025 = 0.00125 BTC at 60000 = 75), a sell in USD (31000 x 0.0025)
    by_id = trades(ctx)
    assert by_id["pos-btc"].actual_fee_usd == D("152.5")  # 75 + 77.50
    assert by_id["pos-eth"].actual_fee_usd == D("2.95")  # 0.0005 ETH at 3000 = 1.50, + 580 x 0.0025 = 1.45
    assert by_id["pos-sol"].actual_fee_usd == D("7.25")  # short: sells for 1500 -> 3.75; buys 10 -> 0.025 SOL x 140
    assert by_id["pos-btc"].net_pnl_usd == D(1000) - D("152.5")  # (62000 - 60000) x 0.5 - fee
    assert by_id["pos-sol"].net_pnl_usd == D(100) - D("7.25")  # (150 - 140) x 10 - fee
    activities = ctx.broker.get_fee_activities(DS)
    assert {a.activity_type for a in activities} == {"CFEE"}
    assert sum(t.actual_fee_usd for t in by_id.values()) == sum(posted_usd(a) for a in activities) == D("162.7")


def test_allocation_sums_to_the_posted_totals_across_days(ctx: Context, make: Factory, clock: Clock) -> None:
    crypto = {"asset_class": AssetClass.CRYPTO}
    equity_pair(make)
    make.closed_trade("pos-btc", symbol="BTC/USD", qty=D("0.5"), broker_entry=D(60000), broker_exit=D(62000),
                      **crypto)
    make.closed_trade("pos-sol", symbol="SOL/USD", side=Side.SHORT, qty=D(10), broker_entry=D(150),
                      broker_exit=D(140), **crypto)
    # legs on two days: opened on DS, closed on the next day
    make.closed_trade("pos-f", qty=D(10), opened_at=SESSION + dt.timedelta(hours=1),
                      closed_at=SESSION + dt.timedelta(days=1), broker_entry=D(100), broker_exit=D(120))
    make.closed_trade("pos-g", symbol="BTC/USD", qty=D("0.1"), opened_at=SESSION + dt.timedelta(hours=5),
                      closed_at=SESSION + dt.timedelta(hours=10), broker_entry=D(61000), broker_exit=D(63000),
                      **crypto)
    clock.set(T2)
    run_loop(ctx, "trades", NEXT)

    report = patch_fees(ctx, NEXT)

    by_id = trades(ctx)
    assert all(t.fee_finalized for t in by_id.values()) and report.unfinalised == []
    days = (DS, NEXT)
    posted = sum(posted_usd(a) for d in days for a in ctx.broker.get_fee_activities(d))
    assert sum(t.actual_fee_usd for t in by_id.values()) == posted
    for day in days:  # and each day's allocation to its legs adds up to that day's postings
        info = day_fees(ctx, day, FeeSchedule())
        assert sum(info.allocations.values()) == sum(posted_usd(a) for a in ctx.broker.get_fee_activities(day))
    assert "pos-f-entry" in day_fees(ctx, DS, FeeSchedule()).allocations  # allocations are per broker order
    assert "pos-f-exit" in day_fees(ctx, NEXT, FeeSchedule()).allocations

    # by hand: on the next day pos-f's sell is alone: REG 1200 x 0.0000278 = 0.03336 -> 0.04, TAF 0.00166 -> 0.01,
    # CAT 0.00035 -> 0.01; its buy on DS gets none of DS's single CAT cent (pos-b's 60 shares win it).
    assert by_id["pos-f"].actual_fee_usd == D("0.06")
    assert (by_id["pos-a"].actual_fee_usd, by_id["pos-b"].actual_fee_usd) == (D("0.03"), D("0.07"))
    # pos-g: 0.1 x 0.0025 = 0.00025 BTC at 61000 = 15.25, then 6300 x 0.0025 = 15.75 (after midnight)
    assert by_id["pos-g"].actual_fee_usd == D("31")
    assert by_id["pos-btc"].actual_fee_usd == D("152.5")
    assert report.days == {"2024-03-05": "posted", "2024-03-06": "posted"}


def test_a_trade_whose_exit_day_is_not_posted_stays_unfinalised(ctx: Context, make: Factory, clock: Clock) -> None:
    make.closed_trade("pos-a", qty=D(10), broker_entry=D(100), broker_exit=D(110))
    make.closed_trade("pos-f", qty=D(10), opened_at=SESSION + dt.timedelta(hours=1),
                      closed_at=SESSION + dt.timedelta(days=1), broker_entry=D(100), broker_exit=D(120))
    clock.set(dt.datetime(2024, 3, 6, 23, tzinfo=UTC))  # DS is posted, the 6th is not (02:00 on the 7th)
    run_loop(ctx, "trades", NEXT)

    report = patch_fees(ctx, NEXT)

    assert report.unfinalised == [{"position_id": "pos-f", "why": "exit day 2024-03-06 not posted"}]
    assert report.days == {"2024-03-05": "posted", "2024-03-06": "not posted"}
    by_id = trades(ctx)
    # DS by hand: REG 0.03058 -> 0.04 and TAF -> 0.01 are pos-a's sell; CAT (20 + 10 shares) -> 0.01 goes to
    # pos-a's 20 shares rather than pos-f's 10
    assert (by_id["pos-a"].fee_finalized, by_id["pos-a"].actual_fee_usd) == (True, D("0.06"))
    assert (by_id["pos-f"].fee_finalized, by_id["pos-f"].actual_fee_usd) == (False, None)
    assert by_id["pos-f"].net_pnl_usd == D(200) - D("0.5")  # still on the estimate
    assert {x.record_key for x in audits(ctx)} == {"pos-a"}
    assert report.run is not None and report.run.details["unfinalised"] == 1

    clock.set(T2)
    later = patch_fees(ctx, NEXT)
    assert later.unfinalised == [] and [c["position_id"] for c in later.changes] == ["pos-f"]
    f = trades(ctx)["pos-f"]
    assert (f.fee_finalized, f.actual_fee_usd, f.net_pnl_usd) == (True, D("0.06"), D("199.94"))


def test_a_fee_posted_late_is_picked_up_by_the_next_run(ctx: Context, make: Factory, clock: Clock) -> None:
    ctx.broker.delay_fee_posting(DS, dt.datetime(2024, 3, 7, 6, tzinfo=UTC))  # T+2 instead of T+1
    make.closed_trade("pos-a", qty=D(10), broker_entry=D(100), broker_exit=D(110))
    run_loop(ctx, "trades", DS)
    before = trades(ctx)

    t1 = patch_fees(ctx, DS)  # the night after DS: nothing posted yet
    assert t1.changes == []
    assert t1.unfinalised == [{"position_id": "pos-a", "why": "entry day 2024-03-05 not posted; "
                                                               "exit day 2024-03-05 not posted"}]
    assert t1.days == {"2024-03-05": "not posted"}
    assert trades(ctx) == before and audits(ctx) == []
    assert t1.run is not None and t1.run.status is RunStatus.SUCCEEDED and t1.run.published == 0

    clock.set(dt.datetime(2024, 3, 7, 7, tzinfo=UTC))  # T+2, after the late posting
    t2 = patch_fees(ctx, DS)
    assert t2.unfinalised == [] and t2.days == {"2024-03-05": "posted"}
    a = trades(ctx)["pos-a"]
    assert (a.fee_finalized, a.actual_fee_usd, a.net_pnl_usd) == (True, D("0.06"), D("99.94"))
    assert {x.patch_run_id for x in audits(ctx)} == {t2.run.run_id}


def test_a_second_run_changes_nothing_and_audits_nothing(ctx: Context, make: Factory, clock: Clock) -> None:
    equity_pair(make)
    run_loop(ctx, "trades", DS)
    first = patch_fees(ctx, DS)
    assert len(first.changes) == 2
    after_first, audit_rows = rows(ctx, "fact_trades"), rows(ctx, "patch_audit")

    clock.advance(dt.timedelta(hours=1))
    second = patch_fees(ctx, DS)

    assert (second.changes, second.unfinalised) == ([], [])
    assert rows(ctx, "fact_trades") == after_first
    assert rows(ctx, "patch_audit") == audit_rows
    assert second.run is not None
    assert (second.run.status, second.run.published, second.run.loaded) == (RunStatus.SUCCEEDED, 0, 0)
    assert len(list_runs(ctx, "patch_fees")) == 2


def test_a_dry_run_writes_nothing(ctx: Context, make: Factory) -> None:
    equity_pair(make)
    run_loop(ctx, "trades", DS)
    before = rows(ctx, "fact_trades")

    report = patch_fees(ctx, DS, dry_run=True)

    assert {c["position_id"]: D(c["actual_fee_usd"]) for c in report.changes} == {"pos-a": D("0.03"),
                                                                                   "pos-b": D("0.07")}
    assert report.run is None
    assert list_runs(ctx, "patch_fees") == []
    assert rows(ctx, "patch_audit") == []
    assert rows(ctx, "fact_trades") == before
    # and the real run afterwards does exactly what the dry run announced
    real = patch_fees(ctx, DS)
    assert real.changes == report.changes


def test_canary_trades_are_never_patched(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-a", qty=D(10), broker_entry=D(100), broker_exit=D(110))
    ctx.hot.update("live_positions", "pos-a", {"is_canary": True})
    run_loop(ctx, "trades", DS)
    report = patch_fees(ctx, DS)
    assert report.changes == [] and audits(ctx) == []
    assert trades(ctx)["pos-a"].fee_finalized is False


# --- one order, one fee ----------------------------------------------------------------------------


def legacy_copy(ctx: Context, position_id: str, of: str) -> FactTrade:
    """A second row naming ``of``'s orders, as Loop A wrote them before orders were claimed."""
    (row,) = [t for t in trades(ctx).values() if t.position_id == of]
    copy = FactTrade(**{**row.model_dump(), "row_id": row_id_for("fact_trades", position_id),
                        "position_id": position_id})
    ctx.warehouse.insert_rows(FactTrade, [copy])
    return copy


def test_an_order_named_by_two_legacy_trades_is_charged_once(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-a", qty=D(10), broker_entry=D(100), broker_exit=D(110))
    run_loop(ctx, "trades", DS)
    legacy_copy(ctx, "pos-0", of="pos-a")  # sorts before pos-a
    for leg in ("entry", "exit"):  # a warehouse loaded before claims: nobody holds them
        ctx.hot.delete(CLAIMS, f"pos-a-{leg}")

    report = patch_fees(ctx, DS)

    # pos-a's orders alone on DS: REG 1100 x 0.0000278 -> 0.04, TAF 10 x 0.000166 -> 0.01, CAT 20 x 0.000035
    # -> 0.01: 0.06, charged to the first trade by position_id, never to both
    by_id = trades(ctx)
    assert (by_id["pos-0"].fee_finalized, by_id["pos-0"].actual_fee_usd) == (True, D("0.06"))
    assert (by_id["pos-a"].fee_finalized, by_id["pos-a"].actual_fee_usd) == (False, None)
    assert report.unfinalised == [{"position_id": "pos-a", "why": (
        "entry order pos-a-entry backs position pos-0, which gets its fee; "
        "exit order pos-a-exit backs position pos-0, which gets its fee")}]
    posted = sum(posted_usd(a) for a in ctx.broker.get_fee_activities(DS))
    assert posted == D("0.06")
    assert sum(t.actual_fee_usd or D(0) for t in by_id.values()) == posted


def test_the_claim_holder_gets_the_fee_of_its_order(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-a", qty=D(10), broker_entry=D(100), broker_exit=D(110))
    run_loop(ctx, "trades", DS)  # pos-a claims its two orders
    legacy_copy(ctx, "pos-0", of="pos-a")

    report = patch_fees(ctx, DS)

    by_id = trades(ctx)
    assert (by_id["pos-a"].actual_fee_usd, by_id["pos-0"].actual_fee_usd) == (D("0.06"), None)
    assert [u["position_id"] for u in report.unfinalised] == ["pos-0"]
    assert "backs position pos-a" in report.unfinalised[0]["why"]


def test_a_patch_that_would_write_an_invalid_row_fails_naming_it(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    make.closed_trade("pos-a", qty=D(10), broker_entry=D(100), broker_exit=D(110))
    run_loop(ctx, "trades", DS)
    before = rows(ctx, "fact_trades")
    # a fee beyond the warehouse's 38 digits: the rebuilt row cannot be valid
    monkeypatch.setattr(fee_patch, "day_fees", lambda ctx_, day, schedule: DayFees(
        day, posted=True, allocations={"pos-a-entry": D("1e30"), "pos-a-exit": D(0)}))

    with pytest.raises(RecordValidationError, match="FactTrade 'pos-a'"):
        patch_fees(ctx, DS)

    assert rows(ctx, "fact_trades") == before and audits(ctx) == []
    (run,) = list_runs(ctx, "patch_fees")
    assert run.status is RunStatus.FAILED and run.error is not None and "pos-a" in run.error


# --- property: every posted cent is allocated once -----------------------------------------------------

DAYS = (DS, NEXT)
SCHEDULE = FeeSchedule()


@st.composite
def fills_and_trades(draw: st.DrawFn) -> tuple[list[Fill], list[tuple[str, str, str]], dict[str, str]]:
    """Orders filled on two days (equity, option, crypto), trades naming them (several may name one order,
    a trade may name one order twice), and claims on some orders (by a trade naming it, or a stale one)."""
    fills = []
    for i in range(draw(st.integers(min_value=1, max_value=8))):
        kind = draw(st.sampled_from(["equity", "option", "crypto"]))
        symbol = {"equity": "AAPL", "option": "AAPL240119C00190000"}.get(kind) or draw(
            st.sampled_from(["BTC/USD", "ETHUSD"]))
        qty = (draw(st.decimals(min_value=D("0.0001"), max_value=D(50), places=4)) if kind == "crypto"
               else D(draw(st.integers(min_value=1, max_value=5000))))
        price = draw(st.decimals(min_value=D("0.01"), max_value=D(70000), places=2))
        fills.append(Fill(key=f"o{i}", symbol=symbol, asset_class=kind, side=draw(st.sampled_from(["buy", "sell"])),
                          qty=qty, price=price, day=draw(st.sampled_from(DAYS))))
    ids = [f.key for f in fills]
    naming = [(f"p{j}", draw(st.sampled_from(ids)), draw(st.sampled_from(ids)))
              for j in range(draw(st.integers(min_value=1, max_value=8)))]
    for order_id in ids:  # every fill belongs to some trade (the patch only sees fills its trades name)
        if not any(order_id in t[1:] for t in naming):
            naming.append((f"p{len(naming)}", order_id, draw(st.sampled_from(ids))))
    positions = [t[0] for t in naming] + ["p-stale"]
    claims = {oid: draw(st.sampled_from(positions)) for oid in ids if draw(st.booleans())}
    return fills, naming, claims


def posted_by_day_and_kind(activities: list[FeeActivity]) -> dict[tuple[dt.date, FeeType], D]:
    """What the broker posted, per day and fee kind, in USD (an asset CFEE at its price, to 9 places)."""
    out: dict[tuple[dt.date, FeeType], D] = {}
    for a in activities:
        kind = fee_type_of(a)
        assert kind is not None
        usd = -a.net_amount if a.net_amount else (-(a.qty or 0) * (a.price or 0)).quantize(D("0.000000001"))
        out[(a.date, kind)] = out.get((a.date, kind), D(0)) + usd
    return out


@settings(max_examples=150, deadline=None)
@given(fills_and_trades())
def test_property_fees_charged_to_trades_equal_the_postings_per_day_and_kind(
    case: tuple[list[Fill], list[tuple[str, str, str]], dict[str, str]],
) -> None:
    fills, naming, claims = case
    activities = [a for day in DAYS for a in daily_fee_activities([f for f in fills if f.day == day], day, SCHEDULE)]
    allocation = allocate_fees(activities, fills, SCHEDULE)
    assert allocation.unallocated == ()
    owners = order_owners(naming, claims)
    charged: dict[tuple[dt.date, FeeType], D] = {}
    for position_id, entry, exit_ in naming:
        legs, _ = owned_legs(position_id, entry, exit_, owners)
        for _, order_id in legs:
            for pool in allocation.details:
                if order_id in pool.shares:
                    key = (pool.day, pool.fee_type)
                    charged[key] = charged.get(key, D(0)) + pool.shares[order_id]
    posted = posted_by_day_and_kind(activities)
    assert {k: v for k, v in charged.items() if v} == {k: v for k, v in posted.items() if v}
    # and each order is charged to exactly one trade: a trade naming it and, if that trade holds its claim, that one
    for order_id, owner in owners.items():
        naming_it = {p for p, e, x in naming if order_id in (e, x)}
        assert owner in naming_it
        assert owner == (claims[order_id] if claims.get(order_id) in naming_it else min(naming_it))


def test_the_day_is_selected_both_as_timestamps_and_as_text() -> None:
    """Firestore never matches a timestamp range against a time a bot stored as text: the patch asks for both."""
    from goldthread.loops.base import time_ranges

    start, end = dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 5, tzinfo=dt.UTC)
    (low, high), (text_low, text_high) = time_ranges(start, end)
    assert (low, high) == (start, end)
    assert isinstance(text_low, str) and isinstance(text_high, str)
    for stored in ("2024-03-01T00:00:00Z", "2024-03-04T23:59:59+00:00", "2024-03-04T22:00:00-05:00"):
        assert text_low <= stored < text_high, stored  # text inside the day range sorts inside the text range
