"""``goldthread demo`` never deletes data that is not the demo's (issue 14, item 6).

The demo resets its home before it starts. It resets an empty home, or one it marked as its own with a
``.goldthread-demo`` file; a home holding a hot store, warehouse or broker ledger without that mark is refused
with exit 2 and one line naming the files and ``--force``, and is left byte for byte as it was. ``--force``
resets it (and marks it). Running the demo twice in a row works, and the second run starts from nothing again,
also as the README's very first command: no ``GOLDTHREAD_HOME``, a fresh directory (``.goldthread/``).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from goldthread import cli
from goldthread.config import Settings
from goldthread.demo import DEMO_MARKER
from goldthread.pipeline.context import Context

from tests.support.cli import capture_console, fresh_home

SHARED = Path(__file__).resolve().parents[1] / "shared"
DAYS = "2"  # enough for every step of the demo to run, and quick


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GOLDTHREAD_HOME in a temporary directory, nothing else configured."""
    return fresh_home(tmp_path, monkeypatch, "home")


@pytest.fixture
def out(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the CLI prints (wide enough that a line is never wrapped)."""
    return capture_console(monkeypatch, 400)


def someone_elses_data(home: Path) -> None:
    """A home a person uses: a real hot store with a document and a real warehouse, written without the demo."""
    ctx = Context(Settings(home=home))
    ctx.hot.put("live_signals", "my-signal", {"signal_id": "my-signal", "note": "not the demo's"})
    ctx.warehouse.query("SELECT 1 AS one")
    ctx.close()
    assert (home / "hot.sqlite").exists() and (home / "warehouse.duckdb").exists()


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with the SHA-256 of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def run_module(cwd: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m goldthread.cli ...`` in a fresh interpreter, with this checkout's package first."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(SHARED), env.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "goldthread.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_home_with_other_data_is_refused_and_left_intact(home: Path, out: io.StringIO) -> None:
    someone_elses_data(home)
    before = snapshot(home)

    code = cli.main(["demo", "--days", DAYS])

    text = out.getvalue()
    assert code == cli.Exit.REFUSED == 2
    assert len(text.strip().splitlines()) == 1, text  # one line
    assert text.startswith("refused:") and "hot.sqlite" in text and "warehouse.duckdb" in text
    assert "--force" in text and str(home) in text
    assert snapshot(home) == before  # byte for byte, and nothing added (no marker, no logs)
    assert not (home / DEMO_MARKER).exists()


def test_a_home_with_other_data_is_refused_by_the_installed_command(home: Path, tmp_path: Path) -> None:
    someone_elses_data(home)
    before = snapshot(home)
    done = run_module(tmp_path, dict(os.environ), "demo", "--days", DAYS)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refused:" in done.stdout and "--force" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert snapshot(home) == before


def test_force_resets_a_home_with_other_data(home: Path, out: io.StringIO) -> None:
    someone_elses_data(home)

    code = cli.main(["demo", "--days", DAYS, "--force"])

    assert code == 0, out.getvalue()[-3000:]
    assert (home / DEMO_MARKER).is_file()
    assert f"logs: {home / 'logs' / 'goldthread.jsonl'} (goldthread logs --run RUN_ID)" in out.getvalue()
    assert (home / "logs" / "goldthread.jsonl").stat().st_size > 0
    ctx = Context(Settings(home=home))
    try:
        assert ctx.hot.get("live_signals", "my-signal") is None  # the person's document went with the reset
        assert ctx.warehouse.query("SELECT COUNT(*) AS n FROM fact_trades")[0]["n"] > 0  # the demo's data
    finally:
        ctx.close()


def test_files_that_are_not_stores_do_not_make_a_home_foreign(home: Path, out: io.StringIO) -> None:
    """A home holding only a dashboard or logs has no data to lose: the demo runs and keeps them."""
    (home / "logs").mkdir(parents=True)
    (home / "dashboard.html").write_text("old")
    (home / "logs" / "notes.txt").write_text("mine")
    assert cli.main(["demo", "--days", DAYS]) == 0, out.getvalue()[-3000:]
    assert (home / "logs" / "notes.txt").read_text() == "mine"


def test_the_demo_twice_as_the_first_command_on_a_fresh_machine(tmp_path: Path) -> None:
    """No GOLDTHREAD_HOME: the demo makes ``.goldthread/`` in the working directory, marks it, and the second
    demo resets its own home without asking and starts from nothing again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDTHREAD_")}
    runs_after = []
    for _ in range(2):
        done = run_module(tmp_path, env, "demo", "--days", DAYS)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "all finished runs reconcile" in done.stdout
        assert (tmp_path / ".goldthread" / DEMO_MARKER).is_file()
        ctx = Context(Settings(home=tmp_path / ".goldthread"))
        try:
            runs_after.append(ctx.warehouse.query("SELECT COUNT(*) AS n FROM fact_trades")[0]["n"])
        finally:
            ctx.close()
    assert runs_after[0] > 0
    assert runs_after[1] == runs_after[0]  # the same seeded days again, not piled on top of the first run's
