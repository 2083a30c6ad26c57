//! Load (issue 17): many activations by distinct principals, approvals raced on two instances,
//! and sweeps, all at once, on two Elevate instances sharing one store (SQLite: one file; Table
//! Storage: one Azurite table) and one fake ARM. Every answer is one the policy gives (no 5xx,
//! no refusal of an eligible request), the race for each approval has one winner, and the
//! independent checker (support/checker.rs) finds nothing granted twice, no trail broken and
//! nothing left past its expiry. It also prints throughput and latency; it never judges them
//! (the machines are shared): BENCHMARKS.md records the full-size run of `scripts/stress load`.
//!
//! CI runs 100 activations and 20 approvals; `ELEVATE_LOAD_ACTIVATIONS`,
//! `ELEVATE_LOAD_APPROVALS` set the size, `ELEVATE_LOAD_SEED` (CI: 17) the order requests are
//! sent in and which instance each goes to (printed on failure), `ELEVATE_LOAD_ARM_LATENCY_MS`
//! how long the fake ARM takes to answer (5 ms unless set).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use elevate::clock::Clock;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use elevate::adapters::azure::RetryPolicy;

use crate::support::arm::provider;
use crate::support::azurite::azurite;
use crate::support::checker::{self, Held, StoreView, World};
use crate::support::fake_azure::FakeAzure;
use crate::support::{BOB, CAROL, OPS, SUB1, SUB2, TestApp, spawn_shared, start as t0};

pub(crate) const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
/// Activations made before the load and due during it: the sweeps have work.
pub(crate) const DUE: usize = 40;
/// Member numbers: the load's activations from 0, approval requesters and due ones above.
pub(crate) const REQUESTERS_FROM: usize = 100_000;
pub(crate) const DUE_FROM: usize = 200_000;

pub fn policy() -> String {
    crate::support::two_rule_policy(&format!("group:{OPS}"), &format!("user:{BOB}, user:{CAROL}"), "PT8H")
}

/// A small seeded generator (SplitMix64): the same seed, the same run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The seed in `var`, or CI's fixed one (scripts/stress passes a fresh one and prints it).
pub fn seed_from(var: &str) -> u64 {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(17)
}

pub(crate) fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Tables,
}

/// Two instances on one store and one fake ARM.
struct Rig {
    fake: Arc<FakeAzure>,
    apps: Vec<TestApp>,
    standing: Vec<Held>,
    kind: Kind,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new(kind: Kind, arm_latency: Duration) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeAzure::start().await;
        fake.set_latency(arm_latency);
        // Someone holds Reader outside Elevate: no sweep may take it.
        let standing_id = fake.assign_outside(SUB1, CAROL, READER);
        let standing =
            fake.assignments().iter().map(Held::arm).filter(|h| h.id.eq_ignore_ascii_case(&standing_id)).collect();
        let db = dir.path().join("elevate.db");
        let tables = (kind == Kind::Tables).then(|| azurite().tables(dir.path().join("local.db")));
        let mut apps = Vec::new();
        // One after the other: the first creates the schema (or the table).
        for _ in 0..2 {
            // Production's retry policy: the load is what a deployment meets.
            let access = provider(&fake, RetryPolicy::default());
            apps.push(spawn_shared(&policy(), access, db.clone(), tables.clone(), t0()).await);
        }
        Rig { fake, apps, standing, kind, _dir: dir }
    }

    fn advance(&self, by: TimeDelta) {
        for app in &self.apps {
            app.clock.advance(by);
        }
    }

    async fn view(&self) -> StoreView {
        let app = &self.apps[0];
        match &app.tables {
            Some(tables) => checker::read_tables(tables).await,
            None => checker::read_sqlite(&app.db),
        }
        .unwrap()
    }
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Sends one request, timing it.
async fn timed(app: &TestApp, token: String, path: String, body: Value) -> (StatusCode, Value, Duration) {
    let began = Instant::now();
    let (status, value) = app.post(&token, &path, body).await;
    (status, value, began.elapsed())
}

async fn run(kind: Kind) {
    let seed = seed_from("ELEVATE_LOAD_SEED");
    let activations = size("ELEVATE_LOAD_ACTIVATIONS", 100);
    let approvals = size("ELEVATE_LOAD_APPROVALS", 20);
    let latency = Duration::from_millis(size("ELEVATE_LOAD_ARM_LATENCY_MS", 5) as u64);
    let label =
        format!("load on {kind:?} (ELEVATE_LOAD_SEED={seed}, {activations} activations, {approvals} approvals)");
    let mut rng = Rng::new(seed);
    let rig = Rig::new(kind, latency).await;

    // Before the load: activations that fall due during it, so the sweeps have work.
    let mut due = Vec::new();
    for i in 0..DUE {
        let app = &rig.apps[i % 2];
        let body = json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT30M"});
        due.push(app.activate(&app.member(DUE_FROM + i), body).await["id"].as_str().unwrap().to_owned());
    }
    rig.advance(TimeDelta::hours(1));
    // Requests that wait for an approver, by distinct requesters.
    let mut pending = Vec::new();
    for i in 0..approvals {
        let app = &rig.apps[i % 2];
        let body = json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT2H"});
        let requested = app.activate(&app.member(REQUESTERS_FROM + i), body).await;
        assert_eq!(requested["status"], "PendingApproval", "{label}: {requested}");
        pending.push(requested["id"].as_str().unwrap().to_owned());
    }

    // The load: every request built first (tokens minted by the instance that receives it), in
    // a seeded order, then all sent at once.
    enum Job {
        Activate(usize, String, usize),
        Approve(usize, String, String),
    }
    let mut jobs = Vec::new();
    for i in 0..activations {
        let at = rng.below(2);
        jobs.push(Job::Activate(at, rig.apps[at].member(i), i));
    }
    for id in &pending {
        // Both approvers at once, one on each instance: one decision wins.
        let (bob_at, carol_at) = if rng.chance(50) { (0, 1) } else { (1, 0) };
        jobs.push(Job::Approve(bob_at, rig.apps[bob_at].token(BOB), id.clone()));
        jobs.push(Job::Approve(carol_at, rig.apps[carol_at].token(CAROL), id.clone()));
    }
    rng.shuffle(&mut jobs);

    let done = AtomicBool::new(false);
    let sweeping = async {
        let mut reports = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let (a, b) = tokio::join!(rig.apps[0].sweep(), rig.apps[1].sweep());
            reports.push(a);
            reports.push(b);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reports
    };
    let began = Instant::now();
    let load = async {
        let calls = jobs.into_iter().map(|job| {
            let rig = &rig;
            async move {
                match job {
                    Job::Activate(at, token, i) => {
                        let body = json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"});
                        let (status, value, took) = timed(&rig.apps[at], token, "/api/activations".into(), body).await;
                        (true, format!("activation {i}"), status, value, took)
                    }
                    Job::Approve(at, token, id) => {
                        let decision = json!({"decision": "Approve", "justification": "reviewed"});
                        let (status, value, took) =
                            timed(&rig.apps[at], token, format!("/api/approvals/{id}"), decision).await;
                        (false, id, status, value, took)
                    }
                }
            }
        });
        let answers = join_all(calls).await;
        done.store(true, Ordering::SeqCst);
        answers
    };
    let (answers, reports) = tokio::join!(load, sweeping);
    let wall = began.elapsed();

    // No error beyond policy: every activation granted at once; each approval race won once,
    // the loser told it lost (409), nothing else.
    let mut errors = Vec::new();
    let mut activation_latency = Vec::new();
    let mut approval_latency = Vec::new();
    let mut outcomes: std::collections::BTreeMap<String, Vec<u16>> = std::collections::BTreeMap::new();
    // Granted while the caller waited, or (the grant slow or failing for a moment) recorded
    // and left Provisioning for the sweeper to finish, as the API documents.
    let mut deferred = 0;
    for (is_activation, what, status, value, took) in &answers {
        if *is_activation {
            activation_latency.push(*took);
            if *status == StatusCode::CREATED && value["status"] == "Provisioning" {
                deferred += 1;
            } else if *status != StatusCode::CREATED || value["status"] != "Active" {
                errors.push(format!("{what}: {status} {value}"));
            }
        } else {
            approval_latency.push(*took);
            outcomes.entry(what.clone()).or_default().push(status.as_u16());
            if *status != StatusCode::OK && *status != StatusCode::CONFLICT {
                errors.push(format!("approving {what}: {status} {value}"));
            }
        }
    }
    for (id, mut statuses) in outcomes {
        statuses.sort_unstable();
        if statuses != [200, 409] {
            errors.push(format!("the approval race for {id} ended {statuses:?}, not one winner"));
        }
    }
    for report in &reports {
        if !report["failures"].as_array().is_some_and(Vec::is_empty) {
            errors.push(format!("a sweep during the load failed: {report}"));
        }
    }
    assert!(errors.is_empty(), "{label}: {} error(s):\n{}", errors.len(), errors.join("\n"));

    // After it: every due activation expired (by the sweeps during the load or the one after),
    // and past the provisioning grace every deferred grant finished.
    rig.advance(TimeDelta::minutes(4));
    let last = rig.apps[1].sweep().await;
    assert!(last["failures"].as_array().is_some_and(Vec::is_empty), "{label}: {last}");
    let now = rig.apps[1].clock.now();
    let view = rig.view().await;
    let held: Vec<Held> = rig.fake.assignments().iter().map(Held::arm).collect();
    if let Err(e) = checker::judged(&World { store: &view, held: &held, standing: &rig.standing, swept_at: now }) {
        panic!("{label}: {e}");
    }
    let status = |id: &str| view.activations[&id.to_ascii_lowercase()]["state"]["status"].as_str().unwrap().to_owned();
    assert!(due.iter().all(|id| status(id) == "Expired"), "{label}: the due ones expired; last sweep {last}");
    assert!(pending.iter().all(|id| status(id) == "Active"), "{label}: the approved ones are active");
    let active = view.activations.values().filter(|a| a["state"]["status"] == "Active").count();
    assert_eq!(active, activations + approvals, "{label}");
    assert_eq!(held.len(), activations + approvals + rig.standing.len(), "{label}: one assignment each");

    let expired: u64 = reports.iter().chain([&last]).map(|r| r["expired"].as_u64().unwrap_or(0)).sum();
    assert_eq!(expired, DUE as u64, "{label}: each due activation expired once");
    activation_latency.sort_unstable();
    approval_latency.sort_unstable();
    println!(
        "{:?} (seed {seed}): {activations} activations + {} approval decisions ({approvals} raced approvals) + {} sweeps in {:.2} s: \
         {:.0} requests/s; {deferred} grants left to the sweeper; activation p50 {} p99 {} max {}; approval p50 {} p99 {}; ARM latency {} ms; {} ARM calls",
        rig.kind,
        approval_latency.len(),
        reports.len(),
        wall.as_secs_f64(),
        answers.len() as f64 / wall.as_secs_f64(),
        ms(pct(&activation_latency, 50.0)),
        ms(pct(&activation_latency, 99.0)),
        ms(pct(&activation_latency, 100.0)),
        ms(pct(&approval_latency, 50.0)),
        ms(pct(&approval_latency, 99.0)),
        latency.as_millis(),
        rig.fake.seen().len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_approvals_and_sweeps_at_once_on_two_instances_sharing_sqlite_grant_each_once() {
    run(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_approvals_and_sweeps_at_once_on_two_instances_sharing_azurite_grant_each_once() {
    run(Kind::Tables).await;
}
