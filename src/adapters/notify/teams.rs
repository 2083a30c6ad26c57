//! Teams: an Adaptive Card (1.4, `Action.OpenUrl` only: webhooks support no `Action.Submit`)
//! posted to a Workflows webhook ("When a Teams webhook request is received"), in the message
//! envelope the old incoming webhooks used (azure-spec §7). People decide on Elevate's page, never
//! in the card: the card carries a link, not a capability.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{WebhookUrl, client, post};
use crate::domain::activation::{Decision, State};
use crate::domain::notification::Kind;
use crate::service::ports::{DeliveryError, Notice, NotificationSink};

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
    let a = &notice.activation;
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
            { "type": "Action.OpenUrl", "title": primary, "url": notice.approval_url },
            { "type": "Action.OpenUrl", "title": "Scope in the Azure portal", "url": portal },
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
}
