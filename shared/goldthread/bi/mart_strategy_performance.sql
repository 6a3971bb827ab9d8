-- mart_strategy_performance: one row per strategy version of dim_strategy (versions without trades too).
-- Canary rows and the canary's own strategy are excluded. Ratios are FLOAT64; sums of money stay exact. A ratio
-- below its minimum sample (goldthread.bi.metrics.RATIOS) is NULL.
WITH trades AS (
  SELECT * FROM fact_trades
  WHERE NOT is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY revision DESC, loaded_at DESC) = 1
),
versions AS (
  SELECT strategy_sk, strategy_id, version, valid_from, valid_to, is_current
  FROM dim_strategy
  WHERE JSON_VALUE(params_json, '$.golden_thread_canary') IS NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY row_id ORDER BY updated_at DESC) = 1
),
per_version AS (
  SELECT
    strategy_id,
    strategy_version AS version,
    COUNT(*) AS trades,
    COUNT(net_pnl_usd) AS priced_trades,
    COUNTIF(net_pnl_usd > 0) AS winning_trades,
    COUNTIF(net_pnl_usd < 0) AS losing_trades,
    SUM(net_pnl_usd) AS net_pnl_usd,
    SUM(IF(net_pnl_usd > 0, net_pnl_usd, 0)) AS gross_profit_usd,
    -SUM(IF(net_pnl_usd < 0, net_pnl_usd, 0)) AS gross_loss_usd,
    AVG(CAST(net_pnl_usd AS FLOAT64)) AS expectancy_usd,
    AVG(IF(net_pnl_usd < 0, -CAST(net_pnl_usd AS FLOAT64), NULL)) AS avg_loss_usd,
    AVG(holding_seconds) / 3600 AS avg_holding_hours
  FROM trades
  GROUP BY strategy_id, strategy_version
),
daily AS (
  SELECT
    strategy_id,
    strategy_version AS version,
    ds,
    SUM(net_pnl_usd) AS net_pnl_usd,
    SAFE_DIVIDE(
      CAST(SUM(net_pnl_usd) AS FLOAT64),
      CAST(SUM(COALESCE(broker_entry_price, entry_price) * qty * multiplier) AS FLOAT64)
    ) AS daily_return
  FROM trades
  WHERE net_pnl_usd IS NOT NULL
  GROUP BY strategy_id, strategy_version, ds
),
curve AS (
  SELECT
    strategy_id,
    version,
    ds,
    daily_return,
    SUM(net_pnl_usd) OVER (
      PARTITION BY strategy_id, version ORDER BY ds ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS cumulative_pnl_usd
  FROM daily
),
drawdowns AS (
  SELECT
    strategy_id,
    version,
    daily_return,
    GREATEST(
      0,
      MAX(cumulative_pnl_usd) OVER (
        PARTITION BY strategy_id, version ORDER BY ds ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      )
    ) - cumulative_pnl_usd AS drawdown_usd
  FROM curve
),
risk AS (
  SELECT
    strategy_id,
    version,
    COUNT(*) AS trading_days,
    AVG(daily_return) AS mean_daily_return,
    STDDEV_SAMP(daily_return) AS stddev_daily_return,
    SQRT(AVG(POW(LEAST(daily_return, 0), 2))) AS downside_deviation,
    MAX(drawdown_usd) AS max_drawdown_usd
  FROM drawdowns
  GROUP BY strategy_id, version
)
SELECT
  v.strategy_sk,
  v.strategy_id,
  v.version,
  v.valid_from,
  v.valid_to,
  v.is_current,
  COALESCE(p.trades, 0) AS trades,
  COALESCE(p.priced_trades, 0) AS priced_trades,
  COALESCE(p.winning_trades, 0) AS winning_trades,
  COALESCE(p.losing_trades, 0) AS losing_trades,
  SAFE_DIVIDE(p.winning_trades, p.priced_trades) AS win_rate,
  p.net_pnl_usd,
  p.gross_profit_usd,
  p.gross_loss_usd,
  IF(
    p.priced_trades >= 20,
    SAFE_DIVIDE(CAST(p.gross_profit_usd AS FLOAT64), CAST(p.gross_loss_usd AS FLOAT64)),
    NULL
  ) AS profit_factor,
  p.expectancy_usd,
  p.avg_loss_usd,
  SAFE_DIVIDE(p.expectancy_usd, p.avg_loss_usd) AS avg_r,
  p.avg_holding_hours,
  COALESCE(r.trading_days, 0) AS trading_days,
  IF(r.trading_days >= 30, SAFE_DIVIDE(r.mean_daily_return, r.stddev_daily_return) * SQRT(252), NULL) AS sharpe_ratio,
  IF(r.trading_days >= 30, SAFE_DIVIDE(r.mean_daily_return, r.downside_deviation) * SQRT(252), NULL) AS sortino_ratio,
  r.max_drawdown_usd
FROM versions v
LEFT JOIN per_version p ON p.strategy_id = v.strategy_id AND p.version = v.version
LEFT JOIN risk r ON r.strategy_id = v.strategy_id AND r.version = v.version
