"""Dashboard build time over a year of demo data: ``run(n_days=365) -> {"seconds": ..., "rows": ...}``.

The data is what ``goldthread demo --days N`` leaves (simulated trading archived day by day through every
loop, patches and a canary), made once per ``N`` and seed and kept under the system temp directory, so
repeated runs measure only the dashboard. What is timed is ``build_dashboard``: every mart queried on
DuckDB (the views over the facts are computed then) and the self-contained HTML written. The ``job_runs``
sync that ``goldthread dashboard`` does first is timed separately (``sync_seconds``).

    python -m bench --cases dashboard            # through the benchmark command
    python bench/bench_dashboard.py 365          # alone
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_DAYS = 365
SEED = 42


def demo_home(days: int, seed: int = SEED) -> tuple[Path, float]:
    """A home holding ``days`` days of demo data (built once); returns it and the seconds building took."""
    from goldthread import logs
    from goldthread.bi.canary import run_canary
    from goldthread.config import Settings
    from goldthread.demo import run_demo
    from rich.console import Console

    home = Path(tempfile.gettempdir()) / f"goldthread-bench-dashboard-{days}d-s{seed}"
    marker = home / "complete.json"
    if marker.exists():
        return home, float(json.loads(marker.read_text())["seconds"])
    shutil.rmtree(home, ignore_errors=True)
    logs.configure(level="ERROR")  # the demo's deliberate dead letters are expected
    started = time.perf_counter()
    ctx, _ = run_demo(Settings(home=home), days=days, seed=seed, console=Console(quiet=True))
    run_canary(ctx)
    ctx.close()
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"seconds": seconds}))
    return home, seconds


def run(n_days: int = DEFAULT_DAYS) -> dict[str, Any]:
    """Build the dashboard from ``n_days`` of demo data; seconds for the build, rows embedded, page size."""
    from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
    from goldthread.bi.dashboard import build_dashboard, dashboard_data
    from goldthread.bi.runs_sync import sync_job_runs
    from goldthread.config import Settings
    from goldthread.pipeline.context import Context

    home, demo_seconds = demo_home(n_days)
    settings = Settings(home=home)
    ctx = Context(settings)
    try:
        started = time.perf_counter()
        synced = sync_job_runs(ctx)
        sync_seconds = time.perf_counter() - started
        warehouse = ctx.warehouse
        assert isinstance(warehouse, DuckDbWarehouse)
        out = home / "dashboard.html"
        started = time.perf_counter()
        build_dashboard(warehouse, out)
        seconds = time.perf_counter() - started
        data = dashboard_data(warehouse)
        rows = sum(len(v) for v in data.values() if isinstance(v, list))
        trades = int(warehouse.query("SELECT COUNT(*) AS n FROM fact_trades")[0]["n"])
    finally:
        ctx.close()
    return {
        "seconds": round(seconds, 4), "rows": rows, "items": n_days, "days": n_days, "fact_trades": trades,
        "job_runs_synced": synced, "sync_seconds": round(sync_seconds, 4),
        "html_bytes": out.stat().st_size, "demo_seconds": round(demo_seconds, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DAYS), indent=2))
