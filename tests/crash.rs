//! The crash matrix (issue 17). For every fail point in `elevate::failpoint::NAMES`, the real
//! binary, built once with the `failpoints` feature (into its own target directory, so the normal
//! build stays as it is), runs against the fake ARM and a store of its own, is driven to that
//! point and dies there (SIGKILL: no destructor, no flush). It is started again without the fail
//! point; the client does what a client would (retries with its `Idempotency-Key`, deactivates
//! again) and the host fires the timer. Then the time that recovery needs passes: the binary reads
//! only the wall clock, so sweeps past the provisioning grace and past every expiry run on an
//! Elevate built by the same `startup::build_with` over the same store and fake ARM, on a manual
//! clock. After each step the independent checker (support/checker.rs) judges the store and the
//! fake ARM, and the statuses are those a recovery must reach. On SQLite and on Table Storage
//! (Azurite); every scenario starts from nothing, a few at a time.
//!
//! The checker's own tests, on hand-made bad states, are here too (`the_checker_catches_*`).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use elevate::clock::{Clock, ManualClock};
use elevate::config::{RunMode, Settings, StoreSetting};
use elevate::domain::activation::Decision;
use elevate::domain::duration::IsoDuration;
use elevate::domain::ids::{ActivationId, Justification, PrincipalId, RoleDefinitionId, TenantId};
use elevate::domain::scope::Scope;
use elevate::service::ports::{AccessError, AccessProvider, Assignment, AssignmentSpec, Caller, Grant};
use elevate::service::{ActivationInput, DecisionInput, Elevate, ExtensionInput};
use futures_util::StreamExt;
use serde_json::{Value, json};

use elevate::adapters::access::arm::ArmAccessProvider;
use elevate::adapters::access::graph::GraphAccessProvider;
use elevate::adapters::access::routed::RoutedAccess;

use crate::support::arm::{FakeIdentityCredential, fast_retry, provider};
use crate::support::azurite::azurite;
use crate::support::checker::{self, Held, StoreView, Violation, World};
use crate::support::fake_azure::{FakeAzure, MI_HEADER, Stored};
use crate::support::fake_graph::{FakeGraph, HELPDESK_ADMINISTRATOR};
use crate::support::fake_webhook::FakeWebhook;
use crate::support::process::{self, Process};
use crate::support::{ALICE, BOB, CAROL, SUB1, SUB2, http_client, timer_payload};

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
/// Scenarios of one store run at once (each is two processes at most, one at a time).
const AT_ONCE: usize = 3;

fn policy() -> String {
    crate::support::two_rule_policy(&format!("user:{ALICE}"), &format!("user:{BOB}"), "PT4H")
}

#[expect(clippy::disallowed_methods, reason = "the binary stamps its records with the wall clock")]
fn wall_now() -> DateTime<Utc> {
    Utc::now()
}

// ---- the binary with fail points, built once ----

/// The `failpoints` build of the binary, wrapped so that an abort leaves no core file.
fn failpoint_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        // Beside the normal build's own directory (target/debug → target/failpoints).
        let normal = process::exe();
        let target = normal.parent().and_then(Path::parent).unwrap().join("failpoints");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["build", "--quiet", "--features", "failpoints", "--bin", "elevate", "--target-dir"])
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TERM_COLOR", "never")
            .output()
            .unwrap();
        assert!(out.status.success(), "building with --features failpoints: {}", String::from_utf8_lossy(&out.stderr));
        let built = target.join("debug").join("elevate");
        let text = String::from_utf8_lossy(&std::fs::read(&built).unwrap()).into_owned();
        assert!(text.contains("ELEVATE_FAILPOINT"), "the failpoints build carries its fail points");
        let wrapper = target.join("elevate-without-core");
        std::fs::write(&wrapper, format!("#!/bin/sh\nulimit -c 0\nexec '{}' \"$@\"\n", built.display())).unwrap();
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        wrapper
    })
}

/// A dev issuer key and tokens minted with it, shared by every scenario (each copies the key).
struct Keys {
    pem: Vec<u8>,
    alice: String,
    bob: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let alice = process::token(dir.path(), ALICE, &[]);
        let bob = process::token(dir.path(), BOB, &[]);
        let pem = std::fs::read(dir.path().join(".elevate/dev-issuer.pem")).unwrap();
        Keys { pem, alice, bob }
    })
}

// ---- one scenario's world ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    Tables,
}

struct Rig {
    name: &'static str,
    dir: tempfile::TempDir,
    fake: Arc<FakeAzure>,
    hook: FakeWebhook,
    store: StoreSetting,
    standing: Vec<Held>,
    /// The wall clock when the scenario began.
    t0: DateTime<Utc>,
}

impl Rig {
    async fn new(name: &'static str, kind: StoreKind) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".elevate")).unwrap();
        std::fs::write(dir.path().join(".elevate/dev-issuer.pem"), &keys().pem).unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy()).unwrap();
        let fake = FakeAzure::start().await;
        // Carol holds Reader outside Elevate: it must survive every crash and every sweep.
        let standing_id = fake.assign_outside(SUB1, CAROL, READER);
        let standing =
            fake.assignments().iter().map(Held::arm).filter(|h| h.id.eq_ignore_ascii_case(&standing_id)).collect();
        let store = match kind {
            StoreKind::Sqlite => StoreSetting::Sqlite(dir.path().join("elevate.db")),
            StoreKind::Tables => StoreSetting::Tables(azurite().tables(dir.path().join("local.db"))),
        };
        Rig { name, dir, fake, hook: FakeWebhook::start().await, store, standing, t0: wall_now() }
    }

    fn env(&self, failpoint: Option<&str>) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("ELEVATE_AUTH_MODE", "dev".to_owned()),
            ("ELEVATE_PROVIDER", "arm".into()),
            ("ELEVATE_ARM_ENDPOINT", self.fake.url()),
            // No Graph here; dev identity needs it on loopback too.
            ("ELEVATE_GRAPH_ENDPOINT", "http://127.0.0.1:9".into()),
            ("IDENTITY_ENDPOINT", self.fake.identity_endpoint()),
            ("IDENTITY_HEADER", MI_HEADER.into()),
            ("ELEVATE_POLICY_FILE", self.dir.path().join("policy.yaml").display().to_string()),
            ("ELEVATE_TEAMS_WEBHOOK_URL", self.hook.url("teams")),
        ];
        match &self.store {
            StoreSetting::Sqlite(path) => env.push(("ELEVATE_STORE", format!("sqlite:{}", path.display()))),
            StoreSetting::Tables(tables) => {
                env.push(("ELEVATE_STORE", azurite().connection_string()));
                env.push(("ELEVATE_STORE_TABLE", tables.table.clone()));
            }
        }
        if let Some(point) = failpoint {
            env.push(("ELEVATE_FAILPOINT", point.to_owned()));
        }
        env
    }

    async fn start(&self, failpoint: Option<&str>) -> Process {
        let args = ["serve".to_owned(), "--functions-host".to_owned()];
        process::start_exe(failpoint_exe(), self.dir.path(), &args, &self.env(failpoint)).await
    }

    /// Elevate as the binary builds it, over the same store, on a manual clock at `at`.
    fn elevate_at(&self, at: DateTime<Utc>, access: Arc<dyn AccessProvider>) -> Arc<Elevate> {
        // Read from the very environment the binary is given.
        let mut env: std::collections::HashMap<&str, String> = self.env(None).into_iter().collect();
        env.insert("FUNCTIONS_CUSTOMHANDLER_PORT", "0".into());
        let settings = Settings::from_env(RunMode::FunctionsHost, |k| env.get(k).cloned(), None).unwrap();
        let clock = Arc::new(ManualClock::new(at)) as Arc<dyn Clock>;
        let ports = elevate::startup::Ports { access: Some(access), directory: None, queue: None };
        elevate::startup::build_with(&settings, clock, ports).unwrap().service
    }

    fn arm(&self) -> Arc<dyn AccessProvider> {
        provider(&self.fake, fast_retry())
    }

    async fn view(&self) -> StoreView {
        match &self.store {
            StoreSetting::Sqlite(path) => checker::read_sqlite(path),
            StoreSetting::Tables(tables) => checker::read_tables(tables).await,
        }
        .unwrap_or_else(|e| panic!("{}: reading the store: {e}", self.name))
    }

    fn held(&self) -> Vec<Held> {
        self.fake.assignments().iter().map(Held::arm).collect()
    }

    /// Runs the checker after a sweep at `swept_at`; panics with every violation.
    async fn check(&self, step: &str, swept_at: DateTime<Utc>) -> StoreView {
        let view = self.view().await;
        let held = self.held();
        let world = World { store: &view, held: &held, standing: &self.standing, swept_at };
        if let Err(e) = checker::judged(&world) {
            panic!("{} ({step}): {e}\nstore: {view:#?}\nheld: {held:#?}", self.name);
        }
        view
    }

    /// Checks, and that the activations stand at `expected` (sorted).
    async fn expect(&self, step: &str, swept_at: DateTime<Utc>, expected: &[&str]) -> StoreView {
        let view = self.check(step, swept_at).await;
        let mut statuses: Vec<&str> =
            view.activations.values().map(|a| a["state"]["status"].as_str().unwrap_or("?")).collect();
        statuses.sort_unstable();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(statuses, want, "{} ({step}): statuses", self.name);
        view
    }
}

// ---- requests to the binary ----

async fn call(base: &str, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = http_client();
    let url = format!("{base}{path}");
    let request = match body {
        Some(b) => client.post(url).json(&b),
        None => client.get(url),
    };
    let res = request.bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A request during which the process dies: whatever answer (or none) is ignored.
async fn call_dying(base: &str, token: &str, path: &str, body: Value, key: Option<&str>) {
    let mut request = http_client().post(format!("{base}{path}")).bearer_auth(token).json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), request.send()).await;
}

async fn activate(base: &str, body: Value) -> String {
    let (status, a) = call(base, &keys().alice, "/api/activations", Some(body)).await;
    assert_eq!(status, 201, "{a}");
    a["id"].as_str().unwrap().to_owned()
}

async fn tick(base: &str) -> Value {
    let res = http_client().post(format!("{base}/expiry-sweeper")).json(&timer_payload(false, true)).send().await;
    let value: Value = res.unwrap().json().await.unwrap();
    value["ReturnValue"].clone()
}

/// The timer, the way a scenario uses it to reach its fail point: the process dies in it.
async fn tick_dying(base: &str) {
    let request = http_client().post(format!("{base}/expiry-sweeper")).json(&timer_payload(false, true)).send();
    let _ = tokio::time::timeout(Duration::from_secs(20), request).await;
}

fn reader(duration: &str) -> Value {
    json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": duration})
}

fn contributor() -> Value {
    json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H"})
}

// ---- the same through the service, on a manual clock (preparing a past) ----

fn caller(id: &str) -> Caller {
    Caller {
        principal_id: PrincipalId::parse(id).unwrap(),
        tenant_id: TenantId::parse("de7e1e7a-0000-4000-8000-000000000001").unwrap(),
        name: None,
        app_id: None,
        app_only: false,
        roles: vec![],
        groups: vec![],
        groups_overage: false,
        mfa: true,
        auth_contexts: vec![],
    }
}

fn input(role: &str, scope: &str, hours: i64, start_at: Option<DateTime<Utc>>) -> ActivationInput {
    ActivationInput {
        principal_id: None,
        role_definition_id: RoleDefinitionId::parse(role).unwrap(),
        scope: Scope::parse(scope).unwrap(),
        duration: Some(IsoDuration::from_hours(hours)),
        justification: None,
        ticket: None,
        start_at,
        rule_id: None,
    }
}

async fn request_at(elevate: &Elevate, at: DateTime<Utc>, input: ActivationInput) -> ActivationId {
    elevate.request_activation(&caller(ALICE), input, None, at).await.unwrap().activation.id()
}

/// ARM that creates the assignment but whose answer is lost: the activation stays Provisioning
/// with its assignment in place, as after a crash between the grant and its record.
struct LostGrantAnswer(Arc<dyn AccessProvider>);

#[async_trait]
impl AccessProvider for LostGrantAnswer {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        self.0.grant(spec).await?;
        Err(AccessError::Transient("injected: the answer to the PUT was lost".into()))
    }
    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        self.0.revoke(grant).await
    }
    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        self.0.inspect(grant).await
    }
    async fn list_managed(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        self.0.list_managed(scope).await
    }
    fn kind(&self) -> &'static str {
        "lost-grant-answer"
    }
}

// ---- the scenarios ----

/// What the statuses must be after the restart (the client's retry and the host's tick), after
/// a sweep past the provisioning grace, and after a sweep past every expiry and timeout.
struct Expect {
    restarted: &'static [&'static str],
    after_grace: &'static [&'static str],
    at_end: &'static [&'static str],
}

const GRANTED_LATER: Expect = Expect { restarted: &["Provisioning"], after_grace: &["Active"], at_end: &["Expired"] };
const ACTIVE: Expect = Expect { restarted: &["Active"], after_grace: &["Active"], at_end: &["Expired"] };
const EXPIRED: Expect = Expect { restarted: &["Expired"], after_grace: &["Expired"], at_end: &["Expired"] };
const DEACTIVATED: Expect =
    Expect { restarted: &["Deactivated"], after_grace: &["Deactivated"], at_end: &["Deactivated"] };
const PENDING: Expect =
    Expect { restarted: &["PendingApproval"], after_grace: &["PendingApproval"], at_end: &["TimedOut"] };

/// Prepares what the scenario needs before the binary starts (a past, on a manual clock), then
/// drives the binary into its fail point. Returns what the statuses must become.
async fn drive(rig: &Rig) -> (Process, Expect) {
    let name = rig.name;
    let t0 = rig.t0;
    let k = keys();
    // Before the binary starts: state made in the past.
    match name {
        "timeout.after_record" => {
            // Its approval window closed an hour ago.
            let at = t0 - TimeDelta::hours(2);
            request_at(&rig.elevate_at(at, rig.arm()), at, input("Contributor", SUB2, 1, None)).await;
        }
        "start.after_record" => {
            let at = t0 - TimeDelta::minutes(10);
            let start = Some(t0 - TimeDelta::minutes(5));
            request_at(&rig.elevate_at(at, rig.arm()), at, input("Reader", SUB1, 1, start)).await;
        }
        "recover.after_record" | "expire.provisioning.after_revoke" => {
            let ago = if name == "recover.after_record" { TimeDelta::minutes(5) } else { TimeDelta::hours(2) };
            let lossy = Arc::new(LostGrantAnswer(rig.arm()));
            let id = request_at(&rig.elevate_at(t0 - ago, lossy), t0 - ago, input("Reader", SUB1, 1, None)).await;
            assert_eq!(rig.fake.assignments().len(), 2, "{name}: granted, unrecorded ({id})");
        }
        "expire.after_revoke" | "expire.after_record" => {
            let at = t0 - TimeDelta::hours(2);
            request_at(&rig.elevate_at(at, rig.arm()), at, input("Reader", SUB1, 1, None)).await;
        }
        "extension.timeout.after_record" => {
            // Two hours from 90 minutes ago; the extension's approval window closed 30 minutes ago.
            let at = t0 - TimeDelta::minutes(90);
            let elevate = rig.elevate_at(at, rig.arm());
            let id = request_at(&elevate, at, input("Contributor", SUB2, 2, None)).await;
            let approve =
                DecisionInput { decision: Decision::Approve, justification: Justification::parse("ok").unwrap() };
            elevate.decide(&caller(BOB), id, approve, at).await.unwrap();
            let more = ExtensionInput { duration: IsoDuration::from_hours(1), justification: None };
            elevate.extend(&caller(ALICE), id, more, at).await.unwrap();
        }
        "orphan.after_revoke" => {
            // An assignment under the name Elevate gives an activation the store never held,
            // its marker expired: what a lost store leaves behind.
            let lost = ActivationId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
            let expired = (t0 - TimeDelta::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            rig.fake.seed(Stored {
                name: lost.role_assignment_name(),
                scope: SUB1.to_owned(),
                principal_id: ALICE.to_owned(),
                principal_type: Some("User".into()),
                role_definition_id: format!("{SUB1}/providers/Microsoft.Authorization/roleDefinitions/{READER}"),
                description: Some(format!("elevate:{lost}:{expired}")),
            });
        }
        "provision.failed.after_revoke" => rig.fake.garble_next_put(json!({})),
        "provision.after_fail" => rig.fake.forbid_role(READER),
        "deliver.after_retry_saved" => rig.hook.set_down(Some(503)),
        _ => {}
    }
    let elevate = rig.start(Some(name)).await;
    let base = elevate.base.clone();
    let expect = match name {
        "activate.after_insert" | "provision.before_grant" | "provision.after_grant" => {
            call_dying(&base, &k.alice, "/api/activations", reader("PT1H"), Some("crash-1")).await;
            GRANTED_LATER
        }
        "provision.after_record" => {
            call_dying(&base, &k.alice, "/api/activations", reader("PT1H"), Some("crash-1")).await;
            ACTIVE
        }
        // The unconfirmed grant was taken back; the activation was not yet closed as failed, so
        // the sweeper grants it after the grace.
        "provision.failed.after_revoke" => {
            call_dying(&base, &k.alice, "/api/activations", reader("PT1H"), Some("crash-1")).await;
            GRANTED_LATER
        }
        "provision.after_fail" => {
            call_dying(&base, &k.alice, "/api/activations", reader("PT1H"), Some("crash-1")).await;
            Expect { restarted: &["Failed"], after_grace: &["Failed"], at_end: &["Failed"] }
        }
        "approve.after_record" => {
            let id = activate(&base, contributor()).await;
            let decision = json!({"decision": "Approve", "justification": "reviewed"});
            call_dying(&base, &k.bob, &format!("/api/approvals/{id}"), decision, None).await;
            GRANTED_LATER
        }
        "cancel.after_record" => {
            let id = activate(&base, contributor()).await;
            call_dying(&base, &k.alice, &format!("/api/activations/{id}/cancel"), json!({}), None).await;
            Expect { restarted: &["Canceled"], after_grace: &["Canceled"], at_end: &["Canceled"] }
        }
        "extend.after_record" => {
            let id = activate(&base, reader("PT1H")).await;
            let more = json!({"duration": "PT1H"});
            call_dying(&base, &k.alice, &format!("/api/activations/{id}/extend"), more, None).await;
            ACTIVE
        }
        "deactivate.after_revoke" | "deactivate.after_record" | "revoke.after_delete" => {
            let id = activate(&base, reader("PT1H")).await;
            call_dying(&base, &k.alice, &format!("/api/activations/{id}/deactivate"), json!({}), None).await;
            DEACTIVATED
        }
        "timeout.after_record" => {
            tick_dying(&base).await;
            Expect { restarted: &["TimedOut"], after_grace: &["TimedOut"], at_end: &["TimedOut"] }
        }
        "start.after_record" => {
            tick_dying(&base).await;
            GRANTED_LATER
        }
        "recover.after_record" | "extension.timeout.after_record" => {
            tick_dying(&base).await;
            ACTIVE
        }
        "expire.after_revoke" | "expire.after_record" | "expire.provisioning.after_revoke" => {
            tick_dying(&base).await;
            EXPIRED
        }
        "orphan.after_revoke" => {
            tick_dying(&base).await;
            Expect { restarted: &[], after_grace: &[], at_end: &[] }
        }
        "deliver.after_claim" | "deliver.after_offer" | "deliver.after_retry_saved" => {
            // The request queues "approval needed"; its delivery starts in the background.
            call_dying(&base, &k.alice, "/api/activations", contributor(), None).await;
            PENDING
        }
        other => panic!("no crash scenario drives fail point `{other}`"),
    };
    (elevate, expect)
}

/// What a client does again after the process died under it.
async fn retry(rig: &Rig, base: &str) {
    let k = keys();
    match rig.name {
        "activate.after_insert"
        | "provision.before_grant"
        | "provision.after_grant"
        | "provision.after_record"
        | "provision.failed.after_revoke"
        | "provision.after_fail" => {
            // The same request with the same key answers with the one activation.
            let res = http_client()
                .post(format!("{base}/api/activations"))
                .bearer_auth(&k.alice)
                .header("Idempotency-Key", "crash-1")
                .json(&reader("PT1H"))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert!(status < 300, "{}: the retry: {status} {body}", rig.name);
        }
        "deactivate.after_revoke" | "deactivate.after_record" | "revoke.after_delete" => {
            let (_, mine) = call(base, &k.alice, "/api/activations?mine=true", None).await;
            let id = mine["value"][0]["id"].as_str().unwrap().to_owned();
            let (status, body) =
                call(base, &k.alice, &format!("/api/activations/{id}/deactivate"), Some(json!({}))).await;
            let done = rig.name == "deactivate.after_record";
            assert_eq!(status, if done { 409 } else { 200 }, "{}: deactivating again: {body}", rig.name);
        }
        "deliver.after_retry_saved" => rig.hook.set_down(None),
        _ => {}
    }
}

async fn run(name: &'static str, kind: StoreKind) {
    let rig = Rig::new(name, kind).await;
    let (mut crashed, expect) = drive(&rig).await;
    let exit = process::wait_exit(&mut crashed, Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(&crashed.log).unwrap_or_default();
    let exit = exit.unwrap_or_else(|| panic!("{name}: the process did not reach its fail point:\n{log}"));
    assert_eq!(exit.signal(), Some(9), "{name}: died by SIGKILL at the fail point, not otherwise ({exit:?}):\n{log}");
    assert!(log.contains(&format!("fail point `{name}` reached")), "{name}: {log}");
    drop(crashed);

    // Restarted without the fail point: the client retries, the host fires the timer.
    let restarted = rig.start(None).await;
    retry(&rig, &restarted.base).await;
    let swept_at = wall_now();
    let report = tick(&restarted.base).await;
    assert_eq!(report["failures"], json!([]), "{name}: {report}");
    rig.expect("restarted", swept_at, expect.restarted).await;
    drop(restarted);

    // Past the grace after which the sweeper takes over an interrupted grant, and then past
    // every expiry and approval timeout.
    for (step, at, statuses) in [
        ("after the grace", rig.t0 + TimeDelta::minutes(4), expect.after_grace),
        ("at the end", rig.t0 + TimeDelta::hours(10), expect.at_end),
    ] {
        let later = rig.elevate_at(at, rig.arm());
        let report = later.sweep(at).await;
        assert!(report.failures.is_empty(), "{name} ({step}): {report:?}");
        rig.expect(step, at, statuses).await;
    }
    let end = rig.t0 + TimeDelta::hours(10);
    let view = rig.view().await;
    assert!(view.pending_notices.is_empty(), "{name}: every notice delivered in the end: {:?}", view.pending_notices);
    assert_eq!(rig.held(), rig.standing, "{name}: only the standing assignment is left");
    let again = rig.elevate_at(end + TimeDelta::minutes(1), rig.arm()).sweep(end + TimeDelta::minutes(1)).await;
    assert_eq!(again.examined, 0, "{name}: nothing left due: {again:?}");
    if name.starts_with("deliver.") {
        assert!(!rig.hook.accepted("teams").is_empty(), "{name}: the notice went out");
    }
}

/// How many times the matrix runs (`ELEVATE_CRASH_ROUNDS`, 1 unless scripts/stress asks for more:
/// timing differs from round to round).
fn rounds() -> usize {
    match std::env::var("ELEVATE_CRASH_ROUNDS") {
        Err(_) => 1,
        Ok(text) => text
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| panic!("ELEVATE_CRASH_ROUNDS `{text}` is not a whole number from 1")),
    }
}

/// Runs every fail point's scenario on `kind`, a few at a time; reports all that failed.
async fn matrix(kind: StoreKind) {
    let exe = failpoint_exe().to_owned();
    assert!(exe.exists());
    let _ = keys();
    let rounds = rounds();
    let began = std::time::Instant::now();
    let runs = (0..rounds).flat_map(|round| elevate::failpoint::NAMES.iter().map(move |name| (round, *name)));
    let outcomes = futures_util::stream::iter(runs)
        .map(|(round, name)| async move { (round, name, tokio::spawn(run(name, kind)).await) })
        .buffer_unordered(AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let failed: Vec<String> = outcomes
        .into_iter()
        .filter_map(|(round, name, outcome)| {
            let panic = outcome.err()?.into_panic();
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Some(format!("== {name} (round {}):\n{message}", round + 1))
        })
        .collect();
    let total = rounds * elevate::failpoint::NAMES.len();
    assert!(failed.is_empty(), "{} of {total} crash runs failed on {kind:?}:\n{}", failed.len(), failed.join("\n"));
    // The figure scripts/stress reports (shown with --nocapture).
    println!(
        "crash matrix on {kind:?}: {} fail points x {rounds} round(s), {total} crashes recovered in {:.1} s",
        elevate::failpoint::NAMES.len(),
        began.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fail_point_recovers_on_sqlite() {
    matrix(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fail_point_recovers_on_table_storage() {
    matrix(StoreKind::Tables).await;
}

#[cfg(not(feature = "failpoints"))]
#[test]
fn the_default_build_carries_no_fail_point() {
    // As text, so that the search is std's own (optimised even in a test build).
    let text = String::from_utf8_lossy(&std::fs::read(process::exe()).unwrap()).into_owned();
    let found = |needle: &str| text.contains(needle);
    assert!(found("elevate:"), "the scan reads the binary's strings");
    assert!(!found("ELEVATE_FAILPOINT"), "the default build reads no fail point setting");
    for name in elevate::failpoint::NAMES {
        assert!(!found(name), "the default build carries fail point `{name}`");
    }
}

// ---- Microsoft Graph: fail points on the binary against the fake Graph ----

/// A Graph-scoped world: the binary (routed provider) against the fake Graph, SQLite, one
/// rule (Helpdesk Administrator at the tenant, no approval). Carol holds the role outside Elevate.
struct GraphRig {
    name: &'static str,
    dir: tempfile::TempDir,
    azure: Arc<FakeAzure>,
    graph: Arc<FakeGraph>,
    standing: Vec<Held>,
    t0: DateTime<Utc>,
}

impl GraphRig {
    async fn new(name: &'static str) -> GraphRig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".elevate")).unwrap();
        std::fs::write(dir.path().join(".elevate/dev-issuer.pem"), &keys().pem).unwrap();
        let policy = format!(
            "version: 1\ndefaults:\n  maxDuration: PT2H\n  requireJustification: true\nrules:\n  - id: helpdesk\n    scope: directory:/\n    roles: [Helpdesk Administrator]\n    principals: [user:{ALICE}]\n"
        );
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let azure = FakeAzure::start().await;
        let graph = FakeGraph::start().await;
        azure.wire_graph(&graph.token);
        for (id, name) in [(ALICE, "Alice Smith"), (BOB, "Bob Jones"), (CAROL, "Carol White")] {
            graph.add_user(id, name);
        }
        graph.add_role_assignment(HELPDESK_ADMINISTRATOR, CAROL, "/");
        let standing = Held::graph(&graph, &[]);
        GraphRig { name, dir, azure, graph, standing, t0: wall_now() }
    }

    fn env(&self, failpoint: Option<&str>) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("ELEVATE_AUTH_MODE", "dev".to_owned()),
            ("ELEVATE_PROVIDER", "arm".into()),
            ("ELEVATE_ARM_ENDPOINT", self.azure.url()),
            ("ELEVATE_GRAPH_ENDPOINT", self.graph.url()),
            ("IDENTITY_ENDPOINT", self.azure.identity_endpoint()),
            ("IDENTITY_HEADER", MI_HEADER.into()),
            ("ELEVATE_POLICY_FILE", self.dir.path().join("policy.yaml").display().to_string()),
            ("ELEVATE_STORE", format!("sqlite:{}", self.dir.path().join("elevate.db").display())),
        ];
        if let Some(point) = failpoint {
            env.push(("ELEVATE_FAILPOINT", point.to_owned()));
        }
        env
    }

    async fn start(&self, failpoint: Option<&str>) -> Process {
        let args = ["serve".to_owned(), "--functions-host".to_owned()];
        process::start_exe(failpoint_exe(), self.dir.path(), &args, &self.env(failpoint)).await
    }

    /// Elevate as the binary builds it, over the same store and fake Graph, on a manual clock.
    fn elevate_at(&self, at: DateTime<Utc>) -> Arc<Elevate> {
        let mut env: std::collections::HashMap<&str, String> = self.env(None).into_iter().collect();
        env.insert("FUNCTIONS_CUSTOMHANDLER_PORT", "0".into());
        let settings = Settings::from_env(RunMode::FunctionsHost, |k| env.get(k).cloned(), None).unwrap();
        let credential = || Arc::new(FakeIdentityCredential::new(&self.azure));
        let arm = Arc::new(ArmAccessProvider::new(&self.azure.url(), credential(), fast_retry()).unwrap());
        let graph = Arc::new(GraphAccessProvider::new(&self.graph.url(), credential(), fast_retry()).unwrap());
        let access = Arc::new(RoutedAccess::new(arm, graph)) as Arc<dyn AccessProvider>;
        let clock = Arc::new(ManualClock::new(at)) as Arc<dyn Clock>;
        let ports = elevate::startup::Ports { access: Some(access), directory: None, queue: None };
        elevate::startup::build_with(&settings, clock, ports).unwrap().service
    }

    /// Runs the checker on the store and the fake Graph after a sweep at `swept_at`.
    fn check(&self, step: &str, swept_at: DateTime<Utc>) -> StoreView {
        let view = checker::read_sqlite(&self.dir.path().join("elevate.db"))
            .unwrap_or_else(|e| panic!("{}: reading the store: {e}", self.name));
        let held = Held::graph(&self.graph, &[]);
        let world = World { store: &view, held: &held, standing: &self.standing, swept_at };
        if let Err(e) = checker::judged(&world) {
            panic!("graph {} ({step}): {e}\nstore: {view:#?}\nheld: {held:#?}", self.name);
        }
        view
    }
}

fn helpdesk() -> Value {
    json!({"roleDefinitionId": "Helpdesk Administrator", "scope": "directory:/", "duration": "PT1H",
           "justification": "INC-17 crash"})
}

/// One Graph fail point: the binary dies there, restarts, the client retries, and the sweeps past
/// the grace and past the end leave only Carol's standing role, granted once, checked throughout.
async fn graph_run(name: &'static str) {
    let rig = GraphRig::new(name).await;
    let alice = &keys().alice;
    let mut crashed = rig.start(Some(name)).await;
    let deactivating = name.starts_with("deactivate.");
    if deactivating {
        let id = activate(&crashed.base, helpdesk()).await;
        assert_eq!(rig.graph.role_assignments().len(), 2, "{name}: granted");
        call_dying(&crashed.base, alice, &format!("/api/activations/{id}/deactivate"), json!({}), None).await;
    } else {
        call_dying(&crashed.base, alice, "/api/activations", helpdesk(), Some("graph-crash-1")).await;
    }
    let exit = process::wait_exit(&mut crashed, Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(&crashed.log).unwrap_or_default();
    let exit = exit.unwrap_or_else(|| panic!("graph {name}: the process did not reach its fail point:\n{log}"));
    assert_eq!(exit.signal(), Some(9), "graph {name}: died by SIGKILL at the fail point ({exit:?}):\n{log}");
    drop(crashed);
    rig.check("crashed", wall_now());

    let restarted = rig.start(None).await;
    // Unlike ARM's, Graph's deleted young grant cannot be told from one not replicated yet
    // (graph-spec §0 items 9-10): deactivating again right away is refused until it settles.
    let mut deactivate_later = None;
    if deactivating {
        let (_, mine) = call(&restarted.base, alice, "/api/activations?mine=true", None).await;
        let id = mine["value"][0]["id"].as_str().unwrap().to_owned();
        let path = format!("/api/activations/{id}/deactivate");
        let (status, body) = call(&restarted.base, alice, &path, Some(json!({}))).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("RevocationFailed")),
            "graph {name}: deactivating again while the grant is young: {body}"
        );
        deactivate_later = Some(ActivationId::parse(&id).unwrap());
    } else {
        let res = http_client()
            .post(format!("{}/api/activations", restarted.base))
            .bearer_auth(alice)
            .header("Idempotency-Key", "graph-crash-1")
            .json(&helpdesk())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status < 300, "graph {name}: the retry: {status} {body}");
    }
    let swept_at = wall_now();
    let report = tick(&restarted.base).await;
    assert_eq!(report["failures"], json!([]), "graph {name}: {report}");
    rig.check("restarted", swept_at);
    drop(restarted);

    let mut last = Vec::new();
    for (step, at) in
        [("after the grace", rig.t0 + TimeDelta::minutes(6)), ("at the end", rig.t0 + TimeDelta::hours(3))]
    {
        let elevate = rig.elevate_at(at);
        if let Some(id) = deactivate_later.take() {
            let done = elevate.deactivate(&caller(ALICE), id, at).await;
            assert!(done.is_ok(), "graph {name}: deactivating once the grant settled: {done:?}");
        }
        let report = elevate.sweep(at).await;
        assert!(report.failures.is_empty(), "graph {name} ({step}): {report:?}");
        let view = rig.check(step, at);
        last = view.activations.values().map(|a| a["state"]["status"].as_str().unwrap_or("?").to_owned()).collect();
    }
    let end = if deactivating { "Deactivated" } else { "Expired" };
    assert_eq!(last, [end], "graph {name}: one activation, ended");
    assert_eq!(Held::graph(&rig.graph, &[]), rig.standing, "graph {name}: only Carol's standing role is left");
    let created = rig
        .graph
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/roleAssignments") && r.status == 201)
        .count();
    assert_eq!(created, 1, "graph {name}: granted exactly once");
    assert!(rig.graph.violations().is_empty(), "graph {name}: {:?}", rig.graph.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_fail_points_recover_on_sqlite() {
    let _ = failpoint_exe();
    let _ = keys();
    for name in ["provision.before_grant", "provision.after_grant", "deactivate.after_revoke"] {
        graph_run(name).await;
    }
}

// ---- the checker, on hand-made states ----

mod checker_catches {
    use super::*;

    const ID: &str = "0b0e8a8e-1111-4222-8333-444455556666";
    const OTHER: &str = "0b0e8a8e-1111-4222-8333-777788889999";

    fn at(minutes: i64) -> String {
        (t() + TimeDelta::minutes(minutes)).to_rfc3339()
    }

    fn t() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn assignment_id(id: &str) -> String {
        format!("{SUB1}/providers/Microsoft.Authorization/roleAssignments/{}", name_for(id))
    }

    fn name_for(id: &str) -> uuid::Uuid {
        ActivationId::parse(id).unwrap().role_assignment_name()
    }

    fn active(id: &str, expires_in: i64) -> Value {
        json!({
            "id": id,
            "request": {"principalId": ALICE, "roleDefinitionId": READER, "scope": SUB1, "ruleId": "direct"},
            "approvals": [],
            "state": {"status": "Active", "activatedAt": at(0), "expiresAt": at(expires_in),
                      "roleAssignmentId": assignment_id(id), "extension": null}
        })
    }

    fn event(id: &str, n: u32, action: &str, before: Option<&str>, after: &str) -> Value {
        json!({"id": format!("00000000-0000-4000-8000-{n:012}"), "activationId": id, "principalId": ALICE,
               "actor": {"kind": "system"}, "action": action, "statusBefore": before, "statusAfter": after, "at": at(0)})
    }

    fn granted(id: &str) -> Vec<Value> {
        vec![
            event(id, 1, "Requested", None, "Provisioning"),
            event(id, 2, "Provisioned", Some("Provisioning"), "Active"),
        ]
    }

    fn held(id: &str) -> Held {
        Held {
            id: assignment_id(id),
            principal_id: ALICE.into(),
            role: READER.into(),
            scope: SUB1.into(),
            description: Some(format!("elevate:{id}:{}", at(60))),
        }
    }

    fn standing() -> Held {
        Held {
            id: format!(
                "{SUB1}/providers/Microsoft.Authorization/roleAssignments/6a1c0c8a-0000-4000-8000-000000000001"
            ),
            principal_id: CAROL.into(),
            role: READER.into(),
            scope: SUB1.into(),
            description: None,
        }
    }

    /// One active activation, its trail, its assignment and a standing one: all well.
    fn good() -> (StoreView, Vec<Held>) {
        let mut store = StoreView::default();
        store.activations.insert(ID.into(), active(ID, 60));
        store.events.insert(ID.into(), granted(ID));
        (store, vec![held(ID), standing()])
    }

    fn judge(store: &StoreView, held: &[Held], swept_at: DateTime<Utc>) -> Vec<Violation> {
        checker::check(&World { store, held, standing: &[standing()], swept_at })
    }

    #[test]
    fn nothing_in_a_good_state() {
        let (store, held) = good();
        assert_eq!(judge(&store, &held, t()), vec![]);
    }

    #[test]
    fn an_assignment_no_active_activation_explains() {
        let (mut store, mut held) = good();
        // Outside Elevate and not accepted as standing.
        let mut stranger = standing();
        stranger.id = stranger.id.replace("000000000001", "000000000002");
        held.push(stranger.clone());
        let found = judge(&store, &held, t());
        assert!(
            matches!(&found[..], [Violation::UnexplainedAssignment { assignment, .. }] if *assignment == stranger.id),
            "{found:?}"
        );
        // Left behind by an activation that has ended.
        held.pop();
        store.activations.get_mut(ID).unwrap()["state"] = json!({"status": "Deactivated", "at": at(5)});
        store.events.get_mut(ID).unwrap().push(event(ID, 3, "Deactivated", Some("Active"), "Deactivated"));
        let found = judge(&store, &held, t() + TimeDelta::minutes(5));
        assert!(
            matches!(&found[..], [Violation::UnexplainedAssignment { why, .. }] if why.contains("Deactivated")),
            "{found:?}"
        );
        // Its marker names an activation the store does not hold.
        let (_, mut held) = good();
        held.push(self::held(OTHER));
        let found = judge(&good().0, &held, t());
        assert!(
            matches!(&found[..], [Violation::UnexplainedAssignment { why, .. }] if why.contains("does not hold")),
            "{found:?}"
        );
        // The activation's own, but for someone else.
        let (store, mut held) = good();
        held[0].principal_id = BOB.into();
        let found = judge(&store, &held, t());
        assert!(
            matches!(&found[..], [Violation::UnexplainedAssignment { why, .. }] if why.contains("asked for")),
            "{found:?}"
        );
    }

    #[test]
    fn a_standing_assignment_removed() {
        let (store, mut held) = good();
        held.retain(|h| h.description.is_some());
        assert_eq!(judge(&store, &held, t()), vec![Violation::StandingRemoved { assignment: standing().id }]);
    }

    #[test]
    fn access_granted_twice() {
        // Two assignments carry the same activation's marker.
        let (store, mut held) = good();
        let mut second = self::held(ID);
        second.id =
            format!("{SUB1}/resourceGroups/app/providers/Microsoft.Authorization/roleAssignments/{}", name_for(ID));
        second.scope = format!("{SUB1}/resourceGroups/app");
        held.push(second);
        let found = judge(&store, &held, t());
        assert!(
            found.iter().any(|v| matches!(v, Violation::GrantedTwice { activation, .. } if activation == ID)),
            "{found:?}"
        );
        // Two active activations record one assignment.
        let (mut store, held) = good();
        let mut twin = active(OTHER, 60);
        twin["state"]["roleAssignmentId"] = json!(assignment_id(ID));
        store.activations.insert(OTHER.into(), twin);
        store.events.insert(OTHER.into(), granted(OTHER));
        let found = judge(&store, &held, t());
        assert!(
            found.iter().any(|v| matches!(v, Violation::GrantedTwice { what, .. } if what.contains("2 active"))),
            "{found:?}"
        );
        // Provisioned twice in one trail.
        let (mut store, held) = good();
        store.events.get_mut(ID).unwrap().push(event(ID, 3, "Provisioned", Some("Provisioning"), "Active"));
        let found = judge(&store, &held, t());
        assert!(
            found
                .iter()
                .any(|v| matches!(v, Violation::InvalidTransition { step, .. } if step.contains("second time"))),
            "{found:?}"
        );
    }

    #[test]
    fn an_audit_trail_the_state_machine_does_not_have() {
        // A step that does not exist.
        let (mut store, held) = good();
        store.events.get_mut(ID).unwrap()[1] = event(ID, 2, "Provisioned", Some("PendingApproval"), "Active");
        let found = judge(&store, &held, t());
        assert!(matches!(&found[..], [Violation::InvalidTransition { index: 1, .. }]), "{found:?}");
        // A step that exists but does not follow the one before (a transition lost).
        let (mut store, held) = good();
        store.events.get_mut(ID).unwrap()[0] = event(ID, 1, "Requested", None, "PendingApproval");
        let found = judge(&store, &held, t());
        assert!(
            matches!(&found[..], [Violation::InvalidTransition { step, .. }] if step.contains("stood at PendingApproval")),
            "{found:?}"
        );
        // An extension applied by an approver with none requested.
        let (mut store, held) = good();
        let mut extended = event(ID, 3, "Extended", Some("Active"), "Active");
        extended["actor"] = json!({"kind": "principal", "id": BOB});
        store.events.get_mut(ID).unwrap().push(extended);
        store.activations.get_mut(ID).unwrap()["approvals"] = json!([{"approverId": BOB, "decision": "Approve"}]);
        let found = judge(&store, &held, t());
        assert!(
            matches!(&found[..], [Violation::InvalidTransition { step, .. }] if step.contains("no extension")),
            "{found:?}"
        );
        // No trail at all.
        let (mut store, held) = good();
        store.events.clear();
        assert_eq!(judge(&store, &held, t()), vec![Violation::NoAudit { activation: ID.into() }]);
    }

    #[test]
    fn an_audit_trail_that_ends_elsewhere_than_the_activation() {
        // The state changed without its event.
        let (mut store, held) = good();
        store.events.get_mut(ID).unwrap().pop();
        let found = judge(&store, &held, t());
        assert!(
            found.contains(&Violation::AuditDisagrees {
                activation: ID.into(),
                stored: "Active".into(),
                audited: "Provisioning".into()
            }),
            "{found:?}"
        );
    }

    #[test]
    fn one_transition_audited_twice() {
        // The same event stored twice.
        let (mut store, held) = good();
        let again = store.events[ID][1].clone();
        store.events.get_mut(ID).unwrap().push(again);
        let found = judge(&store, &held, t());
        assert!(found.iter().any(|v| matches!(v, Violation::DuplicateEvent { .. })), "{found:?}");
        // A decision without its event, and an event without its decision.
        let (mut store, held) = good();
        store.activations.get_mut(ID).unwrap()["approvals"] = json!([{"approverId": BOB, "decision": "Approve"}]);
        assert_eq!(
            judge(&store, &held, t()),
            vec![Violation::DecisionsDisagree { activation: ID.into(), decisions: 1, events: 0 }]
        );
        // An event filed under another activation.
        let (mut store, held) = good();
        store.events.get_mut(ID).unwrap()[1]["activationId"] = json!(OTHER);
        let found = judge(&store, &held, t());
        assert!(found.iter().any(|v| matches!(v, Violation::MisfiledEvent { .. })), "{found:?}");
    }

    #[test]
    fn access_left_beyond_the_sweep_after_its_expiry() {
        let (store, held) = good();
        // Expired at +60; the sweep ran at +61 and left it active, its assignment in place.
        let found = judge(&store, &held, t() + TimeDelta::minutes(61));
        assert!(
            found.iter().any(|v| matches!(v, Violation::AccessOutlivedExpiry { activation, .. } if activation == ID)),
            "{found:?}"
        );
        assert!(
            found.iter().any(|v| matches!(v, Violation::UnexplainedAssignment { why, .. } if why.contains("expired"))),
            "{found:?}"
        );
        // Before its expiry all is well.
        assert_eq!(judge(&store, &held, t() + TimeDelta::minutes(59)), vec![]);
    }

    #[test]
    fn rows_that_do_not_read_as_the_wire_format_says() {
        let (mut store, held) = good();
        store.activations.get_mut(ID).unwrap()["state"] = json!({"phase": "Active"});
        store.events.insert(OTHER.into(), granted(OTHER));
        let found = judge(&store, &held, t());
        assert!(
            found.iter().any(|v| matches!(v, Violation::Unreadable { what } if what.contains("state.status"))),
            "{found:?}"
        );
        assert!(found.iter().any(|v| matches!(v, Violation::Unreadable { what } if what.contains(OTHER))), "{found:?}");
    }

    #[test]
    fn a_grant_in_flight_is_allowed_only_within_the_grace() {
        let mut store = StoreView::default();
        let mut provisioning = active(ID, 60);
        provisioning["state"] = json!({"status": "Provisioning", "since": at(0), "expiresAt": at(60)});
        store.activations.insert(ID.into(), provisioning);
        store.events.insert(ID.into(), vec![event(ID, 1, "Requested", None, "Provisioning")]);
        let held = vec![held(ID), standing()];
        assert_eq!(judge(&store, &held, t() + TimeDelta::minutes(1)), vec![]);
        let found = judge(&store, &held, t() + TimeDelta::minutes(4));
        assert!(
            matches!(&found[..], [Violation::UnexplainedAssignment { why, .. }] if why.contains("Provisioning")),
            "{found:?}"
        );
    }
}
