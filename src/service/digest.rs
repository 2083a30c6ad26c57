//! The weekly digest (timer `digest`, Mondays 08:00 UTC; weekly in standalone): what the last
//! seven days brought and what waits now — activations by role, denials, approvals waiting, open
//! alerts, access reviews due — told as one bulletin to the notice sinks, linking to the portal.
//!
//! It only reads: it never grants, removes or decides anything. It is named by its ISO week
//! (`digest-2026-W48`), so a rerun in the same week queues nothing new. A digest whose counts
//! could not all be read is not sent (it would take the week's name with wrong figures): the
//! report says what failed, and a rerun that week sends the whole one.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use serde::Serialize;

use crate::domain::activation::{Action, Status};
use crate::domain::governance::Severity;
use crate::domain::ids::RoleDefinitionId;
use crate::domain::notification::{Bulletin, BulletinKind};

use super::ports::{AuditQuery, AwaitingQuery};
use super::{AlertStatus, CampaignSummary, Elevate, ServiceError};

/// How far back the digest looks.
pub const WINDOW: TimeDelta = TimeDelta::days(7);
/// Audit pages (of `MAX_LIST` events) one digest reads; beyond, its counts are lower bounds.
const AUDIT_PAGES: usize = 200;
/// Pages of activations awaiting a decision one digest reads; beyond, a lower bound.
const AWAITING_PAGES: usize = 20;
/// Open alerts and reviews the digest names one by one (the rest are counted).
const NAMED: usize = 5;
/// The page the digest links to.
const PORTAL: &str = "/api/portal";

/// Activations of one role in the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleCount {
    /// The built-in name where known, else the role definition id.
    pub role: String,
    /// `None` for events recorded before audit events carried their role.
    pub role_definition_id: Option<String>,
    pub count: usize,
}

/// What a digest counted, and whether it was told.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestReport {
    /// The bulletin's id: `digest-<ISO week>`.
    pub id: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Access granted in the window (activations that became active).
    pub activations: usize,
    /// The same by role, most activated first.
    pub by_role: Vec<RoleCount>,
    /// Requests and extensions an approver denied in the window.
    pub denials: usize,
    /// Requests and extensions waiting for an approver now.
    pub awaiting_approval: usize,
    /// Governance alerts open now.
    pub open_alerts: usize,
    /// Of which high severity.
    pub high_alerts: usize,
    /// Access review campaigns open now.
    pub reviews_due: Vec<CampaignSummary>,
    /// `false` when the window's audit or the approvals waiting held more than one digest
    /// reads: the counts are then lower bounds ("at least").
    pub complete: bool,
    /// Whether the bulletin was queued now.
    pub queued: bool,
    /// Why not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_queued: Option<String>,
    /// What could not be read (then nothing is sent).
    pub failures: Vec<String>,
}

/// What the audit of the window says.
#[derive(Default)]
struct Window {
    activations: HashMap<Option<RoleDefinitionId>, usize>,
    denials: usize,
    complete: bool,
}

/// The digest's id: its ISO week (`digest-2026-W48`).
pub fn digest_id(now: DateTime<Utc>) -> String {
    let week = now.iso_week();
    format!("digest-{}-W{:02}", week.year(), week.week())
}

impl Elevate {
    /// Counts the last seven days up to `now` and what waits now, and queues the week's digest
    /// (once per ISO week) when everything could be read.
    #[tracing::instrument(skip_all, fields(now = %now))]
    pub async fn digest(&self, now: DateTime<Utc>) -> Result<DigestReport, ServiceError> {
        let since = now - WINDOW;
        let mut failures = Vec::new();
        let window = self.digest_window(since, now).await.unwrap_or_else(|e| {
            failures.push(format!("reading the audit: {e}"));
            Window { complete: true, ..Window::default() }
        });
        let (awaiting, awaiting_complete) = self.awaiting_count(now).await.unwrap_or_else(|e| {
            failures.push(format!("reading the approvals waiting: {e}"));
            (0, true)
        });
        let alerts = self.stored_alerts(false).await.unwrap_or_else(|e| {
            failures.push(format!("reading the alerts: {e}"));
            Vec::new()
        });
        let open: Vec<_> = alerts.into_iter().filter(|a| a.status == AlertStatus::Open).collect();
        let reviews_due = self.reviews_due(now).await.unwrap_or_else(|e| {
            failures.push(format!("reading the access reviews: {e}"));
            Vec::new()
        });

        let mut by_role: Vec<RoleCount> = window
            .activations
            .iter()
            .map(|(role, count)| RoleCount {
                role: role.map_or_else(
                    || "role not recorded".to_owned(),
                    |r| r.built_in_name().map_or_else(|| r.to_string(), str::to_owned),
                ),
                role_definition_id: role.map(|r| r.to_string()),
                count: *count,
            })
            .collect();
        by_role.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.role.cmp(&b.role)));
        let mut report = DigestReport {
            id: digest_id(now),
            since,
            until: now,
            activations: by_role.iter().map(|r| r.count).sum(),
            by_role,
            denials: window.denials,
            awaiting_approval: awaiting,
            open_alerts: open.len(),
            high_alerts: open.iter().filter(|a| a.finding.severity == Severity::High).count(),
            reviews_due,
            complete: window.complete && awaiting_complete,
            queued: false,
            not_queued: None,
            failures,
        };
        let alert_lines: Vec<String> =
            open.iter().take(NAMED).map(|a| format!("Alert ({:?}): {}", a.finding.severity, a.finding.title)).collect();
        let bulletin = compose(&report, alert_lines, now);
        bulletin.check().map_err(|e| ServiceError::Internal(e.to_string()))?;

        report.not_queued = if !report.failures.is_empty() {
            Some("not sent: some counts could not be read (see failures); a rerun this week sends it".to_owned())
        } else if !self.notifier.as_ref().is_some_and(|n| n.has_sinks()) {
            Some("no notification sinks are configured".to_owned())
        } else if self.announce(bulletin, now).await {
            report.queued = true;
            None
        } else {
            Some("this week's digest was already queued".to_owned())
        };
        tracing::info!(
            digest = %report.id,
            activations = report.activations,
            denials = report.denials,
            awaiting = report.awaiting_approval,
            open_alerts = report.open_alerts,
            reviews_due = report.reviews_due.len(),
            queued = report.queued,
            "digest counted"
        );
        Ok(report)
    }

    /// Activations granted and denials in `(since, until]`, from the audit.
    async fn digest_window(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> Result<Window, ServiceError> {
        let mut window = Window::default();
        let mut query = AuditQuery { since: Some(since), limit: super::MAX_LIST, ..AuditQuery::default() };
        for _ in 0..AUDIT_PAGES {
            let page = self.store.audit(&query).await?;
            for e in page.items.iter().filter(|e| e.at > since && e.at <= until) {
                match e.action {
                    Action::Provisioned if e.status_after == Status::Active => {
                        *window.activations.entry(e.role_definition_id).or_default() += 1;
                    }
                    Action::Denied | Action::ExtensionDenied => window.denials += 1,
                    _ => {}
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => {
                    window.complete = true;
                    return Ok(window);
                }
            }
        }
        Ok(window)
    }

    /// Requests and extensions waiting for an approver under any rule of the policy; `false`
    /// when there were more than one digest reads.
    async fn awaiting_count(&self, now: DateTime<Utc>) -> Result<(usize, bool), ServiceError> {
        let rules = self.policy.rules().iter().map(|r| r.id.clone()).collect();
        let mut query = AwaitingQuery { rules, limit: super::MAX_LIST, after: None, now };
        let mut count = 0;
        for _ in 0..AWAITING_PAGES {
            let page = self.store.awaiting_decision(&query).await?;
            count += page.items.len();
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok((count, true)),
            }
        }
        Ok((count, false))
    }
}

/// The digest as people read it: figures as facts, then one line per role activated, per open
/// alert named and per review due.
fn compose(report: &DigestReport, alert_lines: Vec<String>, now: DateTime<Utc>) -> Bulletin {
    let at_least = if report.complete { "" } else { "at least " };
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let undecided: u64 = report.reviews_due.iter().map(|r| u64::from(r.undecided)).sum();
    let facts = vec![
        ("Period".to_owned(), format!("{} to {}", day(report.since), day(report.until))),
        ("Activations".to_owned(), format!("{at_least}{}", report.activations)),
        ("Denials".to_owned(), format!("{at_least}{}", report.denials)),
        ("Approvals waiting".to_owned(), format!("{at_least}{}", report.awaiting_approval)),
        ("Open alerts".to_owned(), format!("{} ({} high severity)", report.open_alerts, report.high_alerts)),
        (
            "Reviews due".to_owned(),
            format!("{} ({undecided} item{} undecided)", report.reviews_due.len(), plural(undecided)),
        ),
    ];
    let mut lines: Vec<String> = report
        .by_role
        .iter()
        .map(|r| format!("{}: {} activation{}", r.role, r.count, plural(r.count as u64)))
        .collect();
    if report.by_role.is_empty() {
        lines.push("No activations this week".to_owned());
    }
    lines.extend(alert_lines);
    if report.open_alerts > NAMED {
        lines.push(format!("{} more open alerts", report.open_alerts - NAMED));
    }
    lines.extend(report.reviews_due.iter().take(NAMED).map(|r| {
        format!("Review {} ({}) ends {}: {} of {} undecided", r.review, r.id, day(r.ends), r.undecided, r.items)
    }));
    if report.reviews_due.len() > NAMED {
        lines.push(format!("{} more reviews due", report.reviews_due.len() - NAMED));
    }
    Bulletin {
        id: report.id.clone(),
        kind: BulletinKind::Digest,
        title: format!("Elevate, week {}", report.id.trim_start_matches("digest-")),
        lines,
        facts,
        path: PORTAL.to_owned(),
        at: now,
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_digest_is_named_by_its_iso_week() {
        assert_eq!(digest_id(t("2026-11-23T08:00:00Z")), "digest-2026-W48");
        assert_eq!(digest_id(t("2026-11-29T23:59:59Z")), "digest-2026-W48", "Sunday ends the week");
        assert_eq!(digest_id(t("2026-11-30T00:00:00Z")), "digest-2026-W49");
        // The ISO year, not the calendar year: 1 January 2027 is a Friday of 2026's week 53.
        assert_eq!(digest_id(t("2027-01-01T08:00:00Z")), "digest-2026-W53");
    }

    fn report(complete: bool) -> DigestReport {
        DigestReport {
            id: "digest-2026-W48".into(),
            since: t("2026-11-16T08:00:00Z"),
            until: t("2026-11-23T08:00:00Z"),
            activations: 3,
            by_role: vec![
                RoleCount { role: "Owner".into(), role_definition_id: Some("x".into()), count: 2 },
                RoleCount { role: "Reader".into(), role_definition_id: Some("y".into()), count: 1 },
            ],
            denials: 1,
            awaiting_approval: 0,
            open_alerts: 7,
            high_alerts: 2,
            reviews_due: vec![CampaignSummary {
                id: "q4-2026".into(),
                review: "quarterly".into(),
                ends: t("2026-12-01T00:00:00Z"),
                items: 10,
                undecided: 4,
            }],
            complete,
            queued: false,
            not_queued: None,
            failures: Vec::new(),
        }
    }

    #[test]
    fn a_digest_reads_as_facts_and_lines() {
        let alerts = (0..5).map(|i| format!("Alert (High): alert {i}")).collect();
        let b = compose(&report(true), alerts, t("2026-11-23T08:00:00Z"));
        assert_eq!(b.check(), Ok(()));
        assert_eq!((b.id.as_str(), b.kind, b.path.as_str()), ("digest-2026-W48", BulletinKind::Digest, "/api/portal"));
        assert_eq!(b.title, "Elevate, week 2026-W48");
        let fact = |label: &str| b.facts.iter().find(|(l, _)| l == label).map(|(_, v)| v.as_str());
        assert_eq!(fact("Period"), Some("2026-11-16 08:00 UTC to 2026-11-23 08:00 UTC"));
        assert_eq!(fact("Activations"), Some("3"));
        assert_eq!(fact("Denials"), Some("1"));
        assert_eq!(fact("Approvals waiting"), Some("0"));
        assert_eq!(fact("Open alerts"), Some("7 (2 high severity)"));
        assert_eq!(fact("Reviews due"), Some("1 (4 items undecided)"));
        assert_eq!(b.lines[0], "Owner: 2 activations");
        assert_eq!(b.lines[1], "Reader: 1 activation");
        assert_eq!(b.lines[2], "Alert (High): alert 0");
        assert_eq!(b.lines[7], "2 more open alerts");
        assert_eq!(b.lines[8], "Review quarterly (q4-2026) ends 2026-12-01 00:00 UTC: 4 of 10 undecided");
        assert_eq!(b.lines.len(), 9);
    }

    #[test]
    fn incomplete_counts_are_lower_bounds_and_a_quiet_week_says_so() {
        let mut quiet = report(false);
        quiet.by_role.clear();
        quiet.activations = 0;
        let b = compose(&quiet, Vec::new(), t("2026-11-23T08:00:00Z"));
        assert!(b.facts.contains(&("Activations".to_owned(), "at least 0".to_owned())), "{:?}", b.facts);
        assert!(b.facts.contains(&("Open alerts".to_owned(), "7 (2 high severity)".to_owned())), "alerts are all read");
        assert_eq!(b.lines[0], "No activations this week");
    }
}
