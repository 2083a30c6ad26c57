//! Teams: an Adaptive Card (1.4, `Action.OpenUrl` only: webhooks support no `Action.Submit`)
//! posted to a Workflows webhook ("When a Teams webhook request is received"), in the message
//! envelope the old incoming webhooks used (azure-spec §7). People decide on Elevate's page, never
//! in the card: the card carries a link, not a capability.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{WebhookUrl, client, post};
use crate::domain::activation::{Activation, Decision, State};
use crate::domain::notification::{AlertNotice, Kind};
use crate::service::ports::{DeliveryError, Notice, NoticeSubject, NotificationSink};

/// Items an alert's card lists; the rest are counted (a Workflows message is at most 28 KB).
const MAX_ALERT_ITEMS: usize = 20;

pub struct TeamsSink {
    url: WebhookUrl,
    client: reqwest::Client,
}

impl TeamsSink {
    pub fn new(url: WebhookUrl) -> Result<Self, String> {
        Ok(Self { url, client: client()? })
    }
}

#[async_trait]
impl NotificationSink for TeamsSink {
    fn name(&self) -> &'static str {
        "teams"
    }

    async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&message(notice))
            .map_err(|e| DeliveryError { message: format!("cannot encode the card: {e}"), retry_after: None })?;
        post(&self.client, &self.url, "application/json", &[], body).await
    }
}

/// Text from requests is the requester's: keep it from forming Markdown links or emphasis in
/// the card (Teams renders a Markdown subset in TextBlock and FactSet values: emphasis, links,
/// lists; no HTML). Only the characters that open those are escaped, so renderers without
/// Markdown show little noise.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '[' | ']' | '`' | '~') {
            out.push('\\');
        }
        if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The Workflows message: the envelope and one Adaptive Card.
pub fn message(notice: &Notice) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card(notice),
        }]
    })
}

/// The Adaptive Card for a notice.
pub fn card(notice: &Notice) -> Value {
    match &notice.subject {
        NoticeSubject::Activation(a) => activation_card(notice, a),
        NoticeSubject::Alert(alert) => alert_card(notice, alert),
    }
}

fn activation_card(notice: &Notice, a: &Activation) -> Value {
    let r = a.request();
    let kind = notice.item.kind;
    let role = r.role_definition_id.built_in_name().map_or_else(|| r.role_definition_id.to_string(), str::to_owned);
    let requester = match &r.principal_name {
        Some(name) => format!("{} ({})", plain(name.as_str()), r.principal_id),
        None => r.principal_id.to_string(),
    };
    let mut facts = vec![
        ("Requester", requester.clone()),
        ("Role", plain(&role)),
        ("Scope", plain(r.scope.as_str())),
        ("Duration", r.duration.to_string()),
        ("Justification", r.justification.as_ref().map_or_else(|| "none".to_owned(), |j| plain(j.as_str()))),
    ];
    if let Some(t) = &r.ticket {
        facts.push(("Ticket", plain(&format!("{} {}", t.system.as_str(), t.number.as_str()))));
    }
    facts.push(("Policy rule", plain(r.rule_id.as_str())));
    match a.state() {
        State::PendingApproval { timeout_at, .. } => facts.push(("Decide by", when(*timeout_at))),
        State::Active { expires_at, extension: Some(ext), .. } => {
            facts.push(("Extension", format!("+{} (decide by {})", ext.additional, when(ext.timeout_at))));
            facts.push(("Access ends", when(*expires_at)));
        }
        State::Active { expires_at, .. } | State::Provisioning { expires_at, .. } => {
            let cut = if a.expiry_limit().is_some() { " (the end of eligibility under the rule)" } else { "" };
            facts.push(("Access ends", format!("{}{cut}", when(*expires_at))));
        }
        State::Failed { failure, .. } => {
            facts.push(("Reason", format!("{}: {}", plain(&failure.code), plain(&failure.message))));
        }
        _ => {}
    }
    for d in a.approvals() {
        let verb = match d.decision {
            Decision::Approve => "approved",
            Decision::Deny => "denied",
        };
        facts.push(("Decision", format!("{} {verb}: {}", d.approver_id, plain(d.justification.as_str()))));
    }
    facts.push(("Status", a.status().to_string()));
    let headline = format!("{}: {} on {}", kind.headline(), plain(&role), plain(r.scope.as_str()));
    let summary = match kind {
        Kind::ApprovalNeeded => "An approver must decide on this request. Open it to approve or deny.".to_owned(),
        Kind::RevocationFailing => {
            "Elevate could not remove this access at its expiry and keeps retrying. Check Elevate's permissions on the scope."
                .to_owned()
        }
        Kind::ExpiringSoon => "This access ends soon. Extend it from the request if you still need it.".to_owned(),
        _ => format!("Requested {} by {}.", when(r.requested_at), requester),
    };
    let portal = format!("https://portal.azure.com/#@/resource{}", r.scope.as_str());
    let primary = if kind == Kind::ApprovalNeeded { "Review and decide" } else { "Open the request" };
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "size": "medium",
                "weight": "bolder",
                "wrap": true,
                "color": if kind.is_urgent() { "attention" } else { "default" },
                "text": headline,
            },
            { "type": "TextBlock", "wrap": true, "isSubtle": true, "text": summary },
            {
                "type": "FactSet",
                "facts": facts.into_iter().map(|(title, value)| json!({ "title": title, "value": value })).collect::<Vec<_>>(),
            }
        ],
        "actions": [
            { "type": "Action.OpenUrl", "title": primary, "url": notice.url },
            { "type": "Action.OpenUrl", "title": "Scope in the Azure portal", "url": portal },
        ]
    })
}

/// An alert's card: severity, title, what is affected as a list, the remediation, and the one
/// link to the alerts page. The text is Elevate's, but made of what Azure and the policy hold
/// (scope and rule names): escaped like a requester's.
fn alert_card(notice: &Notice, alert: &AlertNotice) -> Value {
    // As the alerts API names it (`High`, `Medium`, `Low`).
    let severity = json!(alert.severity);
    let headline =
        format!("{} ({}): {}", notice.item.kind.headline(), severity.as_str().unwrap_or_default(), plain(&alert.title));
    // A Markdown list, one line each (`plain` keeps any line break out of an item).
    let mut items: Vec<String> = alert.items.iter().take(MAX_ALERT_ITEMS).map(|i| format!("- {}", plain(i))).collect();
    if alert.items.len() > MAX_ALERT_ITEMS {
        items.push(format!("- and {} more (on the alerts page)", alert.items.len() - MAX_ALERT_ITEMS));
    }
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "size": "medium",
            "weight": "bolder",
            "wrap": true,
            "color": if alert.is_urgent() { "attention" } else { "default" },
            "text": headline,
        }),
        json!({
            "type": "FactSet",
            "facts": [
                { "title": "Severity", "value": severity },
                { "title": "Kind", "value": alert.kind.as_str() },
                { "title": "Open since", "value": when(alert.first_seen) },
            ],
        }),
    ];
    if !items.is_empty() {
        body.push(json!({ "type": "TextBlock", "wrap": true, "weight": "bolder", "text": "Affected" }));
        body.push(json!({ "type": "TextBlock", "wrap": true, "text": items.join("\r") }));
    }
    body.push(json!({ "type": "TextBlock", "wrap": true, "weight": "bolder", "text": "What to do" }));
    body.push(json!({ "type": "TextBlock", "wrap": true, "text": plain(&alert.remediation) }));
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [
            { "type": "Action.OpenUrl", "title": "Open the alerts", "url": notice.url },
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requester_text_cannot_form_links_or_emphasis() {
        assert_eq!(plain("[click](https://evil) *now*"), "\\[click\\](https://evil) \\*now\\*");
        assert_eq!(plain("a\nb"), "a b");
    }

    fn alert_notice(items: Vec<String>) -> Notice {
        use crate::domain::governance::{AlertKind, Severity};
        use crate::domain::notification::OutboxItem;
        let at = "2026-11-25T12:00:00Z".parse().unwrap();
        let alert = AlertNotice {
            alert_id: "outside:/subscriptions/x/providers/microsoft.authorization/roleassignments/y".into(),
            kind: AlertKind::AssignedOutsideElevate,
            severity: Severity::High,
            title: "Owner assigned outside Elevate at /subscriptions/x/resourceGroups/rg_[1]".into(),
            items,
            remediation: "Remove the assignment.".into(),
            first_seen: at,
        };
        Notice {
            item: OutboxItem::alert_opened(alert.clone(), at),
            subject: NoticeSubject::Alert(alert),
            url: "https://elevate.example/api/portal/alerts".into(),
        }
    }

    #[test]
    fn an_alert_card_lists_what_is_affected_escaped_with_one_link() {
        let card = card(&alert_notice(vec!["principal [x](https://evil) holds *Owner*".into(), "line\nbreak".into()]));
        assert_eq!(card["body"][0]["color"], "attention", "High severity");
        assert_eq!(
            card["body"][0]["text"],
            "Governance alert (High): Owner assigned outside Elevate at /subscriptions/x/resourceGroups/rg\\_\\[1\\]"
        );
        let list =
            card["body"].as_array().unwrap().iter().find(|b| b["text"].as_str().is_some_and(|t| t.starts_with("- ")));
        assert_eq!(
            list.unwrap()["text"],
            "- principal \\[x\\](https://evil) holds \\*Owner\\*\r- line break",
            "one item a line, none able to start another"
        );
        assert_eq!(
            card["actions"],
            json!([{ "type": "Action.OpenUrl", "title": "Open the alerts", "url": "https://elevate.example/api/portal/alerts" }])
        );
    }

    #[test]
    fn a_long_alert_lists_the_first_items_and_counts_the_rest() {
        let card = card(&alert_notice((0..25).map(|i| format!("principal {i}")).collect()));
        let text = card.to_string();
        assert!(text.contains("principal 19") && !text.contains("principal 20"), "{text}");
        assert!(text.contains("- and 5 more (on the alerts page)"), "{text}");
    }
}
