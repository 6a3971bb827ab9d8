-- mart_dead_letters: one row per day dead-lettered (ds), loop and reason: letters, how many were replayed and how
-- many are still open. Open = neither replayed nor discarded (closed as won't-fix), the definition of
-- `goldthread dead-letters list`. Canary letters excluded.
WITH letters AS (
  SELECT * FROM dead_letters
  WHERE NOT is_canary
  QUALIFY ROW_NUMBER() OVER (PARTITION BY ds, row_id ORDER BY dead_lettered_at DESC) = 1
),
replayed AS (
  SELECT DISTINCT dead_letter_id FROM dead_letter_replays
)
SELECT
  l.ds,
  l.loop,
  l.reason_code,
  COUNT(*) AS letters,
  COUNTIF(r.dead_letter_id IS NOT NULL) AS replayed_letters,
  COUNTIF(r.dead_letter_id IS NULL AND l.discarded_at IS NULL) AS open_letters,
  MAX(l.dead_lettered_at) AS last_dead_lettered_at
FROM letters l
LEFT JOIN replayed r ON r.dead_letter_id = l.row_id
GROUP BY l.ds, l.loop, l.reason_code
