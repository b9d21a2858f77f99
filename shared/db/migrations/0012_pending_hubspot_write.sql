-- Write-ahead record of a HubSpot write: set (and committed) just before the call,
-- cleared when the sync's own transaction records the field state. If the call
-- succeeds but that transaction never commits, the next sync still knows HubSpot's
-- value is ours and not an edit made in HubSpot (docs/reliability.md, finding 2).
ALTER TABLE accounts.hubspot_field_state ADD COLUMN IF NOT EXISTS hubspot_pending_value JSONB;
ALTER TABLE accounts.hubspot_field_state ADD COLUMN IF NOT EXISTS hubspot_pending_at TIMESTAMPTZ;
