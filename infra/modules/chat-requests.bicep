// The chat request workflow (docs/chat-workflows.md): a Logic App (Consumption) that a Teams
// Workflows flow, or any system, calls with {user, role, scope, duration, justification, ticket};
// it asks Elevate for that user as a broker, with its own system-assigned managed identity, and
// answers with text the caller can post back. Deployed by main.bicep only when chatWorkflows is
// true.
//
// The definition lives in ../workflows/chat-requests.json (Workflow Definition Language
// 2016-06-01); tests/workflows.rs plays its HTTP action against a running Elevate and checks its
// body against Elevate's OpenAPI request schema.
//
// Its identity becomes a broker in two steps that main.bicep takes: the app role Elevate.Broker
// on Elevate's app registration (graph/chat-broker-role.bicep, or by hand), and its client id on
// ELEVATE_BROKER_APP_IDS. A system-assigned identity's client id is not a property of the Logic
// App; it is read from the identity itself (Microsoft.ManagedIdentity/identities 'default' at the
// Logic App's scope).

targetScope = 'resourceGroup'

@description('Azure region of the Logic App.')
param location string

@description('Elevate\'s Function App name; the workflow is named <appName>-chat-requests.')
param appName string

@description('Tags for the Logic App.')
param tags object

@description('Elevate\'s base URL, https://<host> without a trailing slash.')
param elevateUrl string

@description('Client id of Elevate\'s app registration: the token audience is api://<client id>, as ELEVATE_AUDIENCE.')
param apiClientId string

resource requests 'Microsoft.Logic/workflows@2019-05-01' = {
  name: '${appName}-chat-requests'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    state: 'Enabled'
    definition: loadJsonContent('../workflows/chat-requests.json')
    parameters: {
      elevateUrl: { value: elevateUrl }
      elevateAudience: { value: 'api://${apiClientId}' }
    }
  }
}

// The system-assigned identity as Microsoft.ManagedIdentity sees it: its client (application) id,
// which is what Elevate finds in the token (azp or appid) and matches against ELEVATE_BROKER_APP_IDS.
resource requestsIdentity 'Microsoft.ManagedIdentity/identities@2023-01-31' existing = {
  scope: requests
  name: 'default'
}

@description('Name of the request workflow: its trigger URL comes from `az rest --method post --url <workflow id>/triggers/manual/listCallbackUrl?api-version=2016-06-01`.')
output workflowName string = requests.name

@description('Object id of the workflow\'s identity: the principal of the Elevate.Broker app role assignment.')
output brokerPrincipalId string = requests.identity.principalId

@description('Client (application) id of the workflow\'s identity: goes on ELEVATE_BROKER_APP_IDS.')
output brokerClientId string = requestsIdentity.properties.clientId
