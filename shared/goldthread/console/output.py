"""How the command line prints: rich tables for a person, and one JSON shape per command for a script.

Every value is printed as text a person reads (never a Python ``repr``); ``jsonable`` turns Decimals into exact
strings, times into ISO 8601 UTC (``Z``) and models into their fields, so ``--json`` output parses anywhere.
The shapes are documented in README "JSON output"; ``tests/test_console.py`` checks each one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from goldthread.models.hot import JobMetadata, RunStatus
from goldthread.report import FINISHED, still_due

STATUS_COLORS = {"SUCCEEDED": "green", "PARTIAL": "yellow", "FAILED": "red", "STALLED": "red", "RUNNING": "cyan",
                 "NOT_READY": "yellow", "DRY_RUN": "cyan"}


def jsonable(value: Any) -> Any:
    """``value`` with every Decimal, time, enum, model and dataclass made plain JSON (Decimals as exact text)."""
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def print_json(console: Console, data: Any) -> None:
    """``data`` as indented JSON (never wrapped, so it parses whatever the terminal's width)."""
    console.print_json(json.dumps(jsonable(data), ensure_ascii=False))


def show(console: Console, as_json: bool, data: Any, human: Callable[[], None]) -> None:
    """What a command prints: ``data`` as JSON under ``--json``, else the human screen ``human`` prints."""
    if as_json:
        print_json(console, data)
    else:
        human()


def as_time(value: Any) -> dt.datetime | None:
    """A stored time (datetime or ISO text) as aware UTC, None if there is none."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def span(seconds: float | None) -> str:
    """A duration as a person reads it: ``45s``, ``12m 5s``, ``3h 20m``, ``2d 4h``; empty when unknown."""
    if seconds is None:
        return ""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def age_seconds(moment: Any, now: dt.datetime) -> float | None:
    """Seconds from ``moment`` to ``now`` (None if there is no moment)."""
    when = as_time(moment)
    return None if when is None else (now - when).total_seconds()


def when(value: Any) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` UTC (empty when unknown)."""
    moment = as_time(value)
    return "" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration_seconds(run: JobMetadata, now: dt.datetime) -> float:
    """How long a run took (finished runs) or has taken so far (unfinished ones)."""
    return ((run.finished_at or now) - run.started_at).total_seconds()


def reconciled_verdict(run: JobMetadata) -> str:
    """``yes``/``no`` for a finished run; ``unfinished`` (and how many records it never published) otherwise."""
    if run.status in FINISHED:
        return "yes" if run.reconciled else "no"
    due = still_due(run)
    return "unfinished" + (f", {due} not published" if due else "")


def run_record(run: JobMetadata, now: dt.datetime) -> dict[str, Any]:
    """One run in the JSON shape every command uses (README "JSON output", *run*)."""
    return {
        "run_id": run.run_id, "job": run.loop, "ds": run.ds, "status": run.status.value,
        "started_at": run.started_at, "finished_at": run.finished_at,
        "duration_seconds": round(duration_seconds(run, now), 3),
        "published": run.published, "loaded": run.loaded, "duplicates": run.duplicates,
        "dead_lettered": run.dead_lettered,
        "reconciled": run.reconciled if run.status in FINISHED else None, "error": run.error,
    }


def print_runs(console: Console, runs: Sequence[JobMetadata], limit: int, now: dt.datetime) -> None:
    """Runs with their start, duration and counts, newest first; the status column is what a person checks."""
    table = Table(title=f"Runs (newest {min(limit, len(runs))} of {len(runs)})")
    numbers = ("published", "loaded", "dup", "dead")
    for col in ("run_id", "job", "ds", "status", "started (UTC)", "duration", *numbers, "reconciled"):
        table.add_column(col, justify="right" if col in (*numbers, "duration") else "left")
    for r in runs[:limit]:
        table.add_row(
            r.run_id, r.loop, r.ds.isoformat(), f"[{STATUS_COLORS[r.status.value]}]{r.status.value}",
            when(r.started_at), span(duration_seconds(r, now)), str(r.published), str(r.loaded),
            str(r.duplicates), str(r.dead_lettered), reconciled_verdict(r),
        )
    console.print(table)


def summary_counts(runs: Iterable[JobMetadata]) -> dict[str, dict[str, int]]:
    """Runs per job and status (every status present, zero included)."""
    out: dict[str, dict[str, int]] = {}
    for r in runs:
        out.setdefault(r.loop, {s.value: 0 for s in RunStatus})[r.status.value] += 1
    return out


def first_error(letter: Mapping[str, Any]) -> str:
    """A letter's first field error as ``loc: msg`` (its message when it recorded no field errors)."""
    try:
        errors = json.loads(letter.get("errors_json") or "[]")
    except ValueError:
        errors = []
    if errors and isinstance(errors[0], Mapping):
        loc = errors[0].get("loc") or "<record>"
        return f"{loc}: {errors[0].get('msg', '')}"
    return str(letter.get("error_message") or "")


def field_errors(letter: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every field error a letter recorded ({loc, msg, type})."""
    try:
        errors = json.loads(letter.get("errors_json") or "[]")
    except ValueError:
        return [{"loc": "", "msg": str(letter.get("error_message") or ""), "type": "unreadable_errors"}]
    return [dict(e) for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []


def letter_state(letter: Mapping[str, Any]) -> str:
    """``open``, ``replayed`` or ``discarded``."""
    if letter.get("replay_run_id"):
        return "replayed"
    return "discarded" if letter.get("discarded_at") else "open"


def letter_record(letter: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """One dead letter in the JSON shape of ``dead-letters list`` (README "JSON output", *letter*)."""
    return {
        "id": letter["row_id"], "ds": letter["ds"], "item_ds": letter.get("item_ds"), "loop": letter["loop"],
        "record": letter["doc_id"], "run_id": letter["run_id"], "reason_code": letter["reason_code"],
        "first_error": first_error(letter), "error_message": letter["error_message"],
        "dead_lettered_at": letter["dead_lettered_at"],
        "age_seconds": round(age_seconds(letter["dead_lettered_at"], now) or 0.0, 3),
        "state": letter_state(letter), "replay_run_id": letter.get("replay_run_id"),
        "discarded_at": letter.get("discarded_at"), "discarded_by": letter.get("discarded_by"),
        "discard_reason": letter.get("discard_reason"),
    }


def print_letters(console: Console, letters: Sequence[Mapping[str, Any]], limit: int, now: dt.datetime) -> None:
    """Dead letters: id (what ``trace`` and ``dead-letters show`` take), day, loop, record, reason, first error,
    age, and, for a closed one, how it was closed."""
    table = Table(title=f"Dead letters ({len(letters)})")
    for col in ("id", "ds", "loop", "record", "reason", "first error", "age", "state"):
        table.add_column(col, overflow="fold", justify="right" if col == "age" else "left")
    for d in letters[:limit]:
        state = letter_state(d)
        if state == "replayed":
            state = f"replayed by {d['replay_run_id']}"
        elif state == "discarded":
            state = f"discarded by {d.get('discarded_by')}"
        table.add_row(*(cell(v) for v in (d["row_id"], d["ds"], d["loop"], d["doc_id"], d["reason_code"],
                                          first_error(d)[:160], span(age_seconds(d["dead_lettered_at"], now)), state)))
    console.print(table)


def print_pairs(console: Console, title: str, pairs: Mapping[str, Any]) -> None:
    """A two-column table of names and values."""
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for name, value in pairs.items():
        table.add_row(name, cell(value))
    console.print(table)


def print_rows(console: Console, title: str, rows: Sequence[Mapping[str, Any]], limit: int | None = None) -> None:
    """A table of dict rows, one column per key (in first-seen order), values as plain text."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows[:limit]:
        table.add_row(*(cell(row.get(c)) for c in columns))
    console.print(table)


def status_text(status: str) -> Text:
    """A run status coloured as everywhere on the console."""
    return Text(status, style=STATUS_COLORS.get(status, ""))


def cell(value: Any) -> Text | str:
    """A table cell: a ``Text`` as it is, anything else as plain text (yes/no for a flag; markup escaped)."""
    if isinstance(value, Text):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    plain = jsonable(value)
    return escape(plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False))
