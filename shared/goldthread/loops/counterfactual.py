"""What Loops B and C share: signal documents in, bars loaded once per batch, floats out as exact decimals."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from goldthread.analytics.barriers import NAT_NS
from goldthread.errors import NotReadyError, PermanentError
from goldthread.loops.bars import days_between, needed_days, prefetch
from goldthread.loops.base import BuildResult, LoopSpec, check_record_id, day_bounds
from goldthread.models import SchemaGuardian
from goldthread.models.hot import LiveSignal
from goldthread.models.types import quantize9, utc_in_range
from goldthread.models.work_items import WorkItem
from goldthread.pipeline.context import Context
from goldthread.ports.market_data import from_ns

S = TypeVar("S", bound=LiveSignal)


def dec(value: float | None) -> Decimal | None:
    """A float result as an exact 9-place decimal of its shortest repr; NaN/None stay missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return quantize9(Decimal(repr(float(value))))


def when(ns: int | None) -> dt.datetime | None:
    """A bar timestamp (ns) as an aware datetime, None if missing."""
    return None if ns is None else from_ns(ns)


def columns(batch: Any, decimals: Sequence[str], times: Sequence[str], plain: Sequence[str]) -> dict[str, list[Any]]:
    """A batch result's arrays as Python lists for building rows, one ``tolist`` per array: ``decimals`` as
    floats and ``times`` as int64 nanoseconds (``NAT_NS`` as None), each converted by ``dec`` and ``when``
    where its row is built, so a value ``dec`` cannot hold fails that row only; ``plain`` as they are."""
    out: dict[str, list[Any]] = {name: getattr(batch, name).tolist() for name in decimals}
    out.update({name: [None if ns == NAT_NS else ns for ns in getattr(batch, name).tolist()] for name in times})
    out.update({name: getattr(batch, name).tolist() for name in plain})
    return out


class CounterfactualLoop(LoopSpec):
    """Base of Loops B and C: validates signals and groups them by symbol for vectorised maths."""

    signal_model: type[LiveSignal] = LiveSignal

    def window(self, ctx: Context, signal: Any) -> tuple[dt.datetime, dt.datetime]:
        """The bar window a signal needs."""
        raise NotImplementedError

    def ready_delay(self, ctx: Context) -> tuple[dt.timedelta, str]:
        """How long after the end of a day its future bars are complete, and why (for the refusal)."""
        raise NotImplementedError

    def check_ready(self, ctx: Context, ds: dt.date) -> None:
        """Refuse a day whose future bars do not exist yet, saying when it can run."""
        delay, why = self.ready_delay(ctx)
        ready = not_ready_until(ds, delay)
        if ctx.now() < ready:
            raise NotReadyError(f"{self.loop.value} for {ds} {why}; it can run from {ready.isoformat()}")

    def find_and_remember(self, ctx: Context, ds: dt.date, ids: list[str]) -> list[str]:
        """Keep the ids for ``prepare`` (it needs their symbols and windows)."""
        ctx.cache[f"found:{self.loop.value}:{ds}"] = ids
        return ids

    def prepare(self, ctx: Context, ds: dt.date, doc_ids: Sequence[str]) -> dict[str, Any]:
        """Prefetch the bars every valid published signal needs, once per symbol and day.

        Only a signal that could add a (symbol, day) is validated: one whose window, read straight from the
        document (``_span``: three fields of its JSON text), lies within days that signals validated before it
        already need adds nothing whether it is valid or not, so it is skipped. The days fetched are those of
        every valid signal; a document is validated as the subscriber validates it (``SchemaGuardian`` and the
        loop's ``check_signal``), so a signal it will dead-letter (a time out of range, a life longer than
        ``GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS``) never asks for bars, and nothing a document holds fails the
        dispatch."""
        assert self.collection is not None
        windows = []
        needed: dict[str, set[dt.date]] = defaultdict(set)
        covered: set[tuple[str, dt.date, dt.date]] = set()
        for doc_id, data in ctx.hot.get_many_unparsed(self.collection, list(doc_ids)).items():
            span = self._span(ctx, data)
            if span is not None:
                if span in covered:
                    continue
                symbol, first, last = span
                if all(first + dt.timedelta(days=i) in needed[symbol] for i in range((last - first).days + 1)):
                    covered.add(span)
                    continue
            try:
                signal = SchemaGuardian.validate(self.signal_model, data, doc_id)
                self.check_signal(ctx, signal)  # a signal the subscriber refuses (a life too long) needs no bars
                start, end = self.window(ctx, signal)
            except (PermanentError, ArithmeticError, ValueError):
                continue  # the subscriber will dead-letter it with the reasons
            windows.append((signal.symbol, start, end))
            needed[signal.symbol].update(days_between(start, end))
        return prefetch(ctx, needed_days(windows))

    def _span(self, ctx: Context, data: Any) -> tuple[str, dt.date, dt.date] | None:
        """(symbol, first day, last day) of the window a document would have if valid, read without validating
        it: its symbol text and aware ISO times (or aware datetimes), the window widened by a second on each
        side so a reading that differs from the model's by less than that still lies within it. None when
        the document is not that simple; the caller then validates it."""
        try:
            if isinstance(data, (str, bytes)):  # JSON text: only these three fields are read from it
                fields = _SpanFields.model_validate_json(data)
                symbol, created_at, expires_at = fields.symbol, fields.created_at, fields.expires_at
            else:
                symbol, created_at, expires_at = data.get("symbol"), data.get("created_at"), data.get("expires_at")
            created, expires = _aware(created_at), _aware(expires_at)
            if not isinstance(symbol, str) or created is None or expires is None:
                return None
            start, end = self.window(ctx, SimpleNamespace(created_at=created, expires_at=expires))
            return symbol, (start - _SLACK).date(), (end + _SLACK - dt.timedelta(microseconds=1)).date()
        except (AttributeError, TypeError, ValueError, ArithmeticError):  # ValidationError is a ValueError
            return None

    def validated(self, ctx: Context, items: Sequence[WorkItem]) -> tuple[dict[str, tuple[WorkItem, Any]], BuildResult]:
        """Validate the batch's signal documents; failures become permanent errors."""
        docs, results = self.load_docs(ctx, items)
        good: dict[str, tuple[WorkItem, Any]] = {}
        for item in items:
            if item.item_id in results:
                continue
            try:
                signal = SchemaGuardian.validate(self.signal_model, docs[item.doc_id], item.doc_id)
                check_record_id(self.signal_model.__name__, "signal_id", signal.signal_id, item.doc_id)
                self.check_signal(ctx, signal)
                good[item.item_id] = (item, signal)
            except PermanentError as exc:
                results[item.item_id] = exc
        return good, results

    def check_signal(self, ctx: Context, signal: Any) -> None:
        """Loop-specific eligibility (raise ``PermanentError``)."""

    @staticmethod
    def by_symbol(good: dict[str, tuple[WorkItem, Any]]) -> dict[str, list[tuple[str, WorkItem, Any]]]:
        """Group validated signals by symbol."""
        groups: dict[str, list[tuple[str, WorkItem, Any]]] = defaultdict(list)
        for item_id, (item, signal) in good.items():
            groups[signal.symbol].append((item_id, item, signal))
        return groups


_SLACK = dt.timedelta(seconds=1)


class _SpanFields(BaseModel):
    """The fields of a signal document that place its window, read from its JSON text (JSON strings only)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    symbol: str
    created_at: str
    expires_at: str


def _aware(value: Any) -> dt.datetime | None:
    """An aware datetime, or ISO text of one, in UTC; None for anything else (naive, a number, unreadable,
    outside the models' range or not convertible to UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return utc_in_range(value) if isinstance(value, dt.datetime) else None


def not_ready_until(ds: dt.date, delay: dt.timedelta) -> dt.datetime:
    """When a day's counterfactual data is complete: the end of ``ds`` plus ``delay``, rounded up to the end of
    that day, because bars are fetched and stored per whole day (a day fetched before it ends would stay
    cached incomplete for the runs that need the rest of it)."""
    last_day = (day_bounds(ds)[1] + delay - dt.timedelta(microseconds=1)).date()
    return day_bounds(last_day)[1]
