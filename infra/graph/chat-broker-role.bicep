// The app role Elevate.Broker on Elevate's own app registration, for the chat request workflow's
// managed identity (modules/chat-requests.bicep): with it, and with its client id on
// ELEVATE_BROKER_APP_IDS, the workflow may request activations for users (README, "Requests from
// chat"). Deployed by main.bicep only when chatWorkflows and chatBrokerRoleFromTemplate are true;
// docs/chat-workflows.md gives the same assignment by hand, for national clouds or a deployer
// without the right in Entra ID.
//
// Who may deploy this: creating an app role assignment takes the delegated permissions
// AppRoleAssignment.ReadWrite.All and Application.Read.All (learn.microsoft.com/graph/templates/
// reference/approleassignedto); the signed-in deployer needs an Entra role that may assign app
// roles of Elevate's enterprise application, such as Application Administrator or Cloud
// Application Administrator. Unlike graph-access.bicep it grants nothing of Microsoft Graph
// itself: the resource is Elevate's own service principal.
//
// Syntax as in graph-access.bicep (the Microsoft Graph Bicep extension, alias in
// infra/bicepconfig.json): a service principal `existing` by its appId, and
// Microsoft.Graph/appRoleAssignedTo with principalId, resourceId and appRoleId.
//
// Why this file is not in infra/modules/: tree-sitter-bicep 1.1.0 and checkov's parser do not know
// the `extension` keyword on the first line (see graph-access.bicep and docs/deploy.md, "Offline
// checks in CI"); the rest parses, and tests/infra.rs checks its wiring.
extension microsoftGraphV1

targetScope = 'resourceGroup'

@description('Object id of the chat request workflow\'s system-assigned identity.')
param principalId string

@description('Client (application) id of Elevate\'s app registration (ELEVATE_API_CLIENT_ID).')
param apiClientId string

// INVARIANT: the id of Elevate.Broker in docs/app-roles.json, which `az ad app create
// --app-roles @docs/app-roles.json` gives Elevate's registration (tests/infra.rs compares them).
var brokerAppRoleId = '9b2ef580-4b77-441a-9983-b8d6f988cdbb'

// Elevate's service principal (enterprise application) in this tenant, by its client id.
resource elevateApi 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: apiClientId
}

// The workflow's identity (principalId) may use Elevate's app role (appRoleId) on Elevate
// (resourceId). Granted only if Elevate's registration lists a role with that id and that value,
// so a registration made without docs/app-roles.json fails here instead of granting something else.
resource brokerRole 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: elevateApi.id
  appRoleId: filter(elevateApi.appRoles, role => role.id =~ brokerAppRoleId && role.value == 'Elevate.Broker')[0].id
}

@description('The app role granted to the workflow\'s identity.')
output appRoleId string = brokerRole.appRoleId
