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
