-- The pause switch (POST /v1/sync/pause, hubspot-sync pause): one row at most. While
-- it exists nothing is written to WARP or HubSpot; webhooks and change messages are
-- still stored and deduplicated, and resume drains them (shared/pause.py).
CREATE TABLE IF NOT EXISTS accounts.hubspot_sync_pause (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    paused_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    paused_by  TEXT,
    reason     TEXT
);


-- Tasks that arrived while paused: not run, kept here, submitted again by the resume.
-- (Work stored elsewhere, webhook events, dirty customers, queue rows, is drained from
-- there; this keeps what only a task carries, such as a reconcile run's continuation.)
CREATE TABLE IF NOT EXISTS accounts.hubspot_sync_held_tasks (
    id       BIGSERIAL PRIMARY KEY,
    kind     TEXT NOT NULL,
    payload  JSONB NOT NULL,
    held_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
