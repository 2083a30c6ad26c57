//! A webhook receiver standing in for a Teams Workflows trigger and a Logic App HTTP trigger:
//! it answers 202 (what a flow without a Response action answers), or, while "down", an error
//! with `Retry-After`. It keeps every attempt and every accepted request.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::fake_http::{FakeReply, FakeRequest, serve};

#[derive(Default)]
struct State {
    /// While set, every request gets this status.
    down: Option<u16>,
    /// While set, requests are read and never answered.
    hang: bool,
    /// The next request waits for this before it is answered.
    hold: Option<tokio::sync::oneshot::Receiver<()>>,
    attempts: Vec<FakeRequest>,
    accepted: Vec<FakeRequest>,
}

pub struct FakeWebhook {
    pub base: String,
    state: Arc<Mutex<State>>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeWebhook {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let (addr, server) = serve(Arc::new(move |req: FakeRequest| {
            let state = Arc::clone(&shared);
            Box::pin(async move {
                let held = state.lock().unwrap().hold.take();
                if let Some(release) = held {
                    state.lock().unwrap().attempts.push(req.clone());
                    let _ = release.await;
                    state.lock().unwrap().accepted.push(req);
                    return FakeReply::empty(202);
                }
                let mut s = state.lock().unwrap();
                s.attempts.push(req.clone());
                if s.hang {
                    return FakeReply::Hang;
                }
                match s.down {
                    Some(status) => FakeReply::empty(status).with_header("Retry-After", "1"),
                    None => {
                        s.accepted.push(req);
                        FakeReply::empty(202)
                    }
                }
            })
        }))
        .await;
        Self { base: format!("http://{addr}"), state, _server: server }
    }

    /// A URL shaped like a Workflows trigger, with a SAS signature that must never be logged.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{path}/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers&sv=1.0&sig=SECRET-SIG",
            self.base
        )
    }

    pub fn set_down(&self, status: Option<u16>) {
        self.state.lock().unwrap().down = status;
    }

    /// The next request is taken and answered 202 only once the returned sender fires (or drops).
    pub fn hold_next(&self) -> tokio::sync::oneshot::Sender<()> {
        let (release, held) = tokio::sync::oneshot::channel();
        self.state.lock().unwrap().hold = Some(held);
        release
    }

    pub fn set_hang(&self, hang: bool) {
        self.state.lock().unwrap().hang = hang;
    }

    pub fn attempts(&self) -> usize {
        self.state.lock().unwrap().attempts.len()
    }

    /// Accepted requests to `path`.
    pub fn accepted(&self, path: &str) -> Vec<FakeRequest> {
        self.state
            .lock()
            .unwrap()
            .accepted
            .iter()
            .filter(|r| r.path.starts_with(&format!("/{path}/")))
            .cloned()
            .collect()
    }

    pub fn accepted_json(&self, path: &str) -> Vec<Value> {
        self.accepted(path).iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
    }

    /// Waits (up to 10 s) until `n` requests to `path` were accepted.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Value> {
        self.wait_longer(path, n, 200).await
    }

    /// Waits up to `polls` × 50 ms.
    pub async fn wait_longer(&self, path: &str, n: usize, polls: usize) -> Vec<Value> {
        for _ in 0..polls {
            if self.accepted(path).len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.accepted_json(path)
    }
}
