"""The context a run works in: settings, a clock, and the adapters behind each port, built lazily.

A Cloud Function builds one ``Context`` per instance (adapters are reused across invocations); the
local runner and the tests build one with embedded adapters or inject their own.

Layering: the context sits below the loops and the rest of the pipeline, above the ports. It reaches an
adapter only through ``goldthread.adapters.registry``, which imports the configured one by name when a port
is first used, so a process imports just the backends it is configured for (a BigQuery function never
imports DuckDB). It imports ``goldthread.bi.marts`` (the marts' definitions, which need nothing above the
ports) to create the marts on an embedded warehouse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from goldthread.adapters.registry import build
from goldthread.config import Settings, load_settings
from goldthread.ports.broker import Broker
from goldthread.ports.bus import Bus
from goldthread.ports.hot_store import HotStore
from goldthread.ports.market_data import MarketData
from goldthread.ports.warehouse import Warehouse


class Context:
    """Adapters and settings for one process; each port is built on first use."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        hot: HotStore | None = None,
        bus: Bus | None = None,
        warehouse: Warehouse | None = None,
        broker: Broker | None = None,
        market_data: MarketData | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._adapters: dict[str, Any] = {
            k: v
            for k, v in {"hot": hot, "bus": bus, "warehouse": warehouse, "broker": broker,
                         "market_data": market_data}.items()
            if v is not None
        }
        self.cache: dict[str, Any] = {}
        self._tables_ready = False

    def now(self) -> dt.datetime:
        """The current time (UTC); the simulator and tests may move it."""
        return self._clock()

    def _get(self, port: str) -> Any:
        if port not in self._adapters:
            adapter = build(port, self.settings)
            if port == "broker" and hasattr(adapter, "clock"):
                adapter.clock = self.now
            self._adapters[port] = adapter
        return self._adapters[port]

    @property
    def hot(self) -> HotStore:
        """The hot store."""
        return self._get("hot")  # type: ignore[no-any-return]

    @property
    def bus(self) -> Bus:
        """The bus."""
        return self._get("bus")  # type: ignore[no-any-return]

    @property
    def warehouse(self) -> Warehouse:
        """The warehouse, its tables created on first use, and on a warehouse whose views live beside its tables
        (the embedded DuckDB file) the BI marts too, so they exist wherever the tables do. On BigQuery Terraform
        declares the views."""
        wh: Warehouse = self._get("warehouse")
        if not self._tables_ready and getattr(wh, "read_only", False):
            self._tables_ready = True  # a store opened read-only is read as it is: nothing is created
        if not self._tables_ready:
            wh.ensure_tables()
            if getattr(wh, "views_follow_tables", False):
                from goldthread.bi.marts import ensure_marts  # only where the marts are made here, not on BigQuery

                ensure_marts(wh)
            self._tables_ready = True
        return wh

    @property
    def broker(self) -> Broker:
        """The broker."""
        return self._get("broker")  # type: ignore[no-any-return]

    @property
    def market_data(self) -> MarketData:
        """The market-data source."""
        return self._get("market_data")  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close every adapter that was built."""
        for adapter in self._adapters.values():
            close = getattr(adapter, "close", None)
            if close:
                close()
        self._adapters.clear()
