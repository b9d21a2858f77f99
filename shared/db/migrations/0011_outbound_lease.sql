-- A flush leases the dirty rows it takes instead of deleting them, so a flush that
-- crashes mid-way loses nothing: its rows become takeable again when the lease ends.
ALTER TABLE accounts.hubspot_outbound_dirty ADD COLUMN IF NOT EXISTS leased_until TIMESTAMPTZ;
