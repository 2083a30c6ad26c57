//! The `arm` provider against the strict fake ARM (tests/support/fake_azure.rs): grants and
//! revocations as Azure RBAC role assignments, convergence of retries, standing access that is
//! never removed, throttling and failures, crash recovery, orphans, and the real credential path.

use std::time::Duration;

use chrono::{DateTime, Utc};
use elevate::domain::ids::{ActivationId, PrincipalId, RoleDefinitionId};
use elevate::domain::scope::Scope;
use elevate::service::ports::{AccessError, AccessProvider, AssignmentSpec, Grant, PrincipalType, marker};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::arm::{FakeIdentityCredential, fast_retry, provider, spawn_arm_app, spawn_arm_app_on};
use crate::support::fake_azure::{FakeAzure, Fault, MI_HEADER, Stored};
use crate::support::process::{self, Process};
use crate::support::{ALICE, SUB1, http_client, id_of, reader_sub1, start, test_policy, timer_payload};

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

fn reader_path() -> String {
    format!("{SUB1}/providers/Microsoft.Authorization/roleDefinitions/{READER}")
}

fn name_of(activation: &Value) -> Uuid {
    ActivationId::parse(&id_of(activation)).unwrap().role_assignment_name()
}

fn spec(name: Uuid) -> AssignmentSpec {
    AssignmentSpec {
        name,
        scope: Scope::parse(SUB1).unwrap(),
        principal_id: PrincipalId::parse(ALICE).unwrap(),
        principal_type: PrincipalType::User,
        role_definition_id: RoleDefinitionId::parse("Reader").unwrap(),
        description: "elevate:05c5a614-a7d6-4502-b150-c2fb455033ff:2026-11-25T14:00:00Z".into(),
    }
}

/// A grant at `scope` under a fresh name (nothing there).
fn spec_at(scope: &Scope) -> AssignmentSpec {
    AssignmentSpec { scope: scope.clone(), ..spec(Uuid::new_v4()) }
}

fn foreign(principal: &str, description: Option<String>) -> Stored {
    Stored {
        name: Uuid::new_v4(),
        scope: SUB1.into(),
        principal_id: principal.into(),
        principal_type: Some("User".into()),
        role_definition_id: reader_path(),
        description,
    }
}

#[tokio::test]
async fn activation_creates_a_role_assignment_and_expiry_removes_it() {
    let fake = FakeAzure::start().await;
    let app = spawn_arm_app(&fake).await;
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(a["status"], "Active", "{a}");

    let held = fake.assignments();
    assert_eq!(held.len(), 1);
    let grant = &held[0];
    // Deterministic name, principal type always sent, the marker, the subscription's role definition.
    assert_eq!(grant.name, name_of(&a));
    assert_eq!(grant.principal_type.as_deref(), Some("User"));
    assert_eq!(grant.role_definition_id, reader_path());
    let expires: DateTime<Utc> = a["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(grant.description.as_deref(), Some(marker(ActivationId::parse(&id_of(&a)).unwrap(), expires).as_str()));
    assert_eq!(
        a["roleAssignmentId"],
        format!("{SUB1}/providers/Microsoft.Authorization/roleAssignments/{}", grant.name)
    );
    assert!(fake.seen().iter().filter(|s| s.method == "PUT").all(|s| s.principal_type_sent == Some(true)));

    app.advance(59);
    assert_eq!(app.sweep().await["expired"], 0);
    assert_eq!(fake.assignments().len(), 1);
    fake.reset_log();
    app.advance(1);
    let report = app.sweep().await;
    assert_eq!(report["expired"], 1, "{report}");
    assert!(fake.assignments().is_empty());
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Expired");
    // Deleted, then confirmed gone by a read, before it was recorded as expired.
    let seen: Vec<(String, u16)> = fake.seen().iter().map(|s| (s.method.clone(), s.status)).collect();
    assert_eq!(seen, [("DELETE".to_owned(), 200), ("GET".to_owned(), 404)]);
    // The next tick has nothing to do.
    fake.reset_log();
    assert_eq!(app.sweep().await["examined"], 0);
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn a_retried_grant_converges_on_one_assignment() {
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    let want = spec(Uuid::new_v4());
    let first = arm.grant(&want).await.unwrap();
    // ARM answers a repeated identical PUT with 200 …
    assert_eq!(arm.grant(&want).await.unwrap(), first);
    // … or, as some clients have seen, with 409 naming the very same assignment.
    fake.set_reput_conflict(true);
    assert_eq!(arm.grant(&want).await.unwrap(), first);
    assert_eq!(fake.assignments().len(), 1);
    let grant = Grant { spec: want.clone(), recorded: Some(first.id.clone()), issued: true, settled: true };
    assert_eq!(arm.inspect(&grant).await.unwrap(), Some(first));
    // Deleting twice is fine: 200, then 204.
    arm.revoke(&grant).await.unwrap();
    arm.revoke(&grant).await.unwrap();
    let statuses: Vec<u16> = fake.seen().iter().filter(|s| s.method == "DELETE").map(|s| s.status).collect();
    assert_eq!(statuses, [200, 204]);
    assert_eq!(arm.inspect(&grant).await.unwrap(), None);
}

#[tokio::test]
async fn standing_access_is_reported_and_never_removed() {
    let fake = FakeAzure::start().await;
    let standing = foreign(ALICE, None);
    fake.seed(standing.clone());
    let app = spawn_arm_app(&fake).await;
    let (status, answer) = app.post(&app.token(ALICE), "/api/activations", reader_sub1()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "RoleAssignmentExists");
    assert!(answer["error"]["message"].as_str().unwrap().contains(&standing.name.to_string()), "{answer}");
    let id = answer["error"]["details"][0]["message"].as_str().unwrap();
    let a = app.activation(id).await;
    assert_eq!(a["status"], "Failed", "{a}");
    assert_eq!(a["failure"]["code"], "RoleAssignmentExists");
    app.advance(24 * 60);
    app.sweep().await;
    let held = fake.assignments();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].name, standing.name);
    assert!(fake.seen().iter().all(|s| s.method != "DELETE"), "Elevate must never delete what it did not grant");
}

#[tokio::test]
async fn throttling_dropped_connections_and_server_errors_are_retried() {
    let fake = FakeAzure::start().await;
    let app = spawn_arm_app(&fake).await;
    fake.push_fault(Fault::Throttle { retry_after_secs: 1 });
    fake.push_fault(Fault::Status(503));
    fake.push_fault(Fault::Drop);
    fake.push_fault(Fault::Status(500));
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(a["status"], "Active", "{a}");
    let puts: Vec<_> = fake.seen().into_iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(puts.iter().map(|s| s.status).collect::<Vec<_>>(), [429, 503, 0, 500, 201]);
    let waited = puts[1].at - puts[0].at;
    assert!(waited >= Duration::from_secs(1), "Retry-After was not honoured: {waited:?}");
    assert_eq!(fake.assignments().len(), 1);
}

/// Review finding: a server error the client does not retry itself (501, 507) or a 408 was taken
/// as a permanent refusal. It says nothing about the request: try again later.
#[tokio::test]
async fn server_errors_the_client_does_not_retry_are_still_transient() {
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    let grant = Grant { spec: spec_at(&Scope::parse(SUB1).unwrap()), recorded: None, issued: true, settled: true };
    for status in [408, 501, 507] {
        fake.push_fault(Fault::Status(status));
        let read = arm.inspect(&grant).await;
        assert!(matches!(read, Err(AccessError::Transient(_))), "{status}: {read:?}");
    }
    assert_eq!(arm.inspect(&grant).await.unwrap(), None);
}

#[tokio::test]
async fn a_429_holds_every_worker_back() {
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    let scope = Scope::parse(SUB1).unwrap();
    fake.push_fault(Fault::Throttle { retry_after_secs: 3 });
    let first = {
        let (arm, scope) = (std::sync::Arc::clone(&arm), scope.clone());
        tokio::spawn(async move {
            arm.inspect(&Grant { spec: spec_at(&scope), recorded: None, issued: true, settled: true }).await
        })
    };
    // Wait for the 429 to be in force (bounded: a miss fails rather than hangs).
    let watching = std::time::Instant::now();
    while !arm.is_throttled() {
        assert!(watching.elapsed() < Duration::from_secs(10), "the 429 never held the client back");
        tokio::task::yield_now().await;
    }
    let others: Vec<_> = (0..3)
        .map(|_| {
            let (arm, scope) = (std::sync::Arc::clone(&arm), scope.clone());
            tokio::spawn(async move {
                arm.inspect(&Grant { spec: spec_at(&scope), recorded: None, issued: true, settled: true }).await
            })
        })
        .collect();
    assert_eq!(first.await.unwrap().unwrap(), None);
    for other in others {
        assert_eq!(other.await.unwrap().unwrap(), None);
    }
    let seen = fake.seen();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].status, 429);
    for later in &seen[1..] {
        assert!(later.at - seen[0].at >= Duration::from_secs(3), "a worker went ahead during the throttle");
    }
}

#[tokio::test]
async fn a_principal_still_replicating_is_retried_for_minutes_then_fails() {
    // Replication catches up: the next sweep grants.
    let fake = FakeAzure::start().await;
    fake.replicating(ALICE, 1);
    let app = spawn_arm_app(&fake).await;
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(a["status"], "Provisioning", "{a}");
    app.advance(3);
    assert_eq!(app.sweep().await["provisioned"], 1);
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");

    // It never does: after five minutes the activation fails, saying why.
    let fake = FakeAzure::start().await;
    fake.replicating(ALICE, usize::MAX);
    let app = spawn_arm_app(&fake).await;
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    for minutes in [3, 1] {
        app.advance(minutes);
        app.sweep().await;
        assert_eq!(app.activation(&id_of(&a)).await["status"], "Provisioning");
    }
    app.advance(1);
    assert_eq!(app.sweep().await["provisioningFailed"], 1);
    let failed = app.activation(&id_of(&a)).await;
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["failure"]["code"], "PrincipalNotFound");
    assert!(fake.assignments().is_empty());
}

#[tokio::test]
async fn a_role_outside_elevates_delegation_is_a_clear_configuration_error() {
    let fake = FakeAzure::start().await;
    fake.forbid_role(READER);
    let app = spawn_arm_app(&fake).await;
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(a["status"], "Failed", "{a}");
    let message = a["failure"]["message"].as_str().unwrap();
    for needle in ["Reader", READER, SUB1, "AuthorizationFailed", "not allowed"] {
        assert!(message.contains(needle), "`{needle}` missing from: {message}");
    }
}

#[tokio::test]
async fn a_revocation_is_verified_and_a_failing_one_stays_due() {
    let fake = FakeAzure::start().await;
    let app = spawn_arm_app(&fake).await;
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    app.advance(60);

    // ARM says deleted, but a read still finds it: not recorded as expired.
    fake.set_sticky_deletes(true);
    let report = app.sweep().await;
    assert_eq!(report["expired"], 0);
    assert_eq!(report["failures"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");
    fake.set_sticky_deletes(false);

    // ARM keeps failing: reported on every tick, still due.
    let name = name_of(&a).to_string();
    fake.fail_always(&name, 500);
    for _ in 0..2 {
        let report = app.sweep().await;
        assert_eq!(report["failures"][0]["activationId"], id_of(&a), "{report}");
        assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");
    }
    fake.heal(&name);
    assert_eq!(app.sweep().await["expired"], 1);
    assert!(fake.assignments().is_empty());
}

#[tokio::test]
async fn the_sweep_revokes_concurrently_and_one_failure_stops_no_other() {
    let fake = FakeAzure::start().await;
    let app = spawn_arm_app(&fake).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let body =
            json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/rg{i}"), "duration": "PT1H"});
        // Three requesters: each holds fewer than the cap on open requests.
        ids.push(app.activate(&app.member(i % 3), body).await);
    }
    assert_eq!(fake.assignments().len(), 24);
    fake.set_latency(Duration::from_millis(50));
    fake.reset_log();
    let stuck = name_of(&ids[7]).to_string();
    fake.fail_always(&stuck, 503);
    app.advance(60);
    let report = app.sweep().await;
    assert_eq!(report["expired"], 23, "{report}");
    assert_eq!(report["failures"].as_array().unwrap().len(), 1);
    let in_flight = fake.max_in_flight();
    assert!((2..=16).contains(&in_flight), "revocations in flight at once: {in_flight}");
    fake.heal(&stuck);
    assert_eq!(app.sweep().await["expired"], 1);
    assert!(fake.assignments().is_empty());
}

#[tokio::test]
async fn orphaned_assignments_are_found_and_revoked_when_the_store_is_lost() {
    let fake = FakeAzure::start().await;
    fake.set_page_size(1);
    // Granted through Elevate, then the store was lost.
    let before = spawn_arm_app(&fake).await;
    let a = before.activate(&before.token(ALICE), reader_sub1()).await;
    drop(before);
    // Another Elevate grant the store never knew, with an hour to go.
    let later = ActivationId::parse(&Uuid::new_v4().to_string()).unwrap();
    let later_expiry: DateTime<Utc> = "2026-11-25T14:00:00Z".parse().unwrap();
    fake.seed(Stored {
        name: later.role_assignment_name(),
        description: Some(marker(later, later_expiry)),
        ..foreign("66666666-6666-6666-6666-666666666666", None)
    });
    // Someone copied a marker onto their own assignment: its name is not Elevate's.
    let copied = foreign("77777777-7777-7777-7777-777777777777", Some(marker(later, start())));
    fake.seed(copied.clone());
    let unrelated = foreign("88888888-8888-8888-8888-888888888888", Some("break-glass".into()));
    fake.seed(unrelated.clone());

    let after = spawn_arm_app_on(&fake, None, start() + chrono::TimeDelta::minutes(61)).await;
    let report = after.sweep().await;
    assert_eq!(report["orphanCheck"], true, "{report}");
    assert_eq!(report["orphansFound"], 1, "{report}");
    assert_eq!(report["orphansRevoked"], 1);
    let names: Vec<Uuid> = fake.assignments().iter().map(|s| s.name).collect();
    assert!(!names.contains(&name_of(&a)));
    assert!(
        names.contains(&later.role_assignment_name())
            && names.contains(&copied.name)
            && names.contains(&unrelated.name)
    );

    // The check runs on its own slower cadence.
    after.advance(30);
    assert_eq!(after.sweep().await["orphanCheck"], false);
    after.advance(60);
    let report = after.sweep().await;
    assert_eq!(report["orphansRevoked"], 1, "{report}");
    let names: Vec<Uuid> = fake.assignments().iter().map(|s| s.name).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&copied.name) && names.contains(&unrelated.name));
}

#[tokio::test]
async fn the_fake_is_strict_and_refuses_foreign_tokens() {
    let fake = FakeAzure::start().await;
    let arm = elevate::adapters::access::arm::ArmAccessProvider::new(
        &fake.url(),
        std::sync::Arc::new(FakeIdentityCredential::wrong(&fake)),
        fast_retry(),
    )
    .unwrap();
    let refused = arm.grant(&spec(Uuid::new_v4())).await.unwrap_err();
    assert!(matches!(&refused, AccessError::Transient(m) if m.contains("refused the token")), "{refused}");
    assert!(fake.assignments().is_empty());

    let client = http_client();
    let base = format!("{}{SUB1}/providers/Microsoft.Authorization/roleAssignments", fake.url());
    let auth = format!("Bearer {}", fake.token);
    let body =
        json!({"properties": {"roleDefinitionId": reader_path(), "principalId": ALICE, "principalType": "User"}});
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (client.get(format!("{base}/{}", Uuid::new_v4())), 401, "AuthenticationFailed"),
        (client.get(format!("{base}/{}", Uuid::new_v4())).header("authorization", &auth), 400, "MissingApiVersionParameter"),
        (client.get(format!("{base}/{}?api-version=2015-07-01", Uuid::new_v4())).header("authorization", &auth), 400, "InvalidApiVersionParameter"),
        (client.put(format!("{base}/not-a-guid?api-version=2022-04-01")).header("authorization", &auth).json(&body), 400, "InvalidRoleAssignmentId"),
        (
            client.put(format!("{base}/{}?api-version=2022-04-01", Uuid::new_v4())).header("authorization", &auth).json(&json!({"properties": {"roleDefinitionId": reader_path(), "principalId": "alice"}})),
            400,
            "InvalidPrincipalId",
        ),
        (
            client.put(format!("{base}/{}?api-version=2022-04-01", Uuid::new_v4())).header("authorization", &auth).json(&json!({"properties": {"roleDefinitionId": "/subscriptions/00000000-0000-0000-0000-000000000009/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7", "principalId": ALICE}})),
            400,
            "InvalidRoleDefinitionId",
        ),
        (client.get(format!("{base}/{}?api-version=2022-04-01", Uuid::new_v4())).header("authorization", &auth), 404, "RoleAssignmentNotFound"),
    ];
    for (request, status, code) in cases {
        let res = request.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{code}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
    }
    // The managed identity endpoint wants its header.
    let res = client
        .get(format!("{}?api-version=2019-08-01&resource=https://management.azure.com", fake.identity_endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// The binary on the fake ARM, its token from the fake managed identity endpoint through
/// azure_identity's own `ManagedIdentityCredential`. It serves as under the Functions host (the
/// test fires the timer), with dev tokens: allowed because ARM is on loopback.
async fn start_on_arm(fake: &FakeAzure, dir: &std::path::Path) -> Process {
    std::fs::write(dir.join("policy.yaml"), test_policy()).unwrap();
    process::start(
        dir,
        &["serve".to_owned(), "--functions-host".to_owned()],
        &[
            ("ELEVATE_AUTH_MODE", "dev".into()),
            ("ELEVATE_PROVIDER", "arm".into()),
            ("ELEVATE_ARM_ENDPOINT", fake.url()),
            // No Graph here; dev identity needs it on loopback too.
            ("ELEVATE_GRAPH_ENDPOINT", "http://127.0.0.1:9".into()),
            ("IDENTITY_ENDPOINT", fake.identity_endpoint()),
            ("IDENTITY_HEADER", MI_HEADER.into()),
            ("ELEVATE_STORE", format!("sqlite:{}", dir.join("elevate.db").display())),
            ("ELEVATE_POLICY_FILE", dir.join("policy.yaml").display().to_string()),
        ],
    )
    .await
}

#[tokio::test]
async fn the_binary_grants_and_revokes_with_its_managed_identity() {
    let fake = FakeAzure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let elevate = start_on_arm(&fake, dir.path()).await;
    let client = http_client();
    let health: Value = client.get(format!("{}/api/health", elevate.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["provider"], "arm+graph", "{health}");
    assert_eq!(health["simulated"], false, "{health}");

    let token = process::token(dir.path(), ALICE, &[]);
    let res = client
        .post(format!("{}/api/activations", elevate.base))
        .bearer_auth(&token)
        .json(&reader_sub1())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let a: Value = res.json().await.unwrap();
    assert_eq!(a["status"], "Active", "{a}");
    assert_eq!(fake.assignments().len(), 1);
    // The token came from the managed identity endpoint, asked for exactly as azure-spec §4.2 says.
    let asked = fake.mi_requests();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|r| r.header("x-identity-header") == Some(MI_HEADER)
        && r.query("api-version") == Some("2019-08-01")
        && r.query("resource") == Some("https://management.azure.com")));

    let res = client
        .post(format!("{}/api/activations/{}/deactivate", elevate.base, id_of(&a)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(fake.assignments().is_empty());
    let log = std::fs::read_to_string(&elevate.log).unwrap();
    assert!(!log.contains(&fake.token), "a token reached the log");
}

#[tokio::test]
async fn a_crash_between_the_grant_and_its_record_is_recovered_and_expires() {
    let fake = FakeAzure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = start_on_arm(&fake, dir.path()).await;
    let token = process::token(dir.path(), ALICE, &[]);
    let stored = fake.hang_next_put();
    let request = {
        let url = format!("{}/api/activations", first.base);
        tokio::spawn(async move { http_client().post(url).bearer_auth(token).json(&reader_sub1()).send().await })
    };
    // ARM has created the assignment; Elevate has not recorded it. Kill it now (SIGKILL).
    stored.await.unwrap();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(request.await.unwrap().is_err(), "the caller saw the process die");
    assert_eq!(fake.assignments().len(), 1);

    // Restarted: the activation survived as Provisioning, its expiry stored before the PUT.
    let second = start_on_arm(&fake, dir.path()).await;
    let client = http_client();
    let listed: Value = client
        .get(format!("{}/api/activations?mine=true", second.base))
        .bearer_auth(process::token(dir.path(), ALICE, &[]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = listed["value"][0].clone();
    assert_eq!(a["status"], "Provisioning", "{listed}");
    assert!(a["expiresAt"].is_string());
    // A tick right away leaves it to the request that started it (three minutes' grace).
    let tick: Value = client
        .post(format!("{}/expiry-sweeper", second.base))
        .json(&timer_payload(false, true))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tick["ReturnValue"]["provisioned"], 0, "{tick}");
    drop(second);

    // The sweep after the grace finds the assignment by its deterministic name and records it;
    // the sweep after the expiry removes it (a clock moved on, over the same store).
    #[expect(clippy::disallowed_methods, reason = "the killed process stamped its records with the wall clock")]
    let now = Utc::now();
    let later = spawn_arm_app_on(&fake, Some(dir.path().join("elevate.db")), now + chrono::TimeDelta::minutes(4)).await;
    let report = later.sweep().await;
    assert_eq!(report["provisioned"], 1, "{report}");
    let recovered = later.activation(&id_of(&a)).await;
    assert_eq!(recovered["status"], "Active");
    assert_eq!(
        recovered["roleAssignmentId"],
        format!("{SUB1}/providers/Microsoft.Authorization/roleAssignments/{}", name_of(&a))
    );
    later.advance(60);
    let report = later.sweep().await;
    assert_eq!(report["expired"], 1, "{report}");
    assert!(fake.assignments().is_empty());
}

#[tokio::test]
async fn a_sweep_out_of_time_leaves_the_rest_due_for_the_next_tick() {
    use elevate::adapters::store::sqlite::SqliteStore;
    use elevate::domain::policy::Policy;
    use elevate::service::{Elevate, SweepSettings};

    let fake = FakeAzure::start().await;
    let app = spawn_arm_app(&fake).await;
    for i in 0..20 {
        let body =
            json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/rg{i}"), "duration": "PT1H"});
        // Two requesters: each holds fewer than the cap on open requests.
        app.activate(&app.member(i % 2), body).await;
    }
    // 20 expiries × 2 calls × 200 ms over 2 workers is 4 s of work; the budget is 1 s.
    fake.set_latency(Duration::from_millis(200));
    let settings = SweepSettings { concurrency: 2, time_budget: Duration::from_secs(1), ..SweepSettings::default() };
    let service = Elevate::new(
        std::sync::Arc::new(SqliteStore::open(&app.db).unwrap()),
        provider(&fake, fast_retry()),
        std::sync::Arc::new(Policy::from_yaml("t.yaml", &test_policy()).unwrap()),
        vec![],
        settings,
    );
    let later = start() + chrono::TimeDelta::minutes(61);
    let first = service.sweep(later).await;
    assert!(first.expired >= 2 && first.deferred > 0, "{first:?}");
    assert_eq!(first.expired + first.deferred, 20, "{first:?}");
    assert!(first.failures.is_empty());
    let mut left = 20 - first.expired;
    for _ in 0..20 {
        if left == 0 {
            break;
        }
        left -= service.sweep(later).await.expired;
    }
    assert_eq!(left, 0);
    assert!(fake.assignments().is_empty());
}

#[tokio::test]
async fn the_managed_identity_issues_a_token_per_resource() {
    let fake = FakeAzure::start().await;
    let ask = |resource: &'static str| {
        let url = format!("{}?api-version=2019-08-01&resource={resource}", fake.identity_endpoint());
        async move {
            let res = http_client().get(url).header("x-identity-header", MI_HEADER).send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, arm) = ask("https://management.azure.com").await;
    assert_eq!((status, arm["access_token"].as_str()), (StatusCode::OK, Some(fake.token.as_str())));
    let (status, _) = ask("https://graph.microsoft.com").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no Graph wired yet");
    fake.wire_graph("graph-token");
    let (status, graph) = ask("https://graph.microsoft.com").await;
    assert_eq!((status, graph["access_token"].as_str()), (StatusCode::OK, Some("graph-token")));
    assert_eq!(graph["resource"], "https://graph.microsoft.com");
}
