"""Every column of every mart, defined once: ``METRICS``. ``docs/metrics.md`` is generated from it.

A definition here is the contract the mart's SQL (``bi/mart_*.sql``) implements; the tests check both
ways: each mart returns exactly the columns listed for it here, each figure matches a hand computation
of its definition on a fixed data set (DuckDB and the BigQuery emulator), and ``docs/metrics.md`` is
what ``metrics_markdown()`` renders (regenerate with ``python -m goldthread.bi.metrics``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from goldthread.bi.marts import MART_DESCRIPTIONS, MART_NAMES

DOC_PATH = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


@dataclass(frozen=True)
class Metric:
    """One mart column: what it means, in which unit, and whether it is a grouping key (dimension)."""

    mart: str
    column: str
    unit: str
    definition: str
    dimension: bool = False


COMMON_RULES = (
    "Canary rows (`is_canary`) are excluded from every mart except `mart_golden_thread`, which shows only them.",
    "Each fact row is counted once, even if a streaming warehouse holds its key twice: the latest revision wins, "
    "then the latest `loaded_at` (`QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY revision DESC, "
    "loaded_at DESC) = 1`; `ds` in the window lets BigQuery prune partitions, see Cost).",
    "A trade is *priced* when its net P&L is known (both fill prices known); P&L figures use priced trades only.",
    "Money is exact (NUMERIC / DECIMAL(38,9)) for sums; ratios, means and statistics are FLOAT64.",
    "SAFE_DIVIDE: a ratio with a zero or missing denominator is NULL, never an error or infinity.",
)

_ROWS: tuple[tuple[str, str, str, str, bool], ...] = (
    # mart_daily_pnl
    ("mart_daily_pnl", "ds", "date", "Closing day of the trades (fact_trades.ds, UTC).", True),
    ("mart_daily_pnl", "strategy_id", "id", "Strategy that traded.", True),
    ("mart_daily_pnl", "trades", "count", "Closed trades that day.", False),
    ("mart_daily_pnl", "priced_trades", "count", "Trades whose net P&L is known.", False),
    ("mart_daily_pnl", "winning_trades", "count", "Priced trades with net P&L > 0.", False),
    ("mart_daily_pnl", "win_rate", "ratio", "winning_trades / priced_trades.", False),
    ("mart_daily_pnl", "gross_pnl_usd", "USD", "Sum of P&L at the real (broker) fills, before fees.", False),
    ("mart_daily_pnl", "net_pnl_usd", "USD", "Sum of gross P&L minus the fee (actual once finalised, else estimated).",
     False),
    ("mart_daily_pnl", "est_fee_usd", "USD", "Sum of the fees the bot estimated.", False),
    ("mart_daily_pnl", "actual_fee_usd", "USD", "Sum of broker-posted fees of finalised trades (NULL if none).", False),
    ("mart_daily_pnl", "fee_finalized_trades", "count", "Trades whose fee the fee patch finalised.", False),
    ("mart_daily_pnl", "fee_usd", "USD", "Sum of the best known fee: actual if finalised, else estimated.", False),
    # mart_strategy_performance
    ("mart_strategy_performance", "strategy_sk", "id", "dim_strategy surrogate key `strategy_id:version`.", True),
    ("mart_strategy_performance", "strategy_id", "id", "Strategy.", True),
    ("mart_strategy_performance", "version", "label", "Strategy version (a dim_strategy SCD2 row).", True),
    ("mart_strategy_performance", "valid_from", "timestamp", "When the version was deployed.", True),
    ("mart_strategy_performance", "valid_to", "timestamp", "When the next version replaced it (NULL if current).",
     True),
    ("mart_strategy_performance", "is_current", "bool", "The newest version of its strategy.", True),
    ("mart_strategy_performance", "trades", "count", "Closed trades of the version (0 if none).", False),
    ("mart_strategy_performance", "priced_trades", "count", "Trades whose net P&L is known.", False),
    ("mart_strategy_performance", "winning_trades", "count", "Priced trades with net P&L > 0.", False),
    ("mart_strategy_performance", "losing_trades", "count", "Priced trades with net P&L < 0.", False),
    ("mart_strategy_performance", "win_rate", "ratio", "winning_trades / priced_trades.", False),
    ("mart_strategy_performance", "net_pnl_usd", "USD", "Sum of net P&L.", False),
    ("mart_strategy_performance", "gross_profit_usd", "USD", "Sum of net P&L of winning trades.", False),
    ("mart_strategy_performance", "gross_loss_usd", "USD", "Minus the sum of net P&L of losing trades (>= 0).",
     False),
    ("mart_strategy_performance", "profit_factor", "ratio",
     "gross_profit_usd / gross_loss_usd; NULL below 20 priced trades or without a loss.", False),
    ("mart_strategy_performance", "expectancy_usd", "USD", "Mean net P&L per priced trade.", False),
    ("mart_strategy_performance", "avg_loss_usd", "USD", "Mean size of a losing trade's net loss (positive); 1R.",
     False),
    ("mart_strategy_performance", "avg_r", "R",
     "Mean R-multiple of the priced trades, net P&L / 1R, where 1R is the version's average loss (avg_loss_usd): "
     "Van Tharp's estimate of the initial risk when the stop is not recorded on the trade (fact_trades has no "
     "stop). Equals expectancy_usd / avg_loss_usd; NULL without losing trades.", False),
    ("mart_strategy_performance", "avg_holding_hours", "hours", "Mean of closed_at - opened_at.", False),
    ("mart_strategy_performance", "trading_days", "count", "Days with at least one priced trade (the daily returns).",
     False),
    ("mart_strategy_performance", "sharpe_ratio", "ratio",
     "Annualised Sharpe of the daily returns (see Ratios): mean / sample standard deviation x sqrt(252); "
     "risk-free rate 0. NULL below 30 trading days or without variation.", False),
    ("mart_strategy_performance", "sortino_ratio", "ratio",
     "Annualised Sortino of the same daily returns: mean / downside deviation x sqrt(252), downside deviation = "
     "sqrt(mean(min(return, 0)^2)) over all trading days (target 0). NULL below 30 trading days or without a "
     "losing day.", False),
    ("mart_strategy_performance", "max_drawdown_usd", "USD",
     "Largest fall of cumulative daily net P&L from its running peak (the peak starts at 0), in USD.", False),
    # mart_rejection_cost
    ("mart_rejection_cost", "ds", "date", "Day the signals were rejected (fact_rejected_signals.ds).", True),
    ("mart_rejection_cost", "rejection_reason", "id", "Risk-filter reason code.", True),
    ("mart_rejection_cost", "signals", "count", "Rejected signals archived by Loop B.", False),
    ("mart_rejection_cost", "priced_signals", "count", "Signals with a theoretical net P&L (bars were available).",
     False),
    ("mart_rejection_cost", "would_have_won", "count", "Priced signals whose theoretical net P&L per unit > 0.", False),
    ("mart_rejection_cost", "would_have_won_share", "ratio", "would_have_won / priced_signals.", False),
    ("mart_rejection_cost", "sum_theoretical_net_pnl_per_unit", "USD/unit",
     "Sum of triple-barrier P&L per unit after the estimated round-trip fee.", False),
    ("mart_rejection_cost", "mean_theoretical_net_pnl_per_unit", "USD/unit", "Mean of the same.", False),
    ("mart_rejection_cost", "sum_theoretical_net_return_pct", "%",
     "Sum over signals of theoretical net P&L per unit / theoretical entry price x 100 (one unit of capital "
     "per signal, so symbols of any price add up).", False),
    ("mart_rejection_cost", "mean_theoretical_net_return_pct", "%", "Mean of the same.", False),
    ("mart_rejection_cost", "sum_r_multiple", "R", "Sum of the triple-barrier R-multiples (gross; 1R = entry to stop).",
     False),
    ("mart_rejection_cost", "r_multiples", "count", "Signals with an R-multiple (the mean's sample).", False),
    ("mart_rejection_cost", "mean_r_multiple", "R", "sum_r_multiple / r_multiples.", False),
    ("mart_rejection_cost", "filter_verdict", "label",
     "`saved` when sum_theoretical_net_return_pct < 0 (the rejected trades would have lost), `cost` when > 0, "
     "else `neutral` (per day and reason; over a range, apply the same rule to the summed rows).", False),
    # mart_missed_moonshots
    ("mart_missed_moonshots", "signal_id", "id", "Expired (never executed) signal.", True),
    ("mart_missed_moonshots", "ds", "date", "Day the signal expired.", True),
    ("mart_missed_moonshots", "strategy_id", "id", "Strategy.", True),
    ("mart_missed_moonshots", "strategy_version", "label", "Version that emitted it.", True),
    ("mart_missed_moonshots", "symbol", "id", "Instrument.", True),
    ("mart_missed_moonshots", "asset_class", "label", "crypto, equity or option.", True),
    ("mart_missed_moonshots", "side", "label", "long or short.", True),
    ("mart_missed_moonshots", "created_at", "timestamp", "When the signal was emitted.", True),
    ("mart_missed_moonshots", "expires_at", "timestamp", "When it expired.", True),
    ("mart_missed_moonshots", "max_mfe_pct", "%",
     "Maximum favourable excursion from the signal price within its life plus the look-ahead, in %.", False),
    ("mart_missed_moonshots", "max_mfe_r", "R", "The same excursion in R (signal price to stop).", False),
    ("mart_missed_moonshots", "max_mfe_at", "timestamp", "When the maximum excursion happened.", False),
    ("mart_missed_moonshots", "take_profit_hit", "bool", "The take-profit was touched in the window.", False),
    ("mart_missed_moonshots", "is_missed_moonshot", "bool", "max_mfe_pct >= moonshot_threshold_pct (Loop C's flag).",
     False),
    ("mart_missed_moonshots", "moonshot_threshold_pct", "%", "The threshold in force when Loop C ran.", False),
    ("mart_missed_moonshots", "bars_observed", "count", "Bars the excursion was measured on (0 = no data).", False),
    ("mart_missed_moonshots", "mfe_rank", "rank",
     "Rank within its day by max_mfe_pct, largest first (ties share a rank; NULL last).", False),
    # mart_equity_curve
    ("mart_equity_curve", "account_id", "id", "Broker account.", True),
    ("mart_equity_curve", "ds", "date", "Snapshot day.", True),
    ("mart_equity_curve", "snapshot_at", "timestamp",
     "The moment the figures describe, on ds: when Loop D read the live account (a run on the day), or "
     "midnight New York of ds, the label of the broker's daily history point (a past day).", True),
    ("mart_equity_curve", "equity", "USD",
     "Account equity at snapshot_at (live account), or the equity ds closed with (portfolio history).", False),
    ("mart_equity_curve", "last_equity", "USD",
     "Equity at the previous trading day's close (the broker's last_equity, or the history's previous point).",
     False),
    ("mart_equity_curve", "daily_pnl", "USD", "equity - last_equity.", False),
    ("mart_equity_curve", "cash", "USD", "Cash at the snapshot (NULL when the snapshot could not know it).", False),
    ("mart_equity_curve", "positions_market_value", "USD",
     "long_market_value + short_market_value: what open positions were worth (NULL if either is unknown).", False),
    ("mart_equity_curve", "daily_return_pct", "%", "(equity - last_equity) / last_equity x 100.", False),
    ("mart_equity_curve", "running_peak", "USD", "Highest equity of the account up to and including the day.", False),
    ("mart_equity_curve", "drawdown_usd", "USD", "running_peak - equity (>= 0).", False),
    ("mart_equity_curve", "drawdown_pct", "%", "(equity - running_peak) / running_peak x 100 (<= 0).", False),
    # mart_fee_drift
    ("mart_fee_drift", "ds", "date", "Closing day of the trades.", True),
    ("mart_fee_drift", "asset_class", "label", "crypto, equity or option.", True),
    ("mart_fee_drift", "trades", "count", "Closed trades.", False),
    ("mart_fee_drift", "finalized_trades", "count", "Trades whose posted fee the fee patch applied.", False),
    ("mart_fee_drift", "backlog_trades", "count", "Trades still waiting for their posted fee (finalisation backlog).",
     False),
    ("mart_fee_drift", "est_fee_usd", "USD", "Sum of estimated fees of all trades.", False),
    ("mart_fee_drift", "est_fee_finalized_usd", "USD", "Sum of estimated fees of finalised trades.", False),
    ("mart_fee_drift", "actual_fee_usd", "USD", "Sum of posted fees of finalised trades.", False),
    ("mart_fee_drift", "fee_drift_usd", "USD", "actual_fee_usd - est_fee_finalized_usd (positive: fees were higher).",
     False),
    ("mart_fee_drift", "fee_drift_pct", "%", "fee_drift_usd / est_fee_finalized_usd x 100.", False),
    ("mart_fee_drift", "backlog_est_fee_usd", "USD", "Sum of estimated fees of the backlog (NULL if none).", False),
    # mart_pipeline_health
    ("mart_pipeline_health", "job", "id", "Loop, patch or replay (the canary is in mart_golden_thread).", True),
    ("mart_pipeline_health", "ds", "date", "Day the runs processed (job_metadata ds).", True),
    ("mart_pipeline_health", "runs", "count", "Runs of the job for the day (re-runs and replays included).", False),
    ("mart_pipeline_health", "failed_runs", "count", "Runs that ended FAILED or STALLED.", False),
    ("mart_pipeline_health", "last_run_id", "id", "The latest run (by start time).", False),
    ("mart_pipeline_health", "last_status", "label", "Status of the latest run.", False),
    ("mart_pipeline_health", "last_started_at", "timestamp", "When the latest run started.", False),
    ("mart_pipeline_health", "last_finished_at", "timestamp", "When it finished (NULL while running).", False),
    ("mart_pipeline_health", "last_duration_seconds", "seconds", "finished_at - started_at of the latest run.", False),
    ("mart_pipeline_health", "last_reconciled", "bool",
     "The latest run reconciles: dispatched and published = loaded + duplicates + dead-lettered.", False),
    ("mart_pipeline_health", "last_error", "text", "Error of the latest run, if it failed.", False),
    ("mart_pipeline_health", "rows_published", "count", "Work items published by the day's runs.", False),
    ("mart_pipeline_health", "rows_loaded", "count", "Items loaded into the warehouse (or changed, for patches).",
     False),
    ("mart_pipeline_health", "rows_duplicate", "count", "Items skipped because their row already existed.", False),
    ("mart_pipeline_health", "rows_dead_lettered", "count", "Items sent to the dead letters.", False),
    ("mart_pipeline_health", "all_reconciled", "bool", "Every run of the day reconciles.", False),
    # mart_dead_letters
    ("mart_dead_letters", "ds", "date", "Day the letters were dead-lettered (UTC).", True),
    ("mart_dead_letters", "loop", "id", "Loop of the work item (or the topic's loop if unreadable).", True),
    ("mart_dead_letters", "reason_code", "id", "Why they were dead-lettered.", True),
    ("mart_dead_letters", "letters", "count", "Dead letters (each counted once).", False),
    ("mart_dead_letters", "replayed_letters", "count", "Letters with a replay record (dead_letter_replays).", False),
    ("mart_dead_letters", "open_letters", "count",
     "Letters neither replayed nor discarded: what `goldthread dead-letters list` shows.", False),
    ("mart_dead_letters", "last_dead_lettered_at", "timestamp", "Newest letter of the group.", False),
    # mart_golden_thread
    ("mart_golden_thread", "run_id", "id",
     "Canary run (or the run id of a canary trade whose run was never synced).", True),
    ("mart_golden_thread", "ds", "date", "Day of the canary run.", True),
    ("mart_golden_thread", "status", "label",
     "SUCCEEDED when every hop passed within budget, FAILED when one did not (NULL if the run is not synced yet).",
     False),
    ("mart_golden_thread", "started_at", "timestamp", "When the canary started.", False),
    ("mart_golden_thread", "finished_at", "timestamp", "When it finished.", False),
    ("mart_golden_thread", "duration_seconds", "seconds", "Whole canary run.", False),
    ("mart_golden_thread", "error", "text", "`hop '<name>' failed: <why>` for a broken hop.", False),
    ("mart_golden_thread", "broken_hop", "label", "The first hop that failed or exceeded its budget (NULL if none).",
     False),
    ("mart_golden_thread", "signal_write_ms", "ms", "Writing the canary signal through the writer API (budget 100 ms).",
     False),
    ("mart_golden_thread", "position_write_ms", "ms", "Writing its orders and the closed position.", False),
    ("mart_golden_thread", "dispatch_ms", "ms", "Recording the canary run and publishing its work item.", False),
    ("mart_golden_thread", "delivery_ms", "ms", "From publish until the subscriber recorded the item's outcome.",
     False),
    ("mart_golden_thread", "validation_ms", "ms", "Confirming the outcome is `loaded` (SchemaGuardian, broker, SCD).",
     False),
    ("mart_golden_thread", "warehouse_write_ms", "ms",
     "Reading the row back by key and checking its values and the archive mark.", False),
    ("mart_golden_thread", "mart_visibility_ms", "ms",
     "Querying every mart: the canary row is in this mart and in no other.", False),
    ("mart_golden_thread", "position_id", "id", "The canary position archived by the run.", False),
    ("mart_golden_thread", "signal_id", "id", "Its signal.", False),
    ("mart_golden_thread", "row_loaded_at", "timestamp", "When the subscriber built its fact_trades row.", False),
)

METRICS: dict[str, Metric] = {f"{m}.{c}": Metric(m, c, u, d, dim) for m, c, u, d, dim in _ROWS}
"""``"mart.column"`` -> its definition. The one place a mart figure is defined."""


def columns_of(mart: str) -> list[str]:
    """The documented columns of ``mart``, in order."""
    return [m.column for m in METRICS.values() if m.mart == mart]


def metrics_markdown() -> str:
    """The text of ``docs/metrics.md``."""
    parts = [
        "# Metrics\n\n",
        "Generated from `shared/goldthread/bi/metrics.py` (`python -m goldthread.bi.metrics`); do not edit by hand. "
        "Each mart is a view defined once in GoogleSQL in `shared/goldthread/bi/<mart>.sql`, run as is on "
        "BigQuery and translated by sqlglot for DuckDB.\n\n",
        "Rules for every mart:\n\n",
        *(f"- {rule}\n" for rule in COMMON_RULES),
    ]
    for mart in MART_NAMES:
        parts.append(f"\n## `{mart}`\n\n{MART_DESCRIPTIONS[mart]}\n\n")
        parts.append("| column | kind | unit | definition |\n|---|---|---|---|\n")
        for metric in (m for m in METRICS.values() if m.mart == mart):
            kind = "dimension" if metric.dimension else "measure"
            text = metric.definition.replace("|", "\\|")
            parts.append(f"| `{metric.column}` | {kind} | {metric.unit} | {text} |\n")
    from goldthread.bi.figures import ratios_markdown

    parts.append(ratios_markdown())
    return "".join(parts)


def write_metrics_doc(path: Path = DOC_PATH) -> bool:
    """Write ``docs/metrics.md``; True if it changed."""
    text = metrics_markdown()
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    changed = write_metrics_doc()
    print(f"{'wrote' if changed else 'unchanged'}: {DOC_PATH}")
    sys.exit(0)
