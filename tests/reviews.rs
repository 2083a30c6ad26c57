//! Access reviews end to end through the HTTP API, the portal and the `governance` timer: a
//! campaign starts on schedule with recommendations from the activation history, reviewers
//! decide (and only they), and when it ends its removals take effect at once — the
//! eligibility is suspended and an active activation from it is revoked — with the results
//! exported as CSV and as a patch to the policy file.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const CAMPAIGN: &str = "quarterly-20261125";

fn policy() -> String {
    format!(
        "{}reviews:\n  - id: quarterly\n    description: Who keeps production access\n    rules: [self-reader, prod-one]\n    reviewers: [user:{BOB}]\n    startsAt: 2026-11-25T12:00:00Z\n    everyDays: 90\n    durationDays: 7\n    remindDaysBefore: 2\n    whenUndecided: recommendation\n",
        test_policy()
    )
}

async fn governance(app: &TestApp) -> Value {
    let (status, value) = app.send(reqwest::Method::POST, None, "/governance", Some(timer_payload(false, true))).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    value["ReturnValue"]["reviews"].clone()
}

fn decision(verdict: &str, why: &str) -> Value {
    json!({"decision": verdict, "justification": why})
}

#[tokio::test]
async fn a_campaign_runs_from_start_to_applied_removals_that_end_active_access() {
    let app = spawn_app_with(&policy()).await;
    let (alice, bob) = (app.token(ALICE), app.token(BOB));
    // Alice uses `self-reader`; nobody has used the group's entry or `prod-one`.
    let first = app.activate(&alice, reader_sub1()).await;
    assert_eq!(first["status"], "Active", "{first}");

    let report = governance(&app).await;
    assert_eq!(report["started"], json!([CAMPAIGN]), "{report}");
    assert_eq!(governance(&app).await["started"], json!([]), "a second pass starts nothing");

    // Bob reviews; Alice does not, and learns nothing of the campaign.
    let (_, listed) = app.get(&bob, "/api/reviews").await;
    assert_eq!(listed["value"][0]["id"], CAMPAIGN, "{listed}");
    assert_eq!(listed["value"][0]["status"], "open");
    let (_, none) = app.get(&alice, "/api/reviews").await;
    assert_eq!(none["value"], json!([]));
    let (status, hidden) = app.get(&alice, &format!("/api/reviews/{CAMPAIGN}")).await;
    assert_eq!((status, hidden["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("CampaignNotFound")));

    let (status, view) = app.get(&bob, &format!("/api/reviews/{CAMPAIGN}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let items = view["items"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = items
        .iter()
        .map(|i| {
            (
                i["rule"].as_str().unwrap().to_owned(),
                i["entry"].as_str().unwrap().to_owned(),
                i["recommendation"]["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("self-reader".to_owned(), format!("user:{ALICE}"), "keep".to_owned()),
            ("self-reader".to_owned(), format!("group:{OPS}"), "remove".to_owned()),
            ("prod-one".to_owned(), format!("user:{ALICE}"), "remove".to_owned()),
        ]
    );
    assert!(items.iter().all(|i| i["mayDecide"] == true));

    // Bad input changes nothing and names its field.
    let item0 = format!("/api/reviews/{CAMPAIGN}/items/0");
    for (body, field) in [
        (decision("maybe", "x"), "decision"),
        (json!({"decision": "keep"}), "justification"),
        (decision("keep", "  "), "justification"),
    ] {
        let (status, e) = app.post(&bob, &item0, body).await;
        assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{e}");
    }
    let (status, e) = app.post(&bob, &item0, json!({"decision": "keep", "justification": "x", "extra": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, e) = app.post(&bob, &format!("/api/reviews/{CAMPAIGN}/items/3"), decision("keep", "x")).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("ReviewItemNotFound")));
    let (status, e) = app.post(&bob, "/api/reviews/Nope/items/0", decision("keep", "x")).await;
    assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("campaignId")));
    let (status, e) = app.post(&bob, &format!("/api/reviews/{CAMPAIGN}/items/-1"), decision("keep", "x")).await;
    assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("index")));
    // Alice may not decide on her own eligibility, nor on anything else here.
    let (status, _) = app.post(&alice, &item0, decision("keep", "I need it")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, untouched) = app.get(&bob, &format!("/api/reviews/{CAMPAIGN}")).await;
    assert!(untouched["items"].as_array().unwrap().iter().all(|i| i["decisions"] == json!([])), "{untouched}");

    // Bob changes his mind on item 0: his latest decision counts (one place per reviewer on
    // the item, so nobody crowds out the others); the log keeps both.
    let (status, decided) = app.post(&bob, &item0, decision("keep", "still on call")).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let (_, decided) = app.post(&bob, &item0, decision("remove", "moved to another team")).await;
    assert_eq!(decided["decisions"].as_array().unwrap().len(), 1, "{decided}");
    assert_eq!(decided["decisions"][0]["verdict"], "remove");
    let (_, kept) = app.post(&bob, &format!("/api/reviews/{CAMPAIGN}/items/1"), decision("keep", "on-call rota")).await;
    assert_eq!(kept["decisions"][0]["by"], BOB);

    // Two days before the end, reviewers are reminded once.
    app.advance(5 * 24 * 60);
    assert_eq!(governance(&app).await["reminded"], json!([CAMPAIGN]));
    assert_eq!(governance(&app).await["reminded"], json!([]));

    // Half an hour before the end, Alice holds access through the eligibility Bob removes.
    app.advance(2 * 24 * 60 - 30);
    let (alice, bob) = (app.token(ALICE), app.token(BOB));
    app.sweep().await;
    let second = app.activate(&alice, reader_sub1()).await;
    assert_eq!(second["status"], "Active");
    let second_id = id_of(&second);
    assert_eq!(app.assignments().await.len(), 1);

    app.advance(31);
    let (status, late) = app.post(&bob, &item0, decision("keep", "too late")).await;
    assert_eq!((status, late["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("CampaignEnded")));
    let applied = governance(&app).await;
    assert_eq!(applied["applied"], json!([CAMPAIGN]), "{applied}");
    assert_eq!((applied["suspended"].as_u64(), applied["ended"].as_u64()), (Some(2), Some(1)), "{applied}");

    // The removal took effect at once: access revoked, the activation ended and audited, and
    // the eligibility refused from now on, without editing the YAML.
    assert!(app.assignments().await.is_empty());
    let ended = app.activation(&second_id).await;
    assert_eq!(ended["status"], "Deactivated", "{ended}");
    let audit = app.audit_for(&second_id).await;
    let last = audit.last().unwrap();
    assert_eq!((last["action"].as_str(), last["actor"]["kind"].as_str()), (Some("Deactivated"), Some("system")));
    assert!(last["detail"].as_str().unwrap().contains(&format!("access review `{CAMPAIGN}`")), "{last}");
    let (status, refused) = app.post(&alice, "/api/activations", reader_sub1()).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("EligibilitySuspended")));
    let (_, roles) = app.get(&alice, "/api/eligibilities").await;
    let rules: Vec<&str> = roles["value"].as_array().unwrap().iter().filter_map(|r| r["ruleId"].as_str()).collect();
    assert!(!rules.contains(&"self-reader") && !rules.contains(&"prod-one"), "{roles}");
    assert!(rules.contains(&"rg-contributor"), "{roles}");
    // The group's entry was kept: its members are still eligible.
    let member = app.member(1);
    assert_eq!(app.activate(&member, reader_sub1()).await["status"], "Active");
    assert_eq!(governance(&app).await["applied"], json!([]), "applied once");

    // Results: CSV and the patch, for auditors only.
    let (status, _) = app.get(&bob, &format!("/api/reviews/{CAMPAIGN}/results.csv")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, csv) = app.get(&app.auditor(), &format!("/api/reviews/{CAMPAIGN}/results.csv")).await;
    assert_eq!(status, StatusCode::OK);
    let csv = csv.as_str().unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[1].contains(&format!("self-reader,user:{ALICE},keep,")) && lines[1].contains(",remove,decided,"),
        "{csv}"
    );
    assert!(lines[2].contains(",keep,decided,") && lines[3].contains(",remove,undecided (recommendation),"), "{csv}");
    let (status, patch) = app.get(&app.auditor(), &format!("/api/reviews/{CAMPAIGN}/policy-patch")).await;
    assert_eq!(status, StatusCode::OK);
    let patch = patch.as_str().unwrap();
    // The test policy lists these principals inline: the patch says so rather than guess.
    assert!(patch.contains(&format!("# remove `user:{ALICE}` from rule `self-reader` by hand")), "{patch}");
    assert!(patch.contains(&format!("# remove `user:{ALICE}` from rule `prod-one` by hand")), "{patch}");
    // A wrong removal during an incident: an admin gives it back at once, on record.
    let (_, suspended) = app.get(&app.auditor(), "/api/suspensions").await;
    assert_eq!(suspended["value"].as_array().unwrap().len(), 2, "{suspended}");
    let lift =
        json!({"ruleId": "self-reader", "principal": format!("user:{ALICE}"), "justification": "incident INC-9"});
    let (status, _) = app.post(&bob, "/api/suspensions/lift", lift.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, e) =
        app.post(&app.admin(), "/api/suspensions/lift", json!({"ruleId": "self-reader", "principal": "alice"})).await;
    assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("principal")), "{e}");
    let (status, lifted) = app.post(&app.admin(), "/api/suspensions/lift", lift.clone()).await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    assert_eq!((lifted["lifted"]["by"].as_str(), lifted["campaign"].as_str()), (Some(DANA), Some(CAMPAIGN)));
    assert_eq!(app.activate(&alice, reader_sub1()).await["status"], "Active");
    let (status, again) = app.post(&app.admin(), "/api/suspensions/lift", lift).await;
    assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("SuspensionNotFound")));

    // The log: every decision (the replaced one too), each suspension and the lifting.
    let (status, _) = app.get(&bob, &format!("/api/reviews/{CAMPAIGN}/log")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, log) = app.get(&app.auditor(), &format!("/api/reviews/{CAMPAIGN}/log")).await;
    let events: Vec<&str> = log["value"].as_array().unwrap().iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["decided", "decided", "decided", "suspended", "suspended", "lifted"], "{log}");
    assert_eq!(log["value"][0]["decision"]["justification"], "still on call");

    // Taking the review out of the file does not undo what it removed.
    let later = restart_with(&app, &test_policy(), None).await;
    let alice_later = later.token(ALICE);
    let prod = json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "INC-2", "ruleId": "prod-one"});
    let (status, refused) = later.post(&alice_later, "/api/activations", prod).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("EligibilitySuspended")),
        "{refused}"
    );

    let (_, all) = app.get(&app.auditor(), "/api/reviews").await;
    assert_eq!(all["value"][0]["status"], "applied", "{all}");
    assert_eq!((all["value"][0]["kept"].as_u64(), all["value"][0]["removed"].as_u64()), (Some(1), Some(2)));
}

#[tokio::test]
async fn reviewers_decide_on_the_portal_page() {
    let app = spawn_app_with(&policy()).await;
    governance(&app).await;
    let bob = app.token(BOB);
    let page =
        app.client.get(format!("{}/api/portal/reviews/{CAMPAIGN}", app.base)).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert_eq!(html.matches("<form method=\"post\" action=\"/api/portal/reviews/").count(), 3, "{html}");
    assert!(html.contains("<legend>Decision</legend>") && html.contains("name=\"justification\" rows=\"2\" required"));

    let form = |decision: &str, justification: &str| {
        app.client
            .post(format!("{}/api/portal/reviews/{CAMPAIGN}/items/2", app.base))
            .bearer_auth(&bob)
            .form(&[("decision", decision), ("justification", justification)])
            .send()
    };
    let refused = form("remove", "").await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let html = refused.text().await.unwrap();
    assert!(html.contains("aria-invalid=\"true\"") && html.contains("value=\"remove\" required checked"), "{html}");
    let done = form("remove", "unused for a quarter").await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()["location"], format!("/api/portal/reviews/{CAMPAIGN}?done=2").as_str());
    let (_, view) = app.get(&bob, &format!("/api/reviews/{CAMPAIGN}")).await;
    assert_eq!(view["items"][2]["decisions"][0]["justification"], "unused for a quarter");

    // Someone who reviews nothing sees no campaign; the list page says so.
    let alice = app.token(ALICE);
    let list = app.client.get(format!("{}/api/portal/reviews", app.base)).bearer_auth(&alice).send().await.unwrap();
    assert!(list.text().await.unwrap().contains("No access review needs you now."));
}

#[tokio::test]
async fn a_review_that_names_a_missing_rule_or_bad_terms_is_refused_at_load() {
    let bad = format!(
        "{}reviews:\n  - id: q\n    rules: [nope, prod-one]\n    reviewers: approvers\n    startsAt: soon\n    everyDays: 5\n    durationDays: 7\n    remindDaysBefore: 9\n    whenUndecided: keep\n  - id: s\n    rules: [self-reader]\n    reviewers: self\n    startsAt: 2026-11-25T12:00:00Z\n    durationDays: 7\n",
        test_policy()
    );
    let err = elevate::domain::policy::Policy::from_yaml("p.yaml", &bad).unwrap_err().to_string();
    for expected in [
        "reviews[0].rules[0]: no rule `nope` in this policy",
        "reviews[0].startsAt: `soon` is not an RFC 3339 time",
        "reviews[0].durationDays: a run must end before the next one starts",
        "reviews[0].remindDaysBefore: must be less than `durationDays`",
        &format!("reviews[1].reviewers: self-review covers user entries only; rule `self-reader` names `group:{OPS}`"),
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
}

/// The review notices `hook` accepted on `path` (alerts go there too), waiting for `n`.
async fn review_notices(hook: &crate::support::fake_webhook::FakeWebhook, path: &str, n: usize) -> Vec<Value> {
    let is_review = |v: &Value| {
        v["type"].as_str().is_some_and(|t| t.starts_with("io.elevate.governance.review"))
            || v.to_string().contains("/api/portal/reviews/")
    };
    for _ in 0..200 {
        if hook.accepted_json(path).iter().filter(|v| is_review(v)).count() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    hook.accepted_json(path).into_iter().filter(is_review).collect()
}

#[tokio::test]
async fn reviewers_are_told_when_a_campaign_starts_and_reminded_before_it_ends() {
    use crate::alert_notices::{assert_schema_valid, notifications, verify};
    use crate::support::fake_webhook::FakeWebhook;
    let hook = FakeWebhook::start().await;
    let app = spawn_with_notifications(&policy(), notifications(&hook)).await;
    assert_eq!(governance(&app).await["started"], json!([CAMPAIGN]));

    let page = format!("{}/api/portal/reviews/{CAMPAIGN}", app.base);
    let events = review_notices(&hook, "events", 1).await;
    assert_eq!(events[0]["type"], "io.elevate.governance.reviewStarted", "{events:#?}");
    assert_eq!(events[0]["data"]["url"], page.as_str());
    assert!(events[0]["data"]["title"].as_str().unwrap().contains("3 items to review"), "{events:#?}");
    for request in hook.accepted("events") {
        verify(&request);
    }
    let cards = review_notices(&hook, "teams", 1).await;
    let card = &cards[0]["attachments"][0]["content"];
    assert_schema_valid(card);
    assert!(card.to_string().contains(&page), "the card links to the campaign's page: {card}");

    app.advance(5 * 24 * 60);
    assert_eq!(governance(&app).await["reminded"], json!([CAMPAIGN]));
    let events = review_notices(&hook, "events", 2).await;
    assert_eq!(events[1]["type"], "io.elevate.governance.reviewReminder", "{events:#?}");
    assert!(events[1]["data"]["title"].as_str().unwrap().contains("3 of 3 items undecided"), "{events:#?}");
    governance(&app).await;
    app.sweep().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(review_notices(&hook, "events", 2).await.len(), 2, "each told once");
    assert_eq!(review_notices(&hook, "teams", 2).await.len(), 2, "each told once");
}

#[tokio::test]
async fn approvers_who_must_prove_mfa_to_approve_must_prove_it_to_review() {
    let policy = format!(
        "version: 1\nrules:\n  - id: guarded\n    scope: {SUB2}\n    roles: [Owner]\n    principals: [user:{ALICE}]\n    maxDuration: PT1H\n    approval:\n      approvers: [user:{BOB}]\n      approverMfa: true\nreviews:\n  - id: guarded-review\n    rules: [guarded]\n    reviewers: approvers\n    startsAt: 2026-11-25T12:00:00Z\n    durationDays: 7\n"
    );
    let app = spawn_app_with(&policy).await;
    governance(&app).await;
    let path = "/api/reviews/guarded-review-20261125/items/0";
    let without = app.mint(elevate::adapters::identity::dev::DevTokenRequest { mfa: false, ..user(BOB) });
    let (status, e) = app.post(&without, path, decision("keep", "still needed")).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MfaRequired")), "{e}");
    let (status, _) = app.post(&app.token(BOB), path, decision("keep", "still needed")).await;
    assert_eq!(status, StatusCode::OK);
}
