//! Easy Auth (`ELEVATE_AUTH_MODE=easyauth`): App Service authentication signs callers in and
//! adds `X-MS-CLIENT-PRINCIPAL` (base64 JSON of the token's claims, azure-spec §2.2). The header
//! is trusted only when the platform says authentication is on (`WEBSITE_AUTH_ENABLED=True`):
//! only then does App Service strip it from outside requests. Otherwise it is ignored and the
//! attempt logged. A bearer token, when present, is validated by Elevate itself as in `entra`
//! mode, and wins over the header.
//!
//! Parsing fails closed: bad base64, bad JSON, another identity provider, another tenant or a
//! missing object id is a refusal.

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::ids::{AuthContextId, DisplayName, PrincipalId, TenantId};
use crate::service::ports::{AuthError, Authenticator, Caller, Credentials};

use super::entra::EntraAuthenticator;
use super::jwt::evidence_is_fresh;

/// Larger headers are refused unread.
pub const MAX_PRINCIPAL_BYTES: usize = 32 * 1024;

#[derive(Deserialize)]
struct ClientPrincipal {
    auth_typ: String,
    #[serde(default)]
    claims: Vec<Claim>,
}

#[derive(Deserialize)]
struct Claim {
    typ: String,
    val: String,
}

/// Short claim names and the URI names Easy Auth maps them to.
const OID: [&str; 2] = ["oid", "http://schemas.microsoft.com/identity/claims/objectidentifier"];
const TID: [&str; 2] = ["tid", "http://schemas.microsoft.com/identity/claims/tenantid"];
const ROLES: [&str; 2] = ["roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"];
const GROUPS: [&str; 1] = ["groups"];
/// Entra's group overage (over 200 groups): the groups claim is replaced by a pointer
/// (`_claim_names`) or, in v1 and implicit-flow tokens, `hasgroups`.
const OVERAGE: [&str; 2] = ["_claim_names", "hasgroups"];
const AMR: [&str; 2] = ["amr", "http://schemas.microsoft.com/claims/authnmethodsreferences"];
const ACRS: [&str; 1] = ["acrs"];
const NAME: [&str; 1] = ["name"];
const AUD: [&str; 1] = ["aud"];
const APP: [&str; 2] = ["azp", "appid"];
const SCP: [&str; 2] = ["scp", "http://schemas.microsoft.com/identity/claims/scope"];
const IDTYP: [&str; 1] = ["idtyp"];
const AUTH_TIME: [&str; 1] = ["auth_time"];
/// Claims only a user's sign-in carries (browser sessions hold ID-token claims: no `scp`).
const USER_NAMES: [&str; 6] = [
    "preferred_username",
    "upn",
    "unique_name",
    "name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
];

fn refused(why: &str) -> AuthError {
    AuthError::Invalid(format!("the Easy Auth principal is not acceptable: {why}"))
}

impl ClientPrincipal {
    fn all<'a, 'n>(&'a self, names: &'n [&'n str]) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.claims.iter().filter(move |c| names.iter().any(|n| c.typ.eq_ignore_ascii_case(n))).map(|c| c.val.as_str())
    }

    fn one<'a>(&'a self, names: &[&str]) -> Option<&'a str> {
        self.all(names).next()
    }
}

/// A decoded principal: the caller, and when the user last signed in interactively.
pub struct Principal {
    pub caller: Caller,
    /// `auth_time`, Unix seconds.
    pub auth_time: Option<i64>,
}

/// Decodes `X-MS-CLIENT-PRINCIPAL` into a caller of `tenant` (and, when the claims carry an
/// audience, one of `audiences`).
pub fn parse_principal(header: &str, tenant: TenantId, audiences: &[String]) -> Result<Principal, AuthError> {
    if header.len() > MAX_PRINCIPAL_BYTES {
        return Err(refused("too large"));
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(header.trim()).map_err(|_| refused("not base64"))?;
    let principal: ClientPrincipal = serde_json::from_slice(&bytes).map_err(|_| refused("not the expected JSON"))?;
    if !principal.auth_typ.eq_ignore_ascii_case("aad") {
        return Err(refused("not signed in with Entra ID"));
    }
    let tenant_id = principal.one(&TID).and_then(|t| TenantId::parse(t).ok()).ok_or_else(|| refused("no tenant id"))?;
    if tenant_id != tenant {
        return Err(refused("from another tenant"));
    }
    if let Some(aud) = principal.one(&AUD)
        && !audiences.iter().any(|a| a == aud)
    {
        return Err(refused("for another audience"));
    }
    let principal_id =
        principal.one(&OID).and_then(|o| PrincipalId::parse(o).ok()).ok_or_else(|| refused("no valid object id"))?;
    // `amr` and `roles` may arrive repeated or, for some front ends, as one JSON array string.
    let values = |names: &[&str]| -> Vec<String> {
        principal
            .all(names)
            .flat_map(|v| match serde_json::from_str::<Vec<String>>(v) {
                Ok(list) => list,
                Err(_) => vec![v.to_owned()],
            })
            .collect()
    };
    let scp = principal.one(&SCP);
    let auth_time = principal.one(&AUTH_TIME).and_then(|t| t.parse::<i64>().ok());
    let caller = Caller {
        principal_id,
        tenant_id,
        name: principal.one(&NAME).and_then(|n| DisplayName::parse(n).ok()),
        app_id: principal.one(&APP).map(str::to_owned),
        // An application acting as itself has no delegated scope and no user name.
        app_only: principal.one(&IDTYP) == Some("app") || scp.is_none() && principal.one(&USER_NAMES).is_none(),
        roles: values(&ROLES),
        groups: values(&GROUPS).iter().filter_map(|g| PrincipalId::parse(g).ok()).collect(),
        groups_overage: principal.one(&OVERAGE[1..]).is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || principal.one(&OVERAGE[..1]).is_some_and(|v| v.contains("\"groups\"")),
        mfa: values(&AMR).iter().any(|m| m == "mfa"),
        auth_contexts: values(&ACRS).iter().filter_map(|a| AuthContextId::parse(a).ok()).collect(),
    };
    Ok(Principal { caller, auth_time })
}

pub struct EasyAuthAuthenticator {
    bearer: std::sync::Arc<EntraAuthenticator>,
    tenant: TenantId,
    audiences: Vec<String>,
    /// `WEBSITE_AUTH_ENABLED=True`: App Service authentication is on and strips the header from
    /// outside requests.
    platform_auth: bool,
}

impl EasyAuthAuthenticator {
    pub fn new(
        bearer: std::sync::Arc<EntraAuthenticator>,
        tenant: TenantId,
        audiences: Vec<String>,
        platform_auth: bool,
    ) -> Self {
        if !platform_auth {
            tracing::warn!(
                "ELEVATE_AUTH_MODE=easyauth but WEBSITE_AUTH_ENABLED is not True: X-MS-CLIENT-PRINCIPAL will be ignored; only bearer tokens are accepted"
            );
        }
        Self { bearer, tenant, audiences, platform_auth }
    }
}

#[async_trait]
impl Authenticator for EasyAuthAuthenticator {
    async fn authenticate(&self, credentials: &Credentials, now: DateTime<Utc>) -> Result<Caller, AuthError> {
        if credentials.bearer.is_some() {
            return self.bearer.authenticate(credentials, now).await;
        }
        match (&credentials.client_principal, self.platform_auth) {
            (Some(header), true) => {
                let Principal { mut caller, auth_time } = parse_principal(header, self.tenant, &self.audiences)?;
                let settings = self.bearer.settings();
                let max_age = settings.mfa_max_age.map(|d| d.num_seconds());
                // Stale evidence is no evidence, as for bearer tokens.
                if !evidence_is_fresh(auth_time, max_age, now.timestamp()) {
                    caller.mfa = false;
                    caller.auth_contexts.clear();
                }
                Ok(settings.with_mfa_evidence(caller))
            }
            (Some(_), false) => {
                tracing::warn!(
                    "X-MS-CLIENT-PRINCIPAL ignored: platform authentication is off, so the header may be forged"
                );
                Err(AuthError::Missing)
            }
            (None, _) => Err(AuthError::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TENANT: &str = "5b51c641-0711-41d2-ac58-d90390d94a00";
    const OID_VALUE: &str = "2534519c-1ee3-47a1-a531-3d9712150821";

    fn encode(value: &serde_json::Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(value.to_string())
    }

    fn tenant() -> TenantId {
        TenantId::parse(TENANT).unwrap()
    }

    #[test]
    fn the_documented_principal_shape_is_read_with_uri_names_and_repeated_roles() {
        // azure-spec §2.2, with MFA evidence and an authentication context.
        let header = encode(&serde_json::json!({
            "auth_typ": "aad",
            "claims": [
                {"typ": "aud", "val": "api://elevate"},
                {"typ": "name", "val": "Joe Bloggs"},
                {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": OID_VALUE},
                {"typ": "roles", "val": "Elevate.Admin"},
                {"typ": "roles", "val": "Elevate.Auditor"},
                {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT},
                {"typ": "http://schemas.microsoft.com/claims/authnmethodsreferences", "val": "pwd"},
                {"typ": "http://schemas.microsoft.com/claims/authnmethodsreferences", "val": "mfa"},
                {"typ": "acrs", "val": "c1"},
                {"typ": "groups", "val": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"},
                {"typ": "http://schemas.microsoft.com/identity/claims/scope", "val": "user_impersonation"},
            ],
            "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
        }));
        let caller = parse_principal(&header, tenant(), &["api://elevate".into()]).unwrap().caller;
        assert_eq!(caller.principal_id.to_string(), OID_VALUE);
        assert_eq!(caller.roles, ["Elevate.Admin", "Elevate.Auditor"]);
        assert!(caller.mfa && !caller.app_only);
        assert_eq!(caller.auth_contexts.len(), 1);
        assert_eq!(caller.groups.len(), 1);
    }

    #[test]
    fn anything_off_is_refused() {
        let good = |claims: serde_json::Value| encode(&serde_json::json!({"auth_typ": "aad", "claims": claims}));
        let cases = [
            "not base64!".to_owned(),
            base64::engine::general_purpose::STANDARD.encode("not json"),
            encode(
                &serde_json::json!({"auth_typ": "google", "claims": [{"typ": "oid", "val": OID_VALUE}, {"typ": "tid", "val": TENANT}]}),
            ),
            good(serde_json::json!([{"typ": "oid", "val": OID_VALUE}])),
            good(
                serde_json::json!([{"typ": "oid", "val": OID_VALUE}, {"typ": "tid", "val": "00000000-0000-0000-0000-000000000009"}]),
            ),
            good(serde_json::json!([{"typ": "tid", "val": TENANT}])),
            good(
                serde_json::json!([{"typ": "oid", "val": OID_VALUE}, {"typ": "tid", "val": TENANT}, {"typ": "aud", "val": "api://other"}]),
            ),
        ];
        for header in cases {
            assert!(parse_principal(&header, tenant(), &["api://elevate".into()]).is_err(), "{header}");
        }
    }

    proptest! {
        #[test]
        fn no_header_makes_the_parser_panic(header in ".{0,400}") {
            let _ = parse_principal(&header, tenant(), &[]);
        }

        #[test]
        fn no_base64_payload_makes_the_parser_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let header = base64::engine::general_purpose::STANDARD.encode(bytes);
            let _ = parse_principal(&header, tenant(), &[]);
        }
    }
}
