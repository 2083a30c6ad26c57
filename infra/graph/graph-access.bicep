// Microsoft Graph application permissions for Elevate's managed identity, so that it can grant
// Entra directory roles and group membership or ownership (graph-spec §8). Deployed by main.bicep
// only when graphAccess is not 'none'; with 'none' this file is never deployed.
//
// Least privilege per target; each level includes the one before it:
//   groupMembers           GroupMember.ReadWrite.All: add and remove members of security groups
//   groupMembersAndOwners  + Group.ReadWrite.All: owners need it (graph-spec §4.3)
//   directoryRoles         + RoleManagement.ReadWrite.Directory: directory role assignments, and members
//                            of role-assignable groups (graph-spec §4.1, §4.5)
// Every level also holds User.Read.All, which with GroupMember.Read.All (contained in
// GroupMember.ReadWrite.All, graph-spec §8) is what `users/{id}/checkMemberGroups` needs (§5).
//
// RoleManagement.ReadWrite.Directory is tenant-takeover grade: it can assign Global Administrator,
// to anyone, itself included. With it, Elevate's identity is tier 0 (SECURITY.md).
//
// Who may deploy this: granting application permissions of Microsoft Graph takes Privileged Role
// Administrator or Global Administrator in Entra ID (an app-only deployment needs
// AppRoleAssignment.ReadWrite.All and Application.Read.All, per the appRoleAssignedTo reference below).
// New permissions reach the identity's tokens only when its cached token expires: that can take
// hours (managed identity token cache "around 24 hours", graph-spec §0 item 18). A lower level
// later does not remove what a higher one granted (deployments are incremental): see
// docs/deploy.md, "Directory roles and groups".
//
// Syntax (the Microsoft Graph Bicep extension, alias in infra/bicepconfig.json), looked up in:
// - learn.microsoft.com/graph/templates/reference/overview (resource types Microsoft.Graph/servicePrincipals,
//   Microsoft.Graph/appRoleAssignedTo), .../bicep/reference/approleassignedto (deployer permissions),
//   .../how-to-reference-existing-resources (`existing` by the client-provided key, here `appId`),
//   .../bicep/limitations (public cloud only, not sovereign clouds);
// - github.com/microsoftgraph/msgraph-bicep-types @ bc43905: quickstart-templates/msi-as-a-fic-secretless/main.bicep
//   (Graph's service principal `existing` by appId 00000003-0000-0000-c000-000000000000, appRoles filtered
//   by value, appRoleAssignedTo with principalId/resourceId/appRoleId), and
//   generated/microsoftgraph/microsoft.graph/v1.0/1.0.0/types.md (appRoleAssignedTo: appRoleId,
//   principalId, resourceId required; servicePrincipals.appId is the identifier; appRoles readable).
//
// Why this file is not in infra/modules/: scripts/check-bicep.py parses with tree-sitter-bicep
// 1.1.0 (the newest, December 2024), whose grammar knows `import '…'`/`provider '…'` but not the
// `extension` keyword that Bicep uses since 2024, so it rejects the first line below. Everything
// after that line parses (check it with the `extension` line removed; docs/deploy.md, "Offline
// checks in CI"), and tests/infra.rs checks this file's wiring.
extension microsoftGraphV1

targetScope = 'resourceGroup'

@description('Object id of Elevate\'s managed identity (the Function App\'s system-assigned identity).')
param principalId string

@description('How much of Microsoft Graph Elevate may change (main.bicep\'s graphAccess).')
@allowed(['none', 'groupMembers', 'groupMembersAndOwners', 'directoryRoles'])
param graphAccess string

// App-role ids of the Microsoft Graph application permissions, from graph-spec §8, where they are
// [T] (to be verified against Graph's `appRoles`). The deployment verifies them: an id is granted
// only if Graph's own service principal lists an app role with that id *and* that name
// (`appRoleId` below), otherwise the deployment fails before granting it.
var graphAppRoleIds = {
  'User.Read.All': 'df021288-bdef-4463-88db-98f22de89214'
  'GroupMember.ReadWrite.All': 'dbaae8cf-10b5-4b86-a4a1-f871c94c6695'
  'Group.ReadWrite.All': '62a82d76-70ea-41e2-9197-370581804d09'
  'RoleManagement.ReadWrite.Directory': '9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8'
}

// INVARIANT: tests/infra.rs checks each level's permissions against graph-spec §8.
var permissionsByLevel = {
  none: []
  groupMembers: [
    'User.Read.All'
    'GroupMember.ReadWrite.All'
  ]
  groupMembersAndOwners: [
    'User.Read.All'
    'GroupMember.ReadWrite.All'
    'Group.ReadWrite.All'
  ]
  directoryRoles: [
    'User.Read.All'
    'GroupMember.ReadWrite.All'
    'Group.ReadWrite.All'
    'RoleManagement.ReadWrite.Directory'
  ]
}
var permissions = permissionsByLevel[graphAccess]

// Microsoft Graph's service principal in this tenant, by Graph's well-known application id.
resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

// One app-role assignment per permission: the identity (principalId) may use the app role
// (appRoleId) of Microsoft Graph (resourceId).
resource graphAppRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for permission in permissions: {
    principalId: principalId
    resourceId: graph.id
    appRoleId: filter(graph.appRoles, role => role.id =~ graphAppRoleIds[permission] && role.value == permission)[0].id
  }
]

@description('The Microsoft Graph application permissions granted to the identity.')
output grantedPermissions array = permissions
