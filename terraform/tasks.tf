# The one Cloud Tasks queue: deferred webhook batches, retries of failed syncs and
# reconcile continuations, all dispatched to retry_worker with an OIDC token.
#
# Two retry layers, on purpose:
# - the application schedules each *planned* retry of a hubspot_sync_queue row itself,
#   as a new task (RETRY_BASE/CAP_SECONDS, full jitter), for RETRY_WINDOW_SECONDS (24 h,
#   as long as HubSpot retries webhooks); after that the row stays FAILED, visible and
#   replayable. A retry_config cannot cover a day: its backoff is per task, its attempts
#   few;
# - this retry_config covers a task that answered 5xx: a flush or a webhook batch that
#   failed as a whole (RETRY_MAX_ATTEMPTS deliveries, after which its work becomes
#   queue rows), or an attempt that crashed or timed out before it could record anything.
#
# Rates: HubSpot allows 100 requests per 10 s per app and we budget 90 (9/s) for all
# instances together, shared with webhooks and outbound sync. A task makes one or a few
# batch calls, so tasks get about half of that rate. Concurrency never exceeds the
# worker's instances: a dispatch with no free instance would only be refused with 429.
resource "google_cloud_tasks_queue" "retry" {
  name     = "${var.name_prefix}-retry"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.tasks_max_dispatches_per_second
    max_concurrent_dispatches = var.max_instances["retry_worker"]
  }

  retry_config {
    max_attempts       = var.retry_max_attempts
    max_retry_duration = "3600s"
    min_backoff        = "10s"
    max_backoff        = "600s"
    max_doublings      = 4
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0 # every dispatch logged: volume is low and failures must be traceable
  }

  depends_on = [google_project_service.this]
}
