//! Approvers deciding on requests and extensions.

use chrono::{DateTime, Utc};

use crate::domain::activation::{Activation, Decision, Status};
use crate::domain::approver::authorize_approver;
use crate::domain::ids::{ActivationId, Justification};

use super::ports::{ActivationQuery, Caller};
use super::{Elevate, ServiceError};

#[derive(Clone, Debug)]
pub struct DecisionInput {
    pub decision: Decision,
    pub justification: Justification,
}

impl Elevate {
    /// An approver decides. The approver is re-authorised against the latest stored state on
    /// every attempt, so concurrent decisions yield exactly one outcome.
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id, activation = %id, decision = ?input.decision))]
    pub async fn decide(
        &self,
        caller: &Caller,
        id: ActivationId,
        input: DecisionInput,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        let current = self.load(id).await?;
        if !self.may_view(caller, &current.value) {
            return Err(ServiceError::NotFound(id));
        }
        let subject = caller.subject();
        let updated = self
            .apply(id, &Elevate::actor(caller), now, |a| {
                let approver = authorize_approver(&self.policy, &a, &subject, now)?;
                let transition = match input.decision {
                    Decision::Approve => a.approve(approver, input.justification.clone(), now)?,
                    Decision::Deny => a.deny(approver, input.justification.clone(), now)?,
                };
                Ok((transition, Some(input.justification.clone()), None))
            })
            .await?;
        tracing::info!(status = %updated.value.status(), "decision recorded");
        if updated.value.status() == Status::Provisioning {
            return self.provision_or_defer(updated, now).await;
        }
        Ok(updated.value)
    }

    /// What waits for this caller's decision: pending requests and extensions of rules they
    /// approve, not their own, not already decided by them.
    pub async fn pending_approvals(
        &self,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> Result<Vec<Activation>, ServiceError> {
        let query = ActivationQuery {
            principal_id: None,
            statuses: vec![Status::PendingApproval, Status::Active],
            limit: 1000,
        };
        let subject = caller.subject();
        let all = self.store.list(&query).await?;
        Ok(all.into_iter().filter(|a| authorize_approver(&self.policy, a, &subject, now).is_ok()).collect())
    }

    /// Whether the caller may decide on this activation now (for the approval page).
    pub fn can_decide(&self, caller: &Caller, activation: &Activation, now: DateTime<Utc>) -> Result<(), ServiceError> {
        authorize_approver(&self.policy, activation, &caller.subject(), now).map(|_| ()).map_err(ServiceError::from)
    }

    /// The approval page's own view of the decision history, newest last.
    pub fn decisions(activation: &Activation) -> Vec<(String, Decision, String, DateTime<Utc>)> {
        activation
            .approvals()
            .iter()
            .map(|r| (r.approver_id.to_string(), r.decision, r.justification.to_string(), r.at))
            .collect()
    }
}
