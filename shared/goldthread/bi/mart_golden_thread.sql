-- mart_golden_thread: one row per Golden Thread canary run, with its hop timings and the canary trade it
-- archived. The ONLY mart that shows canary rows, and it shows nothing else.
WITH runs AS (
  SELECT * FROM job_runs
  WHERE job = 'canary'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY row_id ORDER BY synced_at DESC) = 1
),
canary_trades AS (
  SELECT run_id, ds, position_id, signal_id, loaded_at
  FROM fact_trades
  WHERE is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY row_id ORDER BY revision DESC, loaded_at DESC) = 1
)
SELECT
  COALESCE(r.run_id, t.run_id) AS run_id,
  COALESCE(r.ds, t.ds) AS ds,
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
FULL OUTER JOIN canary_trades t ON t.run_id = r.run_id
