"""The bot's documents as they are (issue 16, item 2): goldthread finds every due record whatever the bot's
document carries or lacks of goldthread's fields, and keeps its own marks in its ledger, never on them.

Every document here is written straight into the hot store, as the bot writing its own Firestore documents
would: without the fields goldthread 0.2 used (absent, not null), with them null, or with garbage in them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from goldthread.config import Settings
from goldthread.ledger.marks import MARKS, mark_id
from goldthread.models.hot import LEGACY_MARKS, RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from goldthread.writer import POSITIONS, document_of

from tests.conftest import DS, SESSION, Clock, Factory, ledger_mark, rows

DAY = dt.timedelta(days=1)


def at(day: dt.date) -> dt.datetime:
    """03:00 UTC of ``day``: when the scheduler runs the loops for the day before."""
    return dt.datetime.combine(day, dt.time(3), dt.UTC)


def bare(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without any of goldthread's old fields: what a bot that never heard of them writes."""
    return {k: v for k, v in doc.items() if k not in LEGACY_MARKS}


def archived_ids(ctx: Context) -> list[str]:
    return sorted(r["position_id"] for r in rows(ctx, "fact_trades"))


MARK_VARIANTS: dict[str, dict[str, Any]] = {
    "absent": {},
    "null": {"archived_run_id": None, "archived_at": None, "dead_lettered_run_id": None, "loading_run_id": None},
    "empty text": {"archived_run_id": "", "dead_lettered_run_id": ""},
    "a number": {"archived_run_id": 123, "dead_lettered_run_id": 0},
    "a run nobody knows": {"archived_run_id": "trades-20240305-deadbeef", "archived_at": "yesterday"},
    "a dict": {"archived_run_id": {"by": "the bot"}, "loading_run_id": ["x"]},
}


@pytest.mark.parametrize("variant", sorted(MARK_VARIANTS))
def test_a_closed_position_is_archived_whatever_it_carries_of_goldthreads_fields(
    ctx: Context, make: Factory, clock: Clock, variant: str
) -> None:
    base = make.closed_trade("pos-base", broker_entry=D("100"), broker_exit=D("110"))
    doc = make.raw_position("pos-bot", base, **MARK_VARIANTS[variant])
    written = bare(doc) | MARK_VARIANTS[variant]
    ctx.hot.put(POSITIONS, "pos-bot", written)
    before = ctx.hot.get(POSITIONS, "pos-bot")
    clock.set(at(DS + DAY))

    run = run_loop(ctx, "trades", DS)

    assert (run.status, run.published, run.loaded) == (RunStatus.SUCCEEDED, 2, 2)
    assert archived_ids(ctx) == ["pos-base", "pos-bot"]
    assert ledger_mark(ctx, POSITIONS, "pos-bot")["archived_run_id"] == run.run_id
    # goldthread wrote nothing on the bot's document: it is exactly as the bot left it
    assert ctx.hot.get(POSITIONS, "pos-bot") == before
    again = run_loop(ctx, "trades", DS)
    assert again.published == 0 and len(rows(ctx, "fact_trades")) == 2


def test_the_writer_api_writes_no_bookkeeping_on_the_documents(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    assert not set(make.position_doc("pos-1")) & set(LEGACY_MARKS)
    assert not set(make.signal_doc("sig-pos-1") or {}) & set(LEGACY_MARKS)


def test_a_late_written_position_with_an_old_close_is_picked_up_by_the_next_run(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    base = make.closed_trade("pos-1")
    clock.set(at(DS + DAY))
    first = run_loop(ctx, "trades", DS)
    assert first.loaded == 1
    # two days later the bot writes a position it closed on DS - 3 (a replayed journal, a fixed crash)
    clock.set(at(DS + 3 * DAY))
    late = bare(make.raw_position("pos-late", base, opened_at=SESSION - 3 * DAY,
                                  closed_at=SESSION - 3 * DAY + DAY / 12))
    ctx.hot.put(POSITIONS, "pos-late", late)

    run = run_loop(ctx, "trades", DS + 2 * DAY)  # the embedded store sweeps on every run

    assert (run.published, run.loaded) == (1, 1)
    (row,) = rows(ctx, "fact_trades", "position_id = 'pos-late'")
    assert row["ds"] == (DS - 3 * DAY)  # the row's day is the record's own, whichever run archived it


def firestore_like(ctx: Context, every: int) -> None:
    """The sweep schedule of a Firestore deployment (reads are billed there): every ``every`` days."""
    ctx.settings = Settings(**{**ctx.settings.__dict__, "sweep_every_days": every})


def sweep_day_after(day: dt.date, every: int) -> dt.date:
    while day.toordinal() % every:
        day += DAY
    return day


def test_with_a_weekly_sweep_a_run_reads_only_its_day_and_the_sweep_finds_the_rest(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    firestore_like(ctx, 7)
    quiet = DS if DS.toordinal() % 7 else DS + DAY  # a day that is not a sweep day
    day_open = dt.datetime.combine(quiet, SESSION.timetz())
    base = make.closed_trade("pos-day", opened_at=day_open)
    make.closed_trade("pos-old", opened_at=SESSION - 3 * DAY)  # written late: after the run of its day
    ctx.hot.put(POSITIONS, "pos-old", bare(make.position_doc("pos-old")))
    garbled = bare(make.raw_position("pos-garbled", base, closed_at="the day before yesterday"))
    ctx.hot.put(POSITIONS, "pos-garbled", garbled)
    clock.set(at(sweep_day_after(quiet, 7) + 2 * DAY))

    day_run = run_loop(ctx, "trades", quiet)
    assert (day_run.published, day_run.loaded) == (1, 1) and archived_ids(ctx) == ["pos-day"]

    sweep_run = run_loop(ctx, "trades", sweep_day_after(quiet, 7))
    # the sweep finds the late one (archived) and the unreadable one (dead-lettered with the field's reason)
    assert (sweep_run.published, sweep_run.loaded, sweep_run.dead_lettered) == (2, 1, 1)
    assert archived_ids(ctx) == ["pos-day", "pos-old"]
    assert ledger_mark(ctx, POSITIONS, "pos-garbled")["dead_lettered_run_id"] == sweep_run.run_id


def test_a_bot_correcting_an_archived_document_in_place_makes_a_revision_and_an_unchanged_one_does_not(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    make.closed_trade("pos-1", broker_entry=D("100"), broker_exit=D("110"), fee=D("0.50"))
    make.closed_trade("pos-2")
    clock.set(at(DS + DAY))
    run_loop(ctx, "trades", DS)
    unchanged = run_loop(ctx, "trades", DS)
    assert unchanged.published == 0  # nothing changed: nothing is due
    # the bot rewrites pos-1 in place with a corrected fee (no goldthread field in sight)
    ctx.hot.put(POSITIONS, "pos-1", bare(make.position_doc("pos-1")) | {"est_fee_usd": "0.75"})

    run = run_loop(ctx, "trades", DS)

    assert (run.published, run.loaded, run.duplicates) == (1, 1, 0)
    (row,) = rows(ctx, "fact_trades", "position_id = 'pos-1'")
    assert row["revision"] == 2 and row["est_fee_usd"] == D("0.75")
    assert run_loop(ctx, "trades", DS).published == 0


def test_a_fixed_dead_lettered_document_is_due_again_without_a_replay(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    base = make.closed_trade("pos-1")
    bad = bare(make.raw_position("pos-bad", base, qty="-3"))
    clock.set(at(DS + DAY))
    first = run_loop(ctx, "trades", DS)
    assert first.dead_lettered == 1
    assert run_loop(ctx, "trades", DS).published == 0  # left as it is, it is not dead-lettered again
    ctx.hot.put(POSITIONS, "pos-bad", bad | {"qty": "3"})  # the bot fixes it in place

    run = run_loop(ctx, "trades", DS)

    assert (run.published, run.loaded) == (1, 1)
    assert archived_ids(ctx) == ["pos-1", "pos-bad"]


def test_marks_written_by_goldthread_0_2_on_the_documents_are_adopted_once(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    clock.set(at(DS + DAY))
    run = run_loop(ctx, "trades", DS)
    # an upgrade from 0.2: the marks were on the documents, the ledger is empty
    for doc_id in ("pos-1", "pos-2"):
        ctx.hot.delete(MARKS, mark_id(POSITIONS, doc_id))
    ctx.hot.put(POSITIONS, "pos-1", make.position_doc("pos-1") | {"archived_run_id": run.run_id,
                                                                  "loading_run_id": None})
    ctx.hot.put(POSITIONS, "pos-2", make.position_doc("pos-2") | {"archived_run_id": "trades-19990101-00000000"})

    again = run_loop(ctx, "trades", DS)

    # pos-1's mark names a run job_metadata knows: adopted, not published; pos-2's names no run: published,
    # and found already in the warehouse (a duplicate, never a second row)
    assert (again.published, again.loaded, again.duplicates) == (1, 0, 1)
    assert ledger_mark(ctx, POSITIONS, "pos-1")["archived_run_id"] == run.run_id
    assert len(rows(ctx, "fact_trades")) == 2


def test_document_of_leaves_the_legacy_fields_out() -> None:
    from goldthread.models import LivePosition

    position = LivePosition.model_validate({
        "position_id": "p", "signal_id": "s", "strategy_id": "m", "strategy_version": "1.0", "symbol": "AAPL",
        "asset_class": "equity", "side": "long", "qty": "1", "entry_order_id": "e", "opened_at": SESSION,
        "status": "OPEN", "est_fee_usd": "0", "archived_run_id": 42,
    })
    assert not set(document_of(position)) & set(LEGACY_MARKS)


def test_a_correction_through_the_writer_api_is_found_whatever_day_the_record_falls_on(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    firestore_like(ctx, 7)
    make.closed_trade("pos-1", fee=D("0.50"))
    clock.set(at(DS + 3 * DAY))
    first = run_loop(ctx, "trades", DS, sweep=False)
    assert first.loaded == 1
    corrected = make.position_doc("pos-1") | {"est_fee_usd": "0.80"}
    from goldthread.models import LivePosition

    make.writer.save_position(LivePosition.model_validate(corrected))
    assert ledger_mark(ctx, POSITIONS, "pos-1")["archived_run_id"] is None

    later = run_loop(ctx, "trades", DS + 2 * DAY, sweep=False)  # another day's range, no sweep

    assert (later.published, later.loaded) == (1, 1)
    (row,) = rows(ctx, "fact_trades", "position_id = 'pos-1'")
    assert row["revision"] == 2 and row["est_fee_usd"] == D("0.8")
    assert ledger_mark(ctx, POSITIONS, "pos-1")["archived_run_id"] == later.run_id
    assert run_loop(ctx, "trades", DS + 2 * DAY, sweep=False).published == 0  # settled again: not due


def test_a_dry_run_finds_a_corrected_record_due_but_writes_nothing_to_the_ledger(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    from goldthread.console.plan import dry_run

    make.closed_trade("pos-1")
    clock.set(at(DS + DAY))
    first = run_loop(ctx, "trades", DS)
    ctx.hot.put(POSITIONS, "pos-1", bare(make.position_doc("pos-1")) | {"est_fee_usd": "0.99"})  # corrected
    before = list(ctx.hot.query(MARKS))

    report = dry_run(ctx, "trades", DS, DS)

    assert report.to_dict()["due"] == 1  # the corrected record would be archived again
    assert list(ctx.hot.query(MARKS)) == before  # but finding it wrote nothing
    assert ledger_mark(ctx, POSITIONS, "pos-1")["archived_run_id"] == first.run_id
    run = run_loop(ctx, "trades", DS)  # the real run reopens it and archives revision 2
    assert (run.published, run.loaded) == (1, 1)
    (row,) = rows(ctx, "fact_trades", "position_id = 'pos-1'")
    assert row["revision"] == 2
