//! Alerts (auditors and admins): what the governance pass found, open first, most severe first;
//! `?status=All` adds the resolved ones. Read-only: alerts never change access.

use warp::http::StatusCode;

use crate::domain::governance::Severity;
use crate::service::AlertStatus;
use crate::service::ports::Caller;

use super::super::error::ApiError;
use super::super::pages::esc;
use super::{Form, HttpContext, Nav, PREFIX, Request, Response, render, when};

/// `GET /api/portal/alerts`.
pub async fn page(ctx: &HttpContext, req: &Request, who: &Caller) -> Result<Response, ApiError> {
    let all = Form::from_query(&req.query).get("status") == Some("All");
    let alerts = match ctx.service.alerts(who, all).await {
        Ok(alerts) => alerts,
        Err(e) => return Ok(super::problem(ctx, Some(who), &ApiError::from(e))),
    };
    let now = ctx.clock.now();
    let open = alerts.iter().filter(|a| a.status == AlertStatus::Open).count();
    let mut body = format!(
        "<h1>Alerts</h1><p>What the hourly governance pass found: roles assigned outside Elevate, too many permanent holders, \
unused eligibility, weak rules, frequent activation. Alerts report; they never remove access. {open} open.</p>\
<p>{}</p>",
        if all {
            format!("<a href=\"{PREFIX}/alerts\">Show open alerts only</a>")
        } else {
            format!("<a href=\"{PREFIX}/alerts?status=All\">Show resolved alerts too</a>")
        }
    );
    if alerts.is_empty() {
        body.push_str("<p class=\"note\" role=\"status\">No alerts.</p>");
    }
    for (i, a) in alerts.iter().enumerate() {
        let f = &a.finding;
        let severity = match f.severity {
            Severity::High => "High",
            Severity::Medium => "Medium",
            Severity::Low => "Low",
        };
        let items: String = f.items.iter().map(|item| format!("<li>{}</li>", esc(item))).collect();
        let mut facts = vec![
            ("Severity", severity.to_owned()),
            ("Status", a.status.as_str().to_owned()),
            ("Kind", f.kind.as_str().to_owned()),
            ("First seen", when(a.first_seen, now)),
            ("Last seen", when(a.last_seen, now)),
        ];
        if let Some(at) = a.resolved_at {
            facts.push(("Resolved", when(at, now)));
        }
        let facts_html: String = facts.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
        body.push_str(&format!(
            "<section class=\"item\" aria-labelledby=\"alert-{i}\"><h2 id=\"alert-{i}\">{severity}: {}</h2><dl>{facts_html}</dl>\
<h3>Affected</h3><ul>{items}</ul><p><strong>What to do:</strong> {}</p><p><small>Alert id <code>{}</code></small></p></section>",
            esc(&f.title),
            esc(&f.remediation),
            esc(&f.id)
        ));
    }
    Ok(render(StatusCode::OK, Some(who), Nav::Alerts, "Alerts", &body))
}
