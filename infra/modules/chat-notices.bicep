// The chat notices workflow (docs/chat-workflows.md): a Logic App (Consumption) that receives
// Elevate's CloudEvents and posts what happened to a request (approved, denied, active, expiring,
// ended, failed) to the Teams channel where people ask for access, through that channel's Teams
// Workflows webhook. Deployed by main.bicep only when chatWorkflows is true, a webhook is given
// and no other event receiver is set; main.bicep then points ELEVATE_EVENT_WEBHOOK_URL at this
// workflow's trigger.
//
// It does not verify X-Elevate-Signature: the Workflow Definition Language has no HMAC function,
// and Consumption inline code runs only with an integration account and without require(). The
// trigger URL's own signature (sig=) is what admits Elevate; the post carries no link but Elevate's
// own portal, and no Markdown or HTML from the event. docs/chat-workflows.md says how to verify in
// front of it when that is not enough.
//
// The definition lives in ../workflows/chat-notices.json; tests/workflows.rs runs it on the
// events a running Elevate sends.

targetScope = 'resourceGroup'

@description('Azure region of the Logic App.')
param location string

@description('Elevate\'s Function App name; the workflow is named <appName>-chat-notices.')
param appName string

@description('Tags for the Logic App.')
param tags object

@description('Elevate\'s base URL, https://<host> without a trailing slash.')
param elevateUrl string

@description('Teams Workflows webhook URL of the channel to post to. It carries a signature: a secret.')
@secure()
param teamsWebhookUrl string

// Elevate signs every event and refuses to start with an event webhook but without a signing
// secret of 32 characters or more: a missing ELEVATE_EVENT_WEBHOOK_SECRET stops the deployment
// here, with this parameter's name, rather than leaving Elevate unable to start.
@description('Length of eventWebhookSecret (ELEVATE_EVENT_WEBHOOK_SECRET), which Elevate signs these events with: at least 32.')
@minValue(32)
#disable-next-line no-unused-params // a deployment-time check only: its constraint is the point
param eventWebhookSecretLength int

resource notices 'Microsoft.Logic/workflows@2019-05-01' = {
  name: '${appName}-chat-notices'
  location: location
  tags: tags
  properties: {
    state: 'Enabled'
    definition: loadJsonContent('../workflows/chat-notices.json')
    parameters: {
      elevateUrl: { value: elevateUrl }
      teamsWebhookUrl: { value: teamsWebhookUrl }
    }
  }
}

resource noticesTrigger 'Microsoft.Logic/workflows/triggers@2019-05-01' existing = {
  parent: notices
  name: 'manual'
}

@description('Name of the notices workflow.')
output workflowName string = notices.name

// Secure: a trigger URL carries its signature and must stay out of the deployment history.
@description('The trigger URL Elevate sends its events to (ELEVATE_EVENT_WEBHOOK_URL).')
@secure()
output eventWebhookUrl string = noticesTrigger.listCallbackUrl().value
