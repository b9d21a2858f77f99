# Secret Manager: Terraform creates the containers and the access grants only. Values
# are added out of band (docs/deploy.md), so they never enter Terraform state.
locals {
  secret_ids = {
    HUBSPOT_ACCESS_TOKEN      = "${var.name_prefix}-hubspot-access-token"
    HUBSPOT_READ_ACCESS_TOKEN = "${var.name_prefix}-hubspot-read-access-token"
    HUBSPOT_CLIENT_SECRET     = "${var.name_prefix}-hubspot-client-secret"
    SYNC_API_TOKEN            = "${var.name_prefix}-api-token"
    ENCRYPTION_KEY            = "${var.name_prefix}-encryption-key"
    DB_PASSWORD               = "${var.name_prefix}-db-password"
  }
  # DB_PASSWORD exists only with password authentication, the read token only when asked
  # for (a secret without a version would fail every function's deploy).
  optional_secrets = {
    DB_PASSWORD               = !var.db_iam_auth
    HUBSPOT_READ_ACCESS_TOKEN = var.hubspot_read_token
  }
  secrets_in_use = {
    for env, id in local.secret_ids : env => id if lookup(local.optional_secrets, env, true)
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets_in_use

  secret_id = each.value
  labels    = { app = "hubspot-sync" }

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

# One grant per (function, secret it reads): a function sees only its own secrets.
resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = {
    for pair in flatten([
      for name, secrets in local.function_secrets : [for s in secrets : { name = name, secret = s }]
    ]) : "${pair.name} ${pair.secret}" => pair
  }

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.name].email}"
}
