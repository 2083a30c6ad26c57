//! The tamper-evident audit trail: activations written through the API, days sealed by the
//! governance pass, then the store tampered with by hand — SQL on the SQLite file, the Table
//! REST API on Azurite — and `elevate audit verify` (the real binary, reading the store itself)
//! must catch each change, name the activation and event, and exit 7; an untouched store (and
//! one put back as it was) verifies clean. Also: legacy events, and the export of sealed days
//! to Azurite's Blob service.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use elevate::adapters::store::sqlite::SqliteStore;
use elevate::clock::Clock;
use elevate::domain::audit::{AuditEvent, DaySeal};
use elevate::service::audit_chain::{Archived, AuditArchive, blob_name, seal_and_export};
use elevate::service::ports::{AuditQuery, Store};
use reqwest::StatusCode;
use rusqlite::params;
use serde_json::{Value, json};

use crate::governance::governance;
use crate::support::azurite::{azurite, azurite_blobs, fresh_container};
use crate::support::*;

const DAY: &str = "2026-11-25";

/// `elevate audit verify` with only PATH and `env`: its exit code, stdout and stderr.
async fn verify(env: Vec<(&'static str, String)>) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(process::exe());
        command.args(["audit", "verify"]).current_dir(dir.path()).env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sqlite_env(db: &Path) -> Vec<(&'static str, String)> {
    vec![("ELEVATE_STORE", format!("sqlite:{}", db.display()))]
}

async fn expect_clean(env: &[(&'static str, String)]) -> String {
    let (code, out, err) = verify(env.to_vec()).await;
    assert_eq!(code, 0, "verify should pass:\n{out}\n{err}");
    assert!(out.contains("intact"), "{out}");
    out
}

/// Verify must fail (exit 7) and say every one of `expected` on stdout.
async fn expect_caught(env: &[(&'static str, String)], what: &str, expected: &[&str]) -> String {
    let (code, out, err) = verify(env.to_vec()).await;
    assert_eq!(code, 7, "{what}: verify should fail:\n{out}\n{err}");
    assert!(err.contains("AuditTampered"), "{what}: {err}");
    for e in expected {
        assert!(out.contains(e), "{what}: `{e}` not in:\n{out}");
    }
    out
}

/// Three activations through the API: one deactivated (three events), one approved, one
/// pending; then the day sealed by the governance timer. Returns the ids.
async fn history(app: &TestApp) -> (String, String, String) {
    let alice = app.token(ALICE);
    let a = app.activate(&alice, json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"})).await;
    let (status, body) = app.post(&alice, &format!("/api/activations/{}/deactivate", id_of(&a)), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.advance(5);
    let b = app.activate(&alice, prod_contributor()).await;
    let (status, body) = app.decide(&app.token(BOB), &id_of(&b), "Approve").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = app
        .activate(&alice, json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB1}/resourceGroups/app"), "duration": "PT1H", "justification": "deploy"}))
        .await;
    assert!(app.audit_for(&id_of(&a)).await.len() >= 3);
    // The next day, after the grace: the governance pass seals 2026-11-25.
    app.advance(24 * 60);
    let report = governance(app).await;
    assert_eq!(report["audit"]["sealed"], json!([DAY]), "{report}");
    // Sealed once: the next pass leaves it.
    let again = governance(app).await;
    assert!(again.get("audit").is_none(), "{again}");
    (id_of(&a), id_of(&b), id_of(&c))
}

/// The rows of one activation's events: (seq, body), oldest first.
fn sqlite_events(conn: &rusqlite::Connection, id: &str) -> Vec<(i64, String)> {
    conn.prepare("SELECT seq, body FROM audit_events WHERE activation_id = ?1 ORDER BY seq")
        .unwrap()
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn set_body(conn: &rusqlite::Connection, seq: i64, body: &str) {
    assert_eq!(conn.execute("UPDATE audit_events SET body = ?1 WHERE seq = ?2", params![body, seq]).unwrap(), 1);
}

#[tokio::test]
async fn verify_catches_every_hand_made_change_to_a_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elevate.db");
    let app = spawn_app_on(&test_policy(), None, Some(db.clone()), start()).await;
    let (a, b, _) = history(&app).await;
    let env = sqlite_env(&db);
    let out = expect_clean(&env).await;
    assert!(out.contains("checked 3 activation(s)") && out.contains("1 sealed day(s)"), "{out}");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let events = sqlite_events(&conn, &a);
    let (seq2, body2) = events[1].clone();
    let (seq3, body3) = events[2].clone();

    // Edited: the justification of event 2 of `a`.
    let mut edited: Value = serde_json::from_str(&body2).unwrap();
    edited["detail"] = json!("nothing to see here");
    set_body(&conn, seq2, &edited.to_string());
    expect_caught(
        &env,
        "edit",
        &[&format!("activation {a} event 2"), "edited", &format!("day {DAY}"), "does not match its seal"],
    )
    .await;
    set_body(&conn, seq2, &body2);
    expect_clean(&env).await;

    // Deleted: event 2 of `a`.
    conn.execute("DELETE FROM audit_events WHERE seq = ?1", params![seq2]).unwrap();
    expect_caught(&env, "delete", &[&format!("activation {a} event 2"), "chain is broken", "fewer: deleted"]).await;
    conn.execute(
        "INSERT INTO audit_events (seq, id, activation_id, principal_id, at, body) SELECT ?1, json_extract(?2, '$.id'), ?3, ?4, 0, ?2",
        params![seq2, body2, a, ALICE],
    )
    .unwrap();
    conn.execute(
        "UPDATE audit_events SET at = (SELECT at FROM audit_events WHERE seq = ?2) WHERE seq = ?1",
        params![seq2, seq3],
    )
    .unwrap();
    expect_clean(&env).await;

    // Reordered: events 2 and 3 of `a` swapped.
    set_body(&conn, seq2, &body3);
    set_body(&conn, seq3, &body2);
    expect_caught(&env, "reorder", &[&format!("activation {a} event 2"), "read as event 2", "reordered"]).await;
    set_body(&conn, seq2, &body2);
    set_body(&conn, seq3, &body3);
    expect_clean(&env).await;

    // Inserted: an approval nobody gave, in `b`'s trail, without a hash (as if legacy).
    let mut forged: Value = serde_json::from_str(&sqlite_events(&conn, &b)[0].1).unwrap();
    forged.as_object_mut().unwrap().remove("chain");
    forged["id"] = json!(uuid::Uuid::new_v4().to_string());
    forged["action"] = json!("Approved");
    conn.execute(
        "INSERT INTO audit_events (id, activation_id, principal_id, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![forged["id"].as_str().unwrap(), b, ALICE, start().timestamp_millis(), forged.to_string()],
    )
    .unwrap();
    let out =
        expect_caught(&env, "insert", &[&format!("activation {b}"), "follows chained events", "more: inserted"]).await;
    assert!(!out.contains(&format!("activation {a}")), "only the changed trail is named:\n{out}");
    conn.execute("DELETE FROM audit_events WHERE id = ?1", params![forged["id"].as_str().unwrap()]).unwrap();
    expect_clean(&env).await;

    // Rewritten by someone who knows the scheme: event 2 edited and every later hash recomputed.
    // The chain is whole again; only the day's seal shows it.
    let mut chain: Vec<AuditEvent> =
        sqlite_events(&conn, &a).iter().map(|(_, body)| serde_json::from_str(body).unwrap()).collect();
    chain[1].detail = Some("rewritten".into());
    let mut prev = chain[0].chain.as_ref().unwrap().hash;
    for (i, event) in chain.iter_mut().enumerate().skip(1) {
        *event = AuditEvent { chain: None, ..event.clone() }.linked(i as u64 + 1, Some(prev));
        prev = event.chain.as_ref().unwrap().hash;
    }
    for ((seq, _), event) in sqlite_events(&conn, &a).iter().zip(&chain) {
        set_body(&conn, *seq, &serde_json::to_string(event).unwrap());
    }
    let out = expect_caught(&env, "rewrite", &[&format!("day {DAY}"), "as many events, but not the same"]).await;
    assert!(!out.contains("edited: its content"), "the chain itself verifies:\n{out}");
    for (seq, body) in &events {
        set_body(&conn, *seq, body);
    }
    expect_clean(&env).await;

    // The seal deleted, to hide a rewrite.
    let seal: String = conn
        .query_row("SELECT body FROM records WHERE kind = 'audit-seal' AND id = ?1", params![DAY], |r| r.get(0))
        .unwrap();
    conn.execute("DELETE FROM records WHERE kind = 'audit-seal'", []).unwrap();
    expect_caught(&env, "seal deleted", &[&format!("day {DAY}"), "seal was deleted"]).await;
    conn.execute("INSERT INTO records (kind, id, version, body) VALUES ('audit-seal', ?1, 1, ?2)", params![DAY, seal])
        .unwrap();

    // A whole activation deleted, events and all: the seal shows it.
    conn.execute("DELETE FROM audit_events WHERE activation_id = ?1", params![b]).unwrap();
    conn.execute("DELETE FROM activations WHERE id = ?1", params![b]).unwrap();
    expect_caught(&env, "activation deleted", &[&format!("day {DAY}"), "fewer: deleted"]).await;
}

#[tokio::test]
async fn events_written_before_the_chain_verify_as_legacy_and_the_chain_starts_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elevate.db");
    let app = spawn_app_on(&test_policy(), None, Some(db.clone()), start()).await;
    let alice = app.token(ALICE);
    let a = app.activate(&alice, reader_sub1()).await;
    // As an Elevate before the chain wrote them.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stripped = conn.execute("UPDATE audit_events SET body = json_remove(body, '$.chain')", []).unwrap();
    assert!(stripped >= 2);
    let env = sqlite_env(&db);
    let out = expect_clean(&env).await;
    assert!(
        out.contains(&format!("note      activation {}: {stripped} event(s) unchained (legacy)", id_of(&a))),
        "{out}"
    );
    // The next event starts the chain after them.
    let (status, body) = app.post(&alice, &format!("/api/activations/{}/deactivate", id_of(&a)), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let trail = app.audit_for(&id_of(&a)).await;
    let last = trail.last().unwrap();
    assert_eq!(last["chain"]["seq"], json!(stripped + 1), "{last}");
    assert!(last["chain"].get("prev").is_none_or(Value::is_null), "{last}");
    let out = expect_clean(&env).await;
    assert!(out.contains("unchained (legacy)"), "{out}");
    // Sealing a day of legacy events, and verifying it, works the same.
    app.advance(24 * 60);
    assert_eq!(governance(&app).await["audit"]["sealed"], json!([DAY]));
    expect_clean(&env).await;
    // A legacy event's chain cannot be stripped later without it showing: strip the last one.
    conn.execute(
        "UPDATE audit_events SET body = json_remove(body, '$.chain') WHERE seq = (SELECT MAX(seq) FROM audit_events)",
        [],
    )
    .unwrap();
    expect_caught(&env, "stripped", &["does not match its seal"]).await;
}

#[tokio::test]
async fn verify_refuses_bad_settings_and_a_missing_store() {
    let (code, _, err) = verify(vec![("ELEVATE_STORE", "nonsense".into())]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ELEVATE_STORE"), "{err}");
    let (code, _, err) = verify(vec![("ELEVATE_STORE", "sqlite:/nonexistent/elevate.db".into())]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no SQLite store"), "{err}");
}

/// A raw Table REST client on the app's table: read, replace and delete entities as anyone
/// with the account key could.
#[tokio::test]
async fn verify_catches_entities_edited_through_the_table_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    let tables = azurite().tables(dir.path().join("local.db"));
    let app = spawn_on_tables(&test_policy(), tables.clone(), start()).await;
    let (a, _, _) = history(&app).await;
    let env = vec![("ELEVATE_STORE", azurite().connection_string()), ("ELEVATE_STORE_TABLE", tables.table.clone())];
    expect_clean(&env).await;
    let raw = raw_table(&tables);
    let get = |row: &'static str| {
        let (raw, a) = (&raw, a.clone());
        async move { raw.get(&a, row).await.unwrap().unwrap() }
    };
    let second = get("event_000002").await;
    let third = get("event_000003").await;

    // Edited through the REST API.
    let mut edited = second.properties.clone();
    let mut body: Value = serde_json::from_str(edited["Body"].as_str().unwrap()).unwrap();
    body["justification"] = json!("approved by the CISO");
    edited.insert("Body".into(), body.to_string().into());
    raw.replace(&edited, None).await.unwrap();
    expect_caught(&env, "edit", &[&format!("activation {a} event 2"), "edited", "does not match its seal"]).await;
    raw.replace(&second.properties, None).await.unwrap();
    expect_clean(&env).await;

    // Reordered: the bodies of events 2 and 3 swapped.
    let mut swapped2 = second.properties.clone();
    swapped2.insert("Body".into(), third.properties["Body"].clone());
    let mut swapped3 = third.properties.clone();
    swapped3.insert("Body".into(), second.properties["Body"].clone());
    raw.replace(&swapped2, None).await.unwrap();
    raw.replace(&swapped3, None).await.unwrap();
    expect_caught(&env, "reorder", &[&format!("activation {a} event 2"), "reordered"]).await;
    raw.replace(&second.properties, None).await.unwrap();
    raw.replace(&third.properties, None).await.unwrap();
    expect_clean(&env).await;

    // Deleted: the last event (the activation still says Deactivated).
    raw.delete(&a, "event_000003", "*").await.unwrap();
    expect_caught(&env, "delete", &[&format!("activation {a}"), "latest events were deleted", "fewer: deleted"]).await;
    raw.insert(&third.properties).await.unwrap();
    expect_clean(&env).await;
}

/// The `Store` of an app's SQLite file, opened beside the app.
fn store_of(db: &Path) -> SqliteStore {
    SqliteStore::open(db).unwrap()
}

#[tokio::test]
async fn sealed_days_are_exported_once_to_blob_storage_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elevate.db");
    let app = spawn_app_on(&test_policy(), None, Some(db.clone()), start()).await;
    let alice = app.token(ALICE);
    app.activate(&alice, reader_sub1()).await;
    let archive = azurite_blobs().archive(&fresh_container());
    archive.ensure_container().await.unwrap();
    archive.ensure_container().await.unwrap();
    let store = store_of(&db);
    let day = NaiveDate::parse_from_str(DAY, "%Y-%m-%d").unwrap();

    // Not over yet: nothing sealed, nothing exported.
    let report = seal_and_export(&store, Some(&archive), app.clock.now()).await;
    assert!(report.is_empty(), "{report:?}");
    // Two days later: both days sealed (the second holds nothing), both exported.
    let later: DateTime<Utc> = "2026-11-27T00:30:00Z".parse().unwrap();
    let report = seal_and_export(&store, Some(&archive), later).await;
    assert_eq!(report.sealed, vec![day, day.succ_opt().unwrap()], "{report:?}");
    assert_eq!(report.exported, report.sealed, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");

    let blob = String::from_utf8(archive.get(&blob_name(day)).await.unwrap().unwrap()).unwrap();
    let lines: Vec<Value> = blob.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events = store.audit(&AuditQuery { limit: 100, ..AuditQuery::default() }).await.unwrap().items;
    assert_eq!(lines.len(), events.len() + 1, "{blob}");
    let seal: DaySeal = serde_json::from_value(lines.last().unwrap()["seal"].clone()).unwrap();
    let exported: Vec<AuditEvent> =
        lines[..events.len()].iter().map(|l| serde_json::from_value(l.clone()).unwrap()).collect();
    assert_eq!(DaySeal::root_of(day, &exported).0, seal.root, "the blob proves itself against its seal");
    assert_eq!((seal.day, seal.events), (day, events.len() as u64));
    assert!(blob.contains("\"chain\""), "{blob}");

    // Idempotent: a second pass writes nothing; an existing blob is never overwritten.
    let report = seal_and_export(&store, Some(&archive), later).await;
    assert!(report.is_empty(), "{report:?}");
    let name = blob_name(day);
    assert_eq!(archive.put_once(&name, blob.as_bytes()).await.unwrap(), Archived::AlreadyThere { same: true });
    assert_eq!(archive.put_once(&name, b"forged\n").await.unwrap(), Archived::AlreadyThere { same: false });
    assert_eq!(archive.get(&name).await.unwrap().unwrap(), blob.as_bytes(), "unchanged");
    assert!(archive.put_once("../escape", b"x").await.is_err(), "names are checked");
}

#[test]
fn the_audit_export_setting_takes_a_container_url_or_a_connection_string() {
    use elevate::config::{RunMode, Settings, TablesAuth};
    let settings = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_env(
            RunMode::Standalone,
            move |k| pairs.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone()),
            None,
        )
    };
    assert_eq!(settings(&[]).unwrap().audit_export, None);
    assert_eq!(settings(&[("ELEVATE_AUDIT_EXPORT", "off")]).unwrap().audit_export, None);
    let url = settings(&[("ELEVATE_AUDIT_EXPORT", "https://acct.blob.core.windows.net/audit")]).unwrap();
    let export = url.audit_export.unwrap();
    assert_eq!((export.endpoint.as_str(), export.container.as_str()), ("https://acct.blob.core.windows.net", "audit"));
    assert!(matches!(export.auth, TablesAuth::Entra(_)));
    let dev = settings(&[
        ("ELEVATE_AUDIT_EXPORT", "UseDevelopmentStorage=true"),
        ("ELEVATE_AUDIT_EXPORT_CONTAINER", "trail"),
    ])
    .unwrap()
    .audit_export
    .unwrap();
    assert_eq!((dev.endpoint.as_str(), dev.container.as_str()), ("http://127.0.0.1:10000/devstoreaccount1", "trail"));
    elevate::startup::audit_archive(&dev).unwrap();
    for bad in [
        "http://acct.blob.core.windows.net/audit",
        "https://acct.blob.core.windows.net/",
        "https://acct.blob.core.windows.net/Audit",
        "https://acct.blob.core.windows.net/audit?sv=sas",
    ] {
        let err = settings(&[("ELEVATE_AUDIT_EXPORT", bad)]).unwrap_err();
        assert_eq!(err.variable, "ELEVATE_AUDIT_EXPORT", "{bad}: {err}");
    }
    let err =
        settings(&[("ELEVATE_AUDIT_EXPORT", "UseDevelopmentStorage=true"), ("ELEVATE_AUDIT_EXPORT_CONTAINER", "x")])
            .unwrap_err();
    assert_eq!(err.variable, "ELEVATE_AUDIT_EXPORT_CONTAINER");
    let err =
        settings(&[("ELEVATE_AUDIT_EXPORT", "UseDevelopmentStorage=true"), ("WEBSITE_SITE_NAME", "app")]).unwrap_err();
    assert!(err.to_string().contains("emulator") || err.variable != "ELEVATE_AUDIT_EXPORT", "{err}");
}

/// Racing writers on one activation (two approvers and the requester at once, on several
/// activations at a time): every append is serialised by the activation's version, so each
/// trail stays one unbroken chain.
async fn racing_writers_leave_unbroken_chains(app: &TestApp, env: &[(&'static str, String)]) {
    let alice = app.token(ALICE);
    let mut ids = Vec::new();
    for i in 0..4 {
        let body = json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB2}/resourceGroups/race{i}"), "duration": "PT1H", "justification": "INC-7"});
        ids.push(id_of(&app.activate(&alice, body).await));
    }
    let (bob, carol) = (app.token(BOB), app.token(CAROL));
    let races = ids.iter().map(|id| {
        let (bob, carol, alice) = (bob.clone(), carol.clone(), alice.clone());
        async move {
            let cancel = format!("/api/activations/{id}/cancel");
            tokio::join!(
                app.decide(&bob, id, "Approve"),
                app.decide(&carol, id, "Deny"),
                app.post(&alice, &cancel, Value::Null)
            )
        }
    });
    for (approved, denied, canceled) in futures_util::future::join_all(races).await {
        let wins = [approved.0, denied.0, canceled.0].iter().filter(|s| s.is_success()).count();
        assert!(wins >= 1, "{approved:?} {denied:?} {canceled:?}");
    }
    for id in &ids {
        let trail = app.audit_for(id).await;
        for (i, e) in trail.iter().enumerate() {
            assert_eq!(e["chain"]["seq"], json!(i + 1), "{trail:?}");
        }
    }
    expect_clean(env).await;
}

#[tokio::test]
async fn racing_writers_leave_unbroken_chains_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elevate.db");
    let app = spawn_app_on(&test_policy(), None, Some(db.clone()), start()).await;
    racing_writers_leave_unbroken_chains(&app, &sqlite_env(&db)).await;
}

#[tokio::test]
async fn racing_writers_leave_unbroken_chains_on_table_storage() {
    let dir = tempfile::tempdir().unwrap();
    let tables = azurite().tables(dir.path().join("local.db"));
    let app = spawn_on_tables(&test_policy(), tables.clone(), start()).await;
    let env = vec![("ELEVATE_STORE", azurite().connection_string()), ("ELEVATE_STORE_TABLE", tables.table.clone())];
    racing_writers_leave_unbroken_chains(&app, &env).await;
}

#[test]
fn the_template_archives_the_audit_immutably_and_lets_the_app_only_add_to_it() {
    let main = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/main.bicep")).unwrap();
    assert!(main.contains("param auditRetentionDays int = 365\n"), "a year by default");
    let block = |header: &str| {
        let start = main.find(header).unwrap_or_else(|| panic!("{header}"));
        main[start..].split("\n}\n").next().unwrap().to_owned()
    };
    let policy = block(
        "resource auditRetention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@",
    );
    assert!(policy.contains("immutabilityPeriodSinceCreationInDays: auditRetentionDays"), "{policy}");
    assert!(policy.contains("allowProtectedAppendWrites: false"), "{policy}");
    assert!(policy.contains("parent: auditBlobs"), "{policy}");
    let account = block("resource auditStorage ");
    assert!(
        account.contains("allowSharedKeyAccess: false") && account.contains("allowBlobPublicAccess: false"),
        "{account}"
    );
    // The app's identity may read and create blobs there; nothing deletes, nothing manages.
    let role = block("resource auditWriterRole ");
    assert!(role.contains("actions: []"), "{role}");
    for line in role.lines().map(str::trim).filter(|l| l.starts_with("'Microsoft.")) {
        assert!(
            line.ends_with("/blobs/read'") || line.ends_with("/blobs/add/action'") || line.ends_with("/blobs/write'"),
            "{line}"
        );
    }
    assert!(!role.contains("/delete'"), "{role}");
    let assignment = block("resource auditWriterAssignment ");
    assert!(
        assignment.contains("scope: auditBlobs") && assignment.contains("app.identity.principalId"),
        "{assignment}"
    );
    // Elevate is told where to export, in the form it reads.
    assert!(
        main.contains("ELEVATE_AUDIT_EXPORT: '${auditStorage.properties.primaryEndpoints.blob}${auditContainer}'\n")
    );
    assert!(main.contains("var auditContainer = 'audit'\n"));
    assert_eq!(elevate::config::DEFAULT_AUDIT_CONTAINER, "audit");
}
