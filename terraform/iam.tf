# Service accounts, one per function role, and what each may do. No function runs as the default
# compute service account, and nothing is granted to allUsers or allAuthenticatedUsers.
#
# Runtime roles (what the code in shared/goldthread actually touches):
#   dispatcher       job_metadata and the hot collections (Firestore); publishes to the loop topics;
#                    syncs dim_strategy and caches market_bars (+ market_bars_coverage) before
#                    publishing (BigQuery); reads the Alpaca account (Loop D) and bars (Loops B, C).
#   subscriber       hot documents and run counters (Firestore); writes its loop's table, reads
#                    dim_strategy, market_bars and market_bars_coverage (BigQuery); fills and bars from
#                    Alpaca; publishes permanent failures to the dead-letter topic.
#   dead_letter_sink dead_letters (BigQuery), the dead-lettered mark and run counter (Firestore).
#   replay           reads dead_letters, writes dead_letter_replays (BigQuery), re-checks items with
#                    the loop's own build (Alpaca), republishes to the loop topics.
#   patcher          fact_trades and patch_audit (BigQuery), hot positions (Firestore), fee
#                    activities and orders (Alpaca).
#   canary           (goldthread.bi.canary) its run record, strategy, signal and position (Firestore);
#                    publishes ONE work item to the trades topic (never a dispatch, never another
#                    topic); reads the canary orders back from Alpaca (and re-checks the item with the
#                    trades loop when it gets no outcome); upserts dim_strategy and job_runs, reads
#                    fact_trades, dead_letters and every mart (BigQuery).
#
# BigQuery is granted on the dataset, not per table: BigQueryWarehouse.ensure_tables() creates
# every model's table and (re)creates its <table>_dedup view on each cold start, and upsert_rows()
# creates a _staging_ table, so a table-level grant would fail there. See docs/deploy.md.
#
# Invoker identities (never run code):
#   scheduler   OIDC identity of the Cloud Scheduler jobs: run.invoker on the scheduled functions.
#   pubsub_push OIDC identity of the push subscriptions: run.invoker on the Pub/Sub-pushed functions.
#   builder     Cloud Build identity that builds the function images (instead of the default
#               compute service account): reads the source bucket, pushes to the functions'
#               repository, writes logs; nothing else.

locals {
  runtime_roles = {
    dispatcher = {
      description = "Golden Thread dispatcher: publishes one work item per record of a loop and day."
      alpaca      = true
      publishes   = keys(local.loops)
    }
    subscriber = {
      description = "Golden Thread loop subscribers: archive work items into the warehouse."
      alpaca      = true
      publishes   = ["dead_letters"]
    }
    dead_letter_sink = {
      description = "Golden Thread dead-letter sink: records what Pub/Sub dead-lettered."
      alpaca      = false
      publishes   = []
    }
    replay = {
      description = "Golden Thread replay: republishes dead letters that now pass validation."
      alpaca      = true
      publishes   = keys(local.loops)
    }
    patcher = {
      description = "Golden Thread fee and price patches."
      alpaca      = true
      publishes   = []
    }
    canary = {
      description = "Golden Thread canary: proves the thread is whole."
      alpaca      = true
      publishes   = ["trades"]
    }
  }

  invoker_accounts = {
    scheduler   = "Golden Thread Cloud Scheduler jobs (OIDC caller of the scheduled functions)."
    pubsub_push = "Golden Thread Pub/Sub push subscriptions (OIDC caller of the subscriber functions)."
    builder     = "Golden Thread Cloud Build (builds the function images)."
  }

  service_accounts = merge(
    { for role, r in local.runtime_roles : role => r.description },
    local.invoker_accounts,
  )

  # Every runtime role reads and writes Firestore (job_metadata at least) and runs BigQuery jobs.
  runtime_project_roles = ["roles/datastore.user", "roles/bigquery.jobUser"]

  runtime_project_grants = merge([
    for role in keys(local.runtime_roles) : {
      for r in local.runtime_project_roles : "${role}/${r}" => { account = role, role = r }
    }
  ]...)

  topic_publishers = merge([
    for role, r in local.runtime_roles : {
      for topic in r.publishes : "${role}/${topic}" => { account = role, topic = topic }
    }
  ]...)

  secret_accessors = merge([
    for role, r in local.runtime_roles : {
      for secret in keys(local.alpaca_secrets) : "${role}/${secret}" => { account = role, secret = secret }
    } if r.alpaca
  ]...)

  http_functions      = toset([for name, f in local.functions : name if f.trigger == "http"])
  scheduled_functions = toset([for job in local.schedules : job.function])
  pushed_functions    = toset([for name, f in local.functions : name if f.trigger == "pubsub"])

  operator_grants = {
    for pair in setproduct(var.operator_members, local.http_functions) :
    "${pair[1]}/${pair[0]}" => { function = pair[1], member = pair[0] }
  }
}

resource "google_service_account" "sa" {
  for_each = local.service_accounts

  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = "${var.name_prefix} ${replace(each.key, "_", " ")}"
  description  = each.value

  depends_on = [google_project_service.api]
}

# -- runtime roles ----------------------------------------------------------------------------------

resource "google_project_iam_member" "runtime" {
  for_each = local.runtime_project_grants

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.sa[each.value.account].email}"
}

resource "google_bigquery_dataset_iam_member" "runtime_editor" {
  for_each = toset(keys(local.runtime_roles))

  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.sa[each.value].email}"
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.topic_publishers

  topic  = google_pubsub_topic.topic[each.value.topic].name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.sa[each.value.account].email}"
}

# -- invokers: run.invoker on exactly the functions each identity calls ----------------------------

resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  for_each = local.scheduled_functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.value].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.sa["scheduler"].email}"
}

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = local.pushed_functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.value].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.sa["pubsub_push"].email}"
}

resource "google_cloud_run_v2_service_iam_member" "operator_invoker" {
  for_each = local.operator_grants

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}

# -- build identity -------------------------------------------------------------------------------
#
# Cloud Build builds every function as the builder account, which needs exactly three things: read
# the source archive (object viewer on the source bucket), push the image (writer on the functions'
# own Artifact Registry repository) and write its build log (log writer). Not
# roles/cloudbuild.builds.builder on the project, which would let it read and write every bucket and
# repository of the project.

resource "google_project_iam_member" "builder" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.sa["builder"].email}"
}

resource "google_storage_bucket_iam_member" "builder_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.sa["builder"].email}"
}

resource "google_artifact_registry_repository_iam_member" "builder_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.sa["builder"].email}"
}

# -- waiting for IAM ------------------------------------------------------------------------------
#
# A grant takes effect a while after the API accepts it (usually within a minute, sometimes several).
# On a fresh project the first build, the first instance start (secrets) or the first push would run
# into a grant that is not in effect yet and fail. These waits sit between the grants and what needs
# them. They wait on create only, and again whenever the set of grants changes (triggers).

resource "time_sleep" "runtime_grants" {
  create_duration = "120s"

  triggers = {
    builder   = join(",", [google_project_iam_member.builder.role, google_storage_bucket_iam_member.builder_source.role, google_artifact_registry_repository_iam_member.builder_images.role])
    project   = join(",", sort(keys(local.runtime_project_grants)))
    publisher = join(",", sort(keys(local.topic_publishers)))
    secrets   = join(",", sort(keys(local.secret_accessors)))
  }

  depends_on = [
    google_project_iam_member.builder,
    google_storage_bucket_iam_member.builder_source,
    google_artifact_registry_repository_iam_member.builder_images,
    google_project_iam_member.runtime,
    google_bigquery_dataset_iam_member.runtime_editor,
    google_pubsub_topic_iam_member.publisher,
    google_secret_manager_secret_iam_member.alpaca,
  ]
}

resource "time_sleep" "invoker_grants" {
  create_duration = "120s"

  triggers = {
    scheduler = join(",", sort(local.scheduled_functions))
    push      = join(",", sort(local.pushed_functions))
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.scheduler_invoker,
    google_cloud_run_v2_service_iam_member.push_invoker,
    google_service_account_iam_member.agent_push_token_creator,
  ]
}
