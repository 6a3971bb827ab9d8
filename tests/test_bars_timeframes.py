"""Bars keep their real timeframe, and Loops B and C compute with the length of the bars they got.

Two CSV files written here, one of hourly bars and one of daily bars (stamped at New York midnight, so
05:00 UTC before the 10 March 2024 clock change and 04:00 after it), are read by ``FileMarketData``
without any timeframe column: the spacing of each symbol's bars says 1Hour or 1Day, and ``market_bars``
stores them so. Every Loop B/C figure below is worked out by hand from the bar table next to it, with the
rules the README states: only bars wholly inside the window count (a bar that opened before
``created_at`` is never used, even when it holds the signal's time; a bar that closes after the window's
end is not used either), so a daily bar covering the signal's own day plays no part, and the time-out
is the close of the last bar closing by the end. Also: a file with mixed spacing, one bar, a stated
timeframe its bars contradict, or a bar no market prints is refused naming the file and symbol; a
source's garbage bars never reach ``market_bars``; legacy zero-price placeholder rows are ignored
by readers; and a MarketBar with zero prices or high < low is refused by the model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest
from goldthread.adapters.synthetic_market_data import FileMarketData, SyntheticMarketData
from goldthread.config import Settings
from goldthread.errors import ConfigError
from goldthread.loops import bars as bars_module
from goldthread.loops.bars import load_bars, prefetch
from goldthread.models import FactRejectedSignal, FactSignalExpired, MarketBar, MarketBarsCoverage, SignalStatus
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from goldthread.ports.market_data import Bars, MarketData, normalise_timeframe, timeframe_ns, to_ns
from goldthread.writer import REJECTED
from pydantic import ValidationError

from tests.conftest import DS, UTC, Clock, Factory, embedded_context, rows

NOW = dt.datetime(2024, 3, 13, 3, 0, tzinfo=UTC)  # DS's 7-day validity window and 48 h look-ahead have passed
CREATED = dt.datetime(2024, 3, 5, 10, 30, tzinfo=UTC)  # mid-bar for hourly bars

# symbol, bar open time (UTC), open, high, low, close
HOURLY = [
    # HRL, Loop B, long 100 (TP 105, SL 97), created 10:30, window to 12 March 10:30
    ("HRL", "2024-03-05 10:00", 100, 130, 90, 100),  # opened before the signal: ignored
    ("HRL", "2024-03-05 11:00", 100, 101, 99, 100.5),  # entry at its open, 100; low 99: MAE 1
    ("HRL", "2024-03-05 12:00", 100.5, 103, 100, 102),
    ("HRL", "2024-03-12 09:00", 102, 103.5, 101, 102.5),  # closes 10:00, inside: time-out at 102.5; MFE 3.5
    ("HRL", "2024-03-12 10:00", 102.5, 106, 101, 104),  # opens inside but closes 11:00, after the end: unused
    # XHR, Loop C, long from 100 (TP 105, SL 97), created 10:30, expires 14:30, look-ahead 48 h to 7 March 14:30
    ("XHR", "2024-03-05 10:00", 100, 120, 80, 100),  # opened before the signal: ignored
    ("XHR", "2024-03-05 11:00", 100, 102, 99, 101),  # lowest low 99: MAE 1 at 11:00
    ("XHR", "2024-03-05 12:00", 101, 106, 100, 105),  # first high >= 105: take-profit at 12:00
    ("XHR", "2024-03-07 13:00", 105, 109, 104, 108),  # closes 14:00, inside: MFE 9
    ("XHR", "2024-03-07 14:00", 108, 130, 107, 129),  # closes 15:00, after 14:30: unused (30 % would be a moonshot)
]
DAILY = [
    # DLY, Loop B, long 50 (TP 52.5, SL 48.5), created 5 March 14:30, window to 12 March 14:30
    ("DLY", "2024-03-04 05:00", 49, 49.5, 48, 49.2),
    ("DLY", "2024-03-05 05:00", 49.2, 60, 40, 50),  # the signal's own day, opened before it: both barriers unused
    ("DLY", "2024-03-06 05:00", 50, 51, 49.5, 50.5),  # entry at its open, 50
    ("DLY", "2024-03-07 05:00", 50.5, 52, 49, 51),  # lowest low 49: MAE 1
    ("DLY", "2024-03-08 05:00", 51, 52.2, 50.2, 51.5),
    ("DLY", "2024-03-11 04:00", 51.5, 52.4, 50.8, 52),  # closes 12 March 04:00: time-out at 52; MFE 2.4
    ("DLY", "2024-03-12 04:00", 52, 55, 51.9, 54.5),  # closes 13 March 04:00, after 14:30 on the 12th: unused
    # XDY, Loop C, long from 100 (TP 105, SL 97), created 5 March 10:30, look-ahead to 7 March 14:30
    ("XDY", "2024-03-05 05:00", 100, 150, 90, 100),  # opened before the signal: ignored
    ("XDY", "2024-03-06 05:00", 101, 104, 98, 103),  # the one bar inside: MFE 4, MAE 2, TP not reached
    ("XDY", "2024-03-07 05:00", 103, 120, 102, 118),  # closes 8 March 05:00, after the look-ahead: unused
]


def write_csv(path: Path, bars: Sequence[tuple[str, str, float, float, float, float]], extra: str = "") -> Path:
    """The bars as a CSV of symbol, ts, open, high, low, close, volume (no timeframe column)."""
    lines = ["symbol,ts,open,high,low,close,volume"]
    lines += [f"{s},{t}:00Z,{o},{h},{lo},{c},100" for s, t, o, h, lo, c in bars]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", validity_window=dt.timedelta(days=7),
                    expiry_lookahead=dt.timedelta(hours=48), moonshot_threshold_pct="10")


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture(params=["hourly", "daily"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def market(tmp_path: Path, kind: str) -> MarketData:
    """The hourly or daily file; or synthetic minute bars (``synthetic``), with garbage slipped in (``garbage``)."""
    if kind in ("synthetic", "garbage"):
        return SyntheticMarketData() if kind == "synthetic" else GarbageSource()
    return FileMarketData(write_csv(tmp_path / f"{kind}.csv", HOURLY if kind == "hourly" else DAILY))


@pytest.fixture
def ctx(tmp_path: Path, clock: Clock, settings: Settings, market: MarketData) -> Iterator[Context]:
    """The embedded context of ``conftest.ctx``, with the CSV's bars as market data."""
    context = embedded_context(tmp_path, clock, settings, market)
    yield context
    context.close()


def test_the_file_timeframe_is_read_from_the_spacing(market: FileMarketData, kind: str) -> None:
    want = {"hourly": {"HRL": "1Hour", "XHR": "1Hour"}, "daily": {"DLY": "1Day", "XDY": "1Day"}}[kind]
    assert market.timeframes() == want
    # asked for minutes, the file answers with what it has, saying so
    got = market.get_bars(list(want), "1Min", at("2024-03-05 00:00"), at("2024-03-13 00:00"))
    assert {s: b.timeframe for s, b in got.items()} == want


def test_bars_are_stored_with_their_real_timeframe(ctx: Context, kind: str) -> None:
    symbol, bars = ("HRL", HOURLY) if kind == "hourly" else ("DLY", DAILY)
    days = {dt.date(2024, 3, 5) + dt.timedelta(days=i) for i in range(8)}  # 5 to 12 March
    prefetch(ctx, {symbol: days})

    stored = rows(ctx, "market_bars", "symbol = @s", s=symbol)
    want = sorted(at(t) for s, t, *_ in bars if s == symbol and at(t).date() in days)
    assert sorted(r["ts"] for r in stored) == want
    assert {r["timeframe"] for r in stored} == {"1Hour" if kind == "hourly" else "1Day"}
    assert all(r["ds"] == r["ts"].date() for r in stored)
    coverage = rows(ctx, "market_bars_coverage", "symbol = @s", s=symbol)
    assert sorted(r["ds"] for r in coverage) == sorted(days)
    assert {(r["timeframe"], r["bars_timeframe"], r["source"]) for r in coverage} == {
        ("1Min", "1Hour" if kind == "hourly" else "1Day", "file")
    }
    assert sum(r["bar_count"] for r in coverage) == len(want)
    assert {r["ds"] for r in coverage if r["bar_count"] == 0} == days - {t.date() for t in want}

    loaded = load_bars(ctx, [(symbol, CREATED, CREATED + dt.timedelta(days=7))])[symbol]
    assert loaded.timeframe == ("1Hour" if kind == "hourly" else "1Day")
    assert loaded.ts.tolist() == [to_ns(t) for t in want]


@pytest.mark.parametrize("kind", ["hourly"])
def test_loop_b_on_hourly_bars(ctx: Context, make: Factory) -> None:
    make.signal("b-hrl", symbol="HRL", price=D(100), created_at=CREATED)
    make.writer.reject_signal("b-hrl", "MAX_EXPOSURE", CREATED + dt.timedelta(seconds=5))
    raw = ctx.hot.get(REJECTED, "b-hrl")
    assert raw is not None  # as a bot writing Firestore would: straight into the hot store, no writer API
    ctx.hot.put(REJECTED, "b-hrl-raw", {**raw, "signal_id": "b-hrl-raw"})
    ctx.hot.put(REJECTED, "b-hrl-bad", {**raw, "signal_id": "b-hrl-bad", "stop_loss": "0"})
    run = run_loop(ctx, "rejected_signals", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 3, 2, 1)

    for signal_id in ("b-hrl", "b-hrl-raw"):
        (row,) = rows(ctx, "fact_rejected_signals", "signal_id = @s", s=signal_id)
        b = FactRejectedSignal.model_validate(row)
        assert (b.bars_timeframe, b.bars_observed) == ("1Hour", 3)  # 11:00, 12:00 and 12 March 09:00
        assert (b.entry_price, b.entry_time) == (D(100), at("2024-03-05 11:00"))  # not the 10:00 bar it fell in
        # the 12 March 10:00 bar opens before the end (10:30) but closes after it: the time-out is 09:00's close
        assert (b.exit_reason, b.exit_price, b.exit_time) == ("TIMEOUT", D("102.5"), at("2024-03-12 09:00"))
        assert (b.theoretical_pnl_per_unit, b.theoretical_pnl_pct, b.r_multiple) == (
            D("2.5"), D("2.5"), D("0.833333333")  # 2.5 / (100 - 97)
        )
        assert (b.mfe_price, b.mfe_pct, b.mfe_r) == (D("3.5"), D("3.5"), D("1.166666667"))  # 103.5 - 100
        assert (b.mae_price, b.mae_pct, b.mae_r) == (D(1), D(1), D("0.333333333"))  # 100 - 99
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["doc_id"], letter["reason_code"]) == ("b-hrl-bad", "VALIDATION")
    assert "stop_loss" in letter["errors_json"]


@pytest.mark.parametrize("kind", ["daily"])
def test_loop_b_on_daily_bars(ctx: Context, make: Factory) -> None:
    created = at("2024-03-05 14:30")
    make.signal("b-dly", symbol="DLY", price=D(50), created_at=created)
    make.writer.reject_signal("b-dly", "MAX_EXPOSURE", created + dt.timedelta(seconds=5))
    run = run_loop(ctx, "rejected_signals", DS)
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 1)

    (row,) = rows(ctx, "fact_rejected_signals")
    b = FactRejectedSignal.model_validate(row)
    assert (b.bars_timeframe, b.bars_observed) == ("1Day", 4)  # 6, 7, 8 and 11 March
    # the 5 March bar (40 to 60) holds the signal's time but opened before it: the entry is 6 March's open
    assert (b.entry_price, b.entry_time) == (D(50), at("2024-03-06 05:00"))
    # the 12 March bar would reach the take-profit (55 >= 52.5) but closes on the 13th, after the window
    assert (b.exit_reason, b.exit_price, b.exit_time) == ("TIMEOUT", D(52), at("2024-03-11 04:00"))
    assert (b.theoretical_pnl_per_unit, b.theoretical_pnl_pct, b.r_multiple) == (D(2), D(4), D("1.333333333"))
    assert (b.mfe_price, b.mfe_pct, b.mfe_r) == (D("2.4"), D("4.8"), D("1.6"))  # 52.4 - 50, over 1.5 of risk
    assert (b.mae_price, b.mae_pct, b.mae_r) == (D(1), D(2), D("0.666666667"))  # 50 - 49


@pytest.mark.parametrize("kind", ["hourly", "daily"])
def test_loop_c_on_hourly_and_daily_bars(ctx: Context, make: Factory, kind: str) -> None:
    symbol = "XHR" if kind == "hourly" else "XDY"
    make.signal("c-x", symbol=symbol, price=D(100), created_at=CREATED, status=SignalStatus.EXPIRED)
    run = run_loop(ctx, "expired_signals", DS)
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 1)

    (row,) = rows(ctx, "fact_signals_expired")
    c = FactSignalExpired.model_validate(row)
    assert c.lookahead_end == at("2024-03-07 14:30")
    if kind == "hourly":  # 11:00, 12:00 and 7 March 13:00; the 14:00 bar (high 130) closes after 14:30
        assert (c.bars_timeframe, c.bars_observed) == ("1Hour", 3)
        assert (c.max_mfe_price, c.max_mfe_pct, c.max_mfe_r, c.max_mfe_at) == (
            D(9), D(9), D(3), at("2024-03-07 13:00"))
        assert (c.mae_price, c.mae_pct, c.mae_r, c.mae_at) == (D(1), D(1), D("0.333333333"), at("2024-03-05 11:00"))
        assert (c.take_profit_hit, c.take_profit_hit_at) == (True, at("2024-03-05 12:00"))
    else:  # only 6 March's bar lies wholly inside; 5 March's opened before, 7 March's closes after
        assert (c.bars_timeframe, c.bars_observed) == ("1Day", 1)
        assert (c.max_mfe_price, c.max_mfe_pct, c.max_mfe_r, c.max_mfe_at) == (
            D(4), D(4), D("1.333333333"), at("2024-03-06 05:00"))
        assert (c.mae_price, c.mae_pct, c.mae_r, c.mae_at) == (D(2), D(2), D("0.666666667"), at("2024-03-06 05:00"))
        assert (c.take_profit_hit, c.take_profit_hit_at) == (False, None)
    assert c.is_missed_moonshot is False  # 9 % and 4 %, under 10 %: the unused bars would have said 30 % and 20 %


@pytest.mark.parametrize("kind", ["hourly"])
def test_a_second_run_asks_the_file_for_nothing(ctx: Context, market: FileMarketData) -> None:
    """Hourly days fetched once are covered: neither a prefetch nor a cold read asks the file again."""
    days = {dt.date(2024, 3, 5) + dt.timedelta(days=i) for i in range(8)}
    prefetch(ctx, {"HRL": days})
    calls = market.calls
    ctx.cache.clear()
    assert prefetch(ctx, {"HRL": days}) == {"bar_requests": 0, "bar_rows": 0}
    load_bars(ctx, [("HRL", CREATED, CREATED + dt.timedelta(days=7))])
    assert market.calls == calls


# -- files refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bars", "extra", "message"), [
    ([("MIX", "2024-03-05 10:00", 1, 1, 1, 1), ("MIX", "2024-03-05 11:00", 1, 1, 1, 1),
      ("MIX", "2024-03-05 12:00", 1, 1, 1, 1), ("MIX", "2024-03-05 13:30", 1, 1, 1, 1)], "",
     "symbol MIX: mixed bar spacing: bars 60 min apart, yet the bar at 2024-03-05T13:30"),
    ([("ONE", "2024-03-05 10:00", 1, 1, 1, 1)], "", "symbol ONE: one bar says nothing of its length"),
    ([("ODD", "2024-03-05 10:00", 1, 1, 1, 1), ("ODD", "2024-03-05 11:30", 1, 1, 1, 1)], "",
     "symbol ODD: bars 5400 s apart at the closest are no known timeframe"),
    ([("DUP", "2024-03-05 10:00", 1, 1, 1, 1), ("DUP", "2024-03-05 10:00", 1, 1, 1, 1)], "",
     "symbol DUP: two bars at 2024-03-05T10:00"),
    ([("ZER", "2024-03-05 10:00", 1, 1, 1, 1)], "ZER,2024-03-05 10:01:00Z,0,0,0,0,0\n",
     "ZER bar at 2024-03-05T10:01:00.000000000Z is not a real bar"),
    ([("INV", "2024-03-05 10:00", 1, 0.5, 2, 1), ("INV", "2024-03-05 10:01", 1, 1, 1, 1)], "",
     "INV bar at 2024-03-05T10:00:00.000000000Z is not a real bar"),
])
def test_a_file_the_timeframe_cannot_be_read_from_is_refused_by_name(
    tmp_path: Path, bars: list[tuple[str, str, float, float, float, float]], extra: str, message: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", bars, extra)
    with pytest.raises(ConfigError) as refused:
        FileMarketData(path)
    assert str(path) in str(refused.value)
    assert message in str(refused.value)


def test_a_timeframe_column_is_used_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "stated.csv"
    path.write_text("symbol,ts,open,high,low,close,volume,timeframe\n"
                    "AAA,2024-03-05 10:00:00Z,1,1,1,1,1,1min\nAAA,2024-03-05 12:00:00Z,1,1,1,1,1,1min\n"
                    "BBB,2024-03-05 00:00:00Z,1,1,1,1,1,1 day\n")
    assert FileMarketData(path).timeframes() == {"AAA": "1Min", "BBB": "1Day"}  # sparse minutes, one daily bar
    path.write_text("symbol,ts,open,high,low,close,volume,timeframe\n"
                    "AAA,2024-03-05 10:00:00Z,1,1,1,1,1,1Hour\nAAA,2024-03-05 10:01:00Z,1,1,1,1,1,1Hour\n")
    with pytest.raises(ConfigError, match="symbol AAA: bars 60 s apart overlap, yet the file says 1Hour"):
        FileMarketData(path)
    path.write_text("symbol,ts,open,high,low,close,volume,timeframe\n"
                    "AAA,2024-03-05 10:00:00Z,1,1,1,1,1,1Hour\nAAA,2024-03-05 11:00:00Z,1,1,1,1,1,1Min\n")
    with pytest.raises(ConfigError, match=r"symbol AAA: the timeframe column mixes \['1Hour', '1Min'\]"):
        FileMarketData(path)
    path.write_text("symbol,ts,open,high,low,close,volume,timeframe\nAAA,2024-03-05 10:00:00Z,1,1,1,1,1,1Month\n")
    with pytest.raises(ConfigError, match="symbol AAA: timeframe '1Month' is not one of"):
        FileMarketData(path)


def test_timeframe_names() -> None:
    assert [normalise_timeframe(t) for t in ("1min", "5Min", "15 minutes", "60Min", "1H", "4hours", "1d", "1Week")] == [
        "1Min", "5Min", "15Min", "1Hour", "1Hour", "4Hour", "1Day", "1Week"]
    assert timeframe_ns("15Min") == 15 * 60 * 10**9 and timeframe_ns("1Day") == 86_400 * 10**9
    for bad in ("1M", "1Month", "0Min", "60Min", "24Hour", "2Day", "Min", ""):
        with pytest.raises(ValueError):
            timeframe_ns(bad)


# -- garbage never reaches market_bars ----------------------------------------------------------------


class GarbageSource(SyntheticMarketData):
    """Synthetic minute bars, with a zero-price bar, an inverted one, one priced below a 9-place unit (it would
    be stored as 0) and one too large for a 9-place decimal (it crashed the prefetch) slipped into each day."""

    def get_bars(self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime) -> dict[str, Bars]:
        out = {}
        for symbol, b in super().get_bars(symbols, timeframe, start, end).items():
            o, h, lo, c = (a.copy() for a in (b.open, b.high, b.low, b.close))
            o[:1] = h[:1] = lo[:1] = c[:1] = 0.0  # a placeholder-like bar
            h[1:2], lo[1:2] = lo[1:2] - 1, h[1:2] + 1  # high below low
            o[2:3] = h[2:3] = lo[2:3] = c[2:3] = 1e-12  # positive, but 0 at 9 places
            o[3:4] = h[3:4] = lo[3:4] = c[3:4] = 1e20  # 30 digits at 9 places
            out[symbol] = Bars(symbol, b.ts, o, h, lo, c, b.volume, b.timeframe)
        return out


@pytest.mark.parametrize("kind", ["garbage"])
def test_a_source_s_garbage_bars_are_refused_and_counted(ctx: Context) -> None:
    tue = dt.date(2024, 3, 5)
    assert prefetch(ctx, {"AAPL": {tue}}) == {"bar_requests": 1, "bar_rows": 386}  # 390 minutes, 4 refused
    assert ctx.warehouse.query("SELECT COUNT(*) AS n FROM market_bars WHERE low <= 0 OR high < low")[0]["n"] == 0
    assert ctx.warehouse.query("SELECT MAX(high) AS m FROM market_bars")[0]["m"] < 1_000_000
    (row,) = rows(ctx, "market_bars_coverage")
    assert (row["bar_count"], row["refused_count"]) == (386, 4)


def _placeholder(symbol: str, day: dt.date) -> Bars:
    """The zero-price row the old prefetch stored for a day without bars (as ``_bars_table`` builds it)."""
    zero = np.zeros(1)
    return Bars(symbol, np.array([to_ns(dt.datetime.combine(day, dt.time(), UTC))]), zero, zero, zero, zero, zero)


@pytest.mark.parametrize("kind", ["synthetic"])
def test_legacy_placeholder_rows_are_ignored_and_real_rows_kept(ctx: Context) -> None:
    sat, mon = dt.date(2024, 3, 9), dt.date(2024, 3, 11)
    prefetch(ctx, {"AAPL": {mon}})
    # a warehouse written before the coverage table: the weekend's markers, zero-price rows of source 'empty'
    for day in (sat, mon):
        ctx.warehouse.load_arrow(MarketBar, bars_module._bars_table(_placeholder("AAPL", day), "1Min", "empty"))
    ctx.cache.clear()
    got = load_bars(ctx, [("AAPL", at("2024-03-09 00:00"), at("2024-03-12 00:00"))])["AAPL"]
    assert len(got) == 390 and float(got.low.min()) > 0  # Monday's session; no marker read as a bar
    assert {dt.datetime.fromtimestamp(t / 1e9, UTC).date() for t in got.ts.tolist()} == {mon}
    assert ctx.warehouse.query("SELECT COUNT(*) AS n FROM market_bars WHERE low > 0")[0]["n"] == 390  # kept


@pytest.mark.parametrize("kind", ["synthetic"])
def test_the_asked_timeframe_is_read_first_and_mixed_days_join_in_the_coarsest(ctx: Context) -> None:
    mon, tue = dt.date(2024, 3, 4), dt.date(2024, 3, 5)
    source = SyntheticMarketData()
    minutes = source.get_bars(["AAPL"], "1Min", at("2024-03-04 00:00"), at("2024-03-05 00:00"))["AAPL"]
    hours = source.get_bars(["AAPL"], "1Hour", at("2024-03-04 00:00"), at("2024-03-06 00:00"))["AAPL"]
    prefetch(ctx, {"AAPL": {mon}})  # Monday in minutes
    ctx.warehouse.load_arrow(MarketBar, bars_module._bars_table(hours, "1Hour", "other"))  # Monday and Tuesday in hours
    got = load_bars(ctx, [("AAPL", at("2024-03-04 00:00"), at("2024-03-05 00:00"))])["AAPL"]
    assert (got.timeframe, got.ts.tolist()) == ("1Min", minutes.ts.tolist())  # the asked timeframe wins on Monday

    # Tuesday was fetched (from another source, say) in hours only: the two days join as hours
    ctx.warehouse.insert_rows(MarketBarsCoverage, [MarketBarsCoverage(
        row_id="tue", ds=tue, symbol="AAPL", timeframe="1Min", source="synthetic", bars_timeframe="1Hour",
        bar_count=7, fetched_at=NOW)])
    ctx.cache.clear()
    got = load_bars(ctx, [("AAPL", at("2024-03-04 00:00"), at("2024-03-06 00:00"))])["AAPL"]
    assert got.timeframe == "1Hour"
    hour = 3_600 * 10**9
    buckets = minutes.ts // hour  # Monday's minutes by hand, hour by hour
    firsts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    want_high = [float(minutes.high[buckets == b].max()) for b in buckets[firsts]]
    want_low = [float(minutes.low[buckets == b].min()) for b in buckets[firsts]]
    tue_hours = hours.ts >= to_ns(at("2024-03-05 00:00"))
    assert got.ts.tolist() == (buckets[firsts] * hour).tolist() + hours.ts[tue_hours].tolist()
    assert got.high.tolist() == want_high + hours.high[tue_hours].tolist()
    assert got.low.tolist() == want_low + hours.low[tue_hours].tolist()
    assert got.open[0] == minutes.open[0] and got.close[len(firsts) - 1] == minutes.close[-1]


# -- the model's rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "loc"), [
    ({"open": D(0), "high": D(0), "low": D(0), "close": D(0), "volume": D(0)}, "open"),
    ({"low": D("-1")}, "low"),
    ({"high": D("183")}, None),  # high below the low
    ({"close": D("187")}, None),  # close above the high
    ({"volume": D("-1")}, "volume"),
    ({"timeframe": "1Month"}, "timeframe"),
    ({"ds": dt.date(2024, 3, 6)}, None),  # not the bar's day
])
def test_a_market_bar_that_is_not_real_is_refused(change: dict[str, object], loc: str | None) -> None:
    fields: dict[str, object] = {
        "row_id": "k", "ds": dt.date(2024, 3, 5), "symbol": "AAPL", "timeframe": "1Min",
        "ts": at("2024-03-05 14:30"), "open": D(185), "high": D(186), "low": D(184), "close": D("185.5"),
        "volume": D(100), "source": "file",
    }
    MarketBar.model_validate(fields)
    with pytest.raises(ValidationError) as refused:
        MarketBar.model_validate({**fields, **change})
    locs = [e["loc"] for e in refused.value.errors()]
    assert (loc,) in locs if loc else locs == [()]
