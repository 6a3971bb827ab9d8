"""At-least-once delivery never loses nor doubles a record.

The same work item delivered twice (in one batch or in two), the same record published by two runs,
and a crash between any two steps of the subscriber (after the warehouse write and before the record is
marked and counted, one atomic step for a row the item loaded; after a repeated row's archive mark and
before its outcome is counted; after the dead letter is recorded and before it is published) all end
with one warehouse row, one archive mark, one outcome per item, and counts that reconcile:
published = loaded + duplicates + dead_lettered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from goldthread.errors import StoreUnavailableError, WarehouseWriteError
from goldthread.ledger import marks, runs
from goldthread.models import JobMetadata, Loop, WorkItem
from goldthread.models.hot import LivePosition, RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop

from tests.conftest import DS, Clock, Factory, deliver, rows


def final(ctx: Context, run: JobMetadata) -> JobMetadata:
    got = runs.get_run(ctx, run.run_id)
    assert got is not None
    return got


def assert_reconciled(run: JobMetadata) -> None:
    assert run.dispatched_at is not None
    assert run.published == run.loaded + run.duplicates + run.dead_lettered, run


def republish(ctx: Context, run: JobMetadata, doc_id: str) -> None:
    """Publish the item the dispatcher published for ``doc_id`` again, byte for byte the same fields."""
    item = WorkItem(run_id=run.run_id, loop=Loop.TRADES, ds=run.ds, doc_id=doc_id, published_at=run.started_at)
    data, attributes = item.to_message()
    ctx.bus.publish(ctx.settings.topic(Loop.TRADES), data, attributes)


def fail_first(calls: int, real: Callable[..., Any], exc: Exception) -> Callable[..., Any]:
    """A wrapper that raises ``exc`` on its first ``calls`` calls, then behaves like ``real``."""
    seen = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen["n"] += 1
        if seen["n"] <= calls:
            raise exc
        return real(*args, **kwargs)

    wrapper.calls = seen  # type: ignore[attr-defined]
    return wrapper


def test_the_same_item_twice_in_one_batch_is_stored_and_counted_once(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    run = dispatch(ctx, "trades", DS)
    republish(ctx, run, "pos-1")
    deliver(ctx)
    done = final(ctx, run)
    assert len(rows(ctx, "fact_trades")) == 2
    assert (done.status, done.published, done.loaded, done.duplicates) == (RunStatus.SUCCEEDED, 2, 2, 0)
    assert ctx.hot.item_outcomes(run.run_id) == {"trades:pos-1": "loaded", "trades:pos-2": "loaded"}
    assert_reconciled(done)


def test_the_same_item_redelivered_after_it_was_archived(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    run = run_loop(ctx, "trades", DS)
    archived = make.position_doc("pos-1")
    republish(ctx, run, "pos-1")
    deliver(ctx)
    done = final(ctx, run)
    assert len(rows(ctx, "fact_trades")) == 1
    assert (done.status, done.published, done.loaded, done.duplicates) == (RunStatus.SUCCEEDED, 1, 1, 0)
    assert make.position_doc("pos-1") == archived  # the archive mark is not rewritten
    assert_reconciled(done)


def test_a_record_published_by_two_runs_is_loaded_once_and_a_duplicate_once(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    make.closed_trade("pos-1")
    first = dispatch(ctx, "trades", DS)  # its items are still in flight ...
    clock.advance(ctx.settings.run_timeout + dt.timedelta(seconds=1))
    second = dispatch(ctx, "trades", DS)  # ... when the next dispatch publishes the record again
    assert final(ctx, first).status is RunStatus.STALLED
    assert second.published == 1
    deliver(ctx)
    (row,) = rows(ctx, "fact_trades")
    assert row["run_id"] == first.run_id
    assert make.mark("pos-1")["archived_run_id"] == first.run_id
    a, b = final(ctx, first), final(ctx, second)
    assert (a.loaded, a.duplicates) == (1, 0)
    assert (b.status, b.loaded, b.duplicates) == (RunStatus.SUCCEEDED, 0, 1)
    assert_reconciled(a)
    assert_reconciled(b)


@pytest.mark.parametrize("positions", [1, 3])
def test_crash_after_the_warehouse_write_before_the_mark_and_the_count(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch, positions: int
) -> None:
    for i in range(positions):
        make.closed_trade(f"pos-{i}")
    record = fail_first(1, ctx.hot.record_outcomes, StoreUnavailableError("hot store went away"))
    writes: list[int] = []
    real_insert = ctx.warehouse.insert_rows

    def insert(model: Any, batch: Any) -> Any:
        result = real_insert(model, batch)
        writes.append(len(result.inserted))
        return result

    monkeypatch.setattr(ctx.hot, "record_outcomes", record)
    monkeypatch.setattr(ctx.warehouse, "insert_rows", insert)
    run = run_loop(ctx, "trades", DS)

    assert record.calls["n"] == 2  # type: ignore[attr-defined]  # crashed once, then the redelivery counted
    assert writes == [positions, 0]  # the first delivery wrote the rows; the redelivery wrote nothing new
    assert len(rows(ctx, "fact_trades")) == positions
    assert (run.status, run.published, run.loaded, run.duplicates, run.dead_lettered) == (
        RunStatus.SUCCEEDED, positions, positions, 0, 0
    )  # the redelivery found its own run's rows: loaded, not duplicates
    for i in range(positions):
        assert make.mark(f"pos-{i}")["archived_run_id"] == run.run_id
    assert_reconciled(run)
    assert dispatch(ctx, "trades", DS).published == 0  # nothing left behind


def test_crash_after_a_repeated_rows_archive_mark_before_its_outcome_is_counted(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row already in the warehouse, its run gone before marking it (a dead dispatch's last delivery): the
    record is marked archived by a conditional claim, then its outcome counted; a crash between the two ends
    with one mark and one count."""
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    first = run_loop(ctx, "trades", DS)
    ctx.hot.delete("ledger_marks", marks.mark_id(LivePosition.collection, "pos-1"))  # its run died before marking it
    claim = fail_first(1, ctx.hot.claim, StoreUnavailableError("hot store went away"))
    monkeypatch.setattr(ctx.hot, "claim", claim)
    run = run_loop(ctx, "trades", DS)
    assert claim.calls["n"] == 2  # type: ignore[attr-defined]  # the repeated row's mark: crashed, then claimed
    assert len(rows(ctx, "fact_trades")) == 2
    assert (first.loaded, run.status, run.published, run.loaded, run.duplicates) == (
        2, RunStatus.SUCCEEDED, 1, 0, 1)
    assert (make.mark("pos-1")["archived_run_id"], make.mark("pos-2")["archived_run_id"]) == (
        run.run_id, first.run_id)
    assert_reconciled(run)
    assert dispatch(ctx, "trades", DS).published == 0


def test_crash_after_recording_a_dead_letter_before_publishing_it(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = make.closed_trade("pos-good")
    make.raw_position("pos-bad", good, qty="-1")
    real_publish = ctx.bus.publish
    failures = {"n": 0}

    def publish(topic: str, data: bytes, attributes: Any) -> str:
        if topic == ctx.settings.dead_letter_topic and failures["n"] == 0:
            failures["n"] += 1
            raise StoreUnavailableError("bus went away")
        return real_publish(topic, data, attributes)

    monkeypatch.setattr(ctx.bus, "publish", publish)
    run = run_loop(ctx, "trades", DS)
    assert failures["n"] == 1
    (letter,) = rows(ctx, "dead_letters")
    assert letter["doc_id"] == "pos-bad" and letter["delivery_attempts"] == 1  # the first attempt's record stands
    assert len(rows(ctx, "fact_trades")) == 1
    assert (run.status, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 1, 1)
    assert_reconciled(run)


def test_a_warehouse_outage_is_retried_without_doubling(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    insert = fail_first(2, ctx.warehouse.insert_rows, WarehouseWriteError("warehouse refused the write"))
    run = dispatch(ctx, "trades", DS)  # the dimension sync before publishing still succeeds
    monkeypatch.setattr(ctx.warehouse, "insert_rows", insert)
    deliver(ctx)
    done = final(ctx, run)
    sub = ctx.bus.subscription(ctx.settings.subscription(Loop.TRADES))  # type: ignore[attr-defined]
    assert (sub.nacked, sub.acked, sub.dead_lettered) == (4, 2, 0)  # two failed attempts of a batch of two
    assert len(rows(ctx, "fact_trades")) == 2
    assert (done.status, done.loaded, done.duplicates) == (RunStatus.SUCCEEDED, 2, 0)
    assert_reconciled(done)
