//! Bounded requests and lists over the API: the cap on open requests per principal, and every
//! list (`/api/activations`, `/api/approvals`, `/api/audit`) a page at a time through `$top`,
//! `$skiptoken` and `nextLink`. Runs on SQLite and, with `ELEVATE_TEST_STORE=tables`, on Azurite.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ALICE, BOB, CAROL, OPS, SUB1, SUB2, TestApp, id_of, spawn_app, spawn_app_with, test_policy};

fn reader_at(i: usize) -> Value {
    json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/rg{i}"), "duration": "PT1H"})
}

fn contributor_pending(i: usize) -> Value {
    json!({
        "roleDefinitionId": "Contributor",
        "scope": format!("{SUB2}/resourceGroups/app{i}"),
        "duration": "PT1H",
        "justification": "INC-7 outage",
    })
}

/// `POST /api/activations` with an `Idempotency-Key`.
async fn request_with_key(app: &TestApp, token: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{}/api/activations", app.base))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// GETs an absolute URL (a `nextLink`).
async fn follow(app: &TestApp, token: &str, url: &str) -> (StatusCode, Value) {
    assert!(url.starts_with(&app.base), "{url} is not under {}", app.base);
    app.get(token, url.trim_start_matches(&app.base)).await
}

/// Every page from `path` on, following `nextLink`: the ids (or event ids) in order, and how many
/// pages there were. Checks each page's size against `top`.
async fn walk(app: &TestApp, token: &str, path: &str, top: usize) -> (Vec<String>, usize) {
    let (mut seen, mut pages) = (Vec::new(), 0);
    let (status, mut page) = app.get(token, path).await;
    loop {
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let items = page["value"].as_array().unwrap();
        assert!(items.len() <= top, "a page of {} for $top={top}", items.len());
        seen.extend(items.iter().map(|v| v["id"].as_str().unwrap().to_owned()));
        let Some(next) = page["nextLink"].as_str().map(str::to_owned) else { return (seen, pages) };
        assert!(next.contains(&format!("$top={top}")) && next.contains("$skiptoken="), "{next}");
        let (s, p) = follow(app, token, &next).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        page = p;
        assert!(pages < 100, "the pages do not end");
    }
}

fn assert_invalid(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "InvalidField", "{body}");
    assert_eq!(body["error"]["target"], field, "{body}");
}

#[tokio::test]
async fn the_eleventh_open_request_is_too_many_and_changes_nothing() {
    // Carol may activate Reader too: her cap is her own.
    let policy = test_policy().replacen(
        &format!("principals: [user:{ALICE}, group:{OPS}]"),
        &format!("principals: [user:{ALICE}, user:{CAROL}, group:{OPS}]"),
        1,
    );
    assert_ne!(policy, test_policy());
    let app = spawn_app_with(&policy).await;
    let alice = app.token(ALICE);
    let mut open = Vec::new();
    for i in 0..9 {
        open.push(app.activate(&alice, reader_at(i)).await);
    }
    let tenth = request_with_key(&app, &alice, "tenth", &reader_at(9)).await;
    assert_eq!(tenth.status(), StatusCode::CREATED);
    open.push(tenth.json().await.unwrap());
    assert!(open.iter().all(|a| a["status"] == "Active"), "{open:?}");

    let before = app.snapshot();
    for body in [reader_at(10), contributor_pending(0)] {
        let (status, refused) = app.post(&alice, "/api/activations", body).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
        assert_eq!(refused["error"]["code"], "TooManyOpenRequests");
        assert!(refused["error"]["message"].as_str().unwrap().contains("10 open"), "{refused}");
    }
    assert_eq!(app.snapshot(), before, "a refused request changes nothing");
    assert_eq!(app.assignments().await.len(), 10);

    // A retry of one already made is answered as before: it is not another request.
    let again = request_with_key(&app, &alice, "tenth", &reader_at(9)).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], open[9]["id"]);
    assert_eq!(app.snapshot(), before);

    // Another principal has a cap of their own; once one of Alice's ends, she has room again.
    app.activate(&app.token(CAROL), reader_at(0)).await;
    let (status, done) =
        app.post(&alice, &format!("/api/activations/{}/deactivate", id_of(&open[0])), Value::Null).await;
    assert_eq!((status, done["status"].as_str()), (StatusCode::OK, Some("Deactivated")), "{done}");
    app.activate(&alice, reader_at(10)).await;
    let (status, _) = app.post(&alice, "/api/activations", reader_at(11)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn next_link_walks_every_activation_once_newest_first() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let mut made = Vec::new();
    for i in 0..7 {
        app.advance(1);
        let a = app.activate(&alice, reader_at(i)).await;
        if i % 3 == 0 {
            let (status, _) =
                app.post(&alice, &format!("/api/activations/{}/deactivate", id_of(&a)), Value::Null).await;
            assert_eq!(status, StatusCode::OK);
        }
        made.push(id_of(&a));
    }
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();

    // Three a page; an activation made between pages is newer, so it never shows up later.
    let (status, first) = app.get(&alice, "/api/activations?$top=3").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first_ids: Vec<String> = first["value"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(first_ids, newest_first[..3].to_vec());
    let next = first["nextLink"].as_str().unwrap().to_owned();
    assert!(next.starts_with(&format!("{}/api/activations?", app.base)), "{next}");
    app.advance(1);
    let newer = app.activate(&alice, reader_at(8)).await;
    let (rest, pages) = walk(&app, &alice, next.trim_start_matches(&app.base), 3).await;
    assert_eq!([first_ids, rest].concat(), newest_first);
    assert_eq!(pages, 2, "3 + 3 + 1");
    let (all, _) = walk(&app, &alice, "/api/activations?$top=500", 500).await;
    assert_eq!(all.first(), Some(&id_of(&newer)));
    assert_eq!(all.len(), 8);

    // `limit` is the older name of `$top`.
    let (_, by_limit) = app.get(&alice, "/api/activations?limit=3").await;
    let (_, by_top) = app.get(&alice, "/api/activations?$top=3").await;
    assert_eq!(by_limit["value"], by_top["value"]);
    let (status, body) = app.get(&alice, "/api/activations").await;
    assert_eq!((status, body["value"].as_array().unwrap().len()), (StatusCode::OK, 8));
    assert!(body.get("nextLink").is_none(), "nothing more: no link");

    // A status filter pages over the same index: pages may be short, the walk is exact.
    let (deactivated, _) = walk(&app, &alice, "/api/activations?status=Deactivated&$top=2", 2).await;
    let expected: Vec<String> =
        newest_first.iter().filter(|id| made.iter().step_by(3).any(|m| m == *id)).cloned().collect();
    assert_eq!(deactivated, expected);

    // Nobody else's; admins see everyone's.
    let (_, bobs) = app.get(&app.token(BOB), "/api/activations").await;
    assert_eq!(bobs["value"], json!([]));
    let (everyone, _) = walk(&app, &app.admin(), "/api/activations?mine=false&$top=5", 5).await;
    assert_eq!(everyone, all);
}

#[tokio::test]
async fn bad_page_parameters_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    for i in 0..3 {
        app.advance(1);
        app.activate(&alice, reader_at(i)).await;
    }
    for path in ["/api/activations", "/api/approvals", "/api/audit"] {
        let token = if path == "/api/audit" { app.admin() } else { alice.clone() };
        for top in ["0", "501", "abc", "-1", "1.5"] {
            let (status, body) = app.get(&token, &format!("{path}?$top={top}")).await;
            assert_invalid(status, &body, "$top");
            let (status, body) = app.get(&token, &format!("{path}?limit={top}")).await;
            assert_invalid(status, &body, "limit");
        }
        let (status, body) = app.get(&token, &format!("{path}?limit=3&$top=4")).await;
        assert_invalid(status, &body, "$top");
        let (status, _) = app.get(&token, &format!("{path}?limit=4&$top=4")).await;
        assert_eq!(status, StatusCode::OK, "the same size twice is one size");
        for token_text in ["garbage", "%00", "L2FwaS9hY3RpdmF0aW9ucwp4eXo", "", &"A".repeat(3000)] {
            let (status, body) = app.get(&token, &format!("{path}?$skiptoken={token_text}")).await;
            assert_invalid(status, &body, "$skiptoken");
        }
    }
    // A continuation of one list is no continuation of another, and a tampered one is refused.
    let (_, page) = app.get(&app.admin(), "/api/audit?$top=1").await;
    let audit_next = page["nextLink"].as_str().unwrap();
    let token = audit_next.split("$skiptoken=").nth(1).unwrap();
    let (status, body) = app.get(&alice, &format!("/api/activations?$skiptoken={token}")).await;
    assert_invalid(status, &body, "$skiptoken");
    use base64::Engine as _;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("/api/activations\n999_not-a-position");
    let (status, body) = app.get(&alice, &format!("/api/activations?$skiptoken={forged}")).await;
    assert_invalid(status, &body, "$skiptoken");
}

#[tokio::test]
async fn the_approvals_inbox_pages_and_leaves_out_what_the_caller_may_not_decide() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let bob = app.token(BOB);
    let mut pending = Vec::new();
    for i in 0..5 {
        app.advance(1);
        let a = app.activate(&alice, contributor_pending(i)).await;
        assert_eq!(a["status"], "PendingApproval");
        pending.push(id_of(&a));
    }
    // The newest needs two approvals; Bob gives his, so it still waits, but not for him.
    app.advance(1);
    let two = app
        .activate(
            &alice,
            json!({"roleDefinitionId": "Owner", "scope": SUB2, "duration": "PT1H", "justification": "INC-8"}),
        )
        .await;
    let (status, body) = app.decide(&bob, &id_of(&two), "Approve").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("PendingApproval")), "{body}");

    let newest_first: Vec<String> = pending.iter().rev().cloned().collect();
    // Bob's first page reads only the request he has decided on: it comes back empty, with a link.
    let (status, first) = app.get(&bob, "/api/approvals?status=Pending&$top=1").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["value"], json!([]));
    let next = first["nextLink"].as_str().unwrap();
    assert!(next.contains("status=Pending"), "{next}");
    let (mine, _) = walk(&app, &bob, "/api/approvals?$top=2", 2).await;
    assert_eq!(mine, newest_first);
    // Carol approves only under prod-one; the Owner request is not hers to decide.
    let (carols, _) = walk(&app, &app.token(CAROL), "/api/approvals?$top=4", 4).await;
    assert_eq!(carols, newest_first);
    // The requester and admins who approve nothing have an empty inbox.
    for token in [alice.clone(), app.admin()] {
        let (status, body) = app.get(&token, "/api/approvals").await;
        assert_eq!((status, &body), (StatusCode::OK, &json!({"value": []})));
    }
    // Decided, it leaves the inbox.
    let (status, _) = app.decide(&bob, &pending[4], "Approve").await;
    assert_eq!(status, StatusCode::OK);
    let (mine, _) = walk(&app, &bob, "/api/approvals?$top=2", 2).await;
    assert_eq!(mine, newest_first[1..].to_vec());
    let (status, body) = app.get(&bob, "/api/approvals?status=Approved").await;
    assert_invalid(status, &body, "status");
}

#[tokio::test]
async fn the_audit_trail_pages_oldest_first() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let mut made = Vec::new();
    for i in 0..4 {
        app.advance(1);
        made.push(app.activate(&alice, reader_at(i)).await);
    }
    let admin = app.admin();
    let (status, everything) = app.get(&admin, "/api/audit?$top=500").await;
    assert_eq!(status, StatusCode::OK, "{everything}");
    let all: Vec<String> = everything["value"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(all.len(), 8, "requested and provisioned, four times");
    let (paged, pages) = walk(&app, &admin, "/api/audit?$top=3", 3).await;
    assert_eq!((paged, pages), (all.clone(), 3));
    let (status, body) = app.get(&admin, "/api/audit").await;
    assert_eq!((status, body["value"].as_array().unwrap().len()), (StatusCode::OK, 8));
    // Filters travel in the link, encoded (`+` included).
    let since = format!("/api/audit?since={}&$top=1", "2026-11-25T12:02:00%2B00:00");
    let (later, _) = walk(&app, &admin, &since, 1).await;
    assert_eq!(later, all[2..].to_vec());
    let one = id_of(&made[1]);
    let (trail, pages) = walk(&app, &admin, &format!("/api/audit?activationId={one}&$top=1"), 1).await;
    assert_eq!((trail.len(), pages), (2, 2));
    let (status, _) = app.get(&alice, "/api/audit?$top=1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_openapi_document_describes_paging_and_the_cap() {
    let app = spawn_app().await;
    let (status, doc) = app.send(reqwest::Method::GET, None, "/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    // Every `$ref` resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let pointer = r.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let parameter = |p: &Value| -> String {
        let p = p.get("$ref").and_then(Value::as_str).map_or(p, |r| doc.pointer(&r[1..]).unwrap());
        p["name"].as_str().unwrap().to_owned()
    };
    for path in ["/api/activations", "/api/approvals", "/api/audit"] {
        let get = &doc["paths"][path]["get"];
        let names: Vec<String> = get["parameters"].as_array().unwrap().iter().map(parameter).collect();
        for name in ["$top", "$skiptoken", "limit"] {
            assert!(names.iter().any(|n| n == name), "{path} lacks {name}: {names:?}");
        }
        assert!(get["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["nextLink"].is_object());
    }
    let post = &doc["paths"]["/api/activations"]["post"]["responses"]["429"];
    let described = post.get("$ref").and_then(Value::as_str).map_or(post, |r| doc.pointer(&r[1..]).unwrap());
    assert!(described["description"].as_str().unwrap().contains("TooManyOpenRequests"));
}
