// Parameters for `azd up`, read from the azd environment (`azd env set NAME value`).
// See docs/deploy.md for each value; example.bicepparam shows a filled-in set.
using './main.bicep'

param location = readEnvironmentVariable('AZURE_LOCATION', 'westeurope')
param appName = readEnvironmentVariable('ELEVATE_APP_NAME')
param storageName = readEnvironmentVariable('ELEVATE_STORAGE_NAME')
param apiClientId = readEnvironmentVariable('ELEVATE_API_CLIENT_ID')

// JSON arrays, e.g. azd env set ELEVATE_ASSIGNABLE_ROLE_IDS "$(elevate assignable-roles policy.yaml)"
param assignableRoleIds = json(readEnvironmentVariable('ELEVATE_ASSIGNABLE_ROLE_IDS'))
param managedSubscriptionIds = json(readEnvironmentVariable('ELEVATE_MANAGED_SUBSCRIPTION_IDS', '["${readEnvironmentVariable('AZURE_SUBSCRIPTION_ID', '')}"]'))
param brokerAppIds = json(readEnvironmentVariable('ELEVATE_BROKER_APP_IDS_JSON', '[]'))
param allowedClientAppIds = json(readEnvironmentVariable('ELEVATE_ALLOWED_CLIENT_APP_IDS_JSON', '[]'))
param mfaAuthContext = readEnvironmentVariable('ELEVATE_MFA_AUTH_CONTEXT', '')
// A secret: azd env set ELEVATE_LINK_KEY "$(openssl rand -base64 48)"
param linkKey = readEnvironmentVariable('ELEVATE_LINK_KEY')
// Optional notifications: unset means none. Webhook URLs carry signatures; keep them in the environment, not here.
param teamsWebhookUrl = readEnvironmentVariable('ELEVATE_TEAMS_WEBHOOK_URL', '')
param eventWebhookUrl = readEnvironmentVariable('ELEVATE_EVENT_WEBHOOK_URL', '')
param eventWebhookSecret = readEnvironmentVariable('ELEVATE_EVENT_WEBHOOK_SECRET', '')
// Directory roles and groups through Microsoft Graph (docs/deploy.md, "Directory roles and groups"):
// none (default), groupMembers, groupMembersAndOwners or directoryRoles. Anything but none needs a
// deployer with Privileged Role Administrator or Global Administrator.
param graphAccess = readEnvironmentVariable('ELEVATE_GRAPH_ACCESS', 'none')
param graphEndpoint = readEnvironmentVariable('ELEVATE_GRAPH_ENDPOINT', 'https://graph.microsoft.com')
// Chat workflows (docs/chat-workflows.md): true deploys the request workflow, a broker wired to
// Elevate; a Teams Workflows webhook URL adds the notices workflow (then ELEVATE_EVENT_WEBHOOK_SECRET
// is required). false grants Elevate.Broker by hand instead of with the Graph extension.
param chatWorkflows = bool(readEnvironmentVariable('ELEVATE_CHAT_WORKFLOWS', 'false'))
param chatBrokerRoleFromTemplate = bool(readEnvironmentVariable('ELEVATE_CHAT_BROKER_ROLE_FROM_TEMPLATE', 'true'))
param chatNoticesWebhookUrl = readEnvironmentVariable('ELEVATE_CHAT_NOTICES_WEBHOOK_URL', '')
// Days each exported audit day stays immutable (default 365; at least 31).
param auditRetentionDays = int(readEnvironmentVariable('ELEVATE_AUDIT_RETENTION_DAYS', '365'))
