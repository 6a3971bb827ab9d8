"""Driving the ``goldthread`` command line in-process against a real temporary home: one copy of the home, the
captured console, the call and the seeding that the command-line tests share."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from goldthread import cli
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.pipeline.context import Context
from rich.console import Console

from tests.conftest import DEPLOYED, Clock, Factory, PinnedBroker


def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "gt-home") -> Path:
    """``GOLDTHREAD_HOME`` in a temporary directory, every other ``GOLDTHREAD_*`` setting unset and no Cloud
    Functions variable (so the command behaves as on a laptop)."""
    for key in list(os.environ):
        if key.startswith("GOLDTHREAD_") or key in ("K_SERVICE", "FUNCTION_TARGET"):
            monkeypatch.delenv(key)
    path = tmp_path / name
    monkeypatch.setenv("GOLDTHREAD_HOME", str(path))
    return path


def capture_console(monkeypatch: pytest.MonkeyPatch, width: int) -> io.StringIO:
    """What the command prints, into a buffer: ``width`` columns, no colour, not a terminal."""
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buffer, width=width, color_system=None, force_terminal=False))
    return buffer


def run_cli(out: io.StringIO, *argv: str) -> tuple[int, str]:
    """Run ``goldthread *argv`` in-process; its exit code and what it printed."""
    start = out.tell()
    code = cli.main(list(argv))
    out.seek(start)
    return code, out.read()


def cli_json(out: io.StringIO, *argv: str) -> tuple[int, Any]:
    """Run ``goldthread *argv --json``; its exit code and the JSON it printed, parsed."""
    code, text = run_cli(out, *argv, "--json")
    return code, json.loads(text)


def seed_home(home: Path, trades: Sequence[tuple[str, dt.datetime | None]] = (), bad: bool = True) -> None:
    """What a bot leaves in the embedded files: closed trade ``pos-1``, the ``trades`` given (position id and close
    time, None for the default), and, with ``bad``, one broken document written straight into the hot store
    (qty -2) as a buggy bot would."""
    settings = Settings(home=home)
    broker = PinnedBroker(settings.broker_path, clock=Clock(dt.datetime.now(dt.UTC)), market=SyntheticMarketData())
    ctx = Context(settings, hot=SqliteHotStore(settings.hot_path), bus=LocalBus(), broker=broker)
    make = Factory(ctx)
    make.strategy("momo", "1.0", deployed_at=DEPLOYED)
    first = make.closed_trade("pos-1", broker_entry=Decimal("100"), broker_exit=Decimal("101"))
    for position_id, closed in trades:
        if closed is None:
            make.closed_trade(position_id)
        else:
            make.closed_trade(position_id, opened_at=closed - dt.timedelta(hours=1), closed_at=closed)
    if bad:
        make.raw_position("pos-bad", first, qty="-2")
    ctx.close()
