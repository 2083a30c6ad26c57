//! A local stand-in for Entra ID's token issuer (azure-spec §2.5): OIDC discovery at
//! `{authority}/v2.0/.well-known/openid-configuration`, a JWKS that can rotate, and tokens with
//! whatever claims and header a test wants, forgeries included.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use super::fake_http::{FakeReply, Handler, serve};

pub const TENANT: &str = "5b51c641-0711-41d2-ac58-d90390d94a00";
pub const CLIENT_ID: &str = "820645d3-b0de-4dc2-a606-24b1b8b437bb";

pub struct SigningKey {
    pub kid: String,
    private: RsaPrivateKey,
}

impl SigningKey {
    pub fn generate(kid: &str) -> SigningKey {
        SigningKey { kid: kid.into(), private: RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap() }
    }

    fn jwk(&self) -> Value {
        let public = self.private.to_public_key();
        json!({
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let pem = self.private.to_pkcs8_pem(LineEnding::LF).unwrap();
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()).unwrap()
    }

    /// The public key in PEM: what an attacker signs HS256 tokens with.
    pub fn public_pem(&self) -> String {
        self.private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap()
    }
}

pub struct FakeEntra {
    authority: Mutex<String>,
    keys: Mutex<Vec<Arc<SigningKey>>>,
    key_fetches: Mutex<usize>,
    /// A `jwks_uri` to publish instead of the real one.
    jwks_uri: Mutex<Option<String>>,
}

impl FakeEntra {
    pub async fn start() -> Arc<FakeEntra> {
        let fake = Arc::new(FakeEntra {
            authority: Mutex::new(String::new()),
            keys: Mutex::new(vec![Arc::new(SigningKey::generate("key-1"))]),
            key_fetches: Mutex::new(0),
            jwks_uri: Mutex::new(None),
        });
        let for_handler = Arc::clone(&fake);
        let handler: Handler = Arc::new(move |req| {
            let fake = Arc::clone(&for_handler);
            Box::pin(async move {
                let authority = fake.authority();
                if req.path == format!("/{TENANT}/v2.0/.well-known/openid-configuration") {
                    let base = authority.trim_end_matches(&format!("/{TENANT}")).to_owned();
                    FakeReply::json(
                        200,
                        &json!({
                            "issuer": format!("{base}/{{tenantid}}/v2.0"),
                            "jwks_uri": fake.jwks_uri.lock().unwrap().clone().unwrap_or_else(|| format!("{authority}/discovery/v2.0/keys")),
                            "token_endpoint": format!("{authority}/oauth2/v2.0/token"),
                            "id_token_signing_alg_values_supported": ["RS256"],
                        }),
                    )
                } else if req.path == format!("/{TENANT}/discovery/v2.0/keys") {
                    *fake.key_fetches.lock().unwrap() += 1;
                    let keys: Vec<Value> = fake.keys.lock().unwrap().iter().map(|k| k.jwk()).collect();
                    FakeReply::json(200, &json!({ "keys": keys }))
                } else {
                    FakeReply::empty(404)
                }
            })
        });
        let (addr, _task) = serve(handler).await;
        *fake.authority.lock().unwrap() = format!("http://{addr}/{TENANT}");
        fake
    }

    /// Publishes `uri` as the discovery document's `jwks_uri` (a poisoned document).
    pub fn set_jwks_uri(&self, uri: &str) {
        *self.jwks_uri.lock().unwrap() = Some(uri.to_owned());
    }

    pub fn authority(&self) -> String {
        self.authority.lock().unwrap().clone()
    }

    pub fn key(&self) -> Arc<SigningKey> {
        Arc::clone(&self.keys.lock().unwrap()[0])
    }

    /// Publishes a further key (rotation); tokens signed with it verify once keys are refetched.
    pub fn rotate_in(&self, key: SigningKey) -> Arc<SigningKey> {
        let key = Arc::new(key);
        self.keys.lock().unwrap().push(Arc::clone(&key));
        key
    }

    pub fn key_fetches(&self) -> usize {
        *self.key_fetches.lock().unwrap()
    }

    pub fn v2_issuer(&self) -> String {
        format!("{}/v2.0", self.authority())
    }
}

/// Claims of a v2 user token for the API, valid around `now`.
pub fn v2_claims(issuer: &str, oid: &str, now: DateTime<Utc>) -> Value {
    json!({
        "aud": CLIENT_ID, "iss": issuer, "tid": TENANT, "oid": oid, "sub": "s", "ver": "2.0",
        "iat": now.timestamp(), "nbf": now.timestamp(), "exp": (now + TimeDelta::hours(1)).timestamp(),
        "name": "Alice", "scp": "user_impersonation", "azp": "00000000-0000-0000-0000-00000000c11e",
        "acrs": ["c1"],
    })
}

/// Claims of a v1 user token: App ID URI audience, sts.windows.net issuer, `amr` with MFA.
pub fn v1_claims(oid: &str, now: DateTime<Utc>) -> Value {
    json!({
        "aud": format!("api://{CLIENT_ID}"), "iss": format!("https://sts.windows.net/{TENANT}/"), "tid": TENANT,
        "oid": oid, "ver": "1.0", "iat": now.timestamp(), "nbf": now.timestamp(),
        "exp": (now + TimeDelta::hours(1)).timestamp(), "amr": ["pwd", "mfa"], "scp": "user_impersonation",
        "appid": "00000000-0000-0000-0000-00000000c11e",
    })
}

/// `alg: none`, unsigned.
pub fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// HS256 with the issuer's public key as the HMAC secret (the classic key-confusion forgery).
pub fn hs256_with_public_key(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key.public_pem().as_bytes())).unwrap()
}

/// A signed token whose payload was then replaced: the signature no longer matches.
pub fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2])
}
