-- Change capture inside WARP's database (issue 16). These tables always exist; the
-- trigger that fills them is installed only by `hubspot-sync db capture enable`, which
-- writes the watched columns and JSON paths into its function (shared/capture).

-- One row per committed change of a watched column or key, written by the trigger in
-- WARP's own transaction (a rollback leaves nothing). No foreign key: a DELETE must be
-- recorded after its customer is gone. changed_fields holds columns and dotted paths,
-- the form WARP's change messages use; NULL means every field (an INSERT).
CREATE TABLE IF NOT EXISTS accounts.hubspot_captured_changes (
    id              BIGSERIAL PRIMARY KEY,
    customer_id     UUID NOT NULL,
    operation       VARCHAR(10) NOT NULL,
    changed_fields  TEXT[],
    -- A DELETE's company, read from the row on its way out: the row is gone afterwards.
    hubspot_company_id  VARCHAR(100),
    changed_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- What the trigger could not record (it never fails WARP's statement): the sweep reads
-- these, pushes each customer whole and logs the error; `db capture status` shows them.
CREATE TABLE IF NOT EXISTS accounts.hubspot_capture_errors (
    id           BIGSERIAL PRIMARY KEY,
    customer_id  UUID,
    operation    VARCHAR(10),
    sqlstate     VARCHAR(5),
    error        TEXT,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    handled_at   TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_hubspot_capture_errors_unhandled
    ON accounts.hubspot_capture_errors (id) WHERE handled_at IS NULL;

-- The installed capture: what it watches (so status can tell a stale trigger from the
-- mapping in force) and when it was enabled. One row at most.
CREATE TABLE IF NOT EXISTS accounts.hubspot_capture_state (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    watched     JSONB NOT NULL,
    enabled_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- WARP's newest change time of a dirty customer (a message's occurred_at or a captured
-- change's time): the flush's WARP time for fields that have none of their own.
ALTER TABLE accounts.hubspot_outbound_dirty ADD COLUMN IF NOT EXISTS warp_changed_at TIMESTAMPTZ;
