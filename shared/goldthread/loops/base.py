"""What every archival loop declares: how to find its records and how to turn items into rows.

The dispatcher and subscriber are generic; a loop only says which hot collection it reads
(``collection``), which warehouse table it writes (``row_model``), which records are due for a day
(``find``) and how to compute rows for a batch of work items (``build``). ``build`` returns, per item,
either a validated row or the ``PermanentError`` that sends it to the dead letters (or a
``TransientError`` for items that need a retry while others of the batch are settled); a
``TransientError`` it raises makes the bus retry the whole batch.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import ValidationError

from goldthread.errors import PermanentError, RecordNotFoundError, RecordValidationError, TransientError
from goldthread.models.types import utc_in_range
from goldthread.models.warehouse import FactRow
from goldthread.models.work_items import Loop, WorkItem, errors_of
from goldthread.pipeline.context import Context
from goldthread.ports.hot_store import Where

BuildResult = dict[str, FactRow | PermanentError | TransientError]


def day_bounds(ds: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``[00:00, 24:00)`` UTC of a day."""
    start = dt.datetime.combine(ds, dt.time(), dt.UTC)
    return start, start + dt.timedelta(days=1)


def check_record_id(kind: str, field: str, record_id: str, doc_id: str) -> None:
    """Refuse a document whose own id field names another record: rows are keyed by the record id, so it
    would be counted as loaded while its content silently never reached the warehouse."""
    if record_id != doc_id:
        raise RecordValidationError(kind, doc_id, [
            {"loc": field, "msg": f"{field} {record_id!r} is not the document id {doc_id!r}", "type": "id_mismatch"}
        ])


def unbuildable(kind: str, doc_id: str, exc: Exception) -> RecordValidationError:
    """The permanent error of a record whose valid values still cannot make a valid row (a quantity so large
    the P&L overflows the warehouse's 38 digits, a time that overflows a conversion): dead-lettered with the
    computed field where the row's validation names one, never a crash and never retried."""
    if isinstance(exc, ValidationError):
        errors = [{**e, "msg": f"computed {e['loc'] or 'row'}: {e['msg']}"} for e in errors_of(exc)]
    elif isinstance(exc, ArithmeticError):
        errors = [{"loc": "", "msg": f"values too large to compute exactly ({type(exc).__name__}: {exc})"[:300],
                   "type": "arithmetic"}]
    else:  # a ValueError raised by the record's own values (a time, a text) while computing its row
        errors = [{"loc": "", "msg": f"values cannot make a row ({type(exc).__name__}: {exc})"[:300],
                   "type": "value_error"}]
    return RecordValidationError(kind, doc_id, errors)


def parse_time(value: Any) -> dt.datetime | None:
    """A stored timestamp (ISO text or datetime) as aware UTC, or None if unreadable, naive, outside the range
    the models accept (``UtcDatetime``: 1970 to 2100) or not even convertible to UTC: the caller then treats
    the record as due, so the subscriber dead-letters it with the field's reason (never a crash here)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return utc_in_range(moment)


class LoopSpec(ABC):
    """One archival loop (A, B, C or D)."""

    loop: ClassVar[Loop]
    collection: ClassVar[str | None]
    row_model: ClassVar[type[FactRow]]
    time_field: ClassVar[str] = ""

    def due_filters(self) -> list[Where]:
        """Server-side filters selecting records not yet archived nor dead-lettered."""
        return [Where("archived_run_id", "==", None), Where("dead_lettered_run_id", "==", None)]

    def check_ready(self, ctx: Context, ds: dt.date) -> None:  # noqa: B027 - optional hook
        """Raise ``NotReadyError`` if ``ds`` cannot be processed yet (e.g. a window not passed)."""

    def prepare(self, ctx: Context, ds: dt.date, doc_ids: Sequence[str]) -> dict[str, Any]:
        """Work done once per run before publishing (syncing a dimension, prefetching bars)."""
        return {}

    def row_key(self, item: WorkItem) -> str:
        """The ``row_id`` this loop writes for ``item`` (its record's key in ``row_model``'s table), so a
        redelivery or a forwarded letter can ask the warehouse whether the record is archived already."""
        from goldthread.models.warehouse import row_id_for

        return row_id_for(self.row_model.__table__, item.doc_id)

    @abstractmethod
    def find(self, ctx: Context, ds: dt.date) -> list[str]:
        """Ids of the records to archive for ``ds``, each published as one work item."""

    @abstractmethod
    def build(self, ctx: Context, items: Sequence[WorkItem]) -> BuildResult:
        """Rows (or permanent errors) keyed by ``item.item_id``."""

    def check(self, ctx: Context, item: WorkItem) -> PermanentError | None:
        """Would ``item`` pass now? Used by ``replay --dry-run``; builds without writing."""
        outcome = self.build(ctx, [item]).get(item.item_id)
        if isinstance(outcome, TransientError):
            raise outcome
        return outcome if isinstance(outcome, PermanentError) else None

    def find_due(
        self, ctx: Context, ds: dt.date, extra: Sequence[Where] = (), until: dt.datetime | None = None
    ) -> list[str]:
        """Unarchived records whose ``time_field`` falls on or before ``ds`` (before ``until`` if given).

        Records whose timestamp cannot be read are included too: the subscriber will dead-letter them
        with the reason, instead of leaving them silently behind.
        """
        assert self.collection is not None
        end = until or day_bounds(ds)[1]
        due = []
        for doc_id, data in ctx.hot.query(
            self.collection, [*extra, *self.due_filters()], fields=[self.time_field]
        ):
            if self.is_due(data, end):
                due.append(doc_id)
        return due

    def is_due(self, data: Mapping[str, Any], end: dt.datetime) -> bool:
        """Whether a record's ``time_field`` is before ``end``; an unreadable one is due too (to be
        dead-lettered with the reason rather than left behind)."""
        moment = parse_time(data.get(self.time_field))
        return moment is None or moment < end

    def load_docs(
        self, ctx: Context, items: Sequence[WorkItem]
    ) -> tuple[dict[str, Mapping[str, Any] | str], BuildResult]:
        """Fetch the hot documents of ``items`` for ``SchemaGuardian`` (a mapping, or JSON text where the
        store keeps text); missing ones become ``RecordNotFoundError``."""
        assert self.collection is not None
        docs = ctx.hot.get_many_unparsed(self.collection, [i.doc_id for i in items])
        missing: BuildResult = {
            i.item_id: RecordNotFoundError(f"{self.collection}/{i.doc_id} does not exist", [
                {"loc": "doc_id", "msg": f"{self.collection}/{i.doc_id} does not exist", "type": "not_found"}
            ])
            for i in items
            if i.doc_id not in docs
        }
        return docs, missing
