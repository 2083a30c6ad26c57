//! The warp edge. One filter captures the raw request (method, path, query, headers, body read
//! up to a limit, also when chunked, as the Functions host sends it) and `route` dispatches it, so
//! that every answer, 404, 405 and 413 included, is ours and shaped as the API promises.
//!
//! Must never contain business rules: handlers extract the caller, convert the DTO, call one
//! service function and map the result.

mod confirm;
pub mod csrf;
pub mod dto;
pub mod error;
mod handlers;
pub mod invoke;
pub mod openapi;
pub mod pages;
mod portal;
mod reviews;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::clock::Clock;
use crate::service::Elevate;
use crate::service::ports::{Authenticator, Caller, Credentials, DevIssuerKeys};

use csrf::Media;
use error::ApiError;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The dev sign-in cookie (dev mode only).
pub const DEV_COOKIE: &str = "elevate_dev_token";

pub type Response = warp::http::Response<Vec<u8>>;

/// Everything a handler may use.
pub struct HttpContext {
    pub service: Arc<Elevate>,
    pub auth: Arc<dyn Authenticator>,
    pub clock: Arc<dyn Clock>,
    /// Present only in `dev` mode.
    pub dev: Option<Arc<dyn DevIssuerKeys>>,
    /// Keys the CSRF tokens of the pages' forms.
    pub csrf_key: [u8; 32],
    pub public_url: String,
    /// The `Origin`s of Elevate's own pages (`csrf::own_origins`): any other is refused a change.
    pub own_origins: Vec<String>,
    pub auth_mode: &'static str,
    /// Serving under the Functions host (`serve --functions-host`): only then are the timer and
    /// queue functions routed. Standalone, the process runs its own sweeper and `/expiry-sweeper`
    /// does not exist, so nobody outside can run a sweep or read its report.
    pub functions_host: bool,
}

/// A request as the router sees it.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the client prefers HTML (a browser) over JSON.
    pub fn wants_html(&self) -> bool {
        let accept = self.header("accept").unwrap_or("");
        accept.contains("text/html") && !accept.contains("application/json")
    }

    /// The body's media type, lower case, without parameters (`application/json`).
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    pub fn is_form(&self) -> bool {
        self.media_type() == "application/x-www-form-urlencoded"
    }

    /// The bearer token of the `Authorization` header, if that is what it carries.
    fn bearer_header(&self) -> Option<String> {
        self.header("authorization").and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
        })
    }

    /// Whether the caller can only be authenticated by what a browser attaches by itself (a
    /// cookie, or Easy Auth's header made from one): anything but a bearer token in the
    /// `Authorization` header. Such requests may have been started by another site (see `csrf`).
    pub fn is_session(&self) -> bool {
        self.bearer_header().is_none()
    }

    /// Bearer token from `Authorization` (in dev mode, when no `Authorization` header is sent, the
    /// sign-in cookie), and Easy Auth's `X-MS-CLIENT-PRINCIPAL`.
    fn credentials(&self, dev: bool) -> Credentials {
        let cookie = || {
            self.headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    let (name, value) = c.trim().split_once('=')?;
                    (name == DEV_COOKIE && !value.is_empty()).then(|| value.to_owned())
                })
        };
        let sent_authorization = self.headers.contains_key(header::AUTHORIZATION);
        Credentials {
            bearer: self.bearer_header().or_else(|| if dev && !sent_authorization { cookie() } else { None }),
            // Trusted only by the Easy Auth authenticator, and only when the platform says
            // authentication is on.
            client_principal: self.header("x-ms-client-principal").map(str::to_owned),
        }
    }
}

/// The single warp filter serving every route.
pub fn filter(ctx: Arc<HttpContext>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body| {
            let ctx = Arc::clone(&ctx);
            async move {
                let path = path.as_str().to_owned();
                let read = match single_valued(&headers) {
                    Ok(()) => read_body(&headers, body).await,
                    Err(e) => Err(e),
                };
                let response = match read {
                    Ok(body) => {
                        route(&ctx, Request { method: method.clone(), path: path.clone(), query, headers, body }).await
                    }
                    Err(e) => Err(e),
                };
                let response = response.unwrap_or_else(|e| error_response(&e));
                tracing::info!(method = %method, path = %loggable(&path), status = response.status().as_u16(), "request");
                response
            }
        })
        .recover(|_rejection: warp::Rejection| async {
            Ok::<_, Infallible>(error_response(&ApiError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the request could not be read",
            )))
        })
        .unify()
}

/// Headers Elevate reads one value of, to authenticate a caller or judge where a change came
/// from. Sent twice, one check could read one value while a proxy or the platform acted on the
/// other (an `Origin` of ours first, another site's second): refused outright.
const SINGLE_VALUED: [&str; 6] =
    ["authorization", "content-type", "origin", "sec-fetch-site", csrf::HEADER, "x-ms-client-principal"];

fn single_valued(headers: &HeaderMap) -> Result<(), ApiError> {
    match SINGLE_VALUED.iter().find(|name| headers.get_all(**name).iter().nth(1).is_some()) {
        Some(name) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DuplicateHeader",
            format!("the `{name}` header may be sent only once"),
        )),
        None => Ok(()),
    }
}

async fn read_body<S, B>(headers: &HeaderMap, stream: S) -> Result<Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: warp::Buf,
{
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLarge", format!("the body exceeds {BODY_LIMIT} bytes"))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let mut stream = stream;
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", "the body could not be read"))?;
        if buf.len() + chunk.remaining() > BODY_LIMIT {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// Routes by method and path. Literal segments match case-insensitively (as the Functions
/// host's routes do); one trailing slash is ignored.
async fn route(ctx: &HttpContext, req: Request) -> Result<Response, ApiError> {
    let path = req.path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(&req.path).to_owned();
    let segments: Vec<String> = path.split('/').skip(1).map(str::to_owned).collect();
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let parts: Vec<&str> = lower.iter().map(String::as_str).collect();
    let raw = |i: usize| segments.get(i).map(String::as_str).unwrap_or_default();
    let m = &req.method;
    let allow = |methods: &'static str| Err(method_not_allowed(methods));
    if !csrf::is_safe(m) {
        csrf::check_origin(ctx, &req)?;
    }
    let takes = |accepted: &[Media]| csrf::require_media_type(&req, accepted);
    match parts.as_slice() {
        [""] | ["api"] => match *m {
            Method::GET | Method::HEAD => handlers::readiness(ctx, &req),
            _ => allow("GET"),
        },
        ["api", "me"] => match *m {
            Method::GET => handlers::me(ctx, &req).await,
            _ => allow("GET"),
        },
        ["api", "portal", rest @ ..] => {
            if !csrf::is_safe(m) {
                takes(&[Media::Form])?;
            }
            portal::route(ctx, &req, rest, segments.get(2..).unwrap_or_default()).await
        }
        ["api", "health"] => match *m {
            Method::GET => handlers::health(ctx).await,
            _ => allow("GET"),
        },
        ["api", "openapi.json"] => match *m {
            Method::GET => Ok(json_raw(StatusCode::OK, openapi::DOCUMENT.as_bytes().to_vec())),
            _ => allow("GET"),
        },
        ["api", "eligibilities"] => match *m {
            Method::GET => handlers::eligibilities(ctx, &req).await,
            _ => allow("GET"),
        },
        ["api", "activations"] => match *m {
            Method::GET => handlers::list_activations(ctx, &req).await,
            Method::POST => {
                takes(&[Media::Json])?;
                handlers::request_activation(ctx, &req).await
            }
            _ => allow("GET, POST"),
        },
        ["api", "activations", _] => match *m {
            Method::GET => handlers::get_activation(ctx, &req, raw(2)).await,
            _ => allow("GET"),
        },
        ["api", "activations", _, action @ ("deactivate" | "cancel" | "extend")] => match *m {
            Method::POST => {
                takes(&[Media::Json])?;
                handlers::act(ctx, &req, raw(2), action).await
            }
            _ => allow("POST"),
        },
        ["api", "approvals"] => match *m {
            Method::GET => handlers::pending_approvals(ctx, &req).await,
            _ => allow("GET"),
        },
        ["api", "approvals", _] => match *m {
            Method::GET => handlers::approval_page(ctx, &req, raw(2)).await,
            Method::POST => {
                takes(&[Media::Json, Media::Form])?;
                handlers::decide(ctx, &req, raw(2)).await
            }
            _ => allow("GET, POST"),
        },
        ["api", "confirmations", _] => match *m {
            Method::GET => confirm::page(ctx, &req, raw(2)).await,
            Method::POST => {
                takes(&[Media::Json, Media::Form])?;
                confirm::confirm(ctx, &req, raw(2)).await
            }
            _ => allow("GET, POST"),
        },
        ["api", "alerts"] => match *m {
            Method::GET => handlers::alerts(ctx, &req).await,
            _ => allow("GET"),
        },
        ["api", "reviews"] => match *m {
            Method::GET => reviews::list(ctx, &req).await,
            _ => allow("GET"),
        },
        ["api", "reviews", _] => match *m {
            Method::GET => reviews::get(ctx, &req, raw(2)).await,
            _ => allow("GET"),
        },
        ["api", "reviews", _, "results.csv"] => match *m {
            Method::GET => reviews::results(ctx, &req, raw(2)).await,
            _ => allow("GET"),
        },
        ["api", "reviews", _, "log"] => match *m {
            Method::GET => reviews::log(ctx, &req, raw(2)).await,
            _ => allow("GET"),
        },
        ["api", "reviews", _, "policy-patch"] => match *m {
            Method::GET => reviews::patch(ctx, &req, raw(2)).await,
            _ => allow("GET"),
        },
        ["api", "suspensions"] => match *m {
            Method::GET => reviews::suspensions(ctx, &req).await,
            _ => allow("GET"),
        },
        ["api", "suspensions", "lift"] => match *m {
            Method::POST => {
                takes(&[Media::Json])?;
                reviews::lift(ctx, &req).await
            }
            _ => allow("POST"),
        },
        ["api", "reviews", _, "items", _] => match *m {
            Method::POST => {
                takes(&[Media::Json])?;
                reviews::decide(ctx, &req, raw(2), raw(4)).await
            }
            _ => allow("POST"),
        },
        ["governance"] if ctx.functions_host => match *m {
            Method::POST => invoke::governance(ctx, &req).await,
            _ => allow("POST"),
        },
        ["digest"] if ctx.functions_host => match *m {
            Method::POST => invoke::digest(ctx, &req).await,
            _ => allow("POST"),
        },
        ["api", "audit"] => match *m {
            Method::GET => handlers::audit(ctx, &req).await,
            _ => allow("GET"),
        },
        ["expiry-sweeper"] if ctx.functions_host => match *m {
            Method::POST => invoke::expiry_sweeper(ctx, &req).await,
            _ => allow("POST"),
        },
        ["expiry"] if ctx.functions_host => match *m {
            Method::POST => invoke::expiry(ctx, &req).await,
            _ => allow("POST"),
        },
        ["deliver"] if ctx.functions_host => match *m {
            Method::POST => invoke::deliver(ctx, &req).await,
            _ => allow("POST"),
        },
        ["dev", ..] if ctx.dev.is_some() => {
            if *m == Method::POST {
                takes(&[Media::Form])?;
            }
            handlers::dev(ctx, &req, &parts).await
        }
        _ => Err(ApiError::not_found_route(req.method.as_str(), &req.path)),
    }
}

/// The path as it may be logged: a confirmation link carries the request it describes
/// (justification included), so only its first characters are kept. The match is the router's
/// (case-insensitive literals), and percent-escapes are read, so no spelling of the route logs
/// the link whole.
fn loggable(path: &str) -> String {
    let mut segments = path.split('/').skip(1);
    let mut decoded = || segments.next().map(|s| percent_decoded(s).to_ascii_lowercase());
    if decoded().as_deref() == Some("api") && decoded().as_deref() == Some("confirmations") {
        let prefix_len = path.splitn(4, '/').take(3).map(str::len).sum::<usize>() + 3;
        let link = path.get(prefix_len..).unwrap_or_default();
        return format!("/api/confirmations/{}…", link.chars().take(8).collect::<String>());
    }
    path.to_owned()
}

fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn method_not_allowed(allowed: &'static str) -> ApiError {
    let mut e = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("use {allowed}"));
    e.target = Some(allowed.to_owned());
    e
}

/// Headers every response carries.
fn harden(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: under it browsers send `Origin: null` with our own forms' posts, and the
    // origin check (`csrf`) needs the real one. Nothing crosses to another origin either way.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
}

pub fn json_raw(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = warp::http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    harden(&mut response);
    response
}

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e))?;
    Ok(json_raw(status, body))
}

pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = warp::http::Response::new(body.into_bytes());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(csp) = HeaderValue::from_str(&pages::content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    harden(&mut response);
    response
}

/// A file to save (an export), never rendered by the browser as a page.
pub fn download(content_type: &'static str, filename: &str, body: Vec<u8>) -> Response {
    let mut response = warp::http::Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    harden(&mut response);
    response
}

pub fn error_response(e: &ApiError) -> Response {
    let mut response = json_raw(e.status, e.body());
    if let Some(challenge) = e.challenge.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    }
    if let Some(seconds) = e.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if e.status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = e.target.as_deref().and_then(|a| HeaderValue::from_str(a).ok())
    {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// Authenticates the request. Never trusts a caller-supplied identity field.
async fn caller(ctx: &HttpContext, req: &Request) -> Result<Caller, ApiError> {
    let credentials = req.credentials(ctx.dev.is_some());
    ctx.auth.authenticate(&credentials, ctx.clock.now()).await.map_err(|e| {
        tracing::info!(error = %e, "authentication refused");
        ApiError::from(e)
    })
}

#[cfg(test)]
mod log_tests {
    use super::loggable;

    #[test]
    fn confirmation_links_are_not_logged_whole() {
        let link = "eyJub25jZSI6IjEyMyIsInJlcXVlc3QiOnsianVzdGlmaWNhdGlvbiI6InNlY3JldCJ9fQ.c2ln";
        let logged = loggable(&format!("/api/confirmations/{link}"));
        assert_eq!(logged, "/api/confirmations/eyJub25j…");
        assert_eq!(loggable("/api/activations/1"), "/api/activations/1");
        // The review's finding: another spelling of the route was logged whole.
        for prefix in ["/API/Confirmations/", "/api/CONFIRMATIONS/", "/api/%63onfirmations/", "/Api/confirmations/"] {
            let logged = loggable(&format!("{prefix}{link}"));
            assert!(!logged.contains("c2VjcmV0"), "{logged}");
            assert!(logged.ends_with("eyJub25j…"), "{logged}");
        }
        assert_eq!(loggable("/api/confirmations"), "/api/confirmations/…");
    }
}
