-- mart_rejection_cost: one row per rejection day (ds) and reason: what the risk filter saved (negative sums) or
-- cost. Sum the rows of a date range for its total (the dashboard does).
WITH rejected AS (
  SELECT
    *,
    SAFE_DIVIDE(CAST(theoretical_net_pnl_per_unit AS FLOAT64), CAST(entry_price AS FLOAT64)) * 100
      AS theoretical_net_return_pct
  FROM fact_rejected_signals
  WHERE NOT is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY revision DESC, loaded_at DESC) = 1
)
SELECT
  ds,
  rejection_reason,
  COUNT(*) AS signals,
  COUNT(theoretical_net_pnl_per_unit) AS priced_signals,
  COUNTIF(theoretical_net_pnl_per_unit > 0) AS would_have_won,
  SAFE_DIVIDE(COUNTIF(theoretical_net_pnl_per_unit > 0), COUNT(theoretical_net_pnl_per_unit)) AS would_have_won_share,
  SUM(theoretical_net_pnl_per_unit) AS sum_theoretical_net_pnl_per_unit,
  AVG(CAST(theoretical_net_pnl_per_unit AS FLOAT64)) AS mean_theoretical_net_pnl_per_unit,
  SUM(theoretical_net_return_pct) AS sum_theoretical_net_return_pct,
  AVG(theoretical_net_return_pct) AS mean_theoretical_net_return_pct,
  SUM(CAST(r_multiple AS FLOAT64)) AS sum_r_multiple,
  COUNT(r_multiple) AS r_multiples,
  AVG(CAST(r_multiple AS FLOAT64)) AS mean_r_multiple,
  CASE
    WHEN SUM(theoretical_net_return_pct) < 0 THEN 'saved'
    WHEN SUM(theoretical_net_return_pct) > 0 THEN 'cost'
    ELSE 'neutral'
  END AS filter_verdict
FROM rejected
GROUP BY ds, rejection_reason
