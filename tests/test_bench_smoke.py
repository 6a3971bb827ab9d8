"""The benchmark command runs end to end at tiny sizes and writes ``results.json`` with the required keys.

No timing is asserted: the figures of a smoke run mean nothing. Marked slow (it generates data, runs
each case in fresh processes and starts the Firestore emulator for the latency case when present).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"case", "n", "seconds", "items_per_s", "peak_rss_mib"}

pytestmark = pytest.mark.slow


def test_bench_command_writes_results_with_the_required_keys(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    env = {**os.environ, "GOLDTHREAD_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--cases", "a,bc,cost,latency", "--sizes", "300", "--bc-sizes", "200,400",
         "--pandas-subset", "40", "--latency-n", "20", "--real-n", "20", "--repeat", "1", "--output", str(output)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| case | version | n | seconds |" in proc.stdout
    rows = json.loads(output.read_text())
    assert isinstance(rows, list) and rows
    for row in rows:
        assert row.keys() >= REQUIRED, row
    cases = {row["case"] for row in rows}
    assert {"loop_a", "loop_a.pydantic", "loop_a.dlt", "loops_bc", "loops_bc.pandas", "cost",
            "latency.sqlite", "latency.firestore"} <= cases
    compared = [row for row in rows if row.get("reference")]
    assert compared and all("ratio" in row for row in compared)
    ours = next(r for r in rows if r["case"] == "loop_a" and r.get("reference") == "pydantic")
    assert ours["seconds"] is not None and ours["loaded"] + ours["dead_lettered"] == 300
    calls = next(r for r in rows if r["case"] == "loops_bc.calls")
    assert calls["max_fetches_per_symbol_day"] <= 1
