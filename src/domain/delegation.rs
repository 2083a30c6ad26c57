//! Least privilege for Elevate itself: the Azure ABAC condition under which its identity holds
//! Role Based Access Control Administrator (azure-spec §3.7). It may write and delete role
//! assignments only for the role definitions the policy uses, and only for users and groups.
//!
//! INVARIANT: both RBAC templates under `infra/` render the same string; tests/infra.rs compares.

use std::collections::BTreeSet;

use super::ids::RoleDefinitionId;
use super::policy::Policy;
use super::scope::ScopeKind;

/// Every Azure role definition a policy can grant, sorted and distinct: Elevate's allow-list in
/// Azure RBAC (directory roles and groups are granted through Microsoft Graph, not ARM).
pub fn assignable_roles(policy: &Policy) -> Vec<RoleDefinitionId> {
    let set: BTreeSet<RoleDefinitionId> = policy
        .rules()
        .iter()
        .filter(|r| r.scope.kind() == ScopeKind::Azure)
        .flat_map(|r| r.roles.iter().copied())
        .collect();
    set.into_iter().collect()
}

/// The condition for the broker's role assignment (`conditionVersion` 2.0).
pub fn broker_condition(roles: &[RoleDefinitionId]) -> String {
    let guids = roles.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let clause = |action: &str, source: &str| {
        format!(
            "(!(ActionMatches{{'Microsoft.Authorization/roleAssignments/{action}'}})) OR (@{source}[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{guids}}} AND @{source}[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'User', 'Group'}})"
        )
    };
    format!("({}) AND ({})", clause("write", "Request"), clause("delete", "Resource"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_matches_the_documented_pattern() {
        let roles = [RoleDefinitionId::parse("Contributor").unwrap(), RoleDefinitionId::parse("Reader").unwrap()];
        // azure-spec §3.7, verbatim.
        let expected = "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {b24988ac-6180-42a0-ab88-20f7382dd24c, acdd72a7-3385-48ef-bd42-f606fba81ae7} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'User', 'Group'})) AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {b24988ac-6180-42a0-ab88-20f7382dd24c, acdd72a7-3385-48ef-bd42-f606fba81ae7} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'User', 'Group'}))";
        assert_eq!(broker_condition(&roles), expected);
    }

    #[test]
    fn the_allow_list_is_every_role_the_policy_grants_once() {
        let policy = Policy::from_yaml("policy.yaml", include_str!("../../policy.yaml")).unwrap();
        let roles: Vec<String> = assignable_roles(&policy).iter().map(ToString::to_string).collect();
        assert_eq!(
            roles,
            [
                "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "b24988ac-6180-42a0-ab88-20f7382dd24c"
            ]
        );
    }
}
