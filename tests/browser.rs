//! The approver's path in real headless Chromium (Debian `chromium`, driven by playwright-core):
//! from the Teams card Elevate posts (checked against the Adaptive Card schema and rendered with
//! the `adaptivecards` renderer) to the approval page, sign-in, the decision and every other page
//! state. Screenshots go to `test-artifacts/browser/`.

use std::path::PathBuf;

use elevate::config::NotificationSettings;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::fake_webhook::FakeWebhook;
use crate::support::*;

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

#[tokio::test]
async fn an_approver_follows_the_teams_card_and_approves_in_a_browser() {
    assert!(
        chromium().exists(),
        "headless Chromium is needed at {} (Debian package `chromium`; .ci/run installs it)",
        chromium().display()
    );
    let hook = FakeWebhook::start().await;
    let settings = NotificationSettings {
        teams: Some(elevate::adapters::notify::WebhookUrl::new(&hook.url("teams")).unwrap()),
        ..NotificationSettings::default()
    };
    let app = spawn_with_notifications(&test_policy(), settings).await;
    let alice = app
        .mint(elevate::adapters::identity::dev::DevTokenRequest { name: Some("Alice Example".into()), ..user(ALICE) });
    let request = json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "INC-42: deploy the fix <b>now</b>"});
    // One request left to time out, then the one to approve.
    let stale = app.activate(&alice, request.clone()).await;
    app.advance(61);
    assert_eq!(app.sweep().await["timedOut"], 1);
    let fresh = app.activate(&alice, request).await;
    let id = fresh["id"].as_str().unwrap().to_owned();
    let cards = hook.wait_for("teams", 3).await;
    let card = cards
        .iter()
        .map(|m| m["attachments"][0]["content"].clone())
        .rfind(|c| c["actions"][0]["url"].as_str().is_some_and(|u| u.ends_with(&id)))
        .expect("the approval card of the fresh request");

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-artifacts/browser");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.json");
    std::fs::write(
        &scenario,
        serde_json::to_vec_pretty(&json!({
            "card": card,
            "artifacts": artifacts,
            "requesterId": ALICE,
            "justification": "Checked INC-42 with the on-call lead",
            "timedOutUrl": format!("{}/api/approvals/{}", app.base, stale["id"].as_str().unwrap()),
            "tokens": {
                "approver": app.token(BOB),
                "otherApprover": app.token(CAROL),
                "requester": app.token(ALICE),
                "outsider": app.token(ERIN),
            },
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("card.json"), serde_json::to_vec_pretty(&card).unwrap()).unwrap();
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::copy(dir.path().join("card.json"), artifacts.join("teams-card.json")).unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/browser.mjs");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node").arg(script).arg(&scenario).output().expect("node is needed")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser run failed:\n{stdout}\n{stderr}");

    // What the browser did is what the server holds.
    let activation = app.activation(&id).await;
    assert_eq!(activation["status"], "Active", "{activation}");
    let audit = app.audit_for(&id).await;
    let approved = audit.iter().find(|e| e["action"] == "Approved").expect("an Approved event");
    assert_eq!(approved["actor"]["id"], BOB);
    assert_eq!(approved["justification"], "Checked INC-42 with the on-call lead");
    for state in [
        "1-teams-card",
        "2-sign-in",
        "3-pending",
        "4-approved",
        "5-requester",
        "6-not-an-approver",
        "7-already-decided",
        "8-timed-out",
    ] {
        let png = artifacts.join(format!("{state}.png"));
        assert!(std::fs::metadata(&png).is_ok_and(|m| m.len() > 1000), "{} missing", png.display());
    }
    let (status, _) = app.get(&app.token(ERIN), &format!("/api/approvals/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
