# WARP's change messages -> outbound_sync, through an explicit push subscription.
#
# Not an event_trigger: the subscription a function trigger creates cannot have a
# dead-letter topic, and the push envelope keeps deliveryAttempt and messageId.
#
# No Pub/Sub schema on the topic: Pub/Sub validates AVRO or PROTOCOL_BUFFER only. An
# Avro schema with JSON encoding would reject what WARP publishes today (Avro's JSON
# wraps non-null union values, e.g. {"string": "alice"} for triggered_by_user, and
# forbids extra fields, while the consumer deliberately ignores unknown ones). The
# contract is schemas/customer-change.schema.json instead; outbound_sync validates each
# message with pydantic, and one it cannot parse is answered 2xx after it is recorded
# (retrying cannot fix it), so it is never redelivered in a loop.

locals {
  change_topic_id       = var.create_change_topic ? google_pubsub_topic.changes[0].id : "projects/${var.project_id}/topics/${var.change_topic_name}"
  pubsub_service_agent  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  outbound_subscription = "${var.name_prefix}-outbound"
}

resource "google_pubsub_topic" "changes" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; messages carry ids and field names, no field values
  count = var.create_change_topic ? 1 : 0

  name                       = var.change_topic_name
  message_retention_duration = "604800s" # 7 days: replay by seek after an outage
  labels                     = { app = "hubspot-sync" }

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.create_change_topic ? toset(var.change_publishers) : toset([])

  topic  = google_pubsub_topic.changes[0].id
  role   = "roles/pubsub.publisher"
  member = each.value
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; see the source topic
  name                       = "${var.name_prefix}-outbound-dead-letter"
  message_retention_duration = "604800s"
  labels                     = { app = "hubspot-sync" }

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "outbound" {
  name  = local.outbound_subscription
  topic = local.change_topic_id

  # For push this is the request timeout; equal to outbound_sync's timeout so a slow
  # attempt is never redelivered while it still runs.
  ack_deadline_seconds       = local.functions.outbound_sync.timeout
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expire, however quiet WARP is
  }

  push_config {
    push_endpoint = local.function_urls.outbound_sync

    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = local.function_urls.outbound_sync
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.outbound_max_delivery_attempts
  }

  labels = { app = "hubspot-sync" }

  # Pushing starts as soon as the subscription exists; with WARP's existing topic,
  # messages would otherwise arrive before outbound_sync exists or lets the push
  # account in, and be retried towards the dead-letter topic.
  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_v2_service_iam_member.invoker,
  ]
}

# Dead letters are kept for a person: nothing consumes this subscription, the
# "dead letters" alert watches its backlog (docs/deploy.md has the runbook).
resource "google_pubsub_subscription" "dead_letter" {
  name                       = "${var.name_prefix}-outbound-dead-letter-hold"
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }

  labels = { app = "hubspot-sync" }
}

# The Pub/Sub service agent forwards undeliverable messages: it must publish to the
# dead-letter topic and subscribe (acknowledge) on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  subscription = google_pubsub_subscription.outbound.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Projects created before April 2021 need the service agent to mint the push SA's
# OIDC tokens; granting it on this one account is harmless elsewhere.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent

  depends_on = [google_project_service.this] # the Pub/Sub API creates the service agent
}
