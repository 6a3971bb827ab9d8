-- mart_pipeline_health: one row per job and day (the run's ds) from job_runs (synced from job_metadata).
-- The canary's own runs are not here: they are in mart_golden_thread. Whether a job is late is judged against
-- its schedule (goldthread.bi.schedules), not here.
WITH runs AS (
  SELECT * FROM job_runs
  WHERE job != 'canary'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY synced_at DESC) = 1
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
  d.all_reconciled
FROM per_day d
JOIN ranked l ON l.job = d.job AND l.ds = d.ds AND l.recency = 1
