# Inputs. Only project_id and git_hash are required; see terraform.tfvars.example.
#
# No variable carries a credential: the Alpaca keys live in Secret Manager (secrets.tf) and are
# added there by hand, never through Terraform (tests/test_terraform.py checks it).

variable "project_id" {
  type        = string
  description = "Google Cloud project id to deploy into (also GOOGLE_CLOUD_PROJECT of every function)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id (6-30 lowercase letters, digits or hyphens), not a number or name."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the Cloud Scheduler jobs and the source bucket."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west1."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every name: functions, service accounts, jobs, and the Pub/Sub topics (passed to the functions as GOLDTHREAD_TOPIC_PREFIX, so topics are <prefix>-<loop>)."
  default     = "goldthread"

  validation {
    # 12 characters keeps the longest service account id (<prefix>-dead-letter-sink) within 30.
    condition     = can(regex("^[a-z][a-z0-9-]{2,10}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 4-12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "git_hash" {
  type        = string
  description = "Commit being deployed (`git rev-parse HEAD`); set as GOLDTHREAD_GIT_HASH so every run record carries it."

  validation {
    condition     = can(regex("^[0-9a-f]{7,40}(-dirty)?$", var.git_hash))
    error_message = "git_hash must be a 7-40 character hex commit id, optionally followed by -dirty."
  }
}

variable "alpaca_versions_added" {
  type        = bool
  description = "Both Alpaca secrets (secrets.tf) have a version, added by hand. False on a first deploy: the functions are refused at plan time, with the steps to take, until the secrets exist and hold the keys."
  default     = false
}

variable "enable_apis" {
  type        = bool
  description = "Enable the Google APIs Golden Thread uses (providers.tf). Turn off when a platform team manages APIs."
  default     = true
}

variable "dataset" {
  type        = string
  description = "BigQuery dataset of the warehouse (GOLDTHREAD_DATASET)."
  default     = "goldthread"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.dataset))
    error_message = "dataset must be lowercase letters, digits or underscores, starting with a letter (64 at most)."
  }
}

variable "bigquery_location" {
  type        = string
  description = "Location of the BigQuery dataset (multi-region US or EU, or a region)."
  default     = "US"

  validation {
    condition     = can(regex("^(US|EU|[a-z]+-[a-z]+[0-9]+)$", var.bigquery_location))
    error_message = "bigquery_location must be US, EU or a region such as us-central1."
  }
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database (nam5, eur3 or a region). Fixed once the database exists."
  default     = "nam5"

  validation {
    condition     = can(regex("^(nam5|eur3|[a-z]+-[a-z]+[0-9]+)$", var.firestore_location))
    error_message = "firestore_location must be nam5, eur3 or a region."
  }
}

variable "create_firestore_database" {
  type        = bool
  description = "Create the (default) Firestore database in Native mode. Set false when the project already has one."
  default     = true
}

variable "firestore_indexes_file" {
  type        = string
  description = "Path of the Firestore composite index definitions (Firebase CLI format). Null means firestore.indexes.json at the repository root."
  default     = null

  validation {
    condition     = var.firestore_indexes_file == null || can(regex("\\.json$", var.firestore_indexes_file))
    error_message = "firestore_indexes_file must be a .json file."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the warehouse tables and the Firestore database from deletion. Set false (and apply) before `terraform destroy`."
  default     = true
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries of a work item before Pub/Sub moves it to the dead-letter topic (GOLDTHREAD_MAX_DELIVERY_ATTEMPTS)."
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number from 5 to 100 (Pub/Sub's range)."
  }
}

variable "retry_minimum_backoff_seconds" {
  type        = number
  description = "Pub/Sub retry policy: first delay before redelivering a failed work item (exponential backoff)."
  default     = 10

  validation {
    condition     = var.retry_minimum_backoff_seconds >= 0 && var.retry_minimum_backoff_seconds <= 600
    error_message = "retry_minimum_backoff_seconds must be between 0 and 600."
  }
}

variable "retry_maximum_backoff_seconds" {
  type        = number
  description = "Pub/Sub retry policy: longest delay between redeliveries."
  default     = 600

  validation {
    condition     = var.retry_maximum_backoff_seconds >= var.retry_minimum_backoff_seconds && var.retry_maximum_backoff_seconds <= 600
    error_message = "retry_maximum_backoff_seconds must be at least the minimum backoff and at most 600."
  }
}

variable "subscriber_timeout_seconds" {
  type        = number
  description = "Timeout of the Pub/Sub-pushed functions, and the ack deadline of their subscriptions (Pub/Sub allows 600 at most)."
  default     = 300

  validation {
    condition     = var.subscriber_timeout_seconds >= 10 && var.subscriber_timeout_seconds <= 600
    error_message = "subscriber_timeout_seconds must be between 10 and 600."
  }
}

variable "subscriber_max_instances" {
  type        = number
  description = "Most instances of each subscriber function; bounds the load on Alpaca, Firestore and BigQuery."
  default     = 20

  validation {
    condition     = var.subscriber_max_instances >= 1 && var.subscriber_max_instances <= 1000
    error_message = "subscriber_max_instances must be between 1 and 1000."
  }
}

variable "dead_letter_retention_days" {
  type        = number
  description = "How long the dead-letter topic's retained subscription keeps messages (acked or not) for inspection and replay."
  default     = 7

  validation {
    condition     = var.dead_letter_retention_days >= 7 && var.dead_letter_retention_days <= 31
    error_message = "dead_letter_retention_days must be between 7 and 31 (Pub/Sub's maximum)."
  }
}

variable "alpaca_paper" {
  type        = bool
  description = "Talk to Alpaca's paper-trading API (GOLDTHREAD_ALPACA_PAPER). False means the live account."
  default     = true
}

variable "log_level" {
  type        = string
  description = "Log level of the functions (GOLDTHREAD_LOG_LEVEL)."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "ingress_settings" {
  type        = string
  description = "Network ingress of every function. Invocation always needs an IAM-authorised identity token whatever this says; ALLOW_ALL lets Cloud Scheduler and Pub/Sub push reach the run.app URLs without a VPC Service Controls perimeter."
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress_settings)
    error_message = "ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "operator_members" {
  type        = list(string)
  description = "IAM members (user:, group:, serviceAccount:) who may invoke the HTTP functions by hand: replay, a re-dispatch, a patch, the canary."
  default     = []

  validation {
    condition     = alltrue([for m in var.operator_members : can(regex("^(user|group|serviceAccount):[^@\\s]+@[^@\\s]+$", m))])
    error_message = "operator_members must be user:, group: or serviceAccount: members; allUsers and allAuthenticatedUsers are refused."
  }
}

variable "scheduler_paused" {
  type        = bool
  description = "Create the Cloud Scheduler jobs paused (first deploy, maintenance, teardown)."
  default     = false
}

variable "alert_emails" {
  type        = list(string)
  description = "E-mail addresses that receive the alerts (an e-mail notification channel is created for each)."
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alert_emails must be e-mail addresses."
  }
}

variable "notification_channel_ids" {
  type        = list(string)
  description = "Existing Cloud Monitoring notification channels (projects/<p>/notificationChannels/<id>) that also receive the alerts."
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channel_ids : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channel_ids must be full notification channel names."
  }
}

variable "function_error_threshold" {
  type        = number
  description = "Alert when the functions answer more than this many 5xx (crashes, transient failures being retried) within 10 minutes."
  default     = 5

  validation {
    condition     = var.function_error_threshold >= 0
    error_message = "function_error_threshold must not be negative."
  }
}

variable "canary_order_ids" {
  type        = list(string)
  description = "Two filled orders of the Alpaca account (entry, exit: a buy and a sell of the same small BTC/USD quantity) that the hourly canary's position references (GOLDTHREAD_CANARY_ORDERS). Empty: the canary breaks at its position_write hop and alerts."
  default     = []

  validation {
    condition     = length(var.canary_order_ids) == 0 || (length(var.canary_order_ids) == 2 && alltrue([for id in var.canary_order_ids : can(regex("^[A-Za-z0-9-]+$", id))]))
    error_message = "canary_order_ids must be empty or two order ids (entry, exit), letters, digits and hyphens only."
  }
}
