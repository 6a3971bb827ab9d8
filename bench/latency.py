"""Case 5: how long a trading bot waits for ``HotWriter.record_signal``, on SQLite and on the Firestore emulator.

Each call validates the signal (SchemaGuardian) and writes the document; ``n`` distinct signals are
written one after another and every call is timed. The spec's tier for a signal write is under 100 ms.
The Firestore figure is against Google's emulator on this machine (a JVM on localhost): it shows the
client-side cost and the round trip, not production's network.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any


def _signals(n: int) -> list[Any]:
    from goldthread.models import AssetClass, LiveSignal, Side, SignalStatus

    start = dt.datetime(2024, 3, 5, 15, 0, tzinfo=dt.UTC)
    out = []
    for i in range(n):
        price = Decimal("100") + Decimal(i % 100) / 10
        created = start + dt.timedelta(seconds=i)
        out.append(LiveSignal(
            signal_id=f"lat-{i:07d}", strategy_id="momo", strategy_version="1.0", symbol="AAPL",
            asset_class=AssetClass.EQUITY, side=Side.LONG, signal_price=price, take_profit=price * Decimal("1.05"),
            stop_loss=price * Decimal("0.97"), created_at=created, expires_at=created + dt.timedelta(hours=4),
            status=SignalStatus.ACTIVE,
        ))
    return out


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of a list of milliseconds."""
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"p50_ms": round(statistics.median(ordered), 3), "p90_ms": round(at(0.90), 3),
            "p99_ms": round(at(0.99), 3), "max_ms": round(ordered[-1], 3)}


def _time_writes(hot: Any, n: int, warmup: int = 20) -> dict[str, Any]:
    from goldthread.writer import HotWriter

    writer = HotWriter(hot)
    signals = _signals(n + warmup)
    for signal in signals[:warmup]:  # connections, caches, JIT of the emulator
        writer.record_signal(signal)
    samples = []
    started = time.perf_counter()
    for signal in signals[warmup:]:
        t0 = time.perf_counter()
        writer.record_signal(signal)
        samples.append((time.perf_counter() - t0) * 1000)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "items": n, **percentiles(samples)}


def run_sqlite(n: int) -> dict[str, Any]:
    """Signal writes into the embedded SQLite hot store (WAL, a file on local disk)."""
    from goldthread.adapters.sqlite_hot_store import SqliteHotStore

    with tempfile.TemporaryDirectory(prefix="gt-bench-lat-") as tmp:
        hot = SqliteHotStore(Path(tmp) / "hot.sqlite")
        result = _time_writes(hot, n)
        hot.close()
    return {**result, "backend": "sqlite"}


def run_firestore(n: int) -> dict[str, Any]:
    """Signal writes into Google's Firestore emulator, started for this measurement."""
    from bench.emulator_stack import emulator_or_skip

    with emulator_or_skip("firestore") as (firestore, skipped):
        if skipped:
            return {"skipped": skipped}
        from goldthread.adapters.firestore_hot_store import FirestoreHotStore

        hot = FirestoreHotStore(f"bench-{int(time.time())}")
        result = _time_writes(hot, n)
        hot.close()
    return {**result, "backend": f"firestore emulator ({firestore.host_port})"}
