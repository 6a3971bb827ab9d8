"""Bars for the counterfactual loops, fetched from the broker at most once per symbol, day and timeframe.

Alpaca allows about 200 requests a minute and a run may hold thousands of signals, so bars are never
fetched per signal. The design (README, "Market data for Loops B and C"):

1. The dispatcher works out which (symbol, day) pairs the run's signals need and fetches the missing
   ones once, one request per symbol covering its missing days, into the warehouse table
   ``market_bars`` (partitioned by day, clustered by symbol and timeframe; keyed per bar, so a second
   fetch stores nothing twice).
2. A subscriber reads the bars its batch needs with one query per batch and keeps them in a
   per-instance memory cache keyed by (symbol, timeframe, day), so a warm Cloud Function instance
   answers the next signals of the same symbol without querying at all.
3. If a subscriber finds days missing (a replay long after the dispatch), it fetches and stores them
   the same way, still once per symbol and day.

A finished day for which the source has no bars (a weekend or holiday for equities) is stored as one
marker row (``source = 'empty'``, never read as a bar), so it counts as fetched and is not asked for again.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal

import numpy as np
import pyarrow as pa

from goldthread.adapters.synthetic_market_data import concat
from goldthread.logs import get_logger
from goldthread.models.warehouse import MarketBar, row_id_for
from goldthread.pipeline.context import Context
from goldthread.ports.market_data import Bars, from_ns

log = get_logger("bars")
TIMEFRAME = "1Min"
_CACHE_KEY = "bars_cache"
_CACHE_DAYS = 4096  # (symbol, timeframe, day) entries kept per process
_EMPTY_MARKER = "empty"
_DAY_NS = 86_400 * 1_000_000_000


def days_between(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """UTC days touched by ``[start, end)``."""
    last = (end - dt.timedelta(microseconds=1)).date()
    return [start.date() + dt.timedelta(days=i) for i in range((last - start.date()).days + 1)]


def needed_days(ranges: Iterable[tuple[str, dt.datetime, dt.datetime]]) -> dict[str, set[dt.date]]:
    """Per symbol, the days a set of (symbol, start, end) windows touch."""
    out: dict[str, set[dt.date]] = defaultdict(set)
    for symbol, start, end in ranges:
        out[symbol].update(days_between(start, end))
    return out


def _stored_days(ctx: Context, needs: Mapping[str, set[dt.date]], timeframe: str) -> set[tuple[str, dt.date]]:
    if not needs:
        return set()
    all_days = [d for days in needs.values() for d in days]
    rows = ctx.warehouse.query(
        "SELECT DISTINCT symbol, ds FROM market_bars WHERE timeframe = @tf AND symbol IN UNNEST(@symbols) "
        "AND ds BETWEEN @first AND @last",
        {"tf": timeframe, "symbols": sorted(needs), "first": min(all_days), "last": max(all_days)},
    )
    return {(r["symbol"], r["ds"]) for r in rows}


def _bars_table(bars: Bars, timeframe: str, source: str) -> pa.Table:
    """Bars as ``market_bars`` rows (Arrow), prices as exact decimals of their printed value."""
    days = [from_ns(int(t)).date() for t in bars.ts]
    keys = [row_id_for("market_bars", bars.symbol, timeframe, str(int(t))) for t in bars.ts]

    def dec(values: np.ndarray) -> list[Decimal]:
        return [Decimal(repr(float(v))).quantize(Decimal("0.000000001")) for v in values]

    from goldthread.adapters.duckdb_warehouse import arrow_schema

    return pa.Table.from_pydict(
        {
            "row_id": keys, "ds": days, "symbol": [bars.symbol] * len(bars), "timeframe": [timeframe] * len(bars),
            "ts": pa.array(bars.ts, pa.timestamp("ns", tz="UTC")).cast(pa.timestamp("us", tz="UTC")),
            "open": dec(bars.open), "high": dec(bars.high), "low": dec(bars.low), "close": dec(bars.close),
            "volume": dec(bars.volume), "source": [source] * len(bars),
        },
        schema=arrow_schema(MarketBar),
    )


def _day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)


def _empty_marker(symbol: str, day: dt.date, timeframe: str) -> MarketBar:
    """The row saying the source has no ``timeframe`` bars of ``symbol`` on ``day``."""
    zero = Decimal(0)
    return MarketBar(
        row_id=row_id_for("market_bars", symbol, timeframe, _EMPTY_MARKER, day.isoformat()), ds=day, symbol=symbol,
        timeframe=timeframe, ts=dt.datetime.combine(day, dt.time(), dt.UTC), open=zero, high=zero, low=zero,
        close=zero, volume=zero, source=_EMPTY_MARKER,
    )


def prefetch(ctx: Context, needs: Mapping[str, set[dt.date]], timeframe: str = TIMEFRAME) -> dict[str, int]:
    """Fetch every (symbol, day) in ``needs`` not yet in ``market_bars``: one request per symbol."""
    stored = _stored_days(ctx, needs, timeframe)
    requests = rows = 0
    for symbol, days in sorted(needs.items()):
        missing = sorted(d for d in days if (symbol, d) not in stored)
        if not missing:
            continue
        start = dt.datetime.combine(missing[0], dt.time(), dt.UTC)
        end = dt.datetime.combine(missing[-1] + dt.timedelta(days=1), dt.time(), dt.UTC)
        bars = ctx.market_data.get_bars([symbol], timeframe, start, end).get(symbol, Bars.empty(symbol))
        requests += 1
        wanted = set(missing)
        keep = np.array([from_ns(int(t)).date() in wanted for t in bars.ts], dtype=bool)
        subset = Bars(symbol, *(getattr(bars, f)[keep] for f in ("ts", "open", "high", "low", "close", "volume")))
        if len(subset):
            rows += len(ctx.warehouse.load_arrow(MarketBar, _bars_table(subset, timeframe,
                                                                       ctx.market_data.name)).inserted)
        with_bars = {dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in np.unique(subset.ts // _DAY_NS)}
        empty = [d for d in missing if d not in with_bars and _day_end(d) <= ctx.now()]
        if empty:  # remember days without bars, or every run and subscriber would ask for them again
            ctx.warehouse.insert_rows(MarketBar, [_empty_marker(symbol, d, timeframe) for d in empty])
    if requests:
        log.info("prefetched bars: %d requests, %d rows", requests, rows)
    return {"bar_requests": requests, "bar_rows": rows}


def _cache(ctx: Context) -> OrderedDict[tuple[str, str, dt.date], Bars]:
    cache = ctx.cache.get(_CACHE_KEY)
    if cache is None:
        cache = ctx.cache[_CACHE_KEY] = OrderedDict()
    return cache  # type: ignore[no-any-return]


def load_bars(
    ctx: Context, windows: Iterable[tuple[str, dt.datetime, dt.datetime]], timeframe: str = TIMEFRAME
) -> dict[str, Bars]:
    """Bars per symbol covering every window, from the memory cache, then the warehouse, then the source."""
    needs = needed_days(windows)
    cache = _cache(ctx)
    missing = {s: {d for d in days if (s, timeframe, d) not in cache} for s, days in needs.items()}
    missing = {s: days for s, days in missing.items() if days}
    if missing:
        prefetch(ctx, missing, timeframe)
        all_days = [d for days in missing.values() for d in days]
        table = ctx.warehouse.query_arrow(
            "SELECT symbol, ds, ts, open, high, low, close, volume FROM market_bars "
            "WHERE timeframe = @tf AND symbol IN UNNEST(@symbols) AND ds BETWEEN @first AND @last "
            "AND source != @empty ORDER BY symbol, ts",
            {"tf": timeframe, "symbols": sorted(missing), "first": min(all_days), "last": max(all_days),
             "empty": _EMPTY_MARKER},
        )
        _fill_cache(cache, table, missing, timeframe)
    out = {}
    for symbol, days in needs.items():
        out[symbol] = concat(symbol, [cache.get((symbol, timeframe, d), Bars.empty(symbol)) for d in sorted(days)])
    while len(cache) > _CACHE_DAYS:  # only now: a batch needing more days than the bound still gets them all
        cache.popitem(last=False)
    return out


def _fill_cache(
    cache: OrderedDict[tuple[str, str, dt.date], Bars], table: pa.Table, missing: Mapping[str, set[dt.date]],
    timeframe: str,
) -> None:
    ts = table.column("ts").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
    symbols = np.asarray(table.column("symbol").to_pylist(), dtype=object)
    days = np.asarray(table.column("ds").to_pylist(), dtype=object)
    cols = {c: table.column(c).cast(pa.float64()).to_numpy() for c in ("open", "high", "low", "close", "volume")}
    for symbol, wanted in missing.items():
        for day in wanted:
            mask = (symbols == symbol) & (days == day)
            cache[(symbol, timeframe, day)] = Bars(symbol, ts[mask], *(cols[c][mask] for c in
                                                                     ("open", "high", "low", "close", "volume")))
            cache.move_to_end((symbol, timeframe, day))
