"""Figures measured by the reliability tests (documents tried, kills tried, faults tried, rows lost and
doubled), gathered while they run, printed at the end of the session and written to
``test-artifacts/reliability-figures.json`` so ``docs/guarantees.md`` quotes measured numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import FIGURES, REPO_ROOT

FIGURES_PATH = REPO_ROOT / "test-artifacts" / "reliability-figures.json"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the figures (merged into any earlier file, so a partial run keeps the other sections)."""
    if not FIGURES:
        return
    merged: dict[str, Any] = {}
    if FIGURES_PATH.exists():
        try:
            merged = json.loads(FIGURES_PATH.read_text())
        except ValueError:
            merged = {}
    merged.update(FIGURES)
    Path(FIGURES_PATH).parent.mkdir(parents=True, exist_ok=True)
    FIGURES_PATH.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per guarantee with its figures."""
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, numbers in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in sorted(numbers.items())))
    terminalreporter.write_line(f"(written to {FIGURES_PATH.relative_to(REPO_ROOT)})")
