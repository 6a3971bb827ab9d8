"""The operator's console (issue 14), driven through ``goldthread.cli.main`` (and ``python -m goldthread.cli``)
against a real temporary ``GOLDTHREAD_HOME`` with the embedded stores.

``status`` says at a glance whether a person is needed (exit 3) or not (exit 0); dead letters show their id,
day, age and first error, open with their payload and the record as it is now, and close as won't-fix with an
audit; ``hot get|put`` read and fix a record through the writer API; every reporting command prints one
documented JSON shape with ``--json``; ``runs`` filters; unknown ids, impossible ranges, bad homes and busy
ports are refused in one line; a read-only home serves the reading commands; ``backfill --dry-run`` counts what
each day would publish. Expected figures are computed here from what the test wrote, not from the code.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from goldthread import cli
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.bi.schedules import next_fire
from goldthread.config import Settings, load_settings
from goldthread.ledger.runs import list_runs
from goldthread.models.hot import JobMetadata, RunStatus
from goldthread.pipeline.context import Context

from tests.conftest import DS
from tests.support.cli import capture_console, cli_json, fresh_home, run_cli, seed_home

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC
SCHEDULED = ("trades", "rejected_signals", "expired_signals", "accounts", "patch_fees", "patch_prices", "canary")
"""The jobs terraform/scheduler.tf schedules."""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh GOLDTHREAD_HOME and nothing else configured; discards are recorded as ``ops-alice``."""
    path = fresh_home(tmp_path, monkeypatch)
    monkeypatch.setenv("GOLDTHREAD_OPERATOR", "ops-alice")
    return path


@pytest.fixture
def out(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the CLI prints (a wide, colourless console)."""
    return capture_console(monkeypatch, 250)




def seed(home: Path, days: tuple[tuple[str, dt.datetime], ...] = (), bad: bool = True) -> None:
    """Closed trades a bot wrote (``days``: position id and close time), and, with ``bad``, one broken document
    written straight into the hot store (qty -2) as a buggy bot would."""
    seed_home(home, days, bad)


def letter_id(out: io.StringIO) -> str:
    code, data = cli_json(out, "dead-letters", "list")
    assert code == 0 and data["total"] == 1
    return str(data["dead_letters"][0]["id"])


def put_run(home: Path, job: str, status: RunStatus, started: dt.datetime, heartbeat: dt.datetime | None = None,
            **extra: Any) -> None:
    """A run record as the pipeline keeps it in job_metadata (written straight into the hot store)."""
    hot = SqliteHotStore(Settings(home=home).hot_path)
    run = JobMetadata(run_id=f"{job}-{started:%Y%m%d%H%M%S}", loop=job, ds=started.date(), git_hash="t",
                      status=status, started_at=started, heartbeat_at=heartbeat or started,
                      finished_at=None if status is RunStatus.RUNNING else started + dt.timedelta(seconds=5), **extra)
    hot.put("job_metadata", run.run_id, run.model_dump())
    hot.close()


# -- 1. status -------------------------------------------------------------------------------------


def test_status_is_healthy_only_when_every_scheduled_job_ran_and_nothing_is_open(home: Path, out: io.StringIO) -> None:
    seed(home, bad=False)
    now = dt.datetime.now(UTC)
    for job in SCHEDULED:
        put_run(home, job, RunStatus.SUCCEEDED, now - dt.timedelta(minutes=1))
    code, data = cli_json(out, "status")
    assert code == 0 and data["ok"] is True and data["problems"] == [], data["problems"]
    assert {"ok", "generated_at", "problems", "jobs", "dead_letters", "freshness", "canary"} == set(data)
    assert data["dead_letters"] == {"open": 0, "by_reason": {}}
    trades = next(j for j in data["jobs"] if j["job"] == "trades")
    assert trades["last_run"]["status"] == "SUCCEEDED" and 50 <= trades["last_run"]["age_seconds"] <= 600
    assert next(j for j in data["jobs"] if j["job"] == "replay")["next_run_at"] is None  # run by hand
    assert {f["job"]: f["status"] for f in data["freshness"]} == dict.fromkeys(SCHEDULED, "on time")
    code, text = run_cli(out, "status")
    assert code == 0 and "healthy: nothing needs a person" in text and "{" not in text

    put_run(home, "canary", RunStatus.FAILED, now, details={"broken_hop": "delivery"}, error="hop 'delivery' failed")
    put_run(home, "accounts", RunStatus.RUNNING, now, heartbeat=now - dt.timedelta(hours=2))  # silent > 60 min
    code, data = cli_json(out, "status")
    assert code == cli.Exit.PARTIAL == 3
    assert any(p.startswith("canary: broken at delivery") for p in data["problems"])
    assert any(p.startswith("accounts: last run") and p.find("STALLED") > 0 for p in data["problems"])
    assert data["canary"]["ok"] is False and data["canary"]["broken_hop"] == "delivery"
    hot = SqliteHotStore(Settings(home=home).hot_path)  # status only reads: the run is still stored RUNNING
    assert {d["status"] for _, d in hot.query("job_metadata") if d["loop"] == "accounts"} == {"SUCCEEDED", "RUNNING"}
    hot.close()


def test_status_names_a_partial_run_and_the_open_letters_by_reason(home: Path, out: io.StringIO) -> None:
    seed(home)
    assert run_cli(out, "run", "trades", "--ds", DS.isoformat())[0] == 3
    code, text = run_cli(out, "status")
    assert code == 3
    assert re.search(r"trades: last run trades-20240305-\w+ \(2024-03-05\) is PARTIAL", text)
    assert "1 open dead letters (1 VALIDATION)" in text and "never run against its schedule" in text
    code, data = cli_json(out, "status")
    assert data["dead_letters"] == {"open": 1, "by_reason": {"VALIDATION": 1}}


def test_next_fire_follows_the_cron_and_the_time_zone() -> None:
    friday_evening = dt.datetime(2024, 3, 8, 22, 0, tzinfo=UTC)
    # equities: 16:30 New York on weekdays; DST starts Sunday 10 March, so Monday's run is 20:30 UTC
    monday = dt.datetime(2024, 3, 11, 20, 30, tzinfo=UTC)
    assert next_fire("30 16 * * 1-5", "America/New_York", friday_evening) == monday
    assert next_fire("15 0 * * *", "Etc/UTC", friday_evening) == dt.datetime(2024, 3, 9, 0, 15, tzinfo=UTC)
    assert next_fire("5 * * * *", "Etc/UTC", dt.datetime(2024, 3, 9, 0, 5, tzinfo=UTC)) == dt.datetime(
        2024, 3, 9, 1, 5, tzinfo=UTC)  # strictly after


# -- 2. dead letters and hot documents -------------------------------------------------------------------


def test_dead_letters_list_show_fix_and_discard(home: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(home)
    assert run_cli(out, "run", "trades", "--ds", DS.isoformat())[0] == 3
    code, text = run_cli(out, "dead-letters", "list", "--reason", "validation", "--loop", "TRADES")
    ident = letter_id(out)
    today = dt.datetime.now(UTC).date().isoformat()
    assert code == 0 and ident in text and today in text and "pos-bad" in text
    assert "qty: Input should be greater than 0" in text and re.search(r"│\s+\d+s\s+│ open", text)
    code, data = cli_json(out, "dead-letters", "list", "--reason", "Validation")
    letter = data["dead_letters"][0]
    assert (letter["id"], letter["ds"], letter["loop"], letter["record"], letter["reason_code"]) == (
        ident, today, "trades", "pos-bad", "VALIDATION")
    assert letter["first_error"] == "qty: Input should be greater than 0" and letter["age_seconds"] >= 0
    assert cli_json(out, "dead-letters", "list", "--reason", "SCD_CONFLICT")[1]["total"] == 0

    code, text = run_cli(out, "dead-letters", "show", ident)
    assert code == 0 and '"doc_id": "pos-bad"' in text  # the payload
    assert "greater_than" in text and '"qty": "-2"' in text and "does not validate now" in text
    code, view = cli_json(out, "dead-letters", "show", ident)
    assert set(view) == {"dead_letter", "payload", "errors", "collection", "hot_document", "validates_now",
                         "validation_errors", "marks"}
    assert view["validates_now"] is False and view["errors"][0]["loc"] == "qty"
    assert view["hot_document"]["qty"] == "-2" and view["collection"] == "live_positions"

    # fix the record through the writer API: an invalid fix is refused with its fields, a valid one written
    document = cli_json(out, "hot", "get", "live_positions", "pos-bad")[1]["document"]
    bad_fix = home.parent / "bad.json"
    bad_fix.write_text(json.dumps({**document, "qty": "0", "side": "sideways"}))
    code, text = run_cli(out, "hot", "put", "live_positions", "pos-bad", "--file", str(bad_fix))
    assert code == 1 and "refused, nothing written" in text and "qty" in text and "side" in text
    assert cli_json(out, "hot", "get", "live_positions", "pos-bad")[1]["document"]["qty"] == "-2"  # unchanged
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({**document, "qty": "3"})))
    code, text = run_cli(out, "hot", "put", "live_positions", "pos-bad")
    assert code == 0 and "written live_positions/pos-bad" in text
    code, view = cli_json(out, "dead-letters", "show", ident)
    assert view["validates_now"] is True and view["hot_document"]["qty"] == "3"
    assert view["marks"]["dead_lettered_run_id"] is None  # the ledger's mark cleared: the next dispatch takes it
    assert "dead_lettered_run_id" not in view["hot_document"]  # goldthread writes nothing on the bot's document

    code, text = run_cli(out, "dead-letters", "discard", ident, "--reason", "bot bug, trade re-entered by hand")
    assert code == 0 and "by ops-alice" in text
    assert cli_json(out, "dead-letters", "list")[1]["total"] == 0  # left out of the open letters
    code, text = run_cli(out, "dead-letters", "list", "--all")
    assert "discarded by ops-alice" in text
    code, text = run_cli(out, "replay", "--dry-run")
    assert code == 0 and "would pass: 0; still failing: 0" in text  # skipped by replay though it would pass
    code, text = run_cli(out, "dead-letters", "discard", ident, "--reason", "again")
    assert code == 2 and "discarded already, by ops-alice" in text
    ctx = Context(load_settings())
    stored = ctx.warehouse.query("SELECT discarded_by, discard_reason, discarded_at FROM dead_letters")
    assert [(r["discarded_by"], r["discard_reason"]) for r in stored] == [("ops-alice",
                                                                           "bot bug, trade re-entered by hand")]
    assert stored[0]["discarded_at"] is not None
    mart = ctx.warehouse.query("SELECT letters, open_letters FROM mart_dead_letters")
    assert [(r["letters"], r["open_letters"]) for r in mart] == [(1, 0)]
    ctx.close()
    assert cli_json(out, "status")[1]["dead_letters"]["open"] == 0


def test_hot_put_refuses_another_id_and_an_unknown_collection(home: Path, out: io.StringIO) -> None:
    seed(home, bad=False)
    document = cli_json(out, "hot", "get", "live_positions", "pos-1")[1]["document"]
    fix = home.parent / "fix.json"
    fix.write_text(json.dumps(document))
    code, data = cli_json(out, "hot", "put", "live_positions", "pos-2", "--file", str(fix))
    assert code == 1 and "pos-1" in data["error"] and data["errors"][0]["type"] == "id_mismatch"
    code, text = run_cli(out, "hot", "put", "job_metadata", "x", "--file", str(fix))
    assert code == 2 and "unknown collection 'job_metadata'" in text
    fix.write_text("{not json")
    code, text = run_cli(out, "hot", "put", "live_positions", "pos-1", "--file", str(fix))
    assert code == 1 and "not valid JSON" in text


def test_hot_put_reads_stdin_in_a_real_process(home: Path) -> None:
    seed(home)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    command = [sys.executable, "-m", "goldthread.cli"]
    got = subprocess.run([*command, "hot", "get", "live_positions", "pos-bad", "--json"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert got.returncode == 0, got.stderr
    document = json.loads(got.stdout)["document"]
    assert json.loads(got.stdout)["validates"] is False
    put = subprocess.run([*command, "hot", "put", "live_positions", "pos-bad", "--json"], env=env, timeout=120,
                         input=json.dumps({**document, "qty": "2"}), capture_output=True, text=True, check=False)
    assert put.returncode == 0 and "Traceback" not in put.stderr, put.stderr
    assert json.loads(put.stdout)["document"]["qty"] == "2" and json.loads(put.stdout)["validates"] is True


# -- 3. JSON shapes, as documented ----------------------------------------------------------------------


def documented_shapes() -> dict[str, set[str]]:
    """README "JSON output": command -> its top-level keys."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### JSON output"):]
    section = section[: section.index("\n## ")]
    shapes = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`goldthread "):
            top_level = re.sub(r"\([^()]*\)", "", cells[1])  # what a key holds is said in parentheses
            shapes[cells[0].strip("`").removeprefix("goldthread ")] = set(re.findall(r"`(\w+)`", top_level))
    return shapes


def test_every_reporting_command_prints_its_documented_json_shape(home: Path, out: io.StringIO) -> None:
    seed(home)
    shapes = documented_shapes()
    got: dict[str, tuple[int, Any]] = {}
    got["run"] = cli_json(out, "run", "trades", "--ds", DS.isoformat())
    ident = letter_id(out)
    got["runs"] = cli_json(out, "runs")
    got["dead-letters list"] = cli_json(out, "dead-letters", "list")
    got["dead-letters show"] = cli_json(out, "dead-letters", "show", ident)
    got["backfill"] = cli_json(out, "backfill", "accounts", "--start", "2024-03-04", "--end", "2024-03-05")
    got["patch"] = cli_json(out, "patch", "prices", "--dry-run")
    got["replay"] = cli_json(out, "replay", "--dry-run")
    got["trace"] = cli_json(out, "trace", "pos-1")
    got["status"] = cli_json(out, "status")
    got["hot get"] = cli_json(out, "hot", "get", "live_positions", "pos-1")
    got["dead-letters discard"] = cli_json(out, "dead-letters", "discard", ident, "--reason", "test")
    got["error"] = cli_json(out, "trace", "no-such-id")
    assert set(got) <= set(shapes), f"README 'JSON output' lacks {set(got) - set(shapes)}"
    for command, (code, data) in got.items():
        assert code in (0, 1, 3), (command, data)
        assert set(data) == shapes[command], command
    assert got["error"][0] == 1 and got["error"][1]["error"].startswith("not found")
    assert got["run"][1]["run"]["status"] == "PARTIAL" and got["run"][1]["run"]["published"] == 2  # pos-1, pos-bad
    assert {r["job"] for r in got["runs"][1]["runs"]} == {"trades"}


def test_human_output_is_tables_never_a_python_repr(home: Path, out: io.StringIO) -> None:
    seed(home, bad=False)
    texts = [run_cli(out, "run", "accounts", "--ds", DS.isoformat())[1],
             run_cli(out, "backfill", "accounts", "--start", "2024-03-04", "--end", "2024-03-06")[1],
             run_cli(out, "patch", "fees", "--ds", DS.isoformat(), "--dry-run")[1],
             run_cli(out, "patch", "prices", "--dry-run")[1]]
    for text in texts:
        assert not re.search(r"\{'|': \{|Decimal\(|datetime\.", text), text
    assert "SUCCEEDED: 3" in texts[1] and "duration_seconds" in texts[0]


# -- 4. runs -----------------------------------------------------------------------------------------------


def test_runs_show_start_and_duration_and_filter(home: Path, out: io.StringIO) -> None:
    seed(home, bad=False)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    put_run(home, "trades", RunStatus.FAILED, dt.datetime(2024, 3, 6, 3, 0, tzinfo=UTC), error="boom")
    put_run(home, "accounts", RunStatus.SUCCEEDED, now - dt.timedelta(hours=1))
    put_run(home, "trades", RunStatus.SUCCEEDED, now - dt.timedelta(minutes=30))
    code, text = run_cli(out, "runs")
    assert code == 0 and "started (UTC)" in text and "2024-03-06 03:00:00" in text and "5s" in text
    code, data = cli_json(out, "runs", "--status", "failed")
    assert [(r["job"], r["started_at"], r["duration_seconds"]) for r in data["runs"]] == [
        ("trades", "2024-03-06T03:00:00Z", 5.0)]
    code, data = cli_json(out, "runs", "--since", (now - dt.timedelta(days=1)).date().isoformat())
    assert {r["job"] for r in data["runs"]} == {"accounts", "trades"} and data["total"] == 2
    code, data = cli_json(out, "runs", "--job", "trades", "--ds", "2024-03-06")
    assert [r["status"] for r in data["runs"]] == ["FAILED"]
    code, data = cli_json(out, "runs", "--job", "canary")
    assert code == 0 and data["runs"] == []  # a known job without runs: empty, not an error
    code, data = cli_json(out, "runs", "--job", "canry")
    assert code == 1 and data["error"].startswith("not found: no job 'canry'")


# -- 5. clean refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["replay", "--id", "nope"], ["dead-letters", "list", "--id", "nope"], ["dead-letters", "show", "nope"],
    ["dead-letters", "discard", "nope", "--reason", "x"], ["runs", "--job", "nope"], ["trace", "nope"],
    ["hot", "get", "live_positions", "nope"],
])
def test_an_unknown_id_exits_1_saying_not_found(home: Path, out: io.StringIO, argv: list[str]) -> None:
    seed(home, bad=False)
    code, text = run_cli(out, *argv)
    assert code == 1 and text.startswith("not found") and "'nope'" in text and text.count("\n") == 1
    code, data = cli_json(out, *argv)
    assert code == 1 and data["error"].startswith("not found") and data["exit_code"] == 1


def test_impossible_ranges_and_future_days_are_refused(home: Path, out: io.StringIO) -> None:
    tomorrow = (dt.datetime.now(UTC) + dt.timedelta(days=1)).date().isoformat()
    for argv, says in [
        (["backfill", "trades", "--start", "2024-03-06", "--end", "2024-03-01"], "--end 2024-03-01 is before --start"),
        (["backfill", "trades", "--start", "2024-03-06", "--end", tomorrow], f"ds {tomorrow} is in the future"),
        (["run", "trades", "--ds", "2099-01-01"], "trades: ds 2099-01-01 is in the future"),
        (["patch", "fees", "--ds", tomorrow], "is in the future"),
        (["backfill", "expired_signals", "--start", "2024-03-01", "--end", tomorrow, "--dry-run"], "in the future"),
    ]:
        code, text = run_cli(out, *argv)
        assert code == cli.Exit.REFUSED == 2 and says in text and text.count("\n") == 1, (argv, text)
    ctx = Context(load_settings())
    assert list_runs(ctx) == []
    ctx.close()


def test_a_bad_home_gets_one_line(tmp_path: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    for home, says in [(a_file, "is not a directory"), (tmp_path / "missing" / "home", "does not exist")]:
        monkeypatch.setenv("GOLDTHREAD_HOME", str(home))
        for argv in (["runs"], ["status", "--json"], ["run", "accounts", "--ds", "2024-03-05"]):
            code, text = run_cli(out, *argv)
            assert code == 2 and says in text and "Traceback" not in text, (argv, text)
    assert not (tmp_path / "missing").exists()  # a typo grows no directory tree


def test_a_busy_port_gets_one_line(home: Path, out: io.StringIO, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, text = run_cli(out, "dashboard", "--out", str(tmp_path / "d.html"), "--serve", "--port", str(port))
    assert code == 1 and f"cannot serve on 127.0.0.1:{port}" in text and "Traceback" not in text
    assert (tmp_path / "d.html").exists()


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in home.iterdir()}


def test_a_read_only_home_serves_the_reading_commands(home: Path, out: io.StringIO, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, with the home judged unwritable: the reading commands open the stores read-only and change no
    file; a writing command is refused in one line. (The real thing, a user who cannot write, is below.)"""
    from goldthread.console import checks

    seed(home)
    assert run_cli(out, "run", "trades", "--ds", DS.isoformat())[0] == 3
    ident = letter_id(out)
    before = snapshot(home)
    monkeypatch.setattr(checks, "home_is_writable", lambda _home: False)
    for argv in (["runs"], ["dead-letters", "list"], ["dead-letters", "show", ident], ["trace", "pos-1"],
                 ["status"], ["hot", "get", "live_positions", "pos-1"],
                 ["dashboard", "--out", str(tmp_path / "ro.html")]):
        code, text = run_cli(out, *argv)
        assert code in (0, 3) and "error:" not in text and "refused" not in text, (argv, text)
    assert (tmp_path / "ro.html").stat().st_size > 0
    after = snapshot(home)
    assert {name: after[name] for name in before} == before  # no store file changed
    # none created, but SQLite's shared-memory index of a WAL reader, made only because this directory is in
    # truth writable (the test below, as a user who cannot write, creates nothing)
    assert set(after) - set(before) <= {"hot.sqlite-wal", "hot.sqlite-shm"}
    code, text = run_cli(out, "run", "trades", "--ds", DS.isoformat())
    assert code == 2 and "is not writable" in text and text.count("\n") == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
                    reason="needs root to run the commands as a user who cannot write the home")
def test_a_home_the_user_cannot_write_in_a_real_process(home: Path, out: io.StringIO) -> None:
    import tempfile

    seed(home)
    assert run_cli(out, "run", "trades", "--ds", DS.isoformat())[0] == 3
    base = Path(tempfile.mkdtemp(prefix="gt-ro-"))
    try:
        ro_home = base / "home"
        subprocess.run(["cp", "-a", str(home), str(ro_home)], check=True)
        base.chmod(0o755)
        for path in [ro_home, *ro_home.iterdir()]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        before = snapshot(ro_home)
        env = {**os.environ, "GOLDTHREAD_HOME": str(ro_home), "HOME": str(base),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                     "goldthread.cli"]
        elsewhere = base / "out"
        elsewhere.mkdir()
        elsewhere.chmod(0o777)
        for argv in (["runs"], ["dead-letters", "list"], ["trace", "pos-1"], ["status"],
                     ["dashboard", "--out", str(elsewhere / "dashboard.html")]):
            got = subprocess.run([*as_nobody, *argv], env=env, capture_output=True, text=True, timeout=120,
                                 check=False)
            assert got.returncode in (0, 3) and "Traceback" not in got.stderr, (argv, got.stdout, got.stderr)
        assert "pos-bad" in subprocess.run([*as_nobody, "dead-letters", "list"], env=env, capture_output=True,
                                           text=True, timeout=120, check=False).stdout
        got = subprocess.run([*as_nobody, "run", "trades", "--ds", DS.isoformat()], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
        assert got.returncode == 2 and "is not writable" in got.stdout and "Traceback" not in got.stderr
        assert snapshot(ro_home) == before  # nothing created, nothing changed
        assert (elsewhere / "dashboard.html").stat().st_size > 0
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


# -- 9. backfill --dry-run -----------------------------------------------------------------------------------


def test_backfill_dry_run_counts_what_each_day_would_publish(home: Path, out: io.StringIO) -> None:
    at = dt.time(18, 0)
    # pos-1 (the seed's) closes 2024-03-05; these close on the 4th (one), the 6th (two) and the 8th (one)
    days = (("pos-a", dt.datetime.combine(dt.date(2024, 3, 4), at, UTC)),
            ("pos-b", dt.datetime.combine(dt.date(2024, 3, 6), at, UTC)),
            ("pos-c", dt.datetime.combine(dt.date(2024, 3, 6), at, UTC)),
            ("pos-d", dt.datetime.combine(dt.date(2024, 3, 8), at, UTC)))
    seed(home, days, bad=False)
    code, data = cli_json(out, "backfill", "trades", "--start", "2024-03-03", "--end", "2024-03-07", "--dry-run")
    assert code == 0 and data["dry_run"] is True
    assert [(d["ds"], d["due"]) for d in data["days"]] == [
        ("2024-03-03", 0), ("2024-03-04", 1), ("2024-03-05", 1), ("2024-03-06", 2), ("2024-03-07", 0)]
    assert data["due"] == 4 and data["days"][3]["records"] == ["pos-b", "pos-c"]
    code, text = run_cli(out, "backfill", "trades", "--start", "2024-03-03", "--end", "2024-03-07", "--dry-run")
    assert "would publish 4 records over 5 days; nothing was published" in text
    ctx = Context(load_settings())
    assert list_runs(ctx) == []  # no run, no lease, nothing published
    assert list(ctx.hot.query("ledger_marks")) == []  # nothing marked
    ctx.close()
    code, data = cli_json(out, "backfill", "trades", "--start", "2024-03-03", "--end", "2024-03-07")
    assert [(d["ds"], d["published"]) for d in data["days"]] == [
        ("2024-03-03", 0), ("2024-03-04", 1), ("2024-03-05", 1), ("2024-03-06", 2), ("2024-03-07", 0)]
