"""``goldthread status``: is the pipeline healthy, and if not, what needs a person?

One report, read without writing anything (it works on a read-only home):

* per job (the four loops, both patches, replay, the canary, and any other job with runs): its last run
  (status, day, age, counts) and its next scheduled run (``bi.schedules.SCHEDULES``, the copy of what Terraform
  deploys; jobs run by hand, such as ``replay``, have none);
* open dead letters by reason (neither replayed nor discarded; canary letters aside, as on the dashboard);
* each job's freshness judged against its schedule (``bi.schedules.judge_freshness``: late only when its last
  due scheduled run is missing or failed), with the newest row of the table the job writes;
* the last canary run and the hop it broke at.

``problems`` lists what needs a person: a last run FAILED, STALLED or PARTIAL (a RUNNING run without progress
for ``run_timeout`` counts as stalled, though only ``runs``/a dispatch marks it), an open dead letter, a job late,
failed or never run against its schedule, a broken canary. The command exits ``Exit.PARTIAL`` (3) when there
is any (README "Exit codes").
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from goldthread.bi.schedules import SCHEDULES, judge_freshness, next_fire
from goldthread.ledger.runs import list_runs
from goldthread.logs import get_logger
from goldthread.models.hot import JobMetadata, RunStatus
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import list_dead_letters

log = get_logger("status")

TABLE_OF_JOB = {"trades": "fact_trades", "rejected_signals": "fact_rejected_signals",
                "expired_signals": "fact_signals_expired", "accounts": "snapshot_accounts"}
"""The warehouse table each loop fills (the one whose freshness its schedule judges)."""

KNOWN_JOBS: tuple[str, ...] = (*(loop.value for loop in Loop), "patch_fees", "patch_prices", "replay", "canary")
"""Every job goldthread runs: ``runs --job`` accepts these and any job that has runs."""

ATTENTION_STATUSES = frozenset({RunStatus.FAILED, RunStatus.STALLED, RunStatus.PARTIAL})
ATTENTION_FRESHNESS = frozenset({"late", "failed", "never run"})


@dataclass
class StatusReport:
    """The pipeline at a glance; ``problems`` is what needs a person (empty when healthy)."""

    generated_at: dt.datetime
    jobs: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    freshness: list[dict[str, Any]] = field(default_factory=list)
    canary: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing needs a person."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``status --json`` (README "JSON output")."""
        return {
            "ok": self.ok, "generated_at": self.generated_at, "problems": list(self.problems), "jobs": self.jobs,
            "dead_letters": {"open": sum(self.dead_letters.values()), "by_reason": dict(self.dead_letters)},
            "freshness": self.freshness, "canary": self.canary,
        }


def effective_status(run: JobMetadata, now: dt.datetime, timeout: dt.timedelta) -> str:
    """A run's status as a person should read it: a RUNNING run silent for ``timeout`` is STALLED."""
    if run.status is RunStatus.RUNNING and run.heartbeat_at < now - timeout:
        return RunStatus.STALLED.value
    return run.status.value


def _next_run(job: str, now: dt.datetime) -> tuple[dt.datetime | None, str | None]:
    upcoming = [(next_fire(s.cron, s.time_zone, now), s.name) for s in SCHEDULES if s.job == job]
    return min(upcoming) if upcoming else (None, None)


def _table_times(ctx: Context) -> dict[str, Any]:
    """The newest ``loaded_at`` of each loop's table (informative: freshness is judged by schedule)."""
    out: dict[str, Any] = {}
    for table in TABLE_OF_JOB.values():
        try:
            rows = ctx.warehouse.query(f"SELECT MAX(loaded_at) AS t FROM {table} WHERE NOT is_canary")
        except Exception as exc:
            log.debug("cannot read %s: %s", table, exc)
            rows = []
        out[table] = rows[0]["t"] if rows else None
    return out


def build_status(ctx: Context) -> StatusReport:
    """The status report of the pipeline behind ``ctx``; reads only."""
    now = ctx.now()
    report = StatusReport(generated_at=now)
    runs = list_runs(ctx)  # newest first
    latest: dict[str, JobMetadata] = {}
    for one in runs:
        latest.setdefault(one.loop, one)
    for job in [*KNOWN_JOBS, *sorted(set(latest) - set(KNOWN_JOBS))]:
        run = latest.get(job)
        next_at, next_schedule = _next_run(job, now)
        entry: dict[str, Any] = {"job": job, "next_run_at": next_at, "next_schedule": next_schedule, "last_run": None}
        if run is not None:
            status = effective_status(run, now, ctx.settings.run_timeout)
            entry["last_run"] = {
                "run_id": run.run_id, "status": status, "ds": run.ds, "started_at": run.started_at,
                "age_seconds": round((now - run.started_at).total_seconds(), 3), "published": run.published,
                "loaded": run.loaded, "duplicates": run.duplicates, "dead_lettered": run.dead_lettered,
                "error": run.error,
            }
            if status in {s.value for s in ATTENTION_STATUSES} and job != "canary":  # the canary: below
                report.problems.append(f"{job}: last run {run.run_id} ({run.ds}) is {status}"
                                       + (f": {run.error}" if run.error else ""))
        report.jobs.append(entry)

    letters = [d for d in list_dead_letters(ctx) if not d.get("is_canary")]
    report.dead_letters = dict(sorted(Counter(str(d["reason_code"]) for d in letters).items()))
    if letters:
        reasons = ", ".join(f"{n} {reason}" for reason, n in report.dead_letters.items())
        report.problems.append(f"{len(letters)} open dead letters ({reasons}): goldthread dead-letters list")

    health: dict[tuple[str, str], dict[str, Any]] = {}
    for one in reversed(runs):  # oldest first, so the latest run of each (job, day) is kept
        health[(one.loop, one.ds.isoformat())] = {
            "job": one.loop, "ds": one.ds.isoformat(), "last_started_at": one.started_at,
            "last_status": effective_status(one, now, ctx.settings.run_timeout),
        }
    tables = _table_times(ctx)
    for verdict in judge_freshness(health.values(), [], now):
        table = TABLE_OF_JOB.get(verdict["job"])
        verdict = {**verdict, "table": table, "table_last_loaded_at": tables.get(table) if table else None}
        report.freshness.append(verdict)
        if verdict["status"] in ATTENTION_FRESHNESS:
            report.problems.append(f"{verdict['job']}: {verdict['status']} against its schedule "
                                   f"({verdict['due_schedule']} was due at {verdict['due_at']})")

    canary = latest.get("canary")
    if canary is not None:
        status = effective_status(canary, now, ctx.settings.run_timeout)
        report.canary = {
            "run_id": canary.run_id, "status": status, "started_at": canary.started_at,
            "age_seconds": round((now - canary.started_at).total_seconds(), 3),
            "ok": status == RunStatus.SUCCEEDED.value, "broken_hop": canary.details.get("broken_hop"),
            "error": canary.error,
        }
        if status == RunStatus.FAILED.value:
            report.problems.append(f"canary: broken at {canary.details.get('broken_hop') or '?'} "
                                   f"(run {canary.run_id})")
    return report
