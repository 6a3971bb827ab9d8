"""The market-data port: OHLCV bars as columnar arrays, for vectorised counterfactual maths."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

# The timeframe helpers live with the models (the warehouse models validate with them); re-exported here.
from goldthread.models.timeframes import normalise_timeframe as normalise_timeframe
from goldthread.models.timeframes import timeframe_named as timeframe_named
from goldthread.models.timeframes import timeframe_ns as timeframe_ns


@dataclass(frozen=True)
class Bars:
    """Bars of one symbol, sorted by open time: ``ts`` is int64 nanoseconds since the epoch (UTC).

    ``timeframe`` is the length of every bar (``1Min``, ``1Hour``, ``1Day`` ...): a bar covers
    ``[ts, ts + timeframe_ns(timeframe))``, and the counterfactual maths use that to decide which bars
    lie inside a window. A source reports the timeframe it actually served, which may differ from the
    one asked for (a file of hourly bars answers a request for minutes with hours)."""

    symbol: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timeframe: str = "1Min"

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def length_ns(self) -> int:
        """How long each bar lasts, in ns."""
        return timeframe_ns(self.timeframe)

    @classmethod
    def of(cls, symbol: str, ts: np.ndarray, ohlcv: Sequence[np.ndarray], timeframe: str) -> Bars:
        """Bars from the open times and the five columns open, high, low, close, volume, in that order."""
        o, h, low, c, v = ohlcv
        return cls(symbol, ts, o, h, low, c, v, timeframe)

    @classmethod
    def empty(cls, symbol: str, timeframe: str = "1Min") -> Bars:
        """No bars."""
        f = np.empty(0, dtype=np.float64)
        return cls(symbol, np.empty(0, dtype=np.int64), f, f, f, f, f, timeframe)

    def between(self, start: dt.datetime, end: dt.datetime) -> Bars:
        """Bars whose open time is in ``[start, end)``."""
        lo, hi = np.searchsorted(self.ts, [to_ns(start), to_ns(end)], side="left")
        return Bars(
            self.symbol, self.ts[lo:hi], self.open[lo:hi], self.high[lo:hi], self.low[lo:hi],
            self.close[lo:hi], self.volume[lo:hi], self.timeframe,
        )


def to_ns(moment: dt.datetime) -> int:
    """UTC-aware datetime to int64 nanoseconds since the epoch."""
    return int(moment.timestamp() * 1_000_000) * 1000


def from_ns(ns: int) -> dt.datetime:
    """int64 nanoseconds since the epoch to an aware UTC datetime."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).replace(microsecond=(int(ns) // 1000) % 1_000_000)


def aggregate(bars: Bars, timeframe: str) -> Bars:
    """Aggregate bars into ``timeframe``-long buckets aligned to UTC (the bars' own timeframe: unchanged).

    Pure maths on ``Bars``: a source coarsens what it serves with it, and Loops B and C join cached days of
    different timeframes with it, so it lives beside ``Bars`` rather than in an adapter."""
    length = timeframe_ns(timeframe)
    if len(bars) == 0 or length == bars.length_ns:
        return Bars(bars.symbol, bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, timeframe)
    bucket = bars.ts // length
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(bars)] - 1
    return Bars(
        bars.symbol,
        bucket[starts] * length,
        bars.open[starts],
        np.maximum.reduceat(bars.high, starts),
        np.minimum.reduceat(bars.low, starts),
        bars.close[ends],
        np.add.reduceat(bars.volume, starts),
        timeframe,
    )


def concat(symbol: str, parts: Sequence[Bars], timeframe: str | None = None) -> Bars:
    """Join bars of consecutive periods, all of one timeframe (``timeframe``, else the first part's)."""
    tf = timeframe or (parts[0].timeframe if parts else "1Min")
    parts = [p for p in parts if len(p)]
    if not parts:
        return Bars.empty(symbol, tf)
    if any(p.timeframe != tf for p in parts):
        raise ValueError(f"bars of {symbol} mix timeframes {sorted({p.timeframe for p in parts})}")
    return Bars.of(symbol, np.concatenate([p.ts for p in parts]),
                   [np.concatenate([getattr(p, f) for p in parts]) for f in ("open", "high", "low", "close", "volume")],
                   tf)


class MarketData(ABC):
    """Abstract market data. Implementations: ``SyntheticMarketData``, ``FileMarketData``, Alpaca."""

    name: ClassVar[str]

    @abstractmethod
    def get_bars(
        self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Bars]:
        """Bars per symbol with open time in ``[start, end)``; ``timeframe`` is ``1Min``, ``1Hour``
        or ``1Day``. A symbol with no data maps to empty ``Bars``. Each ``Bars`` says the timeframe it holds:
        the one asked for, or the source's own when it has nothing finer (never a finer one it made up)."""
