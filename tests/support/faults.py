"""Fault injection for tests, kept out of the production adapters: a stopped bus, a warehouse refusing writes.

Each helper shadows one adapter instance's methods for the duration of a ``with`` block (an instance
attribute wins over the class's method), so the adapter code that runs in production carries no test
switch, and the fault is exactly what the real failure raises at the port: ``StoreUnavailableError`` from
a bus that cannot publish, ``WarehouseWriteError`` from a warehouse that refuses writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from goldthread.errors import StoreUnavailableError, WarehouseWriteError
from goldthread.ports.bus import Bus
from goldthread.ports.warehouse import Warehouse


@contextlib.contextmanager
def bus_stopped(bus: Bus) -> Iterator[None]:
    """While inside, every publish to ``bus`` fails as an unreachable Pub/Sub does (transient)."""

    def refuse(topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        raise StoreUnavailableError(f"bus is stopped; cannot publish to {topic!r}")

    def refuse_one(topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        raise StoreUnavailableError(f"bus is stopped; cannot publish to {topic!r}")

    with _shadowed(bus, publish_batch=refuse, publish=refuse_one):
        yield


@contextlib.contextmanager
def warehouse_refusing_writes(warehouse: Warehouse) -> Iterator[None]:
    """While inside, every write to ``warehouse`` fails as a warehouse refusing writes does (transient)."""

    def refuse(model: Any, *_args: Any, **_kwargs: Any) -> Any:
        raise WarehouseWriteError(f"warehouse refuses writes to {model.__table__}")

    with _shadowed(warehouse, insert_rows=refuse, upsert_rows=refuse, load_arrow=refuse):
        yield


@contextlib.contextmanager
def _shadowed(target: object, **methods: Any) -> Iterator[None]:
    for name, method in methods.items():
        setattr(target, name, method)
    try:
        yield
    finally:
        for name in methods:
            delattr(target, name)
