"""Where Loop A's time goes beside its floor: the loop's own work without the pipeline around it.

``python -m bench.chain_probe [N]`` (default 100,000) takes the benchmark's dataset and times, per
closed position and without dispatch, bus, work-item decoding, archive marks or run counters:

1. ``floor``: ``LivePosition`` + ``LiveSignal`` validation of each stored document (the ``pydantic``
   reference of the ``loop_a`` case, here straight from the stored JSON text);
2. ``build``: ``TradesLoop.build`` on batches of 2,000 work items (read and validate the documents,
   fetch and validate both broker orders, resolve the strategy version, compute and validate the
   ``FactTrade`` row);
3. ``write``: the same rows into DuckDB (Arrow batch, key check).

Compared with the ``loop_a`` case's whole time it splits Loop A into the floor, the loop's own work
and the pipeline's. It prints one JSON line; nothing is asserted.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.loop_a import _null_logs, embedded_context


def run(n: int = 100_000, batch: int = 2_000) -> dict[str, Any]:
    """Time the floor, the loop's build and the warehouse write for ``n`` positions; µs per item."""
    from goldthread.loops import get_loop
    from goldthread.models import LivePosition, LiveSignal, SchemaGuardian
    from goldthread.models.warehouse import FactTrade
    from goldthread.models.work_items import Loop, WorkItem
    from goldthread.pipeline.local_runtime import fewer_gc_passes
    from goldthread.pipeline.subscriber import forget_tracebacks

    _null_logs()
    with tempfile.TemporaryDirectory(prefix="gt-probe-") as tmp:
        directory = data.copy_template(n, Path(tmp))
        db = sqlite3.connect(str(directory / "hot.sqlite"))
        texts = {c: [r[0] for r in db.execute("SELECT data FROM docs WHERE collection=? ORDER BY id", (c,))]
                 for c in ("live_positions", "live_signals")}
        ids = [r[0] for r in db.execute("SELECT id FROM docs WHERE collection='live_positions' ORDER BY id")]
        db.close()
        started = time.perf_counter()
        for collection, model in (("live_positions", LivePosition), ("live_signals", LiveSignal)):
            for text in texts[collection]:
                try:
                    SchemaGuardian.validate(model, text, "probe")
                except Exception:  # the bad 1% is part of the measured work
                    continue
        floor = time.perf_counter() - started

        ctx = embedded_context(directory)
        ctx.warehouse  # noqa: B018 - create the tables before the clock starts
        spec = get_loop(Loop.TRADES)
        spec.prepare(ctx, data.DS, [])
        now = ctx.now()
        items = [WorkItem(run_id="probe-run", loop=Loop.TRADES, ds=data.DS, doc_id=i, published_at=now) for i in ids]
        build = write = 0.0
        rows = 0
        with fewer_gc_passes():  # as run_loop does
            for start in range(0, len(items), batch):
                chunk = items[start : start + batch]
                t0 = time.perf_counter()
                built = spec.build(ctx, chunk)
                t1 = time.perf_counter()
                forget_tracebacks(built.values())
                good = [r for r in built.values() if isinstance(r, FactTrade)]
                ctx.warehouse.insert_rows(FactTrade, good)
                t2 = time.perf_counter()
                build, write, rows = build + t1 - t0, write + t2 - t1, rows + len(good)
        ctx.close()
    per_item = {name: round(seconds / n * 1e6, 2) for name, seconds in
                (("floor", floor), ("build", build), ("write", write))}
    return {"n": n, "rows": rows, "us_per_item": per_item,
            "build_plus_write_over_floor": round((build + write) / floor, 2)}


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)))
