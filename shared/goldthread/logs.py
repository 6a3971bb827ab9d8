"""Structured JSON logs that Cloud Logging understands (``severity``, ``message`` and our labels).

Every line is one JSON object on stderr: ``severity``, ``message``, ``time`` and whichever of
``run_id``, ``loop``, ``ds``, ``item_id`` apply, so a person can filter one run or one record. Known
secret values (Alpaca keys from the environment) are masked before anything is written. A local command
also writes the same lines, at INFO whatever stderr shows, to ``<home>/logs/goldthread.jsonl`` (rotated;
``goldthread.log_files``); a Cloud Function writes no file. ``where(run_id)`` tells a person where to look.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from goldthread.log_files import FILE_LEVEL, FileTarget, SharedRotatingFileHandler, in_cloud

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


def configure(level: str | None = None, stream: Any = None, files: FileTarget | None = None) -> None:
    """Send goldthread's logs as JSON lines to ``stream`` (stderr by default) at ``level``, and, given
    ``files`` and outside Cloud Functions, to the rotated log file at INFO too; idempotent."""
    logger = logging.getLogger("goldthread")
    for handler in list(logger.handlers):
        if getattr(handler, "_goldthread", False):
            logger.removeHandler(handler)
            handler.close()
    stream_level = logging.getLevelName((level or os.environ.get("GOLDTHREAD_LOG_LEVEL", "INFO")).upper())
    if not isinstance(stream_level, int):
        stream_level = logging.INFO
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(stream_level)
    handler._goldthread = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(stream_level)
    if files is not None and not in_cloud():
        file_handler = SharedRotatingFileHandler(files)
        file_handler.setFormatter(JsonFormatter())
        file_handler._goldthread = True  # type: ignore[attr-defined]
        logger.addHandler(file_handler)
        logger.setLevel(min(stream_level, FILE_LEVEL))
    logger.propagate = False


def log_file() -> Path | None:
    """The file goldthread's logs go to in this process, or None (a Cloud Function, or stderr only)."""
    for handler in logging.getLogger("goldthread").handlers:
        if isinstance(handler, SharedRotatingFileHandler):
            return handler.target.path
    return None


def where(run_id: str | None = None) -> str:
    """Where a person finds the log lines of ``run_id`` (for every "see logs" message): the local file and
    the command that prints them, Cloud Logging's filter in a Cloud Function, else stderr."""
    path = log_file()
    if path is not None:
        return f"{path}" + (f" (goldthread logs --run {run_id})" if run_id else "")
    if in_cloud():
        return "Cloud Logging" + (f", jsonPayload.run_id=\"{run_id}\" OR jsonPayload.run_ids=\"{run_id}\""
                                  if run_id else "")
    return "stderr" + (f" (run {run_id})" if run_id else "")


def get_logger(name: str) -> logging.Logger:
    """A child of the ``goldthread`` logger."""
    return logging.getLogger(f"goldthread.{name}")
