//! Cross-site request forgery. A browser sends Elevate's session credentials — the dev sign-in
//! cookie, or, in Azure, the App Service session cookie that Easy Auth turns into
//! `X-MS-CLIENT-PRINCIPAL` — with any request any page makes, whatever the page's site. So:
//!
//! 1. A state change whose `Origin` is not Elevate's own, or whose `Sec-Fetch-Site` says another
//!    site started it, is refused (`check_origin`), whoever the caller is.
//! 2. A state change authenticated by a browser session — anything but a bearer token in the
//!    `Authorization` header, which no other site can make a browser send — needs a token
//!    (form field `csrf` or header `X-CSRF-Token`) bound to the signed-in principal, to what is
//!    being changed (`subject`) and to when it was issued (good for `LIFETIME`), whatever the
//!    body's `Content-Type` (`caller_for_change`).
//! 3. Bodies are taken only in the media types a route declares (`require_media_type`): a
//!    `text/plain` or multipart body that happens to parse as JSON is a 415, never a change.
//!
//! Bearer callers (Teams, Logic Apps, scripts) are unaffected. Must never accept a session change
//! without its token, and never compare tokens other than in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use warp::http::Method;

use crate::domain::ids::PrincipalId;
use crate::service::ports::Caller;

use super::error::ApiError;
use super::{HttpContext, Request, caller};

/// How long a token is good for: a page left open longer must be reloaded, and a token copied out
/// of a screenshot or a proxy log is worthless after this.
pub const LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(12);
/// How far ahead of our clock an issue time may lie (another instance's clock).
const SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The header a script sends the token in.
pub const HEADER: &str = "x-csrf-token";
/// The form field a page's form sends the token in.
pub const FIELD: &str = "csrf";

/// What a change acts on: a token for one subject is worthless for another.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A new activation request.
    NewActivation,
    /// Deactivating, cancelling or extending this activation.
    Activation(&'a str),
    /// Deciding on this activation.
    Approval(&'a str),
    /// Confirming the brokered request with this nonce.
    Confirmation(&'a str),
    /// Deciding on items of this access review campaign.
    Review(&'a str),
    /// Lifting a suspension an access review made.
    Lift,
}

impl Subject<'_> {
    fn label(self) -> String {
        match self {
            Subject::NewActivation => "activations".to_owned(),
            Subject::Activation(id) => format!("activation:{id}"),
            Subject::Approval(id) => format!("approval:{id}"),
            Subject::Confirmation(nonce) => format!("confirmation:{nonce}"),
            Subject::Review(campaign) => format!("review:{campaign}"),
            Subject::Lift => "suspensions:lift".to_owned(),
        }
    }
}

fn mac(ctx: &HttpContext, who: &PrincipalId, subject: Subject<'_>, issued: i64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&ctx.csrf_key).ok()?;
    mac.update(format!("form|{who}|{}|{issued}", subject.label()).as_bytes());
    Some(mac)
}

/// The token for `who` acting on `subject`, issued now: `{unix seconds}.{64 hex characters}`.
pub fn token(ctx: &HttpContext, who: &PrincipalId, subject: Subject<'_>) -> String {
    let issued = ctx.clock.now().timestamp();
    let hex: String = mac(ctx, who, subject, issued)
        .map(|m| m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default();
    format!("{issued}.{hex}")
}

/// Constant-time check of a presented token, and of its age.
pub fn valid(ctx: &HttpContext, who: &PrincipalId, subject: Subject<'_>, presented: Option<&str>) -> bool {
    let Some((issued, hex)) = presented.and_then(|t| t.split_once('.')).filter(|(_, h)| h.len() == 64) else {
        return false;
    };
    let Some(issued) = issued.parse::<i64>().ok().filter(|_| issued.len() <= 12) else {
        return false;
    };
    let now = ctx.clock.now().timestamp();
    if issued > now + SKEW.num_seconds() || now - issued > LIFETIME.num_seconds() {
        return false;
    }
    let bytes: Option<Vec<u8>> =
        (0..32).map(|i| hex.get(i * 2..i * 2 + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    match (bytes, mac(ctx, who, subject, issued)) {
        (Some(bytes), Some(mac)) => mac.verify_slice(&bytes).is_ok(),
        _ => false,
    }
}

/// The token a request carries: `X-CSRF-Token`, or the `csrf` field of a form body.
fn presented(req: &Request) -> Option<String> {
    if let Some(header) = req.header(HEADER) {
        return Some(header.trim().to_owned());
    }
    if !req.is_form() {
        return None;
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&req.body).ok()?;
    fields.into_iter().find_map(|(name, value)| (name == FIELD).then_some(value))
}

/// Authenticates the caller of a state change: a session needs the token for `subject`.
pub async fn caller_for_change(ctx: &HttpContext, req: &Request, subject: Subject<'_>) -> Result<Caller, ApiError> {
    let who = caller(ctx, req).await?;
    if req.is_session() && !valid(ctx, &who.principal_id, subject, presented(req).as_deref()) {
        tracing::warn!(caller = %who.principal_id, subject = ?subject, "session change without a valid CSRF token refused");
        return Err(ApiError::csrf_invalid());
    }
    Ok(who)
}

/// Gives a browser session the token for `subject` in an `X-CSRF-Token` response header, on a
/// read that leads to that change: a same-origin script can read it; another site cannot (no
/// CORS), and a bearer caller does not need it.
pub fn offer(ctx: &HttpContext, req: &Request, who: &Caller, subject: Subject<'_>, response: &mut super::Response) {
    if req.is_session()
        && let Ok(value) = warp::http::HeaderValue::from_str(&token(ctx, &who.principal_id, subject))
    {
        response.headers_mut().insert(HEADER, value);
    }
}

/// Methods that change nothing.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a state change another site started. Requests without `Origin` and
/// `Sec-Fetch-Site` (scripts, the Functions host, Logic Apps) pass: they carry no browser session
/// unless they send one themselves.
pub fn check_origin(ctx: &HttpContext, req: &Request) -> Result<(), ApiError> {
    // A provenance header that is present but not readable text is not "absent": refused.
    for name in ["origin", "sec-fetch-site"] {
        if req.headers.get(name).is_some_and(|v| v.to_str().is_err()) {
            return Err(ApiError::cross_origin("an unreadable header"));
        }
    }
    if let Some(site) = req.header("sec-fetch-site")
        && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return Err(ApiError::cross_origin(req.header("origin").unwrap_or(site)));
    }
    match req.header("origin") {
        None => Ok(()),
        Some(origin) if ctx.own_origins.iter().any(|own| own.eq_ignore_ascii_case(origin.trim())) => Ok(()),
        // Includes `null` (sandboxed frames, data: URLs, some redirects).
        Some(origin) => Err(ApiError::cross_origin(origin)),
    }
}

/// The origins Elevate's own pages have: that of `ELEVATE_PUBLIC_URL`, and for a loopback one
/// (a laptop) the same port under each loopback name a browser may have been pointed at.
pub fn own_origins(public_url: &str) -> Vec<String> {
    let Ok(url) = crate::endpoint::parse(public_url) else {
        return Vec::new();
    };
    let mut origins = vec![crate::endpoint::origin(&url)];
    if crate::endpoint::is_loopback(&url) {
        let port = url.port_or_known_default().map(|p| format!(":{p}")).unwrap_or_default();
        for host in ["127.0.0.1", "localhost", "[::1]"] {
            let candidate = format!("{}://{host}{port}", url.scheme());
            if let Ok(parsed) = url::Url::parse(&candidate) {
                let origin = crate::endpoint::origin(&parsed);
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
        }
    }
    origins
}

/// What a route takes as a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    Json,
    Form,
}

/// Refuses a body in any other media type than `accepted` (415). An empty body passes: there is
/// nothing to misread.
pub fn require_media_type(req: &Request, accepted: &[Media]) -> Result<(), ApiError> {
    if req.body.is_empty() {
        return Ok(());
    }
    let essence = req.media_type();
    let ok = accepted.iter().any(|m| match m {
        Media::Json => essence == "application/json",
        Media::Form => essence == "application/x-www-form-urlencoded",
    });
    if ok {
        return Ok(());
    }
    let names: Vec<&str> = accepted
        .iter()
        .map(|m| match m {
            Media::Json => "`application/json`",
            Media::Form => "`application/x-www-form-urlencoded`",
        })
        .collect();
    Err(ApiError::unsupported_media_type(&names.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origins_cover_the_public_url_and_loopback_aliases() {
        assert_eq!(own_origins("https://elevate.contoso.com/"), vec!["https://elevate.contoso.com"]);
        assert_eq!(
            own_origins("http://127.0.0.1:7071"),
            vec!["http://127.0.0.1:7071", "http://localhost:7071", "http://[::1]:7071"]
        );
        assert_eq!(own_origins("http://localhost"), vec!["http://localhost", "http://127.0.0.1", "http://[::1]"]);
    }
}
