output "webhook_url" {
  description = "Target URL to paste into the HubSpot app's webhook settings (any path is accepted)."
  value       = "${local.webhook_base_url}/v1/webhooks/hubspot"
}

output "api_url" {
  description = "Base URL of the management API (routes under /v1/sync, metrics at /metrics)."
  value       = local.function_urls.sync_api
}

output "function_urls" {
  description = "The run.app URL of every function as Cloud Run reports it."
  value       = { for name, f in google_cloudfunctions2_function.function : name => f.service_config[0].uri }
}

output "service_accounts" {
  description = "Each function's runtime service account (with IAM DB auth: its database user is the email without .gserviceaccount.com)."
  value       = { for name, sa in google_service_account.function : name => sa.email }
}

output "secret_ids" {
  description = "Secret Manager secrets to add versions to before the first deploy."
  value       = { for env, s in google_secret_manager_secret.secret : env => s.secret_id }
}

output "dead_letter_subscription" {
  description = "Where dead-lettered change messages wait for inspection."
  value       = google_pubsub_subscription.dead_letter.name
}
