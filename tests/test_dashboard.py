"""The dashboard file: one self-contained page (nothing fetched), built from the marts and nothing else, with
every string escaped; the same page from DuckDB and from the BigQuery emulator; served on 127.0.0.1 only."""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from goldthread import cli
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.bi.dashboard import QUERIES, build_dashboard, dashboard_data, embed_json, make_server
from goldthread.bi.marts import MART_NAMES, ensure_marts
from goldthread.models.warehouse import JobRun, WarehouseRow
from goldthread.ports.warehouse import InsertResult, Warehouse
from plotly.offline import get_plotlyjs
from rich.console import Console

from tests.real.conftest import bigquery_emulator  # noqa: F401 - the session's bqemulator
from tests.test_bi_marts import BASE, CANARY, ENGINES, _drop, _make, at, job_run, load

NOW = dt.datetime(2024, 2, 1, 8, 0, tzinfo=dt.UTC)
HOSTILE = "</script><script>alert('x')</script><!-- & \u2028"
SECTIONS = ("account", "strategies", "risk", "moonshots", "fees", "pipeline")
CHARTS = ("equity", "drawdown", "pnl_by_day", "versions", "rejection", "mfe_histogram", "fees", "fee_backlog",
          "canary_hops", "runs_grid", "dead_letters")


def embedded(page: str) -> dict[str, Any]:
    """The JSON the page carries."""
    match = re.search(r'<script type="application/json" id="gt-data">(.*?)</script>', page, re.S)
    assert match, "no embedded data"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


class Recorder(Warehouse):
    """A warehouse that records every SQL text it is asked to run (and runs it on ``inner``)."""

    name = "recorder"

    def __init__(self, inner: Warehouse) -> None:
        self.inner = inner
        self.sql: list[str] = []

    def ensure_tables(self) -> None:
        self.inner.ensure_tables()

    def insert_rows(self, model: type[WarehouseRow], rows: Any, *, keys_are_new: bool = False) -> InsertResult:
        raise AssertionError("the dashboard must not write")

    def upsert_rows(self, model: type[WarehouseRow], rows: Any, columns: Any) -> int:
        raise AssertionError("the dashboard must not write")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self.sql.append(sql)
        return self.inner.query(sql, params)


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDbWarehouse:
    """DuckDB with the fixed data set of the mart tests, canary rows included."""
    wh = DuckDbWarehouse(tmp_path / "w.duckdb")
    wh.ensure_tables()
    ensure_marts(wh)  # what the Context does on an embedded warehouse
    load(wh, BASE)
    load(wh, CANARY)
    return wh


def without_library(page: str) -> str:
    """The page with the embedded plotly.js removed, after checking it is plotly's own bundle, embedded once."""
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1, "plotly.js is embedded exactly once, unchanged"
    return page.replace(bundle, "")


def test_one_self_contained_page_with_every_section(warehouse: DuckDbWarehouse, tmp_path: Path) -> None:
    path = build_dashboard(warehouse, tmp_path / "out" / "dash.html", now=NOW)
    assert path == (tmp_path / "out" / "dash.html").resolve() and list(path.parent.iterdir()) == [path]
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    own = without_library(page)
    for forbidden in ("<script src", "<link", "<iframe", "<img", "@import", "url(", "fetch(", "XMLHttpRequest",
                      "WebSocket", "import(", "src=", "href=\"http"):
        assert forbidden not in own, f"the page must not load anything: found {forbidden!r}"
    assert "default-src 'none'" in page, "a CSP forbids every network load"
    assert "Plotly.react(" in own and "<svg" not in own, "charts are drawn by the library, not by hand"
    for chart in CHARTS:
        assert f'data-chart="{chart}"' in page
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert 'id="f-from"' in page and 'id="f-to"' in page and 'id="f-strategy"' in page


def test_the_page_carries_the_mart_rows_without_canary_figures(warehouse: DuckDbWarehouse, tmp_path: Path) -> None:
    data = embedded(build_dashboard(warehouse, tmp_path / "d.html", now=NOW).read_text())
    assert set(QUERIES) <= set(data) and set(data["marts"]) == set(MART_NAMES)
    assert data["generated_at"] == "2024-02-01T08:00:00Z"
    assert [(r["ds"], r["trades"], r["net_pnl_usd"]) for r in data["daily_pnl"]] == [
        ("2024-01-02", 2, 50.5), ("2024-01-03", 1, -100.0), ("2024-01-04", 2, 50.0), ("2024-01-11", 1, 30.0)]
    assert {r["strategy_sk"] for r in data["strategy_performance"]} == {"alpha:1", "alpha:2", "beta:1"}
    assert [r["account_id"] for r in data["equity_curve"]] == ["ACC"] * 4
    assert [r["run_id"] for r in data["golden_thread"]][:2] == ["canary-e", "canary-d"], "latest canary first"
    assert {r["job"] for r in data["pipeline_health"]} == {"trades", "accounts"}


def test_the_dashboard_reads_only_the_marts(warehouse: DuckDbWarehouse) -> None:
    recorder = Recorder(warehouse)
    dashboard_data(recorder, NOW)
    assert len(recorder.sql) == len(QUERIES)
    for sql in recorder.sql:
        tables = {t.name for t in sqlglot.parse_one(sql, read="bigquery").find_all(sqlglot.exp.Table)}
        assert tables and tables <= set(MART_NAMES), f"reads more than the marts: {tables}"


def test_the_page_references_no_external_url(warehouse: DuckDbWarehouse, tmp_path: Path) -> None:
    """Outside the embedded library the page names no URL at all (the SVG namespaces plotly.js needs are inside it).

    The library's own strings name map-tile and CDN addresses of trace types the page never draws; the CSP
    (``default-src 'none'``) refuses them should anything try, and the browser test counts a refusal as an error.
    """
    page = build_dashboard(warehouse, tmp_path / "d.html", now=NOW).read_text()
    own = without_library(page)
    assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", own, re.I) == [], "the page names an external URL"
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', own)
    assert csp and "default-src 'none'" in csp.group(1) and "http" not in csp.group(1)
    assert "securitypolicyviolation" in own, "a refused load is counted as a page error"


def test_every_string_is_escaped(warehouse: DuckDbWarehouse, tmp_path: Path) -> None:
    warehouse.insert_rows(JobRun, [job_run("canary-z", "canary", dt.date(2024, 1, 31), "FAILED", at(31, 12), 1,
                                           error=HOSTILE, details={"broken_hop": HOSTILE})])
    page = build_dashboard(warehouse, tmp_path / "d.html", title=HOSTILE, now=NOW).read_text()
    assert page.count("</script>") == 4, "only the page's own four script elements end (hooks, plotly.js, data, page)"
    assert "<!--" not in page and "alert('x')</script>" not in page
    assert f"<title>{html.escape(HOSTILE)}</title>" in page
    latest = embedded(page)["golden_thread"][0]
    assert (latest["error"], latest["broken_hop"]) == (HOSTILE, HOSTILE), "the text survives, escaped"
    assert "\\u003c/script\\u003e" in embed_json({"e": HOSTILE}) and "\\u2028" in embed_json({"e": HOSTILE})
    own = without_library(page)
    assert ".innerHTML" not in own and "document.write" not in own, "the page's script never writes HTML"
    assert "esc(r.last_error)" in own, "free text reaches plotly.js (which reads some tags in labels) as entities"


@pytest.mark.parametrize("engine", ENGINES)
def test_same_page_data_from_either_engine(
    engine: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wh = _make(engine, request, tmp_path_factory)
    try:
        load(wh, BASE)
        load(wh, CANARY)
        reference = DuckDbWarehouse(":memory:")
        reference.ensure_tables()
        ensure_marts(reference)
        load(reference, BASE)
        load(reference, CANARY)

        def comparable(w: Warehouse) -> dict[str, Any]:
            data = dashboard_data(w, NOW)
            return json.loads(json.dumps(data, sort_keys=True))

        got, want = comparable(wh), comparable(reference)
        for key in want:
            assert got[key] == want[key], key
    finally:
        _drop(wh)


def test_serve_answers_the_page_on_localhost_only(warehouse: DuckDbWarehouse, tmp_path: Path) -> None:
    path = build_dashboard(warehouse, tmp_path / "d.html", now=NOW)
    server = make_server(path, port=0)
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(base + "/", timeout=10) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")
            assert answer.read() == path.read_bytes()
        path.write_text(path.read_text().replace("Golden Thread", "Rebuilt"))
        with urllib.request.urlopen(base + "/d.html", timeout=10) as answer:
            assert b"Rebuilt" in answer.read(), "each request reads the file: a rebuild shows on reload"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/../w.duckdb", timeout=10)
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_cli_dashboard_on_a_fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GOLDTHREAD_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GOLDTHREAD_HOME", str(tmp_path / "home"))
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buffer, width=250, color_system=None, force_terminal=False))
    assert cli.main(["dashboard", "--out", str(tmp_path / "x" / "dash.html")]) == 0
    assert f"dashboard: {(tmp_path / 'x' / 'dash.html').resolve()}" in buffer.getvalue()
    data = embedded((tmp_path / "x" / "dash.html").read_text())
    assert data["daily_pnl"] == [] and data["golden_thread"] == []
    assert cli.main(["dashboard"]) == 0
    assert (tmp_path / "home" / "dashboard.html").exists()


def test_marts_exist_wherever_the_tables_do(tmp_path: Path) -> None:
    """The Context makes the marts right after the tables on the embedded warehouse; the adapter alone makes
    only tables (the marts are goldthread.bi's, a layer above the adapters)."""
    from goldthread.config import Settings
    from goldthread.pipeline.context import Context

    def views(w: DuckDbWarehouse) -> set[str]:
        return {r["view_name"] for r in w.query("SELECT view_name FROM duckdb_views() WHERE NOT internal")}

    bare = DuckDbWarehouse(tmp_path / "bare.duckdb")
    bare.ensure_tables()
    assert not set(MART_NAMES) & views(bare), "the adapter knows no mart"
    wh = DuckDbWarehouse(tmp_path / "w.duckdb")
    ctx = Context(Settings(home=tmp_path), warehouse=wh)
    assert ctx.warehouse is wh
    assert set(MART_NAMES) <= views(wh)
    assert ensure_marts(wh) == list(MART_NAMES), "re-creating them is harmless"


NULLABLE_SNAPSHOT = ("cash", "buying_power", "initial_margin", "maintenance_margin", "long_market_value",
                     "short_market_value", "option_positions", "delta", "gamma", "theta", "vega")
"""The snapshot columns Loop D may leave NULL (a snapshot rebuilt from portfolio history knows only equity)."""


def snapshots_without_positions(wh: DuckDbWarehouse) -> None:
    """Let ``snapshot_accounts`` hold NULLs as the nullable schema does, and add two snapshots knowing only equity."""
    for column in NULLABLE_SNAPSHOT:
        wh.execute_script(f"ALTER TABLE snapshot_accounts ALTER COLUMN {column} DROP NOT NULL")
    for day, equity, last in ((5, 1250, 1210), (6, 1230, 1250)):
        wh.execute_script(
            "INSERT INTO snapshot_accounts (row_id, ds, run_id, loaded_at, is_canary, revision, account_id, "
            f"snapshot_at, equity, last_equity, daily_pnl) VALUES ('a-ACC-{day}', DATE '2024-01-0{day}', 'acc-run', "
            f"TIMESTAMPTZ '2024-01-0{day + 1} 03:00:00+00', FALSE, 1, 'ACC', "
            f"TIMESTAMPTZ '2024-01-0{day + 1} 03:00:00+00', {equity}, {last}, {equity - last})")


def test_snapshots_with_unknown_cash_and_positions_still_chart(warehouse: DuckDbWarehouse, tmp_path: Path) -> None:
    snapshots_without_positions(warehouse)
    rows = embedded(build_dashboard(warehouse, tmp_path / "d.html", now=NOW).read_text())["equity_curve"]
    assert [(r["ds"], r["equity"], r["cash"], r["positions_market_value"]) for r in rows[-3:]] == [
        ("2024-01-04", 1210.0, 1210.0, 0.0), ("2024-01-05", 1250.0, None, None), ("2024-01-06", 1230.0, None, None)]
    assert rows[-1]["running_peak"] == 1250.0 and rows[-1]["drawdown_usd"] == 20.0
