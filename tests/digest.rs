//! The weekly digest, fired as the host fires the `digest` timer: it counts the last seven days
//! from the audit (activations by role, denials) and what waits now (approvals, open alerts,
//! reviews due), and tells it once per ISO week as a Teams card (valid against the Adaptive Card
//! schema) and a signed CloudEvent. A rerun in the same week sends nothing; the next week's does.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::alert_notices::{assert_schema_valid, notifications, settle, verify};
use crate::support::arm::{fast_retry, provider};
use crate::support::fake_azure::FakeAzure;
use crate::support::fake_webhook::FakeWebhook;
use crate::support::*;

const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const P1: &str = "77777777-7777-7777-7777-000000000001";
const P2: &str = "77777777-7777-7777-7777-000000000002";

/// Rules for a group (no stale-eligibility alerts) and roles that are not privileged (no weak
/// rules): the only alert is the one the test causes, too many permanent Owners of SUB1.
fn policy() -> String {
    format!(
        "version: 1\nrules:\n  - id: readers\n    scope: {SUB1}\n    roles: [Reader]\n    principals: [group:{OPS}]\n    requireJustification: false\n  - id: prod\n    scope: {SUB2}\n    roles: [Contributor]\n    principals: [group:{OPS}]\n    approval:\n      approvers: [user:{BOB}]\n      timeout: PT4H\ngovernance:\n  maxPermanentHolders: 1\n"
    )
}

/// Fires the `digest` timer as the host does (functions/digest/function.json's trigger, posted
/// in payload mode: chunked, with the host's headers, no token); the report it answered.
async fn digest(app: &TestApp) -> Value {
    let function: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/functions/digest/function.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(function["bindings"][0]["type"], "timerTrigger", "{function}");
    assert_eq!(function["bindings"][0]["schedule"], "0 0 8 * * 1", "Mondays at 08:00 UTC");
    let mut payload = timer_payload(false, true);
    payload["Metadata"]["sys"]["MethodName"] = json!("digest");
    let body = payload.to_string();
    let request = format!(
        "POST /digest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=utf-8\r\nX-Azure-Functions-InvocationId: 0f0e0d0c-0b0a-4909-8807-060504030201\r\nUser-Agent: Azure-Functions-Host/4.24.4.4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (status, answer) = raw_http(&app.base, request.into_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    let value: Value = serde_json::from_str(answer.trim()).unwrap_or_else(|_| panic!("not JSON: {answer}"));
    assert!(value["Outputs"].is_object(), "{value}");
    let logs = value["Logs"].as_array().unwrap();
    assert!(logs.iter().all(Value::is_string) && !logs.is_empty(), "{value}");
    value["ReturnValue"].clone()
}

/// Waits (up to 10 s) for `n` digests among what `path` accepted; returns those seen.
async fn digests(hook: &FakeWebhook, path: &str, n: usize) -> Vec<Value> {
    let is_digest = |v: &Value| {
        v["type"] == "io.elevate.governance.digest"
            || v["attachments"][0]["content"]["body"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Weekly digest:"))
    };
    for _ in 0..200 {
        if hook.accepted_json(path).iter().filter(|v| is_digest(v)).count() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    hook.accepted_json(path).into_iter().filter(is_digest).collect()
}

/// Sets up the week: two Reader activations, a Contributor one approved, a request denied, one
/// waiting for its approver, and an open alert (two permanent Owners of SUB1).
async fn a_busy_week(app: &TestApp, fake: &FakeAzure) -> String {
    fake.assign_outside(SUB1, P1, OWNER);
    fake.assign_outside(SUB1, P2, OWNER);
    for i in 1..=2 {
        let reader = app.activate(&app.member(i), reader_sub1()).await;
        assert_eq!(reader["status"], "Active", "{reader}");
    }
    let approved = app.activate(&app.member(3), prod_contributor()).await;
    assert_eq!(app.decide(&app.token(BOB), &id_of(&approved), "Approve").await.0, StatusCode::OK);
    assert_eq!(app.activation(&id_of(&approved)).await["status"], "Active");
    let denied = app.activate(&app.member(4), prod_contributor()).await;
    assert_eq!(app.decide(&app.token(BOB), &id_of(&denied), "Deny").await.0, StatusCode::OK);
    let waiting = app.activate(&app.member(5), prod_contributor()).await;
    assert_eq!(waiting["status"], "PendingApproval", "{waiting}");

    let report = crate::governance::governance(app).await;
    assert_eq!(report["opened"].as_array().map(Vec::len), Some(1), "{report}");
    let (_, alerts) = app.get(&app.auditor(), "/api/alerts").await;
    alerts["value"][0]["title"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_weekly_digest_is_told_once_a_week_on_teams_and_as_a_signed_event() {
    let hook = FakeWebhook::start().await;
    let fake = FakeAzure::start().await;
    let access = provider(&fake, fast_retry()) as Arc<dyn elevate::service::ports::AccessProvider>;
    let app = spawn_with_access_and_notifications(&policy(), access, notifications(&hook)).await;
    let alert_title = a_busy_week(&app, &fake).await;
    app.advance(5);

    let report = digest(&app).await;
    assert_eq!(
        report,
        json!({
            "id": "digest-2026-W48",
            "since": "2026-11-18T12:05:00Z",
            "until": "2026-11-25T12:05:00Z",
            "activations": 3,
            "byRole": [
                { "role": "Reader", "roleDefinitionId": READER, "count": 2 },
                { "role": "Contributor", "roleDefinitionId": CONTRIBUTOR, "count": 1 },
            ],
            "denials": 1,
            "awaitingApproval": 1,
            "openAlerts": 1,
            "highAlerts": 1,
            "reviewsDue": [],
            "complete": true,
            "queued": true,
            "failures": [],
        })
    );

    let events = digests(&hook, "events", 1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["subject"], "digest-2026-W48");
    assert_eq!(event["source"], app.base);
    assert_eq!(event["time"], "2026-11-25T12:05:00.000Z");
    let portal = format!("{}/api/portal", app.base);
    assert_eq!(
        event["data"],
        json!({
            "id": "digest-2026-W48",
            "kind": "digest",
            "title": "Elevate, week 2026-W48",
            "lines": ["Reader: 2 activations", "Contributor: 1 activation", format!("Alert (High): {alert_title}")],
            "facts": [
                { "label": "Period", "value": "2026-11-18 12:05 UTC to 2026-11-25 12:05 UTC" },
                { "label": "Activations", "value": "3" },
                { "label": "Denials", "value": "1" },
                { "label": "Approvals waiting", "value": "1" },
                { "label": "Open alerts", "value": "1 (1 high severity)" },
                { "label": "Reviews due", "value": "0 (0 items undecided)" },
            ],
            "at": "2026-11-25T12:05:00.000Z",
            "url": portal,
        })
    );
    let signed = hook.accepted("events");
    let raw = signed
        .iter()
        .find(|r| serde_json::from_slice::<Value>(&r.body).unwrap() == *event)
        .expect("the digest as sent");
    verify(raw);

    let cards = digests(&hook, "teams", 1).await;
    assert_eq!(cards.len(), 1);
    let card = &cards[0]["attachments"][0]["content"];
    assert_schema_valid(card);
    assert_eq!(card["body"][0]["text"], "Weekly digest: Elevate, week 2026-W48");
    let list: Vec<&str> = card["body"][1]["text"].as_str().unwrap().split('\r').collect();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list[..2], ["- Reader: 2 activations", "- Contributor: 1 activation"]);
    assert!(list[2].starts_with("- Alert (High): 2 permanent holders of Owner"), "{list:?}");
    let facts = &card["body"][2];
    assert_eq!(facts["type"], "FactSet");
    assert_eq!(facts["facts"][1], json!({ "title": "Activations", "value": "3" }));
    assert_eq!(facts["facts"][4], json!({ "title": "Open alerts", "value": "1 (1 high severity)" }));
    assert_eq!(card["actions"], json!([{ "type": "Action.OpenUrl", "title": "Open Elevate", "url": portal }]));

    // Run again the same week (a retried timer, a second instance): counted, told no more.
    app.advance(60);
    let again = digest(&app).await;
    assert_eq!(again["id"], "digest-2026-W48");
    assert_eq!((again["queued"].clone(), again["activations"].clone()), (json!(false), json!(3)), "{again}");
    assert_eq!(again["notQueued"], "this week's digest was already queued");
    settle(&app).await;
    assert_eq!((digests(&hook, "events", 1).await.len(), digests(&hook, "teams", 1).await.len()), (1, 1));

    // Next Monday at 08:00: a new week, a new digest. What was waiting has timed out meanwhile.
    app.advance(4 * 24 * 60 + 19 * 60);
    app.sweep().await;
    let next = digest(&app).await;
    assert_eq!((next["id"].as_str(), next["queued"].as_bool()), (Some("digest-2026-W49"), Some(true)), "{next}");
    assert_eq!((next["activations"].as_u64(), next["awaitingApproval"].as_u64()), (Some(3), Some(0)), "{next}");
    let events = digests(&hook, "events", 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_ne!(events[1]["id"], events[0]["id"]);
    assert_eq!(events[1]["data"]["id"], "digest-2026-W49");
    assert_eq!(digests(&hook, "teams", 2).await.len(), 2);
}

#[tokio::test]
async fn without_sinks_the_digest_counts_and_queues_nothing() {
    let app = spawn_app_with(&policy()).await;
    app.activate(&app.member(1), reader_sub1()).await;
    let report = digest(&app).await;
    assert_eq!((report["activations"].as_u64(), report["queued"].as_bool()), (Some(1), Some(false)), "{report}");
    assert_eq!(report["notQueued"], "no notification sinks are configured");
    assert_eq!(report["failures"], json!([]));
    if app.tables.is_none() {
        let conn = rusqlite::Connection::open(&app.db).unwrap();
        // (The activation's own notice is written with its change, sinks or not.)
        let queued: i64 =
            conn.query_row("SELECT count(*) FROM outbox WHERE body LIKE '%\"bulletin\"%'", [], |r| r.get(0)).unwrap();
        assert_eq!(queued, 0, "nobody to tell");
    }
}
