"""Loop C end to end through the local bus: signals that expired unexecuted become ``fact_signals_expired``.

The bars come from a CSV file written here (``FileMarketData``), so the excursions are worked out by
hand. Proves: EXPIRED signals and ACTIVE ones past their expiry are archived, EXECUTED and REJECTED
ones are not (the dispatcher skips them, and a work item forced for one is dead-lettered with the
reason); the maximum favourable and adverse excursions from the signal price with the bar they
happened in, whether the take-profit was reached and when, the missed-moonshot flag against
``Settings(moonshot_threshold_pct=...)``, the look-ahead setting, ``ds`` = expiry day, NO_DATA kept
with nulls, and a day whose look-ahead has not passed refused before any run is recorded (a look-ahead
ending mid-day waits for that day to end, so no day's bars are cached incomplete). The CSV feed here
serves only bars that have opened by the clock's "now", as a real feed does.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from decimal import Decimal as D
from pathlib import Path

import pytest
from goldthread.adapters.synthetic_market_data import FileMarketData
from goldthread.config import Settings
from goldthread.errors import NotReadyError
from goldthread.ledger import runs
from goldthread.models import FactSignalExpired, Side, SignalStatus
from goldthread.models.hot import RunStatus
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop
from goldthread.ports.market_data import Bars
from goldthread.writer import SIGNALS

from tests.conftest import DS, UTC, Clock, Factory, deliver, embedded_context, ledger_mark, rows

READY = dt.datetime(2024, 3, 7, tzinfo=UTC)  # end of DS + the default 24 h look-ahead
AFTER = dt.datetime(2024, 3, 7, 3, 0, tzinfo=UTC)

# symbol, bar open time, open, high, low, close (1-minute bars at the listed minutes)
BARS = [
    # XPL, long from 100 (TP 105, SL 97), created 10:00, expires 14:00, look-ahead to 6 March 14:00
    ("XPL", "2024-03-05 09:59", 100, 150, 50, 100),  # before the signal: ignored
    ("XPL", "2024-03-05 10:00", 100, 102, 99, 101),  # lowest low 99: MAE 1
    ("XPL", "2024-03-05 12:00", 101, 112, 100, 110),  # first high >= 105: take-profit reached
    ("XPL", "2024-03-06 09:00", 110, 115, 108, 114),  # highest high in the look-ahead: MFE 15
    ("XPL", "2024-03-06 15:00", 114, 130, 113, 129),  # after the 24 h look-ahead
    # XPS, short from 200 (TP 190, SL 206), created 15:00, expires 19:00
    ("XPS", "2024-03-05 15:00", 200, 203, 198, 199),  # highest high 203: MAE 3
    ("XPS", "2024-03-05 16:00", 199, 200, 195, 196),  # lowest low 195: MFE 5, TP 190 never reached
    # XPD, for look-aheads ending in the middle of 7 March
    ("XPD", "2024-03-05 10:00", 100, 101, 99, 100),
    ("XPD", "2024-03-07 01:00", 100, 102, 99, 101),
    ("XPD", "2024-03-07 13:00", 101, 140, 100, 139),
]


class LiveFeed(FileMarketData):
    """The CSV's bars, but like a real feed only those that have opened by the clock's now."""

    def __init__(self, path: Path, clock: Clock) -> None:
        super().__init__(path)
        self.clock = clock

    def get_bars(self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime) -> dict[str, Bars]:
        return super().get_bars(symbols, timeframe, start, max(start, min(end, self.clock())))


def write_csv(path: Path) -> Path:
    """The bars as a CSV saying they are minute bars: sparse as they are, their spacing would not tell."""
    lines = ["symbol,ts,open,high,low,close,volume,timeframe"]
    lines += [f"{s},{t}:00Z,{o},{h},{lo},{c},100,1Min" for s, t, o, h, lo, c in BARS]
    path.write_text("\n".join(lines) + "\n")
    return path


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def lookahead() -> dt.timedelta:
    return dt.timedelta(hours=24)


@pytest.fixture
def threshold() -> str:
    return "10"


@pytest.fixture
def settings(tmp_path: Path, lookahead: dt.timedelta, threshold: str) -> Settings:
    return Settings(home=tmp_path / "home", expiry_lookahead=lookahead, moonshot_threshold_pct=threshold)


@pytest.fixture
def clock() -> Clock:
    return Clock(AFTER)


@pytest.fixture
def ctx(tmp_path: Path, clock: Clock, settings: Settings) -> Iterator[Context]:
    """The embedded context of ``conftest.ctx``, with the CSV bars as market data."""
    context = embedded_context(tmp_path, clock, settings, LiveFeed(write_csv(tmp_path / "bars.csv"), clock))
    yield context
    context.close()


@pytest.fixture
def signals(make: Factory) -> None:
    """Signals in every state; each expires 4 h after creation (TP 5 % and SL 3 % away)."""
    make.signal("c-expired", symbol="XPL", price=D(100), created_at=at("2024-03-05 10:00"),
                status=SignalStatus.EXPIRED)
    make.signal("c-stale", symbol="XPS", side=Side.SHORT, price=D(200), created_at=at("2024-03-05 15:00"))
    make.signal("c-nodata", symbol="NOD", price=D(10), created_at=at("2024-03-04 23:00"),
                status=SignalStatus.EXPIRED)  # created on 4 March, expires on DS
    make.signal("c-executed", symbol="XPL", price=D(100), created_at=at("2024-03-05 10:00"),
                status=SignalStatus.EXECUTED)
    make.signal("c-rejected", symbol="XPL", price=D(100), created_at=at("2024-03-05 10:00"))
    make.writer.reject_signal("c-rejected", "MAX_EXPOSURE", at("2024-03-05 10:00"))
    make.signal("c-expires-after-ds", symbol="XPL", price=D(100), created_at=at("2024-03-05 23:00"))
    make.signal("c-expired-after-ds", symbol="XPL", price=D(100), created_at=at("2024-03-06 10:00"),
                status=SignalStatus.EXPIRED)


def fact(ctx: Context, signal_id: str) -> FactSignalExpired:
    (row,) = rows(ctx, "fact_signals_expired", "signal_id = @s", s=signal_id)
    return FactSignalExpired.model_validate(row)


def test_expired_and_stale_active_signals_are_archived_with_their_excursions(ctx: Context, signals: None) -> None:
    run = run_loop(ctx, "expired_signals", DS)

    assert (run.status, run.published, run.loaded, run.duplicates, run.dead_lettered) == (
        RunStatus.SUCCEEDED, 3, 3, 0, 0
    )
    archived = {r["signal_id"] for r in rows(ctx, "fact_signals_expired")}
    assert archived == {"c-expired", "c-stale", "c-nodata"}
    for signal_id in ("c-executed", "c-rejected", "c-expires-after-ds", "c-expired-after-ds"):
        mark = ledger_mark(ctx, SIGNALS, signal_id)
        assert mark["archived_run_id"] is None and mark["dead_lettered_run_id"] is None, signal_id
    assert ledger_mark(ctx, SIGNALS, "c-stale")["archived_run_id"] == run.run_id

    long = fact(ctx, "c-expired")
    assert (long.ds, long.run_id, long.side, long.signal_price) == (DS, run.run_id, "long", D(100))
    assert long.lookahead_end == at("2024-03-06 14:00")  # expiry + 24 h
    assert (long.max_mfe_price, long.max_mfe_pct, long.max_mfe_r) == (D(15), D(15), D(5))  # 115 - 100; R of 3
    assert long.max_mfe_at == at("2024-03-06 09:00")
    assert (long.mae_price, long.mae_pct, long.mae_r) == (D(1), D(1), D("0.333333333"))  # 100 - 99
    assert long.mae_at == at("2024-03-05 10:00")
    assert (long.take_profit_hit, long.take_profit_hit_at) == (True, at("2024-03-05 12:00"))
    assert (long.is_missed_moonshot, long.moonshot_threshold_pct) == (True, D(10))  # 15 % >= 10 %
    assert (long.bars_observed, long.bars_timeframe) == (3, "1Min")  # 10:00, 12:00 and 6 March 09:00

    short = fact(ctx, "c-stale")  # ACTIVE, never executed, past its expiry
    assert (short.max_mfe_price, short.max_mfe_pct, short.max_mfe_r) == (D(5), D("2.5"), D("0.833333333"))
    assert short.max_mfe_at == at("2024-03-05 16:00")  # 200 - 195
    assert (short.mae_price, short.mae_pct, short.mae_r) == (D(3), D("1.5"), D("0.5"))  # 203 - 200
    assert short.mae_at == at("2024-03-05 15:00")
    assert (short.take_profit_hit, short.take_profit_hit_at, short.is_missed_moonshot) == (False, None, False)
    assert (short.bars_observed, short.ds) == (2, DS)

    nodata = fact(ctx, "c-nodata")
    assert nodata.ds == DS  # the expiry day, not the creation day (4 March)
    assert nodata.created_at.date() == dt.date(2024, 3, 4)
    assert (nodata.bars_observed, nodata.bars_timeframe) == (0, None)
    for column in ("max_mfe_price", "max_mfe_pct", "max_mfe_r", "max_mfe_at", "mae_price", "mae_pct", "mae_r",
                   "mae_at", "take_profit_hit", "take_profit_hit_at", "is_missed_moonshot"):
        assert getattr(nodata, column) is None, column


@pytest.mark.parametrize(("threshold", "missed"), [("10", True), ("15", True), ("20", False)])
def test_missed_moonshot_against_the_configured_threshold(ctx: Context, signals: None, missed: bool) -> None:
    run_loop(ctx, "expired_signals", DS)
    long = fact(ctx, "c-expired")  # max MFE 15 %
    assert long.is_missed_moonshot is missed
    assert long.moonshot_threshold_pct == D(ctx.settings.moonshot_threshold_pct)
    assert fact(ctx, "c-stale").is_missed_moonshot is False  # 2.5 %


@pytest.mark.parametrize("lookahead", [dt.timedelta(hours=48)])
def test_lookahead_is_a_setting(ctx: Context, clock: Clock, signals: None) -> None:
    with pytest.raises(NotReadyError):  # 48 h after DS ends is 8 March
        dispatch(ctx, "expired_signals", DS)
    clock.set(dt.datetime(2024, 3, 8, 1, tzinfo=UTC))
    run_loop(ctx, "expired_signals", DS)

    long = fact(ctx, "c-expired")
    assert long.lookahead_end == at("2024-03-07 14:00")
    assert (long.max_mfe_price, long.max_mfe_pct, long.max_mfe_r) == (D(30), D(30), D(10))  # now reaches 130
    assert long.max_mfe_at == at("2024-03-06 15:00")
    assert long.bars_observed == 4


@pytest.mark.parametrize("lookahead", [dt.timedelta(0)])
def test_zero_lookahead_measures_the_signal_life_only(ctx: Context, signals: None) -> None:
    run_loop(ctx, "expired_signals", DS)
    long = fact(ctx, "c-expired")  # 10:00 to 14:00: the 10:00 and 12:00 bars
    assert long.lookahead_end == at("2024-03-05 14:00")
    assert (long.max_mfe_price, long.max_mfe_at, long.bars_observed) == (D(12), at("2024-03-05 12:00"), 2)
    assert long.is_missed_moonshot is True  # 12 % >= 10 %


def test_a_day_whose_lookahead_has_not_passed_is_refused(ctx: Context, clock: Clock, signals: None) -> None:
    clock.set(READY - dt.timedelta(seconds=1))
    with pytest.raises(NotReadyError) as refused:
        dispatch(ctx, "expired_signals", DS)
    assert f"expired_signals for {DS}" in str(refused.value)
    assert f"can run from {READY.isoformat()}" in str(refused.value)
    assert runs.list_runs(ctx, "expired_signals") == []
    assert rows(ctx, "fact_signals_expired") == []

    clock.set(READY)
    assert run_loop(ctx, "expired_signals", DS).loaded == 3


@pytest.mark.parametrize(("signal_id", "status"), [("c-executed", "EXECUTED"), ("c-rejected", "REJECTED")])
def test_a_forced_item_for_an_executed_or_rejected_signal_is_dead_lettered(
    ctx: Context, signals: None, signal_id: str, status: str
) -> None:
    run = runs.start_run(ctx, Loop.EXPIRED_SIGNALS.value, DS)
    item = WorkItem(run_id=run.run_id, loop=Loop.EXPIRED_SIGNALS, ds=DS, doc_id=signal_id, published_at=ctx.now())
    ctx.bus.publish(ctx.settings.topic(Loop.EXPIRED_SIGNALS), *item.to_message())
    runs.finish_dispatch(ctx, run.run_id, 1)
    deliver(ctx)

    final = runs.get_run(ctx, run.run_id)
    assert final is not None
    assert (final.status, final.published, final.loaded, final.dead_lettered) == (RunStatus.PARTIAL, 1, 0, 1)
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["doc_id"], letter["loop"], letter["run_id"]) == (signal_id, "expired_signals", run.run_id)
    assert letter["reason_code"] == "PERMANENT"
    assert letter["error_message"] == f"signal {signal_id} is {status}, not expired"
    (error,) = json.loads(letter["errors_json"])
    assert error["loc"] == "status"
    assert rows(ctx, "fact_signals_expired") == []
    assert ledger_mark(ctx, SIGNALS, signal_id)["archived_run_id"] is None


@pytest.mark.parametrize("lookahead", [dt.timedelta(hours=36)])
def test_a_lookahead_ending_mid_day_waits_for_the_day_to_end(ctx: Context, clock: Clock, make: Factory) -> None:
    """Bars are stored per day; a day fetched before it ended would be cached incomplete for later runs."""
    make.signal("c-day1", symbol="XPD", price=D(100), created_at=at("2024-03-05 10:00"), status=SignalStatus.EXPIRED)
    make.signal("c-day2", symbol="XPD", price=D(100), created_at=at("2024-03-06 10:00"), status=SignalStatus.EXPIRED)

    clock.set(at("2024-03-07 12:00"))  # end of DS + 36 h, but 7 March (in the look-ahead) is not over
    with pytest.raises(NotReadyError, match="can run from 2024-03-08T00:00:00"):
        dispatch(ctx, "expired_signals", DS)
    clock.set(at("2024-03-08 00:00"))
    run_loop(ctx, "expired_signals", DS)
    day1 = fact(ctx, "c-day1")  # look-ahead to 7 March 02:00: the 01:00 bar
    assert (day1.lookahead_end, day1.max_mfe_price, day1.max_mfe_at) == (
        at("2024-03-07 02:00"), D(2), at("2024-03-07 01:00")
    )

    clock.set(at("2024-03-09 00:00"))
    run_loop(ctx, "expired_signals", DS + dt.timedelta(days=1))
    day2 = fact(ctx, "c-day2")  # look-ahead to 8 March 02:00: all of 7 March, 13:00 included
    assert (day2.max_mfe_price, day2.max_mfe_at, day2.bars_observed) == (D(40), at("2024-03-07 13:00"), 2)
