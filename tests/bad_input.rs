//! Bad input on every endpoint: the right status, a stable code naming the field, the ARM
//! envelope, and the store unchanged.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

struct Case {
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
    status: StatusCode,
    code: &'static str,
    target: Option<&'static str>,
}

fn case(
    method: Method,
    path: impl Into<String>,
    body: Option<&str>,
    status: StatusCode,
    code: &'static str,
    target: Option<&'static str>,
) -> Case {
    Case { method, path: path.into(), body: body.map(|b| b.as_bytes().to_vec()), headers: vec![], status, code, target }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let active = app.activate(&alice, reader_sub1()).await;
    let pending = app.activate(&alice, prod_contributor()).await;
    let (a, p) = (id_of(&active), id_of(&pending));
    let before = app.snapshot();

    use Method as M;
    use StatusCode as S;
    let acts = "/api/activations";
    let long = "x".repeat(1001);
    let mut cases = vec![
        case(M::POST, acts, Some("{"), S::BAD_REQUEST, "InvalidRequestBody", None),
        case(M::POST, acts, None, S::BAD_REQUEST, "InvalidRequestBody", None),
        case(M::POST, acts, Some("[]"), S::BAD_REQUEST, "InvalidRequestBody", None),
        case(M::POST, acts, Some("null"), S::BAD_REQUEST, "InvalidRequestBody", None),
        case(
            M::POST,
            acts,
            Some(r#"{"roleDefinitionId": 5, "scope": "x"}"#),
            S::BAD_REQUEST,
            "InvalidRequestBody",
            Some("roleDefinitionId"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "role": "Owner"}}"#)),
            S::BAD_REQUEST,
            "InvalidRequestBody",
            None,
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}"}} trailing"#)),
            S::BAD_REQUEST,
            "InvalidRequestBody",
            None,
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "principalId": "bob"}}"#)),
            S::BAD_REQUEST,
            "InvalidField",
            Some("principalId"),
        ),
        case(
            M::POST,
            acts,
            Some(
                r#"{"roleDefinitionId": "Superuser", "scope": "/subscriptions/00000000-0000-0000-0000-000000000001"}"#,
            ),
            S::BAD_REQUEST,
            "InvalidField",
            Some("roleDefinitionId"),
        ),
        case(
            M::POST,
            acts,
            Some(r#"{"roleDefinitionId": "Reader", "scope": "/subscriptions/x"}"#),
            S::BAD_REQUEST,
            "InvalidField",
            Some("scope"),
        ),
        case(
            M::POST,
            acts,
            Some(
                r#"{"roleDefinitionId": "Reader", "scope": "subscriptions/00000000-0000-0000-0000-000000000001/../x"}"#,
            ),
            S::BAD_REQUEST,
            "InvalidField",
            Some("scope"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "duration": "8h"}}"#)),
            S::BAD_REQUEST,
            "InvalidField",
            Some("duration"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "duration": 3600}}"#)),
            S::BAD_REQUEST,
            "InvalidRequestBody",
            Some("duration"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "startAt": "tomorrow"}}"#)),
            S::BAD_REQUEST,
            "InvalidField",
            Some("startAt"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "justification": "{long}"}}"#)),
            S::BAD_REQUEST,
            "InvalidField",
            Some("justification"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "justification": "a\u0000b"}}"#)),
            S::BAD_REQUEST,
            "InvalidField",
            Some("justification"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "justification": "   "}}"#)),
            S::BAD_REQUEST,
            "InvalidField",
            Some("justification"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "ticket": {{"system": "SNOW"}}}}"#)),
            S::BAD_REQUEST,
            "InvalidRequestBody",
            Some("ticket"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(
                r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "ticket": {{"system": "", "number": "1"}}}}"#
            )),
            S::BAD_REQUEST,
            "InvalidField",
            Some("ticket.system"),
        ),
        case(
            M::POST,
            acts,
            Some(&format!(r#"{{"roleDefinitionId": "Reader", "scope": "{SUB1}", "ruleId": "Not A Rule"}}"#)),
            S::BAD_REQUEST,
            "InvalidField",
            Some("ruleId"),
        ),
        case(M::GET, "/api/activations/not-a-guid", None, S::BAD_REQUEST, "InvalidField", Some("id")),
        case(
            M::GET,
            "/api/activations/00000000-0000-0000-0000-00000000dead",
            None,
            S::NOT_FOUND,
            "ActivationNotFound",
            None,
        ),
        case(M::GET, "/api/activations?status=Bogus", None, S::BAD_REQUEST, "InvalidField", Some("status")),
        case(M::GET, "/api/activations?limit=0", None, S::BAD_REQUEST, "InvalidField", Some("limit")),
        case(M::GET, "/api/activations?limit=many", None, S::BAD_REQUEST, "InvalidField", Some("limit")),
        case(M::GET, "/api/activations?mine=maybe", None, S::BAD_REQUEST, "InvalidField", Some("mine")),
        case(M::GET, "/api/activations?statuss=Active", None, S::BAD_REQUEST, "InvalidQuery", None),
        case(M::POST, "/api/activations/nope/deactivate", None, S::BAD_REQUEST, "InvalidField", Some("id")),
        case(M::POST, format!("/api/activations/{a}/extend"), Some("{}"), S::BAD_REQUEST, "InvalidRequestBody", None),
        case(
            M::POST,
            format!("/api/activations/{a}/extend"),
            Some(r#"{"duration": "P100D"}"#),
            S::BAD_REQUEST,
            "InvalidField",
            Some("duration"),
        ),
        case(
            M::POST,
            format!("/api/activations/{a}/extend"),
            Some(r#"{"duration": "PT1H", "justification": 7}"#),
            S::BAD_REQUEST,
            "InvalidRequestBody",
            Some("justification"),
        ),
        case(
            M::POST,
            format!("/api/approvals/{p}"),
            Some(r#"{"decision": "Maybe", "justification": "x"}"#),
            S::BAD_REQUEST,
            "InvalidField",
            Some("decision"),
        ),
        case(
            M::POST,
            format!("/api/approvals/{p}"),
            Some(r#"{"decision": "Approve"}"#),
            S::BAD_REQUEST,
            "InvalidRequestBody",
            None,
        ),
        case(
            M::POST,
            format!("/api/approvals/{p}"),
            Some(r#"{"decision": "Approve", "justification": ""}"#),
            S::BAD_REQUEST,
            "InvalidField",
            Some("justification"),
        ),
        case(
            M::POST,
            "/api/approvals/123",
            Some(r#"{"decision": "Approve", "justification": "x"}"#),
            S::BAD_REQUEST,
            "InvalidField",
            Some("id"),
        ),
        case(M::GET, "/api/approvals?status=Done", None, S::BAD_REQUEST, "InvalidField", Some("status")),
        case(M::GET, "/api/audit?since=yesterday", None, S::BAD_REQUEST, "InvalidField", Some("since")),
        case(M::GET, "/api/audit?activationId=x", None, S::BAD_REQUEST, "InvalidField", Some("activationId")),
        case(M::GET, "/api/audit?principalId=x", None, S::BAD_REQUEST, "InvalidField", Some("principalId")),
        case(M::GET, "/api/audit?limit=501", None, S::BAD_REQUEST, "InvalidField", Some("limit")),
        case(M::POST, "/expiry-sweeper", Some("not json"), S::BAD_REQUEST, "InvalidInvocation", None),
        case(M::POST, "/expiry-sweeper", Some("[1]"), S::BAD_REQUEST, "InvalidInvocation", None),
        case(M::GET, "/api/nothing-here", None, S::NOT_FOUND, "RouteNotFound", None),
        case(M::GET, "/api/activations/x/y/z", None, S::NOT_FOUND, "RouteNotFound", None),
        case(M::DELETE, acts, None, S::METHOD_NOT_ALLOWED, "MethodNotAllowed", None),
        case(M::GET, "/expiry-sweeper", None, S::METHOD_NOT_ALLOWED, "MethodNotAllowed", None),
        case(M::POST, acts, Some(&" ".repeat(70 * 1024)), S::PAYLOAD_TOO_LARGE, "RequestTooLarge", None),
    ];
    let mut keyed =
        case(M::POST, acts, Some(&reader_sub1().to_string()), S::BAD_REQUEST, "InvalidField", Some("Idempotency-Key"));
    keyed.headers.push(("Idempotency-Key", "k".repeat(201)));
    cases.push(keyed);

    for c in cases {
        // One caller per request (a second `bearer_auth` would add a second header).
        let caller = if c.path.starts_with("/api/activations") && c.method == M::POST {
            alice.clone()
        } else if c.path.contains("approvals") {
            app.token(BOB)
        } else {
            app.admin()
        };
        let mut req = app.client.request(c.method.clone(), format!("{}{}", app.base, c.path)).bearer_auth(caller);
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        if let Some(body) = c.body.clone() {
            req = req.header("content-type", "application/json").body(body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        assert!(
            res.headers()["content-type"].to_str().unwrap().starts_with("application/json"),
            "{} {}: not JSON",
            c.method,
            c.path
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, c.status, "{} {} -> {body}", c.method, c.path);
        assert_eq!(body["error"]["code"], c.code, "{} {} -> {body}", c.method, c.path);
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(t) = c.target {
            assert_eq!(body["error"]["target"], t, "{} {} -> {body}", c.method, c.path);
        }
    }

    let (status, body) = raw_http(&app.base, chunked_post("/api/activations", &alice, 70 * 1024)).await;
    assert_eq!(status, 413, "a chunked body over the limit: {body}");
    assert!(body.contains("RequestTooLarge"));

    assert_eq!(app.snapshot(), before, "no bad request changed anything");
}

#[tokio::test]
async fn a_chunked_body_within_the_limit_is_read() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let body = reader_sub1().to_string();
    let req = format!(
        "POST /api/activations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (status, answer) = raw_http(&app.base, req.into_bytes()).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn errors_never_echo_tokens() {
    let app = spawn_app().await;
    let secret = format!("{}x", app.token(ALICE));
    let (status, body) = app.send(Method::GET, Some(&secret), "/api/eligibilities", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.to_string().contains(&secret[..40]));
    let (_, body) = app
        .post(
            &app.token(ALICE),
            "/api/activations",
            json!({"roleDefinitionId": "Reader", "scope": "/subscriptions/x".repeat(100)}),
        )
        .await;
    assert!(body["error"]["message"].as_str().unwrap().len() < 400, "user input is shortened in messages");
}
