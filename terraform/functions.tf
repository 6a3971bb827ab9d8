# Cloud Functions (2nd gen): one per entry point of functions/main.py, all from one source archive.
#
# How a function is reached (its `trigger`):
#   http   - Cloud Scheduler (scheduler.tf) or an operator, with an OIDC identity token; never public.
#   pubsub - an explicit Pub/Sub push subscription (pubsub.tf) POSTs each message to the function's
#            URL with an OIDC token. No function has an `event_trigger`: Eventarc would create its own
#            subscription, which Terraform cannot give the dead-letter policy, so every work item
#            would be delivered twice (once without a dead-letter path). See docs/deploy.md.
#
# The map key is the entry point (the function's name in functions/main.py); tests/test_terraform.py
# checks that the keys and the entry points of functions/main.py are the same set.

locals {
  functions = {
    dispatch = {
      description   = "Scheduler -> publish one work item per record of a loop and day."
      trigger       = "http"
      topic         = null
      role          = "dispatcher"
      memory        = "1Gi"
      timeout       = 1800
      max_instances = 4
    }
    subscribe_trades = {
      description   = "Pub/Sub work items of Loop A -> fact_trades."
      trigger       = "pubsub"
      topic         = "trades"
      role          = "subscriber"
      memory        = "1Gi"
      timeout       = var.subscriber_timeout_seconds
      max_instances = var.subscriber_max_instances
    }
    subscribe_rejected_signals = {
      description   = "Pub/Sub work items of Loop B -> fact_rejected_signals."
      trigger       = "pubsub"
      topic         = "rejected_signals"
      role          = "subscriber"
      memory        = "1Gi"
      timeout       = var.subscriber_timeout_seconds
      max_instances = var.subscriber_max_instances
    }
    subscribe_expired_signals = {
      description   = "Pub/Sub work items of Loop C -> fact_signals_expired."
      trigger       = "pubsub"
      topic         = "expired_signals"
      role          = "subscriber"
      memory        = "1Gi"
      timeout       = var.subscriber_timeout_seconds
      max_instances = var.subscriber_max_instances
    }
    subscribe_accounts = {
      description   = "Pub/Sub work items of Loop D -> snapshot_accounts."
      trigger       = "pubsub"
      topic         = "accounts"
      role          = "subscriber"
      memory        = "512Mi"
      timeout       = var.subscriber_timeout_seconds
      max_instances = var.subscriber_max_instances
    }
    dead_letter_sink = {
      description   = "Pub/Sub dead-letter topic -> dead_letters (items the bus gave up on)."
      trigger       = "pubsub"
      topic         = "dead_letters"
      role          = "dead_letter_sink"
      memory        = "512Mi"
      timeout       = var.subscriber_timeout_seconds
      max_instances = 5
    }
    replay = {
      description   = "By hand -> republish dead letters that now pass validation."
      trigger       = "http"
      topic         = null
      role          = "replay"
      memory        = "1Gi"
      timeout       = 1800
      max_instances = 1
    }
    patch_fees = {
      description   = "Scheduler (T+1) -> allocate the broker's posted fees to fact_trades, with an audit trail."
      trigger       = "http"
      topic         = null
      role          = "patcher"
      memory        = "1Gi"
      timeout       = 1800
      max_instances = 1
    }
    patch_prices = {
      description   = "Scheduler -> repair missing or zero fill prices from the broker, with an audit trail."
      trigger       = "http"
      topic         = null
      role          = "patcher"
      memory        = "1Gi"
      timeout       = 1800
      max_instances = 1
    }
    canary = {
      description   = "Scheduler -> send a canary record along the Golden Thread and time every hop."
      trigger       = "http"
      topic         = null
      role          = "canary"
      memory        = "512Mi"
      timeout       = 600
      max_instances = 1
    }
  }

  # Pinned: the version the package and its tests target (pyproject.toml requires-python >= 3.11).
  python_runtime = "python311"

  # What every function is told about the production stack (goldthread.config.load_settings).
  function_env = {
    GOLDTHREAD_HOT                   = "firestore"
    GOLDTHREAD_BUS                   = "pubsub"
    GOLDTHREAD_WAREHOUSE             = "bigquery"
    GOLDTHREAD_BROKER                = "alpaca"
    GOLDTHREAD_MARKET_DATA           = "alpaca"
    GOLDTHREAD_ALPACA_PAPER          = tostring(var.alpaca_paper)
    GOLDTHREAD_DATASET               = var.dataset
    GOLDTHREAD_TOPIC_PREFIX          = var.name_prefix
    GOLDTHREAD_GIT_HASH              = var.git_hash
    GOLDTHREAD_MAX_DELIVERY_ATTEMPTS = tostring(var.max_delivery_attempts)
    GOLDTHREAD_LOG_LEVEL             = var.log_level
    GOOGLE_CLOUD_PROJECT             = var.project_id
    LOG_EXECUTION_ID                 = "true"
  }

  # Only the canary's: the two filled Alpaca orders its position references (goldthread.bi.canary;
  # Alpaca cannot place them for it). Unset, the canary breaks at position_write and says so.
  canary_env = length(var.canary_order_ids) == 2 ? { GOLDTHREAD_CANARY_ORDERS = join(",", var.canary_order_ids) } : {}

  # The deployable source: functions/main.py and requirements.txt at the archive root, next to the
  # goldthread package, and nothing else (no tests, no caches, no local data).
  repo_root = "${path.module}/.."
  package_files = sort([
    for f in fileset("${local.repo_root}/shared", "goldthread/**") : f
    if !strcontains(f, "__pycache__") && !endswith(f, ".pyc")
  ])
}

data "archive_file" "source" {
  type             = "zip"
  output_path      = "${path.module}/.build/goldthread-source.zip"
  output_file_mode = "0644"

  source {
    filename = "main.py"
    content  = file("${local.repo_root}/functions/main.py")
  }

  source {
    filename = "requirements.txt"
    content  = file("${local.repo_root}/requirements.txt")
  }

  dynamic "source" {
    for_each = local.package_files
    content {
      filename = source.value
      content  = file("${local.repo_root}/shared/${source.value}")
    }
  }
}

resource "google_storage_bucket" "source" {
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Holds only build inputs; every object can be rebuilt from git.
  force_destroy = true

  # The archive the functions are built from must stay: Cloud Functions rebuilds from it (a
  # configuration change that needs a build, a runtime update), and rolling back re-uses its name.
  # An archive stops being live when Terraform replaces it with a new one (the object is deleted):
  # versioning keeps it as a noncurrent version, and only noncurrent versions older than 90 days are
  # deleted, so the rule can never touch the live object, however old it is.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = 90
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

# The functions' images: their own repository (instead of the project-wide gcf-artifacts), so the
# builder's push right is granted on this repository alone (iam.tf).
resource "google_artifact_registry_repository" "functions" {
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  description   = "Images of the ${var.name_prefix} Cloud Functions, built by Cloud Build from the source bucket."
  format        = "DOCKER"

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_object" "source" {
  # Content-addressed: a change to the code uploads a new object and rebuilds every function;
  # a change to configuration only (env, memory) deploys a new revision without a rebuild.
  name   = "source/goldthread-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = local.python_runtime
    entry_point       = each.key
    service_account   = google_service_account.sa["builder"].id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.sa[each.value.role].email
    available_memory                 = each.value.memory
    timeout_seconds                  = each.value.timeout
    max_instance_count               = each.value.max_instances
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    ingress_settings                 = var.ingress_settings
    all_traffic_on_latest_revision   = true
    environment_variables            = each.key == "canary" ? merge(local.function_env, local.canary_env) : local.function_env

    dynamic "secret_environment_variables" {
      for_each = local.runtime_roles[each.value.role].alpaca ? local.alpaca_secret_env : {}
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = google_secret_manager_secret.alpaca[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  # The builder's and the runtime accounts' grants must be in effect before the first build and the
  # first instance start (iam.tf); the Alpaca secrets must have a version to mount (secrets.tf).
  depends_on = [
    google_project_service.api,
    time_sleep.runtime_grants,
    terraform_data.alpaca_versions,
  ]
}
