"""The marts: each figure against a hand computation on a small fixed data set, on DuckDB and on the BigQuery
emulator; canary rows never move a figure; every column is defined in ``METRICS`` and ``docs/metrics.md``.

The data set (all in January 2024):

* strategy ``alpha`` v1 (trades T1..T5), v2 (T6); ``beta`` v1 never trades; the canary's own strategy;
* T1 +100.50 net (fee finalised 1.50 vs 2.00 estimated), T2 -50 (not finalised), T3 -100 (finalised at its
  estimate), T4 +50, T5 unpriced (no fill price yet), T6 +30; entry notional 1000 USD each;
* dead letters L1, L2 (the 2nd; L1 replayed) and L3 (the 3rd);
* canary rows in every fact table (one under ``alpha`` itself) and a canary dead letter, which must change
  nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from goldthread.bi.marts import BUSINESS_MARTS, MART_NAMES, MARTS, bigquery_view_sql, ensure_marts
from goldthread.bi.metrics import DOC_PATH, METRICS, columns_of, metrics_markdown
from goldthread.models.warehouse import (
    DeadLetter,
    DimStrategy,
    FactRejectedSignal,
    FactSignalExpired,
    FactTrade,
    JobRun,
    ReplayRecord,
    SnapshotAccount,
    SnapshotSource,
    WarehouseRow,
)
from goldthread.ports.warehouse import Warehouse

from tests.real.conftest import bigquery_emulator  # noqa: F401 - the session's bqemulator

UTC = dt.UTC
D = dt.date
LOADED = dt.datetime(2024, 1, 20, 12, 0, tzinfo=UTC)
CANARY_LOADED = dt.datetime(2024, 1, 25, 12, 0, tzinfo=UTC)
PROJECT = "goldthread-test"


def at(day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    """A moment in January 2024 (UTC)."""
    return dt.datetime(2024, 1, day, hour, minute, tzinfo=UTC)


def trade(key: str, ds: D, net: str | None, *, gross: str | None = None, entry: str | None = "100",
          qty: str = "10", est: str = "1", actual: str | None = None, hours: float = 1, version: str = "1",
          strategy: str = "alpha", asset: str = "equity", canary: bool = False,
          loaded: dt.datetime = LOADED, run_id: str = "trades-run") -> FactTrade:
    """A closed trade of ``strategy`` closing at noon on ``ds``; ``net`` None makes it unpriced."""
    closed = dt.datetime.combine(ds, dt.time(12), UTC)
    return FactTrade(
        row_id=f"t-{key}", ds=ds, run_id=run_id, loaded_at=loaded, is_canary=canary, position_id=f"pos-{key}",
        signal_id=f"sig-{key}", strategy_id=strategy, strategy_version=version, symbol="AAPL", asset_class=asset,
        side="long", qty=Decimal(qty), entry_order_id=f"e-{key}", exit_order_id=f"x-{key}",
        entry_price=Decimal(entry) if entry else None, exit_price=Decimal(entry) if entry else None,
        opened_at=closed - dt.timedelta(hours=hours), closed_at=closed, holding_seconds=int(hours * 3600),
        gross_pnl_usd=Decimal(gross) if gross is not None else None, est_fee_usd=Decimal(est),
        actual_fee_usd=Decimal(actual) if actual is not None else None, fee_finalized=actual is not None,
        net_pnl_usd=Decimal(net) if net is not None else None,
    )


def strategy(strategy_id: str, version: str, start: int, end: int | None, params: dict[str, Any] | None = None
             ) -> DimStrategy:
    """One dim_strategy version valid from ``start`` to ``end`` (days of January)."""
    return DimStrategy(
        row_id=f"d-{strategy_id}-{version}", strategy_sk=f"{strategy_id}:{version}", strategy_id=strategy_id,
        version=version, params_json=json.dumps(params or {}), deployed_at=at(start, 0), valid_from=at(start, 0),
        valid_to=at(end, 0) if end else None, is_current=end is None, updated_at=LOADED,
    )


def signal_fields(key: str, ds: D, canary: bool) -> dict[str, Any]:
    """Columns every counterfactual row repeats from its signal."""
    return {
        "row_id": f"s-{key}", "ds": ds, "run_id": "cf-run", "loaded_at": LOADED, "is_canary": canary,
        "signal_id": f"sig-{key}", "strategy_id": "alpha", "strategy_version": "1", "symbol": "AAPL",
        "asset_class": "equity", "side": "long", "signal_price": Decimal("100"), "take_profit": Decimal("105"),
        "stop_loss": Decimal("97"), "created_at": at(ds.day, 10), "expires_at": at(ds.day, 14),
    }


def rejected(key: str, reason: str, entry: str | None, net: str | None, r: str | None, canary: bool = False
             ) -> FactRejectedSignal:
    """A rejected signal with its theoretical net P&L per unit (None: no bars)."""
    return FactRejectedSignal(
        **signal_fields(key, D(2024, 1, 3), canary), rejection_reason=reason, rejected_at=at(3, 10),
        window_end=at(10, 10), entry_price=Decimal(entry) if entry else None,
        exit_reason="NO_DATA" if net is None else "TIMEOUT",
        theoretical_net_pnl_per_unit=Decimal(net) if net is not None else None,
        r_multiple=Decimal(r) if r is not None else None, bars_observed=0 if net is None else 100,
    )


def expired(key: str, mfe: str | None, moonshot: bool | None, canary: bool = False) -> FactSignalExpired:
    """An expired signal with its maximum favourable excursion (None: no bars)."""
    return FactSignalExpired(
        **signal_fields(key, D(2024, 1, 4), canary), lookahead_end=at(5, 14),
        max_mfe_pct=Decimal(mfe) if mfe else None, is_missed_moonshot=moonshot,
        moonshot_threshold_pct=Decimal("10"), bars_observed=0 if mfe is None else 100,
    )


def snapshot(
    day: int, equity: str, last: str, account: str = "ACC", canary: bool = False, history: bool = False
) -> SnapshotAccount:
    """An account snapshot: the live account at 21:00 UTC, or (``history``) a past day from the portfolio
    history, which has the equity only (the marts must take its null margins and Greeks)."""
    common: dict = dict(
        row_id=f"a-{account}-{day}", ds=D(2024, 1, day), run_id="acc-run", loaded_at=LOADED, is_canary=canary,
        account_id=account, equity=Decimal(equity), last_equity=Decimal(last),
        daily_pnl=Decimal(equity) - Decimal(last),
    )
    if history:
        return SnapshotAccount(
            **common, source=SnapshotSource.PORTFOLIO_HISTORY, snapshot_at=at(day, 5), cash=None,
            buying_power=None, initial_margin=None, maintenance_margin=None, long_market_value=None,
            short_market_value=None, option_positions=None, delta=None, gamma=None, theta=None, vega=None,
        )
    zero = Decimal(0)
    return SnapshotAccount(
        **common, source=SnapshotSource.LIVE_ACCOUNT, snapshot_at=at(day, 21), cash=Decimal(equity),
        buying_power=zero, initial_margin=zero, maintenance_margin=zero, long_market_value=zero,
        short_market_value=zero, option_positions=0, delta=zero, gamma=zero, theta=zero, vega=zero,
    )


def job_run(run_id: str, job: str, ds: D, status: str, started: dt.datetime, seconds: float | None, *,
            published: int = 0, loaded: int = 0, dead: int = 0, reconciled: bool = True, error: str | None = None,
            details: dict[str, Any] | None = None) -> JobRun:
    """A run as ``sync_job_runs`` copies it."""
    return JobRun(
        row_id=f"r-{run_id}", ds=ds, run_id=run_id, job=job, status=status, git_hash="abc", started_at=started,
        heartbeat_at=started, dispatched_at=started, finished_at=started + dt.timedelta(seconds=seconds)
        if seconds is not None else None, duration_seconds=Decimal(str(seconds)) if seconds is not None else None,
        published=published, loaded=loaded, duplicates=0, dead_lettered=dead, reconciled=reconciled, error=error,
        details_json=json.dumps(details or {}), synced_at=LOADED,
    )


def letter(key: str, day: int, loop: str = "trades", reason: str = "VALIDATION", canary: bool = False) -> DeadLetter:
    """A dead letter recorded on ``day`` of January."""
    return DeadLetter(
        row_id=f"dl-{key}", ds=D(2024, 1, day), run_id=f"{loop}-run", loop=loop, doc_id=f"doc-{key}",
        item_ds=D(2024, 1, day), topic=f"goldthread-{loop}", reason_code=reason, error_message="bad",
        errors_json=json.dumps([{"loc": "qty", "msg": "must be > 0", "type": "greater_than"}]), payload="{}",
        attributes_json="{}", delivery_attempts=1, dead_lettered_at=at(day, 4), is_canary=canary,
    )


def replayed(key: str, day: int) -> ReplayRecord:
    """The replay record of letter ``key``, replayed on ``day`` of January."""
    return ReplayRecord(
        row_id=f"rp-{key}", ds=D(2024, 1, day), dead_letter_id=f"dl-{key}", replay_run_id="replay-run",
        original_run_id="trades-run", loop="trades", doc_id=f"doc-{key}", replayed_at=at(day, 9),
    )


BASE: dict[type[WarehouseRow], list[Any]] = {
    DimStrategy: [strategy("alpha", "1", 1, 10), strategy("alpha", "2", 10, None), strategy("beta", "1", 1, None)],
    FactTrade: [
        trade("T1", D(2024, 1, 2), "100.50", gross="102", est="2", actual="1.50", hours=1),
        trade("T2", D(2024, 1, 2), "-50", gross="-49", entry="50", qty="20", est="1", hours=2),
        trade("T3", D(2024, 1, 3), "-100", gross="-99", entry="200", qty="5", est="1", actual="1", hours=3,
              asset="crypto"),
        trade("T4", D(2024, 1, 4), "50", gross="52", entry="10", qty="100", est="2", hours=1, asset="crypto"),
        trade("T5", D(2024, 1, 4), None, entry=None, est="1", hours=0),
        trade("T6", D(2024, 1, 11), "30", gross="30", est="0", hours=0.5, version="2"),
    ],
    FactRejectedSignal: [
        rejected("R1", "MAX_EXPOSURE", "100", "5", "1.5"),
        rejected("R2", "MAX_EXPOSURE", "50", "-1", "-0.5"),
        rejected("R3", "MAX_EXPOSURE", None, None, None),
        rejected("R4", "LOW_LIQUIDITY", "20", "-0.4", "-1"),
    ],
    FactSignalExpired: [expired("E1", "12.5", True), expired("E2", "3", False), expired("E3", None, None),
                        expired("E4", "12.5", True)],
    SnapshotAccount: [snapshot(1, "1000", "1000", history=True), snapshot(2, "1100", "1000"),
                      snapshot(3, "990", "1100"), snapshot(4, "1210", "990")],
    JobRun: [
        job_run("trades-a", "trades", D(2024, 1, 2), "PARTIAL", at(3, 3), 30, published=3, loaded=2, dead=1),
        job_run("trades-b", "trades", D(2024, 1, 2), "SUCCEEDED", at(3, 5), 10, published=1, loaded=1),
        job_run("accounts-c", "accounts", D(2024, 1, 2), "FAILED", at(3, 3), 2, reconciled=False, error="boom"),
    ],
    # L1 and L2 on the 2nd (L1 replayed on the 5th), L3 on the 3rd: two letters open
    DeadLetter: [letter("L1", 2), letter("L2", 2), letter("L3", 3, reason="SCD_CONFLICT")],
    ReplayRecord: [replayed("L1", 5)],
}

CANARY: dict[type[WarehouseRow], list[Any]] = {
    DimStrategy: [strategy("golden_thread_canary", "1", 1, None, {"golden_thread_canary": True})],
    FactTrade: [
        trade("C1", D(2024, 1, 25), "999", gross="999", strategy="golden_thread_canary", canary=True,
              loaded=CANARY_LOADED, run_id="canary-d", asset="crypto"),
        trade("C2", D(2024, 1, 2), "1000", gross="1000", canary=True, loaded=CANARY_LOADED, run_id="canary-orphan"),
    ],
    FactRejectedSignal: [rejected("RC", "MAX_EXPOSURE", "100", "1000", "9", canary=True)],
    FactSignalExpired: [expired("EC", "50", True, canary=True)],
    SnapshotAccount: [snapshot(2, "5", "1", account="CANARY", canary=True)],
    DeadLetter: [letter("LC", 2, canary=True)],
    JobRun: [
        job_run("canary-d", "canary", D(2024, 1, 25), "SUCCEEDED", at(25, 12), 1.5, published=1, loaded=1,
                details={"broken_hop": None, "hop_ms": {"signal_write": 1.5, "delivery": 40.25}}),
        job_run("canary-e", "canary", D(2024, 1, 26), "FAILED", at(26, 12), 3, published=1, reconciled=False,
                error="hop 'delivery' failed: nothing", details={"broken_hop": "delivery",
                                                                  "hop_ms": {"signal_write": 2.0}}),
    ],
}


def load(warehouse: Warehouse, data: dict[type[WarehouseRow], list[Any]]) -> None:
    """Write a data set through the port."""
    for model, rows in data.items():
        warehouse.insert_rows(model, rows)


def rows_of(warehouse: Warehouse, mart: str, order: str) -> list[dict[str, Any]]:
    """A mart's rows in a stable order."""
    return warehouse.query(f"SELECT * FROM {mart} ORDER BY {order}")


def same(got: Any, want: Any) -> bool:
    """Exact for text, bools and dates; numbers compared as floats to 1e-9 (engines type ratios differently)."""
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, (int, float, Decimal)) and not isinstance(want, bool):
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
    return bool(got == want)


def check(row: dict[str, Any], **want: Any) -> None:
    """Every expected column of ``row`` equals its hand-computed value."""
    wrong = {k: (row.get(k), v) for k, v in want.items() if not same(row.get(k), v)}
    assert not wrong, f"(got, want) per column: {wrong}"


# -- fixtures: the same data on both engines ------------------------------------------------------------


def _make(kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    if kind == "duckdb":
        from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse

        wh: Warehouse = DuckDbWarehouse(tmp_path_factory.mktemp("marts") / "warehouse.duckdb")
    else:
        request.getfixturevalue("bigquery_emulator")
        from goldthread.adapters.bigquery_warehouse import BigQueryWarehouse

        wh = BigQueryWarehouse(PROJECT, f"marts_{uuid.uuid4().hex[:10]}")
    wh.ensure_tables()
    ensure_marts(wh)
    return wh


def _drop(wh: Warehouse) -> None:
    client = getattr(wh, "client", None)
    if client is not None:
        client.delete_dataset(f"{PROJECT}.{wh.dataset}", delete_contents=True, not_found_ok=True)  # type: ignore[attr-defined]
    wh.close()


ENGINES = ["duckdb", pytest.param("bigquery", marks=pytest.mark.emulator)]


@pytest.fixture(scope="module", params=ENGINES)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """A warehouse holding the base data set AND the canary rows, marts created."""
    wh = _make(request.param, request, tmp_path_factory)
    load(wh, BASE)
    load(wh, CANARY)
    yield wh
    _drop(wh)


# -- each mart against hand-computed figures --------------------------------------------------------------


def test_daily_pnl(loaded: Warehouse) -> None:
    rows = rows_of(loaded, "mart_daily_pnl", "ds, strategy_id")
    assert [(r["ds"], r["strategy_id"]) for r in rows] == [
        (D(2024, 1, 2), "alpha"), (D(2024, 1, 3), "alpha"), (D(2024, 1, 4), "alpha"), (D(2024, 1, 11), "alpha")]
    check(rows[0], trades=2, priced_trades=2, winning_trades=1, win_rate=0.5, gross_pnl_usd=53, net_pnl_usd=50.5,
          est_fee_usd=3, actual_fee_usd=1.5, fee_finalized_trades=1, fee_usd=2.5)
    check(rows[1], trades=1, priced_trades=1, winning_trades=0, win_rate=0.0, gross_pnl_usd=-99, net_pnl_usd=-100,
          est_fee_usd=1, actual_fee_usd=1, fee_finalized_trades=1, fee_usd=1)
    check(rows[2], trades=2, priced_trades=1, winning_trades=1, win_rate=1.0, gross_pnl_usd=52, net_pnl_usd=50,
          est_fee_usd=3, actual_fee_usd=None, fee_finalized_trades=0, fee_usd=3)
    check(rows[3], trades=1, priced_trades=1, winning_trades=1, win_rate=1.0, net_pnl_usd=30, est_fee_usd=0)


def test_strategy_performance(loaded: Warehouse) -> None:
    rows = {r["strategy_sk"]: r for r in rows_of(loaded, "mart_strategy_performance", "strategy_sk")}
    assert sorted(rows) == ["alpha:1", "alpha:2", "beta:1"], "the canary's strategy must not appear"
    # alpha v1: 3 daily returns and 4 priced trades, below the minimum samples (30 days, 20 trades): the ratios
    # are NULL, their samples are there (tests/test_bi_ratios.py checks the ratios on samples large enough)
    check(rows["alpha:1"], trades=5, priced_trades=4, winning_trades=2, losing_trades=2, win_rate=0.5,
          net_pnl_usd=0.5, gross_profit_usd=150.5, gross_loss_usd=150, profit_factor=None,
          expectancy_usd=0.125, avg_loss_usd=75, avg_r=0.125 / 75, avg_holding_hours=(1 + 2 + 3 + 1 + 0) / 5,
          trading_days=3, sharpe_ratio=None, sortino_ratio=None, max_drawdown_usd=100, is_current=False)
    check(rows["alpha:2"], trades=1, priced_trades=1, winning_trades=1, losing_trades=0, win_rate=1.0,
          net_pnl_usd=30, gross_loss_usd=0, profit_factor=None, expectancy_usd=30, avg_loss_usd=None, avg_r=None,
          avg_holding_hours=0.5, trading_days=1, sharpe_ratio=None, sortino_ratio=None, max_drawdown_usd=0,
          is_current=True)
    check(rows["beta:1"], trades=0, priced_trades=0, winning_trades=0, win_rate=None, net_pnl_usd=None,
          trading_days=0, sharpe_ratio=None, max_drawdown_usd=None)


def test_rejection_cost(loaded: Warehouse) -> None:
    rows = {r["rejection_reason"]: r for r in rows_of(loaded, "mart_rejection_cost", "ds, rejection_reason")}
    assert sorted(rows) == ["LOW_LIQUIDITY", "MAX_EXPOSURE"]
    assert {r["ds"] for r in rows.values()} == {D(2024, 1, 3)}, "one row per rejection day and reason"
    check(rows["MAX_EXPOSURE"], signals=3, priced_signals=2, would_have_won=1, would_have_won_share=0.5,
          sum_theoretical_net_pnl_per_unit=4, mean_theoretical_net_pnl_per_unit=2,
          sum_theoretical_net_return_pct=5 - 2, mean_theoretical_net_return_pct=1.5, sum_r_multiple=1,
          r_multiples=2, mean_r_multiple=0.5, filter_verdict="cost")
    check(rows["LOW_LIQUIDITY"], signals=1, priced_signals=1, would_have_won=0, would_have_won_share=0.0,
          sum_theoretical_net_pnl_per_unit=-0.4, sum_theoretical_net_return_pct=-2, mean_r_multiple=-1,
          filter_verdict="saved")


def test_missed_moonshots(loaded: Warehouse) -> None:
    rows = rows_of(loaded, "mart_missed_moonshots", "mfe_rank, signal_id")
    assert [(r["signal_id"], r["mfe_rank"], r["is_missed_moonshot"]) for r in rows] == [
        ("sig-E1", 1, True), ("sig-E4", 1, True), ("sig-E2", 3, False), ("sig-E3", 4, None)]
    check(rows[0], max_mfe_pct=12.5, moonshot_threshold_pct=10)


def test_equity_curve(loaded: Warehouse) -> None:
    rows = rows_of(loaded, "mart_equity_curve", "account_id, ds")
    assert [r["account_id"] for r in rows] == ["ACC"] * 4, "the canary account is excluded"
    want = [  # equity, daily return %, running peak, drawdown USD, drawdown %
        (1000, 0.0, 1000, 0, 0.0), (1100, 10.0, 1100, 0, 0.0), (990, -10.0, 1100, 110, -10.0),
        (1210, 22.0 / 0.99, 1210, 0, 0.0),
    ]
    for row, (equity, ret, peak, dd, dd_pct) in zip(rows, want, strict=True):
        check(row, equity=equity, daily_return_pct=ret, running_peak=peak, drawdown_usd=dd, drawdown_pct=dd_pct)


def test_fee_drift(loaded: Warehouse) -> None:
    rows = {(r["ds"], r["asset_class"]): r for r in rows_of(loaded, "mart_fee_drift", "ds, asset_class")}
    assert sorted(rows) == [(D(2024, 1, 2), "equity"), (D(2024, 1, 3), "crypto"), (D(2024, 1, 4), "crypto"),
                            (D(2024, 1, 4), "equity"), (D(2024, 1, 11), "equity")]
    check(rows[(D(2024, 1, 2), "equity")], trades=2, finalized_trades=1, backlog_trades=1, est_fee_usd=3,
          est_fee_finalized_usd=2, actual_fee_usd=1.5, fee_drift_usd=-0.5, fee_drift_pct=-25.0, backlog_est_fee_usd=1)
    check(rows[(D(2024, 1, 3), "crypto")], trades=1, finalized_trades=1, backlog_trades=0, fee_drift_usd=0,
          fee_drift_pct=0.0, backlog_est_fee_usd=None)
    check(rows[(D(2024, 1, 4), "crypto")], trades=1, finalized_trades=0, backlog_trades=1, est_fee_usd=2,
          est_fee_finalized_usd=None, actual_fee_usd=None, fee_drift_usd=None, fee_drift_pct=None,
          backlog_est_fee_usd=2)


def test_pipeline_health(loaded: Warehouse) -> None:
    rows = {(r["job"], r["ds"]): r for r in rows_of(loaded, "mart_pipeline_health", "job, ds")}
    assert sorted(rows) == [("accounts", D(2024, 1, 2)), ("trades", D(2024, 1, 2))], "canary runs are not here"
    trades = rows[("trades", D(2024, 1, 2))]
    check(trades, runs=2, failed_runs=0, last_run_id="trades-b", last_status="SUCCEEDED", last_duration_seconds=10,
          last_reconciled=True, rows_published=4, rows_loaded=3, rows_duplicate=0, rows_dead_lettered=1,
          all_reconciled=True, last_started_at=at(3, 5))
    check(rows[("accounts", D(2024, 1, 2))], runs=1, failed_runs=1, last_status="FAILED", last_error="boom",
          last_reconciled=False, all_reconciled=False)


def test_dead_letters(loaded: Warehouse) -> None:
    rows = rows_of(loaded, "mart_dead_letters", "ds, loop, reason_code")
    assert [(r["ds"], r["reason_code"], r["letters"], r["replayed_letters"], r["open_letters"]) for r in rows] == [
        (D(2024, 1, 2), "VALIDATION", 2, 1, 1), (D(2024, 1, 3), "SCD_CONFLICT", 1, 0, 1)], "the canary letter is out"
    check(rows[0], last_dead_lettered_at=at(2, 4), loop="trades")


def test_golden_thread_shows_the_canary_and_nothing_else(loaded: Warehouse) -> None:
    rows = {r["run_id"]: r for r in rows_of(loaded, "mart_golden_thread", "run_id")}
    assert sorted(rows) == ["canary-d", "canary-e", "canary-orphan"]
    check(rows["canary-d"], status="SUCCEEDED", broken_hop=None, signal_write_ms=1.5, delivery_ms=40.25,
          dispatch_ms=None, position_id="pos-C1", row_loaded_at=CANARY_LOADED, duration_seconds=1.5,
          ds=D(2024, 1, 25))
    check(rows["canary-e"], status="FAILED", broken_hop="delivery", error="hop 'delivery' failed: nothing",
          position_id=None, signal_write_ms=2.0)
    check(rows["canary-orphan"], status=None, position_id="pos-C2", ds=D(2024, 1, 2))


def test_every_mart_returns_exactly_its_documented_columns(loaded: Warehouse) -> None:
    for mart in MART_NAMES:
        got = list(loaded.query(f"SELECT * FROM {mart} LIMIT 1")[0])
        assert got == columns_of(mart), f"{mart}: columns differ from goldthread.bi.metrics.METRICS"


@pytest.mark.parametrize("engine", ENGINES)
def test_canary_rows_never_move_a_mart_figure(
    engine: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wh = _make(engine, request, tmp_path_factory)
    try:
        load(wh, BASE)

        def figures() -> dict[str, list[dict[str, Any]]]:
            out = {}
            for mart in BUSINESS_MARTS:
                keys = [m.column for m in METRICS.values() if m.mart == mart and m.dimension]
                rows = wh.query(f"SELECT * FROM {mart} ORDER BY {', '.join(keys) if keys else 1}")
                out[mart] = rows
            return out

        before = figures()
        load(wh, CANARY)
        assert figures() == before
        assert len(wh.query("SELECT * FROM mart_golden_thread")) == 3
    finally:
        _drop(wh)


# -- one definition, documented -----------------------------------------------------------------------------


def test_docs_metrics_md_is_generated_from_metrics() -> None:
    assert DOC_PATH.read_text() == metrics_markdown(), "stale docs/metrics.md: run `python -m goldthread.bi.metrics`"
    for mart in MART_NAMES:
        assert f"## `{mart}`" in DOC_PATH.read_text()
        assert columns_of(mart), f"{mart} has no documented column"


def test_every_metric_belongs_to_a_mart_and_each_is_defined_once() -> None:
    assert {m.mart for m in METRICS.values()} == set(MART_NAMES)
    for key, metric in METRICS.items():
        assert key == f"{metric.mart}.{metric.column}"
        assert metric.definition.strip() and metric.unit
        assert metric.column in MARTS[metric.mart], f"{key} is not in the mart's SQL"


def test_bigquery_views_name_every_table_fully() -> None:
    import sqlglot

    for mart in MART_NAMES:
        tree = sqlglot.parse_one(bigquery_view_sql(mart, "proj-1", "ds_x"), read="bigquery")
        ctes = {c.alias for c in tree.find_all(sqlglot.exp.CTE)}
        tables = [t for t in tree.find_all(sqlglot.exp.Table) if t.name not in ctes]
        assert tables, mart
        assert all((t.catalog, t.db) == ("proj-1", "ds_x") for t in tables), mart


def test_marts_avoid_what_the_bigquery_emulator_cannot_run() -> None:
    """``COUNTIF(...) OVER`` does not parse in bqemulator and ``DATE_TRUNC`` on a date returns DATETIME there."""
    import re

    for mart, sql in MARTS.items():
        assert not re.search(r"COUNTIF\([^)]*\)\s*OVER", sql, re.I), mart
        assert "DATE_TRUNC" not in sql.upper(), mart
