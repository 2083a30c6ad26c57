//! Entra ID access tokens (`ELEVATE_AUTH_MODE=entra`): the signing keys come from OIDC discovery
//! at `ELEVATE_AUTHORITY`, are cached, and are refreshed when a token names an unknown `kid` (at
//! most once per `REFRESH_AT_MOST_EVERY`, so forged `kid`s cannot make us hammer the directory)
//! and once a day. Tokens are validated by the shared `JwtValidator`: RS256 only, the tenant's
//! exact issuer in its v2 (`{authority}/v2.0`) or v1 (`https://sts.windows.net/{tid}/`) form,
//! the audience, `tid`, `exp` and `nbf`.
//!
//! Must never log a token, and never accept a key from anywhere but the discovered JWKS URI.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use crate::domain::ids::{AuthContextId, TenantId};
use crate::service::ports::{AuthError, Authenticator, Caller, Credentials};

use super::jwt::JwtValidator;

/// The soonest the keys are fetched again after a fetch, however many unknown `kid`s arrive.
pub const REFRESH_AT_MOST_EVERY: TimeDelta = TimeDelta::minutes(5);
/// Keys are refreshed at least this often (Microsoft rotates them; this picks up the new ones
/// before the old retire).
pub const REFRESH_AT_LEAST_EVERY: TimeDelta = TimeDelta::hours(24);
/// Larger discovery documents or key sets are refused.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// What Entra validation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntraSettings {
    pub tenant: TenantId,
    /// Accepted `aud` values: the API's client id and its App ID URI.
    pub audiences: Vec<String>,
    /// `https://login.microsoftonline.com/{tenant}` (no trailing slash).
    pub authority: String,
    /// The Conditional Access authentication context whose policy demands MFA: a token that
    /// satisfied it (`acrs`) proves MFA, as v2 tokens carry no `amr`.
    pub mfa_auth_context: Option<AuthContextId>,
    /// MFA and authentication-context evidence counts only from sign-ins (`auth_time`) at most
    /// this old (`ELEVATE_MFA_MAX_AGE`); unset, any valid token's evidence counts.
    pub mfa_max_age: Option<TimeDelta>,
}

impl EntraSettings {
    /// Counts the tenant's MFA authentication context as MFA evidence.
    pub fn with_mfa_evidence(&self, mut caller: Caller) -> Caller {
        if self.mfa_auth_context.as_ref().is_some_and(|c| caller.auth_contexts.contains(c)) {
            caller.mfa = true;
        }
        caller
    }
}

impl EntraSettings {
    /// The v2 issuer for this authority and the v1 issuer of the tenant.
    pub fn issuers(&self) -> Vec<String> {
        vec![format!("{}/v2.0", self.authority), format!("https://sts.windows.net/{}/", self.tenant)]
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/v2.0/.well-known/openid-configuration", self.authority)
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Default)]
struct KeyState {
    fetched_at: Option<DateTime<Utc>>,
    attempted_at: Option<DateTime<Utc>>,
}

pub struct EntraAuthenticator {
    settings: EntraSettings,
    validator: JwtValidator,
    http: reqwest::Client,
    /// Also serialises refreshes: one fetch at a time.
    state: tokio::sync::Mutex<KeyState>,
}

fn unavailable(why: impl Into<String>) -> AuthError {
    AuthError::Unavailable(why.into())
}

impl EntraAuthenticator {
    pub fn new(settings: EntraSettings) -> Result<Self, AuthError> {
        crate::adapters::azure::install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| unavailable(format!("cannot build the HTTP client: {e}")))?;
        let validator = JwtValidator::without_keys(settings.issuers(), settings.audiences.clone(), settings.tenant)
            .with_evidence_max_age(settings.mfa_max_age);
        Ok(Self { settings, validator, http, state: tokio::sync::Mutex::new(KeyState::default()) })
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str, what: &str) -> Result<T, AuthError> {
        let res = self.http.get(url).send().await.map_err(|e| unavailable(format!("fetching the {what}: {e}")))?;
        if !res.status().is_success() {
            return Err(unavailable(format!("fetching the {what}: HTTP {}", res.status().as_u16())));
        }
        let body = res.bytes().await.map_err(|e| unavailable(format!("reading the {what}: {e}")))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(unavailable(format!("the {what} is too large")));
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("the {what} is not valid: {e}")))
    }

    /// Fetches discovery and the key set now.
    async fn fetch_keys(&self) -> Result<usize, AuthError> {
        let discovery: Discovery = self.get_json(&self.settings.discovery_url(), "OpenID configuration").await?;
        // A discovery document for another tenant or authority must not redirect our trust.
        let expected = format!("{}/v2.0", self.settings.authority);
        let issuer = discovery.issuer.replace("{tenantid}", &self.settings.tenant.to_string());
        if issuer != expected {
            return Err(unavailable(format!("the OpenID configuration names issuer `{issuer}`, not `{expected}`")));
        }
        let jwks_uri = crate::endpoint::parse(&discovery.jwks_uri)
            .map(|url| url.to_string())
            .map_err(|e| unavailable(format!("the OpenID configuration's jwks_uri {e}")))?;
        let keys: JwkSet = self.get_json(&jwks_uri, "signing keys").await?;
        self.validator.replace_keys(&keys).map_err(|e| unavailable(format!("the signing keys: {e}")))
    }

    /// Refreshes the keys if they are missing, stale, or `unknown_kid` says a rotation may have
    /// happened; never more often than `REFRESH_AT_MOST_EVERY`.
    pub async fn refresh(&self, now: DateTime<Utc>, unknown_kid: bool) -> Result<(), AuthError> {
        let mut state = self.state.lock().await;
        let stale = state.fetched_at.is_none_or(|at| now - at >= REFRESH_AT_LEAST_EVERY || now < at);
        if !stale && !unknown_kid {
            return Ok(());
        }
        if state.attempted_at.is_some_and(|at| now >= at && now - at < REFRESH_AT_MOST_EVERY) {
            // Fetched (or tried) a moment ago: what we have is what there is.
            return if state.fetched_at.is_some() {
                Ok(())
            } else {
                Err(unavailable("signing keys not available yet"))
            };
        }
        state.attempted_at = Some(now);
        match self.fetch_keys().await {
            Ok(count) => {
                state.fetched_at = Some(now);
                tracing::info!(keys = count, "Entra signing keys refreshed");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "could not refresh the Entra signing keys");
                if state.fetched_at.is_some() { Ok(()) } else { Err(e) }
            }
        }
    }

    pub fn validate(&self, token: &str, now: DateTime<Utc>) -> Result<Caller, AuthError> {
        self.validator.validate(token, now).map(|c| self.settings.with_mfa_evidence(c))
    }

    pub fn settings(&self) -> &EntraSettings {
        &self.settings
    }
}

#[async_trait]
impl Authenticator for EntraAuthenticator {
    async fn authenticate(&self, credentials: &Credentials, now: DateTime<Utc>) -> Result<Caller, AuthError> {
        let token = credentials.bearer.as_deref().ok_or(AuthError::Missing)?;
        let unknown_kid = self.validator.unknown_key_id(token).is_some();
        self.refresh(now, unknown_kid).await?;
        self.validate(token, now)
    }
}
