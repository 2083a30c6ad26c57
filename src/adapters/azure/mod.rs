//! Plumbing shared by the adapters that call Azure REST APIs (ARM today, Table Storage next):
//! the azure_core 1.x pipeline over reqwest with rustls (ring, no OpenSSL), bearer tokens from
//! azure_identity, and retries that honour `Retry-After` behind one throttle gate shared by every
//! caller of a client, so a 429 slows all workers rather than one.
//!
//! Must never log a token, a request body or a query string: they may carry secrets.

pub mod credential;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions, Transport, Url,
};

pub use retry::{RetryPolicy, Throttle, parse_retry_after};

/// Installs rustls' ring provider as the process default. azure_core builds reqwest clients that
/// need one (it panics without), so this runs before any client or credential is made. Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client for the azure_core pipeline: rustls with ring, no redirects, bounded connects.
pub fn http_transport() -> Result<Transport, AzureError> {
    install_tls_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| AzureError::Setup(format!("cannot build the HTTP client: {e}")))?;
    Ok(Transport::new(Arc::new(client)))
}

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// Throttling, 5xx, timeouts, dropped connections, unavailable credentials: worth retrying
    /// later. The message names the operation, never a secret.
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Setup(String),
}

/// An HTTP answer, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header by name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Calls one Azure service with tokens for `token_scope`.
pub struct AzureClient {
    pipeline: Pipeline,
    credential: Arc<dyn TokenCredential>,
    token_scope: String,
    throttle: Throttle,
    retry: RetryPolicy,
}

impl AzureClient {
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        token_scope: &str,
        retry: RetryPolicy,
    ) -> Result<Self, AzureError> {
        let options = ClientOptions {
            transport: Some(http_transport()?),
            // Retries are ours: they share the throttle gate across workers and bound the total.
            retry: RetryOptions::none(),
            ..Default::default()
        };
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            Vec::new(),
            None,
        );
        Ok(Self { pipeline, credential, token_scope: token_scope.to_owned(), throttle: Throttle::default(), retry })
    }

    /// Sends a request, retrying 429 (after `Retry-After`, holding every worker back), 500, 502,
    /// 503, 504, timeouts and dropped connections with jittered backoff, up to the policy's bounds.
    /// Any other answer is returned as it is. `what` names the operation in errors and logs.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Reply, AzureError> {
        let started = tokio::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let left = self.retry.max_total.saturating_sub(started.elapsed());
            if !self.throttle.wait_at_most(left).await {
                return Err(AzureError::Transient(format!(
                    "{what}: throttled by Azure for longer than this call may wait"
                )));
            }
            let problem = match self.send_once(method, url, body).await {
                Ok(reply) if reply.status == 429 => {
                    let wait = reply
                        .header("retry-after")
                        .and_then(parse_retry_after)
                        .unwrap_or_else(|| self.retry.backoff(attempt));
                    self.throttle.hold(wait);
                    tracing::warn!(
                        operation = what,
                        wait_ms = wait.as_millis() as u64,
                        "throttled (429): every worker waits"
                    );
                    format!("throttled (429) after {attempt} attempts")
                }
                Ok(reply) if matches!(reply.status, 500 | 502 | 503 | 504) => {
                    let wait = reply
                        .header("retry-after")
                        .and_then(parse_retry_after)
                        .unwrap_or_default()
                        .max(self.retry.backoff(attempt));
                    tracing::warn!(operation = what, status = reply.status, attempt, "server error; retrying");
                    if self.retry.allows(attempt, started.elapsed() + wait) {
                        tokio::time::sleep(wait).await;
                    }
                    format!("HTTP {} after {attempt} attempts", reply.status)
                }
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    let wait = self.retry.backoff(attempt);
                    tracing::warn!(operation = what, attempt, error = %e, "request failed; retrying");
                    if self.retry.allows(attempt, started.elapsed() + wait) {
                        tokio::time::sleep(wait).await;
                    }
                    e
                }
            };
            if !self.retry.allows(attempt, started.elapsed()) {
                return Err(AzureError::Transient(format!("{what}: {problem}")));
            }
        }
    }

    /// Whether a 429 is holding every caller back right now.
    pub fn is_throttled(&self) -> bool {
        self.throttle.is_holding()
    }

    async fn send_once(&self, method: Method, url: &Url, body: Option<&serde_json::Value>) -> Result<Reply, String> {
        let token = self
            .credential
            .get_token(&[self.token_scope.as_str()], None)
            .await
            .map_err(|e| format!("no access token for `{}`: {e}", self.token_scope))?;
        let mut request = Request::new(url.clone(), method);
        // Set here rather than by azure_core's bearer policy, which refuses the plain-http loopback
        // endpoints of emulators and tests (azure-spec §4.2); https is enforced by configuration.
        request.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        request.insert_header("accept", "application/json");
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(serde_json::to_vec(body).map_err(|e| format!("cannot encode the request: {e}"))?);
        }
        let options = PipelineSendOptions { skip_checks: true, ..Default::default() };
        let sent = tokio::time::timeout(
            self.retry.request_timeout,
            self.pipeline.send(&Context::new(), &mut request, Some(options)),
        )
        .await
        .map_err(|_| format!("no answer within {} s", self.retry.request_timeout.as_secs()))?
        .map_err(|e| format!("request failed: {e}"))?;
        let (status, headers, body) = sent.deconstruct();
        let headers = headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned())).collect();
        Ok(Reply { status: u16::from(status), headers, body: body.as_ref().to_vec() })
    }
}
