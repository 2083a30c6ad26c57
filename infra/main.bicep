// Elevate on Azure Functions (Flex Consumption, custom handler), resource group scope.
//
// What it creates: a storage account with shared keys off (identity-based access only) holding
// the deployment package container and Elevate's table; Log Analytics and Application Insights
// with local auth off; the Flex Consumption plan and the Function App (runtime `custom`, system-
// assigned identity); Easy Auth (every request authenticated, 401 otherwise); Elevate's app
// settings; data-plane roles for the app's identity; at each managed subscription, Role Based
// Access Control Administrator constrained to the allow-listed roles; and, only when graphAccess
// is not 'none', Microsoft Graph application permissions for directory roles and groups
// (graph/graph-access.bicep).

targetScope = 'resourceGroup'

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Function App name (globally unique; becomes <name>.azurewebsites.net or a unique default hostname). At most 55 characters: the plan (`<name>-plan`, at most 60) and the Log Analytics workspace (`<name>-logs`, at most 63) are named after it.')
@minLength(2)
@maxLength(55)
param appName string

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageName string

@description('Audit archive storage account name (sealed audit days, immutable): 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param auditStorageName string = '${take(storageName, 19)}audit'

@description('Days each exported audit day stays immutable (time-based retention: no one, the operator included, can change or delete it before then). Well beyond the 30 days PIM keeps its audit.')
@minValue(31)
@maxValue(146000)
param auditRetentionDays int = 365

@description('Client (application) id of the Entra app registration that represents the Elevate API (token audience).')
param apiClientId string

@description('Entra tenant of the users and of the API registration.')
param tenantId string = subscription().tenantId

@description('Client ids allowed to call the API through Easy Auth (a SPA, a Logic App identity). Empty: any client of the tenant; never an empty allow-list, which would allow nothing.')
param allowedClientAppIds array = []

@description('Client ids of brokers (Logic Apps, Teams workflows) allowed to request access for users; they also need the app role Elevate.Broker.')
param brokerAppIds array = []

@description('Conditional Access authentication context (c1..c99) whose policy requires MFA; tokens that satisfied it count as MFA. Empty: only the amr claim (v1 tokens) proves MFA.')
param mfaAuthContext string = ''

@description('Keys approval forms and confirmation links, shared by every instance: 32+ random characters, e.g. `openssl rand -base64 48`. Changing it invalidates outstanding links.')
@secure()
@minLength(32)
param linkKey string

@description('Teams Workflows webhook URL ("When a Teams webhook request is received") for approval cards and status notices. Empty: no Teams notices. The URL carries a signature: treat it as a secret.')
@secure()
param teamsWebhookUrl string = ''

@description('Webhook URL (e.g. a Logic App HTTP trigger) that receives signed CloudEvents. Empty: no events. Needs eventWebhookSecret.')
@secure()
param eventWebhookUrl string = ''

@description('Secret (32+ random characters) that signs the events with HMAC-SHA256; the receiver verifies with the same secret.')
@secure()
param eventWebhookSecret string = ''

@description('Role definition GUIDs Elevate may assign: derive them from the policy with `elevate assignable-roles policy.yaml`.')
@minLength(1)
param assignableRoleIds array

@description('Subscriptions where Elevate manages access (the policy\'s scopes). For a management group use broker-rbac-management-group.bicep.')
param managedSubscriptionIds array = [
  subscription().subscriptionId
]

@description('Microsoft Graph application permissions for Elevate\'s identity, to grant Entra directory roles and groups (docs/deploy.md, "Directory roles and groups"). none: Azure RBAC only, nothing Graph-related is created. groupMembers: group membership. groupMembersAndOwners: also ownership. directoryRoles: also directory roles and role-assignable groups, which makes Elevate\'s identity tier 0 (SECURITY.md). Needs a deployer with Privileged Role Administrator or Global Administrator; new permissions can take hours to reach the identity\'s token.')
@allowed(['none', 'groupMembers', 'groupMembersAndOwners', 'directoryRoles'])
param graphAccess string = 'none'

@description('Microsoft Graph base URL (ELEVATE_GRAPH_ENDPOINT), without a path. National clouds differ, e.g. https://graph.microsoft.us (US Government L4), https://dod-graph.microsoft.us (L5), https://microsoftgraph.chinacloudapi.cn (China).')
param graphEndpoint string = 'https://graph.microsoft.com'

@description('Chat workflows (docs/chat-workflows.md): a Logic App that Teams, or any system, calls to request access for a user, acting as an Elevate broker with its own managed identity (wired here: the app role Elevate.Broker and ELEVATE_BROKER_APP_IDS), and, with chatNoticesWebhookUrl, one that posts what becomes of requests to a Teams channel. false: none of it is created.')
param chatWorkflows bool = false

@description('With chatWorkflows: grant the request workflow\'s identity the app role Elevate.Broker from this template, with the Microsoft Graph Bicep extension (public cloud only; the deployer needs Application Administrator or Cloud Application Administrator). false: grant it by hand (docs/chat-workflows.md).')
param chatBrokerRoleFromTemplate bool = true

@description('With chatWorkflows: the Teams Workflows webhook URL ("When a Teams webhook request is received") of the channel where people ask for access. The notices workflow posts there, and Elevate sends it its events unless eventWebhookUrl names another receiver; eventWebhookSecret is then required. Empty: no notices workflow. The URL carries a signature: treat it as a secret.')
@secure()
param chatNoticesWebhookUrl string = ''

@description('Flex Consumption scale-out limit.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Storage redundancy: zone-redundant by default; geo-zone-redundant where the region pair allows.')
@allowed(['Standard_ZRS', 'Standard_GZRS', 'Standard_RAGZRS'])
param storageSku string = 'Standard_ZRS'

@description('Zone-redundant Flex Consumption plan (not offered in every region).')
param zoneRedundant bool = false

@description('Log retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Tags for every resource.')
param tags object = {}

var packageContainer = 'app-package'
var tableName = 'elevate'
var auditContainer = 'audit'
var allTags = union(tags, { application: 'elevate' })

// Data-plane roles for the app's identity (azure-spec §3.3).
var storageRoles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner: deployment package, host leases
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor: Elevate's store
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor: the host's queue triggers, and Elevate putting expiry and deliver messages
]
var metricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption reaches storage over its public endpoint unless the app is VNet-integrated with private endpoints; access here is identity-only (shared keys off), TLS 1.2, no public blobs. Add private endpoints where your network allows.
  // checkov:skip=CKV_AZURE_206: the account is replicated (storageSku, default zone-redundant ZRS); checkov accepts only geo-replicated SKUs, which the storageSku parameter offers.
  // checkov:skip=CKV_AZURE_43: the name is a parameter (length-checked here, validated by ARM); checkov cannot evaluate it.
  name: storageName
  location: location
  tags: allTags
  sku: { name: storageSku }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    supportsHttpsTrafficOnly: true
    allowCrossTenantReplication: false
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource packages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: packageContainer
  properties: { publicAccess: 'None' }
}

// The audit archive (service::audit_chain): one blob per sealed UTC day, in an account of its own
// so that the app's broad rights on its working storage (Blob Data Owner, for the package and the
// host's leases) reach nothing here. The container's time-based retention policy makes each blob
// immutable for auditRetentionDays: no one can overwrite or delete it, and once the policy is
// locked (docs/deploy.md: `az storage container immutability-policy lock`, a one-way step) no one
// can shorten or remove the policy either.
resource auditStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: as `storage`: reached over its public endpoint unless private endpoints are added; access is identity-only (shared keys off), TLS 1.2, no public blobs.
  // checkov:skip=CKV_AZURE_206: as `storage`: replicated per storageSku (default zone-redundant); geo-replicated SKUs are offered by the parameter.
  // checkov:skip=CKV_AZURE_43: as `storage`: the name is a parameter checkov cannot evaluate.
  name: auditStorageName
  location: location
  tags: allTags
  sku: { name: storageSku }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    supportsHttpsTrafficOnly: true
    allowCrossTenantReplication: false
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource auditBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: auditStorage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource auditBlobs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: auditBlobService
  name: auditContainer
  properties: { publicAccess: 'None' }
}

resource auditRetention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: auditBlobs
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: auditRetentionDays
    // Whole blobs only: nothing, not even appends, changes a blob once written.
    allowProtectedAppendWrites: false
  }
}

// What the export needs and no more: read a day's blob (to compare a retry with what is there)
// and create new ones. No delete, no container or policy management.
resource auditWriterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, auditStorageName, 'elevate-audit-writer')
  properties: {
    roleName: 'Elevate audit writer (${appName}, ${resourceGroup().name})'
    description: 'Creates and reads blobs in the Elevate audit archive; cannot delete them.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [resourceGroup().id]
  }
}

resource auditWriterAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(auditBlobs.id, app.id, 'elevate-audit-writer')
  scope: auditBlobs
  properties: {
    roleDefinitionId: auditWriterRole.id
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource elevateTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tableName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The queues Elevate puts work on and the queue-triggered functions read (functions/expiry,
// functions/deliver); the host creates their `-poison` queues itself.
resource workQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in ['expiry', 'deliver']: {
    parent: queueService
    name: queue
  }
]

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${appName}-logs'
  location: location
  tags: allTags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: logRetentionDays
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${appName}-insights'
  location: location
  tags: allTags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is the zoneRedundant parameter, off by default because not every Flex Consumption region offers it.
  name: '${appName}-plan'
  location: location
  tags: allTags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true, zoneRedundant: zoneRedundant }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Elevate's callers (Teams and Logic App webhooks, approvers' browsers) reach it over the internet; Easy Auth answers 401 to every unauthenticated request. Add access restrictions or private endpoints where your callers allow.
  // checkov:skip=CKV_AZURE_17: callers authenticate with Entra tokens through Easy Auth; Teams, Logic Apps and browsers present no client certificates.
  // checkov:skip=CKV_AZURE_212: Flex Consumption manages instances itself and scales from zero; the sweeper's timer state lives in storage, so no instance is a single point of failure.
  // checkov:skip=CKV_AZURE_213: Flex Consumption does not support the platform health check; /api/health serves probes and scripts/smoke-test.
  name: appName
  location: location
  tags: union(allTags, { 'azd-service-name': 'elevate' })
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${packageContainer}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: { name: 'custom', version: '1.0' }
    }
  }
}

// App settings in their own resource, so they can use the app's own host name.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_66: failed request tracing, HTTP logging and detailed errors are Windows App Service (IIS) features; the custom handler logs to Application Insights.
  // checkov:skip=CKV_AZURE_63: as CKV_AZURE_66: IIS HTTP logging does not apply; requests are logged by Elevate and the host into Application Insights.
  // checkov:skip=CKV_AZURE_65: as CKV_AZURE_66: IIS detailed errors do not apply; Elevate's 5xx answers are opaque by design.
  // checkov:skip=CKV_AZURE_222: a configuration child resource, not a site; the site's public access is explained on `app`.
  // checkov:skip=CKV_AZURE_80: no .NET Framework: the custom handler is a native binary.
  // checkov:skip=CKV_AZURE_13: a configuration child resource; authentication is configured by the `auth` (authsettingsV2) resource.
  // checkov:skip=CKV_AZURE_88: Flex Consumption deploys from a blob container and uses no Azure Files content share.
  parent: app
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__accountName: storage.name
    APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    ELEVATE_STORE: 'tables:${storage.properties.primaryEndpoints.table}${tableName}'
    ELEVATE_AUDIT_EXPORT: '${auditStorage.properties.primaryEndpoints.blob}${auditContainer}'
    ELEVATE_PROVIDER: 'arm'
    ELEVATE_GRAPH_ENDPOINT: graphEndpoint
    ELEVATE_AUTH_MODE: 'easyauth'
    ELEVATE_TENANT_ID: tenantId
    ELEVATE_AUDIENCE: 'api://${apiClientId}'
    ELEVATE_PUBLIC_URL: 'https://${app.properties.defaultHostName}'
    ELEVATE_BROKER_APP_IDS: join(concat(brokerAppIds, chatBrokerAppIds), ',')
    ELEVATE_MFA_AUTH_CONTEXT: mfaAuthContext
    ELEVATE_LINK_KEY: linkKey
    ELEVATE_TEAMS_WEBHOOK_URL: teamsWebhookUrl
    ELEVATE_EVENT_WEBHOOK_URL: chatNotices ? chatNoticesWorkflow!.outputs.eventWebhookUrl : eventWebhookUrl
    ELEVATE_EVENT_WEBHOOK_SECRET: eventWebhookSecret
  }
}

// Easy Auth: every request authenticated by the platform, unauthenticated ones answered 401.
// The health endpoint stays open for the post-deploy smoke test and probes.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_66: failed request tracing, HTTP logging and detailed errors are Windows App Service (IIS) features; the custom handler logs to Application Insights.
  // checkov:skip=CKV_AZURE_63: as CKV_AZURE_66: IIS HTTP logging does not apply; requests are logged by Elevate and the host into Application Insights.
  // checkov:skip=CKV_AZURE_65: as CKV_AZURE_66: IIS detailed errors do not apply; Elevate's 5xx answers are opaque by design.
  // checkov:skip=CKV_AZURE_222: a configuration child resource, not a site; the site's public access is explained on `app`.
  // checkov:skip=CKV_AZURE_80: no .NET Framework: the custom handler is a native binary.
  // checkov:skip=CKV_AZURE_13: a configuration child resource; authentication is configured by the `auth` (authsettingsV2) resource.
  // checkov:skip=CKV_AZURE_88: Flex Consumption deploys from a blob container and uses no Azure Files content share.
  parent: app
  name: 'authsettingsV2'
  // Two children of one site written at once can overwrite each other's site update: one at a time.
  dependsOn: [appSettings]
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      // The portal's sign-in page links to /.auth/login/aad: a browser without a session must reach it.
      excludedPaths: ['/api/health', '/api/portal/sign-in']
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: ['api://${apiClientId}', apiClientId]
          // An empty allowedApplications list allows no application at all (azure-spec §2.6).
          defaultAuthorizationPolicy: empty(allowedClientAppIds) ? { allowedPrincipals: {} } : { allowedApplications: concat(allowedClientAppIds, chatBrokerAppIds) }
        }
      }
    }
    login: { tokenStore: { enabled: false } }
  }
}

resource storageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in storageRoles: {
    name: guid(storage.id, app.id, role)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: app.identity.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource metricsRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, app.id, metricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', metricsPublisher)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

module brokerRbac 'modules/broker-rbac-subscription.bicep' = [
  for subscriptionId in managedSubscriptionIds: {
    name: 'elevate-broker-rbac-${uniqueString(subscriptionId, app.id)}'
    scope: subscription(subscriptionId)
    params: {
      principalId: app.identity.principalId
      assignableRoleIds: assignableRoleIds
    }
  }
]

// Microsoft Graph application permissions for directory roles and groups, behind graphAccess: with
// 'none' (the default) this module is not deployed and nothing Graph-related is created or read.
// The principal is the Function App's own system-assigned identity, as for every role above.
// The deployer needs Privileged Role Administrator or Global Administrator in Entra ID to grant
// Microsoft Graph's app roles, and new permissions can take hours to reach the identity's token
// (graph-spec §0 item 18). The module uses the Microsoft Graph Bicep extension (infra/bicepconfig.json),
// which deploys in the public cloud only; elsewhere keep 'none' and grant by hand (docs/deploy.md).
module graphAccessGrants 'graph/graph-access.bicep' = if (graphAccess != 'none') {
  name: 'elevate-graph-access-${uniqueString(app.id)}'
  params: {
    principalId: app.identity.principalId
    graphAccess: graphAccess
  }
}

// Chat workflows (docs/chat-workflows.md), behind chatWorkflows: with false (the default) none of
// this is deployed. The request workflow's identity becomes a broker here, from the same
// deployment: its client id goes on ELEVATE_BROKER_APP_IDS (and on Easy Auth's allow-list when
// there is one), and graph/chat-broker-role.bicep gives it the app role Elevate.Broker unless
// chatBrokerRoleFromTemplate is false. The notices workflow is Elevate's event receiver unless
// eventWebhookUrl names another one.
module chatRequestsWorkflow 'modules/chat-requests.bicep' = if (chatWorkflows) {
  name: 'elevate-chat-requests-${uniqueString(app.id)}'
  params: {
    location: location
    appName: appName
    tags: allTags
    elevateUrl: 'https://${app.properties.defaultHostName}'
    apiClientId: apiClientId
  }
}

module chatBrokerRole 'graph/chat-broker-role.bicep' = if (chatWorkflows && chatBrokerRoleFromTemplate) {
  name: 'elevate-chat-broker-role-${uniqueString(app.id)}'
  params: {
    principalId: chatRequestsWorkflow!.outputs.brokerPrincipalId
    apiClientId: apiClientId
  }
}

var chatBrokerAppIds = chatWorkflows ? [chatRequestsWorkflow!.outputs.brokerClientId] : []
var chatNotices = chatWorkflows && !empty(chatNoticesWebhookUrl) && empty(eventWebhookUrl)

module chatNoticesWorkflow 'modules/chat-notices.bicep' = if (chatNotices) {
  name: 'elevate-chat-notices-${uniqueString(app.id)}'
  params: {
    location: location
    appName: appName
    tags: allTags
    elevateUrl: 'https://${app.properties.defaultHostName}'
    teamsWebhookUrl: chatNoticesWebhookUrl
    eventWebhookSecretLength: length(eventWebhookSecret)
  }
}

@description('Base URL of Elevate; the API is under /api.')
output functionUrl string = 'https://${app.properties.defaultHostName}'

@description('Object id of Elevate\'s managed identity (for broker-rbac-management-group.bicep).')
output identityPrincipalId string = app.identity.principalId

output functionAppName string = app.name
