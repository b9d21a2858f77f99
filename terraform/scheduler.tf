# Nightly reconciliation: Cloud Scheduler calls the reconciler with an OIDC token.
#
# attempt_deadline is 30 minutes, the maximum for HTTP targets. A run that needs longer
# checkpoints and continues in a Cloud Task before then (the function's own timeout is
# 60 minutes only as a safety margin). Scheduler retries reuse the same
# X-CloudScheduler-ScheduleTime, which the reconciler uses as its run key, so a retry
# after a lost response resumes or skips instead of starting a second run.
locals {
  # The reconciler refuses unknown keys; tests/deploy/test_terraform.py parses this body with
  # the reconciler's own RunRequest. "Scheduler" as the trigger comes from the
  # X-CloudScheduler-ScheduleTime header, not from the body.
  nightly_reconcile_body = { run_type = "FULL", entity_type = "customer" }
}

resource "google_cloud_scheduler_job" "reconcile" {
  name             = "${var.name_prefix}-nightly-reconcile"
  description      = "Compare every linked customer with HubSpot and repair drift"
  region           = var.region
  schedule         = var.reconcile_schedule
  time_zone        = "Etc/UTC" # no daylight-saving jumps: exactly one run per night
  attempt_deadline = "1800s"

  retry_config {
    retry_count          = 3
    max_retry_duration   = "7200s"
    min_backoff_duration = "300s"
    max_backoff_duration = "1800s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = local.function_urls.reconciler
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode(local.nightly_reconcile_body))

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.function_urls.reconciler
    }
  }

  # Its first run must find the reconciler deployed and the scheduler account allowed in.
  depends_on = [
    google_project_service.this,
    google_cloud_run_v2_service_iam_member.invoker,
  ]
}
