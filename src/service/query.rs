//! Reading: one activation with its history, lists, eligibilities, the audit trail.

use chrono::{DateTime, Utc};

use crate::domain::activation::{Activation, Status};
use crate::domain::audit::AuditEvent;
use crate::domain::ids::{ActivationId, PrincipalId};
use crate::domain::policy::Rule;

use super::ports::{ActivationQuery, AuditQuery, Caller};
use super::{Elevate, ServiceError};

/// Most rows any list answers with.
pub const MAX_LIST: usize = 500;

#[derive(Debug)]
pub struct ActivationDetails {
    pub activation: Activation,
    pub history: Vec<AuditEvent>,
}

#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    /// Only the caller's own (the default); `false` needs Elevate.Admin or Elevate.Auditor.
    pub mine: bool,
    pub limit: Option<usize>,
}

impl Elevate {
    /// Requester, admins, auditors and the rule's approvers may see an activation.
    pub fn may_view(&self, caller: &Caller, activation: &Activation) -> bool {
        let request = activation.request();
        request.principal_id == caller.principal_id
            || caller.can_read_audit()
            || self.policy.rule(&request.rule_id).is_some_and(|r| r.is_approver(&caller.principal_id, &caller.groups))
    }

    pub async fn activation(&self, caller: &Caller, id: ActivationId) -> Result<ActivationDetails, ServiceError> {
        let activation = self.load(id).await?.value;
        if !self.may_view(caller, &activation) {
            return Err(ServiceError::NotFound(id));
        }
        let history =
            self.store.audit(&AuditQuery { activation_id: Some(id), limit: MAX_LIST, ..AuditQuery::default() }).await?;
        Ok(ActivationDetails { activation, history })
    }

    pub async fn list_activations(&self, caller: &Caller, filter: ListFilter) -> Result<Vec<Activation>, ServiceError> {
        if !filter.mine && !caller.can_read_audit() {
            return Err(ServiceError::Forbidden(
                "listing activations of others needs Elevate.Admin or Elevate.Auditor".into(),
            ));
        }
        let query = ActivationQuery {
            principal_id: filter.mine.then_some(caller.principal_id),
            statuses: filter.status.into_iter().collect(),
            limit: filter.limit.unwrap_or(100).min(MAX_LIST),
        };
        Ok(self.store.list(&query).await?)
    }

    /// Rules the caller may activate under now.
    pub fn eligibilities<'a>(&'a self, caller: &'a Caller, now: DateTime<Utc>) -> Vec<&'a Rule> {
        self.policy.eligible_rules(&caller.principal_id, &caller.groups, now).collect()
    }

    pub async fn audit(
        &self,
        caller: &Caller,
        activation_id: Option<ActivationId>,
        principal_id: Option<PrincipalId>,
        since: Option<DateTime<Utc>>,
        limit: Option<usize>,
    ) -> Result<Vec<AuditEvent>, ServiceError> {
        if !caller.can_read_audit() {
            return Err(ServiceError::Forbidden(
                "reading the audit trail needs Elevate.Admin or Elevate.Auditor".into(),
            ));
        }
        let query = AuditQuery { activation_id, principal_id, since, limit: limit.unwrap_or(MAX_LIST).min(MAX_LIST) };
        Ok(self.store.audit(&query).await?)
    }
}
