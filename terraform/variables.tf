# ---- project -------------------------------------------------------------------------
variable "project_id" {
  description = "Google Cloud project that runs the sync."
  type        = string
}

variable "region" {
  description = "Region of the functions, the Cloud Tasks queue and the scheduler job."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name, so two stacks (staging, prod) can share a project."
  type        = string
  default     = "hubspot-sync"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,17}$", var.name_prefix))
    error_message = "name_prefix: 3-18 characters, lower-case letters, digits and hyphens."
  }
}

variable "package_dir" {
  description = "Folder written by `hubspot-sync package` (default: ../.build/functions)."
  type        = string
  default     = null
}

# ---- Cloud SQL -----------------------------------------------------------------------
variable "db_instance_connection_name" {
  description = "WARP's Cloud SQL instance as project:region:instance."
  type        = string

  validation {
    condition     = length(split(":", var.db_instance_connection_name)) == 3
    error_message = "db_instance_connection_name must be project:region:instance."
  }
}

variable "db_name" {
  description = "Database holding the accounts schema."
  type        = string
  default     = "warp"
}

variable "db_iam_auth" {
  description = "Use Cloud SQL IAM database authentication: each function's service account is its own database user (no password)."
  type        = bool
  default     = true
}

variable "db_user" {
  description = "Database user for password authentication (ignored with db_iam_auth)."
  type        = string
  default     = "hubspot_sync"
}

variable "db_create_iam_users" {
  description = "Create the Cloud SQL IAM users of the function service accounts in the instance's project (the one in db_instance_connection_name; whoever applies needs cloudsql.users.create there). Table grants stay a DBA step (docs/deploy.md)."
  type        = bool
  default     = false
}

variable "db_ip_type" {
  description = "How the connector reaches the instance: public, private (needs vpc_connector) or psc."
  type        = string
  default     = "public"

  validation {
    condition     = contains(["public", "private", "psc"], var.db_ip_type)
    error_message = "db_ip_type must be public, private or psc."
  }
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector id for private IP (null: none)."
  type        = string
  default     = null
}

variable "db_max_connections" {
  description = "The instance's max_connections flag."
  type        = number
  default     = 100
}

variable "db_reserved_connections" {
  description = "Connections kept free for WARP itself, migrations and superuser access."
  type        = number
  default     = 50
}

variable "db_pool_size" {
  description = "DB_POOL_SIZE of every function: connections one instance may hold. Each instance serves one request at a time; two covers the work transaction plus the shared rate-limiter row."
  type        = number
  default     = 2
}

# ---- HubSpot -------------------------------------------------------------------------
variable "hubspot_app_id" {
  description = "Our HubSpot app id; webhook events carrying it as sourceId are our own echoes."
  type        = number
}

variable "hubspot_base_url" {
  description = "HubSpot API base URL."
  type        = string
  default     = "https://api.hubapi.com"
}

variable "hubspot_rate_limit" {
  description = "Requests per window all instances together allow themselves (90 % of a 100 per 10 s app limit)."
  type        = number
  default     = 90
}

variable "hubspot_rate_window_ms" {
  description = "Length of the burst window in milliseconds."
  type        = number
  default     = 10000
}

variable "hubspot_search_rate_per_second" {
  description = "Shared budget of CRM search requests per second."
  type        = number
  default     = 4
}

variable "hubspot_daily_budget" {
  description = "Daily request budget, kept below HubSpot's daily cap (250 000 on most tiers)."
  type        = number
  default     = 237500
}

variable "webhook_public_url" {
  description = "Base URL HubSpot calls when it is not the function's own run.app URL (custom domain, load balancer)."
  type        = string
  default     = null
}

variable "webhook_accept_v1" {
  description = "Accept v1 signatures when no v3 header is present (private apps)."
  type        = bool
  default     = false
}

# ---- capacity ------------------------------------------------------------------------
variable "max_instances" {
  description = "max_instance_count per function. Their sum times db_pool_size must fit in db_max_connections - db_reserved_connections (checked at plan)."
  type        = map(number)
  default = {
    webhook_receiver = 10 # HubSpot's default maxConcurrentRequests: one instance per in-flight delivery
    outbound_sync    = 6
    retry_worker     = 5
    reconciler       = 1
    sync_api         = 3
  }
}

variable "webhook_min_instances" {
  description = "Warm webhook instances: HubSpot gives up after 5 s and a cold start at 0.33 vCPU takes a good part of that."
  type        = number
  default     = 1
}

variable "tasks_max_dispatches_per_second" {
  description = "Cloud Tasks dispatch rate. A task may make several HubSpot calls, and webhooks and outbound sync share the same 9 requests/s, so tasks get about half."
  type        = number
  default     = 4
}

# ---- retries and schedules -----------------------------------------------------------
variable "retry_base_seconds" {
  description = "First backoff of the application's own retries."
  type        = number
  default     = 2
}

variable "retry_cap_seconds" {
  description = "Largest backoff of the application's own retries."
  type        = number
  default     = 600
}

variable "retry_max_attempts" {
  description = "Deliveries of a task (a flush, a webhook batch) before its work becomes hubspot_sync_queue rows; also the queue's retry_config.max_attempts."
  type        = number
  default     = 8
}

variable "outbound_max_delivery_attempts" {
  description = "Pub/Sub deliveries of one change message before it goes to the dead-letter topic (5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.outbound_max_delivery_attempts >= 5 && var.outbound_max_delivery_attempts <= 100
    error_message = "outbound_max_delivery_attempts must be between 5 and 100."
  }
}

variable "reconcile_schedule" {
  description = "unix-cron schedule of the nightly reconciliation, in UTC."
  type        = string
  default     = "0 3 * * *"
}

variable "hubspot_read_token" {
  description = "Give the functions a second, read-only HubSpot token (secret HUBSPOT_READ_ACCESS_TOKEN) for every read, so the write token is used only to write (docs/deploy.md, step 0). Add the secret's value before the functions deploy."
  type        = bool
  default     = false
}

variable "secret_versions" {
  description = "Secret version each function reads, per secret env var (\"latest\" is resolved when an instance starts; pin a number to make rotation an explicit deploy)."
  type        = map(string)
  default     = {}
}

# ---- Pub/Sub -------------------------------------------------------------------------
variable "change_topic_name" {
  description = "WARP's topic of customer changes."
  type        = string
  default     = "customer-changes"
}

variable "create_change_topic" {
  description = "Create the topic here (true) or use the one WARP already manages (false)."
  type        = bool
  default     = true
}

variable "change_publishers" {
  description = "IAM members allowed to publish change messages (WARP's service account), when the topic is created here."
  type        = list(string)
  default     = []
}

# ---- callers and alerts --------------------------------------------------------------
variable "api_invokers" {
  description = "IAM members allowed to call sync_api (WARP's backend, Prometheus' scraper, operators). Service accounts among them are also the accepted OIDC callers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.api_invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "sync_api is never public: list specific members."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids the alerts notify."
  type        = list(string)
  default     = []
}

variable "queue_backlog_threshold" {
  description = "Alert when pending plus failed work items exceed this."
  type        = number
  default     = 1000
}

variable "failure_alert_threshold" {
  description = "Alert when more sync operations than this fail within 10 minutes."
  type        = number
  default     = 20
}

variable "encryption_key_id" {
  description = "ENCRYPTION_KEY_ID stored beside each ciphertext in the sync log; change it together with a new ENCRYPTION_KEY version (docs/deploy.md, rotation)."
  type        = string
  default     = "k1"
}

variable "log_level" {
  description = "LOG_LEVEL of every function."
  type        = string
  default     = "INFO"
}
