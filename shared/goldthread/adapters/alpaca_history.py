"""Reading Alpaca's portfolio history JSON (``GET /v2/account/portfolio/history``) into ``EquityPoint``s.

Kept apart from ``alpaca_broker`` (which calls it) so that module stays readable; it shares its error
translation: a response of the wrong shape is a permanent ``BrokerRequestError`` naming the request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from goldthread.adapters.alpaca_broker import build_model
from goldthread.errors import BrokerRequestError
from goldthread.models.broker import EquityPoint


def parse_portfolio_history(body: Mapping[str, Any], start: dt.date, end: dt.date, what: str) -> list[EquityPoint]:
    """``EquityPoint``s from Alpaca's portfolio history JSON (parallel arrays ``timestamp`` in Unix seconds,
    ``equity``, ``profit_loss``, ``profit_loss_pct``; ``base_value``, ``base_value_asof``), oldest first.

    A point whose equity is null is left out (no data that day); one whose New York day is outside
    ``start``..``end`` too (Alpaca appends today's value to a 1D chart). ``base_value_asof`` may be absent
    (no prior non-zero close), and so may ``profit_loss`` and ``profit_loss_pct``. A missing timestamp or
    equity array, arrays of different lengths, or a timestamp that is not Unix seconds are a permanent error.
    """
    stamps = body.get("timestamp")
    if not isinstance(stamps, list):
        raise BrokerRequestError(f"{what}: Alpaca's response has no 'timestamp' array")

    def column(key: str, required: bool) -> list[Any]:
        values = body.get(key)
        if values is None and not required:
            return [None] * len(stamps)
        if not isinstance(values, list) or len(values) != len(stamps):
            raise BrokerRequestError(f"{what}: Alpaca's {key!r} is not an array as long as 'timestamp'")
        return values

    equity, pnl, pnl_pct = column("equity", True), column("profit_loss", False), column("profit_loss_pct", False)
    asof = body.get("base_value_asof") or None
    points: list[EquityPoint] = []
    for i, stamp in enumerate(stamps):
        if equity[i] is None:
            continue
        try:
            if isinstance(stamp, bool) or not isinstance(stamp, int | float):
                raise TypeError(stamp)
            moment = dt.datetime.fromtimestamp(stamp, dt.UTC)
        except (TypeError, OverflowError, OSError, ValueError) as exc:
            raise BrokerRequestError(f"{what}: timestamp {stamp!r} is not Unix seconds") from exc
        point = build_model(EquityPoint, {
            "timestamp": moment, "equity": equity[i], "profit_loss": pnl[i], "profit_loss_pct": pnl_pct[i],
            "base_value": body.get("base_value"), "base_value_asof": asof,
        }, f"{what}: point {moment.isoformat()}")
        if start <= point.trading_day <= end:
            points.append(point)
    points.sort(key=lambda p: p.timestamp)
    return points
