//! Notification sinks: a Teams Workflows webhook (Adaptive Cards) and a CloudEvents webhook for
//! Logic Apps and anything else. Both are plain HTTPS POSTs of JSON.
//!
//! Webhook URLs carry SAS signatures (`sig=`): the whole URL is a secret. It never appears in a
//! log, an error or `Debug` output; only its host does.

pub mod events;
pub mod teams;

use std::fmt;
use std::time::Duration;

use crate::adapters::azure::parse_retry_after;
use crate::service::ports::DeliveryError;

/// A webhook URL: https, or http to loopback (tests, local receivers). Shown by host only.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: String,
    host: String,
}

impl WebhookUrl {
    /// Takes a URL that meets the endpoint rule (`crate::endpoint`: https, or http to loopback).
    pub fn new(url: &str) -> Result<Self, String> {
        let parsed = crate::endpoint::parse(url).map_err(|e| e.to_string())?;
        let host = parsed.host_str().ok_or_else(|| "the URL has no host".to_owned())?.to_owned();
        Ok(Self { url: url.trim().to_owned(), host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn expose(&self) -> &str {
        &self.url
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({}/<redacted>)", self.host)
    }
}

/// An HTTP client for webhooks: rustls with ring, no redirects (a redirect could carry the
/// signature elsewhere), bounded connects and answers.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    crate::adapters::azure::install_tls_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
}

/// POSTs `body` and reads the answer: any 2xx is taken. Errors name the host, never the URL.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &WebhookUrl,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(), DeliveryError> {
    let mut request = client.post(url.expose()).header("content-type", content_type).body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.map_err(|e| DeliveryError {
        // reqwest's error text can include the URL: keep only its kind.
        message: format!(
            "POST to {} failed: {}",
            url.host(),
            if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "request error"
            }
        ),
        retry_after: None,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    Err(DeliveryError { message: format!("POST to {} answered HTTP {}", url.host(), status.as_u16()), retry_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_never_shows() {
        let url = WebhookUrl::new("https://prod-03.westus.logic.azure.com:443/workflows/1/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers&sv=1.0&sig=SECRETSIG").unwrap();
        assert_eq!(url.host(), "prod-03.westus.logic.azure.com");
        let shown = format!("{url:?}");
        assert!(!shown.contains("SECRETSIG") && !shown.contains("workflows"), "{shown}");
        assert!(WebhookUrl::new("ftp://x/y").is_err());
    }
}
