"""The command line's help and its answers to bad input (issue 14, items 5 and 8).

Every option says what it does and its default; the top-level help carries no reStructuredText quotes; the
README's command table lists exactly the parser's commands, each with every one of its options. And no input
ends in a traceback: a table of known-bad inputs and a hypothesis strategy of odd ones (bad dates, unknown loops,
negative limits, garbage ids, odd unicode) drive ``goldthread.cli.main`` on a real home, and every answer is a
clean exit code (argparse's usage error, ``SystemExit(2)``, counts as a clean refusal).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from goldthread import cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DS
from tests.support.cli import capture_console, fresh_home, seed_home

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def parsers(parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command's parser with its path: ("runs",), ("dead-letters", "list"), ..."""
    parser = parser or cli.build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from parsers(child, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


# -- 8. help and the README --------------------------------------------------------------------------------


def test_every_option_says_what_it_does_and_its_default() -> None:
    for path, parser in parsers():
        text = parser.format_help()
        described = text[text.index("options:"):]
        entries = re.split(r"\n  (?=-)", described)  # one entry per option: its flags, its help
        for action in options(parser):
            assert action.help, f"goldthread {' '.join(path)} {action.dest}: no help text"
            if action.option_strings and not action.required:
                flag = action.option_strings[-1]
                entry = next(e for e in entries if e.startswith(flag))
                assert "(default:" in entry, f"goldthread {' '.join(path)} {flag}: help shows no default"


def test_the_top_level_help_has_no_restructuredtext_quotes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], *([*path, "--help"] for path, _ in parsers())):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert "``" not in text, (argv, text)


def readme_rows() -> list[str]:
    text = README.read_text()
    table = text[text.index("| command | what it does |"):]
    table = table[: table.index("\n\n")]
    return [line for line in table.splitlines()[2:] if line.startswith("| `goldthread ")]


def row_command(row: str) -> str:
    """The command words of a README row: `goldthread dead-letters list [--loop L]` -> 'dead-letters list'."""
    usage = row.split("`")[1].removeprefix("goldthread ")
    return " ".join(w for w in usage.split() if re.fullmatch(r"[a-z][a-z-]*(\\\|[a-z]+)*", w))


def test_the_readme_command_table_matches_the_parser() -> None:
    rows = readme_rows()
    paths = {" ".join(path): parser for path, parser in parsers()}
    documented: dict[str, list[str]] = {}
    for row in rows:
        words = row_command(row)
        path = max((p for p in paths if words == p or words.startswith(p + " ")), key=len, default=None)
        assert path is not None, f"README documents a command the parser lacks: {row}"
        documented.setdefault(path, []).append(row)
    assert set(documented) == set(paths), f"README lacks: {sorted(set(paths) - set(documented))}"
    for path, parser in paths.items():
        text = " ".join(documented[path])
        for action in options(parser):
            if action.option_strings:
                assert any(re.search(rf"{re.escape(flag)}\b", text) for flag in action.option_strings), (
                    f"README's row for goldthread {path} does not name {action.option_strings[-1]}")
    top = {path.split()[0] for path in paths}
    help_text = cli.build_parser().format_help()
    listed = set(re.findall(r"^    ([a-z-]+)\s", help_text, re.MULTILINE))
    assert listed == top == {row_command(r).split()[0] for r in rows}


# -- 5. no input ends in a traceback ----------------------------------------------------------------------


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A home with two trades, one broken document and one PARTIAL run; the CLI's console captured."""
    home = fresh_home(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)  # anything a command might write by a relative path stays here
    seed_home(home)
    buffer = capture_console(monkeypatch, 200)
    assert cli.main(["run", "trades", "--ds", DS.isoformat()]) == 3
    yield buffer


def answer(argv: list[str], out: io.StringIO, capsys: pytest.CaptureFixture[str]) -> int:
    """The exit code of ``argv``; fails on a traceback or an exit code outside the convention."""
    out.seek(0)
    out.truncate()
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse: usage error (2) or --help (0)
        code = exit_.code if isinstance(exit_.code, int) else 1
        assert code in (0, 2), (argv, code)
    printed = out.getvalue() + "".join(capsys.readouterr())
    assert "Traceback" not in printed, (argv, printed)
    assert code in (0, 1, 2, 3), (argv, code, printed)
    return code


BAD = [
    (["run", "bonds", "--ds", "2024-03-05"], 2), (["run", "trades", "--ds", "2024-02-30"], 2),
    (["run", "trades", "--ds", "2099-01-01"], 2), (["run", "accounts", "--ds", "０２０２４-01-01"], 2),
    (["backfill", "trades", "--start", "2024-03-05", "--end", "2024-03-01"], 2),
    (["backfill", "trades", "--start", "2024-03-05", "--end", "2099-12-31", "--dry-run"], 2),
    (["runs", "--limit", "-1"], 2), (["runs", "--limit", "ten"], 2), (["runs", "--status", "DONE"], 2),
    (["runs", "--since", "yesterday"], 2), (["runs", "--job", "🚀"], 1), (["runs", "--job", "\udcff"], 2),
    (["dead-letters", "list", "--loop", "bonds"], 2), (["dead-letters", "list", "--limit", "-5"], 2),
    (["dead-letters", "list", "--id", "' OR 1=1 --"], 1), (["dead-letters", "show", "ﬀ\u0000"], 1),
    (["dead-letters", "discard", "nope", "--reason", " "], 2), (["dead-letters", "purge"], 2),
    (["replay", "--id", "../../etc/passwd", "--dry-run"], 1), (["replay", "--loop", "TRADES", "--dry-run"], 3),
    (["trace", "\u202egnp.exe"], 1), (["trace", ""], 1), (["hot", "get", "nowhere", "x"], 2),
    (["hot", "get", "live_positions", "\x00"], 1),
    (["hot", "put", "live_positions", "pos-1", "--file", "/nonexistent"], 1),
    (["hot", "put", "live_positions", "pos-1", "--file", "."], 1), (["patch", "fees"], 2),
    (["patch", "fees", "--ds", "2099-01-01", "--dry-run"], 2), (["canary", "--timeout", "nan"], 2),
    (["canary", "--timeout", "-1"], 2), (["dashboard", "--port", "70000"], 2), (["status", "--jsn"], 2),
    (["schema", "drop"], 2), ([], 2), (["--version"], 2),
]


@pytest.mark.parametrize(("argv", "code"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_gets_a_clean_answer(argv: list[str], code: int, seeded: io.StringIO,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert answer(argv, seeded, capsys) == code


ODD = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["", " ", "-", "--", "-1", "0", "NaN", "inf", "1e309", "2024-02-30", "0000-01-01",
                     "9999-99-99", "2024-1-1", "２０２４-０１-０１", "\udcff", "\x00", "ß", "İ", "\u202e", "🚀" * 40,
                     "' OR 1=1 --", "../../x", "pos-1", "VALIDATION", "validation", "TRADES"]),
)
TEMPLATES = [
    ("run", "{v}", "--ds", "{v}"), ("run", "trades", "--ds", "{v}"), ("runs", "--limit", "{v}"),
    ("runs", "--job", "{v}", "--json"), ("runs", "--since", "{v}", "--status", "{v}"), ("runs", "--ds", "{v}"),
    ("dead-letters", "list", "--loop", "{v}"), ("dead-letters", "list", "--reason", "{v}", "--limit", "{v}"),
    ("dead-letters", "list", "--id", "{v}", "--json"), ("dead-letters", "show", "{v}"),
    ("dead-letters", "discard", "{v}", "--reason", "{v}"), ("trace", "{v}", "--json"), ("trace", "{v}"),
    ("hot", "get", "{v}", "{v}"), ("hot", "get", "live_positions", "{v}", "--json"),
    ("replay", "--dry-run", "--id", "{v}"), ("replay", "--dry-run", "--reason", "{v}", "--loop", "{v}"),
    ("patch", "fees", "--ds", "{v}", "--dry-run"), ("backfill", "accounts", "--start", "{v}", "--end", "2024-02-30"),
    ("backfill", "{v}", "--start", "2024-03-05", "--end", "{v}"), ("status", "{v}"), ("{v}",),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=st.sampled_from(TEMPLATES), value=ODD)
def test_no_odd_input_ends_in_a_traceback(template: tuple[str, ...], value: str, seeded: io.StringIO,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = [value if part == "{v}" else part for part in template]
    if argv[:2] == ["run", "trades"] and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        argv[-1] = "2099-01-01"  # a valid past day would simply run the loop: not what this test is about
    answer(argv, seeded, capsys)


def test_a_real_process_answers_bad_input_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "GOLDTHREAD_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    for argv, code in ((["trace", "nosuch"], 1), (["runs", "--limit", "-3"], 2), (["trace", "\udcff\udcfe"], 2),
                       (["backfill", "trades", "--start", "2024-03-05", "--end", "2024-03-01"], 2)):
        got = subprocess.run([sys.executable, "-m", "goldthread.cli", *argv], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
        assert got.returncode == code and "Traceback" not in got.stderr + got.stdout, (argv, got.stdout, got.stderr)
        last = (got.stdout + got.stderr).strip().splitlines()[-1]  # argparse prints its usage first
        assert re.match(r"(not found|refused|goldthread \w+: error):", last), (argv, got.stdout, got.stderr)
