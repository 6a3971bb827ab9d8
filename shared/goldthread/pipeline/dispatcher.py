"""The dispatcher: for one loop and day, publish one work item per record to the loop's topic.

Triggered by the scheduler (or ``goldthread run``). It takes the (loop, day) lease so two dispatches
cannot run at once, records the run as RUNNING in ``job_metadata``, lets the loop prepare (sync the
strategy dimension, prefetch bars), publishes the items in batches, recording after each batch the bus
accepted how many items are out (its heartbeat: the lease is renewed too), then records the dispatch
complete. If it dies half-way, its run shows what it published; the next dispatch takes the lease over
(at once on the same host, else after ``GOLDTHREAD_LEASE_TIMEOUT_SECONDS`` without a heartbeat), marks it
STALLED and publishes the records it left: they are still unarchived, and any published twice are stored
once.
A record whose document id cannot be a work item (``Identifier``: letters, digits, ``_.:-``, at most 128)
is dead-lettered by the dispatcher itself with the reason, instead of failing the run and with it every
other record of the loop, day after day.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from pydantic import ValidationError

from goldthread.errors import MalformedMessageError
from goldthread.ledger import runs
from goldthread.logs import get_logger
from goldthread.loops import get_loop
from goldthread.loops.base import write_pending_marks
from goldthread.models.hot import JobMetadata
from goldthread.models.work_items import Loop, WorkItem, errors_of, item_id_of
from goldthread.pipeline.context import Context
from goldthread.ports.bus import BusMessage
from goldthread.ports.hot_store import Outcome

log = get_logger("dispatcher")
PUBLISH_BATCH = 1000


def dispatch(
    ctx: Context,
    loop: Loop | str,
    ds: dt.date,
    progress: Callable[[int, int], None] | None = None,
    sweep: bool | None = None,
) -> JobMetadata:
    """Publish the day's work items for ``loop``; returns the run record.

    Raises ``NotReadyError`` before starting a run when the day cannot be processed yet, and
    ``ConcurrentRunError`` when another dispatch holds the lease.
    """
    spec = get_loop(loop)
    spec.check_ready(ctx, ds)
    with runs.running(ctx, spec.loop.value, ds) as scope:
        assert scope.run is not None
        run_id = scope.run.run_id
        swept = bool(spec.collection) and (ctx.settings.sweeps_on(ds) if sweep is None else sweep)
        doc_ids = spec.find(ctx, ds, swept)
        write_pending_marks(ctx)  # what finding decided for the ledger (reopened corrections, adopted marks)
        runs.record_published(ctx, run_id, 0, due=len(doc_ids))
        scope.details = {**spec.prepare(ctx, ds, doc_ids), "swept": swept}
        runs.record_published(ctx, run_id, 0)
        topic = ctx.settings.topic(spec.loop)
        encode = WorkItem.encoder(run_id, spec.loop, ds, ctx.now())
        for start in range(0, len(doc_ids), PUBLISH_BATCH):
            chunk = doc_ids[start : start + PUBLISH_BATCH]
            messages = []
            for doc_id in chunk:
                try:
                    messages.append(encode(doc_id))
                except ValidationError as exc:
                    scope.published += _dead_letter_id(ctx, run_id, spec.loop, ds, topic, doc_id, exc)
            if messages:
                ctx.bus.publish_batch(topic, messages)
            scope.published += len(messages)  # items already out count even if the dispatch fails later
            runs.record_published(ctx, run_id, scope.published)
            if progress:
                progress(start + len(chunk), len(doc_ids))
    log.info("dispatched %d items", scope.published, extra={"run_id": run_id, "loop": spec.loop.value, "ds": ds})
    assert scope.run is not None
    return scope.run


def _dead_letter_id(
    ctx: Context, run_id: str, loop: Loop, ds: dt.date, topic: str, doc_id: str, exc: ValidationError
) -> int:
    """Dead-letter a record whose id cannot be a work item, mark it and count it; returns 1 (one item)."""
    from goldthread.ledger import marks
    from goldthread.pipeline.dead_letters import collection_of, current_digests, route_permanent_many

    body = json.dumps({"run_id": run_id, "loop": loop.value, "ds": ds.isoformat(), "doc_id": doc_id}).encode()
    attributes = {"run_id": run_id, "loop": loop.value, "ds": ds.isoformat(), "doc_id": doc_id[:128]}
    message = BusMessage(body, attributes, f"unpublishable-{run_id}-{len(doc_id)}", ctx.now(), topic)
    error = MalformedMessageError("work item", doc_id[:128], [
        {**e, "loc": "doc_id", "msg": f"document id cannot be a work item: {e['msg']}"} for e in errors_of(exc)
    ])
    route_permanent_many(ctx, [(message, error, None)])  # recorded first: a crash now repeats, never loses it
    collection = collection_of(loop.value)
    if collection:
        marks.claim(ctx.hot, collection, [doc_id], marks.Mark.DEAD_LETTERED, run_id,
                    digests=current_digests(ctx, collection, [doc_id]))
    runs.record_outcomes(ctx, run_id, {item_id_of(loop, doc_id, ds): Outcome.DEAD_LETTERED})
    return 1
