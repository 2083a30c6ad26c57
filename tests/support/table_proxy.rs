//! A counting proxy in front of Azurite: forwards every request as sent and counts what a client
//! asked for and what the service sent back. Outside the code under test, so a store cannot
//! hide a read from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::fake_http::{FakeReply, FakeRequest, serve};

#[derive(Debug, Default)]
pub struct Counts {
    /// Queries (`GET {table}()`), each page of one counted.
    pub queries: AtomicUsize,
    /// Point reads (`GET {table}(PartitionKey=…,RowKey=…)`).
    pub point_reads: AtomicUsize,
    /// Entities the service returned, to queries and point reads.
    pub entities: AtomicUsize,
    /// Everything else: writes, deletes, batches, table creation.
    pub other: AtomicUsize,
}

/// What was counted since the last `take`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub queries: usize,
    pub point_reads: usize,
    pub entities: usize,
    pub other: usize,
}

impl Counts {
    pub fn take(&self) -> Read {
        Read {
            queries: self.queries.swap(0, Ordering::SeqCst),
            point_reads: self.point_reads.swap(0, Ordering::SeqCst),
            entities: self.entities.swap(0, Ordering::SeqCst),
            other: self.other.swap(0, Ordering::SeqCst),
        }
    }
}

/// Starts a proxy to `target` (`http://127.0.0.1:<port>`); returns its base URL and the counts.
pub async fn counting_proxy(target: &str) -> (String, Arc<Counts>, tokio::task::JoinHandle<()>) {
    let counts = Arc::new(Counts::default());
    let seen = Arc::clone(&counts);
    let target = target.trim_end_matches('/').to_owned();
    let client = super::http_client();
    let (addr, task) = serve(Arc::new(move |req: FakeRequest| {
        let (counts, target, client) = (Arc::clone(&seen), target.clone(), client.clone());
        Box::pin(async move {
            let mut url = format!("{target}{}", req.path);
            if !req.raw_query.is_empty() {
                url.push('?');
                url.push_str(&req.raw_query);
            }
            let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
            let mut forward = client.request(method.clone(), url).body(req.body.clone());
            for (name, value) in &req.headers {
                if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                    forward = forward.header(name, value);
                }
            }
            let Ok(answer) = forward.send().await else { return FakeReply::Drop };
            let status = answer.status().as_u16();
            let headers: Vec<(String, String)> = answer
                .headers()
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "content-length" | "connection" | "transfer-encoding"))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let body = answer.bytes().await.unwrap_or_default().to_vec();
            let is_get = method == reqwest::Method::GET;
            if is_get && req.path.ends_with("()") {
                counts.queries.fetch_add(1, Ordering::SeqCst);
                let rows = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("value").and_then(|v| v.as_array()).map(Vec::len))
                    .unwrap_or(0);
                counts.entities.fetch_add(rows, Ordering::SeqCst);
            } else if is_get && req.path.contains("(PartitionKey=") {
                counts.point_reads.fetch_add(1, Ordering::SeqCst);
                if status == 200 {
                    counts.entities.fetch_add(1, Ordering::SeqCst);
                }
            } else {
                counts.other.fetch_add(1, Ordering::SeqCst);
            }
            FakeReply::Respond { status, headers, body }
        })
    }))
    .await;
    (format!("http://{addr}"), counts, task)
}

// ---- the fault proxy ----

/// What share of the requests a [`fault_proxy`] spoils, each drawn from its seeded generator in
/// the order requests arrive (a run that sends its requests one at a time meets the same faults
/// for the same seed). Shares add up to at most 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreFaultRates {
    /// `500 InternalError`, the request not forwarded.
    pub internal_error: f64,
    /// `503 ServerBusy`, the request not forwarded.
    pub server_busy: f64,
    /// `500 OperationTimedOut` (the service's own timeout), the request not forwarded.
    pub operation_timed_out: f64,
    /// The client's timeout: no answer, the connection dropped after `stall`. Half of these are
    /// forwarded (and applied) first, half never reach the service: the client cannot tell which.
    pub timeout: f64,
    /// How long a timed-out request stalls before its connection drops.
    pub stall: std::time::Duration,
}

/// How many requests met each fault, and how many went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub internal_error: usize,
    pub server_busy: usize,
    pub operation_timed_out: usize,
    /// Timed out after the service applied the request.
    pub timeout_applied: usize,
    /// Timed out before reaching the service.
    pub timeout_lost: usize,
    /// Refused while the store was down.
    pub refused: usize,
    pub forwarded: usize,
}

impl Injected {
    /// Every request that met a fault.
    pub fn faults(&self) -> usize {
        self.internal_error
            + self.server_busy
            + self.operation_timed_out
            + self.timeout_applied
            + self.timeout_lost
            + self.refused
    }
}

struct FaultState {
    rng: rand::rngs::StdRng,
    rates: StoreFaultRates,
    /// Every request is refused (its connection dropped unanswered, nothing forwarded).
    down: bool,
    /// The next this many requests are refused, then the store is back.
    down_for: usize,
    injected: Injected,
}

/// The knobs of a running [`fault_proxy`].
pub struct StoreFaults {
    state: std::sync::Mutex<FaultState>,
}

enum Verdict {
    Forward,
    Answer(u16, &'static str, &'static str),
    /// Stall, then drop; forward first when `applied`.
    TimeOut {
        applied: bool,
    },
    Refuse,
}

impl StoreFaults {
    pub fn set_rates(&self, rates: StoreFaultRates) {
        self.state.lock().unwrap().rates = rates;
    }
    /// Stops (`true`) or restarts (`false`) the store: while down, every connection is dropped
    /// unanswered and nothing reaches Azurite.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
    /// The store is down for the next `requests` requests, then back by itself.
    pub fn down_for(&self, requests: usize) {
        self.state.lock().unwrap().down_for = requests;
    }
    /// No more faults: every request is forwarded and answered.
    pub fn heal(&self) {
        let mut s = self.state.lock().unwrap();
        s.rates = StoreFaultRates::default();
        s.down = false;
        s.down_for = 0;
    }
    pub fn injected(&self) -> Injected {
        self.state.lock().unwrap().injected
    }

    fn verdict(&self) -> (Verdict, std::time::Duration) {
        use rand::Rng;
        let mut s = self.state.lock().unwrap();
        let stall = s.rates.stall;
        if s.down || s.down_for > 0 {
            s.down_for = s.down_for.saturating_sub(1);
            s.injected.refused += 1;
            return (Verdict::Refuse, stall);
        }
        let r = s.rates;
        let draw: f64 = s.rng.r#gen();
        let answers = [
            (
                r.internal_error,
                500,
                "InternalError",
                "The server encountered an internal error. Please retry the request.",
            ),
            (
                r.server_busy,
                503,
                "ServerBusy",
                "The server is currently unable to receive requests. Please retry your request.",
            ),
            (
                r.operation_timed_out,
                500,
                "OperationTimedOut",
                "Operation could not be completed within the specified time.",
            ),
        ];
        let mut edge = 0.0;
        for (share, status, code, message) in answers {
            edge += share;
            if draw < edge {
                match code {
                    "InternalError" => s.injected.internal_error += 1,
                    "ServerBusy" => s.injected.server_busy += 1,
                    _ => s.injected.operation_timed_out += 1,
                }
                return (Verdict::Answer(status, code, message), stall);
            }
        }
        let verdict = if draw < edge + r.timeout {
            let applied = s.rng.gen_bool(0.5);
            if applied {
                s.injected.timeout_applied += 1;
            } else {
                s.injected.timeout_lost += 1;
            }
            Verdict::TimeOut { applied }
        } else {
            s.injected.forwarded += 1;
            Verdict::Forward
        };
        (verdict, stall)
    }
}

/// The Table service's error body (JSON, `odata.error`), as Azure sends it.
fn storage_error(status: u16, code: &str, message: &str) -> FakeReply {
    let body = serde_json::json!({
        "odata.error": {
            "code": code,
            "message": {"lang": "en-US", "value": format!("{message}\nRequestId:{}\nTime:2026-11-25T12:00:00.0000000Z", uuid::Uuid::new_v4())},
        }
    });
    FakeReply::Respond {
        status,
        headers: vec![
            ("Content-Type".into(), "application/json;odata=minimalmetadata;streaming=true;charset=utf-8".into()),
            ("x-ms-error-code".into(), code.into()),
        ],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

/// Forwards `req` to `target` as sent; `None` when the service did not answer.
async fn forward(client: &reqwest::Client, target: &str, req: &FakeRequest) -> Option<FakeReply> {
    let mut url = format!("{target}{}", req.path);
    if !req.raw_query.is_empty() {
        url.push('?');
        url.push_str(&req.raw_query);
    }
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
    let mut request = client.request(method, url).body(req.body.clone());
    for (name, value) in &req.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.ok()?;
    let status = answer.status().as_u16();
    let headers: Vec<(String, String)> = answer
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "content-length" | "connection" | "transfer-encoding"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = answer.bytes().await.ok()?.to_vec();
    Some(FakeReply::Respond { status, headers, body })
}

/// Starts a proxy to `target` (`http://127.0.0.1:<port>`) that spoils requests as its knobs say,
/// drawing from a generator seeded with `seed`; returns its base URL and the knobs. It starts
/// healthy.
pub async fn fault_proxy(target: &str, seed: u64) -> (String, Arc<StoreFaults>, tokio::task::JoinHandle<()>) {
    use rand::SeedableRng;
    let faults = Arc::new(StoreFaults {
        state: std::sync::Mutex::new(FaultState {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            rates: StoreFaultRates::default(),
            down: false,
            down_for: 0,
            injected: Injected::default(),
        }),
    });
    let knobs = Arc::clone(&faults);
    let target = target.trim_end_matches('/').to_owned();
    let client = super::http_client();
    let (addr, task) = serve(Arc::new(move |req: FakeRequest| {
        let (knobs, target, client) = (Arc::clone(&knobs), target.clone(), client.clone());
        Box::pin(async move {
            let (verdict, stall) = knobs.verdict();
            match verdict {
                Verdict::Forward => forward(&client, &target, &req).await.unwrap_or(FakeReply::Drop),
                Verdict::Answer(status, code, message) => storage_error(status, code, message),
                Verdict::TimeOut { applied } => {
                    if applied {
                        let _ = forward(&client, &target, &req).await;
                    }
                    tokio::time::sleep(stall).await;
                    FakeReply::Drop
                }
                Verdict::Refuse => FakeReply::Drop,
            }
        })
    }))
    .await;
    (format!("http://{addr}"), faults, task)
}
