//! The activation lifecycle, as an enum whose transitions consume the activation and take `now`.
//!
//! ```text
//!   PendingApproval ──approve(n of m)──► Scheduled ──start──► Provisioning ──provisioned──► Active
//!        │  │  └──deny──► Denied            │                    │   └──fail──► Failed      │ │
//!        │  └──time_out──► TimedOut          └──cancel──► Canceled └──expire──► Expired ◄───┘ │
//!        └──cancel──► Canceled                                                  deactivate──► Deactivated
//! ```
//! (PendingApproval goes straight to Provisioning, and a request without approval starts in
//! Scheduled or Provisioning. A start the re-checked policy no longer allows goes from Scheduled
//! to Failed: `refuse_start`.) INVARIANT: `expires_at` is fixed on entering Provisioning, before
//! any role assignment exists, so the sweeper always knows when access must end.
//! INVARIANT: access never outlasts the eligibility it was granted under. Entering Provisioning
//! needs proof of eligibility at that moment: an [`AuthorizedRequest`] (at request time), an
//! [`Approver`] (at approval) or a [`StartPermit`] (at a scheduled start), each bounding
//! `expires_at` by the rule's `expiresAt`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::approver::Approver;
use super::duration::IsoDuration;
use super::ids::{ActivationId, Justification, PrincipalId};
use super::policy::{
    ActivationRequest, ApprovalTerms, AuthorizedExtension, AuthorizedRequest, EligibilityEndsTooSoon, ExpiryLimit,
    StartPermit, StartRefusal,
};

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
        /// When the provider was first asked to grant, where that must be known beforehand:
        /// Graph's ids are made by the server, so only this record says whether an interrupted
        /// grant may exist (and may be looked for by principal, role and scope). `None`: never
        /// asked, so nothing to find and nothing to revoke.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        granting: Option<DateTime<Utc>>,
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
    /// Set when the end of eligibility cut the current expiry short (absent in activations
    /// stored before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiry_limit: Option<ExpiryLimit>,
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
    #[error(transparent)]
    EligibilityEndsTooSoon(#[from] EligibilityEndsTooSoon),
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
    /// A scheduled start the re-checked policy no longer allowed: nothing was granted.
    StartRefused,
    Provisioned,
    ProvisioningFailed,
    Expired,
    Deactivated,
    ExtensionRequested,
    Extended,
    ExtensionApprovalRecorded,
    ExtensionDenied,
    ExtensionTimedOut,
    /// The provider is being asked for the grant (recorded first where that matters: Graph).
    GrantRequested,
}

impl Action {
    /// Every action, in the order of the lifecycle (for the audit filter's choices).
    pub const ALL: [Action; 18] = [
        Action::Requested,
        Action::Approved,
        Action::ApprovalRecorded,
        Action::Denied,
        Action::Canceled,
        Action::TimedOut,
        Action::Started,
        Action::StartRefused,
        Action::Provisioned,
        Action::ProvisioningFailed,
        Action::Expired,
        Action::Deactivated,
        Action::ExtensionRequested,
        Action::Extended,
        Action::ExtensionApprovalRecorded,
        Action::ExtensionDenied,
        Action::ExtensionTimedOut,
        Action::GrantRequested,
    ];

    /// The name on the wire (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Requested => "Requested",
            Action::Approved => "Approved",
            Action::ApprovalRecorded => "ApprovalRecorded",
            Action::Denied => "Denied",
            Action::Canceled => "Canceled",
            Action::TimedOut => "TimedOut",
            Action::Started => "Started",
            Action::StartRefused => "StartRefused",
            Action::Provisioned => "Provisioned",
            Action::ProvisioningFailed => "ProvisioningFailed",
            Action::Expired => "Expired",
            Action::Deactivated => "Deactivated",
            Action::ExtensionRequested => "ExtensionRequested",
            Action::Extended => "Extended",
            Action::ExtensionApprovalRecorded => "ExtensionApprovalRecorded",
            Action::ExtensionDenied => "ExtensionDenied",
            Action::ExtensionTimedOut => "ExtensionTimedOut",
            Action::GrantRequested => "GrantRequested",
        }
    }

    pub fn parse(value: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(value))
    }
}

/// The result of a transition: the new activation and what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub activation: Activation,
    pub action: Action,
    pub before: Option<Status>,
    /// What the audit must say about this transition in the domain's own words (an expiry cut
    /// at the end of eligibility, why a start was refused); callers may add their own detail.
    pub note: Option<String>,
}

impl Activation {
    /// Opens an activation from a request the policy authorised. With approval it waits for
    /// approvers; without, it is scheduled or starts provisioning.
    pub fn open(id: ActivationId, authorized: AuthorizedRequest, now: DateTime<Utc>) -> Transition {
        let request = authorized.into_request();
        let state = match (request.approval, request.start_at) {
            (Some(ApprovalTerms { min_approvals, timeout }), _) => {
                State::PendingApproval { timeout_at: now + timeout.as_delta(), min_approvals }
            }
            (None, Some(start_at)) if start_at > now => State::Scheduled { start_at },
            // The policy checked just now that this ends within eligibility.
            (None, _) => {
                State::Provisioning { since: now, expires_at: now + request.duration.as_delta(), granting: None }
            }
        };
        Transition {
            activation: Activation { id, request, approvals: Vec::new(), state, expiry_limit: None },
            action: Action::Requested,
            before: None,
            note: None,
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

    /// Whether, and how, the end of eligibility cut the current expiry short.
    pub fn expiry_limit(&self) -> Option<&ExpiryLimit> {
        self.expiry_limit.as_ref()
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
    /// sweeper takes it over: longer than one grant may take (the provider client's retry budget,
    /// 60 s, plus a last 30 s attempt), so the sweeper does not race a grant still in flight. If
    /// it does anyway, whoever finds the activation finished revokes what it granted.
    pub const PROVISIONING_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(3);

    /// The next moment the sweeper must look at this activation, or `None` once terminal.
    /// INVARIANT: stores index on this; every non-terminal state has one.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::PendingApproval { timeout_at, .. } => Some(*timeout_at),
            State::Scheduled { start_at } => Some(*start_at),
            State::Provisioning { since, expires_at, .. } => Some((*since + Self::PROVISIONING_GRACE).min(*expires_at)),
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
        Transition { activation: Activation { state, ..self }, action, before: Some(before), note: None }
    }

    /// Records on the activation that its expiry was cut at the end of eligibility (or was not),
    /// and returns the audit's words for it.
    fn limit_expiry(&mut self, limit: Option<ExpiryLimit>) -> Option<String> {
        self.expiry_limit = limit;
        limit.map(|l| l.describe(&self.request.rule_id))
    }

    /// Records an approval. Enough approvals move a pending request on, or apply a pending
    /// extension; either way access ends no later than the requester's eligibility, and an
    /// approval that would leave less than the minimum activation is refused (nothing changes).
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
                let completes = self.count_approvals(DecisionSubject::Activation) + 1 >= usize::from(min_approvals);
                // Access begins at approval, or at a requested start still ahead (re-checked then).
                let begin = self.request.start_at.map_or(now, |at| at.max(now));
                let window =
                    if completes { Some(approver.eligibility().window(begin, self.request.duration)?) } else { None };
                self.record(approver, Decision::Approve, justification, DecisionSubject::Activation, now);
                if let Some(window) = window {
                    let (next, note) = if begin > now {
                        (State::Scheduled { start_at: begin }, None)
                    } else {
                        let note = self.limit_expiry(window.limit);
                        (State::Provisioning { since: now, expires_at: window.expires_at, granting: None }, note)
                    };
                    let mut transition = self.to(before, next, Action::Approved);
                    transition.note = note;
                    Ok(transition)
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
                let completes = self.count_approvals(subject) + 1 >= usize::from(ext.min_approvals);
                let window = if completes {
                    Some(approver.eligibility().extension(expires_at, expires_at + ext.additional.as_delta())?)
                } else {
                    None
                };
                self.record(approver, Decision::Approve, justification, subject, now);
                if let Some(window) = window {
                    let note = self.limit_expiry(window.limit);
                    let state = State::Active {
                        activated_at,
                        expires_at: window.expires_at,
                        role_assignment_id,
                        extension: None,
                    };
                    let mut transition = self.to(before, state, Action::Extended);
                    transition.note = note;
                    Ok(transition)
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

    /// A scheduled activation's start has come and the policy, asked again, allows it: fix its
    /// expiry (bounded by the end of eligibility, as the permit says) and provision.
    pub fn start(mut self, permit: StartPermit, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::Scheduled { start_at } if now >= start_at => {
                let window = permit.window();
                let note = self.limit_expiry(window.limit);
                let state = State::Provisioning { since: now, expires_at: window.expires_at, granting: None };
                let mut transition = self.to(before, state, Action::Started);
                transition.note = note;
                Ok(transition)
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

    /// A scheduled activation's start has come but the policy, asked again, no longer allows
    /// it: it ends, failed with the refusal's code, and nothing is granted.
    pub fn refuse_start(self, refusal: StartRefusal, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::Scheduled { start_at } if now >= start_at => {
                let failure = Failure { code: refusal.code().to_owned(), message: refusal.to_string() };
                let note = Some(format!("start refused: {}", failure.message));
                let mut transition = self.to(before, State::Failed { at: now, failure }, Action::StartRefused);
                transition.note = note;
                Ok(transition)
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
            | State::Failed { .. } => Err(self.wrong("refused its start")),
        }
    }

    /// Records, before the provider is asked, that a grant is being requested: from here on an
    /// interrupted grant may exist and is looked for (and revoked) by principal, role and scope.
    pub fn granting(self, now: DateTime<Utc>) -> Result<Transition, TransitionError> {
        let before = self.status();
        match self.state {
            State::Provisioning { since, expires_at, granting: None } => {
                let state = State::Provisioning { since, expires_at, granting: Some(now) };
                Ok(self.to(before, state, Action::GrantRequested))
            }
            State::Provisioning { granting: Some(_), .. }
            | State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Active { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Err(self.wrong("asked for its grant again")),
        }
    }

    /// When its grant was asked for (Provisioning, where recorded) or made (Active): how old a
    /// grant is, for a provider that replicates.
    pub fn granted_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::Provisioning { granting, .. } => *granting,
            State::Active { activated_at, .. } => Some(*activated_at),
            State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => None,
        }
    }

    /// Whether the provider may have been asked for this activation's grant.
    pub fn grant_requested(&self) -> bool {
        match &self.state {
            State::Provisioning { granting, .. } => granting.is_some(),
            State::Active { .. } | State::Expired { .. } | State::Deactivated { .. } => true,
            State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Failed { .. } => false,
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
                        // The policy allowed the new expiry, so the old cut no longer applies.
                        let state = State::Active {
                            activated_at,
                            expires_at: expires_at + extension.additional.as_delta(),
                            role_assignment_id,
                            extension: None,
                        };
                        Ok(Activation { expiry_limit: None, ..self }.to(before, state, Action::Extended))
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
        policy_ending(min_approvals, None)
    }

    /// The test rules, eligibility under them ending at `ends` (an RFC 3339 time).
    fn policy_ending(min_approvals: u8, ends: Option<&str>) -> Policy {
        let ends = ends.map(|at| format!("    expiresAt: {at}\n")).unwrap_or_default();
        Policy::from_yaml(
            "t.yaml",
            &format!(
                "version: 1\nrules:\n  - id: self\n    scope: {SUB}\n    roles: [Reader]\n    principals: [user:{ALICE}]\n{ends}  - id: approved\n    scope: {SUB}\n    roles: [Contributor]\n    principals: [user:{ALICE}]\n{ends}    approval:\n      approvers: [user:{BOB}, user:{CAROL}]\n      minApprovals: {min_approvals}\n      timeout: PT1H\n"
            ),
        )
        .unwrap()
    }

    /// The same rules without Alice: the policy after she was dropped.
    fn policy_without_alice() -> Policy {
        Policy::from_yaml(
            "t.yaml",
            &format!(
                "version: 1\nrules:\n  - id: self\n    scope: {SUB}\n    roles: [Reader]\n    principals: [user:{CAROL}]\n  - id: approved\n    scope: {SUB}\n    roles: [Contributor]\n    principals: [user:{CAROL}]\n    approval:\n      approvers: [user:{BOB}]\n      timeout: PT1H\n"
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
        open_at(policy, role, IsoDuration::from_hours(1), None)
    }

    /// Alice asks at t(0) for `role` for `duration`, starting at `start` (now when `None`).
    fn open_at(policy: &Policy, role: &str, duration: IsoDuration, start: Option<DateTime<Utc>>) -> Activation {
        let draft = ActivationDraft {
            principal_id: PrincipalId::parse(ALICE).unwrap(),
            role_definition_id: RoleDefinitionId::parse(role).unwrap(),
            scope: Scope::parse(SUB).unwrap(),
            rule_id: None,
            duration: Some(duration),
            justification: Some(Justification::parse("INC-1").unwrap()),
            ticket: None,
            start_at: start,
        };
        let authorized = policy.authorize_activation(draft, &subject(ALICE), t(0)).unwrap();
        Activation::open(ActivationId::new_random(), authorized, t(0)).activation
    }

    fn secs(minutes: i64, seconds: i64) -> DateTime<Utc> {
        t(minutes) + chrono::TimeDelta::seconds(seconds)
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

    #[test]
    fn an_approval_never_gives_access_past_the_end_of_eligibility() {
        // Eligibility ends at 12:15; Alice asks at 12:00 for 14 min 50 s; Bob approves at 12:03.
        let p = policy_ending(1, Some("2026-11-25T12:15:00Z"));
        let a = open_at(&p, "Contributor", IsoDuration::parse("PT14M50S").unwrap(), None);
        let bob = authorize_approver(&p, &a, &subject(BOB), t(3)).unwrap();
        assert_eq!(bob.eligibility().ends(), Some(t(15)));
        let done = a.approve(bob, why(), t(3)).unwrap();
        assert_eq!(done.activation.status(), Status::Provisioning);
        assert_eq!(done.activation.expires_at(), Some(t(15)), "not 12:17:50");
        let limit = *done.activation.expiry_limit().unwrap();
        assert_eq!((limit.eligibility_ends, limit.requested_expiry), (t(15), secs(17, 50)));
        let note = done.note.clone().unwrap();
        assert!(
            note.contains("`approved`") && note.contains("2026-11-25T12:15:00Z") && note.contains("PT2M50S"),
            "{note}"
        );
        let event = crate::domain::audit::AuditEvent::of(
            &done,
            crate::domain::audit::Actor::System,
            None,
            Some("more".into()),
            t(3),
        );
        assert_eq!(event.detail, Some(format!("{note}; more")), "the audit carries the note first");
        // The cut survives provisioning.
        let active = done.activation.provisioned("ra".into(), t(3)).unwrap().activation;
        assert_eq!((active.expires_at(), active.expiry_limit()), (Some(t(15)), Some(&limit)));
    }

    #[test]
    fn an_approval_inside_eligibility_is_not_cut() {
        let p = policy_ending(1, Some("2026-11-25T12:15:00Z"));
        let a = open_at(&p, "Contributor", IsoDuration::from_minutes(10), None);
        let bob = authorize_approver(&p, &a, &subject(BOB), t(5)).unwrap();
        let done = a.approve(bob, why(), t(5)).unwrap();
        assert_eq!(
            (done.activation.expires_at(), done.activation.expiry_limit(), done.note),
            (Some(t(15)), None, None)
        );
    }

    #[test]
    fn an_approval_leaving_less_than_the_minimum_is_refused() {
        let p = policy_ending(1, Some("2026-11-25T12:15:00Z"));
        let a = open_at(&p, "Contributor", IsoDuration::parse("PT14M50S").unwrap(), None);
        // Exactly five minutes left is enough …
        let bob = authorize_approver(&p, &a, &subject(BOB), t(10)).unwrap();
        assert_eq!(a.clone().approve(bob, why(), t(10)).unwrap().activation.expires_at(), Some(t(15)));
        // … a second less is not, and the approver may still deny.
        let late = secs(10, 1);
        let bob = authorize_approver(&p, &a, &subject(BOB), late).unwrap();
        let refused = a.clone().approve(bob, why(), late).unwrap_err();
        assert!(
            matches!(&refused, TransitionError::EligibilityEndsTooSoon(e) if e.ends == t(15) && e.begin == late),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("2026-11-25T12:15:00Z"), "{refused}");
        let bob = authorize_approver(&p, &a, &subject(BOB), late).unwrap();
        assert_eq!(a.deny(bob, why(), late).unwrap().activation.status(), Status::Denied);
    }

    #[test]
    fn a_partial_approval_is_recorded_and_the_last_one_is_bounded() {
        let p = policy_ending(2, Some("2026-11-25T12:15:00Z"));
        let a = open_at(&p, "Contributor", IsoDuration::parse("PT14M50S").unwrap(), None);
        let bob = authorize_approver(&p, &a, &subject(BOB), t(11)).unwrap();
        let step = a.approve(bob, why(), t(11)).unwrap();
        assert_eq!(step.action, Action::ApprovalRecorded, "one of two grants nothing yet");
        let carol = authorize_approver(&p, &step.activation, &subject(CAROL), t(11)).unwrap();
        assert!(matches!(
            step.activation.approve(carol, why(), t(11)),
            Err(TransitionError::EligibilityEndsTooSoon(_))
        ));
    }

    #[test]
    fn an_approved_request_to_start_later_is_checked_again_at_its_start() {
        let p = policy(1);
        let a = open_at(&p, "Contributor", IsoDuration::from_hours(1), Some(t(30)));
        let bob = authorize_approver(&p, &a, &subject(BOB), t(5)).unwrap();
        let approved = a.approve(bob, why(), t(5)).unwrap().activation;
        assert_eq!(approved.status(), Status::Scheduled);
        // The policy then drops Alice.
        let after = policy_without_alice();
        let refusal = after.authorize_start(approved.request(), t(30)).unwrap_err();
        assert_eq!(refusal.code(), "NoLongerEligible");
        assert!(matches!(approved.clone().refuse_start(refusal.clone(), t(29)), Err(TransitionError::NotYetDue(_))));
        let ended = approved.refuse_start(refusal, t(30)).unwrap();
        assert_eq!((ended.action, ended.before), (Action::StartRefused, Some(Status::Scheduled)));
        let State::Failed { at, failure } = ended.activation.state() else { panic!("{:?}", ended.activation.state()) };
        assert_eq!((*at, failure.code.as_str()), (t(30), "NoLongerEligible"));
        assert!(failure.message.contains(ALICE), "{}", failure.message);
        assert_eq!(ended.activation.due_at(), None, "terminal");
        assert_eq!(ended.activation.expires_at(), None, "nothing was granted");
        assert!(ended.note.unwrap().starts_with("start refused: the requester is no longer eligible"));
    }

    #[test]
    fn a_scheduled_start_asks_the_policy_again() {
        let p = policy(1);
        let a = open_at(&p, "Reader", IsoDuration::from_hours(1), Some(secs(1, 10)));
        assert_eq!(a.status(), Status::Scheduled);
        // Unchanged policy: it starts, the clock running from the start.
        let permit = p.authorize_start(a.request(), t(2)).unwrap();
        let started = a.clone().start(permit, t(2)).unwrap();
        assert_eq!(
            (started.action, started.activation.expires_at(), started.note),
            (Action::Started, Some(t(62)), None)
        );
        // Each way the rule can stop applying is a refusal.
        let without_rule = Policy::from_yaml(
            "t.yaml",
            &format!("version: 1\nrules:\n  - id: other\n    scope: {SUB}\n    roles: [Reader]\n    principals: [user:{ALICE}]\n"),
        )
        .unwrap();
        let other_role = Policy::from_yaml(
            "t.yaml",
            &format!("version: 1\nrules:\n  - id: self\n    scope: {SUB}\n    roles: [Contributor]\n    principals: [user:{ALICE}]\n"),
        )
        .unwrap();
        let narrower = Policy::from_yaml(
            "t.yaml",
            &format!("version: 1\nrules:\n  - id: self\n    scope: {SUB}/resourceGroups/rg\n    roles: [Reader]\n    principals: [user:{ALICE}]\n"),
        )
        .unwrap();
        let ended = policy_ending(1, Some("2026-11-25T12:02:00Z"));
        for (what, changed) in [
            ("dropped", policy_without_alice()),
            ("rule gone", without_rule),
            ("role gone", other_role),
            ("scope gone", narrower),
            ("rule ended", ended),
        ] {
            let refusal = changed.authorize_start(a.request(), t(2)).unwrap_err();
            assert_eq!(refusal.code(), "NoLongerEligible", "{what}: {refusal}");
        }
    }

    #[test]
    fn a_late_start_is_cut_at_the_end_of_eligibility_or_refused() {
        let p = policy_ending(1, Some("2026-11-25T12:15:00Z"));
        let a = open_at(&p, "Reader", IsoDuration::from_minutes(10), Some(t(4)));
        // Started late, at 12:08: cut at 12:15, three minutes short.
        let permit = p.authorize_start(a.request(), t(8)).unwrap();
        let started = a.clone().start(permit, t(8)).unwrap();
        assert_eq!(started.activation.expires_at(), Some(t(15)));
        assert!(started.note.unwrap().contains("PT3M"));
        // At 12:10 exactly five minutes are left; at 12:11 four.
        assert!(p.authorize_start(a.request(), t(10)).is_ok());
        let refusal = p.authorize_start(a.request(), t(11)).unwrap_err();
        assert_eq!(refusal.code(), "EligibilityEndsTooSoon");
        let ended = a.refuse_start(refusal, t(11)).unwrap().activation;
        assert!(matches!(ended.state(), State::Failed { failure, .. } if failure.code == "EligibilityEndsTooSoon"));
    }

    #[test]
    fn an_extension_approved_after_eligibility_moved_is_cut_or_refused() {
        let p = policy(1);
        let a = open(&p, "Contributor");
        let bob = authorize_approver(&p, &a, &subject(BOB), t(0)).unwrap();
        let active = a.approve(bob, why(), t(0)).unwrap().activation.provisioned("ra".into(), t(0)).unwrap().activation;
        let draft = crate::domain::policy::ExtensionDraft {
            request: active.request(),
            activated_at: t(0),
            current_expiry: t(60),
            additional: IsoDuration::from_hours(1),
            justification: Some(why()),
        };
        let extension = p.authorize_extension(draft, &subject(ALICE), t(10)).unwrap();
        let pending = active.extend(extension, t(10)).unwrap().activation;
        // Meanwhile the rule gets an end at 13:30 (half an hour into the extension) …
        let cut = policy_ending(1, Some("2026-11-25T13:30:00Z"));
        let bob = authorize_approver(&cut, &pending, &subject(BOB), t(20)).unwrap();
        let extended = pending.clone().approve(bob, why(), t(20)).unwrap();
        assert_eq!((extended.action, extended.activation.expires_at()), (Action::Extended, Some(t(90))));
        assert!(extended.activation.expiry_limit().is_some());
        // … or at 12:50, before the current expiry: nothing can be added.
        let gone = policy_ending(1, Some("2026-11-25T12:50:00Z"));
        let bob = authorize_approver(&gone, &pending, &subject(BOB), t(20)).unwrap();
        assert!(matches!(pending.approve(bob, why(), t(20)), Err(TransitionError::EligibilityEndsTooSoon(_))));
    }

    #[test]
    fn activations_stored_before_expiry_limits_still_load() {
        let a = open(&policy(1), "Reader");
        let mut stored = serde_json::to_value(&a).unwrap();
        assert!(stored.get("expiryLimit").is_none(), "nothing new is written when nothing was cut");
        stored.as_object_mut().unwrap().remove("expiryLimit");
        let loaded: Activation = serde_json::from_value(stored).unwrap();
        assert_eq!((loaded.expiry_limit(), &loaded), (None, &a));
        // And a cut one round-trips.
        let p = policy_ending(1, Some("2026-11-25T12:15:00Z"));
        let b = open_at(&p, "Contributor", IsoDuration::parse("PT14M50S").unwrap(), None);
        let bob = authorize_approver(&p, &b, &subject(BOB), t(3)).unwrap();
        let cut = b.approve(bob, why(), t(3)).unwrap().activation;
        let text = serde_json::to_string(&cut).unwrap();
        assert!(
            text.contains(
                r#""expiryLimit":{"eligibilityEnds":"2026-11-25T12:15:00Z","requestedExpiry":"2026-11-25T12:17:50Z"}"#
            ),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Activation>(&text).unwrap(), cut);
    }

    fn arb_step() -> impl Strategy<Value = u8> {
        0u8..9
    }

    proptest! {
        /// Whatever sequence of events arrives, nothing is Active unless it was authorised by the
        /// policy and, where the rule demands it, approved by enough distinct approvers; and a
        /// terminal status never changes again.
        #[test]
        fn lifecycle_invariants_hold(steps in prop::collection::vec((arb_step(), 0i64..60), 1..20), needs_approval in any::<bool>(), min in 1u8..=2, scheduled in any::<bool>(), ends in prop::option::of(60i64..150)) {
            // Eligibility may end (between 13:00 and 14:30); requests may start later (12:10).
            let end = ends.map(|m| t(m).to_rfc3339());
            let p = policy_ending(min, end.as_deref());
            let role = if needs_approval { "Contributor" } else { "Reader" };
            let mut a = open_at(&p, role, IsoDuration::from_minutes(50), scheduled.then(|| t(10)));
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
                    5 => Some(match p.authorize_start(a.request(), t(now)) {
                        Ok(permit) => a.clone().start(permit, t(now)),
                        Err(refusal) => a.clone().refuse_start(refusal, t(now)),
                    }),
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
                // Access never outlasts eligibility, and is never shorter than the minimum.
                if let (Some(expires_at), Some(end)) = (a.expires_at(), ends.map(t)) {
                    prop_assert!(expires_at <= end, "{expires_at} after the end of eligibility {end}");
                }
                if let (Some(begin), Some(expires_at)) = (a.starts_at(), a.expires_at()) {
                    prop_assert!(expires_at - begin >= crate::domain::policy::MIN_ACTIVATION.as_delta() || a.status() == Status::Active);
                }
            }
        }
    }
}
