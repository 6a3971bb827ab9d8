# Providers, the project being deployed into, and the APIs Golden Thread uses.
#
# State: copy backend.tf.example to backend.tf (GCS remote state) before `terraform init`.

terraform {
  # 1.9+: variable validations refer to other variables (retry backoff bounds).
  required_version = ">= 1.9.0, < 2.0.0"

  # Each lower bound is the provider release tests/test_terraform_schema.py checks this configuration
  # against, offline (the cdktf-cdktf-provider-* packages pinned in requirements-dev.txt carry its
  # schema). Raise the bound and the package together.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50.0, < 7.0.0"
    }
    # Only for google_project_service_identity (pubsub.tf), which the GA provider does not have in 6.x.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.50.0, < 7.0.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.7.1, < 3.0.0"
    }
    # time_sleep: waits for what Google makes visible only after a delay (IAM grants, log-based metrics).
    time = {
      source  = "hashicorp/time"
      version = ">= 0.13.1, < 1.0.0"
    }
  }
}

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

provider "google-beta" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

locals {
  labels = {
    app        = "goldthread"
    managed-by = "terraform"
  }

  # Every API a resource below needs. Service Usage and Cloud Resource Manager must already be on
  # for Terraform to enable the rest (docs/deploy.md, "Prerequisites").
  apis = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "api" {
  for_each = var.enable_apis ? local.apis : toset([])

  project = var.project_id
  service = each.value
  # Turning an API off on destroy would break anything else in the project that uses it.
  disable_on_destroy         = false
  disable_dependent_services = false
}
