"""One measurement in a fresh process: ``python -m bench.worker '<json spec>'``.

The spec names a ``target`` (see ``TARGETS``) and its keyword arguments. The worker runs it, adds its
own peak resident memory (``getrusage`` of this process; its children's separately), the load average
(other work on the machine skews the figures) and which
``goldthread`` it imported (so a ``--compare-ref`` run can prove it measured the other version), and
prints one line ``BENCH_RESULT <json>`` on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
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


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size of this process (``RUSAGE_CHILDREN``: of its largest waited-for child), in MiB."""
    per_mib = 1024 * 1024 if platform.system() == "Darwin" else 1024  # macOS reports bytes, Linux KiB
    return round(resource.getrusage(who).ru_maxrss / per_mib, 1)


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
    result["children_peak_rss_mib"] = peak_rss_mib(resource.RUSAGE_CHILDREN)  # e.g. the emulators it started
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine while this ran
    result["goldthread"] = str(goldthread.__file__)
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
