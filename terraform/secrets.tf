# The Alpaca API keys, in Secret Manager. Terraform declares the secrets only: their values are
# added as secret versions by a person (docs/deploy.md), so they never appear in a variable, a plan
# or the state. Functions of the roles that call Alpaca get them as environment variables
# (secret_environment_variables in functions.tf), read at instance start; nobody else can read them.

locals {
  # secret key -> secret name in Secret Manager
  alpaca_secrets = {
    api_key_id     = "${var.name_prefix}-alpaca-api-key-id"
    api_secret_key = "${var.name_prefix}-alpaca-api-secret-key"
  }

  # environment variable the Alpaca adapters read -> secret key
  alpaca_secret_env = {
    APCA_API_KEY_ID     = "api_key_id"
    APCA_API_SECRET_KEY = "api_secret_key"
  }
}

resource "google_secret_manager_secret" "alpaca" {
  for_each = local.alpaca_secrets

  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_iam_member" "alpaca" {
  for_each = local.secret_accessors

  secret_id = google_secret_manager_secret.alpaca[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sa[each.value.account].email}"
}
