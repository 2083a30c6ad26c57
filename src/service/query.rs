//! Reading: one activation with its history, lists, eligibilities, the audit trail.

use chrono::{DateTime, Utc};

use crate::domain::activation::{Activation, Status};
use crate::domain::audit::AuditEvent;
use crate::domain::ids::{ActivationId, DisplayName, PrincipalId};
use crate::domain::policy::Rule;

use super::ports::{ActivationQuery, AuditQuery, Caller, Page, PageToken};
use super::{Elevate, ServiceError};

/// Most rows any list answers with.
pub const MAX_LIST: usize = 500;
/// Rows a list answers with unless asked for another number.
pub const DEFAULT_PAGE: usize = 100;

/// Which page of a list: at most `top` items (1 to `MAX_LIST`), after `after`.
#[derive(Clone, Debug, PartialEq)]
pub struct PageRequest {
    pub top: usize,
    pub after: Option<PageToken>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { top: DEFAULT_PAGE, after: None }
    }
}

impl PageRequest {
    pub(super) fn limit(&self) -> usize {
        self.top.clamp(1, MAX_LIST)
    }
}

/// What `GET /api/audit` selects.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub activation_id: Option<ActivationId>,
    pub principal_id: Option<PrincipalId>,
    pub since: Option<DateTime<Utc>>,
}

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
        let history = self
            .store
            .audit(&AuditQuery { activation_id: Some(id), limit: MAX_LIST, ..AuditQuery::default() })
            .await?
            .items;
        Ok(ActivationDetails { activation, history })
    }

    /// A page of the caller's activations (or everyone's, for admins and auditors), newest
    /// first. With a status filter a page may hold fewer than `top`, and still have a next.
    pub async fn list_activations(
        &self,
        caller: &Caller,
        filter: ListFilter,
        page: PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<Activation>, ServiceError> {
        if !filter.mine && !caller.can_read_audit() {
            return Err(ServiceError::Forbidden(
                "listing activations of others needs Elevate.Admin or Elevate.Auditor".into(),
            ));
        }
        let query = ActivationQuery {
            principal_id: filter.mine.then_some(caller.principal_id),
            statuses: filter.status.into_iter().collect(),
            limit: page.limit(),
            after: page.after,
            now,
        };
        Ok(self.store.list(&query).await?)
    }

    /// Display names for people reading a page, from the directory when there is one. Best
    /// effort and display only: a name that cannot be read is left out, never an error.
    pub async fn display_names(&self, ids: &[PrincipalId]) -> std::collections::HashMap<PrincipalId, DisplayName> {
        let mut names = std::collections::HashMap::new();
        let Some(directory) = &self.directory else { return names };
        for id in ids {
            if names.contains_key(id) {
                continue;
            }
            match directory.display_name(*id).await {
                Ok(Some(name)) => {
                    names.insert(*id, name);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(principal = %id, error = %e, "no display name"),
            }
        }
        names
    }

    /// Rules the caller may activate under now.
    pub async fn eligibilities(&self, caller: &Caller, now: DateTime<Utc>) -> Result<Vec<&Rule>, ServiceError> {
        let subject = self.subject(caller).await?;
        Ok(self.policy.eligible_rules(&subject.principal_id, &subject.groups, now).collect())
    }

    /// A page of the audit trail, oldest first.
    pub async fn audit(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, ServiceError> {
        if !caller.can_read_audit() {
            return Err(ServiceError::Forbidden(
                "reading the audit trail needs Elevate.Admin or Elevate.Auditor".into(),
            ));
        }
        let query = AuditQuery {
            activation_id: filter.activation_id,
            principal_id: filter.principal_id,
            since: filter.since,
            limit: page.limit(),
            after: page.after,
        };
        Ok(self.store.audit(&query).await?)
    }
}
