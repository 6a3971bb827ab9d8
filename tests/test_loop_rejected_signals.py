"""Loop B end to end through the local bus: aged rejected signals become ``fact_rejected_signals`` rows.

The bars come from a CSV file written here (``FileMarketData``), so every figure is worked out by hand:
a long that reaches its take-profit, a short stopped out, a time-out at the last close inside the
validity window, and a symbol without bars (NO_DATA, not dropped). Each row carries the theoretical
P&L per unit and in percent, the R multiple, MFE/MAE, the bars observed and the round-trip fee per
unit from the same fee model as real trades; ``ds`` is the signal's creation day. A day whose
validity window has not passed is refused before any run is recorded, and the window is a setting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from goldthread.adapters.synthetic_market_data import FileMarketData
from goldthread.config import Settings
from goldthread.errors import NotReadyError
from goldthread.ledger.runs import list_runs
from goldthread.loops.rejected_signals import _fills_total, fee_per_unit
from goldthread.models import FactRejectedSignal, RejectedSignal, Side
from goldthread.models.hot import AssetClass, RunStatus
from goldthread.models.types import quantize9
from goldthread.pipeline.context import Context
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop
from goldthread.writer import REJECTED
from pydantic import ValidationError

from tests.conftest import DS, UTC, Clock, Factory, embedded_context, ledger_mark, rows

CREATED = dt.datetime(2024, 3, 5, 10, 0, 30, tzinfo=UTC)  # 30 s into the 10:00 bar: entry is the 10:01 open
READY_7D = dt.datetime(2024, 3, 13, tzinfo=UTC)  # end of DS + 7 days
AFTER = dt.datetime(2024, 3, 13, 3, 0, tzinfo=UTC)

# symbol, bar open time, open, high, low, close (1-minute bars)
BARS = [
    # TPL, long 100 (TP 105, SL 97): the 10:00 bar opened before the signal and is ignored even though it
    # spans 90-130; enter at 10:01's open 100; 10:02 reaches 106 >= 105 from an open of 100.5: TP at 105.
    ("TPL", "2024-03-05 10:00", 99, 130, 90, 100),
    ("TPL", "2024-03-05 10:01", 100, 101, 99.5, 100.5),
    ("TPL", "2024-03-05 10:02", 100.5, 106, 100, 105),
    ("TPL", "2024-03-05 10:03", 105, 120, 104, 110),  # after the exit: not in MFE
    # SLS, short 200 (TP 190, SL 206): enter at 200; 10:02 reaches 207 >= 206 from an open of 201: SL at 206.
    ("SLS", "2024-03-05 10:01", 200, 201, 199, 200),
    ("SLS", "2024-03-05 10:02", 201, 207, 200, 206.5),
    # TMO, long 50 (TP 52.5, SL 48.5): two quiet bars, then on 8 March a bar reaching 53.
    ("TMO", "2024-03-05 10:01", 50, 51, 49, 50.5),
    ("TMO", "2024-03-05 10:02", 50.5, 51, 50, 50.8),
    ("TMO", "2024-03-08 10:00", 51, 53, 51, 52.8),
]


def write_csv(path: Path) -> Path:
    lines = ["symbol,ts,open,high,low,close,volume"]
    lines += [f"{s},{t}:00Z,{o},{h},{lo},{c},100" for s, t, o, h, lo, c in BARS]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def window() -> dt.timedelta:
    """The validity window (a test may parametrize it)."""
    return dt.timedelta(days=7)


@pytest.fixture
def settings(tmp_path: Path, window: dt.timedelta) -> Settings:
    return Settings(home=tmp_path / "home", validity_window=window)


@pytest.fixture
def clock() -> Clock:
    return Clock(AFTER)


@pytest.fixture
def market(tmp_path: Path) -> FileMarketData:
    return FileMarketData(write_csv(tmp_path / "bars.csv"))


@pytest.fixture
def ctx(tmp_path: Path, clock: Clock, settings: Settings, market: FileMarketData) -> Iterator[Context]:
    """The embedded context of ``conftest.ctx``, with the CSV bars as market data."""
    context = embedded_context(tmp_path, clock, settings, market)
    yield context
    context.close()


def reject(
    make: Factory, signal_id: str, symbol: str, side: Side, price: str, created_at: dt.datetime = CREATED
) -> RejectedSignal:
    """A signal (TP 5 % and SL 3 % away) that the risk filter rejected five seconds after it was created."""
    make.signal(signal_id, symbol=symbol, side=side, price=D(price), created_at=created_at)
    return make.writer.reject_signal(signal_id, "MAX_EXPOSURE", created_at + dt.timedelta(seconds=5))


def fact(ctx: Context, signal_id: str) -> FactRejectedSignal:
    (row,) = rows(ctx, "fact_rejected_signals", "signal_id = @s", s=signal_id)
    return FactRejectedSignal.model_validate(row)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def signals(make: Factory) -> dict[str, RejectedSignal]:
    return {
        "TPL": reject(make, "b-tp", "TPL", Side.LONG, "100"),
        "SLS": reject(make, "b-sl", "SLS", Side.SHORT, "200"),
        "TMO": reject(make, "b-tmo", "TMO", Side.LONG, "50"),
        # created the day before DS, on a symbol the source has no bars for
        "NOD": reject(make, "b-nodata", "NOD", Side.LONG, "10", created_at=at("2024-03-04 23:00")),
        # created after DS: not due for DS
        "LATE": reject(make, "b-late", "TPL", Side.LONG, "100", created_at=at("2024-03-06 10:00")),
    }


def test_rows_for_each_exit_reason(ctx: Context, signals: dict[str, RejectedSignal]) -> None:
    run = run_loop(ctx, "rejected_signals", DS)

    assert (run.status, run.published, run.loaded, run.duplicates, run.dead_lettered) == (
        RunStatus.SUCCEEDED, 4, 4, 0, 0
    )
    assert {r["signal_id"] for r in rows(ctx, "fact_rejected_signals")} == {"b-tp", "b-sl", "b-tmo", "b-nodata"}
    for signal_id in ("b-tp", "b-sl", "b-tmo", "b-nodata"):
        assert ledger_mark(ctx, REJECTED, signal_id)["archived_run_id"] == run.run_id
    assert ledger_mark(ctx, REJECTED, "b-late")["archived_run_id"] is None

    tp = fact(ctx, "b-tp")
    assert (tp.exit_reason, tp.entry_price, tp.entry_time) == ("TAKE_PROFIT", D(100), at("2024-03-05 10:01"))
    assert (tp.exit_price, tp.exit_time) == (D(105), at("2024-03-05 10:02"))
    assert (tp.theoretical_pnl_per_unit, tp.theoretical_pnl_pct) == (D(5), D(5))
    assert tp.r_multiple == D("1.666666667")  # 5 / (100 - 97)
    assert (tp.mfe_price, tp.mfe_pct, tp.mfe_r) == (D(6), D(6), D(2))  # 106 - 100, over the entry and exit bars
    assert (tp.mae_price, tp.mae_pct, tp.mae_r) == (D("0.5"), D("0.5"), D("0.166666667"))  # 100 - 99.5
    assert (tp.bars_observed, tp.bars_timeframe) == (2, "1Min")  # the file's spacing: minute bars
    # buy 1 @ 100: CAT 0.000035; sell 1 @ 105: REG 105 x 0.0000278 + TAF 0.000166 + CAT 0.000035
    assert tp.est_fee_per_unit == D("0.003155")
    assert tp.theoretical_net_pnl_per_unit == D("4.996845")
    assert (tp.ds, tp.run_id, tp.rejection_reason) == (DS, run.run_id, "MAX_EXPOSURE")
    assert (tp.side, tp.signal_price, tp.take_profit, tp.stop_loss) == ("long", D(100), D(105), D(97))
    assert (tp.created_at, tp.rejected_at) == (CREATED, CREATED + dt.timedelta(seconds=5))
    assert tp.window_end == CREATED + dt.timedelta(days=7)

    sl = fact(ctx, "b-sl")
    assert (sl.exit_reason, sl.entry_price, sl.exit_price) == ("STOP_LOSS", D(200), D(206))
    assert sl.exit_time == at("2024-03-05 10:02")
    assert (sl.theoretical_pnl_per_unit, sl.theoretical_pnl_pct, sl.r_multiple) == (D(-6), D(-3), D(-1))
    assert (sl.mfe_price, sl.mfe_pct, sl.mfe_r) == (D(1), D("0.5"), D("0.166666667"))  # 200 - 199
    assert (sl.mae_price, sl.mae_pct, sl.mae_r) == (D(7), D("3.5"), D("1.166666667"))  # 207 - 200
    assert sl.bars_observed == 2
    # sell 1 @ 200: REG 0.00556 + TAF 0.000166 + CAT 0.000035; buy 1 @ 206: CAT 0.000035
    assert sl.est_fee_per_unit == D("0.005796")
    assert sl.theoretical_net_pnl_per_unit == D("-6.005796")

    tmo = fact(ctx, "b-tmo")  # the 7-day window reaches the 8 March bar: TP at 52.5 from an open of 51
    assert (tmo.exit_reason, tmo.exit_price, tmo.exit_time) == ("TAKE_PROFIT", D("52.5"), at("2024-03-08 10:00"))
    assert (tmo.theoretical_pnl_per_unit, tmo.theoretical_pnl_pct, tmo.r_multiple) == (
        D("2.5"), D(5), D("1.666666667")
    )
    assert (tmo.mfe_price, tmo.mae_price, tmo.bars_observed) == (D(3), D(1), 3)

    nodata = fact(ctx, "b-nodata")
    assert (nodata.exit_reason, nodata.bars_observed, nodata.bars_timeframe) == ("NO_DATA", 0, None)
    assert nodata.ds == dt.date(2024, 3, 4)  # ds is the creation day, not the run's day
    for column in ("entry_price", "entry_time", "exit_price", "exit_time", "theoretical_pnl_per_unit",
                   "theoretical_pnl_pct", "est_fee_per_unit", "theoretical_net_pnl_per_unit", "r_multiple",
                   "mfe_price", "mfe_pct", "mfe_r", "mae_price", "mae_pct", "mae_r"):
        assert getattr(nodata, column) is None, column

    # the estimates are the fee model's, for the theoretical fills
    assert tp.est_fee_per_unit == fee_per_unit(signals["TPL"], D(100), D(105))
    assert sl.est_fee_per_unit == fee_per_unit(signals["SLS"], D(200), D(206))

    assert run_loop(ctx, "rejected_signals", DS).published == 0  # archived signals are not published again


@pytest.mark.parametrize("window", [dt.timedelta(days=2)])
def test_validity_window_is_a_setting(ctx: Context, signals: dict[str, RejectedSignal]) -> None:
    run = run_loop(ctx, "rejected_signals", DS)
    assert run.status is RunStatus.SUCCEEDED

    tmo = fact(ctx, "b-tmo")  # the 8 March bar is now outside the window: time-out at 10:02's close
    assert tmo.window_end == CREATED + dt.timedelta(days=2)
    assert (tmo.exit_reason, tmo.exit_price, tmo.exit_time) == ("TIMEOUT", D("50.8"), at("2024-03-05 10:02"))
    assert (tmo.theoretical_pnl_per_unit, tmo.theoretical_pnl_pct) == (D("0.8"), D("1.6"))
    assert tmo.r_multiple == D("0.533333333")  # 0.8 / (50 - 48.5)
    assert (tmo.mfe_price, tmo.mfe_pct, tmo.mfe_r) == (D(1), D(2), D("0.666666667"))
    assert (tmo.mae_price, tmo.mae_pct, tmo.mae_r) == (D(1), D(2), D("0.666666667"))
    assert tmo.bars_observed == 2
    # buy 1 @ 50: CAT 0.000035; sell 1 @ 50.8: REG 0.00141224 + TAF 0.000166 + CAT 0.000035
    assert tmo.est_fee_per_unit == D("0.00164824")
    assert fact(ctx, "b-tp").exit_reason == "TAKE_PROFIT"  # within two days either way


@pytest.mark.parametrize(
    ("window", "too_early", "ready"),
    [
        (dt.timedelta(days=7), READY_7D - dt.timedelta(seconds=1), READY_7D),
        (dt.timedelta(days=2), dt.datetime(2024, 3, 7, 23, tzinfo=UTC), dt.datetime(2024, 3, 8, tzinfo=UTC)),
    ],
)
def test_a_day_whose_window_has_not_passed_is_refused(
    ctx: Context, clock: Clock, signals: dict[str, RejectedSignal], window: dt.timedelta, too_early: dt.datetime,
    ready: dt.datetime,
) -> None:
    clock.set(too_early)
    with pytest.raises(NotReadyError) as refused:
        dispatch(ctx, "rejected_signals", DS)
    message = str(refused.value)
    assert f"rejected_signals for {DS}" in message
    assert f"needs {window.days} days of bars" in message
    assert f"can run from {ready.isoformat()}" in message
    assert list_runs(ctx, "rejected_signals") == []  # refused before a run was recorded
    assert rows(ctx, "fact_rejected_signals") == []
    assert ctx.market_data.calls == 0  # and before any bars were fetched

    clock.set(ready)
    assert run_loop(ctx, "rejected_signals", DS).loaded == 4


def test_an_invalid_rejected_signal_is_dead_lettered(ctx: Context, signals: dict[str, RejectedSignal]) -> None:
    bad = {**ctx.hot.get(REJECTED, "b-tp"), "signal_id": "b-bad", "take_profit": "96"}  # TP below a long's entry
    ctx.hot.put(REJECTED, "b-bad", bad)
    run = run_loop(ctx, "rejected_signals", DS)

    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 5, 4, 1)
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["doc_id"], letter["reason_code"], letter["loop"]) == ("b-bad", "VALIDATION", "rejected_signals")
    assert "take_profit" in letter["error_message"]
    assert rows(ctx, "fact_rejected_signals", "signal_id = 'b-bad'") == []
    assert ledger_mark(ctx, REJECTED, "b-bad")["dead_lettered_run_id"] == run.run_id


@pytest.mark.parametrize(("symbol", "asset_class"), [
    ("AAPL", AssetClass.EQUITY), ("BTC/USD", AssetClass.CRYPTO), ("AAPL240119C00190000", AssetClass.OPTION),
])
@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_the_fee_per_unit_is_exactly_what_the_fills_give(symbol: str, asset_class: AssetClass, side: Side) -> None:
    """``fee_per_unit`` reads the fee model's line once per kind of fill; every fee must equal the fills'."""
    rng = np.random.default_rng(21)
    signal = SimpleNamespace(symbol=symbol, asset_class=asset_class, side=side, created_at=CREATED)
    prices = [D(repr(float(p))).quantize(D("0.000000001")) for p in 10 ** rng.uniform(-8, 12, 400)]
    prices += [D("0.000000001"), D("1.000000000"), D("99999999999999999999999999999.999999999")]
    for entry, exit_ in zip(prices, reversed(prices), strict=True):
        try:
            want = quantize9(_fills_total(symbol, asset_class, side, CREATED.date(), entry, exit_))
        except ArithmeticError:  # a fee too large to hold 9 places fails both ways
            with pytest.raises(ArithmeticError):
                fee_per_unit(signal, entry, exit_)  # type: ignore[arg-type]
            continue
        got = fee_per_unit(signal, entry, exit_)  # type: ignore[arg-type]
        assert (got, str(got)) == (want, str(want))


def test_a_fill_the_fee_model_refuses_still_fails_with_its_own_error() -> None:
    for symbol, asset_class, entry in (("BTC/EUR", AssetClass.CRYPTO, D("1.000000000")),
                                       ("AAPL", AssetClass.EQUITY, D("-1.000000000"))):
        signal = SimpleNamespace(symbol=symbol, asset_class=asset_class, side=Side.LONG, created_at=CREATED)
        with pytest.raises(ValidationError):
            fee_per_unit(signal, entry, D("2.000000000"))  # type: ignore[arg-type]
