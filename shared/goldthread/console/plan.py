"""Backfills, day by day: what a range would publish (``--dry-run``), and what it did.

A dry run asks each day's loop what it would find (``LoopSpec.find``, the dispatch's own query) without
starting a run, taking a lease or publishing anything. A loop finds every record due *by* a day, so a day's
count is what it would publish after the earlier days of the range had run: the records it finds that no
earlier day of the range found (a record dated before the range is counted on the first day). A day the
loop refuses as not ready yet says so.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from goldthread.errors import FutureDayError, NotReadyError
from goldthread.loops import get_loop
from goldthread.loops.base import drop_pending_marks
from goldthread.models.hot import JobMetadata
from goldthread.pipeline.context import Context


@dataclass
class BackfillReport:
    """One backfill (or its dry run): a line per day, and days per status."""

    loop: str
    start: dt.date
    end: dt.date
    dry_run: bool
    days: list[dict[str, Any]] = field(default_factory=list)

    @property
    def statuses(self) -> dict[str, int]:
        """Days per status (``DRY_RUN`` for a day a dry run found work for, ``NOT_READY`` ...)."""
        return dict(sorted(Counter(str(d["status"]) for d in self.days).items()))

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``backfill --json`` (README "JSON output")."""
        return {"loop": self.loop, "start": self.start, "end": self.end, "dry_run": self.dry_run,
                "statuses": self.statuses, "due": sum(int(d.get("due") or 0) for d in self.days), "days": self.days}


def days_of(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from ``start`` to ``end``, both included."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def check_range_ready(ctx: Context, loop: str, end: dt.date) -> None:
    """Refuse a range reaching a day the loop refuses for good (a future day) before any day runs."""
    try:
        get_loop(loop).check_ready(ctx, end)
    except FutureDayError:
        raise
    except NotReadyError:
        pass  # not ready yet: reported day by day


def dry_run(ctx: Context, loop: str, start: dt.date, end: dt.date) -> BackfillReport:
    """What a backfill of ``start..end`` would publish, per day; nothing is written or published."""
    spec = get_loop(loop)
    report = BackfillReport(loop, start, end, dry_run=True)
    seen: set[str] = set()
    for day in days_of(start, end):
        try:
            spec.check_ready(ctx, day)
        except NotReadyError as exc:
            report.days.append({"ds": day, "status": "NOT_READY", "due": 0, "message": str(exc)})
            continue
        found = spec.find(ctx, day)
        drop_pending_marks(ctx)  # a dry run writes nothing, not even the ledger's bookkeeping
        if spec.collection is None:  # one record per day (an account's snapshot of that day)
            new = list(found)
        else:
            new = [doc_id for doc_id in found if doc_id not in seen]
            seen.update(new)
        report.days.append({"ds": day, "status": "DRY_RUN", "due": len(new), "message": "",
                            "records": new[:20]})
    return report


def backfill(
    ctx: Context, loop: str, start: dt.date, end: dt.date,
    run_day: Callable[[Context, str, dt.date], JobMetadata], on_day: Callable[[dt.date], None] | None = None,
) -> BackfillReport:
    """Run ``loop`` for every day of the range with ``run_day`` (the local runtime's ``run_loop``)."""
    report = BackfillReport(loop, start, end, dry_run=False)
    for day in days_of(start, end):
        try:
            run = run_day(ctx, loop, day)
            report.days.append({"ds": day, "status": run.status.value, "run_id": run.run_id,
                                "published": run.published, "loaded": run.loaded, "duplicates": run.duplicates,
                                "dead_lettered": run.dead_lettered, "message": run.error or ""})
        except NotReadyError as exc:
            report.days.append({"ds": day, "status": "NOT_READY", "run_id": None, "message": str(exc)})
        if on_day is not None:
            on_day(day)
    return report
