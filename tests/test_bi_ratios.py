"""The marts' ratios against a kept library on the same series, and their minimum samples.

``empyrical`` (empyrical-reloaded) is the reference: ``sharpe_ratio`` and ``sortino_ratio`` on the daily returns
``mart_strategy_performance`` documents (a day's net P&L / the entry notional of the trades closed that day),
``omega_ratio`` at a threshold of 0 on the trades' net P&L (which is the profit factor: gains / losses), and
``drawdown_series`` / ``max_drawdown`` for the drawdowns. The series are computed here from the trades and
snapshots the test writes, not read back from the mart. Each minimum sample of ``goldthread.bi.figures.RATIOS``
is checked at the minimum (a figure) and one below (NULL), on DuckDB and on the BigQuery emulator.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import defaultdict
from decimal import Decimal

import empyrical
import numpy as np
import pytest
from empyrical.stats import drawdown_series
from goldthread.bi.figures import MIN_PRICED_TRADES, MIN_TRADING_DAYS, RATIOS
from goldthread.bi.marts import ensure_marts
from goldthread.models.warehouse import DimStrategy, FactTrade, SnapshotAccount
from goldthread.ports.warehouse import Warehouse

from tests.real.conftest import bigquery_emulator  # noqa: F401 - the session's bqemulator
from tests.test_bi_marts import ENGINES, _drop, _make, snapshot, strategy, trade

START = dt.date(2024, 2, 1)


def series_trades(version: str, days: int, seed: int) -> list[FactTrade]:
    """Trades of ``alpha`` ``version`` closing on ``days`` distinct days (every third day two), seeded P&L."""
    rng = random.Random(seed)
    trades = []
    for i in range(days):
        ds = START + dt.timedelta(days=i + i // 5)  # gaps: days without trades are not in the series
        for k in range(2 if i % 3 == 0 else 1):
            entry, qty = rng.choice(["50", "100", "250"]), rng.choice(["4", "10"])
            net = Decimal(rng.randint(-4000, 5000)) / 100
            trades.append(trade(f"{version}-{i}-{k}", ds, str(net), gross=str(net), entry=entry, qty=qty,
                                version=version, est="0"))
    return trades


def daily_returns(trades: list[FactTrade]) -> list[float]:
    """The documented series: per day, sum of net P&L / sum of entry notional, in day order."""
    pnl: dict[dt.date, Decimal] = defaultdict(Decimal)
    notional: dict[dt.date, Decimal] = defaultdict(Decimal)
    for t in trades:
        assert t.net_pnl_usd is not None and t.entry_price is not None
        pnl[t.ds] += t.net_pnl_usd
        notional[t.ds] += t.entry_price * t.qty * t.multiplier
    return [float(pnl[d] / notional[d]) for d in sorted(pnl)]


def usd_max_drawdown(trades: list[FactTrade], capital: float = 1_000_000.0) -> float:
    """The largest fall of cumulative daily P&L from its peak (which starts at 0), through empyrical.

    The P&L curve becomes an equity curve ``capital + cumulative P&L``; empyrical's drawdown series d_t of its
    returns gives the peak as V_t / (1 + d_t), so the fall in USD is V_t - V_t / (1 + d_t)."""
    pnl: dict[dt.date, float] = defaultdict(float)
    for t in trades:
        assert t.net_pnl_usd is not None
        pnl[t.ds] += float(t.net_pnl_usd)
    values = capital + np.cumsum([pnl[d] for d in sorted(pnl)])
    returns = values / np.concatenate([[capital], values[:-1]]) - 1
    dd = np.asarray(drawdown_series(returns))
    return float(max(values / (1 + dd) - values))


@pytest.fixture(scope="module", params=ENGINES)
def warehouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """Version 1 trades on exactly the minimum days, version 2 one day short; version 3 with 20 / 19 trades."""
    wh = _make(request.param, request, tmp_path_factory)
    wh.insert_rows(DimStrategy, [strategy("alpha", v, 1, None) for v in ("1", "2", "3", "4")])
    wh.insert_rows(FactTrade, [*SERIES["1"], *SERIES["2"], *SERIES["3"], *SERIES["4"]])
    request.addfinalizer(lambda: _drop(wh))
    return wh


SERIES = {
    "1": series_trades("1", MIN_TRADING_DAYS, seed=1),
    "2": series_trades("2", MIN_TRADING_DAYS - 1, seed=2),
    # profit factor's sample is trades: 20 and 19 trades on 20 and 19 days
    "3": [t for t in series_trades("3", MIN_PRICED_TRADES, seed=3) if t.row_id.endswith("-0")],
    "4": [t for t in series_trades("4", MIN_PRICED_TRADES - 1, seed=4) if t.row_id.endswith("-0")],
}


def version(wh: Warehouse, v: str) -> dict[str, object]:
    """The mart row of alpha ``v``."""
    (row,) = wh.query("SELECT * FROM mart_strategy_performance WHERE strategy_id = 'alpha' AND version = @v",
                      {"v": v})
    return row


def close(got: object, want: float) -> bool:
    """Equal to 1e-9, relative."""
    return got is not None and math.isclose(float(got), want, rel_tol=1e-9, abs_tol=1e-12)  # type: ignore[arg-type]


def test_sharpe_and_sortino_match_empyrical_at_the_minimum_sample(warehouse: Warehouse) -> None:
    returns = np.array(daily_returns(SERIES["1"]))
    assert len(returns) == MIN_TRADING_DAYS
    row = version(warehouse, "1")
    assert row["trading_days"] == MIN_TRADING_DAYS
    assert close(row["sharpe_ratio"], empyrical.sharpe_ratio(returns, risk_free=0, period="daily"))
    assert close(row["sortino_ratio"], empyrical.sortino_ratio(returns, required_return=0, period="daily"))


def test_profit_factor_and_drawdown_match_empyrical(warehouse: Warehouse) -> None:
    for v in ("1", "3"):
        pnl = np.array([float(t.net_pnl_usd or 0) for t in SERIES[v]])
        row = version(warehouse, v)
        assert row["priced_trades"] == len(pnl) >= MIN_PRICED_TRADES
        assert close(row["profit_factor"], empyrical.omega_ratio(pnl, required_return=0.0, annualization=1)), v
        assert close(row["max_drawdown_usd"], usd_max_drawdown(SERIES[v])), v


def test_below_the_minimum_sample_the_ratio_is_null_and_its_sample_is_there(warehouse: Warehouse) -> None:
    short = version(warehouse, "2")
    assert short["trading_days"] == MIN_TRADING_DAYS - 1
    assert short["sharpe_ratio"] is None and short["sortino_ratio"] is None
    assert short["max_drawdown_usd"] is not None, "a drawdown needs one day"
    few = version(warehouse, "4")
    assert few["priced_trades"] == MIN_PRICED_TRADES - 1 and few["profit_factor"] is None
    assert few["win_rate"] is not None, "the win rate's minimum sample is one trade"


def test_equity_drawdown_matches_empyrical(tmp_path_factory: pytest.TempPathFactory) -> None:
    from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse

    wh = DuckDbWarehouse(tmp_path_factory.mktemp("eq") / "w.duckdb")
    wh.ensure_tables()
    ensure_marts(wh)  # what the Context does on an embedded warehouse
    rng = random.Random(5)
    equity = [100_000.0]
    for _ in range(1, 28):
        equity.append(round(equity[-1] * (1 + rng.uniform(-0.03, 0.031)), 2))
    wh.insert_rows(SnapshotAccount, [snapshot(d + 1, f"{e:.2f}", f"{(equity[d - 1] if d else e):.2f}")
                                     for d, e in enumerate(equity)])
    rows = wh.query("SELECT drawdown_pct FROM mart_equity_curve ORDER BY ds")
    returns = np.array(equity[1:]) / np.array(equity[:-1]) - 1
    assert math.isclose(min(float(r["drawdown_pct"]) for r in rows) / 100, empyrical.max_drawdown(returns),
                        rel_tol=1e-9)


def test_every_ratio_is_documented_with_its_sample() -> None:
    from goldthread.bi.metrics import METRICS, columns_of

    for ratio in RATIOS:
        assert f"{ratio.mart}.{ratio.column}" in METRICS, ratio
        assert ratio.series and ratio.annualisation and ratio.minimum >= 1
        assert ratio.sample in columns_of(ratio.mart) or ratio.mart == "mart_equity_curve", ratio
    thresholds = {r.column: r.minimum for r in RATIOS if r.mart == "mart_strategy_performance"}
    from goldthread.bi.marts import MARTS

    sql = MARTS["mart_strategy_performance"]
    assert f"r.trading_days >= {thresholds['sharpe_ratio']}" in sql
    assert f"p.priced_trades >= {thresholds['profit_factor']}" in sql
