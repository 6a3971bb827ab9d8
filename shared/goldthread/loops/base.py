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
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ValidationError

from goldthread.errors import PermanentError, RecordNotFoundError, RecordValidationError, TransientError
from goldthread.ledger import marks
from goldthread.models.hot import LEGACY_MARKS, JobMetadata
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


def time_ranges(start: dt.datetime, end: dt.datetime) -> list[tuple[object, object]]:
    """The bounds that select a stored time in ``[start, end)`` whatever type the bot stored it as.

    Firestore orders values by type first, so a range of timestamps never matches a time a bot wrote as
    text (``"2024-03-05T21:40:00Z"``). The second range, of ISO text widened by a day on each side (offsets
    other than UTC sort within a day), finds those; the caller decides on the parsed time afterwards, so a
    record selected twice or too widely changes nothing.
    """
    day = dt.timedelta(days=1)
    return [(start, end), ((start - day).isoformat(), (end + day).isoformat())]


PENDING_MARKS = "ledger:pending-marks"
"""``ctx.cache`` key of the ledger writes a ``find`` decided on (``PendingMarks``); a dispatch makes them right
after finding (``write_pending_marks``), a dry run drops them, so finding itself never writes."""


@dataclass(frozen=True)
class PendingMarks:
    """Ledger writes decided while finding: marks to clear (``reopen``: settled records whose document changed)
    and goldthread 0.2 marks to adopt (``adopt``: record id -> mark field -> run id)."""

    collection: str
    reopen: list[str]
    adopt: dict[str, dict[str, str]]


def unsettled(ctx: Context, collection: str, wanted: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Of the ``wanted`` records (id -> projected fields), those the ledger has not settled, plus settled ones
    whose document changed since it was marked (due again, as a revision or a new letter: their settled marks
    are to be cleared). Marks goldthread 0.1/0.2 left on documents are to be adopted (``legacy_marks``). The
    ledger writes this implies are left in ``ctx.cache`` (``PendingMarks``): finding reads only."""
    ids = list(wanted)
    held = marks.read_marks(ctx.hot, collection, ids)
    adopt = legacy_marks(ctx, {d: wanted[d] for d in ids if d not in held})
    settled = [d for d in ids if d in held and held[d].settled]
    changed: list[str] = []
    comparable = [d for d in settled if held[d].digest is not None]  # a mark without a digest stays settled
    if comparable:
        docs = ctx.hot.get_many_unparsed(collection, comparable)
        changed = [d for d in comparable if d in docs and marks.digest_of(docs[d]) != held[d].digest]
    ctx.cache.setdefault(PENDING_MARKS, []).append(PendingMarks(collection, changed, adopt))
    adopted = {d for d, fields in adopt.items() if set(fields) - {marks.Mark.LOADING.value}}
    skip = (set(settled) - set(changed)) | adopted
    return [d for d in ids if d not in skip]


def legacy_marks(ctx: Context, unmarked: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """The marks goldthread 0.1 and 0.2 wrote onto documents that are worth adopting into the ledger: record id ->
    mark field -> run id. A mark counts only if it names a run ``job_metadata`` knows: a value a bot copied or
    garbled (``""``, a number, an unknown id) is ignored and the record is treated as unmarked."""
    legacy = {d: {k: v for k, v in data.items() if k in LEGACY_MARKS and k.endswith("_run_id")
                  and isinstance(v, str) and v} for d, data in unmarked.items()}
    legacy = {d: m for d, m in legacy.items() if m}
    if not legacy:
        return {}
    known = set(ctx.hot.get_many(JobMetadata.collection, sorted({v for m in legacy.values() for v in m.values()})))
    adopt = {d: {k: v for k, v in m.items() if v in known} for d, m in legacy.items()}
    return {d: m for d, m in adopt.items() if m}


def write_pending_marks(ctx: Context) -> None:
    """Make the ledger writes the last finds decided on: clear the settled marks of changed records, adopt
    goldthread 0.2's marks (with the digest of the document as it is)."""
    for pending in ctx.cache.pop(PENDING_MARKS, []):
        marks.clear_settled(ctx.hot, pending.collection, pending.reopen)
        docs = ctx.hot.get_many_unparsed(pending.collection, list(pending.adopt)) if pending.adopt else {}
        for doc_id, fields in pending.adopt.items():
            digest = {doc_id: marks.digest_of(docs[doc_id])} if doc_id in docs else None
            for mark in marks.Mark:
                if mark.value in fields:
                    marks.claim(ctx.hot, pending.collection, [doc_id], mark, fields[mark.value], digests=digest)


def drop_pending_marks(ctx: Context) -> None:
    """Forget the ledger writes the last finds decided on (a dry run writes nothing)."""
    ctx.cache.pop(PENDING_MARKS, None)


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
    def find(self, ctx: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        """Ids of the records to archive for ``ds``, each published as one work item. ``sweep`` reads the whole
        collection rather than the day (None: the settings' schedule, ``Settings.sweeps_on``)."""

    @abstractmethod
    def build(self, ctx: Context, items: Sequence[WorkItem]) -> BuildResult:
        """Rows (or permanent errors) keyed by ``item.item_id``."""

    def check(self, ctx: Context, item: WorkItem) -> PermanentError | None:
        """Would ``item`` pass now? Used by ``replay --dry-run``; builds without writing."""
        outcome = self.build(ctx, [item]).get(item.item_id)
        if isinstance(outcome, TransientError):
            raise outcome
        return outcome if isinstance(outcome, PermanentError) else None

    def projection(self) -> list[str]:
        """The fields a dispatch reads of each candidate record: enough to judge it due, and the marks goldthread
        0.1 and 0.2 wrote onto documents (adopted once, see ``adopt_legacy_marks``)."""
        return ["status", self.time_field, *LEGACY_MARKS]

    def wanted(self, ctx: Context, data: Mapping[str, Any], ds: dt.date) -> bool:
        """Whether a record (its projected fields) is due by the end of ``ds``, whatever its marks: by default
        when its ``time_field`` is before the end of ``ds``, or unreadable (to be dead-lettered with the reason)."""
        return self.is_due(data, day_bounds(ds)[1])

    def candidates(self, ctx: Context, ds: dt.date, sweep: bool) -> dict[str, dict[str, Any]]:
        """The records a dispatch for ``ds`` looks at, with their projected fields.

        Without ``sweep``: those whose ``time_field`` falls on ``ds`` (stored as a timestamp or as ISO text, see
        ``time_ranges``), a read per record of the day. With ``sweep``: every document of the collection, so
        records outside the day are found too: written late with an old time, with an unreadable or missing
        time or status, or of a day whose run never happened.
        """
        assert self.collection is not None
        if sweep:
            return dict(ctx.hot.query(self.collection, fields=self.projection()))
        start, end = day_bounds(ds)
        found: dict[str, dict[str, Any]] = {}
        for low, high in time_ranges(start, end):
            where = [Where(self.time_field, ">=", low), Where(self.time_field, "<", high)]
            found.update(ctx.hot.query(self.collection, where, fields=self.projection()))
        return found

    def find_due(self, ctx: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        """Ids of the records due for ``ds``: wanted (``wanted``) and not settled in the ledger, or settled but
        changed since (a correction, archived again as a revision). ``sweep`` defaults to the settings'
        schedule (``GOLDTHREAD_SWEEP_EVERY_DAYS``: every run on SQLite, weekly on Firestore)."""
        assert self.collection is not None
        sweep = ctx.settings.sweeps_on(ds) if sweep is None else sweep
        found = self.candidates(ctx, ds, sweep)
        corrected = [d for d in marks.due_again_ids(ctx.hot, self.collection) if d not in found]
        if corrected:  # records a correction made due again, whatever day their time falls on
            found.update({d: {k: doc.get(k) for k in self.projection()}
                          for d, doc in ctx.hot.get_many(self.collection, corrected).items()})
        wanted = {doc_id: data for doc_id, data in sorted(found.items()) if self.wanted(ctx, data, ds)}
        return unsettled(ctx, self.collection, wanted)

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
        marks.observe(self.collection, docs)
        missing: BuildResult = {
            i.item_id: RecordNotFoundError(f"{self.collection}/{i.doc_id} does not exist", [
                {"loc": "doc_id", "msg": f"{self.collection}/{i.doc_id} does not exist", "type": "not_found"}
            ])
            for i in items
            if i.doc_id not in docs
        }
        return docs, missing
