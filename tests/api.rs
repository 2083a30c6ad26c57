//! The HTTP API against a spawned app with a fixed clock and the simulated provider.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;
use elevate::adapters::identity::dev::DevTokenRequest;

fn codes(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn self_activation_grants_access_until_expiry() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(a["status"], "Active");
    assert_eq!(a["expiresAt"], "2026-11-25T13:00:00Z");
    assert_eq!(a["ruleId"], "self-reader");
    let held = app.assignments().await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].principal_id.to_string(), ALICE);
    assert_eq!(held[0].description.as_deref(), Some(format!("elevate:{}:2026-11-25T13:00:00Z", id_of(&a)).as_str()));
    assert_eq!(a["roleAssignmentId"].as_str().unwrap(), held[0].id);
    let full = app.activation(&id_of(&a)).await;
    assert_eq!(codes(full["history"].as_array().unwrap()), ["Requested", "Provisioned"]);

    app.advance(60);
    let report = app.sweep().await;
    assert_eq!(report["expired"], 1);
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Expired");
    assert!(app.assignments().await.is_empty());
}

#[tokio::test]
async fn activation_needing_approval_waits_for_an_approver() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), prod_contributor()).await;
    assert_eq!(a["status"], "PendingApproval");
    assert_eq!(a["approvalTimeoutAt"], "2026-11-25T13:00:00Z");
    assert!(app.assignments().await.is_empty(), "nothing is granted before approval");

    let (_, pending) = app.get(&app.token(BOB), "/api/approvals?status=Pending").await;
    assert_eq!(pending["value"].as_array().unwrap().len(), 1);
    let (_, none) = app.get(&app.token(ALICE), "/api/approvals").await;
    assert!(none["value"].as_array().unwrap().is_empty(), "requesters see no approvals of their own");

    app.advance(10);
    let (status, approved) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "Active");
    assert_eq!(approved["expiresAt"], "2026-11-25T13:10:00Z", "the duration starts at approval");
    assert_eq!(approved["approvals"][0]["approverId"], BOB);
    assert_eq!(app.assignments().await.len(), 1);
    let history = app.audit_for(&id_of(&a)).await;
    assert_eq!(codes(&history), ["Requested", "Approved", "Provisioned"]);
    assert_eq!(history[1]["actor"]["id"], BOB);
    assert_eq!(history[1]["justification"], "reviewed");
}

#[tokio::test]
async fn approving_own_request_is_forbidden() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let a = app.activate(&alice, prod_contributor()).await;
    let before = app.snapshot();
    let (status, body) = app.decide(&alice, &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "SelfApprovalForbidden");
    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn non_approvers_cannot_decide_and_strangers_cannot_see() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), prod_contributor()).await;
    let before = app.snapshot();
    let (status, body) = app.decide(&app.admin(), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an admin is not an approver");
    assert_eq!(body["error"]["code"], "NotAnApprover");
    let (status, body) = app.decide(&app.token(ERIN), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a stranger learns nothing");
    assert_eq!(body["error"]["code"], "ActivationNotFound");
    let (status, _) = app.get(&app.token(ERIN), &format!("/api/activations/{}", id_of(&a))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn two_approvals_are_needed_from_two_people() {
    let app = spawn_app().await;
    let a = app
        .activate(&app.token(ALICE), json!({"roleDefinitionId": "Owner", "scope": SUB2, "justification": "DR test"}))
        .await;
    assert_eq!(a["status"], "PendingApproval");
    assert_eq!(a["minApprovals"], 2);
    let bob = app.token(BOB);
    let (status, once) = app.decide(&bob, &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(once["status"], "PendingApproval");
    let (status, twice) = app.decide(&bob, &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(twice["error"]["code"], "AlreadyDecided");
    let carol =
        app.mint(elevate::adapters::identity::dev::DevTokenRequest { groups: vec![APPROVERS.into()], ..user(CAROL) });
    let (status, done) = app.decide(&carol, &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "Active");
    assert_eq!(codes(&app.audit_for(&id_of(&a)).await), ["Requested", "ApprovalRecorded", "Approved", "Provisioned"]);
}

#[tokio::test]
async fn a_denial_ends_the_request() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), prod_contributor()).await;
    let (status, denied) = app.decide(&app.token(BOB), &id_of(&a), "Deny").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(denied["status"], "Denied");
    let (status, late) = app.decide(&app.token(CAROL), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(late["error"]["code"], "NotPending");
    assert!(app.assignments().await.is_empty());
}

#[tokio::test]
async fn unanswered_requests_time_out() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), prod_contributor()).await;
    app.advance(60);
    let (status, late) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::CONFLICT, "{late}");
    assert_eq!(late["error"]["code"], "ApprovalTimedOut");
    let report = app.sweep().await;
    assert_eq!(report["timedOut"], 1);
    assert_eq!(app.activation(&id_of(&a)).await["status"], "TimedOut");
    assert!(app.assignments().await.is_empty());
}

#[tokio::test]
async fn requesters_cancel_what_has_not_started() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let a = app.activate(&alice, prod_contributor()).await;
    let path = format!("/api/activations/{}/cancel", id_of(&a));
    let (status, body) = app.post(&app.token(BOB), &path, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an approver may see but not cancel: {body}");
    let (status, canceled) = app.post(&alice, &path, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(canceled["status"], "Canceled");
    let (status, again) = app.post(&alice, &path, Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(again["error"]["code"], "InvalidState");
    let active = app.activate(&alice, reader_sub1()).await;
    let (status, _) = app.post(&alice, &format!("/api/activations/{}/cancel", id_of(&active)), Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "active access is deactivated, not canceled");
}

#[tokio::test]
async fn deactivation_revokes_at_once() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let a = app.activate(&alice, reader_sub1()).await;
    let path = format!("/api/activations/{}/deactivate", id_of(&a));
    let (status, body) = app.post(&app.token(ERIN), &path, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, done) = app.post(&alice, &path, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "Deactivated");
    assert!(app.assignments().await.is_empty());
    let b = app.activate(&alice, reader_sub1()).await;
    let (status, by_admin) =
        app.post(&app.admin(), &format!("/api/activations/{}/deactivate", id_of(&b)), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "admins may deactivate anyone's access");
    assert_eq!(by_admin["status"], "Deactivated");
    let history = app.audit_for(&id_of(&b)).await;
    assert_eq!(history.last().unwrap()["actor"]["id"], DANA);
}

#[tokio::test]
async fn extension_is_bounded_by_the_rule_from_the_original_start() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let a = app.activate(&alice, json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB1}/resourceGroups/app"), "duration": "PT1H", "justification": "deploy"})).await;
    let path = format!("/api/activations/{}/extend", id_of(&a));
    app.advance(30);
    let (status, extended) =
        app.post(&alice, &path, json!({"duration": "PT2H", "justification": "still deploying"})).await;
    assert_eq!(status, StatusCode::OK, "{extended}");
    assert_eq!(extended["expiresAt"], "2026-11-25T15:00:00Z");
    let (status, refused) = app.post(&alice, &path, json!({"duration": "PT2H", "justification": "more"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"]["code"], "PolicyViolation");
    assert_eq!(refused["error"]["target"], "duration");
    let (status, _) = app.post(&app.token(BOB), &path, json!({"duration": "PT5M", "justification": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn extension_of_an_approved_rule_needs_approval_again() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let a = app.activate(&alice, prod_contributor()).await;
    app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    let (status, pending) = app
        .post(
            &alice,
            &format!("/api/activations/{}/extend", id_of(&a)),
            json!({"duration": "PT30M", "justification": "longer fix"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pending}");
    assert_eq!(pending["status"], "Active");
    assert_eq!(pending["expiresAt"], "2026-11-25T13:00:00Z", "not extended before approval");
    assert_eq!(pending["pendingExtension"]["duration"], "PT30M");
    let (status, self_ok) = app.decide(&alice, &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{self_ok}");
    let (status, extended) = app.decide(&app.token(CAROL), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::OK, "{extended}");
    assert_eq!(extended["expiresAt"], "2026-11-25T13:30:00Z");
    assert!(extended.get("pendingExtension").is_none());
}

#[tokio::test]
async fn policy_terms_are_enforced_on_the_server() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let before = app.snapshot();
    let cases = [
        (
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT9H"}),
            StatusCode::BAD_REQUEST,
            "PolicyViolation",
            Some("duration"),
        ),
        (
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1M"}),
            StatusCode::BAD_REQUEST,
            "PolicyViolation",
            Some("duration"),
        ),
        (
            json!({"roleDefinitionId": "Contributor", "scope": SUB2}),
            StatusCode::BAD_REQUEST,
            "PolicyViolation",
            Some("justification"),
        ),
        (
            json!({"roleDefinitionId": "Storage Blob Data Owner", "scope": SUB1, "justification": "x"}),
            StatusCode::BAD_REQUEST,
            "PolicyViolation",
            Some("ticket"),
        ),
        (
            json!({"roleDefinitionId": "Owner", "scope": SUB1, "justification": "x"}),
            StatusCode::FORBIDDEN,
            "NotEligible",
            None,
        ),
        (
            json!({"roleDefinitionId": "Reader", "scope": "/subscriptions/00000000-0000-0000-0000-000000000003"}),
            StatusCode::FORBIDDEN,
            "NotEligible",
            None,
        ),
        (
            json!({"roleDefinitionId": "Contributor", "scope": SUB1, "justification": "x"}),
            StatusCode::FORBIDDEN,
            "NotEligible",
            None,
        ),
        (
            json!({"roleDefinitionId": "User Access Administrator", "scope": SUB1, "justification": "x"}),
            StatusCode::FORBIDDEN,
            "EligibilityExpired",
            None,
        ),
        (
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "ruleId": "nope"}),
            StatusCode::BAD_REQUEST,
            "RuleNotFound",
            Some("ruleId"),
        ),
        (
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "ruleId": "prod-one"}),
            StatusCode::FORBIDDEN,
            "RuleDoesNotApply",
            Some("ruleId"),
        ),
        (
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "startAt": "2026-11-25T11:00:00Z"}),
            StatusCode::BAD_REQUEST,
            "PolicyViolation",
            Some("startAt"),
        ),
        (
            json!({"roleDefinitionId": "Reader", "scope": SUB2, "duration": "PT10M", "justification": "x", "startAt": "2026-11-25T12:25:00Z"}),
            StatusCode::BAD_REQUEST,
            "PolicyViolation",
            Some("duration"),
        ),
    ];
    for (body, status, code, target) in cases {
        let (got, answer) = app.post(&alice, "/api/activations", body.clone()).await;
        assert_eq!(got, status, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} -> {answer}");
        if let Some(t) = target {
            assert_eq!(answer["error"]["target"], t, "{body} -> {answer}");
        }
    }
    let bob_asks = app.post(&app.token(BOB), "/api/activations", reader_sub1()).await;
    assert_eq!(bob_asks.0, StatusCode::FORBIDDEN, "ineligible principal");
    assert_eq!(app.snapshot(), before, "refused requests change nothing");
}

#[tokio::test]
async fn narrower_scopes_are_accepted_and_broader_ones_refused() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let narrower = app.activate(&alice, json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/Anything/providers/Microsoft.Web/sites/app1")})).await;
    assert_eq!(narrower["ruleId"], "self-reader");
    let (status, body) = app
        .post(
            &alice,
            "/api/activations",
            json!({"roleDefinitionId": "Contributor", "scope": SUB1, "justification": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn group_membership_makes_eligible() {
    let app = spawn_app().await;
    let member = app.mint(elevate::adapters::identity::dev::DevTokenRequest { groups: vec![OPS.into()], ..user(ERIN) });
    let a = app.activate(&member, reader_sub1()).await;
    assert_eq!(a["principalId"], ERIN);
    let stranger = app.token(ERIN);
    let (status, _) = app
        .post(
            &stranger,
            "/api/activations",
            json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/x")}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn missing_mfa_or_auth_context_is_a_challenge() {
    let app = spawn_app().await;
    let no_mfa = app.mint(elevate::adapters::identity::dev::DevTokenRequest { mfa: false, ..user(ALICE) });
    let res = app
        .client
        .post(format!("{}/api/activations", app.base))
        .bearer_auth(&no_mfa)
        .json(&reader_sub1())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_user_authentication"));
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "MfaRequired");

    let body = json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB2}/resourceGroups/secure"), "justification": "x"});
    let res = app
        .client
        .post(format!("{}/api/activations", app.base))
        .bearer_auth(app.token(ALICE))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains(r#"error="insufficient_claims""#), "{challenge}");
    let claims = challenge.split("claims=\"").nth(1).unwrap().trim_end_matches('"');
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(claims).unwrap();
    let decoded: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(decoded, json!({"access_token": {"acrs": {"essential": true, "value": "c1"}}}));

    // The rule inherits `requireMfa: true`: the context alone is not enough (eligibility.rs).
    let stepped = app.mint(elevate::adapters::identity::dev::DevTokenRequest {
        auth_contexts: vec!["c1".into()],
        mfa: false,
        ..user(ALICE)
    });
    let (status, refused) = app.post(&stepped, "/api/activations", body.clone()).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MfaRequired")));
    let stepped =
        app.mint(elevate::adapters::identity::dev::DevTokenRequest { auth_contexts: vec!["c1".into()], ..user(ALICE) });
    app.activate(&stepped, body).await;
}

#[tokio::test]
async fn requests_without_a_valid_identity_are_refused() {
    let app = spawn_app().await;
    let (status, body) = app.send(reqwest::Method::POST, None, "/api/activations", Some(reader_sub1())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "Unauthenticated");
    let (status, body) = app.send(reqwest::Method::GET, Some("not.a.token"), "/api/eligibilities", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidToken");
    let expired = app.token(ALICE);
    app.advance(25 * 60);
    let (status, _) = app.get(&expired, "/api/eligibilities").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_same_idempotency_key_gives_one_activation() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let send = |body: Value| {
        app.client
            .post(format!("{}/api/activations", app.base))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "req-42")
            .json(&body)
            .send()
    };
    let first = send(reader_sub1()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let second = send(reader_sub1()).await.unwrap();
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(app.audit_for(&id_of(&first)).await.len(), 2, "Requested and Provisioned, once each");
    assert_eq!(app.assignments().await.len(), 1);
    let other = send(json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT2H"})).await.unwrap();
    assert_eq!(other.status(), StatusCode::CONFLICT);
    assert_eq!(other.json::<Value>().await.unwrap()["error"]["code"], "IdempotencyKeyReused");
}

#[tokio::test]
async fn one_open_activation_per_principal_role_and_scope() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let a = app.activate(&alice, reader_sub1()).await;
    let (status, body) = app.post(&alice, "/api/activations", reader_sub1()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "ActivationAlreadyOpen");
    assert_eq!(body["error"]["details"][0]["message"], id_of(&a));
}

#[tokio::test]
async fn expiry_happens_exactly_at_the_boundary() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    app.clock.advance(chrono::TimeDelta::minutes(60) - chrono::TimeDelta::milliseconds(1));
    assert_eq!(app.sweep().await["expired"], 0);
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");
    app.clock.advance(chrono::TimeDelta::milliseconds(1));
    assert_eq!(app.sweep().await["expired"], 1);
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Expired");
}

#[tokio::test]
async fn a_second_sweep_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    app.activate(&alice, reader_sub1()).await;
    app.activate(&alice, prod_contributor()).await;
    app.activate(&alice, json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB1}/resourceGroups/app"), "justification": "later", "startAt": "2026-11-25T14:00:00Z"})).await;
    app.advance(61);
    let first = app.sweep().await;
    assert_eq!(first["expired"], 1);
    assert_eq!(first["timedOut"], 1);
    let after_first = app.snapshot();
    let second = app.sweep().await;
    assert_eq!(second["examined"], 0, "{second}");
    assert_eq!(app.snapshot(), after_first);
}

#[tokio::test]
async fn scheduled_activations_start_on_time() {
    let app = spawn_app().await;
    let a = app
        .activate(
            &app.token(ALICE),
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H", "startAt": "2026-11-25T12:30:00Z"}),
        )
        .await;
    assert_eq!(a["status"], "Scheduled");
    assert!(app.assignments().await.is_empty());
    app.advance(29);
    assert_eq!(app.sweep().await["started"], 0);
    app.advance(1);
    let report = app.sweep().await;
    assert_eq!(report["started"], 1);
    assert_eq!(report["provisioned"], 1);
    let now = app.activation(&id_of(&a)).await;
    assert_eq!(now["status"], "Active");
    assert_eq!(now["expiresAt"], "2026-11-25T13:30:00Z");
}

#[tokio::test]
async fn approval_after_the_requester_lost_eligibility_is_refused() {
    let app = spawn_app().await;
    let a = app
        .activate(
            &app.token(ALICE),
            json!({"roleDefinitionId": "Reader", "scope": SUB2, "duration": "PT10M", "justification": "quick look"}),
        )
        .await;
    app.advance(31);
    let before = app.snapshot();
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "RequesterNoLongerEligible");
    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn access_held_outside_elevate_is_reported_and_never_removed() {
    let app = spawn_app().await;
    let scope = elevate::domain::scope::Scope::parse(SUB1).unwrap();
    let alice = elevate::domain::ids::PrincipalId::parse(ALICE).unwrap();
    let reader = elevate::domain::ids::RoleDefinitionId::parse("Reader").unwrap();
    let foreign = app.local.as_ref().unwrap().seed_foreign(&scope, alice, reader).await.unwrap();
    let (status, body) = app.post(&app.token(ALICE), "/api/activations", reader_sub1()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "RoleAssignmentExists");
    let failed_id = body["error"]["details"][0]["message"].as_str().unwrap().to_owned();
    let failed = app.activation(&failed_id).await;
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["failure"]["code"], "RoleAssignmentExists");
    app.advance(24 * 60);
    app.sweep().await;
    let held = app.assignments().await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, foreign, "the pre-existing assignment is untouched");
}

#[tokio::test]
async fn brokers_request_for_users_only_when_allowed_and_never_bypass_mfa() {
    let app = spawn_app().await;
    let broker = app.broker(BROKER_APP);
    let chat = json!({"principalId": ALICE, "roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/chat"), "justification": "from Teams"});
    let a = app.activate(&broker, chat.clone()).await;
    assert_eq!(a["principalId"], ALICE);
    let history = app.audit_for(&id_of(&a)).await;
    assert_eq!(history[0]["actor"], json!({"kind": "broker", "id": BROKER_SP, "appId": BROKER_APP}));

    // A rule that needs MFA: the request waits for Alice herself (a_brokered_request_…_waits_…).
    let (status, body) = app
        .post(&broker, "/api/activations", json!({"principalId": ALICE, "roleDefinitionId": "Reader", "scope": SUB1}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "ConfirmationRequired");

    let unlisted = app.broker("eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee");
    let (status, body) = app.post(&unlisted, "/api/activations", chat.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "BrokerNotAllowed");
    let (status, body) = app.post(&app.token(BOB), "/api/activations", chat).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a user cannot act for another: {body}");
    assert_eq!(body["error"]["target"], "principalId");
    let (status, _) = app.get(&broker, "/api/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "brokers are not admins");
}

#[tokio::test]
async fn audit_and_lists_are_for_those_entitled() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    let (status, _) = app.get(&app.token(ALICE), "/api/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) =
        app.get(&app.auditor(), &format!("/api/audit?principalId={ALICE}&since=2026-11-25T00:00:00Z")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"].as_array().unwrap().len(), 2);
    let (_, mine) = app.get(&app.token(ALICE), "/api/activations").await;
    assert_eq!(mine["value"][0]["id"], a["id"]);
    let (_, bobs) = app.get(&app.token(BOB), "/api/activations?status=Active").await;
    assert!(bobs["value"].as_array().unwrap().is_empty());
    let (status, _) = app.get(&app.token(BOB), "/api/activations?mine=false").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, all) = app.get(&app.admin(), "/api/activations?mine=false&status=Active&limit=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["value"].as_array().unwrap().len(), 1);
    let (_, eligible) = app.get(&app.token(ALICE), "/api/eligibilities").await;
    let rules: Vec<&str> =
        eligible["value"].as_array().unwrap().iter().map(|r| r["ruleId"].as_str().unwrap()).collect();
    assert!(rules.contains(&"prod-two") && !rules.contains(&"ended"), "{rules:?}");
}

#[tokio::test]
async fn concurrent_decisions_have_exactly_one_outcome() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), prod_contributor()).await;
    let id = id_of(&a);
    let (bob, carol) = (app.token(BOB), app.token(CAROL));
    let (x, y) = tokio::join!(app.decide(&bob, &id, "Approve"), app.decide(&carol, &id, "Deny"));
    let oks = [x.0, y.0].iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(oks, 1, "{x:?} {y:?}");
    let history = app.audit_for(&id).await;
    let decisions = history.iter().filter(|e| ["Approved", "Denied"].contains(&e["action"].as_str().unwrap())).count();
    assert_eq!(decisions, 1);
    let final_status = app.activation(&id).await["status"].clone();
    assert!(final_status == "Active" || final_status == "Denied");
    assert_eq!(app.assignments().await.len(), usize::from(final_status == "Active"));
}

#[tokio::test]
async fn the_approval_page_escapes_and_protects_its_form() {
    let app = spawn_app().await;
    let evil = json!({"roleDefinitionId": "Contributor", "scope": SUB2, "justification": "<script>alert(1)</script>"});
    let a = app.activate(&app.token(ALICE), evil).await;
    let res = app
        .client
        .get(format!("{}/api/approvals/{}", app.base, id_of(&a)))
        .bearer_auth(app.token(BOB))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    assert!(!page.contains("<script>"), "justification must be escaped");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    // The form is posted as a browser does: with the session cookie, not a bearer header.
    let form = |token: &str| {
        app.client
            .post(format!("{}/api/approvals/{}", app.base, id_of(&a)))
            .header("cookie", format!("{}={}", elevate::http::DEV_COOKIE, app.token(BOB)))
            .form(&[("decision", "Approve"), ("justification", "ok"), ("csrf", token)])
            .send()
    };
    let before = app.snapshot();
    let forged = form("00").await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot(), before, "a forged form changes nothing");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "PendingApproval");
    let real = form(&csrf).await.unwrap();
    assert_eq!(real.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");

    let (status, json_view) = app.get(&app.token(CAROL), &format!("/api/approvals/{}", id_of(&a))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_view["canDecide"], false);
}

#[tokio::test]
async fn an_approver_can_sign_in_and_decide_in_a_browser_without_javascript() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), prod_contributor()).await;
    let page = format!("{}/api/approvals/{}", app.base, id_of(&a));
    let anonymous = app.client.get(&page).header("accept", "text/html").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let sign_in = anonymous.text().await.unwrap();
    assert!(sign_in.contains("action=\"/dev/sign-in\""), "{sign_in}");

    let bad = app
        .client
        .post(format!("{}/dev/sign-in", app.base))
        .form(&[("token", "forged"), ("returnTo", "/api/approvals/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(bad.headers().get("set-cookie").is_none());
    let evil = app
        .client
        .post(format!("{}/dev/sign-in", app.base))
        .form(&[("token", app.token(BOB).as_str()), ("returnTo", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(evil.headers()["location"], "/api/portal/roles", "no open redirect: the portal instead");

    let signed = app
        .client
        .post(format!("{}/dev/sign-in", app.base))
        .form(&[("token", app.token(BOB).as_str()), ("returnTo", &format!("/api/approvals/{}", id_of(&a)))])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()["location"].to_str().unwrap(), format!("/api/approvals/{}", id_of(&a)));
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();

    let html = app
        .client
        .get(&page)
        .header("accept", "text/html")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("INC-1 outage") && html.contains("Approve"), "{html}");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let decided = app
        .client
        .post(&page)
        .header("cookie", &cookie)
        .form(&[("decision", "Approve"), ("justification", "looked at INC-1"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), StatusCode::SEE_OTHER);
    let after = app
        .client
        .get(&page)
        .header("accept", "text/html")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(after.contains("Active") && after.contains("looked at INC-1"), "{after}");
    assert!(after.contains("Access is active until"), "{after}");
}

#[tokio::test]
async fn the_dev_issuer_publishes_its_keys() {
    let app = spawn_app().await;
    let (status, config) = app.send(reqwest::Method::GET, None, "/dev/.well-known/openid-configuration", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["id_token_signing_alg_values_supported"], json!(["RS256"]));
    let (status, keys) = app.send(reqwest::Method::GET, None, "/dev/keys", None).await;
    assert_eq!(status, StatusCode::OK);
    let key = &keys["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert!(key.get("d").is_none(), "only the public key is published");
    let header = app.token(ALICE).split('.').next().unwrap().to_owned();
    use base64::Engine;
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(header["alg"], "RS256");
}

#[tokio::test]
async fn health_reports_the_configuration() {
    let app = spawn_app().await;
    let (status, health) = app.send(reqwest::Method::GET, None, "/api/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["provider"], "local");
    assert_eq!(health["simulated"], true);
    assert_eq!(health["policyRules"], 9);
    let (_, openapi) = app.send(reqwest::Method::GET, None, "/api/openapi.json", None).await;
    assert_eq!(openapi["openapi"], "3.0.3");
}

/// The path of a confirmation link (the tests' public URL is the app's own address).
fn link_path(app: &TestApp, waiting: &Value) -> String {
    waiting["confirmationUrl"].as_str().unwrap().strip_prefix(app.base.as_str()).unwrap().to_owned()
}

#[tokio::test]
async fn a_brokered_request_that_needs_mfa_waits_for_the_user_to_confirm() {
    let app = spawn_app().await;
    let broker = app.broker(BROKER_APP);
    let ask = json!({"principalId": ALICE, "roleDefinitionId": "Reader", "scope": SUB1, "justification": "from Teams"});
    let before = app.snapshot();
    let (status, waiting) = app.post(&broker, "/api/activations", ask).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{waiting}");
    assert_eq!(waiting["status"], "ConfirmationRequired");
    assert_eq!(app.snapshot(), before, "nothing is stored or granted until the user confirms");
    let path = link_path(&app, &waiting);

    // The link alone is nothing: no sign-in, the broker itself, or someone else cannot confirm it.
    let (status, _) = app.send(reqwest::Method::POST, None, &path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for token in [broker.clone(), app.token(BOB)] {
        let (status, body) = app.post(&token, &path, json!({})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("NotTheRequester")),
            "{body}"
        );
    }
    // Alice must meet the rule herself.
    let no_mfa = app.mint(DevTokenRequest { mfa: false, ..user(ALICE) });
    let (status, body) = app.post(&no_mfa, &path, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MfaRequired")), "{body}");
    assert_eq!(app.snapshot(), before);

    let (status, a) = app.post(&app.token(ALICE), &path, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!((a["status"].as_str(), a["principalId"].as_str()), (Some("Active"), Some(ALICE)));
    let (status, again) = app.post(&app.token(ALICE), &path, json!({})).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &a["id"]), "confirming twice opens one activation");
    let history = app.audit_for(&id_of(&a)).await;
    assert_eq!(history[0]["actor"], json!({"kind": "principal", "id": ALICE}));
    assert!(history[0]["detail"].as_str().unwrap().contains(BROKER_APP), "{}", history[0]);

    // A changed link is refused; an old one has expired.
    let (payload, signature) = path.rsplit_once('.').unwrap();
    let forged = format!("{}A.{signature}", payload.trim_end_matches('A'));
    let (status, body) = app.post(&app.token(ALICE), &forged, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidConfirmationLink")));
    app.advance(16);
    let (status, body) = app.post(&app.token(ALICE), &path, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::GONE, Some("ConfirmationLinkExpired")));
}

#[tokio::test]
async fn the_confirmation_page_is_a_protected_form_that_escapes_what_it_shows() {
    let app = spawn_app().await;
    let ask = json!({"principalId": ALICE, "roleDefinitionId": "Reader", "scope": SUB1, "justification": "<script>alert(1)</script>"});
    let (_, waiting) = app.post(&app.broker(BROKER_APP), "/api/activations", ask).await;
    let url = format!("{}{}", app.base, link_path(&app, &waiting));
    let page = app.client.get(&url).bearer_auth(app.token(ALICE)).header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"));
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    let before = app.snapshot();
    let session = format!("{}={}", elevate::http::DEV_COOKIE, app.token(ALICE));
    let forged =
        app.client.post(&url).header("cookie", &session).form(&[("csrf", "0".repeat(64))]).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot(), before);
    let done = app.client.post(&url).header("cookie", &session).form(&[("csrf", csrf)]).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("Active"));
}

#[tokio::test]
async fn a_request_too_large_for_a_link_is_refused_clearly() {
    let app = spawn_app().await;
    let ask =
        json!({"principalId": ALICE, "roleDefinitionId": "Reader", "scope": SUB1, "justification": "𝄞".repeat(1000)});
    let before = app.snapshot();
    let (status, body) = app.post(&app.broker(BROKER_APP), "/api/activations", ask).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "RequestTooLargeForConfirmation");
    assert_eq!(body["error"]["target"], "justification");
    assert_eq!(app.snapshot(), before);
}

/// Under `ELEVATE_TEST_STORE=tables` these suites run on Azurite: prove they really do.
#[tokio::test]
async fn the_store_under_test_is_the_one_requested() {
    let app = spawn_app().await;
    let body = app.activate(&app.token(ALICE), reader_sub1()).await;
    let id = body["id"].as_str().unwrap();
    match &app.tables {
        Some(tables) => {
            assert!(crate::support::tables_requested());
            assert!(crate::support::table_rows(tables).contains(id));
        }
        None => {
            assert!(!crate::support::tables_requested());
            let conn = rusqlite::Connection::open(&app.db).unwrap();
            let n: i64 = conn.query_row("SELECT count(*) FROM activations WHERE id = ?1", [id], |r| r.get(0)).unwrap();
            assert_eq!(n, 1);
        }
    }
}
