//! Governance alerts against the fake ARM: each raised from what is really assigned and what
//! was activated, and resolved when its cause is gone; the `governance` timer fired as the host
//! fires it; `GET /api/alerts` and the portal page for auditors only.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::arm::{fast_retry, provider};
use crate::support::fake_azure::FakeAzure;
use crate::support::*;

const SUB3: &str = "/subscriptions/00000000-0000-0000-0000-000000000003";
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const BLOB_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
const P1: &str = "77777777-7777-7777-7777-000000000001";
const P2: &str = "77777777-7777-7777-7777-000000000002";
const P3: &str = "77777777-7777-7777-7777-000000000003";

fn policy() -> String {
    format!(
        "{}  - id: weak-owner\n    scope: {SUB3}\n    roles: [Owner]\n    principals: [user:{ERIN}]\n    requireMfa: false\n    maxDuration: PT8H\nstanding:\n  - principal: user:{P1}\n    role: Owner\n    scope: {SUB2}\n    reason: break-glass account\n    owner: platform-team@contoso.example\ngovernance:\n  maxPermanentHolders: 1\n  staleAfterDays: 30\n  frequentActivations:\n    count: 2\n    window: P1D\n",
        test_policy()
    )
}

/// Fires the timer as the host does (functions/governance/function.json's trigger, posted in
/// payload mode: chunked, with the host's headers, no token); the report it answered.
pub async fn governance(app: &TestApp) -> Value {
    let function: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/functions/governance/function.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(function["bindings"][0]["type"], "timerTrigger", "{function}");
    let mut payload = timer_payload(false, true);
    payload["Metadata"]["sys"]["MethodName"] = json!("governance");
    let body = payload.to_string();
    let request = format!(
        "POST /governance HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=utf-8\r\nX-Azure-Functions-InvocationId: 5d7c2a4e-0c1b-4f4e-9b0e-6f1f2a3b4c5d\r\nUser-Agent: Azure-Functions-Host/4.24.4.4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (status, answer) = raw_http(&app.base, request.into_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    let value: Value = serde_json::from_str(answer.trim()).unwrap_or_else(|_| panic!("not JSON: {answer}"));
    assert!(value["Outputs"].is_object(), "{value}");
    assert!(value["Logs"].as_array().unwrap().iter().all(Value::is_string), "{value}");
    value["ReturnValue"].clone()
}

pub async fn alerts(app: &TestApp, status: &str) -> Vec<Value> {
    let (code, body) = app.get(&app.auditor(), &format!("/api/alerts?status={status}")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["value"].as_array().unwrap().clone()
}

fn of_kind<'a>(alerts: &'a [Value], kind: &str) -> Vec<&'a Value> {
    alerts.iter().filter(|a| a["kind"] == kind).collect()
}

async fn remove(fake: &FakeAzure, id: &str) {
    let res = http_client()
        .delete(format!("{}{id}?api-version=2022-04-01", fake.url()))
        .bearer_auth(&fake.token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
}

#[tokio::test]
async fn each_alert_is_raised_from_what_is_real_and_resolved_when_its_cause_is_gone() {
    let fake = FakeAzure::start().await;
    let access = provider(&fake, fast_retry()) as Arc<dyn elevate::service::ports::AccessProvider>;
    let app = spawn_app_on(&policy(), Some(access), None, start()).await;
    let alice = app.token(ALICE);

    // Elevate's own grant: never "outside".
    let reader = app.activate(&alice, reader_sub1()).await;
    // Behind Elevate's back, at managed scopes: a managed role, and three Owners of production
    // (one accepted as standing).
    let contributor = fake.assign_outside(SUB2, ERIN, CONTRIBUTOR);
    let owner2 = fake.assign_outside(SUB2, P2, OWNER);
    let owner3 = fake.assign_outside(&format!("{SUB2}/resourceGroups/payments"), P3, OWNER);
    fake.assign_outside(SUB2, P1, OWNER);
    // Not alerts: a role no rule manages at that scope, and a scope the policy does not manage.
    fake.assign_outside(SUB2, ERIN, BLOB_READER);
    fake.assign_outside("/subscriptions/00000000-0000-0000-0000-000000000009", ERIN, OWNER);

    let report = governance(&app).await;
    assert_eq!(report["failures"], json!([]), "{report}");
    let open = alerts(&app, "Open").await;
    let outside = of_kind(&open, "AssignedOutsideElevate");
    let mut ids: Vec<&str> = outside.iter().map(|a| a["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut expected: Vec<String> =
        [&contributor, &owner2, &owner3].iter().map(|id| format!("outside:{}", id.to_ascii_lowercase())).collect();
    expected.sort();
    assert_eq!(ids, expected, "{open:#?}");
    let owner_alert =
        outside.iter().find(|a| a["id"].as_str().unwrap().ends_with(&owner2.to_ascii_lowercase())).unwrap();
    assert_eq!(owner_alert["severity"], "High");
    assert_eq!(owner_alert["status"], "Open");
    assert_eq!(owner_alert["firstSeen"], "2026-11-25T12:00:00Z");
    assert!(owner_alert["remediation"].as_str().unwrap().contains("standing:"));
    let contributor_alert =
        outside.iter().find(|a| a["id"].as_str().unwrap().ends_with(&contributor.to_ascii_lowercase())).unwrap();
    assert_eq!(contributor_alert["severity"], "Medium");

    let permanent = of_kind(&open, "TooManyPermanentHolders");
    assert_eq!(permanent.len(), 1, "{open:#?}");
    assert_eq!(permanent[0]["id"], format!("permanent:{OWNER}:{}", SUB2.to_ascii_lowercase()).as_str());
    assert_eq!(permanent[0]["items"].as_array().unwrap().len(), 2, "P1 (standing) and P2 at the subscription itself");

    let weak = of_kind(&open, "WeakRule");
    assert_eq!(weak.iter().map(|a| a["id"].as_str().unwrap()).collect::<Vec<_>>(), ["weak:weak-owner"]);
    assert_eq!(
        weak[0]["items"],
        json!([
            "no MFA or authentication context required",
            "no approval required",
            "maximum PT8H is longer than PT4H"
        ])
    );

    let stale = of_kind(&open, "StaleEligibility");
    assert!(stale.iter().any(|a| a["id"] == "stale:prod-two"), "{stale:#?}");
    assert!(!stale.iter().any(|a| a["id"] == "stale:self-reader"), "Alice just activated it");
    assert!(of_kind(&open, "FrequentActivation").is_empty());

    // A second pass finds the same causes: the same alerts, seen again, nothing opened anew.
    // (Before 12:30, when the test policy's `ending-soon` rule ends and its alerts with it.)
    app.advance(20);
    let again = governance(&app).await;
    assert_eq!(again["opened"], json!([]), "{again}");
    let open_again = alerts(&app, "Open").await;
    assert_eq!(open_again.len(), open.len());
    let same = open_again.iter().find(|a| a["id"] == owner_alert["id"]).unwrap();
    assert_eq!(
        (same["firstSeen"].as_str(), same["lastSeen"].as_str()),
        (Some("2026-11-25T12:00:00Z"), Some("2026-11-25T12:20:00Z"))
    );

    // Causes removed: their alerts resolve; the others stay.
    remove(&fake, &contributor).await;
    remove(&fake, &owner3).await;
    remove(&fake, &owner2).await;
    for _ in 0..3 {
        let a = app.activate(&alice, json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/chat"), "duration": "PT5M", "justification": "x"})).await;
        let (status, _) = app.post(&alice, &format!("/api/activations/{}/deactivate", id_of(&a)), json!({})).await;
        assert_eq!(status, StatusCode::OK);
    }
    let third = governance(&app).await;
    let mut resolved: Vec<&str> = third["resolved"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    resolved.sort_unstable();
    let mut expected_resolved: Vec<String> = expected.clone();
    expected_resolved.push(format!("permanent:{OWNER}:{}", SUB2.to_ascii_lowercase()));
    expected_resolved.push("stale:chatops".into());
    expected_resolved.sort();
    assert_eq!(resolved, expected_resolved, "{third}");
    let open_now = alerts(&app, "Open").await;
    let frequent = of_kind(&open_now, "FrequentActivation");
    assert_eq!(frequent.len(), 1, "{open_now:#?}");
    assert_eq!(frequent[0]["id"], format!("frequent:{ALICE}:{READER}").as_str());
    let all = alerts(&app, "All").await;
    let gone = all.iter().find(|a| a["id"] == owner_alert["id"]).unwrap();
    assert_eq!(
        (gone["status"].as_str(), gone["resolvedAt"].as_str()),
        (Some("Resolved"), Some("2026-11-25T12:20:00Z"))
    );
    assert_eq!(app.activation(&id_of(&reader)).await["status"], "Active", "alerts never change access");
    assert_eq!(fake.assignments().iter().filter(|a| a.description.is_none()).count(), 3, "nor remove anything");
}

#[tokio::test]
async fn a_listing_that_fails_neither_raises_nor_resolves_what_depends_on_it() {
    let fake = FakeAzure::start().await;
    let access = provider(&fake, fast_retry()) as Arc<dyn elevate::service::ports::AccessProvider>;
    let app = spawn_app_on(&policy(), Some(access), None, start()).await;
    let owner = fake.assign_outside(SUB2, P2, OWNER);
    governance(&app).await;
    assert!(
        alerts(&app, "Open")
            .await
            .iter()
            .any(|a| a["id"] == format!("outside:{}", owner.to_ascii_lowercase()).as_str())
    );
    remove(&fake, &owner).await;
    fake.fail_always("roleassignments", 500);
    let report = governance(&app).await;
    assert_eq!(report["resolved"], json!([]), "a failed listing says nothing about what is assigned: {report}");
    assert!(!report["failures"].as_array().unwrap().is_empty());
    fake.heal("roleassignments");
    let report = governance(&app).await;
    assert_eq!(report["resolved"], json!([format!("outside:{}", owner.to_ascii_lowercase())]));
}

#[tokio::test]
async fn alerts_are_for_auditors_and_admins_on_the_api_and_the_portal() {
    let fake = FakeAzure::start().await;
    let access = provider(&fake, fast_retry()) as Arc<dyn elevate::service::ports::AccessProvider>;
    let app = spawn_app_on(&policy(), Some(access), None, start()).await;
    fake.assign_outside(SUB2, P2, OWNER);
    governance(&app).await;
    let (status, e) = app.get(&app.token(ALICE), "/api/alerts").await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")));
    let (status, e) = app.get(&app.auditor(), "/api/alerts?status=Closed").await;
    assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("status")));
    let (status, body) = app.get(&app.admin(), "/api/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"][0]["severity"], "High", "most severe first");
    let page = app
        .client
        .get(format!("{}/api/portal/alerts", app.base))
        .header("cookie", format!("elevate_dev_token={}", app.auditor()))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("High: Owner assigned outside Elevate at /subscriptions/00000000-0000-0000-0000-000000000002"),
        "{html}"
    );
    let page = app
        .client
        .get(format!("{}/api/portal/alerts", app.base))
        .header("cookie", format!("elevate_dev_token={}", app.token(ALICE)))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
}
