//! Eligibility is re-checked whenever access is about to begin: a scheduled start after the policy
//! dropped the requester grants nothing; an approval or a start never gives access past the end
//! of the rule (`expiresAt`); and a rule's MFA demand holds next to its authentication context.
//! (Security review, issue 11, items 2 to 4.)

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::notify::notifications;
use crate::support::fake_webhook::FakeWebhook;
use crate::support::*;

/// One rule for Reader on SUB1 (self-activation) and one for Contributor on SUB2 (with Bob's
/// approval), for `principals`.
fn policy_for(principals: &str) -> String {
    format!(
        r#"
version: 1
defaults:
  requireJustification: false
rules:
  - id: reader
    scope: {SUB1}
    roles: [Reader]
    principals: [{principals}]
  - id: approved
    scope: {SUB2}
    roles: [Contributor]
    principals: [{principals}]
    approval:
      approvers: [user:{BOB}]
      timeout: PT1H
"#
    )
}

fn actions(history: &[Value]) -> Vec<&str> {
    history.iter().map(|e| e["action"].as_str().unwrap()).collect()
}

fn event_types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().trim_start_matches("io.elevate.activation.").to_owned()).collect()
}

#[tokio::test]
async fn a_scheduled_start_after_the_policy_dropped_the_requester_grants_nothing() {
    let before = spawn_app_with(&policy_for(&format!("user:{ALICE}"))).await;
    let alice = before.token(ALICE);
    let reader = before
        .activate(
            &alice,
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H", "startAt": "2026-11-25T12:01:10Z"}),
        )
        .await;
    assert_eq!(reader["status"], "Scheduled", "{reader}");
    // The same through an approval: approved while eligible, to start later.
    let approved = before
        .activate(
            &alice,
            json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "startAt": "2026-11-25T12:01:10Z"}),
        )
        .await;
    let (status, body) = before.decide(&before.token(BOB), &id_of(&approved), "Approve").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("Scheduled")), "{body}");

    // The policy drops Alice (Carol stays eligible); Elevate restarts with it.
    let hook = FakeWebhook::start().await;
    let app = restart_with(&before, &policy_for(&format!("user:{CAROL}")), Some(notifications(&hook))).await;
    app.advance(2);
    let report = app.sweep().await;
    assert_eq!((report["started"].as_u64(), report["startsRefused"].as_u64()), (Some(0), Some(2)), "{report}");
    assert_eq!(report["provisioned"], 0, "{report}");
    assert!(app.assignments().await.is_empty(), "nothing was granted");

    for (a, previous) in [(&reader, vec!["Requested"]), (&approved, vec!["Requested", "Approved"])] {
        let id = id_of(a);
        let now = app.activation(&id).await;
        assert_eq!(now["status"], "Failed", "{now}");
        assert_eq!(now["failure"]["code"], "NoLongerEligible", "{now}");
        assert!(now["failure"]["message"].as_str().unwrap().contains(ALICE), "{now}");
        assert_eq!(now["expiresAt"], Value::Null);
        assert_eq!(now["roleAssignmentId"], Value::Null);
        let history = app.audit_for(&id).await;
        let mut expected = previous.clone();
        expected.push("StartRefused");
        assert_eq!(actions(&history), expected, "exactly one event for the refused start: {history:?}");
        let last = history.last().unwrap();
        assert_eq!((last["statusBefore"].as_str(), last["statusAfter"].as_str()), (Some("Scheduled"), Some("Failed")));
        assert_eq!(last["actor"]["kind"], "system");
        assert!(last["detail"].as_str().unwrap().contains("no longer eligible"), "{last}");
    }

    // Alice hears of both, with the reason (after the notices the first instance queued for the
    // approval, which had no sink to go to).
    let events = hook.wait_for("events", 4).await;
    let failed: Vec<&Value> = events.iter().filter(|e| e["type"] == "io.elevate.activation.failed").collect();
    assert_eq!(failed.len(), 2, "{:?}", event_types(&events));
    for event in failed {
        assert_eq!(event["data"]["failure"]["code"], "NoLongerEligible", "{event}");
        assert_eq!(event["data"]["status"], "Failed");
    }
    let cards = hook.wait_for("teams", 4).await;
    let failed: Vec<&Value> = cards
        .iter()
        .map(|c| &c["attachments"][0]["content"])
        .filter(|c| c["body"][0]["text"].as_str().unwrap().starts_with("Activation failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{cards:?}");
    assert!(failed.iter().all(|c| c.to_string().contains("NoLongerEligible: the requester is no longer eligible")));

    // Nothing is left to do.
    app.advance(120);
    let again = app.sweep().await;
    assert_eq!(again["examined"], 0, "{again}");
    assert!(app.assignments().await.is_empty());
}

/// Eligibility under `window` ends 15 minutes after the tests' start.
fn ending_policy() -> String {
    format!(
        r#"
version: 1
defaults:
  requireJustification: false
rules:
  - id: window
    scope: {SUB2}
    roles: [Reader]
    principals: [user:{ALICE}]
    maxDuration: PT1H
    expiresAt: 2026-11-25T12:15:00Z
    approval:
      approvers: [user:{BOB}]
      timeout: PT1H
  - id: window-self
    scope: {SUB1}
    roles: [Reader]
    principals: [user:{ALICE}]
    maxDuration: PT1H
    expiresAt: 2026-11-25T12:15:00Z
"#
    )
}

#[tokio::test]
async fn an_approval_never_gives_access_past_the_end_of_eligibility() {
    let app = spawn_app_with(&ending_policy()).await;
    let a = app
        .activate(&app.token(ALICE), json!({"roleDefinitionId": "Reader", "scope": SUB2, "duration": "PT14M50S"}))
        .await;
    assert_eq!(a["status"], "PendingApproval");
    assert!(a.get("expiryLimitedByEligibility").is_none_or(|v| v == false), "{a}");
    app.advance(3);
    let (status, approved) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "Active", "{approved}");
    assert_eq!(approved["expiresAt"], "2026-11-25T12:15:00Z", "cut at the rule's end, not 12:17:50");
    assert_eq!(approved["expiryLimitedByEligibility"], true, "{approved}");
    assert_eq!(app.activation(&id_of(&a)).await["expiryLimitedByEligibility"], true);
    // The published schema describes every field of the answer, the new one included.
    let (_, openapi) = app.send(reqwest::Method::GET, None, "/api/openapi.json", None).await;
    let described = &openapi["components"]["schemas"]["Activation"]["properties"];
    assert_eq!(described["expiryLimitedByEligibility"]["type"], "boolean");
    for field in approved.as_object().unwrap().keys() {
        assert!(described.get(field).is_some(), "`{field}` is missing from the OpenAPI Activation schema");
    }
    let history = app.audit_for(&id_of(&a)).await;
    let approval = history.iter().find(|e| e["action"] == "Approved").unwrap();
    let detail = approval["detail"].as_str().unwrap();
    assert!(detail.contains("2026-11-25T12:15:00") && detail.contains("PT2M50S"), "{detail}");
    assert_eq!(actions(&history), ["Requested", "Approved", "Provisioned"]);

    // It expires at the rule's end.
    app.advance(12);
    assert_eq!(app.sweep().await["expired"], 1);
    assert!(app.assignments().await.is_empty());
}

#[tokio::test]
async fn an_approval_with_too_little_eligibility_left_is_refused_and_changes_nothing() {
    let app = spawn_app_with(&ending_policy()).await;
    let a = app
        .activate(&app.token(ALICE), json!({"roleDefinitionId": "Reader", "scope": SUB2, "duration": "PT14M50S"}))
        .await;
    app.advance(11);
    let before = app.snapshot();
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "EligibilityEndsTooSoon", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("2026-11-25T12:15:00"), "{body}");
    assert_eq!(app.snapshot(), before, "a refused approval changes nothing");
    // The approver can still say no.
    let (status, denied) = app.decide(&app.token(BOB), &id_of(&a), "Deny").await;
    assert_eq!((status, denied["status"].as_str()), (StatusCode::OK, Some("Denied")), "{denied}");
    assert!(app.assignments().await.is_empty());
}

#[tokio::test]
async fn a_late_scheduled_start_is_cut_at_the_end_of_eligibility_or_refused() {
    let app = spawn_app_with(&ending_policy()).await;
    let alice = app.token(ALICE);
    let scope = |rg: &str| format!("{SUB1}/resourceGroups/{rg}");
    // 12:04 + 10 min and 12:05 + 10 min both end before 12:15, so both are accepted.
    let early = app
        .activate(&alice, json!({"roleDefinitionId": "Reader", "scope": scope("a"), "duration": "PT10M", "startAt": "2026-11-25T12:04:00Z"}))
        .await;
    assert_eq!(early["status"], "Scheduled");
    // The sweeper is late (an outage): it first runs at 12:08, 7 minutes before the rule's end.
    app.advance(8);
    let report = app.sweep().await;
    assert_eq!((report["started"].as_u64(), report["provisioned"].as_u64()), (Some(1), Some(1)), "{report}");
    let started = app.activation(&id_of(&early)).await;
    assert_eq!(started["status"], "Active");
    assert_eq!(started["expiresAt"], "2026-11-25T12:15:00Z", "not 12:18");
    assert_eq!(started["expiryLimitedByEligibility"], true);
    let history = app.audit_for(&id_of(&early)).await;
    let start = history.iter().find(|e| e["action"] == "Started").unwrap();
    let detail = start["detail"].as_str().unwrap();
    assert!(detail.contains("2026-11-25T12:15:00") && detail.contains("PT3M"), "{detail}");

    let late = app
        .activate(&alice, json!({"roleDefinitionId": "Reader", "scope": scope("b"), "duration": "PT5M", "startAt": "2026-11-25T12:09:00Z"}))
        .await;
    assert_eq!(late["status"], "Scheduled");
    // Next run at 12:11: 4 minutes left, under the 5-minute minimum.
    app.advance(3);
    let report = app.sweep().await;
    assert_eq!((report["started"].as_u64(), report["startsRefused"].as_u64()), (Some(0), Some(1)), "{report}");
    let refused = app.activation(&id_of(&late)).await;
    assert_eq!(refused["status"], "Failed");
    assert_eq!(refused["failure"]["code"], "EligibilityEndsTooSoon", "{refused}");
    let history = app.audit_for(&id_of(&late)).await;
    assert_eq!(actions(&history), ["Requested", "StartRefused"]);
    let held = app.assignments().await;
    assert_eq!(held.len(), 1, "only the first one: {held:?}");
}

#[tokio::test]
async fn an_authentication_context_does_not_replace_required_mfa() {
    let policy = format!(
        r#"
version: 1
defaults:
  requireJustification: false
rules:
  - id: stepped-up
    scope: {SUB1}
    roles: [Reader]
    principals: [user:{ALICE}]
    authContext: c1
    requireMfa: true
  - id: inherited
    scope: {SUB1}
    roles: [Contributor]
    principals: [user:{ALICE}]
    authContext: c1
  - id: context-only
    scope: {SUB2}
    roles: [Reader]
    principals: [user:{ALICE}]
    authContext: c1
    requireMfa: false
"#
    );
    let app = spawn_app_with(&policy).await;
    let token = |mfa: bool, acrs: &[&str]| {
        app.mint(elevate::adapters::identity::dev::DevTokenRequest {
            mfa,
            auth_contexts: acrs.iter().map(|c| (*c).to_owned()).collect(),
            ..user(ALICE)
        })
    };
    let before = app.snapshot();
    for role in ["Reader", "Contributor"] {
        let body = json!({"roleDefinitionId": role, "scope": SUB1, "duration": "PT1H"});
        // Neither: the authentication context is asked for first (its claims challenge).
        let (status, refused) = app.post(&token(false, &[]), "/api/activations", body.clone()).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("AuthContextRequired"))
        );
        // The context without MFA: refused, with the MFA challenge.
        let res = app
            .client
            .post(format!("{}/api/activations", app.base))
            .bearer_auth(token(false, &["c1"]))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{role}");
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("insufficient_user_authentication"), "{challenge}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "MfaRequired", "{role}");
        // MFA without the context: still the context.
        let (status, refused) = app.post(&token(true, &[]), "/api/activations", body.clone()).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("AuthContextRequired"))
        );
    }
    assert_eq!(app.snapshot(), before, "refusals change nothing");
    let both = token(true, &["c1"]);
    for role in ["Reader", "Contributor"] {
        let a = app.activate(&both, json!({"roleDefinitionId": role, "scope": SUB1, "duration": "PT1H"})).await;
        assert_eq!(a["status"], "Active", "{a}");
    }
    // A rule that asks for the context and says MFA is not required takes the context alone.
    let a = app
        .activate(&token(false, &["c1"]), json!({"roleDefinitionId": "Reader", "scope": SUB2, "duration": "PT1H"}))
        .await;
    assert_eq!(a["status"], "Active", "{a}");
}
