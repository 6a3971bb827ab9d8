"""The worker ``test_crash_safety`` kills: one scheduler night of the pipeline over the embedded stores in a
directory, able to SIGKILL itself at the Nth call of a chosen function, before or after the call.

Run as ``python -m tests.reliability.crash_worker HOME PHASE`` (``run``, ``rerun`` or ``count``) or through
``work`` in a forked process. The night (``STEPS``): Loop A, Loop D, Loop C and Loop B for the last day,
a person fixing a broken position through the writer API, a replay of it, the price patch and the fee
patch. Subscriptions take batches of three and the dispatcher publishes in batches of four, so every step
spans several calls of the hooked functions.

The bus is a ``JournalBus``: the local bus with Pub/Sub's durability, which an in-process bus lacks. A
message is journaled (SQLite) before ``publish`` returns and marked acknowledged when its handler succeeds
or the bus dead-letters it; ``redeliver`` republishes every message never acknowledged, which is what
Pub/Sub does after a subscriber dies. ``rerun`` is what happens after a crash: a new process, two hours
later (past any lease and ``run_timeout``, though a dead holder's lease is taken over at once anyway:
``tests/test_run_ledger.py`` re-runs immediately), redelivers, then runs the same night again; a last look
two more hours later marks what is still RUNNING as STALLED, as the next dispatch or ``goldthread runs``
does.

Hooks (``KILL_AT`` = ``"Class.method:N:before|after"``): the warehouse's ``insert_rows`` and
``upsert_rows``, the hot store's ``claim``, ``create_many``, ``record_outcomes``, ``update`` and ``put``, and
the bus's ``publish_batch``. ``count`` mode runs the night without killing and writes, for every call of every hook,
which step made it (``calls.json``), so the test can choose kill points in every step.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from cloudevents.http import CloudEvent
from goldthread.adapters import local_bus as local_bus_module
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus, Subscription
from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.ledger import runs
from goldthread.models import LivePosition, SchemaGuardian
from goldthread.patches.fee_patch import patch_fees
from goldthread.patches.price_patch import patch_prices
from goldthread.pipeline import dispatcher
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.pipeline.replay import replay
from goldthread.ports.bus import BusMessage
from goldthread.writer import POSITIONS, HotWriter

SETTLE = dt.datetime(2024, 4, 20, 6, 0, tzinfo=dt.UTC)  # the broker's "now": every fill and fee is posted
LAST_DAY = dt.date(2024, 4, 6)  # the last simulated day (build_month(start=2024-04-01, days=6))
FIXABLE = "pos-broken-qty"  # the person fixes this one (qty -5 -> 5) and replays it


class JournalBus(LocalBus):
    """``LocalBus`` whose messages outlive the process, as Pub/Sub's do (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        super().__init__(project="crash")
        self.journal = sqlite3.connect(str(path), isolation_level=None)
        self.journal.execute("PRAGMA journal_mode=WAL")
        self.journal.execute(
            "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, topic TEXT NOT NULL, data BLOB NOT NULL, "
            "attributes TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0)"
        )

    def publish_batch(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        """Accept the messages and journal them before returning their ids (a durable accept)."""
        ids = super().publish_batch(topic, messages)
        with self.journal:
            self.journal.executemany(
                "INSERT INTO messages (id, topic, data, attributes) VALUES (?,?,?,?)",
                [(mid, topic, bytes(data), json.dumps(dict(attrs))) for mid, (data, attrs) in zip(ids, messages,
                                                                                                  strict=True)],
            )
        return ids

    def subscribe(self, topic: str, subscription: str, handler: Any = None, *, batch_handler: Any = None,
                  message_handler: Any = None, **policy: Any) -> Subscription:
        """Subscribe, marking each message acknowledged once its handler succeeded."""
        if message_handler is not None:
            def acking_messages(messages: Sequence[BusMessage]) -> Sequence[BaseException | None]:
                outcomes = message_handler(messages)
                self._ack([m.message_id for m, outcome in zip(messages, outcomes, strict=True) if outcome is None])
                return outcomes

            return super().subscribe(topic, subscription, message_handler=acking_messages, **policy)
        inner = batch_handler or local_bus_module._single(handler)

        def acking(events: Sequence[CloudEvent]) -> Sequence[BaseException | None]:
            outcomes = inner(events)
            self._ack([event["id"] for event, outcome in zip(events, outcomes, strict=True) if outcome is None])
            return outcomes

        return super().subscribe(topic, subscription, batch_handler=acking, **policy)

    def _retry_or_dead_letter(self, sub: Subscription, message: BusMessage) -> None:
        super()._retry_or_dead_letter(sub, message)
        if message.delivery_attempt >= sub.max_delivery_attempts and sub.dead_letter_topic:
            self._ack([message.message_id])  # forwarded to the dead-letter topic: done here

    def _ack(self, ids: Sequence[str]) -> None:
        if ids:
            with self.journal:
                self.journal.executemany("UPDATE messages SET acked = 1 WHERE id = ?", [(i,) for i in ids])

    def unacked(self) -> int:
        """Messages accepted but never acknowledged."""
        return int(self.journal.execute("SELECT COUNT(*) FROM messages WHERE acked = 0").fetchone()[0])

    def redeliver(self) -> int:
        """Publish every unacknowledged message again (then retire the old copy); returns how many."""
        rows = self.journal.execute("SELECT id, topic, data, attributes FROM messages WHERE acked = 0").fetchall()
        for old_id, topic, data, attributes in rows:
            self.publish_batch(topic, [(bytes(data), json.loads(attributes))])
            self._ack([old_id])
        return len(rows)

    def close(self) -> None:
        """Close the journal."""
        self.journal.close()


# -- hooks --------------------------------------------------------------------------------------------

HOOKS: dict[str, tuple[type, str]] = {
    "DuckDbWarehouse.insert_rows": (DuckDbWarehouse, "insert_rows"),
    "DuckDbWarehouse.upsert_rows": (DuckDbWarehouse, "upsert_rows"),
    "SqliteHotStore.claim": (SqliteHotStore, "claim"),
    "SqliteHotStore.create_many": (SqliteHotStore, "create_many"),
    "SqliteHotStore.record_outcomes": (SqliteHotStore, "record_outcomes"),
    "SqliteHotStore.update": (SqliteHotStore, "update"),
    "SqliteHotStore.put": (SqliteHotStore, "put"),
    "JournalBus.publish_batch": (JournalBus, "publish_batch"),
}

_STEP = ["setup"]
_CALLS: list[tuple[str, int, str]] = []


_HOME: list[Path] = []


def _die() -> None:
    """SIGKILL this process, leaving a ``killed`` mark first: the forkserver that started it may lose its exit
    status when two of its children die at once (it reports 255), and the test must still know it was killed."""
    if _HOME:
        (_HOME[0] / "killed").touch()
    os.kill(os.getpid(), signal.SIGKILL)


def _install_hooks(kill_at: str | None, count: bool) -> None:
    target = when = None
    nth = 0
    if kill_at:
        target, n, when = kill_at.split(":")
        nth = int(n)
    seen: dict[str, int] = {}
    for name, (owner, attr) in HOOKS.items():
        real = getattr(owner, attr)

        def hooked(*args: Any, __name: str = name, __real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            seen[__name] = seen.get(__name, 0) + 1
            if count:
                _CALLS.append((__name, seen[__name], _STEP[0]))
            fatal = __name == target and seen[__name] == nth
            if fatal and when == "before":
                _die()
            result = __real(*args, **kwargs)
            if fatal and when == "after":
                _die()
            return result

        setattr(owner, attr, functools.wraps(real)(hooked))


# -- the night ----------------------------------------------------------------------------------------


class Clock:
    """The pipeline's clock: the broker's settle time plus an offset (hours passed since the first run)."""

    def __init__(self, hours: float) -> None:
        self.offset = dt.timedelta(hours=hours)

    def __call__(self) -> dt.datetime:
        return SETTLE + self.offset


def open_context(home: Path, clock: Clock) -> Context:
    """The embedded stack over ``home`` with the journaled bus; the broker's clock stays at ``SETTLE``."""
    market = SyntheticMarketData()
    settings = Settings(home=home, validity_window=dt.timedelta(days=1), expiry_lookahead=dt.timedelta(hours=2))
    ctx = Context(
        settings, clock=clock, hot=SqliteHotStore(home / "hot.sqlite"), bus=JournalBus(home / "journal.sqlite"),
        warehouse=DuckDbWarehouse(home / "warehouse.duckdb"),
        broker=SimulatedBroker(home / "broker.sqlite", clock=lambda: SETTLE, market=market), market_data=market,
    )
    wire_local_bus(ctx, batch_size=3, min_backoff=0)
    return ctx


def _deliver(ctx: Context) -> None:
    bus = ctx.bus
    assert isinstance(bus, LocalBus)
    bus.run_until_idle()


def _fix(ctx: Context) -> None:
    """A person repairs the broken position through the writer API (only while it is still broken)."""
    doc = ctx.hot.get(POSITIONS, FIXABLE)
    if doc is not None and Decimal(str(doc["qty"])) < 0:
        fixed = SchemaGuardian.validate(LivePosition, {**doc, "qty": str(-Decimal(str(doc["qty"]))),
                                                       "dead_lettered_run_id": None}, FIXABLE)
        HotWriter(ctx.hot).save_position(fixed)


def _replay(ctx: Context) -> None:
    replay(ctx, ids=[FIXABLE])
    _deliver(ctx)


STEPS: list[tuple[str, Callable[[Context], Any]]] = [
    ("loop_trades", lambda ctx: run_loop(ctx, "trades", LAST_DAY)),
    # a past day is read from the portfolio history, which has no Saturday: the last weekday, Friday
    ("loop_accounts", lambda ctx: run_loop(ctx, "accounts", LAST_DAY - dt.timedelta(days=1))),
    ("loop_expired", lambda ctx: run_loop(ctx, "expired_signals", LAST_DAY)),
    ("loop_rejected", lambda ctx: run_loop(ctx, "rejected_signals", LAST_DAY)),
    ("fix", _fix),
    ("replay", _replay),
    ("patch_prices", patch_prices),
    ("patch_fees", lambda ctx: patch_fees(ctx, LAST_DAY)),
]


def work(home: str, phase: str, kill_at: str | None = None) -> None:
    """Run ``phase`` (``run``, ``count`` or ``rerun``) over the stores in ``home`` (output in ``PHASE.log``)."""
    path = Path(home)
    _HOME[:] = [path]
    log = os.open(path / f"{phase}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    dispatcher.PUBLISH_BATCH = 4
    _install_hooks(kill_at if phase == "run" else None, count=phase == "count")
    clock = Clock(2 if phase == "rerun" else 0)
    ctx = open_context(path, clock)
    bus = ctx.bus
    assert isinstance(bus, JournalBus)
    report: dict[str, Any] = {}
    if phase == "rerun":
        _STEP[0] = "redeliver"
        report["redelivered"] = bus.redeliver()
        _deliver(ctx)
    for name, step in STEPS:
        _STEP[0] = name
        step(ctx)
    if phase == "rerun":  # later still: the next dispatch (or `goldthread runs`) marks what made no progress
        clock.offset += dt.timedelta(hours=2)
        report["stalled"] = runs.mark_stalled(ctx)
    report["unacked"] = bus.unacked()
    if phase == "count":
        report["calls"] = _CALLS
    ctx.close()
    (path / f"{phase}.json").write_text(json.dumps(report))


def main(argv: Sequence[str]) -> int:
    """``python -m tests.reliability.crash_worker HOME PHASE [Class.method:N:before|after]``."""
    work(argv[0], argv[1], argv[2] if len(argv) > 2 else os.environ.get("KILL_AT"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
