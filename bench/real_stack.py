"""Case 3: Loop A on the real stack, on this machine: Pub/Sub emulator -> functions-framework -> Firestore
emulator and bqemulator (BigQuery), with the simulated broker.

The deployment is the production one in miniature: ``functions/main.py:subscribe_trades`` served by
functions-framework (2 worker processes of 4 threads: 8 requests at a time, standing in for
Cloud Run instances of concurrency 1; with fewer slots the emulator's pushes are refused and it backs
off to about one message a second) behind a push subscription with the dead-letter policy
(``ensure_loop_topology``, what Terraform builds). The dispatcher runs here, as the scheduler's HTTP
call would, against the same emulators. ``n`` closed positions (1% bad, the Loop A data) are seeded outside the clock.

Measured: items/s from the dispatch until the run reconciles, and for every item the time from its
Pub/Sub publish time to the end of the function that archived it (row streamed, record marked, outcome
counted): p50/p99. Counted (``bench.ops_counter``, in this process during the dispatch and in the
function workers): Firestore reads and writes, Pub/Sub messages and bytes, BigQuery streaming rows and
bytes and query jobs, function invocations and their durations; ``bench.cost`` prices them.

The emulators run on the same two cores as everything else and are slower than the services: the
figures are to watch, not goals.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import data, ops_counter
from bench.latency import percentiles

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKERS, THREADS = 2, 4  # 8 requests at a time: the emulator pushes concurrently and backs off hard when refused


def _seed(hot: Any, broker_path: Path, n: int) -> int:
    """Positions, signals and strategy versions into Firestore (batched), orders into the simulator."""
    import sqlite3

    from goldthread.adapters.firestore_hot_store import to_firestore
    from goldthread.adapters.sim_broker import SimulatedBroker
    from goldthread.models import LivePosition, LiveSignal, Strategy
    from goldthread.writer import document_of

    SimulatedBroker(broker_path).close()  # creates the ledger's tables
    client = hot.client

    def stored(model: Any, doc: dict[str, Any]) -> dict[str, Any]:
        with contextlib.suppress(ValueError):  # a bad document is stored as the buggy bot wrote it
            doc = document_of(model.model_validate(doc))
        return {k: to_firestore(v) for k, v in doc.items()}

    batch, pending, written = client.batch(), 0, 0

    def put(collection: str, doc_id: str, doc: dict[str, Any]) -> None:
        nonlocal batch, pending, written
        batch.set(client.collection(collection).document(doc_id), doc)
        pending += 1
        if pending == 500:
            batch.commit()
            written += pending
            batch, pending = client.batch(), 0

    for doc_id, doc in data.strategy_docs().items():
        put("strategies", doc_id, stored(Strategy, doc))
    orders = []
    for pid, position, signal, order_rows in data.generate_records(n):
        put("live_positions", pid, stored(LivePosition, position))
        put("live_signals", signal["signal_id"], stored(LiveSignal, signal))
        orders.extend(order_rows)
    if pending:
        batch.commit()
        written += pending
    db = sqlite3.connect(str(broker_path), isolation_level=None)
    db.execute("BEGIN")
    db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?)", orders)
    db.execute("COMMIT")
    db.close()
    return written


def _read_function_output(directory: Path) -> tuple[list[dict[str, Any]], dict[str, float]]:
    items: list[dict[str, Any]] = []
    ops: dict[str, float] = {}
    for path in directory.glob("items-*.jsonl"):
        items += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for path in directory.glob("ops-*.json"):
        for key, value in json.loads(path.read_text()).items():
            ops[key] = ops.get(key, 0) + value
    return items, ops


def run(n: int, timeout: float = 3600.0) -> dict[str, Any]:
    """Dispatch ``n`` closed positions through the emulator stack and wait until the run reconciles."""
    from bench.emulator_stack import environment, harness

    try:
        emulators = harness()
    except ImportError as exc:
        return {"skipped": str(exc)}
    for kind in ("pubsub", "firestore", "bigquery", "functions"):
        reason = emulators.missing_requirement(kind)
        if reason:
            return {"skipped": f"{kind}: {reason}"}
    if not hasattr(emulators, "start_function"):
        return {"skipped": "the emulator harness has no start_function yet"}

    from goldthread.adapters.pubsub_bus import ensure_loop_topology
    from goldthread.config import load_settings
    from goldthread.ledger import runs
    from goldthread.pipeline.context import Context
    from goldthread.pipeline.dispatcher import dispatch

    project = emulators.DEFAULT_PROJECT
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gt-bench-real-")))
        servers = {}
        for kind, start in (("pubsub", emulators.start_pubsub), ("firestore", emulators.start_firestore),
                            ("bigquery", emulators.start_bqemulator)):
            servers[kind] = start()
            stack.callback(servers[kind].stop)
        counts_dir = tmp / "counts"
        counts_dir.mkdir()
        env = {
            **{k: v for s in servers.values() for k, v in s.env.items()},
            "GOLDTHREAD_HOT": "firestore", "GOLDTHREAD_BUS": "pubsub", "GOLDTHREAD_WAREHOUSE": "bigquery",
            "GOLDTHREAD_BROKER": "sim", "GOLDTHREAD_MARKET_DATA": "synthetic", "GOLDTHREAD_HOME": str(tmp / "home"),
            "GOOGLE_CLOUD_PROJECT": project, "GOLDTHREAD_DATASET": "bench", "GOLDTHREAD_TOPIC_PREFIX": "bench",
            "GOLDTHREAD_LOG_LEVEL": "ERROR", "GOLDTHREAD_GIT_HASH": "bench",
        }
        stack.enter_context(environment(env))
        settings = load_settings()
        ctx = Context(settings)
        stack.callback(ctx.close)
        seeded = _seed(ctx.hot, settings.broker_path, n)
        ctx.warehouse  # noqa: B018 - dataset, tables and views before the clock starts
        function = emulators.start_function(
            "subscribe_trades", source=REPO_ROOT / "bench" / "fn_main.py",
            env={**env, "WORKERS": str(WORKERS), "THREADS": str(THREADS), "BENCH_COUNTS_DIR": str(counts_dir),
                 "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )
        stack.callback(function.stop)
        topic = settings.topic("trades")
        ensure_loop_topology(settings, ["trades"],
                             push_endpoints={"trades": f"{function.url}/projects/{project}/topics/{topic}"})

        ops_counter.install()
        ops_counter.reset()
        started = time.time()
        # the seeded positions closed over the month before DS: a sweep finds them all, reading each once (and
        # its ledger mark), exactly what a day's run reads per record of its day on a fresh store
        run_record = dispatch(ctx, "trades", data.DS, sweep=True)
        dispatch_seconds = time.time() - started
        dispatcher_ops = ops_counter.snapshot()  # the polling below is the benchmark's, not the pipeline's
        final = run_record
        while time.time() - started < timeout:
            final = runs.get_run(ctx, run_record.run_id) or final
            if final.reconciled:
                break
            time.sleep(0.25)
        seconds = time.time() - started
        time.sleep(1.0)  # let the workers flush their last counters
        items, function_ops = _read_function_output(counts_dir)
    if not final.reconciled:
        return {"error": f"run did not reconcile within {timeout:.0f} s: {final.model_dump(mode='json')}"}
    done = [i for i in items if not i["failed"] and i["published"] is not None]
    latencies = [(i["finished"] - i["published"]) * 1000 for i in done]
    durations = [(i["finished"] - i["started"]) * 1000 for i in done]
    counts = {f"dispatcher_{k}": v for k, v in dispatcher_ops.items()}
    counts.update({f"subscriber_{k}": v for k, v in function_ops.items()})
    counts.update({"dispatcher_seconds": dispatch_seconds, "items": n, "seeded_documents": seeded,
                   "loaded": final.loaded, "dead_lettered": final.dead_lettered, "published": final.published,
                   "nacked_deliveries": sum(1 for i in items if i["failed"]),
                   "function_memory_gib": 1.0, "function_vcpu": 0.583, "workers": WORKERS, "threads": THREADS})
    return {
        "seconds": seconds, "items": n, **percentiles(latencies),
        "function_ms_p50": round(statistics.median(durations), 2) if durations else None,
        "function_peak_rss_mib": max((i.get("peak_rss_mib") or 0 for i in items), default=None),
        "counts": counts,
        "stack": f"Pub/Sub emulator -> functions-framework ({WORKERS} workers x {THREADS} threads) -> "
                 "Firestore emulator, bqemulator, simulated broker",
    }
