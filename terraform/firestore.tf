# Firestore: the (default) database of the hot store, and the composite indexes its queries need.
#
# The indexes are defined once, in firestore.indexes.json at the repository root (the Firebase CLI
# format, also what the emulator reads); Terraform declares one google_firestore_index per entry of
# its "indexes" list. ("fieldOverrides" are not used.)
#
# Firestore refuses concurrent index creations in one database ("409 too much contention"), and a
# for_each cannot chain its own instances. So indexes are created one at a time on a first deploy by
# a targeted apply with -parallelism=1 (docs/deploy.md, "First deploy", step 1; the alpaca_versions
# gate in secrets.tf says so too); later plans add an index or two at most.

locals {
  firestore_database     = "(default)"
  firestore_indexes_file = coalesce(var.firestore_indexes_file, "${path.module}/../firestore.indexes.json")

  # key "<collection>/<scope>/<field>:<ORDER|arrayConfig>,..." is stable across reorderings of the file.
  firestore_indexes = {
    for index in jsondecode(file(local.firestore_indexes_file)).indexes :
    "${index.collectionGroup}/${lookup(index, "queryScope", "COLLECTION")}/${join(",", [for f in index.fields : "${f.fieldPath}:${lookup(f, "order", lookup(f, "arrayConfig", ""))}"])}" => index
  }
}

resource "google_firestore_database" "hot" {
  count = var.create_firestore_database ? 1 : 0

  project                           = var.project_id
  name                              = local.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # `terraform destroy` leaves the database and its documents in place (delete it by hand if meant).
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.api]
}

resource "google_firestore_index" "composite" {
  for_each = local.firestore_indexes

  project     = var.project_id
  database    = local.firestore_database
  collection  = each.value.collectionGroup
  query_scope = lookup(each.value, "queryScope", "COLLECTION")

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = lookup(fields.value, "order", null)
      array_config = lookup(fields.value, "arrayConfig", null)
    }
  }

  depends_on = [google_firestore_database.hot]
}
