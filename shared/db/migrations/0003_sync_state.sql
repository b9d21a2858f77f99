-- What the sync keeps beside WARP's six tables. Additive only: new tables, new
-- nullable or defaulted columns on WARP's tables, new indexes; every statement can
-- run again and on a database where WARP's schema files ran first.

-- Idempotency records (the AWS Lambda Powertools model): one row per key, claimed
-- IN_PROGRESS by the invocation doing the work, COMPLETED with its response.
-- in_progress_expires_at bounds a claim, so a crashed invocation's claim runs out
-- and a retry can take the key over; expires_at bounds the whole record.
CREATE TABLE IF NOT EXISTS accounts.hubspot_idempotency (
    key                     TEXT PRIMARY KEY,
    status                  TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'COMPLETED')),
    expires_at              TIMESTAMPTZ NOT NULL,
    in_progress_expires_at  TIMESTAMPTZ,
    payload_hash            TEXT,
    response                JSONB,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_hubspot_idempotency_expires
    ON accounts.hubspot_idempotency (expires_at);

-- Webhook events: WARP's event_id (VARCHAR(100) UNIQUE) stores our composite key
-- "subscriptionId:eventId:occurredAt", because HubSpot's eventId alone is not unique.
-- The parts are kept as columns too, for queries and for the echo filter.
ALTER TABLE accounts.hubspot_webhook_events
    ADD COLUMN IF NOT EXISTS hubspot_event_id BIGINT,
    ADD COLUMN IF NOT EXISTS subscription_id BIGINT,
    ADD COLUMN IF NOT EXISTS portal_id BIGINT,
    ADD COLUMN IF NOT EXISTS attempt_number INTEGER,
    ADD COLUMN IF NOT EXISTS change_source VARCHAR(100),
    ADD COLUMN IF NOT EXISTS source_id VARCHAR(100),
    ADD COLUMN IF NOT EXISTS processing_attempts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS idx_webhook_events_unprocessed
    ON accounts.hubspot_webhook_events (occurred_at) WHERE processed IS NOT TRUE;

-- Reconciliation runs: a run started twice with one key is one run; a run longer
-- than one invocation resumes from its checkpoint; a run whose heartbeat stopped
-- is known to have died.
ALTER TABLE accounts.hubspot_reconciliation_runs
    ADD COLUMN IF NOT EXISTS idempotency_key TEXT,
    ADD COLUMN IF NOT EXISTS checkpoint JSONB,
    ADD COLUMN IF NOT EXISTS heartbeat_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS report JSONB,
    ADD COLUMN IF NOT EXISTS dry_run BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX IF NOT EXISTS idx_reconciliation_runs_idempotency_key
    ON accounts.hubspot_reconciliation_runs (idempotency_key);

-- Sync queue: what kind of work a row is (outbound, inbound_batch, reconcile, ...;
-- NULL on rows WARP itself wrote), the Cloud Task carrying it, and a lease so a row
-- whose worker died in PROCESSING can be claimed again.
ALTER TABLE accounts.hubspot_sync_queue
    ADD COLUMN IF NOT EXISTS kind TEXT,
    ADD COLUMN IF NOT EXISTS task_name TEXT,
    ADD COLUMN IF NOT EXISTS locked_until TIMESTAMPTZ;
-- A deferred inbound batch or a reconcile continuation belongs to no one customer,
-- so entity_id may be NULL for those kinds, and only for them: rows without a kind
-- (WARP's) still need their customer. The foreign key is unchanged.
ALTER TABLE accounts.hubspot_sync_queue ALTER COLUMN entity_id DROP NOT NULL;
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'hubspot_sync_queue_entity_required'
          AND conrelid = 'accounts.hubspot_sync_queue'::regclass
    ) THEN
        ALTER TABLE accounts.hubspot_sync_queue
            ADD CONSTRAINT hubspot_sync_queue_entity_required
            -- COALESCE: with kind NULL the IN is NULL, which a CHECK would let pass.
            CHECK (entity_id IS NOT NULL
                   OR COALESCE(kind IN ('inbound_batch', 'reconcile'), FALSE));
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS idx_sync_queue_kind_status
    ON accounts.hubspot_sync_queue (kind, status);

-- Outbound coalescing: customers changed in WARP and not pushed yet. A burst of
-- change messages for one customer becomes one row, flushed as one batch write.
CREATE TABLE IF NOT EXISTS accounts.hubspot_outbound_dirty (
    customer_id      UUID PRIMARY KEY REFERENCES accounts.customers (id) ON DELETE CASCADE,
    first_marked_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_marked_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    changed_fields   JSONB NOT NULL DEFAULT '[]',
    message_ids      JSONB NOT NULL DEFAULT '[]',
    message_count    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_hubspot_outbound_dirty_first_marked
    ON accounts.hubspot_outbound_dirty (first_marked_at);

-- Inbound events and the reconciler find a customer by its HubSpot ids.
CREATE INDEX IF NOT EXISTS idx_customers_hubspot_company_id
    ON accounts.customers ((external_ids ->> 'hubspot_company_id'));
CREATE INDEX IF NOT EXISTS idx_customers_hubspot_contact_id
    ON accounts.customers ((external_ids ->> 'hubspot_contact_id'));
