"""The layers hold: the BigQuery stack never imports DuckDB (or SQLite), and the import contracts pass.

The bug this guards: five packages imported each other in a loop, so a BigQuery Cloud Function imported
DuckDB as soon as Loop B or C stored bars (the bar cache built its Arrow rows with the DuckDB adapter's
schema). The first test runs a fresh interpreter configured for the production stack, imports the
functions' entry points and every module that stack can use, builds every port through the registry and
stores a day of bars the way Loops B and C do; neither ``duckdb`` nor ``sqlite3`` may be loaded. The
others run ``lint-imports`` over ``.importlinter`` and check that every module of the package sits in a
layer, so a new module cannot slip past the contracts unplaced.
"""

from __future__ import annotations

import configparser
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import goldthread
import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_ENV = {
    "GOLDTHREAD_HOT": "firestore",
    "GOLDTHREAD_BUS": "pubsub",
    "GOLDTHREAD_WAREHOUSE": "bigquery",
    "GOLDTHREAD_BROKER": "alpaca",
    "GOLDTHREAD_MARKET_DATA": "alpaca",
}
# Building the clients makes no call; these only keep them off real endpoints and real credentials.
OFFLINE_ENV = {
    "GOLDTHREAD_PROJECT": "layers-test",
    "GOLDTHREAD_GIT_HASH": "layers-test",
    "GOLDTHREAD_BIGQUERY_ENDPOINT": "http://127.0.0.1:9",
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
    "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
    "APCA_API_KEY_ID": "layers-test",
    "APCA_API_SECRET_KEY": "layers-test",
}
EMBEDDED_ONLY = (
    "goldthread.adapters.duckdb_warehouse",
    "goldthread.adapters.sqlite_hot_store",
    "goldthread.adapters.sim_broker",
    "goldthread.sim",
    "goldthread.demo",
)
"""Modules that exist for the embedded stack and the demo only; every other module is imported."""

PROBE = r'''
import datetime as dt
import importlib
import json
import pkgutil
import sys

import numpy as np

import main  # functions/main.py: the deployed entry points
import goldthread
from goldthread.loops import get_loop
from goldthread.loops.bars import prefetch
from goldthread.models.warehouse import MarketBar, MarketBarsCoverage
from goldthread.pipeline.context import Context
from goldthread.ports.market_data import Bars, MarketData
from goldthread.ports.warehouse import InsertResult, Warehouse

EMBEDDED_ONLY = tuple(sys.argv[1].split(","))
imported = []
for info in pkgutil.walk_packages(goldthread.__path__, "goldthread."):
    if any(info.name == m or info.name.startswith(m + ".") for m in EMBEDDED_ONLY):
        continue
    importlib.import_module(info.name)
    imported.append(info.name)
loops = [type(get_loop(name)).__name__ for name in ("trades", "rejected_signals", "expired_signals", "accounts")]

production = Context()  # from the environment, as a Cloud Function builds it
built = {port: type(production._get(port)).__name__ for port in ("hot", "bus", "warehouse", "broker", "market_data")}


class Recording(Warehouse):
    """Stands in for BigQuery (which needs the network): answers no query, keeps what is written."""

    name = "bigquery"
    dialect = "bigquery"

    def __init__(self):
        self.rows = {}
        self.views = []
        self.ensured = 0

    def ensure_tables(self):
        self.ensured += 1

    def create_view(self, name, sql):
        self.views.append(name)

    def insert_rows(self, model, rows, *, keys_are_new=False):
        self.rows.setdefault(model.__table__, []).extend(rows)
        return InsertResult(inserted=[r.row_id for r in rows])

    def query(self, sql, params=None):
        return []

    def upsert_rows(self, model, rows, columns):
        return 0


class ThreeBars(MarketData):
    """Three one-minute bars of the asked symbol on 2026-03-02, at 14:30, 14:31 and 14:32 UTC."""

    name = "alpaca"

    def get_bars(self, symbols, timeframe, start, end):
        first = int(dt.datetime(2026, 3, 2, 14, 30, tzinfo=dt.UTC).timestamp()) * 10**9
        ts = np.array([first + i * 60 * 10**9 for i in range(3)], dtype=np.int64)
        prices = [np.array([100.0, 100.5, 101.25]), np.array([100.75, 101.0, 101.5]),
                  np.array([99.5, 100.25, 101.0]), np.array([100.5, 100.75, 101.25]), np.array([10.0, 20.0, 30.0])]
        return {s: Bars.of(s, ts, prices, "1Min") for s in symbols}


warehouse = Recording()
ctx = Context(production.settings, warehouse=warehouse, market_data=ThreeBars(),
              clock=lambda: dt.datetime(2026, 3, 4, tzinfo=dt.UTC))
stored = prefetch(ctx, {"AAPL": {dt.date(2026, 3, 2)}})
bars = warehouse.rows.get(MarketBar.__table__, [])
coverage = warehouse.rows.get(MarketBarsCoverage.__table__, [])
print(json.dumps({
    "imported": imported,
    "loops": loops,
    "built": built,
    "stored": stored,
    "bars": [[b.symbol, b.ts.isoformat(), str(b.open), str(b.close), b.source] for b in bars],
    "coverage": [[c.symbol, c.ds.isoformat(), c.bar_count] for c in coverage],
    "ensured": warehouse.ensured,
    "views": warehouse.views,
    "engines": sorted(m for m in sys.modules if m.split(".")[0] in ("duckdb", "sqlite3", "_sqlite3")),
}))
'''


def _all_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(goldthread.__path__, "goldthread.")]


def test_bigquery_stack_never_imports_duckdb_or_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLDTHREAD_", "APCA_"))}
    env.update(PRODUCTION_ENV)
    env.update(OFFLINE_ENV)
    env["GOLDTHREAD_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared"), str(ROOT / "functions")])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(EMBEDDED_ONLY)], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["engines"] == [], f"the BigQuery stack loaded {out['engines']}"
    assert out["built"] == {"hot": "FirestoreHotStore", "bus": "PubSubBus", "warehouse": "BigQueryWarehouse",
                            "broker": "AlpacaBroker", "market_data": "AlpacaMarketData"}
    assert out["loops"] == ["TradesLoop", "RejectedSignalsLoop", "ExpiredSignalsLoop", "AccountsLoop"]
    expected = [m for m in _all_modules() if not any(m == e or m.startswith(e + ".") for e in EMBEDDED_ONLY)]
    assert out["imported"] == expected
    for needed in ("goldthread.loops.bars", "goldthread.pipeline.subscriber", "goldthread.pipeline.dispatcher",
                   "goldthread.patches.fee_patch", "goldthread.bi.canary", "goldthread.adapters.bigquery_warehouse"):
        assert needed in out["imported"]
    # the bars really went through the warehouse port, as Loops B and C store them (figures written above)
    assert out["bars"] == [
        ["AAPL", "2026-03-02T14:30:00+00:00", "100.000000000", "100.500000000", "alpaca"],
        ["AAPL", "2026-03-02T14:31:00+00:00", "100.500000000", "100.750000000", "alpaca"],
        ["AAPL", "2026-03-02T14:32:00+00:00", "101.250000000", "101.250000000", "alpaca"],
    ]
    assert out["coverage"] == [["AAPL", "2026-03-02", 3]]
    assert out["ensured"] == 1
    assert out["views"] == [], "on BigQuery Terraform declares the marts; the Context must not create them"


def _lint_imports() -> str:
    pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -r requirements-dev.txt)")
    found = Path(sys.executable).with_name("lint-imports")
    command = str(found) if found.exists() else shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter is installed but its lint-imports command is not on the PATH")
    return command


def test_import_contracts_hold(tmp_path: Path) -> None:
    command = _lint_imports()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "shared"))
    done = subprocess.run(
        [command, "--config", str(ROOT / ".importlinter"), "--no-cache"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " 0 broken" in done.stdout


def _layer_modules() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    lines = config["importlinter:contract:layers"]["layers"].split("\n")
    return [m.strip() for line in lines for m in line.replace("|", ":").split(":") if m.strip()]


def test_every_module_sits_in_a_layer() -> None:
    layers = _layer_modules()
    assert len(layers) == len(set(layers)), "a module is in two layers"
    unplaced = []
    for info in pkgutil.walk_packages(goldthread.__path__, "goldthread."):
        if info.ispkg and any(layer.startswith(info.name + ".") for layer in layers):
            continue  # a package split across layers (bi, pipeline): its modules are placed one by one
        if not any(info.name == layer or info.name.startswith(layer + ".") for layer in layers):
            unplaced.append(info.name)
    assert unplaced == [], f"add these to a layer in .importlinter (README 'Architecture'): {unplaced}"


def test_the_local_bus_is_the_only_in_process_bus() -> None:
    from goldthread.adapters.local_bus import LocalBus
    from goldthread.adapters.pubsub_bus import PubSubBus
    from goldthread.ports.bus import InProcessBus

    assert isinstance(LocalBus(project="layers"), InProcessBus)
    assert not issubclass(PubSubBus, InProcessBus), "the canary would drain Pub/Sub instead of waiting for it"
