"""The subscriber: turn delivered work items into warehouse rows, once, whatever is redelivered.

For a batch of messages (one in a Cloud Function, many on the local path) it:

1. validates each message as a ``WorkItem`` (malformed -> dead letter);
2. asks the loop to build rows (SchemaGuardian on the hot document, broker checks, SCD lookup...);
   permanent failures go to the dead letters, a transient one nacks the items it concerns for retry. An
   item whose build alone raises an arithmetic or value error (an overflow computed from its own values)
   is permanent too: dead-lettered VALIDATION with the reason at once, never retried to ``MAX_ATTEMPTS``;
   any other unexpected exception (a bug) is retried for that item alone. An item whose hot document
   is gone (``NOT_FOUND``) while the warehouse holds its row (``LoopSpec.row_key``) is no letter: a
   redelivery of an archived record, counted as a duplicate;
3. streams the rows keyed by their deterministic ``row_id`` (a second delivery is a duplicate). Where
   the warehouse bills its key check (BigQuery: one query per call, i.e. per item in a Cloud Function),
   a first conditional mark on the record in the ledger (``loading_run_id``) proves that no earlier attempt wrote
   the row, and only records that already carry it pay for the check;
4. counts each item's outcome in its run (recorded once per item) and, in the same atomic write, marks the
   records it loaded archived by its run in the ledger (``ledger.marks.archived``), with the digest of the
   document archived; a record whose row was already there is marked by a conditional claim first (the run
   that wrote it may have crashed before marking it).

A crash between any two steps is harmless: the redelivered message repeats the steps, each of which
is idempotent, so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import traceback
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from goldthread.errors import MalformedMessageError, PermanentError, TransientError
from goldthread.ledger import marks, runs
from goldthread.logs import get_logger
from goldthread.loops import get_loop
from goldthread.loops.base import unbuildable
from goldthread.models.warehouse import FactRow
from goldthread.models.work_items import WorkItem
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import archived_outcomes, route_permanent, route_permanent_many
from goldthread.pipeline.revisions import write_revisions
from goldthread.ports.bus import BusMessage, message_from_event
from goldthread.ports.hot_store import Merge, Outcome

log = get_logger("subscriber")


def handle_events(ctx: Context, events: Sequence[Any]) -> list[BaseException | None]:
    """Process CloudEvents; returns one outcome per event (None = ack, exception = nack)."""
    messages: list[BusMessage | None] = []
    outcomes: list[BaseException | None] = [None] * len(events)
    for i, event in enumerate(events):
        try:
            messages.append(message_from_event(event))
        except MalformedMessageError as exc:  # not even a Pub/Sub envelope: nothing to replay
            log.error("unreadable event acknowledged: %s", exc)
            messages.append(None)
            outcomes[i] = None
    readable = [(i, m) for i, m in enumerate(messages) if m is not None]
    results = process_messages(ctx, [m for _, m in readable])
    for (i, _), result in zip(readable, results, strict=True):
        outcomes[i] = result
    return outcomes


def process_messages(ctx: Context, messages: Sequence[BusMessage]) -> list[BaseException | None]:
    """Archive the work items in ``messages``; one outcome per message."""
    results: list[BaseException | None] = [None] * len(messages)
    # A loop builds rows keyed by item_id, so the same record twice in one batch (e.g. from a stalled run
    # and its successor) is processed in successive rounds: each row then carries its own run id.
    by_loop: dict[tuple[str, int], list[tuple[int, WorkItem]]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    for index, message in enumerate(messages):
        try:
            item = WorkItem.from_message(message.data, message.attributes)
        except MalformedMessageError as exc:
            results[index] = _dead_letter(ctx, message, exc, None)
            continue
        by_loop[(item.loop.value, seen[item.item_id])].append((index, item))
        seen[item.item_id] += 1
    for (loop, _round), entries in by_loop.items():
        try:
            with marks.observing():  # the digests of the documents the build reads go with their marks
                _process_loop(ctx, loop, messages, entries, results)
        except TransientError as exc:
            log.warning("transient failure, batch will be retried: %s", exc,  # run_ids: `goldthread logs --run`
                        extra={"loop": loop, "fields": {"run_ids": sorted({item.run_id for _, item in entries})}})
            for index, _ in entries:
                if results[index] is None:
                    results[index] = exc
    forget_tracebacks(results)
    return results


def forget_tracebacks(outcomes: Iterable[object]) -> None:
    """Drop the tracebacks of the exceptions kept as outcomes (and of their causes), clearing their frames.

    An exception kept in a results container holds, through its traceback, the frame that filled the
    container: a reference cycle keeping the whole batch (documents, orders, rows) alive until the cyclic
    collector runs (measured: +200 MiB at 100k items once the collector runs less often). Other
    tracebacks inside a cause (pydantic keeps a validator's ``ValueError``) reach the same frames, so
    those frames' locals are cleared too. Messages, reasons and field errors are all that is used after.
    """
    seen: set[int] = set()
    pending = [o for o in outcomes if isinstance(o, BaseException)]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)  # skips frames still running
            exc.__traceback__ = None
        pending += [e for e in (exc.__cause__, exc.__context__) if e is not None]
        if isinstance(exc, ValidationError):  # a validator's own exception, kept in the error's context
            pending += [e["ctx"]["error"] for e in exc.errors() if isinstance(e.get("ctx", {}).get("error"),
                                                                                BaseException)]


def _dead_letter(
    ctx: Context, message: BusMessage, error: PermanentError, item: WorkItem | None
) -> BaseException | None:
    try:
        route_permanent(ctx, message, error, item)
    except TransientError as exc:  # could not record it yet: retry the delivery
        return exc
    return None


def _dead_letter_many(
    ctx: Context, failures: Sequence[tuple[BusMessage, PermanentError, WorkItem | None]]
) -> BaseException | None:
    try:
        route_permanent_many(ctx, failures)
    except TransientError as exc:  # could not record them yet: retry these deliveries
        return exc
    return None


def _write_rows(
    ctx: Context, collection: str | None, model: type[FactRow], good: Sequence[tuple[int, WorkItem, FactRow]]
) -> list[str]:
    """Write the rows of ``good``; returns the keys the warehouse already held (or held twice in ``good``).

    A record this call marks first (``loading_run_id`` was unset) cannot have a row yet: no attempt
    writes before marking, and the mark is never cleared. Its row skips the billed key check. A record
    marked earlier (a redelivery after a crash, a stalled run's successor) is checked as before.
    """
    if not (collection and ctx.warehouse.key_check_is_billed):
        return ctx.warehouse.insert_rows(model, [row for _, _, row in good]).duplicates
    per_run: dict[str, list[str]] = defaultdict(list)
    for _, item, _ in good:
        per_run[item.run_id].append(item.doc_id)
    first: set[str] = set()
    for run_id, doc_ids in per_run.items():
        first.update(marks.claim(ctx.hot, collection, doc_ids, marks.Mark.LOADING, run_id))
    new = [row for _, item, row in good if item.doc_id in first]
    seen = [row for _, item, row in good if item.doc_id not in first]
    duplicates = ctx.warehouse.insert_rows(model, new, keys_are_new=True).duplicates if new else []
    if seen:
        duplicates = [*duplicates, *ctx.warehouse.insert_rows(model, seen).duplicates]
    return duplicates


def _process_loop(
    ctx: Context,
    loop: str,
    messages: Sequence[BusMessage],
    entries: list[tuple[int, WorkItem]],
    results: list[BaseException | None],
) -> None:
    spec = get_loop(loop)
    try:
        built = spec.build(ctx, [item for _, item in entries])
        forget_tracebacks(built.values())
    except TransientError:
        raise
    except Exception as exc:  # one item's refusal (a broker 4xx), a bug, an input nothing foresaw: find the item
        if len(entries) > 1:
            log.warning("building %d %s items failed (%s: %s); building them one by one", len(entries), loop,
                        type(exc).__name__, exc)
            for entry in entries:
                try:
                    _process_loop(ctx, loop, messages, [entry], results)
                except Exception as alone:  # this item alone is nacked: retried, then dead-lettered by the bus
                    results[entry[0]] = alone
            return
        item = entries[0][1]
        if isinstance(exc, PermanentError):
            built = {item.item_id: exc}
        elif isinstance(exc, (ArithmeticError, ValueError)):  # the item's own values (ValidationError included)
            built = {item.item_id: unbuildable(spec.row_model.__name__, item.doc_id, exc)}
        else:  # a bug or an unforeseen failure: retried, then dead-lettered by the bus
            raise
    # a redelivery whose hot document is gone (deleted after it was archived) is no NOT_FOUND letter when
    # the warehouse holds its row: it is counted as the duplicate it is (or loaded, if its own run wrote it)
    missing = [item for _, item in entries if getattr(built.get(item.item_id), "reason_code", "") == "NOT_FOUND"]
    archived = archived_outcomes(ctx, missing, read_marks=False) if missing else {}
    good: list[tuple[int, WorkItem, FactRow]] = []
    failed: list[tuple[int, WorkItem, PermanentError]] = []
    settled: dict[str, dict[str, str]] = defaultdict(dict)
    for index, item in entries:
        outcome = built.get(item.item_id) or PermanentError(f"loop {loop} produced no row for {item.item_id}")
        if item.item_id in archived:
            settled[item.run_id][item.item_id] = archived[item.item_id]
        elif isinstance(outcome, TransientError):  # only this item is retried
            results[index] = outcome
        elif isinstance(outcome, PermanentError):
            failed.append((index, item, outcome))
        else:
            good.append((index, item, outcome))
    retried = [results[index] for index, _ in entries if isinstance(results[index], TransientError)]
    if retried:
        log.warning("transient failure, %d items will be retried: %s", len(retried), retried[0],
                    extra={"loop": loop, "fields": {"run_ids": sorted({item.run_id for _, item in entries})}})
    if failed:  # recorded together; each message still gets its own outcome
        fate = _dead_letter_many(ctx, [(messages[index], error, item) for index, item, error in failed])
        for index, _, _ in failed:
            results[index] = fate
    for run_id, per_item in settled.items():
        runs.record_outcomes(ctx, run_id, per_item)
    if not good:
        return
    duplicates = set(_write_rows(ctx, spec.collection, spec.row_model, good))
    own_earlier_write: set[str] = set()
    if duplicates:
        own_earlier_write, revised = write_revisions(ctx, spec.row_model, good, duplicates)
        duplicates -= revised
    outcomes: dict[str, dict[str, str]] = defaultdict(dict)
    for _, item, row in good:
        repeated = row.row_id in duplicates and f"{row.row_id}|{item.run_id}" not in own_earlier_write
        outcomes[item.run_id][item.item_id] = Outcome.DUPLICATES if repeated else Outcome.LOADED
    merges: dict[str, dict[str, Merge]] = defaultdict(dict)
    if spec.collection:
        seen = marks.observed()
        now = ctx.now()
        repeats: dict[str, list[str]] = defaultdict(list)
        for _, item, _ in good:
            digest = seen.get((spec.collection, item.doc_id))
            if outcomes[item.run_id][item.item_id] is Outcome.LOADED:  # marked with its count, in one write
                merges[item.run_id][item.item_id] = marks.archived(spec.collection, item.doc_id, item.run_id, now,
                                                                   digest)
            else:  # the row was there: archived by whichever run marks it first
                repeats[item.run_id].append(item.doc_id)
        for run_id, doc_ids in repeats.items():
            digests = {d: seen[(spec.collection, d)] for d in doc_ids if (spec.collection, d) in seen}
            marks.claim(ctx.hot, spec.collection, doc_ids, marks.Mark.ARCHIVED, run_id, also={"archived_at": now},
                        digests=digests)
    for run_id, per_item in outcomes.items():
        runs.record_outcomes(ctx, run_id, per_item, merges.get(run_id))
