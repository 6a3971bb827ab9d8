"""End to end in a real browser: ``goldthread demo`` builds the dashboard, headless Chromium opens it, plotly.js
(embedded in the page) draws a non-empty plot for every chart from the demo's data with round tick values and
true date axes, the page logs no error and tries to load nothing (a load refused by its CSP counts as an
error), the strategy filter (from the URL fragment) narrows the charts, and a screenshot is kept in
``test-artifacts/dashboard.png``.

Chromium is started as CI does (``--headless --no-sandbox --disable-gpu --disable-background-networking``)
with a throw-away profile; ``--dump-dom`` returns the DOM after the page's script ran, where the page has
recorded ``data-errors`` (window.onerror, unhandled rejections, console.error) and each chart's
``data-rendered`` (marks drawn).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from goldthread import cli
from rich.console import Console

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHARTS = ("equity", "drawdown", "pnl_by_day", "versions", "rejection", "mfe_histogram", "fees", "fee_backlog",
          "canary_hops", "runs_grid", "dead_letters")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--hide-scrollbars", "--mute-audio")


def chromium() -> str:
    """The Chromium binary, or skip saying how to install it (the only reason this test skips)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    pytest.skip("chromium not installed: apt-get install -y chromium chromium-driver (tests/support/system_deps.sh)")


def run_browser(url: str, profile: Path, *extra: str) -> str:
    """Run headless Chromium on ``url``; returns its stdout (the DOM for ``--dump-dom``)."""
    argv = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", *extra, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "HOME": str(profile)})
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def figures(dom: str) -> dict[str, str]:
    """Chart name -> the HTML of its figure element in the DOM."""
    found = {}
    for match in re.finditer(r'<figure class="chart" data-chart="([a-z_]+)"(.*?)</figure>', dom, re.S):
        found[match.group(1)] = match.group(2)
    return found


def tick_labels(figure: str, axis: str) -> list[str]:
    """The tick labels plotly.js drew on ``axis`` ("x" or "y") of one figure."""
    return re.findall(rf'<g class="{axis}tick">.*?data-unformatted="([^"]*)"', figure)


def tick_value(label: str) -> Decimal:
    """The number a value-axis label shows ("$98k" -> 98000, "−3%" -> -3, "2.5 ms" -> 2.5)."""
    text = label.replace("\u2212", "-").replace("$", "").replace(",", "").replace("%", "").replace("ms", "").strip()
    scale = {"k": Decimal(1000), "M": Decimal(10**6)}.get(text[-1:], Decimal(1))
    return Decimal(text.rstrip("kM")) * scale


def is_round_step(step: Decimal) -> bool:
    """1, 2, 2.5 or 5 times a power of ten."""
    exponent = step.adjusted()
    mantissa = step.scaleb(-exponent).normalize()
    return mantissa in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5))


def rendered(dom: str) -> dict[str, int]:
    """Chart name -> marks drawn, as the page recorded them."""
    found = {}
    for tag in re.findall(r"<figure[^>]*data-chart=[^>]*>", dom):
        name = re.search(r'data-chart="([a-z_]+)"', tag)
        count = re.search(r'data-rendered="(\d+)"', tag)
        assert name, tag
        found[name.group(1)] = int(count.group(1)) if count else -1
    return found


@pytest.fixture(scope="module")
def demo_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dashboard exactly as ``goldthread demo --days 10`` builds it on a fresh home."""
    home = tmp_path_factory.mktemp("browser") / "home"
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GOLDTHREAD_")}
    os.environ["GOLDTHREAD_HOME"] = str(home)
    buffer = io.StringIO()
    console, cli.console = cli.console, Console(file=buffer, width=200, color_system=None, force_terminal=False)
    try:
        assert cli.main(["demo", "--days", "10"]) == 0, buffer.getvalue()[-3000:]
    finally:
        cli.console = console
        os.environ.pop("GOLDTHREAD_HOME")
        os.environ.update(saved)
    path = home / "dashboard.html"
    assert f"dashboard: {path.resolve()}" in buffer.getvalue(), "the demo prints the dashboard's path"
    return path


def test_every_chart_renders_with_data_and_the_page_logs_no_error(demo_dashboard: Path, tmp_path: Path) -> None:
    dom = run_browser(demo_dashboard.as_uri(), tmp_path / "profile", "--dump-dom")
    root = re.search(r"<html[^>]*>", dom)
    assert root, dom[:500]
    assert 'data-ready="1"' in root.group(0), "the page's script did not finish"
    assert 'data-errors="0"' in root.group(0), re.search(r'id="gt-errors"[^>]*>([^<]*)<', dom)
    counts = rendered(dom)
    assert set(counts) == set(CHARTS)
    assert all(n > 0 for n in counts.values()), f"charts without marks: {counts}"
    drawn = figures(dom)
    for chart in CHARTS:
        assert 'class="main-svg"' in drawn[chart] and "js-plotly-plot" in drawn[chart], f"{chart}: no plotly plot"
    value_axes = {"equity": "y", "drawdown": "y", "pnl_by_day": "y", "versions": "x", "rejection": "x",
                  "mfe_histogram": "x", "fees": "y", "fee_backlog": "y", "canary_hops": "x", "dead_letters": "y"}
    for chart, axis in value_axes.items():
        values = [tick_value(label) for label in tick_labels(drawn[chart], axis)]
        assert len(values) >= 2, f"{chart}: no value ticks"
        steps = {b - a for a, b in itertools.pairwise(values)}
        assert len(steps) == 1 and is_round_step(steps.pop()), f"{chart}: ticks {values} are not round"
        assert all(v == v.to_integral_value() for v in values) or chart in ("drawdown", "rejection"), (chart, values)
    for chart in ("equity", "drawdown", "pnl_by_day", "fees", "fee_backlog", "runs_grid", "dead_letters"):
        labels = tick_labels(drawn[chart], "x")
        assert labels and all(re.fullmatch(r"[A-Z][a-z]{2} \d{2}", label) for label in labels), (chart, labels)
    assert "rangeselector" in drawn["equity"] and ">1m<" in drawn["equity"], "the equity chart has a range selector"
    assert re.search(r'data-kpi="open_dead_letters">\d+<', dom) and 'data-row="realised"' in dom
    assert "whole" in dom and "SUCCEEDED" in dom, "the demo's canary shows as the latest Golden Thread status"

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    run_browser(demo_dashboard.as_uri(), tmp_path / "profile", "--window-size=1400,3800", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_the_strategy_filter_narrows_the_charts(demo_dashboard: Path, tmp_path: Path) -> None:
    data = json.loads(re.search(r'id="gt-data">(.*?)</script>', demo_dashboard.read_text(), re.S).group(1))  # type: ignore[union-attr]
    strategy = "momentum"
    days = [r for r in data["daily_pnl"] if r["strategy_id"] == strategy and r["net_pnl_usd"]]
    versions = [r for r in data["strategy_performance"] if r["strategy_id"] == strategy]
    assert days and versions

    everything = rendered(run_browser(demo_dashboard.as_uri(), tmp_path / "p1", "--dump-dom"))
    dom = run_browser(demo_dashboard.as_uri() + f"#strategy={strategy}", tmp_path / "p2", "--dump-dom")
    assert f'data-filter-strategy="{strategy}"' in dom and 'data-errors="0"' in dom
    narrowed = rendered(dom)
    assert narrowed["pnl_by_day"] == len(days) < everything["pnl_by_day"]
    assert narrowed["versions"] == len(versions) < everything["versions"]
    assert narrowed["equity"] == everything["equity"], "the account is not per strategy"


def test_snapshots_without_cash_or_positions_draw_and_say_what_is_unknown(tmp_path: Path) -> None:
    """Loop D may store a snapshot knowing only equity: the page still draws and says the positions are unknown."""
    from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
    from goldthread.bi.dashboard import build_dashboard
    from goldthread.bi.marts import ensure_marts

    from tests.test_bi_marts import BASE, load
    from tests.test_dashboard import NOW, snapshots_without_positions

    wh = DuckDbWarehouse(tmp_path / "w.duckdb")
    wh.ensure_tables()
    ensure_marts(wh)  # what the Context does on an embedded warehouse
    load(wh, BASE)
    snapshots_without_positions(wh)
    page = build_dashboard(wh, tmp_path / "d.html", now=NOW)
    wh.close()
    dom = run_browser(page.as_uri(), tmp_path / "profile", "--dump-dom")
    root = re.search(r"<html[^>]*>", dom)
    assert root and 'data-ready="1"' in root.group(0) and 'data-errors="0"' in root.group(0), dom[:300]
    counts = rendered(dom)
    assert counts["equity"] > 0 and counts["drawdown"] > 0
    assert re.search(r'data-row="positions"><td>[^<]*unknown for some snapshots', dom)
