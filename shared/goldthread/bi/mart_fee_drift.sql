-- mart_fee_drift: estimated vs actual (broker-posted) fees per closing day and asset class, with the
-- finalisation backlog (trades still waiting for their posted fee).
WITH trades AS (
  SELECT * FROM fact_trades
  WHERE NOT is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY revision DESC, loaded_at DESC) = 1
)
SELECT
  ds,
  asset_class,
  COUNT(*) AS trades,
  COUNTIF(fee_finalized) AS finalized_trades,
  COUNTIF(NOT fee_finalized) AS backlog_trades,
  SUM(est_fee_usd) AS est_fee_usd,
  SUM(IF(fee_finalized, est_fee_usd, NULL)) AS est_fee_finalized_usd,
  SUM(IF(fee_finalized, actual_fee_usd, NULL)) AS actual_fee_usd,
  SUM(IF(fee_finalized, actual_fee_usd - est_fee_usd, NULL)) AS fee_drift_usd,
  SAFE_DIVIDE(
    CAST(SUM(IF(fee_finalized, actual_fee_usd - est_fee_usd, NULL)) AS FLOAT64),
    CAST(SUM(IF(fee_finalized, est_fee_usd, NULL)) AS FLOAT64)
  ) * 100 AS fee_drift_pct,
  SUM(IF(fee_finalized, NULL, est_fee_usd)) AS backlog_est_fee_usd
FROM trades
GROUP BY ds, asset_class
