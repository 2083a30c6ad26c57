//! The fault matrix's Microsoft Graph side (issue 17). Elevate runs in process on a manual clock,
//! with the routed provider (ARM and Graph) and the Graph directory against the strict fake Graph
//! (support/fake_graph.rs), SQLite as the store. A seeded client drives Graph-scoped rules through
//! the API — Helpdesk Administrator at the tenant (no approval) and membership of a group (Bob
//! approves) — activating, approving, deactivating and sweeping, while the fake Graph meets seeded
//! faults (`FakeGraph::set_random_faults`, graph-spec §0 items 13–14): 429 storms with a decimal
//! `Retry-After`, 500/503/504, dropped connections, creates and deletes applied but never
//! answered, slow answers.
//!
//! Then the faults heal, the client retries what got no 2xx (same `Idempotency-Key`), the clock
//! passes every end, and the promises are judged from the store's rows and the fake Graph's
//! directory, never from Elevate's own view:
//!
//! - zero lost revocations: after one sweep nothing but the standing role and membership remains;
//! - zero duplicate grants, and one activation per request however often it was retried;
//! - no request answered 2xx whose change was lost;
//! - the independent checker (support/checker.rs, its Graph view) reports nothing, and Elevate
//!   sent Graph nothing malformed.
//!
//! `ELEVATE_GRAPH_FAULT_SEED` (default 29) seeds the round, `ELEVATE_GRAPH_FAULT_STEPS` (default
//! 60) is how many requests it drives. A failure names its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use elevate::adapters::access::arm::ArmAccessProvider;
use elevate::adapters::access::graph::GraphAccessProvider;
use elevate::adapters::access::routed::RoutedAccess;
use elevate::adapters::directory::GraphDirectory;
use elevate::adapters::identity::dev::{DevIssuer, DevTokenRequest};
use elevate::clock::{Clock, ManualClock};
use elevate::config::{AuthSetting, ProviderSetting, RunMode, Settings, StoreSetting};
use elevate::service::ports::{AccessProvider, Directory};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::support::arm::{FakeIdentityCredential, fast_retry};
use crate::support::checker::{self, Held, StoreView, Violation, World, reaches};
use crate::support::fake_azure::FakeAzure;
use crate::support::fake_graph::{FakeGraph, GraphRandomFaults, HELPDESK_ADMINISTRATOR};
use crate::support::{ALICE, BOB, CAROL, OPS, http_client, knob, start, timer_payload};

/// The group whose membership is granted just in time.
const PRIVILEGED: &str = "a0a0a0a0-0000-4000-8000-0000000000bb";
/// The `member` group pseudo-role's id (design.md).
const MEMBER_ROLE: &str = "e1e7a7e0-0000-4000-8000-6d656d626572";

fn policy() -> String {
    format!(
        r#"
version: 1
defaults:
  maxDuration: PT4H
  requireMfa: true
  requireJustification: true
rules:
  - id: helpdesk
    scope: directory:/
    roles: [Helpdesk Administrator]
    principals: [group:{OPS}]
  - id: privileged-member
    scope: group:{PRIVILEGED}
    roles: [member]
    principals: [group:{OPS}]
    approval:
      approvers: [user:{BOB}]
      timeout: PT1H
"#
    )
}

fn member(i: usize) -> String {
    format!("77777777-7777-4777-8777-{i:012}")
}

// ---- the checker's Graph view ----

fn activation(principal: &str, role: &str, scope: &str, status: &str, recorded: &str) -> Value {
    json!({
        "request": {"principalId": principal, "roleDefinitionId": role, "scope": scope},
        "state": {"status": status, "roleAssignmentId": recorded, "since": "2026-11-25T12:00:00Z",
                  "expiresAt": "2026-11-25T14:00:00Z"},
        "approvals": [],
    })
}

fn unexplained(violations: &[Violation]) -> Vec<String> {
    violations
        .iter()
        .filter_map(|v| match v {
            Violation::UnexplainedAssignment { assignment, .. } => Some(assignment.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_checker_catches_an_unexplained_graph_assignment() {
    let graph = FakeGraph::start().await;
    for id in [ALICE, BOB, CAROL] {
        graph.add_user(id, &format!("User {}", &id[..4]));
    }
    graph.add_group(PRIVILEGED, "Privileged operators", false);
    let alice_role = graph.add_role_assignment(HELPDESK_ADMINISTRATOR, ALICE, "/");
    graph.add_member(PRIVILEGED, ALICE);
    let bobs = graph.add_role_assignment(HELPDESK_ADMINISTRATOR, BOB, "/");
    graph.add_member(PRIVILEGED, CAROL);

    let alice_link = format!("groups/{PRIVILEGED}/members/{ALICE}");
    let carol_link = format!("groups/{PRIVILEGED}/members/{CAROL}");
    let mut store = StoreView::default();
    let group = format!("group:{PRIVILEGED}");
    store.activations.insert(
        "00000000-0000-4000-8000-000000000001".into(),
        activation(ALICE, HELPDESK_ADMINISTRATOR, "directory:/", "Active", &alice_role),
    );
    store.activations.insert(
        "00000000-0000-4000-8000-000000000002".into(),
        activation(ALICE, MEMBER_ROLE, &group, "Active", &alice_link),
    );
    // Carol's membership outlived her activation.
    store.activations.insert(
        "00000000-0000-4000-8000-000000000003".into(),
        activation(CAROL, MEMBER_ROLE, &group, "Deactivated", &carol_link),
    );
    let held = Held::graph(&graph, &[PRIVILEGED]);
    assert_eq!(held.len(), 4, "{held:#?}");
    let swept_at = start() + TimeDelta::minutes(30);
    let found = checker::check(&World { store: &store, held: &held, standing: &[], swept_at });
    // Bob's role no activation records; Carol's membership belongs to an ended activation.
    assert_eq!(unexplained(&found), [bobs.clone(), carol_link.clone()], "{found:#?}");

    // Standing, Bob's role is explained, and its removal is caught.
    let standing = [Held::graph_role(&graph.role_assignments().into_iter().find(|a| a.id == bobs).unwrap())];
    graph.remove_role_assignment(&bobs);
    let held = Held::graph(&graph, &[PRIVILEGED]);
    let found = checker::check(&World { store: &store, held: &held, standing: &standing, swept_at });
    assert!(found.contains(&Violation::StandingRemoved { assignment: bobs.clone() }), "{found:#?}");
    assert_eq!(unexplained(&found), [carol_link], "{found:#?}");
}

/// Graph's assignments carry no marker: a grant not yet recorded is its Provisioning activation's
/// only while the grace lasts, and only if it is what that activation asked for.
#[tokio::test]
async fn the_checker_allows_an_unrecorded_graph_grant_only_in_flight() {
    let graph = FakeGraph::start().await;
    graph.add_user(ALICE, "Alice Smith");
    let id = graph.add_role_assignment(HELPDESK_ADMINISTRATOR, ALICE, "/");
    let held = Held::graph(&graph, &[]);
    let mut provisioning = activation(ALICE, HELPDESK_ADMINISTRATOR, "directory:/", "Provisioning", "");
    provisioning["state"].as_object_mut().unwrap().remove("roleAssignmentId");
    let mut store = StoreView::default();
    store.activations.insert("00000000-0000-4000-8000-000000000001".into(), provisioning.clone());
    let judge = |store: &StoreView, minutes: i64| {
        let swept_at = start() + TimeDelta::minutes(minutes);
        unexplained(&checker::check(&World { store, held: &held, standing: &[], swept_at }))
    };
    assert!(judge(&store, 1).is_empty(), "in flight");
    assert_eq!(judge(&store, 10), std::slice::from_ref(&id), "past the grace");
    provisioning["request"]["scope"] = json!("directory:/administrativeUnits/a0a0a0a0-0000-4000-8000-000000000001");
    store.activations.insert("00000000-0000-4000-8000-000000000001".into(), provisioning);
    assert_eq!(judge(&store, 1), [id], "another scope than asked for");
}

// ---- one Elevate with its fakes ----

struct Rig {
    seed: u64,
    base: String,
    clock: Arc<ManualClock>,
    issuer: Arc<DevIssuer>,
    graph: Arc<FakeGraph>,
    _azure: Arc<FakeAzure>,
    db: std::path::PathBuf,
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

impl Rig {
    async fn new(seed: u64, principals: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let policy_file = dir.path().join("policy.yaml");
        std::fs::write(&policy_file, policy()).unwrap();
        let azure = FakeAzure::start().await;
        let graph = FakeGraph::start().await;
        azure.wire_graph(&graph.token);
        for (id, name) in [(BOB, "Bob Jones"), (CAROL, "Carol White")] {
            graph.add_user(id, name);
        }
        // The requesters are in Ops, as their tokens say and as an approval checks through Graph.
        graph.add_group(OPS, "Ops", false);
        for i in 1..=principals {
            graph.add_user(&member(i), &format!("Member {i}"));
            graph.add_member(OPS, &member(i));
        }
        graph.add_group(PRIVILEGED, "Privileged operators", false);
        // Carol holds the role and the membership outside Elevate: no fault may make Elevate
        // remove either.
        let carol_role = graph.add_role_assignment(HELPDESK_ADMINISTRATOR, CAROL, "/");
        graph.add_member(PRIVILEGED, CAROL);
        let standing = Held::graph(&graph, &[PRIVILEGED]);
        assert_eq!(standing.len(), 2);
        assert!(standing.iter().any(|h| h.id == carol_role));

        let db = dir.path().join("elevate.db");
        let listener = elevate::startup::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = Settings {
            mode: RunMode::FunctionsHost,
            port: 0,
            policy_file,
            store: StoreSetting::Sqlite(db.clone()),
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
        let credential = || Arc::new(FakeIdentityCredential::new(&azure));
        let arm = Arc::new(ArmAccessProvider::new(&azure.url(), credential(), fast_retry()).unwrap());
        let graph_access = Arc::new(GraphAccessProvider::new(&graph.url(), credential(), fast_retry()).unwrap());
        let directory = Arc::new(GraphDirectory::new(&graph.url(), credential(), fast_retry()).unwrap());
        let access = Arc::new(RoutedAccess::new(arm, graph_access)) as Arc<dyn AccessProvider>;
        let ports = elevate::startup::Ports {
            access: Some(access),
            directory: Some(directory as Arc<dyn Directory>),
            queue: None,
        };
        let clock = Arc::new(ManualClock::new(start()));
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
            graph,
            _azure: azure,
            db,
            standing,
            client: http_client(),
            _dir: dir,
            stop: Some(stop),
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

    async fn sweep(&self) -> (u16, Value) {
        let (status, body) = self.call("", "/expiry-sweeper", timer_payload(false, true), None).await;
        (status, body["ReturnValue"].clone())
    }

    fn view(&self) -> StoreView {
        checker::read_sqlite(&self.db).unwrap_or_else(|e| panic!("seed {}: reading the store: {e}", self.seed))
    }

    fn held(&self) -> Vec<Held> {
        Held::graph(&self.graph, &[PRIVILEGED])
    }
}

// ---- the client ----

#[derive(Debug, Default)]
struct Claim {
    status: String,
    every: BTreeSet<String>,
    approved: bool,
}

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
    refused: usize,
    failed: usize,
    sweeps: usize,
    retried: usize,
    not_ok: BTreeMap<String, usize>,
}

struct Client {
    rng: StdRng,
    next_member: usize,
    claims: BTreeMap<String, Claim>,
    requested_by: BTreeMap<String, String>,
    pending: Vec<String>,
    active: Vec<(String, String)>,
    retries: Vec<Retry>,
    figures: Figures,
}

impl Client {
    fn new(seed: u64) -> Client {
        Client {
            rng: StdRng::seed_from_u64(seed ^ 0x9a9b),
            next_member: 0,
            claims: BTreeMap::new(),
            requested_by: BTreeMap::new(),
            pending: Vec::new(),
            active: Vec::new(),
            retries: Vec::new(),
            figures: Figures::default(),
        }
    }

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
        assert!(
            !(400..500).contains(&status),
            "seed {}: {principal}'s request ({key}) refused: {status} {answer}",
            rig.seed
        );
        if !(200..300).contains(&status) {
            self.retries.push(Retry::Activate { principal, body, key });
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

    async fn step(&mut self, rig: &Rig) {
        let roll = self.rng.gen_range(0..100);
        if roll < 30 {
            let minutes = 30 * self.rng.gen_range(1..=4);
            let body = json!({"roleDefinitionId": "Helpdesk Administrator", "scope": "directory:/",
                              "duration": format!("PT{minutes}M"), "justification": "INC-17 helpdesk"});
            self.request(rig, body).await;
        } else if roll < 55 {
            let body = json!({"roleDefinitionId": "member", "scope": format!("group:{PRIVILEGED}"),
                              "duration": "PT1H", "justification": "INC-17 privileged"});
            self.request(rig, body).await;
        } else if roll < 72 && !self.pending.is_empty() {
            let id = self.pending.swap_remove(self.rng.gen_range(0..self.pending.len()));
            self.approve(rig, id).await;
        } else if roll < 88 && !self.active.is_empty() {
            let (id, principal) = self.active.swap_remove(self.rng.gen_range(0..self.active.len()));
            self.deactivate(rig, id, principal).await;
        } else {
            rig.clock.advance(TimeDelta::minutes(self.rng.gen_range(5..=40)));
            self.sweep(rig).await;
        }
    }

    async fn request(&mut self, rig: &Rig, body: Value) {
        self.next_member += 1;
        let principal = member(self.next_member);
        let key = format!("graph-req-{}", self.next_member);
        self.activate(rig, principal, body, key).await;
    }

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
                        409 => {}
                        _ => panic!("seed {}: approving {id} after healing: {status} {answer}", rig.seed),
                    }
                }
                Retry::Deactivate { id, principal } => {
                    let path = format!("/api/activations/{id}/deactivate");
                    let (mut status, mut answer) =
                        rig.call(&rig.token(&principal, &[OPS]), &path, Value::Null, None).await;
                    self.count("deactivate again", status, &answer);
                    // A delete whose answer was lost leaves a young grant that Graph no longer
                    // shows; for a young grant that proves nothing (graph-spec §0 items 9–10), so
                    // Elevate refuses until it settles (`GRANT_SETTLES`). The client tries later.
                    if status == 503 && answer["error"]["code"] == "RevocationFailed" {
                        rig.clock.advance(TimeDelta::minutes(6));
                        (status, answer) = rig.call(&rig.token(&principal, &[OPS]), &path, Value::Null, None).await;
                        self.count("deactivate once settled", status, &answer);
                    }
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

/// Every 2xx answer whose change the store does not hold, and every request that made more than
/// one activation.
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
    let mut per_principal: BTreeMap<&str, usize> = BTreeMap::new();
    for a in view.activations.values() {
        *per_principal.entry(a["request"]["principalId"].as_str().unwrap_or_default()).or_default() += 1;
    }
    for (principal, n) in per_principal.into_iter().filter(|(_, n)| *n > 1) {
        out.push(format!("{principal}'s one request made {n} activations"));
    }
    out
}

fn graph_faults() -> GraphRandomFaults {
    GraphRandomFaults {
        throttle: 0.03,
        // Longer than the provider's five attempts: a request caught in it fails.
        storm: 6,
        retry_after: "0.15".into(),
        server_error: 0.10,
        drop: 0.05,
        drop_after_apply: 0.10,
        slow: 0.05,
        slow_by: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn graph_faults_lose_no_revocation_grant_nothing_twice_and_keep_every_answer() {
    let began = Instant::now();
    let seed = knob("ELEVATE_GRAPH_FAULT_SEED", 29);
    let steps = usize::try_from(knob("ELEVATE_GRAPH_FAULT_STEPS", 60)).unwrap();
    let rig = Rig::new(seed, steps + 1).await;
    let mut client = Client::new(seed);
    rig.graph.set_random_faults(seed, graph_faults());
    for _ in 0..steps {
        client.step(&rig).await;
    }
    rig.graph.clear_random_faults();
    let injected = rig.graph.random_injected();
    assert!(injected.throttled + injected.server_errors + injected.dropped > 0, "seed {seed}: no Graph fault");

    // Heal: send again what failed, pass every end, sweep once.
    client.retry_all(&rig).await;
    rig.clock.advance(TimeDelta::hours(5));
    let (status, report) = rig.sweep().await;
    assert_eq!(status, 200, "seed {seed}: the first sweep after healing: {report}");
    let swept_at = rig.clock.now();
    let standing = |h: &Held| rig.standing.iter().any(|s| s.id.eq_ignore_ascii_case(&h.id));
    let lost: Vec<Held> = rig.held().into_iter().filter(|h| !standing(h)).collect();
    assert!(lost.is_empty(), "seed {seed}: access left after healing and one sweep ({report}):\n{lost:#?}");

    for _ in 0..5 {
        let (status, report) = rig.sweep().await;
        assert_eq!(status, 200, "seed {seed}: a sweep after healing: {report}");
        if report["examined"] == 0 && report["failures"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
    }
    let view = rig.view();
    let held = rig.held();
    assert_eq!(held, rig.standing, "seed {seed}: nothing but the standing role and membership remain");
    let world = World { store: &view, held: &held, standing: &rig.standing, swept_at };
    if let Err(e) = checker::judged(&world) {
        panic!("seed {seed}: {e}");
    }
    let broken = broken_claims(&client, &view);
    assert!(broken.is_empty(), "seed {seed}: {} broken promise(s):\n{}", broken.len(), broken.join("\n"));
    assert!(rig.graph.violations().is_empty(), "seed {seed}: {:#?}", rig.graph.violations());

    let provisioned = |events: &Vec<Value>| events.iter().any(|e| e["action"] == "Provisioned");
    let granted = view.events.values().filter(|events| provisioned(events)).count();
    assert!(granted > 0, "seed {seed}: nothing was ever granted");
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    for a in view.activations.values() {
        *statuses.entry(a["state"]["status"].as_str().unwrap_or("?")).or_default() += 1;
    }
    let f = &client.figures;
    eprintln!(
        "graph faults, seed {seed}: {} requests ({} 2xx, {} 4xx, {} 5xx or unanswered, {} sweeps, {} retried; not 2xx: {:?}), Graph faults {injected:?}, {} activations now {statuses:?}, {granted} were granted, {:.1} s",
        f.requests,
        f.ok,
        f.refused,
        f.failed,
        f.sweeps,
        f.retried,
        f.not_ok,
        view.activations.len(),
        began.elapsed().as_secs_f64()
    );
}

// ---- the fake Graph's seeded faults ----

async fn list_status(graph: &FakeGraph) -> (u16, Option<String>, Value) {
    let url = format!("{}/v1.0/roleManagement/directory/roleAssignments", graph.url());
    match http_client().get(url).bearer_auth(&graph.token).send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            let after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (status, after, res.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, None, Value::Null),
    }
}

#[tokio::test]
async fn the_fake_graphs_random_faults_are_seeded_and_shaped_as_graphs() {
    // A storm: 429 `TooManyRequests` in the error envelope, with a decimal `Retry-After`.
    let graph = FakeGraph::start().await;
    let storm = GraphRandomFaults { throttle: 1.0, storm: 2, retry_after: "2.128".into(), ..Default::default() };
    graph.set_random_faults(1, storm);
    let (status, after, body) = list_status(&graph).await;
    assert_eq!((status, after.as_deref()), (429, Some("2.128")), "{body}");
    assert_eq!(body["error"]["code"], "TooManyRequests");
    graph.clear_random_faults();
    assert_eq!(list_status(&graph).await.0, 200, "healed");

    // A create applied, its answer never sent (graph-spec §0 item 14).
    graph.add_user(ALICE, "Alice Smith");
    let lost = GraphRandomFaults { drop_after_apply: 1.0, ..Default::default() };
    graph.set_random_faults(1, lost);
    let create = http_client()
        .post(format!("{}/v1.0/roleManagement/directory/roleAssignments", graph.url()))
        .bearer_auth(&graph.token)
        .json(&json!({"roleDefinitionId": HELPDESK_ADMINISTRATOR, "principalId": ALICE, "directoryScopeId": "/"}))
        .send()
        .await;
    assert!(create.is_err(), "no answer");
    assert_eq!(graph.role_assignments().len(), 1, "yet applied");
    assert_eq!(graph.random_injected().dropped_after_apply, 1);

    // The same seed draws the same faults.
    let mut runs = Vec::new();
    for _ in 0..2 {
        let graph = FakeGraph::start().await;
        graph.set_random_faults(7, graph_faults());
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(list_status(&graph).await.0);
        }
        runs.push((statuses, graph.random_injected()));
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].0.iter().any(|s| *s != 200), "some fault in 40 draws: {:?}", runs[0]);
}
