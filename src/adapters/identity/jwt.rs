//! Bearer token validation. The same code validates Entra tokens and dev-issuer tokens: only
//! the key set, issuer, audience and tenant differ.
//!
//! RS256 only (`none`, HS*, ES* are refused before any key is used). Signature by `kid`;
//! issuer, audience, tenant, `exp` and `nbf` (with small skew) checked against `now`, which the
//! caller passes in. Never logs a token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::domain::ids::{AuthContextId, DisplayName, PrincipalId, TenantId};
use crate::service::ports::{AuthError, Authenticator, Caller, Credentials};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 120;
/// Larger tokens are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a token must say to be accepted. The key set can be replaced (key rotation).
#[derive(Clone)]
pub struct JwtValidator {
    issuers: Vec<String>,
    audiences: Vec<String>,
    tenant: TenantId,
    keys: Arc<RwLock<HashMap<String, DecodingKey>>>,
    /// When set, MFA and authentication-context evidence counts only if the user signed in
    /// interactively (`auth_time`) at most this many seconds ago.
    evidence_max_age: Option<i64>,
}

/// The RSA signing keys of a JWKS, by `kid`.
fn signing_keys(keys: &JwkSet) -> Result<HashMap<String, DecodingKey>, AuthError> {
    let mut map = HashMap::new();
    for jwk in &keys.keys {
        let (Some(kid), AlgorithmParameters::RSA(_)) = (&jwk.common.key_id, &jwk.algorithm) else {
            continue;
        };
        // A key published for something other than signatures is not for us.
        if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature) {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("unusable signing key `{kid}`: {e}")))?;
        map.insert(kid.clone(), key);
    }
    if map.is_empty() {
        return Err(invalid("the key set holds no RSA signing key"));
    }
    Ok(map)
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
    /// Group overage (over 200 groups): v2 tokens name a claim source for `groups` here...
    #[serde(default, rename = "_claim_names")]
    claim_names: Option<serde_json::Map<String, serde_json::Value>>,
    /// ... and v1 (implicit flow) tokens say `hasgroups`.
    #[serde(default)]
    hasgroups: Option<bool>,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default)]
    acrs: Vec<String>,
    auth_time: Option<i64>,
    azp: Option<String>,
    appid: Option<String>,
    idtyp: Option<String>,
    scp: Option<String>,
}

/// Whether MFA and authentication-context evidence still counts: always when no maximum age is
/// set; otherwise only from an interactive sign-in (`auth_time`, Unix seconds) at most
/// `max_age` seconds before `now` (and not in the future beyond the clock skew).
pub fn evidence_is_fresh(auth_time: Option<i64>, max_age: Option<i64>, now: i64) -> bool {
    max_age.is_none_or(|max| auth_time.is_some_and(|t| now - t <= max && t <= now + LEEWAY_SECONDS))
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
        let validator = Self::without_keys(issuers, audiences, tenant);
        validator.replace_keys(keys)?;
        Ok(validator)
    }

    /// A validator that accepts nothing until `replace_keys` gives it keys.
    pub fn without_keys(issuers: Vec<String>, audiences: Vec<String>, tenant: TenantId) -> Self {
        Self { issuers, audiences, tenant, keys: Arc::new(RwLock::new(HashMap::new())), evidence_max_age: None }
    }

    /// Counts MFA and authentication-context evidence only from sign-ins at most `max_age` old.
    pub fn with_evidence_max_age(mut self, max_age: Option<TimeDelta>) -> Self {
        self.evidence_max_age = max_age.map(|d| d.num_seconds());
        self
    }

    /// Swaps in a new key set; the old one stays if the new one holds no usable key.
    pub fn replace_keys(&self, keys: &JwkSet) -> Result<usize, AuthError> {
        let map = signing_keys(keys)?;
        let count = map.len();
        *self.keys.write().map_err(|_| AuthError::Unavailable("key cache poisoned".into()))? = map;
        Ok(count)
    }

    /// The `kid` of a well-formed RS256 token whose key this validator does not hold.
    pub fn unknown_key_id(&self, token: &str) -> Option<String> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid.filter(|_| header.alg == Algorithm::RS256)?;
        let known = self.keys.read().ok()?.contains_key(&kid);
        (!known).then_some(kid)
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
        let key = self
            .keys
            .read()
            .map_err(|_| AuthError::Unavailable("key cache poisoned".into()))?
            .get(&kid)
            .cloned()
            .ok_or_else(|| invalid("token signed with an unknown key"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        // Time and audience are checked below against the `now` we were given.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
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
        // Stale evidence is no evidence: the caller is challenged and signs in again.
        let fresh = evidence_is_fresh(c.auth_time, self.evidence_max_age, ts);
        Ok(Caller {
            principal_id,
            tenant_id: tenant,
            name: c.name.as_deref().and_then(|n| DisplayName::parse(n).ok()),
            app_id: c.azp.or(c.appid),
            app_only: c.idtyp.as_deref() == Some("app") || c.scp.is_none(),
            roles: c.roles,
            // Values that are not object ids cannot match a policy entry; drop them.
            groups: c.groups.iter().filter_map(|g| PrincipalId::parse(g).ok()).collect(),
            groups_overage: c.hasgroups == Some(true)
                || c.claim_names.as_ref().is_some_and(|n| n.contains_key("groups")),
            mfa: fresh && c.amr.iter().any(|m| m == "mfa"),
            auth_contexts: if fresh {
                c.acrs.iter().filter_map(|a| AuthContextId::parse(a).ok()).collect()
            } else {
                Vec::new()
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    fn validator() -> JwtValidator {
        JwtValidator::without_keys(
            vec!["https://login.microsoftonline.com/t/v2.0".into()],
            vec!["api://elevate".into()],
            TenantId::parse("5b51c641-0711-41d2-ac58-d90390d94a00").unwrap(),
        )
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    proptest! {
        /// Fuzzing the token parser: nothing a caller sends makes it panic.
        #[test]
        fn no_string_makes_the_validator_panic(token in "\\PC{0,600}") {
            let v = validator();
            let _ = v.unknown_key_id(&token);
            prop_assert!(v.validate(&token, now()).is_err());
        }

        #[test]
        fn no_token_shaped_input_makes_the_validator_panic(
            header in proptest::collection::vec(any::<u8>(), 0..200),
            payload in proptest::collection::vec(any::<u8>(), 0..400),
            signature in "[A-Za-z0-9_-]{0,80}",
            json_header in prop_oneof![
                Just(r#"{"alg":"RS256","kid":"k"}"#.to_owned()),
                Just(r#"{"alg":"none"}"#.to_owned()),
                Just(r#"{"alg":"HS256","kid":"k"}"#.to_owned()),
                "\\PC{0,60}",
            ],
        ) {
            let v = validator();
            for token in [
                format!("{}.{}.{signature}", b64(&header), b64(&payload)),
                format!("{}.{}.{signature}", b64(json_header.as_bytes()), b64(&payload)),
            ] {
                let _ = v.unknown_key_id(&token);
                prop_assert!(v.validate(&token, now()).is_err());
            }
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }
}

#[cfg(test)]
mod freshness {
    use super::evidence_is_fresh;

    #[test]
    fn evidence_counts_only_from_recent_sign_ins_when_an_age_is_set() {
        let now = 1_800_000_000;
        assert!(evidence_is_fresh(None, None, now));
        assert!(evidence_is_fresh(Some(now - 600), Some(1800), now));
        assert!(!evidence_is_fresh(Some(now - 3600), Some(1800), now));
        assert!(!evidence_is_fresh(None, Some(1800), now));
        assert!(!evidence_is_fresh(Some(now + 3600), Some(1800), now), "a sign-in in the future is not evidence");
    }
}
