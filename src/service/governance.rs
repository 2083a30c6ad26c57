//! The governance pass (timer `governance`, `elevate governance`, hourly in standalone): read
//! what is really assigned at the policy's scopes and what was activated, judge it
//! (`domain::governance`), and keep one alert record per cause — opened when first found, its
//! last sighting updated while it lasts, resolved when the cause is gone. Alerts report; nothing
//! here grants or removes access.
//!
//! A kind is judged only from complete information: when an assignment listing fails, or the
//! audit is longer than one pass reads, the alerts that depend on it are neither raised nor
//! resolved by that pass.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::activation::Action;
use crate::domain::governance::{self, ActivationHistory, AlertKind, Finding, Found};

use super::ports::{AuditQuery, Caller, RecordId, RecordKind, StoreError, Version};
use super::{Elevate, ServiceError};

/// Audit pages (of `MAX_LIST` events) one pass reads for the activation history.
const HISTORY_PAGES: usize = 200;
/// Alert records one pass reads (open and resolved).
const MAX_ALERTS: usize = 10_000;
/// Managed scopes listed at once. Each listing reads its pages one after another; ARM's read
/// quota is per subscription (azure-spec §3.5), and scopes are mostly different subscriptions.
const LIST_CONCURRENCY: usize = 8;
/// Alert records written at once (each its own optimistic write; on Table Storage a round trip).
const WRITE_CONCURRENCY: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertStatus {
    Open,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "Open",
            AlertStatus::Resolved => "Resolved",
        }
    }
}

/// An alert as kept between passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    #[serde(flatten)]
    pub finding: Finding,
    pub status: AlertStatus,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GovernanceReport {
    pub assignments_listed: usize,
    pub open: usize,
    /// Ids of alerts this pass opened (or reopened).
    pub opened: Vec<String>,
    pub resolved: Vec<String>,
    /// What could not be read; the kinds that depend on it were left as they were.
    pub failures: Vec<String>,
    /// The audit days this pass sealed and exported (`audit_chain`).
    #[serde(skip_serializing_if = "super::audit_chain::SealReport::is_empty")]
    pub audit: super::audit_chain::SealReport,
    /// Access reviews started, reminded and applied.
    pub reviews: super::ReviewReport,
}

fn alert_kind() -> Result<RecordKind, ServiceError> {
    RecordKind::parse("alert").map_err(|e| ServiceError::Internal(e.to_string()))
}

/// The record id of an alert: a digest of its stable id (which holds scopes and ARM ids, with
/// characters no store key takes).
fn record_id(alert_id: &str) -> Result<RecordId, ServiceError> {
    let digest: String = Sha256::digest(alert_id.as_bytes()).iter().take(20).map(|b| format!("{b:02x}")).collect();
    RecordId::parse(&format!("a-{digest}")).map_err(|e| ServiceError::Internal(e.to_string()))
}

impl Elevate {
    /// One governance pass at `now`.
    #[tracing::instrument(skip_all, fields(now = %now))]
    pub async fn governance(&self, now: DateTime<Utc>) -> Result<GovernanceReport, ServiceError> {
        let mut report = GovernanceReport::default();
        let mut found = Vec::new();
        // The scopes are listed a few at a time: a page is a round trip, and 100,000 assignments
        // are a thousand pages of ARM's (BENCHMARKS.md). Results are taken in the policy's order.
        let listings: Vec<_> = stream::iter(self.policy.managed_scopes())
            .map(|scope| async move {
                let listed = self.access.list_all(&scope).await;
                (scope, listed)
            })
            .buffered(LIST_CONCURRENCY)
            .collect()
            .await;
        for (scope, listed) in listings {
            match listed {
                Ok(listed) => found.extend(listed.into_iter().map(|l| Found {
                    id: l.assignment.id,
                    principal: l.assignment.principal_id,
                    role: l.assignment.role_definition_id,
                    scope: l.assignment.scope,
                    elevates: l.elevates,
                })),
                Err(e) => {
                    tracing::warn!(scope = %scope, error = %e, "governance could not list the assignments at a managed scope");
                    report.failures.push(format!("listing assignments at {scope}: {e}"));
                }
            }
        }
        // Graph assignments carry no marker: Elevate's own are those its active activations
        // recorded. (ARM's carry the marker; this only adds to it.)
        match self.granted_ids(now).await {
            Ok(ours) => {
                for f in found.iter_mut().filter(|f| !f.elevates) {
                    f.elevates = ours.contains(&f.id.to_ascii_lowercase());
                }
            }
            Err(e) => report.failures.push(format!("reading Elevate's active grants: {e}")),
        }
        report.assignments_listed = found.len();
        let listed_all = report.failures.is_empty();
        let (history, history_complete) = self.activation_history(now).await?;
        if !history_complete {
            report.failures.push(format!(
                "the audit since the start of the longest window holds more than {} events: activation-based alerts were not judged",
                HISTORY_PAGES * super::MAX_LIST
            ));
        }
        let mut findings = governance::evaluate(&self.policy, listed_all.then_some(found.as_slice()), &history, now);
        let judged = |kind: AlertKind| {
            (listed_all || !kind.needs_assignments())
                && (history_complete || !matches!(kind, AlertKind::StaleEligibility | AlertKind::FrequentActivation))
        };
        findings.retain(|f| judged(f.kind));
        self.reconcile_alerts(findings, &judged, now, &mut report).await?;
        match self.review_pass(now).await {
            Ok(reviews) => report.reviews = reviews,
            Err(e) => {
                tracing::error!(error = %e, "the access review pass failed; the next pass retries");
                report.failures.push(format!("access reviews: {e}"));
            }
        }
        report.audit = self.seal_audit(now).await;
        report.failures.extend(report.audit.failures.iter().cloned());
        tracing::info!(report = ?report, "governance pass finished");
        Ok(report)
    }

    /// The assignment ids (lower case) Elevate's active activations hold.
    async fn granted_ids(&self, now: DateTime<Utc>) -> Result<HashSet<String>, ServiceError> {
        let mut ids = HashSet::new();
        let mut query = super::ports::ActivationQuery {
            principal_id: None,
            statuses: vec![crate::domain::activation::Status::Active],
            limit: super::MAX_LIST,
            after: None,
            now,
        };
        for _ in 0..HISTORY_PAGES {
            let page = self.store.list(&query).await?;
            for a in &page.items {
                if let crate::domain::activation::State::Active { role_assignment_id, .. } = a.state() {
                    ids.insert(role_assignment_id.to_ascii_lowercase());
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(ids),
            }
        }
        Err(ServiceError::Internal(format!("more than {} active activations", HISTORY_PAGES * super::MAX_LIST)))
    }

    /// Who activated what, from the audit: since the start of the longer of the stale and
    /// frequency windows. `false` when the audit held more than one pass reads.
    async fn activation_history(&self, now: DateTime<Utc>) -> Result<(ActivationHistory, bool), ServiceError> {
        let settings = self.policy.governance();
        let since = now - settings.stale_after.max(settings.frequent_window);
        let mut history = ActivationHistory::default();
        let mut query = AuditQuery {
            activation_id: None,
            principal_id: None,
            since: Some(since),
            limit: super::MAX_LIST,
            after: None,
        };
        for _ in 0..HISTORY_PAGES {
            let page = self.store.audit(&query).await?;
            for e in page.items.iter().filter(|e| e.action == Action::Requested) {
                let last = history.last_activation.entry((e.principal_id, e.rule_id.clone())).or_insert(e.at);
                if e.at > *last {
                    *last = e.at;
                }
                if let Some(role) = e.role_definition_id {
                    history.recent.entry((e.principal_id, role)).or_default().push(e.at);
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok((history, true)),
            }
        }
        Ok((history, false))
    }

    async fn reconcile_alerts(
        &self,
        findings: Vec<Finding>,
        judged: &impl Fn(AlertKind) -> bool,
        now: DateTime<Utc>,
        report: &mut GovernanceReport,
    ) -> Result<(), ServiceError> {
        let kind = alert_kind()?;
        let mut existing: HashMap<String, (Alert, Version)> = HashMap::new();
        for (_, stored) in self.store.records(&kind, MAX_ALERTS).await? {
            match serde_json::from_str::<Alert>(&stored.value) {
                Ok(alert) => {
                    existing.insert(alert.finding.id.clone(), (alert, stored.version));
                }
                Err(e) => tracing::error!(error = %e, "an alert record could not be read; it is left as it is"),
            }
        }
        let current: HashSet<String> = findings.iter().map(|f| f.id.clone()).collect();
        let mut writes = Vec::with_capacity(findings.len());
        for finding in findings {
            let id = record_id(&finding.id)?;
            let (alert, expected, opened) = match existing.remove(&finding.id) {
                Some((mut alert, version)) => {
                    let reopened = alert.status == AlertStatus::Resolved;
                    if reopened {
                        alert.first_seen = now;
                        alert.resolved_at = None;
                    }
                    alert.status = AlertStatus::Open;
                    alert.last_seen = now;
                    alert.finding = finding;
                    (alert, Some(version), reopened)
                }
                None => (
                    Alert { finding, status: AlertStatus::Open, first_seen: now, last_seen: now, resolved_at: None },
                    None,
                    true,
                ),
            };
            writes.push((id, alert, expected, opened));
        }
        // Every open alert is written on every pass (its last sighting): a few at a time, in order.
        let kind = &kind;
        let mut written = stream::iter(writes)
            .map(|(id, alert, expected, opened)| async move {
                let wrote = self.write_alert(kind, &id, &alert, expected.as_ref()).await?;
                let mut told = false;
                if wrote && opened {
                    tracing::warn!(alert = %alert.finding.id, kind = alert.finding.kind.as_str(), severity = ?alert.finding.severity, title = %alert.finding.title, "governance alert opened");
                    if let Some(notifier) = &self.notifier {
                        let notice = crate::domain::notification::AlertNotice::of(&alert.finding, alert.first_seen);
                        told = notifier.alert_opened(notice, now).await;
                    }
                }
                Ok::<_, ServiceError>((alert.finding.id, wrote && opened, told))
            })
            .buffered(WRITE_CONCURRENCY);
        let mut told = false;
        while let Some(result) = written.next().await {
            let (alert_id, opened, notified) = result?;
            report.open += 1;
            told |= notified;
            if opened {
                report.opened.push(alert_id);
            }
        }
        // What was queued goes out now, as after a change (the sweeper retries what fails).
        if let Some(notifier) = self.notifier.as_ref().filter(|_| told) {
            notifier.kick();
            self.queue_delivery().await;
        }
        let resolving = existing.into_iter().filter(|(alert_id, (alert, _))| {
            alert.status == AlertStatus::Open && !current.contains(alert_id) && judged(alert.finding.kind)
        });
        let mut resolved = stream::iter(resolving)
            .map(|(alert_id, (mut alert, version))| async move {
                alert.status = AlertStatus::Resolved;
                alert.resolved_at = Some(now);
                let wrote = self.write_alert(kind, &record_id(&alert_id)?, &alert, Some(&version)).await?;
                Ok::<_, ServiceError>((alert_id, wrote))
            })
            .buffer_unordered(WRITE_CONCURRENCY);
        while let Some(result) = resolved.next().await {
            let (alert_id, wrote) = result?;
            if wrote {
                tracing::info!(alert = %alert_id, "governance alert resolved: its cause is gone");
                report.resolved.push(alert_id);
            }
        }
        Ok(())
    }

    /// Writes an alert unless another pass changed it first (then its word stands: `false`).
    async fn write_alert(
        &self,
        kind: &RecordKind,
        id: &RecordId,
        alert: &Alert,
        expected: Option<&Version>,
    ) -> Result<bool, ServiceError> {
        let body = serde_json::to_string(alert).map_err(|e| ServiceError::Internal(e.to_string()))?;
        match self.store.put_record(kind, id, &body, expected).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The alerts, open ones first then by severity and id (auditors and admins).
    pub async fn alerts(&self, caller: &Caller, include_resolved: bool) -> Result<Vec<Alert>, ServiceError> {
        if !caller.can_read_audit() {
            return Err(ServiceError::Forbidden("reading alerts needs Elevate.Admin or Elevate.Auditor".into()));
        }
        self.stored_alerts(include_resolved).await
    }

    /// The alerts as `alerts` orders them, with no caller to check (the system's own reads: the
    /// digest).
    pub(super) async fn stored_alerts(&self, include_resolved: bool) -> Result<Vec<Alert>, ServiceError> {
        let mut alerts: Vec<Alert> = self
            .store
            .records(&alert_kind()?, MAX_ALERTS)
            .await?
            .into_iter()
            .filter_map(|(_, stored)| serde_json::from_str::<Alert>(&stored.value).ok())
            .filter(|a| include_resolved || a.status == AlertStatus::Open)
            .collect();
        alerts.sort_by(|a, b| {
            (a.status != AlertStatus::Open, std::cmp::Reverse(a.finding.severity), &a.finding.id).cmp(&(
                b.status != AlertStatus::Open,
                std::cmp::Reverse(b.finding.severity),
                &b.finding.id,
            ))
        });
        Ok(alerts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_stable_and_store_safe() {
        let id = "outside:/subscriptions/x/providers/microsoft.authorization/roleassignments/y";
        let a = record_id(id).map(|r| r.as_str().to_owned()).unwrap_or_default();
        assert_eq!(a, record_id(id).map(|r| r.as_str().to_owned()).unwrap_or_default());
        assert!(a.starts_with("a-") && a.len() == 42 && !a.contains('/'), "{a}");
        assert_ne!(a, record_id("outside:other").map(|r| r.as_str().to_owned()).unwrap_or_default());
    }
}
