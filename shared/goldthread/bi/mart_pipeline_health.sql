-- mart_pipeline_health: one row per job and day (the run's ds) from job_runs (synced from job_metadata).
-- The canary's own runs are not here: they are in mart_golden_thread.
WITH runs AS (
  SELECT * FROM job_runs
  WHERE job != 'canary'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY row_id ORDER BY synced_at DESC) = 1
),
ranked AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY job, ds ORDER BY started_at DESC, run_id DESC) AS recency
  FROM runs
),
per_day AS (
  SELECT
    job,
    ds,
    COUNT(*) AS runs,
    COUNTIF(status IN ('FAILED', 'STALLED')) AS failed_runs,
    SUM(published) AS rows_published,
    SUM(loaded) AS rows_loaded,
    SUM(duplicates) AS rows_duplicate,
    SUM(dead_lettered) AS rows_dead_lettered,
    LOGICAL_AND(reconciled) AS all_reconciled
  FROM runs
  GROUP BY job, ds
),
newest AS (
  SELECT 'trades' AS job, MAX(loaded_at) AS newest_row_at FROM fact_trades WHERE NOT is_canary
  UNION ALL
  SELECT 'rejected_signals' AS job, MAX(loaded_at) AS newest_row_at FROM fact_rejected_signals WHERE NOT is_canary
  UNION ALL
  SELECT 'expired_signals' AS job, MAX(loaded_at) AS newest_row_at FROM fact_signals_expired WHERE NOT is_canary
  UNION ALL
  SELECT 'accounts' AS job, MAX(loaded_at) AS newest_row_at FROM snapshot_accounts WHERE NOT is_canary
  UNION ALL
  SELECT 'patch_fees' AS job, MAX(changed_at) AS newest_row_at FROM patch_audit WHERE patch = 'patch_fees'
  UNION ALL
  SELECT 'patch_prices' AS job, MAX(changed_at) AS newest_row_at FROM patch_audit WHERE patch = 'patch_prices'
  UNION ALL
  SELECT 'replay' AS job, MAX(replayed_at) AS newest_row_at FROM dead_letter_replays
)
SELECT
  d.job,
  d.ds,
  d.runs,
  d.failed_runs,
  l.run_id AS last_run_id,
  l.status AS last_status,
  l.started_at AS last_started_at,
  l.finished_at AS last_finished_at,
  l.duration_seconds AS last_duration_seconds,
  l.reconciled AS last_reconciled,
  l.error AS last_error,
  d.rows_published,
  d.rows_loaded,
  d.rows_duplicate,
  d.rows_dead_lettered,
  d.all_reconciled,
  n.newest_row_at,
  TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), n.newest_row_at, SECOND) / 3600 AS freshness_hours
FROM per_day d
JOIN ranked l ON l.job = d.job AND l.ds = d.ds AND l.recency = 1
LEFT JOIN newest n ON n.job = d.job
