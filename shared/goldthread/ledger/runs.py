"""Run bookkeeping in ``job_metadata``: start, lease, count, finish, and mark stalled runs.

Status rules:

* RUNNING from the dispatch until every published item has a final outcome;
* SUCCEEDED when every item is loaded or skipped as a duplicate; PARTIAL when some were dead-lettered;
* FAILED when the dispatcher itself failed;
* STALLED when a RUNNING run can make no more progress: its dispatch was taken over (below), its
  dispatcher's process is gone, or it saw no progress for ``run_timeout`` (marked by the next dispatch or
  by ``goldthread runs``), so no run stays RUNNING forever.

The ledger: ``published`` is recorded after every publish batch the bus accepted (with ``due``, the records
the dispatch found, in ``details``), so a run that dies half-way shows what it published; each item's outcome
is recorded once (``HotStore.record_outcomes``), so a redelivered item cannot be counted twice. A finished
run (SUCCEEDED or PARTIAL) reconciles: ``published = loaded + duplicates + dead_lettered``.

Leases by heartbeat: the (job, day) lease is renewed after every publish batch and by the deliveries of a
dispatch still publishing. A lease without a heartbeat for ``GOLDTHREAD_LEASE_TIMEOUT_SECONDS`` (300 s) is
taken over by the next dispatch; on the same host, a lease whose process is gone is taken over at once.
The successor marks the dead run STALLED with its counts (``published`` raised to the items that have an
outcome, each of which was certainly published) and publishes every record still due.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldthread.errors import ConcurrentRunError
from goldthread.logs import get_logger
from goldthread.models.hot import TERMINAL_STATUSES, JobMetadata, RunStatus
from goldthread.pipeline.context import Context
from goldthread.ports.hot_store import OUTCOMES, Lease, Merge, Where

JOBS = JobMetadata.collection
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


def lease_name(job: str, ds: dt.date) -> str:
    """The lease that keeps two dispatches of one job and day apart."""
    return f"dispatch:{job}:{ds.isoformat()}"


def this_process() -> tuple[str, int]:
    """(host, pid) recorded in a lease. The host is the host name and boot id, so a pid is only ever judged
    on the machine (and boot) that owns it; it is empty on Cloud Run / Cloud Functions (``K_SERVICE``), whose
    instances may share a host name and pids: there a lease is taken over by heartbeat age only."""
    if os.environ.get("K_SERVICE") or os.environ.get("FUNCTION_TARGET"):
        return "", os.getpid()
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}#{boot}"[:200], os.getpid()


def process_is_gone(lease: Lease) -> bool:
    """True when ``lease`` was taken on this host by a process that no longer exists (or is a zombie)."""
    host, pid = this_process()
    if not lease.host or lease.host != host or lease.pid <= 0 or lease.pid == pid:
        return False
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    try:  # killed but not yet reaped by its parent: as dead as it gets
        return Path(f"/proc/{lease.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def start_run(ctx: Context, job: str, ds: dt.date, details: Mapping[str, Any] | None = None) -> JobMetadata:
    """Take the (job, ds) lease, mark stalled runs, and record a RUNNING run.

    A lease whose holder's heartbeat is older than ``lease_timeout``, or whose process is gone (same host),
    is taken over, and the run that held it is marked STALLED. Raises ``ConcurrentRunError`` if another
    live dispatch of the same job and day holds the lease.
    """
    mark_stalled(ctx)
    now = ctx.now()
    run = JobMetadata(
        run_id=new_run_id(job, ds), loop=job, ds=ds, git_hash=ctx.settings.git_hash,
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, details=dict(details or {}),
    )
    name = lease_name(job, ds)
    host, pid = this_process()
    ttl = ctx.settings.lease_timeout
    before = ctx.hot.read_lease(name)
    holder = ctx.hot.acquire_lease(name, run.run_id, now, ttl, host=host, pid=pid)
    why = f"no heartbeat for {ttl} (since {before.heartbeat_at or before.expires_at - ttl})" if before else ""
    if holder is not None:
        current = ctx.hot.read_lease(name)
        if current is not None and current.holder == holder and process_is_gone(current):
            holder = ctx.hot.acquire_lease(name, run.run_id, now, ttl, host=host, pid=pid, take_over=holder)
            before, why = current, f"its process {current.pid} is gone"
    if holder is not None:
        raise ConcurrentRunError(
            f"{job} for {ds} is already being dispatched by run {holder}; this one stands down (a dispatch "
            f"without a heartbeat for {int(ttl.total_seconds())} s, GOLDTHREAD_LEASE_TIMEOUT_SECONDS, is taken over)"
        )
    _store(ctx, run)
    if before is not None and before.holder != run.run_id:
        taken = get_run(ctx, before.holder)
        if taken is not None and taken.status is RunStatus.RUNNING and taken.dispatched_at is None:
            _stall(ctx, taken, f"dispatch taken over by run {run.run_id}: {why}")
    log.info("run started", extra={"run_id": run.run_id, "loop": job, "ds": ds})
    return run


@dataclass
class RunScope:
    """A run inside ``running``: the body sets ``published`` (items out) and ``details`` as it goes; ``run`` is
    the run as recorded (None when nothing is recorded: a dry run), refreshed once the block ends."""

    run: JobMetadata | None
    published: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@contextmanager
def running(
    ctx: Context, job: str, ds: dt.date, details: Mapping[str, Any] | None = None, *, record: bool = True
) -> Iterator[RunScope]:
    """The one way a job records a run: start it (lease, RUNNING), run the block, then record its dispatch
    complete with what the block published (it finishes once every item has an outcome), or, if the block
    raised, mark it FAILED with the error and the items already out, and re-raise. ``record=False`` (a dry run)
    records nothing and yields a scope without a run."""
    if not record:
        yield RunScope(None)
        return
    scope = RunScope(start_run(ctx, job, ds, details))
    assert scope.run is not None
    run_id = scope.run.run_id
    try:
        yield scope
    except BaseException as exc:
        fail_run(ctx, run_id, f"{type(exc).__name__}: {exc}", scope.published)
        raise
    finish_dispatch(ctx, run_id, scope.published, scope.details)
    scope.run = get_run(ctx, run_id)


def record_published(ctx: Context, run_id: str, published: int, due: int | None = None) -> None:
    """The dispatcher's heartbeat after each publish batch the bus accepted: record how many items are out
    (and, first, how many records are ``due``), and renew the lease.

    Raises ``ConcurrentRunError`` when the lease was taken over meanwhile (this dispatch was judged dead):
    the dispatch stops publishing and its successor publishes what is left.
    """
    run = get_run(ctx, run_id)
    assert run is not None
    now = ctx.now()
    fields: dict[str, Any] = {"published": published, "heartbeat_at": now}
    if due is not None:
        fields["details"] = {**run.details, "due": due}
    ctx.hot.update(JOBS, run_id, fields)
    name = lease_name(run.loop, run.ds)
    if not ctx.hot.renew_lease(name, run_id, now, ctx.settings.lease_timeout):
        lease = ctx.hot.read_lease(name)
        raise ConcurrentRunError(f"run {run_id} lost its lease to run {lease.holder if lease else 'none'}; "
                                 "it stands down and the successor publishes what is left")


def finish_dispatch(ctx: Context, run_id: str, published: int, details: Mapping[str, Any] | None = None) -> None:
    """Record how many items the dispatcher published, release the lease, and finish if all are done."""
    run = get_run(ctx, run_id)
    assert run is not None
    now = ctx.now()
    fields: dict[str, Any] = {"published": published, "dispatched_at": now, "heartbeat_at": now}
    if details:
        fields["details"] = {**run.details, **details}
    ctx.hot.update(JOBS, run_id, fields)
    ctx.hot.release_lease(lease_name(run.loop, run.ds), run_id)
    maybe_finish(ctx, run_id)


def fail_run(ctx: Context, run_id: str, error: str, published: int | None = None) -> None:
    """Mark a run FAILED with the error that stopped it (and how many items it had published by then).

    A run a successor marked STALLED (it took the lease over) keeps that status and its reason.
    """
    run = get_run(ctx, run_id)
    if run is None:
        return
    fields: dict[str, Any] = {}
    if run.status is not RunStatus.STALLED:
        fields = {"status": RunStatus.FAILED.value, "error": error[:1000], "finished_at": ctx.now()}
    if published is not None:
        fields["published"] = max(published, run.published)
    if fields:
        ctx.hot.update(JOBS, run_id, fields)
    ctx.hot.release_lease(lease_name(run.loop, run.ds), run_id)
    log.error("run failed: %s", error, extra={"run_id": run_id, "loop": run.loop, "ds": run.ds})


def record_outcomes(
    ctx: Context, run_id: str, outcomes: Mapping[str, str], merges: Mapping[str, Merge] | None = None
) -> dict[str, int]:
    """Count each item's outcome once in its run, then finish the run if it is complete.

    The counters come back from the write that changed them (``HotStore.record_outcomes``): the run is never
    read again to decide whether it is finished; where only the counters came back (a blind first write), it
    is read only once they reach ``published``, or to renew the dispatch's lease. Items of a run that does not
    exist are not counted. ``merges`` (by item id: the ledger marks of loaded records) are written with the
    outcomes they go with. An item counted in a STALLED or FAILED run was published, so ``published`` never
    stays below the outcomes. Progress is a heartbeat: the write that counts an outcome sets the run's
    ``heartbeat_at``, and while its dispatch is still publishing its lease is renewed (at most once a minute
    or so per process).
    """
    if not outcomes:
        return {}
    now = ctx.now()
    recorded = ctx.hot.record_outcomes(run_id, outcomes, merges, at=now)
    if recorded.run is None:
        return {}
    if not any(recorded.added.values()):
        return recorded.added
    every = min(ctx.settings.run_timeout / 10, ctx.settings.lease_timeout / 5)
    stored = recorded.run
    if not recorded.complete:  # only the counters came back: read the run when it may be done, or to renew
        processed = sum(int(stored.get(k) or 0) for k in OUTCOMES)
        looked = _LOOKED.setdefault(run_id, now)  # a first look costs nothing: the dispatch renews while publishing
        if processed < int(stored.get("published") or 0) and now - looked <= every:
            return recorded.added
        stored = ctx.hot.get(JOBS, run_id) or {}
        if not stored:
            return recorded.added
    run = _finish_if_reconciled(ctx, JobMetadata.model_validate(stored))
    if run.status in (RunStatus.STALLED, RunStatus.FAILED) and run.processed > run.published:
        # a late delivery (Pub/Sub redelivering a dead dispatcher's last batch) proves it was published
        ctx.hot.update(JOBS, run_id, {"published": run.processed})
    if run.status is RunStatus.RUNNING and run.dispatched_at is None and now - _LOOKED.get(run_id, _NEVER) > every:
        ctx.hot.renew_lease(lease_name(run.loop, run.ds), run_id, now, ctx.settings.lease_timeout)
    if len(_LOOKED) > 1000:
        _LOOKED.clear()
    _LOOKED[run_id] = now
    return recorded.added


_LOOKED: dict[str, dt.datetime] = {}
"""When this process last looked at each run it counted outcomes for: a run whose outcomes came back without it
(``RecordedOutcomes.complete`` False) is read again only when it may be done or once per heartbeat interval,
and a dispatch's lease is renewed by its deliveries at most once per interval and process."""
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def maybe_finish(ctx: Context, run_id: str) -> JobMetadata | None:
    """Set SUCCEEDED or PARTIAL once every published item has an outcome (reading the run once)."""
    run = get_run(ctx, run_id)
    return _finish_if_reconciled(ctx, run) if run is not None else None


def _finish_if_reconciled(ctx: Context, run: JobMetadata) -> JobMetadata:
    """``run`` finished (SUCCEEDED, or PARTIAL when some items were dead-lettered) if it is RUNNING and every
    published item has an outcome; returns the run as it now stands, without reading it again."""
    if run.status is not RunStatus.RUNNING or not run.reconciled:
        return run
    status = RunStatus.PARTIAL if run.dead_lettered else RunStatus.SUCCEEDED
    now = ctx.now()
    ctx.hot.update(JOBS, run.run_id, {"status": status.value, "finished_at": now})
    log.info(
        "run finished %s: published=%d loaded=%d duplicates=%d dead_lettered=%d",
        status.value, run.published, run.loaded, run.duplicates, run.dead_lettered,
        extra={"run_id": run.run_id, "loop": run.loop, "ds": run.ds},
    )
    return run.model_copy(update={"status": status, "finished_at": now})


def _stall(ctx: Context, run: JobMetadata, reason: str) -> None:
    """Mark ``run`` STALLED with ``reason``. Every item with an outcome was published, so ``published`` is
    raised to that many if a death between publishing a batch and recording it left it behind."""
    fields: dict[str, Any] = {"status": RunStatus.STALLED.value, "finished_at": ctx.now(), "error": reason[:1000]}
    if run.processed > run.published:
        fields["published"] = run.processed
    ctx.hot.update(JOBS, run.run_id, fields)
    log.warning("run stalled: %s", reason, extra={"run_id": run.run_id, "loop": run.loop, "ds": run.ds})


def _dead_dispatch(ctx: Context, run: JobMetadata) -> str | None:
    """Why a RUNNING run whose dispatch never completed can no longer complete it, or None if it may."""
    lease = ctx.hot.read_lease(lease_name(run.loop, run.ds))
    if lease is None:
        return "its dispatch ended without recording its count"
    if lease.holder != run.run_id:
        return f"its dispatch was taken over by run {lease.holder}"
    if process_is_gone(lease):
        return f"its dispatcher's process {lease.pid} is gone"
    return None


def mark_stalled(ctx: Context) -> list[str]:
    """Mark RUNNING runs that can make no more progress as STALLED; returns their ids.

    A run still dispatching is stalled when its lease was taken over or its process is gone (same host); any
    RUNNING run when it saw no progress for ``run_timeout``.
    """
    cutoff = ctx.now() - ctx.settings.run_timeout
    stalled = []
    for run_id, data in ctx.hot.query(JOBS, [Where("status", "==", RunStatus.RUNNING.value)]):
        run = JobMetadata.model_validate(data)
        if run.status in TERMINAL_STATUSES:
            continue
        reason = _dead_dispatch(ctx, run) if run.dispatched_at is None else None
        if reason is None and run.heartbeat_at < cutoff:
            reason = f"no progress since {run.heartbeat_at.isoformat()} (timeout {ctx.settings.run_timeout})"
        if reason is not None:
            _stall(ctx, run, reason)
            stalled.append(run_id)
    return stalled
