//! Bearer token validation. The same code validates Entra tokens and dev-issuer tokens: only
//! the key set, issuer, audience and tenant differ.
//!
//! RS256 only (`none`, HS*, ES* are refused before any key is used). Signature by `kid`;
//! issuer, audience, tenant, `exp` and `nbf` (with small skew) checked against `now`, which the
//! caller passes in. Never logs a token.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::domain::ids::{AuthContextId, DisplayName, PrincipalId, TenantId};
use crate::service::ports::{AuthError, Authenticator, Caller, Credentials};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 120;
/// Larger tokens are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a token must say to be accepted.
#[derive(Clone)]
pub struct JwtValidator {
    issuers: Vec<String>,
    audiences: Vec<String>,
    tenant: TenantId,
    keys: HashMap<String, DecodingKey>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn contains_any(&self, wanted: &[String]) -> bool {
        match self {
            OneOrMany::One(a) => wanted.contains(a),
            OneOrMany::Many(all) => all.iter().any(|a| wanted.contains(a)),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: OneOrMany,
    exp: i64,
    nbf: Option<i64>,
    oid: Option<String>,
    tid: Option<String>,
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default)]
    acrs: Vec<String>,
    azp: Option<String>,
    appid: Option<String>,
    idtyp: Option<String>,
    scp: Option<String>,
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::Invalid(why.into())
}

impl JwtValidator {
    /// `keys` is a JWKS; only RSA signing keys with a `kid` are kept.
    pub fn new(
        issuers: Vec<String>,
        audiences: Vec<String>,
        tenant: TenantId,
        keys: &JwkSet,
    ) -> Result<Self, AuthError> {
        let mut map = HashMap::new();
        for jwk in &keys.keys {
            let (Some(kid), AlgorithmParameters::RSA(_)) = (&jwk.common.key_id, &jwk.algorithm) else {
                continue;
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("unusable signing key `{kid}`: {e}")))?;
            map.insert(kid.clone(), key);
        }
        if map.is_empty() {
            return Err(invalid("the key set holds no RSA signing key"));
        }
        Ok(Self { issuers, audiences, tenant, keys: map })
    }

    pub fn validate(&self, token: &str, now: DateTime<Utc>) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token too large"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid(format!("algorithm {:?} is not accepted; only RS256", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| invalid("token has no key id"))?;
        let key = self.keys.get(&kid).ok_or_else(|| invalid("token signed with an unknown key"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        // Time and audience are checked below against the `now` we were given.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| invalid(format!("token rejected: {e}")))?;
        let c = data.claims;
        let ts = now.timestamp();
        if c.exp + LEEWAY_SECONDS <= ts {
            return Err(invalid("token expired"));
        }
        if c.nbf.is_some_and(|nbf| nbf - LEEWAY_SECONDS > ts) {
            return Err(invalid("token not yet valid"));
        }
        if !self.issuers.contains(&c.iss) {
            return Err(invalid("token from an unexpected issuer"));
        }
        if !c.aud.contains_any(&self.audiences) {
            return Err(invalid("token for another audience"));
        }
        let tenant = c
            .tid
            .as_deref()
            .and_then(|t| TenantId::parse(t).ok())
            .ok_or_else(|| invalid("token has no valid tenant id"))?;
        if tenant != self.tenant {
            return Err(invalid("token from another tenant"));
        }
        let principal_id = c
            .oid
            .as_deref()
            .and_then(|o| PrincipalId::parse(o).ok())
            .ok_or_else(|| invalid("token has no valid object id (oid)"))?;
        Ok(Caller {
            principal_id,
            tenant_id: tenant,
            name: c.name.as_deref().and_then(|n| DisplayName::parse(n).ok()),
            app_id: c.azp.or(c.appid),
            app_only: c.idtyp.as_deref() == Some("app") || c.scp.is_none(),
            roles: c.roles,
            // Values that are not object ids cannot match a policy entry; drop them.
            groups: c.groups.iter().filter_map(|g| PrincipalId::parse(g).ok()).collect(),
            mfa: c.amr.iter().any(|m| m == "mfa"),
            auth_contexts: c.acrs.iter().filter_map(|a| AuthContextId::parse(a).ok()).collect(),
        })
    }
}

/// Authenticates bearer tokens with a [`JwtValidator`].
pub struct BearerAuthenticator {
    validator: JwtValidator,
}

impl BearerAuthenticator {
    pub fn new(validator: JwtValidator) -> Self {
        Self { validator }
    }
}

#[async_trait]
impl Authenticator for BearerAuthenticator {
    async fn authenticate(&self, credentials: &Credentials, now: DateTime<Utc>) -> Result<Caller, AuthError> {
        let token = credentials.bearer.as_deref().ok_or(AuthError::Missing)?;
        self.validator.validate(token, now)
    }
}
