//! Reading: one activation with its history, lists, eligibilities, the audit trail.

use chrono::{DateTime, Utc};

use crate::domain::activation::{Action, Activation, Status};
use crate::domain::audit::AuditEvent;
use crate::domain::ids::{ActivationId, DisplayName, PrincipalId, RoleDefinitionId};
use crate::domain::policy::Rule;
use crate::domain::scope::Scope;

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

/// What `GET /api/audit` selects. The store selects by activation, principal and `since`; the
/// rest is read from each event (role, scope at or below, action, `until`).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub activation_id: Option<ActivationId>,
    pub principal_id: Option<PrincipalId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub role_definition_id: Option<RoleDefinitionId>,
    /// Events at this scope or below it.
    pub scope: Option<Scope>,
    pub action: Option<Action>,
}

impl AuditFilter {
    fn keeps(&self, e: &AuditEvent) -> bool {
        self.until.is_none_or(|until| e.at <= until)
            && self.role_definition_id.is_none_or(|r| e.role_definition_id == Some(r))
            && self.scope.as_ref().is_none_or(|s| e.scope.as_ref().is_some_and(|at| s.contains(at)))
            && self.action.is_none_or(|a| e.action == a)
    }
}

/// The newest requests `decided_by` looks through (one store read each on Table Storage).
pub const DECIDED_SCAN: usize = 100;

/// Store pages one audit request reads at most while filters drop events: a page may come back
/// short (with a next link), never after an unbounded scan.
const AUDIT_SCAN_PAGES: usize = 10;

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
        let effective = self.effective_policy().await?;
        let eligible: Vec<&crate::domain::ids::RuleId> =
            effective.eligible_rules(&subject.principal_id, &subject.groups, now).map(|r| &r.id).collect();
        Ok(self.policy.rules().iter().filter(|r| eligible.contains(&&r.id)).collect())
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
        let limit = page.limit();
        let mut query = AuditQuery {
            activation_id: filter.activation_id,
            principal_id: filter.principal_id,
            since: filter.since,
            limit,
            after: page.after,
        };
        let mut items = Vec::new();
        for _ in 0..AUDIT_SCAN_PAGES {
            let found = self.store.audit(&query).await?;
            // Oldest first: past `until`, nothing later can match.
            let past_until = filter.until.is_some_and(|until| found.items.iter().any(|e| e.at > until));
            items.extend(found.items.into_iter().filter(|e| filter.keeps(e)));
            let next = if past_until { None } else { found.next };
            match next {
                Some(token) if items.len() < limit => query.after = Some(token),
                next => return Ok(Page { items, next }),
            }
        }
        Ok(Page { items, next: query.after })
    }

    /// Requests the caller decided on, newest first, among the `DECIDED_SCAN` newest requests.
    /// Nothing is read for a caller who approves under no rule: the page costs them nothing.
    pub async fn decided_by(
        &self,
        caller: &Caller,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Activation>, ServiceError> {
        let subject = self.subject(caller).await?;
        if self.policy.approver_rules(&subject.principal_id, &subject.groups).next().is_none() {
            return Ok(Vec::new());
        }
        let query = ActivationQuery { principal_id: None, statuses: Vec::new(), limit: DECIDED_SCAN, after: None, now };
        let page = self.store.list(&query).await?;
        Ok(page
            .items
            .into_iter()
            .filter(|a| a.approvals().iter().any(|d| d.approver_id == caller.principal_id))
            .take(limit)
            .collect())
    }
}
