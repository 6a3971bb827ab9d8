-- mart_missed_moonshots: every expired (never executed) signal, ranked within its day by its maximum favourable
-- excursion.
WITH expired AS (
  SELECT * FROM fact_signals_expired
  WHERE NOT is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY revision DESC, loaded_at DESC) = 1
)
SELECT
  signal_id,
  ds,
  strategy_id,
  strategy_version,
  symbol,
  asset_class,
  side,
  created_at,
  expires_at,
  max_mfe_pct,
  max_mfe_r,
  max_mfe_at,
  take_profit_hit,
  is_missed_moonshot,
  moonshot_threshold_pct,
  bars_observed,
  RANK() OVER (PARTITION BY ds ORDER BY max_mfe_pct DESC NULLS LAST) AS mfe_rank
FROM expired
