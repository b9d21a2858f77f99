-- Every flow that decides by time reads the captured changes of the customers it
-- decides on (shared/capture/pending.py), and the sweep takes them per customer: after
-- a bulk job leaves many rows behind, neither may scan the whole table.
CREATE INDEX IF NOT EXISTS idx_hubspot_captured_changes_customer
    ON accounts.hubspot_captured_changes (customer_id);
