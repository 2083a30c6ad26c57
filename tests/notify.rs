//! Notifications end to end: Adaptive Cards to a Teams Workflows webhook and signed CloudEvents
//! to a Logic App, from the outbox that each state change writes in its own transaction.

use std::collections::BTreeMap;

use elevate::adapters::notify::WebhookUrl;
use elevate::adapters::notify::events::EventSecret;
use elevate::config::NotificationSettings;
use elevate::domain::duration::IsoDuration;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::fake_webhook::FakeWebhook;
use crate::support::*;

const SECRET: &str = "a webhook secret of at least thirty-two characters";

pub fn notifications(hook: &FakeWebhook) -> NotificationSettings {
    NotificationSettings {
        teams: Some(WebhookUrl::new(&hook.url("teams")).unwrap()),
        events: Some((WebhookUrl::new(&hook.url("events")).unwrap(), EventSecret::new(SECRET.into()))),
        expiry_warning: IsoDuration::parse("PT15M").unwrap(),
    }
}

fn prod_request() -> Value {
    json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "INC-7 [click](https://evil.example)"})
}

/// Checks the signature as a receiver must: HMAC-SHA256 over "<timestamp>.<raw body>".
fn verify(request: &crate::support::fake_http::FakeRequest) {
    let timestamp = request.header("x-elevate-timestamp").expect("a timestamp header");
    let signature = request.header("x-elevate-signature").expect("a signature header");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&request.body);
    let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    mac.verify_slice(&bytes).expect("the signature verifies");
    assert_eq!(request.header("content-type"), Some("application/cloudevents+json; charset=utf-8"));
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().trim_start_matches("io.elevate.activation.").to_owned()).collect()
}

#[tokio::test]
async fn a_request_reaches_teams_and_the_event_webhook_at_once() {
    let hook = FakeWebhook::start().await;
    let app = spawn_with_notifications(&test_policy(), notifications(&hook)).await;
    let (_, health) = app.send(reqwest::Method::GET, None, "/api/health", None).await;
    assert_eq!(health["notifications"], json!(["teams", "events"]), "{health}");
    assert!(!health.to_string().contains("SECRET-SIG"));
    let requested = app.activate(&app.token(ALICE), prod_request()).await;
    let id = requested["id"].as_str().unwrap();

    let cards = hook.wait_for("teams", 1).await;
    assert_eq!(cards.len(), 1);
    let card = &cards[0];
    assert_eq!(card["type"], "message");
    let content = &card["attachments"][0]["content"];
    assert_eq!(card["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!((content["type"].as_str(), content["version"].as_str()), (Some("AdaptiveCard"), Some("1.4")));
    let actions = content["actions"].as_array().unwrap();
    assert!(actions.iter().all(|a| a["type"] == "Action.OpenUrl"), "webhooks support no Action.Submit");
    assert_eq!(actions[0]["url"], format!("{}/api/approvals/{id}", app.base));
    assert_eq!(actions[0]["title"], "Review and decide");
    let text = content.to_string();
    assert!(text.contains("\\\\[click\\\\]"), "requester text is escaped: {text}");

    let events = hook.wait_for("events", 1).await;
    let event = &events[0];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(types(&events), vec!["approvalNeeded"]);
    assert_eq!(event["subject"], format!("activations/{id}"));
    assert_eq!(event["source"], app.base);
    assert_eq!(event["data"]["activationId"], id);
    assert_eq!(event["data"]["url"], format!("{}/api/approvals/{id}", app.base));
    verify(&hook.accepted("events")[0]);

    let (status, _) = app.decide(&app.token(BOB), id, "Approve").await;
    assert_eq!(status, StatusCode::OK);
    let events = hook.wait_for("events", 3).await;
    assert_eq!(types(&events), vec!["approvalNeeded", "approved", "activated"]);
    for request in hook.accepted("events") {
        verify(&request);
    }
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 3, "one id per notice");
    assert_eq!(hook.wait_for("teams", 3).await.len(), 3);
}

#[tokio::test]
async fn with_the_webhooks_down_every_event_arrives_later_exactly_once() {
    let hook = FakeWebhook::start().await;
    hook.set_down(Some(503));
    let app = spawn_with_notifications(&test_policy(), notifications(&hook)).await;
    // Five notices: activated (reader), approval needed, approved, activated, deactivated.
    let alice = app.token(ALICE);
    let reader = app.activate(&alice, reader_sub1()).await;
    let prod = app.activate(&alice, prod_request()).await;
    let (status, _) = app.decide(&app.token(BOB), prod["id"].as_str().unwrap(), "Approve").await;
    assert_eq!(status, StatusCode::OK, "a dead webhook never fails a decision");
    let (status, _) =
        app.post(&alice, &format!("/api/activations/{}/deactivate", reader["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(hook.attempts() > 0, "delivery was tried at once");
    assert!(hook.accepted_json("events").is_empty());

    // Down for a while: sweeps keep trying, with backoff.
    for _ in 0..3 {
        app.advance(1);
        let report = app.sweep().await;
        assert_eq!(report["noticesDelivered"], 0, "{report}");
    }
    let tried = hook.attempts();
    hook.set_down(None);
    app.advance(10);
    let report = app.sweep().await;
    assert_eq!(report["noticesDelivered"], 5, "{report}");
    assert!(hook.attempts() > tried);
    // Later ticks send nothing again (short of the next notice, expiring soon, at 45 minutes).
    for _ in 0..3 {
        app.advance(5);
        app.sweep().await;
    }
    let events = hook.accepted_json("events");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *seen.entry(e["id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(seen.len(), 5, "{:?}", types(&events));
    assert!(seen.values().all(|n| *n == 1), "each event exactly once: {seen:?}");
    let mut kinds = types(&events);
    kinds.sort();
    assert_eq!(kinds, vec!["activated", "activated", "approvalNeeded", "approved", "deactivated"]);
    assert_eq!(hook.accepted_json("teams").len(), 5);
    for request in hook.accepted("events") {
        verify(&request);
    }
}

#[tokio::test]
async fn expiring_soon_is_sent_once_per_expiry_and_expiry_is_told() {
    let hook = FakeWebhook::start().await;
    let app = spawn_with_notifications(&test_policy(), notifications(&hook)).await;
    app.activate(&app.token(ALICE), reader_sub1()).await;
    hook.wait_for("events", 1).await;
    app.advance(40);
    assert_eq!(app.sweep().await["expiryWarnings"], 0, "not yet within 15 minutes");
    app.advance(10);
    let report = app.sweep().await;
    assert_eq!(report["expiryWarnings"], 1, "{report}");
    assert_eq!(report["noticesDelivered"], 1, "{report}");
    app.advance(1);
    assert_eq!(app.sweep().await["expiryWarnings"], 0, "once per expiry");
    app.advance(10);
    let report = app.sweep().await;
    assert_eq!(report["expired"], 1, "{report}");
    let events = hook.wait_for("events", 3).await;
    assert_eq!(types(&events), vec!["activated", "expiringSoon", "expired"]);
    let card = &hook.accepted_json("teams")[1]["attachments"][0]["content"];
    assert!(card["body"][0]["text"].as_str().unwrap().starts_with("Access expiring soon"), "{card}");
}

#[tokio::test]
async fn without_sinks_no_notice_piles_up() {
    let app = spawn_app().await;
    app.activate(&app.token(ALICE), reader_sub1()).await;
    let count = || {
        let conn = rusqlite::Connection::open(&app.db).unwrap();
        conn.query_row("SELECT count(*) FROM outbox WHERE next_at IS NOT NULL", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    if app.tables.is_none() {
        assert_eq!(count(), 1, "queued with the change");
        app.sweep().await;
        assert_eq!(count(), 0, "cleared: nobody to tell");
    }
}

#[tokio::test]
async fn a_webhook_url_never_appears_in_errors() {
    let err = elevate::config::Settings::from_env(
        elevate::config::RunMode::Standalone,
        |k| (k == "ELEVATE_TEAMS_WEBHOOK_URL").then(|| "http://teams.example.com/x?sig=SECRET-SIG".to_owned()),
        None,
    )
    .unwrap_err();
    assert!(!err.to_string().contains("SECRET-SIG"), "{err}");
    let url = WebhookUrl::new("https://prod.logic.azure.com/workflows/x?sig=SECRET-SIG").unwrap();
    assert!(!format!("{url:?}").contains("SECRET-SIG"));
}

/// Grants work; revocations fail (a lost permission, say).
struct RevocationsFail(elevate::adapters::access::local::LocalAccessProvider);

#[async_trait::async_trait]
impl elevate::service::ports::AccessProvider for RevocationsFail {
    async fn grant(
        &self,
        spec: &elevate::service::ports::AssignmentSpec,
    ) -> Result<elevate::service::ports::Assignment, elevate::service::ports::AccessError> {
        self.0.grant(spec).await
    }
    async fn revoke(&self, _: &elevate::service::ports::Grant) -> Result<(), elevate::service::ports::AccessError> {
        Err(elevate::service::ports::AccessError::Forbidden {
            role: "Reader".into(),
            scope: SUB1.into(),
            message: "no permission".into(),
        })
    }
    async fn inspect(
        &self,
        grant: &elevate::service::ports::Grant,
    ) -> Result<Option<elevate::service::ports::Assignment>, elevate::service::ports::AccessError> {
        self.0.inspect(grant).await
    }
    async fn list_managed(
        &self,
        scope: &elevate::domain::scope::Scope,
    ) -> Result<Vec<elevate::service::ports::Assignment>, elevate::service::ports::AccessError> {
        self.0.list_managed(scope).await
    }
    fn kind(&self) -> &'static str {
        "local"
    }
}

#[tokio::test]
async fn a_failing_revocation_is_told_at_most_hourly() {
    let hook = FakeWebhook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let local = elevate::adapters::access::local::LocalAccessProvider::open(&dir.path().join("local.db")).unwrap();
    let access = std::sync::Arc::new(RevocationsFail(local));
    let app = spawn_with_access_and_notifications(&test_policy(), access, notifications(&hook)).await;
    app.activate(&app.token(ALICE), reader_sub1()).await;
    app.advance(61);
    let report = app.sweep().await;
    assert_eq!(report["failures"].as_array().unwrap().len(), 1, "{report}");
    for _ in 0..3 {
        app.advance(5);
        assert_eq!(app.sweep().await["failures"].as_array().unwrap().len(), 1);
    }
    let failing = |events: &[Value]| types(events).iter().filter(|t| *t == "revocationFailing").count();
    assert_eq!(failing(&hook.accepted_json("events")), 1, "{:?}", types(&hook.accepted_json("events")));
    app.advance(60);
    app.sweep().await;
    assert_eq!(failing(&hook.accepted_json("events")), 2, "again an hour later");
    let card = hook.accepted_json("teams").into_iter().rfind(|m| m.to_string().contains("Revocation failing")).unwrap();
    assert_eq!(card["attachments"][0]["content"]["body"][0]["color"], "attention");
}

#[tokio::test]
async fn a_hanging_webhook_costs_one_timeout_per_pass_and_holds_up_no_other_sink() {
    let teams = FakeWebhook::start().await;
    teams.set_hang(true);
    let events = FakeWebhook::start().await;
    let settings =
        NotificationSettings { teams: Some(WebhookUrl::new(&teams.url("teams")).unwrap()), ..notifications(&events) };
    let app = spawn_with_notifications(&test_policy(), settings).await;
    let alice = app.token(ALICE);
    let started = std::time::Instant::now();
    for scope in ["r1", "r2", "r3"] {
        let body = json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/{scope}"), "duration": "PT1H"});
        let (status, _) = app.post(&alice, "/api/activations", body).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "requests never wait for a webhook");
    // The first notice waits out the client's 15 s timeout on Teams; the others skip Teams in
    // that pass, and every event still goes out.
    let delivered = events.wait_longer("events", 3, 800).await;
    assert_eq!(types(&delivered), vec!["activated", "activated", "activated"]);
    assert_eq!(teams.attempts(), 1, "one timeout, not one per notice");
}
