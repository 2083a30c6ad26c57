//! Soak (issue 17): a bounded run of random requests, approvals, denials, extensions,
//! cancellations, deactivations, sweeps and time passing (the in-process app's manual clock),
//! with faults from the fake ARM mixed in (every call failing with 500 or 503 for a while,
//! calls to one resource group failing, deletes answered 200 that leave the assignment in
//! place, one-off 429s, 5xx and dropped connections, slow answers). Then everything heals,
//! sweeps run until they find nothing to do, and the independent checker (support/checker.rs)
//! judges the store and the fake ARM.
//!
//! After every sweep the checker runs too, judged at the last sweep that ran with ARM healthy:
//! whatever had expired by then has no access left. (While ARM fails every call, nothing can be
//! revoked; the promise is that the first sweep after it heals revokes it.) Every answer is one
//! the policy or the fault explains: 2xx, a 409 or 429 the state explains, a 503 or 502 only while
//! a fault is in place, never a 500.
//!
//! The run is sequential and every choice comes from one seed (`ELEVATE_SOAK_SEED`, CI's fixed 17
//! when unset, printed with any failure), so any failure reproduces; `ELEVATE_SOAK_STEPS` sets the
//! length (CI: 250 steps per store; `scripts/stress soak` runs the long one).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use elevate::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::load::{Kind, Rng, policy, seed_from};
use crate::support::arm::{fast_retry, provider};
use crate::support::azurite::azurite;
use crate::support::checker::{self, Held, StoreView, World};
use crate::support::fake_azure::{FakeAzure, Fault};
use crate::support::{BOB, CAROL, SUB1, SUB2, TestApp, spawn_shared, start as t0};

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
/// Requesters: few enough that they meet their cap on open requests and their own open ones.
const MEMBERS: usize = 8;
const GROUPS: usize = 3;
/// Steps of the log a failure shows.
const SHOWN: usize = 40;

/// What the fake ARM is doing to calls.
#[derive(Clone, Debug, Default)]
struct Faults {
    /// `fail_always` in place: the path fragment.
    failing: Option<String>,
    /// DELETE answers 200 but the assignment stays (only a read after it tells).
    sticky_deletes: bool,
    /// One-off faults queued: all consumed once the fake has seen this many requests.
    queued_until: usize,
    latency: Duration,
}

/// An activation as the run last saw it.
struct Known {
    id: String,
    member: usize,
    /// Asked for under the rule with approvers (BOB and CAROL may see it).
    approval: bool,
    status: String,
    extension_pending: bool,
}

struct Soak {
    kind: Kind,
    seed: u64,
    rng: Rng,
    fake: Arc<FakeAzure>,
    app: TestApp,
    standing: Vec<Held>,
    known: Vec<Known>,
    faults: Faults,
    /// When the last sweep ran with ARM healthy from start to end.
    healthy_sweep: DateTime<Utc>,
    log: VecDeque<String>,
    step: usize,
    counts: std::collections::BTreeMap<&'static str, usize>,
    _dir: tempfile::TempDir,
}

impl Soak {
    async fn new(kind: Kind, seed: u64) -> Soak {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeAzure::start().await;
        let standing_id = fake.assign_outside(SUB1, CAROL, READER);
        let standing =
            fake.assignments().iter().map(Held::arm).filter(|h| h.id.eq_ignore_ascii_case(&standing_id)).collect();
        let tables = (kind == Kind::Tables).then(|| azurite().tables(dir.path().join("local.db")));
        let app =
            spawn_shared(&policy(), provider(&fake, fast_retry()), dir.path().join("elevate.db"), tables, t0()).await;
        Soak {
            kind,
            seed,
            rng: Rng::new(seed),
            fake,
            app,
            standing,
            known: Vec::new(),
            faults: Faults::default(),
            healthy_sweep: t0(),
            log: VecDeque::new(),
            step: 0,
            counts: std::collections::BTreeMap::new(),
            _dir: dir,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.app.clock.now()
    }

    fn note(&mut self, line: String) {
        if self.log.len() == SHOWN {
            self.log.pop_front();
        }
        self.log.push_back(format!("#{} {}: {line}", self.step, self.now().format("%d %H:%M")));
    }

    /// Fails the test with the seed, the step and the recent log.
    fn fail(&self, why: &str) -> ! {
        panic!(
            "soak on {:?} failed at step {}: {why}\nreproduce: ELEVATE_SOAK_SEED={} ELEVATE_SOAK_STEPS={} cargo test --test main -- soak::\nlast steps:\n{}",
            self.kind,
            self.step,
            self.seed,
            self.step + 1,
            self.log.iter().cloned().collect::<Vec<_>>().join("\n")
        )
    }

    /// Whether a fault may still meet a call.
    fn disturbed(&self) -> bool {
        self.faults.failing.is_some() || self.faults.sticky_deletes || self.fake.seen().len() < self.faults.queued_until
    }

    fn member(&self, i: usize) -> String {
        self.app.member(i)
    }

    /// Sends `body` to `path` and judges the answer: what the state or a fault explains.
    async fn send(&mut self, what: &str, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let disturbed_before = self.disturbed();
        let (status, value) = self.app.post(token, path, body).await;
        let code = value["error"]["code"].as_str().unwrap_or_default().to_owned();
        let disturbed = disturbed_before || self.disturbed();
        self.note(format!("{what} -> {status} {code}"));
        let kind = match status.as_u16() {
            200..=299 => "2xx",
            502 | 503 => "5xx (ARM failing)",
            _ => "4xx",
        };
        *self.counts.entry(kind).or_default() += 1;
        let explained = match status.as_u16() {
            200..=299 => true,
            // The state explains these: not pending, already open, decided, an extension waiting,
            // the window closed. (One client, one request at a time: never a lost race.)
            409 => [
                "InvalidState",
                "NotPending",
                "AlreadyDecided",
                "ActivationAlreadyOpen",
                "ExtensionPending",
                "ApprovalTimedOut",
                "EligibilityEndsTooSoon",
            ]
            .contains(&code.as_str()),
            429 => code == "TooManyOpenRequests",
            // An extension past the policy's longest.
            400 => code == "PolicyViolation" && what.starts_with("extend"),
            // An approver asking for what was never theirs to decide.
            404 => code == "ActivationNotFound" && what.starts_with("not theirs:"),
            502 | 503 => disturbed,
            _ => false,
        };
        if !explained {
            self.fail(&format!("{what}: {status} {value} (ARM disturbed: {disturbed})"));
        }
        (status, value)
    }

    fn learn(&mut self, value: &Value) {
        let Some(id) = value["id"].as_str() else { return };
        let status = value["status"].as_str().unwrap_or_default().to_owned();
        let extension_pending = value.get("pendingExtension").is_some_and(|p| !p.is_null());
        if let Some(k) = self.known.iter_mut().find(|k| k.id == id) {
            k.status = status;
            k.extension_pending = extension_pending;
        }
    }

    /// A known activation whose last seen status passes `filter`, or any known one at times
    /// (to try what the state must refuse).
    fn pick(&mut self, filter: impl Fn(&Known) -> bool) -> Option<usize> {
        let fitting: Vec<usize> = (0..self.known.len()).filter(|&i| filter(&self.known[i])).collect();
        if fitting.is_empty() || self.rng.chance(10) {
            return (!self.known.is_empty()).then(|| self.rng.below(self.known.len()));
        }
        Some(fitting[self.rng.below(fitting.len())])
    }

    async fn request(&mut self) {
        let member = self.rng.below(MEMBERS);
        let minutes = 15 + 5 * self.rng.below(24);
        let mut body = if self.rng.chance(60) {
            let scope = format!("{SUB1}/resourceGroups/rg{}", self.rng.below(GROUPS));
            json!({"roleDefinitionId": "Reader", "scope": scope, "duration": format!("PT{minutes}M")})
        } else {
            json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": format!("PT{minutes}M")})
        };
        if self.rng.chance(15) {
            let start = self.now() + TimeDelta::minutes(5 + 5 * self.rng.below(12) as i64);
            body["startAt"] = json!(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        let what = format!("request by member {member}: {body}");
        let token = self.member(member);
        let (status, value) = self.send(&what, &token, "/api/activations", body).await;
        if status.is_success() {
            let id = value["id"].as_str().unwrap().to_owned();
            let approval = value["ruleId"] == "approved";
            self.known.push(Known { id, member, approval, status: String::new(), extension_pending: false });
            self.learn(&value);
        }
    }

    async fn decide(&mut self) {
        let Some(i) = self.pick(|k| k.status == "PendingApproval" || k.extension_pending) else { return };
        let approver = if self.rng.chance(50) { BOB } else { CAROL };
        let decision = if self.rng.chance(80) { "Approve" } else { "Deny" };
        let id = self.known[i].id.clone();
        let what =
            if self.known[i].approval { format!("{decision} {id}") } else { format!("not theirs: {decision} {id}") };
        let token = self.app.token(approver);
        let body = json!({"decision": decision, "justification": "reviewed"});
        let (status, value) = self.send(&what, &token, &format!("/api/approvals/{id}"), body).await;
        if status.is_success() {
            self.learn(&value);
        }
    }

    /// Extends, deactivates or cancels a known activation as its requester.
    async fn act(&mut self, action: &'static str) {
        let wanted: fn(&Known) -> bool = match action {
            "extend" => |k| k.status == "Active" && !k.extension_pending,
            "deactivate" => |k| k.status == "Active",
            _ => |k| k.status == "PendingApproval" || k.status == "Scheduled",
        };
        let Some(i) = self.pick(wanted) else { return };
        let (id, member) = (self.known[i].id.clone(), self.known[i].member);
        let body = if action == "extend" {
            json!({"duration": format!("PT{}M", 15 + 15 * self.rng.below(4)), "justification": "more time"})
        } else {
            json!({})
        };
        let token = self.member(member);
        let (status, value) =
            self.send(&format!("{action} {id}"), &token, &format!("/api/activations/{id}/{action}"), body).await;
        if status.is_success() {
            self.learn(&value);
        }
    }

    fn disturb(&mut self) {
        if self.faults.failing.is_some() || self.faults.sticky_deletes || !self.faults.latency.is_zero() {
            if let Some(path) = self.faults.failing.take() {
                self.fake.heal(&path);
            }
            self.faults.latency = Duration::ZERO;
            self.fake.set_latency(Duration::ZERO);
            self.faults.sticky_deletes = false;
            self.fake.set_sticky_deletes(false);
            self.note("ARM healed".into());
            return;
        }
        match self.rng.below(6) {
            0 | 1 => {
                // Every call, or the calls for one resource group, fail until healed.
                let path = if self.rng.chance(50) {
                    "roleassignments".to_owned()
                } else {
                    format!("resourcegroups/rg{}/", self.rng.below(GROUPS))
                };
                let status = if self.rng.chance(50) { 500 } else { 503 };
                self.fake.fail_always(&path, status);
                self.note(format!("ARM answers {status} to calls on `{path}`"));
                self.faults.failing = Some(path);
            }
            2 => {
                let latency = Duration::from_millis(50 + 50 * self.rng.below(5) as u64);
                self.fake.set_latency(latency);
                self.faults.latency = latency;
                self.note(format!("ARM answers after {} ms", latency.as_millis()));
            }
            3 => {
                self.fake.set_sticky_deletes(true);
                self.faults.sticky_deletes = true;
                self.note("ARM answers DELETE 200 but keeps the assignment".into());
            }
            _ => {
                let n = 1 + self.rng.below(3);
                let mut shown = Vec::new();
                for _ in 0..n {
                    let fault = match self.rng.below(4) {
                        0 => Fault::Throttle { retry_after_secs: self.rng.below(2) as u64 },
                        1 => Fault::Status(500),
                        2 => Fault::Status(503),
                        _ => Fault::Drop,
                    };
                    shown.push(format!("{fault:?}"));
                    self.fake.push_fault(fault);
                }
                self.faults.queued_until = self.faults.queued_until.max(self.fake.seen().len()) + n;
                self.note(format!("ARM meets the next calls with {}", shown.join(", ")));
            }
        }
    }

    async fn view(&self) -> StoreView {
        match &self.app.tables {
            Some(tables) => checker::read_tables(tables).await,
            None => checker::read_sqlite(&self.app.db),
        }
        .unwrap_or_else(|e| self.fail(&format!("reading the store: {e}")))
    }

    /// Fires the timer, then runs the checker judged at the last healthy sweep.
    async fn sweep(&mut self) -> Value {
        let healthy = !self.disturbed();
        let report = self.app.sweep().await;
        let healthy = healthy && !self.disturbed();
        let failures = report["failures"].as_array().map_or(0, Vec::len);
        self.note(format!(
            "sweep{}: expired {} timedOut {} started {} provisioned {} orphansRevoked {} failures {failures}",
            if healthy { "" } else { " (ARM disturbed)" },
            report["expired"],
            report["timedOut"],
            report["started"],
            report["provisioned"],
            report["orphansRevoked"],
        ));
        *self.counts.entry(if healthy { "sweeps" } else { "sweeps (ARM disturbed)" }).or_default() += 1;
        if healthy {
            if failures > 0 {
                self.fail(&format!("a sweep with ARM healthy failed: {report}"));
            }
            self.healthy_sweep = self.now();
        }
        let view = self.check(self.healthy_sweep).await;
        // What the sweep ended or started: the next choices aim at what is still open.
        for k in &mut self.known {
            if let Some(a) = view.activations.get(&k.id.to_ascii_lowercase()) {
                k.status = a["state"]["status"].as_str().unwrap_or_default().to_owned();
                k.extension_pending = a["state"].get("extension").is_some_and(|e| !e.is_null());
            }
        }
        report
    }

    async fn check(&self, swept_at: DateTime<Utc>) -> StoreView {
        let view = self.view().await;
        let held: Vec<Held> = self.fake.assignments().iter().map(Held::arm).collect();
        if let Err(e) = checker::judged(&World { store: &view, held: &held, standing: &self.standing, swept_at }) {
            self.fail(&format!("judged at the sweep at {swept_at}: {e}"));
        }
        view
    }

    /// Sweeps until a sweep finds nothing to do (at most `limit` sweeps).
    async fn sweep_until_quiet(&mut self, limit: usize) {
        for _ in 0..limit {
            let report = self.sweep().await;
            let busy = ["expired", "timedOut", "extensionsTimedOut", "started", "provisioned", "orphansRevoked"]
                .iter()
                .any(|k| report[*k].as_u64().unwrap_or(0) > 0);
            if !busy && report["failures"].as_array().is_some_and(Vec::is_empty) {
                return;
            }
        }
        self.fail(&format!("sweeps still find work after {limit}"));
    }

    async fn run(&mut self, steps: usize) {
        // Half the runs meet ARM's answer to a repeated PUT of an existing assignment: 409 with
        // its id (azure-cli#8599) instead of 200, as after a retried grant.
        let reput_conflict = self.rng.chance(50);
        self.fake.set_reput_conflict(reput_conflict);
        self.note(format!("ARM answers a repeated PUT with {}", if reput_conflict { "409" } else { "200" }));
        for step in 0..steps {
            self.step = step;
            match self.rng.below(100) {
                0..=21 => self.request().await,
                22..=39 => self.decide().await,
                40..=51 => self.act("extend").await,
                52..=59 => self.act("deactivate").await,
                60..=64 => self.act("cancel").await,
                65..=79 => {
                    let minutes = 1 + self.rng.below(30) as i64;
                    self.app.clock.advance(TimeDelta::minutes(minutes));
                    self.note(format!("{minutes} minutes pass"));
                }
                80..=91 => {
                    self.sweep().await;
                }
                _ => self.disturb(),
            }
        }
        self.step = steps;
        // Heal, let the provisioning grace pass, and sweep until quiet: nothing expired holds
        // access, nothing is granted twice, every trail is whole.
        if let Some(path) = self.faults.failing.take() {
            self.fake.heal(&path);
        }
        self.fake.set_latency(Duration::ZERO);
        self.fake.set_sticky_deletes(false);
        self.faults = Faults { queued_until: self.faults.queued_until, ..Faults::default() };
        self.note("ARM healed for good".into());
        self.app.clock.advance(TimeDelta::minutes(5));
        // One-off faults still queued meet no call unless a sweep makes one; a sweep they make
        // fail is not quiet, so the loop goes on until they are spent.
        self.sweep_until_quiet(10).await;
        self.check(self.now()).await;
        // Past every expiry and approval window: nothing open, nothing held but the standing.
        // Twice: a scheduled start whose sweep comes late begins then, for its whole duration.
        for _ in 0..2 {
            self.app.clock.advance(TimeDelta::hours(12));
            self.note("12 hours pass".into());
            self.sweep_until_quiet(10).await;
        }
        let view = self.check(self.now()).await;
        let open: Vec<String> = view
            .activations
            .iter()
            .filter_map(|(id, a)| {
                let status = a["state"]["status"].as_str().unwrap_or_default();
                ["Active", "Provisioning", "PendingApproval", "Scheduled"]
                    .contains(&status)
                    .then(|| format!("{id}: {status}"))
            })
            .collect();
        if !open.is_empty() {
            self.fail(&format!("still open after every expiry: {open:?}"));
        }
        let held: Vec<Held> = self.fake.assignments().iter().map(Held::arm).collect();
        if held != self.standing {
            self.fail(&format!("ARM holds more than the standing assignment: {held:#?}"));
        }
        let statuses = view.activations.values().fold(std::collections::BTreeMap::new(), |mut m, a| {
            *m.entry(a["state"]["status"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
            m
        });
        println!(
            "soak on {:?} (ELEVATE_SOAK_SEED={}): {steps} steps, {} activations ended {statuses:?}; answers {:?}; {} ARM calls",
            self.kind,
            self.seed,
            view.activations.len(),
            self.counts,
            self.fake.seen().len()
        );
    }
}

fn steps() -> usize {
    std::env::var("ELEVATE_SOAK_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(250)
}

async fn soak(kind: Kind) {
    let seed = seed_from("ELEVATE_SOAK_SEED");
    // Captured, and shown with any failure (a panic inside the app's helpers included).
    println!("soak on {kind:?}: ELEVATE_SOAK_SEED={seed} ELEVATE_SOAK_STEPS={}", steps());
    Soak::new(kind, seed).await.run(steps()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_soak_of_random_traffic_and_arm_faults_on_sqlite_keeps_every_promise() {
    soak(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_soak_of_random_traffic_and_arm_faults_on_azurite_keeps_every_promise() {
    soak(Kind::Tables).await;
}
