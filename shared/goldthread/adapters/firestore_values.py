"""Firestore values and errors: how goldthread's values are stored in Firestore and read back, how the SDK's
errors become goldthread's, and Firestore's rules for document ids. Used by ``FirestoreHotStore`` alone; kept
apart so the adapter module holds the port's operations only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from enum import Enum
from typing import Any

from goldthread.adapters.google_errors import translate, translated
from goldthread.errors import ConfigError, GoldthreadError, PermanentError, StoreUnavailableError

# -- value conversion ----------------------------------------------------------------------------


def to_firestore(value: Any) -> Any:
    """One value as Firestore stores it: Decimal as exact text, aware datetimes, enums by value."""
    if isinstance(value, Enum):
        return to_firestore(value.value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PermanentError(f"cannot store non-finite decimal {value}")
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a time zone")
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_firestore(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_firestore(v) for v in value]
    return value


def from_firestore(value: Any) -> Any:
    """One value read back: timestamps become plain aware UTC datetimes, maps and arrays recursively."""
    if isinstance(value, dt.datetime):
        v = value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return dt.datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=dt.UTC)
    if isinstance(value, dict):
        return {k: from_firestore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_firestore(v) for v in value]
    return value


def lookup(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted field path of a document (``"a.b"``), or None where any part is missing."""
    current: Any = doc
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


# -- error translation ---------------------------------------------------------------------------


@contextmanager
def vendor_errors(action: str) -> Iterator[None]:
    """Translate Google API errors raised inside the block into goldthread's error tree."""
    with translated(action, translate_error, (GoldthreadError, KeyError, ValueError)):
        yield


def translate_error(exc: BaseException, action: str) -> GoldthreadError:
    """Map one vendor exception to ``StoreUnavailableError``, ``ConfigError`` or ``PermanentError``.

    Firestore answers an invalid request (a bad query shape, a missing index) with 400: configuration.
    """
    from google.api_core import exceptions as gexc

    message = f"firestore {action}: {type(exc).__name__}: {exc}"
    if isinstance(exc, gexc.BadRequest):
        return ConfigError(message)
    return translate(exc, message, StoreUnavailableError)


def already_exists(exc: BaseException) -> bool:
    """Whether a translated error is Firestore refusing a ``create`` of a document that exists."""
    from google.api_core import exceptions as gexc

    return isinstance(exc.__cause__, (gexc.AlreadyExists, gexc.Conflict))


def refused(exc: BaseException) -> bool:
    """Whether a translated error is Firestore refusing a blind batch: a document to create exists, or one to
    update does not."""
    from google.api_core import exceptions as gexc

    return already_exists(exc) or isinstance(exc.__cause__, gexc.NotFound)


def check_id(doc_id: str) -> str:
    """A Firestore document id: non-empty, no ``/``, not ``.``/``..`` and not ``__...__`` (reserved)."""
    if (
        not isinstance(doc_id, str)
        or not doc_id
        or "/" in doc_id
        or doc_id in (".", "..")
        or (doc_id.startswith("__") and doc_id.endswith("__"))
    ):
        raise ValueError(f"invalid Firestore document id {doc_id!r}")
    return doc_id


def sort_key(value: Any) -> tuple[int, Any]:
    """A total order for merging pages of several ``in`` queries (None first, then by value)."""
    return (0, "") if value is None else (1, value)
