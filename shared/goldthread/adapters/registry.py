"""One registry of adapters: port name -> backend name -> factory, imported lazily.

Choosing the production stack is configuration only (``GOLDTHREAD_HOT=firestore`` ...). Factories
import their module when called, so a Cloud Function that uses Firestore never imports DuckDB and the
local runner never imports a Google SDK.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from goldthread.config import Settings
from goldthread.errors import ConfigError


def _tell(message: str) -> None:
    """Say on stderr what a local command waits for (the command line shows only errors by default)."""
    print(f"goldthread: {message}", file=sys.stderr, flush=True)


def _make(module: str, cls: str, build: Callable[[Any, Settings], Any]) -> Callable[[Settings], Any]:
    def factory(settings: Settings) -> Any:
        klass = getattr(importlib.import_module(f"goldthread.adapters.{module}"), cls)
        return build(klass, settings)

    return factory


REGISTRY: dict[str, dict[str, Callable[[Settings], Any]]] = {
    "hot": {
        "sqlite": _make("sqlite_hot_store", "SqliteHotStore", lambda k, s: k(s.hot_path, read_only=s.read_only)),
        "firestore": _make("firestore_hot_store", "FirestoreHotStore", lambda k, s: k(project=s.project)),
    },
    "bus": {
        "local": _make("local_bus", "LocalBus", lambda k, s: k(project=s.project)),
        "pubsub": _make("pubsub_bus", "PubSubBus", lambda k, s: k(project=s.project)),
    },
    "warehouse": {
        "duckdb": _make("duckdb_warehouse", "DuckDbWarehouse", lambda k, s: k(
            s.warehouse_path, read_only=s.read_only, wait_seconds=s.warehouse_wait.total_seconds(), on_wait=_tell)),
        "bigquery": _make(
            "bigquery_warehouse", "BigQueryWarehouse", lambda k, s: k(project=s.project, dataset=s.dataset)
        ),
    },
    "market_data": {
        "synthetic": _make("synthetic_market_data", "SyntheticMarketData", lambda k, s: k()),
        "file": _make("synthetic_market_data", "FileMarketData", lambda k, s: k(s.bars_file)),
        "alpaca": _make("alpaca_market_data", "AlpacaMarketData", lambda k, s: k()),
    },
    "broker": {
        "sim": _make("sim_broker", "SimulatedBroker", lambda k, s: k(s.broker_path)),
        "alpaca": _make("alpaca_broker", "AlpacaBroker", lambda k, s: k()),
    },
}


def build(port: str, settings: Settings) -> Any:
    """Instantiate the adapter configured for ``port``."""
    backend = getattr(settings, port)
    try:
        factory = REGISTRY[port][backend]
    except KeyError:
        known = ", ".join(sorted(REGISTRY.get(port, {})))
        raise ConfigError(f"unknown {port} backend {backend!r}; choose one of: {known}") from None
    return factory(settings)
