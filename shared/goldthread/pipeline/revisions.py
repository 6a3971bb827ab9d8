"""Revisions: a record corrected after it was archived replaces its row as a new revision, old values kept.

The subscriber writes every row by its deterministic key. When the warehouse already holds the key, the
stored copy (its latest revision) decides what the new row is:

* written by the same run: a redelivery of this run's own write (counted as loaded);
* the same content (``FactRow.digest_of``: leaving out who wrote it and when, and the columns a patch owns):
  a duplicate, left as it is;
* content the stored row's source outranks (``FactRow.may_replace``: a past day's portfolio-history
  snapshot never replaces the live account's snapshot of that day): a duplicate too;
* other content: the record was corrected after it was archived. The stored row is copied to
  ``row_revisions`` first, then replaced by the new row with ``revision`` + 1, in one upsert (a MERGE on
  BigQuery). A crash in between repeats both steps on redelivery, each keyed; a redelivery after the
  upsert finds this run's own write.

A stored row the current model no longer reads whole (written by an older version) is compared and kept
as it is stored, so an upgrade never loses or hides it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from goldthread.logs import get_logger
from goldthread.models.warehouse import FactRow, RowRevision, canonical_value, row_id_for
from goldthread.models.work_items import WorkItem
from goldthread.pipeline.context import Context

log = get_logger("revisions")


def write_revisions(
    ctx: Context, model: type[FactRow], good: Sequence[tuple[int, WorkItem, FactRow]], duplicates: set[str]
) -> tuple[set[str], set[str]]:
    """Settle the rows of ``good`` whose key the warehouse already held (``duplicates``).

    Returns (this run's own earlier writes as ``row_id|run_id``, keys written as a new revision).
    """
    stored = {row["row_id"]: row for row in ctx.warehouse.get_rows(model, sorted(duplicates))}
    own: set[str] = set()
    revisions: dict[str, tuple[WorkItem, Mapping[str, Any], FactRow]] = {}
    for _, item, row in good:
        old = stored.get(row.row_id)
        if old is None or row.row_id in revisions:
            continue
        if old.get("run_id") == item.run_id:
            own.add(f"{row.row_id}|{item.run_id}")
        elif model.digest_of(old) != row.content_digest() and row.may_replace(old):
            new = model.model_validate({**row.model_dump(), "revision": int(old.get("revision") or 1) + 1})
            revisions[row.row_id] = (item, old, new)
    if not revisions:
        return own, set()
    now = ctx.now()
    ctx.warehouse.insert_rows(RowRevision, [revision_record(model, stored_row, new, item.run_id, now)
                                            for item, stored_row, new in revisions.values()])
    ctx.warehouse.upsert_rows(model, [new for _, _, new in revisions.values()],
                              [c for c in model.model_fields if c != model.__key__])
    for item, replaced, new in revisions.values():
        log.info("%s %s: revision %s replaces revision %s", model.__table__, item.doc_id, new.revision,
                 replaced.get("revision") or 1, extra={"run_id": item.run_id, "loop": item.loop.value,
                                                      "doc_id": item.doc_id})
    return own, set(revisions)


def revision_record(
    model: type[FactRow], old: Mapping[str, Any], new: FactRow, run_id: str, now: dt.datetime
) -> RowRevision:
    """The ``row_revisions`` row keeping the stored row ``old`` when ``new`` replaces it."""
    skip = set(model.__volatile__)
    changed = sorted(k for k, v in new.__dict__.items()
                     if k not in skip and canonical_value(old.get(k)) != canonical_value(v))
    revision = int(old.get("revision") or 1)
    return RowRevision(
        row_id=row_id_for("row_revisions", model.__table__, new.row_id, str(revision)),
        ds=now.date(), table_name=model.__table__, record_row_id=new.row_id, revision=revision,
        superseded_by_revision=revision + 1, superseded_by_run_id=run_id, superseded_at=now,
        changed_columns=json.dumps(changed),
        row_json=json.dumps({k: canonical_value(v) for k, v in old.items()}, sort_keys=True),
    )
