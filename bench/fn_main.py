"""The Cloud Function source the real-stack case serves with functions-framework: ``functions/main.py``'s
``subscribe_trades``, with the operations it performs counted and each invocation timed.

``BENCH_COUNTS_DIR`` names a directory; after every invocation the worker process writes there its
operation counters (``ops-<pid>.json``) and appends one line per item to ``items-<pid>.jsonl``:
the Pub/Sub publish time of the message, when the function started and finished, whether it
raised (a nack), and the worker's peak resident memory so far (what sizing the function's memory needs; a
worker serves several requests at once, so it is an upper bound for one request per instance). The
benchmark reads them once the run is over.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import functions_framework

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import ops_counter  # noqa: E402

ops_counter.install()
_spec = importlib.util.spec_from_file_location("goldthread_functions_main", REPO_ROOT / "functions" / "main.py")
assert _spec and _spec.loader
_main = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_main)

_OUT = Path(os.environ.get("BENCH_COUNTS_DIR", "."))
_LOCK = threading.Lock()


def _publish_time(event: Any) -> float | None:
    try:
        text = str(event.data["message"]["publishTime"])
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


@functions_framework.cloud_event
def subscribe_trades(cloud_event: Any) -> None:
    """``functions/main.py:subscribe_trades``, timed and counted."""
    started = time.time()
    failed = False
    try:
        _main.subscribe_trades(cloud_event)
    except BaseException:
        failed = True
        raise
    finally:
        finished = time.time()
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the worker's peak so far (Linux: KiB)
        line = json.dumps({"published": _publish_time(cloud_event), "started": started, "finished": finished,
                           "failed": failed, "peak_rss_mib": round(peak_mib, 1)})
        with _LOCK:
            ops_counter.add("function_invocations")
            ops_counter.add("function_seconds", finished - started)
            ops_counter.add("function_billed_seconds", max(1, math.ceil((finished - started) * 10)) / 10)
            with open(_OUT / f"items-{os.getpid()}.jsonl", "a") as f:
                f.write(line + "\n")
            ops_counter.write(_OUT / f"ops-{os.getpid()}.json")
