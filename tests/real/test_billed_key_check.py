"""BigQuery bills each key-existence query at its 10 MB minimum, and a Cloud Function runs one per item:
the subscriber skips it when the hot record's first ``loading_run_id`` mark proves no row was written
yet, and still stores every record once when an attempt dies between writing the row and marking the
record archived, or when another run's item for the same record arrives later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from goldthread.errors import StoreUnavailableError, WarehouseWriteError
from goldthread.ledger import runs
from goldthread.loops.strategies import sync_dim_strategy
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.pipeline.subscriber import process_messages
from goldthread.ports.bus import BusMessage

from tests.conftest import DS, NIGHT_AFTER, ledger_mark
from tests.reliability.test_real_faults import embedded, loaded_once, sim_orders, write_trades
from tests.support.emulators import ManagedProcess

pytestmark = pytest.mark.emulator


def bigquery_context(tmp_path: Path, dataset: str) -> tuple[Any, list[int]]:
    """The embedded stack writing to bqemulator; the list counts the key-existence queries."""
    from goldthread.adapters.bigquery_warehouse import BigQueryWarehouse

    warehouse = BigQueryWarehouse("goldthread-test", dataset)
    ctx = embedded(tmp_path, warehouse=warehouse)
    ctx.warehouse.ensure_tables()
    queries: list[int] = []
    real = warehouse.existing_keys

    def counted(model: Any, keys: Any) -> set[str]:
        queries.append(len(keys))
        return real(model, keys)

    warehouse.existing_keys = counted  # type: ignore[method-assign]
    return ctx, queries


def three_trades(tmp_path: Path, dataset: str) -> tuple[Any, list[int], list[str]]:
    """Three closed positions on the BigQuery context, the local bus delivering them ten at a time."""
    ctx, queries = bigquery_context(tmp_path, dataset)
    wire_local_bus(ctx, batch_size=10, min_backoff=0.01)
    names = [f"pos-{i}" for i in range(3)]
    sim_orders(ctx, names)
    write_trades(ctx, names)
    return ctx, queries, names


def test_first_attempts_skip_the_billed_key_check(
    bigquery_emulator: ManagedProcess, unique_name: str, tmp_path: Path
) -> None:
    ctx, queries = bigquery_context(tmp_path, unique_name)
    wire_local_bus(ctx, batch_size=1, min_backoff=0.01)  # one item per delivery, as a Cloud Function
    names = [f"pos-{i}" for i in range(4)]
    sim_orders(ctx, names)
    write_trades(ctx, names)
    run = run_loop(ctx, "trades", DS)
    assert (run.published, run.loaded, run.duplicates, run.dead_lettered) == (4, 4, 0, 0)
    assert queries == []
    assert loaded_once(ctx.warehouse, names)
    assert {ledger_mark(ctx, "live_positions", n)["loading_run_id"] for n in names} == {run.run_id}
    ctx.close()


def test_a_crash_after_the_row_is_written_stores_it_once(
    bigquery_emulator: ManagedProcess, unique_name: str, tmp_path: Path
) -> None:
    ctx, queries, names = three_trades(tmp_path, unique_name)
    real_record = ctx.hot.record_outcomes
    failed: list[str] = []

    def archive_dies_once(run_id: str, outcomes: Any, merges: Any = None, **how: Any) -> Any:
        if merges and not failed:
            failed.append(run_id)
            raise StoreUnavailableError("hot store lost between the row and its archive mark")
        return real_record(run_id, outcomes, merges, **how)

    ctx.hot.record_outcomes = archive_dies_once  # type: ignore[method-assign]
    run = run_loop(ctx, "trades", DS)
    assert failed == [run.run_id]
    assert (run.published, run.loaded, run.duplicates, run.dead_lettered) == (3, 3, 0, 0)  # its own earlier write
    assert queries == [3]  # only the redelivery paid for the check
    assert loaded_once(ctx.warehouse, names)
    ctx.close()


def test_another_runs_item_for_a_written_record_is_a_duplicate(
    bigquery_emulator: ManagedProcess, unique_name: str, tmp_path: Path
) -> None:
    ctx, queries = bigquery_context(tmp_path, unique_name)
    names = ["pos-a"]
    sim_orders(ctx, names)
    write_trades(ctx, names)
    sync_dim_strategy(ctx)  # what the dispatcher's prepare step does
    first = runs.start_run(ctx, Loop.TRADES.value, DS)
    runs.finish_dispatch(ctx, first.run_id, 1, {})
    second = runs.start_run(ctx, Loop.TRADES.value, DS)
    runs.finish_dispatch(ctx, second.run_id, 1, {})

    def deliver(run_id: str) -> list[BaseException | None]:
        data, attributes = WorkItem(run_id=run_id, loop=Loop.TRADES, ds=DS, doc_id="pos-a",
                                    published_at=NIGHT_AFTER).to_message()
        return process_messages(ctx, [BusMessage(data, attributes, f"m-{run_id}", NIGHT_AFTER, "trades")])

    real_record = ctx.hot.record_outcomes

    def no_archive(run_id: str, outcomes: Any, merges: Any = None, **how: Any) -> Any:
        if run_id == first.run_id:
            raise StoreUnavailableError("the first run stalls after writing its row")
        return real_record(run_id, outcomes, merges, **how)

    ctx.hot.record_outcomes = no_archive  # type: ignore[method-assign]
    assert isinstance(deliver(first.run_id)[0], StoreUnavailableError)
    assert deliver(second.run_id) == [None]
    assert runs.get_run(ctx, second.run_id).duplicates == 1  # type: ignore[union-attr]
    assert queries == [1]
    assert loaded_once(ctx.warehouse, names)
    ctx.close()


def test_a_crash_after_the_mark_and_before_the_row_writes_it_on_redelivery(
    bigquery_emulator: ManagedProcess, unique_name: str, tmp_path: Path
) -> None:
    ctx, queries, names = three_trades(tmp_path, unique_name)
    real_insert = ctx.warehouse.insert_rows
    failed: list[int] = []

    def insert_dies_once(model: Any, rows: Any, **how: Any) -> Any:
        if model.__table__ == "fact_trades" and not failed:
            failed.append(len(rows))
            raise WarehouseWriteError("BigQuery unreachable after the records were marked")
        return real_insert(model, rows, **how)

    ctx.warehouse.insert_rows = insert_dies_once  # type: ignore[method-assign]
    run = run_loop(ctx, "trades", DS)
    assert failed == [3]
    assert (run.published, run.loaded, run.duplicates, run.dead_lettered) == (3, 3, 0, 0)
    assert queries == [3]  # the marked records were checked, found missing, then written
    assert loaded_once(ctx.warehouse, names)
    ctx.close()
