# The outbound sweep (issue 16): every minute, Cloud Scheduler asks retry_worker to run
# one sweep: changes recorded by the capture trigger in WARP's database, rows WARP's
# application queued in hubspot_sync_queue (QueueCustomerSync), and every customer
# still marked dirty, pushed through the coalesced flush (shared/outbound/sweep.py).
#
# The job calls retry_worker as a task would: the body is a task body, and the OIDC
# token is minted for the tasks service account, which retry_worker already accepts
# (Cloud Run invoker and OIDC_ALLOWED_EMAILS in functions.tf). Whoever applies this
# needs iam.serviceAccounts.actAs on that account, as for the tasks themselves.
#
# A sweep stops flushing after 50 s, so runs do not overlap at a one-minute period
# (and if they did, every step takes its rows with SKIP LOCKED or a lease). No retries:
# the next run a minute later does the same work.
#
# The trigger itself is installed by `hubspot-sync db capture enable` (docs/deploy.md,
# step 4), run against the database after `db upgrade` and after every mapping change.
locals {
  outbound_sweep_body = { kind = "outbound_sweep", payload = {} }
}

resource "google_cloud_scheduler_job" "outbound_sweep" {
  name             = "${var.name_prefix}-outbound-sweep"
  description      = "Push captured WARP changes, WARP's queued syncs and dirty customers to HubSpot"
  region           = var.region
  schedule         = "* * * * *"
  time_zone        = "Etc/UTC"
  attempt_deadline = "120s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = local.function_urls.retry_worker
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode(local.outbound_sweep_body))

    oidc_token {
      service_account_email = google_service_account.tasks.email
      audience              = local.function_urls.retry_worker
    }
  }

  depends_on = [google_project_service.this]
}
