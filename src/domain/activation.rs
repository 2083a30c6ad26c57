//! The activation lifecycle, as an enum whose transitions consume the activation and take `now`.
//!
//! ```text
//!   PendingApproval ──approve(n of m)──► Scheduled ──start──► Provisioning ──provisioned──► Active
//!        │  │  └──deny──► Denied            │                    │   └──fail──► Failed      │ │
//!        │  └──time_out──► TimedOut          └──cancel──► Canceled └──expire──► Expired ◄───┘ │
//!        └──cancel──► Canceled                                                  deactivate──► Deactivated
//! ```
//! (PendingApproval goes straight to Provisioning, and a request without approval starts in
//! Scheduled or Provisioning.) INVARIANT: `expires_at` is fixed on entering Provisioning, before
//! any role assignment exists, so the sweeper always knows when access must end.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::approver::Approver;
use super::duration::IsoDuration;
use super::ids::{ActivationId, Justification, PrincipalId};
use super::policy::{ActivationRequest, ApprovalTerms, AuthorizedExtension, AuthorizedRequest};

/// Every status an activation can have (design.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    PendingApproval,
    Scheduled,
    Provisioning,
    Active,
    Denied,
    Canceled,
    TimedOut,
    Expired,
    Deactivated,
    Failed,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::PendingApproval,
        Status::Scheduled,
        Status::Provisioning,
        Status::Active,
        Status::Denied,
        Status::Canceled,
        Status::TimedOut,
        Status::Expired,
        Status::Deactivated,
        Status::Failed,
    ];

    pub fn is_terminal(self) -> bool {
        match self {
            Status::PendingApproval | Status::Scheduled | Status::Provisioning | Status::Active => false,
            Status::Denied
            | Status::Canceled
            | Status::TimedOut
            | Status::Expired
            | Status::Deactivated
            | Status::Failed => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingApproval => "PendingApproval",
            Status::Scheduled => "Scheduled",
            Status::Provisioning => "Provisioning",
            Status::Active => "Active",
            Status::Denied => "Denied",
            Status::Canceled => "Canceled",
            Status::TimedOut => "TimedOut",
            Status::Expired => "Expired",
            Status::Deactivated => "Deactivated",
            Status::Failed => "Failed",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(value))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Approve,
    Deny,
}

/// What an approval decision was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionSubject {
    Activation,
    /// The extension requested at this time.
    Extension(DateTime<Utc>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    pub approver_id: PrincipalId,
    pub decision: Decision,
    pub justification: Justification,
    pub at: DateTime<Utc>,
    pub subject: DecisionSubject,
}

/// An extension waiting for approval while the activation stays active.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingExtension {
    pub additional: IsoDuration,
    pub justification: Option<Justification>,
    pub requested_at: DateTime<Utc>,
    pub timeout_at: DateTime<Utc>,
    pub min_approvals: u8,
}

/// Why provisioning failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// A stable code such as `RoleAssignmentExists`.
    pub code: String,
    pub message: String,
}

/// The state, carrying exactly the data that state has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all_fields = "camelCase")]
pub enum State {
    PendingApproval {
        timeout_at: DateTime<Utc>,
        min_approvals: u8,
    },
    Scheduled {
        start_at: DateTime<Utc>,
    },
    Provisioning {
        since: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    Active {
        activated_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        role_assignment_id: String,
        extension: Option<PendingExtension>,
    },
    Denied {
        at: DateTime<Utc>,
    },
    Canceled {
        at: DateTime<Utc>,
    },
    TimedOut {
        at: DateTime<Utc>,
    },
    Expired {
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    Deactivated {
        at: DateTime<Utc>,
    },
    Failed {
        at: DateTime<Utc>,
        failure: Failure,
    },
}

/// One activation: the request and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    id: ActivationId,
    request: ActivationRequest,
    approvals: Vec<ApprovalRecord>,
    state: State,
}

/// A transition that is not possible from the current state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("activation is `{status}`, so it cannot be {action}")]
    WrongStatus { status: Status, action: &'static str },
    #[error("the approval window closed at {0}")]
    ApprovalWindowClosed(DateTime<Utc>),
    #[error("you have already decided on this request")]
    AlreadyDecided,
    #[error("an extension is already waiting for approval")]
    ExtensionPending,
    #[error("no extension is waiting for approval")]
    NoExtensionPending,
    #[error("the scheduled start {0} has not come yet")]
    NotYetDue(DateTime<Utc>),
}

/// What happened, for the audit record of a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Requested,
    Approved,
    ApprovalRecorded,
    Denied,
    Canceled,
    TimedOut,
    Started,
    Provisioned,
    ProvisioningFailed,
    Expired,
    Deactivated,
    ExtensionRequested,
    Extended,
    ExtensionApprovalRecorded,
    ExtensionDenied,
    ExtensionTimedOut,
}

/// The result of a transition: the new activation and what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub activation: Activation,
    pub action: Action,
    pub before: Option<Status>,
}

impl Activation {
    /// Opens an activation from a request the policy authorised. With approval it waits for
    /// approvers; without, it is scheduled or starts provisioning.
    pub fn open(id: ActivationId, authorized: AuthorizedRequest, now: DateTime<Utc>) -> Transition {
        let request = authorized.into_request();
        let state = match request.approval {
            Some(ApprovalTerms { min_approvals, timeout }) => {
                State::PendingApproval { timeout_at: now + timeout.as_delta(), min_approvals }
            }
            None => Self::ready_state(&request, now),
        };
        Transition {
            activation: Activation { id, request, approvals: Vec::new(), state },
            action: Action::Requested,
            before: None,
        }
    }

    /// Scheduled when the requested start lies ahead, else Provisioning with its expiry fixed.
    fn ready_state(request: &ActivationRequest, now: DateTime<Utc>) -> State {
        match request.start_at {
            Some(start_at) if start_at > now => State::Scheduled { start_at },
            _ => State::Provisioning { since: now, expires_at: now + request.duration.as_delta() },
        }
    }

    pub fn id(&self) -> ActivationId {
        self.id
    }
    pub fn request(&self) -> &ActivationRequest {
        &self.request
    }
    pub fn approvals(&self) -> &[ApprovalRecord] {
        &self.approvals
    }
    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn status(&self) -> Status {
        match self.state {
            State::PendingApproval { .. } => Status::PendingApproval,
            State::Scheduled { .. } => Status::Scheduled,
            State::Provisioning { .. } => Status::Provisioning,
            State::Active { .. } => Status::Active,
            State::Denied { .. } => Status::Denied,
            State::Canceled { .. } => Status::Canceled,
            State::TimedOut { .. } => Status::TimedOut,
            State::Expired { .. } => Status::Expired,
            State::Deactivated { .. } => Status::Deactivated,
            State::Failed { .. } => Status::Failed,
        }
    }

    /// When access ends (or ended), once it is known.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::Provisioning { expires_at, .. }
            | State::Active { expires_at, .. }
            | State::Expired { expires_at, .. } => Some(*expires_at),
            State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => None,
        }
    }

    /// When access starts (or started), once it is known.
    pub fn starts_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::Scheduled { start_at } => Some(*start_at),
            State::Provisioning { since, .. } => Some(*since),
            State::Active { activated_at, .. } => Some(*activated_at),
            State::PendingApproval { .. } => self.request.start_at,
            State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => None,
        }
    }

    /// How long an interrupted Provisioning is left to the request that started it before the
    /// sweeper takes it over.
    pub const PROVISIONING_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

    /// The next moment the sweeper must look at this activation, or `None` once terminal.
    /// INVARIANT: stores index on this; every non-terminal state has one.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::PendingApproval { timeout_at, .. } => Some(*timeout_at),
            State::Scheduled { start_at } => Some(*start_at),
            State::Provisioning { since, expires_at } => Some((*since + Self::PROVISIONING_GRACE).min(*expires_at)),
            State::Active { expires_at, extension, .. } => {
                Some(extension.as_ref().map_or(*expires_at, |e| e.timeout_at.min(*expires_at)))
            }
            State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => None,
        }
    }

    /// Whether `approver` has already decided on what is pending now.
    pub fn has_decided(&self, approver: &PrincipalId) -> bool {
        let subject = match &self.state {
            State::Active { extension: Some(e), .. } => DecisionSubject::Extension(e.requested_at),
            _ => DecisionSubject::Activation,
        };
        self.approvals.iter().any(|a| a.approver_id == *approver && a.subject == subject)
    }

    /// Whether something waits for an approver's decision.
    pub fn awaits_decision(&self) -> bool {
        matches!(self.state, State::PendingApproval { .. } | State::Active { extension: Some(_), .. })
    }

    fn wrong(&self, action: &'static str) -> TransitionError {
        TransitionError::WrongStatus { status: self.status(), action }
    }

    fn to(self, before: Status, state: State, action: Action) -> Transition {
        Transition { activation: Activation { state, ..self }, action, before: Some(before) }
    }

    /// Records an approval. Enough approvals move a pending request on, or apply a pending
    /// extension.
    pub fn approve(
        mut self,
        approver: Approver,
        justification: Justification,
        now: DateTime<Utc>,
    ) -> Result<Transition, TransitionError> {
        let before = self.status();
        if self.has_decided(approver.id()) {
            return Err(TransitionError::AlreadyDecided);
        }
        match self.state.clone() {
            State::PendingApproval { timeout_at, min_approvals } => {
                if now >= timeout_at {
                    return Err(TransitionError::ApprovalWindowClosed(timeout_at));
                }
                self.record(approver, Decision::Approve, justification, DecisionSubject::Activation, now);
                let count = self.count_approvals(DecisionSubject::Activation);
                if count >= usize::from(min_approvals) {
                    let next = Self::ready_state(&self.request, now);
                    Ok(self.to(before, next, Action::Approved))
                } else {
                    let same = self.state.clone();
                    Ok(self.to(before, same, Action::ApprovalRecorded))
                }
            }
            State::Active { activated_at, expires_at, role_assignment_id, extension: Some(ext) } => {
                if now >= ext.timeout_at {
                    return Err(TransitionError::ApprovalWindowClosed(ext.timeout_at));
                }
                let subject = DecisionSubject::Extension(ext.requested_at);
                self.record(approver, Decision::Approve, justification, subject, now);
                if self.count_approvals(subject) >= usize::from(ext.min_approvals) {
                    let state = State::Active {
                        activated_at,
                        expires_at: expires_at + ext.additional.as_delta(),
                        role_assignment_id,
                        extension: None,
                    };
                    Ok(self.to(before, state, Action::Extended))
                } else {
                    let same = self.state.clone();
                    Ok(self.to(before, same, Action::ExtensionApprovalRecorded))
                }
            }
            State::Active { extension: None, .. }
            | State::Scheduled { .. }
            | State::Provisioning { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("approved")),
        }
    }

    /// A denial ends a pending request (first denial wins), or drops a pending extension.
    pub fn deny(
        mut self,
        approver: Approver,
        justification: Justification,
        now: DateTime<Utc>,
    ) -> Result<Transition, TransitionError> {
        let before = self.status();
        if self.has_decided(approver.id()) {
            return Err(TransitionError::AlreadyDecided);
        }
        match self.state.clone() {
            State::PendingApproval { timeout_at, .. } => {
                if now >= timeout_at {
                    return Err(TransitionError::ApprovalWindowClosed(timeout_at));
                }
                self.record(approver, Decision::Deny, justification, DecisionSubject::Activation, now);
                Ok(self.to(before, State::Denied { at: now }, Action::Denied))
            }
            State::Active { activated_at, expires_at, role_assignment_id, extension: Some(ext) } => {
                if now >= ext.timeout_at {
                    return Err(TransitionError::ApprovalWindowClosed(ext.timeout_at));
                }
                self.record(approver, Decision::Deny, justification, DecisionSubject::Extension(ext.requested_at), now);
                let state = State::Active { activated_at, expires_at, role_assignment_id, extension: None };
                Ok(self.to(before, state, Action::ExtensionDenied))
            }
            State::Active { extension: None, .. }
            | State::Scheduled { .. }
            | State::Provisioning { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("denied")),
        }
    }

    fn record(
        &mut self,
        approver: Approver,
        decision: Decision,
        justification: Justification,
        subject: DecisionSubject,
        at: DateTime<Utc>,
    ) {
        self.approvals.push(ApprovalRecord { approver_id: *approver.id(), decision, justification, at, subject });
    }

    fn count_approvals(&self, subject: DecisionSubject) -> usize {
        self.approvals.iter().filter(|a| a.subject == subject && a.decision == Decision::Approve).count()
    }

    /// The requester withdraws a request that has not granted anything yet.
    pub fn cancel(self, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::PendingApproval { .. } | State::Scheduled { .. } => {
                Ok(self.to(before, State::Canceled { at: now }, Action::Canceled))
            }
            State::Provisioning { .. }
            | State::Active { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("canceled")),
        }
    }

    /// The approval window of a request, or of a pending extension, has closed.
    pub fn time_out(self, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state.clone() {
            State::PendingApproval { timeout_at, .. } if now >= timeout_at => {
                Ok(self.to(before, State::TimedOut { at: now }, Action::TimedOut))
            }
            State::Active { activated_at, expires_at, role_assignment_id, extension: Some(ext) }
                if now >= ext.timeout_at =>
            {
                let state = State::Active { activated_at, expires_at, role_assignment_id, extension: None };
                Ok(self.to(before, state, Action::ExtensionTimedOut))
            }
            State::PendingApproval { timeout_at, .. } => Err(TransitionError::NotYetDue(timeout_at)),
            State::Active { .. }
            | State::Scheduled { .. }
            | State::Provisioning { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("timed out")),
        }
    }

    /// A scheduled activation's start has come: fix its expiry and provision.
    pub fn start(self, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::Scheduled { start_at } if now >= start_at => {
                let state = State::Provisioning { since: now, expires_at: now + self.request.duration.as_delta() };
                Ok(self.to(before, state, Action::Started))
            }
            State::Scheduled { start_at } => Err(TransitionError::NotYetDue(start_at)),
            State::PendingApproval { .. }
            | State::Provisioning { .. }
            | State::Active { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("started")),
        }
    }

    /// The role assignment exists: access is active until the expiry fixed before it was made.
    pub fn provisioned(self, role_assignment_id: String, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::Provisioning { expires_at, .. } => {
                let state = State::Active {
                    activated_at: now.min(expires_at),
                    expires_at,
                    role_assignment_id,
                    extension: None,
                };
                Ok(self.to(before, state, Action::Provisioned))
            }
            State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Active { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("marked provisioned")),
        }
    }

    /// Provisioning could not complete; nothing was granted.
    pub fn fail(self, failure: Failure, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::Provisioning { .. } => {
                Ok(self.to(before, State::Failed { at: now, failure }, Action::ProvisioningFailed))
            }
            State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Active { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("marked failed")),
        }
    }

    /// Time is up and the assignment is confirmed gone.
    pub fn expire(self, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::Active { expires_at, .. } | State::Provisioning { expires_at, .. } if now >= expires_at => {
                Ok(self.to(before, State::Expired { at: now, expires_at }, Action::Expired))
            }
            State::Active { expires_at, .. } | State::Provisioning { expires_at, .. } => {
                Err(TransitionError::NotYetDue(expires_at))
            }
            State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("expired")),
        }
    }

    /// Ended early by the requester or an admin; the assignment is confirmed gone.
    pub fn deactivate(self, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::Active { .. } => Ok(self.to(before, State::Deactivated { at: now }, Action::Deactivated)),
            State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Provisioning { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("deactivated")),
        }
    }

    /// Extends an active activation: at once, or after approval when the rule demands it.
    pub fn extend(self, extension: AuthorizedExtension, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state.clone() {
            State::Active { extension: Some(_), .. } => Err(TransitionError::ExtensionPending),
            State::Active { activated_at, expires_at, role_assignment_id, extension: None } if now < expires_at => {
                match extension.approval {
                    None => {
                        let state = State::Active {
                            activated_at,
                            expires_at: expires_at + extension.additional.as_delta(),
                            role_assignment_id,
                            extension: None,
                        };
                        Ok(self.to(before, state, Action::Extended))
                    }
                    Some(terms) => {
                        let pending = PendingExtension {
                            additional: extension.additional,
                            justification: extension.justification,
                            requested_at: now,
                            // An extension nobody approved before the access ends is moot.
                            timeout_at: (now + terms.timeout.as_delta()).min(expires_at),
                            min_approvals: terms.min_approvals,
                        };
                        let state =
                            State::Active { activated_at, expires_at, role_assignment_id, extension: Some(pending) };
                        Ok(self.to(before, state, Action::ExtensionRequested))
                    }
                }
            }
            State::Active { .. }
            | State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Provisioning { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("extended")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::approver::authorize_approver;
    use crate::domain::ids::RoleDefinitionId;
    use crate::domain::policy::{ActivationDraft, Policy, Subject};
    use crate::domain::scope::Scope;
    use proptest::prelude::*;

    const ALICE: &str = "11111111-1111-1111-1111-111111111111";
    const BOB: &str = "22222222-2222-2222-2222-222222222222";
    const CAROL: &str = "33333333-3333-3333-3333-333333333333";
    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    fn policy(min_approvals: u8) -> Policy {
        Policy::from_yaml(
            "t.yaml",
            &format!(
                "version: 1\nrules:\n  - id: self\n    scope: {SUB}\n    roles: [Reader]\n    principals: [user:{ALICE}]\n  - id: approved\n    scope: {SUB}\n    roles: [Contributor]\n    principals: [user:{ALICE}]\n    approval:\n      approvers: [user:{BOB}, user:{CAROL}]\n      minApprovals: {min_approvals}\n      timeout: PT1H\n"
            ),
        )
        .unwrap()
    }

    fn t(minutes: i64) -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::TimeDelta::minutes(minutes)
    }

    fn subject(id: &str) -> Subject {
        Subject { principal_id: PrincipalId::parse(id).unwrap(), groups: vec![], mfa: true, auth_contexts: vec![] }
    }

    fn open(policy: &Policy, role: &str) -> Activation {
        let draft = ActivationDraft {
            principal_id: PrincipalId::parse(ALICE).unwrap(),
            role_definition_id: RoleDefinitionId::parse(role).unwrap(),
            scope: Scope::parse(SUB).unwrap(),
            rule_id: None,
            duration: Some(IsoDuration::from_hours(1)),
            justification: Some(Justification::parse("INC-1").unwrap()),
            ticket: None,
            start_at: None,
        };
        let authorized = policy.authorize_activation(draft, &subject(ALICE), t(0)).unwrap();
        Activation::open(ActivationId::new_random(), authorized, t(0)).activation
    }

    fn why() -> Justification {
        Justification::parse("ok").unwrap()
    }

    #[test]
    fn self_activation_fixes_expiry_before_provisioning() {
        let a = open(&policy(1), "Reader");
        assert_eq!(a.status(), Status::Provisioning);
        assert_eq!(a.expires_at(), Some(t(60)));
        let a = a.provisioned("ra".into(), t(0)).unwrap().activation;
        assert_eq!(a.status(), Status::Active);
        assert!(a.clone().expire(t(59)).is_err());
        let done = a.expire(t(60)).unwrap();
        assert_eq!(done.action, Action::Expired);
        assert_eq!(done.activation.due_at(), None);
    }

    #[test]
    fn two_of_two_approvals_are_needed() {
        let p = policy(2);
        let a = open(&p, "Contributor");
        assert_eq!(a.status(), Status::PendingApproval);
        let bob = authorize_approver(&p, &a, &subject(BOB), t(1)).unwrap();
        let step = a.approve(bob, why(), t(1)).unwrap();
        assert_eq!(step.action, Action::ApprovalRecorded);
        assert_eq!(step.activation.status(), Status::PendingApproval);
        let again = authorize_approver(&p, &step.activation, &subject(BOB), t(2));
        assert!(again.is_err(), "one approver cannot approve twice");
        let carol = authorize_approver(&p, &step.activation, &subject(CAROL), t(2)).unwrap();
        let done = step.activation.approve(carol, why(), t(2)).unwrap();
        assert_eq!(done.action, Action::Approved);
        assert_eq!(done.activation.status(), Status::Provisioning);
        assert_eq!(done.activation.expires_at(), Some(t(62)), "the clock starts at approval");
    }

    #[test]
    fn approval_after_the_window_is_refused() {
        let p = policy(1);
        let a = open(&p, "Contributor");
        let bob = authorize_approver(&p, &a, &subject(BOB), t(60)).unwrap();
        assert_eq!(a.clone().approve(bob, why(), t(60)), Err(TransitionError::ApprovalWindowClosed(t(60))));
        assert_eq!(a.time_out(t(60)).unwrap().activation.status(), Status::TimedOut);
    }

    fn arb_step() -> impl Strategy<Value = u8> {
        0u8..9
    }

    proptest! {
        /// Whatever sequence of events arrives, nothing is Active unless it was authorised by the
        /// policy and, where the rule demands it, approved by enough distinct approvers; and a
        /// terminal status never changes again.
        #[test]
        fn lifecycle_invariants_hold(steps in prop::collection::vec((arb_step(), 0i64..200), 1..20), needs_approval in any::<bool>(), min in 1u8..=2) {
            let p = policy(min);
            let mut a = open(&p, if needs_approval { "Contributor" } else { "Reader" });
            let mut now = 0i64;
            for (step, advance) in steps {
                now += advance;
                let before = a.status();
                let result = match step {
                    0 => authorize_approver(&p, &a, &subject(BOB), t(now)).ok().map(|ap| a.clone().approve(ap, why(), t(now))),
                    1 => authorize_approver(&p, &a, &subject(CAROL), t(now)).ok().map(|ap| a.clone().approve(ap, why(), t(now))),
                    2 => authorize_approver(&p, &a, &subject(BOB), t(now)).ok().map(|ap| a.clone().deny(ap, why(), t(now))),
                    3 => Some(a.clone().cancel(t(now))),
                    4 => Some(a.clone().time_out(t(now))),
                    5 => Some(a.clone().start(t(now))),
                    6 => Some(a.clone().provisioned("ra".into(), t(now))),
                    7 => Some(a.clone().expire(t(now))),
                    _ => Some(a.clone().deactivate(t(now))),
                };
                if let Some(Ok(next)) = result {
                    prop_assert!(!before.is_terminal(), "{before} changed to {}", next.activation.status());
                    prop_assert_eq!(next.before, Some(before));
                    a = next.activation;
                }
                if matches!(a.status(), Status::Active | Status::Provisioning) && needs_approval {
                    let approvals = a.approvals().iter().filter(|r| r.decision == Decision::Approve).count();
                    prop_assert!(approvals >= usize::from(min), "active with {approvals} of {min} approvals");
                    prop_assert!(a.approvals().iter().all(|r| r.approver_id.to_string() != ALICE));
                }
                prop_assert_eq!(a.due_at().is_none(), a.status().is_terminal());
            }
        }
    }
}
