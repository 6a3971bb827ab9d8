"""The dashboard: ONE self-contained HTML file built from the marts only, readable offline.

``build_dashboard`` queries each mart (nothing else: the same file can be built from DuckDB or BigQuery),
embeds the rows as JSON in the page together with plotly.js (from the ``plotly`` package, embedded once, never
fetched), and the page's inline script draws every chart with plotly.js (true date axes, round ticks, values on
hover, zoom, a range selector on the equity chart) and re-draws them when the date-range or strategy filter
changes. No CDN, no font, no fetch: the file works from a USB stick, and its Content-Security-Policy refuses
any load (a refused load is counted as a page error). Every string reaches the page escaped: the title
through ``html.escape``, the data as JSON with ``<``, ``>``, ``&`` and line separators escaped (so no value
can close the script element), and the page's own script only sets ``textContent``, never HTML.

Freshness is judged here, at build time, against the deployed schedules (``goldthread.bi.schedules``), from
the rows of ``mart_pipeline_health`` and ``mart_golden_thread``.

The page records its own health for the browser test: ``data-errors`` on ``<html>`` counts errors
(``window.onerror``, unhandled rejections, ``console.error``, CSP violations) and each chart's
``data-rendered`` holds the number of marks plotly.js drew (bars, markers, lines).
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import http.server
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from goldthread.bi.figures import RATIOS
from goldthread.bi.marts import MART_DESCRIPTIONS
from goldthread.bi.schedules import judge_freshness
from goldthread.pipeline.context import Context
from goldthread.ports.warehouse import Warehouse

TEMPLATE = Path(__file__).resolve().parent / "dashboard.html"
_PLACEHOLDER = re.compile(r"\{\{(TITLE|GENERATED|DATA|PLOTLYJS|PLOTLY_VERSION)\}\}")

QUERIES: dict[str, str] = {
    "daily_pnl": "SELECT ds, strategy_id, trades, priced_trades, winning_trades, gross_pnl_usd, net_pnl_usd, "
                 "est_fee_usd, actual_fee_usd, fee_usd FROM mart_daily_pnl ORDER BY ds, strategy_id",
    "strategy_performance": "SELECT * FROM mart_strategy_performance ORDER BY strategy_id, valid_from",
    "rejection_cost": "SELECT * FROM mart_rejection_cost ORDER BY ds, rejection_reason",
    "moonshots": "SELECT signal_id, ds, strategy_id, strategy_version, symbol, side, max_mfe_pct, max_mfe_r, "
                 "take_profit_hit, is_missed_moonshot, moonshot_threshold_pct, mfe_rank "
                 "FROM mart_missed_moonshots ORDER BY mfe_rank, signal_id",
    "equity_curve": "SELECT * FROM mart_equity_curve ORDER BY account_id, ds",
    "fee_drift": "SELECT * FROM mart_fee_drift ORDER BY ds, asset_class",
    "pipeline_health": "SELECT * FROM mart_pipeline_health ORDER BY job, ds",
    "dead_letters": "SELECT * FROM mart_dead_letters ORDER BY ds, loop, reason_code",
    "golden_thread": "SELECT * FROM mart_golden_thread ORDER BY started_at DESC NULLS LAST, run_id DESC LIMIT 50",
}
"""What the page shows, query by query: every one reads a single mart."""


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def dashboard_data(warehouse: Warehouse, now: dt.datetime | None = None) -> dict[str, Any]:
    """The rows the page embeds: one list per ``QUERIES`` entry, JSON-ready."""
    moment = now or dt.datetime.now(dt.UTC)
    data: dict[str, Any] = {
        "generated_at": _json_value(moment),
        "marts": MART_DESCRIPTIONS,
        "ratio_minimums": {r.column: r.minimum for r in RATIOS if r.mart == "mart_strategy_performance"},
    }
    for key, sql in QUERIES.items():
        data[key] = [{k: _json_value(v) for k, v in row.items()} for row in warehouse.query(sql)]
    data["freshness"] = judge_freshness(data["pipeline_health"], data["golden_thread"], moment)
    return data


@functools.lru_cache(maxsize=1)
def plotly_js() -> tuple[str, str]:
    """plotly.js as shipped inside the ``plotly`` package (source, version): embedded once per page."""
    from plotly import offline
    from plotly.offline.offline import get_plotlyjs_version

    return offline.get_plotlyjs(), get_plotlyjs_version()


def embed_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: nothing in it can end the element."""
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def render_html(data: dict[str, Any], title: str = "Golden Thread") -> str:
    """The complete page for ``data``."""
    source, version = plotly_js()
    values = {
        "TITLE": html.escape(title),
        "GENERATED": html.escape(str(data.get("generated_at", ""))),
        "DATA": embed_json(data),
        "PLOTLYJS": source,
        "PLOTLY_VERSION": html.escape(version),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], TEMPLATE.read_text(encoding="utf-8"))


def build_dashboard(
    warehouse: Warehouse, out_path: Path | str, *, title: str = "Golden Thread", now: dt.datetime | None = None
) -> Path:
    """Query the marts and write the self-contained dashboard to ``out_path``; returns its absolute path."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_html(dashboard_data(warehouse, now), title), encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a page
    return out.resolve()


def build_for_context(ctx: Context, out_path: Path | str, *, title: str = "Golden Thread") -> Path:
    """Sync run records to ``job_runs`` (pipeline health needs them), then build the dashboard from the marts."""
    from goldthread.bi.runs_sync import sync_job_runs

    sync_job_runs(ctx)
    return build_dashboard(ctx.warehouse, out_path, title=title, now=ctx.now())


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves the one page at ``/`` (and its own file name); nothing else exists."""

    def __init__(self, *args: Any, page: Callable[[], bytes], name: str, **kwargs: Any) -> None:
        self._page, self._name = page, name
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        """The dashboard, or 404."""
        if self.path.split("?", 1)[0] not in ("/", f"/{self._name}"):
            self.send_error(404, "only the dashboard lives here")
            return
        body = self._page()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the command line prints the address once."""


def make_server(path: Path, port: int = 8050) -> http.server.HTTPServer:
    """An HTTP server on 127.0.0.1:``port`` serving ``path``, read per request (a rebuild shows on reload).

    The warehouse is not held open while serving, so loops and ``goldthread dashboard`` keep working.
    """
    handler = functools.partial(_Handler, page=path.read_bytes, name=path.name)
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
