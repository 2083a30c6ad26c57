//! Governance alerts: where the just-in-time model is bypassed or has gone stale. Pure: the
//! service gathers what is assigned, what was activated and what the policy says, and these
//! functions say what is wrong. Alerts report; they never remove access.
//!
//! Every alert has a stable id derived from what it is about (an assignment, a rule, a principal
//! and role), so a pass that finds the same cause again updates the same alert, and one whose
//! cause is gone resolves it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{PrincipalId, PrincipalRef, RoleDefinitionId, RuleId};
pub use super::policy::{DEFAULT_PRIVILEGED, GovernanceSettings, StandingException};
use super::policy::{Policy, Rule};
use super::scope::Scope;

/// A real assignment found at a managed scope, as governance reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The provider's id (the ARM id).
    pub id: String,
    pub principal: PrincipalId,
    pub role: RoleDefinitionId,
    pub scope: Scope,
    /// Carries Elevate's marker: made by an activation (active or being revoked).
    pub elevates: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlertKind {
    AssignedOutsideElevate,
    TooManyPermanentHolders,
    StaleEligibility,
    WeakRule,
    FrequentActivation,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::AssignedOutsideElevate => "AssignedOutsideElevate",
            AlertKind::TooManyPermanentHolders => "TooManyPermanentHolders",
            AlertKind::StaleEligibility => "StaleEligibility",
            AlertKind::WeakRule => "WeakRule",
            AlertKind::FrequentActivation => "FrequentActivation",
        }
    }

    /// Whether this kind is judged from the provider's assignments: when listing them failed,
    /// such alerts are neither raised nor resolved by that pass.
    pub fn needs_assignments(self) -> bool {
        matches!(self, AlertKind::AssignedOutsideElevate | AlertKind::TooManyPermanentHolders)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// One thing wrong, as a pass sees it now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable: the same cause gives the same id on every pass.
    pub id: String,
    pub kind: AlertKind,
    pub severity: Severity,
    pub title: String,
    /// What is affected, one line each (an assignment, a principal, a reason).
    pub items: Vec<String>,
    pub remediation: String,
}

/// What a pass knows about activations: per rule, who activated and when last; per principal and
/// role, when (within the frequency window).
#[derive(Clone, Debug, Default)]
pub struct ActivationHistory {
    pub last_activation: HashMap<(PrincipalId, RuleId), DateTime<Utc>>,
    pub recent: HashMap<(PrincipalId, RoleDefinitionId), Vec<DateTime<Utc>>>,
}

/// Whether a standing exception accepts this assignment: the same holder, role and scope.
fn accepted(s: &StandingException, a: &Found) -> bool {
    s.principal == a.principal && s.role == a.role && s.scope.key() == a.scope.key()
}

fn role_name(role: &RoleDefinitionId) -> String {
    role.built_in_name().map_or_else(|| role.to_string(), str::to_owned)
}

/// The rules that manage `role` at `scope` now: a role of the rule, at or below its scope, and
/// eligibility under it not ended.
fn managing<'p>(
    policy: &'p Policy,
    role: &RoleDefinitionId,
    scope: &Scope,
    now: DateTime<Utc>,
) -> impl Iterator<Item = &'p Rule> {
    let (role, scope) = (*role, scope.clone());
    policy.rules().iter().filter(move |r| !r.is_expired(now) && r.covers(&role, &scope))
}

/// Assignments of managed roles at managed scopes that Elevate did not make and the policy does
/// not accept as standing.
pub fn assigned_outside(
    policy: &Policy,
    standing: &[StandingException],
    found: &[Found],
    settings: &GovernanceSettings,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for a in found.iter().filter(|a| !a.elevates) {
        let rules: Vec<&str> = managing(policy, &a.role, &a.scope, now).map(|r| r.id.as_str()).collect();
        if rules.is_empty() || standing.iter().any(|s| accepted(s, a)) {
            continue;
        }
        let privileged = settings.privileged_roles.contains(&a.role);
        out.push(Finding {
            id: format!("outside:{}", a.id.to_ascii_lowercase()),
            kind: AlertKind::AssignedOutsideElevate,
            severity: if privileged { Severity::High } else { Severity::Medium },
            title: format!("{} assigned outside Elevate at {}", role_name(&a.role), a.scope),
            items: vec![
                format!("principal {} holds {} at {} (assignment {})", a.principal, role_name(&a.role), a.scope, a.id),
                format!("managed by rule(s) {}", rules.join(", ")),
            ],
            remediation: "Remove the assignment and let the principal activate through Elevate, or accept it under `standing:` in the policy with a reason and an owner.".into(),
        });
    }
    out
}

/// Privileged roles held standing (not through Elevate) by more principals than allowed, per
/// role and scope. Accepted standing exceptions count: they are permanent holders all the same.
pub fn too_many_permanent(found: &[Found], settings: &GovernanceSettings) -> Vec<Finding> {
    let mut holders: BTreeMap<(String, String), (RoleDefinitionId, Scope, Vec<PrincipalId>)> = BTreeMap::new();
    for a in found.iter().filter(|a| !a.elevates && settings.privileged_roles.contains(&a.role)) {
        let entry =
            holders.entry((a.role.to_string(), a.scope.key())).or_insert_with(|| (a.role, a.scope.clone(), Vec::new()));
        if !entry.2.contains(&a.principal) {
            entry.2.push(a.principal);
        }
    }
    holders
        .into_values()
        .filter(|(_, _, who)| who.len() > settings.max_permanent_holders)
        .map(|(role, scope, who)| Finding {
            id: format!("permanent:{role}:{}", scope.key()),
            kind: AlertKind::TooManyPermanentHolders,
            severity: Severity::High,
            title: format!("{} permanent holders of {} at {} (at most {})", who.len(), role_name(&role), scope, settings.max_permanent_holders),
            items: who.iter().map(|p| format!("principal {p}")).collect(),
            remediation: "Make all but the break-glass holders eligible instead: remove their standing assignments and add them to a rule.".into(),
        })
        .collect()
}

/// Named users eligible under a rule who have not activated it for `stale_after` (groups are not
/// expanded: their members are the directory's, not the policy's). One alert per rule.
pub fn stale_eligibility(
    policy: &Policy,
    history: &ActivationHistory,
    settings: &GovernanceSettings,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let since = now - settings.stale_after;
    let days = settings.stale_after.num_days();
    policy
        .rules()
        .iter()
        .filter(|r| !r.is_expired(now))
        .filter_map(|rule| {
            let stale: Vec<String> = rule
                .principals
                .iter()
                .filter_map(|p| match p {
                    PrincipalRef::User(id) => Some(*id),
                    PrincipalRef::Group(_) => None,
                })
                .filter(|id| history.last_activation.get(&(*id, rule.id.clone())).is_none_or(|last| *last < since))
                .map(|id| match history.last_activation.get(&(id, rule.id.clone())) {
                    Some(last) => format!("user {id}: last activated {}", last.format("%Y-%m-%d")),
                    None => format!("user {id}: not activated in the last {days} days"),
                })
                .collect();
            (!stale.is_empty()).then(|| Finding {
                id: format!("stale:{}", rule.id),
                kind: AlertKind::StaleEligibility,
                severity: Severity::Low,
                title: format!("{} eligibility(ies) under rule {} unused for {days} days", stale.len(), rule.id),
                items: stale,
                remediation: "Remove eligibility nobody uses from the rule (least privilege), or review it.".into(),
            })
        })
        .collect()
}

/// Rules for a privileged role without MFA or an authentication context, without approval, or
/// with a long maximum (rules whose eligibility ended grant nothing, and are left out).
pub fn weak_rules(policy: &Policy, settings: &GovernanceSettings, now: DateTime<Utc>) -> Vec<Finding> {
    policy
        .rules()
        .iter()
        .filter(|rule| !rule.is_expired(now))
        .filter_map(|rule| {
            let privileged: Vec<String> =
                rule.roles.iter().filter(|r| settings.privileged_roles.contains(r)).map(role_name).collect();
            if privileged.is_empty() {
                return None;
            }
            let mut why = Vec::new();
            if !rule.require_mfa && rule.auth_context.is_none() {
                why.push("no MFA or authentication context required".to_owned());
            }
            if rule.approval.is_none() {
                why.push("no approval required".to_owned());
            }
            if rule.max_duration > settings.long_maximum {
                why.push(format!("maximum {} is longer than {}", rule.max_duration, settings.long_maximum));
            }
            (!why.is_empty()).then(|| Finding {
                id: format!("weak:{}", rule.id),
                kind: AlertKind::WeakRule,
                severity: Severity::Medium,
                title: format!("Rule {} grants {} on weak terms", rule.id, privileged.join(", ")),
                items: why,
                remediation:
                    "Require MFA (or an authentication context), an approver and a short maximum for privileged roles."
                        .into(),
            })
        })
        .collect()
}

/// More than `frequent_count` activations of one role by one principal within the window.
pub fn frequent_activation(
    history: &ActivationHistory,
    settings: &GovernanceSettings,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let since = now - settings.frequent_window;
    let mut out: Vec<Finding> = history
        .recent
        .iter()
        .filter_map(|((principal, role), times)| {
            let count = times.iter().filter(|t| **t >= since && **t <= now).count();
            (count > settings.frequent_count).then(|| Finding {
                id: format!("frequent:{principal}:{role}"),
                kind: AlertKind::FrequentActivation,
                severity: Severity::Low,
                title: format!("{count} activations of {} by {principal} in {} days", role_name(role), settings.frequent_window.num_days()),
                items: vec![format!("principal {principal}, role {}: {count} activations (more than {})", role_name(role), settings.frequent_count)],
                remediation: "Check whether the work needs the role this often: a narrower role, a longer activation or a standing assignment with an owner may fit better.".into(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Every finding of a pass. `found` is `None` when the assignments could not all be listed: the
/// kinds that need them are left out (and the service leaves their alerts as they were).
pub fn evaluate(
    policy: &Policy,
    found: Option<&[Found]>,
    history: &ActivationHistory,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let settings = policy.governance();
    let mut all = Vec::new();
    if let Some(found) = found {
        all.extend(assigned_outside(policy, policy.standing(), found, settings, now));
        all.extend(too_many_permanent(found, settings));
    }
    all.extend(stale_eligibility(policy, history, settings, now));
    all.extend(weak_rules(policy, settings, now));
    all.extend(frequent_activation(history, settings, now));
    let mut seen = HashSet::new();
    all.retain(|f| seen.insert(f.id.clone()));
    all
}
