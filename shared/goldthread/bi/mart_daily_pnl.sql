-- mart_daily_pnl: one row per closing day (ds) and strategy. Canary rows excluded; each trade counted once.
WITH trades AS (
  SELECT * FROM fact_trades
  WHERE NOT is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY revision DESC, loaded_at DESC) = 1
)
SELECT
  ds,
  strategy_id,
  COUNT(*) AS trades,
  COUNT(net_pnl_usd) AS priced_trades,
  COUNTIF(net_pnl_usd > 0) AS winning_trades,
  SAFE_DIVIDE(COUNTIF(net_pnl_usd > 0), COUNT(net_pnl_usd)) AS win_rate,
  SUM(gross_pnl_usd) AS gross_pnl_usd,
  SUM(net_pnl_usd) AS net_pnl_usd,
  SUM(est_fee_usd) AS est_fee_usd,
  SUM(IF(fee_finalized, actual_fee_usd, NULL)) AS actual_fee_usd,
  COUNTIF(fee_finalized) AS fee_finalized_trades,
  SUM(COALESCE(actual_fee_usd, est_fee_usd)) AS fee_usd
FROM trades
GROUP BY ds, strategy_id
