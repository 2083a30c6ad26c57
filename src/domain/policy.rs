//! The policy: who may activate which role at which scope, and on what terms.
//!
//! Deny by default. `authorize_activation` returns an [`AuthorizedRequest`], which only this
//! module can construct, and an activation can only be opened from one: a request that did not
//! pass the policy cannot become an activation. Loading (`Policy::from_yaml`) reports every
//! problem with its file, rule and field. No I/O here: the caller reads the file.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::duration::IsoDuration;
use super::ids::{
    AuthContextId, DisplayName, Justification, ParseError, PrincipalId, PrincipalRef, RoleDefinitionId, RuleId, Ticket,
};
use super::scope::Scope;

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
}

impl Rule {
    /// Which of the rule's principals the subject is, if any (a direct user entry first).
    pub fn matching_principal(&self, principal: &PrincipalId, groups: &[PrincipalId]) -> Option<PrincipalRef> {
        let direct =
            self.principals.iter().find(|p| matches!(p, PrincipalRef::User(_)) && p.matches(principal, groups));
        direct.or_else(|| self.principals.iter().find(|p| p.matches(principal, groups))).copied()
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

/// Why the policy said no to eligibility. Every arm says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Deny {
    #[error("no rule makes principal `{principal}` eligible for role `{role}` at scope `{scope}`")]
    NotEligible { principal: PrincipalId, role: RoleDefinitionId, scope: String },
    #[error("rule `{0}` does not exist")]
    RuleNotFound(RuleId),
    #[error("rule `{rule}` does not make principal `{principal}` eligible for role `{role}` at scope `{scope}`")]
    RuleDoesNotApply { rule: RuleId, principal: PrincipalId, role: RoleDefinitionId, scope: String },
    #[error("eligibility under rule `{rule}` ended at {at}")]
    EligibilityExpired { rule: RuleId, at: DateTime<Utc> },
}

/// A request that is eligible but does not meet the rule's terms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("duration `{requested}` exceeds the maximum `{max}` of rule `{rule}`")]
    DurationTooLong { requested: IsoDuration, max: IsoDuration, rule: RuleId },
    #[error("duration `{requested}` is shorter than the minimum `{min}`")]
    DurationTooShort { requested: IsoDuration, min: IsoDuration },
    #[error("rule `{0}` requires a justification")]
    JustificationRequired(RuleId),
    #[error("rule `{0}` requires a ticket (system and number)")]
    TicketRequired(RuleId),
    #[error("rule `{0}` requires multi-factor authentication; sign in again with MFA")]
    MfaRequired(RuleId),
    #[error("rule `{rule}` requires authentication context `{context}`")]
    AuthContextRequired { rule: RuleId, context: AuthContextId },
    #[error("startAt `{0}` lies in the past")]
    StartInPast(DateTime<Utc>),
    #[error("startAt `{0}` lies more than 30 days ahead")]
    StartTooFar(DateTime<Utc>),
    #[error("the activation would end at {ends}, after eligibility under rule `{rule}` ends at {eligibility_ends}")]
    OutlastsEligibility { rule: RuleId, ends: DateTime<Utc>, eligibility_ends: DateTime<Utc> },
    #[error(
        "extending by `{requested}` would exceed the maximum `{max}` of rule `{rule}` counted from the start at {started}"
    )]
    ExtensionTooLong { requested: IsoDuration, max: IsoDuration, rule: RuleId, started: DateTime<Utc> },
}

/// Everything that can stop an activation request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Denied(#[from] Deny),
    #[error(transparent)]
    Violation(#[from] Violation),
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

impl Policy {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, id: &RuleId) -> Option<&Rule> {
        self.rules.iter().find(|r| &r.id == id)
    }

    /// The scopes where the policy can grant access, without any scope another one contains:
    /// listing each of these once sees every assignment Elevate may have made.
    pub fn managed_scopes(&self) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = Vec::new();
        for rule in &self.rules {
            if scopes.iter().any(|s| s.contains(&rule.scope)) {
                continue;
            }
            scopes.retain(|s| !rule.scope.contains(s));
            scopes.push(rule.scope.clone());
        }
        scopes
    }

    /// Rules the subject may activate under now.
    pub fn eligible_rules<'a>(
        &'a self,
        principal: &'a PrincipalId,
        groups: &'a [PrincipalId],
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| !r.is_expired(now) && r.matching_principal(principal, groups).is_some())
    }

    /// Rules for which the subject is an approver.
    pub fn approver_rules<'a>(
        &'a self,
        principal: &'a PrincipalId,
        groups: &'a [PrincipalId],
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.is_approver(principal, groups))
    }

    /// The rule under which `principal` may hold `role` at `scope`: the named one, or else the
    /// most specific match (the first in the file on a tie).
    pub fn select_rule(
        &self,
        principal: &PrincipalId,
        groups: &[PrincipalId],
        role: &RoleDefinitionId,
        scope: &Scope,
        rule_id: Option<&RuleId>,
        now: DateTime<Utc>,
    ) -> Result<(&Rule, PrincipalRef), Deny> {
        if let Some(id) = rule_id {
            let rule = self.rule(id).ok_or_else(|| Deny::RuleNotFound(id.clone()))?;
            let via =
                rule.matching_principal(principal, groups).filter(|_| rule.covers(role, scope)).ok_or_else(|| {
                    Deny::RuleDoesNotApply {
                        rule: id.clone(),
                        principal: *principal,
                        role: *role,
                        scope: scope.to_string(),
                    }
                })?;
            if let Some(at) = rule.expires_at.filter(|_| rule.is_expired(now)) {
                return Err(Deny::EligibilityExpired { rule: id.clone(), at });
            }
            return Ok((rule, via));
        }
        let mut best: Option<(&Rule, PrincipalRef)> = None;
        let mut expired: Option<&Rule> = None;
        for rule in &self.rules {
            let Some(via) = rule.matching_principal(principal, groups).filter(|_| rule.covers(role, scope)) else {
                continue;
            };
            if rule.is_expired(now) {
                expired = expired.or(Some(rule));
                continue;
            }
            if best.is_none_or(|(b, _)| rule.scope.depth() > b.scope.depth()) {
                best = Some((rule, via));
            }
        }
        match (best, expired) {
            (Some(found), _) => Ok(found),
            (None, Some(rule)) => {
                Err(Deny::EligibilityExpired { rule: rule.id.clone(), at: rule.expires_at.unwrap_or(now) })
            }
            (None, None) => Err(Deny::NotEligible { principal: *principal, role: *role, scope: scope.to_string() }),
        }
    }

    /// Deny by default: the request becomes an [`AuthorizedRequest`] only if a rule makes the
    /// principal eligible and every term of that rule is met.
    ///
    /// `subject` is the evidence about the person who will hold the access (for brokered
    /// requests the service passes a subject without MFA evidence).
    pub fn authorize_activation(
        &self,
        draft: ActivationDraft,
        subject: &Subject,
        now: DateTime<Utc>,
    ) -> Result<AuthorizedRequest, Refusal> {
        let (rule, via) = self.select_rule(
            &draft.principal_id,
            &subject.groups,
            &draft.role_definition_id,
            &draft.scope,
            draft.rule_id.as_ref(),
            now,
        )?;
        let duration = draft.duration.unwrap_or(rule.max_duration);
        if duration > rule.max_duration {
            return Err(Violation::DurationTooLong {
                requested: duration,
                max: rule.max_duration,
                rule: rule.id.clone(),
            }
            .into());
        }
        if duration < MIN_ACTIVATION {
            return Err(Violation::DurationTooShort { requested: duration, min: MIN_ACTIVATION }.into());
        }
        check_evidence(rule, subject)?;
        if rule.require_justification && draft.justification.is_none() {
            return Err(Violation::JustificationRequired(rule.id.clone()).into());
        }
        if rule.require_ticket && draft.ticket.is_none() {
            return Err(Violation::TicketRequired(rule.id.clone()).into());
        }
        let start = match draft.start_at {
            Some(at) if at < now - START_SKEW => return Err(Violation::StartInPast(at).into()),
            Some(at) if at > now + MAX_SCHEDULE_AHEAD => {
                return Err(Violation::StartTooFar(at).into());
            }
            Some(at) => at.max(now),
            None => now,
        };
        if let Some(eligibility_ends) = rule.expires_at {
            let ends = start + duration.as_delta();
            if ends > eligibility_ends {
                return Err(Violation::OutlastsEligibility { rule: rule.id.clone(), ends, eligibility_ends }.into());
            }
        }
        Ok(AuthorizedRequest(ActivationRequest {
            principal_id: draft.principal_id,
            role_definition_id: draft.role_definition_id,
            scope: draft.scope,
            rule_id: rule.id.clone(),
            eligible_via: via,
            duration,
            justification: draft.justification,
            ticket: draft.ticket,
            requested_at: now,
            start_at: draft.start_at.filter(|at| *at > now),
            approval: rule
                .approval
                .as_ref()
                .map(|a| ApprovalTerms { min_approvals: a.min_approvals, timeout: a.timeout }),
            principal_name: None,
        }))
    }

    /// Whether the requester of `request` is still eligible under its rule now (re-checked when
    /// an approver decides, when a scheduled activation starts and when an extension is asked
    /// for).
    pub fn still_eligible(&self, request: &ActivationRequest, now: DateTime<Utc>) -> Result<&Rule, Deny> {
        let rule = self.rule(&request.rule_id).ok_or_else(|| Deny::RuleNotFound(request.rule_id.clone()))?;
        if !rule.principals.contains(&request.eligible_via) || !rule.covers(&request.role_definition_id, &request.scope)
        {
            return Err(Deny::RuleDoesNotApply {
                rule: rule.id.clone(),
                principal: request.principal_id,
                role: request.role_definition_id,
                scope: request.scope.to_string(),
            });
        }
        if let Some(at) = rule.expires_at.filter(|_| rule.is_expired(now)) {
            return Err(Deny::EligibilityExpired { rule: rule.id.clone(), at });
        }
        Ok(rule)
    }

    /// [`Policy::still_eligible`] as a capability carrying the end of eligibility.
    pub fn eligibility(&self, request: &ActivationRequest, now: DateTime<Utc>) -> Result<Eligibility, Deny> {
        let rule = self.still_eligible(request, now)?;
        Ok(Eligibility { rule: rule.id.clone(), ends: rule.expires_at })
    }

    /// Whether a scheduled activation may start now: the rule still exists, still names the
    /// entry that made the requester eligible, still covers the role and scope, has not ended,
    /// and leaves at least [`MIN_ACTIVATION`] of access; the permit bounds access by its end.
    pub fn authorize_start(
        &self,
        request: &ActivationRequest,
        now: DateTime<Utc>,
    ) -> Result<StartPermit, StartRefusal> {
        let eligibility = self.eligibility(request, now).map_err(StartRefusal::NoLongerEligible)?;
        let window = eligibility.window(now, request.duration).map_err(StartRefusal::EligibilityEndsTooSoon)?;
        Ok(StartPermit { window })
    }

    /// An extension of an active activation by `additional`, bounded by the rule's maximum
    /// counted from the original start, with the same evidence as an activation.
    pub fn authorize_extension(
        &self,
        draft: ExtensionDraft<'_>,
        subject: &Subject,
        now: DateTime<Utc>,
    ) -> Result<AuthorizedExtension, Refusal> {
        let ExtensionDraft { request, activated_at, current_expiry, additional, justification } = draft;
        let rule = self.still_eligible(request, now)?;
        check_evidence(rule, subject)?;
        if rule.require_justification && justification.is_none() {
            return Err(Violation::JustificationRequired(rule.id.clone()).into());
        }
        let new_expiry = current_expiry + additional.as_delta();
        if new_expiry > activated_at + rule.max_duration.as_delta() {
            return Err(Violation::ExtensionTooLong {
                requested: additional,
                max: rule.max_duration,
                rule: rule.id.clone(),
                started: activated_at,
            }
            .into());
        }
        if let Some(eligibility_ends) = rule.expires_at.filter(|end| new_expiry > *end) {
            return Err(
                Violation::OutlastsEligibility { rule: rule.id.clone(), ends: new_expiry, eligibility_ends }.into()
            );
        }
        Ok(AuthorizedExtension {
            additional,
            justification,
            approval: rule
                .approval
                .as_ref()
                .map(|a| ApprovalTerms { min_approvals: a.min_approvals, timeout: a.timeout }),
        })
    }
}

/// MFA and authentication context: each demand the rule makes must hold on its own. The
/// authentication context is asked for first: its claims challenge is the stronger step-up, and
/// the sign-in it triggers may prove MFA too. A satisfied context is no proof of MFA by itself
/// (what a Conditional Access policy bound to it demands is not visible here); MFA is proven by
/// `amr`, or by the context the deployment declares to require MFA (`ELEVATE_MFA_AUTH_CONTEXT`),
/// both already folded into `subject.mfa`.
fn check_evidence(rule: &Rule, subject: &Subject) -> Result<(), Violation> {
    if let Some(context) = &rule.auth_context
        && !subject.auth_contexts.contains(context)
    {
        return Err(Violation::AuthContextRequired { rule: rule.id.clone(), context: context.clone() });
    }
    if rule.require_mfa && !subject.mfa {
        return Err(Violation::MfaRequired(rule.id.clone()));
    }
    Ok(())
}

// ----- loading -------------------------------------------------------------------------------

/// One problem in a policy file: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem {
    pub file: String,
    /// `rules[2] (prod-contributor).maxDuration`, or the serde path for structural errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

/// Every problem found in a policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError(pub Vec<PolicyProblem>);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid policy ({} problem{})", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDefaults {
    max_duration: Option<String>,
    require_mfa: Option<bool>,
    require_justification: Option<bool>,
    require_ticket: Option<bool>,
    auth_context: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawApproval {
    approvers: Vec<String>,
    min_approvals: Option<u32>,
    timeout: Option<String>,
    approver_mfa: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    id: String,
    description: Option<String>,
    scope: String,
    roles: Vec<String>,
    principals: Vec<String>,
    max_duration: Option<String>,
    require_mfa: Option<bool>,
    require_justification: Option<bool>,
    require_ticket: Option<bool>,
    auth_context: Option<String>,
    approval: Option<RawApproval>,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    version: u32,
    #[serde(default)]
    defaults: RawDefaults,
    rules: Vec<RawRule>,
}

/// Collects problems with their paths while a raw policy is turned into a [`Policy`].
struct Problems<'a> {
    file: &'a str,
    found: Vec<PolicyProblem>,
}

impl Problems<'_> {
    fn add(&mut self, path: String, message: impl Into<String>) {
        self.found.push(PolicyProblem { file: self.file.to_owned(), path, message: message.into() });
    }

    fn parse<T>(&mut self, path: impl Fn() -> String, result: Result<T, ParseError>) -> Option<T> {
        result.map_err(|e| self.add(path(), e.to_string())).ok()
    }
}

impl Policy {
    /// Parses and validates a policy document (YAML; JSON is valid YAML). `file` names the source
    /// in every problem reported.
    pub fn from_yaml(file: &str, text: &str) -> Result<Policy, PolicyError> {
        let problem =
            |path: String, message: String| PolicyError(vec![PolicyProblem { file: file.to_owned(), path, message }]);
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawPolicy = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let location =
                inner.location().map(|l| format!(" (line {}, column {})", l.line(), l.column())).unwrap_or_default();
            problem(if path == "." { String::new() } else { path }, format!("{inner}{location}"))
        })?;
        let mut p = Problems { file, found: Vec::new() };
        if raw.version != 1 {
            p.add("version".into(), format!("unsupported version `{}`; this Elevate reads version 1", raw.version));
        }
        let d = &raw.defaults;
        let default_max = match &d.max_duration {
            Some(text) => p.parse(|| "defaults.maxDuration".into(), IsoDuration::parse(text)),
            None => Some(IsoDuration::from_hours(8)),
        };
        let default_context = match &d.auth_context {
            Some(text) => p.parse(|| "defaults.authContext".into(), AuthContextId::parse(text)),
            None => None,
        };
        if let Some(max) = default_max {
            check_bounds(&mut p, "defaults.maxDuration".into(), max, MIN_ACTIVATION, MAX_ACTIVATION);
        }
        if raw.rules.is_empty() {
            p.add("rules".into(), "the policy has no rules, so nobody could activate anything");
        }
        let mut ids = HashSet::new();
        let mut rules = Vec::new();
        for (index, r) in raw.rules.iter().enumerate() {
            let here = |field: &str| format!("rules[{index}] ({}).{field}", r.id);
            let id = p.parse(|| format!("rules[{index}].id"), RuleId::parse(&r.id));
            if let Some(id) = &id
                && !ids.insert(id.clone())
            {
                p.add(format!("rules[{index}].id"), format!("rule id `{id}` is used more than once"));
            }
            let scope = p.parse(|| here("scope"), Scope::parse(&r.scope));
            if r.roles.is_empty() {
                p.add(here("roles"), "must name at least one role");
            }
            let roles: Vec<_> = r
                .roles
                .iter()
                .enumerate()
                .filter_map(|(i, role)| p.parse(|| here(&format!("roles[{i}]")), RoleDefinitionId::parse(role)))
                .collect();
            if r.principals.is_empty() {
                p.add(here("principals"), "must name at least one principal");
            }
            let principals: Vec<_> = r
                .principals
                .iter()
                .enumerate()
                .filter_map(|(i, who)| p.parse(|| here(&format!("principals[{i}]")), PrincipalRef::parse(who)))
                .collect();
            let max_duration = match &r.max_duration {
                Some(text) => p.parse(|| here("maxDuration"), IsoDuration::parse(text)),
                None => default_max,
            };
            if let (Some(max), Some(_)) = (max_duration, &r.max_duration) {
                check_bounds(&mut p, here("maxDuration"), max, MIN_ACTIVATION, MAX_ACTIVATION);
            }
            let auth_context = match &r.auth_context {
                Some(text) => p.parse(|| here("authContext"), AuthContextId::parse(text)).map(Some),
                None => Some(default_context.clone()),
            };
            let approval = r.approval.as_ref().map(|a| {
                if a.approvers.is_empty() {
                    p.add(here("approval.approvers"), "must name at least one approver");
                }
                let approvers: Vec<_> = a
                    .approvers
                    .iter()
                    .enumerate()
                    .filter_map(|(i, who)| {
                        p.parse(|| here(&format!("approval.approvers[{i}]")), PrincipalRef::parse(who))
                    })
                    .collect();
                let min = a.min_approvals.unwrap_or(1);
                let users_only = approvers.iter().all(|x| matches!(x, PrincipalRef::User(_)));
                if min == 0 || min > u32::from(MAX_MIN_APPROVALS) {
                    p.add(here("approval.minApprovals"), format!("must be between 1 and {MAX_MIN_APPROVALS}"));
                } else if users_only && !approvers.is_empty() && min as usize > approvers.len() {
                    p.add(
                        here("approval.minApprovals"),
                        format!("needs {min} approvals but only {} approver(s) are listed", approvers.len()),
                    );
                }
                let timeout = match &a.timeout {
                    Some(text) => p.parse(|| here("approval.timeout"), IsoDuration::parse(text)),
                    None => Some(IsoDuration::from_hours(24)),
                };
                if let Some(t) = timeout {
                    check_bounds(&mut p, here("approval.timeout"), t, MIN_APPROVAL_WINDOW, MAX_APPROVAL_WINDOW);
                }
                timeout.map(|timeout| ApprovalPolicy {
                    approvers,
                    min_approvals: u8::try_from(min).unwrap_or(MAX_MIN_APPROVALS),
                    timeout,
                    approver_mfa: a.approver_mfa.unwrap_or(false),
                })
            });
            let expires_at = match &r.expires_at {
                Some(text) => match DateTime::parse_from_rfc3339(text.trim()) {
                    Ok(at) => Some(Some(at.with_timezone(&Utc))),
                    Err(_) => {
                        p.add(
                            here("expiresAt"),
                            format!("`{text}` is not an RFC 3339 time such as `2027-06-30T00:00:00Z`"),
                        );
                        None
                    }
                },
                None => Some(None),
            };
            if let (Some(id), Some(scope), Some(max_duration), Some(auth_context), Some(expires_at)) =
                (id, scope, max_duration, auth_context, expires_at)
            {
                let approval = match approval {
                    Some(Some(a)) => Some(a),
                    Some(None) => continue,
                    None => None,
                };
                rules.push(Rule {
                    id,
                    description: r.description.clone(),
                    scope,
                    roles,
                    principals,
                    max_duration,
                    require_mfa: r.require_mfa.or(d.require_mfa).unwrap_or(true),
                    require_justification: r.require_justification.or(d.require_justification).unwrap_or(true),
                    require_ticket: r.require_ticket.or(d.require_ticket).unwrap_or(false),
                    auth_context,
                    approval,
                    expires_at,
                });
            }
        }
        if p.found.is_empty() { Ok(Policy { rules }) } else { Err(PolicyError(p.found)) }
    }
}

fn check_bounds(p: &mut Problems<'_>, path: String, value: IsoDuration, min: IsoDuration, max: IsoDuration) {
    if value < min || value > max {
        p.add(path, format!("`{value}` must lie between `{min}` and `{max}`"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ALICE: &str = "11111111-1111-1111-1111-111111111111";
    const BOB: &str = "22222222-2222-2222-2222-222222222222";
    const OPS: &str = "99999999-9999-9999-9999-999999999999";
    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    fn policy() -> Policy {
        let text = format!(
            r#"
version: 1
defaults:
  maxDuration: PT8H
  requireMfa: true
rules:
  - id: sub-reader
    scope: {SUB}
    roles: [Reader]
    principals: [user:{ALICE}, group:{OPS}]
    requireJustification: false
  - id: rg-reader
    scope: {SUB}/resourceGroups/app
    roles: [acdd72a7-3385-48ef-bd42-f606fba81ae7]
    principals: [user:{ALICE}]
    maxDuration: PT1H
  - id: old
    scope: {SUB}
    roles: [Contributor]
    principals: [user:{ALICE}]
    expiresAt: 2020-01-01T00:00:00Z
  - id: prod
    scope: {SUB}
    roles: [Owner]
    principals: [user:{ALICE}]
    requireTicket: true
    authContext: c1
    approval:
      approvers: [user:{BOB}]
      timeout: PT2H
"#
        );
        Policy::from_yaml("test.yaml", &text).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn subject(mfa: bool) -> Subject {
        Subject { principal_id: PrincipalId::parse(ALICE).unwrap(), groups: vec![], mfa, auth_contexts: vec![] }
    }

    fn draft(role: &str, scope: &str) -> ActivationDraft {
        ActivationDraft {
            principal_id: PrincipalId::parse(ALICE).unwrap(),
            role_definition_id: RoleDefinitionId::parse(role).unwrap(),
            scope: Scope::parse(scope).unwrap(),
            rule_id: None,
            duration: None,
            justification: Some(Justification::parse("INC-1").unwrap()),
            ticket: None,
            start_at: None,
        }
    }

    #[test]
    fn defaults_are_inherited_and_overridable() {
        let p = policy();
        let sub = p.rule(&RuleId::parse("sub-reader").unwrap()).unwrap();
        assert_eq!(sub.max_duration, IsoDuration::from_hours(8));
        assert!(sub.require_mfa);
        assert!(!sub.require_justification);
        let rg = p.rule(&RuleId::parse("rg-reader").unwrap()).unwrap();
        assert_eq!(rg.max_duration, IsoDuration::from_hours(1));
        assert!(rg.require_justification);
    }

    #[test]
    fn managed_scopes_cover_every_rule_once() {
        // Every rule of the test policy sits at or below the one subscription.
        let scopes: Vec<String> = policy().managed_scopes().iter().map(|s| s.as_str().to_owned()).collect();
        assert_eq!(scopes, [SUB]);
        let text = format!(
            "version: 1\nrules:\n  - {{id: a, scope: '{SUB}/resourceGroups/app', roles: [Reader], principals: ['user:{ALICE}']}}\n  - {{id: b, scope: '/subscriptions/00000000-0000-0000-0000-000000000002', roles: [Reader], principals: ['user:{ALICE}']}}\n  - {{id: c, scope: '{SUB}', roles: [Reader], principals: ['user:{ALICE}']}}\n"
        );
        let p = Policy::from_yaml("t.yaml", &text).unwrap();
        let scopes: Vec<String> = p.managed_scopes().iter().map(|s| s.as_str().to_owned()).collect();
        assert_eq!(scopes, ["/subscriptions/00000000-0000-0000-0000-000000000002", SUB]);
    }

    #[test]
    fn the_most_specific_rule_wins_unless_one_is_named() {
        let p = policy();
        let req = p
            .authorize_activation(draft("Reader", &format!("{SUB}/resourceGroups/APP")), &subject(true), now())
            .unwrap();
        assert_eq!(req.request().rule_id.as_str(), "rg-reader");
        let mut named = draft("Reader", &format!("{SUB}/resourceGroups/app"));
        named.rule_id = Some(RuleId::parse("sub-reader").unwrap());
        let req = p.authorize_activation(named, &subject(true), now()).unwrap();
        assert_eq!(req.request().rule_id.as_str(), "sub-reader");
    }

    #[test]
    fn deny_by_default_with_a_reason() {
        let p = policy();
        let bob = Subject { principal_id: PrincipalId::parse(BOB).unwrap(), ..subject(true) };
        let mut d = draft("Reader", SUB);
        d.principal_id = bob.principal_id;
        assert!(matches!(p.authorize_activation(d, &bob, now()), Err(Refusal::Denied(Deny::NotEligible { .. }))));
        assert!(matches!(
            p.authorize_activation(
                draft("Reader", "/subscriptions/00000000-0000-0000-0000-000000000002"),
                &subject(true),
                now()
            ),
            Err(Refusal::Denied(Deny::NotEligible { .. }))
        ));
        assert!(matches!(
            p.authorize_activation(draft("Contributor", SUB), &subject(true), now()),
            Err(Refusal::Denied(Deny::EligibilityExpired { .. }))
        ));
        assert!(matches!(
            p.authorize_activation(draft("Reader", SUB), &subject(false), now()),
            Err(Refusal::Violation(Violation::MfaRequired(_)))
        ));
    }

    #[test]
    fn group_membership_makes_eligible() {
        let p = policy();
        let carol = PrincipalId::parse("33333333-3333-3333-3333-333333333333").unwrap();
        let s = Subject {
            principal_id: carol,
            groups: vec![PrincipalId::parse(OPS).unwrap()],
            mfa: true,
            auth_contexts: vec![],
        };
        let mut d = draft("Reader", SUB);
        d.principal_id = carol;
        let req = p.authorize_activation(d, &s, now()).unwrap();
        assert_eq!(req.request().eligible_via.to_string(), format!("group:{OPS}"));
    }

    #[test]
    fn auth_context_and_ticket_are_enforced() {
        let p = policy();
        assert!(matches!(
            p.authorize_activation(draft("Owner", SUB), &subject(true), now()),
            Err(Refusal::Violation(Violation::AuthContextRequired { .. }))
        ));
        let with_context = Subject { auth_contexts: vec![AuthContextId::parse("c1").unwrap()], ..subject(true) };
        assert!(matches!(
            p.authorize_activation(draft("Owner", SUB), &with_context, now()),
            Err(Refusal::Violation(Violation::TicketRequired(_)))
        ));
    }

    /// Security review, issue 11, item 4: `requireMfa` used to be dropped when the rule also
    /// named an authentication context.
    #[test]
    fn an_authentication_context_does_not_stand_in_for_required_mfa() {
        let text = format!(
            "version: 1\ndefaults: {{requireMfa: true}}\nrules:\n  - {{id: both, scope: '{SUB}', roles: [Reader], principals: ['user:{ALICE}'], authContext: c1}}\n  - {{id: context-only, scope: '{SUB}', roles: [Contributor], principals: ['user:{ALICE}'], authContext: c1, requireMfa: false}}\n"
        );
        let p = Policy::from_yaml("t.yaml", &text).unwrap();
        let evidence = |mfa: bool, context: bool| Subject {
            auth_contexts: if context { vec![AuthContextId::parse("c1").unwrap()] } else { vec![] },
            ..subject(mfa)
        };
        let outcome = |role: &str, s: &Subject| match p.authorize_activation(draft(role, SUB), s, now()) {
            Ok(_) => "ok",
            Err(Refusal::Violation(Violation::AuthContextRequired { .. })) => "AuthContextRequired",
            Err(Refusal::Violation(Violation::MfaRequired(_))) => "MfaRequired",
            Err(other) => panic!("{other}"),
        };
        // (mfa, context) → outcome; the context is asked for first.
        for (mfa, context, both, context_only) in [
            (false, false, "AuthContextRequired", "AuthContextRequired"),
            (true, false, "AuthContextRequired", "AuthContextRequired"),
            (false, true, "MfaRequired", "ok"),
            (true, true, "ok", "ok"),
        ] {
            let s = evidence(mfa, context);
            assert_eq!(
                (outcome("Reader", &s), outcome("Contributor", &s)),
                (both, context_only),
                "mfa {mfa}, context {context}"
            );
        }
        // Extensions are held to the same evidence.
        let request = p.authorize_activation(draft("Reader", SUB), &evidence(true, true), now()).unwrap();
        let extension = |s: &Subject| {
            let draft = ExtensionDraft {
                request: request.request(),
                activated_at: now(),
                current_expiry: now() + TimeDelta::hours(1),
                additional: IsoDuration::from_hours(1),
                justification: Some(Justification::parse("more").unwrap()),
            };
            p.authorize_extension(draft, s, now())
        };
        assert!(matches!(extension(&evidence(false, true)), Err(Refusal::Violation(Violation::MfaRequired(_)))));
        assert!(extension(&evidence(true, true)).is_ok());
    }

    fn eligibility(ends: Option<&str>) -> Eligibility {
        Eligibility { rule: RuleId::parse("r").unwrap(), ends: ends.map(|at| at.parse().unwrap()) }
    }

    #[test]
    fn access_is_cut_at_the_end_of_eligibility_and_refused_under_the_minimum() {
        let minutes = |m: i64| now() + TimeDelta::minutes(m);
        let open_ended = eligibility(None);
        assert_eq!(
            open_ended.window(now(), IsoDuration::from_hours(1)).unwrap(),
            AccessWindow { expires_at: minutes(60), limit: None }
        );
        let ending = eligibility(Some("2026-11-25T12:15:00Z"));
        assert_eq!(
            ending.window(now(), IsoDuration::from_minutes(15)).unwrap(),
            AccessWindow { expires_at: minutes(15), limit: None },
            "ending exactly at the end is not a cut"
        );
        let cut = ending.window(minutes(3), IsoDuration::parse("PT14M50S").unwrap()).unwrap();
        let limit = cut.limit.unwrap();
        assert_eq!((cut.expires_at, limit.requested_expiry), (minutes(15), minutes(17) + TimeDelta::seconds(50)));
        assert_eq!(limit.shortened_by(), TimeDelta::seconds(170));
        assert_eq!(
            limit.describe(&RuleId::parse("r").unwrap()),
            "expiry limited by eligibility: rule `r` ends at 2026-11-25T12:15:00Z, so access ends then, PT2M50S before the requested 2026-11-25T12:17:50Z"
        );
        assert!(ending.window(minutes(10), IsoDuration::from_hours(1)).is_ok(), "five minutes left is enough");
        let refused = ending.window(minutes(10) + TimeDelta::seconds(1), IsoDuration::from_hours(1)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "eligibility under rule `r` ends at 2026-11-25T12:15:00Z, less than the minimum `PT5M` after access would begin at 2026-11-25T12:10:01Z"
        );
        assert!(ending.window(minutes(20), IsoDuration::from_hours(1)).is_err(), "after the end");
    }

    #[test]
    fn a_start_is_authorised_only_while_the_rule_still_applies() {
        let p = policy();
        let request = p.authorize_activation(draft("Reader", SUB), &subject(true), now()).unwrap().into_request();
        assert_eq!(
            p.authorize_start(&request, now()).unwrap().window(),
            AccessWindow { expires_at: now() + TimeDelta::hours(8), limit: None }
        );
        let moved = ActivationRequest { rule_id: RuleId::parse("gone").unwrap(), ..request.clone() };
        assert!(matches!(p.authorize_start(&moved, now()), Err(StartRefusal::NoLongerEligible(Deny::RuleNotFound(_)))));
        let via_group = ActivationRequest {
            eligible_via: PrincipalRef::parse(&format!("group:{BOB}")).unwrap(),
            ..request.clone()
        };
        let refused = p.authorize_start(&via_group, now()).unwrap_err();
        assert_eq!(refused.code(), "NoLongerEligible");
        assert!(matches!(refused, StartRefusal::NoLongerEligible(Deny::RuleDoesNotApply { .. })));
    }

    #[test]
    fn problems_name_file_rule_and_field() {
        let text = format!(
            "version: 1\nrules:\n  - id: a\n    scope: /nope\n    roles: [Superuser]\n    principals: [user:{ALICE}]\n    maxDuration: PT48H\n  - id: a\n    scope: {SUB}\n    roles: [Reader]\n    principals: []\n    approval:\n      approvers: [user:{BOB}]\n      minApprovals: 2\n"
        );
        let err = Policy::from_yaml("p.yaml", &text).unwrap_err();
        let all = err.to_string();
        for needle in [
            "p.yaml: rules[0] (a).scope:",
            "p.yaml: rules[0] (a).roles[0]: `Superuser`",
            "p.yaml: rules[0] (a).maxDuration: `P2D` must lie between `PT5M` and `P1D`",
            "p.yaml: rules[1].id: rule id `a` is used more than once",
            "p.yaml: rules[1] (a).principals: must name at least one principal",
            "p.yaml: rules[1] (a).approval.minApprovals: needs 2 approvals but only 1 approver(s) are listed",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn structural_problems_carry_a_path_and_line() {
        let err = Policy::from_yaml(
            "p.yaml",
            "version: 1\nrules:\n  - id: a\n    scope: x\n    roles: []\n    principals: []\n    maxDuraton: PT1H\n",
        )
        .unwrap_err();
        let all = err.to_string();
        assert!(all.contains("rules[0]"), "{all}");
        assert!(all.contains("maxDuraton"), "{all}");
        assert!(all.contains("line"), "{all}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";
    const PEOPLE: [&str; 3] = [
        "11111111-1111-1111-1111-111111111111",
        "22222222-2222-2222-2222-222222222222",
        "99999999-9999-9999-9999-999999999999",
    ];

    fn policy() -> Policy {
        Policy::from_yaml(
            "p.yaml",
            &format!(
                "version: 1\nrules:\n  - id: a\n    scope: {SUB}\n    roles: [Reader, Contributor]\n    principals: [user:{p0}, group:{p2}]\n    maxDuration: PT2H\n    requireTicket: true\n  - id: b\n    scope: {SUB}/resourceGroups/rg\n    roles: [Owner]\n    principals: [user:{p1}]\n    requireMfa: false\n    requireJustification: false\n    expiresAt: 2026-11-25T13:00:00Z\n  - id: c\n    scope: {SUB}/resourceGroups/rg\n    roles: [Contributor]\n    principals: [user:{p0}]\n    authContext: c2\n",
                p0 = PEOPLE[0],
                p1 = PEOPLE[1],
                p2 = PEOPLE[2]
            ),
        )
        .unwrap()
    }

    fn draft() -> impl Strategy<Value = (ActivationDraft, Subject, i64)> {
        let who = 0usize..2;
        let group = any::<bool>();
        let role = prop::sample::select(vec!["Reader", "Contributor", "Owner"]);
        let scope = prop::sample::select(vec![
            SUB.to_owned(),
            format!("{SUB}/resourceGroups/rg"),
            format!("{SUB}/resourceGroups/RG/providers/Microsoft.Web/sites/x"),
            "/subscriptions/00000000-0000-0000-0000-000000000002".to_owned(),
        ]);
        let minutes = prop::option::of(1i64..200);
        let flags = (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), prop::option::of(0i64..120));
        (who, group, role, scope, minutes, flags, -30i64..120).prop_map(
            |(who, group, role, scope, minutes, (just, ticket, mfa, acrs, start), now_offset)| {
                let principal = PrincipalId::parse(PEOPLE[who]).unwrap();
                let now = "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::minutes(now_offset);
                let d = ActivationDraft {
                    principal_id: principal,
                    role_definition_id: RoleDefinitionId::parse(role).unwrap(),
                    scope: Scope::parse(&scope).unwrap(),
                    rule_id: None,
                    duration: minutes.map(IsoDuration::from_minutes),
                    justification: just.then(|| Justification::parse("why").unwrap()),
                    ticket: ticket.then(|| Ticket {
                        system: super::super::ids::TicketSystem::parse("SNOW").unwrap(),
                        number: super::super::ids::TicketNumber::parse("1").unwrap(),
                    }),
                    start_at: start.map(|m| now + TimeDelta::minutes(m)),
                };
                let s = Subject {
                    principal_id: principal,
                    groups: if group { vec![PrincipalId::parse(PEOPLE[2]).unwrap()] } else { vec![] },
                    mfa,
                    auth_contexts: if acrs { vec![AuthContextId::parse("c2").unwrap()] } else { vec![] },
                };
                (d, s, now_offset)
            },
        )
    }

    proptest! {
        /// Whatever is asked, an authorised request meets every term of the rule it names.
        #[test]
        fn nothing_is_authorised_without_meeting_its_rule((d, s, offset) in draft()) {
            let p = policy();
            let now = "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::minutes(offset);
            if let Ok(ok) = p.authorize_activation(d.clone(), &s, now) {
                let r = ok.request();
                let rule = p.rule(&r.rule_id).unwrap();
                prop_assert!(rule.matching_principal(&s.principal_id, &s.groups).is_some());
                prop_assert!(rule.covers(&r.role_definition_id, &r.scope));
                prop_assert!(r.duration <= rule.max_duration && r.duration >= MIN_ACTIVATION);
                prop_assert!(!rule.require_justification || r.justification.is_some());
                prop_assert!(!rule.require_ticket || r.ticket.is_some());
                // Each demand holds on its own: a context is no proof of MFA.
                if let Some(c) = &rule.auth_context {
                    prop_assert!(s.auth_contexts.contains(c));
                }
                prop_assert!(!rule.require_mfa || s.mfa);
                prop_assert!(!rule.is_expired(now));
                if let Some(end) = rule.expires_at {
                    prop_assert!(r.start_at.unwrap_or(now).max(now) + r.duration.as_delta() <= end);
                }
            }
        }

        /// Access that begins is never longer than asked, never past the end of eligibility, and
        /// never shorter than the minimum; a cut is reported exactly when it happened.
        #[test]
        fn access_windows_respect_eligibility(begin in 0i64..7200, asked in 300i64..86_400, ends in prop::option::of(0i64..10_000)) {
            let at = |s: i64| "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(s);
            let eligibility = Eligibility { rule: RuleId::parse("r").unwrap(), ends: ends.map(at) };
            let duration = IsoDuration::parse(&format!("PT{asked}S")).unwrap();
            match eligibility.window(at(begin), duration) {
                Ok(w) => {
                    prop_assert!(w.expires_at <= at(begin + asked));
                    prop_assert!(w.expires_at - at(begin) >= MIN_ACTIVATION.as_delta());
                    if let Some(end) = ends {
                        prop_assert!(w.expires_at <= at(end));
                    }
                    prop_assert_eq!(w.limit.is_some(), w.expires_at < at(begin + asked));
                }
                Err(e) => prop_assert!(ends.is_some_and(|end| end - begin < MIN_ACTIVATION.seconds()), "{e}"),
            }
        }

        #[test]
        fn loading_arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = Policy::from_yaml("fuzz.yaml", &text);
        }

        /// Documents of the right shape with wrong values reach the validator, not just the YAML
        /// parser: every value a key can carry, well or badly formed.
        #[test]
        fn loading_policy_shaped_documents_never_panics(
            scope in prop_oneof![Just("/subscriptions/00000000-0000-0000-0000-000000000001".to_owned()), "\\PC{0,40}"],
            role in prop_oneof![Just("Reader".to_owned()), "\\PC{0,40}"],
            principal in prop_oneof![Just("user:11111111-1111-1111-1111-111111111111".to_owned()), "\\PC{0,40}"],
            duration in prop_oneof![Just("PT1H".to_owned()), "\\PC{0,12}"],
            min in any::<i64>(),
            context in "\\PC{0,6}",
            expires in prop_oneof![Just("2027-06-30T00:00:00Z".to_owned()), "\\PC{0,25}"],
        ) {
            let doc = serde_json::json!({
                "version": 1,
                "defaults": {"maxDuration": duration, "requireMfa": true},
                "rules": [{
                    "id": "r", "scope": scope, "roles": [role], "principals": [principal],
                    "maxDuration": duration, "authContext": context, "expiresAt": expires,
                    "approval": {"approvers": [principal], "minApprovals": min, "timeout": duration},
                }],
            });
            let _ = Policy::from_yaml("fuzz.yaml", &doc.to_string());
        }
    }
}

#[cfg(test)]
mod published {
    use super::*;

    /// The JSON Schema published for editors describes exactly the fields the loader accepts.
    #[test]
    fn the_schema_and_the_loader_agree() {
        let schema: serde_json::Value = serde_json::from_str(include_str!("../../policy.schema.json")).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v["properties"].as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let rule = &schema["$defs"]["rule"];
        assert_eq!(
            keys(rule),
            [
                "approval",
                "authContext",
                "description",
                "expiresAt",
                "id",
                "maxDuration",
                "principals",
                "requireJustification",
                "requireMfa",
                "requireTicket",
                "roles",
                "scope"
            ]
        );
        assert_eq!(keys(&rule["properties"]["approval"]), ["approverMfa", "approvers", "minApprovals", "timeout"]);
        assert_eq!(
            keys(&schema["properties"]["defaults"]),
            ["authContext", "maxDuration", "requireJustification", "requireMfa", "requireTicket"]
        );
        // Every field the schema names is one the loader takes: a rule using all of them loads.
        let all = "version: 1\ndefaults: {maxDuration: PT1H, requireMfa: true, requireJustification: true, requireTicket: false, authContext: c1}\nrules:\n  - id: x\n    description: d\n    scope: /subscriptions/00000000-0000-0000-0000-000000000001\n    roles: [Reader]\n    principals: [user:11111111-1111-1111-1111-111111111111]\n    maxDuration: PT1H\n    requireMfa: true\n    requireJustification: true\n    requireTicket: true\n    authContext: c2\n    approval: {approvers: [user:22222222-2222-2222-2222-222222222222], minApprovals: 1, timeout: PT1H, approverMfa: true}\n    expiresAt: 2030-01-01T00:00:00Z\n";
        Policy::from_yaml("all.yaml", all).unwrap();
    }

    #[test]
    fn the_shipped_example_policy_is_valid() {
        let policy = Policy::from_yaml("policy.yaml", include_str!("../../policy.yaml")).unwrap();
        assert_eq!(policy.rules().len(), 4);
    }
}
