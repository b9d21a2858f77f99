-- The pause switch (POST /v1/sync/pause, hubspot-sync pause): one row at most. While
-- it exists nothing is written to WARP or HubSpot; webhooks and change messages are
-- still stored and deduplicated, and resume drains them (shared/pause.py).
CREATE TABLE IF NOT EXISTS accounts.hubspot_sync_pause (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    paused_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    paused_by  TEXT,
    reason     TEXT
);

