-- Invalid webhook events are stored closed, with event_type 'invalid' and their reason
-- in processing_error (issue 15 item 4); /metrics counts them on every scrape.
CREATE INDEX IF NOT EXISTS idx_webhook_events_invalid
    ON accounts.hubspot_webhook_events (received_at) WHERE event_type = 'invalid';
