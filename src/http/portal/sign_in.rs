//! Signing in to the portal: the dev sign-in locally (demo identities, or a pasted token), the
//! Easy Auth session in Azure. A rule that needs more proof than the sign-in has (MFA, an
//! authentication context) sends the user here, and back to the form they filled.

use warp::http::{HeaderValue, StatusCode, header};

use crate::domain::ids::{AuthContextId, PrincipalId, PrincipalRef};
use crate::service::ports::{Credentials, DevSignIn, ROLE_ADMIN, ROLE_AUDITOR};

use super::super::error::ApiError;
use super::super::pages::{esc, refusal, see_other};
use super::super::{DEV_COOKIE, html};
use super::{Form, HttpContext, Nav, PREFIX, Request, Response, layout, query_string};

/// What the sign-in must prove beyond who the user is.
pub struct Proof {
    /// The authentication context the rule asks for (MFA is always asked for with it).
    pub context: Option<String>,
}

/// The demo identities of the README walkthrough (dev mode only), with their app roles.
const DEMO: [(&str, &str, &str, &[&str]); 4] = [
    ("11111111-1111-1111-1111-111111111111", "Alice", "requester", &[]),
    ("22222222-2222-2222-2222-222222222222", "Bob", "approver", &[]),
    ("33333333-3333-3333-3333-333333333333", "Carol", "approver", &[]),
    ("44444444-4444-4444-4444-444444444444", "Dana", "admin and auditor", &[ROLE_ADMIN, ROLE_AUDITOR]),
];

/// The sign-in page's address: back to `back` afterwards, proving `proof`.
pub fn url(back: &str, proof: Option<Proof>) -> String {
    let mut pairs = vec![("returnTo", back.to_owned())];
    if let Some(proof) = proof {
        pairs.push(("mfa", "true".to_owned()));
        if let Some(context) = proof.context {
            pairs.push(("acrs", context));
        }
    }
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    format!("{PREFIX}/sign-in?{}", query_string(&refs))
}

/// Where a sign-in may send the browser afterwards: Elevate's own pages, never elsewhere (no
/// open redirect: a path of ours, no scheme, no `//`, no `..`, no backslash).
pub fn safe_return(target: Option<&str>) -> String {
    target
        .filter(|p| {
            // Checked as sent and with its escapes read (up to three layers: `%252e` is `%2e`
            // is `.`), since a browser resolves `%2e%2e` as `..`.
            let mut readings = vec![(*p).to_owned()];
            for _ in 0..3 {
                let next = super::super::percent_decoded(readings.last().map(String::as_str).unwrap_or_default());
                readings.push(next);
            }
            ["/api/portal/", "/api/approvals/", "/api/confirmations/"].iter().any(|prefix| p.starts_with(prefix))
                && readings.iter().all(|r| !r.contains("//") && !r.contains("..") && !r.contains('\\'))
                && p.len() <= 2048
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.~?&=%+#".contains(c))
        })
        .map_or_else(|| super::HOME.to_owned(), str::to_owned)
}

/// `GET /api/portal/sign-in`.
pub fn page(ctx: &HttpContext, req: &Request) -> Response {
    let query = Form::from_query(&req.query);
    let back = safe_return(query.get("returnTo"));
    let mfa = query.get("mfa") == Some("true");
    let context = query.get("acrs").and_then(|c| AuthContextId::parse(c).ok());
    let why = match (&context, mfa) {
        (Some(c), _) => format!(
            "<p class=\"note warn\" role=\"alert\">The rule asks for authentication context <code>{}</code> and multi-factor authentication: sign in again with them, and you will be back at your filled form.</p>",
            esc(c.as_str())
        ),
        (None, true) => "<p class=\"note warn\" role=\"alert\">The rule asks for multi-factor authentication: sign in again with it, and you will be back at your filled form.</p>".to_owned(),
        (None, false) => String::new(),
    };
    let body = if ctx.dev.is_some() {
        dev_form(ctx, &back, mfa || context.is_some(), context.as_ref(), &why)
    } else if ctx.auth_mode == "easyauth" {
        let mut pairs = vec![("post_login_redirect_uri", back.clone())];
        if let Some(c) = &context {
            pairs.push(("claims", super::super::error::claims_request(c.as_str())));
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!(
            "<h1>Sign in</h1>{why}<p><a href=\"/.auth/login/aad?{}\">Sign in with Microsoft Entra ID</a></p>",
            esc(&query_string(&refs))
        )
    } else {
        format!(
            "<h1>Sign in</h1>{why}<p class=\"note\">This Elevate accepts bearer tokens only (<code>ELEVATE_AUTH_MODE=entra</code>): \
use the API or the <code>elevate</code> command line, or turn on App Service Authentication (Easy Auth) for the portal.</p>"
        )
    };
    html(StatusCode::OK, layout(None, Nav::Other, "Sign in", &body))
}

fn dev_form(ctx: &HttpContext, back: &str, mfa: bool, context: Option<&AuthContextId>, why: &str) -> String {
    let mut people: Vec<(String, String)> =
        DEMO.iter().map(|(id, name, part, _)| ((*id).to_owned(), format!("{name} ({part})"))).collect();
    let policy_users = ctx.service.policy().rules().iter().flat_map(|r| {
        r.principals.iter().chain(r.approval.iter().flat_map(|a| a.approvers.iter())).filter_map(|p| match p {
            PrincipalRef::User(id) => Some(id.to_string()),
            PrincipalRef::Group(_) => None,
        })
    });
    for id in policy_users.collect::<Vec<_>>() {
        if !people.iter().any(|(known, _)| *known == id) {
            let label = format!("{id} (named in the policy)");
            people.push((id, label));
        }
    }
    let radios: String = people
        .iter()
        .enumerate()
        .map(|(i, (id, label))| {
            let checked = if i == 0 { " checked" } else { "" };
            format!(
                "<div><input type=\"radio\" id=\"as-{i}\" name=\"as\" value=\"{id}\"{checked}> <label class=\"inline\" for=\"as-{i}\">{}</label></div>",
                esc(label)
            )
        })
        .collect();
    let checked = |yes: bool| if yes { " checked" } else { "" };
    format!(
        "<h1>Sign in (dev mode)</h1>{why}<p>Dev mode signs you in as anyone: it is for trying Elevate on a laptop, and is refused on App Service.</p>\
<form method=\"post\" action=\"/dev/sign-in\"><input type=\"hidden\" name=\"returnTo\" value=\"{back}\">\
<fieldset><legend>Sign in as</legend>{radios}</fieldset>\
<fieldset><legend>What the sign-in proves</legend><div><input type=\"checkbox\" id=\"mfa\" name=\"mfa\" value=\"true\"{mfa}> <label class=\"inline\" for=\"mfa\">Multi-factor authentication</label></div>\
<label for=\"acrs\">Authentication context <span class=\"hint\" id=\"acrs-hint\">Optional, for example c1.</span></label><input type=\"text\" id=\"acrs\" name=\"acrs\" value=\"{acrs}\" aria-describedby=\"acrs-hint\">\
<div><input type=\"checkbox\" id=\"admin\" name=\"admin\" value=\"true\"> <label class=\"inline\" for=\"admin\">Elevate.Admin</label></div>\
<div><input type=\"checkbox\" id=\"auditor\" name=\"auditor\" value=\"true\"> <label class=\"inline\" for=\"auditor\">Elevate.Auditor</label></div></fieldset>\
<button type=\"submit\">Sign in</button></form>\
<h2>Or paste a token</h2><form method=\"post\" action=\"/dev/sign-in\"><input type=\"hidden\" name=\"returnTo\" value=\"{back}\">\
<label for=\"token\">Dev token <span class=\"hint\" id=\"token-hint\">From <code>elevate token --user &lt;object id&gt; --mfa</code>.</span></label>\
<input type=\"text\" id=\"token\" name=\"token\" autocomplete=\"off\" required aria-describedby=\"token-hint\"><button type=\"submit\">Sign in with the token</button></form>",
        back = esc(back),
        mfa = checked(mfa || context.is_none()),
        acrs = esc(context.map(AuthContextId::as_str).unwrap_or_default()),
    )
}

/// `POST /dev/sign-in` (dev mode only): signs in as a demo identity, or with a pasted token, and
/// keeps the token in an HttpOnly, SameSite=Strict cookie.
pub async fn dev_sign_in(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let Some(issuer) = ctx.dev.as_ref() else {
        return Err(ApiError::not_found_route(req.method.as_str(), &req.path));
    };
    let form = Form::parse(req)?;
    let now = ctx.clock.now();
    let token = match (form.get("token"), form.get("as")) {
        (Some(token), _) => token.to_owned(),
        (None, Some(id)) => {
            let principal_id = PrincipalId::parse(id).map_err(|e| ApiError::invalid("as", e))?;
            let demo = DEMO.iter().find(|(demo, ..)| *demo == principal_id.to_string());
            let mut roles: Vec<String> =
                demo.map(|(.., roles)| roles.iter().map(|r| (*r).to_owned()).collect()).unwrap_or_default();
            for (field, role) in [("admin", ROLE_ADMIN), ("auditor", ROLE_AUDITOR)] {
                if form.get(field) == Some("true") && !roles.iter().any(|r| r == role) {
                    roles.push(role.to_owned());
                }
            }
            let auth_contexts = form
                .get("acrs")
                .map(|c| AuthContextId::parse(c).map_err(|e| ApiError::invalid("acrs", e)))
                .transpose()?
                .into_iter()
                .collect();
            let who = DevSignIn {
                principal_id,
                name: demo.map(|(_, name, ..)| (*name).to_owned()),
                roles,
                mfa: form.get("mfa") == Some("true"),
                auth_contexts,
            };
            issuer
                .sign_in_token(&who, now)
                .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e))?
        }
        (None, None) => return Err(ApiError::invalid("as", "choose whom to sign in as, or paste a token")),
    };
    let credentials = Credentials { bearer: Some(token.clone()), client_principal: None };
    if let Err(e) = ctx.auth.authenticate(&credentials, now).await {
        return Ok(refusal(&ApiError::from(e)));
    }
    let mut response = see_other(&safe_return(form.get("returnTo")));
    let cookie = format!("{DEV_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /api/portal/sign-out`: forgets the dev cookie, or ends the Easy Auth session.
pub fn sign_out(ctx: &HttpContext) -> Response {
    if ctx.auth_mode == "easyauth" {
        return see_other(&format!("/.auth/logout?post_logout_redirect_uri={PREFIX}/sign-in"));
    }
    let mut response = see_other(&format!("{PREFIX}/sign-in"));
    let cookie = format!("{DEV_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_returns_only_to_our_own_pages() {
        assert_eq!(
            safe_return(Some("/api/portal/roles?rule=a&duration=1h#r0")),
            "/api/portal/roles?rule=a&duration=1h#r0"
        );
        assert_eq!(safe_return(Some("/api/approvals/abc")), "/api/approvals/abc");
        for evil in [
            "https://evil.example/",
            "//evil.example/api/portal/",
            "/api/portal//evil.example",
            "/api/portal/../../dev/keys",
            "/api/portal/\\evil",
            "/api/portal/a\"onmouseover=x",
            "/api/portal/%2e%2e/%2e%2e/dev/keys",
            "/api/portal/%252e%252e/%252e%252e/dev/keys",
            "/api/portal/%2F%2Fevil.example",
            "/api/portal/%5cevil",
            "/api/portalx",
            "/dev/keys",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_return(Some(evil)), super::super::HOME, "{evil}");
        }
        assert_eq!(safe_return(None), super::super::HOME);
    }

    #[test]
    fn the_sign_in_url_carries_the_way_back_and_the_proof() {
        let u = url("/api/portal/roles?rule=x", Some(Proof { context: Some("c1".into()) }));
        assert!(u.starts_with("/api/portal/sign-in?returnTo=%2Fapi%2Fportal%2Froles%3Frule%3Dx"), "{u}");
        assert!(u.ends_with("&mfa=true&acrs=c1"), "{u}");
    }
}
