//! Audit (auditors and admins): the trail filtered by principal, role, scope, action and time,
//! a page at a time, and the same query exported as CSV or JSON Lines. The filters are the API's
//! (`GET /api/audit`), so the page, the export and the API select the same events.

use chrono::{DateTime, Utc};
use warp::http::{HeaderValue, StatusCode};

use crate::domain::activation::Action;
use crate::domain::audit::{Actor, AuditEvent};
use crate::service::PageRequest;
use crate::service::ports::Caller;

use super::super::dto::{self, AuditQueryDto};
use super::super::error::ApiError;
use super::super::pages::esc;
use super::{Form, HttpContext, Nav, PREFIX, Request, Response, field_error, field_of, query_string, render};

/// Events on one page of the portal.
const PAGE: usize = 50;
/// Most events one export holds; a larger one says so and is cut.
pub const EXPORT_MAX: usize = 10_000;
/// Service calls one export makes at most (each reads at most 10 store pages of 500 events).
const EXPORT_CALLS: usize = 10;
const FILTERS: [&str; 6] = ["principalId", "roleDefinitionId", "scope", "action", "since", "until"];

/// The query as the form sent it: empty fields dropped, `datetime-local` times read as UTC.
/// Returns the pairs for the API's filter and those left over (`$skiptoken`, `format`).
fn normalised(raw: &str) -> (Vec<(String, String)>, Form) {
    let all = Form::from_query(raw);
    let mut filter = Vec::new();
    for (k, v) in &all.0 {
        let v = v.trim();
        if v.is_empty() || !(FILTERS.contains(&k.as_str()) || k == "activationId") {
            continue;
        }
        let v = if (k == "since" || k == "until") && v.len() == 16 && !v.ends_with('Z') {
            format!("{v}:00Z")
        } else {
            v.to_owned()
        };
        filter.push((k.clone(), v));
    }
    (filter, all)
}

fn query_of(pairs: &[(String, String)]) -> Result<AuditQueryDto, ApiError> {
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    dto::parse_query(&query_string(&refs))
}

/// `GET /api/portal/audit`.
pub async fn page(ctx: &HttpContext, req: &Request, who: &Caller) -> Result<Response, ApiError> {
    if !who.can_read_audit() {
        return Ok(super::problem(
            ctx,
            Some(who),
            &ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "reading the audit trail needs Elevate.Admin or Elevate.Auditor",
            ),
        ));
    }
    let (pairs, all) = normalised(&req.query);
    let after = all.get("page").map(dto::read_audit_skiptoken).transpose();
    let result = match (query_of(&pairs).and_then(|q| q.filter()), after) {
        (Ok(filter), Ok(after)) => {
            ctx.service.audit(who, filter, PageRequest { top: PAGE, after }).await.map_err(ApiError::from)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let (events, next, error) = match result {
        Ok(page) => (page.items, page.next, None),
        Err(e) if e.status == StatusCode::BAD_REQUEST => (Vec::new(), None, Some(e)),
        Err(e) => return Ok(super::problem(ctx, Some(who), &e)),
    };
    let value = |name: &str| all.text(name);
    let bad = error.as_ref().and_then(|e| field_of(e, &FILTERS));
    let field = |name: &'static str, label: &str, hint: &str, kind: &str| {
        let id = format!("f-{name}");
        let message = error.as_ref().filter(|_| bad == Some(name)).map(|e| e.message.as_str());
        let (error_html, attrs) = field_error(&id, message);
        format!(
            "<div><label for=\"{id}\">{label} <span class=\"hint\" id=\"{id}-hint\">{hint}</span></label><input type=\"{kind}\" id=\"{id}\" name=\"{name}\" value=\"{}\"{attrs}>{error_html}</div>",
            esc(&value(name))
        )
    };
    let chosen = value("action");
    let actions: String = std::iter::once("<option value=\"\">Any</option>".to_owned())
        .chain(Action::ALL.iter().map(|a| {
            let selected = if chosen == a.as_str() { " selected" } else { "" };
            format!("<option{selected}>{}</option>", a.as_str())
        }))
        .collect();
    let mut body = format!(
        "<h1>Audit</h1><form method=\"get\" action=\"{PREFIX}/audit\"><fieldset><legend>Filter</legend><div class=\"row\">{}{}{}</div><div class=\"row\">\
<div><label for=\"f-action\">Action <span class=\"hint\" id=\"f-action-hint\">What happened.</span></label><select id=\"f-action\" name=\"action\" aria-describedby=\"f-action-hint\">{actions}</select></div>{}{}</div>\
<button type=\"submit\">Search</button></fieldset></form>",
        field("principalId", "Principal", "Object id of the requester.", "text"),
        field("roleDefinitionId", "Role", "A name such as Owner, or an id.", "text"),
        field(
            "scope",
            "Scope",
            "This scope and below it. Role and scope match events recorded since Elevate keeps them on each event.",
            "text"
        ),
        field("since", "From", "UTC.", "datetime-local"),
        field("until", "Until", "UTC.", "datetime-local"),
    );
    if let Some(e) = &error {
        body.push_str(&format!(
            "<p class=\"note warn\" role=\"alert\"><strong>The search was not run:</strong> {}</p>",
            esc(&e.message)
        ));
    }
    let filter_pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let exports = |format: &str| {
        let mut p = filter_pairs.clone();
        p.push(("format", format));
        format!("{PREFIX}/audit/export?{}", query_string(&p))
    };
    body.push_str(&format!(
        "<p>Export this search: <a href=\"{}\" download>CSV</a> · <a href=\"{}\" download>JSON Lines</a> <small>(at most {EXPORT_MAX} events)</small></p>",
        esc(&exports("csv")),
        esc(&exports("jsonl"))
    ));
    let now = ctx.clock.now();
    if events.is_empty() && error.is_none() {
        body.push_str("<p role=\"status\">No events match.</p>");
    } else if !events.is_empty() {
        let rows: String = events.iter().map(|e| row(e, now)).collect();
        body.push_str(&format!(
            "<div class=\"table-wrap\"><table><caption class=\"hint\">Oldest first, {} on this page.</caption><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Action</th><th scope=\"col\">Principal</th><th scope=\"col\">By</th><th scope=\"col\">Role and scope</th><th scope=\"col\">Status</th><th scope=\"col\">Justification and detail</th></tr></thead><tbody>{rows}</tbody></table></div>",
            events.len()
        ));
    }
    if let Some(next) = next {
        let mut p = filter_pairs.clone();
        let token = dto::write_audit_skiptoken(&next);
        p.push(("page", token.as_str()));
        body.push_str(&format!("<p><a href=\"{PREFIX}/audit?{}\">Next page</a></p>", esc(&query_string(&p))));
    }
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    Ok(render(status, Some(who), Nav::Audit, "Audit", &body))
}

fn actor(a: &Actor) -> String {
    match a {
        Actor::Principal { id } => format!("<code>{id}</code>"),
        Actor::Broker { id, app_id } => format!("broker <code>{}</code> for <code>{id}</code>", esc(app_id)),
        Actor::System => "Elevate".to_owned(),
    }
}

fn row(e: &AuditEvent, now: DateTime<Utc>) -> String {
    let target = match (&e.role_definition_id, &e.scope) {
        (Some(role), Some(scope)) => format!("{} at {}", super::role_label(role), super::scope_label(scope)),
        _ => format!("rule <code>{}</code>", esc(e.rule_id.as_str())),
    };
    let status = match e.status_before {
        Some(before) => format!("{} → {}", before.as_str(), e.status_after.as_str()),
        None => e.status_after.as_str().to_owned(),
    };
    let text = [
        e.justification.as_ref().map(|j| esc(j.as_str())),
        e.detail.as_deref().map(|d| format!("<small>{}</small>", esc(d))),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("<br>");
    format!(
        "<tr><td>{}</td><td><a href=\"/api/approvals/{}\">{} <span class=\"hint\">request {}</span></a></td><td><code>{}</code></td><td>{}</td><td>{target}</td><td>{status}</td><td>{text}</td></tr>",
        super::when(e.at, now),
        e.activation_id,
        e.action.as_str(),
        e.activation_id,
        e.principal_id,
        actor(&e.actor)
    )
}

/// `GET /api/portal/audit/export?format=csv|jsonl&…`: the search, every page of it.
pub async fn export(ctx: &HttpContext, req: &Request, who: &Caller) -> Result<Response, ApiError> {
    if !who.can_read_audit() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "reading the audit trail needs Elevate.Admin or Elevate.Auditor",
        ));
    }
    let (pairs, all) = normalised(&req.query);
    let csv = match all.get("format") {
        Some("csv") => true,
        Some("jsonl") => false,
        _ => return Err(ApiError::invalid("format", "must be `csv` or `jsonl`")),
    };
    let filter = query_of(&pairs)?.filter()?;
    let mut events = Vec::new();
    let mut after = None;
    let mut cut = false;
    // Bounded by what is read, not only by what is kept: a filter that matches little must not
    // walk the whole trail (each call reads at most 10 store pages).
    for call in 1..=EXPORT_CALLS {
        let page = ctx.service.audit(who, filter.clone(), PageRequest { top: crate::service::MAX_LIST, after }).await?;
        events.extend(page.items);
        if events.len() >= EXPORT_MAX {
            cut = page.next.is_some() || events.len() > EXPORT_MAX;
            events.truncate(EXPORT_MAX);
            break;
        }
        match page.next {
            Some(next) if call < EXPORT_CALLS => after = Some(next),
            Some(_) => {
                cut = true;
                break;
            }
            None => break,
        }
    }
    let (body, content_type, name) = if csv {
        (to_csv(&events), "text/csv; charset=utf-8", "elevate-audit.csv")
    } else {
        let mut out = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut out, e)
                .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e))?;
            out.push(b'\n');
        }
        (out, "application/jsonl; charset=utf-8", "elevate-audit.jsonl")
    };
    let mut response = super::super::download(content_type, name, body);
    // Cut: the events kept so far; narrow the search (a later `since`) for the rest.
    if cut && let Ok(v) = HeaderValue::from_str(&events.len().to_string()) {
        response.headers_mut().insert("x-elevate-export-truncated-at", v);
    }
    Ok(response)
}

const CSV_COLUMNS: [&str; 14] = [
    "at",
    "action",
    "activationId",
    "principalId",
    "actor",
    "roleDefinitionId",
    "roleName",
    "scope",
    "ruleId",
    "statusBefore",
    "statusAfter",
    "justification",
    "ticket",
    "detail",
];

/// RFC 4180 CSV, every field quoted. A field that a spreadsheet would run as a formula (starting
/// with `=`, `+`, `-`, `@`, tab or carriage return: justifications are attacker-controlled) is
/// prefixed with `'`.
fn to_csv(events: &[AuditEvent]) -> Vec<u8> {
    let cell = |text: &str| {
        let guarded =
            if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
        format!("\"{}\"", guarded.replace('"', "\"\""))
    };
    let mut out = CSV_COLUMNS.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    for e in events {
        let actor = match &e.actor {
            Actor::Principal { id } => id.to_string(),
            Actor::Broker { id, app_id } => format!("broker:{app_id}:{id}"),
            Actor::System => "system".to_owned(),
        };
        let fields = [
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.action.as_str().to_owned(),
            e.activation_id.to_string(),
            e.principal_id.to_string(),
            actor,
            e.role_definition_id.map(|r| r.to_string()).unwrap_or_default(),
            e.role_definition_id.and_then(|r| r.built_in_name()).unwrap_or_default().to_owned(),
            e.scope.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            e.rule_id.to_string(),
            e.status_before.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            e.status_after.as_str().to_owned(),
            e.justification.as_ref().map(|j| j.as_str().to_owned()).unwrap_or_default(),
            e.ticket.as_ref().map(|t| format!("{} {}", t.system, t.number)).unwrap_or_default(),
            e.detail.clone().unwrap_or_default(),
        ];
        out.push_str(&fields.iter().map(|f| cell(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_query_becomes_the_api_filter() {
        let (pairs, rest) = normalised("principalId=&since=2026-12-01T10%3A00&action=Approved&page=abc&format=csv");
        assert_eq!(
            pairs,
            vec![("since".to_owned(), "2026-12-01T10:00:00Z".to_owned()), ("action".to_owned(), "Approved".to_owned())]
        );
        assert_eq!(rest.get("page"), Some("abc"));
        let filter = query_of(&pairs).and_then(|q| q.filter());
        assert!(filter.is_ok_and(|f| f.action == Some(Action::Approved) && f.since.is_some()));
    }
}
