//! Eligibility is re-checked whenever access is about to begin, and a rule's demands on the
//! sign-in each hold on their own. (Security review, issue 11.)

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

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
