//! The portal over HTTP as a browser drives it (cookie session, form posts with their tokens,
//! redirects not followed), `validateOnly`, `/api/me`, and the audit's filters and exports. The
//! real-browser pass and the accessibility scan are in `portal_browser`.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::*;

/// A signed-in browser: the dev cookie, and `Origin` as Elevate's own pages send it.
struct Session<'a> {
    app: &'a TestApp,
    cookie: String,
}

struct Page {
    status: StatusCode,
    html: String,
    headers: HeaderMap,
}

impl Page {
    fn location(&self) -> String {
        self.headers.get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }
}

impl<'a> Session<'a> {
    fn new(app: &'a TestApp, token: &str) -> Self {
        Session { app, cookie: format!("elevate_dev_token={token}") }
    }

    async fn get(&self, path: &str) -> Page {
        let res = self
            .app
            .client
            .get(format!("{}{path}", self.app.base))
            .header("cookie", &self.cookie)
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        Page { status, headers, html: res.text().await.unwrap() }
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let res = self
            .app
            .client
            .post(format!("{}{path}", self.app.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.app.base)
            .header("accept", "text/html")
            .form(fields)
            .send()
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        Page { status, headers, html: res.text().await.unwrap() }
    }
}

/// The value of the first `<input name="{name}" value="…">` at or after `from` in `html`.
fn input_value(html: &str, name: &str, from: usize) -> String {
    let at = html[from..].find(&format!("name=\"{name}\"")).map(|i| i + from).expect(name);
    let rest = &html[at..];
    let value = rest.find("value=\"").unwrap() + 7;
    let end = rest[value..].find('"').unwrap();
    rest[value..value + end].replace("&amp;", "&")
}

/// Where the form of `rule` starts on My roles, and its element id prefix (`r3`).
fn rule_form(html: &str, rule: &str) -> (usize, String) {
    let at = html.find(&format!("name=\"rule\" value=\"{rule}\"")).unwrap_or_else(|| panic!("no form for {rule}"));
    let section = html[..at].rfind("<section class=\"rule\" id=\"").unwrap();
    let id_start = section + "<section class=\"rule\" id=\"".len();
    let id = html[id_start..].split('"').next().unwrap().to_owned();
    (section, id)
}

/// The fields of `rule`'s form as the page renders them, to be changed by the test.
fn form_of(page: &str, rule: &str) -> Vec<(String, String)> {
    let (from, _) = rule_form(page, rule);
    ["csrf", "rule", "key", "role", "scope", "duration"]
        .iter()
        .map(|name| ((*name).to_owned(), input_value(page, name, from)))
        .collect()
}

fn with(mut fields: Vec<(String, String)>, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in changes {
        fields.retain(|(name, _)| name != k);
        fields.push(((*k).to_owned(), (*v).to_owned()));
    }
    fields
}

fn refs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn a_browser_is_sent_to_the_portal_and_scripts_keep_their_answers() {
    let app = spawn_app().await;
    for path in ["/", "/api/", "/api"] {
        let res = app.client.get(format!("{}{path}", app.base)).header("accept", "text/html").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(res.headers()["location"], "/api/portal/roles");
        let (status, body) = app.send(reqwest::Method::GET, None, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body["status"], "ok", "{path}: {body}");
    }
    // Not signed in: to the sign-in page, and back afterwards.
    let res = app
        .client
        .get(format!("{}/api/portal/access?x=1", app.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/api/portal/sign-in?returnTo=%2Fapi%2Fportal%2Faccess%3Fx%3D1");
    // A JSON client asking a page: an error it can parse.
    let res = app
        .client
        .get(format!("{}/api/portal/roles", app.base))
        .bearer_auth(app.token(ALICE))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NotAcceptable");
}

#[tokio::test]
async fn validate_only_says_what_would_happen_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let before = app.snapshot();
    let check = |body: Value| {
        let app = &app;
        let token = alice.clone();
        async move { app.post(&token, "/api/activations?validateOnly=true", body).await }
    };

    let (status, p) =
        check(json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "deploy"}))
            .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["validateOnly"], true);
    assert_eq!(p["ready"], true);
    assert_eq!(p["wouldBe"], "PendingApproval");
    assert_eq!(p["ruleId"], "prod-one");
    assert_eq!(p["roleName"], "Contributor");
    assert_eq!(p["approval"]["minApprovals"], 1);
    assert_eq!(p["approval"]["approvers"], json!([format!("user:{BOB}"), format!("user:{CAROL}")]));
    assert_eq!(p["startAt"], "2026-11-25T12:00:00Z");
    assert_eq!(p["expiresAt"], "2026-11-25T13:00:00Z");
    assert_eq!(p["needs"], json!([]));

    let (_, p) = check(json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT30M"})).await;
    assert_eq!(
        (p["wouldBe"].as_str(), p["ready"].as_bool(), p["approval"].is_null()),
        (Some("Active"), Some(true), true),
        "{p}"
    );

    let (_, p) = check(
        json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT30M", "startAt": "2026-11-25T15:00:00Z"}),
    )
    .await;
    assert_eq!(p["wouldBe"], "Scheduled");
    assert_eq!(p["expiresAt"], "2026-11-25T15:30:00Z");

    // Every unmet term at once, each saying which field meets it.
    let (_, p) = check(json!({"roleDefinitionId": "Storage Blob Data Owner", "scope": SUB1})).await;
    assert_eq!(p["ready"], false, "{p}");
    let needs: Vec<(&str, &str)> = p["needs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["requirement"].as_str().unwrap(), n["target"].as_str().unwrap()))
        .collect();
    assert_eq!(needs, [("justification", "justification"), ("ticket", "ticket")]);
    assert_eq!(p["duration"], "PT2H", "the rule's maximum when none is asked");

    // Proof the sign-in lacks: the claims request to sign in again with.
    let (_, p) = check(json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB2}/resourceGroups/secure"), "justification": "x"})).await;
    let need = &p["needs"][0];
    assert_eq!(need["requirement"], "authContext", "{p}");
    assert_eq!(need["authContext"], "c1");
    use base64::Engine as _;
    let claims = base64::engine::general_purpose::STANDARD.decode(need["claims"].as_str().unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(claims, json!({"access_token": {"acrs": {"essential": true, "value": "c1"}}}));
    let no_mfa = app.mint(elevate::adapters::identity::dev::DevTokenRequest { mfa: false, ..user(ALICE) });
    let (_, p) = app
        .post(&no_mfa, "/api/activations?validateOnly=true", json!({"roleDefinitionId": "Reader", "scope": SUB1}))
        .await;
    assert_eq!(p["needs"][0]["requirement"], "mfa", "{p}");
    assert_eq!(p["ready"], false);

    // What a request could not fix is refused as the request would be.
    let (status, e) = app
        .post(
            &app.token(BOB),
            "/api/activations?validateOnly=true",
            json!({"roleDefinitionId": "Contributor", "scope": SUB2, "justification": "x"}),
        )
        .await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("NotEligible")), "{e}");
    let (status, e) =
        check(json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT9H", "justification": "x"}))
            .await;
    assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("duration")), "{e}");
    let (status, e) = app
        .post(&alice, "/api/activations?validateOnly=maybe", json!({"roleDefinitionId": "Reader", "scope": SUB1}))
        .await;
    assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("validateOnly")), "{e}");
    let (status, e) =
        app.post(&alice, "/api/activations?validate=true", json!({"roleDefinitionId": "Reader", "scope": SUB1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown parameter is not silently a real request: {e}");

    assert_eq!(app.snapshot(), before, "validateOnly stored something");
    let (_, list) = app.get(&alice, "/api/activations").await;
    assert_eq!(list["value"], json!([]));
}

#[tokio::test]
async fn whoami_reads_the_credentials_as_elevate_does() {
    let app = spawn_app().await;
    let (status, me) = app.get(&app.admin(), "/api/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["principalId"], DANA);
    assert_eq!(me["roles"], json!(["Elevate.Admin"]));
    assert_eq!(me["mfa"], true);
    assert_eq!(me["appOnly"], false);
    let (status, e) = app.send(reqwest::Method::GET, None, "/api/me", None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthenticated")));
}

#[tokio::test]
async fn bad_input_through_the_form_is_marked_at_its_field_keeps_the_input_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = Session::new(&app, &app.token(ALICE));
    let page = alice.get("/api/portal/roles").await;
    assert_eq!(page.status, StatusCode::OK);
    let (_, id) = rule_form(&page.html, "prod-one");
    let form = form_of(&page.html, "prod-one");
    let before = app.snapshot();

    let over = alice
        .post("/api/portal/roles", &refs(&with(form.clone(), &[("duration", "PT9H"), ("justification", "keep me")])))
        .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert!(over.html.contains(&format!("id=\"{id}-duration-error\"")), "{}", over.html);
    assert!(over.html.contains(&format!("aria-describedby=\"{id}-duration-hint {id}-duration-error\"")));
    assert!(over.html.contains("exceeds the maximum `PT2H`"));
    assert!(over.html.contains("value=\"PT9H\""), "the input is kept");
    assert!(over.html.contains(">keep me</textarea>"), "the justification is kept");

    let outside =
        alice.post("/api/portal/roles", &refs(&with(form.clone(), &[("scope", SUB1), ("justification", "x")]))).await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    assert!(outside.html.contains(&format!("id=\"{id}-scope-error\"")), "{}", outside.html);
    assert!(outside.html.contains(&format!("value=\"{SUB1}\"")));

    let empty = alice.post("/api/portal/roles", &refs(&with(form.clone(), &[("justification", "  ")]))).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(empty.html.contains(&format!("id=\"{id}-justification-error\"")), "{}", empty.html);
    assert!(empty.html.contains("requires a justification"));

    let garbled = alice
        .post("/api/portal/roles", &refs(&with(form.clone(), &[("duration", "soon"), ("scope", "/nowhere")])))
        .await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);
    assert!(
        garbled.html.contains(&format!("id=\"{id}-duration-error\""))
            && garbled.html.contains(&format!("id=\"{id}-scope-error\""))
    );
    assert!(garbled.html.contains(&format!("href=\"#{id}-scope\"")), "the summary links to the field");

    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn portal_changes_need_the_token_our_origin_and_a_form() {
    let app = spawn_app().await;
    let token = app.token(ALICE);
    let alice = Session::new(&app, &token);
    let page = alice.get("/api/portal/roles").await;
    let form = form_of(&page.html, "self-reader");
    let before = app.snapshot();
    let without = with(form.clone(), &[("csrf", "")]);
    assert_eq!(alice.post("/api/portal/roles", &refs(&without)).await.status, StatusCode::FORBIDDEN);
    // Bob's token on Alice's session is worthless.
    let bob_page = Session::new(&app, &app.token(BOB)).get("/api/portal/roles").await;
    assert!(!bob_page.html.contains("self-reader"), "Bob is not eligible");
    let cross = app
        .client
        .post(format!("{}/api/portal/roles", app.base))
        .header("cookie", &alice.cookie)
        .header("origin", "https://evil.example")
        .form(&refs(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let plain = app
        .client
        .post(format!("{}/api/portal/roles", app.base))
        .header("cookie", &alice.cookie)
        .header("content-type", "text/plain")
        .body(serde_urlencoded::to_string(refs(&form)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Another method is no form post: not past the origin and media-type rules, not at all.
    for method in ["OPTIONS", "PUT", "DELETE", "PATCH"] {
        let res = app
            .client
            .request(method.parse().unwrap(), format!("{}/api/portal/roles", app.base))
            .header("cookie", &alice.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(refs(&form)).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let activation = alice
        .post("/api/portal/activations/00000000-0000-0000-0000-000000000000/deactivate", &[("csrf", "1.00")])
        .await;
    assert_eq!(activation.status, StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn a_requester_checks_activates_extends_and_deactivates_through_forms() {
    let app = spawn_app().await;
    let alice = Session::new(&app, &app.token(ALICE));
    let page = alice.get("/api/portal/roles").await;
    let form = with(form_of(&page.html, "self-reader"), &[("duration", "30m")]);
    let before = app.snapshot();

    let checked = alice.post("/api/portal/roles", &refs(&with(form.clone(), &[("intent", "check")]))).await;
    assert_eq!(checked.status, StatusCode::OK);
    assert!(
        checked.html.contains(
            "<strong>Check:</strong> rule <code>self-reader</code>. It would be <strong>active at once</strong>."
        ),
        "{}",
        checked.html
    );
    assert!(checked.html.contains("would end at 2026-11-25 12:30 UTC"));
    assert_eq!(app.snapshot(), before, "a check stores nothing");

    let made = alice.post("/api/portal/roles", &refs(&with(form.clone(), &[("intent", "activate")]))).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.html);
    let location = made.location();
    let id = location.strip_prefix("/api/portal/access?requested=").expect(&location).to_owned();
    // The same page submitted twice: the same request, not a second one.
    let again = alice.post("/api/portal/roles", &refs(&with(form.clone(), &[("intent", "activate")]))).await;
    assert_eq!(again.location(), location);
    assert_eq!(app.activation(&id).await["status"], "Active");
    assert_eq!(app.activation(&id).await["duration"], "PT30M");

    let access = alice.get(&location).await;
    assert_eq!(access.status, StatusCode::OK);
    assert!(access.html.contains("Deactivate now"));
    assert!(access.html.contains("(in 30 minutes)"), "{}", access.html);
    let extend_at = access.html.find(&format!("/api/portal/activations/{id}/extend")).unwrap();
    let csrf = input_value(&access.html, "csrf", extend_at);
    let too_long =
        alice.post(&format!("/api/portal/activations/{id}/extend"), &[("csrf", &csrf), ("duration", "PT9H")]).await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert!(too_long.html.contains(&format!("id=\"x-{id}-duration-error\"")), "{}", too_long.html);
    assert!(too_long.html.contains("value=\"PT9H\""));
    let extended =
        alice.post(&format!("/api/portal/activations/{id}/extend"), &[("csrf", &csrf), ("duration", "1h")]).await;
    assert_eq!(extended.status, StatusCode::SEE_OTHER, "{}", extended.html);
    assert_eq!(app.activation(&id).await["expiresAt"], "2026-11-25T13:30:00Z");

    let deactivate_at = alice.get("/api/portal/access").await;
    let at = deactivate_at.html.find(&format!("/api/portal/activations/{id}/deactivate")).unwrap();
    let csrf = input_value(&deactivate_at.html, "csrf", at);
    let ended = alice.post(&format!("/api/portal/activations/{id}/deactivate"), &[("csrf", &csrf)]).await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    assert_eq!(ended.location(), "/api/portal/access?done=deactivated");
    assert!(alice.get(&ended.location()).await.html.contains("Done: access ended."));
    let planted = alice.get("/api/portal/access?done=Call+the+helpdesk+at+555&requested=%3Cb%3E").await;
    assert!(
        !planted.html.contains("helpdesk") && !planted.html.contains("Requested."),
        "a link's own text is never shown"
    );
    assert_eq!(app.activation(&id).await["status"], "Deactivated");
    let history = alice.get("/api/portal/access").await;
    assert!(history.html.contains("<td>Deactivated</td>"), "{}", history.html);
    assert!(app.assignments().await.is_empty());
}

#[tokio::test]
async fn a_rule_needing_more_proof_sends_the_user_to_sign_in_again_and_back_to_the_filled_form() {
    let app = spawn_app().await;
    let alice = Session::new(&app, &app.token(ALICE));
    let page = alice.get("/api/portal/roles").await;
    let form = with(form_of(&page.html, "stepped-up"), &[("justification", "INC-7 & more"), ("intent", "activate")]);
    let before = app.snapshot();
    let sent = alice.post("/api/portal/roles", &refs(&form)).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.html);
    let sign_in = sent.location();
    assert!(
        sign_in.starts_with("/api/portal/sign-in?returnTo=%2Fapi%2Fportal%2Froles%3Frule%3Dstepped-up"),
        "{sign_in}"
    );
    assert!(sign_in.ends_with("&mfa=true&acrs=c1"), "{sign_in}");
    assert_eq!(app.snapshot(), before);

    let page = alice.get(&sign_in).await;
    assert!(page.html.contains("authentication context <code>c1</code>"));
    let back = input_value(&page.html, "returnTo", 0);
    assert!(back.starts_with("/api/portal/roles?rule=stepped-up"), "{back}");
    assert!(page.html.contains("id=\"acrs\" name=\"acrs\" value=\"c1\""));
    let signed =
        alice.post("/dev/sign-in", &[("returnTo", &back), ("as", ALICE), ("mfa", "true"), ("acrs", "c1")]).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.html);
    assert_eq!(signed.location(), back);
    let cookie = signed.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let token = cookie.trim_start_matches("elevate_dev_token=").split(';').next().unwrap().to_owned();
    let stepped = Session::new(&app, &token);
    let filled = stepped.get(&back).await;
    assert!(filled.html.contains("Check every field before you submit"), "{}", filled.html);
    assert!(!back.contains("INC-7") && !sign_in.contains("INC-7"), "the justification never travels in an address");
    assert!(filled.html.contains(&format!("value=\"{SUB2}/resourceGroups/secure\"")), "the scope is kept");
    let form = with(form_of(&filled.html, "stepped-up"), &[("justification", "INC-7 & more"), ("intent", "activate")]);
    let made = stepped.post("/api/portal/roles", &refs(&form)).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.html);
    assert!(made.location().starts_with("/api/portal/access?requested="));
    // Never back to another site.
    let evil = alice.post("/dev/sign-in", &[("returnTo", "//evil.example/x"), ("as", ALICE)]).await;
    assert_eq!(evil.location(), "/api/portal/roles");
}

#[tokio::test]
async fn approvals_audit_and_policy_pages_show_each_person_what_they_may_see() {
    let app = spawn_app().await;
    let alice_token = app.token(ALICE);
    let pending = app
        .activate(&alice_token, json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "=HYPERLINK(\"http://evil\")"}))
        .await;
    let id = id_of(&pending);
    let bob = Session::new(&app, &app.token(BOB));
    let inbox = bob.get("/api/portal/approvals").await;
    assert!(inbox.html.contains(&format!("href=\"/api/approvals/{id}\"")), "{}", inbox.html);
    assert!(inbox.html.contains("=HYPERLINK(&quot;http://evil&quot;)"), "escaped");
    assert_eq!(app.decide(&app.token(BOB), &id, "Approve").await.0, StatusCode::OK);
    let decided = bob.get("/api/portal/approvals").await;
    assert!(decided.html.contains("Nothing waits for your decision."));
    assert!(decided.html.contains("<td>Approved <time"), "{}", decided.html);

    let alice = Session::new(&app, &alice_token);
    assert_eq!(alice.get("/api/portal/audit").await.status, StatusCode::FORBIDDEN);
    assert_eq!(alice.get("/api/portal/policy").await.status, StatusCode::FORBIDDEN);
    assert!(
        !alice.get("/api/portal/roles").await.html.contains("/api/portal/audit"),
        "no link to what she may not open"
    );

    let dana = Session::new(&app, &app.admin());
    let audit = dana.get("/api/portal/audit?action=Approved&principalId=&since=2026-11-25T11%3A00").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.html);
    assert!(audit.html.contains(&format!("href=\"/api/approvals/{id}\"")));
    assert!(
        audit.html.contains(&format!(
            "<a href=\"/api/approvals/{id}\">Approved <span class=\"hint\">request {id}</span></a>"
        )),
        "{}",
        audit.html
    );
    assert!(!audit.html.contains(">Requested <span"), "{}", audit.html);
    let bad = dana.get("/api/portal/audit?since=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.html.contains("id=\"f-since-error\""), "{}", bad.html);
    let policy = dana.get("/api/portal/policy").await;
    assert!(policy.html.contains("<code>prod-one</code>") && policy.html.contains(BOB));

    // The exports hold the same events as the API, and a spreadsheet runs none of them.
    let (_, api) = app.get(&app.admin(), &format!("/api/audit?activationId={id}")).await;
    let events = api["value"].as_array().unwrap();
    assert!(events.len() >= 3, "{api}");
    let csv = dana.get(&format!("/api/portal/audit/export?format=csv&activationId={id}")).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(csv.headers["content-disposition"], "attachment; filename=\"elevate-audit.csv\"");
    let lines: Vec<&str> = csv.html.trim_end().split("\r\n").collect();
    assert!(lines[0].starts_with("\"at\",\"action\",\"activationId\""));
    assert_eq!(lines.len(), events.len() + 1);
    assert!(csv.html.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""), "{}", csv.html);
    let jsonl = dana.get(&format!("/api/portal/audit/export?format=jsonl&activationId={id}")).await;
    let parsed: Vec<Value> = jsonl.html.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(&parsed, events);
    assert_eq!(dana.get("/api/portal/audit/export?format=xml").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_audit_api_filters_by_role_scope_action_and_time() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let reader = app.activate(&alice, json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"})).await;
    app.advance(10);
    let rg = app
        .activate(&alice, json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB1}/resourceGroups/app"), "duration": "PT1H", "justification": "x"}))
        .await;
    let admin = app.admin();
    let ids = |v: &Value| {
        let mut ids: Vec<String> =
            v["value"].as_array().unwrap().iter().map(|e| e["activationId"].as_str().unwrap().to_owned()).collect();
        ids.dedup();
        ids
    };
    let (_, by_role) = app.get(&admin, "/api/audit?roleDefinitionId=Reader").await;
    assert_eq!(ids(&by_role), [id_of(&reader)], "{by_role}");
    assert_eq!(by_role["value"][0]["scope"], SUB1);
    assert_eq!(by_role["value"][0]["roleDefinitionId"], "acdd72a7-3385-48ef-bd42-f606fba81ae7");
    let (_, by_scope) = app.get(&admin, &format!("/api/audit?scope={SUB1}/resourceGroups/app")).await;
    assert_eq!(ids(&by_scope), [id_of(&rg)]);
    let (_, whole_sub) = app.get(&admin, &format!("/api/audit?scope={SUB1}&action=Requested")).await;
    assert_eq!(whole_sub["value"].as_array().unwrap().len(), 2, "{whole_sub}");
    let (_, until) = app.get(&admin, "/api/audit?until=2026-11-25T12:05:00Z").await;
    assert_eq!(ids(&until), [id_of(&reader)]);
    let (status, e) = app.get(&admin, "/api/audit?action=Exploded").await;
    assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("action")));
    let (status, e) = app.get(&admin, "/api/audit?since=2026-11-25T13:00:00Z&until=2026-11-25T12:00:00Z").await;
    assert_eq!((status, e["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("until")));
}
