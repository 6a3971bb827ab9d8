"""Run status in ``job_metadata``: every transition, the lease, and counts that reconcile.

RUNNING from the dispatch until every published item has an outcome; then SUCCEEDED (all loaded or
duplicates) or PARTIAL (some dead-lettered); FAILED when the dispatcher itself fails (finding the
records, reaching the bus or the broker), with the items it did publish still counted; STALLED when a
RUNNING run makes no progress for ``run_timeout``, marked by the next dispatch. Two dispatches of the
same loop and day cannot overlap (``ConcurrentRunError``) until the holder finishes, its heartbeat is older
than ``lease_timeout`` or its process is gone (``tests/test_run_ledger.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from goldthread.errors import BrokerUnavailableError, ConcurrentRunError, StoreUnavailableError
from goldthread.ledger import runs
from goldthread.loops import get_loop
from goldthread.models import JobMetadata
from goldthread.models.hot import RunStatus
from goldthread.pipeline import dispatcher
from goldthread.pipeline.context import Context
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop

from tests.conftest import DS, NIGHT_AFTER, SESSION, Clock, Factory, PinnedBroker, deliver, rows
from tests.support.faults import bus_stopped


def final(ctx: Context, run: JobMetadata) -> JobMetadata:
    got = runs.get_run(ctx, run.run_id)
    assert got is not None
    return got


def assert_reconciled(run: JobMetadata) -> None:
    assert run.published == run.loaded + run.duplicates + run.dead_lettered, run


def test_running_until_every_item_has_an_outcome_then_succeeded(ctx: Context, make: Factory, clock: Clock) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    run = dispatch(ctx, "trades", DS)
    assert run.status is RunStatus.RUNNING
    assert (run.published, run.loaded, run.finished_at) == (2, 0, None)
    assert run.started_at == run.dispatched_at == NIGHT_AFTER
    assert run.run_id.startswith("trades-20240305-") and run.loop == "trades" and run.ds == DS
    assert run.git_hash == ctx.settings.git_hash
    # the embedded store sweeps on every run (GOLDTHREAD_SWEEP_EVERY_DAYS defaults to 1 on SQLite)
    assert run.details == {"due": 2, "strategy_versions": 1, "invalid_strategy_docs": 0, "swept": True}
    assert not run.reconciled
    clock.advance(dt.timedelta(minutes=3))
    deliver(ctx)
    done = final(ctx, run)
    assert (done.status, done.loaded) == (RunStatus.SUCCEEDED, 2)
    assert done.finished_at == NIGHT_AFTER + dt.timedelta(minutes=3)
    assert done.reconciled and done.error is None
    assert_reconciled(done)


def test_a_day_with_nothing_to_archive_succeeds_at_once(ctx: Context) -> None:
    run = dispatch(ctx, "trades", DS)
    assert (run.status, run.published, run.reconciled) == (RunStatus.SUCCEEDED, 0, True)
    assert run.finished_at == NIGHT_AFTER


def test_partial_when_some_items_are_dead_lettered(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-good")
    make.raw_position("pos-bad", base, qty="0")
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 2, 1, 1)
    assert run.finished_at is not None and run.reconciled


def test_failed_when_finding_the_records_fails(ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    make.closed_trade("pos-1")

    def broken_find(c: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        raise StoreUnavailableError("hot store timed out")

    monkeypatch.setattr(get_loop("trades"), "find", broken_find)
    with pytest.raises(StoreUnavailableError):
        dispatch(ctx, "trades", DS)
    (run,) = runs.list_runs(ctx, "trades")
    assert run.status is RunStatus.FAILED and run.finished_at == NIGHT_AFTER
    assert run.error == "StoreUnavailableError: hot store timed out"
    assert (run.published, run.processed) == (0, 0)
    monkeypatch.undo()
    again = run_loop(ctx, "trades", DS)  # the lease was released: the next dispatch runs and loads
    assert (again.status, again.loaded) == (RunStatus.SUCCEEDED, 1)


def test_failed_when_the_bus_refuses_to_publish(ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    make.closed_trade("pos-1")
    with bus_stopped(ctx.bus), pytest.raises(StoreUnavailableError):
        dispatch(ctx, "trades", DS)
    (run,) = runs.list_runs(ctx, "trades")
    assert run.status is RunStatus.FAILED and "bus is stopped" in (run.error or "")
    assert rows(ctx, "fact_trades") == []


def test_failed_when_the_broker_is_down_for_the_account_loop(ctx: Context) -> None:
    broker = ctx.broker
    assert isinstance(broker, PinnedBroker)
    broker.fail_next = [BrokerUnavailableError("broker 503")]
    with pytest.raises(BrokerUnavailableError):
        dispatch(ctx, "accounts", DS)
    (run,) = runs.list_runs(ctx, "accounts")
    assert run.status is RunStatus.FAILED and run.error == "BrokerUnavailableError: broker 503"


def test_a_failure_half_way_through_publishing_still_reconciles(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        make.closed_trade(f"pos-{i}")
    monkeypatch.setattr(dispatcher, "PUBLISH_BATCH", 1)
    real = ctx.bus.publish_batch
    calls = {"n": 0}

    def publish_batch(topic: str, messages: Any) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise StoreUnavailableError("bus went away")
        return real(topic, messages)

    monkeypatch.setattr(ctx.bus, "publish_batch", publish_batch)
    with pytest.raises(StoreUnavailableError):
        dispatch(ctx, "trades", DS)
    deliver(ctx)
    (run,) = runs.list_runs(ctx, "trades")
    assert run.status is RunStatus.FAILED
    assert (run.published, run.loaded) == (2, 2)  # the two items that did go out are counted and loaded
    assert_reconciled(run)
    monkeypatch.undo()
    rest = run_loop(ctx, "trades", DS)
    assert (rest.published, rest.loaded) == (1, 1)  # the unpublished record is picked up by the next run
    assert len(rows(ctx, "fact_trades")) == 3


def test_stalled_when_no_progress_past_the_timeout_then_marked_by_the_next_dispatch(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    make.closed_trade("pos-1")
    stuck = dispatch(ctx, "trades", DS)  # its items are never delivered (the subscriber is down)
    clock.advance(ctx.settings.run_timeout)
    assert runs.mark_stalled(ctx) == []  # exactly at the timeout: not yet
    assert final(ctx, stuck).status is RunStatus.RUNNING
    clock.advance(dt.timedelta(seconds=1))
    other = dispatch(ctx, "accounts", DS)  # any dispatch marks stalled runs first
    marked = final(ctx, stuck)
    assert marked.status is RunStatus.STALLED
    assert marked.finished_at == clock()
    assert "no progress since" in (marked.error or "")
    assert final(ctx, other).status is RunStatus.RUNNING
    assert runs.mark_stalled(ctx) == []  # already marked: not marked twice


def test_mark_stalled_directly_and_progress_keeps_a_run_alive(ctx: Context, make: Factory, clock: Clock) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    run = dispatch(ctx, "trades", DS)
    clock.advance(dt.timedelta(minutes=50))
    runs.record_outcomes(ctx, run.run_id, {"trades:pos-1": "loaded"})  # progress: the heartbeat moves
    assert final(ctx, run).heartbeat_at == clock()
    clock.advance(dt.timedelta(minutes=50))  # 100 minutes after the start, 50 after the last progress
    assert runs.mark_stalled(ctx) == []
    clock.advance(dt.timedelta(minutes=11))
    assert runs.mark_stalled(ctx) == [run.run_id]
    stalled = final(ctx, run)
    assert (stalled.status, stalled.loaded, stalled.published) == (RunStatus.STALLED, 1, 2)


def test_outcomes_for_an_unknown_run_are_ignored(ctx: Context) -> None:
    assert runs.record_outcomes(ctx, "trades-20240305-nobody", {"trades:pos-1": "loaded"}) == {}
    assert runs.list_runs(ctx) == []


def test_a_concurrent_dispatch_of_the_same_loop_and_day_stands_down(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    make.closed_trade("pos-1")
    spec = get_loop("trades")
    real_find = spec.find
    seen: dict[str, Any] = {}

    def find_while_another_dispatch_arrives(c: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        with pytest.raises(ConcurrentRunError) as info:
            dispatch(c, "trades", ds)  # same loop and day while the lease is held
        seen["error"] = str(info.value)
        seen["other_day"] = dispatch(c, "accounts", ds)  # another loop is not blocked
        return real_find(c, ds, sweep)

    monkeypatch.setattr(spec, "find", find_while_another_dispatch_arrives)
    run = run_loop(ctx, "trades", DS)
    assert run.status is RunStatus.SUCCEEDED and run.loaded == 1
    assert run.run_id in seen["error"]
    assert seen["other_day"].status is RunStatus.RUNNING
    assert [r.run_id for r in runs.list_runs(ctx, "trades")] == [run.run_id]  # the refused one left no record


def test_a_crashed_dispatchers_lease_blocks_until_its_heartbeat_is_too_old(ctx: Context, clock: Clock) -> None:
    """A holder whose process cannot be judged (no host recorded: another machine, a Cloud Function) keeps
    the lease for ``lease_timeout`` (300 s, not the hour of ``run_timeout``) after its last heartbeat."""
    lease = f"dispatch:trades:{DS.isoformat()}"
    assert ctx.settings.lease_timeout == dt.timedelta(seconds=300)
    assert ctx.hot.acquire_lease(lease, "trades-20240305-crashed", clock(), ctx.settings.lease_timeout) is None
    with pytest.raises(ConcurrentRunError, match="trades-20240305-crashed"):
        dispatch(ctx, "trades", DS)
    dispatch(ctx, "trades", DS + dt.timedelta(days=1))  # another day is free
    clock.advance(ctx.settings.lease_timeout + dt.timedelta(seconds=1))
    assert dispatch(ctx, "trades", DS).status is RunStatus.SUCCEEDED


def test_list_runs_newest_first_and_filtered(ctx: Context, clock: Clock) -> None:
    first = dispatch(ctx, "trades", DS)
    clock.advance(dt.timedelta(minutes=1))
    second = dispatch(ctx, "accounts", DS)
    clock.advance(dt.timedelta(minutes=1))
    third = dispatch(ctx, "trades", DS + dt.timedelta(days=1))
    assert [r.run_id for r in runs.list_runs(ctx)] == [third.run_id, second.run_id, first.run_id]
    assert [r.run_id for r in runs.list_runs(ctx, "trades")] == [third.run_id, first.run_id]
    assert [r.run_id for r in runs.list_runs(ctx, "trades", DS)] == [first.run_id]
    assert len({first.run_id, second.run_id, third.run_id}) == 3


def test_a_local_run_restores_the_garbage_collector_settings(ctx: Context, make: Factory) -> None:
    import gc

    from goldthread.pipeline.local_runtime import run_loop

    make.closed_trade("pos-gc")
    before = gc.get_threshold()
    run = run_loop(ctx, "trades", DS)
    assert run.loaded == 1
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_batch_with_bad_documents_leaves_no_reference_cycles(ctx: Context, make: Factory) -> None:
    """A refused document's error (and the validator's exception pydantic keeps inside it) must not tie the
    batch into a cycle through its frames: the whole batch would wait for the cyclic collector."""
    import gc

    from goldthread.models import LivePosition
    from goldthread.models.warehouse import FactTrade
    from goldthread.pipeline.local_runtime import run_loop
    from goldthread.ports.bus import BusMessage

    good = [make.closed_trade(f"pos-{i}") for i in range(6)]
    make.raw_position("pos-bad", good[0], closed_at=(SESSION - dt.timedelta(days=1)).isoformat())
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run = run_loop(ctx, "trades", DS)
        gc.collect()
        cyclic = [type(o).__name__ for o in gc.garbage if isinstance(o, (LivePosition, FactTrade, BusMessage))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert (run.loaded, run.dead_lettered) == (6, 1)
    assert cyclic == []


def test_running_records_the_block_finished_or_failed_with_what_it_published(ctx: Context) -> None:
    with runs.running(ctx, "patch_prices", DS, {"why": "test"}) as scope:
        assert scope.run is not None and scope.run.status is RunStatus.RUNNING
        scope.published = 0
        scope.details = {"checked": 3}
    assert scope.run is not None and scope.run.status is RunStatus.SUCCEEDED
    assert scope.run.details == {"why": "test", "checked": 3} and scope.run.dispatched_at is not None

    with pytest.raises(RuntimeError), runs.running(ctx, "patch_prices", DS + dt.timedelta(days=1)) as failing:
        failing.published = 2  # two items went out before the failure
        raise RuntimeError("broker gone")
    assert failing.run is not None
    stored = runs.get_run(ctx, failing.run.run_id)
    assert stored is not None and stored.status is RunStatus.FAILED and stored.published == 2
    assert stored.error == "RuntimeError: broker gone"
    # the lease is given back: the same job and day can run again at once
    with runs.running(ctx, "patch_prices", DS + dt.timedelta(days=1)) as again:
        pass
    assert again.run is not None and again.run.status is RunStatus.SUCCEEDED

    with runs.running(ctx, "patch_prices", DS, record=False) as dry:
        assert dry.run is None
    assert [r.run_id for r in runs.list_runs(ctx, "patch_prices")].count(scope.run.run_id) == 1
    assert len(runs.list_runs(ctx, "patch_prices")) == 3  # the dry run recorded nothing


def counters_only(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Make the hot store answer ``record_outcomes`` as Firestore's blind first write does: the counters and
    ``published`` as the write left them, not the run (``complete`` False). Returns the reads of the run."""
    from goldthread.ports.hot_store import OUTCOMES, RecordedOutcomes

    real_record, real_get, reads = ctx.hot.record_outcomes, ctx.hot.get, []

    def record(run_id: str, outcomes: Any, merges: Any = None, **how: Any) -> RecordedOutcomes:
        got = real_record(run_id, outcomes, merges, **how)
        if got.run is None:
            return got
        return RecordedOutcomes(got.added, {k: got.run.get(k, 0) for k in (*OUTCOMES, "published")}, False)

    def get(collection: str, doc_id: str) -> Any:
        reads.append(collection == "job_metadata")
        return real_get(collection, doc_id)

    monkeypatch.setattr(ctx.hot, "record_outcomes", record)
    monkeypatch.setattr(ctx.hot, "get", get)
    return reads


def test_with_only_the_counters_back_a_run_is_read_when_it_may_be_done_or_a_look_is_due(
    ctx: Context, make: Factory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        make.closed_trade(f"pos-{i}")
    run = dispatch(ctx, "trades", DS)
    reads = counters_only(ctx, monkeypatch)
    every = min(ctx.settings.run_timeout / 10, ctx.settings.lease_timeout / 5)
    clock.advance(dt.timedelta(minutes=50))
    runs.record_outcomes(ctx, run.run_id, {"trades:pos-0": "loaded"})  # a first look: no read
    assert sum(reads) == 0
    assert final(ctx, run).heartbeat_at == clock()  # the counting write is the heartbeat
    clock.advance(every / 2)
    runs.record_outcomes(ctx, run.run_id, {"trades:pos-1": "loaded"})
    assert sum(reads) == 1  # only final() read it
    clock.advance(every)  # a look is due (to renew a dispatch still publishing): the run is read once
    runs.record_outcomes(ctx, run.run_id, {"trades:pos-2": "loaded"})
    assert final(ctx, run).heartbeat_at == clock() and sum(reads) == 3  # read once, and by final()
    runs.record_outcomes(ctx, run.run_id, {"trades:pos-2": "loaded"})  # a redelivery adds nothing: no read
    assert sum(reads) == 3
    runs.record_outcomes(ctx, run.run_id, {"trades:pos-3": "duplicates"})  # processed reaches published: read
    assert sum(reads) == 4
    done = final(ctx, run)
    assert (done.status, done.loaded, done.duplicates, done.finished_at) == (RunStatus.SUCCEEDED, 3, 1, clock())
    assert_reconciled(done)


def test_with_only_the_counters_back_a_late_delivery_to_a_stalled_run_still_raises_published(
    ctx: Context, make: Factory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    run = dispatch(ctx, "trades", DS)
    ctx.hot.update("job_metadata", run.run_id, {"status": "STALLED", "published": 1})  # died before counting
    counters_only(ctx, monkeypatch)
    runs.record_outcomes(ctx, run.run_id, {"trades:pos-1": "loaded", "trades:pos-2": "loaded"})
    stalled = final(ctx, run)
    assert (stalled.status, stalled.published, stalled.loaded) == (RunStatus.STALLED, 2, 2)
