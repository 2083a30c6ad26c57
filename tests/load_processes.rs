//! Load on two real processes (issue 17): the load of tests/load.rs — many activations by
//! distinct principals, approvals raced by two approvers, and sweeps, all at once — sent to two
//! `elevate serve --functions-host` processes (the binary `cargo test` builds) that share one
//! Azurite table and one fake ARM, each with its own connections, caches and timer invocations
//! (the test plays the Functions host and fires each process's timer again and again). The same
//! promises as in-process: every answer is one the policy gives, each approval race has one
//! winner, every sweep succeeds, and the independent checker (support/checker.rs) finds nothing
//! granted twice, no trail broken and nothing left past its expiry. Both processes must still be
//! running at the end. Figures are printed, never judged (the machine is shared): BENCHMARKS.md
//! records the full-size run of `scripts/stress load-processes`.
//!
//! The binary reads only the wall clock, so the past and the future are made the way the crash
//! matrix makes them: the activations that fall due during the load are requested an hour ago
//! by an Elevate built from the processes' own settings on a manual clock, and the sweep past
//! the provisioning grace after the load runs the same way, four minutes ahead.
//!
//! CI runs 100 activations and 20 approvals with seed 17; the knobs are tests/load.rs's:
//! `ELEVATE_LOAD_ACTIVATIONS`, `ELEVATE_LOAD_APPROVALS`, `ELEVATE_LOAD_SEED`,
//! `ELEVATE_LOAD_ARM_LATENCY_MS` (5 ms unless set).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use elevate::adapters::identity::dev::{DevIssuer, DevTokenRequest};
use elevate::clock::{Clock, ManualClock};
use elevate::config::{RunMode, Settings, TablesSetting};
use elevate::domain::duration::IsoDuration;
use elevate::domain::ids::{PrincipalId, RoleDefinitionId, TenantId};
use elevate::domain::scope::Scope;
use elevate::service::ActivationInput;
use elevate::service::Elevate;
use elevate::service::ports::Caller;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::load::{DUE, DUE_FROM, READER, REQUESTERS_FROM, Rng, ms, pct, policy, seed_from, size};
use crate::support::arm::{fast_retry, provider};
use crate::support::azurite::azurite;
use crate::support::checker::{self, Held, World};
use crate::support::fake_azure::{FakeAzure, MI_HEADER};
use crate::support::process::{self, Process};
use crate::support::{BOB, CAROL, OPS, SUB1, SUB2, http_client, timer_payload, user};

#[expect(clippy::disallowed_methods, reason = "the binary stamps its records with the wall clock")]
fn wall_now() -> DateTime<Utc> {
    Utc::now()
}

fn member_id(i: usize) -> String {
    format!("66666666-6666-6666-6666-{i:012}")
}

/// Two processes on one Azurite table and one fake ARM, and the key both accept tokens from.
struct Rig {
    dir: tempfile::TempDir,
    fake: Arc<FakeAzure>,
    tables: TablesSetting,
    issuer: DevIssuer,
    standing: Vec<Held>,
    processes: Vec<Process>,
}

impl Rig {
    async fn new(arm_latency: Duration) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy()).unwrap();
        // The processes run in `dir` and read the dev issuer's key from its default place.
        std::fs::create_dir_all(dir.path().join(".elevate")).unwrap();
        let issuer = DevIssuer::load_or_create(&dir.path().join(".elevate/dev-issuer.pem")).unwrap();
        let fake = FakeAzure::start().await;
        fake.set_latency(arm_latency);
        // Someone holds Reader outside Elevate: no sweep may take it.
        let standing_id = fake.assign_outside(SUB1, CAROL, READER);
        let standing =
            fake.assignments().iter().map(Held::arm).filter(|h| h.id.eq_ignore_ascii_case(&standing_id)).collect();
        let tables = azurite().tables(dir.path().join("local.db"));
        Rig { dir, fake, tables, issuer, standing, processes: Vec::new() }
    }

    /// What both processes are started with (and what the in-process Elevate reads).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ELEVATE_AUTH_MODE", "dev".to_owned()),
            ("ELEVATE_PROVIDER", "arm".into()),
            ("ELEVATE_ARM_ENDPOINT", self.fake.url()),
            // Group membership from the token: no Graph here (dev identity needs it on loopback).
            ("ELEVATE_GROUP_CHECKS", "token".into()),
            ("ELEVATE_GRAPH_ENDPOINT", "http://127.0.0.1:9".into()),
            ("IDENTITY_ENDPOINT", self.fake.identity_endpoint()),
            ("IDENTITY_HEADER", MI_HEADER.into()),
            ("ELEVATE_POLICY_FILE", self.dir.path().join("policy.yaml").display().to_string()),
            ("ELEVATE_STORE", azurite().connection_string()),
            ("ELEVATE_STORE_TABLE", self.tables.table.clone()),
        ]
    }

    /// Starts the two processes, one after the other (the first finds the table made).
    async fn start(&mut self) {
        let args = ["serve".to_owned(), "--functions-host".to_owned()];
        for _ in 0..2 {
            self.processes.push(process::start(self.dir.path(), &args, &self.env()).await);
        }
    }

    /// Elevate as the binary builds it, over the same table and fake ARM, on a manual clock at `at`.
    fn elevate_at(&self, at: DateTime<Utc>) -> Arc<Elevate> {
        let mut env: HashMap<&str, String> = self.env().into_iter().collect();
        env.insert("FUNCTIONS_CUSTOMHANDLER_PORT", "0".into());
        let settings = Settings::from_env(RunMode::FunctionsHost, |k| env.get(k).cloned(), None).unwrap();
        let clock = Arc::new(ManualClock::new(at)) as Arc<dyn Clock>;
        let access = provider(&self.fake, fast_retry());
        let ports = elevate::startup::Ports { access: Some(access), directory: None, queue: None };
        elevate::startup::build_with(&settings, clock, ports).unwrap().service
    }

    fn token(&self, request: &DevTokenRequest) -> String {
        self.issuer.mint(request, wall_now()).unwrap()
    }

    /// Member `i` of OPS (eligible for Reader on SUB1 and to ask for Contributor on SUB2).
    fn member(&self, i: usize) -> String {
        self.token(&DevTokenRequest { groups: vec![OPS.into()], ..user(&member_id(i)) })
    }

    fn base(&self, at: usize) -> &str {
        &self.processes[at].base
    }

    /// Fails with its log if a process has exited.
    fn assert_running(&mut self, label: &str) {
        for p in &mut self.processes {
            if let Some(status) = p.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                panic!("{label}: elevate at {} exited ({status}):\n{log}", p.base);
            }
        }
    }
}

fn caller(i: usize) -> Caller {
    Caller {
        principal_id: PrincipalId::parse(&member_id(i)).unwrap(),
        tenant_id: TenantId::parse("de7e1e7a-0000-4000-8000-000000000001").unwrap(),
        name: None,
        app_id: None,
        app_only: false,
        roles: vec![],
        groups: vec![PrincipalId::parse(OPS).unwrap()],
        groups_overage: false,
        mfa: true,
        auth_contexts: vec![],
    }
}

/// POSTs `body` to `base` + `path`, timing it to the full answer.
async fn post(client: &reqwest::Client, base: &str, token: &str, path: &str, body: Value) -> (u16, Value, Duration) {
    let began = Instant::now();
    let res = client.post(format!("{base}{path}")).bearer_auth(token).json(&body).send().await;
    match res {
        Ok(res) => {
            let status = res.status().as_u16();
            let value = res.json().await.unwrap_or(Value::Null);
            (status, value, began.elapsed())
        }
        // Counted as an error, with what the client saw.
        Err(e) => (0, json!(format!("no answer: {e}")), began.elapsed()),
    }
}

/// One timer invocation, as the Functions host sends it: the sweep report, or what went wrong.
async fn tick(client: &reqwest::Client, base: &str) -> Result<Value, String> {
    let res = client
        .post(format!("{base}/expiry-sweeper"))
        .json(&timer_payload(false, true))
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = res.status().as_u16();
    let value: Value = res.json().await.map_err(|e| format!("{status}, not JSON: {e}"))?;
    if status == 200 { Ok(value["ReturnValue"].clone()) } else { Err(format!("{status} {value}")) }
}

async fn run() {
    let seed = seed_from("ELEVATE_LOAD_SEED");
    let activations = size("ELEVATE_LOAD_ACTIVATIONS", 100);
    let approvals = size("ELEVATE_LOAD_APPROVALS", 20);
    let latency = Duration::from_millis(size("ELEVATE_LOAD_ARM_LATENCY_MS", 5) as u64);
    let label = format!(
        "load on two processes sharing Azurite (ELEVATE_LOAD_SEED={seed}, {activations} activations, {approvals} approvals)"
    );
    let mut rng = Rng::new(seed);
    let mut rig = Rig::new(latency).await;

    // Before the processes start: activations requested an hour ago for 30 minutes, due now, so
    // the sweeps during the load have work (this also makes the table).
    let hour_ago = wall_now() - TimeDelta::hours(1);
    let past = rig.elevate_at(hour_ago);
    let mut due = Vec::new();
    for i in 0..DUE {
        let input = ActivationInput {
            principal_id: None,
            role_definition_id: RoleDefinitionId::parse("Reader").unwrap(),
            scope: Scope::parse(SUB1).unwrap(),
            duration: Some(IsoDuration::parse("PT30M").unwrap()),
            justification: None,
            ticket: None,
            start_at: None,
            rule_id: None,
        };
        let requested = past.request_activation(&caller(DUE_FROM + i), input, None, hour_ago).await.unwrap();
        due.push(requested.activation.id().to_string());
    }
    drop(past);
    rig.start().await;
    let client = http_client();

    // Requests that wait for an approver, by distinct requesters, half to each process.
    let mut pending = Vec::new();
    for i in 0..approvals {
        let body = json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT2H"});
        let token = rig.member(REQUESTERS_FROM + i);
        let (status, requested, _) = post(&client, rig.base(i % 2), &token, "/api/activations", body).await;
        assert_eq!((status, &requested["status"]), (201, &json!("PendingApproval")), "{label}: {requested}");
        pending.push(requested["id"].as_str().unwrap().to_owned());
    }

    // The load: every request built first (tokens minted beforehand), in a seeded order, then all
    // sent at once, each to the process the seed picks.
    enum Job {
        Activate(usize, String, usize),
        Approve(usize, String, String),
    }
    let mut jobs = Vec::new();
    for i in 0..activations {
        jobs.push(Job::Activate(rng.below(2), rig.member(i), i));
    }
    let (bob, carol) = (rig.token(&user(BOB)), rig.token(&user(CAROL)));
    for id in &pending {
        // Both approvers at once, one on each process: one decision wins.
        let (bob_at, carol_at) = if rng.chance(50) { (0, 1) } else { (1, 0) };
        jobs.push(Job::Approve(bob_at, bob.clone(), id.clone()));
        jobs.push(Job::Approve(carol_at, carol.clone(), id.clone()));
    }
    rng.shuffle(&mut jobs);

    let done = AtomicBool::new(false);
    let sweeping = async {
        let mut reports = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let (a, b) = tokio::join!(tick(&client, rig.base(0)), tick(&client, rig.base(1)));
            reports.push(a);
            reports.push(b);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reports
    };
    let began = Instant::now();
    let load = async {
        let calls = jobs.into_iter().map(|job| {
            let (client, rig) = (&client, &rig);
            async move {
                match job {
                    Job::Activate(at, token, i) => {
                        let body = json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"});
                        let (status, value, took) = post(client, rig.base(at), &token, "/api/activations", body).await;
                        (true, format!("activation {i} (process {at})"), status, value, took)
                    }
                    Job::Approve(at, token, id) => {
                        let decision = json!({"decision": "Approve", "justification": "reviewed"});
                        let path = format!("/api/approvals/{id}");
                        let (status, value, took) = post(client, rig.base(at), &token, &path, decision).await;
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
    rig.assert_running(&label);

    // No error beyond policy: every activation granted (at once, or recorded and left
    // Provisioning for the sweeper, as the API documents); each approval race won once, the
    // loser told it lost (409), nothing else; every timer invocation answered with a clean sweep.
    let mut errors = Vec::new();
    let mut activation_latency = Vec::new();
    let mut approval_latency = Vec::new();
    let mut outcomes: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    let mut deferred = 0;
    for (is_activation, what, status, value, took) in &answers {
        if *is_activation {
            activation_latency.push(*took);
            if *status == 201 && value["status"] == "Provisioning" {
                deferred += 1;
            } else if *status != 201 || value["status"] != "Active" {
                errors.push(format!("{what}: {status} {value}"));
            }
        } else {
            approval_latency.push(*took);
            outcomes.entry(what.clone()).or_default().push(*status);
            if *status != 200 && *status != 409 {
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
    let mut swept = Vec::new();
    for report in reports {
        match report {
            Ok(r) if r["failures"].as_array().is_some_and(Vec::is_empty) => swept.push(r),
            Ok(r) => errors.push(format!("a sweep during the load failed: {r}")),
            Err(e) => errors.push(format!("a timer invocation during the load failed: {e}")),
        }
    }
    assert!(errors.is_empty(), "{label}: {} error(s):\n{}", errors.len(), errors.join("\n"));

    // After it: past the provisioning grace (on a manual clock over the same table), every
    // deferred grant finished and every due activation expired, by the processes' sweeps or this.
    let later = wall_now() + TimeDelta::minutes(4);
    let last = rig.elevate_at(later).sweep(later).await;
    assert!(last.failures.is_empty(), "{label}: {last:?}");
    let view = checker::read_tables(&rig.tables).await.unwrap();
    let held: Vec<Held> = rig.fake.assignments().iter().map(Held::arm).collect();
    if let Err(e) = checker::judged(&World { store: &view, held: &held, standing: &rig.standing, swept_at: later }) {
        panic!("{label}: {e}");
    }
    let status = |id: &str| view.activations[&id.to_ascii_lowercase()]["state"]["status"].as_str().unwrap().to_owned();
    assert!(due.iter().all(|id| status(id) == "Expired"), "{label}: the due ones expired; last sweep {last:?}");
    assert!(pending.iter().all(|id| status(id) == "Active"), "{label}: the approved ones are active");
    let active = view.activations.values().filter(|a| a["state"]["status"] == "Active").count();
    assert_eq!(active, activations + approvals, "{label}");
    assert_eq!(held.len(), activations + approvals + rig.standing.len(), "{label}: one assignment each");
    let expired_during: u64 = swept.iter().map(|r| r["expired"].as_u64().unwrap_or(0)).sum();
    assert_eq!(expired_during + last.expired as u64, DUE as u64, "{label}: each due activation expired once");
    rig.assert_running(&label);

    activation_latency.sort_unstable();
    approval_latency.sort_unstable();
    println!(
        "two processes on Azurite (seed {seed}): {activations} activations + {} approval decisions ({approvals} raced approvals) \
         + {} timer invocations (expiring {expired_during} of {DUE} due) in {:.2} s: {:.0} requests/s; {deferred} grants left to the sweeper; \
         activation p50 {} p99 {} max {}; approval p50 {} p99 {}; ARM latency {} ms; {} ARM calls; binary {}",
        approval_latency.len(),
        swept.len(),
        wall.as_secs_f64(),
        answers.len() as f64 / wall.as_secs_f64(),
        ms(pct(&activation_latency, 50.0)),
        ms(pct(&activation_latency, 99.0)),
        ms(pct(&activation_latency, 100.0)),
        ms(pct(&approval_latency, 50.0)),
        ms(pct(&approval_latency, 99.0)),
        latency.as_millis(),
        rig.fake.seen().len(),
        process::exe().parent().and_then(Path::file_name).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_approvals_and_sweeps_at_once_on_two_processes_sharing_azurite_grant_each_once() {
    run().await;
}
