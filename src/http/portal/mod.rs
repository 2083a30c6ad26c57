//! The portal: server-rendered pages for people (`/api/portal/…`), on the same service calls as
//! the API. No JavaScript. Every state change is a form post carrying its CSRF token (the same
//! `csrf` module as the API); every string that came from a person or a token is escaped.
//!
//! Must never contain business rules: pages read through the service and render; forms parse,
//! call one service function and redirect (post, redirect, get) or render the refusal next to
//! the field it concerns.

mod access;
mod alerts;
mod approvals;
mod audit;
mod reviews;
mod roles;
pub mod sign_in;

use chrono::{DateTime, SecondsFormat, Utc};
use warp::http::{HeaderValue, Method, StatusCode, header};

use crate::domain::ids::{PrincipalId, RoleDefinitionId};
use crate::domain::scope::{Scope, ScopeKind};
use crate::service::ports::Caller;

use super::error::ApiError;
use super::pages::{STYLE, esc, fmt_time};
use super::{HttpContext, Request, Response, caller, html};

/// Where a browser lands.
pub const HOME: &str = "/api/portal/roles";
const PREFIX: &str = "/api/portal";

/// The page a navigation link stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Roles,
    Access,
    Approvals,
    Audit,
    Alerts,
    Reviews,
    Policy,
    Other,
}

/// `/api/portal/{rest}`: `parts` lower-cased, `raw` as sent.
pub async fn route(ctx: &HttpContext, req: &Request, parts: &[&str], raw: &[String]) -> Result<Response, ApiError> {
    if wants_json_only(req) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            "the portal answers in HTML; the JSON API is under /api (see /api/openapi.json)",
        ));
    }
    // Pages are read with GET (or HEAD); forms post. Nothing else is a portal request: another
    // method must never reach a form's handler past the origin and media-type rules.
    let get = match req.method {
        Method::GET | Method::HEAD => true,
        Method::POST => false,
        _ => {
            let mut e =
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "use GET, or POST for a form");
            e.target = Some("GET, HEAD, POST".to_owned());
            return Err(e);
        }
    };
    match (get, parts) {
        (true, ["sign-in"]) => return Ok(sign_in::page(ctx, req)),
        (false, ["sign-out"]) => return Ok(sign_in::sign_out(ctx)),
        _ => {}
    }
    let who = match caller(ctx, req).await {
        Ok(who) => who,
        Err(e) if e.status == StatusCode::UNAUTHORIZED && get => {
            let back = if req.query.is_empty() { req.path.clone() } else { format!("{}?{}", req.path, req.query) };
            return Ok(super::pages::see_other(&sign_in::url(&back, None)));
        }
        Err(e) => return Ok(problem(ctx, None, &e)),
    };
    let raw_at = |i: usize| raw.get(i).map(String::as_str).unwrap_or_default();
    match (get, parts) {
        (true, [] | ["roles"]) => roles::page(ctx, req, &who).await,
        (false, ["roles"]) => roles::submit(ctx, req).await,
        (true, ["access"]) => access::page(ctx, req, &who).await,
        (false, ["activations", _, action @ ("deactivate" | "cancel" | "extend")]) => {
            access::act(ctx, req, raw_at(1), action).await
        }
        (true, ["approvals"]) => approvals::page(ctx, &who).await,
        (true, ["policy"]) => approvals::policy(ctx, &who).await,
        (true, ["alerts"]) => alerts::page(ctx, req, &who).await,
        (true, ["reviews"]) => reviews::list(ctx, &who).await,
        (true, ["reviews", _]) => reviews::page(ctx, req, &who, raw_at(1)).await,
        (false, ["reviews", _, "items", _]) => reviews::submit(ctx, req, raw_at(1), raw_at(3)).await,
        (true, ["audit"]) => audit::page(ctx, req, &who).await,
        (true, ["audit", "export"]) => audit::export(ctx, req, &who).await,
        _ => Ok(problem(
            ctx,
            Some(&who),
            &ApiError::new(StatusCode::NOT_FOUND, "PageNotFound", format!("there is no portal page at {}", req.path)),
        )),
    }
}

/// A client that asked for JSON and not HTML (scripts, the host's probes) gets an error it can
/// parse, not a page.
fn wants_json_only(req: &Request) -> bool {
    let accept = req.header("accept").unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// The portal's page shell: skip link, navigation, who is signed in, the content, the footer.
fn layout(who: Option<&Caller>, nav: Nav, title: &str, body: &str) -> String {
    let link = |target: Nav, href: &str, label: &str| {
        let current = if target == nav { " aria-current=\"page\"" } else { "" };
        format!("<li><a href=\"{PREFIX}/{href}\"{current}>{label}</a></li>")
    };
    let (links, who_html) = match who {
        Some(who) => {
            let mut links = link(Nav::Roles, "roles", "My roles")
                + &link(Nav::Access, "access", "My access")
                + &link(Nav::Approvals, "approvals", "Approvals")
                + &link(Nav::Reviews, "reviews", "Reviews");
            if who.can_read_audit() {
                links += &link(Nav::Audit, "audit", "Audit");
                links += &link(Nav::Alerts, "alerts", "Alerts");
                links += &link(Nav::Policy, "policy", "Policy");
            }
            let name = who.name.as_ref().map(|n| esc(n.as_str())).unwrap_or_else(|| "you".to_owned());
            let who_html = format!(
                "<div class=\"who\">Signed in as <strong>{name}</strong> <small>(<code>{}</code>)</small>\
<form method=\"post\" action=\"{PREFIX}/sign-out\"><button type=\"submit\">Sign out</button></form></div>",
                who.principal_id
            );
            (links, who_html)
        }
        None => (String::new(), format!("<div class=\"who\"><a href=\"{PREFIX}/sign-in\">Sign in</a></div>")),
    };
    let nav_html =
        if links.is_empty() { String::new() } else { format!("<nav aria-label=\"Portal\"><ul>{links}</ul></nav>") };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Elevate</title><style>{STYLE}</style></head><body class=\"portal\"><a class=\"skip\" href=\"#main\">Skip to content</a>\
<header class=\"top\"><strong>Elevate</strong>{nav_html}{who_html}</header><main id=\"main\" tabindex=\"-1\">{body}</main>\
<footer>Times are in UTC. Role changes can take several minutes to take effect in Azure. Elevate {}.</footer></body></html>",
        esc(title),
        env!("CARGO_PKG_VERSION")
    )
}

fn render(status: StatusCode, who: Option<&Caller>, nav: Nav, title: &str, body: &str) -> Response {
    html(status, layout(who, nav, title, body))
}

/// An error as a portal page, with the error's status.
fn problem(_ctx: &HttpContext, who: Option<&Caller>, e: &ApiError) -> Response {
    let body = format!(
        "<h1>Not possible</h1><p class=\"note warn\" role=\"alert\"><strong>{}:</strong> {}</p><p><a href=\"{HOME}\">Back to my roles</a></p>",
        esc(e.code),
        esc(&e.message)
    );
    let mut response = render(e.status, who, Nav::Other, "Not possible", &body);
    if let Some(challenge) = e.challenge.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// A time for people: `2026-12-01 14:00 UTC (in 47 minutes)`, machine-readable too.
fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time> <small>({})</small>",
        at.to_rfc3339_opts(SecondsFormat::Secs, true),
        fmt_time(at),
        relative(at, now)
    )
}

/// `in 47 minutes`, `2 hours 5 minutes ago`, `now`.
fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (at - now).num_minutes();
    let span = minutes.unsigned_abs();
    if span == 0 {
        return "now".to_owned();
    }
    let plural = |n: u64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    let text = if span < 60 {
        plural(span, "minute")
    } else if span < 48 * 60 {
        let (h, m) = (span / 60, span % 60);
        if m == 0 { plural(h, "hour") } else { format!("{} {}", plural(h, "hour"), plural(m, "minute")) }
    } else {
        plural(span / (24 * 60), "day")
    };
    if minutes > 0 { format!("in {text}") } else { format!("{text} ago") }
}

/// A role for people: its built-in name, else its id.
fn role_label(role: &RoleDefinitionId) -> String {
    match role.built_in_name() {
        Some(name) => esc(name),
        None => format!("<code>{role}</code>"),
    }
}

/// A scope for people, with what kind of thing it is.
fn scope_label(scope: &Scope) -> String {
    match scope.kind() {
        ScopeKind::Azure => format!("<code>{}</code>", esc(scope.as_str())),
        ScopeKind::Directory => format!("<code>{}</code> <small>(Entra directory)</small>", esc(scope.as_str())),
        ScopeKind::Group => format!("<code>{}</code> <small>(group)</small>", esc(scope.as_str())),
    }
}

/// A person for people: their name when known, and always the object id.
fn person(id: &PrincipalId, names: &std::collections::HashMap<PrincipalId, crate::domain::ids::DisplayName>) -> String {
    match names.get(id) {
        Some(name) => format!("{} <small>(<code>{id}</code>)</small>", esc(name.as_str())),
        None => format!("<code>{id}</code>"),
    }
}

/// The fields of a posted form, by name (the last value of a repeated name wins).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(req: &Request) -> Result<Self, ApiError> {
        serde_urlencoded::from_bytes(&req.body)
            .map(Form)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestBody", format!("invalid form: {e}")))
    }

    fn from_query(query: &str) -> Self {
        Form(serde_urlencoded::from_str(query).unwrap_or_default())
    }

    /// The field's value, trimmed; `None` when absent or blank.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }
}

/// An error that belongs next to one field of a form.
struct FieldError {
    field: &'static str,
    message: String,
}

/// The field of a form an API error concerns (its `target`), if the form has it.
fn field_of(e: &ApiError, fields: &[&'static str]) -> Option<&'static str> {
    let target = e.target.as_deref()?;
    let target = target.split('.').next().unwrap_or(target);
    fields.iter().copied().find(|f| f.eq_ignore_ascii_case(target))
}

/// A field's error paragraph and the attributes that tie the field to it.
fn field_error(id: &str, error: Option<&str>) -> (String, String) {
    match error {
        Some(message) => (
            format!("<p class=\"error\" id=\"{id}-error\"><span>Error:</span> {}</p>", esc(message)),
            format!(" aria-invalid=\"true\" aria-describedby=\"{id}-hint {id}-error\""),
        ),
        None => (String::new(), format!(" aria-describedby=\"{id}-hint\"")),
    }
}

/// A query string from pairs, each value encoded.
fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", crate::endpoint::encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = at("2026-12-01T12:00:00Z");
        assert_eq!(relative(at("2026-12-01T12:47:00Z"), now), "in 47 minutes");
        assert_eq!(relative(at("2026-12-01T11:59:00Z"), now), "1 minute ago");
        assert_eq!(relative(at("2026-12-01T14:05:00Z"), now), "in 2 hours 5 minutes");
        assert_eq!(relative(at("2026-12-01T13:00:00Z"), now), "in 1 hour");
        assert_eq!(relative(at("2026-12-04T12:00:00Z"), now), "in 3 days");
        assert_eq!(relative(now, now), "now");
    }

    #[test]
    fn field_errors_tie_the_message_to_the_field() {
        let (p, attrs) = field_error("r0-duration", Some("too <long>"));
        assert!(p.contains("id=\"r0-duration-error\"") && p.contains("too &lt;long&gt;"));
        assert!(attrs.contains("aria-invalid=\"true\"") && attrs.contains("r0-duration-error"));
    }
}
