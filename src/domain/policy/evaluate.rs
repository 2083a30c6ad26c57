//! Evaluation: deny by default, and say why on every arm.

use chrono::{DateTime, Utc};

use super::*;

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
    #[error(
        "principal `{principal}` is no longer a member of group `{group}`, through which rule `{rule}` made them eligible"
    )]
    LeftGroup { rule: RuleId, principal: PrincipalId, group: PrincipalId },
    #[error("an access review removed eligibility `{entry}` under rule `{rule}`")]
    Suspended { rule: RuleId, entry: PrincipalRef },
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
    #[error("role `{role}` cannot be assigned at `{scope}`: ask for it at `directory:/`")]
    NotAssignableAtScope { role: String, scope: String },
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
    pub fn eligible_rules<'a, 's>(
        &'a self,
        principal: &'s PrincipalId,
        groups: &'s [PrincipalId],
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a Rule> + use<'a, 's> {
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
            if rule.matching_principal(principal, groups).is_none()
                && let Some(entry) = rule.suspended_match(principal, groups).filter(|_| rule.covers(role, scope))
            {
                return Err(Deny::Suspended { rule: id.clone(), entry });
            }
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
        let mut suspended: Option<(&Rule, PrincipalRef)> = None;
        for rule in &self.rules {
            let Some(via) = rule.matching_principal(principal, groups).filter(|_| rule.covers(role, scope)) else {
                if let Some(entry) = rule.suspended_match(principal, groups).filter(|_| rule.covers(role, scope)) {
                    suspended = suspended.or(Some((rule, entry)));
                }
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
            (None, _) if let Some((rule, entry)) = suspended => Err(Deny::Suspended { rule: rule.id.clone(), entry }),
            (None, Some(rule)) => {
                Err(Deny::EligibilityExpired { rule: rule.id.clone(), at: rule.expires_at.unwrap_or(now) })
            }
            (None, None) => Err(Deny::NotEligible { principal: *principal, role: *role, scope: scope.to_string() }),
        }
    }

    /// What `draft` would meet under the policy, without deciding: the rule that applies, the
    /// window, and every term the caller still has to meet (`needs`). Terms a caller cannot meet
    /// by adding evidence or fields — eligibility, the role's fit at the scope, duration bounds,
    /// the start time, the eligibility window — are refused as `authorize_activation` refuses
    /// them. `validateOnly` answers with this; `authorize_activation` builds on it.
    pub fn assess(
        &self,
        draft: &ActivationDraft,
        subject: &Subject,
        now: DateTime<Utc>,
    ) -> Result<Assessment<'_>, Refusal> {
        let (rule, via) = self.select_rule(
            &draft.principal_id,
            &subject.groups,
            &draft.role_definition_id,
            &draft.scope,
            draft.rule_id.as_ref(),
            now,
        )?;
        if !role_fits_scope(draft.role_definition_id, &draft.scope) {
            let role = draft.role_definition_id;
            return Err(Violation::NotAssignableAtScope {
                role: role.built_in_name().map_or_else(|| role.to_string(), str::to_owned),
                scope: draft.scope.to_string(),
            }
            .into());
        }
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
        let mut needs = Vec::new();
        if let Some(context) = rule.auth_context.as_ref().filter(|c| !subject.auth_contexts.contains(c)) {
            needs.push(Violation::AuthContextRequired { rule: rule.id.clone(), context: context.clone() });
        }
        if rule.require_mfa && !subject.mfa {
            needs.push(Violation::MfaRequired(rule.id.clone()));
        }
        if rule.require_justification && draft.justification.is_none() {
            needs.push(Violation::JustificationRequired(rule.id.clone()));
        }
        if rule.require_ticket && draft.ticket.is_none() {
            needs.push(Violation::TicketRequired(rule.id.clone()));
        }
        let start = match draft.start_at {
            Some(at) if at < now - START_SKEW => return Err(Violation::StartInPast(at).into()),
            Some(at) if at > now + MAX_SCHEDULE_AHEAD => return Err(Violation::StartTooFar(at).into()),
            Some(at) => at.max(now),
            None => now,
        };
        let ends = start + duration.as_delta();
        if let Some(eligibility_ends) = rule.expires_at
            && ends > eligibility_ends
        {
            return Err(Violation::OutlastsEligibility { rule: rule.id.clone(), ends, eligibility_ends }.into());
        }
        Ok(Assessment { rule, via, duration, start, ends, needs })
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
        let assessed = self.assess(&draft, subject, now)?;
        if let Some(unmet) = assessed.needs.into_iter().next() {
            return Err(unmet.into());
        }
        let rule = assessed.rule;
        Ok(AuthorizedRequest(ActivationRequest {
            principal_id: draft.principal_id,
            role_definition_id: draft.role_definition_id,
            scope: draft.scope,
            rule_id: rule.id.clone(),
            eligible_via: assessed.via,
            duration: assessed.duration,
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
        if rule.suspended.contains(&request.eligible_via) {
            return Err(Deny::Suspended { rule: rule.id.clone(), entry: request.eligible_via });
        }
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
