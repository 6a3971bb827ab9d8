"""Replay: re-validate dead-lettered items and republish those that would now pass.

Dead letters are found through the queryable ``dead_letters`` table (filter by loop, reason, ids).
Each is re-checked with the loop's own build logic, without writing (``--dry-run`` stops here and
reports what would pass and what still fails, with reasons). The passing ones are republished to
their loop's topic under a new ``replay`` run, which reconciles like any run; each replay is recorded
in ``dead_letter_replays`` so a dead letter is replayed once.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from goldthread.errors import GoldthreadError
from goldthread.ledger import runs
from goldthread.logs import get_logger
from goldthread.loops import get_loop
from goldthread.models.hot import JobMetadata
from goldthread.models.warehouse import ReplayRecord, row_id_for
from goldthread.models.work_items import WorkItem
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import list_dead_letters

log = get_logger("replay")


@dataclass
class ReplayReport:
    """What a replay found and did."""

    would_pass: list[dict[str, Any]] = field(default_factory=list)
    still_failing: list[dict[str, Any]] = field(default_factory=list)
    not_replayable: list[dict[str, Any]] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    """Item ids republished (a real replay): one per record, so two letters of one record go out once."""
    run: JobMetadata | None = None


def replay(
    ctx: Context,
    loop: str | None = None,
    reason: str | None = None,
    ids: Sequence[str] | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Re-validate dead letters and (unless ``dry_run``) republish the ones that now pass."""
    report = ReplayReport()
    candidates: list[tuple[dict[str, Any], WorkItem]] = []
    parsed: list[tuple[dict[str, Any], dict[str, Any], WorkItem]] = []
    for letter in list_dead_letters(ctx, loop, reason, ids):
        summary = {k: letter[k] for k in ("row_id", "loop", "doc_id", "run_id", "reason_code", "error_message")}
        try:
            item = WorkItem.from_message(letter["payload"].encode(), json.loads(letter["attributes_json"]))
        except (GoldthreadError, ValueError) as exc:
            report.not_replayable.append({**summary, "why": str(exc)[:300]})
            continue
        parsed.append((letter, summary, item))
    groups: dict[tuple[str, dt.date], list[str]] = defaultdict(list)
    for _, _, item in parsed:
        groups[(item.loop.value, item.ds)].append(item.doc_id)
    for (name, ds), doc_ids in groups.items():  # as a dispatch does: e.g. a fixed strategy history reaches
        get_loop(name).prepare(ctx, ds, doc_ids)  # dim_strategy before the SCD check re-runs
    for letter, summary, item in parsed:
        failure = get_loop(item.loop).check(ctx, item)
        if failure is None:
            report.would_pass.append(summary)
            candidates.append((letter, item))
        else:
            report.still_failing.append({**summary, "why": str(failure)[:300]})
    if dry_run or not candidates:
        return report
    now = ctx.now()
    records: list[ReplayRecord] = []
    published = report.published
    with runs.running(ctx, "replay", now.date(), {"dead_letters": len(candidates)}) as scope:
        assert scope.run is not None
        run_id = scope.run.run_id
        for letter, old in candidates:
            new = WorkItem(run_id=run_id, loop=old.loop, ds=old.ds, doc_id=old.doc_id, published_at=now)
            if new.item_id not in published:  # a record dead-lettered by two overlapping runs goes out once, or
                published.append(new.item_id)  # the run would wait forever for its second outcome; an account's
                data, attributes = new.to_message()  # snapshots of two days are two records (two item ids)
                ctx.bus.publish(ctx.settings.topic(new.loop), data, attributes)
                scope.published = len(published)
            records.append(ReplayRecord(
                row_id=row_id_for("dead_letter_replays", letter["row_id"]), ds=now.date(),
                dead_letter_id=letter["row_id"], replay_run_id=run_id, original_run_id=letter["run_id"],
                loop=letter["loop"], doc_id=letter["doc_id"], replayed_at=now,
            ))
        ctx.warehouse.insert_rows(ReplayRecord, records)
    log.info("replayed %d dead letters", len(candidates), extra={"run_id": run_id})
    report.run = scope.run
    return report
