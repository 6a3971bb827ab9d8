-- mart_golden_thread: one row per Golden Thread canary run, with its hop timings and the canary trade it
-- archived (same run and day). The ONLY mart that shows canary rows, and it shows nothing else.
WITH runs AS (
  SELECT * FROM job_runs
  WHERE job = 'canary'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY synced_at DESC) = 1
),
canary_trades AS (
  SELECT run_id, ds, position_id, signal_id, loaded_at
  FROM fact_trades
  WHERE is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY revision DESC, loaded_at DESC) = 1
)
SELECT
  r.run_id,
  r.ds,
  r.status,
  r.started_at,
  r.finished_at,
  r.duration_seconds,
  r.error,
  JSON_VALUE(r.details_json, '$.broken_hop') AS broken_hop,
  CAST(JSON_VALUE(r.details_json, '$.hop_ms.signal_write') AS FLOAT64) AS signal_write_ms,
  CAST(JSON_VALUE(r.details_json, '$.hop_ms.position_write') AS FLOAT64) AS position_write_ms,
  CAST(JSON_VALUE(r.details_json, '$.hop_ms.dispatch') AS FLOAT64) AS dispatch_ms,
  CAST(JSON_VALUE(r.details_json, '$.hop_ms.delivery') AS FLOAT64) AS delivery_ms,
  CAST(JSON_VALUE(r.details_json, '$.hop_ms.validation') AS FLOAT64) AS validation_ms,
  CAST(JSON_VALUE(r.details_json, '$.hop_ms.warehouse_write') AS FLOAT64) AS warehouse_write_ms,
  CAST(JSON_VALUE(r.details_json, '$.hop_ms.mart_visibility') AS FLOAT64) AS mart_visibility_ms,
  t.position_id,
  t.signal_id,
  t.loaded_at AS row_loaded_at
FROM runs r
LEFT JOIN canary_trades t ON t.ds = r.ds AND t.run_id = r.run_id
UNION ALL
SELECT
  t.run_id,
  t.ds,
  CAST(NULL AS STRING) AS status,
  CAST(NULL AS TIMESTAMP) AS started_at,
  CAST(NULL AS TIMESTAMP) AS finished_at,
  CAST(NULL AS NUMERIC) AS duration_seconds,
  CAST(NULL AS STRING) AS error,
  CAST(NULL AS STRING) AS broken_hop,
  CAST(NULL AS FLOAT64) AS signal_write_ms,
  CAST(NULL AS FLOAT64) AS position_write_ms,
  CAST(NULL AS FLOAT64) AS dispatch_ms,
  CAST(NULL AS FLOAT64) AS delivery_ms,
  CAST(NULL AS FLOAT64) AS validation_ms,
  CAST(NULL AS FLOAT64) AS warehouse_write_ms,
  CAST(NULL AS FLOAT64) AS mart_visibility_ms,
  t.position_id,
  t.signal_id,
  t.loaded_at AS row_loaded_at
FROM canary_trades t
LEFT JOIN runs r ON r.ds = t.ds AND r.run_id = t.run_id
WHERE r.run_id IS NULL
