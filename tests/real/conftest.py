"""Session fixtures for the real local servers: each emulator starts once per test session, on a free
port, and its client variable (``FIRESTORE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``,
``GOLDTHREAD_BIGQUERY_ENDPOINT``) is set for the whole session.

A test skips only when the server's binary is absent (the reason says what to install); a server
that is present but fails to start is an error, never a skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support import emulators
from tests.support.emulators import ManagedProcess


def _server(kind: str) -> ManagedProcess:
    reason = emulators.missing_requirement(kind)
    if reason:
        pytest.skip(f"{kind} emulator unavailable: {reason}")
    return emulators.shared(kind)


@pytest.fixture(scope="session")
def firestore_emulator() -> ManagedProcess:
    """Google's Firestore emulator, shared by the session (``FIRESTORE_EMULATOR_HOST`` is set)."""
    return _server("firestore")


@pytest.fixture(scope="session")
def pubsub_emulator() -> ManagedProcess:
    """Google's Pub/Sub emulator, shared by the session (``PUBSUB_EMULATOR_HOST`` is set)."""
    return _server("pubsub")


@pytest.fixture(scope="session")
def bigquery_emulator() -> ManagedProcess:
    """bqemulator with the offline shims, shared by the session (``GOLDTHREAD_BIGQUERY_ENDPOINT`` is set)."""
    return _server("bigquery")


@pytest.fixture
def firestore_project(firestore_emulator: ManagedProcess) -> Iterator[str]:
    """A project id of its own for one test (isolation without a global reset), wiped afterwards."""
    project = f"gt-{uuid.uuid4().hex[:12]}"
    yield project
    emulators.reset_firestore(firestore_emulator.host_port, project)


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name for topics, subscriptions and datasets of one test."""
    return f"t{uuid.uuid4().hex[:12]}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop every emulator the session started (the whole process group of each)."""
    emulators.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long each emulator took to answer."""
    line = emulators.startup_report_once()
    if line:
        terminalreporter.write_line(line)
