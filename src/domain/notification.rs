//! Notifications: which changes people and systems hear about, and the outbox record that makes
//! sure they do.
//!
//! A notification is written to the outbox in the same transaction as the state change that
//! causes it (stores call [`OutboxItem::for_event`] inside their transaction), then delivered at
//! once and again on every sweep until each sink has taken it. Its id is the audit event's id
//! (or, for notices that are not state changes, a name derived from what they are about), so
//! receivers can drop duplicates and the outbox never holds one notice twice.
//!
//! Most notices tell of an activation; one tells of a governance alert that opened
//! ([`OutboxItem::alert_opened`]), and carries what people need to know of it, since an alert
//! record can change or resolve before the notice goes out. Other governance notices (access
//! reviews, the weekly digest) are [`Bulletin`]s: a title, lines and facts composed by the
//! service, carried whole by the notice ([`OutboxItem::bulletin`]).

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::activation::{Action, Status};
use super::audit::AuditEvent;
use super::governance::{AlertKind, Finding, Severity};
use super::ids::ActivationId;

/// Namespace for notices that are not state changes (UUIDv5 names).
const NOTICE_NAMESPACE: Uuid = Uuid::from_u128(0x6c1d_3a52_9f0e_4b7a_8d21_5e6f_7a8b_9c0d);

/// The `activation_id` of a notice about no activation (a governance alert's): the nil UUID.
/// The stores key every notice by an activation id (SQLite's `outbox.activation_id` column, the
/// Table Storage partition a notice shares with its activation's change), so notices about
/// alerts are kept under this one.
/// INVARIANT: no activation has it (theirs are random, version 4); what a notice is about is
/// [`OutboxItem::subject`], never this id.
pub const NO_ACTIVATION: Uuid = Uuid::nil();

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    ApprovalNeeded,
    Approved,
    Denied,
    TimedOut,
    Activated,
    ExpiringSoon,
    Expired,
    Deactivated,
    Failed,
    RevocationFailing,
    /// A governance alert opened (or reopened).
    AlertOpened,
    /// An access review started: reviewers have items to decide.
    ReviewStarted,
    /// An access review ends soon with items undecided.
    ReviewReminder,
    /// The weekly governance digest.
    Digest,
}

impl Kind {
    /// The CloudEvents `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            Kind::ApprovalNeeded => "io.elevate.activation.approvalNeeded",
            Kind::Approved => "io.elevate.activation.approved",
            Kind::Denied => "io.elevate.activation.denied",
            Kind::TimedOut => "io.elevate.activation.timedOut",
            Kind::Activated => "io.elevate.activation.activated",
            Kind::ExpiringSoon => "io.elevate.activation.expiringSoon",
            Kind::Expired => "io.elevate.activation.expired",
            Kind::Deactivated => "io.elevate.activation.deactivated",
            Kind::Failed => "io.elevate.activation.failed",
            Kind::RevocationFailing => "io.elevate.activation.revocationFailing",
            Kind::AlertOpened => "io.elevate.governance.alertOpened",
            Kind::ReviewStarted => "io.elevate.governance.reviewStarted",
            Kind::ReviewReminder => "io.elevate.governance.reviewReminder",
            Kind::Digest => "io.elevate.governance.digest",
        }
    }

    /// A short headline for people.
    pub fn headline(self) -> &'static str {
        match self {
            Kind::ApprovalNeeded => "Approval needed",
            Kind::Approved => "Approved",
            Kind::Denied => "Denied",
            Kind::TimedOut => "Request timed out",
            Kind::Activated => "Access active",
            Kind::ExpiringSoon => "Access expiring soon",
            Kind::Expired => "Access expired",
            Kind::Deactivated => "Access ended early",
            Kind::Failed => "Activation failed",
            Kind::RevocationFailing => "Revocation failing",
            Kind::AlertOpened => "Governance alert",
            Kind::ReviewStarted => "Access review started",
            Kind::ReviewReminder => "Access review ends soon",
            Kind::Digest => "Weekly digest",
        }
    }

    /// Whether people must act (shown with emphasis). An alert's severity decides for it
    /// ([`AlertNotice::is_urgent`]).
    pub fn is_urgent(self) -> bool {
        matches!(self, Kind::ApprovalNeeded | Kind::RevocationFailing | Kind::Failed | Kind::ReviewReminder)
    }
}

/// The notification a state change implies, if any. No catch-all: a new action must say here
/// whether anyone hears of it.
pub fn kind_of(event: &AuditEvent) -> Option<Kind> {
    match event.action {
        Action::Requested => (event.status_after == Status::PendingApproval).then_some(Kind::ApprovalNeeded),
        Action::ExtensionRequested => Some(Kind::ApprovalNeeded),
        Action::Approved | Action::Extended => Some(Kind::Approved),
        Action::Denied | Action::ExtensionDenied => Some(Kind::Denied),
        Action::TimedOut | Action::ExtensionTimedOut => Some(Kind::TimedOut),
        Action::Provisioned => (event.status_after == Status::Active).then_some(Kind::Activated),
        Action::ProvisioningFailed | Action::StartRefused => Some(Kind::Failed),
        Action::Expired => Some(Kind::Expired),
        Action::Deactivated => Some(Kind::Deactivated),
        Action::ApprovalRecorded
        | Action::ExtensionApprovalRecorded
        | Action::Canceled
        | Action::Started
        | Action::GrantRequested => None,
    }
}

/// A governance alert as its notice tells of it: what the alert said when it opened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertNotice {
    /// The alert's stable id (`outside:…`, `permanent:…`, …).
    pub alert_id: String,
    pub kind: AlertKind,
    pub severity: Severity,
    pub title: String,
    /// What is affected, one line each.
    pub items: Vec<String>,
    pub remediation: String,
    /// When this opening began (a reopened alert starts again).
    pub first_seen: DateTime<Utc>,
}

impl AlertNotice {
    /// The notice of an alert raised for `finding`, open since `first_seen`.
    pub fn of(finding: &Finding, first_seen: DateTime<Utc>) -> Self {
        Self {
            alert_id: finding.id.clone(),
            kind: finding.kind,
            severity: finding.severity,
            title: finding.title.clone(),
            items: finding.items.clone(),
            remediation: finding.remediation.clone(),
            first_seen,
        }
    }

    /// High severity is shown with emphasis.
    pub fn is_urgent(&self) -> bool {
        self.severity == Severity::High
    }
}

/// Which governance notice a [`Bulletin`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BulletinKind {
    ReviewStarted,
    ReviewReminder,
    Digest,
}

impl BulletinKind {
    /// The notice kind (and so the CloudEvents `type`) it goes out as.
    pub fn kind(self) -> Kind {
        match self {
            BulletinKind::ReviewStarted => Kind::ReviewStarted,
            BulletinKind::ReviewReminder => Kind::ReviewReminder,
            BulletinKind::Digest => Kind::Digest,
        }
    }

    /// As serialized (`reviewStarted`, `reviewReminder`, `digest`).
    pub fn as_str(self) -> &'static str {
        match self {
            BulletinKind::ReviewStarted => "reviewStarted",
            BulletinKind::ReviewReminder => "reviewReminder",
            BulletinKind::Digest => "digest",
        }
    }
}

/// A governance notice composed by the service (an access review starting or ending soon, the
/// weekly digest): what people read, and the Elevate page it links to. The notice carries it
/// whole, as it was when queued. Its text is made of what the store and the policy hold: sinks
/// treat every string as plain text, never markup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bulletin {
    /// Stable: the notice is named by it, so the same id queued twice is one notice.
    pub id: String,
    pub kind: BulletinKind,
    /// One line.
    pub title: String,
    /// Bullet lines; a card shows the first ones and counts the rest.
    pub lines: Vec<String>,
    /// Label and value pairs.
    pub facts: Vec<(String, String)>,
    /// The Elevate page it links to, relative to the public URL (`/api/portal/reviews/q1`).
    pub path: String,
    /// When what it tells of happened.
    pub at: DateTime<Utc>,
}

/// Why a bulletin cannot be queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BulletinError {
    #[error("a bulletin needs an id")]
    NoId,
    #[error("a bulletin needs a title")]
    NoTitle,
    #[error("bulletin path `{0}` is not an Elevate page (`/…`, no scheme, host, query or fragment)")]
    Path(String),
}

impl Bulletin {
    /// Checks what sinks rely on: an id to name the notice by, a title, and a path that stays on
    /// Elevate (one leading `/`, no `//` host, no `?`, `#`, `\`, whitespace or control character).
    pub fn check(&self) -> Result<(), BulletinError> {
        if self.id.trim().is_empty() {
            return Err(BulletinError::NoId);
        }
        if self.title.trim().is_empty() {
            return Err(BulletinError::NoTitle);
        }
        let p = &self.path;
        let on_elevate = p.starts_with('/')
            && !p.starts_with("//")
            && !p.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '\\'));
        if !on_elevate {
            return Err(BulletinError::Path(p.clone()));
        }
        Ok(())
    }
}

/// What a notice tells of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subject<'a> {
    Activation(ActivationId),
    Alert(&'a AlertNotice),
    Bulletin(&'a Bulletin),
}

/// One notice waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxItem {
    /// The CloudEvents id, and the outbox key: one notice, once.
    pub id: Uuid,
    /// The activation it tells of; [`NO_ACTIVATION`] for a notice about an alert or a bulletin.
    pub activation_id: ActivationId,
    /// The alert it tells of, if it is about one. Notices stored before alerts had notices have
    /// none, and are about their activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertNotice>,
    /// The bulletin it is, if it is one (then it has no alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulletin: Option<Bulletin>,
    pub kind: Kind,
    /// When what it tells of happened.
    pub at: DateTime<Utc>,
    /// The next delivery attempt is not before this (also a lease while one is in flight).
    pub next_at: DateTime<Utc>,
    pub attempts: u32,
    /// Sinks that have taken it (`teams`, `events`).
    #[serde(default)]
    pub delivered: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl OutboxItem {
    fn new(id: Uuid, activation_id: ActivationId, kind: Kind, at: DateTime<Utc>) -> Self {
        Self {
            id,
            activation_id,
            alert: None,
            bulletin: None,
            kind,
            at,
            next_at: at,
            attempts: 0,
            delivered: Vec::new(),
            last_error: None,
        }
    }

    /// What it tells of: its alert or bulletin if it carries one, else its activation.
    pub fn subject(&self) -> Subject<'_> {
        match (&self.alert, &self.bulletin) {
            (Some(alert), _) => Subject::Alert(alert),
            (None, Some(bulletin)) => Subject::Bulletin(bulletin),
            (None, None) => Subject::Activation(self.activation_id),
        }
    }

    /// The notice a state change implies, keyed by its audit event.
    pub fn for_event(event: &AuditEvent) -> Option<Self> {
        kind_of(event).map(|kind| Self::new(event.id, event.activation_id, kind, event.at))
    }

    /// Access ends at `expires_at`: one warning per expiry (an extension warns again).
    pub fn expiring_soon(activation_id: ActivationId, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let name = format!("expiring-soon/{activation_id}/{}", expires_at.timestamp_millis());
        Self::new(Uuid::new_v5(&NOTICE_NAMESPACE, name.as_bytes()), activation_id, Kind::ExpiringSoon, now)
    }

    /// Revocation keeps failing: at most one notice per activation per hour.
    pub fn revocation_failing(activation_id: ActivationId, now: DateTime<Utc>) -> Self {
        let name = format!("revocation-failing/{activation_id}/{}", now.timestamp() / 3600);
        Self::new(Uuid::new_v5(&NOTICE_NAMESPACE, name.as_bytes()), activation_id, Kind::RevocationFailing, now)
    }

    /// A governance alert opened: one notice per opening, named by the alert and when the opening
    /// began. The same opening seen again is the same notice; a reopened alert (a new
    /// `first_seen`) is told anew.
    pub fn alert_opened(notice: AlertNotice, now: DateTime<Utc>) -> Self {
        let name = format!("alert-opened/{}/{}", notice.alert_id, notice.first_seen.timestamp_millis());
        let id = Uuid::new_v5(&NOTICE_NAMESPACE, name.as_bytes());
        let mut item = Self::new(id, ActivationId::from(NO_ACTIVATION), Kind::AlertOpened, notice.first_seen);
        item.next_at = now;
        item.alert = Some(notice);
        item
    }

    /// A governance bulletin: named by its id, so the same id queued again (a rerun, another
    /// instance) is the same notice.
    pub fn bulletin(bulletin: Bulletin, now: DateTime<Utc>) -> Self {
        let name = format!("bulletin/{}", bulletin.id);
        let id = Uuid::new_v5(&NOTICE_NAMESPACE, name.as_bytes());
        let mut item = Self::new(id, ActivationId::from(NO_ACTIVATION), bulletin.kind.kind(), bulletin.at);
        item.next_at = now;
        item.bulletin = Some(bulletin);
        item
    }

    /// When to try again after `attempts` failures: 30 s doubling to at most an hour, or what
    /// the receiver asked for (`Retry-After`) if that is later.
    pub fn retry_at(&self, now: DateTime<Utc>, asked: Option<TimeDelta>) -> DateTime<Utc> {
        let backoff =
            TimeDelta::seconds(30 * (1i64 << self.attempts.saturating_sub(1).min(7))).min(TimeDelta::hours(1));
        now + asked.map_or(backoff, |a| a.max(backoff).min(TimeDelta::hours(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(s)
    }

    #[test]
    fn derived_notices_are_deterministic() {
        let id = ActivationId::new_random();
        assert_eq!(OutboxItem::expiring_soon(id, t(900), t(0)).id, OutboxItem::expiring_soon(id, t(900), t(60)).id);
        assert_ne!(OutboxItem::expiring_soon(id, t(900), t(0)).id, OutboxItem::expiring_soon(id, t(1800), t(0)).id);
        assert_eq!(OutboxItem::revocation_failing(id, t(0)).id, OutboxItem::revocation_failing(id, t(3599)).id);
        assert_ne!(OutboxItem::revocation_failing(id, t(0)).id, OutboxItem::revocation_failing(id, t(3600)).id);
    }

    fn opened(alert_id: &str, first_seen: DateTime<Utc>) -> AlertNotice {
        AlertNotice {
            alert_id: alert_id.into(),
            kind: AlertKind::AssignedOutsideElevate,
            severity: Severity::High,
            title: "Owner assigned outside Elevate".into(),
            items: vec!["principal x".into()],
            remediation: "Remove it.".into(),
            first_seen,
        }
    }

    #[test]
    fn an_alert_is_told_once_per_opening() {
        let first = OutboxItem::alert_opened(opened("outside:a", t(0)), t(0));
        assert_eq!(first.id, OutboxItem::alert_opened(opened("outside:a", t(0)), t(60)).id, "the same opening");
        assert_ne!(first.id, OutboxItem::alert_opened(opened("outside:a", t(3600)), t(3600)).id, "reopened");
        assert_ne!(first.id, OutboxItem::alert_opened(opened("outside:b", t(0)), t(0)).id);
        assert_eq!(first.kind, Kind::AlertOpened);
        assert_eq!(first.subject(), Subject::Alert(&opened("outside:a", t(0))));
        assert_eq!(*first.activation_id.as_uuid(), NO_ACTIVATION);
        assert!(matches!(first.subject(), Subject::Alert(a) if a.is_urgent()));
    }

    #[test]
    fn stored_notices_read_back_old_and_new() {
        // A row written before alerts had notices: no `alert`.
        let old = r#"{"id":"0b7d3c4e-5f60-4a1b-8c2d-3e4f5a6b7c8d","activationId":"05c5a614-a7d6-4502-b150-c2fb455033ff","kind":"Approved","at":"2026-11-25T12:00:00Z","nextAt":"2026-11-25T12:00:00Z","attempts":2,"delivered":["teams"]}"#;
        let item: OutboxItem = serde_json::from_str(old).unwrap();
        assert_eq!(
            item.subject(),
            Subject::Activation(ActivationId::parse("05c5a614-a7d6-4502-b150-c2fb455033ff").unwrap())
        );
        assert!(!serde_json::to_string(&item).unwrap().contains("alert"), "activation notices are written as before");
        let alert = OutboxItem::alert_opened(opened("outside:a", t(0)), t(0));
        let json = serde_json::to_string(&alert).unwrap();
        assert!(json.contains(r#""alert":{"alertId":"outside:a""#), "{json}");
        assert_eq!(serde_json::from_str::<OutboxItem>(&json).unwrap(), alert);
    }

    fn digest(id: &str, at: DateTime<Utc>) -> Bulletin {
        Bulletin {
            id: id.into(),
            kind: BulletinKind::Digest,
            title: "Weekly digest".into(),
            lines: vec!["Owner: 2 activations".into()],
            facts: vec![("Denials".into(), "1".into())],
            path: "/api/portal".into(),
            at,
        }
    }

    #[test]
    fn a_bulletin_is_one_notice_per_id() {
        let first = OutboxItem::bulletin(digest("digest-2026-W48", t(0)), t(0));
        let rerun = OutboxItem::bulletin(digest("digest-2026-W48", t(3600)), t(3600));
        assert_eq!(first.id, rerun.id, "a rerun in the same week is the same notice");
        assert_ne!(first.id, OutboxItem::bulletin(digest("digest-2026-W49", t(0)), t(0)).id);
        assert_eq!(first.kind, Kind::Digest);
        assert_eq!(first.kind.event_type(), "io.elevate.governance.digest");
        assert_eq!(BulletinKind::ReviewStarted.kind().event_type(), "io.elevate.governance.reviewStarted");
        assert_eq!(BulletinKind::ReviewReminder.kind().event_type(), "io.elevate.governance.reviewReminder");
        assert_eq!(*first.activation_id.as_uuid(), NO_ACTIVATION);
        assert_eq!(first.subject(), Subject::Bulletin(&digest("digest-2026-W48", t(0))));
        let json = serde_json::to_string(&first).unwrap();
        assert!(json.contains(r#""bulletin":{"id":"digest-2026-W48","kind":"digest""#), "{json}");
        assert!(json.contains(r#""facts":[["Denials","1"]]"#), "{json}");
        assert_eq!(serde_json::from_str::<OutboxItem>(&json).unwrap(), first);
    }

    #[test]
    fn a_bulletin_needs_an_id_a_title_and_a_page_on_elevate() {
        assert_eq!(digest("d", t(0)).check(), Ok(()));
        assert_eq!(digest(" ", t(0)).check(), Err(BulletinError::NoId));
        let mut b = digest("d", t(0));
        b.title = String::new();
        assert_eq!(b.check(), Err(BulletinError::NoTitle));
        for path in ["", "api/portal", "//evil.example/x", "https://evil.example", "/a?b", "/a#b", "/a b", "/a\\b"] {
            let mut b = digest("d", t(0));
            b.path = path.into();
            assert_eq!(b.check(), Err(BulletinError::Path(path.into())), "{path:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_an_hour_and_honours_retry_after() {
        let mut item = OutboxItem::expiring_soon(ActivationId::new_random(), t(900), t(0));
        item.attempts = 1;
        assert_eq!(item.retry_at(t(0), None), t(30));
        item.attempts = 3;
        assert_eq!(item.retry_at(t(0), None), t(120));
        item.attempts = 30;
        assert_eq!(item.retry_at(t(0), None), t(3600));
        item.attempts = 1;
        assert_eq!(item.retry_at(t(0), Some(TimeDelta::seconds(90))), t(90));
        assert_eq!(item.retry_at(t(0), Some(TimeDelta::days(2))), t(3600), "a hostile Retry-After is capped");
    }
}
