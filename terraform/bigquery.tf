# BigQuery: the warehouse dataset and one table per model of shared/goldthread/models/warehouse.py.
#
# Schemas are the files `goldthread schema generate` writes to schemas/ from the models, never
# written by hand. Partitioning, clustering and descriptions repeat the models' __partition__,
# __cluster__ and __description__; tests/test_terraform.py fails when the two disagree.
#
# require_partition_filter is off on every table, deliberately: the writer looks rows up by key
# (BigQueryWarehouse.existing_keys: `WHERE row_id IN UNNEST(@keys)`, no ds), the fee patch MERGEs
# on the key, and the <table>_dedup views partition by key, and BigQuery refuses all of those on a
# table that requires a partition filter. Cost is bounded by partition pruning in the marts instead.
# Candidates once the key lookups also filter on ds: fact_trades, fact_rejected_signals,
# fact_signals_expired and market_bars (the tables that grow with every trade, signal and bar).
#
# The <table>_dedup views are created by the adapter (ensure_tables), not here. The BI views (the
# marts of shared/goldthread/bi/) are declared here, from the files `goldthread schema generate`
# writes to views/: each mart's GoogleSQL with its tables written `${project}`.`${dataset}`.table,
# filled in by templatefile. Never edit views/*.sql by hand; regenerate them.

locals {
  bigquery_tables = {
    fact_trades = {
      description              = "Closed trades with broker-validated fills, strategy version (SCD) and P&L. Loop A."
      partition_field          = "ds"
      clustering               = ["strategy_id", "symbol"]
      require_partition_filter = false
    }
    fact_rejected_signals = {
      description              = "Rejected signals aged past the validity window, with triple-barrier P&L. Loop B."
      partition_field          = "ds"
      clustering               = ["rejection_reason", "symbol"]
      require_partition_filter = false
    }
    fact_signals_expired = {
      description              = "Signals that expired without execution, with max MFE and a missed-moonshot flag. Loop C."
      partition_field          = "ds"
      clustering               = ["strategy_id", "symbol"]
      require_partition_filter = false
    }
    snapshot_accounts = {
      description              = "Daily account snapshot as of snapshot_at: equity, margin and portfolio Greeks (live account), or equity only (portfolio history of a past day). Loop D."
      partition_field          = "ds"
      clustering               = ["account_id"]
      require_partition_filter = false
    }
    dim_strategy = {
      description              = "Strategy versions, SCD type 2: valid_from <= t < valid_to; is_current on the newest."
      partition_field          = null
      clustering               = ["strategy_id"]
      require_partition_filter = false
    }
    dead_letters = {
      description              = "Every dead-lettered work item with field-level errors; replayable after a fix."
      partition_field          = "ds"
      clustering               = ["loop", "reason_code"]
      require_partition_filter = false
    }
    dead_letter_replays = {
      description              = "Replays of dead letters: which dead letter went back to which topic, under which run."
      partition_field          = "ds"
      clustering               = ["dead_letter_id"]
      require_partition_filter = false
    }
    patch_audit = {
      description              = "Audit trail of every value changed by the fee and price patches."
      partition_field          = "ds"
      clustering               = ["patch", "table_name"]
      require_partition_filter = false
    }
    market_bars = {
      description              = "Real OHLCV bars fetched once per symbol, day and timeframe (cache for Loops B and C)."
      partition_field          = "ds"
      clustering               = ["symbol", "timeframe"]
      require_partition_filter = false
    }
    market_bars_coverage = {
      description              = "Which symbol, day, timeframe and source the bars cache has fetched, with its bar count."
      partition_field          = "ds"
      clustering               = ["symbol", "timeframe"]
      require_partition_filter = false
    }
    job_runs = {
      description              = "Every run from job_metadata (hot store), synced for BI: status, counts, reconciliation."
      partition_field          = "ds"
      clustering               = ["job", "status"]
      require_partition_filter = false
    }
    row_revisions = {
      description              = "Every fact row replaced by a newer revision of its record, with the values it held."
      partition_field          = "ds"
      clustering               = ["table_name", "record_row_id"]
      require_partition_filter = false
    }
  }

  # BI views (marts): view name -> { file, description }, one per generated views/<mart>.sql. A
  # BigQuery view cannot rely on a default dataset, so the generated SQL names every table fully.
  bi_views = {
    for f in fileset("${path.module}/views", "*.sql") : trimsuffix(f, ".sql") => {
      file        = "${path.module}/views/${f}"
      description = local.bi_view_descriptions[trimsuffix(f, ".sql")]
    }
  }

  # The leading comment of each mart's SQL (goldthread.bi.marts.MART_DESCRIPTIONS; the test compares).
  bi_view_descriptions = {
    mart_daily_pnl            = "One row per closing day (ds) and strategy. Canary rows excluded; each trade counted once."
    mart_strategy_performance = "One row per strategy version of dim_strategy (versions without trades too). Canary rows and the canary's own strategy are excluded. Ratios are FLOAT64; sums of money stay exact. A ratio below its minimum sample (goldthread.bi.metrics.RATIOS) is NULL."
    mart_rejection_cost       = "One row per rejection day (ds) and reason: what the risk filter saved (negative sums) or cost. Sum the rows of a date range for its total (the dashboard does)."
    mart_missed_moonshots     = "Every expired (never executed) signal, ranked within its day by its maximum favourable excursion."
    mart_equity_curve         = "One row per account and day from the end-of-day snapshots (cash and market values may be NULL where the snapshot could not know them)."
    mart_fee_drift            = "Estimated vs actual (broker-posted) fees per closing day and asset class, with the finalisation backlog (trades still waiting for their posted fee)."
    mart_pipeline_health      = "One row per job and day (the run's ds) from job_runs (synced from job_metadata). The canary's own runs are not here: they are in mart_golden_thread. Whether a job is late is judged against its schedule (goldthread.bi.schedules), not here."
    mart_dead_letters         = "One row per day dead-lettered (ds), loop and reason: letters, how many were replayed and how many are still open. Open = neither replayed nor discarded (closed as won't-fix), the definition of `goldthread dead-letters list`. Canary letters excluded."
    mart_golden_thread        = "One row per Golden Thread canary run, with its hop timings and the canary trade it archived (same run and day). The ONLY mart that shows canary rows, and it shows nothing else."
  }
}

resource "google_bigquery_dataset" "warehouse" {
  dataset_id    = var.dataset
  friendly_name = "Golden Thread warehouse"
  description   = "Golden Thread cold storage: facts, snapshots, dimensions, dead letters and audit trails."
  location      = var.bigquery_location
  # With protection off, destroy also removes what Terraform does not manage here (the _dedup views).
  delete_contents_on_destroy = !var.deletion_protection

  depends_on = [google_project_service.api]
}

resource "google_bigquery_table" "table" {
  for_each = local.bigquery_tables

  dataset_id               = google_bigquery_dataset.warehouse.dataset_id
  table_id                 = each.key
  description              = each.value.description
  schema                   = file("${path.module}/schemas/${each.key}.json")
  clustering               = each.value.clustering
  require_partition_filter = each.value.require_partition_filter
  deletion_protection      = var.deletion_protection

  dynamic "time_partitioning" {
    for_each = each.value.partition_field == null ? [] : [each.value.partition_field]
    content {
      type  = "DAY"
      field = time_partitioning.value
    }
  }
}

resource "google_bigquery_table" "bi_view" {
  for_each = local.bi_views

  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = each.key
  description         = each.value.description
  deletion_protection = false

  view {
    query = templatefile(each.value.file, {
      project = var.project_id
      dataset = google_bigquery_dataset.warehouse.dataset_id
    })
    use_legacy_sql = false
  }

  # BigQuery checks a view's query when it is created: every table it reads must exist.
  depends_on = [google_bigquery_table.table]
}
