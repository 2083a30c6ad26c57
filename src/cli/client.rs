//! The client's one door to Elevate's API: JSON over HTTPS (plain HTTP only to loopback, as
//! `crate::endpoint` rules), the bearer token on every request, and every answer turned into
//! a value or a `CliError` that carries the API's own code and message.
//!
//! Must never send the token anywhere but `--url`'s origin (a `nextLink` is followed on it), and
//! never put the token or a request body into an error.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::challenge::{Challenge, Lack, sign_in_hint};
use super::error::{CliError, one_line};
use super::token::{BearerToken, SignInSettings};

const USER_AGENT: &str = concat!("elevate-cli/", env!("CARGO_PKG_VERSION"));
/// Waits before the second and third attempt of a request that may be repeated.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];
/// Longest `Retry-After` honoured between attempts.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Most pages followed for one listing: a server handing out endless links is not followed forever.
const MAX_PAGES: usize = 10_000;

/// Whether a request may be sent again when no answer (or a 502/503/504) came back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads, and `POST /api/activations` with its `Idempotency-Key`.
    Safe,
    /// Decisions and state changes without a key: sent once.
    Once,
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Items gathered over one or more pages.
#[derive(Debug, Default)]
pub struct Collected {
    pub items: Vec<Value>,
    /// A further page exists that was not read.
    pub more: bool,
}

struct Reply {
    status: u16,
    challenge: Option<String>,
    retry_after: Option<Duration>,
    location: Option<String>,
    body: Vec<u8>,
}

pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    token: BearerToken,
    sign_in: SignInSettings,
}

impl ApiClient {
    /// A client for `base` (already checked by `crate::endpoint::parse`).
    pub fn new(base: Url, token: BearerToken, sign_in: SignInSettings) -> Result<Self, CliError> {
        crate::adapters::azure::install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| {
                CliError::unavailable("ClientSetup", format!("cannot build the HTTP client: {}", cause(&e)))
            })?;
        Ok(Self { base, http, token, sign_in })
    }

    /// `--url` as shown in messages.
    pub fn base(&self) -> String {
        crate::endpoint::display(&self.base)
    }

    /// How to sign in again for what is lacking, in the form this client's token came from.
    pub fn sign_in_hint(&self, lack: Lack<'_>) -> String {
        sign_in_hint(lack, &self.sign_in, self.token.peek().as_ref())
    }

    /// The URL of an API path (`/api/...`) with query pairs.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, CliError> {
        let mut url = Url::parse(&format!("{}{path}", self.base()))
            .map_err(|e| CliError::usage(format!("cannot make a URL of `{path}`: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let url = self.url(path, query)?;
        Ok(self.send(Method::GET, &url, None, None, Repeat::Safe).await?.body)
    }

    pub async fn post(
        &self,
        url: &Url,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
        repeat: Repeat,
    ) -> Result<Answer, CliError> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| CliError::usage(format!("cannot write the request body: {e}")))?;
        self.send(Method::POST, url, bytes.as_deref(), idempotency_key, repeat).await
    }

    /// The `value` items of a list, following `nextLink` while more are wanted (`limit`: at
    /// most that many items).
    pub async fn collect(&self, first: Url, limit: Option<usize>) -> Result<Collected, CliError> {
        let mut url = first;
        let mut collected = Collected::default();
        for _ in 0..MAX_PAGES {
            let page = self.send(Method::GET, &url, None, None, Repeat::Safe).await?.body;
            let Some(items) = page.get("value").and_then(Value::as_array) else {
                return Err(CliError::unavailable("UnexpectedAnswer", "Elevate's answer is not a list (no `value`)"));
            };
            collected.items.extend(items.iter().cloned());
            let next = page.get("nextLink").and_then(Value::as_str).filter(|l| !l.is_empty());
            if let Some(limit) = limit
                && collected.items.len() >= limit
            {
                collected.more = next.is_some() || collected.items.len() > limit;
                collected.items.truncate(limit);
                return Ok(collected);
            }
            match next {
                Some(link) => url = self.follow(link)?,
                None => return Ok(collected),
            }
        }
        Err(CliError::unavailable("UnexpectedAnswer", format!("Elevate's list did not end after {MAX_PAGES} pages")))
    }

    /// A `nextLink`'s path and query, on `--url`'s origin: the token goes nowhere else.
    fn follow(&self, link: &str) -> Result<Url, CliError> {
        let parsed = Url::parse(link).or_else(|_| self.base.join(link)).map_err(|_| {
            CliError::unavailable("UnexpectedAnswer", format!("Elevate's nextLink `{}` is not a URL", one_line(link)))
        })?;
        let mut url = self.base.clone();
        url.set_path(parsed.path());
        url.set_query(parsed.query());
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
        idempotency_key: Option<&str>,
        repeat: Repeat,
    ) -> Result<Answer, CliError> {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            let attempt = self.once(method.clone(), url, body, idempotency_key).await;
            let retry_after = match &attempt {
                Ok(reply) if matches!(reply.status, 502..=504) => Some(reply.retry_after),
                Ok(_) => None,
                Err(e) if !e.is_builder() => Some(None),
                Err(_) => None,
            };
            if repeat == Repeat::Safe
                && let Some(retry_after) = retry_after
                && let Some(delay) = delays.next()
            {
                tokio::time::sleep(retry_after.map_or(*delay, |r| r.min(MAX_RETRY_AFTER).max(*delay))).await;
                continue;
            }
            return match attempt {
                Ok(reply) => self.interpret(&method, url, reply),
                Err(e) => Err(self.unreachable(&e)),
            };
        }
    }

    async fn once(
        &self,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec());
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await?;
        let header = |name: reqwest::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let challenge = header(reqwest::header::WWW_AUTHENTICATE);
        let location = header(reqwest::header::LOCATION);
        let retry_after =
            header(reqwest::header::RETRY_AFTER).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
        let status = response.status().as_u16();
        let body = response.bytes().await?.to_vec();
        Ok(Reply { status, challenge, retry_after, location, body })
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        let code = if e.is_timeout() { "Timeout" } else { "ConnectionFailed" };
        CliError::unavailable(code, format!("cannot reach Elevate at {}: {}", self.base(), cause(e)))
    }

    /// A reply as a value (2xx) or the error it stands for.
    fn interpret(&self, method: &Method, url: &Url, reply: Reply) -> Result<Answer, CliError> {
        let status = reply.status;
        let json: Option<Value> =
            if reply.body.is_empty() { Some(Value::Null) } else { serde_json::from_slice(&reply.body).ok() };
        if (200..300).contains(&status) {
            return match json {
                Some(body) => Ok(Answer { status, body }),
                None => Err(CliError::unavailable(
                    "UnexpectedAnswer",
                    format!(
                        "{method} {} answered {status} with something that is not JSON: is --url Elevate's address?",
                        url.path()
                    ),
                )),
            };
        }
        if (300..400).contains(&status) {
            let to = reply.location.as_deref().map(one_line).unwrap_or_default();
            return Err(CliError::unavailable(
                "UnexpectedRedirect",
                format!("{method} {} was redirected to `{to}`: is --url Elevate's API address?", url.path()),
            ));
        }
        let envelope = json.and_then(|j| Envelope::deserialize(j).ok()).map(|e| e.error);
        let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let (code, message) = match &envelope {
            Some(e) => (one_line(&e.code), one_line(&e.message)),
            None => (format!("Http{status}"), format!("Elevate answered {status} {reason}").trim_end().to_owned()),
        };
        if status == 401 {
            let challenge = reply.challenge.as_deref().and_then(Challenge::parse);
            let hint = self.sign_in_hint(Lack::of(challenge.as_ref()));
            return Err(CliError::SignIn { code, message, hint: Some(hint) });
        }
        if (400..500).contains(&status) {
            let hint = envelope.as_ref().and_then(ErrorBody::hint);
            return Err(CliError::Refused { code, message, hint });
        }
        Err(CliError::Unavailable { code, message })
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
    #[serde(default)]
    target: Option<String>,
}

impl ErrorBody {
    /// A next step for refusals that name another activation or an unknown route.
    fn hint(&self) -> Option<String> {
        if self.code == "RouteNotFound" {
            return Some(
                "this Elevate may be older than the client: compare `elevate --version` with the server's".into(),
            );
        }
        self.details
            .iter()
            .find(|d| d.target.as_deref() == Some("id"))
            .and_then(|d| crate::domain::ids::ActivationId::parse(&d.message).ok())
            .map(|id| format!("see it with: elevate show {id}"))
    }
}

/// The innermost cause of a transport error ("Connection refused (os error 111)"), one line.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    one_line(&last.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ApiClient {
        let base = crate::endpoint::parse("http://127.0.0.1:9").unwrap();
        ApiClient::new(base, BearerToken::parse("t.t.t", "--token").unwrap(), SignInSettings::default()).unwrap()
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status, challenge: None, retry_after: None, location: None, body: body.as_bytes().to_vec() }
    }

    fn interpret(status: u16, body: &str) -> Result<Answer, CliError> {
        let c = client();
        let url = c.url("/api/x", &[]).unwrap();
        c.interpret(&Method::GET, &url, reply(status, body))
    }

    #[test]
    fn answers_map_to_their_exit_codes() {
        assert_eq!(interpret(200, r#"{"a":1}"#).unwrap().body["a"], 1);
        assert_eq!(interpret(204, "").unwrap().body, Value::Null);
        let refused = interpret(403, r#"{"error":{"code":"NotEligible","message":"no rule"}}"#).unwrap_err();
        assert_eq!((refused.exit_code(), refused.code(), refused.to_string()), (1, "NotEligible", "no rule".into()));
        let signin = interpret(401, r#"{"error":{"code":"InvalidToken","message":"expired"}}"#).unwrap_err();
        assert_eq!((signin.exit_code(), signin.code()), (3, "InvalidToken"));
        let server = interpret(503, r#"{"error":{"code":"StoreUnavailable","message":"quote ref"}}"#).unwrap_err();
        assert_eq!((server.exit_code(), server.code()), (5, "StoreUnavailable"));
        let html = interpret(502, "<html>bad gateway</html>").unwrap_err();
        assert_eq!(
            (html.exit_code(), html.code(), html.to_string()),
            (5, "Http502", "Elevate answered 502 Bad Gateway".into())
        );
        assert_eq!(interpret(200, "<html/>").unwrap_err().exit_code(), 5);
        assert_eq!(interpret(302, "").unwrap_err().code(), "UnexpectedRedirect");
    }

    #[test]
    fn a_conflict_naming_the_open_activation_points_to_it() {
        let body = r#"{"error":{"code":"ActivationAlreadyOpen","message":"open","details":[{"code":"OpenActivation","message":"0b7c2a5e-49d5-4d8e-9f3a-6a1f3e0c9d11","target":"id"}]}}"#;
        let e = interpret(409, body).unwrap_err();
        assert_eq!(e.hint(), Some("see it with: elevate show 0b7c2a5e-49d5-4d8e-9f3a-6a1f3e0c9d11"));
    }

    #[test]
    fn a_next_link_is_followed_on_the_clients_own_origin() {
        let c = client();
        let url = c.follow("https://elsewhere.example/api/audit?$skiptoken=abc&$top=2").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/api/audit?$skiptoken=abc&$top=2");
        let url = c.follow("/api/activations?mine=true").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/api/activations?mine=true");
    }

    #[test]
    fn query_pairs_are_encoded() {
        let url = client().url("/api/audit", &[("$top", "5".into()), ("scope", "/subscriptions/a b".into())]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/api/audit?%24top=5&scope=%2Fsubscriptions%2Fa+b");
    }
}
