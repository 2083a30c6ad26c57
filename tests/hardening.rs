//! The outside review's findings (issue 11), each reproduced as the attack was described, then
//! shown refused with nothing changed — and the legitimate path shown still working.

use std::time::Duration;

use elevate::adapters::identity::entra::EntraAuthenticator;
use elevate::http::DEV_COOKIE;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::arm::spawn_arm_app;
use crate::support::fake_azure::FakeAzure;
use crate::support::fake_entra::FakeEntra;
use crate::support::fake_webhook::FakeWebhook;
use crate::support::process;
use crate::support::*;

const EVIL: &str = "https://evil.example";

fn session(app: &TestApp, user: &str) -> String {
    format!("{DEV_COOKIE}={}", app.token(user))
}

/// A request as a page of another site makes the victim's browser send it.
fn cross_site(app: &TestApp, path: &str, cookie: &str) -> reqwest::RequestBuilder {
    app.client
        .post(format!("{}{path}", app.base))
        .header("cookie", cookie)
        .header("origin", EVIL)
        .header("sec-fetch-site", "cross-site")
}

/// The same request without the browser's provenance headers (an older browser, or a proxy that
/// strips them): only the media type and the CSRF token stand in the way.
fn bare(app: &TestApp, path: &str, cookie: &str) -> reqwest::RequestBuilder {
    app.client.post(format!("{}{path}", app.base)).header("cookie", cookie)
}

async fn refused(res: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
}

async fn csrf_from(res: reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::OK);
    let headers: HeaderMap = res.headers().clone();
    headers["x-csrf-token"].to_str().unwrap().to_owned()
}

/// Item 1, the finding as reported: `<form enctype="text/plain">` with a field named
/// `{"decision":"Approve","justification":"ok` and value `"}` approved a pending Contributor
/// request with the approver's session.
#[tokio::test]
async fn a_text_plain_form_from_another_site_cannot_approve() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), prod_contributor()).await;
    let path = format!("/api/approvals/{}", id_of(&a));
    let bob = session(&app, BOB);
    let forged = r#"{"decision":"Approve","justification":"ok="}"#;
    let before = app.snapshot();

    let res = cross_site(&app, &path, &bob).header("content-type", "text/plain").body(forged).send().await.unwrap();
    refused(res, StatusCode::FORBIDDEN, "CrossOriginRequest").await;
    let res = bare(&app, &path, &bob).header("content-type", "text/plain").body(forged).send().await.unwrap();
    refused(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType").await;
    let res = bare(&app, &path, &bob).body(forged).send().await.unwrap();
    refused(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType").await;
    let multipart = "--x\r\nContent-Disposition: form-data; name=\"decision\"\r\n\r\nApprove\r\n--x--\r\n";
    let res = bare(&app, &path, &bob)
        .header("content-type", "multipart/form-data; boundary=x")
        .body(multipart)
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType").await;
    // Well-formed JSON or a form from a session, but without the page's token.
    let res =
        bare(&app, &path, &bob).json(&json!({"decision": "Approve", "justification": "ok"})).send().await.unwrap();
    refused(res, StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
    let res = bare(&app, &path, &bob).form(&[("decision", "Approve"), ("justification", "ok")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "a form gets the refusal page");
    // `Origin: null` (a sandboxed frame, a data: URL) is nobody's own page.
    let res = bare(&app, &path, &bob).header("origin", "null").json(&json!({})).send().await.unwrap();
    refused(res, StatusCode::FORBIDDEN, "CrossOriginRequest").await;
    // A sibling site is another site too.
    let res = bare(&app, &path, &bob).header("sec-fetch-site", "same-site").json(&json!({})).send().await.unwrap();
    refused(res, StatusCode::FORBIDDEN, "CrossOriginRequest").await;
    assert_eq!(app.snapshot(), before, "every refusal changed nothing");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "PendingApproval");

    // The approver's own page: its token, from our own origin, as JSON or as the page's form.
    let page = app
        .client
        .get(format!("{}{path}", app.base))
        .header("cookie", &bob)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let token = csrf_from(page).await;
    let res = bare(&app, &path, &bob)
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", &token)
        .json(&json!({"decision": "Approve", "justification": "checked INC-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");
}

/// Item 1 on every other session-authenticated change: requesting, deactivating, cancelling,
/// extending and confirming, bodiless or not.
#[tokio::test]
async fn no_session_change_happens_without_its_token() {
    let app = spawn_app().await;
    let alice = session(&app, ALICE);
    let active = app.activate(&app.token(ALICE), reader_sub1()).await;
    let pending = app.activate(&app.token(ALICE), prod_contributor()).await;
    let (_, waiting) = app
        .post(
            &app.broker(BROKER_APP),
            "/api/activations",
            json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB2}/resourceGroups/secure"), "duration": "PT1H", "justification": "INC-9", "principalId": ALICE}),
        )
        .await;
    let link = waiting["confirmationUrl"].as_str().unwrap().trim_start_matches(&app.base).to_owned();
    let before = app.snapshot();
    let changes = [
        ("/api/activations".to_owned(), Some(reader_sub1_rg("x"))),
        (format!("/api/activations/{}/deactivate", id_of(&active)), None),
        (format!("/api/activations/{}/cancel", id_of(&pending)), None),
        (format!("/api/activations/{}/extend", id_of(&active)), Some(json!({"duration": "PT30M"}))),
        (link.clone(), None),
    ];
    for (path, body) in &changes {
        // A bodiless (or JSON) post started by another site.
        let mut req = cross_site(&app, path, &alice);
        if let Some(b) = body {
            req = req.json(b);
        }
        refused(req.send().await.unwrap(), StatusCode::FORBIDDEN, "CrossOriginRequest").await;
        // The same without provenance headers: the token is still missing.
        let mut req = bare(&app, path, &alice);
        if let Some(b) = body {
            req = req.json(b);
        }
        refused(req.send().await.unwrap(), StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
        // A text/plain body that parses as JSON.
        let res = bare(&app, path, &alice)
            .header("content-type", "text/plain")
            .body(body.as_ref().map_or_else(|| "{}".to_owned(), Value::to_string))
            .send()
            .await
            .unwrap();
        refused(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType").await;
    }
    // A token for one subject is worthless for another.
    let for_active = csrf_from(
        app.client
            .get(format!("{}/api/activations/{}", app.base, id_of(&active)))
            .header("cookie", &alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let res = bare(&app, &format!("/api/activations/{}/cancel", id_of(&pending)), &alice)
        .header("x-csrf-token", &for_active)
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
    assert_eq!(app.snapshot(), before, "every refusal changed nothing");

    // With the token, from the session, the same changes go through.
    let res = bare(&app, &format!("/api/activations/{}/deactivate", id_of(&active)), &alice)
        .header("origin", &app.base)
        .header("x-csrf-token", &for_active)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let new_token = csrf_from(
        app.client.get(format!("{}/api/eligibilities", app.base)).header("cookie", &alice).send().await.unwrap(),
    )
    .await;
    let res = bare(&app, "/api/activations", &alice)
        .header("x-csrf-token", &new_token)
        .json(&reader_sub1_rg("y"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // Bearer callers (Teams, Logic Apps, scripts) need no token.
    let (status, _) =
        app.post(&app.token(ALICE), &format!("/api/activations/{}/cancel", id_of(&pending)), json!({})).await;
    assert_eq!(status, StatusCode::OK);
}

/// The token's bindings, each tried with a token that is valid for something else: another
/// caller's, another kind of change's, a JSON-only route given it in a form — and headers sent
/// twice, so that one check might read one value and something else the other.
#[tokio::test]
async fn a_token_serves_only_its_caller_its_change_and_its_media_type() {
    let app = spawn_app().await;
    let a = app.activate(&app.token(ALICE), prod_contributor()).await;
    let id = id_of(&a);
    let path = format!("/api/approvals/{id}");
    let (alice, bob, carol) = (session(&app, ALICE), session(&app, BOB), session(&app, CAROL));
    let read = |cookie: &str, path: &str| {
        app.client
            .get(format!("{}{path}", app.base))
            .header("cookie", cookie)
            .header("accept", "application/json")
            .send()
    };
    let bobs = csrf_from(read(&bob, &path).await.unwrap()).await;
    let alices = csrf_from(read(&alice, &format!("/api/activations/{id}")).await.unwrap()).await;
    let decision = json!({"decision": "Approve", "justification": "checked INC-1"});
    let before = app.snapshot();

    // Bob's token in Carol's session (she is an approver too).
    let res = bare(&app, &path, &carol).header("x-csrf-token", &bobs).json(&decision).send().await.unwrap();
    refused(res, StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
    // Alice's token for her activation, on the approval of that same activation.
    let res = bare(&app, &path, &alice).header("x-csrf-token", &alices).json(&decision).send().await.unwrap();
    refused(res, StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
    // A form carrying a valid token, to a route that takes JSON only.
    let res = bare(&app, &format!("/api/activations/{id}/cancel"), &alice)
        .form(&[("csrf", alices.as_str())])
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType").await;
    // Our origin and another site's; a valid token and a forged one.
    let res = bare(&app, &path, &bob)
        .header("origin", &app.base)
        .header("origin", EVIL)
        .header("x-csrf-token", &bobs)
        .json(&decision)
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::BAD_REQUEST, "DuplicateHeader").await;
    let res = bare(&app, &path, &bob)
        .header("x-csrf-token", &bobs)
        .header("x-csrf-token", "0.forged")
        .json(&decision)
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::BAD_REQUEST, "DuplicateHeader").await;
    assert_eq!(app.snapshot(), before, "every refusal changed nothing");

    // Each token does what it was made for.
    let res = bare(&app, &path, &bob).header("x-csrf-token", &bobs).json(&decision).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.activation(&id).await["status"], "Active");
}

fn reader_sub1_rg(rg: &str) -> Value {
    json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/{rg}"), "duration": "PT1H"})
}

/// Item 1 with Easy Auth: the App Service session cookie arrives as `X-MS-CLIENT-PRINCIPAL`, which
/// is a browser session like the dev cookie — even next to an `Authorization` header that is not
/// a bearer token.
#[tokio::test]
async fn an_easy_auth_session_needs_the_token_too() {
    let entra = FakeEntra::start().await;
    let app = crate::identity::easyauth_app(&entra, true).await;
    let principal = crate::identity::principal_header(&[
        ("oid", ALICE),
        ("tid", crate::support::fake_entra::TENANT),
        ("http://schemas.microsoft.com/claims/authnmethodsreferences", "mfa"),
    ]);
    let before = app.snapshot();
    for authorization in [None, Some("Basic YWxpY2U6cGFzcw=="), Some("Bearer")] {
        let mut req = app
            .client
            .post(format!("{}/api/activations", app.base))
            .header("X-MS-CLIENT-PRINCIPAL", &principal)
            .json(&reader_sub1());
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        refused(req.send().await.unwrap(), StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
    }
    assert_eq!(app.snapshot(), before);
    let token = csrf_from(
        app.client
            .get(format!("{}/api/eligibilities", app.base))
            .header("X-MS-CLIENT-PRINCIPAL", &principal)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let res = app
        .client
        .post(format!("{}/api/activations", app.base))
        .header("X-MS-CLIENT-PRINCIPAL", &principal)
        .header("x-csrf-token", token)
        .json(&reader_sub1())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

/// Item 5: dev identity with real access, or listening beyond loopback, refuses to start.
#[tokio::test]
async fn the_dev_identity_refuses_to_start_unless_everything_is_local() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), test_policy()).unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(process::exe());
        command
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", process::free_port().to_string())
            .env("ELEVATE_POLICY_FILE", dir.path().join("policy.yaml"));
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    for (args, env) in [
        (&["serve", "--bind", "0.0.0.0"][..], &[][..]),
        (&["serve", "--bind", "::"][..], &[][..]),
        (&["serve"][..], &[("ELEVATE_PROVIDER", "arm")][..]),
        (&["serve"][..], &[("ELEVATE_PROVIDER", "arm"), ("ELEVATE_ARM_ENDPOINT", "https://management.azure.com")][..]),
    ] {
        let out = run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} started");
        assert!(stderr.contains("ELEVATE_AUTH_MODE"), "{stderr}");
    }
}

/// Item 6: standalone, `/expiry-sweeper` does not exist; anonymous callers cannot run a sweep or
/// read its report.
#[tokio::test]
async fn the_sweeper_route_exists_only_under_the_functions_host() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), test_policy()).unwrap();
    let env = [("ELEVATE_POLICY_FILE", dir.path().join("policy.yaml").display().to_string())];
    let standalone = process::start(dir.path(), &["serve".to_owned()], &env).await;
    let client = http_client();
    let res = client
        .post(format!("{}/expiry-sweeper", standalone.base))
        .json(&timer_payload(false, true))
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::NOT_FOUND, "RouteNotFound").await;
    drop(standalone);
    let env = [env[0].clone(), ("ELEVATE_AUTH_MODE", "dev".to_owned())];
    let hosted = process::start(dir.path(), &["serve".to_owned(), "--functions-host".to_owned()], &env).await;
    let res =
        client.post(format!("{}/expiry-sweeper", hosted.base)).json(&timer_payload(false, true)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Item 7: a discovery document's `jwks_uri` is judged by the host the HTTP client would reach,
/// not by the text after the last `@`.
#[tokio::test]
async fn a_jwks_uri_is_judged_by_the_host_the_client_would_reach() {
    let entra = FakeEntra::start().await;
    let authority = entra.authority();
    let port_and_path = authority.trim_start_matches("http://127.0.0.1");
    entra.set_jwks_uri(&format!("http://evil.example\\@127.0.0.1{port_and_path}/discovery/v2.0/keys"));
    let authenticator = EntraAuthenticator::new(crate::identity::settings(&entra)).unwrap();
    let err = authenticator.refresh(start(), false).await.unwrap_err();
    assert!(err.to_string().contains("jwks_uri") && err.to_string().contains("loopback"), "{err}");
    assert_eq!(entra.key_fetches(), 0, "nothing was fetched");
    let err = elevate::config::Settings::from_env(
        elevate::config::RunMode::Standalone,
        |k| (k == "ELEVATE_TEAMS_WEBHOOK_URL").then(|| "http://evil.example\\@127.0.0.1/hook".to_owned()),
        None,
    )
    .unwrap_err();
    assert_eq!(err.variable, "ELEVATE_TEAMS_WEBHOOK_URL");
}

/// Item 8: a confirmation link is never logged whole, however the path is spelled.
#[tokio::test]
async fn confirmation_links_are_not_logged_under_any_spelling() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), test_policy()).unwrap();
    let env = [("ELEVATE_POLICY_FILE", dir.path().join("policy.yaml").display().to_string())];
    let elevate = process::start(dir.path(), &["serve".to_owned()], &env).await;
    let client = http_client();
    let secret = "eyJub25jZSI6IlNFQ1JFVC1KVVNUSUZJQ0FUSU9OIn0.c2lnbmF0dXJl";
    for prefix in ["/api/confirmations/", "/API/Confirmations/", "/api/CONFIRMATIONS/", "/api/%63onfirmations/"] {
        let _ = client.get(format!("{}{prefix}{secret}", elevate.base)).send().await.unwrap();
        let _ = client.post(format!("{}{prefix}{secret}", elevate.base)).send().await.unwrap();
    }
    let _ = client.get(format!("{}/", elevate.base)).send().await.unwrap();
    let log = std::fs::read_to_string(&elevate.log).unwrap();
    assert!(log.contains("onfirmations/eyJub25j…"), "the requests were logged: {log}");
    assert!(!log.contains("SECRET") && !log.contains("c2lnbmF0dXJl") && !log.contains("IlNF"), "{log}");
}

/// Item 10: a 201 from ARM whose body cannot be checked, or names another assignment, is never a
/// Failed activation with the assignment left behind: it is revoked by name at once.
#[tokio::test]
async fn a_grant_arm_cannot_confirm_is_revoked_by_name() {
    let fake = FakeAzure::start().await;
    let app = spawn_arm_app(&fake).await;
    for (scope, garbled) in [
        (format!("{SUB1}/resourceGroups/a"), json!({"id": "truncated"})),
        (format!("{SUB1}/resourceGroups/b"), json!({"id": "/x", "name": "not-a-guid", "properties": {}})),
        // Well-formed, but another principal's assignment under another name.
        (
            format!("{SUB1}/resourceGroups/c"),
            json!({"id": format!("{SUB1}/resourceGroups/c/providers/Microsoft.Authorization/roleAssignments/0b0b0b0b-0000-4000-8000-000000000000"),
                   "name": "0b0b0b0b-0000-4000-8000-000000000000",
                   "properties": {"roleDefinitionId": format!("{SUB1}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
                                  "principalId": BOB, "scope": format!("{SUB1}/resourceGroups/c")}}),
        ),
    ] {
        fake.garble_next_put(garbled);
        let a = app
            .activate(&app.token(ALICE), json!({"roleDefinitionId": "Reader", "scope": scope, "duration": "PT1H"}))
            .await;
        assert_eq!(a["status"], "Failed", "{a}");
        assert_eq!(a["failure"]["code"], "GrantUnconfirmed", "{a}");
        assert!(fake.assignments().is_empty(), "revoked by name at once");
    }
    // When the revocation fails too, it stays Provisioning (due), and the next sweep settles it:
    // the assignment read back under its name is the one asked for, so it is the grant.
    fake.garble_next_put(json!({}));
    fake.set_sticky_deletes(true);
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(a["status"], "Provisioning", "{a}");
    assert_eq!(fake.assignments().len(), 1);
    fake.set_sticky_deletes(false);
    app.advance(3);
    let report = app.sweep().await;
    assert_eq!(report["provisioned"], 1, "{report}");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");
    app.advance(60);
    assert_eq!(app.sweep().await["expired"], 1);
    assert!(fake.assignments().is_empty());
}

/// Item 11: a notice queued while a delivery pass runs goes out in that same call, not at the
/// next sweep: each pass reads the clock.
#[tokio::test]
async fn a_notice_queued_during_a_delivery_pass_goes_out_without_a_sweep() {
    let hook = FakeWebhook::start().await;
    let settings = elevate::config::NotificationSettings { teams: None, ..crate::notify::notifications(&hook) };
    let app = spawn_with_notifications(&test_policy(), settings).await;
    let release = hook.hold_next();
    let first = app.activate(&app.token(ALICE), reader_sub1()).await;
    for _ in 0..200 {
        if hook.attempts() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(hook.attempts(), 1, "the first delivery is under way and held");
    // A minute later, while that pass is still running, another change queues its notices.
    app.advance(1);
    let second = app.activate(&app.token(ALICE), prod_contributor()).await;
    release.send(()).unwrap();
    let events = hook.wait_for("events", 2).await;
    let subjects: Vec<&str> = events.iter().filter_map(|e| e["subject"].as_str()).collect();
    assert!(
        subjects.iter().any(|s| s.contains(&id_of(&second))),
        "the second change's notice went out without a sweep: {subjects:?} (first {})",
        id_of(&first)
    );
}

/// Grants wait at a gate the test opens; everything else goes straight to the local simulation.
struct GatedGrants {
    inner: elevate::adapters::access::local::LocalAccessProvider,
    gate: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

#[async_trait::async_trait]
impl elevate::service::ports::AccessProvider for GatedGrants {
    async fn grant(
        &self,
        spec: &elevate::service::ports::AssignmentSpec,
    ) -> Result<elevate::service::ports::Assignment, elevate::service::ports::AccessError> {
        let gate = self.gate.lock().await.take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        self.inner.grant(spec).await
    }
    async fn revoke(&self, grant: &elevate::service::ports::Grant) -> Result<(), elevate::service::ports::AccessError> {
        self.inner.revoke(grant).await
    }
    async fn inspect(
        &self,
        grant: &elevate::service::ports::Grant,
    ) -> Result<Option<elevate::service::ports::Assignment>, elevate::service::ports::AccessError> {
        self.inner.inspect(grant).await
    }
    async fn list_managed(
        &self,
        scope: &elevate::domain::scope::Scope,
    ) -> Result<Vec<elevate::service::ports::Assignment>, elevate::service::ports::AccessError> {
        self.inner.list_managed(scope).await
    }
    fn kind(&self) -> &'static str {
        "gated"
    }
}

/// The review's race (item 10 follow-up): a grant that lands after the activation was finished
/// by someone else must not leave access behind. Here the request's grant is slow; meanwhile the
/// activation runs out of time and the sweeper closes it; then the grant lands.
#[tokio::test]
async fn a_grant_that_lands_after_the_activation_finished_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let local = elevate::adapters::access::local::LocalAccessProvider::open(&dir.path().join("sim.db")).unwrap();
    let (open_gate, gate) = tokio::sync::oneshot::channel();
    let gated = std::sync::Arc::new(GatedGrants { inner: local, gate: tokio::sync::Mutex::new(Some(gate)) });
    let app = spawn_app_on(&test_policy(), Some(gated.clone()), None, start()).await;
    let request = {
        let (client, url, token) = (app.client.clone(), format!("{}/api/activations", app.base), app.token(ALICE));
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT5M"}))
                .send()
                .await
        })
    };
    // The grant is in flight; time runs out, and the sweeper closes the activation.
    let listed = loop {
        let (_, listed) = app.get(&app.admin(), "/api/activations?mine=false").await;
        if listed["value"].as_array().is_some_and(|v| !v.is_empty()) {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let id = id_of(&listed["value"][0]);
    app.advance(6);
    assert_eq!(app.sweep().await["expired"], 1);
    assert_eq!(app.activation(&id).await["status"], "Expired");
    // Now the grant lands, after the end: it is taken back at once.
    open_gate.send(()).unwrap();
    let answered = request.await.unwrap().unwrap();
    assert_eq!(answered.status(), StatusCode::CREATED);
    assert!(gated.inner.all().await.unwrap().is_empty(), "nothing outlives the finished activation");
}

/// Review follow-up: a provenance header that is present but not text counts as another site.
#[tokio::test]
async fn unreadable_provenance_headers_count_as_another_site() {
    let app = spawn_app().await;
    let before = app.snapshot();
    for (name, value) in [("origin", &b"http://evil.example\xff"[..]), ("sec-fetch-site", &b"cross-site\xff"[..])] {
        let request = [
            b"POST /api/activations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n".to_vec(),
            format!("Cookie: {}\r\n{name}: ", session(&app, ALICE)).into_bytes(),
            value.to_vec(),
            b"\r\n\r\n{}".to_vec(),
        ]
        .concat();
        let (status, body) = raw_http(&app.base, request).await;
        assert_eq!(status, 403, "{name}: {body}");
        assert!(body.contains("CrossOriginRequest"), "{body}");
    }
    assert_eq!(app.snapshot(), before);
}

/// Review follow-up: a CSRF token is good for twelve hours, not for ever; a page left open longer
/// must be reloaded.
#[tokio::test]
async fn a_csrf_token_expires() {
    let app = spawn_app().await;
    let alice = session(&app, ALICE);
    let token = csrf_from(
        app.client.get(format!("{}/api/eligibilities", app.base)).header("cookie", &alice).send().await.unwrap(),
    )
    .await;
    assert!(token.split_once('.').is_some_and(|(at, mac)| at.parse::<i64>().is_ok() && mac.len() == 64), "{token}");
    app.advance(12 * 60 + 1);
    let alice = session(&app, ALICE);
    let before = app.snapshot();
    let res = bare(&app, "/api/activations", &alice)
        .header("x-csrf-token", &token)
        .json(&reader_sub1())
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
    assert_eq!(app.snapshot(), before);
    // A token dated ahead of the clock is refused too.
    let (issued, mac) = token.split_once('.').unwrap();
    let future = format!("{}.{mac}", issued.parse::<i64>().unwrap() + 24 * 3600);
    let res = bare(&app, "/api/activations", &alice)
        .header("x-csrf-token", future)
        .json(&reader_sub1())
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
    assert_eq!(app.snapshot(), before);
}

/// The access-review entry points under the same attacks: a reviewer's session cannot be made to
/// decide on an item, nor an admin's to lift a suspension, from another site, with a text/plain
/// or form body, or without the CSRF token; the store (review items and suspensions included)
/// is unchanged.
#[tokio::test]
async fn another_site_cannot_decide_a_review_item_or_lift_a_suspension() {
    let policy = format!(
        "{}reviews:\n  - id: quarterly\n    rules: [prod-one]\n    reviewers: [user:{BOB}]\n    startsAt: 2026-11-25T12:00:00Z\n    durationDays: 14\n",
        test_policy()
    );
    let app = spawn_app_with(&policy).await;
    let (status, pass) = app.send(reqwest::Method::POST, None, "/governance", Some(timer_payload(false, true))).await;
    assert_eq!(status, StatusCode::OK, "{pass}");
    let before = app.snapshot();
    let bob = session(&app, BOB);
    let dana = session(&app, DANA);
    let decide = "/api/reviews/quarterly-20261125/items/0";
    let decision = r#"{"decision":"remove","justification":"forged="}"#;
    let lift = "/api/suspensions/lift";
    let lifting = format!(r#"{{"ruleId":"prod-one","principal":"user:{ALICE}","justification":"forged="}}"#);

    for (path, cookie, body) in [(decide, &bob, decision.to_owned()), (lift, &dana, lifting)] {
        let res = cross_site(&app, path, cookie)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        refused(res, StatusCode::FORBIDDEN, "CrossOriginRequest").await;
        let res =
            bare(&app, path, cookie).header("content-type", "text/plain").body(body.clone()).send().await.unwrap();
        refused(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType").await;
        let res = bare(&app, path, cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        refused(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType").await;
        let res = bare(&app, path, cookie).header("content-type", "application/json").body(body).send().await.unwrap();
        refused(res, StatusCode::FORBIDDEN, "CsrfTokenInvalid").await;
    }
    // The portal's review form: a form post from another site, or without its token.
    let portal = "/api/portal/reviews/quarterly-20261125/items/0";
    let form = "decision=remove&justification=forged";
    let res = cross_site(&app, portal, &bob)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = bare(&app, portal, &bob)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot(), before, "nothing changed");
}
