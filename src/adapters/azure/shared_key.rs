//! Storage SharedKey signatures for the Table service (azure-spec §5.2): what Azurite and
//! storage connection strings use. Azure accounts deployed by `infra/` have shared keys off and
//! get Entra tokens instead.
//!
//! StringToSign = VERB \n Content-MD5 \n Content-Type \n x-ms-date \n CanonicalizedResource,
//! where CanonicalizedResource = "/" account path [?comp=value].

use std::fmt;
use std::sync::Arc;

use azure_core::http::{Method, Url};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::Clock;

/// An account name and its key. The key never appears in `Debug` output or logs.
#[derive(Clone)]
pub struct SharedKey {
    account: String,
    /// Keyed with the account key.
    mac: Hmac<Sha256>,
    /// The wall clock: the service refuses a date far from its own.
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKey").field("account", &self.account).field("key", &"<redacted>").finish()
    }
}

impl SharedKey {
    /// `key` is the base64 account key of a connection string.
    pub fn new(account: &str, key: &str, clock: Arc<dyn Clock>) -> Result<Self, String> {
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("`{account}` is not a storage account name"));
        }
        let key = STANDARD.decode(key.trim()).map_err(|_| "the account key is not base64".to_owned())?;
        if key.is_empty() {
            return Err("the account key is empty".into());
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| "the account key is unusable".to_owned())?;
        Ok(Self { account: account.to_owned(), mac, clock })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The `x-ms-date` value and the `Authorization` header for one attempt.
    pub fn sign(&self, method: Method, url: &Url, content_type: &str) -> (String, String) {
        let date = self.clock.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let signature = self.signature(method, url, content_type, &date);
        (date, format!("SharedKey {}:{signature}", self.account))
    }

    fn signature(&self, method: Method, url: &Url, content_type: &str, date: &str) -> String {
        let mut resource = format!("/{}{}", self.account, url.path());
        if let Some((_, comp)) = url.query_pairs().find(|(k, _)| k == "comp") {
            resource.push_str("?comp=");
            resource.push_str(&comp);
        }
        let to_sign = format!("{method}\n\n{content_type}\n{date}\n{resource}");
        let mut mac = self.mac.clone();
        mac.update(to_sign.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Azurite's well-known development key (public, from its README).
    const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn key() -> SharedKey {
        let clock = Arc::new(ManualClock::new("2026-11-25T12:33:26Z".parse().unwrap()));
        SharedKey::new("devstoreaccount1", DEV_KEY, clock).unwrap()
    }

    #[test]
    fn the_string_to_sign_follows_the_table_rules() {
        let url = Url::parse("http://127.0.0.1:10002/devstoreaccount1/Tables?comp=x&$top=1").unwrap();
        let (date, header) = key().sign(Method::Post, &url, "application/json");
        assert_eq!(date, "Wed, 25 Nov 2026 12:33:26 GMT");
        // Recomputed independently of `signature`, over the documented string.
        let to_sign =
            "POST\n\napplication/json\nWed, 25 Nov 2026 12:33:26 GMT\n/devstoreaccount1/devstoreaccount1/Tables?comp=x";
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&STANDARD.decode(DEV_KEY).unwrap()).unwrap();
        mac.update(to_sign.as_bytes());
        let expected = STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(header, format!("SharedKey devstoreaccount1:{expected}"));
    }

    #[test]
    fn the_key_stays_out_of_debug_output() {
        let shown = format!("{:?}", key());
        assert!(!shown.contains("Eby8"), "{shown}");
        assert!(shown.contains("devstoreaccount1"));
    }

    #[test]
    fn bad_accounts_and_keys_are_refused() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new("2026-11-25T12:00:00Z".parse().unwrap()));
        assert!(SharedKey::new("dev/store", DEV_KEY, Arc::clone(&clock)).is_err());
        assert!(SharedKey::new("dev", "not base64!", Arc::clone(&clock)).is_err());
        assert!(SharedKey::new("", DEV_KEY, clock).is_err());
    }
}
