//! The fault matrix (issue 17). Elevate runs in process on a manual clock, with the ARM provider
//! against the fake ARM, and a seeded client drives it through the API: activations (with an
//! `Idempotency-Key`), approvals, deactivations and timer sweeps, the clock moving on between
//! sweeps. Meanwhile faults are injected, seeded:
//!
//! - **the store**: Table Storage on Azurite behind a fault proxy (support/table_proxy.rs):
//!   `500 InternalError`, `503 ServerBusy`, `500 OperationTimedOut`, client timeouts (the
//!   connection dropped after a stall, half of them after Azurite applied the request), the store
//!   down for a few requests, and down for a while (seconds) then back;
//! - **Azurite itself** killed (SIGKILL) mid-run and started again on the same port and data
//!   directory (an emulator of the scenario's own, support/azurite.rs's `PrivateAzurite`), with a
//!   request failing while it is down, and a sweep and a request retrying as it comes back;
//! - **ARM** (support/fake_azure.rs, with SQLite as the store): 429 storms with `Retry-After`,
//!   500 and 503, dropped connections, writes applied and then dropped, slow answers.
//!
//! Then everything heals, the client retries what got no 2xx (same `Idempotency-Key`, as a client
//! would), the clock passes every end, and the promises are judged from the store's rows and the
//! fake's assignments, never from Elevate's own view:
//!
//! - zero lost revocations: after one sweep nothing Elevate granted is left;
//! - zero duplicate grants, and one activation per request however often it was retried;
//! - no request answered 2xx whose change was lost: each 2xx answer's status (and recorded
//!   approval) is in the store, or a state the lifecycle reaches from it;
//! - the independent checker (support/checker.rs) reports nothing.
//!
//! `ELEVATE_FAULT_SEED` (default 17) seeds each scenario; `ELEVATE_FAULT_STEPS` (default 36) is
//! how many requests a round drives, `ELEVATE_FAULT_ROUNDS` (default 1) how many rounds run, each
//! with the next seed, and `ELEVATE_FAULT_OUTAGE_SECS` (default 3) how long the store stays down.
//! A failure names its seed. The client sends one request at a time, so a seed replays the same
//! faults, up to the order of the calls that one request makes at once (a sweep's). `scripts/stress
//! faults` runs the long version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use elevate::adapters::identity::dev::{DevIssuer, DevTokenRequest};
use elevate::clock::{Clock, ManualClock};
use elevate::config::{AuthSetting, ProviderSetting, RunMode, Settings, StoreSetting, TablesSetting};
use elevate::service::ports::AccessProvider;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::support::arm::{fast_retry, provider};
use crate::support::azurite::{PrivateAzurite, azurite};
use crate::support::checker::{self, Held, StoreView, World, reaches};
use crate::support::fake_azure::{FakeAzure, RandomFaults};
use crate::support::table_proxy::{StoreFaultRates, StoreFaults, fault_proxy};
use crate::support::{BOB, CAROL, OPS, SUB1, SUB2, http_client, knob, start, timer_payload};

/// How many attempts the store's client makes (`RetryPolicy::default`).
const STORE_ATTEMPTS: usize = 6;

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

fn policy() -> String {
    crate::support::two_rule_policy(&format!("group:{OPS}"), &format!("user:{BOB}"), "PT4H")
}

// ---- the lifecycle, as the claims are judged ----

#[test]
fn the_claims_follow_the_lifecycle() {
    assert!(reaches("Active", "Active"));
    assert!(reaches("Active", "Deactivated"));
    assert!(reaches("PendingApproval", "Expired"));
    assert!(!reaches("Active", "PendingApproval"), "no way back");
    assert!(!reaches("Deactivated", "Expired"), "an end is an end");
    assert!(!reaches("Provisioning", "Canceled"));
}

// ---- one Elevate with its fakes ----

enum Store {
    /// Table Storage, through the fault proxy when there is one; the checker reads `direct`.
    Tables {
        direct: TablesSetting,
        faults: Option<Arc<StoreFaults>>,
    },
    Sqlite(std::path::PathBuf),
}

struct Rig {
    seed: u64,
    base: String,
    clock: Arc<ManualClock>,
    issuer: Arc<DevIssuer>,
    fake: Arc<FakeAzure>,
    store: Store,
    standing: Vec<Held>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Where a rig keeps its rows.
enum Backing<'a> {
    Sqlite,
    /// The shared Azurite, behind a fault proxy.
    Proxied,
    /// An Azurite of the test's own, reached directly: the test stops and restarts it.
    Private(&'a PrivateAzurite),
}

impl Rig {
    async fn new(seed: u64, on_tables: bool) -> Rig {
        Rig::on(seed, if on_tables { Backing::Proxied } else { Backing::Sqlite }).await
    }

    async fn on(seed: u64, backing: Backing<'_>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let policy_file = dir.path().join("policy.yaml");
        std::fs::write(&policy_file, policy()).unwrap();
        let fake = FakeAzure::start().await;
        // Carol holds Reader outside Elevate: no fault may make Elevate remove it.
        let standing_id = fake.assign_outside(SUB1, CAROL, READER);
        let standing =
            fake.assignments().iter().map(Held::arm).filter(|h| h.id.eq_ignore_ascii_case(&standing_id)).collect();
        let (store, setting) = match backing {
            Backing::Proxied => {
                let direct = azurite().tables(dir.path().join("local.db"));
                let (proxy, faults, _task) = fault_proxy(&azurite().base, seed).await;
                let proxied =
                    TablesSetting { endpoint: direct.endpoint.replacen(&azurite().base, &proxy, 1), ..direct.clone() };
                (Store::Tables { direct, faults: Some(faults) }, StoreSetting::Tables(proxied))
            }
            Backing::Private(azurite) => {
                let direct = azurite.tables(dir.path().join("local.db"));
                (Store::Tables { direct: direct.clone(), faults: None }, StoreSetting::Tables(direct))
            }
            Backing::Sqlite => {
                let db = dir.path().join("elevate.db");
                (Store::Sqlite(db.clone()), StoreSetting::Sqlite(db))
            }
        };
        let listener = elevate::startup::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = Settings {
            mode: RunMode::FunctionsHost,
            port: 0,
            policy_file,
            store: setting,
            provider: ProviderSetting::Local,
            auth: AuthSetting::Dev { key_file: dir.path().join("dev.pem") },
            public_url: format!("http://{addr}"),
            broker_app_ids: vec![],
            link_key: None,
            sweep_concurrency: elevate::config::DEFAULT_SWEEP_CONCURRENCY,
            orphan_sweep_interval: elevate::domain::duration::IsoDuration::parse("PT1H").unwrap(),
            notifications: elevate::config::NotificationSettings::default(),
            max_open_requests: elevate::service::DEFAULT_MAX_OPEN_REQUESTS,
            group_checks: elevate::config::GroupChecks::Token,
            queues: None,
            audit_export: None,
        };
        let clock = Arc::new(ManualClock::new(start()));
        let access = provider(&fake, fast_retry()) as Arc<dyn AccessProvider>;
        let ports = elevate::startup::Ports { access: Some(access), directory: None, queue: None };
        let built = elevate::startup::build_with(&settings, Arc::clone(&clock) as Arc<dyn Clock>, ports).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(elevate::startup::serve(listener, Arc::clone(&built.context), async {
            let _ = stopped.await;
        }));
        Rig {
            seed,
            base: format!("http://{addr}"),
            clock,
            issuer: built.dev_issuer.unwrap(),
            fake,
            store,
            standing,
            client: http_client(),
            _dir: dir,
            stop: Some(stop),
        }
    }

    fn store_faults(&self) -> &StoreFaults {
        match &self.store {
            Store::Tables { faults: Some(faults), .. } => faults,
            Store::Tables { faults: None, .. } | Store::Sqlite(_) => panic!("this store has no fault proxy"),
        }
    }

    fn token(&self, principal: &str, groups: &[&str]) -> String {
        let request = DevTokenRequest {
            object_id: principal.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            mfa: true,
            lifetime: TimeDelta::hours(24),
            ..Default::default()
        };
        self.issuer.mint(&request, self.clock.now()).unwrap()
    }

    /// A request; status 0 when no answer came.
    async fn call(&self, token: &str, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(&body);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        match request.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                (status, res.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Fires the timer as the Functions host would; the report, when it ran.
    async fn sweep(&self) -> (u16, Value) {
        let (status, body) = self.call("", "/expiry-sweeper", timer_payload(false, true), None).await;
        (status, body["ReturnValue"].clone())
    }

    async fn view(&self) -> StoreView {
        match &self.store {
            Store::Tables { direct, .. } => checker::read_tables(direct).await,
            Store::Sqlite(path) => checker::read_sqlite(path),
        }
        .unwrap_or_else(|e| panic!("seed {}: reading the store: {e}", self.seed))
    }

    fn held(&self) -> Vec<Held> {
        self.fake.assignments().iter().map(Held::arm).collect()
    }
}

// ---- the client ----

/// What the 2xx answers said about an activation.
#[derive(Debug, Default)]
struct Claim {
    /// The last status answered.
    status: String,
    /// Every status answered: the store must hold each, or a later one.
    every: BTreeSet<String>,
    /// Bob's approval was answered 2xx.
    approved: bool,
}

/// A request that got no 2xx, to send again once the faults heal.
#[derive(Debug)]
enum Retry {
    Activate { principal: String, body: Value, key: String },
    Approve { id: String },
    Deactivate { id: String, principal: String },
}

#[derive(Debug, Default)]
struct Figures {
    requests: usize,
    ok: usize,
    /// 4xx: refused by policy or state.
    refused: usize,
    /// 5xx or no answer.
    failed: usize,
    sweeps: usize,
    retried: usize,
    /// What was not answered 2xx: "<request> <status> <code>" → how often.
    not_ok: BTreeMap<String, usize>,
}

struct Client {
    rng: StdRng,
    next_member: usize,
    claims: BTreeMap<String, Claim>,
    /// Each principal's one request, by activation id once known.
    requested_by: BTreeMap<String, String>,
    pending: Vec<String>,
    /// (activation id, requester) claimed Active.
    active: Vec<(String, String)>,
    retries: Vec<Retry>,
    figures: Figures,
}

fn member(i: usize) -> String {
    format!("66666666-6666-6666-6666-{i:012}")
}

impl Client {
    fn new(seed: u64) -> Client {
        Client {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            next_member: 0,
            claims: BTreeMap::new(),
            requested_by: BTreeMap::new(),
            pending: Vec::new(),
            active: Vec::new(),
            retries: Vec::new(),
            figures: Figures::default(),
        }
    }

    /// Counts an answer to `what`; a refusal or failure by its status and error code.
    fn count(&mut self, what: &str, status: u16, answer: &Value) {
        self.figures.requests += 1;
        match status {
            200..=299 => self.figures.ok += 1,
            400..=499 => self.figures.refused += 1,
            _ => self.figures.failed += 1,
        }
        if !(200..300).contains(&status) {
            let code = answer["error"]["code"].as_str().unwrap_or("-");
            *self.figures.not_ok.entry(format!("{what} {status} {code}")).or_default() += 1;
        }
    }

    /// Records what a 2xx answer claims about its activation.
    fn claim(&mut self, body: &Value, approved: bool) -> Option<(String, String)> {
        let id = body["id"].as_str()?.to_owned();
        let status = body["status"].as_str()?.to_owned();
        let claim = self.claims.entry(id.clone()).or_default();
        claim.status = status.clone();
        claim.every.insert(status.clone());
        claim.approved |= approved;
        Some((id, status))
    }

    async fn activate(&mut self, rig: &Rig, principal: String, body: Value, key: String) -> bool {
        let (status, answer) =
            rig.call(&rig.token(&principal, &[OPS]), "/api/activations", body.clone(), Some(&key)).await;
        self.count("activate", status, &answer);
        // A new principal's one request, which the policy allows: nothing but a fault may fail it.
        assert!(
            !(400..500).contains(&status),
            "seed {}: {principal}'s request ({key}) refused: {status} {answer}",
            rig.seed
        );
        if !(200..300).contains(&status) {
            if status == 0 || status >= 500 {
                self.retries.push(Retry::Activate { principal, body, key });
            }
            return false;
        }
        let Some((id, now)) = self.claim(&answer, false) else {
            panic!("seed {}: a 2xx activation without an id: {answer}", rig.seed)
        };
        if let Some(other) = self.requested_by.insert(id.clone(), principal.clone())
            && other != principal
        {
            panic!("activation {id} answered to {principal} and {other}");
        }
        match now.as_str() {
            "PendingApproval" if !self.pending.contains(&id) => self.pending.push(id),
            "Active" if !self.active.iter().any(|(a, _)| *a == id) => self.active.push((id, principal)),
            _ => {}
        }
        true
    }

    async fn approve(&mut self, rig: &Rig, id: String) {
        let body = json!({"decision": "Approve", "justification": "reviewed"});
        let (status, answer) = rig.call(&rig.token(BOB, &[]), &format!("/api/approvals/{id}"), body, None).await;
        self.count("approve", status, &answer);
        if (200..300).contains(&status) {
            if let Some((id, now)) = self.claim(&answer, true)
                && now == "Active"
                && let Some(principal) = self.requested_by.get(&id).cloned()
            {
                self.active.push((id, principal));
            }
        } else if status == 0 || status >= 500 {
            self.retries.push(Retry::Approve { id });
        }
    }

    async fn deactivate(&mut self, rig: &Rig, id: String, principal: String) {
        let path = format!("/api/activations/{id}/deactivate");
        let (status, answer) = rig.call(&rig.token(&principal, &[OPS]), &path, Value::Null, None).await;
        self.count("deactivate", status, &answer);
        if (200..300).contains(&status) {
            self.claim(&answer, false);
        } else if status == 0 || status >= 500 {
            self.retries.push(Retry::Deactivate { id, principal });
        }
    }

    async fn sweep(&mut self, rig: &Rig) {
        let (status, report) = rig.sweep().await;
        self.count("sweep", status, &report);
        self.figures.sweeps += 1;
    }

    /// One seeded step: a request, an approval, a deactivation, or the clock moving on and a sweep.
    async fn step(&mut self, rig: &Rig) {
        let roll = self.rng.gen_range(0..100);
        if roll < 35 {
            let minutes = 30 * self.rng.gen_range(1..=4);
            self.request(
                rig,
                json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": format!("PT{minutes}M")}),
            )
            .await;
        } else if roll < 60 {
            self.request(rig, json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H"})).await;
        } else if roll < 75 && !self.pending.is_empty() {
            let id = self.pending.swap_remove(self.rng.gen_range(0..self.pending.len()));
            self.approve(rig, id).await;
        } else if roll < 90 && !self.active.is_empty() {
            let (id, principal) = self.active.swap_remove(self.rng.gen_range(0..self.active.len()));
            self.deactivate(rig, id, principal).await;
        } else {
            rig.clock.advance(TimeDelta::minutes(self.rng.gen_range(5..=40)));
            self.sweep(rig).await;
        }
    }

    /// A new principal's one request.
    async fn request(&mut self, rig: &Rig, body: Value) {
        self.next_member += 1;
        let principal = member(self.next_member);
        let key = format!("req-{}", self.next_member);
        self.activate(rig, principal, body, key).await;
    }

    /// Sends again what got no 2xx: once healed, every one must get an answer that stands.
    async fn retry_all(&mut self, rig: &Rig) {
        for retry in std::mem::take(&mut self.retries) {
            self.figures.retried += 1;
            match retry {
                Retry::Activate { principal, body, key } => {
                    let done = self.activate(rig, principal.clone(), body, key.clone()).await;
                    assert!(done, "seed {}: {principal}'s request ({key}) fails after healing", rig.seed);
                }
                Retry::Approve { id } => {
                    let body = json!({"decision": "Approve", "justification": "reviewed"});
                    let (status, answer) =
                        rig.call(&rig.token(BOB, &[]), &format!("/api/approvals/{id}"), body, None).await;
                    self.count("approve again", status, &answer);
                    match status {
                        200..=299 => {
                            self.claim(&answer, true);
                        }
                        // Its first attempt landed (or the request timed out meanwhile).
                        409 => {}
                        _ => panic!("seed {}: approving {id} after healing: {status} {answer}", rig.seed),
                    }
                }
                Retry::Deactivate { id, principal } => {
                    let path = format!("/api/activations/{id}/deactivate");
                    let (status, answer) = rig.call(&rig.token(&principal, &[OPS]), &path, Value::Null, None).await;
                    self.count("deactivate again", status, &answer);
                    match status {
                        200..=299 => {
                            self.claim(&answer, false);
                        }
                        409 => {}
                        _ => panic!("seed {}: deactivating {id} after healing: {status} {answer}", rig.seed),
                    }
                }
            }
        }
    }
}

// ---- judging ----

/// Once the faults have healed: sends again what failed, lets time pass every end, sweeps once and
/// judges the revocations; then sweeps until quiet, runs the checker and judges the answers.
/// Returns the figures.
async fn heal_and_judge(rig: &Rig, client: &mut Client, began: Instant) -> String {
    client.retry_all(rig).await;
    // Past every end: the longest activation (4 h), approval timeouts (1 h), the grace.
    rig.clock.advance(TimeDelta::hours(5));
    let (status, report) = rig.sweep().await;
    assert_eq!(status, 200, "seed {}: the first sweep after healing: {report}", rig.seed);
    let swept_at = rig.clock.now();

    // Zero lost revocations: everything has ended, so after one sweep nothing of Elevate's is held.
    let lost: Vec<Held> =
        rig.held().into_iter().filter(|h| !rig.standing.iter().any(|s| s.id.eq_ignore_ascii_case(&h.id))).collect();
    assert!(lost.is_empty(), "seed {}: access left after healing and one sweep ({report}):\n{lost:#?}", rig.seed);

    // Sweep until quiet (notices, anything deferred), then the independent checker.
    for _ in 0..5 {
        let (status, report) = rig.sweep().await;
        assert_eq!(status, 200, "seed {}: a sweep after healing: {report}", rig.seed);
        if report["examined"] == 0 && report["failures"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
    }
    let view = rig.view().await;
    let held = rig.held();
    let world = World { store: &view, held: &held, standing: &rig.standing, swept_at };
    if let Err(e) = checker::judged(&world) {
        panic!("seed {}: {e}", rig.seed);
    }

    let broken = broken_claims(client, &view);
    assert!(broken.is_empty(), "seed {}: {} broken promise(s):\n{}", rig.seed, broken.len(), broken.join("\n"));

    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    for a in view.activations.values() {
        *statuses.entry(a["state"]["status"].as_str().unwrap_or("?")).or_default() += 1;
    }
    let mut claimed: BTreeMap<&str, usize> = BTreeMap::new();
    for claim in client.claims.values() {
        *claimed.entry(claim.status.as_str()).or_default() += 1;
    }
    let f = &client.figures;
    format!(
        "seed {}: {} requests ({} 2xx, {} 4xx, {} 5xx or unanswered, {} sweeps, {} retried after healing; not 2xx: {:?}), {} activations now {statuses:?}, last 2xx claims {claimed:?} all held, {:.1} s",
        rig.seed,
        f.requests,
        f.ok,
        f.refused,
        f.failed,
        f.sweeps,
        f.retried,
        f.not_ok,
        view.activations.len(),
        began.elapsed().as_secs_f64()
    )
}

/// Every 2xx answer whose change the store does not hold (its status, or a later one; Bob's
/// approval), and every request that made more than one activation.
fn broken_claims(client: &Client, view: &StoreView) -> Vec<String> {
    let mut out = Vec::new();
    for (id, claim) in &client.claims {
        let Some(stored) = view.activations.get(&id.to_ascii_lowercase()) else {
            out.push(format!("activation {id} was answered {} but is not stored", claim.status));
            continue;
        };
        let status = stored["state"]["status"].as_str().unwrap_or_default();
        for answered in claim.every.iter().filter(|answered| !reaches(answered, status)) {
            out.push(format!("activation {id} was answered {answered}, the store holds {status}"));
        }
        let approvals = stored["approvals"].as_array().cloned().unwrap_or_default();
        if claim.approved
            && !approvals.iter().any(|a| a["approverId"].as_str().is_some_and(|b| b.eq_ignore_ascii_case(BOB)))
        {
            out.push(format!("Bob's approval of {id} was answered 2xx but is not stored"));
        }
    }
    // One activation per request, however often the client sent it.
    let mut per_principal: BTreeMap<&str, usize> = BTreeMap::new();
    for a in view.activations.values() {
        *per_principal.entry(a["request"]["principalId"].as_str().unwrap_or_default()).or_default() += 1;
    }
    for (principal, n) in per_principal.into_iter().filter(|(_, n)| *n > 1) {
        out.push(format!("{principal}'s one request made {n} activations"));
    }
    out
}

fn seeds() -> Vec<u64> {
    let seed = knob("ELEVATE_FAULT_SEED", 17);
    (0..knob("ELEVATE_FAULT_ROUNDS", 1)).map(|round| seed + round).collect()
}

fn steps() -> usize {
    usize::try_from(knob("ELEVATE_FAULT_STEPS", 36)).unwrap()
}

// ---- the matrix ----

fn store_rates() -> StoreFaultRates {
    StoreFaultRates {
        internal_error: 0.02,
        server_busy: 0.02,
        operation_timed_out: 0.01,
        timeout: 0.03,
        stall: Duration::from_millis(100),
    }
}

fn arm_faults() -> RandomFaults {
    RandomFaults {
        throttle: 0.03,
        // Longer than the provider's five attempts: a request caught in it fails.
        storm: 6,
        retry_after_secs: 1,
        server_error: 0.12,
        drop: 0.06,
        drop_after_apply: 0.08,
        slow: 0.05,
        slow_by: Duration::from_millis(300),
    }
}

/// One round: Elevate on Table Storage behind the fault proxy (with `store_faults`) or on SQLite,
/// ARM faulty or not, `steps` requests, then healing and the judgement. Returns the figures.
async fn round(seed: u64, store_faults: bool, arm: bool, steps: usize) -> String {
    let began = Instant::now();
    let rig = Rig::new(seed, store_faults).await;
    let mut client = Client::new(seed);
    if arm {
        rig.fake.set_random_faults(seed, arm_faults());
    }
    if store_faults {
        rig.store_faults().set_rates(store_rates());
    }
    for step in 0..steps {
        if store_faults {
            let faults = rig.store_faults();
            if step == steps / 4 {
                // Down for a few requests: the retries ride it out.
                faults.down_for(3);
            }
            if step == steps / 2 {
                // Down for longer than one store call retries: this request fails (5xx), and
                // the client sends it again once healed.
                faults.down_for(STORE_ATTEMPTS);
            }
            if step == 3 * steps / 4 {
                // Down for a while, then back, with a request and a sweep under way.
                faults.set_down(true);
                let outage = Duration::from_secs(knob("ELEVATE_FAULT_OUTAGE_SECS", 3));
                let back = async {
                    tokio::time::sleep(outage).await;
                    faults.set_down(false);
                };
                let (_, (status, report)) = tokio::join!(back, async {
                    client.step(&rig).await;
                    rig.sweep().await
                });
                client.count("sweep", status, &report);
                client.figures.sweeps += 1;
                assert!(
                    matches!(status, 0 | 200 | 500..=599),
                    "seed {seed}: a sweep across an outage answered {status}: {report}"
                );
            }
        }
        client.step(&rig).await;
    }
    let mut injected = String::new();
    if store_faults {
        rig.store_faults().heal();
        let store = rig.store_faults().injected();
        assert!(store.faults() > 0, "seed {seed}: no store fault was injected");
        injected.push_str(&format!(" store {store:?}"));
    }
    if arm {
        rig.fake.clear_random_faults();
        let arm = rig.fake.random_injected();
        assert!(arm.throttled + arm.server_errors + arm.dropped > 0, "seed {seed}: no ARM fault was injected");
        injected.push_str(&format!(" ARM {arm:?}"));
    }
    let figures = heal_and_judge(&rig, &mut client, began).await;
    format!("{figures}; injected:{injected}")
}

/// One round on an Azurite of its own: `steps / 2` requests; Azurite killed (SIGKILL, once it has
/// saved what it acknowledged: see [`PrivateAzurite`]); a sweep started at once, retrying, while
/// a new request fails (503 `StoreUnavailable`: its store calls spend their retries, seconds);
/// Azurite started again on the same port and data while another request is retrying (it answers
/// 2xx or 503); the rest of the requests, then healing and the judgement.
async fn restart_round(seed: u64, steps: usize) -> String {
    let began = Instant::now();
    let mut azurite = PrivateAzurite::start();
    let rig = Rig::on(seed, Backing::Private(&azurite)).await;
    let mut client = Client::new(seed);
    for _ in 0..steps / 2 {
        client.step(&rig).await;
    }
    assert!(!client.claims.is_empty(), "seed {seed}: nothing was stored before the kill");
    azurite.wait_saved().await;
    azurite.kill();
    let killed = Instant::now();

    let before = client.figures.not_ok.clone();
    let ok_before = client.figures.ok;
    // A sweep starts with the store down and goes on retrying; meanwhile a request fails, and
    // Azurite comes back while another request is retrying.
    let mut request_down = Duration::ZERO;
    let mut sweep_took = Duration::ZERO;
    let sweep = async {
        let answer = rig.sweep().await;
        sweep_took = killed.elapsed();
        answer
    };
    let drive = async {
        let reader = || json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"});
        client.request(&rig, reader()).await;
        request_down = killed.elapsed();
        let back = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tokio::task::block_in_place(|| azurite.restart());
        };
        tokio::join!(back, client.request(&rig, reader()));
    };
    let ((status, report), ()) = tokio::join!(sweep, drive);
    let down_for = killed.elapsed();
    client.count("sweep", status, &report);
    client.figures.sweeps += 1;
    // Across the outage a sweep answers 200 (reporting what it could not read) or fails; it
    // never answers anything else.
    assert!(matches!(status, 200 | 500..=599), "seed {seed}: a sweep across the outage answered {status}: {report}");

    let down: Vec<(String, usize)> = client
        .figures
        .not_ok
        .iter()
        .map(|(what, n)| (what.clone(), n - before.get(what).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let answered = down.iter().map(|(_, n)| n).sum::<usize>() + client.figures.ok - ok_before;
    assert_eq!(answered, 3, "seed {seed}: two requests and a sweep, each counted once");
    assert!(
        down.iter().any(|(what, _)| what == "activate 503 StoreUnavailable"),
        "seed {seed}: the request while Azurite was down did not fail: {down:?}"
    );
    for (what, _) in &down {
        assert!(
            what.ends_with(" 503 StoreUnavailable") || what.starts_with("sweep 5"),
            "seed {seed}: while Azurite was down or coming back, {what} (all not 2xx: {down:?})"
        );
    }

    let resumed = Instant::now();
    for _ in steps / 2..steps {
        client.step(&rig).await;
    }
    let after = resumed.elapsed();
    let figures = heal_and_judge(&rig, &mut client, began).await;
    format!(
        "{figures}; before the kill {:.1} s, then a request failed at {:.1} s, the sweep answered at {:.1} s ({report}), Azurite back and a request done at {:.1} s, {} steps after {:.1} s; not 2xx from the kill until back: {down:?}",
        (killed - began).as_secs_f64(),
        request_down.as_secs_f64(),
        sweep_took.as_secs_f64(),
        down_for.as_secs_f64(),
        steps - steps / 2,
        after.as_secs_f64()
    )
}

async fn rounds(what: &str, store_faults: bool, arm: bool, steps: usize) {
    for seed in seeds() {
        let figures = round(seed, store_faults, arm, steps).await;
        println!("faults ({what}): {figures}");
    }
}

/// The fault knobs do what they say: the proxy answers as Table Storage does, drops, refuses;
/// the fake ARM throttles in storms with `Retry-After`.
#[tokio::test]
async fn the_fault_knobs_spoil_what_they_say() {
    let (proxy, faults, _task) = fault_proxy(&azurite().base, 1).await;
    let client = http_client();
    let url = format!("{proxy}/devstoreaccount1/Tables");
    faults.set_rates(StoreFaultRates { server_busy: 1.0, ..StoreFaultRates::default() });
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["x-ms-error-code"], "ServerBusy");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["odata.error"]["code"], "ServerBusy");
    faults.set_rates(StoreFaultRates { timeout: 1.0, ..StoreFaultRates::default() });
    assert!(client.get(&url).send().await.is_err(), "a timed-out request gets no answer");
    faults.heal();
    faults.down_for(1);
    assert!(client.get(&url).send().await.is_err(), "refused while down");
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 403, "back, Azurite itself answers (this request is unsigned)");
    let injected = faults.injected();
    assert_eq!((injected.server_busy, injected.timeout_applied + injected.timeout_lost, injected.refused), (1, 1, 1));
    assert_eq!(injected.forwarded, 1);

    let fake = FakeAzure::start().await;
    fake.set_random_faults(1, RandomFaults { throttle: 1.0, storm: 2, retry_after_secs: 7, ..RandomFaults::default() });
    let url = format!("{}{SUB1}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01", fake.url());
    let res = client.get(&url).bearer_auth(&fake.token).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["retry-after"].to_str().unwrap()), (429, "7"));
    let res = client.get(&url).bearer_auth(&fake.token).send().await.unwrap();
    assert_eq!(res.status(), 429, "the storm goes on");
    fake.clear_random_faults();
    let res = client.get(&url).bearer_auth(&fake.token).send().await.unwrap();
    assert_eq!(res.status(), 200, "healed");
    assert_eq!((fake.random_injected().storms, fake.random_injected().throttled), (1, 2));
}

/// The judge is not blind: a store that loses a write acknowledged 2xx, or rolls one back, or
/// makes two activations of one request, is caught.
#[tokio::test]
async fn the_judge_catches_a_lost_change_and_a_duplicate() {
    let rig = Rig::new(7, false).await;
    let mut client = Client::new(7);
    // Until there is one to lose, one past its approval to roll back, and one to clone.
    let granted = |c: &Client| c.claims.values().filter(|c| c.status != "PendingApproval").count();
    while client.claims.len() < 3 || granted(&client) < 1 {
        client.step(&rig).await;
    }
    let view = rig.view().await;
    assert_eq!(broken_claims(&client, &view), Vec::<String>::new(), "a healthy run breaks nothing");
    let rolled_id = client.claims.iter().find(|(_, c)| c.status != "PendingApproval").unwrap().0.clone();
    let others: Vec<String> = client.claims.keys().filter(|id| **id != rolled_id).cloned().collect();
    let (lost_id, cloned_id) = (&others[0], &others[1]);
    let Store::Sqlite(db) = &rig.store else { unreachable!() };
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute("DELETE FROM activations WHERE lower(id) = lower(?1)", [lost_id]).unwrap();
    let body: String =
        conn.query_row("SELECT body FROM activations WHERE lower(id) = lower(?1)", [&rolled_id], |r| r.get(0)).unwrap();
    let mut rolled: Value = serde_json::from_str(&body).unwrap();
    rolled["state"]["status"] = json!("PendingApproval");
    conn.execute("UPDATE activations SET body = ?1 WHERE lower(id) = lower(?2)", [&rolled.to_string(), &rolled_id])
        .unwrap();
    let mut view = rig.view().await;
    let mut clone = view.activations[&cloned_id.to_ascii_lowercase()].clone();
    clone["id"] = json!(uuid::Uuid::new_v4().to_string());
    view.activations.insert(clone["id"].as_str().unwrap().to_owned(), clone);
    let broken = broken_claims(&client, &view);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken.iter().any(|b| b.contains(lost_id.as_str()) && b.contains("not stored")), "{broken:#?}");
    assert!(
        broken.iter().any(|b| b.contains(rolled_id.as_str()) && b.contains("the store holds PendingApproval")),
        "{broken:#?}"
    );
    assert!(broken.iter().any(|b| b.contains("made 2 activations")), "{broken:#?}");
}

/// The restartable Azurite keeps its data: what it acknowledged and saved before a SIGKILL is
/// there once it is started again on the same port. And why the restart scenario waits for the
/// save before it kills: Azurite forgets what it acknowledged since its last save (real Table
/// Storage never does), and the judge catches the 2xx answers whose change that loses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_azurite_keeps_saved_rows_across_a_kill_and_the_judge_sees_unsaved_ones_lost() {
    let mut azurite = PrivateAzurite::start();
    let rig = Rig::on(5, Backing::Private(&azurite)).await;
    let mut client = Client::new(5);
    while client.claims.len() < 2 {
        client.step(&rig).await;
    }
    let stored = rig.view().await.activations.len();
    assert!(stored >= 2, "{stored} activations stored");
    azurite.wait_saved().await;
    azurite.kill();
    azurite.restart();
    let view = rig.view().await;
    assert_eq!(view.activations.len(), stored, "rows lost across the restart");
    assert_eq!(broken_claims(&client, &view), Vec::<String>::new(), "saved, so nothing lost");

    // Killed right after a 2xx answer: unless an autosave fell in between (then try again), the
    // change is lost.
    let answered = |c: &Client| c.claims.values().map(|c| c.every.len() + usize::from(c.approved)).sum::<usize>();
    let mut lost = None;
    for _ in 0..3 {
        let saved = azurite.saved_at();
        let before = answered(&client);
        while answered(&client) == before {
            client.step(&rig).await;
        }
        azurite.kill();
        let unsaved = azurite.saved_at() == saved;
        azurite.restart();
        if unsaved {
            lost = Some(broken_claims(&client, &rig.view().await));
            break;
        }
    }
    let lost = lost.expect("Azurite saved during each of three tries");
    assert!(!lost.is_empty(), "a change answered 2xx and never saved was not seen lost");
}

/// Table Storage (Azurite) behind the fault proxy: 5xx, timeouts, outages short and long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_faults_lose_no_change_and_leave_no_access() {
    rounds("store", true, false, steps()).await;
}

/// Azurite itself killed (SIGKILL) mid-run and started again on the same port and data: requests
/// while it is down fail with 503 `StoreUnavailable`, and once it is back nothing answered 2xx is
/// lost, nothing is granted twice, and no access outlives one sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_killed_and_restarted_loses_no_change_and_leaves_no_access() {
    for seed in seeds() {
        let figures = restart_round(seed, steps()).await;
        println!("faults (Azurite restarted): {figures}");
    }
}

/// ARM behind the fake: 429 storms with `Retry-After`, 5xx, dropped connections (before and after
/// a write applies), slow answers. The store is SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_faults_lose_no_change_and_leave_no_access() {
    rounds("ARM", false, true, steps()).await;
}

/// Both at once, on Table Storage: a shorter drive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_arm_faults_at_once_lose_no_change() {
    rounds("store and ARM", true, true, steps() / 2).await;
}
