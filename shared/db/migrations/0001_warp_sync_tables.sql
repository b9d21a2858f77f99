-- WARP's customers table and its six HubSpot sync tables, exactly as WARP publishes
-- them (DESIGN.md section 10), for a database where they are missing.
--
-- Where WARP's own schema files already ran, every statement here is a no-op:
-- tables and columns use IF NOT EXISTS, and the indexes carry WARP's own names
-- with IF NOT EXISTS, so no duplicate index is built beside WARP's. Nothing is
-- dropped, renamed or retyped. UUIDs come from the core gen_random_uuid(): the
-- embedded PostgreSQL has no contrib extensions such as uuid-ossp.

CREATE SCHEMA IF NOT EXISTS accounts;

-- A development copy of WARP's customers table (production has WARP's own).
CREATE TABLE IF NOT EXISTS accounts.customers (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    ban              VARCHAR(20) UNIQUE NOT NULL,
    company_name     VARCHAR(255) NOT NULL,
    legal_name       VARCHAR(255),
    status           VARCHAR(20) NOT NULL DEFAULT 'ACTIVE'
                     CHECK (status IN ('ACTIVE', 'SUSPENDED', 'TRIAL', 'CLOSED')),
    customer_type    VARCHAR(20) NOT NULL
                     CHECK (customer_type IN ('PREPAID', 'POSTPAID', 'RESELLER')),
    contact          JSONB NOT NULL DEFAULT '{}',
    address          JSONB NOT NULL DEFAULT '{}',
    credit_limit     DECIMAL(12, 2),
    current_balance  DECIMAL(12, 2) DEFAULT 0,
    prepaid_balance  DECIMAL(12, 2) DEFAULT 0,
    payment_terms    INTEGER DEFAULT 30,
    billing_cycle    VARCHAR(20) DEFAULT 'MONTHLY',
    currency         VARCHAR(3) DEFAULT 'USD',
    kyc_data         JSONB DEFAULT '{}',
    business_info    JSONB DEFAULT '{}',
    external_ids     JSONB DEFAULT '{}',
    custom_fields    JSONB DEFAULT '{}',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_by       VARCHAR(100),
    updated_by       VARCHAR(100)
);

-- Columns the sync reads or writes, added to an older WARP customers table that
-- predates them. Existing columns are left exactly as they are.
ALTER TABLE accounts.customers
    ADD COLUMN IF NOT EXISTS legal_name VARCHAR(255),
    ADD COLUMN IF NOT EXISTS contact JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS address JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS credit_limit DECIMAL(12, 2),
    ADD COLUMN IF NOT EXISTS external_ids JSONB DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS custom_fields JSONB DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    ADD COLUMN IF NOT EXISTS updated_by VARCHAR(100),
    ADD COLUMN IF NOT EXISTS last_synced_to_hubspot TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS last_synced_from_hubspot TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS hubspot_sync_enabled BOOLEAN DEFAULT TRUE;

CREATE INDEX IF NOT EXISTS idx_customers_last_synced_hubspot
    ON accounts.customers (last_synced_to_hubspot DESC NULLS LAST);

-- Every sync operation, one row each.
CREATE TABLE IF NOT EXISTS accounts.hubspot_sync_log (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    entity_type        VARCHAR(50) NOT NULL,
    entity_id          UUID NOT NULL,
    hubspot_object_id  VARCHAR(100),
    operation          VARCHAR(20) NOT NULL
                       CHECK (operation IN ('CREATE', 'UPDATE', 'DELETE', 'RECONCILE')),
    direction          VARCHAR(20) NOT NULL
                       CHECK (direction IN ('WARP_TO_HUBSPOT', 'HUBSPOT_TO_WARP', 'BIDIRECTIONAL')),
    fields_synced      JSONB NOT NULL DEFAULT '[]',
    field_changes      JSONB NOT NULL DEFAULT '{}',
    status             VARCHAR(20) NOT NULL DEFAULT 'PENDING'
                       CHECK (status IN ('PENDING', 'IN_PROGRESS', 'SUCCESS', 'FAILED', 'CONFLICT')),
    error_message      TEXT,
    retry_count        INTEGER DEFAULT 0,
    started_at         TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    completed_at       TIMESTAMPTZ,
    triggered_by       VARCHAR(100),
    triggered_by_user  VARCHAR(100),
    CONSTRAINT fk_hubspot_sync_customer FOREIGN KEY (entity_id)
        REFERENCES accounts.customers (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_sync_log_entity ON accounts.hubspot_sync_log (entity_type, entity_id);
CREATE INDEX IF NOT EXISTS idx_sync_log_status ON accounts.hubspot_sync_log (status);
CREATE INDEX IF NOT EXISTS idx_sync_log_started_at ON accounts.hubspot_sync_log (started_at DESC);
CREATE INDEX IF NOT EXISTS idx_sync_log_hubspot_id ON accounts.hubspot_sync_log (hubspot_object_id);

-- Per field: the last value that crossed, who wrote it, and conflict state.
CREATE TABLE IF NOT EXISTS accounts.hubspot_field_state (
    id                        UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    entity_type               VARCHAR(50) NOT NULL,
    entity_id                 UUID NOT NULL,
    hubspot_object_id         VARCHAR(100) NOT NULL,
    field_name                VARCHAR(100) NOT NULL,
    field_path                VARCHAR(255),
    warp_value                JSONB,
    hubspot_value             JSONB,
    last_synced_at            TIMESTAMPTZ,
    last_synced_direction     VARCHAR(20),
    last_modified_at_warp     TIMESTAMPTZ,
    last_modified_at_hubspot  TIMESTAMPTZ,
    sync_direction            VARCHAR(20) NOT NULL DEFAULT 'BIDIRECTIONAL'
                              CHECK (sync_direction IN
                                     ('WARP_TO_HUBSPOT', 'HUBSPOT_TO_WARP', 'BIDIRECTIONAL', 'NONE')),
    conflict_resolution       VARCHAR(20) NOT NULL DEFAULT 'LATEST_WINS'
                              CHECK (conflict_resolution IN
                                     ('WARP_WINS', 'HUBSPOT_WINS', 'LATEST_WINS', 'MANUAL')),
    is_in_conflict            BOOLEAN DEFAULT FALSE,
    conflict_detected_at      TIMESTAMPTZ,
    conflict_resolved_at      TIMESTAMPTZ,
    created_at                TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (entity_type, entity_id, field_name),
    CONSTRAINT fk_field_state_customer FOREIGN KEY (entity_id)
        REFERENCES accounts.customers (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_field_state_entity
    ON accounts.hubspot_field_state (entity_type, entity_id);
CREATE INDEX IF NOT EXISTS idx_field_state_hubspot_id
    ON accounts.hubspot_field_state (hubspot_object_id);
CREATE INDEX IF NOT EXISTS idx_field_state_conflicts
    ON accounts.hubspot_field_state (is_in_conflict) WHERE is_in_conflict = TRUE;
CREATE INDEX IF NOT EXISTS idx_field_state_field_name
    ON accounts.hubspot_field_state (field_name);

-- Work waiting to run again; FAILED rows stay visible and replayable.
CREATE TABLE IF NOT EXISTS accounts.hubspot_sync_queue (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    entity_type        VARCHAR(50) NOT NULL,
    entity_id          UUID NOT NULL,
    hubspot_object_id  VARCHAR(100),
    operation          VARCHAR(20) NOT NULL,
    direction          VARCHAR(20) NOT NULL,
    payload            JSONB NOT NULL,
    priority           INTEGER DEFAULT 5,
    scheduled_for      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    max_retries        INTEGER DEFAULT 3,
    retry_count        INTEGER DEFAULT 0,
    status             VARCHAR(20) NOT NULL DEFAULT 'QUEUED'
                       CHECK (status IN ('QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    last_error         TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    processed_at       TIMESTAMPTZ,
    CONSTRAINT fk_sync_queue_customer FOREIGN KEY (entity_id)
        REFERENCES accounts.customers (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_sync_queue_status
    ON accounts.hubspot_sync_queue (status, priority, scheduled_for);
CREATE INDEX IF NOT EXISTS idx_sync_queue_entity ON accounts.hubspot_sync_queue (entity_type, entity_id);

-- Field mappings in WARP's JSON format: global rows and per-customer overrides.
CREATE TABLE IF NOT EXISTS accounts.hubspot_sync_config (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id             UUID REFERENCES accounts.customers (id) ON DELETE CASCADE,
    is_global               BOOLEAN DEFAULT FALSE,
    config_name             VARCHAR(100) NOT NULL,
    field_mappings          JSONB NOT NULL,
    auto_sync_enabled       BOOLEAN DEFAULT TRUE,
    sync_frequency_minutes  INTEGER DEFAULT 60,
    batch_size              INTEGER DEFAULT 50,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_by              VARCHAR(100)
);
CREATE INDEX IF NOT EXISTS idx_sync_config_customer ON accounts.hubspot_sync_config (customer_id);
CREATE INDEX IF NOT EXISTS idx_sync_config_global
    ON accounts.hubspot_sync_config (is_global) WHERE is_global = TRUE;
CREATE UNIQUE INDEX IF NOT EXISTS idx_sync_config_unique_global
    ON accounts.hubspot_sync_config (config_name) WHERE is_global = TRUE;

-- HubSpot webhook events as received; event_id is the idempotency key.
CREATE TABLE IF NOT EXISTS accounts.hubspot_webhook_events (
    id                UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id          VARCHAR(100) UNIQUE,
    event_type        VARCHAR(100) NOT NULL,
    object_type       VARCHAR(50) NOT NULL,
    object_id         VARCHAR(100) NOT NULL,
    property_name     VARCHAR(100),
    property_value    JSONB,
    previous_value    JSONB,
    raw_payload       JSONB NOT NULL,
    processed         BOOLEAN DEFAULT FALSE,
    processed_at      TIMESTAMPTZ,
    processing_error  TEXT,
    occurred_at       TIMESTAMPTZ NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    signature_valid   BOOLEAN DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS idx_webhook_events_processed
    ON accounts.hubspot_webhook_events (processed, received_at);
CREATE INDEX IF NOT EXISTS idx_webhook_events_object
    ON accounts.hubspot_webhook_events (object_type, object_id);
CREATE INDEX IF NOT EXISTS idx_webhook_events_event_type
    ON accounts.hubspot_webhook_events (event_type);
CREATE UNIQUE INDEX IF NOT EXISTS idx_webhook_events_event_id
    ON accounts.hubspot_webhook_events (event_id);

-- One row per reconciliation run with its counts.
CREATE TABLE IF NOT EXISTS accounts.hubspot_reconciliation_runs (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    run_type            VARCHAR(50) NOT NULL,
    entity_type         VARCHAR(50) NOT NULL,
    customer_id         UUID REFERENCES accounts.customers (id),
    total_records       INTEGER DEFAULT 0,
    records_in_sync     INTEGER DEFAULT 0,
    records_updated     INTEGER DEFAULT 0,
    conflicts_detected  INTEGER DEFAULT 0,
    errors_encountered  INTEGER DEFAULT 0,
    status              VARCHAR(20) NOT NULL DEFAULT 'RUNNING'
                        CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    started_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    completed_at        TIMESTAMPTZ,
    duration_seconds    INTEGER,
    triggered_by        VARCHAR(100),
    notes               TEXT
);
CREATE INDEX IF NOT EXISTS idx_reconciliation_runs_status
    ON accounts.hubspot_reconciliation_runs (status, started_at DESC);
CREATE INDEX IF NOT EXISTS idx_reconciliation_runs_customer
    ON accounts.hubspot_reconciliation_runs (customer_id);
