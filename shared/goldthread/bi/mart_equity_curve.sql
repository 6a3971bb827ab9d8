-- mart_equity_curve: one row per account and day from the end-of-day snapshots (cash and market values may be
-- NULL where the snapshot could not know them).
WITH snapshots AS (
  SELECT * FROM snapshot_accounts
  WHERE NOT is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY revision DESC, loaded_at DESC) = 1
),
peaks AS (
  SELECT
    account_id,
    ds,
    snapshot_at,
    equity,
    last_equity,
    daily_pnl,
    cash,
    long_market_value + short_market_value AS positions_market_value,
    SAFE_DIVIDE(CAST(equity - last_equity AS FLOAT64), CAST(last_equity AS FLOAT64)) * 100 AS daily_return_pct,
    MAX(equity) OVER (
      PARTITION BY account_id ORDER BY ds ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS running_peak
  FROM snapshots
)
SELECT
  account_id,
  ds,
  snapshot_at,
  equity,
  last_equity,
  daily_pnl,
  cash,
  positions_market_value,
  daily_return_pct,
  running_peak,
  running_peak - equity AS drawdown_usd,
  SAFE_DIVIDE(CAST(equity - running_peak AS FLOAT64), CAST(running_peak AS FLOAT64)) * 100 AS drawdown_pct
FROM peaks
