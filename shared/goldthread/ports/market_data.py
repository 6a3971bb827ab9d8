"""The market-data port: OHLCV bars as columnar arrays, for vectorised counterfactual maths."""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

_MINUTE_NS = 60 * 1_000_000_000
_UNIT_NS = {"Min": _MINUTE_NS, "Hour": 60 * _MINUTE_NS, "Day": 1440 * _MINUTE_NS, "Week": 7 * 1440 * _MINUTE_NS}
_UNIT_MAX = {"Min": 59, "Hour": 23, "Day": 1, "Week": 1}
_TIMEFRAME = re.compile(r"^([1-9][0-9]?)(Min|Hour|Day|Week)$")
_ALIASES = {"min": "Min", "minute": "Min", "t": "Min", "h": "Hour", "hour": "Hour", "d": "Day",
            "day": "Day", "w": "Week", "week": "Week"}


def timeframe_ns(timeframe: str) -> int:
    """The length of one bar of ``timeframe`` in ns: ``{n}Min`` (n < 60), ``{n}Hour`` (n < 24), ``1Day``,
    ``1Week``, Alpaca's notation. Anything else (a month has no fixed length) is a ``ValueError``."""
    match = _TIMEFRAME.match(timeframe) if isinstance(timeframe, str) else None
    if match is None or int(match[1]) > _UNIT_MAX[match[2]]:
        raise ValueError(f"timeframe {timeframe!r} is not one of nMin (n<60), nHour (n<24), 1Day, 1Week")
    return int(match[1]) * _UNIT_NS[match[2]]


def normalise_timeframe(text: str) -> str:
    """A timeframe as written in a file (``1min``, ``1H``, ``60 minutes``, ``1Day``) in Alpaca's notation
    (``60 minutes`` is ``1Hour``), or ``ValueError`` naming it when no timeframe has that length."""
    match = re.fullmatch(r"\s*([0-9]{1,4})\s*([A-Za-z]+)\s*", str(text))
    unit = _ALIASES.get(match[2].lower().rstrip("s"), "") if match else ""
    name = timeframe_named(int(match[1]) * _UNIT_NS[unit]) if match and unit else None
    if name is None:
        raise ValueError(f"timeframe {text!r} is not one of nMin (n<60), nHour (n<24), 1Day, 1Week")
    return name


def timeframe_named(length_ns: int) -> str | None:
    """The timeframe whose bars are ``length_ns`` long (60 minutes is ``1Hour``), or None if there is none."""
    for unit in ("Week", "Day", "Hour", "Min"):
        n, rest = divmod(length_ns, _UNIT_NS[unit])
        if not rest and 1 <= n <= _UNIT_MAX[unit]:
            return f"{n}{unit}"
    return None


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
