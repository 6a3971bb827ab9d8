# Providers, the project being deployed into, and the APIs Golden Thread uses.
#
# State: copy backend.tf.example to backend.tf (GCS remote state) before `terraform init`.

terraform {
  # 1.9+: variable validations refer to other variables (retry backoff bounds).
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 7.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }
}

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

data "google_project" "this" {
  project_id = var.project_id
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
