"""Bars for Loops B and C are fetched at most once per symbol and day, never per signal.

A market-data source that records every request stands in for the broker's API. Proves, for a run of
300 rejected signals over 5 symbols and 3 days: the dispatcher makes one request per symbol, the
subscribers (even a cold instance, in many small batches) make none because they read ``market_bars``;
a second run over the same days makes none; a replay-like delivery of days never prefetched makes one
request per symbol; days without bars (weekends) are recorded in ``market_bars_coverage`` with 0 bars
rather than asked for again, and never leave a row in ``market_bars``; repeated prefetches store every
bar once; a batch needing more days than the per-process cache holds still gets all of them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.ledger import runs
from goldthread.loops import bars as bars_module
from goldthread.loops.bars import load_bars, prefetch
from goldthread.models.hot import RunStatus
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop
from goldthread.ports.market_data import Bars, from_ns

from tests.conftest import UTC, Clock, Factory, deliver, embedded_context
from tests.support.recording import CountingMarketData

SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY", "GOOG")
DAYS = (dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6))  # Monday to Wednesday
LAST = DAYS[-1]
# each signal's 7-day window touches its day to 7 days later: 4 to 13 March, of which 9 and 10 are a weekend
WEEKDAYS_TOUCHED = 8
BARS_PER_SESSION = 390  # synthetic equities trade 14:30-21:00 UTC


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2024, 3, 14, 3, tzinfo=UTC))  # LAST's 7-day window has passed


@pytest.fixture
def market() -> CountingMarketData:
    return CountingMarketData()


@pytest.fixture
def ctx(tmp_path: Path, clock: Clock, settings: Settings, market: CountingMarketData) -> Iterator[Context]:
    """``conftest.ctx`` with the counting source, and subscribers taking batches of 20 (many invocations)."""
    context = embedded_context(tmp_path, clock, settings, market, batch_size=20)
    yield context
    context.close()


def reject_many(make: Factory, prefix: str, days: Sequence[dt.date], per_day: int) -> list[str]:
    """``per_day`` rejected signals a day, round-robin over the symbols, at the market price during the session."""
    ids = []
    for day in days:
        for i in range(per_day):
            symbol = SYMBOLS[i % len(SYMBOLS)]
            created = dt.datetime.combine(day, dt.time(14, 31), UTC) + dt.timedelta(minutes=i)
            price = D(repr(round(make.broker.market.price_at(symbol, created), 2)))
            signal_id = f"{prefix}-{day:%m%d}-{i:03d}"
            make.signal(signal_id, symbol=symbol, price=price, created_at=created)
            make.writer.reject_signal(signal_id, "MAX_EXPOSURE", created)
            ids.append(signal_id)
    return ids


def bar_counts(ctx: Context) -> dict[str, int]:
    """Rows of ``market_bars`` (all, keys, real bars) and of ``market_bars_coverage`` (days, days without bars)."""
    bars = ctx.warehouse.query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT row_id) AS keys, "
        "COUNTIF(open > 0 AND high > 0 AND low > 0 AND close > 0 AND source != 'empty') AS bars FROM market_bars"
    )[0]
    coverage = ctx.warehouse.query(
        "SELECT COUNT(*) AS days, COUNT(DISTINCT row_id) AS day_keys, COUNTIF(bar_count = 0) AS empty_days "
        "FROM market_bars_coverage"
    )[0]
    return {**bars, **coverage}


def test_a_run_of_many_signals_fetches_each_symbol_once(
    ctx: Context, make: Factory, market: CountingMarketData
) -> None:
    reject_many(make, "b", DAYS, per_day=100)

    run = dispatch(ctx, Loop.REJECTED_SIGNALS, LAST)
    assert run.published == 300
    assert market.per_symbol() == Counter(dict.fromkeys(SYMBOLS, 1))  # one request per symbol, for all days
    assert all(len(symbols) == 1 for symbols, _, _ in market.requests)
    for _, start, end in market.requests:  # each covers every day its symbol's signals need
        assert (start, end) == (dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 14, tzinfo=UTC))
    assert run.details["bar_requests"] == 5

    dispatched = len(market.requests)
    ctx.cache.clear()  # the subscribers start cold, like a fresh Cloud Function instance
    deliver(ctx)
    assert len(market.requests) == dispatched  # 15 batches of 20 read market_bars; none asked the source

    final = runs.get_run(ctx, run.run_id)
    assert final is not None
    assert (final.status, final.loaded) == (RunStatus.SUCCEEDED, 300)
    counts = bar_counts(ctx)
    assert counts["n"] == counts["keys"] == counts["bars"]  # real bars only: no placeholder row
    assert counts["bars"] == len(SYMBOLS) * WEEKDAYS_TOUCHED * BARS_PER_SESSION
    assert counts["empty_days"] == len(SYMBOLS) * 2  # the weekend, recorded as fetched-and-empty
    assert counts["days"] == counts["day_keys"] == len(SYMBOLS) * (WEEKDAYS_TOUCHED + 2)
    reasons = Counter(r["exit_reason"] for r in ctx.warehouse.query("SELECT exit_reason FROM fact_rejected_signals"))
    assert "NO_DATA" not in reasons  # every signal found its bars in the cache


def test_a_second_run_over_the_same_days_fetches_nothing(
    ctx: Context, make: Factory, market: CountingMarketData
) -> None:
    reject_many(make, "b", DAYS, per_day=50)
    run_loop(ctx, Loop.REJECTED_SIGNALS, LAST)
    before, stored = len(market.requests), bar_counts(ctx)

    reject_many(make, "late", DAYS, per_day=20)  # more signals on the same days, archived by a new run
    ctx.cache.clear()
    run = run_loop(ctx, Loop.REJECTED_SIGNALS, LAST)

    assert (run.status, run.published, run.loaded) == (RunStatus.SUCCEEDED, 60, 60)
    assert len(market.requests) == before
    assert run.details["bar_requests"] == 0
    assert bar_counts(ctx) == stored


def test_a_late_subscriber_fetches_days_not_prefetched_once_per_symbol(
    ctx: Context, make: Factory, market: CountingMarketData, clock: Clock
) -> None:
    # items published without the dispatcher's prefetch, as a replay publishes them
    day = dt.date(2024, 3, 19)
    clock.set(dt.datetime(2024, 3, 27, 3, tzinfo=UTC))  # the signals' window has passed
    ids = reject_many(make, "replayed", [day], per_day=50)
    run = runs.start_run(ctx, "replay", day)
    topic = ctx.settings.topic(Loop.REJECTED_SIGNALS)
    for doc_id in ids:
        item = WorkItem(run_id=run.run_id, loop=Loop.REJECTED_SIGNALS, ds=day, doc_id=doc_id, published_at=ctx.now())
        ctx.bus.publish(topic, *item.to_message())
    runs.finish_dispatch(ctx, run.run_id, len(ids))
    deliver(ctx)

    assert market.per_symbol() == Counter(dict.fromkeys(SYMBOLS, 1))  # 3 batches of 20, one request per symbol
    final = runs.get_run(ctx, run.run_id)
    assert final is not None and (final.status, final.loaded) == (RunStatus.SUCCEEDED, 50)


def test_repeated_prefetches_store_each_bar_once(ctx: Context, market: CountingMarketData) -> None:
    tue, wed, mon, thu = dt.date(2024, 3, 5), dt.date(2024, 3, 6), dt.date(2024, 3, 4), dt.date(2024, 3, 7)
    assert prefetch(ctx, {"AAPL": {tue, wed}}) == {"bar_requests": 1, "bar_rows": 2 * BARS_PER_SESSION}
    assert prefetch(ctx, {"AAPL": {tue, wed}}) == {"bar_requests": 0, "bar_rows": 0}
    # a wider range: one request from Monday to Thursday, of which only Monday and Thursday are stored
    assert prefetch(ctx, {"AAPL": {mon, tue, wed, thu}}) == {"bar_requests": 1, "bar_rows": 2 * BARS_PER_SESSION}
    assert market.requests[-1] == (("AAPL",), dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 8, tzinfo=UTC))
    counts = bar_counts(ctx)
    assert counts["n"] == counts["keys"] == counts["bars"] == 4 * BARS_PER_SESSION
    assert (counts["days"], counts["empty_days"]) == (4, 0)
    per_day = ctx.warehouse.query("SELECT ds, COUNT(*) AS n FROM market_bars GROUP BY ds ORDER BY ds")
    assert [(r["ds"], r["n"]) for r in per_day] == [(d, BARS_PER_SESSION) for d in (mon, tue, wed, thu)]


def test_days_without_bars_are_remembered_and_never_read_as_bars(ctx: Context, market: CountingMarketData) -> None:
    fri, sat, sun, mon = (dt.date(2024, 3, d) for d in (8, 9, 10, 11))
    assert prefetch(ctx, {"MSFT": {fri, sat, sun, mon}})["bar_requests"] == 1
    assert prefetch(ctx, {"MSFT": {sat, sun}})["bar_requests"] == 0  # the weekend is known to be empty

    start = dt.datetime(2024, 3, 8, 20, tzinfo=UTC)
    bars = load_bars(ctx, [("MSFT", start, start + dt.timedelta(days=3))])["MSFT"]
    assert len(market.requests) == 1
    assert len(bars) == 2 * BARS_PER_SESSION  # Friday's and Monday's sessions, nothing from the markers
    assert float(bars.low.min()) > 0
    days = {dt.datetime.fromtimestamp(int(t) / 1e9, UTC).date() for t in bars.ts}
    assert days == {fri, mon}


def test_an_empty_day_writes_one_coverage_row_no_bar_and_is_never_fetched_again(
    ctx: Context, market: CountingMarketData
) -> None:
    sat = dt.date(2024, 3, 9)  # no equity session; the clock is past it
    assert prefetch(ctx, {"MSFT": {sat}}) == {"bar_requests": 1, "bar_rows": 0}
    assert ctx.warehouse.query("SELECT COUNT(*) AS n FROM market_bars")[0]["n"] == 0
    (row,) = ctx.warehouse.query("SELECT * FROM market_bars_coverage")
    assert (row["symbol"], row["ds"], row["timeframe"], row["source"]) == ("MSFT", sat, "1Min", "synthetic")
    assert (row["bar_count"], row["refused_count"], row["bars_timeframe"]) == (0, 0, "1Min")
    assert row["fetched_at"] == ctx.now()
    assert row["row_id"] == bars_module.row_id_for("market_bars_coverage", "MSFT", "1Min", "synthetic", "2024-03-09")

    calls = market.calls
    assert prefetch(ctx, {"MSFT": {sat}}) == {"bar_requests": 0, "bar_rows": 0}
    ctx.cache.clear()
    start = dt.datetime(2024, 3, 9, 1, tzinfo=UTC)
    assert len(load_bars(ctx, [("MSFT", start, start + dt.timedelta(hours=20))])["MSFT"]) == 0
    assert market.calls == calls  # neither the prefetch nor the read asked the source again
    assert ctx.warehouse.query("SELECT COUNT(*) AS n FROM market_bars_coverage")[0]["n"] == 1


def test_a_day_not_over_yet_is_not_remembered_as_empty(ctx: Context, clock: Clock, market: CountingMarketData) -> None:
    clock.set(dt.datetime(2024, 3, 9, 12, tzinfo=UTC))  # Saturday noon: Saturday may still get bars (crypto)
    prefetch(ctx, {"MSFT": {dt.date(2024, 3, 9)}})
    prefetch(ctx, {"MSFT": {dt.date(2024, 3, 9)}})
    assert len(market.requests) == 2
    assert (bar_counts(ctx)["n"], bar_counts(ctx)["days"]) == (0, 0)


def test_a_batch_needing_more_days_than_the_cache_holds_still_gets_them_all(
    ctx: Context, market: CountingMarketData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bars_module, "_CACHE_DAYS", 3)  # the per-process bound, made small
    start = dt.datetime(2024, 3, 4, tzinfo=UTC)
    got = load_bars(ctx, [("BTC/USD", start, start + dt.timedelta(days=5))])["BTC/USD"]
    assert len(got) == 5 * 1440  # five days of 24/7 minute bars, none silently dropped
    assert len(ctx.cache["bars_cache"]) == 3  # the bound holds once the batch has its bars


def _reference_decimals(values: np.ndarray) -> pa.Array:
    """The per-value reading the vectorised conversion must equal: the float's repr, rounded to 9 places."""
    return pa.array([D(repr(float(v))).quantize(D("0.000000001")) for v in values], pa.decimal128(38, 9))


@pytest.mark.parametrize("values", [
    np.round(np.random.default_rng(1).uniform(0, 1e5, 20_000), 4),  # prices as sources print them
    np.random.default_rng(2).uniform(-10, 10, 20_000),  # full-precision floats
    10 ** np.random.default_rng(3).uniform(-12, 6.9, 20_000),  # tiny to large
    np.array([0.0, 1.5, 0.1234567895, 0.0000000005, 0.0000000015, 123456.0000000005, 9e6, 1e7, 3e18]),  # ties, large
    np.array([-0.0, -1e-12, 2.0]),  # negative zero and a negative rounding to zero keep their sign
])
def test_bar_prices_become_the_decimals_of_their_repr(values: np.ndarray) -> None:
    got = bars_module._decimals(values)
    want = _reference_decimals(values)
    assert got.equals(want)
    assert [str(v) for v in got.to_pylist()] == [str(v) for v in want.to_pylist()]


def test_bar_days_agree_with_from_ns_even_off_the_microsecond() -> None:
    day = 86_400 * 10**9
    ts = np.concatenate([
        (np.arange(-3, 4, dtype=np.int64)[:, None] * day + np.array([-1000, -1, 0, 1, 1000], dtype=np.int64)).ravel(),
        np.random.default_rng(4).integers(-2**62, 2**62, 5_000),
    ])
    want = [(from_ns(int(t)).date() - dt.date(1970, 1, 1)).days for t in ts]
    assert bars_module.bar_days(ts).tolist() == want


def test_bars_read_back_per_symbol_and_day_in_time_order(ctx: Context) -> None:
    windows = [(s, dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 7, tzinfo=UTC)) for s in SYMBOLS[:3]]
    got = load_bars(ctx, windows)
    source = SyntheticMarketData().get_bars(list(SYMBOLS[:3]), "1Min", windows[0][1], windows[0][2])
    for symbol in SYMBOLS[:3]:
        assert np.array_equal(got[symbol].ts, source[symbol].ts)
        for column in ("open", "high", "low", "close", "volume"):  # the float of each stored decimal, exactly
            stored = _reference_decimals(getattr(source[symbol], column)).to_pylist()
            assert getattr(got[symbol], column).tolist() == [float(v) for v in stored]


def test_prices_a_source_prints_read_back_as_the_same_floats(ctx: Context) -> None:
    """A bar of 101.23 stored in ``market_bars`` reads back as 101.23, not a float step beside it (Arrow's
    own decimal cast was off for about 40% of 4-place prices, so Loop B's exits moved between runs)."""
    rng = np.random.default_rng(5)
    prices = np.round(rng.uniform(1, 5_000, 2_000), 4)
    ts = (np.datetime64("2024-03-04T14:30", "ns").astype(np.int64) + np.arange(2_000, dtype=np.int64) * 60 * 10**9)
    table = bars_module._bars_table(Bars("AAPL", ts, prices, prices, prices, prices, np.round(prices * 7)), "1Min",
                                    "test")
    ctx.warehouse.load_arrow(bars_module.MarketBar, table)
    got = load_bars(ctx, [("AAPL", dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 6, tzinfo=UTC))])["AAPL"]
    assert got.close.tolist() == prices.tolist()
    assert got.volume.tolist() == np.round(prices * 7).tolist()


@pytest.mark.parametrize("values", [
    [D("101.23"), D("-0.000000001"), D("0"), D("9007199.254740991")],  # fast path: unscaled below 2**53
    [D("9007199.254740993"), D("-12345678901.123456789"), D("1e20")],  # beyond 2**53: through the text
    [D("1.5"), None, D("2.25")],  # a null becomes NaN
])
def test_decimal_floats_equal_float_of_each_exact_decimal(values: list[D | None]) -> None:
    array = pa.array(values, pa.decimal128(38, 9))
    want = [float("nan") if v is None else float(v) for v in values]
    for column in (array, array.slice(1), pa.chunked_array([array[:1], array[1:]])):
        got = bars_module.decimal_floats(column)
        expect = want[len(values) - len(column):]
        np.testing.assert_array_equal(got, np.array(expect))


@pytest.mark.parametrize("stored_as", ["text", "mappings"])  # SQLite keeps JSON text, Firestore gives mappings
def test_the_dispatcher_prefetches_the_days_of_its_valid_signals_and_no_others(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch, stored_as: str
) -> None:
    """``prepare`` validates only the signals that could add a day; the days must be those of every valid one."""
    if stored_as == "mappings":
        monkeypatch.setattr(ctx.hot, "get_many_unparsed", ctx.hot.get_many)
    from goldthread.loops import counterfactual, get_loop
    from goldthread.models.hot import RejectedSignal

    ids = reject_many(make, "b", DAYS[:1], per_day=10)
    good = ctx.hot.get("rejected_signals", ids[0])
    assert good is not None
    odd = {  # written by hand: invalid ones that would add days, and valid ones whose UTC days differ from the text's
        "bad-new-symbol": {**good, "symbol": "TSLA", "take_profit": "-1"},
        "bad-new-day": {**good, "created_at": "2024-03-01T10:00:00+00:00", "stop_loss": "not a number"},
        "bad-old-day": {**good, "take_profit": "-1"},
        "offset": {**good, "created_at": "2024-03-04T23:30:00-05:00", "rejected_at": "2024-03-04T23:30:05-05:00",
                   "expires_at": "2024-03-05T23:00:00-05:00"},
        "zulu-ns": {**good, "symbol": "MSFT", "created_at": "2024-03-04T23:59:59.9999999Z",
                    "rejected_at": "2024-03-05T00:00:05Z", "expires_at": "2024-03-05T04:00:00Z"},
        "epoch-number": {**good, "symbol": "NVDA", "created_at": 1709942400, "rejected_at": 1709942405,
                         "expires_at": 1709956800},
    }
    for doc_id, doc in odd.items():
        ctx.hot.put("rejected_signals", doc_id, {**doc, "signal_id": doc_id})
    loop = get_loop("rejected_signals")
    want: list[tuple[str, dt.datetime, dt.datetime]] = []
    for data in ctx.hot.get_many("rejected_signals", [*ids, *odd]).values():  # the plain way: validate every one
        try:
            signal = RejectedSignal.model_validate(data)
        except ValueError:
            continue
        want.append((signal.symbol, *loop.window(ctx, signal)))
    asked: list[dict[str, set[dt.date]]] = []
    monkeypatch.setattr(counterfactual, "prefetch", lambda _ctx, needs: asked.append(dict(needs)) or {})

    loop.prepare(ctx, DAYS[0], [*ids, *odd])
    assert asked == [dict(bars_module.needed_days(want))]
    assert "TSLA" not in asked[0] and dt.date(2024, 3, 1) not in asked[0]["AAPL"]
    assert dt.date(2024, 3, 12) in asked[0]["AAPL"]  # the offset signal is 5 March in UTC: its window adds a day
    assert dt.date(2024, 3, 15) in asked[0]["NVDA"]  # a time given as a number is read by the model alone
