"""Copy run records from ``job_metadata`` (hot store) to ``job_runs`` (warehouse), so BI reads only the warehouse.

Run bookkeeping lives in the hot store because the dispatcher and the subscribers update it atomically
while a run is in flight; a BI tool cannot read Firestore. ``sync_job_runs`` upserts every run (one
statement, keyed by the run id), so a run synced while RUNNING is updated by the next sync. It runs at the
end of every canary, every dashboard build and the demo; ``mart_pipeline_health`` and
``mart_golden_thread`` are therefore as fresh as the last of those (the canary is scheduled hourly).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal

from goldthread.ledger import runs
from goldthread.models.hot import JobMetadata
from goldthread.models.types import quantize9
from goldthread.models.warehouse import JobRun, row_id_for
from goldthread.pipeline.context import Context

UPDATED_COLUMNS: tuple[str, ...] = tuple(c for c in JobRun.model_fields if c != JobRun.__key__)


def job_run_row(run: JobMetadata, synced_at: dt.datetime) -> JobRun:
    """The warehouse copy of one run (duration once finished; details as JSON text)."""
    duration = None
    if run.finished_at is not None:
        duration = quantize9(Decimal(str((run.finished_at - run.started_at).total_seconds())))
    return JobRun(
        row_id=row_id_for("job_runs", run.run_id), ds=run.ds, run_id=run.run_id, job=run.loop,
        status=run.status.value, git_hash=run.git_hash, started_at=run.started_at, heartbeat_at=run.heartbeat_at,
        dispatched_at=run.dispatched_at, finished_at=run.finished_at, duration_seconds=duration,
        published=run.published, loaded=run.loaded, duplicates=run.duplicates, dead_lettered=run.dead_lettered,
        reconciled=run.reconciled, error=(run.error or None) and run.error[:1024],
        details_json=json.dumps(run.details, sort_keys=True, default=str)[:1_000_000], synced_at=synced_at,
    )


def sync_job_runs(ctx: Context, run_ids: Sequence[str] | None = None) -> int:
    """Upsert runs from ``job_metadata`` into ``job_runs`` (all of them, or only ``run_ids``); returns the count."""
    if run_ids is None:
        records = runs.list_runs(ctx)
    else:
        records = [r for r in (runs.get_run(ctx, run_id) for run_id in run_ids) if r is not None]
    if not records:
        return 0
    now = ctx.now()
    rows = [job_run_row(r, now) for r in records]
    ctx.warehouse.upsert_rows(JobRun, rows, UPDATED_COLUMNS)
    return len(rows)
