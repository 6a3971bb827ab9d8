"""What each speed trick saves: its case timed with the trick and with the plain reference put in its place.

``python -m bench.fast_paths [--n-a 20000] [--n-bc 10000] [--repeat 3]`` runs every measurement in a fresh
process, interleaved (baseline, then each reference, per repeat), and prints one JSON line per trick with
the median seconds of both and the saving as a share of the case. A trick that saves under 5% of its case
has no place (issue 16, item 12); ``tests/test_fast_paths.py`` holds every kept one to its reference.

Cases: ``dispatch`` is the dispatcher alone for Loop A (find, prepare, encode, publish to the local bus);
``a`` is the whole Loop A run (``bench.loop_a``); ``bc`` is Loops B and C with their bar prefetch
(``bench.loops_bc``). The references are the obvious code each trick replaced:

* ``encoder``: ``WorkItem(...).to_message()`` per id;
* ``gc``: no GC tuning (``fewer_gc_passes`` a no-op);
* ``bars_table``: one validated ``MarketBar`` per bar, then ``model_dump``;
* ``fee_line``: the fee model's validated fills per signal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TRICKS: dict[str, str] = {  # trick -> case it is measured in
    "encoder": "dispatch", "gc": "a", "bars_table": "bc", "fee_line": "bc",
}


def use_reference(trick: str) -> None:
    """Put the plain reference in the place of ``trick`` (in this process only)."""
    import numpy as np
    import pyarrow as pa

    if trick == "encoder":
        from goldthread.models.work_items import WorkItem

        def encoder(cls: Any, run_id: str, loop: Any, ds: Any, published_at: Any) -> Any:
            return lambda doc_id: cls(run_id=run_id, loop=loop, ds=ds, doc_id=doc_id,
                                      published_at=published_at).to_message()

        WorkItem.encoder = classmethod(encoder)  # type: ignore[assignment, method-assign]
    elif trick == "gc":
        from goldthread.pipeline import local_runtime

        local_runtime.fewer_gc_passes = contextlib.nullcontext  # type: ignore[assignment]
    elif trick == "bars_table":
        from goldthread.adapters.duckdb_warehouse import arrow_schema
        from goldthread.loops import bars
        from goldthread.models.warehouse import MarketBar, row_id_for
        from goldthread.ports.market_data import from_ns

        def bars_table(b: Any, timeframe: str, source: str) -> pa.Table:
            rows = []
            for i, ts in enumerate(np.asarray(b.ts, dtype=np.int64).tolist()):
                moment = from_ns(ts)
                rows.append(MarketBar(
                    row_id=row_id_for("market_bars", b.symbol, timeframe, str(ts)), ds=moment.date(),
                    symbol=b.symbol, timeframe=timeframe, ts=moment, open=float(b.open[i]), high=float(b.high[i]),
                    low=float(b.low[i]), close=float(b.close[i]), volume=float(b.volume[i]), source=source,
                ).model_dump())
            return pa.Table.from_pylist(rows, schema=arrow_schema(MarketBar))

        bars._bars_table = bars_table
    elif trick == "fee_line":
        from goldthread.loops import rejected_signals
        from goldthread.models.types import quantize9

        def fee_per_unit(signal: Any, entry: Any, exit_: Any) -> Any:
            return quantize9(rejected_signals._fills_total(signal.symbol, signal.asset_class, signal.side,
                                                           signal.created_at.date(), entry, exit_))

        rejected_signals.fee_per_unit = fee_per_unit
    elif trick != "none":
        raise ValueError(f"unknown trick {trick!r}")


def run_dispatch(n: int) -> float:
    """Seconds of the dispatcher alone publishing Loop A's ``n`` items to the local bus (nothing delivered)."""
    from goldthread.pipeline.dispatcher import dispatch

    from bench import data
    from bench.loop_a import _null_logs, embedded_context

    _null_logs()
    with tempfile.TemporaryDirectory(prefix="gt-fast-") as tmp:
        ctx = embedded_context(data.copy_template(n, Path(tmp)))
        ctx.warehouse  # noqa: B018 - tables before the clock starts
        started = time.perf_counter()
        run = dispatch(ctx, "trades", data.DS)
        seconds = time.perf_counter() - started
        ctx.close()
    if run.published != n:
        raise RuntimeError(f"dispatch published {run.published} of {n}")
    return seconds


def one(case: str, trick: str, n: int) -> float:
    """Seconds of ``case`` at size ``n`` with ``trick`` replaced by its reference (``none``: all tricks on)."""
    use_reference(trick)
    if case == "dispatch":
        return run_dispatch(n)
    if case == "a":
        from bench.loop_a import run_goldthread

        return float(run_goldthread(n)["seconds"])
    from bench.loops_bc import run_goldthread as run_bc

    return float(run_bc(n)["seconds"])


def _measure(case: str, trick: str, n: int) -> float:
    done = subprocess.run([sys.executable, "-m", "bench.fast_paths", "--one", case, trick, str(n)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Measure every trick (or ``--only`` some) and print one JSON line each."""
    parser = argparse.ArgumentParser(prog="python -m bench.fast_paths")
    parser.add_argument("--n-a", type=int, default=20_000, help="closed positions for the dispatch and a cases")
    parser.add_argument("--n-bc", type=int, default=10_000, help="signals for the bc case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(TRICKS), help="comma-separated tricks")
    parser.add_argument("--one", nargs=3, metavar=("CASE", "TRICK", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        case, trick, n = args.one
        print(one(case, trick, int(n)))
        return 0
    from bench import data

    tricks = [t for t in args.only.split(",") if t]
    sizes = {"dispatch": args.n_a, "a": args.n_a, "bc": args.n_bc}
    data.template(args.n_a)  # generated once, never timed
    cases = sorted({TRICKS[t] for t in tricks})
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for case in cases:
            for trick in ["none"] + [t for t in tricks if TRICKS[t] == case]:
                times.setdefault((case, trick), []).append(_measure(case, trick, sizes[case]))
    for trick in tricks:
        case = TRICKS[trick]
        fast, plain = statistics.median(times[(case, "none")]), statistics.median(times[(case, trick)])
        print(json.dumps({"trick": trick, "case": case, "n": sizes[case], "fast_s": round(fast, 3),
                          "reference_s": round(plain, 3), "saving_pct": round(100 * (plain - fast) / plain, 1),
                          "runs": args.repeat}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
