"""Fixtures that hand each contract test one adapter of its port: the embedded one and the cloud one.

Cloud adapters run against the real emulators (``tests.real.conftest`` starts each once per session)
and carry the ``emulator`` mark. An adapter whose module is not importable yet is skipped with that
reason, and picked up as soon as it lands.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from goldthread.ports.bus import Bus, BusMessage, message_from_event
from goldthread.ports.hot_store import HotStore
from goldthread.ports.warehouse import Warehouse

from tests.real.conftest import (  # noqa: F401 - fixtures shared with the emulator tests
    bigquery_emulator,
    firestore_emulator,
    firestore_project,
    pubsub_emulator,
    unique_name,
)
from tests.support import emulators

PROJECT = "goldthread-test"


def _adapter(module: str, cls: str) -> Any:
    mod = pytest.importorskip(f"goldthread.adapters.{module}", reason=f"goldthread.adapters.{module} not there yet")
    klass = getattr(mod, cls, None)
    if klass is None:
        pytest.skip(f"goldthread.adapters.{module}.{cls} not there yet")
    return klass


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def hot_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HotStore]:
    """Each hot store: ``SqliteHotStore`` on a temp file, ``FirestoreHotStore`` on the emulator."""
    if request.param == "sqlite":
        store = _adapter("sqlite_hot_store", "SqliteHotStore")(tmp_path / "hot.sqlite")
    else:
        project = request.getfixturevalue("firestore_project")
        store = _adapter("firestore_hot_store", "FirestoreHotStore")(project)
    yield store
    store.close()


@pytest.fixture(params=["duckdb", pytest.param("bigquery", marks=pytest.mark.emulator)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """Each warehouse with its tables created: DuckDB on a temp file, BigQuery on bqemulator (a dataset
    of its own per test)."""
    if request.param == "duckdb":
        wh = _adapter("duckdb_warehouse", "DuckDbWarehouse")(tmp_path / "warehouse.duckdb")
    else:
        request.getfixturevalue("bigquery_emulator")
        dataset = request.getfixturevalue("unique_name")
        wh = _adapter("bigquery_warehouse", "BigQueryWarehouse")(PROJECT, dataset)
    wh.ensure_tables()
    yield wh
    if request.param == "bigquery":
        wh.client.delete_dataset(f"{PROJECT}.{wh.dataset}", delete_contents=True, not_found_ok=True)  # type: ignore[attr-defined]
    wh.close()


class LocalHarness:
    """Drives ``LocalBus``: subscriptions with handlers, delivery by ``run_until_idle``."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.inbox: dict[str, list[BusMessage]] = {}

    def make_topic(self, name: str) -> str:
        return name

    def subscribe(self, topic: str, name: str) -> str:
        inbox = self.inbox.setdefault(name, [])
        self.bus.subscribe(topic, name, handler=lambda event: inbox.append(message_from_event(event)))
        return name

    def receive(self, subscription: str, count: int) -> list[BusMessage]:
        self.bus.run_until_idle(max_seconds=10)
        return list(self.inbox.get(subscription, []))

    def dead_letter(self, topic: str, dead_topic: str, name: str, attempts: int) -> list[int]:
        seen: list[int] = []

        def fail(event: Any) -> None:
            seen.append(message_from_event(event).delivery_attempt)
            raise RuntimeError("handler refuses the message")

        self.bus.subscribe(topic, name, handler=fail, dead_letter_topic=dead_topic, max_delivery_attempts=attempts)
        return seen

    def drive(self, dead_subscription: str) -> list[BusMessage]:
        self.bus.run_until_idle(max_seconds=10)
        return list(self.inbox.get(dead_subscription, []))


class PubSubHarness:
    """Drives ``PubSubBus`` on the emulator: topics and pull subscriptions made with the admin helpers."""

    def __init__(self, bus: Any) -> None:
        from goldthread.adapters import pubsub_bus

        self.bus = bus
        self.admin = pubsub_bus
        self.failing: dict[str, list[int]] = {}

    def make_topic(self, name: str) -> str:
        self.admin.ensure_topic(PROJECT, name)
        return name

    def subscribe(self, topic: str, name: str) -> str:
        self.admin.ensure_subscription(PROJECT, name, topic)
        return name

    def receive(self, subscription: str, count: int) -> list[BusMessage]:
        got: list[BusMessage] = []
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            pulled = self.bus.pull(subscription, max_messages=count - len(got), timeout=2)
            self.bus.ack(subscription, [p.ack_id for p in pulled])
            got.extend(p.message for p in pulled)
        return got

    def dead_letter(self, topic: str, dead_topic: str, name: str, attempts: int) -> list[int]:
        import datetime as dt

        self.admin.ensure_subscription(
            PROJECT, name, topic, dead_letter_topic=dead_topic, max_delivery_attempts=attempts,
            min_backoff=dt.timedelta(0), max_backoff=dt.timedelta(0), ack_deadline_seconds=10,
        )
        self.failing[name] = []
        return self.failing[name]

    def drive(self, dead_subscription: str) -> list[BusMessage]:
        # nack every delivery of the failing subscriptions until the dead letter arrives (the emulator
        # forwards it lazily, on a later pull of the source subscription)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, seen in self.failing.items():
                pulled = self.bus.pull(name, max_messages=10, timeout=1)
                seen.extend(p.message.delivery_attempt for p in pulled)
                self.bus.nack(name, [p.ack_id for p in pulled])
            letters = self.bus.pull_dead_letters(dead_subscription, 10, timeout=1)
            if letters:
                self.bus.ack(dead_subscription, [p.ack_id for p in letters])
                return [p.message for p in letters]
        return []


@pytest.fixture(params=["local", pytest.param("pubsub", marks=pytest.mark.emulator)])
def bus_harness(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Each bus with a harness to create topics, subscribe, receive and drive redeliveries."""
    harness: LocalHarness | PubSubHarness
    if request.param == "local":
        harness = LocalHarness(_adapter("local_bus", "LocalBus")(project=PROJECT))
    else:
        request.getfixturevalue("pubsub_emulator")
        harness = PubSubHarness(_adapter("pubsub_bus", "PubSubBus")(PROJECT))
    yield harness
    bus: Bus = harness.bus
    bus.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the emulators this session started."""
    emulators.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long each emulator took to answer."""
    line = emulators.startup_report_once()
    if line:
        terminalreporter.write_line(line)
