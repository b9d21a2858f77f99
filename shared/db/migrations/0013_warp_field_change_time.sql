-- WARP's own modification time per field: the newest occurred_at of a change message
-- naming the field, recorded by outbound_sync when the message arrives. LATEST_WINS
-- compares it with HubSpot's property time instead of the row's updated_at, which the
-- sync's own writes to WARP move too (docs/reliability.md, finding 3).
ALTER TABLE accounts.hubspot_field_state ADD COLUMN IF NOT EXISTS warp_changed_at TIMESTAMPTZ;
