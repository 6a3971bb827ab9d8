"""Bar timeframes in Alpaca's notation (``1Min``, ``5Min``, ``1Hour``, ``1Day``, ``1Week``) and their lengths.

A plain value helper with no port or adapter behind it: the warehouse models validate a ``timeframe`` column
with it and the market-data port measures bars with it, so it sits with the models, below both.
"""

from __future__ import annotations

import re

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
