# The Alpaca API keys, in Secret Manager. Terraform declares the secrets only: their values are
# added as secret versions by a person (docs/deploy.md), so they never appear in a variable, a plan
# or the state. Functions of the roles that call Alpaca get them as environment variables
# (secret_environment_variables in functions.tf), read at instance start; nobody else can read them.
#
# A function mounting `latest` of a secret with no version fails to deploy, so a first deploy has two
# steps, and the configuration enforces them: until `alpaca_versions_added` is true, planning the
# functions stops with the steps to take (terraform_data.alpaca_versions); once it is true, the
# plan reads each secret's latest version (metadata only, never the value) and fails if there is none.

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

# The latest version of each secret: its name and state only. fetch_secret_data = false keeps the
# value out of the plan and the state (and needs no secretAccessor for whoever runs Terraform).
data "google_secret_manager_secret_version" "alpaca" {
  for_each = var.alpaca_versions_added ? local.alpaca_secrets : {}

  secret            = google_secret_manager_secret.alpaca[each.key].id
  fetch_secret_data = false
}

# The gate the functions depend on (functions.tf).
resource "terraform_data" "alpaca_versions" {
  input = { for k, v in data.google_secret_manager_secret_version.alpaca : k => v.name }

  lifecycle {
    precondition {
      condition     = var.alpaca_versions_added
      error_message = <<-EOT
        The functions mount the Alpaca secrets at `latest`, and a secret without a version cannot be
        mounted. First deploy (docs/deploy.md, "First deploy"):
          1. terraform apply -parallelism=1 -target=google_secret_manager_secret.alpaca -target=google_firestore_index.composite
          2. add a version to each secret: gcloud secrets versions add ${local.alpaca_secrets["api_key_id"]} --data-file=- (and ${local.alpaca_secrets["api_secret_key"]})
          3. terraform apply -var alpaca_versions_added=true (or set it in terraform.tfvars)
      EOT
    }

    postcondition {
      condition     = alltrue([for v in data.google_secret_manager_secret_version.alpaca : v.enabled])
      error_message = "The latest version of an Alpaca secret is disabled: add a new version (docs/deploy.md, \"Rotating the Alpaca keys\")."
    }
  }
}
