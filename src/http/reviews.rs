//! Access reviews over the API (`/api/reviews…`): the campaigns a caller reviews, one
//! campaign's items, a decision on an item, and the results (CSV, and the patch to the policy
//! file). Thin: parse, call the service, answer.

use serde::Deserialize;
use warp::http::StatusCode;

use crate::domain::ids::{Justification, shorten};
use crate::domain::review::{CampaignId, Verdict};
use crate::service::ItemInput;

use super::error::ApiError;
use super::{HttpContext, Request, Response, caller, csrf, dto, json};

/// `{campaign}` as sent in the address.
pub fn campaign_id(raw: &str) -> Result<CampaignId, ApiError> {
    CampaignId::parse(raw).map_err(|e| ApiError::invalid("campaignId", e))
}

/// `{index}` of an item: a whole number below a million.
pub fn item_index(raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|i| *i < 1_000_000 && !raw.starts_with('+'))
        .ok_or_else(|| ApiError::invalid("index", format!("`{}` is not an item number", shorten(raw))))
}

/// The body of a decision on an item.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ItemDecisionDto {
    pub decision: Option<String>,
    pub justification: Option<String>,
}

impl ItemDecisionDto {
    pub fn into_input(self) -> Result<ItemInput, ApiError> {
        let decision = self.decision.ok_or_else(|| ApiError::invalid("decision", "say `keep` or `remove`"))?;
        let verdict = Verdict::parse(decision.trim()).ok_or_else(|| {
            ApiError::invalid("decision", format!("`{}` is not `keep` or `remove`", shorten(&decision)))
        })?;
        let justification = self
            .justification
            .filter(|j| !j.trim().is_empty())
            .ok_or_else(|| ApiError::invalid("justification", "say why it should stay or go"))
            .and_then(|j| Justification::parse(&j).map_err(|e| ApiError::invalid("justification", e)))?;
        Ok(ItemInput { verdict, justification })
    }
}

/// `GET /api/reviews`: the campaigns the caller reviews now (all of them for auditors and
/// admins), newest first.
#[tracing::instrument(skip_all)]
pub async fn list(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    dto::parse_query::<NoQuery>(&req.query)?;
    let campaigns = ctx.service.campaigns(&who, ctx.clock.now()).await?;
    json(StatusCode::OK, &serde_json::json!({ "value": campaigns }))
}

/// No query parameters are taken.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// `GET /api/reviews/{campaign}`: the campaign and the items the caller may see.
#[tracing::instrument(skip_all)]
pub async fn get(ctx: &HttpContext, req: &Request, raw: &str) -> Result<Response, ApiError> {
    let id = campaign_id(raw)?;
    let who = caller(ctx, req).await?;
    let view = ctx.service.campaign_view(&who, &id, ctx.clock.now()).await?;
    let mut response = json(StatusCode::OK, &view)?;
    csrf::offer(ctx, req, &who, csrf::Subject::Review(id.as_str()), &mut response);
    Ok(response)
}

/// `POST /api/reviews/{campaign}/items/{index}` `{"decision": "keep"|"remove", "justification"}`.
#[tracing::instrument(skip_all)]
pub async fn decide(ctx: &HttpContext, req: &Request, raw: &str, raw_index: &str) -> Result<Response, ApiError> {
    let id = campaign_id(raw)?;
    let index = item_index(raw_index)?;
    let who = csrf::caller_for_change(ctx, req, csrf::Subject::Review(id.as_str())).await?;
    let input = dto::parse_json::<ItemDecisionDto>(&req.body)?.into_input()?;
    let item = ctx.service.decide_item(&who, &id, index, input, ctx.clock.now()).await?;
    json(StatusCode::OK, &item)
}

/// `GET /api/reviews/{campaign}/results.csv` (auditors, admins).
#[tracing::instrument(skip_all)]
pub async fn results(ctx: &HttpContext, req: &Request, raw: &str) -> Result<Response, ApiError> {
    let id = campaign_id(raw)?;
    let who = caller(ctx, req).await?;
    let csv = ctx.service.campaign_csv(&who, &id).await?;
    Ok(super::download("text/csv; charset=utf-8", &format!("elevate-review-{id}.csv"), csv.into_bytes()))
}

/// `GET /api/reviews/{campaign}/policy-patch` (auditors, admins; once the campaign ended).
#[tracing::instrument(skip_all)]
pub async fn patch(ctx: &HttpContext, req: &Request, raw: &str) -> Result<Response, ApiError> {
    let id = campaign_id(raw)?;
    let who = caller(ctx, req).await?;
    let patch = ctx.service.campaign_patch(&who, &id, ctx.clock.now()).await?;
    Ok(super::download("text/x-diff; charset=utf-8", &format!("elevate-review-{id}.patch"), patch.into_bytes()))
}

/// The body of lifting a suspension.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LiftDto {
    rule_id: Option<String>,
    principal: Option<String>,
    justification: Option<String>,
}

/// `GET /api/suspensions`: eligibilities access reviews removed (auditors, admins).
#[tracing::instrument(skip_all)]
pub async fn suspensions(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    dto::parse_query::<NoQuery>(&req.query)?;
    let found = ctx.service.list_suspensions(&who).await?;
    let mut response = json(StatusCode::OK, &serde_json::json!({ "value": found }))?;
    if who.is_admin() {
        csrf::offer(ctx, req, &who, csrf::Subject::Lift, &mut response);
    }
    Ok(response)
}

/// `POST /api/suspensions/lift` `{"ruleId", "principal": "user:<id>"|"group:<id>", "justification"}`
/// (admins): the eligibility is back at once.
#[tracing::instrument(skip_all)]
pub async fn lift(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = csrf::caller_for_change(ctx, req, csrf::Subject::Lift).await?;
    let body: LiftDto = dto::parse_json(&req.body)?;
    let rule = body
        .rule_id
        .ok_or_else(|| ApiError::invalid("ruleId", "name the rule"))
        .and_then(|r| crate::domain::ids::RuleId::parse(&r).map_err(|e| ApiError::invalid("ruleId", e)))?;
    let entry = body
        .principal
        .ok_or_else(|| ApiError::invalid("principal", "name the entry (`user:<id>` or `group:<id>`)"))
        .and_then(|p| crate::domain::ids::PrincipalRef::parse(&p).map_err(|e| ApiError::invalid("principal", e)))?;
    let justification = body
        .justification
        .ok_or_else(|| ApiError::invalid("justification", "say why"))
        .and_then(|j| Justification::parse(&j).map_err(|e| ApiError::invalid("justification", e)))?;
    let lifted = ctx.service.lift_suspension(&who, &rule, entry, justification, ctx.clock.now()).await?;
    json(StatusCode::OK, &lifted)
}

/// `GET /api/reviews/{campaign}/log` (auditors, admins): every decision (replaced ones too),
/// suspension and lifting of the campaign, oldest first.
#[tracing::instrument(skip_all)]
pub async fn log(ctx: &HttpContext, req: &Request, raw: &str) -> Result<Response, ApiError> {
    let id = campaign_id(raw)?;
    let who = caller(ctx, req).await?;
    let lines = ctx.service.review_log(&who, &id).await?;
    json(StatusCode::OK, &serde_json::json!({ "value": lines }))
}
