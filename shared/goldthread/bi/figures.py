"""The rules behind the marts' ratios and the cost of reading a mart, both rendered into ``docs/metrics.md``.

``RATIOS`` states, for every ratio a mart computes, the series it is computed on, how it is annualised and the
minimum sample below which the mart returns NULL (the dashboard then shows ``n/a (n=9)``). The SQL holds the
same thresholds as literals; ``tests/test_bi_ratios.py`` checks each at its minimum and one below, and checks
Sharpe, Sortino, profit factor and maximum drawdown against ``empyrical`` on the same series.

``scan_estimates`` estimates the bytes one query of each mart reads on BigQuery over a year of data, from
the columns the mart's SQL names (BigQuery reads only referenced columns) and the data volumes assumed in
``YEAR_ROWS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from goldthread.bi.marts import MART_NAMES, MARTS, PRUNED_BY_DS, WHOLE_TABLE_READS


@dataclass(frozen=True)
class Ratio:
    """One ratio: its series, annualisation, sample column and the minimum sample below which it is NULL."""

    mart: str
    column: str
    series: str
    annualisation: str
    sample: str
    minimum: int
    note: str = ""


MIN_TRADING_DAYS = 30
"""Sharpe and Sortino need 30 daily returns: with fewer, one lucky week annualises to a double-digit Sharpe."""

MIN_PRICED_TRADES = 20
"""Profit factor needs 20 priced trades: below that one trade moves it by a factor."""

RATIOS: tuple[Ratio, ...] = (
    Ratio("mart_strategy_performance", "sharpe_ratio",
          "Daily returns of the version: for each UTC day with at least one priced trade closed, the day's net "
          "P&L / the entry notional (entry fill x qty x multiplier) of those trades. Days without a closed trade "
          "are not in the series.",
          "x sqrt(252) (mean / sample standard deviation of daily returns, risk-free rate 0)",
          "trading_days", MIN_TRADING_DAYS, "Also NULL when the returns do not vary."),
    Ratio("mart_strategy_performance", "sortino_ratio", "The same daily returns as the Sharpe ratio.",
          "x sqrt(252) (mean / sqrt(mean(min(r, 0)^2)), target 0)", "trading_days", MIN_TRADING_DAYS,
          "Also NULL without a losing day."),
    Ratio("mart_strategy_performance", "profit_factor", "Net P&L of each priced trade of the version.",
          "none", "priced_trades", MIN_PRICED_TRADES, "Also NULL without a losing trade."),
    Ratio("mart_strategy_performance", "max_drawdown_usd",
          "Cumulative net P&L of the daily series above, from a peak that starts at 0.", "none (USD)",
          "trading_days", 1),
    Ratio("mart_strategy_performance", "win_rate", "Priced trades of the version (win = net P&L > 0).", "none",
          "priced_trades", 1),
    Ratio("mart_strategy_performance", "avg_r", "Net P&L of each priced trade / the mean loss (1R).", "none",
          "losing_trades", 1),
    Ratio("mart_daily_pnl", "win_rate", "Priced trades closed that day and strategy.", "none", "priced_trades", 1),
    Ratio("mart_rejection_cost", "would_have_won_share", "Priced rejected signals of the day and reason.", "none",
          "priced_signals", 1),
    Ratio("mart_rejection_cost", "mean_r_multiple", "Triple-barrier R-multiples of the day and reason.", "none",
          "r_multiples", 1),
    Ratio("mart_equity_curve", "drawdown_pct", "End-of-day equity of the account against its running peak.",
          "none (%)", "snapshots up to the day", 1),
)
"""Every ratio and statistic with its sample: the dashboard shows each next to its ``n``."""


YEAR_ROWS: dict[str, int] = {
    "fact_trades": 200 * 365,
    "fact_rejected_signals": 500 * 365,
    "fact_signals_expired": 500 * 365,
    "snapshot_accounts": 2 * 365,
    "dim_strategy": 50,
    "job_runs": (10 + 24) * 365,
    "dead_letters": 20 * 365,
    "dead_letter_replays": 10 * 365,
}
"""Rows a year brings, assumed: 200 closed trades, 500 rejected and 500 expired signals, 2 account snapshots,
10 job runs and 24 canary runs, 20 dead letters and 10 replays a day; 50 strategy versions in all."""

_TYPE_BYTES = {"INT64": 8, "FLOAT64": 8, "NUMERIC": 16, "BIGNUMERIC": 32, "BOOL": 1, "DATE": 8, "TIMESTAMP": 8,
               "DATETIME": 8}
_LONG_TEXT = ("error", "errors_json", "payload", "attributes_json", "details_json", "error_message", "params_json")


def _column_bytes(name: str, kind: str) -> int:
    if kind == "STRING":
        return 2 + (400 if name in _LONG_TEXT else 24)  # BigQuery: 2 bytes + the UTF-8 text
    return _TYPE_BYTES.get(kind, 8)


def _read_columns(mart: str) -> dict[str, set[str]]:
    """Table -> the columns of it the mart names (what BigQuery would read)."""
    import sqlglot

    from goldthread.models.columns import bigquery_schema
    from goldthread.models.warehouse import TABLES_BY_NAME

    tree = sqlglot.parse_one(MARTS[mart], read="bigquery")
    named = {c.name for c in tree.find_all(sqlglot.exp.Column)}
    ctes = {c.alias for c in tree.find_all(sqlglot.exp.CTE)}
    tables = {t.name for t in tree.find_all(sqlglot.exp.Table) if t.name not in ctes}
    return {t: {c["name"] for c in bigquery_schema(TABLES_BY_NAME[t])} & named for t in tables}


@dataclass(frozen=True)
class ScanEstimate:
    """Estimated bytes one query of a mart reads: all of a year, and with ``WHERE ds = <one day>``."""

    mart: str
    tables: tuple[str, ...]
    year_bytes: int
    one_day_bytes: int


def scan_estimates() -> list[ScanEstimate]:
    """One estimate per mart, from ``YEAR_ROWS`` and the columns its SQL names."""
    from goldthread.models.columns import bigquery_schema
    from goldthread.models.warehouse import TABLES_BY_NAME

    out = []
    for mart in MART_NAMES:
        year = day = 0
        read = _read_columns(mart)
        for table, columns in read.items():
            kinds = {c["name"]: c["type"] for c in bigquery_schema(TABLES_BY_NAME[table])}
            size = sum(_column_bytes(c, kinds[c]) for c in columns) * YEAR_ROWS[table]
            year += size
            prunes = (PRUNED_BY_DS[mart] and TABLES_BY_NAME[table].__partition__ == "ds"
                      and table not in WHOLE_TABLE_READS.get(mart, set()))
            day += size // 365 if prunes else size
        out.append(ScanEstimate(mart, tuple(sorted(read)), year, day))
    return out


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def ratios_markdown() -> str:
    """The Ratios and Cost sections of ``docs/metrics.md``."""
    parts = [
        "\n## Ratios\n\n",
        "Every ratio with the series it is computed on, its annualisation and the minimum sample below which the "
        "mart returns NULL. The dashboard prints each ratio with its sample (`1.42 (n=41)`) and a NULL one as "
        "`n/a (n=9)`. Sharpe, Sortino, profit factor and maximum drawdown are checked against `empyrical` "
        "(empyrical-reloaded) on the same series in `tests/test_bi_ratios.py`.\n\n",
        "| ratio | series | annualisation | sample (n) | NULL below | note |\n|---|---|---|---|---|---|\n",
    ]
    for r in RATIOS:
        parts.append(f"| `{r.mart}.{r.column}` | {r.series} | {r.annualisation} | `{r.sample}` | {r.minimum} | "
                     f"{r.note} |\n")
    parts += [
        "\n## Cost\n\n",
        "De-duplication keeps partition pruning: each fact table is read through `QUALIFY ROW_NUMBER() OVER "
        "(PARTITION BY ds, row_id ...) = 1`, and BigQuery pushes a filter on `ds` below a window that partitions "
        "by `ds`. A mart prunes when `ds` also survives every GROUP BY, window and join above it "
        "(`goldthread.bi.marts.pruning_problems` checks the compiled BigQuery SQL of every mart; "
        "`tests/test_bi_pruning.py`). `mart_strategy_performance` and `mart_equity_curve` are history-wide by "
        "definition (all-time figures per version; a running peak) and read their tables whole; "
        "`mart_dead_letters` reads `dead_letter_replays` whole (a letter's replays carry the replay day). "
        "The hourly canary reads the prunable marts with `WHERE ds = <its day>` only.\n\n",
        "Estimated bytes one query of a mart reads over a year of data (columns the mart names, sizes as BigQuery "
        "counts them, strings of 24 characters and long texts of 400; volumes: "
        + ", ".join(f"`{t}` {n:,} rows" for t, n in YEAR_ROWS.items())
        + "). BigQuery bills at least 10 MB per table a query references, so the one-day figures round up.\n\n",
        "| mart | tables | whole year | `WHERE ds = <day>` |\n|---|---|---|---|\n",
    ]
    for e in scan_estimates():
        parts.append(f"| `{e.mart}` | {', '.join(f'`{t}`' for t in e.tables)} | {_size(e.year_bytes)} | "
                     f"{_size(e.one_day_bytes)}{'' if PRUNED_BY_DS[e.mart] else ' (history-wide)'} |\n")
    return "".join(parts)
