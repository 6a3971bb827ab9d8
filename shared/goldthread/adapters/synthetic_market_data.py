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
from goldthread.ports.market_data import Bars, MarketData, to_ns

EPOCH = dt.date(2024, 1, 1)
CRYPTO_UNIVERSE = ("BTC/USD", "ETH/USD", "SOL/USD")
EQUITY_UNIVERSE = ("AAPL", "MSFT", "NVDA", "SPY", "GOOG", "TSLA")
_BASE_PRICE = {"BTC/USD": 60000.0, "ETH/USD": 3000.0, "SOL/USD": 150.0, "AAPL": 190.0, "MSFT": 420.0,
               "NVDA": 120.0, "SPY": 520.0, "GOOG": 170.0, "TSLA": 240.0}
_MINUTE_NS = 60 * 1_000_000_000
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


def _aggregate(bars: Bars, minutes: int) -> Bars:
    """Aggregate minute bars into ``minutes``-long buckets aligned to UTC."""
    if len(bars) == 0 or minutes == 1:
        return bars
    bucket = bars.ts // (minutes * _MINUTE_NS)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(bars)] - 1
    return Bars(
        bars.symbol,
        bucket[starts] * minutes * _MINUTE_NS,
        bars.open[starts],
        np.maximum.reduceat(bars.high, starts),
        np.minimum.reduceat(bars.low, starts),
        bars.close[ends],
        np.add.reduceat(bars.volume, starts),
    )


def concat(symbol: str, parts: Sequence[Bars]) -> Bars:
    """Join bars of consecutive periods."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Bars.empty(symbol)
    return Bars(symbol, *(np.concatenate([getattr(p, f) for p in parts]) for f in
                          ("ts", "open", "high", "low", "close", "volume")))


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
            out[symbol] = _aggregate(minute, _TIMEFRAME_MINUTES[timeframe]).between(start, end)
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
    close, volume; timestamps in UTC. Read with DuckDB, which handles both formats."""

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
            f"{'volume' if 'volume' in cols else '0'} AS volume FROM {reader}(?) ORDER BY symbol, ts",
            [str(self.path)],
        ).fetchnumpy()
        self._bars: dict[str, Bars] = {}
        symbols = table["symbol"]
        for symbol in dict.fromkeys(symbols.tolist()):
            mask = symbols == symbol
            self._bars[symbol] = Bars(
                symbol, table["ts"][mask].astype(np.int64),
                *(np.asarray(table[c][mask], dtype=np.float64) for c in ("open", "high", "low", "close", "volume")),
            )
        self.calls = 0

    def get_bars(
        self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Bars]:
        """The file's bars in ``[start, end)``, aggregated to ``timeframe`` if it is coarser."""
        self.calls += 1
        minutes = _TIMEFRAME_MINUTES.get(timeframe)
        if minutes is None:
            raise ConfigError(f"unsupported timeframe {timeframe!r}")
        return {
            s: _aggregate(self._bars.get(s, Bars.empty(s)).between(start, end), minutes) for s in symbols
        }
