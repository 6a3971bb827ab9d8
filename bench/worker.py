"""One measurement in a fresh process: ``python -m bench.worker '<json spec>'``.

The spec names a ``target`` (see ``TARGETS``) and its keyword arguments. The worker runs it, adds its
own peak resident memory (``getrusage``: this process and any children it waited for) and which
``goldthread`` it imported (so a ``--compare-ref`` run can prove it measured the other version), and
prints one line ``BENCH_RESULT <json>`` on stdout.
"""

from __future__ import annotations

import importlib
import json
import platform
import resource
import sys
import traceback
from collections.abc import Callable
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
TARGETS: dict[str, str] = {
    "prepare_a": "bench.data:prepare",
    "a": "bench.loop_a:run_goldthread",
    "a_dlt": "bench.loop_a:run_dlt",
    "a_pydantic": "bench.loop_a:run_pydantic",
    "bc": "bench.loops_bc:run_goldthread",
    "bc_pandas": "bench.loops_bc:run_pandas",
    "real": "bench.real_stack:run",
    "latency_sqlite": "bench.latency:run_sqlite",
    "latency_firestore": "bench.latency:run_firestore",
    "dashboard": "bench.dashboard_case:run",
}


def peak_rss_mib() -> float:
    """Peak resident set size of this process (or of a waited-for child, if larger), in MiB."""
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = max(u.ru_maxrss for u in usage)
    per_mib = 1024 * 1024 if platform.system() == "Darwin" else 1024  # macOS reports bytes, Linux KiB
    return round(peak / per_mib, 1)


def resolve(target: str) -> Callable[..., dict[str, Any]]:
    """The function behind a target name."""
    module, _, name = TARGETS[target].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    """Run the spec given as the first argument and print its result line."""
    spec = json.loads((argv or sys.argv[1:])[0])
    try:
        result = resolve(spec["target"])(**spec.get("kwargs", {}))
    except Exception as exc:  # reported to the runner, which shows it in the table
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    import goldthread

    result["peak_rss_mib"] = peak_rss_mib()
    result["goldthread"] = str(goldthread.__file__)
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
