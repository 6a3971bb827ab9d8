"""Start the real local servers for a measurement, through the test harness (``tests/support/emulators.py``).

``emulator_or_skip`` yields ``(server, None)`` with the server's client variables set in
``os.environ``, or ``(None, reason)`` when the server (or the harness itself) is not available here,
so a case reports ``skipped: <reason>`` instead of failing. Servers are stopped, and the environment
restored, when the block ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


def harness() -> Any:
    """The emulator harness module, or raise ``ImportError`` with a readable reason."""
    try:
        from tests.support import emulators
    except ImportError as exc:  # the harness lives in the test tree of this checkout
        raise ImportError(f"emulator harness tests/support/emulators.py not importable: {exc}") from exc
    return emulators


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def emulator_or_skip(kind: str) -> Iterator[tuple[Any, str | None]]:
    """Start the ``kind`` server (firestore, pubsub, bigquery) for the block, or say why it cannot run."""
    try:
        emulators = harness()
    except ImportError as exc:
        yield None, str(exc)
        return
    reason = emulators.missing_requirement(kind)
    if reason:
        yield None, f"{kind} emulator unavailable: {reason}"
        return
    starter = {"firestore": emulators.start_firestore, "pubsub": emulators.start_pubsub,
               "bigquery": emulators.start_bqemulator}[kind]
    server = starter()
    try:
        with environment(server.env):
            yield server, None
    finally:
        server.stop()
