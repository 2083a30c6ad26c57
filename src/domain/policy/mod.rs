//! The policy: who may activate which role at which scope, and on what terms.
//!
//! Deny by default. `authorize_activation` returns an [`AuthorizedRequest`], which only this
//! module can construct, and an activation can only be opened from one: a request that did not
//! pass the policy cannot become an activation. Loading (`Policy::from_yaml`) reports every
//! problem with its file, rule and field. No I/O here: the caller reads the file.
//!
//! Three rooms: this file holds the model (rules, requests, the capabilities evaluation hands
//! out); `evaluate` decides (eligibility, terms, starts, extensions); `load` parses and checks the
//! YAML.

mod evaluate;
mod load;
#[cfg(test)]
mod properties;
mod reviews;
mod standing;
#[cfg(test)]
mod tests;

pub use evaluate::{Deny, Refusal, Violation};
pub use load::{PolicyError, PolicyProblem};
pub use reviews::{Period, ReviewDefinition, Reviewers, Undecided};
pub use standing::{DEFAULT_PRIVILEGED, GovernanceSettings, StandingException};

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::duration::IsoDuration;
use super::ids::{
    AuthContextId, DisplayName, Justification, ParseError, PrincipalId, PrincipalRef, RoleDefinitionId, RuleId, Ticket,
};
use super::scope::{Scope, ScopeKind, ScopeLevel};

/// Shortest activation anyone may ask for.
pub const MIN_ACTIVATION: IsoDuration = IsoDuration::from_minutes(5);
/// Longest activation any rule may allow (PIM's ceiling too).
pub const MAX_ACTIVATION: IsoDuration = IsoDuration::from_hours(24);
/// Approval windows: at least 5 minutes, at most 14 days (PIM's is fixed at 24 h).
pub const MIN_APPROVAL_WINDOW: IsoDuration = IsoDuration::from_minutes(5);
pub const MAX_APPROVAL_WINDOW: IsoDuration = IsoDuration::from_hours(14 * 24);
/// How far ahead a scheduled start may lie, and how far behind `now` a start is still "now".
pub const MAX_SCHEDULE_AHEAD: TimeDelta = TimeDelta::days(30);
pub const START_SKEW: TimeDelta = TimeDelta::minutes(5);
/// Most approvals a rule may demand.
pub const MAX_MIN_APPROVALS: u8 = 10;

/// The approval a rule demands.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalPolicy {
    pub approvers: Vec<PrincipalRef>,
    pub min_approvals: u8,
    pub timeout: IsoDuration,
    /// Approvers must prove MFA when deciding.
    pub approver_mfa: bool,
}

/// One rule of the policy file, with defaults already applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    pub description: Option<String>,
    pub scope: Scope,
    pub roles: Vec<RoleDefinitionId>,
    pub principals: Vec<PrincipalRef>,
    pub max_duration: IsoDuration,
    pub require_mfa: bool,
    pub require_justification: bool,
    pub require_ticket: bool,
    pub auth_context: Option<AuthContextId>,
    pub approval: Option<ApprovalPolicy>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Entries of `principals` an access review removed (kept in the store, applied by
    /// [`Policy::with_suspended`]): no longer eligible, though the file still names them.
    pub suspended: Vec<PrincipalRef>,
}

/// Whether `role` can be held at `scope`: a built-in directory role that Entra refuses at an
/// administrative unit (Global Administrator, …) cannot. Roles of the wrong kind never get here:
/// the loader and the request parser read roles in the scope's kind.
pub fn role_fits_scope(role: RoleDefinitionId, scope: &Scope) -> bool {
    match scope.level() {
        ScopeLevel::AdministrativeUnit => role.assignable_at_administrative_unit() != Some(false),
        ScopeLevel::ManagementGroup
        | ScopeLevel::Subscription
        | ScopeLevel::ResourceGroup
        | ScopeLevel::Resource
        | ScopeLevel::Directory
        | ScopeLevel::Group => true,
    }
}

impl Policy {
    /// What a valid policy may still get wrong in composition, in words (`check-policy` prints
    /// these; start-up logs them). Nothing here is refused: each may be intended.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for rule in self.rules.iter().filter(|r| r.scope.kind() == ScopeKind::Group) {
            let Some(group) = rule.scope.group_id().map(PrincipalId::from) else { continue };
            let grants_owner = rule.roles.iter().any(|r| r.group_role() == Some("owner"));
            if grants_owner {
                out.push(format!(
                    "rule `{}` grants ownership of group {group}: an owner can add standing members, which outlive the activation",
                    rule.id
                ));
            }
            let uses: Vec<&str> = self
                .rules
                .iter()
                .filter(|other| {
                    other.principals.contains(&PrincipalRef::Group(group))
                        || other.approval.as_ref().is_some_and(|a| a.approvers.contains(&PrincipalRef::Group(group)))
                })
                .map(|other| other.id.as_str())
                .collect();
            if !uses.is_empty() {
                out.push(format!(
                    "rule `{}` grants membership of group {group}, which rules {} name as eligible or as approvers: while it lasts the activation also grants what they allow",
                    rule.id,
                    uses.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        out
    }

    /// Every group the policy names, as eligible principals or as approvers, once each.
    pub fn named_groups(&self) -> Vec<PrincipalId> {
        let mut groups: Vec<PrincipalId> = Vec::new();
        let refs = self
            .rules
            .iter()
            .flat_map(|r| r.principals.iter().chain(r.approval.iter().flat_map(|a| a.approvers.iter())));
        let reviewers = self.reviews.iter().flat_map(|r| match &r.reviewers {
            Reviewers::Named(named) => named.as_slice(),
            Reviewers::Approvers | Reviewers::SelfReview => &[],
        });
        for r in refs.chain(reviewers) {
            if let PrincipalRef::Group(g) = r
                && !groups.contains(g)
            {
                groups.push(*g);
            }
        }
        groups
    }
}

impl Rule {
    /// Which of the rule's principals the subject is, if any (a direct user entry first).
    /// Suspended entries make no one eligible.
    pub fn matching_principal(&self, principal: &PrincipalId, groups: &[PrincipalId]) -> Option<PrincipalRef> {
        let live = || self.principals.iter().filter(|p| !self.suspended.contains(p));
        let direct = live().find(|p| matches!(p, PrincipalRef::User(_)) && p.matches(principal, groups));
        direct.or_else(|| live().find(|p| p.matches(principal, groups))).copied()
    }

    /// The suspended entry through which the subject would have been eligible, if any.
    pub fn suspended_match(&self, principal: &PrincipalId, groups: &[PrincipalId]) -> Option<PrincipalRef> {
        self.suspended.iter().find(|p| self.principals.contains(p) && p.matches(principal, groups)).copied()
    }

    pub fn covers(&self, role: &RoleDefinitionId, scope: &Scope) -> bool {
        self.roles.contains(role) && self.scope.contains(scope)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub fn is_approver(&self, principal: &PrincipalId, groups: &[PrincipalId]) -> bool {
        self.approval.as_ref().is_some_and(|a| a.approvers.iter().any(|p| p.matches(principal, groups)))
    }
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Assignments accepted as standing (`standing:`): governance does not report them.
    standing: Vec<StandingException>,
    /// Thresholds of the governance alerts (`governance:`).
    governance: GovernanceSettings,
    /// Access reviews (`reviews:`).
    reviews: Vec<ReviewDefinition>,
    /// The file's name and text, for patches a maintainer applies to it.
    source: (String, String),
}

impl Policy {
    pub fn standing(&self) -> &[StandingException] {
        &self.standing
    }

    /// The file's name and the text it was read from.
    pub fn source(&self) -> (&str, &str) {
        (&self.source.0, &self.source.1)
    }

    pub fn reviews(&self) -> &[ReviewDefinition] {
        &self.reviews
    }

    pub fn review(&self, id: &RuleId) -> Option<&ReviewDefinition> {
        self.reviews.iter().find(|r| &r.id == id)
    }

    /// This policy with the eligibilities access reviews removed: each `(rule, entry)` makes no
    /// one eligible from now on. Pairs naming a rule or an entry the file no longer has are
    /// ignored (nothing left to suspend).
    pub fn with_suspended<'a>(&self, suspended: impl IntoIterator<Item = (&'a RuleId, PrincipalRef)>) -> Policy {
        let mut out = self.clone();
        for (rule, entry) in suspended {
            if let Some(r) = out.rules.iter_mut().find(|r| &r.id == rule)
                && r.principals.contains(&entry)
                && !r.suspended.contains(&entry)
            {
                r.suspended.push(entry);
            }
        }
        out
    }

    pub fn governance(&self) -> &GovernanceSettings {
        &self.governance
    }
}

/// Who is asking, as far as the policy cares. Built by the service from an authenticated caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub principal_id: PrincipalId,
    pub groups: Vec<PrincipalId>,
    /// The token proves multi-factor authentication (`amr` contains `mfa`).
    pub mfa: bool,
    /// Conditional Access authentication contexts satisfied (`acrs`).
    pub auth_contexts: Vec<AuthContextId>,
}

/// What a caller asks for, already parsed.
#[derive(Clone, Debug)]
pub struct ActivationDraft {
    pub principal_id: PrincipalId,
    pub role_definition_id: RoleDefinitionId,
    pub scope: Scope,
    pub rule_id: Option<RuleId>,
    pub duration: Option<IsoDuration>,
    pub justification: Option<Justification>,
    pub ticket: Option<Ticket>,
    pub start_at: Option<DateTime<Utc>>,
}

/// The approval terms fixed when a request is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalTerms {
    pub min_approvals: u8,
    pub timeout: IsoDuration,
}

/// The immutable part of an activation: what was asked, under which rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationRequest {
    pub principal_id: PrincipalId,
    pub role_definition_id: RoleDefinitionId,
    pub scope: Scope,
    pub rule_id: RuleId,
    /// The rule entry that made the principal eligible (`user:..` or `group:..`).
    pub eligible_via: PrincipalRef,
    pub duration: IsoDuration,
    pub justification: Option<Justification>,
    pub ticket: Option<Ticket>,
    pub requested_at: DateTime<Utc>,
    pub start_at: Option<DateTime<Utc>>,
    pub approval: Option<ApprovalTerms>,
    /// The requester's display name as their sign-in gave it, for people reading a request
    /// (approval page, Teams). Never used to decide anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_name: Option<DisplayName>,
}

/// What the policy says of a request before it is made (`Policy::assess`).
#[derive(Clone, Debug)]
pub struct Assessment<'p> {
    pub rule: &'p Rule,
    /// The rule entry that makes the principal eligible.
    pub via: PrincipalRef,
    pub duration: IsoDuration,
    /// When access would start: now, or the scheduled start.
    pub start: DateTime<Utc>,
    /// When it would end if granted at `start` (an approval later moves both).
    pub ends: DateTime<Utc>,
    /// Terms still unmet, in the order a request is refused for them: authentication context,
    /// MFA, justification, ticket. Empty: the request would be accepted as it stands.
    pub needs: Vec<Violation>,
}

/// Proof that a request met the policy. Only `Policy::authorize_activation` makes one.
#[derive(Clone, Debug)]
pub struct AuthorizedRequest(ActivationRequest);

impl AuthorizedRequest {
    pub fn request(&self) -> &ActivationRequest {
        &self.0
    }
    pub(super) fn into_request(self) -> ActivationRequest {
        self.0
    }

    /// Labels the request with the requester's display name (display only).
    pub fn with_principal_name(mut self, name: Option<DisplayName>) -> Self {
        self.0.principal_name = name;
        self
    }
}

/// An extension asked of an active activation.
#[derive(Clone, Debug)]
pub struct ExtensionDraft<'a> {
    pub request: &'a ActivationRequest,
    pub activated_at: DateTime<Utc>,
    pub current_expiry: DateTime<Utc>,
    pub additional: IsoDuration,
    pub justification: Option<Justification>,
}

/// Proof that an extension met the policy. Only `Policy::authorize_extension` makes one.
#[derive(Clone, Debug)]
pub struct AuthorizedExtension {
    pub(super) additional: IsoDuration,
    pub(super) justification: Option<Justification>,
    pub(super) approval: Option<ApprovalTerms>,
}

impl AuthorizedExtension {
    pub fn needs_approval(&self) -> bool {
        self.approval.is_some()
    }
}

/// Capability: at the time it was checked, the requester of an activation was still eligible
/// under its rule, whose eligibility ends at `ends` (if ever). Only [`Policy::eligibility`] makes
/// one; approving a request ([`crate::domain::approver::Approver`]) and starting one
/// ([`StartPermit`]) carry it, so access that begins is always bounded by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eligibility {
    rule: RuleId,
    ends: Option<DateTime<Utc>>,
}

/// When access must end: the requested end, or the end of eligibility where that comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessWindow {
    pub expires_at: DateTime<Utc>,
    /// Set when the end of eligibility cut the requested access short.
    pub limit: Option<ExpiryLimit>,
}

/// Access was cut short at the end of eligibility (the rule's `expiresAt`). Stored with the
/// activation, so the cut is visible for as long as the activation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryLimit {
    /// The rule's `expiresAt`: when access now ends.
    pub eligibility_ends: DateTime<Utc>,
    /// When access would have ended without the cut.
    pub requested_expiry: DateTime<Utc>,
}

impl ExpiryLimit {
    /// How much shorter access is than asked for.
    pub fn shortened_by(&self) -> TimeDelta {
        self.requested_expiry - self.eligibility_ends
    }

    /// The audit's words for the cut, naming the rule.
    pub fn describe(&self, rule: &RuleId) -> String {
        let shorter = IsoDuration::from_delta(self.shortened_by())
            .map_or_else(|| "less than a second".to_owned(), |d| d.to_string());
        format!(
            "expiry limited by eligibility: rule `{rule}` ends at {}, so access ends then, {shorter} before the requested {}",
            rfc3339(&self.eligibility_ends),
            rfc3339(&self.requested_expiry)
        )
    }
}

/// Too little eligibility is left for any access to begin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "eligibility under rule `{rule}` ends at {}, less than the minimum `{MIN_ACTIVATION}` after access would begin at {}",
    rfc3339(.ends),
    rfc3339(.begin)
)]
pub struct EligibilityEndsTooSoon {
    pub rule: RuleId,
    pub ends: DateTime<Utc>,
    pub begin: DateTime<Utc>,
}

impl Eligibility {
    pub fn rule(&self) -> &RuleId {
        &self.rule
    }

    /// The end of eligibility, if the rule has one.
    pub fn ends(&self) -> Option<DateTime<Utc>> {
        self.ends
    }

    /// Access of `duration` beginning at `begin`: it ends as asked, or at the end of eligibility
    /// where that comes first; refused when less than [`MIN_ACTIVATION`] would be left.
    pub fn window(&self, begin: DateTime<Utc>, duration: IsoDuration) -> Result<AccessWindow, EligibilityEndsTooSoon> {
        let requested_expiry = begin + duration.as_delta();
        match self.ends {
            Some(ends) if ends - begin < MIN_ACTIVATION.as_delta() => {
                Err(EligibilityEndsTooSoon { rule: self.rule.clone(), ends, begin })
            }
            Some(ends) if ends < requested_expiry => Ok(AccessWindow {
                expires_at: ends,
                limit: Some(ExpiryLimit { eligibility_ends: ends, requested_expiry }),
            }),
            Some(_) | None => Ok(AccessWindow { expires_at: requested_expiry, limit: None }),
        }
    }

    /// An approved extension from `current` to `requested`: cut at the end of eligibility;
    /// refused when eligibility ends before the current expiry, so nothing could be added.
    pub fn extension(
        &self,
        current: DateTime<Utc>,
        requested: DateTime<Utc>,
    ) -> Result<AccessWindow, EligibilityEndsTooSoon> {
        match self.ends {
            Some(ends) if ends <= current => {
                Err(EligibilityEndsTooSoon { rule: self.rule.clone(), ends, begin: current })
            }
            Some(ends) if ends < requested => Ok(AccessWindow {
                expires_at: ends,
                limit: Some(ExpiryLimit { eligibility_ends: ends, requested_expiry: requested }),
            }),
            Some(_) | None => Ok(AccessWindow { expires_at: requested, limit: None }),
        }
    }
}

/// Capability: a scheduled activation may start now, until `window().expires_at`. Only
/// [`Policy::authorize_start`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartPermit {
    window: AccessWindow,
}

impl StartPermit {
    pub fn window(&self) -> AccessWindow {
        self.window
    }
}

/// Why an activation may not start after all. Each arm has a stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartRefusal {
    #[error("the requester is no longer eligible: {0}")]
    NoLongerEligible(Deny),
    #[error(transparent)]
    EligibilityEndsTooSoon(EligibilityEndsTooSoon),
}

impl StartRefusal {
    /// The stable code recorded as the activation's failure.
    pub fn code(&self) -> &'static str {
        match self {
            StartRefusal::NoLongerEligible(_) => "NoLongerEligible",
            StartRefusal::EligibilityEndsTooSoon(_) => "EligibilityEndsTooSoon",
        }
    }
}

fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
