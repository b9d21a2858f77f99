# The other branches of the module: topic and database users created here, password
# authentication, and only a group calling the API (so sync_api runs without OIDC and
# accepts SYNC_API_TOKEN alone), and a separate read-only HubSpot token. CI plans it
# with the offline tool.
project_id                  = "sync-staging"
db_instance_connection_name = "sync-staging:europe-west1:warp-staging"
db_iam_auth                 = false
db_user                     = "hubspot_sync"
hubspot_app_id              = 7654321
create_change_topic         = true
change_publishers           = ["serviceAccount:warp-backend@sync-staging.iam.gserviceaccount.com"]
api_invokers                = ["group:warp-operators@example.com"]
name_prefix                 = "hs-staging"
vpc_connector               = "projects/sync-staging/locations/europe-west1/connectors/warp"
db_ip_type                  = "private"
hubspot_read_token          = true
