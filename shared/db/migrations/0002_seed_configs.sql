-- The global mapping rows the sync reads (WARP's JSON format). Kept identical to
-- shared/mapping/config.py DEFAULT_CUSTOMER_SYNC / DEFAULT_CONTACT_SYNC; a test
-- compares the two. Field names are unique across both rows (the API resolves a
-- conflict by field name), hence contact_email_address beside WARP's contact_email.

-- WARP publishes default_customer_sync with contact_email mapping the contact's
-- email address onto the company's `domain`, BIDIRECTIONAL and untransformed: an
-- inbound sync would write a domain ("acme.com") into contact.email, and an outbound
-- one would send a whole address where HubSpot expects a domain. Where the row
-- still holds exactly that published entry we correct that one key in place: the
-- row keeps its id and every other key. A row an operator has edited is theirs and
-- is left alone.
UPDATE accounts.hubspot_sync_config
SET field_mappings = jsonb_set(
        field_mappings,
        '{contact_email}',
        '{"hubspot_property": "domain", "warp_field": "contact.email",
          "warp_field_path": "contact->>''email''",
          "sync_direction": "WARP_TO_HUBSPOT", "conflict_resolution": "WARP_WINS",
          "transform": "email_to_domain"}'::jsonb
    ),
    updated_at = NOW()
WHERE is_global = TRUE
  AND config_name = 'default_customer_sync'
  AND field_mappings -> 'contact_email' =
      '{"hubspot_property": "domain", "warp_field": "contact.email",
        "warp_field_path": "contact->>''email''",
        "sync_direction": "BIDIRECTIONAL", "conflict_resolution": "LATEST_WINS"}'::jsonb;

INSERT INTO accounts.hubspot_sync_config (config_name, is_global, field_mappings, created_by)
VALUES (
    'default_customer_sync',
    TRUE,
    '{
      "company_name":  {"hubspot_property": "name", "warp_field": "company_name",
                        "sync_direction": "BIDIRECTIONAL", "conflict_resolution": "LATEST_WINS"},
      "ban":           {"hubspot_property": "warp_ban", "warp_field": "ban",
                        "sync_direction": "WARP_TO_HUBSPOT", "conflict_resolution": "WARP_WINS"},
      "status":        {"hubspot_property": "warp_status", "warp_field": "status",
                        "sync_direction": "BIDIRECTIONAL", "conflict_resolution": "WARP_WINS"},
      "credit_limit":  {"hubspot_property": "warp_credit_limit", "warp_field": "credit_limit",
                        "sync_direction": "BIDIRECTIONAL", "conflict_resolution": "HUBSPOT_WINS"},
      "contact_email": {"hubspot_property": "domain", "warp_field": "contact.email",
                        "warp_field_path": "contact->>''email''",
                        "sync_direction": "WARP_TO_HUBSPOT", "conflict_resolution": "WARP_WINS",
                        "transform": "email_to_domain"}
    }'::jsonb,
    'warp-hubspot-sync'
)
ON CONFLICT (config_name) WHERE is_global = TRUE DO NOTHING;

INSERT INTO accounts.hubspot_sync_config (config_name, is_global, field_mappings, created_by)
VALUES (
    'default_contact_sync',
    TRUE,
    '{
      "contact_firstname":     {"entity_type": "contact", "hubspot_property": "firstname",
                                "warp_field": "contact.name", "warp_field_path": "contact->>''name''",
                                "sync_direction": "BIDIRECTIONAL",
                                "conflict_resolution": "LATEST_WINS", "transform": "first_name"},
      "contact_lastname":      {"entity_type": "contact", "hubspot_property": "lastname",
                                "warp_field": "contact.name", "warp_field_path": "contact->>''name''",
                                "sync_direction": "BIDIRECTIONAL",
                                "conflict_resolution": "LATEST_WINS", "transform": "last_name"},
      "contact_email_address": {"entity_type": "contact", "hubspot_property": "email",
                                "warp_field": "contact.email", "warp_field_path": "contact->>''email''",
                                "sync_direction": "BIDIRECTIONAL",
                                "conflict_resolution": "LATEST_WINS"},
      "contact_phone":         {"entity_type": "contact", "hubspot_property": "phone",
                                "warp_field": "contact.phone", "warp_field_path": "contact->>''phone''",
                                "sync_direction": "BIDIRECTIONAL",
                                "conflict_resolution": "LATEST_WINS"}
    }'::jsonb,
    'warp-hubspot-sync'
)
ON CONFLICT (config_name) WHERE is_global = TRUE DO NOTHING;
