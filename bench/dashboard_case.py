"""The BI dashboard case, when ``bench/bench_dashboard.py`` (owned by the BI work) is present.

Its ``run(days) -> dict`` does the measuring; this adapter only names ``days`` as the case's ``n`` and
makes sure the result carries ``seconds`` and ``items`` as every other case does.
"""

from __future__ import annotations

import importlib
from typing import Any


def run(n: int) -> dict[str, Any]:
    """``bench.bench_dashboard.run(days=n)``, or skipped when the module is absent."""
    try:
        module = importlib.import_module("bench.bench_dashboard")
    except ImportError as exc:
        return {"skipped": f"bench/bench_dashboard.py not importable: {exc}"}
    result = dict(module.run(n))
    result.setdefault("items", n)
    if "seconds" not in result:
        return {"error": f"bench_dashboard.run returned no 'seconds': {sorted(result)}"}
    return result
