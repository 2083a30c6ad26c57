//! Confirmation links. A broker (a Teams workflow, a Logic App) may request access for a user,
//! but it cannot carry the user's MFA or authentication context. For a rule that needs them, the
//! request waits in a signed link (`/api/confirmations/{token}`, 15 minutes) that the broker
//! hands to the user. The user opens it, signs in meeting the rule, and confirms; only then is
//! an activation opened, as the user's own request.
//!
//! The link is not a bearer token: it only describes the request. Its signature stops anyone
//! changing what is asked; who may confirm is decided by the caller's own sign-in (the named
//! user, and nobody else). Must never accept a link after it expires or with a bad signature.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;
use warp::http::StatusCode;

use crate::domain::ids::PrincipalId;
use crate::service::ports::{Caller, IdempotencyKey};

use super::dto::{ActivationRequestDto, ActivationView};
use super::error::ApiError;
use super::pages::{self, esc};
use super::{HttpContext, Request, Response, caller, html, json};

/// How long a request waits for its user.
pub const LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// The link must fit a URL every front end and chat client passes (about 4 KB): a typical
/// request makes a token of under 1 KB; one this large is refused when the link would be made.
const MAX_TOKEN_BYTES: usize = 3_500;

/// What a link says.
#[derive(Serialize, Deserialize)]
struct Link {
    nonce: Uuid,
    /// The broker's client id.
    broker: String,
    /// Unix seconds.
    expires: i64,
    request: ActivationRequestDto,
}

fn mac(ctx: &HttpContext) -> Result<Hmac<Sha256>, ApiError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&ctx.csrf_key)
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e))?;
    mac.update(b"confirmation-link|");
    Ok(mac)
}

fn invalid_link() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "InvalidConfirmationLink",
        "this confirmation link is not valid: use the link exactly as you received it",
    )
}

/// Signs a waiting request: `{payload}.{signature}`, both base64url.
pub fn issue(
    ctx: &HttpContext,
    request: ActivationRequestDto,
    broker: &str,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), ApiError> {
    let expires = now + LIFETIME;
    let link = Link { nonce: Uuid::new_v4(), broker: broker.to_owned(), expires: expires.timestamp(), request };
    let payload = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&link)
            .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e))?,
    );
    let mut mac = mac(ctx)?;
    mac.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let token = format!("{payload}.{signature}");
    if token.len() > MAX_TOKEN_BYTES {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "RequestTooLargeForConfirmation",
            "this request is too large to wait in a confirmation link: shorten the justification",
        );
        e.target = Some("justification".into());
        return Err(e);
    }
    Ok((token, expires))
}

fn open(ctx: &HttpContext, token: &str, now: DateTime<Utc>) -> Result<Link, ApiError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid_link());
    }
    let (payload, signature) = token.split_once('.').ok_or_else(invalid_link)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid_link())?;
    let mut mac = mac(ctx)?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature).map_err(|_| invalid_link())?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid_link())?;
    let link: Link = serde_json::from_slice(&bytes).map_err(|_| invalid_link())?;
    if now.timestamp() >= link.expires {
        return Err(ApiError::new(
            StatusCode::GONE,
            "ConfirmationLinkExpired",
            "this request waited too long for confirmation; ask for the access again",
        ));
    }
    Ok(link)
}

/// The user the link's request is for.
fn intended(link: &Link) -> Result<PrincipalId, ApiError> {
    link.request.principal_id.as_deref().and_then(|p| PrincipalId::parse(p).ok()).ok_or_else(invalid_link)
}

fn ensure_intended(who: &Caller, link: &Link) -> Result<(), ApiError> {
    if intended(link)? == who.principal_id && !who.app_only {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "NotTheRequester",
            "this request is for someone else: only the person it names can confirm it",
        ))
    }
}

/// `GET /api/confirmations/{token}`: what is asked, and a form to confirm it (or JSON).
#[tracing::instrument(skip_all)]
pub async fn page(ctx: &HttpContext, req: &Request, token: &str) -> Result<Response, ApiError> {
    let wants_html = req.wants_html();
    let now = ctx.clock.now();
    let link = match open(ctx, token, now) {
        Ok(link) => link,
        Err(e) if wants_html => return Ok(pages::refusal(&e)),
        Err(e) => return Err(e),
    };
    let who = match caller(ctx, req).await {
        Ok(who) => who,
        Err(e) if wants_html && e.status == StatusCode::UNAUTHORIZED => {
            return Ok(pages::sign_in_required(ctx, &req.path, &e));
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = ensure_intended(&who, &link) {
        return if wants_html { Ok(pages::refusal(&e)) } else { Err(e) };
    }
    let expires = DateTime::from_timestamp(link.expires, 0).unwrap_or(now);
    if !wants_html {
        return json(
            StatusCode::OK,
            &serde_json::json!({"status": "ConfirmationRequired", "broker": link.broker, "expiresAt": expires, "request": link.request}),
        );
    }
    let r = &link.request;
    let mut facts = vec![
        ("Asked by", format!("application {}", esc(&link.broker))),
        ("Role", esc(&r.role_definition_id)),
        ("Scope", esc(&r.scope)),
        ("Duration", esc(r.duration.as_deref().unwrap_or("the rule's maximum"))),
        ("Justification", esc(r.justification.as_deref().unwrap_or("—"))),
    ];
    if let Some(t) = &r.ticket {
        facts.push(("Ticket", format!("{} {}", esc(&t.system), esc(&t.number))));
    }
    facts.push(("Waits until", esc(&expires.format("%Y-%m-%d %H:%M UTC").to_string())));
    let list: String = facts.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
    let csrf = pages::csrf_for(ctx, &who.principal_id, &link.nonce.to_string());
    let body = format!(
        "<h1>Confirm your access request</h1><p class=\"note\">This was requested for you. Nothing is granted until you confirm; \
confirming may ask you to sign in again with multi-factor authentication.</p><dl>{list}</dl>\
<form method=\"post\" action=\"/api/confirmations/{token}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\" class=\"approve\">Confirm and request</button></form>",
        token = esc(token),
    );
    Ok(html(StatusCode::OK, pages::page("Confirm access request", &body)))
}

#[derive(Deserialize)]
struct ConfirmForm {
    csrf: Option<String>,
}

/// `POST /api/confirmations/{token}`: the user, signed in, confirms (a form from the page, with
/// its CSRF token, or an empty JSON post). Confirming twice answers with the same activation.
#[tracing::instrument(skip_all)]
pub async fn confirm(ctx: &HttpContext, req: &Request, token: &str) -> Result<Response, ApiError> {
    let form = req.is_form();
    let now = ctx.clock.now();
    let answer = |e: ApiError| if form { Ok(pages::refusal(&e)) } else { Err(e) };
    let link = match open(ctx, token, now) {
        Ok(link) => link,
        Err(e) => return answer(e),
    };
    let who = caller(ctx, req).await?;
    if let Err(e) = ensure_intended(&who, &link) {
        return answer(e);
    }
    if form {
        let posted: ConfirmForm = serde_urlencoded::from_bytes(&req.body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestBody", format!("invalid form: {e}")))?;
        if !pages::csrf_for_valid(ctx, &who.principal_id, &link.nonce.to_string(), posted.csrf.as_deref()) {
            return answer(ApiError::new(
                StatusCode::FORBIDDEN,
                "CsrfTokenInvalid",
                "the form is missing its security token or it does not match; reload the page and try again",
            ));
        }
    }
    let key = IdempotencyKey::parse(&format!("confirm-{}", link.nonce))
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e))?;
    let input = match link.request.into_input() {
        Ok(input) => input,
        Err(e) => return answer(e),
    };
    let outcome = match ctx.service.confirm_brokered_request(&who, input, &link.broker, key, now).await {
        Ok(outcome) => outcome,
        Err(e) => return answer(ApiError::from(e)),
    };
    let view = ActivationView::of(&outcome.activation, None);
    if form {
        let body = format!(
            "<h1>Requested</h1><p class=\"note\" role=\"status\">Your request is <strong>{}</strong>.</p><p>Activation <code>{}</code>.</p>",
            esc(outcome.activation.status().as_str()),
            esc(&outcome.activation.id().to_string())
        );
        return Ok(html(StatusCode::OK, pages::page("Requested", &body)));
    }
    json(if outcome.replayed { StatusCode::OK } else { StatusCode::CREATED }, &view)
}
