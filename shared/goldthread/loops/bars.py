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

What has been fetched is recorded in ``market_bars_coverage``, one row per (symbol, day, timeframe asked,
source) with the day's bar count, and the prefetch asks only for days without such a row. A finished day
the source has no bars for (a weekend or holiday for equities) is recorded there with 0 bars, so it is
asked for once and never again, and ``market_bars`` holds real bars only. A day not over yet is not
recorded: it is asked for again until it is (its bars are keyed, so none is stored twice).

Every bar carries its real timeframe: a source may serve coarser bars than asked (a file of hourly bars
answers a request for minutes with hours), and they are stored and read as what they are. A reader takes,
per symbol and day, the bars of the timeframe asked for, else the finest stored. Warehouses written before
the coverage table may hold zero-price marker rows (``source = 'empty'``); readers skip them and any row
that is not a real bar, and the days they marked are fetched once more to record their coverage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal

import numpy as np
import pyarrow as pa

from goldthread.logs import get_logger
from goldthread.models.types import NINE_PLACES
from goldthread.models.warehouse import MarketBar, MarketBarsCoverage, row_id_for
from goldthread.pipeline.context import Context
from goldthread.ports.market_data import Bars, concat, from_ns, timeframe_ns
from goldthread.ports.market_data import aggregate as _aggregate

log = get_logger("bars")
TIMEFRAME = "1Min"
_CACHE_KEY = "bars_cache"
_CACHE_DAYS = 4096  # (symbol, timeframe, day) entries kept per process
_LEGACY_MARKER = "empty"  # source of the zero-price rows that once marked days without bars
_REAL_BAR = (  # the rows of market_bars a reader takes: real bars, never a legacy marker or a zero price
    f"source != '{_LEGACY_MARKER}' AND open > 0 AND close > 0 AND low > 0 AND high >= low AND high >= open "
    "AND high >= close AND low <= open AND low <= close"
)
_DAY_NS = 86_400 * 1_000_000_000
_EPOCH_DAY = dt.date(1970, 1, 1)
_SAFE_NS = (1 << 31) * 1_000_000_000  # |ts| below this (2038): whole-microsecond times survive float seconds
_SCALE = 10**9  # DECIMAL(38, 9): the unscaled integer of a price
_EXACT_UNSCALED = float(1 << 53)  # unscaled values below this are exact in float64
_MIN_PRICE = 5e-10  # a price at or below it rounds (half-even) to 0 at 9 places: not a price
_MAX_VALUE = 1e19  # from here a float has more digits at 9 places than Money's 28-digit reading holds
_DECIMAL = pa.decimal128(38, 9)


def days_between(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """UTC days touched by ``[start, end)``."""
    last = (end - dt.timedelta(microseconds=1)).date()
    return [start.date() + dt.timedelta(days=i) for i in range((last - start.date()).days + 1)]


def needed_days(ranges: Iterable[tuple[str, dt.datetime, dt.datetime]]) -> dict[str, set[dt.date]]:
    """Per symbol, the days a set of (symbol, start, end) windows touch.

    Signals of a run share a few (first day, last day) spans, so each span's days are listed once."""
    spans: dict[str, set[tuple[dt.date, dt.date]]] = defaultdict(set)
    one_us = dt.timedelta(microseconds=1)
    for symbol, start, end in ranges:
        spans[symbol].add((start.date(), (end - one_us).date()))
    out: dict[str, set[dt.date]] = defaultdict(set)
    for symbol, pairs in spans.items():
        days = out[symbol]
        for first, last in pairs:
            days.update(first + dt.timedelta(days=i) for i in range((last - first).days + 1))
    return out


def bar_days(ts: np.ndarray) -> np.ndarray:
    """The UTC day of each bar time (int64 ns), as int64 days since 1970-01-01, the day ``from_ns`` gives.

    Whole-microsecond times in the usual range are floored (what ``from_ns`` computes exactly for them); any
    other time goes through ``from_ns`` itself, so the two never disagree."""
    ts = np.asarray(ts, dtype=np.int64)
    days = ts // _DAY_NS
    odd = np.flatnonzero((ts % 1000 != 0) | (ts >= _SAFE_NS) | (ts <= -_SAFE_NS))
    for i in odd.tolist():
        days[i] = (from_ns(int(ts[i])).date() - _EPOCH_DAY).days
    return days


def _day_number(day: dt.date) -> int:
    return (day - _EPOCH_DAY).days


def _covered_days(
    ctx: Context, needs: Mapping[str, set[dt.date]], timeframe: str, source: str
) -> set[tuple[str, dt.date]]:
    """The (symbol, day) pairs of ``needs`` that ``source`` has already been asked for at ``timeframe``."""
    if not needs:
        return set()
    all_days = [d for days in needs.values() for d in days]
    rows = ctx.warehouse.query(
        "SELECT DISTINCT symbol, ds FROM market_bars_coverage WHERE timeframe = @tf AND source = @source "
        "AND symbol IN UNNEST(@symbols) AND ds BETWEEN @first AND @last",
        {"tf": timeframe, "source": source, "symbols": sorted(needs), "first": min(all_days), "last": max(all_days)},
    )
    return {(r["symbol"], r["ds"]) for r in rows}


def real_bars(bars: Bars) -> np.ndarray:
    """Which bars a market could have printed (``MarketBar``'s rule, vectorised): every price above zero once
    rounded to 9 places (above ``5e-10``), a volume not negative, every value below ``1e19`` (what a float
    ``Money`` reads into 9 places), and ``low <= open, close <= high``. ``test_fast_paths`` holds it to
    ``MarketBar`` bar for bar: a bar it passes is stored, one ``MarketBar`` would refuse is refused and counted."""
    o, h, low, c, v = bars.open, bars.high, bars.low, bars.close, bars.volume
    with np.errstate(invalid="ignore"):
        return (  # type: ignore[no-any-return]
            (o > _MIN_PRICE) & (h > _MIN_PRICE) & (low > _MIN_PRICE) & (c > _MIN_PRICE) & (v >= 0)
            & (o < _MAX_VALUE) & (h < _MAX_VALUE) & (low < _MAX_VALUE) & (c < _MAX_VALUE) & (v < _MAX_VALUE)
            & (h >= low) & (h >= o) & (h >= c) & (low <= o) & (low <= c)
        )


def nine_place_units(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each float's shortest repr rounded half-even to 9 places, as its unscaled int64 (value * 10**9), and
    where that is certain.

    ``rint(value * 1e9)`` equals the rounded repr whenever the product is exact enough and not near a half
    (a margin of a few ulps, far more than the gap between a float, its repr and their product). Elsewhere
    (a tie, a negative zero, NaN, infinity, a value of 9e6 or more) the mask is False and the unit 0: the
    caller reads those through ``Decimal(repr(v))``."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = v * _SCALE
        unscaled = np.rint(scaled)
        margin = np.abs(scaled - np.floor(scaled) - 0.5)
        exact = (
            np.isfinite(scaled) & (np.abs(scaled) < _EXACT_UNSCALED)
            & (margin > 8 * np.spacing(np.abs(scaled)) + 1e-9)
            & ~((unscaled == 0) & np.signbit(v))
        )
    return np.where(exact, unscaled, 0.0).astype(np.int64), exact


def _decimals(values: np.ndarray) -> pa.Array:
    """Floats as ``DECIMAL(38, 9)``, each the exact decimal of its shortest repr rounded half-even to 9 places:
    built from ``nine_place_units``, or, if any value is uncertain, the whole column through ``Decimal``."""
    units, exact = nine_place_units(values)
    if not bool(exact.all()):
        return pa.array([Decimal(repr(float(x))).quantize(NINE_PLACES) for x in np.asarray(values).tolist()],
                        _DECIMAL)
    words = np.empty((len(units), 2), dtype="<i8")  # decimal128: little-endian two's complement, low word first
    words[:, 0] = units
    words[:, 1] = units >> 63
    return pa.Array.from_buffers(_DECIMAL, len(units), [None, pa.py_buffer(words.tobytes())])


def decimal_floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Warehouse decimals as float64, each the float nearest its exact decimal (what ``float(Decimal)`` gives).

    Arrow's own decimal-to-float cast is not correctly rounded: it reads ``101.230000000`` one step off for
    about 40% of 4-place prices, so a price stored and read back would no longer equal the price fetched.
    The cast through the text is (reading the unscaled integers from the buffer saved under 5% of Loops B
    and C, ``python -m bench.fast_paths``); a null becomes NaN."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_decimal(array.type):
        array = array.cast(pa.string())
    return array.cast(pa.float64()).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _bar_keys(symbol: str, timeframe: str, ts: np.ndarray) -> list[str]:
    """``row_id_for("market_bars", symbol, timeframe, str(ts))`` of every bar, sharing the hashed prefix."""
    prefix = hashlib.sha256("\x1f".join(("market_bars", symbol, timeframe, "")).encode())
    keys = []
    for t in ts.tolist():
        h = prefix.copy()
        h.update(str(t).encode())
        keys.append(h.hexdigest()[:32])
    return keys


def _bars_table(bars: Bars, timeframe: str, source: str) -> pa.Table:
    """Bars as ``market_bars`` rows (Arrow), prices as exact decimals of their printed value."""
    from goldthread.models.columns import arrow_schema

    n = len(bars)
    ts = np.asarray(bars.ts, dtype=np.int64)
    return pa.Table.from_pydict(
        {
            "row_id": _bar_keys(bars.symbol, timeframe, ts),
            "ds": pa.array(bar_days(ts).astype(np.int32), pa.int32()).cast(pa.date32()),
            "symbol": pa.repeat(bars.symbol, n).cast(pa.string()),
            "timeframe": pa.repeat(timeframe, n).cast(pa.string()),
            "ts": pa.array(bars.ts, pa.timestamp("ns", tz="UTC")).cast(pa.timestamp("us", tz="UTC")),
            "open": _decimals(bars.open), "high": _decimals(bars.high), "low": _decimals(bars.low),
            "close": _decimals(bars.close), "volume": _decimals(bars.volume),
            "source": pa.repeat(source, n).cast(pa.string()),
        },
        schema=arrow_schema(MarketBar),
    )


def _day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)


def _subset(bars: Bars, keep: np.ndarray) -> Bars:
    return Bars.of(bars.symbol, bars.ts[keep], [getattr(bars, f)[keep] for f in ("open", "high", "low", "close",
                                                                                  "volume")], bars.timeframe)


def prefetch(ctx: Context, needs: Mapping[str, set[dt.date]], timeframe: str = TIMEFRAME) -> dict[str, int]:
    """Fetch every (symbol, day) in ``needs`` the source has not been asked for yet (``market_bars_coverage``),
    one request per symbol; store its real bars under the timeframe served, and one coverage row per
    finished day, with or without bars.

    Bars that are not real (a zero or negative price, a high below the low) are not stored: they are
    logged and counted on the day's coverage row (``refused_count``), so garbage never reaches the warehouse."""
    source = ctx.market_data.name
    covered = _covered_days(ctx, needs, timeframe, source)
    requests = rows = 0
    for symbol, days in sorted(needs.items()):
        missing = sorted(d for d in days if (symbol, d) not in covered)
        if not missing:
            continue
        start = dt.datetime.combine(missing[0], dt.time(), dt.UTC)
        end = dt.datetime.combine(missing[-1] + dt.timedelta(days=1), dt.time(), dt.UTC)
        bars = ctx.market_data.get_bars([symbol], timeframe, start, end).get(symbol, Bars.empty(symbol, timeframe))
        timeframe_ns(bars.timeframe)  # a source must say a timeframe the warehouse accepts
        requests += 1
        wanted = np.array([_day_number(d) for d in missing], dtype=np.int64)
        fetched = _subset(bars, np.isin(bar_days(bars.ts), wanted))
        real = real_bars(fetched)
        subset = _subset(fetched, real)
        refused = _per_day(_subset(fetched, ~real))
        if refused:
            log.warning("refused %d bars of %s from %s that are not real bars (days %s)", sum(refused.values()),
                        symbol, source, ", ".join(d.isoformat() for d in sorted(refused)))
        if len(subset):
            rows += len(ctx.warehouse.load_arrow(MarketBar, _bars_table(subset, subset.timeframe, source)).inserted)
        counts = _per_day(subset)
        now = ctx.now()
        coverage = [
            MarketBarsCoverage(
                row_id=row_id_for("market_bars_coverage", symbol, timeframe, source, d.isoformat()), ds=d,
                symbol=symbol, timeframe=timeframe, source=source, bars_timeframe=bars.timeframe,
                bar_count=counts.get(d, 0), refused_count=refused.get(d, 0), fetched_at=now,
            )
            for d in missing if _day_end(d) <= now  # a day still running may get more bars: ask again later
        ]
        if coverage:
            ctx.warehouse.insert_rows(MarketBarsCoverage, coverage)
    if requests:
        log.info("prefetched bars: %d requests, %d rows", requests, rows)
    return {"bar_requests": requests, "bar_rows": rows}


def _per_day(bars: Bars) -> dict[dt.date, int]:
    """How many of ``bars`` open on each UTC day."""
    days, counts = np.unique(bar_days(bars.ts), return_counts=True)
    return {_EPOCH_DAY + dt.timedelta(days=int(d)): int(n) for d, n in zip(days.tolist(), counts.tolist(), strict=True)}


def _cache(ctx: Context) -> OrderedDict[tuple[str, str, dt.date], Bars]:
    cache = ctx.cache.get(_CACHE_KEY)
    if cache is None:
        cache = ctx.cache[_CACHE_KEY] = OrderedDict()
    return cache  # type: ignore[no-any-return]


def load_bars(
    ctx: Context, windows: Iterable[tuple[str, dt.datetime, dt.datetime]], timeframe: str = TIMEFRAME
) -> dict[str, Bars]:
    """Bars per symbol covering every window, from the memory cache, then the warehouse, then the source.

    Per symbol and day: the bars of ``timeframe``, else the finest stored (a source with nothing finer
    serves coarser bars). A symbol whose days came in different timeframes (the source changed between
    runs) gets them all in the coarsest, the finer days aggregated into it on UTC-aligned buckets, so the
    maths see one bar length."""
    needs = needed_days(windows)
    cache = _cache(ctx)
    missing = {s: {d for d in days if (s, timeframe, d) not in cache} for s, days in needs.items()}
    missing = {s: days for s, days in missing.items() if days}
    if missing:
        prefetch(ctx, missing, timeframe)
        all_days = [d for days in missing.values() for d in days]
        table = ctx.warehouse.query_arrow(
            "SELECT symbol, ds, timeframe, ts, open, high, low, close, volume FROM market_bars "
            "WHERE symbol IN UNNEST(@symbols) AND ds BETWEEN @first AND @last "
            f"AND {_REAL_BAR} ORDER BY symbol, timeframe, ts",
            {"symbols": sorted(missing), "first": min(all_days), "last": max(all_days)},
        )
        _fill_cache(cache, table, missing, timeframe)
    out = {}
    for symbol, days in needs.items():
        out[symbol] = _joined(symbol, [cache.get((symbol, timeframe, d), Bars.empty(symbol, timeframe))
                                       for d in sorted(days)], timeframe)
    while len(cache) > _CACHE_DAYS:  # only now: a batch needing more days than the bound still gets them all
        cache.popitem(last=False)
    return out


def _joined(symbol: str, parts: list[Bars], timeframe: str) -> Bars:
    """Consecutive days' bars as one ``Bars``, in the coarsest timeframe among the days that have bars."""
    used = {p.timeframe for p in parts if len(p)}
    if len(used) <= 1:
        return concat(symbol, parts, used.pop() if used else timeframe)
    coarsest = max(used, key=timeframe_ns)
    log.warning("bars of %s mix timeframes %s; using %s", symbol, sorted(used, key=timeframe_ns), coarsest)
    return concat(symbol, [_aggregate(p, coarsest) for p in parts if len(p)], coarsest)


def _fill_cache(
    cache: OrderedDict[tuple[str, str, dt.date], Bars], table: pa.Table, missing: Mapping[str, set[dt.date]],
    timeframe: str,
) -> None:
    """Cache each wanted (symbol, day)'s bars of one timeframe: ``timeframe`` if stored, else the finest."""
    ts = table.column("ts").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
    symbol_codes = table.column("symbol").combine_chunks().dictionary_encode()
    codes = symbol_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    code_of = {s: i for i, s in enumerate(symbol_codes.dictionary.to_pylist())}
    frame_codes = table.column("timeframe").combine_chunks().dictionary_encode()
    frames = frame_codes.dictionary.to_pylist()
    frame_rank = np.argsort(np.argsort(np.array([timeframe_ns(f) for f in frames], dtype=np.int64), kind="stable"))
    # per row, a rank: the asked timeframe -1, the others from the finest (0) up
    frame_of = frame_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    rank = frame_rank[frame_of].astype(np.int64)
    if timeframe in frames:
        rank[frame_of == frames.index(timeframe)] = -1
    n_frames = len(frames) + 1
    days = table.column("ds").cast(pa.int32()).to_numpy().astype(np.int64)
    cols = {c: decimal_floats(table.column(c)) for c in ("open", "high", "low", "close", "volume")}
    # rows grouped by (symbol, day, timeframe rank), each group in time order (stable sort of a time-ordered
    # query), instead of one mask per key
    first = int(days.min()) if len(days) else 0
    span = int(days.max()) - first + 1 if len(days) else 1
    group = (codes * span + (days - first)) * n_frames + (rank + 1)
    order = np.lexsort((ts, group))
    sorted_group = group[order]
    by_rank = {-1: timeframe, **{int(frame_rank[i]): f for i, f in enumerate(frames)}}
    for symbol, wanted in missing.items():
        code = code_of.get(symbol)
        for day in wanted:
            offset = _day_number(day) - first
            rows, used = order[:0], timeframe
            if code is not None and 0 <= offset < span:
                base = (code * span + offset) * n_frames
                lo, hi = np.searchsorted(sorted_group, [base, base + n_frames])
                if hi > lo:  # the group of the best rank present: the first in sorted order
                    best = int(sorted_group[lo])
                    end = int(np.searchsorted(sorted_group, best + 1))
                    rows, used = order[lo:end], by_rank[best - base - 1]
            cache[(symbol, timeframe, day)] = Bars.of(
                symbol, ts[rows], [cols[c][rows] for c in ("open", "high", "low", "close", "volume")], used
            )
            cache.move_to_end((symbol, timeframe, day))
