//! Access reviews: the campaigns a person reviews, and one campaign's items with a keep or
//! remove form each (a justification is required). Auditors and admins see every item, and
//! download the results and the patch to the policy file.

use warp::http::StatusCode;

use crate::domain::review::{Basis, Campaign, CampaignState, Verdict};
use crate::service::ItemView;
use crate::service::ports::Caller;

use super::super::csrf::{self, Subject};
use super::super::error::ApiError;
use super::super::pages::{esc, see_other};
use super::super::reviews::{ItemDecisionDto, campaign_id, item_index};
use super::{Form, HttpContext, Nav, PREFIX, Request, Response, field_error, render, when};

/// Where a campaign stands, as HTML (its times are `when`'s markup; nothing else is text from outside).
fn state_label(c: &Campaign, now: chrono::DateTime<chrono::Utc>) -> String {
    match &c.state {
        CampaignState::Open if c.is_open(now) => format!("open, ends {}", when(c.ends, now)),
        CampaignState::Open | CampaignState::Applying { .. } => "ended; results being applied".to_owned(),
        CampaignState::Applied { applied_at, kept, removed, .. } => {
            format!("applied {}: {kept} kept, {removed} removed", when(*applied_at, now))
        }
    }
}

/// `GET /api/portal/reviews`.
pub async fn list(ctx: &HttpContext, who: &Caller) -> Result<Response, ApiError> {
    let now = ctx.clock.now();
    let campaigns = match ctx.service.campaigns(who, now).await {
        Ok(c) => c,
        Err(e) => return Ok(super::problem(ctx, Some(who), &ApiError::from(e))),
    };
    let mut body = String::from(
        "<h1>Access reviews</h1><p>Each item is one eligibility: decide whether it stays. When a campaign ends, \
its removals take effect at the next hourly governance pass, and any access they granted ends.</p>",
    );
    if campaigns.is_empty() {
        body.push_str("<p class=\"note\" role=\"status\">No access review needs you now.</p>");
    } else {
        body.push_str("<ul>");
        for c in &campaigns {
            body.push_str(&format!(
                "<li><a href=\"{PREFIX}/reviews/{id}\">{id}</a>: {} items, {}</li>",
                c.items,
                state_label(c, now),
                id = esc(c.id.as_str())
            ));
        }
        body.push_str("</ul>");
    }
    Ok(render(StatusCode::OK, Some(who), Nav::Reviews, "Access reviews", &body))
}

/// A refused decision, shown next to its form with what was entered.
struct Refused {
    index: u32,
    field: &'static str,
    message: String,
    decision: String,
    justification: String,
}

/// `GET /api/portal/reviews/{campaign}`.
pub async fn page(ctx: &HttpContext, req: &Request, who: &Caller, raw: &str) -> Result<Response, ApiError> {
    let done = Form::from_query(&req.query).get("done").and_then(|d| d.parse::<u32>().ok());
    render_page(ctx, who, raw, done, None, StatusCode::OK).await
}

async fn render_page(
    ctx: &HttpContext,
    who: &Caller,
    raw: &str,
    done: Option<u32>,
    refused: Option<Refused>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let id = match campaign_id(raw) {
        Ok(id) => id,
        Err(e) => return Ok(super::problem(ctx, Some(who), &e)),
    };
    let now = ctx.clock.now();
    let view = match ctx.service.campaign_view(who, &id, now).await {
        Ok(v) => v,
        Err(e) => return Ok(super::problem(ctx, Some(who), &ApiError::from(e))),
    };
    let c = &view.campaign;
    let mut body = format!("<h1>Access review {}</h1>", esc(c.id.as_str()));
    if let Some(description) = &view.description {
        body.push_str(&format!("<p>{}</p>", esc(description)));
    }
    body.push_str(&format!(
        "<dl><dt>Status</dt><dd>{}</dd><dt>Started</dt><dd>{}</dd><dt>Items</dt><dd>{}</dd><dt>If nobody decides</dt><dd>{}</dd></dl>",
        state_label(c, now),
        when(c.starts, now),
        c.items,
        match c.when_undecided {
            crate::domain::policy::Undecided::Keep => "kept",
            crate::domain::policy::Undecided::Remove => "removed",
            crate::domain::policy::Undecided::Recommendation => "as recommended",
        }
    ));
    if let Some(index) = done {
        body.push_str(&format!("<p class=\"note\" role=\"status\">Your decision on item {index} is recorded.</p>"));
    }
    if who.can_read_audit() {
        body.push_str(&format!(
            "<p><a href=\"/api/reviews/{id}/results.csv\">Download the results (CSV)</a>{}</p>",
            if c.is_open(now) {
                String::new()
            } else {
                format!(" · <a href=\"/api/reviews/{id}/policy-patch\">Download the patch to the policy file</a>")
            },
            id = esc(c.id.as_str())
        ));
    }
    let token = csrf::token(ctx, &who.principal_id, Subject::Review(c.id.as_str()));
    for item in &view.items {
        body.push_str(&item_html(c, item, &token, refused.as_ref().filter(|r| r.index == item.item.index), now));
    }
    Ok(render(status, Some(who), Nav::Reviews, &format!("Access review {}", c.id), &body))
}

fn item_html(
    c: &Campaign,
    view: &ItemView,
    token: &str,
    refused: Option<&Refused>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let item = &view.item;
    let i = item.index;
    let recommendation = format!(
        "{} ({}{})",
        item.recommendation.verdict.as_str(),
        esc(&item.recommendation.reason),
        item.recommendation.last_activated.map(|at| format!("; last activated {}", when(at, now))).unwrap_or_default()
    );
    let decisions: String = item
        .decisions
        .iter()
        .map(|d| {
            format!(
                "<li>{} by <code>{}</code> {}: {}</li>",
                d.verdict.as_str(),
                d.by,
                when(d.at, now),
                esc(d.justification.as_str())
            )
        })
        .collect();
    let outcome = match item.outcome(c.when_undecided) {
        (v, Basis::Decided) => format!("{} (decided)", v.as_str()),
        (v, Basis::Undecided(_)) => format!("{} (nobody has decided)", v.as_str()),
    };
    let mut html = format!(
        "<section class=\"item\" aria-labelledby=\"item-{i}\"><h2 id=\"item-{i}\">Item {i}: <code>{}</code> under rule <code>{}</code></h2>\
<dl><dt>Recommendation</dt><dd>{recommendation}</dd><dt>Would be</dt><dd>{}</dd></dl>",
        esc(&item.entry.to_string()),
        esc(item.rule.as_str()),
        esc(&outcome)
    );
    if !decisions.is_empty() {
        html.push_str(&format!("<h3>Decisions</h3><ul>{decisions}</ul>"));
    }
    if view.may_decide {
        let error = |field: &str| refused.filter(|r| r.field == field).map(|r| r.message.as_str());
        let (j_error, j_attrs) = field_error(&format!("i{i}-justification"), error("justification"));
        let (d_error, _) = field_error(&format!("i{i}-decision"), error("decision"));
        let chosen = refused.map(|r| r.decision.as_str()).unwrap_or_default();
        let radio = |value: Verdict, label: &str| {
            let v = value.as_str();
            let checked = if chosen == v { " checked" } else { "" };
            format!("<label><input type=\"radio\" name=\"decision\" value=\"{v}\" required{checked}> {label}</label> ")
        };
        let other = refused
            .filter(|r| r.field.is_empty())
            .map(|r| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(&r.message)))
            .unwrap_or_default();
        html.push_str(&format!(
            "<form method=\"post\" action=\"{PREFIX}/reviews/{campaign}/items/{i}\">{other}\
<input type=\"hidden\" name=\"{field}\" value=\"{token}\">\
<fieldset><legend>Decision</legend>{d_error}{keep}{remove}</fieldset>\
<label for=\"i{i}-justification\">Justification <span id=\"i{i}-justification-hint\" class=\"hint\">Why it should stay or go; kept in the results and the review log.</span></label>\
<textarea id=\"i{i}-justification\" name=\"justification\" rows=\"2\" required maxlength=\"1000\"{j_attrs}>{justification}</textarea>{j_error}\
<div><button type=\"submit\">Record decision</button></div></form>",
            campaign = esc(c.id.as_str()),
            field = csrf::FIELD,
            token = esc(token),
            keep = radio(Verdict::Keep, "Keep"),
            remove = radio(Verdict::Remove, "Remove"),
            justification = esc(refused.map(|r| r.justification.as_str()).unwrap_or_default()),
        ));
    }
    html.push_str("</section>");
    html
}

/// `POST /api/portal/reviews/{campaign}/items/{index}`.
pub async fn submit(ctx: &HttpContext, req: &Request, raw: &str, raw_index: &str) -> Result<Response, ApiError> {
    let id = match campaign_id(raw) {
        Ok(id) => id,
        Err(e) => return Ok(super::problem(ctx, None, &e)),
    };
    let who = match csrf::caller_for_change(ctx, req, Subject::Review(id.as_str())).await {
        Ok(who) => who,
        Err(e) => return Ok(super::problem(ctx, None, &e)),
    };
    let index = match item_index(raw_index) {
        Ok(i) => i,
        Err(e) => return Ok(super::problem(ctx, Some(&who), &e)),
    };
    let form = Form::parse(req)?;
    let dto = ItemDecisionDto {
        decision: form.get("decision").map(str::to_owned),
        justification: form.get("justification").map(str::to_owned),
    };
    let result = match dto.into_input() {
        Ok(input) => ctx.service.decide_item(&who, &id, index, input, ctx.clock.now()).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("{PREFIX}/reviews/{id}?done={index}"))),
        Err(e) => {
            let field = super::field_of(&e, &["decision", "justification"]).unwrap_or("");
            let refused = Refused {
                index,
                field,
                message: e.message.clone(),
                decision: form.text("decision"),
                justification: form.text("justification"),
            };
            render_page(ctx, &who, id.as_str(), None, Some(refused), e.status).await
        }
    }
}
