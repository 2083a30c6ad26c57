//! What the policy says for governance: assignments accepted as standing (`standing:`) and the
//! thresholds of the alerts (`governance:`). The alerts themselves are `domain::governance`.

use chrono::TimeDelta;

use super::super::duration::IsoDuration;
use super::super::ids::{PrincipalId, RoleDefinitionId};
use super::super::scope::Scope;

/// An assignment the policy accepts as standing (`standing:`), with why and who answers for it.
#[derive(Clone, Debug, PartialEq)]
pub struct StandingException {
    pub principal: PrincipalId,
    pub role: RoleDefinitionId,
    pub scope: Scope,
    pub reason: String,
    pub owner: String,
}

/// The thresholds of the alerts (`governance:`), with their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GovernanceSettings {
    /// The roles whose permanent holders are counted and whose rules must be strong.
    pub privileged_roles: Vec<RoleDefinitionId>,
    /// More standing holders than this of a privileged role at one scope is an alert.
    pub max_permanent_holders: usize,
    /// An eligible principal who has not activated a rule for this long is stale.
    pub stale_after: TimeDelta,
    /// More activations than `frequent_count` of one role by one principal within
    /// `frequent_window` is an alert: the role may belong in a standing assignment, or be misused.
    pub frequent_count: usize,
    pub frequent_window: TimeDelta,
    /// A rule for a privileged role that allows longer than this is weak.
    pub long_maximum: IsoDuration,
}

/// Azure's Owner and User Access Administrator; Entra's Global Administrator and Privileged Role
/// Administrator (role template ids).
pub const DEFAULT_PRIVILEGED: [&str; 4] = [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "62e90394-69f5-4237-9190-012177145e10",
    "e8611ab8-c189-46e8-94e1-60213ab1f814",
];

impl Default for GovernanceSettings {
    fn default() -> Self {
        Self {
            privileged_roles: DEFAULT_PRIVILEGED.iter().filter_map(|r| RoleDefinitionId::parse(r).ok()).collect(),
            max_permanent_holders: 2,
            stale_after: TimeDelta::days(90),
            frequent_count: 10,
            frequent_window: TimeDelta::days(7),
            long_maximum: IsoDuration::from_hours(4),
        }
    }
}
