# The deploy guide's example (docs/deploy.md, step 2): WARP's Cloud SQL instance and
# change topic live in WARP's own project. CI plans it with the offline tool.
project_id                  = "my-project"
region                      = "europe-west1"
db_instance_connection_name = "warp-prod:europe-west1:warp-db"
db_name                     = "warp"
db_iam_auth                 = true # each function's service account is its DB user
hubspot_app_id              = 1234567
change_topic_name           = "customer-changes"
create_change_topic         = false # WARP already owns the topic
api_invokers                = ["serviceAccount:warp-backend@warp-prod.iam.gserviceaccount.com"]
notification_channels       = ["projects/my-project/notificationChannels/123"]
db_max_connections          = 200 # the instance's max_connections flag
db_reserved_connections     = 120 # what WARP itself needs
