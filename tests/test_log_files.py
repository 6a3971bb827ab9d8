"""Logs you can find (issue 14, item 7): JSON lines under ``<home>/logs/``, rotated, safe across processes.

* A local command writes its records, at INFO even when stderr shows only errors, to
  ``<home>/logs/goldthread.jsonl``; ``goldthread logs --run ID`` prints that run's lines (``--json`` raw), from
  the rotated backups too, oldest first; an unknown run exits 1 saying "not found".
* In a Cloud Function (``K_SERVICE`` or ``FUNCTION_TARGET``) no file is written.
* A "see logs" message (a dead letter after the maximum delivery attempts) names the log file and the run.
* Two processes writing one home's log at once, with rollovers every few lines, leave every line whole,
  none lost, none twice, each process's lines in order, and every file within its size.

What a run logged is read back from the files directly (every ``goldthread.jsonl*``, parsed here), not
through the code under test.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from goldthread import cli, logs
from goldthread.config import Settings, load_settings
from goldthread.errors import BrokerUnavailableError, ConfigError
from goldthread.log_files import LOG_FILE_NAME
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop

from tests.conftest import DS, Factory, PinnedBroker, rows
from tests.support.cli import capture_console, fresh_home, run_cli
from tests.test_cli import seed

SHARED = Path(__file__).resolve().parents[1] / "shared"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh GOLDTHREAD_HOME, nothing else configured, not in a cloud; goldthread's logging put back after."""
    yield fresh_home(tmp_path, monkeypatch)
    logs.configure(level="ERROR")  # no later test writes into this home's files


@pytest.fixture
def out(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the CLI prints (wide, no colour, no wrapping)."""
    return capture_console(monkeypatch, 1000)


def logged(directory: Path) -> list[dict[str, Any]]:
    """Every record in the log files, parsed here: backups ``.N`` (oldest) .. ``.1``, then the current file."""
    files = sorted(directory.glob(f"{LOG_FILE_NAME}.*[0-9]"), key=lambda p: -int(p.suffix[1:]))
    files.append(directory / LOG_FILE_NAME)
    return [json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines()]


def run_module(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m goldthread.cli ...`` in a fresh interpreter with this checkout's package first."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(SHARED), env.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "goldthread.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_run_is_logged_to_the_home_at_info_and_logs_prints_it(
    home: Path, out: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(home)  # two good closed trades and one broken document
    code, text = run_cli(out, "run", "trades", "--ds", DS.isoformat(), "--json")
    run_id = json.loads(text)["run"]["run_id"]
    assert code == cli.Exit.PARTIAL
    assert capsys.readouterr().err == ""  # stderr shows errors only (the CLI's default) ...

    records = logged(home / "logs")  # ... while the file holds the run at INFO
    mine = [r for r in records if r.get("run_id") == run_id]
    messages = [r["message"] for r in mine]
    assert messages[0] == "run started" and messages[-1].startswith("run finished PARTIAL")
    assert "dispatched 3 items" in messages
    assert any(m.startswith("dead-lettered VALIDATION") for m in messages)
    assert {r["severity"] for r in mine} == {"INFO", "WARNING"}
    assert all(r["loop"] == "trades" for r in mine)

    code, raw = run_cli(out, "logs", "--run", run_id, "--json")
    assert code == 0
    assert [json.loads(line) for line in raw.splitlines()] == mine  # exactly the run's lines, in order

    code, human = run_cli(out, "logs", "--run", run_id)
    assert code == 0 and len(human.splitlines()) == len(mine)
    for line, record in zip(human.splitlines(), mine, strict=True):
        assert record["message"] in line and record["severity"] in line and record["time"] in line
        assert not line.startswith("{")


def test_an_unknown_run_is_not_found(home: Path, out: io.StringIO) -> None:
    seed(home, bad=False)
    assert run_cli(out, "run", "trades", "--ds", DS.isoformat())[0] == 0
    code, text = run_cli(out, "logs", "--run", "trades-20240305-nosuch")
    assert code == 1
    assert "not found" in text and "trades-20240305-nosuch" in text and str(home / "logs") in text
    code, text = run_cli(out, "logs", "--run", "nosuch", "--json")
    assert code == 1 and "not found" in text


def test_logs_through_the_installed_command_and_across_rotated_files(home: Path) -> None:
    """Small files (1 KiB) so one run's lines spread over backups: `logs --run` gathers them in order."""
    seed(home)
    env = {**os.environ, "GOLDTHREAD_LOG_MAX_BYTES": "1024", "GOLDTHREAD_LOG_BACKUPS": "50"}
    assert run_module(env, "run", "accounts", "--ds", DS.isoformat()).returncode == 0  # fills most of a file
    done = run_module(env, "run", "trades", "--ds", DS.isoformat(), "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run"]["run_id"]

    backups = list((home / "logs").glob(f"{LOG_FILE_NAME}.*[0-9]"))
    assert backups, "no rollover"
    assert all(f.stat().st_size <= 1024 for f in backups)
    holding = [f for f in [*backups, home / "logs" / LOG_FILE_NAME] if run_id in f.read_text()]
    assert len(holding) >= 2  # the run's lines were split by a rollover
    mine = [r for r in logged(home / "logs") if r.get("run_id") == run_id]
    assert len(mine) >= 4

    done = run_module(env, "logs", "--run", run_id, "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == mine
    done = run_module(env, "logs", "--run", "nosuch")
    assert done.returncode == 1 and "not found" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize("variable", ["K_SERVICE", "FUNCTION_TARGET"])
def test_no_files_in_a_cloud_function(home: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch,
                                      variable: str) -> None:
    seed(home, bad=False)
    monkeypatch.setenv(variable, "trades")
    code, _ = run_cli(out, "run", "trades", "--ds", DS.isoformat())
    assert code == 0
    assert not (home / "logs").exists()
    assert logs.log_file() is None
    assert logs.where("run-1") == 'Cloud Logging, jsonPayload.run_id="run-1" OR jsonPayload.run_ids="run-1"'


def test_the_file_level_stays_info_when_stderr_is_quieter(tmp_path: Path) -> None:
    stream = io.StringIO()
    target = Settings(home=tmp_path).log_target
    logs.configure(level="ERROR", stream=stream, files=target)
    try:
        log = logs.get_logger("probe")
        log.debug("not kept anywhere")
        log.info("kept in the file only", extra={"run_id": "r-1"})
        log.error("kept in both", extra={"run_id": "r-1"})
        assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["kept in both"]
        assert [r["message"] for r in logged(target.directory)] == ["kept in the file only", "kept in both"]
        assert logs.where("r-1") == f"{target.path} (goldthread logs --run r-1)"
    finally:
        logs.configure(level="ERROR")


def test_an_unwritable_home_loses_only_the_file_copy(tmp_path: Path) -> None:
    """A home that does not exist (yet) or cannot be written: records still reach stderr, no traceback."""
    stream = io.StringIO()
    target = Settings(home=tmp_path / "missing").log_target
    logs.configure(level="INFO", stream=stream, files=target)
    try:
        logs.get_logger("probe").info("still on stderr")
        assert json.loads(stream.getvalue())["message"] == "still on stderr"
        assert not (tmp_path / "missing").exists()  # the home is the command's to create or refuse
        (tmp_path / "missing").mkdir()
        logs.get_logger("probe").info("and in the file once the home exists")
        assert [r["message"] for r in logged(target.directory)] == ["and in the file once the home exists"]
    finally:
        logs.configure(level="ERROR")


@pytest.mark.parametrize(("variable", "value"), [("LOG_MAX_BYTES", "100"), ("LOG_MAX_BYTES", "lots"),
                                                 ("LOG_BACKUPS", "0"), ("LOG_BACKUPS", "1001")])
def test_rotation_settings_are_checked(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"GOLDTHREAD_{variable}"):
        load_settings({f"GOLDTHREAD_{variable}": value, "GOLDTHREAD_GIT_HASH": "x"})


def test_rotation_settings_and_their_defaults() -> None:
    settings = load_settings({"GOLDTHREAD_HOME": "/h", "GOLDTHREAD_GIT_HASH": "x"})
    assert (settings.log_max_bytes, settings.log_backups, settings.log_dir) == (10 * 1024 * 1024, 5, Path("/h/logs"))
    tuned = load_settings({"GOLDTHREAD_LOG_MAX_BYTES": "2048", "GOLDTHREAD_LOG_BACKUPS": "9",
                           "GOLDTHREAD_GIT_HASH": "x"})
    assert (tuned.log_target.max_bytes, tuned.log_target.backups) == (2048, 9)


# -- "see logs" names the file and the run -------------------------------------------------------------------


def test_a_max_attempts_dead_letter_names_the_log_file_and_the_run(
    ctx: Context, make: Factory, home: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dead letter the bus makes after the last attempt says where to look; the transient failures that
    led to it are in that run's lines."""
    ctx.settings.home.mkdir(parents=True)
    logs.configure(level="ERROR", files=ctx.settings.log_target)
    make.closed_trade("pos-1")
    broker = ctx.broker
    assert isinstance(broker, PinnedBroker)
    broker.fail_next = [BrokerUnavailableError("503 from the broker")] * ctx.settings.max_delivery_attempts
    run = run_loop(ctx, "trades", DS)

    (letter,) = rows(ctx, "dead_letters")
    assert letter["reason_code"] == "MAX_ATTEMPTS"
    log_path = ctx.settings.home / "logs" / LOG_FILE_NAME
    assert f"run {run.run_id}: {log_path} (goldthread logs --run {run.run_id})" in letter["error_message"]

    monkeypatch.setenv("GOLDTHREAD_HOME", str(ctx.settings.home))
    code, text = run_cli(out, "logs", "--run", run.run_id, "--json")
    assert code == 0
    records = [json.loads(line) for line in text.splitlines()]
    retried = [r for r in records if r["message"].startswith("transient failure")]
    assert len(retried) == ctx.settings.max_delivery_attempts
    assert all(r["run_ids"] == [run.run_id] and "503 from the broker" in r["message"] for r in retried)


# -- two processes, one file ---------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from goldthread import logs
    from goldthread.log_files import FileTarget

    directory, name, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    logs.configure(level="ERROR", files=FileTarget(directory, 2048, 1000))
    log = logs.get_logger("writer")
    while not go.exists():
        time.sleep(0.001)
    for i in range(count):
        log.info("line %d of %s " + "x" * (i % 40), i, name, extra={"run_id": name, "fields": {"i": i}})
""")


def test_two_processes_writing_at_once_tear_and_lose_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    go = tmp_path / "go"
    count = 600
    env = {**os.environ, "PYTHONPATH": str(SHARED)}
    for key in ("K_SERVICE", "FUNCTION_TARGET"):
        env.pop(key, None)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(directory), name, str(count), str(go)], env=env,
                                stderr=subprocess.PIPE, text=True) for name in ("one", "two")]
    go.touch()  # both start together
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0 and err == "", err

    files = list(directory.glob(f"{LOG_FILE_NAME}*"))
    backups = [f for f in files if f.suffix[1:].isdigit()]
    assert len(backups) > 20  # rolled over many times, by both processes
    assert all(f.stat().st_size <= 2048 for f in files if f.name != f"{LOG_FILE_NAME}.lock")
    records = logged(directory)  # json.loads fails on a torn line
    for name in ("one", "two"):
        seen = [r["i"] for r in records if r["run_id"] == name]
        assert seen == list(range(count)), name  # every line once, in its process's order, across the files
    assert len(records) == 2 * count
