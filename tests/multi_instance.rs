//! Several Elevate instances on one Table Storage account (Azurite), as Functions scale-out runs
//! them: concurrent approvals of one request give one outcome, one grant and one audit event per
//! transition; concurrent sweeps revoke each due activation once.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::azurite::{azurite, fresh_table};
use crate::support::process::{Process, start, token};
use crate::support::{ALICE, BOB, CAROL, OPS, SUB1, SUB2, http_client, spawn_on_tables, start as t0};

fn policy() -> String {
    format!(
        r#"
version: 1
defaults:
  maxDuration: PT8H
  requireMfa: true
rules:
  - id: approved
    scope: {SUB2}
    roles: [Reader, Contributor, Owner]
    principals: [user:{ALICE}]
    requireJustification: false
    approval:
      approvers: [user:{BOB}, user:{CAROL}]
      timeout: PT1H
  - id: direct
    scope: {SUB1}
    roles: [Reader]
    principals: [user:{ALICE}, group:{OPS}]
    requireJustification: false
"#
    )
}

async fn call(base: &str, token: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let client = http_client();
    let url = format!("{base}/api{path}");
    let req = match body {
        Some(b) => client.post(url).json(&b),
        None => client.get(url),
    };
    let res = req.bearer_auth(token).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn actions(audit: &Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in audit["value"].as_array().unwrap() {
        *counts.entry(e["action"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    counts
}

fn simulated_assignments(file: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(file).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM simulated_role_assignments ORDER BY name").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

async fn two_processes(dir: &std::path::Path, table: &str) -> (Process, Process) {
    std::fs::write(dir.join("policy.yaml"), policy()).unwrap();
    let env = vec![
        ("ELEVATE_STORE", azurite().connection_string()),
        ("ELEVATE_STORE_TABLE", table.to_owned()),
        ("ELEVATE_LOCAL_ASSIGNMENTS_FILE", dir.join("local.db").display().to_string()),
        ("ELEVATE_POLICY_FILE", dir.join("policy.yaml").display().to_string()),
        ("ELEVATE_LINK_KEY", "a shared link key of at least thirty-two characters".to_owned()),
    ];
    // One after the other: the first creates the dev issuer key both then share.
    let a = start(dir, &["serve".to_owned()], &env).await;
    let b = start(dir, &["serve".to_owned()], &env).await;
    (a, b)
}

#[tokio::test]
async fn two_processes_approving_one_request_at_once_give_one_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_processes(dir.path(), &fresh_table()).await;
    let alice = token(dir.path(), ALICE, &[]);
    let bob = token(dir.path(), BOB, &[]);
    let carol = token(dir.path(), CAROL, &[]);
    for round in 0..6 {
        let role = ["Reader", "Contributor", "Owner"][round % 3];
        let (status, requested) = call(
            &a.base,
            &alice,
            "/activations",
            Some(json!({"roleDefinitionId": role, "scope": SUB2, "duration": "PT1H"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{requested}");
        assert_eq!(requested["status"], "PendingApproval");
        let id = requested["id"].as_str().unwrap().to_owned();
        // Even rounds: two approvers, one on each instance. Odd: the same approver on both.
        let second = if round % 2 == 0 { &carol } else { &bob };
        let decision = json!({"decision": "Approve", "justification": "looks right"});
        let path = format!("/approvals/{id}");
        let (one, two) = tokio::join!(
            call(&a.base, &bob, &path, Some(decision.clone())),
            call(&b.base, second, &path, Some(decision.clone())),
        );
        let mut statuses = [one.0.as_u16(), two.0.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses[0], 200, "round {round}: {one:?} {two:?}");
        assert!(statuses[1] == 409, "round {round}: the loser is told, not recorded: {one:?} {two:?}");

        let (_, activation) = call(&b.base, &alice, &format!("/activations/{id}"), None).await;
        assert_eq!(activation["status"], "Active", "round {round}: {activation}");
        assert_eq!(activation["approvals"].as_array().unwrap().len(), 1, "{activation}");
        let admin = token(dir.path(), "44444444-4444-4444-4444-444444444444", &["--role", "Elevate.Auditor"]);
        let (_, audit) = call(&a.base, &admin, &format!("/audit?activationId={id}"), None).await;
        let counts = actions(&audit);
        assert!(counts.values().all(|n| *n == 1), "round {round}: one event per transition: {counts:?}");
        assert_eq!(counts.get("Approved"), Some(&1), "{counts:?}");
        let held = simulated_assignments(&dir.path().join("local.db"));
        assert_eq!(held.len(), 1, "round {round}: one grant: {held:?}");

        let (status, done) = call(&b.base, &alice, &format!("/activations/{id}/deactivate"), Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        assert!(simulated_assignments(&dir.path().join("local.db")).is_empty());
    }
}

#[tokio::test]
async fn two_instances_sweeping_at_once_revoke_each_due_activation_once() {
    let dir = tempfile::tempdir().unwrap();
    let tables = azurite().tables(dir.path().join("local.db"));
    let one = spawn_on_tables(&policy(), tables.clone(), t0()).await;
    let two = spawn_on_tables(&policy(), tables, t0()).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let scope = format!("{SUB1}/resourceGroups/rg{i:02}");
        let body = json!({"roleDefinitionId": "Reader", "scope": scope, "duration": format!("PT{}M", 30 + i)});
        // Three requesters: each holds fewer than the cap on open requests.
        ids.push(one.activate(&one.member(i % 3), body).await["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(two.assignments().await.len(), 24, "both instances see the one simulated tenant");
    for app in [&one, &two] {
        app.clock.advance(TimeDelta::hours(2));
    }
    let (first, second) = tokio::join!(one.sweep(), two.sweep());
    let expired = first["expired"].as_u64().unwrap() + second["expired"].as_u64().unwrap();
    assert_eq!(expired, 24, "{first}\n{second}");
    assert!(first["failures"].as_array().unwrap().is_empty() && second["failures"].as_array().unwrap().is_empty());
    assert!(one.assignments().await.is_empty());
    for id in &ids {
        let events = one.audit_for(id).await;
        let expirations = events.iter().filter(|e| e["action"] == "Expired").count();
        assert_eq!(expirations, 1, "{id}: {events:?}");
        assert_eq!(two.activation(id).await["status"], "Expired");
    }
    // Nothing is left for a later sweep.
    let again = one.sweep().await;
    assert_eq!(again["examined"], 0, "{again}");
}
