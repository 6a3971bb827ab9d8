"""Structured JSON logs that Cloud Logging understands (``severity``, ``message`` and our labels).

Every line is one JSON object on stderr: ``severity``, ``message``, ``time`` and whichever of
``run_id``, ``loop``, ``ds``, ``item_id`` apply, so a person can filter one run or one record. Known
secret values (Alpaca keys from the environment) are masked before anything is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any

_SECRET_ENV = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "ALPACA_API_KEY", "ALPACA_SECRET_KEY")
_LABELS = ("run_id", "loop", "ds", "item_id", "doc_id", "topic", "reason_code", "hop", "patch")


def redact(text: str) -> str:
    """Mask every known secret value that appears in ``text``."""
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4 and value in text:
            text = text.replace(value, "***")
    return text


class JsonFormatter(logging.Formatter):
    """Formats records as Cloud Logging structured JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line per record."""
        payload: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARNING" else "WARNING",
            "message": redact(record.getMessage()),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "logger": record.name,
        }
        for label in _LABELS:
            value = getattr(record, label, None)
            if value is not None:
                payload[label] = str(value)
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            payload.update({k: v for k, v in extra.items() if k not in payload})
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return redact(json.dumps(payload, default=str))


def configure(level: str | None = None, stream: Any = None) -> None:
    """Send goldthread's logs as JSON lines to ``stream`` (stderr by default); idempotent."""
    logger = logging.getLogger("goldthread")
    for handler in list(logger.handlers):
        if getattr(handler, "_goldthread", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._goldthread = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level or os.environ.get("GOLDTHREAD_LOG_LEVEL", "INFO"))
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """A child of the ``goldthread`` logger."""
    return logging.getLogger(f"goldthread.{name}")
