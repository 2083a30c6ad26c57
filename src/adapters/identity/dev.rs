//! The `dev` identity: a local token issuer for running Elevate on a laptop.
//!
//! The RSA key is generated on first use and kept in a file (0600) that the server and
//! `elevate token` share. The server validates these tokens with the very `JwtValidator` that
//! validates Entra tokens. Exists only in `dev` mode, which refuses to start on App Service.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::ids::TenantId;
use crate::service::ports::AuthError;

use super::jwt::JwtValidator;

pub const DEV_ISSUER: &str = "https://elevate.invalid/dev-issuer/v2.0";
pub const DEV_AUDIENCE: &str = "api://elevate-dev";
pub const DEV_TENANT: &str = "de7e1e7a-0000-4000-8000-000000000001";

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error("dev issuer key `{path}`: {message}")]
    Key { path: PathBuf, message: String },
    #[error("signing a dev token: {0}")]
    Sign(String),
}

/// The dev issuer: signs tokens, publishes its key set.
pub struct DevIssuer {
    encoding: EncodingKey,
    kid: String,
    jwks: JwkSet,
}

/// What a dev token says about its holder.
#[derive(Clone, Debug, Default)]
pub struct DevTokenRequest {
    pub object_id: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub mfa: bool,
    pub auth_contexts: Vec<String>,
    /// Mint an app-only token for this client id (a broker), instead of a user token.
    pub app_id: Option<String>,
    /// Stand for a user in over 200 groups: no `groups` claim, Entra's overage pointer instead.
    pub groups_overage: bool,
    pub lifetime: TimeDelta,
}

impl DevIssuer {
    /// Loads the key, generating it (2048-bit RSA, file mode 0600) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, DevIssuerError> {
        let fail = |message: String| DevIssuerError::Key { path: path.to_owned(), message };
        let pem = match std::fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(path).map_err(fail)?,
            Err(e) => return Err(fail(e.to_string())),
        };
        let key = RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| fail(format!("not a PKCS#8 RSA key: {e}")))?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let kid: String = Sha256::digest(n.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        let jwks: JwkSet = serde_json::from_value(json!({
            "keys": [{ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e }]
        }))
        .map_err(|e| fail(e.to_string()))?;
        Ok(Self { encoding, kid, jwks })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn tenant() -> TenantId {
        TenantId::parse(DEV_TENANT).unwrap_or_else(|_| TenantId::from(uuid::Uuid::nil()))
    }

    /// The validator for this issuer's tokens.
    pub fn validator(&self) -> Result<JwtValidator, AuthError> {
        JwtValidator::new(vec![DEV_ISSUER.to_owned()], vec![DEV_AUDIENCE.to_owned()], Self::tenant(), &self.jwks)
    }

    /// Signs a v1-shaped access token (so `amr` can carry MFA evidence).
    pub fn mint(&self, request: &DevTokenRequest, now: DateTime<Utc>) -> Result<String, DevIssuerError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let mut claims = json!({
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "tid": DEV_TENANT,
            "oid": request.object_id,
            "sub": request.object_id,
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": (now + request.lifetime).timestamp(),
            "ver": "1.0",
            "roles": request.roles,
        });
        let map = claims.as_object_mut().ok_or_else(|| DevIssuerError::Sign("claims".into()))?;
        if let Some(name) = &request.name {
            map.insert("name".into(), json!(name));
        }
        match &request.app_id {
            Some(app) => {
                map.insert("appid".into(), json!(app));
                map.insert("idtyp".into(), json!("app"));
            }
            None => {
                map.insert("appid".into(), json!("elevate-dev-cli"));
                map.insert("scp".into(), json!("access_as_user"));
                map.insert("amr".into(), json!(if request.mfa { vec!["pwd", "mfa"] } else { vec!["pwd"] }));
                if request.groups_overage {
                    map.insert("_claim_names".into(), json!({"groups": "src1"}));
                    map.insert(
                        "_claim_sources".into(),
                        json!({"src1": {"endpoint": format!("https://graph.microsoft.com/v1.0/users/{}/getMemberObjects", request.object_id)}}),
                    );
                } else if !request.groups.is_empty() {
                    map.insert("groups".into(), json!(request.groups));
                }
                if !request.auth_contexts.is_empty() {
                    map.insert("acrs".into(), json!(request.auth_contexts));
                }
            }
        }
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| DevIssuerError::Sign(e.to_string()))
    }
}

/// Generates a key and writes it with `create_new`, so two processes starting at once agree on
/// one key (the loser reads the winner's).
fn create_key(path: &Path) -> Result<String, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| e.to_string())?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(pem.as_bytes()).map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())?;
            tracing::info!(path = %path.display(), "generated a new dev issuer key");
            Ok(pem.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

impl crate::service::ports::DevIssuerKeys for DevIssuer {
    fn issuer(&self) -> &'static str {
        DEV_ISSUER
    }

    fn key_set(&self) -> serde_json::Value {
        serde_json::to_value(&self.jwks).unwrap_or_else(|_| json!({"keys": []}))
    }

    fn sign_in_token(&self, who: &crate::service::ports::DevSignIn, now: DateTime<Utc>) -> Result<String, String> {
        let request = DevTokenRequest {
            object_id: who.principal_id.to_string(),
            name: who.name.clone(),
            roles: who.roles.clone(),
            groups: Vec::new(),
            mfa: who.mfa,
            auth_contexts: who.auth_contexts.iter().map(ToString::to_string).collect(),
            app_id: None,
            groups_overage: false,
            lifetime: TimeDelta::hours(1),
        };
        self.mint(&request, now).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> (tempfile::TempDir, DevIssuer) {
        let dir = tempfile::tempdir().unwrap();
        let issuer = DevIssuer::load_or_create(&dir.path().join("k.pem")).unwrap();
        (dir, issuer)
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn user(mfa: bool) -> DevTokenRequest {
        DevTokenRequest {
            object_id: "11111111-1111-1111-1111-111111111111".into(),
            mfa,
            lifetime: TimeDelta::hours(1),
            roles: vec!["Elevate.Admin".into()],
            ..Default::default()
        }
    }

    #[test]
    fn minted_tokens_validate_and_carry_claims() {
        let (_d, issuer) = issuer();
        let v = issuer.validator().unwrap();
        let caller = v.validate(&issuer.mint(&user(true), now()).unwrap(), now()).unwrap();
        assert_eq!(caller.principal_id.to_string(), "11111111-1111-1111-1111-111111111111");
        assert!(caller.mfa);
        assert!(!caller.app_only);
        assert!(caller.is_admin());
        assert!(!v.validate(&issuer.mint(&user(false), now()).unwrap(), now()).unwrap().mfa);
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let (_d, issuer) = issuer();
        let v = issuer.validator().unwrap();
        let token = issuer.mint(&user(true), now()).unwrap();
        assert!(v.validate(&token, now() + TimeDelta::hours(2)).is_err());
        assert!(v.validate(&token, now() - TimeDelta::hours(1)).is_err());
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let (_d, a) = issuer();
        let (_e, b) = issuer();
        let token = b.mint(&user(true), now()).unwrap();
        assert!(a.validator().unwrap().validate(&token, now()).is_err());
    }

    #[test]
    fn unsigned_and_hmac_tokens_are_refused() {
        let (_d, issuer) = issuer();
        let v = issuer.validator().unwrap();
        let token = issuer.mint(&user(true), now()).unwrap();
        let mut parts = token.split('.');
        let (_, payload) = (parts.next().unwrap(), parts.next().unwrap());
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#));
        assert!(v.validate(&none, now()).is_err());
        let hs = format!("{}.{payload}.c2ln", URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"x"}"#));
        assert!(v.validate(&hs, now()).is_err());
        let tampered = token.replacen(payload, &URL_SAFE_NO_PAD.encode(br#"{"oid":"x"}"#), 1);
        assert!(v.validate(&tampered, now()).is_err());
    }

    #[test]
    fn the_key_is_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let a = DevIssuer::load_or_create(&path).unwrap();
        let b = DevIssuer::load_or_create(&path).unwrap();
        assert_eq!(a.kid, b.kid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
