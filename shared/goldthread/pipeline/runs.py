"""Run bookkeeping in ``job_metadata``: start, lease, count, finish, and mark stalled runs.

Status rules:

* RUNNING from the dispatch until every published item has a final outcome;
* SUCCEEDED when every item is loaded or skipped as a duplicate; PARTIAL when some were dead-lettered;
* FAILED when the dispatcher itself failed;
* STALLED when a RUNNING run saw no progress for ``run_timeout`` (marked by the next dispatch or by
  ``goldthread runs``), so no run stays RUNNING forever.

Counts always reconcile: ``published = loaded + duplicates + dead_lettered``. Outcomes are recorded
once per item (``HotStore.record_outcomes``), so a redelivered item cannot be counted twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from goldthread.errors import ConcurrentRunError
from goldthread.logs import get_logger
from goldthread.models.hot import TERMINAL_STATUSES, JobMetadata, RunStatus
from goldthread.pipeline.context import Context
from goldthread.ports.hot_store import Where

JOBS = "job_metadata"
log = get_logger("runs")


def new_run_id(job: str, ds: dt.date) -> str:
    """A unique, readable run id: ``trades-20240105-1a2b3c4d``."""
    return f"{job}-{ds:%Y%m%d}-{uuid.uuid4().hex[:8]}"


def _store(ctx: Context, run: JobMetadata) -> None:
    ctx.hot.put(JOBS, run.run_id, run.model_dump())


def get_run(ctx: Context, run_id: str) -> JobMetadata | None:
    """A run by id."""
    data = ctx.hot.get(JOBS, run_id)
    return JobMetadata.model_validate(data) if data else None


def list_runs(ctx: Context, job: str | None = None, ds: dt.date | None = None) -> list[JobMetadata]:
    """Runs, newest first, optionally of one job (loop, patch, replay, canary) and day."""
    where = [Where("loop", "==", job)] if job else []
    if ds:
        where.append(Where("ds", "==", ds))
    runs = [JobMetadata.model_validate(d) for _, d in ctx.hot.query(JOBS, where)]
    return sorted(runs, key=lambda r: r.started_at, reverse=True)


def start_run(ctx: Context, job: str, ds: dt.date, details: Mapping[str, Any] | None = None) -> JobMetadata:
    """Take the (job, ds) lease, mark stalled runs, and record a RUNNING run.

    Raises ``ConcurrentRunError`` if another live dispatch of the same job and day holds the lease.
    """
    mark_stalled(ctx)
    now = ctx.now()
    run = JobMetadata(
        run_id=new_run_id(job, ds), loop=job, ds=ds, git_hash=ctx.settings.git_hash,
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, details=dict(details or {}),
    )
    holder = ctx.hot.acquire_lease(f"dispatch:{job}:{ds.isoformat()}", run.run_id, now, ctx.settings.run_timeout)
    if holder is not None:
        raise ConcurrentRunError(f"{job} for {ds} is already being dispatched by run {holder}; this one stands down")
    _store(ctx, run)
    log.info("run started", extra={"run_id": run.run_id, "loop": job, "ds": ds})
    return run


def finish_dispatch(ctx: Context, run_id: str, published: int, details: Mapping[str, Any] | None = None) -> None:
    """Record how many items the dispatcher published, release the lease, and finish if all are done."""
    run = get_run(ctx, run_id)
    assert run is not None
    now = ctx.now()
    fields: dict[str, Any] = {"published": published, "dispatched_at": now, "heartbeat_at": now}
    if details:
        fields["details"] = {**run.details, **details}
    ctx.hot.update(JOBS, run_id, fields)
    ctx.hot.release_lease(f"dispatch:{run.loop}:{run.ds.isoformat()}", run_id)
    maybe_finish(ctx, run_id)


def fail_run(ctx: Context, run_id: str, error: str, published: int | None = None) -> None:
    """Mark a run FAILED with the error that stopped it (and how many items it had published by then)."""
    run = get_run(ctx, run_id)
    if run is None:
        return
    fields: dict[str, Any] = {"status": RunStatus.FAILED.value, "error": error[:1000], "finished_at": ctx.now()}
    if published is not None:
        fields["published"] = published
    ctx.hot.update(JOBS, run_id, fields)
    ctx.hot.release_lease(f"dispatch:{run.loop}:{run.ds.isoformat()}", run_id)
    log.error("run failed: %s", error, extra={"run_id": run_id, "loop": run.loop, "ds": run.ds})


def record_outcomes(ctx: Context, run_id: str, outcomes: Mapping[str, str]) -> dict[str, int]:
    """Count each item's outcome once in its run, then finish the run if it is complete."""
    if not outcomes or ctx.hot.get(JOBS, run_id) is None:
        return {}
    added = ctx.hot.record_outcomes(run_id, outcomes)
    if any(added.values()):
        run = maybe_finish(ctx, run_id)
        now = ctx.now()
        if run and run.status is RunStatus.RUNNING and now - run.heartbeat_at > ctx.settings.run_timeout / 10:
            ctx.hot.update(JOBS, run_id, {"heartbeat_at": now})
    return added


def maybe_finish(ctx: Context, run_id: str) -> JobMetadata | None:
    """Set SUCCEEDED or PARTIAL once every published item has an outcome."""
    run = get_run(ctx, run_id)
    if run is None or run.status is not RunStatus.RUNNING or not run.reconciled:
        return run
    status = RunStatus.PARTIAL if run.dead_lettered else RunStatus.SUCCEEDED
    ctx.hot.update(JOBS, run_id, {"status": status.value, "finished_at": ctx.now()})
    log.info(
        "run finished %s: published=%d loaded=%d duplicates=%d dead_lettered=%d",
        status.value, run.published, run.loaded, run.duplicates, run.dead_lettered,
        extra={"run_id": run_id, "loop": run.loop, "ds": run.ds},
    )
    return get_run(ctx, run_id)


def mark_stalled(ctx: Context) -> list[str]:
    """Mark RUNNING runs with no progress for ``run_timeout`` as STALLED; returns their ids."""
    cutoff = ctx.now() - ctx.settings.run_timeout
    stalled = []
    for run_id, data in ctx.hot.query(JOBS, [Where("status", "==", RunStatus.RUNNING.value)]):
        run = JobMetadata.model_validate(data)
        if run.heartbeat_at < cutoff and run.status not in TERMINAL_STATUSES:
            ctx.hot.update(JOBS, run_id, {
                "status": RunStatus.STALLED.value, "finished_at": ctx.now(),
                "error": f"no progress since {run.heartbeat_at.isoformat()} (timeout {ctx.settings.run_timeout})",
            })
            stalled.append(run_id)
            log.warning("run stalled", extra={"run_id": run_id, "loop": run.loop, "ds": run.ds})
    return stalled
