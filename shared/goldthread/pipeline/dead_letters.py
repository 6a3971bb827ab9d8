"""Dead letters: route permanent failures, record every dead-lettered message, and count it.

Two ways into the dead letters, one record:

* a *permanent* failure (validation, SCD conflict, unknown record) is routed by the subscriber at once:
  it writes the ``dead_letters`` row with the full field-level errors, publishes the original message
  to the dead-letter topic (where a retained subscription keeps it for Pub/Sub-side tooling), marks
  the hot record and counts the item ``dead_lettered`` in its run; the message is then acknowledged.
* a *transient* failure that outlived ``max_delivery_attempts`` is forwarded by the bus itself (Pub/Sub's
  dead-letter policy) and reaches ``dead_letter_sink``, which records it the same way (reason
  ``MAX_ATTEMPTS``), unless the item's record is archived already (a message forwarded after a slow ack):
  that is counted as the duplicate it is, not left as an open letter.

Every step is idempotent (the ``dead_letters`` key is derived from the run and item), so redelivery at
any point writes nothing twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from goldthread.errors import GoldthreadError, PermanentError
from goldthread.ledger import marks, runs
from goldthread.logs import get_logger, redact, where
from goldthread.models.warehouse import DeadLetter, row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.ports.bus import BusMessage
from goldthread.ports.hot_store import Outcome

log = get_logger("dead_letters")
REASON_ATTRIBUTE = "goldthread_reason_code"
ERROR_ATTRIBUTE = "goldthread_error"
SOURCE_TOPIC_ATTRIBUTE = "goldthread_source_topic"
_PUBSUB_DLQ_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


def current_digests(ctx: Context, collection: str, doc_ids: Sequence[str]) -> dict[str, str]:
    """The content digests of the documents as the failing build read them (``marks.observing``), or as they
    are now for those it did not read: stored with the dead-letter mark, so a document corrected in place
    afterwards is due again (and one left as it is is not dead-lettered again every run)."""
    seen = marks.observed()
    out = {d: seen[(collection, d)] for d in doc_ids if (collection, d) in seen}
    unread = [d for d in doc_ids if d not in out]
    if unread:
        out.update({d: marks.digest_of(doc) for d, doc in ctx.hot.get_many_unparsed(collection, unread).items()})
    return out


def collection_of(loop: str) -> str | None:
    """The hot collection a loop archives from (None for Loop D, which reads the broker)."""
    from goldthread.loops import get_loop

    try:
        return get_loop(loop).collection
    except (KeyError, ValueError):
        return None


def dead_letter_id(message: BusMessage, item: WorkItem | None) -> str:
    """Deterministic key: one dead letter per item and run, or per message content if unreadable."""
    if item is not None:
        return row_id_for("dead_letters", item.run_id, item.item_id)
    digest = hashlib.sha256(message.data + json.dumps(_original_attributes(message), sort_keys=True).encode())
    return row_id_for("dead_letters", "malformed", digest.hexdigest())


def _original_attributes(message: BusMessage) -> dict[str, str]:
    return {
        k: v for k, v in message.attributes.items()
        if not k.startswith("CloudPubSubDeadLetterSource") and not k.startswith("goldthread_")
    }


def _safe_item(message: BusMessage) -> WorkItem | None:
    try:
        return WorkItem.from_message(message.data, _original_attributes(message))
    except GoldthreadError:
        return None


DeadLetterEntry = tuple[BusMessage, str, str, Sequence[dict[str, Any]], WorkItem | None, str]
"""What one dead letter records: message, reason code, error message, field errors, item, source topic."""


def record_dead_letter(
    ctx: Context,
    message: BusMessage,
    reason_code: str,
    error_message: str,
    errors: Sequence[dict[str, Any]],
    item: WorkItem | None = None,
    source_topic: str = "",
) -> str:
    """Write the ``dead_letters`` row, mark the hot record and count the item; idempotent."""
    return record_dead_letters(ctx, [(message, reason_code, error_message, errors, item, source_topic)])[0]


def record_dead_letters(ctx: Context, entries: Sequence[DeadLetterEntry]) -> list[str]:
    """``record_dead_letter`` for many messages: one warehouse write, one claim and one count per run."""
    now = ctx.now()
    rows: list[DeadLetter] = []
    items: list[WorkItem] = []
    for message, reason_code, error_message, errors, given_item, source_topic in entries:
        item = given_item or _safe_item(message)
        attrs = _original_attributes(message)
        rows.append(DeadLetter(
            row_id=dead_letter_id(message, item),
            ds=now.date(),
            run_id=(item.run_id if item else attrs.get("run_id", ""))[:128],
            loop=(item.loop.value if item else attrs.get("loop", ""))[:64],
            doc_id=(item.doc_id if item else attrs.get("doc_id", ""))[:128],
            item_ds=item.ds if item else None,
            topic=(source_topic or message.topic)[:256],
            reason_code=reason_code,
            error_message=redact(error_message)[:1024],
            errors_json=redact(json.dumps(list(errors)[:200]))[:1_000_000],
            payload=redact(message.data.decode("utf-8", errors="replace"))[:1_000_000],
            attributes_json=redact(json.dumps(attrs))[:1_000_000],
            delivery_attempts=int(message.attributes.get(_PUBSUB_DLQ_COUNT, message.delivery_attempt)),
            dead_lettered_at=now,
            is_canary=message.attributes.get("is_canary") == "true",
        ))
        if item is not None:
            items.append(item)
    if not rows:
        return []
    ctx.warehouse.insert_rows(DeadLetter, rows)
    claims: dict[tuple[str, str], list[str]] = defaultdict(list)
    outcomes: dict[str, dict[str, str]] = defaultdict(dict)
    for item in items:
        collection = collection_of(item.loop.value)
        if collection:
            claims[(collection, item.run_id)].append(item.doc_id)
        outcomes[item.run_id][item.item_id] = Outcome.DEAD_LETTERED
    for (collection, run_id), doc_ids in claims.items():
        marks.claim(ctx.hot, collection, doc_ids, marks.Mark.DEAD_LETTERED, run_id,
                    digests=current_digests(ctx, collection, doc_ids))
    for run_id, per_item in outcomes.items():
        runs.record_outcomes(ctx, run_id, per_item)
    for row, (_, reason_code, error_message, *_rest) in zip(rows, entries, strict=True):
        log.warning(
            "dead-lettered %s: %s", reason_code, redact(error_message)[:500],
            extra={"run_id": row.run_id, "loop": row.loop, "doc_id": row.doc_id, "reason_code": reason_code},
        )
    return [row.row_id for row in rows]


def route_permanent(ctx: Context, message: BusMessage, error: PermanentError, item: WorkItem | None) -> None:
    """Dead-letter a message that can never succeed: record it, then publish it to the dead-letter topic."""
    route_permanent_many(ctx, [(message, error, item)])


def route_permanent_many(
    ctx: Context, failures: Sequence[tuple[BusMessage, PermanentError, WorkItem | None]]
) -> None:
    """``route_permanent`` for many messages: recorded in one go, then each published to the dead-letter topic."""
    if not failures:
        return
    reasons = [getattr(error, "reason_code", "PERMANENT") for _, error, _ in failures]
    record_dead_letters(ctx, [
        (message, reason, str(error), error.errors, item, message.topic)
        for (message, error, item), reason in zip(failures, reasons, strict=True)
    ])
    for (message, error, _), reason in zip(failures, reasons, strict=True):
        ctx.bus.publish(ctx.settings.dead_letter_topic, message.data, {
            **_original_attributes(message),
            REASON_ATTRIBUTE: reason,
            ERROR_ATTRIBUTE: redact(str(error))[:900],
            SOURCE_TOPIC_ATTRIBUTE: message.topic[:200],
        })


def handle_dead_letter(ctx: Context, message: BusMessage) -> None:
    """The dead-letter topic's subscriber: record what the bus dead-lettered after max attempts.

    Messages routed by a subscriber (they carry ``goldthread_reason_code``) were recorded already. An item
    whose record is archived (by any run: its hot record's mark, or its row in the warehouse) is no letter:
    Pub/Sub forwards a message whose ack came too late, or several times, after it was loaded. It is
    counted once in its run (``loaded`` if that run wrote the row, else ``duplicates``) and nothing is
    dead-lettered.
    """
    if REASON_ATTRIBUTE in message.attributes:
        return
    item = _safe_item(message)
    if item is not None:
        archived = archived_outcomes(ctx, [item])
        if item.item_id in archived:
            runs.record_outcomes(ctx, item.run_id, archived)
            log.info("forwarded item of an archived record is no dead letter (%s)", archived[item.item_id],
                     extra={"run_id": item.run_id, "loop": item.loop.value, "doc_id": item.doc_id})
            return
    attempts = message.attributes.get(_PUBSUB_DLQ_COUNT, "?")
    source = message.attributes.get("CloudPubSubDeadLetterSourceSubscription", "")
    run_id = item.run_id if item is not None else _original_attributes(message).get("run_id", "")
    text = (f"delivery failed {attempts} times with transient errors (subscription {source}); see the logs of run "
            f"{run_id or '?'}: {where(run_id or None)}")
    record_dead_letter(
        ctx, message, "MAX_ATTEMPTS", text,
        [{"loc": "", "msg": text, "type": "max_delivery_attempts"}], None, source,
    )


def list_dead_letters(
    ctx: Context,
    loop: str | None = None,
    reason: str | None = None,
    ids: Sequence[str] | None = None,
    include_replayed: bool = False,
) -> list[dict[str, Any]]:
    """Dead letters, newest first, filtered by loop, reason code (either ignoring case) and ids (dead-letter or
    doc ids). Open letters only unless ``include_replayed``: neither replayed nor discarded."""
    sql = (
        "SELECT d.*, r.replay_run_id, r.replayed_at FROM dead_letters d "
        "LEFT JOIN dead_letter_replays r ON r.dead_letter_id = d.row_id WHERE TRUE"
    )
    params: dict[str, Any] = {}
    if loop:
        sql += " AND d.loop = @loop"
        params["loop"] = Loop(loop.lower()).value
    if reason:
        sql += " AND UPPER(d.reason_code) = @reason"
        params["reason"] = reason.upper()
    if ids:
        sql += " AND (d.row_id IN UNNEST(@ids) OR d.doc_id IN UNNEST(@ids))"
        params["ids"] = list(ids)
    if not include_replayed:
        sql += " AND r.replay_run_id IS NULL AND d.discarded_at IS NULL"
    sql += " ORDER BY d.dead_lettered_at DESC, d.row_id"
    return ctx.warehouse.query(sql, params)


def get_dead_letter(ctx: Context, dead_letter_id: str) -> dict[str, Any] | None:
    """One dead letter by its id, with its replay (``replay_run_id``, ``replayed_at``) if any; None if unknown."""
    rows = ctx.warehouse.query(
        "SELECT d.*, r.replay_run_id, r.replayed_at FROM dead_letters d "
        "LEFT JOIN dead_letter_replays r ON r.dead_letter_id = d.row_id WHERE d.row_id = @id "
        "ORDER BY d.dead_lettered_at DESC LIMIT 1",
        {"id": dead_letter_id},
    )
    return rows[0] if rows else None


def discard_dead_letter(ctx: Context, dead_letter_id: str, reason: str, by: str) -> dict[str, Any]:
    """Close a dead letter as won't-fix: who, when and why are stored on the letter (``discarded_*``), which
    leaves the open letters (``list_dead_letters``, ``mart_dead_letters``) and is never replayed.

    Raises ``KeyError`` for an unknown id and ``ValueError`` for an empty reason, a letter replayed already
    (it is closed) or discarded already (the first discard stands: the audit is not rewritten).
    """
    if not reason.strip():
        raise ValueError("a discard needs a reason (--reason TEXT)")
    letter = get_dead_letter(ctx, dead_letter_id)
    if letter is None:
        raise KeyError(dead_letter_id)
    if letter.get("replay_run_id"):
        raise ValueError(f"dead letter {dead_letter_id} was replayed by run {letter['replay_run_id']}; it is closed")
    if letter.get("discarded_at"):
        raise ValueError(f"dead letter {dead_letter_id} was discarded already, by {letter['discarded_by']} at "
                         f"{letter['discarded_at']}: {letter['discard_reason']}")
    fields = {"discarded_at": ctx.now(), "discarded_by": by[:256], "discard_reason": redact(reason.strip())[:1024]}
    row = DeadLetter.model_validate({k: v for k, v in {**letter, **fields}.items() if k in DeadLetter.model_fields})
    ctx.warehouse.upsert_rows(DeadLetter, [row], list(fields))
    log.warning("dead letter discarded by %s: %s", fields["discarded_by"], fields["discard_reason"],
                extra={"run_id": row.run_id, "loop": row.loop, "doc_id": row.doc_id, "reason_code": row.reason_code})
    return {**letter, **fields}


def archived_outcomes(ctx: Context, items: Sequence[WorkItem], read_marks: bool = True) -> dict[str, str]:
    """The outcome of each item whose record is archived already (the others are left out): ``loaded`` if
    the item's own run wrote the stored row, else ``duplicates``.

    A record is archived when the warehouse holds the row the loop writes for it (``LoopSpec.row_key``),
    or, with ``read_marks``, when the ledger marks it archived. This is what keeps a phantom
    out of the dead letters: a message Pub/Sub forwards to the dead-letter topic after a slow ack, or a
    redelivery after the record's hot document was deleted, of a record that is in the warehouse.
    """
    from goldthread.ledger import marks
    from goldthread.loops import get_loop

    by_loop: dict[str, list[WorkItem]] = defaultdict(list)
    for item in items:
        by_loop[item.loop.value].append(item)
    out: dict[str, str] = {}
    for loop, group in by_loop.items():
        spec = get_loop(loop)
        marked: dict[str, str] = {}
        if read_marks and spec.collection:
            held = marks.read_marks(ctx.hot, spec.collection, [i.doc_id for i in group])
            marked = {k: str(m.archived_run_id) for k, m in held.items() if m.archived_run_id}
        stored = {r["row_id"]: r for r in ctx.warehouse.get_rows(spec.row_model, sorted({spec.row_key(i)
                                                                                            for i in group}))}
        for item in group:
            row = stored.get(spec.row_key(item))
            if row is None and item.doc_id not in marked:
                continue
            writer = row.get("run_id") if row is not None else marked[item.doc_id]
            out[item.item_id] = Outcome.LOADED if writer == item.run_id else Outcome.DUPLICATES
    return out
