# Metrics from logs, alerts and a dashboard.
#
# The functions write one JSON line per sync operation (shared/observability/operation.py);
# Cloud Logging parses it into jsonPayload, and these log-based metrics extract from it:
#   event="sync_operation": entity_type, direction, outcome, duration_seconds, error_type
#   event="sync_conflict":  entity_type, field, resolution, kind (one line per conflict)
# The duration and conflict metrics carry the names and labels of the seed's Prometheus
# metrics that /metrics serves (hubspot_sync_duration_seconds{entity_type, direction,
# status}, hubspot_sync_conflicts_total{entity_type, field_name, resolution, kind}) with
# the default name_prefix, so one dashboard vocabulary serves both.
#   event="gauge":          metric ("hubspot_sync_queue_depth" | "hubspot_budget_used"), reading
# Gen2 function logs carry resource.type="cloud_run_revision" and the service name.

locals {
  metric_prefix = replace(var.name_prefix, "-", "_")
  log_filter    = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${var.name_prefix}-\""
  service_regex = "monitoring.regex.full_match(\"${var.name_prefix}-.*\")"
  # Read through the wait below, so everything that names a log-based metric waits
  # until Monitoring knows it.
  metric_type = time_sleep.log_metrics_visible.triggers
  runbook     = "Runbook: docs/deploy.md, section \"Alerts\"."

  log_metrics = {
    duration = {
      name        = "${local.metric_prefix}_duration_seconds"
      description = "Duration of sync operations, by entity type, direction and status (the outcome)"
      filter      = "jsonPayload.event=\"sync_operation\""
      value       = "EXTRACT(jsonPayload.duration_seconds)"
      unit        = "s"
      labels      = { entity_type = "entity_type", direction = "direction", status = "outcome" }
      buckets     = { count = 16, growth = 2, scale = 0.01 } # finite buckets 10 ms .. 655 s (0.01 × 2^16, ~11 min)
    }
    operations = {
      name        = "${local.metric_prefix}_operations_total"
      description = "Sync operations, by entity type, direction and outcome"
      filter      = "jsonPayload.event=\"sync_operation\""
      value       = null
      unit        = "1"
      labels      = { entity_type = "entity_type", direction = "direction", outcome = "outcome" }
      buckets     = null
    }
    conflicts = {
      name        = "${local.metric_prefix}_conflicts_total"
      description = "Field conflicts, by field, the rule that resolved it (MANUAL: waiting) and kind (edited or first_sync)"
      filter      = "jsonPayload.event=\"sync_conflict\""
      value       = null
      unit        = "1"
      labels      = { entity_type = "entity_type", field_name = "field", resolution = "resolution", kind = "kind" }
      buckets     = null
    }
    failures = {
      name        = "${local.metric_prefix}_failures_total"
      description = "Failed sync operations, by entity type, direction and error type"
      filter      = "jsonPayload.event=\"sync_operation\" AND jsonPayload.outcome=\"failed\""
      value       = null
      unit        = "1"
      labels      = { entity_type = "entity_type", direction = "direction", error_type = "error_type", retryable = "retryable" }
      buckets     = null
    }
    queue_depth = {
      name        = "${local.metric_prefix}_queue_depth"
      description = "Pending plus failed work items in hubspot_sync_queue, as last reported"
      filter      = "jsonPayload.event=\"gauge\" AND jsonPayload.metric=\"hubspot_sync_queue_depth\""
      value       = "EXTRACT(jsonPayload.reading)"
      unit        = "1"
      labels      = {}
      buckets     = { count = 20, growth = 2, scale = 1 } # finite buckets 1 .. 2^20 (~1M) items
    }
    budget_used = {
      name        = "${local.metric_prefix}_budget_used"
      description = "HubSpot requests used in the rolling 24 h budget, as last reported"
      filter      = "jsonPayload.event=\"gauge\" AND jsonPayload.metric=\"hubspot_budget_used\""
      value       = "EXTRACT(jsonPayload.reading)"
      unit        = "1"
      labels      = {}
      buckets     = { count = 20, growth = 2, scale = 1 }
    }
  }
}

resource "google_logging_metric" "sync" {
  for_each = local.log_metrics

  name        = each.value.name
  description = each.value.description
  filter      = "${local.log_filter} AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = each.value.value == null ? "INT64" : "DISTRIBUTION"
    unit        = each.value.unit

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  value_extractor  = each.value.value
  label_extractors = { for label, field in each.value.labels : label => "EXTRACT(jsonPayload.${field})" }

  dynamic "bucket_options" {
    for_each = each.value.buckets == null ? [] : [each.value.buckets]
    content {
      exponential_buckets {
        num_finite_buckets = bucket_options.value.count
        growth_factor      = bucket_options.value.growth
        scale              = bucket_options.value.scale
      }
    }
  }

  depends_on = [google_project_service.this]
}

# A new log-based metric is not visible to Monitoring at once: an alert policy created
# right after it fails with 404 "Cannot find metric(s) ... it could take up to 10
# minutes to become available" (provider issue #11102, open on 7.28; the provider does
# not retry). Wait those 10 minutes after a metric is created or renamed (the
# triggers); the function builds run meanwhile, so a first apply takes little longer.
resource "time_sleep" "log_metrics_visible" {
  create_duration = "600s"
  triggers        = { for k, m in google_logging_metric.sync : k => "logging.googleapis.com/user/${m.name}" }
}

resource "google_monitoring_alert_policy" "queue_backlog" {
  display_name          = "${var.name_prefix}: work queue backlog above ${var.queue_backlog_threshold}"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "hubspot_sync_queue_depth > ${var.queue_backlog_threshold} for 15 min"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type.queue_depth}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.queue_backlog_threshold
      duration        = "900s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  documentation {
    content   = "Work is piling up in hubspot_sync_queue faster than retry_worker drains it (HubSpot budget exhausted, HubSpot down, or a bug failing every item). ${local.runbook}"
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "sync_failures" {
  display_name          = "${var.name_prefix}: sync failures"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "more than ${var.failure_alert_threshold} failed sync operations in 10 min"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type.failures}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.failure_alert_threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Sync operations are failing (group by error_type and retryable in the metric explorer). ${local.runbook}"
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "server_errors" {
  display_name          = "${var.name_prefix}: functions answering 5xx"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "more than 10 responses 5xx in 5 min"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND metric.labels.response_code_class=\"5xx\" AND resource.labels.service_name=${local.service_regex}"
      comparison      = "COMPARISON_GT"
      threshold_value = 10
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  documentation {
    content   = "A function crashes or times out (Pub/Sub and Cloud Tasks will retry; HubSpot retries webhooks for 24 h). ${local.runbook}"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "${var.name_prefix}: change messages dead-lettered"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "dead-letter subscription has undelivered messages"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "WARP change messages failed ${var.outbound_max_delivery_attempts} deliveries to outbound_sync and were dead-lettered. ${local.runbook}"
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "outbound_stalled" {
  display_name          = "${var.name_prefix}: outbound change messages waiting over 1 h"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "oldest unacked change message older than 1 h"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.outbound.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 3600
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "outbound_sync is not acknowledging WARP's change messages (push rejected, function failing, or IAM broken). ${local.runbook}"
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_dashboard" "sync" {
  dashboard_json = jsonencode({
    displayName = "HubSpot sync (${var.name_prefix})"
    mosaicLayout = {
      columns = 12
      tiles = [
        for i, w in [
          {
            title  = "Sync latency p50 / p95 (s) by direction"
            filter = "metric.type=\"${local.metric_type.duration}\""
            series = [
              { aligner = "ALIGN_PERCENTILE_50", reducer = "REDUCE_MEAN", group = ["metric.label.direction"] },
              { aligner = "ALIGN_PERCENTILE_95", reducer = "REDUCE_MAX", group = ["metric.label.direction"] },
            ]
          },
          {
            # A counter, not the duration distribution: ALIGN_COUNT is refused on
            # distribution values, and ALIGN_DELTA of one is a distribution again.
            title  = "Sync operations by outcome"
            filter = "metric.type=\"${local.metric_type.operations}\""
            series = [{ aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["metric.label.outcome"] }]
          },
          {
            # Edited on both sides: first syncs (a backfill's differences) are left out.
            title  = "Conflicts by field and resolution (edited on both sides)"
            filter = "metric.type=\"${local.metric_type.conflicts}\" AND metric.label.kind=\"edited\""
            series = [{ aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["metric.label.field_name", "metric.label.resolution"] }]
          },
          {
            title  = "Work queue backlog (items)"
            filter = "metric.type=\"${local.metric_type.queue_depth}\""
            series = [{ aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", group = [] }]
          },
          {
            title  = "HubSpot daily budget used (requests, budget ${var.hubspot_daily_budget})"
            filter = "metric.type=\"${local.metric_type.budget_used}\""
            series = [{ aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", group = [] }]
          },
          {
            title  = "Dead-lettered change messages"
            filter = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\""
            series = [{ aligner = "ALIGN_MAX", reducer = "REDUCE_MAX", group = [] }]
          },
          # Zero positions and empty groupByFields are left out: the API omits them
          # when it answers, and the provider would show a diff on every plan
          # (provider issue #16173).
          ] : merge({ for k, v in { xPos = (i % 2) * 6, yPos = floor(i / 2) * 4 } : k => v if v != 0 }, {
            width  = 6
            height = 4
            widget = {
              title = w.title
              xyChart = {
                dataSets = [
                  for s in w.series : {
                    plotType = "LINE"
                    timeSeriesQuery = {
                      timeSeriesFilter = {
                        filter = w.filter
                        aggregation = merge({
                          alignmentPeriod    = "300s"
                          perSeriesAligner   = s.aligner
                          crossSeriesReducer = s.reducer
                        }, { for k, v in { groupByFields = s.group } : k => v if length(v) > 0 })
                      }
                    }
                  }
                ]
              }
            }
        })
      ]
    }
  })
}
