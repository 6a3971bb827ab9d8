"""The dispatcher: for one loop and day, publish one work item per record to the loop's topic.

Triggered by the scheduler (or ``goldthread run``). It takes the (loop, day) lease so two dispatches
cannot run at once, records the run as RUNNING in ``job_metadata``, lets the loop prepare (sync the
strategy dimension, prefetch bars), publishes the items in batches, then records how many it
published. If it dies half-way, the run is marked STALLED later; the records it did not publish are
still unarchived, so the next dispatch publishes them, and any it did publish twice are stored once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from goldthread.logs import get_logger
from goldthread.loops import get_loop
from goldthread.models.hot import JobMetadata
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline import runs
from goldthread.pipeline.context import Context

log = get_logger("dispatcher")
PUBLISH_BATCH = 1000


def dispatch(
    ctx: Context,
    loop: Loop | str,
    ds: dt.date,
    progress: Callable[[int, int], None] | None = None,
) -> JobMetadata:
    """Publish the day's work items for ``loop``; returns the run record.

    Raises ``NotReadyError`` before starting a run when the day cannot be processed yet, and
    ``ConcurrentRunError`` when another dispatch holds the lease.
    """
    spec = get_loop(loop)
    spec.check_ready(ctx, ds)
    run = runs.start_run(ctx, spec.loop.value, ds)
    published = 0
    try:
        doc_ids = spec.find(ctx, ds)
        details = spec.prepare(ctx, ds, doc_ids)
        topic = ctx.settings.topic(spec.loop)
        now = ctx.now()
        for start in range(0, len(doc_ids), PUBLISH_BATCH):
            chunk = doc_ids[start : start + PUBLISH_BATCH]
            messages = [
                WorkItem(run_id=run.run_id, loop=spec.loop, ds=ds, doc_id=doc_id, published_at=now).to_message()
                for doc_id in chunk
            ]
            ctx.bus.publish_batch(topic, messages)
            published += len(chunk)
            if progress:
                progress(published, len(doc_ids))
        runs.finish_dispatch(ctx, run.run_id, published, details)
    except Exception as exc:
        runs.fail_run(ctx, run.run_id, f"{type(exc).__name__}: {exc}", published)  # items already out still count
        raise
    log.info("dispatched %d items", published, extra={"run_id": run.run_id, "loop": spec.loop.value, "ds": ds})
    final = runs.get_run(ctx, run.run_id)
    assert final is not None
    return final
