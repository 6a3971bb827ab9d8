# What an operator needs after `terraform apply` (docs/deploy.md uses these).

output "function_urls" {
  description = "Entry point -> URL of its function (run.app). All need an identity token; none is public."
  value       = { for name, f in google_cloudfunctions2_function.fn : name => f.service_config[0].uri }
}

output "function_names" {
  description = "Entry point -> deployed function (and Cloud Run service) name."
  value       = { for name, f in google_cloudfunctions2_function.fn : name => f.name }
}

output "replay_url" {
  description = "URL of the replay function (POST {\"loop\", \"reason\", \"ids\", \"dry_run\"})."
  value       = google_cloudfunctions2_function.fn["replay"].service_config[0].uri
}

output "topics" {
  description = "Loop (and dead_letters) -> Pub/Sub topic."
  value       = { for k, t in google_pubsub_topic.topic : k => t.name }
}

output "subscriptions" {
  description = "Loop -> push subscription of its subscriber function."
  value       = { for k, s in google_pubsub_subscription.loop : k => s.name }
}

output "dead_letter_subscription" {
  description = "Retained pull subscription of the dead-letter topic (inspect, seek; its backlog is the dead-letter alert)."
  value       = google_pubsub_subscription.dead_letters_retained.name
}

output "dataset" {
  description = "BigQuery dataset of the warehouse (project.dataset)."
  value       = "${var.project_id}.${google_bigquery_dataset.warehouse.dataset_id}"
}

output "service_accounts" {
  description = "Role -> service account e-mail."
  value       = { for k, sa in google_service_account.sa : k => sa.email }
}

output "scheduler_jobs" {
  description = "Job -> Cloud Scheduler job name (run one now: gcloud scheduler jobs run NAME --location REGION)."
  value       = { for k, j in google_cloud_scheduler_job.job : k => j.name }
}

output "alpaca_secrets" {
  description = "Secret Manager secrets to add the Alpaca key versions to (names only; values are never in Terraform)."
  value       = { for k, s in google_secret_manager_secret.alpaca : k => s.secret_id }
}

output "source_object" {
  description = "The deployed source archive in GCS (content-addressed)."
  value       = "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.source.name}"
}

output "git_hash" {
  description = "Commit the functions report as GOLDTHREAD_GIT_HASH."
  value       = var.git_hash
}
