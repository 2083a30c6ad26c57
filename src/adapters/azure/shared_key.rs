//! Storage SharedKey signatures (azure-spec §5.2, §6): what Azurite and storage connection
//! strings use. Azure accounts deployed by `infra/` have shared keys off and get Entra tokens
//! instead. The Table service and the Queue service sign different strings:
//!
//! - Table: VERB \n Content-MD5 \n Content-Type \n x-ms-date \n CanonicalizedResource, where
//!   CanonicalizedResource = "/" account path [?comp=value].
//! - Queue (the Blob/Queue/File rules, version 2009-09-19 and later): VERB, Content-Encoding,
//!   Content-Language, Content-Length (empty when 0), Content-MD5, Content-Type, Date (empty: we
//!   send `x-ms-date`), If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range,
//!   each followed by \n; then CanonicalizedHeaders (every `x-ms-*` header, `name:value\n`,
//!   sorted by lower-case name); then "/" account path, and for each query parameter, sorted by
//!   lower-case name, "\n" name ":" its URL-decoded values, sorted and comma-joined.
//!
//! Must never log or print the key; `Debug` redacts it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use azure_core::http::{Method, Url};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::Clock;

/// Which service a key signs for: their strings-to-sign differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Table,
    /// The Blob/Queue rules (also used by the Blob and File services).
    Queue,
}

/// An account name and its key. The key never appears in `Debug` output or logs.
#[derive(Clone)]
pub struct SharedKey {
    account: String,
    /// Keyed with the account key.
    mac: Hmac<Sha256>,
    /// The wall clock: the service refuses a date far from its own.
    clock: Arc<dyn Clock>,
    service: Service,
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKey")
            .field("account", &self.account)
            .field("key", &"<redacted>")
            .field("service", &self.service)
            .finish()
    }
}

/// The standard headers the Queue string-to-sign holds, in order, after the verb. Content-Length
/// is taken from the body and Date is always empty (`x-ms-date` is sent instead).
const QUEUE_SIGNED_HEADERS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

impl SharedKey {
    /// A key for the Table service; `key` is the base64 account key of a connection string.
    pub fn new(account: &str, key: &str, clock: Arc<dyn Clock>) -> Result<Self, String> {
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("`{account}` is not a storage account name"));
        }
        let key = STANDARD.decode(key.trim()).map_err(|_| "the account key is not base64".to_owned())?;
        if key.is_empty() {
            return Err("the account key is empty".into());
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| "the account key is unusable".to_owned())?;
        Ok(Self { account: account.to_owned(), mac, clock, service: Service::Table })
    }

    /// The same key, signing the way `service` checks.
    pub fn for_service(mut self, service: Service) -> Self {
        self.service = service;
        self
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// The `x-ms-date` value and the `Authorization` header for one attempt. `headers` are the
    /// request's headers as they will be sent, but for `x-ms-date` and `authorization` (names in
    /// any case); `content_length` is the body's length in bytes.
    // INVARIANT: every `x-ms-*` header the request carries is in `headers`: the Queue service
    // signs them all, so one added after signing (as azure_core's `x-ms-client-request-id`
    // policy would) breaks the signature. AzureClient sets that one before signing.
    pub fn sign(&self, method: Method, url: &Url, headers: &[(&str, &str)], content_length: usize) -> (String, String) {
        let date = self.clock.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let to_sign = match self.service {
            Service::Table => table_string_to_sign(&self.account, method, url, headers, &date),
            Service::Queue => queue_string_to_sign(&self.account, method, url, headers, content_length, &date),
        };
        let mut mac = self.mac.clone();
        mac.update(to_sign.as_bytes());
        let signature = STANDARD.encode(mac.finalize().into_bytes());
        (date, format!("SharedKey {}:{signature}", self.account))
    }
}

/// A header's value by name, case-insensitively; repeated headers comma-joined.
fn header_value(headers: &[(&str, &str)], name: &str) -> String {
    let values: Vec<&str> =
        headers.iter().filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()).collect();
    values.join(",")
}

fn table_string_to_sign(account: &str, method: Method, url: &Url, headers: &[(&str, &str)], date: &str) -> String {
    let content_type = header_value(headers, "content-type");
    let mut resource = format!("/{account}{}", url.path());
    if let Some((_, comp)) = url.query_pairs().find(|(k, _)| k == "comp") {
        resource.push_str("?comp=");
        resource.push_str(&comp);
    }
    format!("{method}\n\n{content_type}\n{date}\n{resource}")
}

fn queue_string_to_sign(
    account: &str,
    method: Method,
    url: &Url,
    headers: &[(&str, &str)],
    content_length: usize,
    date: &str,
) -> String {
    let mut out = format!("{method}\n");
    for name in QUEUE_SIGNED_HEADERS {
        let value = match name {
            // Version 2015-02-21 and later: a zero length is signed as an empty string.
            "content-length" if content_length == 0 => String::new(),
            "content-length" => content_length.to_string(),
            // Signed empty: `x-ms-date` takes its place among the canonicalized headers.
            "date" => String::new(),
            _ => header_value(headers, name),
        };
        out.push_str(&value);
        out.push('\n');
    }
    // CanonicalizedHeaders: lower-case names, sorted, each once; values trimmed and their runs of
    // whitespace folded to one space.
    let mut canonical: BTreeMap<String, Vec<String>> = BTreeMap::new();
    canonical.insert("x-ms-date".to_owned(), vec![date.to_owned()]);
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        if name.starts_with("x-ms-") && name != "x-ms-date" {
            canonical.entry(name).or_default().push(value.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    for (name, values) in &canonical {
        out.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // CanonicalizedResource: the encoded path, then the decoded query parameters.
    out.push_str(&format!("/{account}{}", url.path()));
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in url.query_pairs() {
        query.entry(name.to_lowercase()).or_default().push(value.into_owned());
    }
    for (name, mut values) in query {
        values.sort();
        out.push_str(&format!("\n{name}:{}", values.join(",")));
    }
    out
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
        // Neither the `x-ms-*` headers nor the length are part of the Table string.
        let headers =
            [("Content-Type", "application/json"), ("x-ms-version", "2019-02-02"), ("x-ms-client-request-id", "r1")];
        let (date, header) = key().sign(Method::Post, &url, &headers, 17);
        assert_eq!(date, "Wed, 25 Nov 2026 12:33:26 GMT");
        // Recomputed independently of `sign`, over the documented string.
        let to_sign =
            "POST\n\napplication/json\nWed, 25 Nov 2026 12:33:26 GMT\n/devstoreaccount1/devstoreaccount1/Tables?comp=x";
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&STANDARD.decode(DEV_KEY).unwrap()).unwrap();
        mac.update(to_sign.as_bytes());
        let expected = STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(header, format!("SharedKey devstoreaccount1:{expected}"));
    }

    fn hmac_of(to_sign: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&STANDARD.decode(DEV_KEY).unwrap()).unwrap();
        mac.update(to_sign.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn the_string_to_sign_follows_the_queue_rules() {
        let key = key().for_service(Service::Queue);
        let url = Url::parse(
            "http://127.0.0.1:10001/devstoreaccount1/revocations/messages?visibilitytimeout=3600&messagettl=-1&PopReceipt=a%2Bb%2Fc%3D&comp=z&comp=a",
        )
        .unwrap();
        let headers = [
            ("Content-Type", "application/xml"),
            ("accept", "application/xml"),
            ("X-MS-Version", "2021-12-02"),
            ("x-ms-client-request-id", "  id  with   spaces "),
            ("user-agent", "elevate"),
        ];
        let (date, header) = key.sign(Method::Post, &url, &headers, 74);
        assert_eq!(date, "Wed, 25 Nov 2026 12:33:26 GMT");
        // Written out by hand from the documented rules: 11 standard headers after the verb
        // (Content-Length 74, Content-Type, Date empty), the x-ms-* headers sorted by lower-case
        // name, the path-style resource, then the lower-cased, decoded, sorted query parameters
        // with repeated values sorted and comma-joined.
        let to_sign = "POST\n\n\n74\n\napplication/xml\n\n\n\n\n\n\n\
            x-ms-client-request-id:id with spaces\n\
            x-ms-date:Wed, 25 Nov 2026 12:33:26 GMT\n\
            x-ms-version:2021-12-02\n\
            /devstoreaccount1/devstoreaccount1/revocations/messages\n\
            comp:a,z\n\
            messagettl:-1\n\
            popreceipt:a+b/c=\n\
            visibilitytimeout:3600";
        assert_eq!(header, format!("SharedKey devstoreaccount1:{}", hmac_of(to_sign)));
    }

    #[test]
    fn a_queue_request_without_a_body_signs_an_empty_length() {
        let queue_key = key().for_service(Service::Queue);
        let url = Url::parse("https://acct.queue.core.windows.net/jobs").unwrap();
        let (_, header) = queue_key.sign(Method::Put, &url, &[("x-ms-version", "2021-12-02")], 0);
        let to_sign = "PUT\n\n\n\n\n\n\n\n\n\n\n\n\
            x-ms-date:Wed, 25 Nov 2026 12:33:26 GMT\nx-ms-version:2021-12-02\n/devstoreaccount1/jobs";
        assert_eq!(header, format!("SharedKey devstoreaccount1:{}", hmac_of(to_sign)));
        // The Table rules sign something else for the same request.
        let (_, table) = key().sign(Method::Put, &url, &[("x-ms-version", "2021-12-02")], 0);
        assert_ne!(table, header);
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
