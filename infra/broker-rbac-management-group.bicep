// Least privilege for Elevate at a management group, for policies whose scopes sit in many
// subscriptions. Deploy separately (a resource group deployment cannot target a management group):
//   az deployment mg create --management-group-id <mg> --location <region> \
//     --template-file infra/broker-rbac-management-group.bicep \
//     --parameters principalId=<Elevate identity principal id> assignableRoleIds='["<guid>", ...]'
// The deployer needs Owner, User Access Administrator or RBAC Administrator at that management group.
targetScope = 'managementGroup'

@description('Object id of Elevate\'s managed identity (output `identityPrincipalId` of main.bicep).')
param principalId string

@description('Role definition GUIDs Elevate may assign (derive them with `elevate assignable-roles policy.yaml`).')
@minLength(1)
param assignableRoleIds array

// The ABAC condition (azure-spec §3.7, "Constrain roles and principal types"): write and delete
// role assignments only for the allow-listed role definitions and only for users and groups, so
// Elevate can never grant anything to itself or another service principal.
// INVARIANT: tests/infra.rs renders this and compares it with `elevate assignable-roles --condition`.
var roles = join(assignableRoleIds, ', ')
var condition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${roles}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'User\', \'Group\'})) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${roles}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'User\', \'Group\'}))'
var rbacAdministratorRoleId = 'f58310d9-a9f6-439a-9e8d-f62e7b41a168'

resource brokerRbac 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, rbacAdministratorRoleId)
  properties: {
    // Built-in role definitions are tenant-level ids.
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', rbacAdministratorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    condition: condition
    conditionVersion: '2.0'
    description: 'Elevate: may add and remove only allow-listed roles, only for users and groups'
  }
}

output roleAssignmentId string = brokerRbac.id
