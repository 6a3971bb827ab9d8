# Pub/Sub: a topic per loop, a push subscription per loop with retry and dead-letter policies, the
# dead-letter topic with a retained subscription (inspection, replay) and a push subscription that
# feeds dead_letter_sink; and the IAM the Pub/Sub service agent needs to dead-letter.
#
# Names follow goldthread.config.Settings: topic <prefix>-<loop with dashes>, subscription
# <topic>-sub, dead-letter topic <prefix>-dead-letters.
#
# Why push subscriptions and not `event_trigger`: see functions.tf and docs/deploy.md. The push
# endpoint is the function's run.app URL followed by /projects/<project>/topics/<topic>:
# functions-framework turns a raw push request into the same CloudEvent a trigger would deliver
# and takes the topic from that path, so the subscriber code cannot tell the difference.

locals {
  # loop -> the function that archives it, from the functions' own declarations.
  loops = {
    for name, f in local.functions : f.topic => name
    if f.trigger == "pubsub" && f.topic != "dead_letters"
  }

  topics = merge(
    { for loop in keys(local.loops) : loop => "${var.name_prefix}-${replace(loop, "_", "-")}" },
    { dead_letters = "${var.name_prefix}-dead-letters" },
  )

  # The Pub/Sub service agent (service-<project number>@gcp-sa-pubsub.iam.gserviceaccount.com).
  pubsub_service_agent = google_project_service_identity.pubsub.member
}

resource "google_pubsub_topic" "topic" {
  for_each = local.topics

  name = each.value
  # Keep published messages a day so a subscription can be re-created or seeked without loss.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.api]
}

# One subscription per loop, pushing to the loop's subscriber function.
resource "google_pubsub_subscription" "loop" {
  for_each = local.loops

  name  = "${google_pubsub_topic.topic[each.key].name}-sub"
  topic = google_pubsub_topic.topic[each.key].id

  # Push: how long Pub/Sub waits for the function's answer before it counts a failed delivery.
  ack_deadline_seconds       = var.subscriber_timeout_seconds
  message_retention_duration = "604800s"
  enable_message_ordering    = false

  expiration_policy {
    ttl = "" # never expires, even when idle (weekends, holidays)
  }

  # A failed delivery (the function raised: transient error) is retried with exponential backoff.
  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  # After max_delivery_attempts the message moves to the dead-letter topic, with Pub/Sub's
  # CloudPubSubDeadLetterSource* attributes; dead_letter_sink records it as MAX_ATTEMPTS.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.topic["dead_letters"].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.fn[each.value].service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.topic[each.key].name}"

    oidc_token {
      service_account_email = google_service_account.sa["pubsub_push"].email
      audience              = google_cloudfunctions2_function.fn[each.value].service_config[0].uri
    }
  }

  # The first push must find its run.invoker and token-creator grants in effect.
  depends_on = [time_sleep.invoker_grants]
}

# The dead-letter topic's retained subscription: nothing consumes it automatically, so its backlog
# is "dead letters no person has looked at yet" (the alert in monitoring.tf). Acked messages are
# retained too, so an operator can seek back and look again within the retention.
resource "google_pubsub_subscription" "dead_letters_retained" {
  name  = "${google_pubsub_topic.topic["dead_letters"].name}-sub"
  topic = google_pubsub_topic.topic["dead_letters"].id

  ack_deadline_seconds       = 60
  retain_acked_messages      = true
  message_retention_duration = "${var.dead_letter_retention_days * 86400}s"

  expiration_policy {
    ttl = ""
  }
}

# The dead-letter topic's second subscription: pushes every dead letter to dead_letter_sink, which
# writes the queryable dead_letters row. No dead-letter policy of its own (there is nowhere further
# to go): a failing sink is retried with backoff for the retention period and raises the function
# error alert, and the retained subscription still holds the message.
resource "google_pubsub_subscription" "dead_letter_sink" {
  name  = "${google_pubsub_topic.topic["dead_letters"].name}-sink"
  topic = google_pubsub_topic.topic["dead_letters"].id

  ack_deadline_seconds       = var.subscriber_timeout_seconds
  message_retention_duration = "${var.dead_letter_retention_days * 86400}s"

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.fn["dead_letter_sink"].service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.topic["dead_letters"].name}"

    oidc_token {
      service_account_email = google_service_account.sa["pubsub_push"].email
      audience              = google_cloudfunctions2_function.fn["dead_letter_sink"].service_config[0].uri
    }
  }

  # The first push must find its run.invoker and token-creator grants in effect.
  depends_on = [time_sleep.invoker_grants]
}

# -- the Pub/Sub service agent ---------------------------------------------------------------------

# Google creates a service agent lazily: right after the API is enabled it may not exist yet, and a
# grant to it fails ("Service account ... does not exist"). Asking for its identity creates it, and
# every grant below refers to it, so none is attempted before it exists.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.api]
}

# Forwarding to the dead-letter topic is done by the service agent, which must be able to publish
# there ...
resource "google_pubsub_topic_iam_member" "agent_dead_letter_publisher" {
  topic  = google_pubsub_topic.topic["dead_letters"].name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# ... and to acknowledge the message on the subscription it came from.
resource "google_pubsub_subscription_iam_member" "agent_source_subscriber" {
  for_each = local.loops

  subscription = google_pubsub_subscription.loop[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Push with authentication: the service agent mints the OIDC tokens of the push identity.
resource "google_service_account_iam_member" "agent_push_token_creator" {
  service_account_id = google_service_account.sa["pubsub_push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
