"""Case 1: Loop A through the local path, beside dlt and beside bare Pydantic validation.

Each function runs one measurement in the current process (the runner starts a fresh process per
run, so peak memory is per case) and returns the figures as a dict: ``seconds`` is the measured time,
``items`` the number of closed positions offered.

* ``run_goldthread``: SQLite hot store -> dispatcher -> LocalBus -> subscriber (SchemaGuardian,
  broker orders, SCD lookup, P&L) -> DuckDB, then the run must reconcile.
* ``run_dlt``: dlt loads the same position documents, read from the same hot store, into DuckDB with
  ``LivePosition`` as its schema contract (``columns=LivePosition``) and bad rows discarded.
* ``run_pydantic``: the floor, validating every document the loop reads (each position with
  ``LivePosition`` and its signal with ``LiveSignal``) from its parsed form; parsing is not timed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import data


def _null_logs() -> None:
    """Format goldthread's JSON logs as usual but throw them away (the dead letters log a warning each)."""
    from goldthread import logs

    logs.configure(level="WARNING", stream=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


def embedded_context(directory: Path) -> Any:
    """A local-path ``Context`` over the files in ``directory``, wired as the local runner wires it."""
    from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
    from goldthread.adapters.local_bus import LocalBus
    from goldthread.adapters.sim_broker import SimulatedBroker
    from goldthread.adapters.sqlite_hot_store import SqliteHotStore
    from goldthread.adapters.synthetic_market_data import SyntheticMarketData
    from goldthread.config import Settings
    from goldthread.pipeline.context import Context
    from goldthread.pipeline.local_runtime import wire_local_bus

    def clock() -> Any:
        return data.NOW

    market = SyntheticMarketData()
    ctx = Context(
        Settings(home=directory), clock=clock, hot=SqliteHotStore(directory / "hot.sqlite"),
        bus=LocalBus(), warehouse=DuckDbWarehouse(directory / "warehouse.duckdb"),
        broker=SimulatedBroker(directory / "broker.sqlite", clock=clock, market=market), market_data=market,
    )
    wire_local_bus(ctx, min_backoff=0.01)
    return ctx


def run_goldthread(n: int) -> dict[str, Any]:
    """Archive ``n`` closed positions (1% bad) through the local path; the run must reconcile."""
    from goldthread.pipeline.local_runtime import run_loop

    _null_logs()
    with tempfile.TemporaryDirectory(prefix="gt-bench-a-") as tmp:
        directory = data.copy_template(n, Path(tmp))
        ctx = embedded_context(directory)
        ctx.warehouse  # noqa: B018 - create the tables before the clock starts
        started, cpu = time.perf_counter(), time.process_time()
        run = run_loop(ctx, "trades", data.DS)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows = ctx.warehouse.query("SELECT COUNT(*) AS n FROM fact_trades")[0]["n"]
        dead = ctx.warehouse.query("SELECT COUNT(*) AS n FROM dead_letters")[0]["n"]
        ctx.close()
    if run.published != n or run.loaded + run.duplicates + run.dead_lettered != run.published:
        raise RuntimeError(f"run did not reconcile: {run.model_dump()}")
    return {
        "seconds": seconds, "cpu_seconds": cpu, "items": n, "status": str(run.status.value), "loaded": run.loaded,
        "dead_lettered": run.dead_lettered, "rows": rows, "dead_letter_rows": dead,
    }


def _position_batches(directory: Path, batch: int = 5000) -> Iterator[list[dict[str, Any]]]:
    db = sqlite3.connect(str(directory / "hot.sqlite"))
    try:
        cur = db.execute("SELECT data FROM docs WHERE collection = 'live_positions' ORDER BY id")
        while rows := cur.fetchmany(batch):
            yield [json.loads(r[0]) for r in rows]
    finally:
        db.close()


def run_dlt(n: int) -> dict[str, Any]:
    """dlt: the same position documents into DuckDB, ``LivePosition`` as the contract, bad rows discarded."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    try:
        import dlt
    except ImportError:
        return {"skipped": "dlt is not installed (pip install -r requirements-bench.txt)"}
    import duckdb
    from goldthread.models import LivePosition

    source = data.template(n)
    with tempfile.TemporaryDirectory(prefix="gt-bench-dlt-") as tmp:
        os.environ["DLT_DATA_DIR"] = str(Path(tmp) / "data")
        started = time.perf_counter()
        resource = dlt.resource(
            _position_batches(source), name="live_positions", columns=LivePosition, write_disposition="append",
            schema_contract={"tables": "evolve", "columns": "discard_row", "data_type": "discard_row"},
        )
        pipeline = dlt.pipeline(
            pipeline_name="goldthread_bench", destination=dlt.destinations.duckdb(str(Path(tmp) / "dlt.duckdb")),
            dataset_name="bench", pipelines_dir=str(Path(tmp) / "pipelines"),
        )
        pipeline.run(resource)
        seconds = time.perf_counter() - started
        con = duckdb.connect(str(Path(tmp) / "dlt.duckdb"), read_only=True)
        rows = con.execute("SELECT COUNT(*) FROM bench.live_positions").fetchone()[0]  # type: ignore[index]
        con.close()
    return {"seconds": seconds, "items": n, "rows": rows, "dlt": dlt.__version__}


def run_pydantic(n: int, batch: int = 20_000) -> dict[str, Any]:
    """The floor: each position validated with ``LivePosition`` and its signal with ``LiveSignal``.

    Documents are read and parsed in batches outside the clock (so memory stays flat at 1M); only
    ``model_validate`` is timed.
    """
    from goldthread.models import LivePosition, LiveSignal
    from pydantic import ValidationError

    source = data.template(n)
    db = sqlite3.connect(str(source / "hot.sqlite"))
    seconds = cpu = 0.0
    valid = invalid = 0
    try:
        for collection, model in (("live_positions", LivePosition), ("live_signals", LiveSignal)):
            cur = db.execute("SELECT data FROM docs WHERE collection = ? ORDER BY id", (collection,))
            while rows := cur.fetchmany(batch):
                docs = [json.loads(r[0]) for r in rows]
                started = time.perf_counter()
                cpu -= time.process_time()
                for doc in docs:
                    try:
                        model.model_validate(doc)
                        valid += 1
                    except ValidationError:
                        invalid += 1
                seconds += time.perf_counter() - started
                cpu += time.process_time()
    finally:
        db.close()
    return {"seconds": seconds, "cpu_seconds": cpu, "items": n, "valid_documents": valid, "invalid_documents": invalid}
