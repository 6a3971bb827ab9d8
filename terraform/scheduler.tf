# Cloud Scheduler: one job per loop (and market session) and per patch, each an HTTP POST with an
# OIDC token of the scheduler identity to an HTTP function (never public).
#
# Dispatch bodies are {"loop": <loop>, "ds_offset_days": N}: the function dispatches the UTC day
# today + N (goldthread.entrypoints.day_from), so N is chosen for the hour and time zone the job runs at:
#   trades, equities    16:30 New York, after the close (20:30/21:30 UTC): today, N = 0
#   trades, crypto      00:15 UTC, after the daily crypto candle closed: yesterday, N = -1
#   rejected signals    00:30 UTC: the day whose 7-day validity window has just ended, N = -8
#   expired signals     00:45 UTC: the day whose 24 h look-ahead has ended, N = -2
#   accounts            17:00 New York every day (crypto moves the equity on weekends too), N = 0
# Both trades jobs dispatch the same loop; the loop archives every CLOSED position up to the day,
# so each run picks up whatever the other has not, and a position is never stored twice.
#
# Patches and the canary take the same day convention ({"ds_offset_days": N} or {"ds": ...}).

locals {
  schedules = {
    trades_equities = {
      function       = "dispatch"
      description    = "Loop A after the US equities close: archive the day's closed positions."
      schedule       = "30 16 * * 1-5"
      time_zone      = "America/New_York"
      loop           = "trades"
      ds_offset_days = 0
    }
    trades_crypto = {
      function       = "dispatch"
      description    = "Loop A after 00:00 UTC: archive yesterday's closed positions, crypto trades around the clock."
      schedule       = "15 0 * * *"
      time_zone      = "Etc/UTC"
      loop           = "trades"
      ds_offset_days = -1
    }
    rejected_signals = {
      function       = "dispatch"
      description    = "Loop B: rejected signals of the day whose 7-day validity window just ended."
      schedule       = "30 0 * * *"
      time_zone      = "Etc/UTC"
      loop           = "rejected_signals"
      ds_offset_days = -8
    }
    expired_signals = {
      function       = "dispatch"
      description    = "Loop C: expired signals of the day whose 24 h look-ahead just ended."
      schedule       = "45 0 * * *"
      time_zone      = "Etc/UTC"
      loop           = "expired_signals"
      ds_offset_days = -2
    }
    accounts = {
      function       = "dispatch"
      description    = "Loop D: daily account snapshot after the US close."
      schedule       = "0 17 * * *"
      time_zone      = "America/New_York"
      loop           = "accounts"
      ds_offset_days = 0
    }
    patch_fees = {
      function       = "patch_fees"
      description    = "Fee patch at T+1: allocate yesterday's posted fees to its trades."
      schedule       = "0 10 * * *"
      time_zone      = "America/New_York"
      loop           = null
      ds_offset_days = -1
    }
    patch_prices = {
      function       = "patch_prices"
      description    = "Price patch after the US open, when orders placed outside market hours have filled."
      schedule       = "15 10 * * 1-5"
      time_zone      = "America/New_York"
      loop           = null
      ds_offset_days = null
    }
    canary = {
      function       = "canary"
      description    = "Golden Thread canary: one marked record along every hop, hourly."
      schedule       = "5 * * * *"
      time_zone      = "Etc/UTC"
      loop           = null
      ds_offset_days = null
    }
  }
}

resource "google_cloud_scheduler_job" "job" {
  for_each = local.schedules

  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  region      = var.region
  description = each.value.description
  schedule    = each.value.schedule
  time_zone   = each.value.time_zone
  paused      = var.scheduler_paused
  # Scheduler waits at most 30 minutes for an HTTP answer.
  attempt_deadline = "${min(local.functions[each.value.function].timeout, 1800)}s"

  # A non-2xx answer (425 not ready yet, 409 another dispatch holds the day, 5xx) is retried.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({
      for k, v in { loop = each.value.loop, ds_offset_days = each.value.ds_offset_days } : k => v if v != null
    }))

    oidc_token {
      service_account_email = google_service_account.sa["scheduler"].email
      audience              = google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri
    }
  }

  depends_on = [time_sleep.invoker_grants]
}
