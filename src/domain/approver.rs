//! Who may decide on a request. `authorize_approver` is the only way to obtain an [`Approver`],
//! and `Activation::approve`/`deny` take one: a decision without the check does not compile.
//! The approver carries the requester's [`Eligibility`] as checked at decision time, so an
//! approval cannot give access past the end of it.

use chrono::{DateTime, Utc};

use super::activation::Activation;
use super::ids::PrincipalId;
use super::policy::{Deny, Eligibility, Policy, Subject};

/// Capability: this principal may decide on this activation now, while its requester is
/// eligible as `eligibility` says.
#[derive(Debug)]
pub struct Approver {
    id: PrincipalId,
    eligibility: Eligibility,
}

impl Approver {
    pub fn id(&self) -> &PrincipalId {
        &self.id
    }

    /// The requester's eligibility at decision time (its rule and when it ends).
    pub fn eligibility(&self) -> &Eligibility {
        &self.eligibility
    }
}

/// Why somebody may not decide.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApproverDenied {
    #[error("you requested this activation, so you cannot decide on it")]
    SelfApproval,
    #[error("you are not an approver for rule `{0}`")]
    NotAnApprover(String),
    #[error("approvers of rule `{0}` must sign in with multi-factor authentication")]
    MfaRequired(String),
    #[error("the requester is no longer eligible: {0}")]
    RequesterNoLongerEligible(Deny),
    #[error("nothing waits for a decision on this activation")]
    NothingPending,
    #[error("you have already decided on this request")]
    AlreadyDecided,
}

/// Checks, at decision time: something is pending; the subject is not the requester; the
/// requester is still eligible under the current policy; the subject is an approver of the rule
/// (directly or through a group) with MFA where the rule asks; and has not decided already.
pub fn authorize_approver(
    policy: &Policy,
    activation: &Activation,
    subject: &Subject,
    now: DateTime<Utc>,
) -> Result<Approver, ApproverDenied> {
    if !activation.awaits_decision() {
        return Err(ApproverDenied::NothingPending);
    }
    if subject.principal_id == activation.request().principal_id {
        return Err(ApproverDenied::SelfApproval);
    }
    let eligibility =
        policy.eligibility(activation.request(), now).map_err(ApproverDenied::RequesterNoLongerEligible)?;
    let rule =
        policy.rule(eligibility.rule()).ok_or_else(|| ApproverDenied::NotAnApprover(eligibility.rule().to_string()))?;
    let approval = rule.approval.as_ref().ok_or_else(|| ApproverDenied::NotAnApprover(rule.id.to_string()))?;
    if !approval.approvers.iter().any(|a| a.matches(&subject.principal_id, &subject.groups)) {
        return Err(ApproverDenied::NotAnApprover(rule.id.to_string()));
    }
    if approval.approver_mfa && !subject.mfa {
        return Err(ApproverDenied::MfaRequired(rule.id.to_string()));
    }
    if activation.has_decided(&subject.principal_id) {
        return Err(ApproverDenied::AlreadyDecided);
    }
    Ok(Approver { id: subject.principal_id, eligibility })
}
