"""JSON encoding shared by the embedded adapters: exact decimals and UTC timestamps as text.

Decimals become strings (never floats, so no precision is lost) and datetimes become ISO 8601 UTC with
microseconds, so that timestamps compare correctly as text inside SQLite.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from enum import Enum
from typing import Any


def encode_value(value: Any) -> Any:
    """One value as JSON text would store it (used for query parameters too)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a time zone")
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _default(value: Any) -> Any:
    encoded = encode_value(value)
    if encoded is value:
        raise TypeError(f"cannot store {type(value).__name__} in a document")
    return encoded


def _finite(value: Any) -> Any:
    """Replace non-finite floats by their names: JSON has no NaN, and SQLite's JSON functions refuse it.

    The record is kept (nothing is lost); SchemaGuardian then rejects ``"NaN"`` as not a finite number.
    """
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(document: Any) -> str:
    """Serialise a document to compact JSON text."""
    try:
        return json.dumps(document, default=_default, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(document), default=_default, separators=(",", ":"), allow_nan=False)


def loads(text: str | bytes) -> Any:
    """Parse JSON text."""
    return json.loads(text)
