# The five Cloud Functions (2nd gen), their service accounts, source objects and invokers.
#
# Sizing, per function (memory decides CPU: 256M = 0.167 vCPU, 512M = 0.333, 1G = 0.583):
# - webhook_receiver: HubSpot times out after 5 s, so the function stores the batch,
#   processes what fits in WEBHOOK_TIME_BUDGET_SECONDS (3 s) and hands the rest to a
#   task. Timeout 30 s only bounds a stuck request (HubSpot has retried by then and the
#   event store is idempotent); 512M for a faster cold start, one warm instance.
#   Public, so a flood of forged requests is bounded here: at most
#   max_instances["webhook_receiver"] instances, each refusing one request at a time
#   before any database work (docs/reliability.md, "A flood of forged webhooks").
# - outbound_sync: one Pub/Sub message per request (plus the coalescing delay and a batch
#   write). Timeout 120 s, equal to the subscription's ack deadline, which for push
#   is the request timeout: Pub/Sub never redelivers while an attempt still runs.
# - retry_worker: timeout 600 s, equal to Cloud Tasks' default dispatch deadline (the
#   tasks set none). A longer timeout would only let an attempt run on after Cloud
#   Tasks gave up on it and dispatched a duplicate.
# - reconciler: timeout 3600 s, the gen2 HTTP maximum; it checkpoints and continues in a
#   task before Cloud Scheduler's 30-minute attempt deadline (scheduler.tf). One
#   instance: two full reconciliations at once would only compete for the HubSpot budget.
#   1G because it holds pages of 100 companies and compares them field by field.
# - sync_api: timeout 60 s, short JSON requests.
#
# Concurrency: max_instance_request_concurrency stays 1 (the default and the only
# value below 1 vCPU), so an instance holds at most DB_POOL_SIZE connections, and
# Σ max_instance_count × DB_POOL_SIZE bounds this deployment's connections
# (terraform_data.db_connection_budget refuses a plan that exceeds the budget).

locals {
  package_dir    = coalesce(var.package_dir, "${path.module}/../.build/functions")
  package_hashes = jsondecode(file("${local.package_dir}/manifest.json"))

  functions = {
    webhook_receiver = {
      service     = "${var.name_prefix}-webhook"
      description = "HubSpot webhooks: verify, store idempotently, process or defer"
      memory      = "512M"
      timeout     = 30
      min         = var.webhook_min_instances
      secrets     = ["HUBSPOT_ACCESS_TOKEN", "HUBSPOT_CLIENT_SECRET", "ENCRYPTION_KEY"]
    }
    outbound_sync = {
      service     = "${var.name_prefix}-outbound"
      description = "WARP customer changes (Pub/Sub push) to HubSpot"
      memory      = "512M"
      timeout     = 120
      min         = 0
      secrets     = ["HUBSPOT_ACCESS_TOKEN", "ENCRYPTION_KEY"]
    }
    retry_worker = {
      service     = "${var.name_prefix}-retry"
      description = "Deferred and retried work dispatched by Cloud Tasks"
      memory      = "512M"
      timeout     = 600
      min         = 0
      secrets     = ["HUBSPOT_ACCESS_TOKEN", "ENCRYPTION_KEY"]
    }
    reconciler = {
      service     = "${var.name_prefix}-reconciler"
      description = "Nightly reconciliation of every linked customer"
      memory      = "1G"
      timeout     = 3600
      min         = 0
      secrets     = ["HUBSPOT_ACCESS_TOKEN", "ENCRYPTION_KEY"]
    }
    sync_api = {
      service     = "${var.name_prefix}-api"
      description = "Management API: status, conflicts, replay, reconcile, metrics"
      memory      = "512M"
      timeout     = 60
      min         = 0
      secrets     = ["HUBSPOT_ACCESS_TOKEN", "ENCRYPTION_KEY", "SYNC_API_TOKEN"]
    }
  }

  # Cloud Run's deterministic URL (https://SERVICE-PROJECT_NUMBER.REGION.run.app) is
  # known before the service exists. Each function needs its own URL as OIDC audience
  # (and retry_worker as RETRY_WORKER_URL), which service_config[0].uri cannot give
  # without a dependency cycle.
  function_urls = {
    for name, f in local.functions :
    name => "https://${f.service}-${data.google_project.this.number}.${var.region}.run.app"
  }
  webhook_base_url = coalesce(var.webhook_public_url, local.function_urls.webhook_receiver)

  # Who may invoke each function: Cloud Run IAM (run.invoker) and, for the internal
  # ones, the same service accounts checked again in code (OIDC_ALLOWED_EMAILS).
  invoker_emails = {
    outbound_sync = [google_service_account.pubsub_push.email]
    retry_worker  = [google_service_account.tasks.email]
    reconciler    = [google_service_account.scheduler.email]
    # Groups cannot be checked in code (ID tokens carry no group claim): their members
    # call with SYNC_API_TOKEN instead (docs/deploy.md, step 2).
    sync_api = [for m in var.api_invokers : split(":", m)[1] if startswith(m, "serviceAccount:") || startswith(m, "user:")]
  }
  # Keyed by names known when the plan starts, never by an email: a service account
  # created in the same apply has an unknown email at plan time on providers before
  # 6.13, and for_each refuses unknown keys ("Invalid for_each argument").
  invoker_members = {
    webhook_receiver = { public = "allUsers" } # HubSpot cannot send Google tokens; the v3 signature is checked in code
    outbound_sync    = { pubsub_push = "serviceAccount:${google_service_account.pubsub_push.email}" }
    retry_worker     = { tasks = "serviceAccount:${google_service_account.tasks.email}" }
    reconciler       = { scheduler = "serviceAccount:${google_service_account.scheduler.email}" }
    sync_api         = { for m in var.api_invokers : m => m } # never public: see the variable's validation
  }

  # Runtime settings every function reads (names are shared/config/settings.py fields).
  common_env = {
    GCP_PROJECT                    = var.project_id
    GCP_REGION                     = var.region
    LOG_LEVEL                      = var.log_level
    INSTANCE_CONNECTION_NAME       = var.db_instance_connection_name
    DB_NAME                        = var.db_name
    DB_IAM_AUTH                    = tostring(var.db_iam_auth)
    DB_IP_TYPE                     = var.db_ip_type
    DB_POOL_SIZE                   = tostring(var.db_pool_size)
    HUBSPOT_BASE_URL               = var.hubspot_base_url
    HUBSPOT_APP_ID                 = tostring(var.hubspot_app_id)
    HUBSPOT_RATE_LIMIT             = tostring(var.hubspot_rate_limit)
    HUBSPOT_RATE_WINDOW_MS         = tostring(var.hubspot_rate_window_ms)
    HUBSPOT_SEARCH_RATE_PER_SECOND = tostring(var.hubspot_search_rate_per_second)
    HUBSPOT_DAILY_BUDGET           = tostring(var.hubspot_daily_budget)
    TASKS_QUEUE                    = google_cloud_tasks_queue.retry.name
    TASKS_SERVICE_ACCOUNT          = google_service_account.tasks.email
    RETRY_WORKER_URL               = local.function_urls.retry_worker
    RETRY_BASE_SECONDS             = tostring(var.retry_base_seconds)
    RETRY_CAP_SECONDS              = tostring(var.retry_cap_seconds)
    RETRY_MAX_ATTEMPTS             = tostring(var.retry_max_attempts)
    ENCRYPTION_KEY_ID              = var.encryption_key_id
  }

  # What only one function reads.
  function_env = {
    webhook_receiver = {
      WEBHOOK_PUBLIC_URL = local.webhook_base_url
      WEBHOOK_ACCEPT_V1  = tostring(var.webhook_accept_v1)
    }
    outbound_sync = {
      OIDC_AUDIENCE       = local.function_urls.outbound_sync
      OIDC_ALLOWED_EMAILS = join(",", local.invoker_emails.outbound_sync)
    }
    retry_worker = {
      OIDC_AUDIENCE       = local.function_urls.retry_worker
      OIDC_ALLOWED_EMAILS = join(",", local.invoker_emails.retry_worker)
    }
    reconciler = {
      OIDC_AUDIENCE       = local.function_urls.reconciler
      OIDC_ALLOWED_EMAILS = join(",", local.invoker_emails.reconciler)
    }
    # OIDC only with someone to allow: an empty OIDC_ALLOWED_EMAILS would let any
    # Google identity through. Without it the API accepts SYNC_API_TOKEN alone.
    sync_api = {
      for k, v in {
        OIDC_AUDIENCE       = local.function_urls.sync_api
        OIDC_ALLOWED_EMAILS = join(",", local.invoker_emails.sync_api)
      } : k => v if length(local.invoker_emails.sync_api) > 0
    }
  }

  # With IAM auth the database user is the function's own service account, without
  # the ".gserviceaccount.com" suffix (Cloud SQL's rule for PostgreSQL IAM users).
  db_users = {
    for name, sa in google_service_account.function :
    name => var.db_iam_auth ? trimsuffix(sa.email, ".gserviceaccount.com") : var.db_user
  }
  # The read-only HubSpot token goes wherever the write token goes: the client sends
  # every read with it (shared/hubspot/client.py), and a function without it would
  # read with the write token.
  function_secrets = {
    for name, f in local.functions :
    name => concat(
      f.secrets,
      var.db_iam_auth ? [] : ["DB_PASSWORD"],
      var.hubspot_read_token && contains(f.secrets, "HUBSPOT_ACCESS_TOKEN") ? ["HUBSPOT_READ_ACCESS_TOKEN"] : [],
    )
  }

  # The Cloud SQL instance may live in another project (WARP's): its IAM roles and
  # database users are granted there, where Cloud SQL checks them.
  db_project = split(":", var.db_instance_connection_name)[0]

  connection_budget = var.db_max_connections - var.db_reserved_connections
  connections_used  = sum([for name, _ in local.functions : lookup(var.max_instances, name, 0) * var.db_pool_size])
}

# Refuses a plan whose functions could open more connections than the budget.
resource "terraform_data" "db_connection_budget" {
  input = local.connections_used

  lifecycle {
    precondition {
      condition     = alltrue([for name, _ in local.functions : contains(keys(var.max_instances), name)])
      error_message = "max_instances needs an entry for every function."
    }
    precondition {
      condition     = local.connections_used <= local.connection_budget
      error_message = "Σ max_instances × db_pool_size exceeds db_max_connections - db_reserved_connections."
    }
  }
}

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = each.value.service # <= 30 characters, unlike prefix + entry point
  display_name = "HubSpot sync: ${each.key}"

  depends_on = [google_project_service.this] # the IAM API
}

resource "google_project_iam_member" "cloudsql_client" {
  for_each = google_service_account.function

  project = local.db_project
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${each.value.email}"
}

resource "google_project_iam_member" "cloudsql_instance_user" {
  for_each = { for name, sa in google_service_account.function : name => sa if var.db_iam_auth }

  project = local.db_project
  role    = "roles/cloudsql.instanceUser"
  member  = "serviceAccount:${each.value.email}"
}

resource "google_sql_user" "function" {
  for_each = { for name, sa in google_service_account.function : name => sa if var.db_iam_auth && var.db_create_iam_users }

  project  = local.db_project
  instance = split(":", var.db_instance_connection_name)[2]
  name     = local.db_users[each.key]
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# Source: one bucket, one object per function named by the content hash that
# `hubspot-sync package` wrote, so a function is rebuilt exactly when its bytes change.
resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62: access logs of a build-artifact bucket add nothing; Cloud Audit Logs record writes
  # checkov:skip=CKV_GCP_78: objects are immutable and content-addressed; versioning would only duplicate them
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  depends_on = [google_project_service.this]

  lifecycle_rule {
    condition {
      age = 180
    }
    action {
      type = "Delete"
    }
  }
}

data "archive_file" "function" {
  for_each = local.functions

  type        = "zip"
  source_dir  = "${local.package_dir}/${each.key}"
  output_path = "${local.package_dir}/${each.key}.zip" # beside the folder, inside the ignored .build/
}

resource "google_storage_bucket_object" "function" {
  for_each = local.functions

  bucket = google_storage_bucket.source.name
  name   = "${each.key}/${local.package_hashes[each.key]}.zip"
  source = data.archive_file.function[each.key].output_path
}

resource "google_cloudfunctions2_function" "function" {
  # checkov:skip=CKV_GCP_124: ALLOW_ALL on purpose: HubSpot calls the webhook from the internet, and whether internal-only ingress admits Pub/Sub push, Cloud Tasks and Scheduler is unconfirmed; run.invoker IAM (and OIDC checks in code) restrict every internal function
  for_each = local.functions

  name        = each.value.service
  location    = var.region
  description = each.value.description

  build_config {
    runtime         = "python311"
    entry_point     = each.key
    service_account = google_service_account.builder.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function[each.key].name
        # From the object itself: left unset, the provider keeps the generation of the
        # previous object in state, and a new package would build from a generation
        # the new object does not have.
        generation = google_storage_bucket_object.function[each.key].generation
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    timeout_seconds                  = each.value.timeout
    min_instance_count               = each.value.min
    max_instance_count               = var.max_instances[each.key]
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_ALL" # Pub/Sub push, Cloud Tasks and Scheduler arrive from Google's network; IAM guards them
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    vpc_connector                    = var.vpc_connector
    vpc_connector_egress_settings    = var.vpc_connector == null ? null : "PRIVATE_RANGES_ONLY"

    environment_variables = merge(
      local.common_env,
      local.function_env[each.key],
      { DB_USER = local.db_users[each.key] },
    )

    dynamic "secret_environment_variables" {
      for_each = toset(local.function_secrets[each.key])
      content {
        key        = secret_environment_variables.value
        project_id = data.google_project.this.number
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = lookup(var.secret_versions, secret_environment_variables.value, "latest")
      }
    }
  }

  lifecycle {
    # An empty allow-list with OIDC on would admit any Google identity.
    precondition {
      condition     = !contains(keys(local.function_env[each.key]), "OIDC_AUDIENCE") || length(lookup(local.invoker_emails, each.key, [])) > 0
      error_message = "${each.key}: OIDC_AUDIENCE is set but OIDC_ALLOWED_EMAILS would be empty."
    }
  }

  depends_on = [
    google_project_service.this,
    google_secret_manager_secret_iam_member.accessor,
    terraform_data.db_connection_budget,
    time_sleep.builder_roles,
  ]
}

# Invokers. roles/run.invoker is granted on the function's Cloud Run service:
# google_cloudfunctions2_function_iam_member does not support that role.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = {
    for pair in flatten([
      for name, members in local.invoker_members : [for key, m in members : { name = name, key = key, member = m }]
    ]) : "${pair.name} ${pair.key}" => pair
  }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.value.name].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
}

# The service accounts whose OIDC tokens call the internal functions.
resource "google_service_account" "pubsub_push" {
  account_id   = "${var.name_prefix}-push"
  display_name = "HubSpot sync: Pub/Sub push to outbound_sync"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "tasks" {
  account_id   = "${var.name_prefix}-tasks"
  display_name = "HubSpot sync: Cloud Tasks to retry_worker"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "HubSpot sync: Cloud Scheduler to reconciler"

  depends_on = [google_project_service.this]
}

# Cloud Build runs as this account. Left to the default, projects created since 2024
# build as the Compute Engine default account, which secure-by-default organisations
# (iam.automaticIamGrantsForDefaultServiceAccounts) leave without any role, so the
# build fails. The roles are those the provider's cloudfunctions2 "basic builder"
# example grants: write build logs, push the image to Artifact Registry, read the
# uploaded source.
resource "google_service_account" "builder" {
  account_id   = "${var.name_prefix}-build"
  display_name = "HubSpot sync: Cloud Build of the functions"

  depends_on = [google_project_service.this]
}

resource "google_project_iam_member" "builder" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/storage.objectViewer",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.builder.email}"
}

# IAM grants take effect after a delay (up to minutes); a build started at once can
# still be refused. The provider's example waits 60 s the same way.
resource "time_sleep" "builder_roles" {
  create_duration = "60s"

  depends_on = [google_project_iam_member.builder]
}

# Every function creates tasks (webhook: deferred batches; outbound: retries; retry
# worker: next attempt or continuation; reconciler: continuation; API: replay). Each
# may enqueue on this queue only, and act as the tasks SA: creating a task with an
# OIDC token requires iam.serviceAccounts.actAs on that account.
resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = google_service_account.function

  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.retry.name
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${each.value.email}"
}

resource "google_service_account_iam_member" "tasks_actas" {
  for_each = google_service_account.function

  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${each.value.email}"
}
