// Example parameters for `az deployment group create --template-file infra/main.bicep
// --parameters infra/example.bicepparam`. Replace every value.
using './main.bicep'

param appName = 'elevate-contoso'
param storageName = 'stelevatecontoso'

// The Entra app registration of the Elevate API (docs/deploy.md, "App registration").
param apiClientId = '00000000-0000-0000-0000-000000000000'

// From the policy: `elevate assignable-roles policy.yaml` prints this list.
param assignableRoleIds = [
  'acdd72a7-3385-48ef-bd42-f606fba81ae7' // Reader
  'b24988ac-6180-42a0-ab88-20f7382dd24c' // Contributor
]

// Subscriptions the policy's scopes live in.
param managedSubscriptionIds = [
  '00000000-0000-0000-0000-000000000001'
  '00000000-0000-0000-0000-000000000002'
]

// Optional: a Teams workflow's or Logic App's managed identity client id.
param brokerAppIds = []

// Keys approval forms and confirmation links (a secret; never commit a real one).
param linkKey = readEnvironmentVariable('ELEVATE_LINK_KEY')
// Optional notifications: unset means none. Webhook URLs carry signatures; keep them in the environment, not here.
param teamsWebhookUrl = readEnvironmentVariable('ELEVATE_TEAMS_WEBHOOK_URL', '')
param eventWebhookUrl = readEnvironmentVariable('ELEVATE_EVENT_WEBHOOK_URL', '')
param eventWebhookSecret = readEnvironmentVariable('ELEVATE_EVENT_WEBHOOK_SECRET', '')
param allowedClientAppIds = []

// Directory roles and groups: 'none' grants Microsoft Graph nothing. 'groupMembers',
// 'groupMembersAndOwners' or 'directoryRoles' grant Elevate's identity the Graph permissions for
// them (docs/deploy.md, "Directory roles and groups"; directoryRoles makes it tier 0, SECURITY.md).
param graphAccess = 'none'

// Chat workflows (docs/chat-workflows.md): off. true deploys the request workflow as a broker of
// this Elevate; a Teams Workflows webhook URL (a secret: keep it in the environment) adds the notices workflow.
param chatWorkflows = false
param chatNoticesWebhookUrl = readEnvironmentVariable('ELEVATE_CHAT_NOTICES_WEBHOOK_URL', '')
