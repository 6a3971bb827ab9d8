"""The ``goldthread`` command line on a temporary ``GOLDTHREAD_HOME``, and the README that documents it.

``--help`` lists every command and README.md mentions each as ``goldthread <command>``; ``run``,
``runs``, ``dead-letters list``, ``replay`` and ``backfill`` work end to end against the embedded
files a bot wrote; bad arguments are refused. The demo is exercised with Loops A and D only (fast,
and independent of the counterfactual loops), plus one full-demo smoke test, the one ``make demo`` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from goldthread import cli, demo
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.config import Settings, load_settings
from goldthread.ledger.runs import list_runs
from goldthread.models import LivePosition, SchemaGuardian
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import list_dead_letters
from goldthread.writer import HotWriter
from rich.console import Console

from tests.conftest import DS, ledger_mark
from tests.support.cli import capture_console, fresh_home, run_cli, seed_home

README = Path(__file__).resolve().parents[1] / "README.md"


def commands() -> list[str]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh GOLDTHREAD_HOME and nothing else configured."""
    return fresh_home(tmp_path, monkeypatch)


@pytest.fixture
def out(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the CLI prints (a wide, colourless console)."""
    return capture_console(monkeypatch, 250)


def seed(home: Path, bad: bool = True) -> None:
    """What a bot leaves in the embedded files: two closed trades and (optionally) one broken document."""
    seed_home(home, [("pos-2", None)], bad)


# -- help and README -------------------------------------------------------------------------------


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    names = commands()
    assert {"demo", "run", "backfill", "runs", "dead-letters", "replay", "schema"} <= set(names)
    for name in names:
        assert re.search(rf"\b{re.escape(name)}\b", text), f"--help does not list {name}"


def test_every_command_is_documented_in_the_readme() -> None:
    assert README.exists(), f"README.md is missing at {README}: it must document every `goldthread <command>`"
    text = README.read_text()
    missing = [c for c in commands() if not re.search(rf"`goldthread {re.escape(c)}[\s`]", text)]
    assert missing == [], f"README.md does not document: {', '.join(f'`goldthread {c}`' for c in missing)}"


@pytest.mark.parametrize(
    "argv",
    [["run", "trades"], ["run", "trades", "--ds", "2024-13-01"], ["run", "bonds", "--ds", "2024-03-05"],
     ["dead-letters", "purge"], ["backfill", "trades", "--start", "2024-03-01"], []],
)
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "usage: goldthread" in capsys.readouterr().err


@pytest.mark.parametrize(("statuses", "code"), [
    ([], 0), (["SUCCEEDED"], 0), (["RUNNING"], 0), (["PARTIAL"], 3), (["FAILED"], 1), (["STALLED"], 1),
    (["NOT_READY"], 2), (["SUCCEEDED", "PARTIAL"], 3), (["PARTIAL", "FAILED", "SUCCEEDED"], 1),
    (["NOT_READY", "PARTIAL"], 3), (["SUCCEEDED", "NOT_READY"], 2),
])
def test_one_exit_code_convention(statuses: list[str], code: int) -> None:
    """0 all loaded, 1 failed, 2 refused, 3 partial; the worst run decides."""
    assert cli.exit_for(statuses) == code


# -- commands on a temporary home --------------------------------------------------------------------


def test_run_runs_dead_letters_and_replay(home: Path, out: io.StringIO) -> None:
    seed(home)

    code, text = run_cli(out, "run", "trades", "--ds", DS.isoformat(), "--json")
    run = json.loads(text)["run"]
    assert code == cli.Exit.PARTIAL == 3  # something needs a person's attention
    assert (run["status"], run["published"], run["loaded"], run["dead_lettered"]) == ("PARTIAL", 3, 2, 1)
    assert (home / "hot.sqlite").exists() and (home / "warehouse.duckdb").exists()

    code, text = run_cli(out, "runs")
    assert code == 0
    assert run["run_id"] in text and "PARTIAL" in text
    assert "published 3 = loaded + duplicates + dead-lettered 3" in text

    code, text = run_cli(out, "dead-letters", "list")
    assert code == 0
    assert "pos-bad" in text and "VALIDATION" in text and "qty" in text
    assert "pos-1" not in text

    code, text = run_cli(out, "replay", "--dry-run")
    assert code == 3 and "would pass: 0; still failing: 1" in text and "pos-bad" in text
    code, text = run_cli(out, "replay")  # a real replay with nothing that passes: partial, says so
    assert code == 3 and "nothing to replay; still failing: 1" in text and "would pass" not in text

    hot = SqliteHotStore(home / "hot.sqlite")
    broken = hot.get("live_positions", "pos-bad")
    assert broken is not None
    HotWriter(hot).save_position(SchemaGuardian.validate(LivePosition, {**broken, "qty": "3"}, "pos-bad"))
    hot.close()

    code, text = run_cli(out, "replay")
    assert code == 0 and "would pass" not in text
    assert "replayed 1 dead letters as 1 items under run replay-" in text
    assert "loaded 1, duplicates 0, dead-lettered again 0 (SUCCEEDED); still failing: 0" in text

    code, text = run_cli(out, "runs", "--job", "replay")
    assert "SUCCEEDED" in text and run["run_id"] not in text

    code, text = run_cli(out, "dead-letters", "list")
    assert "pos-bad" not in text
    code, text = run_cli(out, "dead-letters", "list", "--all")
    assert "pos-bad" in text and "replay-" in text

    code, text = run_cli(out, "run", "trades", "--ds", DS.isoformat(), "--json")  # nothing left to archive
    again = json.loads(text)["run"]
    assert code == 0 and (again["status"], again["published"]) == ("SUCCEEDED", 0)

    ctx = Context(load_settings())
    rows = ctx.warehouse.query("SELECT position_id, run_id FROM fact_trades ORDER BY position_id")
    assert [r["position_id"] for r in rows] == ["pos-1", "pos-2", "pos-bad"]
    ctx.close()


def test_backfill_runs_every_day_of_the_range(home: Path, out: io.StringIO) -> None:
    seed(home, bad=False)
    code, text = run_cli(out, "backfill", "accounts", "--start", "2024-03-04", "--end", "2024-03-06")
    assert code == 0 and "SUCCEEDED: 3" in text and "{" not in text
    code, text = run_cli(out, "backfill", "trades", "--start", "2024-03-04", "--end", "2024-03-05")
    assert code == 0 and "SUCCEEDED: 2" in text
    ctx = Context(load_settings())
    runs = list_runs(ctx)
    assert sorted((r.loop, r.published) for r in runs) == [
        ("accounts", 1), ("accounts", 1), ("accounts", 1), ("trades", 0), ("trades", 2)
    ]
    ctx.close()


def test_a_future_day_is_refused_with_exit_2_and_one_line(home: Path, out: io.StringIO) -> None:
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    code, text = run_cli(out, "run", "accounts", "--ds", "2099-01-01")
    assert code == 2 and text.startswith("refused: accounts: ds 2099-01-01 is in the future (today is ")
    assert text.count("\n") == 1  # one line
    code, text = run_cli(out, "backfill", "accounts", "--start", "2024-03-04", "--end", tomorrow)
    assert code == 2 and text.startswith(f"refused: accounts: ds {tomorrow} is in the future")
    assert text.count("\n") == 1
    ctx = Context(load_settings())
    assert list_runs(ctx) == []  # neither command started a run, not even for the past days of the range
    ctx.close()


# -- the demo ----------------------------------------------------------------------------------------


def loops_a_and_d(day: dt.date, start: dt.date, settings: Settings) -> list[tuple[str, dt.date]]:
    return [("trades", day), ("accounts", day)]


def test_demo_with_loops_a_and_d(home: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "scheduled_jobs", loops_a_and_d)
    end = dt.date(2024, 3, 8)  # a fixed week (Mon-Fri), so the seeded bot's choices are reproducible
    ctx, result = demo.run_demo(load_settings(), days=5, end=end, console=Console(file=io.StringIO()))
    try:
        assert result.steps == [(job, result.start + dt.timedelta(days=i)) for i in range(5)
                                for job in ("accounts", "trades")]  # D at the day's close, A the night after
        assert {"pos-broken-qty", "pos-broken-time", "pos-wrong-version"} <= set(result.broken)
        runs = list_runs(ctx)
        assert {r.loop for r in runs} <= {"trades", "accounts", "replay"}
        assert all(r.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL) for r in runs)
        assert all(r.published == r.processed for r in runs)
        assert sum(r.dead_lettered for r in runs if r.loop == "trades") >= 3
        letters = {d["doc_id"]: d["reason_code"] for d in list_dead_letters(ctx, include_replayed=True)}
        assert letters["pos-broken-time"] == "VALIDATION"
        assert letters["pos-wrong-version"] == "SCD_CONFLICT"
        snapshots = ctx.warehouse.query("SELECT COUNT(*) AS n FROM snapshot_accounts")[0]["n"]
        assert snapshots == 5
        archived = ctx.warehouse.query("SELECT COUNT(*) AS n FROM fact_trades")[0]["n"]
        closed = [i for i, d in ctx.hot.query("live_positions") if d.get("status") == "CLOSED"]
        assert archived == sum(1 for i in closed if ledger_mark(ctx, "live_positions", i)["archived_run_id"])
    finally:
        ctx.close()

    code, text = run_cli(out, "demo", "--days", "3")
    assert code == 0
    assert "Warehouse rows per table" in text and "fact_trades" in text
    assert "all finished runs reconcile" in text
    assert "Dead letters (" in text and "Runs per job and status" in text


def test_full_demo_smoke(home: Path, out: io.StringIO) -> None:
    for module in ("rejected_signals", "expired_signals"):
        pytest.importorskip(f"goldthread.loops.{module}")
    code, text = run_cli(out, "demo")
    assert code == 0, text[-3000:]
    assert "all finished runs reconcile" in text
    for table in ("fact_trades", "fact_rejected_signals", "fact_signals_expired", "snapshot_accounts"):
        match = re.search(rf"{table}\s*│\s*(\d+)", text)
        assert match and int(match.group(1)) > 0, f"{table} is empty after the demo"
    assert "FAILED" in text and "STALLED" in text  # the status columns of the run summary
    runs_table = text[text.index("Runs per job and status"):]
    for line in runs_table.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) == 6 and cells[0] in {"trades", "accounts", "rejected_signals", "expired_signals"}:
            assert cells[1] == "0" and cells[4] == "0" and cells[5] == "0", line  # none RUNNING/FAILED/STALLED


def test_run_sweep_finds_a_late_written_record_the_weekly_schedule_leaves_for_later(
    home: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLDTHREAD_SWEEP_EVERY_DAYS", "7")  # Firestore's default: reads are billed there
    seed(home, bad=False)
    quiet = DS if DS.toordinal() % 7 else DS + dt.timedelta(days=1)  # not a sweep day
    assert run_cli(out, "run", "trades", "--ds", str(DS))[0] == 0
    # the bot writes, late, a copy of pos-1 closed two days earlier, without any goldthread field
    ctx = Context(Settings(home=home))
    late = dict(ctx.hot.get("live_positions", "pos-1") or {}, position_id="pos-late")
    for leg in ("opened_at", "closed_at"):
        late[leg] = (dt.datetime.fromisoformat(late[leg]) - dt.timedelta(days=2)).isoformat()
    ctx.hot.put("live_positions", "pos-late", late)
    ctx.close()

    code, data = run_cli(out, "run", "trades", "--ds", str(quiet), "--json")
    assert code == 0 and json.loads(data)["run"]["published"] == 0  # its day's range only: not found yet
    code, data = run_cli(out, "run", "trades", "--ds", str(quiet), "--sweep", "--json")
    run = json.loads(data)["run"]
    # found by the sweep: it names orders another position holds, so it is dead-lettered naming them
    assert (code, run["published"], run["dead_lettered"]) == (3, 1, 1)
    letters = json.loads(run_cli(out, "dead-letters", "list", "--json")[1])
    assert [x["record"] for x in letters["dead_letters"]] == ["pos-late"]
