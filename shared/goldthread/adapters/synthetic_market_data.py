"""Embedded market data: seeded synthetic OHLCV bars, and bars read from the user's CSV/Parquet files.

Synthetic prices are deterministic whatever window is asked for: a daily close path is drawn from a
seed per symbol, and each day's minutes are a Brownian bridge from the previous close to that day's
close, drawn from a seed per symbol and day. Crypto trades 24/7; equities 14:30-21:00 UTC on weekdays
(the regular US session, ignoring holidays). Hourly and daily bars aggregate the minute bars.
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from goldthread.errors import ConfigError
from goldthread.ports.market_data import (
    Bars,
    MarketData,
    aggregate,
    concat,
    normalise_timeframe,
    timeframe_named,
    timeframe_ns,
    to_ns,
)

EPOCH = dt.date(2024, 1, 1)
CRYPTO_UNIVERSE = ("BTC/USD", "ETH/USD", "SOL/USD")
EQUITY_UNIVERSE = ("AAPL", "MSFT", "NVDA", "SPY", "GOOG", "TSLA")
_BASE_PRICE = {"BTC/USD": 60000.0, "ETH/USD": 3000.0, "SOL/USD": 150.0, "AAPL": 190.0, "MSFT": 420.0,
               "NVDA": 120.0, "SPY": 520.0, "GOOG": 170.0, "TSLA": 240.0}
_MINUTE_NS = 60 * 1_000_000_000
_HOUR_NS = 60 * _MINUTE_NS
_DAY_NS = 24 * _HOUR_NS
_TIMEFRAME_MINUTES = {"1Min": 1, "1Hour": 60, "1Day": 1440}


def is_crypto(symbol: str) -> bool:
    """Crypto pairs are written with a slash (``BTC/USD``)."""
    return "/" in symbol


def _seed(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


@functools.lru_cache(maxsize=64)
def _daily_closes(symbol: str, days: int) -> np.ndarray:
    """Close of each day from EPOCH, a geometric random walk (crypto more volatile than equities)."""
    rng = np.random.default_rng(_seed(symbol, "daily"))
    vol = 0.035 if is_crypto(symbol) else 0.016
    steps = rng.normal(0.0001, vol, size=days + 1)
    base = _BASE_PRICE.get(symbol, 50.0 + _seed(symbol) % 400)
    return base * np.exp(np.cumsum(steps))


@functools.lru_cache(maxsize=4096)
def _minute_day(symbol: str, day: dt.date) -> Bars:
    """The minute bars of one symbol on one day."""
    index = (day - EPOCH).days
    if index < 1:
        return Bars.empty(symbol)
    crypto = is_crypto(symbol)
    if not crypto and day.weekday() >= 5:
        return Bars.empty(symbol)
    closes = _daily_closes(symbol, index + 1)
    start_price, end_price = closes[index - 1], closes[index]
    first_minute = 0 if crypto else 14 * 60 + 30
    n = 1440 if crypto else 390
    rng = np.random.default_rng(_seed(symbol, day.isoformat()))
    vol = (0.035 if crypto else 0.016) / np.sqrt(n)
    walk = np.cumsum(rng.normal(0.0, vol, size=n))
    bridge = walk - np.linspace(0, 1, n) * walk[-1]
    log_path = np.log(start_price) + np.linspace(0, 1, n) * (np.log(end_price) - np.log(start_price)) + bridge
    close = np.exp(log_path)
    open_ = np.concatenate(([start_price], close[:-1]))
    wiggle = np.abs(rng.normal(0.0, vol / 2, size=(2, n)))
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    volume = np.round(rng.gamma(2.0, 50.0, size=n), 4)
    midnight = to_ns(dt.datetime.combine(day, dt.time(), dt.UTC))
    ts = midnight + (first_minute + np.arange(n, dtype=np.int64)) * _MINUTE_NS
    return Bars(symbol, ts, np.round(open_, 4), np.round(high, 4), np.round(low, 4), np.round(close, 4), volume)


class SyntheticMarketData(MarketData):
    """Deterministic synthetic bars for any symbol (default market data)."""

    name: ClassVar[str] = "synthetic"

    def __init__(self) -> None:
        self.calls = 0

    def get_bars(
        self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Bars]:
        """Bars with open time in ``[start, end)``, built from the minute path."""
        if timeframe not in _TIMEFRAME_MINUTES:
            raise ConfigError(f"unsupported timeframe {timeframe!r}; use 1Min, 1Hour or 1Day")
        self.calls += 1
        out = {}
        days = [start.date() + dt.timedelta(days=i) for i in range((end.date() - start.date()).days + 1)]
        for symbol in symbols:
            minute = concat(symbol, [_minute_day(symbol, d) for d in days])
            out[symbol] = aggregate(minute, timeframe).between(start, end)
        return out

    def price_at(self, symbol: str, moment: dt.datetime) -> float:
        """Close of the last minute bar that opened at or before ``moment`` (for simulated fills)."""
        for back in range(0, 8):
            day = (moment - dt.timedelta(days=back)).date()
            bars = _minute_day(symbol, day)
            idx = int(np.searchsorted(bars.ts, to_ns(moment), side="right")) - 1
            if len(bars) and idx >= 0:
                return float(bars.close[idx])
        return float(_daily_closes(symbol, (moment.date() - EPOCH).days + 1)[-1])


class FileMarketData(MarketData):
    """Bars from the user's CSV or Parquet file: columns symbol, ts (or timestamp), open, high, low,
    close, volume, and optionally timeframe; timestamps in UTC. Read with DuckDB, which handles both formats.

    Each symbol's timeframe is the file's ``timeframe`` column (one value per symbol), else the spacing of
    its consecutive bars (``infer_timeframe``): a file of hourly or daily bars is never taken for minutes.
    Bars with a non-positive price, a negative volume or a high below the low are refused, naming the row."""

    name: ClassVar[str] = "file"

    def __init__(self, path: Path | str) -> None:
        import duckdb

        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"bars file {self.path} does not exist")
        reader = "read_parquet" if self.path.suffix.lower() in (".parquet", ".pq") else "read_csv_auto"
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        rel = con.execute(f"SELECT * FROM {reader}(?)", [str(self.path)])
        cols = [d[0].lower() for d in rel.description or []]
        ts_col = "ts" if "ts" in cols else "timestamp"
        missing = {"symbol", ts_col, "open", "high", "low", "close"} - set(cols)
        if missing:
            raise ConfigError(f"bars file {self.path} lacks columns {sorted(missing)}")
        table = con.execute(
            f"SELECT symbol, epoch_ns(CAST({ts_col} AS TIMESTAMPTZ)) AS ts, open, high, low, close, "
            f"{'volume' if 'volume' in cols else '0'} AS volume, "
            f"{'CAST(timeframe AS VARCHAR)' if 'timeframe' in cols else 'NULL'} AS timeframe "
            f"FROM {reader}(?) ORDER BY symbol, ts",
            [str(self.path)],
        ).fetchnumpy()
        self._bars: dict[str, Bars] = {}
        symbols = table["symbol"]
        for symbol in dict.fromkeys(symbols.tolist()):
            mask = symbols == symbol
            ts = table["ts"][mask].astype(np.int64)
            prices = [np.asarray(table[c][mask], dtype=np.float64) for c in ("open", "high", "low", "close", "volume")]
            self._check_prices(symbol, ts, *prices)
            stated = {v for v in np.asarray(table["timeframe"][mask], dtype=object).tolist() if v is not None}
            timeframe = self._timeframe(symbol, ts, stated)
            self._bars[symbol] = Bars.of(symbol, ts, prices, timeframe)
        self.calls = 0

    def timeframes(self) -> dict[str, str]:
        """Each symbol's timeframe, as read or inferred from the file."""
        return {s: b.timeframe for s, b in self._bars.items()}

    def _check_prices(self, symbol: str, ts: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray,
                      c: np.ndarray, v: np.ndarray) -> None:
        """Refuse the file at its first bar that no market prints: a price not above zero (or missing), a
        negative volume, or a high below the low, open or close (a low above them likewise)."""
        with np.errstate(invalid="ignore"):
            bad = ~((o > 0) & (h > 0) & (lo > 0) & (c > 0) & (v >= 0) & np.isfinite(h) & np.isfinite(v)
                    & (h >= lo) & (h >= o) & (h >= c) & (lo <= o) & (lo <= c))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigError(
                f"bars file {self.path}: {symbol} bar at {np.datetime64(int(ts[i]), 'ns')}Z is not a real bar "
                f"(open {o[i]}, high {h[i]}, low {lo[i]}, close {c[i]}, volume {v[i]}): prices must be above 0, "
                f"volume not negative, and low <= open, close <= high"
            )

    def _timeframe(self, symbol: str, ts: np.ndarray, stated: set[str]) -> str:
        """The symbol's timeframe: the file's column if it has one, checked against the spacing, else inferred."""
        where = f"bars file {self.path}, symbol {symbol}"
        if len(ts) > 1 and bool((np.diff(ts) == 0).any()):
            twice = int(ts[np.flatnonzero(np.diff(ts) == 0)[0]])
            raise ConfigError(f"{where}: two bars at {np.datetime64(twice, 'ns')}Z")
        if not stated:
            return infer_timeframe(ts, where)
        try:
            named = {normalise_timeframe(t) for t in stated}
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if len(named) > 1:
            raise ConfigError(f"{where}: the timeframe column mixes {sorted(named)}; one timeframe per symbol")
        timeframe = named.pop()
        shortest = int(np.diff(ts).min()) if len(ts) > 1 else None
        if shortest is not None and shortest < min(timeframe_ns(timeframe), _DAY_NS - _HOUR_NS):
            raise ConfigError(f"{where}: bars {shortest // 10**9} s apart overlap, yet the file says {timeframe}")
        return timeframe

    def get_bars(
        self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Bars]:
        """The file's bars in ``[start, end)``, aggregated to ``timeframe`` if it is a multiple of the file's
        (coarser); the file's own bars, saying their timeframe, when ``timeframe`` is as fine or finer."""
        self.calls += 1
        try:
            want = timeframe_ns(timeframe)
        except ValueError as exc:
            raise ConfigError(f"unsupported timeframe {timeframe!r}") from exc
        out = {}
        for s in symbols:
            bars = self._bars.get(s)
            if bars is None:
                out[s] = Bars.empty(s, timeframe)
                continue
            own = bars.between(start, end)
            if want <= bars.length_ns:
                out[s] = own
            elif want % bars.length_ns == 0 and bars.length_ns < _DAY_NS:
                out[s] = aggregate(own, timeframe)
            else:
                raise ConfigError(f"bars file {self.path}: {s} holds {bars.timeframe} bars, which do not make "
                                  f"{timeframe} bars")
        return out


def infer_timeframe(ts: np.ndarray, where: str) -> str:
    """A symbol's timeframe from the spacing of its sorted bar times (int64 ns); ``where`` names the file and
    symbol in the error.

    Intraday: the shortest gap between consecutive bars is the bar length, which must be a timeframe
    (``1Min`` .. ``59Min``, ``1Hour`` .. ``23Hour``), and every gap a whole number of it (missing bars are
    fine: an illiquid minute, a night, a weekend); a gap that is not (bars 60 and 90 minutes apart) means
    the file mixes bar lengths. Daily bars are 23 to 25 hours apart at the least (daylight saving moves a
    bar stamped at New York midnight by an hour), weekly ones about 7 days. One bar, or a spacing that is
    none of those, cannot be read: add a ``timeframe`` column."""
    if len(ts) < 2:
        raise ConfigError(f"{where}: one bar says nothing of its length; add a timeframe column (1Min, 1Hour, 1Day)")
    gaps = np.diff(ts)
    shortest = int(gaps.min())
    if _DAY_NS - _HOUR_NS <= shortest <= _DAY_NS + _HOUR_NS:
        return "1Day"
    if 7 * _DAY_NS - _HOUR_NS <= shortest <= 7 * _DAY_NS + _HOUR_NS:
        return "1Week"
    name = timeframe_named(shortest) if shortest < _DAY_NS - _HOUR_NS else None
    if name is None:
        raise ConfigError(f"{where}: bars {shortest / 1e9:g} s apart at the closest are no known timeframe "
                          f"(1Min, 5Min, 15Min, 1Hour, 1Day ...); add a timeframe column")
    odd = gaps % shortest != 0
    if odd.any():
        i = int(np.flatnonzero(odd)[0])
        raise ConfigError(
            f"{where}: mixed bar spacing: bars {shortest / 60e9:g} min apart, yet the bar at "
            f"{np.datetime64(int(ts[i + 1]), 'ns')}Z comes {gaps[i] / 60e9:g} min after the one before; "
            f"one timeframe per symbol, or a timeframe column"
        )
    return name
