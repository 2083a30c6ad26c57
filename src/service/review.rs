//! Approvers deciding on requests and extensions.

use chrono::{DateTime, Utc};

use crate::domain::activation::{Activation, Decision, Status};
use crate::domain::approver::authorize_approver;
use crate::domain::ids::{ActivationId, Justification, RuleId};

use super::ports::{AwaitingQuery, Caller, Page};
use super::{Elevate, PageRequest, ServiceError};

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
        let subject = self.subject(caller).await?;
        // Approving needs the requester still in the group that made them eligible (denying never
        // does): their token is as old as their request, the directory says what is true now.
        let left = match input.decision {
            Decision::Approve if current.value.awaits_decision() => self.left_group(&current.value).await?,
            Decision::Approve | Decision::Deny => None,
        };
        if let Some(deny) = left {
            return Err(ServiceError::ApproverDenied(
                crate::domain::approver::ApproverDenied::RequesterNoLongerEligible(deny),
            ));
        }
        let policy = self.effective_policy().await?;
        let updated = self
            .apply(id, &Elevate::actor(caller), now, |a| {
                let approver = authorize_approver(&policy, &a, &subject, now)?;
                let transition = match input.decision {
                    Decision::Approve => a.approve(approver, input.justification.clone(), now)?,
                    Decision::Deny => a.deny(approver, input.justification.clone(), now)?,
                };
                Ok((transition, Some(input.justification.clone()), None))
            })
            .await?;
        tracing::info!(status = %updated.value.status(), "decision recorded");
        fail_point!("approve.after_record");
        if updated.value.status() == Status::Provisioning {
            return self.provision_or_defer(updated, now).await;
        }
        Ok(updated.value)
    }

    /// What waits for this caller's decision, a page at a time, newest first: pending requests
    /// and extensions under the rules they approve (the store's index of what awaits a decision,
    /// by rule), not their own, not already decided by them. A page may hold fewer than `top`
    /// (what the caller may not decide on is left out) and still have a next.
    pub async fn pending_approvals(
        &self,
        caller: &Caller,
        page: PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<Activation>, ServiceError> {
        let subject = self.subject(caller).await?;
        let rules: Vec<RuleId> =
            self.policy.approver_rules(&subject.principal_id, &subject.groups).map(|r| r.id.clone()).collect();
        if rules.is_empty() {
            return Ok(Page { items: Vec::new(), next: None });
        }
        let query = AwaitingQuery { rules, limit: page.limit(), after: page.after, now };
        let policy = self.effective_policy().await?;
        let found = self.store.awaiting_decision(&query).await?;
        Ok(Page {
            items: found.items.into_iter().filter(|a| authorize_approver(&policy, a, &subject, now).is_ok()).collect(),
            next: found.next,
        })
    }

    /// Whether the caller may decide on this activation now (for the approval page).
    pub async fn can_decide(
        &self,
        caller: &Caller,
        activation: &Activation,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let subject = self.subject(caller).await?;
        let policy = self.effective_policy().await?;
        authorize_approver(&policy, activation, &subject, now).map(|_| ()).map_err(ServiceError::from)
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
