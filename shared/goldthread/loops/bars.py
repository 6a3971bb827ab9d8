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
import hashlib
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal

import numpy as np
import pyarrow as pa

from goldthread.adapters.synthetic_market_data import concat
from goldthread.logs import get_logger
from goldthread.models.types import NINE_PLACES
from goldthread.models.warehouse import MarketBar, row_id_for
from goldthread.pipeline.context import Context
from goldthread.ports.market_data import Bars, from_ns

log = get_logger("bars")
TIMEFRAME = "1Min"
_CACHE_KEY = "bars_cache"
_CACHE_DAYS = 4096  # (symbol, timeframe, day) entries kept per process
_EMPTY_MARKER = "empty"
_DAY_NS = 86_400 * 1_000_000_000
_EPOCH_DAY = dt.date(1970, 1, 1)
_SAFE_NS = (1 << 31) * 1_000_000_000  # |ts| below this (2038): whole-microsecond times survive float seconds
_SCALE = 10**9  # DECIMAL(38, 9): the unscaled integer of a price
_EXACT_UNSCALED = float(1 << 53)  # unscaled values below this are exact in float64
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
    An unscaled integer below 2**53 divided by 10**scale is correctly rounded (IEEE division rounds the
    exact quotient of two exact operands); any other value, or a column with nulls, goes through its text."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_decimal128(array.type):
        return array.cast(pa.float64()).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]
    if not array.null_count and array.type.scale <= 22:  # 10**scale exact in float64
        words = np.frombuffer(array.buffers()[1], dtype="<i8")[2 * array.offset:2 * (array.offset + len(array))]
        low, high = words[0::2], words[1::2]  # little-endian two's complement, low word first
        if bool(((high == (low >> 63)) & (np.abs(low.astype(np.float64)) < _EXACT_UNSCALED)).all()):
            return low / float(10**array.type.scale)  # type: ignore[no-any-return]
    return array.cast(pa.string()).cast(pa.float64()).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


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
    from goldthread.adapters.duckdb_warehouse import arrow_schema

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
        bar_day = bar_days(bars.ts)
        keep = np.isin(bar_day, np.array([_day_number(d) for d in missing], dtype=np.int64))
        subset = Bars(symbol, *(getattr(bars, f)[keep] for f in ("ts", "open", "high", "low", "close", "volume")))
        if len(subset):
            rows += len(ctx.warehouse.load_arrow(MarketBar, _bars_table(subset, timeframe,
                                                                       ctx.market_data.name)).inserted)
        with_bars = {_EPOCH_DAY + dt.timedelta(days=int(d)) for d in np.unique(subset.ts // _DAY_NS)}
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
    symbol_codes = table.column("symbol").combine_chunks().dictionary_encode()
    codes = symbol_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    code_of = {s: i for i, s in enumerate(symbol_codes.dictionary.to_pylist())}
    days = table.column("ds").cast(pa.int32()).to_numpy().astype(np.int64)
    cols = {c: decimal_floats(table.column(c)) for c in ("open", "high", "low", "close", "volume")}
    # rows grouped by (symbol, day), each group in the query's order (stable sort), instead of one mask per key
    first = int(days.min()) if len(days) else 0
    span = int(days.max()) - first + 1 if len(days) else 1
    group = codes * span + (days - first)
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    for symbol, wanted in missing.items():
        code = code_of.get(symbol)
        for day in wanted:
            offset = _day_number(day) - first
            rows = order[:0]
            if code is not None and 0 <= offset < span:
                lo, hi = np.searchsorted(sorted_group, [code * span + offset, code * span + offset + 1])
                rows = order[lo:hi]
            cache[(symbol, timeframe, day)] = Bars(symbol, ts[rows], *(cols[c][rows] for c in
                                                                     ("open", "high", "low", "close", "volume")))
            cache.move_to_end((symbol, timeframe, day))
