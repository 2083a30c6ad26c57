//! Teams: an Adaptive Card (1.4, `Action.OpenUrl` only: webhooks support no `Action.Submit`)
//! posted to a Workflows webhook ("When a Teams webhook request is received"), in the message
//! envelope the old incoming webhooks used (azure-spec §7). People decide on Elevate's page, never
//! in the card: the card carries a link, not a capability.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{WebhookUrl, client, post};
use crate::domain::activation::{Activation, Decision, State};
use crate::domain::notification::{AlertNotice, Bulletin, BulletinKind, Kind};
use crate::service::ports::{DeliveryError, Notice, NoticeSubject, NotificationSink};

/// Items an alert's card lists; the rest are counted (a Workflows message is at most 28 KB).
const MAX_ALERT_ITEMS: usize = 20;
/// Lines a bulletin's card lists; the rest are counted (the same bound).
const MAX_BULLETIN_LINES: usize = 20;
/// Facts a bulletin's card shows; the rest are counted.
const MAX_BULLETIN_FACTS: usize = 20;

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
        NoticeSubject::Bulletin(bulletin) => bulletin_card(notice, bulletin),
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

/// A bulletin's card: its title, its lines as a list (the first ones, the rest counted), its
/// facts, and the one link to its page. Every string is made of what the store and the policy
/// hold (names, rule and review ids): escaped like a requester's.
fn bulletin_card(notice: &Notice, bulletin: &Bulletin) -> Value {
    let kind = notice.item.kind;
    let headline = format!("{}: {}", kind.headline(), plain(&bulletin.title));
    let mut body = vec![json!({
        "type": "TextBlock",
        "size": "medium",
        "weight": "bolder",
        "wrap": true,
        "color": if kind.is_urgent() { "attention" } else { "default" },
        "text": headline,
    })];
    if !bulletin.lines.is_empty() {
        let mut lines: Vec<String> =
            bulletin.lines.iter().take(MAX_BULLETIN_LINES).map(|l| format!("- {}", plain(l))).collect();
        if bulletin.lines.len() > MAX_BULLETIN_LINES {
            lines.push(format!("- and {} more (in Elevate)", bulletin.lines.len() - MAX_BULLETIN_LINES));
        }
        body.push(json!({ "type": "TextBlock", "wrap": true, "text": lines.join("\r") }));
    }
    if !bulletin.facts.is_empty() {
        let mut facts: Vec<Value> = bulletin
            .facts
            .iter()
            .take(MAX_BULLETIN_FACTS)
            .map(|(title, value)| json!({ "title": plain(title), "value": plain(value) }))
            .collect();
        if bulletin.facts.len() > MAX_BULLETIN_FACTS {
            let more = bulletin.facts.len() - MAX_BULLETIN_FACTS;
            facts.push(json!({ "title": "More", "value": format!("{more} more (in Elevate)") }));
        }
        body.push(json!({ "type": "FactSet", "facts": facts }));
    }
    let action = match bulletin.kind {
        BulletinKind::ReviewStarted | BulletinKind::ReviewReminder => "Open the review",
        BulletinKind::Digest => "Open Elevate",
    };
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [
            { "type": "Action.OpenUrl", "title": action, "url": notice.url },
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

    fn bulletin_notice(kind: crate::domain::notification::BulletinKind, lines: Vec<String>) -> Notice {
        use crate::domain::notification::OutboxItem;
        let at = "2026-11-23T08:00:00Z".parse().unwrap();
        let bulletin = Bulletin {
            id: "review-started/q4".into(),
            kind,
            title: "Quarterly review of *prod_owner*".into(),
            lines,
            facts: vec![("Reviewer".into(), "[me](https://evil)".into()), ("Ends".into(), "2026-12-01".into())],
            path: "/api/portal/reviews/q4".into(),
            at,
        };
        Notice {
            item: OutboxItem::bulletin(bulletin.clone(), at),
            subject: NoticeSubject::Bulletin(bulletin),
            url: "https://elevate.example/api/portal/reviews/q4".into(),
        }
    }

    #[test]
    fn a_bulletin_card_shows_title_lines_and_facts_escaped_with_one_link() {
        let card = card(&bulletin_notice(
            BulletinKind::ReviewStarted,
            vec!["alice holds `prod`".into(), "bob\nmallory".into()],
        ));
        assert_eq!(card["body"][0]["text"], "Access review started: Quarterly review of \\*prod\\_owner\\*");
        assert_eq!(card["body"][0]["color"], "default");
        assert_eq!(card["body"][1]["text"], "- alice holds \\`prod\\`\r- bob mallory", "one line an item");
        assert_eq!(
            card["body"][2],
            json!({ "type": "FactSet", "facts": [
                { "title": "Reviewer", "value": "\\[me\\](https://evil)" },
                { "title": "Ends", "value": "2026-12-01" },
            ]})
        );
        assert_eq!(
            card["actions"],
            json!([{ "type": "Action.OpenUrl", "title": "Open the review", "url": "https://elevate.example/api/portal/reviews/q4" }])
        );
    }

    #[test]
    fn a_reminder_is_urgent_and_a_long_bulletin_counts_the_rest() {
        let card = card(&bulletin_notice(BulletinKind::ReviewReminder, (0..23).map(|i| format!("item {i}")).collect()));
        assert_eq!(card["body"][0]["color"], "attention");
        assert!(card["body"][0]["text"].as_str().unwrap().starts_with("Access review ends soon: "));
        let text = card["body"][1]["text"].as_str().unwrap();
        assert!(text.contains("- item 19") && !text.contains("item 20"), "{text}");
        assert!(text.ends_with("- and 3 more (in Elevate)"), "{text}");
    }
}
