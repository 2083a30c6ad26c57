//! The confirmation-link routes (`/api/confirmations/{token}`): the page a user opens from the
//! link a broker handed them, and the confirmation itself. The workflow — signing, lifetime, who
//! may confirm, idempotency — is the service's (`service::confirm`); this module only renders and
//! maps. A confirmation by a browser session needs the page's CSRF token, bound to the link.

use warp::http::{HeaderValue, StatusCode, header};

use crate::service::{ConfirmationLink, PendingConfirmation};

use super::csrf::{self, Subject};
use super::dto::{ActivationRequestDto, ActivationView};
use super::error::ApiError;
use super::pages::{self, esc};
use super::{HttpContext, Request, Response, caller, html, json};

/// 202 with the link the broker hands to the user.
pub fn awaiting_user(ctx: &HttpContext, link: &ConfirmationLink) -> Result<Response, ApiError> {
    let url = format!("{}/api/confirmations/{}", ctx.public_url, link.token);
    let mut response = json(
        StatusCode::ACCEPTED,
        &serde_json::json!({
            "status": "ConfirmationRequired",
            "principalId": link.principal_id.to_string(),
            "confirmationUrl": url,
            "expiresAt": link.expires_at,
            "message": "the rule needs the user's own multi-factor proof: send them this link; nothing is granted until they open it, sign in and confirm",
        }),
    )?;
    if let Ok(value) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /api/confirmations/{token}`: what is asked, and a form to confirm it (or JSON).
#[tracing::instrument(skip_all)]
pub async fn page(ctx: &HttpContext, req: &Request, token: &str) -> Result<Response, ApiError> {
    let wants_html = req.wants_html();
    let answer = |e: ApiError| if wants_html { Ok(pages::refusal(&e)) } else { Err(e) };
    let now = ctx.clock.now();
    // A broken or expired link is said so before anyone is asked to sign in.
    if let Err(e) = ctx.service.open_link(token, now) {
        return answer(e.into());
    }
    let who = match caller(ctx, req).await {
        Ok(who) => who,
        Err(e) if wants_html && e.status == StatusCode::UNAUTHORIZED => {
            return Ok(pages::sign_in_required(ctx, &req.path, &e));
        }
        Err(e) => return Err(e),
    };
    let pending = match ctx.service.confirmation_for(&who, token, now) {
        Ok(pending) => pending,
        Err(e) => return answer(e.into()),
    };
    let request = ActivationRequestDto::from(&pending.request);
    if !wants_html {
        return json(
            StatusCode::OK,
            &serde_json::json!({"status": "ConfirmationRequired", "broker": pending.broker, "expiresAt": pending.expires_at, "request": request}),
        );
    }
    Ok(html(StatusCode::OK, pages::page("Confirm access request", &form(ctx, &who.principal_id, &pending, token))))
}

fn form(
    ctx: &HttpContext,
    who: &crate::domain::ids::PrincipalId,
    pending: &PendingConfirmation,
    token: &str,
) -> String {
    let r = &pending.request;
    let role = match r.role_definition_id.built_in_name() {
        Some(name) => format!("{} <small>({})</small>", esc(name), r.role_definition_id),
        None => r.role_definition_id.to_string(),
    };
    let mut facts = vec![
        ("Asked by", format!("application {}", esc(&pending.broker))),
        ("Role", role),
        ("Scope", esc(r.scope.as_str())),
        ("Duration", r.duration.map_or_else(|| "the rule's maximum".to_owned(), |d| esc(&d.to_string()))),
        ("Justification", r.justification.as_ref().map_or_else(|| "—".to_owned(), |j| esc(j.as_str()))),
    ];
    if let Some(t) = &r.ticket {
        facts.push(("Ticket", format!("{} {}", esc(t.system.as_str()), esc(t.number.as_str()))));
    }
    facts.push(("Waits until", esc(&pending.expires_at.format("%Y-%m-%d %H:%M UTC").to_string())));
    let list: String = facts.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
    let csrf = csrf::token(ctx, who, Subject::Confirmation(&pending.nonce.to_string()));
    format!(
        "<h1>Confirm your access request</h1><p class=\"note\">This was requested for you. Nothing is granted until you confirm; \
confirming may ask you to sign in again with multi-factor authentication.</p><dl>{list}</dl>\
<form method=\"post\" action=\"/api/confirmations/{token}\"><input type=\"hidden\" name=\"{field}\" value=\"{csrf}\">\
<button type=\"submit\" class=\"approve\">Confirm and request</button></form>",
        token = esc(token),
        field = csrf::FIELD,
    )
}

/// `POST /api/confirmations/{token}`: the user, signed in, confirms — a form from the page, or an
/// empty JSON post (a session needs the page's token either way). Confirming twice answers with
/// the same activation.
#[tracing::instrument(skip_all)]
pub async fn confirm(ctx: &HttpContext, req: &Request, token: &str) -> Result<Response, ApiError> {
    let form = req.is_form();
    let answer = |e: ApiError| if form { Ok(pages::refusal(&e)) } else { Err(e) };
    let now = ctx.clock.now();
    let nonce = match ctx.service.open_link(token, now) {
        Ok(pending) => pending.nonce.to_string(),
        Err(e) => return answer(e.into()),
    };
    let who = match csrf::caller_for_change(ctx, req, Subject::Confirmation(&nonce)).await {
        Ok(who) => who,
        Err(e) if e.status == StatusCode::FORBIDDEN => return answer(e),
        Err(e) => return Err(e),
    };
    let outcome = match ctx.service.confirm_link(&who, token, now).await {
        Ok(outcome) => outcome,
        Err(e) => return answer(e.into()),
    };
    if form {
        let body = format!(
            "<h1>Requested</h1><p class=\"note\" role=\"status\">Your request is <strong>{}</strong>.</p><p>Activation <code>{}</code>.</p>",
            esc(outcome.activation.status().as_str()),
            esc(&outcome.activation.id().to_string())
        );
        return Ok(html(StatusCode::OK, pages::page("Requested", &body)));
    }
    let view = ActivationView::of(&outcome.activation, None);
    json(if outcome.replayed { StatusCode::OK } else { StatusCode::CREATED }, &view)
}
