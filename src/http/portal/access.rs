//! My access: what is active (time left, deactivate, extend), what waits (cancel, who decided),
//! what is scheduled, and recent history. Each button is a form with the token for that
//! activation; a refused change comes back as this page with the reason.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use warp::http::StatusCode;

use crate::domain::activation::{Activation, Decision, State, Status};
use crate::domain::ids::{ActivationId, DisplayName, Justification, PrincipalId};
use crate::domain::policy::MIN_ACTIVATION;
use crate::service::ports::Caller;
use crate::service::{ExtensionInput, ListFilter, PageRequest};

use super::super::csrf::{self, Subject};
use super::super::error::ApiError;
use super::super::pages::{esc, see_other};
use super::{Form, HttpContext, Nav, PREFIX, Request, Response, field_error, render, when};

/// Most of the caller's requests the page reads (newest first).
const SHOWN: usize = 100;
/// Ended requests listed under "Recent".
const RECENT: usize = 20;

/// What a change did, as the redirect after it names it (`?done=`).
#[derive(Clone, Copy)]
enum Done {
    Deactivated,
    Withdrawn,
    Extended,
    ExtensionAsked,
}

impl Done {
    const ALL: [Done; 4] = [Done::Deactivated, Done::Withdrawn, Done::Extended, Done::ExtensionAsked];

    fn code(self) -> &'static str {
        match self {
            Done::Deactivated => "deactivated",
            Done::Withdrawn => "withdrawn",
            Done::Extended => "extended",
            Done::ExtensionAsked => "extension-asked",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Done::Deactivated => "access ended",
            Done::Withdrawn => "request withdrawn",
            Done::Extended => "access extended",
            Done::ExtensionAsked => "extension asked for; it waits for approval",
        }
    }

    fn parse(code: &str) -> Option<Done> {
        Done::ALL.into_iter().find(|d| d.code() == code)
    }
}

/// A refused change, shown on the page it came from.
struct Refused {
    id: ActivationId,
    action: String,
    message: String,
    /// What was typed into the extend form, kept.
    duration: String,
    justification: String,
}

/// `GET /api/portal/access`.
pub async fn page(ctx: &HttpContext, req: &Request, who: &Caller) -> Result<Response, ApiError> {
    let query = Form::from_query(&req.query);
    // Only fixed words: a link must not put its own text on Elevate's page.
    let notice = query
        .get("requested")
        .and_then(|id| ActivationId::parse(id).ok())
        .map(|id| format!("Requested. Your request <code>{id}</code> is listed below."))
        .or_else(|| query.get("done").and_then(Done::parse).map(|d| format!("Done: {}.", d.text())));
    render_page(ctx, who, notice, None, StatusCode::OK).await
}

async fn render_page(
    ctx: &HttpContext,
    who: &Caller,
    notice: Option<String>,
    refused: Option<Refused>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = ctx.clock.now();
    let filter = ListFilter { status: None, mine: true };
    let mine = match ctx.service.list_activations(who, filter, PageRequest { top: SHOWN, after: None }, now).await {
        Ok(page) => page.items,
        Err(e) => return Ok(super::problem(ctx, Some(who), &ApiError::from(e))),
    };
    let deciders: Vec<PrincipalId> = mine.iter().flat_map(|a| a.approvals().iter().map(|d| d.approver_id)).collect();
    let names = ctx.service.display_names(&deciders).await;
    let mut body = String::from("<h1>My access</h1>");
    if let Some(notice) = notice {
        body.push_str(&format!("<p class=\"note\" role=\"status\">{notice}</p>"));
    }
    if let Some(r) = &refused {
        body.push_str(&format!(
            "<p class=\"note warn\" role=\"alert\" id=\"refused\"><strong>Could not {} <code>{}</code>:</strong> {}</p>",
            esc(&r.action),
            r.id,
            esc(&r.message)
        ));
    }
    let active: Vec<&Activation> =
        mine.iter().filter(|a| matches!(a.status(), Status::Active | Status::Provisioning)).collect();
    let pending: Vec<&Activation> = mine.iter().filter(|a| a.status() == Status::PendingApproval).collect();
    let scheduled: Vec<&Activation> = mine.iter().filter(|a| a.status() == Status::Scheduled).collect();
    let ended: Vec<&Activation> = mine.iter().filter(|a| a.status().is_terminal()).take(RECENT).collect();

    body.push_str("<h2>Active</h2>");
    if active.is_empty() {
        body.push_str("<p>Nothing is active.</p>");
    }
    for a in &active {
        body.push_str(&active_item(ctx, who, a, refused.as_ref().filter(|r| r.id == a.id()), now));
    }
    body.push_str("<h2>Waiting for approval</h2>");
    if pending.is_empty() {
        body.push_str("<p>Nothing waits for approval.</p>");
    }
    for a in &pending {
        body.push_str(&pending_item(ctx, who, a, &names, now));
    }
    body.push_str("<h2>Scheduled</h2>");
    if scheduled.is_empty() {
        body.push_str("<p>Nothing is scheduled.</p>");
    }
    for a in &scheduled {
        let start = a.starts_at().map(|s| when(s, now)).unwrap_or_default();
        body.push_str(&format!(
            "<section class=\"item\" aria-labelledby=\"h-{id}\"><h3 id=\"h-{id}\">{}</h3><dl><dt>Starts</dt><dd>{start}</dd><dt>For</dt><dd>{}</dd></dl>{}</section>",
            title(a),
            esc(&a.request().duration.to_string()),
            button(ctx, who, a, "cancel", "Cancel"),
            id = a.id()
        ));
    }
    body.push_str("<h2>Recent</h2>");
    if ended.is_empty() {
        body.push_str("<p>No earlier requests.</p>");
    } else {
        let rows: String = ended.iter().map(|a| history_row(a, &names, now)).collect();
        body.push_str(&format!(
            "<div class=\"table-wrap\"><table><caption class=\"hint\">Your last {RECENT} ended requests, newest first.</caption><thead><tr><th scope=\"col\">Role</th><th scope=\"col\">Scope</th><th scope=\"col\">Outcome</th><th scope=\"col\">Requested</th><th scope=\"col\">Ended</th></tr></thead><tbody>{rows}</tbody></table></div>"
        ));
    }
    Ok(render(status, Some(who), Nav::Access, "My access", &body))
}

fn title(a: &Activation) -> String {
    let r = a.request();
    format!("{} at {}", super::role_label(&r.role_definition_id), super::scope_label(&r.scope))
}

/// A one-button form acting on `a`.
fn button(ctx: &HttpContext, who: &Caller, a: &Activation, action: &str, label: &str) -> String {
    let id = a.id().to_string();
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{PREFIX}/activations/{id}/{action}\"><input type=\"hidden\" name=\"{}\" value=\"{}\">\
<button type=\"submit\" aria-describedby=\"h-{id}\">{label}</button></form>",
        csrf::FIELD,
        esc(&csrf::token(ctx, &who.principal_id, Subject::Activation(&id)))
    )
}

fn active_item(
    ctx: &HttpContext,
    who: &Caller,
    a: &Activation,
    refused: Option<&Refused>,
    now: DateTime<Utc>,
) -> String {
    let id = a.id();
    let mut facts = vec![("Status", esc(a.status().as_str()))];
    if let Some(ends) = a.expires_at() {
        facts.push(("Ends", when(ends, now)));
    }
    if let Some(started) = a.starts_at() {
        facts.push(("Started", when(started, now)));
    }
    let mut extend = String::new();
    if let State::Active { activated_at, expires_at, extension, .. } = a.state() {
        match extension {
            Some(ext) => facts.push((
                "Extension",
                format!(
                    "{} more asked, waits for approval until {}",
                    esc(&ext.additional.to_string()),
                    when(ext.timeout_at, now)
                ),
            )),
            None => {
                let rule = ctx.service.policy().rule(&a.request().rule_id);
                let room = rule.map(|r| r.max_duration.as_delta() - (*expires_at - *activated_at));
                if let Some(room) = room.filter(|room| *room >= MIN_ACTIVATION.as_delta()) {
                    extend = extend_form(ctx, who, a, room, refused);
                }
            }
        }
    }
    let facts_html: String = facts.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
    format!(
        "<section class=\"item\" aria-labelledby=\"h-{id}\"><h3 id=\"h-{id}\">{}</h3><dl>{facts_html}</dl>{}{extend}</section>",
        title(a),
        if a.status() == Status::Active { button(ctx, who, a, "deactivate", "Deactivate now") } else { String::new() },
    )
}

fn extend_form(
    ctx: &HttpContext,
    who: &Caller,
    a: &Activation,
    room: chrono::TimeDelta,
    refused: Option<&Refused>,
) -> String {
    let id = a.id().to_string();
    let field = format!("x-{id}");
    let error = refused.filter(|r| r.action == "extend").map(|r| r.message.as_str());
    let (error_html, attrs) = field_error(&format!("{field}-duration"), error);
    let kept = |f: fn(&Refused) -> &str| refused.map(f).unwrap_or_default().to_owned();
    let minutes = room.num_minutes();
    format!(
        "<details{open}><summary>Extend</summary><form method=\"post\" action=\"{PREFIX}/activations/{id}/extend\">\
<input type=\"hidden\" name=\"{csrf_field}\" value=\"{token}\">\
<label for=\"{field}-duration\">More time <span class=\"hint\" id=\"{field}-duration-hint\">For example 30m or PT1H; at most {h} h {m} min more under the rule.</span></label>\
<input type=\"text\" id=\"{field}-duration\" name=\"duration\" value=\"{duration}\" required{attrs}>{error_html}\
<label for=\"{field}-justification\">Why (optional)</label><textarea id=\"{field}-justification\" name=\"justification\" rows=\"2\" maxlength=\"1000\">{justification}</textarea>\
<button type=\"submit\">Extend</button></form></details>",
        open = if error.is_some() { " open" } else { "" },
        csrf_field = csrf::FIELD,
        token = esc(&csrf::token(ctx, &who.principal_id, Subject::Activation(&id))),
        h = minutes / 60,
        m = minutes % 60,
        duration = esc(&kept(|r| &r.duration)),
        justification = esc(&kept(|r| &r.justification)),
    )
}

fn pending_item(
    ctx: &HttpContext,
    who: &Caller,
    a: &Activation,
    names: &HashMap<PrincipalId, DisplayName>,
    now: DateTime<Utc>,
) -> String {
    let mut facts = vec![("Requested", when(a.request().requested_at, now))];
    if let State::PendingApproval { timeout_at, min_approvals } = a.state() {
        facts.push(("Needs", format!("{min_approvals} approval(s), by {}", when(*timeout_at, now))));
    }
    let decisions: Vec<String> = a
        .approvals()
        .iter()
        .map(|d| {
            format!(
                "{} {} at {}",
                super::person(&d.approver_id, names),
                match d.decision {
                    Decision::Approve => "approved",
                    Decision::Deny => "denied",
                },
                super::super::pages::fmt_time(d.at)
            )
        })
        .collect();
    facts.push(("Decided", if decisions.is_empty() { "nobody yet".to_owned() } else { decisions.join("; ") }));
    let facts_html: String = facts.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
    format!(
        "<section class=\"item\" aria-labelledby=\"h-{id}\"><h3 id=\"h-{id}\">{}</h3><dl>{facts_html}</dl>{}</section>",
        title(a),
        button(ctx, who, a, "cancel", "Cancel request"),
        id = a.id()
    )
}

fn history_row(a: &Activation, names: &HashMap<PrincipalId, DisplayName>, now: DateTime<Utc>) -> String {
    let r = a.request();
    let ended = match a.state() {
        State::Denied { at }
        | State::Canceled { at }
        | State::TimedOut { at }
        | State::Expired { at, .. }
        | State::Deactivated { at }
        | State::Failed { at, .. } => when(*at, now),
        _ => String::new(),
    };
    let by: Vec<String> = a
        .approvals()
        .iter()
        .filter(|d| d.decision == Decision::Deny)
        .map(|d| super::person(&d.approver_id, names))
        .collect();
    let outcome = if by.is_empty() {
        esc(a.status().as_str())
    } else {
        format!("{} by {}", esc(a.status().as_str()), by.join(", "))
    };
    format!(
        "<tr><td>{}</td><td>{}</td><td>{outcome}</td><td>{}</td><td>{ended}</td></tr>",
        super::role_label(&r.role_definition_id),
        super::scope_label(&r.scope),
        when(r.requested_at, now)
    )
}

/// `POST /api/portal/activations/{id}/{deactivate|cancel|extend}`.
pub async fn act(ctx: &HttpContext, req: &Request, raw_id: &str, action: &str) -> Result<Response, ApiError> {
    let id = ActivationId::parse(raw_id).map_err(|e| ApiError::invalid("id", e))?;
    let who = match csrf::caller_for_change(ctx, req, Subject::Activation(&id.to_string())).await {
        Ok(who) => who,
        Err(e) => return Ok(super::problem(ctx, None, &e)),
    };
    let form = Form::parse(req)?;
    let now = ctx.clock.now();
    let result = match action {
        "deactivate" => ctx.service.deactivate(&who, id, now).await.map_err(ApiError::from),
        "cancel" => ctx.service.cancel(&who, id, now).await.map_err(ApiError::from),
        _ => match extension(&form) {
            Ok(input) => ctx.service.extend(&who, id, input, now).await.map_err(ApiError::from),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(a) => {
            let done = match action {
                "deactivate" => Done::Deactivated,
                "cancel" => Done::Withdrawn,
                _ if matches!(a.state(), State::Active { extension: Some(_), .. }) => Done::ExtensionAsked,
                _ => Done::Extended,
            };
            Ok(see_other(&format!("{PREFIX}/access?done={}", done.code())))
        }
        Err(e) => {
            let refused = Refused {
                id,
                action: action.to_owned(),
                message: e.message.clone(),
                duration: form.text("duration"),
                justification: form.text("justification"),
            };
            render_page(ctx, &who, None, Some(refused), e.status).await
        }
    }
}

fn extension(form: &Form) -> Result<ExtensionInput, ApiError> {
    let duration = form
        .get("duration")
        .ok_or_else(|| ApiError::invalid("duration", "enter how much more time"))
        .and_then(|d| super::roles::parse_duration(d).map_err(|e| ApiError::invalid("duration", e)))?;
    let justification = form
        .get("justification")
        .map(|j| Justification::parse(j).map_err(|e| ApiError::invalid("justification", e)))
        .transpose()?;
    Ok(ExtensionInput { duration, justification })
}
