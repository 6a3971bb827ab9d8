"""The market-data port: OHLCV bars as columnar arrays, for vectorised counterfactual maths."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Bars:
    """Bars of one symbol, sorted by open time: ``ts`` is int64 nanoseconds since the epoch (UTC)."""

    symbol: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def empty(cls, symbol: str) -> Bars:
        """No bars."""
        f = np.empty(0, dtype=np.float64)
        return cls(symbol, np.empty(0, dtype=np.int64), f, f, f, f, f)

    def between(self, start: dt.datetime, end: dt.datetime) -> Bars:
        """Bars whose open time is in ``[start, end)``."""
        lo, hi = np.searchsorted(self.ts, [to_ns(start), to_ns(end)], side="left")
        return Bars(
            self.symbol, self.ts[lo:hi], self.open[lo:hi], self.high[lo:hi], self.low[lo:hi],
            self.close[lo:hi], self.volume[lo:hi],
        )


def to_ns(moment: dt.datetime) -> int:
    """UTC-aware datetime to int64 nanoseconds since the epoch."""
    return int(moment.timestamp() * 1_000_000) * 1000


def from_ns(ns: int) -> dt.datetime:
    """int64 nanoseconds since the epoch to an aware UTC datetime."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).replace(microsecond=(int(ns) // 1000) % 1_000_000)


class MarketData(ABC):
    """Abstract market data. Implementations: ``SyntheticMarketData``, ``FileMarketData``, Alpaca."""

    name: ClassVar[str]

    @abstractmethod
    def get_bars(
        self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Bars]:
        """Bars per symbol with open time in ``[start, end)``; ``timeframe`` is ``1Min``, ``1Hour``
        or ``1Day``. A symbol with no data maps to empty ``Bars``."""
