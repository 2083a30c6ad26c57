//! Plumbing shared by the adapters that call Azure REST APIs (ARM, Table and Queue Storage): the
//! azure_core 1.x pipeline over reqwest with rustls (ring, no OpenSSL), bearer tokens from
//! azure_identity or Storage SharedKey signatures (Azurite, connection strings), and retries that honour `Retry-After` behind one throttle gate shared by every
//! caller of a client, so a 429 slows all workers rather than one.
//!
//! Must never log a token, a request body or a query string: they may carry secrets.

pub mod credential;
mod retry;
pub mod shared_key;

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions, Transport, Url,
};

pub use retry::{RetryPolicy, Throttle, parse_retry_after};
pub use shared_key::SharedKey;

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

/// How a request that must not be repeated blindly ended.
#[derive(Debug)]
pub enum Delivery {
    /// The server answered (any status but 429).
    Answered(Reply),
    /// No answer came (a timeout, a dropped connection): the request may have been applied.
    Unanswered(String),
}

/// Why one attempt got no answer, and whether it may have reached the server.
struct NoAnswer {
    message: String,
    maybe_sent: bool,
}

impl NoAnswer {
    fn not_sent(message: String) -> Self {
        Self { message, maybe_sent: false }
    }
    fn maybe_sent(message: String) -> Self {
        Self { message, maybe_sent: true }
    }
}

/// A JSON body as the pipeline sends it.
fn encode(body: Option<&serde_json::Value>, what: &str) -> Result<Option<(String, Vec<u8>)>, AzureError> {
    body.map(|value| {
        serde_json::to_vec(value)
            .map(|bytes| ("application/json".to_owned(), bytes))
            .map_err(|e| AzureError::Setup(format!("{what}: cannot encode the request: {e}")))
    })
    .transpose()
}

/// How requests prove who sends them.
pub enum Signer {
    /// An Entra access token for `scope` from azure_identity.
    Bearer { credential: Arc<dyn TokenCredential>, scope: String },
    /// Storage SharedKey (Azurite and connection strings; Azure accounts with shared keys off
    /// refuse it).
    SharedKey(SharedKey),
}

/// A request to send: headers beyond `accept` and authorization, and an optional body.
pub struct Outgoing<'a> {
    pub method: Method,
    pub url: &'a Url,
    pub headers: Vec<(&'static str, String)>,
    /// Content type and bytes.
    pub body: Option<(String, Vec<u8>)>,
    pub accept: &'static str,
}

/// Calls one Azure service.
pub struct AzureClient {
    pipeline: Pipeline,
    signer: Signer,
    throttle: Throttle,
    retry: RetryPolicy,
}

impl AzureClient {
    /// A client sending bearer tokens for `token_scope`.
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        token_scope: &str,
        retry: RetryPolicy,
    ) -> Result<Self, AzureError> {
        Self::with_signer(Signer::Bearer { credential, scope: token_scope.to_owned() }, retry)
    }

    pub fn with_signer(signer: Signer, retry: RetryPolicy) -> Result<Self, AzureError> {
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
        Ok(Self { pipeline, signer, throttle: Throttle::default(), retry })
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
        let body = encode(body, what)?;
        self.send_request(&Outgoing { method, url, headers: Vec::new(), body, accept: "application/json" }, what).await
    }

    /// [`AzureClient::send`] for a request that must not be repeated blindly (a Graph `POST` that
    /// creates: a repeat of one that had landed is a duplicate). Only what the server certainly did
    /// not apply is retried here: a 429 (after `Retry-After`, holding every worker back), and an
    /// attempt that never left for want of a token. Every other answer, 5xx included, is returned
    /// as it is, and an attempt that got no answer is [`Delivery::Unanswered`]: it may have been
    /// applied, and only the caller can find out (by reading) before it tries again.
    pub async fn send_unrepeatable(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Delivery, AzureError> {
        let body = encode(body, what)?;
        let outgoing = Outgoing { method, url, headers: Vec::new(), body, accept: "application/json" };
        let started = tokio::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.wait_out_throttle(started, what).await?;
            let problem = match self.send_once(&outgoing).await {
                Ok(reply) if reply.status == 429 => self.throttled(&reply, attempt, what),
                Ok(reply) => return Ok(Delivery::Answered(reply)),
                Err(e) if e.maybe_sent => {
                    tracing::warn!(operation = what, attempt, error = %e.message, "no answer; the request may have been applied");
                    return Ok(Delivery::Unanswered(format!("{what}: {}", e.message)));
                }
                Err(e) => {
                    tracing::warn!(operation = what, attempt, error = %e.message, "request not sent; retrying");
                    self.pause(attempt, started, self.retry.backoff(attempt), what, &e.message).await?;
                    e.message
                }
            };
            if !self.retry.allows(attempt, started.elapsed()) {
                return Err(AzureError::Transient(format!("{what}: {problem}")));
            }
        }
    }

    /// Waits while a 429 holds every worker back — or gives up if that outlasts the call's budget.
    async fn wait_out_throttle(&self, started: tokio::time::Instant, what: &str) -> Result<(), AzureError> {
        let left = self.retry.max_total.saturating_sub(started.elapsed());
        if self.throttle.wait_at_most(left).await {
            Ok(())
        } else {
            Err(AzureError::Transient(format!("{what}: throttled by Azure for longer than this call may wait")))
        }
    }

    /// Waits `wait` before the next attempt — or gives up now if that wait would take the call
    /// past its budget: retrying sooner than the server asked only prolongs its trouble.
    async fn pause(
        &self,
        attempt: u32,
        started: tokio::time::Instant,
        wait: std::time::Duration,
        what: &str,
        problem: &str,
    ) -> Result<(), AzureError> {
        if !self.retry.allows(attempt, started.elapsed() + wait) {
            return Err(AzureError::Transient(format!("{what}: {problem}")));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Holds every worker back for a 429's `Retry-After` (or backoff); what to report if it persists.
    fn throttled(&self, reply: &Reply, attempt: u32, what: &str) -> String {
        let wait =
            reply.header("retry-after").and_then(parse_retry_after).unwrap_or_else(|| self.retry.backoff(attempt));
        self.throttle.hold(wait);
        tracing::warn!(operation = what, wait_ms = wait.as_millis() as u64, "throttled (429): every worker waits");
        format!("throttled (429) after {attempt} attempts")
    }

    /// [`AzureClient::send`] for any request.
    pub async fn send_request(&self, outgoing: &Outgoing<'_>, what: &str) -> Result<Reply, AzureError> {
        let started = tokio::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.wait_out_throttle(started, what).await?;
            let problem = match self.send_once(outgoing).await {
                Ok(reply) if reply.status == 429 => self.throttled(&reply, attempt, what),
                Ok(reply) if matches!(reply.status, 500 | 502 | 503 | 504) => {
                    let wait = reply
                        .header("retry-after")
                        .and_then(parse_retry_after)
                        .unwrap_or_default()
                        .max(self.retry.backoff(attempt));
                    tracing::warn!(operation = what, status = reply.status, attempt, "server error; retrying");
                    let problem = format!("HTTP {} after {attempt} attempts", reply.status);
                    self.pause(attempt, started, wait, what, &problem).await?;
                    problem
                }
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    tracing::warn!(operation = what, attempt, error = %e.message, "request failed; retrying");
                    self.pause(attempt, started, self.retry.backoff(attempt), what, &e.message).await?;
                    e.message
                }
            };
            if !self.retry.allows(attempt, started.elapsed()) {
                return Err(AzureError::Transient(format!("{what}: {problem}")));
            }
        }
    }

    /// This client for one Storage service: a SharedKey signer signs the way `service` checks
    /// (the Table and Queue strings-to-sign differ); a bearer signer is unchanged.
    pub fn for_storage(mut self, service: shared_key::Service) -> Self {
        if let Signer::SharedKey(key) = self.signer {
            self.signer = Signer::SharedKey(key.for_service(service));
        }
        self
    }

    /// Whether a 429 is holding every caller back right now.
    pub fn is_throttled(&self) -> bool {
        self.throttle.is_holding()
    }

    async fn send_once(&self, outgoing: &Outgoing<'_>) -> Result<Reply, NoAnswer> {
        let mut request = Request::new(outgoing.url.clone(), outgoing.method);
        request.insert_header("accept", outgoing.accept);
        for (name, value) in &outgoing.headers {
            request.insert_header(*name, value.clone());
        }
        if let Some((content_type, bytes)) = &outgoing.body {
            request.insert_header("content-type", content_type.clone());
            request.set_body(bytes.clone());
        }
        match &self.signer {
            Signer::Bearer { credential, scope } => {
                let token = credential
                    .get_token(&[scope.as_str()], None)
                    .await
                    .map_err(|e| NoAnswer::not_sent(format!("no access token for `{scope}`: {e}")))?;
                // Set here rather than by azure_core's bearer policy, which refuses the plain-http
                // loopback endpoints of emulators and tests (azure-spec §4.2); https is enforced by
                // configuration.
                request.insert_header("authorization", format!("Bearer {}", token.token.secret()));
            }
            Signer::SharedKey(key) => {
                // Set here, not by azure_core's policy after signing: the Queue service signs
                // every `x-ms-*` header.
                request.insert_header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string());
                let headers: Vec<(String, String)> =
                    request.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned())).collect();
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let length = outgoing.body.as_ref().map_or(0, |(_, bytes)| bytes.len());
                let (date, authorization) = key.sign(outgoing.method, outgoing.url, &headers, length);
                request.insert_header("x-ms-date", date);
                request.insert_header("authorization", authorization);
            }
        }
        let options = PipelineSendOptions { skip_checks: true, ..Default::default() };
        let sent = tokio::time::timeout(
            self.retry.request_timeout,
            self.pipeline.send(&Context::new(), &mut request, Some(options)),
        )
        .await
        .map_err(|_| NoAnswer::maybe_sent(format!("no answer within {} s", self.retry.request_timeout.as_secs())))?
        .map_err(|e| NoAnswer::maybe_sent(format!("request failed: {e}")))?;
        let (status, headers, body) = sent.deconstruct();
        let headers = headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned())).collect();
        Ok(Reply { status: u16::from(status), headers, body: body.as_ref().to_vec() })
    }
}
