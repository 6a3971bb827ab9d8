# Cloud Monitoring: four alerts, each with what to do in its documentation.
#   1. dead letters waiting: the dead-letter topic's retained subscription has messages nobody has
#      looked at (it clears when an operator seeks the subscription past them, docs/deploy.md);
#   2. function errors: the functions answered 5xx (a crash, or a transient failure being retried);
#   3. runs not SUCCEEDED: the pipeline logged a run that finished PARTIAL, failed or stalled;
#   4. Golden Thread broken: the hourly canary logged the hop where its record stopped or was late.

locals {
  notification_channels = concat(
    var.notification_channel_ids,
    [for c in google_monitoring_notification_channel.email : c.id],
  )

  # The structured log lines goldthread.pipeline.runs writes when a run does not succeed:
  #   "run finished PARTIAL: ..." (INFO), "run failed: ..." (ERROR), "run stalled: ..." (WARNING).
  # No severity filter: a PARTIAL run is logged at INFO.
  run_not_succeeded_pattern = "^run (finished PARTIAL|failed|stalled)"

  # The one ERROR goldthread.bi.canary logs per broken canary run (logger goldthread.canary):
  #   {"severity": "ERROR", "message": "golden thread broken at hop <hop>: ...", "hop": "<hop>", ...}
  # Cloud Logging lifts "severity" to the entry's severity; the rest stays in jsonPayload. The
  # message prefix keeps out the canary's other ERROR ("canary hop <hop> raised", which precedes it),
  # so each broken run counts once.
  canary_broken_pattern = "^golden thread broken at hop "
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  display_name = "${var.name_prefix} alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  display_name          = "${var.name_prefix}: dead letters waiting"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Undelivered messages on ${google_pubsub_subscription.dead_letters_retained.name} > 0"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.dead_letters_retained.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "604800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Work items were dead-lettered: a record failed validation, or a delivery kept failing
      ${var.max_delivery_attempts} times. Each one is a row of `${var.dataset}.dead_letters` with its
      field-level reasons. Fix the cause, replay with the `${var.name_prefix}-replay` function (dry run
      first), then seek `${google_pubsub_subscription.dead_letters_retained.name}` to now to clear this
      alert. Runbook: docs/deploy.md, "Replaying dead letters in production".
    EOT
  }
}

resource "google_monitoring_alert_policy" "function_errors" {
  display_name          = "${var.name_prefix}: function errors"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "5xx answers of ${var.name_prefix}-* functions > ${var.function_error_threshold} in 10 min"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = starts_with(\"${var.name_prefix}-\") AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.function_error_threshold
      duration        = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A Golden Thread function answered 5xx: it crashed, or a transient failure (Alpaca, Firestore,
      BigQuery, Pub/Sub unavailable) made it ask Pub/Sub to redeliver. Redeliveries back off
      exponentially and dead-letter after ${var.max_delivery_attempts} attempts, so nothing is lost;
      look at the function's logs (Cloud Run service named in the incident) for the error.
    EOT
  }
}

resource "google_logging_metric" "runs_not_succeeded" {
  name        = "${var.name_prefix}/runs_not_succeeded"
  description = "Golden Thread runs that finished PARTIAL, failed or stalled (from goldthread.pipeline.runs log lines)."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${var.name_prefix}-\" AND jsonPayload.message=~\"${local.run_not_succeeded_pattern}\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "loop"
      value_type  = "STRING"
      description = "Job of the run: a loop, a patch, replay or canary."
    }

    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "finished PARTIAL, failed or stalled."
    }
  }

  label_extractors = {
    loop    = "EXTRACT(jsonPayload.loop)"
    outcome = "REGEXP_EXTRACT(jsonPayload.message, \"${local.run_not_succeeded_pattern}\")"
  }

  depends_on = [google_project_service.api]
}

# A new log-based metric becomes visible to Cloud Monitoring minutes after it is created (up to ten,
# says the API), and an alert policy on it is refused with a 404 until then (a known provider issue,
# hashicorp/terraform-provider-google#11102). The two log-based alerts read the metric names through
# this wait, so they are created after it; a renamed or new metric waits again (triggers).
resource "time_sleep" "log_metrics_visible" {
  create_duration = "300s"

  triggers = {
    runs_not_succeeded = google_logging_metric.runs_not_succeeded.name
    canary_broken      = google_logging_metric.canary_broken.name
  }
}

resource "google_monitoring_alert_policy" "runs_not_succeeded" {
  display_name          = "${var.name_prefix}: runs not SUCCEEDED"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "A run finished PARTIAL, failed or stalled"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${time_sleep.log_metrics_visible.triggers["runs_not_succeeded"]}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.labels.loop", "metric.labels.outcome"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A Golden Thread run did not succeed (loop and outcome in the incident labels). PARTIAL: some
      items were dead-lettered (see the dead-letter alert and `${var.dataset}.dead_letters`). failed:
      the dispatcher stopped; its error is on the run in Firestore `job_metadata` and in the logs.
      stalled: a run made no progress within the run timeout; the next dispatch of the same loop and
      day publishes whatever is still unarchived. Runbook: docs/deploy.md.
    EOT
  }
}

resource "google_logging_metric" "canary_broken" {
  name        = "${var.name_prefix}/canary_broken"
  description = "Golden Thread canary runs that found a broken or slow hop (the ERROR goldthread.bi.canary logs, labelled by hop)."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.fn["canary"].name}\" AND severity>=ERROR AND jsonPayload.logger=\"goldthread.canary\" AND jsonPayload.hop:* AND jsonPayload.message=~\"${local.canary_broken_pattern}\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "hop"
      value_type  = "STRING"
      description = "The first hop that failed or exceeded its budget (goldthread.bi.canary.HOPS)."
    }
  }

  label_extractors = {
    hop = "EXTRACT(jsonPayload.hop)"
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "canary_broken" {
  display_name          = "${var.name_prefix}: Golden Thread broken"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "The canary found a broken or slow hop"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${time_sleep.log_metrics_visible.triggers["canary_broken"]}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.labels.hop"]
      }

      trigger {
        count = 1
      }
    }
  }

  # The canary runs hourly: an incident with no broken run for two hours (two whole runs) closes.
  alert_strategy {
    auto_close = "7200s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The hourly Golden Thread canary (`${var.name_prefix}-canary`) sent its marked record along the
      thread and it broke or was late at the hop named in the incident labels (signal_write,
      position_write, dispatch, delivery, validation, warehouse_write or mart_visibility). The run is
      FAILED in Firestore `job_metadata` with the reason (`hop '<hop>' failed: ...`), and in
      `${var.dataset}.mart_golden_thread` (broken_hop, every hop's milliseconds). position_write with
      "no filled canary order": set `canary_order_ids`. Run it again by hand with
      `gcloud scheduler jobs run ${var.name_prefix}-canary --location ${var.region}`. Runbook: docs/deploy.md, "The canary".
    EOT
  }
}
