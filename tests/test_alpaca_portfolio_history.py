"""``AlpacaBroker.get_portfolio_history`` against the local fake Alpaca, and Loop D on top of it.

The fake serves ``GET /v2/account/portfolio/history`` in Alpaca's documented JSON (parallel arrays
``timestamp`` in Unix seconds, ``equity``, ``profit_loss``, ``profit_loss_pct``, with ``base_value``,
``base_value_asof`` and ``timeframe``), which alpaca-py's own model parses. The adapter must ask for the
1D history of the right New York days, read the numbers as exact decimals, leave out null points and
points of other days, refuse a response of the wrong shape for good and retry a 429.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from goldthread.adapters.alpaca_broker import AlpacaBroker
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.errors import BrokerRequestError, BrokerUnavailableError
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus

from tests.conftest import Clock
from tests.fakes.alpaca_server import FakeAlpaca
from tests.support.recording import KEY, SECRET

FRI, MON, TUE, WED = dt.date(2024, 3, 1), dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6)
HISTORY = "/v2/account/portfolio/history"


def week(fake: FakeAlpaca) -> None:
    """Friday to Wednesday as Alpaca reports it: no weekend points, Wednesday's value appended live."""
    fake.set_history_base(99000.5, dt.date(2024, 2, 29))
    fake.add_history_point(FRI, 100000.0, profit_loss=999.5, profit_loss_pct=0.0101)
    fake.add_history_point(MON, 100240.09, profit_loss=1239.59, profit_loss_pct=0.0125)
    fake.add_history_point(TUE, 99990.31, profit_loss=989.81, profit_loss_pct=0.01)
    fake.add_history_point(WED, 100500.0, profit_loss=1499.5, profit_loss_pct=0.0151)


def test_the_fakes_history_is_what_alpaca_py_parses(fake: FakeAlpaca) -> None:
    from alpaca.trading.client import TradingClient
    from alpaca.trading.requests import GetPortfolioHistoryRequest

    week(fake)
    history = TradingClient(KEY, SECRET, url_override=fake.url).get_portfolio_history(
        GetPortfolioHistoryRequest(timeframe="1D", start=dt.datetime(2024, 3, 1, 5, tzinfo=dt.UTC))
    )
    assert history.timeframe == "1D" and history.base_value == 99000.5  # type: ignore[union-attr]
    assert history.equity == [100000.0, 100240.09, 99990.31, 100500.0]  # type: ignore[union-attr]
    assert history.timestamp[0] == 1709269200  # type: ignore[union-attr] # 2024-03-01 00:00 New York


def test_history_is_read_exactly_for_the_asked_days(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    week(fake)
    points = broker.get_portfolio_history(MON, TUE)

    assert [(p.trading_day, p.equity) for p in points] == [(MON, D("100240.09")), (TUE, D("99990.31"))]
    assert points[0].timestamp == dt.datetime(2024, 3, 4, 5, tzinfo=dt.UTC)  # midnight New York (EST)
    assert (points[1].profit_loss, points[1].profit_loss_pct) == (D("989.81"), D("0.01"))
    assert {(p.base_value, p.base_value_asof) for p in points} == {(D("99000.5"), dt.date(2024, 2, 29))}
    (request,) = fake.requests_to(HISTORY)
    assert request.query == {
        "timeframe": "1D", "start": "2024-03-04T05:00:00Z", "end": "2024-03-06T05:00:00Z",
        "intraday_reporting": "continuous", "pnl_reset": "no_reset",
    }  # Alpaca's end is inclusive: Wednesday's point comes back and is left out


def test_null_points_are_left_out_and_a_missing_asof_is_none(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.add_history_point(FRI, None)  # a new account: Alpaca sends null for a day without data
    fake.add_history_point(MON, 0.0)
    fake.add_history_point(TUE, 2500.0)
    points = broker.get_portfolio_history(FRI, TUE)
    assert [(p.trading_day, p.equity) for p in points] == [(MON, D(0)), (TUE, D(2500))]
    assert all(p.base_value_asof is None and p.base_value == D(2500) for p in points)


def test_a_point_labelled_in_the_new_york_evening_is_that_days(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    """With extended hours Alpaca has been seen labelling 1D points 20:00 New York, the next day in UTC."""
    fake.add_history_point(TUE, 101000.0, label=dt.time(20))
    (point,) = broker.get_portfolio_history(TUE, TUE)
    assert point.timestamp == dt.datetime(2024, 3, 6, 1, tzinfo=dt.UTC) and point.trading_day == TUE


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"timestamp": [1709528400], "equity": [1.0, 2.0], "profit_loss": [0, 0]}, "'equity' is not an array as long"),
        ({"equity": [1.0]}, "no 'timestamp' array"),
        ({"timestamp": ["yesterday"], "equity": [1.0]}, "timestamp 'yesterday' is not Unix seconds"),
        ({"timestamp": [1709528400], "equity": ["lots"]}, "does not fit EquityPoint"),
    ],
    ids=["ragged", "no-timestamps", "text-timestamp", "text-equity"],
)
def test_a_history_of_the_wrong_shape_is_permanent(
    broker: AlpacaBroker, fake: FakeAlpaca, monkeypatch: pytest.MonkeyPatch, body: dict, problem: str
) -> None:
    monkeypatch.setattr(fake, "_portfolio_history", lambda q: (200, body))
    with pytest.raises(BrokerRequestError, match=problem) as info:
        broker.get_portfolio_history(MON, MON)
    assert "portfolio history 2024-03-04..2024-03-04" in str(info.value)


def test_history_429_is_retried_and_500s_are_transient(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    week(fake)
    fake.fail(HISTORY, 429, retry_after=0)
    assert [p.trading_day for p in broker.get_portfolio_history(TUE, TUE)] == [TUE]
    assert fake.count(HISTORY) == 2
    fake.fail(HISTORY, 500, times=None)
    with pytest.raises(BrokerUnavailableError, match=re.escape("portfolio history 2024-03-05..2024-03-05")):
        broker.get_portfolio_history(TUE, TUE)


# -- Loop D on Alpaca -------------------------------------------------------------------------------------


@pytest.fixture
def alpaca_ctx(tmp_path: Path, broker: AlpacaBroker) -> Iterator[tuple[Context, Clock]]:
    clock = Clock(dt.datetime(2024, 3, 12, 15, tzinfo=dt.UTC))
    context = Context(
        Settings(home=tmp_path / "home"), clock=clock, hot=SqliteHotStore(tmp_path / "hot.sqlite"),
        bus=LocalBus(project="test"), warehouse=DuckDbWarehouse(":memory:"), broker=broker,
        market_data=SyntheticMarketData(),
    )
    wire_local_bus(context, min_backoff=0)
    yield context, clock
    context.close()


def test_loop_d_stores_a_past_days_history_from_alpaca(alpaca_ctx: tuple[Context, Clock], fake: FakeAlpaca) -> None:
    ctx, _ = alpaca_ctx
    week(fake)
    fake.set_account(equity="123456.78", last_equity="120000")  # today's account: must not be stored for Tuesday
    run = run_loop(ctx, "accounts", TUE)
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 1)
    (row,) = ctx.warehouse.query("SELECT * FROM snapshot_accounts")
    assert (row["source"], row["ds"], row["account_id"]) == ("portfolio_history", TUE, fake.account["id"])
    assert (row["equity"], row["last_equity"]) == (D("99990.31"), D("100240.09"))
    assert row["daily_pnl"] == D("-249.78")  # 99990.31 - 100240.09
    assert row["daily_return_pct"] == D("-0.249181740")  # -249.78 / 100240.09 x 100 = -0.2491817395..., 9 places
    assert row["snapshot_at"] == dt.datetime(2024, 3, 5, 5, tzinfo=dt.UTC) and row["cash"] is None
    assert fake.count("/v2/positions") == 0  # the past has no positions to ask for


def test_loop_d_on_alpaca_today_is_the_live_account_and_a_null_day_loads_nothing(
    alpaca_ctx: tuple[Context, Clock], fake: FakeAlpaca
) -> None:
    ctx, clock = alpaca_ctx
    fake.add_history_point(MON, None)
    run = run_loop(ctx, "accounts", MON)
    assert (run.status, run.published, run.dead_lettered) == (RunStatus.SUCCEEDED, 0, 0)
    assert "no portfolio history point for 2024-03-04" in run.details["no_snapshot"]
    fake.add_position("AAPL240119C00190000", "2")
    fake.set_snapshot("AAPL240119C00190000", delta=0.5, gamma=0.02, theta=-0.05, vega=0.1)
    clock.set(dt.datetime(2024, 3, 12, 20, 30, tzinfo=dt.UTC))
    run = run_loop(ctx, "accounts", dt.date(2024, 3, 12))
    (row,) = ctx.warehouse.query("SELECT * FROM snapshot_accounts")
    assert (row["source"], row["equity"], row["last_equity"]) == ("live_account", D("100000"), D("99000"))
    assert (row["option_positions"], row["delta"], row["vega"]) == (1, D("100"), D("20"))  # 2 x 100 x 0.5, 0.1
    assert row["snapshot_at"] == clock()
