//! Events for Logic Apps and anything else: CloudEvents 1.0 in structured JSON mode
//! (`application/cloudevents+json`), signed with HMAC-SHA256 over the timestamp and the body:
//!
//!   X-Elevate-Timestamp: <unix seconds>
//!   X-Elevate-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//!
//! A receiver recomputes the MAC over the raw body, compares in constant time, refuses
//! timestamps more than five minutes away from its clock, and drops repeated `id`s.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::SecondsFormat;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{WebhookUrl, client, post};
use crate::clock::Clock;
use crate::domain::activation::{Activation, State};
use crate::domain::notification::{AlertNotice, Bulletin};
use crate::service::ports::{DeliveryError, Notice, NoticeSubject, NotificationSink};

/// The shared signing secret: its `Debug` prints no value.
#[derive(Clone, PartialEq, Eq)]
pub struct EventSecret(String);

impl EventSecret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }
}

impl fmt::Debug for EventSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSecret(<redacted>)")
    }
}

pub struct EventSink {
    url: WebhookUrl,
    secret: EventSecret,
    /// The `source` of every event: Elevate's public URL.
    source: String,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
}

impl EventSink {
    pub fn new(url: WebhookUrl, secret: EventSecret, source: &str, clock: Arc<dyn Clock>) -> Result<Self, String> {
        Ok(Self { url, secret, source: source.trim_end_matches('/').to_owned(), clock, client: client()? })
    }
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &EventSecret, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.0.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[async_trait]
impl NotificationSink for EventSink {
    fn name(&self) -> &'static str {
        "events"
    }

    async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&cloud_event(notice, &self.source))
            .map_err(|e| DeliveryError { message: format!("cannot encode the event: {e}"), retry_after: None })?;
        let timestamp = self.clock.now().timestamp();
        let headers = [
            ("x-elevate-timestamp", timestamp.to_string()),
            ("x-elevate-signature", signature(&self.secret, timestamp, &body)),
        ];
        post(&self.client, &self.url, "application/cloudevents+json; charset=utf-8", &headers, body).await
    }
}

/// The CloudEvent for a notice. `id` is the notice's: the same notice is the same event.
pub fn cloud_event(notice: &Notice, source: &str) -> Value {
    let item = &notice.item;
    let (subject, data) = match &notice.subject {
        NoticeSubject::Activation(a) => (format!("activations/{}", a.id()), activation_data(a, &notice.url)),
        NoticeSubject::Alert(alert) => (alert.alert_id.clone(), alert_data(alert, &notice.url)),
        NoticeSubject::Bulletin(bulletin) => (bulletin.id.clone(), bulletin_data(bulletin, &notice.url)),
    };
    json!({
        "specversion": "1.0",
        "id": item.id.to_string(),
        "source": source,
        "type": item.kind.event_type(),
        "subject": subject,
        "time": item.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// An alert as it opened, with the alerts page.
fn alert_data(alert: &AlertNotice, url: &str) -> Value {
    json!({
        "alertId": alert.alert_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "title": alert.title,
        "items": alert.items,
        "remediation": alert.remediation,
        "firstSeen": alert.first_seen.to_rfc3339_opts(SecondsFormat::Millis, true),
        "url": url,
    })
}

/// A bulletin as it was composed, with its page. Facts as `{label, value}` objects, in order.
fn bulletin_data(bulletin: &Bulletin, url: &str) -> Value {
    json!({
        "id": bulletin.id,
        "kind": bulletin.kind,
        "title": bulletin.title,
        "lines": bulletin.lines,
        "facts": bulletin.facts.iter().map(|(label, value)| json!({ "label": label, "value": value })).collect::<Vec<_>>(),
        "at": bulletin.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "url": url,
    })
}

/// An activation as it is now, with its approval page.
fn activation_data(a: &Activation, url: &str) -> Value {
    let r = a.request();
    json!({
        "activationId": a.id().to_string(),
        "status": a.status().as_str(),
        "principalId": r.principal_id.to_string(),
        "principalName": r.principal_name.as_ref().map(|n| n.as_str().to_owned()),
        "roleDefinitionId": r.role_definition_id.to_string(),
        "roleName": r.role_definition_id.built_in_name(),
        "scope": r.scope.as_str(),
        "ruleId": r.rule_id.as_str(),
        "duration": r.duration.to_string(),
        "justification": r.justification.as_ref().map(|j| j.as_str().to_owned()),
        "ticket": r.ticket.as_ref().map(|t| json!({ "system": t.system.as_str(), "number": t.number.as_str() })),
        "requestedAt": r.requested_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "expiresAt": a.expires_at().map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        "expiryLimitedByEligibility": a.expiry_limit().is_some(),
        "failure": match a.state() {
            State::Failed { failure, .. } => json!({ "code": failure.code, "message": failure.message }),
            _ => Value::Null,
        },
        "approvals": a.approvals().iter().map(|d| json!({
            "approverId": d.approver_id.to_string(),
            "decision": format!("{:?}", d.decision),
            "justification": d.justification.as_str(),
            "at": d.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        })).collect::<Vec<_>>(),
        "url": url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Independently: HMAC-SHA256(key="secret", "1764072000.{}") computed with openssl:
        // printf '1764072000.{}' | openssl dgst -sha256 -hmac secret
        let sig = signature(&EventSecret::new("secret".into()), 1_764_072_000, b"{}");
        assert_eq!(sig, "sha256=81b012c92f1a0645d2eb7ad7e5c1f811304ead6e3b2ad6f395c87fcb608a7eba");
        assert_ne!(sig, signature(&EventSecret::new("secret".into()), 1_764_072_001, b"{}"));
        assert_ne!(sig, signature(&EventSecret::new("other".into()), 1_764_072_000, b"{}"));
        assert!(!format!("{:?}", EventSecret::new("hunter2".into())).contains("hunter2"));
    }

    #[test]
    fn an_alert_event_carries_the_alert_as_it_opened() {
        use crate::domain::governance::{AlertKind, Severity};
        use crate::domain::notification::OutboxItem;
        let at = "2026-11-25T12:00:00Z".parse().unwrap();
        let alert = AlertNotice {
            alert_id: "permanent:owner:sub".into(),
            kind: AlertKind::TooManyPermanentHolders,
            severity: Severity::High,
            title: "3 permanent holders".into(),
            items: vec!["principal a".into(), "principal b".into()],
            remediation: "Make them eligible.".into(),
            first_seen: at,
        };
        let notice = Notice {
            item: OutboxItem::alert_opened(alert.clone(), at),
            subject: NoticeSubject::Alert(alert),
            url: "https://elevate.example/api/portal/alerts".into(),
        };
        let event = cloud_event(&notice, "https://elevate.example");
        assert_eq!(event["type"], "io.elevate.governance.alertOpened");
        assert_eq!(event["subject"], "permanent:owner:sub");
        assert_eq!(event["id"], notice.item.id.to_string());
        assert_eq!(
            event["data"],
            json!({
                "alertId": "permanent:owner:sub",
                "kind": "TooManyPermanentHolders",
                "severity": "High",
                "title": "3 permanent holders",
                "items": ["principal a", "principal b"],
                "remediation": "Make them eligible.",
                "firstSeen": "2026-11-25T12:00:00.000Z",
                "url": "https://elevate.example/api/portal/alerts",
            })
        );
    }

    #[test]
    fn a_bulletin_event_carries_the_bulletin_as_composed() {
        use crate::domain::notification::{BulletinKind, OutboxItem};
        let at = "2026-11-23T08:00:00Z".parse().unwrap();
        let bulletin = Bulletin {
            id: "digest-2026-W48".into(),
            kind: BulletinKind::Digest,
            title: "Elevate weekly digest".into(),
            lines: vec!["Owner: 3 activations".into()],
            facts: vec![("Activations".into(), "3".into()), ("Denials".into(), "1".into())],
            path: "/api/portal".into(),
            at,
        };
        let notice = Notice {
            item: OutboxItem::bulletin(bulletin.clone(), at),
            subject: NoticeSubject::Bulletin(bulletin),
            url: "https://elevate.example/api/portal".into(),
        };
        let event = cloud_event(&notice, "https://elevate.example");
        assert_eq!(event["type"], "io.elevate.governance.digest");
        assert_eq!(event["subject"], "digest-2026-W48");
        assert_eq!(event["id"], notice.item.id.to_string());
        assert_eq!(event["time"], "2026-11-23T08:00:00.000Z");
        assert_eq!(
            event["data"],
            json!({
                "id": "digest-2026-W48",
                "kind": "digest",
                "title": "Elevate weekly digest",
                "lines": ["Owner: 3 activations"],
                "facts": [{ "label": "Activations", "value": "3" }, { "label": "Denials", "value": "1" }],
                "at": "2026-11-23T08:00:00.000Z",
                "url": "https://elevate.example/api/portal",
            })
        );
    }
}
