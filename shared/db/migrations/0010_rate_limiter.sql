-- The HubSpot rate limiter every process shares (shared/hubspot/ratelimit.py).
--
-- hubspot_rate_windows: one row per budget (the app's ten-second budget, the
-- search budget). `grants` holds the times of the grants still inside the
-- window, oldest first, never more than `max_requests`: a sliding-window log,
-- which is what HubSpot's TEN_SECONDLY_ROLLING policy counts.
--
-- hubspot_rate_daily: the daily budget as 96 quarter-hour counters (oldest
-- first, the last one is `slot`): a rolling 24 hours that holds whatever time
-- zone the HubSpot account resets in.
CREATE SCHEMA IF NOT EXISTS accounts;

CREATE TABLE IF NOT EXISTS accounts.hubspot_rate_windows (
    name          TEXT PRIMARY KEY,
    max_requests  INTEGER NOT NULL CHECK (max_requests > 0),
    window_ms     INTEGER NOT NULL CHECK (window_ms > 0),
    grants        TIMESTAMPTZ[] NOT NULL DEFAULT '{}',
    paused_until  TIMESTAMPTZ,
    pause_reason  TEXT,
    last_granted  BOOLEAN NOT NULL DEFAULT FALSE,
    granted_total BIGINT NOT NULL DEFAULT 0,
    refused_total BIGINT NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS accounts.hubspot_rate_daily (
    name          TEXT PRIMARY KEY,
    budget        BIGINT NOT NULL CHECK (budget > 0),
    slot          BIGINT NOT NULL DEFAULT 0,
    counts        INTEGER[] NOT NULL DEFAULT array_fill(0, ARRAY[96]),
    last_granted  BOOLEAN NOT NULL DEFAULT FALSE,
    paused_until  TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
