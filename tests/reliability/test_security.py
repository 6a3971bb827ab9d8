"""Guarantee 6, no one in: secrets never leave, SQL is never built from data, the dashboard never runs data,
credentials come only from the environment (or Secret Manager, or the cloud's default credentials).

* **Planted secrets.** Known values in ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``, a fake Alpaca that
  echoes them in its error bodies, and a night that fails every way it can (refused, unavailable and
  malformed broker answers; a bot document carrying the secret; a failed dispatch; an HTTP call; the
  command line). Then every output is searched, for the whole secrets and for every 12-character piece of
  them: the JSON logs (tracebacks included), the dead letters and their topic messages, run records, every
  warehouse table, every hot document and the raw SQLite files, the dashboard, the HTTP answers, the
  command line's output and the errors raised.
* **Injection.** SQL text takes values only as parameters and identifiers only through
  ``safe_identifier`` or a reviewed list (a test fails on any new interpolation into SQL text); the
  identifier checks refuse every injection tried; and end to end, a symbol, a rejection reason, ids and
  filters carrying ``'; DROP TABLE ...`` are dead-lettered or matched as plain values by the library, the
  command line and the HTTP functions, with every table intact.
* **The dashboard** run in headless Chromium with script, event-handler and markup payloads in every
  string it shows: nothing executes, the text shows escaped (``tests/test_dashboard.py`` checks the
  page's source).
* **Credentials**: no key, token or private key in the source tree; only the Alpaca adapters read the
  Alpaca variables; Google clients get explicit credentials only as anonymous ones for an emulator.
* Not repeated here: the HTTP functions refuse unauthenticated calls and the Alpaca keys come from Secret
  Manager (``tests/test_terraform.py``: ``test_nothing_is_public``,
  ``test_http_functions_are_invoked_only_by_the_scheduler_and_operators``,
  ``test_alpaca_keys_come_from_secret_manager_for_the_roles_that_call_alpaca``), and the Alpaca adapters'
  own scrubbing (``tests/test_alpaca_adapters.py::test_no_secret_in_any_error_or_log``).
"""

from __future__ import annotations

import ast
import datetime as dt
import io
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from goldthread import entrypoints, logs
from goldthread.adapters.alpaca_broker import AlpacaBroker, AlpacaRetryPolicy, TokenBucket
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.errors import ConfigError, GoldthreadError
from goldthread.models.warehouse import ALL_TABLES
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import list_dead_letters
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.pipeline.replay import replay
from goldthread.ports.bus import message_from_event
from goldthread.ports.hot_store import Where
from goldthread.ports.warehouse import safe_identifier
from goldthread.writer import POSITIONS

from tests.conftest import DS, NIGHT_AFTER, Clock, Factory, rows
from tests.fakes.alpaca_server import FakeAlpaca
from tests.reliability.harness import REPO_ROOT, bump, record
from tests.reliability.test_real_faults import write_trades

pytestmark = pytest.mark.slow

KEY = "PKRELIABILITY7Q2W9ZKEY"
SECRET = "sk-reliability-SECRET-4f9d2c8b7a6e5d4c"
FAST = AlpacaRetryPolicy(timeout=0.5, max_attempts=2, initial_backoff=0.001, max_backoff=0.01)
ECHO = json.dumps({"code": 40310000, "message": f"key {KEY} with secret {SECRET} is not allowed"})


def pieces(secret: str, size: int = 12) -> list[str]:
    """Every ``size``-character piece of ``secret`` (a truncated or split secret is still a leak)."""
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


def leaks(text: str) -> list[str]:
    """The pieces of either secret found in ``text``."""
    return [p for p in {*pieces(KEY), *pieces(SECRET)} if p in text]


@pytest.fixture
def alpaca() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(api_key=KEY, secret_key=SECRET) as server:
        yield server


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """goldthread's JSON logs, at DEBUG, into a buffer (the logger's previous set-up restored after)."""
    logger = logging.getLogger("goldthread")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    buffer = io.StringIO()
    logs.configure(level="DEBUG", stream=buffer)
    yield buffer
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def bot_writes(ctx: Context, alpaca: FakeAlpaca) -> dict[str, str]:
    """Positions whose orders the fake answers well or badly; returns position id -> what goes wrong."""
    fates = {"pos-ok": "fine", "pos-refused": "403 echoing the keys", "pos-down": "503 echoing the keys",
             "pos-garbled": "malformed JSON", "pos-carries-secret": "bot document with the secret"}

    def alpaca_orders(name: str, opened: dt.datetime) -> tuple[str, str]:
        entry = alpaca.add_order(symbol="AAPL", side="buy", qty="3", filled_avg_price="100.10", filled_at=opened)
        exit_ = alpaca.add_order(symbol="AAPL", side="sell", qty="3", filled_avg_price="101.20",
                                 filled_at=opened + dt.timedelta(hours=1))
        return entry["id"], exit_["id"]

    orders = write_trades(ctx, list(fates), alpaca_orders)
    for position_id, fate in fates.items():
        entry_id, exit_id = orders[position_id]
        if fate.startswith("403"):
            alpaca.fail(f"/v2/orders/{entry_id}", 403, times=None, body=ECHO)
        elif fate.startswith("503"):
            alpaca.fail(f"/v2/orders/{exit_id}", 503, times=None, body=ECHO)
        elif fate == "malformed JSON":
            alpaca.malformed(f"/v2/orders/{entry_id}", times=None)
        elif fate.startswith("bot"):
            ctx.hot.put(POSITIONS, position_id, {**(ctx.hot.get(POSITIONS, position_id) or {}), "api_key": SECRET,
                                                 "note": KEY})
    alpaca.fail("/v2/account", 422, times=None, body=ECHO)  # Loop D's dispatch fails with the echo
    alpaca.fail("/v2/account/activities*", 500, times=None, body=ECHO)  # and so does the fee patch
    return fates


def warehouse_text(path: Path) -> str:
    warehouse = DuckDbWarehouse(path, read_only=True)
    try:
        return "\n".join(json.dumps(warehouse.query(f"SELECT * FROM {safe_identifier(m.__table__)}"), default=str)
                         for m in ALL_TABLES)
    finally:
        warehouse.close()


def test_planted_secrets_appear_in_no_output(
    tmp_path: Path, alpaca: FakeAlpaca, captured_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET, "GOLDTHREAD_ALPACA_URL": alpaca.url,
           "GOLDTHREAD_ALPACA_DATA_URL": alpaca.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    market = SyntheticMarketData()
    ctx = Context(Settings(home=home, broker="alpaca"), clock=lambda: NIGHT_AFTER,
                  hot=SqliteHotStore(home / "hot.sqlite"), bus=LocalBus(project="secrets"),
                  warehouse=DuckDbWarehouse(home / "warehouse.duckdb"),
                  broker=AlpacaBroker(policy=FAST, rate_limiter=TokenBucket(rate_per_minute=60_000, burst=1000)),
                  market_data=market)  # a fake server needs no pacing: the default 190/min slept 9 s of this test
    wire_local_bus(ctx, batch_size=1, min_backoff=0)  # one item per invocation, as a Cloud Function gets it
    dead_letter_topic: list[Any] = []
    ctx.bus.subscribe(ctx.settings.dead_letter_topic, "inspector", dead_letter_topic.append)  # type: ignore[attr-defined]
    fates = bot_writes(ctx, alpaca)
    outputs: dict[str, str] = {}
    errors: list[BaseException] = []

    run = run_loop(ctx, "trades", DS)
    assert (run.loaded, run.dead_lettered) == (1, 4), run  # everything failed that was meant to
    for attempt in (lambda: run_loop(ctx, "accounts", DS), lambda: replay(ctx),
                    lambda: __import__("goldthread.patches.fee_patch", fromlist=["x"]).patch_fees(ctx, DS)):
        try:
            attempt()
        except GoldthreadError as exc:
            errors.append(exc)
    entrypoints.reset_context(ctx)
    try:
        for function, body in ((entrypoints.dispatch_http, {"loop": "accounts", "ds": DS.isoformat()}),
                               (entrypoints.replay_http, {"dry_run": True}),
                               (entrypoints.patch_fees_http, {"ds": DS.isoformat()})):
            answer, status, _ = function(_Request(body))
            outputs[f"http {function.__name__} ({status})"] = answer
    finally:
        entrypoints.reset_context(None)
    from goldthread.bi.dashboard import build_for_context

    outputs["dashboard"] = build_for_context(ctx, home / "dashboard.html").read_text()
    outputs["dead-letter topic"] = "\n".join(
        repr(m.data) + json.dumps(m.attributes) for m in map(message_from_event, dead_letter_topic))
    outputs["dead letters (library)"] = json.dumps(list_dead_letters(ctx, include_replayed=True), default=str)
    ctx.hot.delete(POSITIONS, "pos-carries-secret")  # the bot's own document: the one place the secret may be
    outputs["hot documents"] = json.dumps({c: dict(ctx.hot.query(c)) for c in (
        "live_positions", "live_signals", "strategies", "job_metadata")}, default=str)
    ctx.close()
    with sqlite3.connect(home / "hot.sqlite") as db:  # rewrite the file so no freed page keeps the deleted document
        db.execute("VACUUM")

    cli_env = {**os.environ, **env, "GOLDTHREAD_HOME": str(home), "GOLDTHREAD_BROKER": "alpaca",
               "GOLDTHREAD_LOG_LEVEL": "DEBUG"}
    for argv in (["runs"], ["dead-letters", "list", "--all"], ["run", "accounts", "--ds", DS.isoformat()],
                 ["replay", "--dry-run"], ["trace", "pos-refused"], ["patch", "fees", "--ds", DS.isoformat()]):
        done = subprocess.run([sys.executable, "-m", "goldthread.cli", *argv], capture_output=True, text=True,
                              env=cli_env, timeout=120)
        outputs[f"goldthread {' '.join(argv)} (exit {done.returncode})"] = done.stdout + done.stderr
    outputs["warehouse tables"] = warehouse_text(home / "warehouse.duckdb")
    for name in ("hot.sqlite", "hot.sqlite-wal"):
        if (home / name).exists():
            outputs[f"raw {name}"] = (home / name).read_bytes().decode("latin-1")
    outputs["logs"] = captured_logs.getvalue()
    outputs["errors raised"] = "\n".join(f"{type(e).__name__}: {e}" for e in errors)

    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    assert not found, f"secrets leaked into: {found}"
    letters = {d["doc_id"]: d for d in json.loads(outputs["dead letters (library)"])}
    assert set(letters) == set(fates) - {"pos-ok"}
    assert "***" in letters["pos-refused"]["error_message"]  # the echo was there, and was masked
    assert {e["loc"] for e in json.loads(letters["pos-carries-secret"]["errors_json"])} == {"api_key", "note"}
    assert len(errors) >= 2 and "***" in outputs["logs"] and len(outputs["logs"]) > 1000
    record("security", outputs_searched=len(outputs), secret_pieces_searched=len({*pieces(KEY), *pieces(SECRET)}),
           failures_provoked=len(fates) - 1 + len(errors) + 3, leaks=0,
           bytes_searched=sum(len(t) for t in outputs.values()))


class _Request:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def get_json(self, silent: bool = False) -> dict[str, Any]:
        return self.body


# -- SQL injection ------------------------------------------------------------------------------------------

INJECTIONS = ["x'); DROP TABLE fact_trades;--", "fact_trades; DROP TABLE dead_letters", "' OR '1'='1",
              'a" OR "1"="1', "x`; DELETE FROM fact_trades; --", "name WITH space", "fact_trades--", "t/*c*/",
              "x\x00y", "$.status') OR 1=1 --", "a') , data = json('{}"]
ODD_NAMES = ["1abc", "", "ünïcode", "a" * 129, "a.b", "tab\tle"]  # harmless, but not plain SQL identifiers


@pytest.mark.parametrize("text", INJECTIONS + ODD_NAMES)
def test_identifier_checks_refuse_injection(text: str, ctx: Context) -> None:
    with pytest.raises(ConfigError):
        safe_identifier(text)  # table, dataset and column names in warehouse SQL
    if text in INJECTIONS:  # the hot store's JSON field paths (queries, claims) accept only identifier parts
        with pytest.raises(ValueError):
            list(ctx.hot.query(POSITIONS, [Where(text, "==", "x")]))
        with pytest.raises(ValueError):
            ctx.hot.claim(POSITIONS, ["pos-1"], "archived_run_id", "r1", also={text: 1})
    bump("security", injections_refused=3 if text in INJECTIONS else 1)


def test_injection_through_data_is_dead_lettered_or_matched_as_a_value(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    """A symbol, a rejection reason and ids carrying SQL reach the pipeline, the command line and the HTTP
    functions as plain values: dead-lettered, or matched as text; every table keeps its rows."""
    good = make.closed_trade("pos-good")
    make.raw_position("pos-sym", good, symbol="AAPL'; DROP TABLE fact_trades;--")
    rejected = make.signal("sig-rej")
    make.writer.reject_signal(rejected.signal_id, "MAX_EXPOSURE", rejected.created_at)
    ctx.hot.put("rejected_signals", "sig-inject", {**ctx.hot.get("rejected_signals", "sig-rej"),  # type: ignore[dict-item]
                                                    "signal_id": "sig-inject",
                                                    "rejection_reason": "x'); DROP TABLE fact_trades;--"})
    run_loop(ctx, "trades", DS)
    clock.set(NIGHT_AFTER + dt.timedelta(days=8))  # Loop B waits for its 7-day window
    run_loop(ctx, "rejected_signals", DS)
    letters = {d["doc_id"]: json.loads(d["errors_json"])[0]["loc"] for d in rows(ctx, "dead_letters")}
    assert letters == {"pos-sym": "symbol", "sig-inject": "rejection_reason"}
    for text in INJECTIONS:
        assert list_dead_letters(ctx, reason=text) == [] and list_dead_letters(ctx, ids=[text]) == []
        assert replay(ctx, reason=text, ids=[text], dry_run=True).would_pass == []
    entrypoints.reset_context(ctx)
    try:
        answer, status, _ = entrypoints.replay_http(_Request({"reason": INJECTIONS[0], "ids": INJECTIONS,
                                                              "dry_run": True}))
        assert status == 200 and json.loads(answer)["would_pass"] == 0
        answer, status, _ = entrypoints.dispatch_http(_Request({"loop": INJECTIONS[0], "ds": "2024-03-05"}))
        assert status == 400
    finally:
        entrypoints.reset_context(None)
    assert [r["position_id"] for r in rows(ctx, "fact_trades")] == ["pos-good"]
    assert len(rows(ctx, "fact_rejected_signals")) == 1 and len(rows(ctx, "dead_letters")) == 2
    bump("security", injections_through_data=len(INJECTIONS) * 4 + 4)


def test_the_command_line_takes_injection_as_plain_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured_logs: io.StringIO
) -> None:
    from goldthread import cli
    from rich.console import Console

    monkeypatch.setenv("GOLDTHREAD_HOME", str(tmp_path))
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=200, color_system=None))
    assert cli.main(["run", "trades", "--ds", DS.isoformat()]) == 0  # creates the stores
    for text in INJECTIONS:
        for argv in (["dead-letters", "list", "--reason", text, "--id", text], ["replay", "--dry-run", "--id", text],
                     ["trace", text], ["runs", "--job", text]):
            out.seek(0)
            out.truncate()
            code = cli.main(argv)
            assert code in (0, 1), (argv, out.getvalue())  # trace answers 1: not found
            assert "error:" not in out.getvalue() and "Traceback" not in out.getvalue(), (argv, out.getvalue())
    tables = DuckDbWarehouse(tmp_path / "warehouse.duckdb")  # (the commands' connections are still open)
    try:
        for model in ALL_TABLES:  # every table still there
            tables.query(f"SELECT COUNT(*) AS n FROM {safe_identifier(model.__table__)}")
    finally:
        tables.close()
    bump("security", injections_through_cli=len(INJECTIONS) * 4)


REVIEWED_SQL_INTERPOLATIONS = {
    # expression interpolated into SQL text -> why it is safe
    "table": "safe_identifier(model.__table__) or a constant table name of the code",
    "key": "safe_identifier(model.__key__) or a constant key column",
    "sets": "safe_identifier(c) of model columns (DuckDB), or constant outcome names and heartbeat_at (SQLite)",
    "setters": "'$.{k}' of field names each validated by _path_expr (SQLite claim)",
    "marks": "'?' placeholders only",
    "selected": "'data', or json_array of data -> '$.{f}' for projected fields each validated by _path_expr",
    "field": "validated by _path_expr (identifier characters only)",
    "w.field": "validated by _path_expr earlier in the same loop iteration (SQLite query)",
    "expr": "_path_expr(field): json_extract of a field validated to identifier characters",
    "kind": "json_type of a field validated by _path_expr (SQLite not-in)",
    "' OR '.join(equal)": "typed equalities built from kind, expr, JSON type names and '?' placeholders",
    "','.join('?' * len(values))": "'?' placeholders only",
    "' AND '.join(clauses)": "clauses built from _path_expr-validated fields and '?' placeholders",
    "k": "the constant outcome names (loaded, duplicates, dead_lettered)",
    "reader": "'read_parquet' or 'read_csv_auto' (a constant chosen by file suffix)",
    "ts_col": "'ts' or 'timestamp' (a constant)",
    "'volume' if 'volume' in cols else '0'": "constants",
    "'CAST(timeframe AS VARCHAR)' if 'timeframe' in cols else 'NULL'": "constants",
    "where": "a constant filter of the canary's own partition ('ds = @ds AND ' or ''); values are parameters",
    "_REAL_BAR": "a constant predicate of the code (bars readers skip placeholder rows)",
    "model.__latest_first__": "the model class's constant ORDER BY (revision DESC, loaded_at DESC or its key)",
    "CANARY_MART": "a constant mart name",
    "mart": "a name from the constant MART_NAMES",
    "cols": "constant column names of the fact tables (trace)",
    "self._quoted(table)": "backquoted project.dataset.table; table from safe_identifier / models",
    "self._quoted(staging)": "a generated staging name of the model's table and a uuid hex",
    "self._quoted(name)": "a mart name passed through safe_identifier",
    "qualified": "the view SQL generated from the marts' own files",
    "all_cols": "column names of the model",
    "', '.join((f'S.{c}' for c in names))": "column names of the model",
    "model.__table__": "the model's constant table name (schema generator)",
    "body": "DDL generated from the model's columns (schema generator)",
    "safe_identifier(name)": "validated",
    "safe_identifier(model.__table__)": "validated",
    "safe_identifier(m.__table__)": "validated",
    "to_duckdb_sql(sql)": "the caller's own GoogleSQL text, translated",
}
SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|MERGE|DROP|FROM|WHERE|JOIN|VALUES|IN|IS|json_extract|json_set|json_type)\b")


def sql_interpolations() -> Iterator[tuple[str, int, str]]:
    """(file, line, expression) of every value interpolated into an f-string that reads as SQL."""
    for path in sorted((REPO_ROOT / "shared" / "goldthread").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if SQL_WORDS.search(text):
                    for part in node.values:
                        if isinstance(part, ast.FormattedValue):
                            yield str(path.relative_to(REPO_ROOT)), node.lineno, ast.unparse(part.value)


def test_sql_text_interpolates_only_reviewed_identifiers() -> None:
    """Values always go as parameters; what does reach SQL text is on the reviewed list, with its reason.
    A new interpolation fails here until someone checks it and adds it with why it is safe."""
    found = list(sql_interpolations())
    unreviewed = [f"{f}:{n}: {{{e}}}" for f, n, e in found if e not in REVIEWED_SQL_INTERPOLATIONS]
    assert not unreviewed, "SQL text built from unreviewed expressions:\n" + "\n".join(unreviewed)
    assert len(found) > 20
    record("security_sql", interpolations_reviewed=len(found),
           distinct_expressions=len({e for _, _, e in found}))


# -- the dashboard in a browser --------------------------------------------------------------------------

PAYLOAD = ('</script><script>document.documentElement.setAttribute("data-pwned","script")</script>'
           '<img src=x onerror="document.documentElement.setAttribute(\'data-pwned\',\'img\')">'
           '"><svg onload="document.documentElement.setAttribute(\'data-pwned\',\'svg\')"> javascript:alert(1) '
           '{{TITLE}} \u2028 & <!--')
DATE_OR_NUMBER = re.compile(r"^(\d{4}-\d{2}-\d{2}|[-+]?\d)")


def hostile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: hostile(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hostile(v) for v in value]
    if isinstance(value, str) and not DATE_OR_NUMBER.match(value):
        return f"{value}{PAYLOAD}"
    return value


@pytest.mark.browser
def test_the_dashboard_runs_no_string_it_shows(ctx: Context, make: Factory, tmp_path: Path) -> None:
    from goldthread.bi.dashboard import dashboard_data, render_html

    from tests.test_dashboard_browser import run_browser

    for n in range(4):
        make.closed_trade(f"pos-{n}")
    run_loop(ctx, "trades", DS)
    run_loop(ctx, "accounts", DS)
    from goldthread.bi.runs_sync import sync_job_runs

    sync_job_runs(ctx)
    data = hostile(dashboard_data(ctx.warehouse, NIGHT_AFTER))
    strings = sum(1 for _ in _strings(data))
    page = tmp_path / "dashboard.html"
    page.write_text(render_html(data, title=f"Golden Thread{PAYLOAD}"), encoding="utf-8")
    dom = run_browser(page.as_uri(), tmp_path / "profile", "--dump-dom")
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None and 'data-ready="1"' in root.group(0), dom[:300]
    assert "data-pwned" not in root.group(0), f"a payload ran: {root.group(0)}"
    assert "<img src=\"x\"" not in dom and "<svg onload" not in dom
    assert "&lt;/script&gt;&lt;script&gt;" in dom  # shown as text
    record("security_dashboard", hostile_strings=strings, executed=0)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str) and PAYLOAD in value:
        yield value


# -- credentials -----------------------------------------------------------------------------------------

KEY_PATTERNS = {
    "Alpaca live key id": re.compile(r"\bAK[A-Z0-9]{18}\b"),
    "Alpaca paper key id": re.compile(r"\bPK[A-Z0-9]{18}\b"),
    "private key": re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----"),
    "service account key": re.compile(r'"private_key_id"\s*:\s*"[0-9a-f]{20,}"'),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    "AWS key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b"),
    "secret assignment": re.compile(
        r"""(?i)\b(secret_key|api_key|password|token)\s*=\s*["'][A-Za-z0-9+/_\-]{16,}["']"""),
}
SOURCES = ("shared", "functions", "terraform", "bench", "tests", "docs", "README.md", "Makefile", "requirements.txt",
           "requirements-dev.txt", "pyproject.toml")


def source_files() -> Iterator[Path]:
    for name in SOURCES:
        path = REPO_ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" not in file.parts and ".terraform" not in file.parts and file.suffix != ".pyc":
                yield file


def test_no_credential_is_written_in_the_source_tree() -> None:
    here = Path(__file__).resolve()
    found = []
    scanned = 0
    for file in source_files():
        if file.resolve() == here:
            continue  # this file spells the patterns and plants its own fake secrets
        text = file.read_text(errors="replace")
        scanned += 1
        for what, pattern in KEY_PATTERNS.items():
            found += [f"{file.relative_to(REPO_ROOT)}: {what}: {m.group(0)[:40]}" for m in pattern.finditer(text)]
    assert not found, "credentials in the source tree:\n" + "\n".join(found)
    record("security_credentials", files_scanned=scanned, patterns=len(KEY_PATTERNS), found=0)


def test_credentials_are_read_only_from_the_environment_or_default_credentials() -> None:
    readers = []
    explicit = []
    for file in sorted((REPO_ROOT / "shared" / "goldthread").rglob("*.py")):
        text = file.read_text()
        rel = str(file.relative_to(REPO_ROOT))
        if re.search(r"APCA_API_(KEY_ID|SECRET_KEY)", text):
            readers.append(rel)
        explicit += [f"{rel}: {line.strip()}" for line in text.splitlines() if re.search(r"\bcredentials\s*=", line)]
    assert set(readers) <= {"shared/goldthread/adapters/alpaca_broker.py", "shared/goldthread/logs.py",
                            "shared/goldthread/config.py"}, readers  # logs masks them; config documents them
    assert explicit == ["shared/goldthread/adapters/bigquery_warehouse.py: "
                        "credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]"], explicit
    text = (REPO_ROOT / "shared/goldthread/adapters/bigquery_warehouse.py").read_text()
    assert text.index("if self.endpoint:") < text.index("AnonymousCredentials()")  # only for an emulator endpoint
    with pytest.raises(ConfigError, match="APCA_API_KEY_ID"):
        AlpacaBroker(env={})  # no key in the environment: no fallback anywhere
