//! Governance alerts told through the outbox: an alert that opens (or reopens) becomes one
//! Teams card (valid against the Adaptive Card schema) and one signed CloudEvent; the same
//! opening seen by later passes is never told again.

use std::process::{Command, Stdio};
use std::sync::Arc;

use elevate::adapters::notify::WebhookUrl;
use elevate::adapters::notify::events::EventSecret;
use elevate::config::NotificationSettings;
use elevate::domain::duration::IsoDuration;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::arm::{fast_retry, provider};
use crate::support::fake_azure::FakeAzure;
use crate::support::fake_webhook::FakeWebhook;
use crate::support::*;

const SECRET: &str = "a webhook secret of at least thirty-two characters";
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const P1: &str = "77777777-7777-7777-7777-000000000001";
const P2: &str = "77777777-7777-7777-7777-000000000002";
const P3: &str = "77777777-7777-7777-7777-000000000003";

/// One rule that raises nothing itself (a group, a role that is not privileged): the only alert
/// is the one the test causes, too many permanent Owners of SUB1.
fn policy() -> String {
    format!(
        "version: 1\nrules:\n  - id: readers\n    scope: {SUB1}\n    roles: [Reader]\n    principals: [group:{OPS}]\ngovernance:\n  maxPermanentHolders: 1\n"
    )
}

fn alert_id() -> String {
    format!("permanent:{OWNER}:{}", SUB1.to_ascii_lowercase())
}

pub(crate) fn notifications(hook: &FakeWebhook) -> NotificationSettings {
    NotificationSettings {
        teams: Some(WebhookUrl::new(&hook.url("teams")).unwrap()),
        events: Some((WebhookUrl::new(&hook.url("events")).unwrap(), EventSecret::new(SECRET.into()))),
        expiry_warning: IsoDuration::parse("PT15M").unwrap(),
    }
}

/// Fires the `governance` timer as the host does; the report it answered.
async fn governance(app: &TestApp) -> Value {
    let (status, value) = app.send(reqwest::Method::POST, None, "/governance", Some(timer_payload(false, true))).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    value["ReturnValue"].clone()
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

/// The signature as a receiver checks it: HMAC-SHA256 over "<timestamp>.<raw body>".
pub(crate) fn verify(request: &crate::support::fake_http::FakeRequest) {
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

/// Validates `card` against the official Adaptive Card schema (the one tests/js/browser.mjs
/// uses, with the same validator).
pub(crate) fn assert_schema_valid(card: &Value) {
    const SCRIPT: &str = r"
const Ajv = require('ajv');
const { adaptiveCardSchema } = require('adaptivecards-designer/lib/adaptive-card-schema.js');
const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json'));
const { id, ...schema } = adaptiveCardSchema;
const validate = ajv.compile({ $id: id, ...schema });
const card = JSON.parse(require('fs').readFileSync(0, 'utf8'));
if (!validate(card)) { console.error(JSON.stringify(validate.errors, null, 1)); process.exit(1); }
";
    let mut node = Command::new("node")
        .args(["-e", SCRIPT])
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is needed (and `npm ci --prefix tests/js`)");
    std::io::Write::write_all(&mut node.stdin.take().unwrap(), &serde_json::to_vec(card).unwrap()).unwrap();
    let out = node.wait_with_output().unwrap();
    assert!(out.status.success(), "the card does not match the schema:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// An event's `items`, sorted (holders are listed in the provider's order).
fn items(data: &Value) -> Vec<String> {
    let mut items: Vec<String> =
        data["items"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_owned()).collect();
    items.sort();
    items
}

/// Lets a delivery in flight land, and runs a sweep (which delivers whatever is due).
pub(crate) async fn settle(app: &TestApp) {
    app.sweep().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_alert_is_told_once_per_opening_on_teams_and_as_a_signed_event() {
    let hook = FakeWebhook::start().await;
    let fake = FakeAzure::start().await;
    let access = provider(&fake, fast_retry()) as Arc<dyn elevate::service::ports::AccessProvider>;
    let app = spawn_with_access_and_notifications(&policy(), access, notifications(&hook)).await;
    fake.assign_outside(SUB1, P1, OWNER);
    let second = fake.assign_outside(SUB1, P2, OWNER);

    let report = governance(&app).await;
    assert_eq!((report["failures"].clone(), report["opened"].clone()), (json!([]), json!([alert_id()])), "{report}");

    let events = hook.wait_for("events", 1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "io.elevate.governance.alertOpened");
    assert_eq!(event["subject"], alert_id().as_str());
    assert_eq!(event["source"], app.base);
    let data = &event["data"];
    assert_eq!(data["alertId"], alert_id().as_str());
    assert_eq!((data["kind"].as_str(), data["severity"].as_str()), (Some("TooManyPermanentHolders"), Some("High")));
    assert_eq!(items(data), [format!("principal {P1}"), format!("principal {P2}")]);
    assert!(data["remediation"].as_str().is_some_and(|r| !r.is_empty()), "{data}");
    assert_eq!(data["firstSeen"], "2026-11-25T12:00:00.000Z");
    assert_eq!(data["url"], format!("{}/api/portal/alerts", app.base));
    verify(&hook.accepted("events")[0]);

    let cards = hook.wait_for("teams", 1).await;
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0]["type"], "message");
    assert_eq!(cards[0]["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &cards[0]["attachments"][0]["content"];
    assert_schema_valid(card);
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["body"][0]["color"], "attention", "High severity stands out");
    let headline = card["body"][0]["text"].as_str().unwrap();
    assert!(headline.starts_with("Governance alert (High): 2 permanent holders of Owner"), "{headline}");
    let list = card["body"].as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).find(|t| t.starts_with("- "));
    let mut lines: Vec<&str> = list.expect("the items as a list").split('\r').collect();
    lines.sort_unstable();
    assert_eq!(lines, [format!("- principal {P1}"), format!("- principal {P2}")]);
    assert_eq!(
        card["actions"],
        json!([{ "type": "Action.OpenUrl", "title": "Open the alerts", "url": format!("{}/api/portal/alerts", app.base) }])
    );

    // Seen again: the same opening, told no more.
    app.advance(10);
    let again = governance(&app).await;
    assert_eq!((again["open"].as_u64(), again["opened"].clone()), (Some(1), json!([])), "{again}");
    settle(&app).await;
    assert_eq!((hook.accepted("events").len(), hook.accepted("teams").len()), (1, 1));

    // Resolved: nothing told. Reopened later: told once more, as a new notice.
    remove(&fake, &second).await;
    app.advance(10);
    assert_eq!(governance(&app).await["resolved"], json!([alert_id()]));
    settle(&app).await;
    assert_eq!((hook.accepted("events").len(), hook.accepted("teams").len()), (1, 1));
    fake.assign_outside(SUB1, P3, OWNER);
    app.advance(10);
    assert_eq!(governance(&app).await["opened"], json!([alert_id()]));
    let events = hook.wait_for("events", 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_ne!(events[1]["id"], events[0]["id"], "a new opening, a new notice");
    assert_eq!(events[1]["type"], "io.elevate.governance.alertOpened");
    assert_eq!(events[1]["data"]["firstSeen"], "2026-11-25T12:30:00.000Z");
    assert_eq!(items(&events[1]["data"]), [format!("principal {P1}"), format!("principal {P3}")]);
    verify(&hook.accepted("events")[1]);
    assert_eq!(hook.wait_for("teams", 2).await.len(), 2);

    // And again nothing more, however often the pass runs.
    for _ in 0..2 {
        app.advance(10);
        assert_eq!(governance(&app).await["opened"], json!([]));
    }
    settle(&app).await;
    assert_eq!((hook.accepted("events").len(), hook.accepted("teams").len()), (2, 2));
}

#[tokio::test]
async fn without_sinks_an_alert_queues_no_notice() {
    let fake = FakeAzure::start().await;
    let access = provider(&fake, fast_retry()) as Arc<dyn elevate::service::ports::AccessProvider>;
    let app = spawn_app_on(&policy(), Some(access), None, start()).await;
    fake.assign_outside(SUB1, P1, OWNER);
    fake.assign_outside(SUB1, P2, OWNER);
    assert_eq!(governance(&app).await["opened"], json!([alert_id()]));
    if app.tables.is_none() {
        let conn = rusqlite::Connection::open(&app.db).unwrap();
        let queued: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).unwrap();
        assert_eq!(queued, 0, "nobody to tell");
    }
}
