//! Test support: an in-process Elevate on port 0 with a manual clock, demo identities, and a
//! store snapshot to prove that refused requests change nothing.

pub mod arm;
pub mod azurite;
pub mod checker;
pub mod fake_azure;
pub mod fake_entra;
pub mod fake_graph;
pub mod fake_http;
pub mod fake_webhook;
pub mod process;
pub mod table_proxy;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use elevate::adapters::access::local::LocalAccessProvider;
use elevate::adapters::identity::dev::{DevIssuer, DevTokenRequest};
use elevate::clock::{Clock, ManualClock};
use elevate::config::{AuthSetting, ProviderSetting, RunMode, Settings, StoreSetting};
use elevate::service::Elevate;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const ALICE: &str = "11111111-1111-1111-1111-111111111111";
pub const BOB: &str = "22222222-2222-2222-2222-222222222222";
pub const CAROL: &str = "33333333-3333-3333-3333-333333333333";
pub const DANA: &str = "44444444-4444-4444-4444-444444444444";
pub const ERIN: &str = "55555555-5555-5555-5555-555555555555";
pub const OPS: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
pub const APPROVERS: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";
pub const BROKER_APP: &str = "cccccccc-cccc-cccc-cccc-cccccccccccc";
pub const BROKER_SP: &str = "dddddddd-dddd-dddd-dddd-dddddddddddd";
pub const SUB1: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";
pub const SUB2: &str = "/subscriptions/00000000-0000-0000-0000-000000000002";

pub fn start() -> DateTime<Utc> {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

pub fn test_policy() -> String {
    format!(
        r#"
version: 1
defaults:
  maxDuration: PT8H
  requireMfa: true
  requireJustification: true
rules:
  - id: self-reader
    scope: {SUB1}
    roles: [Reader]
    principals: [user:{ALICE}, group:{OPS}]
    requireJustification: false
  - id: rg-contributor
    scope: {SUB1}/resourceGroups/app
    roles: [Contributor]
    principals: [user:{ALICE}]
    maxDuration: PT4H
  - id: ticketed
    scope: {SUB1}
    roles: [Storage Blob Data Owner]
    principals: [user:{ALICE}]
    maxDuration: PT2H
    requireTicket: true
  - id: prod-one
    scope: {SUB2}
    roles: [Contributor]
    principals: [user:{ALICE}]
    maxDuration: PT2H
    approval:
      approvers: [user:{BOB}, user:{CAROL}]
      timeout: PT1H
  - id: prod-two
    scope: {SUB2}
    roles: [Owner]
    principals: [user:{ALICE}]
    maxDuration: PT1H
    approval:
      approvers: [user:{BOB}, group:{APPROVERS}]
      minApprovals: 2
      timeout: PT1H
  - id: ended
    scope: {SUB1}
    roles: [User Access Administrator]
    principals: [user:{ALICE}]
    expiresAt: 2026-01-01T00:00:00Z
  - id: ending-soon
    scope: {SUB2}
    roles: [Reader]
    principals: [user:{ALICE}]
    maxDuration: PT10M
    expiresAt: 2026-11-25T12:30:00Z
    approval:
      approvers: [user:{BOB}]
      timeout: PT2H
  - id: stepped-up
    scope: {SUB2}/resourceGroups/secure
    roles: [Contributor]
    principals: [user:{ALICE}]
    authContext: c1
  - id: chatops
    scope: {SUB1}/resourceGroups/chat
    roles: [Reader]
    principals: [user:{ALICE}]
    requireMfa: false
"#
    )
}

pub struct TestApp {
    pub base: String,
    pub clock: Arc<ManualClock>,
    /// Present in `dev` mode.
    pub issuer: Option<Arc<DevIssuer>>,
    /// Present with the `local` provider.
    pub local: Option<Arc<LocalAccessProvider>>,
    #[expect(dead_code, reason = "kept for tests that call use cases directly")]
    pub service: Arc<Elevate>,
    /// The SQLite file: the store's, or with Table Storage the local provider's simulation.
    pub db: PathBuf,
    /// Present when the store is Table Storage on Azurite.
    pub tables: Option<elevate::config::TablesSetting>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&test_policy()).await
}

pub async fn spawn_app_with(policy: &str) -> TestApp {
    spawn_app_on(policy, None, None, start()).await
}

/// The test app in another authentication mode (`entra`, `easyauth`).
pub async fn spawn_app_with_auth(policy: &str, auth: AuthSetting) -> TestApp {
    spawn(policy, None, None, start(), Some(auth)).await
}

/// An app with `access` instead of the local simulation (an ARM provider on a fake), on the
/// SQLite file `db` (a new one when `None`), its clock starting at `at`.
pub async fn spawn_app_on(
    policy: &str,
    access: Option<Arc<dyn elevate::service::ports::AccessProvider>>,
    db: Option<PathBuf>,
    at: DateTime<Utc>,
) -> TestApp {
    spawn(policy, access, db, at, None).await
}

/// An app that sends notifications as `notifications` says.
pub async fn spawn_with_notifications(policy: &str, notifications: elevate::config::NotificationSettings) -> TestApp {
    spawn_full(policy, None, None, start(), None, None, Some(notifications), None, None).await
}

/// An app with notifications and its own access provider.
pub async fn spawn_with_access_and_notifications(
    policy: &str,
    access: Arc<dyn elevate::service::ports::AccessProvider>,
    notifications: elevate::config::NotificationSettings,
) -> TestApp {
    spawn_full(policy, Some(access), None, start(), None, None, Some(notifications), None, None).await
}

/// Another app on this app's store (its SQLite file, or its Table Storage table) and simulated
/// provider, with `policy` and optional `notifications`, its clock at this app's now: Elevate
/// restarted after a policy change. Keep this app alive while the other runs: it owns the files.
pub async fn restart_with(
    app: &TestApp,
    policy: &str,
    notifications: Option<elevate::config::NotificationSettings>,
) -> TestApp {
    spawn_full(policy, None, Some(app.db.clone()), app.clock.now(), None, app.tables.clone(), notifications, None, None)
        .await
}

/// An app on the given Table Storage table (several apps may share one), the local provider's
/// simulation in `tables.local_file`.
pub async fn spawn_on_tables(policy: &str, tables: elevate::config::TablesSetting, at: DateTime<Utc>) -> TestApp {
    spawn_full(policy, None, Some(tables.local_file.clone()), at, None, Some(tables), None, None, None).await
}

/// An app on a store other apps may share (the SQLite file `db`, or with `tables` that table,
/// the local simulation then in `tables.local_file`) with its own access provider, its clock at
/// `at`: one of several instances behind one store and one provider.
pub async fn spawn_shared(
    policy: &str,
    access: Arc<dyn elevate::service::ports::AccessProvider>,
    db: PathBuf,
    tables: Option<elevate::config::TablesSetting>,
    at: DateTime<Utc>,
) -> TestApp {
    spawn_full(policy, Some(access), Some(db), at, None, tables, None, None, None).await
}

async fn spawn(
    policy: &str,
    access: Option<Arc<dyn elevate::service::ports::AccessProvider>>,
    db: Option<PathBuf>,
    at: DateTime<Utc>,
    auth: Option<AuthSetting>,
) -> TestApp {
    spawn_full(policy, access, db, at, auth, None, None, None, None).await
}

/// An app that puts expiry and delivery work on Storage queues (Azurite's), with its own access
/// provider and notifications.
pub async fn spawn_with_queues(
    policy: &str,
    access: Option<Arc<dyn elevate::service::ports::AccessProvider>>,
    notifications: Option<elevate::config::NotificationSettings>,
    queue: Arc<dyn elevate::service::ports::Queue>,
) -> TestApp {
    spawn_full(policy, access, None, start(), None, None, notifications, None, Some(queue)).await
}

/// An app with its own access provider and directory (Graph fakes), its clock at `at`.
pub async fn spawn_with_ports(
    policy: &str,
    access: Arc<dyn elevate::service::ports::AccessProvider>,
    directory: Option<Arc<dyn elevate::service::ports::Directory>>,
    at: DateTime<Utc>,
) -> TestApp {
    spawn_full(policy, Some(access), None, at, None, None, None, directory, None).await
}

/// The same over an existing SQLite store `db` (a restart).
pub async fn spawn_ports_on_db(
    policy: &str,
    access: Arc<dyn elevate::service::ports::AccessProvider>,
    directory: Option<Arc<dyn elevate::service::ports::Directory>>,
    db: PathBuf,
    at: DateTime<Utc>,
) -> TestApp {
    spawn_full(policy, Some(access), Some(db), at, None, None, None, directory, None).await
}

#[expect(clippy::too_many_arguments, reason = "test harness: every knob a test may turn")]
async fn spawn_full(
    policy: &str,
    access: Option<Arc<dyn elevate::service::ports::AccessProvider>>,
    db: Option<PathBuf>,
    at: DateTime<Utc>,
    auth: Option<AuthSetting>,
    tables: Option<elevate::config::TablesSetting>,
    notifications: Option<elevate::config::NotificationSettings>,
    directory: Option<Arc<dyn elevate::service::ports::Directory>>,
    queue: Option<Arc<dyn elevate::service::ports::Queue>>,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, policy).unwrap();
    let on_tables = db.is_none() && tables_requested();
    let db = db.unwrap_or_else(|| dir.path().join("elevate.db"));
    let tables = tables.or_else(|| on_tables.then(|| azurite::azurite().tables(db.clone())));
    let store = match &tables {
        Some(t) => StoreSetting::Tables(t.clone()),
        None => StoreSetting::Sqlite(db.clone()),
    };
    let listener = elevate::startup::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The tests play the Functions host (they fire the timer themselves), so the app serves as
    // it does under the host; standalone-only behaviour is tested on the real binary.
    let settings = Settings {
        mode: RunMode::FunctionsHost,
        port: 0,
        policy_file,
        store,
        provider: ProviderSetting::Local,
        auth: auth.unwrap_or_else(|| AuthSetting::Dev { key_file: dir.path().join("dev.pem") }),
        public_url: format!("http://{addr}"),
        broker_app_ids: vec![BROKER_APP.into()],
        link_key: None,
        sweep_concurrency: elevate::config::DEFAULT_SWEEP_CONCURRENCY,
        orphan_sweep_interval: elevate::domain::duration::IsoDuration::parse("PT1H").unwrap(),
        notifications: notifications.unwrap_or_default(),
        max_open_requests: elevate::service::DEFAULT_MAX_OPEN_REQUESTS,
        group_checks: elevate::config::GroupChecks::Token,
        queues: None,
        audit_export: None,
    };
    let clock = Arc::new(ManualClock::new(at));
    let ports = elevate::startup::Ports { access, directory, queue };
    let built = elevate::startup::build_with(&settings, Arc::clone(&clock) as Arc<dyn Clock>, ports).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(elevate::startup::serve(listener, Arc::clone(&built.context), async {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        clock,
        issuer: built.dev_issuer,
        local: built.local_access,
        service: built.service,
        db,
        tables,
        client: http_client(),
        _dir: dir,
        stop: Some(stop),
    }
}

/// Whether this run puts the in-process apps on Table Storage (Azurite): `ELEVATE_TEST_STORE=tables`.
/// The test command runs the API suites once on SQLite and once so.
pub fn tables_requested() -> bool {
    std::env::var("ELEVATE_TEST_STORE").is_ok_and(|v| v == "tables")
}

/// Every entity of a table, in key order, without the service's `Timestamp`.
pub fn table_rows(tables: &elevate::config::TablesSetting) -> String {
    let tables = tables.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let client = raw_table(&tables);
            let mut rows = client.query("PartitionKey ne 'none'", 1000, usize::MAX).await.unwrap();
            for row in &mut rows {
                row.remove("Timestamp");
            }
            rows.sort_by_key(|r| (r["PartitionKey"].to_string(), r["RowKey"].to_string()));
            rows.iter().map(|r| format!("{}\n", serde_json::Value::Object(r.clone()))).collect::<String>()
        })
    })
    .join()
    .unwrap()
}

/// A raw client for the table an app uses.
pub fn raw_table(tables: &elevate::config::TablesSetting) -> elevate::adapters::store::table_client::TableClient {
    use elevate::adapters::azure::{AzureClient, RetryPolicy, SharedKey, Signer};
    let elevate::config::TablesAuth::SharedKey { account, key } = &tables.auth else {
        panic!("Azurite uses SharedKey")
    };
    let key = SharedKey::new(account, key.expose(), Arc::new(elevate::clock::SystemClock)).unwrap();
    let client = AzureClient::with_signer(Signer::SharedKey(key), RetryPolicy::default()).unwrap();
    elevate::adapters::store::table_client::TableClient::new(client, &tables.endpoint, &tables.table).unwrap()
}

/// A test HTTP client (no redirects). reqwest is built without a default TLS provider: Elevate
/// installs ring, and so do the tests.
pub fn http_client() -> reqwest::Client {
    elevate::adapters::azure::install_tls_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The proof suites' policy (crash, faults, load, soak): `direct`, Reader on SUB1 without
/// approval, and `approved`, Contributor on SUB2 approved by `approvers`, both for `principal`
/// (`user:<id>` or `group:<id>`), MFA required, no justification, at most `max`.
pub fn two_rule_policy(principal: &str, approvers: &str, max: &str) -> String {
    format!(
        "version: 1\ndefaults:\n  maxDuration: {max}\n  requireMfa: true\n  requireJustification: false\nrules:\n  - id: direct\n    scope: {SUB1}\n    roles: [Reader]\n    principals: [{principal}]\n  - id: approved\n    scope: {SUB2}\n    roles: [Contributor]\n    principals: [{principal}]\n    approval:\n      approvers: [{approvers}]\n      timeout: PT1H\n"
    )
}

/// A number from the environment (a suite's size or seed), or `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn user(id: &str) -> DevTokenRequest {
    DevTokenRequest { object_id: id.into(), mfa: true, lifetime: TimeDelta::hours(24), ..Default::default() }
}

impl TestApp {
    /// A user token with MFA, valid for a day from the test clock's start.
    pub fn token(&self, id: &str) -> String {
        self.mint(user(id))
    }

    pub fn mint(&self, request: DevTokenRequest) -> String {
        self.issuer.as_ref().expect("a dev-mode app").mint(&request, self.clock.now()).unwrap()
    }

    /// A user token for member `i` of the group OPS (eligible for Reader on SUB1): requests
    /// spread over several members stay within each one's cap on open requests.
    pub fn member(&self, i: usize) -> String {
        self.mint(DevTokenRequest { groups: vec![OPS.into()], ..user(&format!("66666666-6666-6666-6666-{i:012}")) })
    }

    pub fn admin(&self) -> String {
        self.mint(DevTokenRequest { roles: vec!["Elevate.Admin".into()], ..user(DANA) })
    }

    pub fn auditor(&self) -> String {
        self.mint(DevTokenRequest { roles: vec!["Elevate.Auditor".into()], ..user(ERIN) })
    }

    pub fn broker(&self, app: &str) -> String {
        self.mint(DevTokenRequest {
            app_id: Some(app.into()),
            roles: vec!["Elevate.Broker".into()],
            mfa: false,
            ..user(BROKER_SP)
        })
    }

    pub fn advance(&self, minutes: i64) {
        self.clock.advance(TimeDelta::minutes(minutes));
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, Some(token), path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, Some(token), path, Some(body)).await
    }

    /// Requests an activation and expects 201.
    pub async fn activate(&self, token: &str, body: Value) -> Value {
        let (status, value) = self.post(token, "/api/activations", body).await;
        assert_eq!(status, StatusCode::CREATED, "{value}");
        value
    }

    pub async fn decide(&self, token: &str, id: &str, decision: &str) -> (StatusCode, Value) {
        self.post(token, &format!("/api/approvals/{id}"), json!({"decision": decision, "justification": "reviewed"}))
            .await
    }

    pub async fn activation(&self, id: &str) -> Value {
        let (status, value) = self.get(&self.admin(), &format!("/api/activations/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        value
    }

    /// Fires the timer as the Functions host would.
    pub async fn sweep(&self) -> Value {
        let (status, value) =
            self.send(reqwest::Method::POST, None, "/expiry-sweeper", Some(timer_payload(false, true))).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        value["ReturnValue"].clone()
    }

    pub async fn audit_for(&self, id: &str) -> Vec<Value> {
        let (status, value) = self.get(&self.admin(), &format!("/api/audit?activationId={id}")).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        value["value"].as_array().unwrap().clone()
    }

    /// Simulated role assignments currently held.
    pub async fn assignments(&self) -> Vec<elevate::service::ports::Assignment> {
        self.local.as_ref().expect("the local provider").all().await.unwrap()
    }

    /// Every row the store and the simulated provider hold, to prove nothing changed.
    pub fn snapshot(&self) -> String {
        let mut out = self.tables.as_ref().map(table_rows).unwrap_or_default();
        if !self.db.exists() {
            return out;
        }
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        for (table, order) in [
            ("activations", "id"),
            ("audit_events", "seq"),
            ("idempotency_keys", "caller, key"),
            ("outbox", "id"),
            ("records", "kind, id"),
            ("simulated_role_assignments", "name"),
        ] {
            let exists: bool = conn
                .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
                    r.get(0)
                })
                .unwrap();
            if !exists {
                continue;
            }
            let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY {order}")).unwrap();
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    Ok((0..columns).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))
                })
                .unwrap();
            for row in rows {
                out.push_str(table);
                out.push(':');
                out.push_str(&row.unwrap());
                out.push('\n');
            }
        }
        out
    }
}

/// The timer invocation body of azure-spec §1.5.
pub fn timer_payload(past_due: bool, with_status: bool) -> Value {
    let status = if with_status {
        json!({"Last": "2026-09-24T13:08:00.0096035+00:00", "Next": "2026-09-24T13:09:00+00:00", "LastUpdated": "2026-09-24T13:08:00.0096035+00:00"})
    } else {
        Value::Null
    };
    json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": status, "IsPastDue": past_due}},
        "Metadata": {"sys": {"MethodName": "expiry-sweeper", "UtcNow": "2026-09-24T13:09:00.0041Z", "RandGuid": "35e6e68c-5583-436c-a277-5aec2b416ba8"}}
    })
}

pub fn reader_sub1() -> Value {
    json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"})
}

pub fn prod_contributor() -> Value {
    json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "INC-1 outage"})
}

pub fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Sends raw bytes over HTTP/1.1 (for chunked bodies and malformed requests) and returns the
/// status and body.
pub async fn raw_http(base: &str, request: Vec<u8>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A chunked request body of `size` bytes, in 8 KiB chunks, without Content-Length.
pub fn chunked_post(path: &str, token: &str, size: usize) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let mut left = size;
    while left > 0 {
        let n = left.min(8192);
        req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        req.extend(std::iter::repeat_n(b' ', n));
        req.extend_from_slice(b"\r\n");
        left -= n;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}
