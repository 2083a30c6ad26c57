//! Server-rendered pages: the approval page, refusals, and the dev-mode sign-in.
//!
//! No JavaScript. Every string that came from a user or a token is escaped (justifications are
//! attacker-controlled). Form posts carry a CSRF token bound to the approver and the activation.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use warp::http::{HeaderValue, StatusCode, header};

use crate::domain::activation::{Activation, Decision, State};
use crate::domain::approver::ApproverDenied;
use crate::domain::ids::{DisplayName, PrincipalId};
use crate::domain::scope::ScopeKind;
use crate::service::ServiceError;
use crate::service::ports::Caller;

use super::error::ApiError;
use super::{HttpContext, Response, csrf, html};

pub(super) const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b;background:#fff;line-height:1.5}\
h1{font-size:1.5rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}\
.note{padding:.75rem 1rem;border-left:4px solid #0a5ca8;background:#eef4fb}.warn{border-color:#a4262c;background:#fdf0f0}\
label{display:block;font-weight:600;margin-top:1rem}textarea,input[type=text]{width:100%;box-sizing:border-box;font:inherit;padding:.4rem;border:1px solid #555}\
button{font:inherit;padding:.5rem 1.2rem;margin:1rem .5rem 0 0;border:2px solid #1b1b1b;background:#fff;cursor:pointer}\
button.approve{background:#0b6a0b;color:#fff;border-color:#0b6a0b}button.deny{background:#a4262c;color:#fff;border-color:#a4262c}\
button:focus,textarea:focus,input:focus,input:focus-within{outline:3px solid #1b1b1b;outline-offset:2px}table{border-collapse:collapse}td,th{padding:.25rem .6rem;border-bottom:1px solid #ccc;text-align:left}\
body.portal{max-width:64rem}a{color:#0a5ca8}a:focus,select:focus,summary:focus{outline:3px solid #1b1b1b;outline-offset:2px}\
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem;z-index:1}\
header.top{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between;border-bottom:2px solid #1b1b1b;padding-bottom:.5rem}\
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:.25rem 1rem;margin:0;padding:0}nav a[aria-current]{font-weight:700;text-decoration-thickness:3px}\
.who{font-size:.9rem}.who form{display:inline}.who button{margin:0 0 0 .5rem;padding:.2rem .6rem}\
section.rule,section.item{border:1px solid #767676;padding:0 1rem 1rem;margin:1.5rem 0}\
select,input[type=datetime-local],input[type=number]{font:inherit;padding:.4rem;border:1px solid #555}\
.hint{display:block;font-weight:400;font-size:.9rem;color:#3b3b3b}caption.hint{display:table-caption;text-align:left}.error{color:#a4262c;font-weight:600;margin:.25rem 0}\
[aria-invalid=true]{border:2px solid #a4262c}.row{display:flex;flex-wrap:wrap;gap:0 1rem}.row>div{flex:1 1 12rem}\
fieldset{border:1px solid #767676;margin-top:1rem}.inline{display:inline}.inline button{margin-top:.5rem}\
.table-wrap{overflow-x:auto}td small,dd small{color:#3b3b3b}footer{margin-top:2rem;font-size:.9rem;color:#3b3b3b}";

/// The page CSP: nothing but our own inline style (by hash) and forms posting to ourselves.
pub fn content_security_policy() -> String {
    let hash = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

pub(super) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Elevate</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        esc(title)
    )
}

pub(super) fn fmt_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn left(until: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (until - now).num_minutes();
    if minutes <= 0 { "no time left".into() } else { format!("{} h {} min left", minutes / 60, minutes % 60) }
}

/// The approval page.
pub fn approval(
    ctx: &HttpContext,
    who: &Caller,
    a: &Activation,
    cannot: Option<ServiceError>,
    names: &std::collections::HashMap<PrincipalId, DisplayName>,
    now: DateTime<Utc>,
) -> Response {
    let r = a.request();
    let role = match r.role_definition_id.built_in_name() {
        Some(name) => format!("{} <small>({})</small>", esc(name), r.role_definition_id),
        None => r.role_definition_id.to_string(),
    };
    let scope = match r.scope.kind() {
        ScopeKind::Azure => format!(
            "<a href=\"{}\" rel=\"noreferrer\">{}</a> <small>(opens the Azure portal)</small>",
            esc(&format!("https://portal.azure.com/#@/resource{}", r.scope.as_str())),
            esc(r.scope.as_str())
        ),
        ScopeKind::Directory => {
            format!("<code>{}</code> <small>(an Entra directory role)</small>", esc(r.scope.as_str()))
        }
        ScopeKind::Group => format!("<code>{}</code> <small>(a group)</small>", esc(r.scope.as_str())),
    };
    let requester = match r.principal_name.as_ref().or_else(|| names.get(&r.principal_id)) {
        Some(name) => format!("{} <small>(object id <code>{}</code>)</small>", esc(name.as_str()), r.principal_id),
        None => format!("<code>{}</code> <small>(object id; no name was given)</small>", r.principal_id),
    };
    let mut facts = vec![
        ("Requester", requester),
        ("Role", role),
        ("Scope", scope),
        ("Duration", esc(&r.duration.to_string())),
        ("Justification", r.justification.as_ref().map_or("<em>none</em>".into(), |j| esc(j.as_str()))),
        (
            "Ticket",
            r.ticket
                .as_ref()
                .map_or("<em>none</em>".into(), |t| format!("{} {}", esc(t.system.as_str()), esc(t.number.as_str()))),
        ),
        ("Policy rule", format!("<code>{}</code>", esc(r.rule_id.as_str()))),
        ("Status", esc(a.status().as_str())),
        ("Requested", fmt_time(r.requested_at)),
    ];
    let mut subject_note = String::new();
    match a.state() {
        State::PendingApproval { timeout_at, min_approvals } => {
            facts.push(("Approvals needed", min_approvals.to_string()));
            facts.push(("Decide by", format!("{} ({})", fmt_time(*timeout_at), left(*timeout_at, now))));
        }
        State::Active { expires_at, extension: Some(ext), .. } => {
            subject_note = format!(
                "<p class=\"note\">This is a request to <strong>extend</strong> active access by {} (access now ends {}).</p>",
                esc(&ext.additional.to_string()),
                fmt_time(*expires_at)
            );
            facts.push((
                "Extension reason",
                ext.justification.as_ref().map_or("<em>none</em>".into(), |j| esc(j.as_str())),
            ));
            facts.push(("Decide by", format!("{} ({})", fmt_time(ext.timeout_at), left(ext.timeout_at, now))));
        }
        _ => {}
    }
    let facts_html: String = facts.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
    let decisions: String = a
        .approvals()
        .iter()
        .map(|d| {
            let approver = match names.get(&d.approver_id) {
                Some(name) => format!("{} <small>(<code>{}</code>)</small>", esc(name.as_str()), d.approver_id),
                None => format!("<code>{}</code>", d.approver_id),
            };
            format!(
                "<tr><td>{approver}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                match d.decision {
                    Decision::Approve => "Approved",
                    Decision::Deny => "Denied",
                },
                esc(d.justification.as_str()),
                fmt_time(d.at)
            )
        })
        .collect();
    let decisions_html = if decisions.is_empty() {
        "<p>No decisions yet.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th scope=\"col\">Approver</th><th scope=\"col\">Decision</th><th scope=\"col\">Justification</th><th scope=\"col\">When</th></tr></thead><tbody>{decisions}</tbody></table>"
        )
    };
    // Why this caller cannot decide, as a typed reason: the page words each case itself.
    let settled = matches!(
        cannot,
        Some(ServiceError::ApproverDenied(ApproverDenied::NothingPending | ApproverDenied::AlreadyDecided))
    );
    let action_heading = match (&cannot, settled) {
        (None, _) => "Your decision",
        (Some(_), true) => "Outcome",
        (Some(_), false) => "Decision",
    };
    let action = match cannot {
        None => format!(
            "<form method=\"post\" action=\"/api/approvals/{id}\"><input type=\"hidden\" name=\"{field}\" value=\"{csrf}\">\
<label for=\"justification\">Your justification (required)</label><textarea id=\"justification\" name=\"justification\" rows=\"3\" required maxlength=\"1000\"></textarea>\
<button class=\"approve\" type=\"submit\" name=\"decision\" value=\"Approve\">Approve</button><button class=\"deny\" type=\"submit\" name=\"decision\" value=\"Deny\">Deny</button></form>",
            id = a.id(),
            field = csrf::FIELD,
            csrf = csrf::token(ctx, &who.principal_id, csrf::Subject::Approval(&a.id().to_string()))
        ),
        Some(reason) => {
            let text = match reason {
                ServiceError::ApproverDenied(ApproverDenied::SelfApproval) => {
                    "You requested this access, so you cannot decide on it. Another approver must.".to_owned()
                }
                ServiceError::ApproverDenied(ApproverDenied::NotAnApprover(_)) => {
                    "You are not an approver for this request's policy rule, so you cannot decide on it.".to_owned()
                }
                ServiceError::ApproverDenied(ApproverDenied::NothingPending) => outcome(a, now),
                ServiceError::ApproverDenied(ApproverDenied::AlreadyDecided) => {
                    match a.approvals().iter().rev().find(|d| d.approver_id == who.principal_id) {
                        Some(mine) => format!(
                            "You {} this request at {}. {}",
                            match mine.decision {
                                Decision::Approve => "approved",
                                Decision::Deny => "denied",
                            },
                            fmt_time(mine.at),
                            if a.awaits_decision() { "It still waits for other approvers." } else { "" }
                        ),
                        None => "You have already decided on this request.".to_owned(),
                    }
                }
                other => ApiError::from(other).message.clone(),
            };
            let class = if settled { "note" } else { "note warn" };
            format!("<p class=\"{class}\" role=\"status\" id=\"outcome\">{}</p>", esc(&text))
        }
    };
    let body = format!(
        "<h1>Access request</h1>{subject_note}<dl>{facts_html}</dl><h2>Decisions</h2>{decisions_html}<h2>{action_heading}</h2>{action}\
<p><small>Signed in as <code>{}</code>. Role changes can take several minutes to take effect in Azure.</small></p>\
<p><a href=\"/api/portal/approvals\">All approvals</a> · <a href=\"/api/portal/access\">My access</a></p>",
        who.principal_id
    );
    html(StatusCode::OK, page("Access request", &body))
}

/// What became of a request that no longer waits for a decision, in words.
fn outcome(a: &Activation, now: DateTime<Utc>) -> String {
    let by = |wanted: Decision| {
        let names: Vec<String> =
            a.approvals().iter().filter(|d| d.decision == wanted).map(|d| d.approver_id.to_string()).collect();
        if names.is_empty() { String::new() } else { format!(" by {}", names.join(", ")) }
    };
    match a.state() {
        State::Denied { at } => format!("Denied{} at {}. Nothing was granted.", by(Decision::Deny), fmt_time(*at)),
        State::TimedOut { at } => format!(
            "Timed out at {} before enough approvers decided. Nothing was granted; the requester can ask again.",
            fmt_time(*at)
        ),
        State::Canceled { at } => format!("The requester withdrew this request at {}.", fmt_time(*at)),
        State::Scheduled { start_at } => {
            format!("Approved{}. Access starts at {}.", by(Decision::Approve), fmt_time(*start_at))
        }
        State::Provisioning { expires_at, .. } => {
            format!("Approved{}. Access is being granted, until {}.", by(Decision::Approve), fmt_time(*expires_at))
        }
        State::Active { expires_at, .. } => format!(
            "Approved{}. Access is active until {} ({}).",
            by(Decision::Approve),
            fmt_time(*expires_at),
            left(*expires_at, now)
        ),
        State::Expired { at, .. } => format!("Approved{}; access expired at {}.", by(Decision::Approve), fmt_time(*at)),
        State::Deactivated { at } => {
            format!("Approved{}; the requester ended access early at {}.", by(Decision::Approve), fmt_time(*at))
        }
        State::Failed { at, failure } => {
            format!("Approved, but granting failed at {}: {}.", fmt_time(*at), failure.message)
        }
        State::PendingApproval { .. } => "This request waits for approvers.".to_owned(),
    }
}

/// A request the caller may not see, or that does not exist: the same page for both.
pub fn not_yours(who: &Caller) -> Response {
    let body = format!(
        "<h1>Request not available</h1><p class=\"note warn\" role=\"alert\">You are not an approver of this request, or it does not exist. \
Only its requester, its approvers, and Elevate admins and auditors can open a request.</p>\
<p><small>Signed in as <code>{}</code>. If you should approve it, ask for your place in the policy rule's approvers.</small></p>",
        who.principal_id
    );
    html(StatusCode::NOT_FOUND, page("Request not available", &body))
}

/// An error as a page, with the error's status.
pub fn refusal(e: &ApiError) -> Response {
    let body = format!("<h1>{}</h1><p class=\"note warn\" role=\"alert\">{}</p>", esc(e.code), esc(&e.message));
    html(e.status, page("Not possible", &body))
}

/// 401 for a browser: in dev mode a sign-in form; elsewhere a pointer to the platform sign-in.
pub fn sign_in_required(ctx: &HttpContext, path: &str, e: &ApiError) -> Response {
    let body = if ctx.dev.is_some() {
        format!(
            "<h1>Sign in (dev mode)</h1><p class=\"note\">{}</p><p>Paste a token from <code>elevate token --user &lt;object id&gt; --mfa</code>.</p>\
<form method=\"post\" action=\"/dev/sign-in\"><input type=\"hidden\" name=\"returnTo\" value=\"{}\"><label for=\"token\">Dev token</label>\
<input type=\"text\" id=\"token\" name=\"token\" autocomplete=\"off\" required><button type=\"submit\">Sign in</button></form>\
<p>Or <a href=\"{}\">sign in as a demo user</a>.</p>",
            esc(&e.message),
            esc(path),
            esc(&format!("/api/portal/sign-in?returnTo={}", crate::endpoint::encode_component(path)))
        )
    } else {
        format!("<h1>Sign-in required</h1><p class=\"note warn\">{}</p>", esc(&e.message))
    };
    let mut response = html(StatusCode::UNAUTHORIZED, page("Sign in", &body));
    if let Some(challenge) = e.challenge.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

pub fn see_other(location: &str) -> Response {
    let mut response = html(StatusCode::SEE_OTHER, page("Redirect", "<p>Continue.</p>"));
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup() {
        assert_eq!(esc("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
    }

    #[test]
    fn the_csp_pins_the_stylesheet() {
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(csp.contains("frame-ancestors 'none'"));
    }
}
