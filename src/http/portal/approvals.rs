//! Approvals (what waits for me, what I decided) and Policy (the loaded rules and who is
//! eligible, for auditors and admins). Deciding happens on the approval page
//! (`/api/approvals/{id}`), which these pages link to.

use chrono::{DateTime, Utc};
use warp::http::StatusCode;

use crate::domain::activation::{Activation, Decision, State};
use crate::domain::ids::{PrincipalId, PrincipalRef};
use crate::service::PageRequest;
use crate::service::ports::Caller;

use super::super::error::ApiError;
use super::super::pages::esc;
use super::{HttpContext, Nav, Response, render, when};

/// Most requests each list shows.
const SHOWN: usize = 100;

/// `GET /api/portal/approvals`.
pub async fn page(ctx: &HttpContext, who: &Caller) -> Result<Response, ApiError> {
    let now = ctx.clock.now();
    let pending = match ctx.service.pending_approvals(who, PageRequest { top: SHOWN, after: None }, now).await {
        Ok(page) => page.items,
        Err(e) => return Ok(super::problem(ctx, Some(who), &ApiError::from(e))),
    };
    let decided = match ctx.service.decided_by(who, SHOWN, now).await {
        Ok(list) => list,
        Err(e) => return Ok(super::problem(ctx, Some(who), &ApiError::from(e))),
    };
    let people: Vec<PrincipalId> = pending.iter().chain(decided.iter()).map(|a| a.request().principal_id).collect();
    let names = ctx.service.display_names(&people).await;
    let requester = |a: &Activation| match a.request().principal_name.as_ref() {
        Some(name) => format!("{} <small>(<code>{}</code>)</small>", esc(name.as_str()), a.request().principal_id),
        None => super::person(&a.request().principal_id, &names),
    };
    let mut body = String::from("<h1>Approvals</h1><h2>Waiting for you</h2>");
    if pending.is_empty() {
        body.push_str("<p>Nothing waits for your decision.</p>");
    } else {
        let rows: String = pending
            .iter()
            .map(|a| {
                let r = a.request();
                let (what, by) = match a.state() {
                    State::Active { extension: Some(ext), .. } => {
                        (format!("extend by {}", esc(&ext.additional.to_string())), ext.timeout_at)
                    }
                    State::PendingApproval { timeout_at, .. } => ("activate".to_owned(), *timeout_at),
                    _ => ("decide".to_owned(), now),
                };
                format!(
                    "<tr><td><a href=\"/api/approvals/{id}\">Review <span class=\"hint\">request {id}</span></a></td><td>{}</td><td>{what}: {} at {}</td><td>{}</td><td>{}</td></tr>",
                    requester(a),
                    super::role_label(&r.role_definition_id),
                    super::scope_label(&r.scope),
                    r.justification.as_ref().map_or_else(|| "<em>none</em>".to_owned(), |j| esc(j.as_str())),
                    when(by, now),
                    id = a.id()
                )
            })
            .collect();
        body.push_str(&format!(
            "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Request</th><th scope=\"col\">Requester</th><th scope=\"col\">Asks to</th><th scope=\"col\">Justification</th><th scope=\"col\">Decide by</th></tr></thead><tbody>{rows}</tbody></table></div>"
        ));
    }
    body.push_str("<h2>Decided by you</h2>");
    if decided.is_empty() {
        body.push_str("<p>You have not decided on any recent request.</p>");
    } else {
        let rows: String = decided.iter().map(|a| decided_row(a, who, &requester(a), now)).collect();
        body.push_str(&format!(
            "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Request</th><th scope=\"col\">Requester</th><th scope=\"col\">Role and scope</th><th scope=\"col\">Your decision</th><th scope=\"col\">Outcome</th></tr></thead><tbody>{rows}</tbody></table></div>"
        ));
    }
    Ok(render(StatusCode::OK, Some(who), Nav::Approvals, "Approvals", &body))
}

fn decided_row(a: &Activation, who: &Caller, requester: &str, now: DateTime<Utc>) -> String {
    let r = a.request();
    let mine: Vec<String> = a
        .approvals()
        .iter()
        .filter(|d| d.approver_id == who.principal_id)
        .map(|d| {
            format!(
                "{} {}",
                match d.decision {
                    Decision::Approve => "Approved",
                    Decision::Deny => "Denied",
                },
                when(d.at, now)
            )
        })
        .collect();
    format!(
        "<tr><td><a href=\"/api/approvals/{id}\">Open <span class=\"hint\">request {id}</span></a></td><td>{requester}</td><td>{} at {}</td><td>{}</td><td>{}</td></tr>",
        super::role_label(&r.role_definition_id),
        super::scope_label(&r.scope),
        mine.join("; "),
        esc(a.status().as_str()),
        id = a.id()
    )
}

/// `GET /api/portal/policy`: the loaded rules, for auditors and admins.
pub async fn policy(ctx: &HttpContext, who: &Caller) -> Result<Response, ApiError> {
    if !who.can_read_audit() {
        return Ok(super::problem(
            ctx,
            Some(who),
            &ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "reading the policy needs Elevate.Admin or Elevate.Auditor",
            ),
        ));
    }
    let now = ctx.clock.now();
    let policy = ctx.service.policy();
    let users: Vec<PrincipalId> = policy
        .rules()
        .iter()
        .flat_map(|r| r.principals.iter().chain(r.approval.iter().flat_map(|a| a.approvers.iter())))
        .filter_map(|p| match p {
            PrincipalRef::User(id) => Some(*id),
            PrincipalRef::Group(_) => None,
        })
        .collect();
    let names = ctx.service.display_names(&users).await;
    let principal = |p: &PrincipalRef| match p {
        PrincipalRef::User(id) => super::person(id, &names),
        PrincipalRef::Group(id) => format!("group <code>{id}</code>"),
    };
    let mut body = format!(
        "<h1>Policy</h1><p>The {} rule(s) Elevate has loaded. Deny by default: only what a rule allows can be activated, at its scope and below.</p>",
        policy.rules().len()
    );
    let warnings = policy.warnings();
    if !warnings.is_empty() {
        let items: String = warnings.iter().map(|w| format!("<li>{}</li>", esc(w))).collect();
        body.push_str(&format!("<div class=\"note warn\"><p><strong>Warnings</strong></p><ul>{items}</ul></div>"));
    }
    for (i, rule) in policy.rules().iter().enumerate() {
        let roles: Vec<String> = rule.roles.iter().map(super::role_label).collect();
        let eligible: Vec<String> = rule.principals.iter().map(principal).collect();
        let mut terms = vec![
            ("Scope", super::scope_label(&rule.scope)),
            ("Roles", roles.join(", ")),
            ("Eligible", eligible.join("<br>")),
            ("Maximum", esc(&rule.max_duration.to_string())),
            (
                "Requires",
                [
                    rule.auth_context
                        .as_ref()
                        .map(|c| format!("authentication context <code>{}</code>", esc(c.as_str()))),
                    rule.require_mfa.then(|| "MFA".to_owned()),
                    rule.require_justification.then(|| "justification".to_owned()),
                    rule.require_ticket.then(|| "ticket".to_owned()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
            ),
            (
                "Approval",
                match &rule.approval {
                    None => "none (self-activation)".to_owned(),
                    Some(a) => {
                        let approvers: Vec<String> = a.approvers.iter().map(principal).collect();
                        format!(
                            "{} of: {}; within {}{}",
                            a.min_approvals,
                            approvers.join(", "),
                            esc(&a.timeout.to_string()),
                            if a.approver_mfa { "; approvers prove MFA" } else { "" }
                        )
                    }
                },
            ),
        ];
        if let Some(until) = rule.expires_at {
            terms.push(("Eligible until", when(until, now)));
        }
        let terms_html: String = terms.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
        body.push_str(&format!(
            "<section class=\"rule\" aria-labelledby=\"p{i}\"><h2 id=\"p{i}\"><code>{}</code>{}</h2><dl>{terms_html}</dl></section>",
            esc(rule.id.as_str()),
            rule.description.as_deref().map(|d| format!(" {}", esc(d))).unwrap_or_default()
        ));
    }
    Ok(render(StatusCode::OK, Some(who), Nav::Policy, "Policy", &body))
}
