//! Route handlers: extract the caller, convert the DTO, call one service function, map.

use warp::http::{HeaderValue, StatusCode, header};

use crate::domain::ids::{ActivationId, PrincipalId};
use crate::service::ports::IdempotencyKey;
use crate::service::{Answer, ServiceError};

use super::dto::{self, ActivationRequestDto, ActivationView, DecisionDto, EligibilityView, ExtendDto, List, Paged};
use super::error::ApiError;
use super::{HttpContext, Request, Response, caller, csrf, json, pages};

fn activation_id(raw: &str) -> Result<ActivationId, ApiError> {
    parse_id("id", raw)
}

fn parse_id(field: &str, raw: &str) -> Result<ActivationId, ApiError> {
    ActivationId::parse(raw).map_err(|e| ApiError::invalid(field, e))
}

/// `GET /` (and `/api/`): readiness for the Functions host, answered at once, touching nothing;
/// a browser is sent to the portal instead.
pub fn readiness(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    if req.wants_html() {
        return Ok(pages::see_other(super::portal::HOME));
    }
    json(
        StatusCode::OK,
        &serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "authMode": ctx.auth_mode}),
    )
}

/// `GET /api/health`: liveness plus a self-check of configuration and store.
#[tracing::instrument(skip_all)]
pub async fn health(ctx: &HttpContext) -> Result<Response, ApiError> {
    let store_ok = ctx.service.store_ready().await;
    let body = serde_json::json!({
        "status": if store_ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "authMode": ctx.auth_mode,
        "provider": ctx.service.access_kind(),
        "simulated": ctx.service.access_kind() == "local",
        "store": if store_ok { "ok" } else { "unavailable" },
        "policyRules": ctx.service.policy().rules().len(),
        "notifications": ctx.service.notifier().map(|n| n.sink_names()).unwrap_or_default(),
    });
    json(if store_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

#[tracing::instrument(skip_all)]
pub async fn eligibilities(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    let rules = ctx.service.eligibilities(&who, ctx.clock.now()).await?;
    let mut response = json(StatusCode::OK, &List { value: rules.into_iter().map(EligibilityView::from).collect() })?;
    csrf::offer(ctx, req, &who, csrf::Subject::NewActivation, &mut response);
    Ok(response)
}

/// Query parameters of `POST /api/activations`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RequestQuery {
    validate_only: Option<String>,
}

#[tracing::instrument(skip_all)]
pub async fn request_activation(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let q: RequestQuery = dto::parse_query(&req.query)?;
    if dto::parse_bool("validateOnly", q.validate_only.as_deref(), false)? {
        return validate_activation(ctx, req).await;
    }
    let who = csrf::caller_for_change(ctx, req, csrf::Subject::NewActivation).await?;
    let key = match req.headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))
                .and_then(|s| IdempotencyKey::parse(s).map_err(|e| ApiError::invalid("Idempotency-Key", e)))?,
        ),
        None => None,
    };
    let input = dto::parse_json::<ActivationRequestDto>(&req.body)?.into_input()?;
    let outcome = match ctx.service.request(&who, input, key, ctx.clock.now()).await? {
        Answer::Opened(outcome) => outcome,
        // A broker asked for a rule that needs the user's own proof: the request waits for them.
        Answer::AwaitsUser(link) => return super::confirm::awaiting_user(ctx, &link),
    };
    let mut response = json(StatusCode::CREATED, &ActivationView::of(&outcome.activation, None))?;
    let location = format!("/api/activations/{}", outcome.activation.id());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if outcome.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `POST /api/activations?validateOnly=true`: what the request would become, with nothing
/// stored and no notice sent. Authenticated like a request, but changes nothing, so a session
/// needs no CSRF token (the origin check still applies to every POST).
#[tracing::instrument(skip_all)]
async fn validate_activation(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    let input = dto::parse_json::<ActivationRequestDto>(&req.body)?.into_input()?;
    let preview = ctx.service.preview_activation(&who, input, ctx.clock.now()).await?;
    json(StatusCode::OK, &dto::PreviewView::from(&preview))
}

/// `GET /api/me`: the caller as Elevate reads their credentials.
#[tracing::instrument(skip_all)]
pub async fn me(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    json(StatusCode::OK, &dto::MeView::from(&who))
}

#[tracing::instrument(skip_all)]
pub async fn get_activation(ctx: &HttpContext, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    let id = activation_id(raw_id)?;
    let details = ctx.service.activation(&who, id).await?;
    let mut response = json(StatusCode::OK, &ActivationView::of(&details.activation, Some(details.history)))?;
    csrf::offer(ctx, req, &who, csrf::Subject::Activation(&id.to_string()), &mut response);
    Ok(response)
}

#[tracing::instrument(skip_all)]
pub async fn list_activations(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    let q: dto::ListQuery = dto::parse_query(&req.query)?;
    let page = q.page()?;
    let top = page.top;
    let found = ctx.service.list_activations(&who, q.filter()?, page, ctx.clock.now()).await?;
    let next_link = q.next_link(&ctx.public_url, top, found.next.as_ref())?;
    json(StatusCode::OK, &Paged { value: found.items.iter().map(|a| ActivationView::of(a, None)).collect(), next_link })
}

/// `POST /api/activations/{id}/{deactivate|cancel|extend}`.
#[tracing::instrument(skip_all, fields(action))]
pub async fn act(ctx: &HttpContext, req: &Request, raw_id: &str, action: &str) -> Result<Response, ApiError> {
    let id = activation_id(raw_id)?;
    let who = csrf::caller_for_change(ctx, req, csrf::Subject::Activation(&id.to_string())).await?;
    let now = ctx.clock.now();
    let activation = match action {
        "deactivate" => ctx.service.deactivate(&who, id, now).await?,
        "cancel" => ctx.service.cancel(&who, id, now).await?,
        _ => {
            let input = dto::parse_json::<ExtendDto>(&req.body)?.into_input()?;
            ctx.service.extend(&who, id, input, now).await?
        }
    };
    json(StatusCode::OK, &ActivationView::of(&activation, None))
}

#[tracing::instrument(skip_all)]
pub async fn pending_approvals(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    let q: dto::ApprovalsQuery = dto::parse_query(&req.query)?;
    let page = q.page()?;
    let top = page.top;
    let pending = ctx.service.pending_approvals(&who, page, ctx.clock.now()).await?;
    let next_link = q.next_link(&ctx.public_url, top, pending.next.as_ref());
    json(
        StatusCode::OK,
        &Paged { value: pending.items.iter().map(|a| ActivationView::of(a, None)).collect(), next_link },
    )
}

/// `GET /api/approvals/{id}`: the approval page, or JSON with `Accept: application/json`.
#[tracing::instrument(skip_all)]
pub async fn approval_page(ctx: &HttpContext, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let html = req.wants_html();
    let who = match caller(ctx, req).await {
        Ok(who) => who,
        Err(e) if html && e.status == StatusCode::UNAUTHORIZED => {
            return Ok(pages::sign_in_required(ctx, &req.path, &e));
        }
        Err(e) => return Err(e),
    };
    let id = activation_id(raw_id)?;
    let now = ctx.clock.now();
    let details = match ctx.service.activation(&who, id).await {
        Ok(d) => d,
        // Whether it exists is not told to someone who may not see it.
        Err(ServiceError::NotFound(_)) if html => return Ok(pages::not_yours(&who)),
        Err(e) if html => return Ok(pages::refusal(&ApiError::from(e))),
        Err(e) => return Err(e.into()),
    };
    let can_decide = ctx.service.can_decide(&who, &details.activation, now).await;
    if html {
        let mut people: Vec<PrincipalId> = vec![details.activation.request().principal_id];
        people.extend(details.activation.approvals().iter().map(|d| d.approver_id));
        let names = ctx.service.display_names(&people).await;
        return Ok(pages::approval(ctx, &who, &details.activation, can_decide.err(), &names, now));
    }
    let mut view = serde_json::to_value(ActivationView::of(&details.activation, Some(details.history)))
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e))?;
    if let Some(map) = view.as_object_mut() {
        map.insert("canDecide".into(), serde_json::Value::Bool(can_decide.is_ok()));
    }
    let mut response = json(StatusCode::OK, &view)?;
    csrf::offer(ctx, req, &who, csrf::Subject::Approval(&id.to_string()), &mut response);
    Ok(response)
}

/// `POST /api/approvals/{id}`: a decision, as JSON or as a form post from the page (answered
/// with a redirect back to the page). A browser session needs the page's CSRF token either way.
#[tracing::instrument(skip_all)]
pub async fn decide(ctx: &HttpContext, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let form = req.is_form();
    let answer = |e: ApiError| if form { Ok(pages::refusal(&e)) } else { Err(e) };
    let id = activation_id(raw_id)?;
    let who = match csrf::caller_for_change(ctx, req, csrf::Subject::Approval(&id.to_string())).await {
        Ok(who) => who,
        Err(e) if e.status == StatusCode::FORBIDDEN => return answer(e),
        Err(e) => return Err(e),
    };
    let dto: DecisionDto = if form {
        serde_urlencoded::from_bytes(&req.body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestBody", format!("invalid form: {e}")))?
    } else {
        dto::parse_json(&req.body)?
    };
    let input = dto.into_input()?;
    let result = ctx.service.decide(&who, id, input, ctx.clock.now()).await;
    if form {
        return Ok(match result {
            Ok(_) => pages::see_other(&format!("/api/approvals/{id}")),
            Err(e) => pages::refusal(&ApiError::from(e)),
        });
    }
    json(StatusCode::OK, &ActivationView::of(&result?, None))
}

/// Query parameters of `GET /api/alerts`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    status: Option<String>,
}

/// `GET /api/alerts?status=Open|All`: governance alerts (auditors, admins).
#[tracing::instrument(skip_all)]
pub async fn alerts(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    let q: AlertsQuery = dto::parse_query(&req.query)?;
    let include_resolved = match q.status.as_deref() {
        None | Some("Open") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "status",
                format!("`{}` is not `Open` or `All`", crate::domain::ids::shorten(other)),
            ));
        }
    };
    let alerts = ctx.service.alerts(&who, include_resolved).await?;
    json(StatusCode::OK, &List { value: alerts.iter().map(dto::AlertView::from).collect() })
}

#[tracing::instrument(skip_all)]
pub async fn audit(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = caller(ctx, req).await?;
    let q: dto::AuditQueryDto = dto::parse_query(&req.query)?;
    let page = q.page()?;
    let top = page.top;
    let events = ctx.service.audit(&who, q.filter()?, page).await?;
    let next_link = q.next_link(&ctx.public_url, top, events.next.as_ref());
    json(StatusCode::OK, &Paged { value: events.items, next_link })
}

/// Dev mode only: the issuer's discovery document and keys, and the page sign-in.
pub async fn dev(ctx: &HttpContext, req: &Request, parts: &[&str]) -> Result<Response, ApiError> {
    let Some(issuer) = ctx.dev.as_ref() else {
        return Err(ApiError::not_found_route(req.method.as_str(), &req.path));
    };
    match (req.method.as_str(), parts) {
        ("GET", ["dev", ".well-known", "openid-configuration"]) => json(
            StatusCode::OK,
            &serde_json::json!({
                "issuer": issuer.issuer(),
                "jwks_uri": format!("{}/dev/keys", ctx.public_url),
                "id_token_signing_alg_values_supported": ["RS256"],
            }),
        ),
        ("GET", ["dev", "keys"]) => json(StatusCode::OK, &issuer.key_set()),
        ("POST", ["dev", "sign-in"]) => super::portal::sign_in::dev_sign_in(ctx, req).await,
        _ => Err(ApiError::not_found_route(req.method.as_str(), &req.path)),
    }
}
