//! Audit events: one per state change, written atomically with it (design invariant 3).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::activation::{Action, Activation, Status, Transition};
use super::ids::{ActivationId, Justification, PrincipalId, RoleDefinitionId, RuleId, Ticket};
use super::scope::Scope;

/// Who caused a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Actor {
    /// A signed-in person or application acting for itself.
    Principal { id: PrincipalId },
    /// An allow-listed broker application acting for a user.
    Broker { id: PrincipalId, app_id: String },
    /// Elevate itself (the sweeper, provisioning).
    System,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: Uuid,
    pub activation_id: ActivationId,
    pub principal_id: PrincipalId,
    pub actor: Actor,
    pub action: Action,
    pub at: DateTime<Utc>,
    pub status_before: Option<Status>,
    pub status_after: Status,
    pub rule_id: RuleId,
    /// The role and scope of the activation, so the trail can be searched by them. Events
    /// written before these were recorded have neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_definition_id: Option<RoleDefinitionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    pub justification: Option<Justification>,
    pub ticket: Option<Ticket>,
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The event for a transition. `justification` is the one given for this step (a decision's
    /// or an extension's), or else the request's. The detail is the transition's own note, then
    /// the caller's `detail`.
    pub fn of(
        transition: &Transition,
        actor: Actor,
        justification: Option<Justification>,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let a: &Activation = &transition.activation;
        let request = a.request();
        AuditEvent {
            id: Uuid::new_v4(),
            activation_id: a.id(),
            principal_id: request.principal_id,
            actor,
            action: transition.action,
            at: now,
            status_before: transition.before,
            status_after: a.status(),
            rule_id: request.rule_id.clone(),
            role_definition_id: Some(request.role_definition_id),
            scope: Some(request.scope.clone()),
            justification: justification.or_else(|| request.justification.clone()),
            ticket: request.ticket.clone(),
            detail: match (transition.note.clone(), detail) {
                (Some(note), Some(detail)) => Some(format!("{note}; {detail}")),
                (note, detail) => note.or(detail),
            },
        }
    }
}
