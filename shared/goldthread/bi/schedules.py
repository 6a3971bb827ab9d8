"""Freshness against the schedule: a job is late only when its scheduled run is missing or failed.

``SCHEDULES`` is the Python copy of ``terraform/scheduler.tf``'s ``locals.schedules`` (cron and time zone per
Cloud Scheduler job); ``tests/test_bi_schedules.py`` parses the ``.tf`` and fails when the two differ, so the
copy cannot drift silently. ``judge_freshness`` takes the rows of ``mart_pipeline_health`` (the latest run per
job and day) and the canary's runs (``mart_golden_thread``) and, for each job, finds the last scheduled time
that is *due* (at least ``GRACE`` ago, so a run still in progress is not late), then the job's latest run:

* ``on time``: a run started at or after that scheduled time (less ``EARLY``) and did not fail: a run that
  had nothing to do (0 rows) is on time;
* ``failed``: the latest such run ended FAILED or STALLED;
* ``late``: no run started since the scheduled time;
* ``never run``: no run of the job at all.

The age of the newest row a job wrote is NOT a measure of lateness (the price patch often has nothing to
patch); the page shows the verdict, the due time and the latest run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Schedule:
    """One Cloud Scheduler job: its name in scheduler.tf, the job name its runs carry, cron and time zone."""

    name: str
    job: str
    cron: str
    time_zone: str


SCHEDULES: tuple[Schedule, ...] = (
    Schedule("trades_equities", "trades", "30 16 * * 1-5", "America/New_York"),
    Schedule("trades_crypto", "trades", "15 0 * * *", "Etc/UTC"),
    Schedule("rejected_signals", "rejected_signals", "30 0 * * *", "Etc/UTC"),
    Schedule("expired_signals", "expired_signals", "45 0 * * *", "Etc/UTC"),
    Schedule("accounts", "accounts", "0 17 * * *", "America/New_York"),
    Schedule("patch_fees", "patch_fees", "0 10 * * *", "America/New_York"),
    Schedule("patch_prices", "patch_prices", "15 10 * * 1-5", "America/New_York"),
    Schedule("canary", "canary", "5 * * * *", "Etc/UTC"),
)
"""The deployed schedules (terraform/scheduler.tf); a job's runs carry ``loop`` or the function name."""

GRACE = dt.timedelta(hours=2)
"""How long after its scheduled time a run may take to start and finish before the job counts as late."""

EARLY = dt.timedelta(minutes=10)
"""A run that started this much before its scheduled time (clock skew, a manual run) still counts for it."""

_FAILED = frozenset({"FAILED", "STALLED"})
_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _field(text: str, lo: int, hi: int, weekday: bool = False) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(base)
            end = hi if step_text else start
        if weekday and end == 7:
            values.add(0)
            end = 6
        if not (lo <= start <= end <= (7 if weekday else hi)):
            raise ValueError(f"cron field {text!r} out of range {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(v % 7 if weekday else v for v in values)


def cron_fields(cron: str) -> tuple[frozenset[int], ...]:
    """Minute, hour, day of month, month, weekday (0 = Sunday) sets of a five-field cron expression."""
    parts = cron.split()
    if len(parts) != 5:
        raise ValueError(f"not a five-field cron expression: {cron!r}")
    return tuple(_field(p, lo, hi, weekday=i == 4) for i, (p, (lo, hi)) in enumerate(zip(parts, _FIELDS, strict=True)))


def previous_fire(cron: str, time_zone: str, before: dt.datetime) -> dt.datetime:
    """The latest time at or before ``before`` (UTC-aware) when ``cron`` fires in ``time_zone``; UTC-aware.

    Day-of-month and weekday combine as cron does: when both are restricted, either may match.
    """
    minutes, hours, days, months, weekdays = cron_fields(cron)
    dom_any, dow_any = len(days) == 31, len(weekdays) == 7
    zone = ZoneInfo(time_zone)
    local = before.astimezone(zone)
    day = local.date()
    for _ in range(400):
        cron_dow = (day.weekday() + 1) % 7
        dom_ok, dow_ok = day.day in days, cron_dow in weekdays
        matches = (dom_ok and dow_ok) if (dom_any or dow_any) else (dom_ok or dow_ok)
        if day.month in months and matches:
            for hour in sorted(hours, reverse=True):
                for minute in sorted(minutes, reverse=True):
                    moment = dt.datetime.combine(day, dt.time(hour, minute), zone)
                    if moment.astimezone(dt.UTC) <= before:
                        return moment.astimezone(dt.UTC)
        day -= dt.timedelta(days=1)
    raise ValueError(f"{cron!r} never fires in the 400 days before {before}")


def next_fire(cron: str, time_zone: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` (UTC-aware) when ``cron`` fires in ``time_zone``; UTC-aware.

    The mirror of ``previous_fire`` (same day-of-month / weekday rule), for "next scheduled run".
    """
    minutes, hours, days, months, weekdays = cron_fields(cron)
    dom_any, dow_any = len(days) == 31, len(weekdays) == 7
    zone = ZoneInfo(time_zone)
    day = after.astimezone(zone).date()
    for _ in range(400):
        cron_dow = (day.weekday() + 1) % 7
        dom_ok, dow_ok = day.day in days, cron_dow in weekdays
        matches = (dom_ok and dow_ok) if (dom_any or dow_any) else (dom_ok or dow_ok)
        if day.month in months and matches:
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    moment = dt.datetime.combine(day, dt.time(hour, minute), zone).astimezone(dt.UTC)
                    if moment > after:
                        return moment
        day += dt.timedelta(days=1)
    raise ValueError(f"{cron!r} never fires in the 400 days after {after}")


def _as_time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def judge_freshness(
    health: Iterable[Mapping[str, Any]],
    canary_runs: Iterable[Mapping[str, Any]],
    now: dt.datetime,
    schedules: Iterable[Schedule] = SCHEDULES,
) -> list[dict[str, Any]]:
    """One verdict per scheduled job (in schedule order): status, when it was due, and its latest run.

    ``health`` rows are ``mart_pipeline_health`` rows (``job``, ``last_started_at``, ``last_status``, ...);
    ``canary_runs`` are ``mart_golden_thread`` rows (``started_at``, ``status``).
    """
    runs: dict[str, list[tuple[dt.datetime, str, str]]] = {}
    for row in health:
        started = _as_time(row.get("last_started_at"))
        if started is not None:
            runs.setdefault(str(row["job"]), []).append((started, str(row.get("last_status")), str(row.get("ds"))))
    for row in canary_runs:
        started = _as_time(row.get("started_at"))
        if started is not None:
            runs.setdefault("canary", []).append((started, str(row.get("status")), str(row.get("ds"))))
    by_job: dict[str, list[Schedule]] = {}
    for schedule in schedules:
        by_job.setdefault(schedule.job, []).append(schedule)
    verdicts = []
    for job, group in by_job.items():
        due_by = max(((previous_fire(s.cron, s.time_zone, now - GRACE), s) for s in group), key=lambda x: x[0])
        due, schedule = due_by
        history = sorted(runs.get(job, []))
        latest = history[-1] if history else None
        since = [r for r in history if r[0] >= due - EARLY]
        if latest is None:
            status = "never run"
        elif not since:
            status = "late"
        elif since[-1][1] in _FAILED:
            status = "failed"
        else:
            status = "on time"
        verdicts.append({
            "job": job,
            "schedules": ", ".join(f"{s.cron} ({s.time_zone})" for s in group),
            "due_at": due.isoformat().replace("+00:00", "Z"),
            "due_schedule": schedule.name,
            "status": status,
            "last_started_at": latest[0].isoformat().replace("+00:00", "Z") if latest else None,
            "last_status": latest[1] if latest else None,
            "last_ds": latest[2] if latest else None,
        })
    return verdicts
