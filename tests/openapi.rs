//! The OpenAPI document (`GET /api/openapi.json`) says exactly what the server does, because
//! Logic Apps custom connectors are generated from it: every `/api` route the router has is
//! documented with the methods it allows and vice versa; every operation lists each status the
//! edge can answer, with the content types it answers them in; the enums are the domain's; and
//! what a pattern allows, the parsers accept (while what the issue found refused — an empty
//! `roleDefinitionId` or `justification`, a confirmation token of `0` — is no longer
//! schema-valid). schemathesis (scripts/schemathesis) then checks the running server against it.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use elevate::domain::activation::{Action, Status};
use elevate::domain::duration::IsoDuration;
use elevate::domain::ids::{
    BUILT_IN_ROLES, DIRECTORY_ROLES, GROUP_ROLES, Justification, ParseError, PrincipalId, RuleId, TicketNumber,
    TicketSystem,
};
use elevate::domain::scope::{Scope, ScopeKind};
use elevate::service::ports::IdempotencyKey;

use crate::support::{ALICE, BROKER_APP, SUB1, spawn_app};

fn document() -> Value {
    serde_json::from_str(elevate::http::openapi::DOCUMENT).unwrap()
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(r) => resolve(doc, doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling {r}"))),
        None => value,
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// `(method, path template with every parameter as `{}`)` of each documented operation.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            out.insert((method.to_ascii_uppercase(), normalized(path)));
        }
    }
    out
}

fn normalized(path: &str) -> String {
    path.split('/').map(|s| if s.starts_with('{') { "{}" } else { s }).collect::<Vec<_>>().join("/")
}

/// `/api` routes that are not part of the API, and why. Each must still exist in the router.
const NOT_THE_API: [(&str, &str); 2] = [
    ("/api", "the readiness answer the Functions host probes (also at `/`)"),
    ("/api/portal/*", "the portal's HTML pages and forms, for browsers (tests/portal.rs)"),
];

/// The router's `/api` routes with the methods each allows, read from the `match` in
/// `src/http/mod.rs`: each arm is `[segments] => match *m { ... _ => allow("GET, POST") }`.
fn routed() -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs")).unwrap();
    let body = source.split("async fn route(").nth(1).unwrap().split("\nfn loggable(").next().unwrap();
    let lines: Vec<&str> = body.lines().collect();
    let mut routes = BTreeSet::new();
    let mut skipped = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        // An arm's pattern: the slice patterns of the segments, possibly several (`[""] | ["api"]`).
        if !line.starts_with('[') || !line.contains("=>") {
            continue;
        }
        let pattern = line.split("=>").next().unwrap().split(" if ").next().unwrap();
        for alternative in pattern.split(" | [").map(|a| a.trim_start_matches('[')) {
            let inner = alternative.trim().trim_end_matches(']');
            let segments = split_top_level(inner);
            if segments.first().map(String::as_str) != Some("\"api\"") {
                continue;
            }
            if segments.iter().any(|s| s.ends_with("..")) {
                let fixed: Vec<&str> =
                    segments.iter().filter(|s| !s.ends_with("..")).map(|s| s.trim_matches('"')).collect();
                skipped.insert(format!("/{}/*", fixed.join("/")));
                continue;
            }
            let methods = lines[i..]
                .iter()
                .find_map(|l| l.split("allow(\"").nth(1).map(|rest| rest.split('"').next().unwrap().to_owned()))
                .unwrap_or_else(|| panic!("no allow(..) after the arm {line}"));
            for path in templates(&segments) {
                if path == "/api" {
                    skipped.insert(path.clone());
                    continue;
                }
                for method in methods.split(", ") {
                    routes.insert((method.to_owned(), path.clone()));
                }
            }
        }
    }
    (routes, skipped)
}

/// Splits `"api", "activations", _, action @ ("a" | "b")` at the commas outside parentheses.
fn split_top_level(inner: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth) = (Vec::new(), String::new(), 0);
    for c in inner.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}

/// The paths a segment pattern matches: `"x"` literal, `_` any (`{}`), `name @ ("a" | "b")` each.
fn templates(segments: &[String]) -> Vec<String> {
    let mut out = vec![String::new()];
    for segment in segments {
        let choices: Vec<String> = if segment == "_" {
            vec!["{}".into()]
        } else if let Some((_, alternatives)) = segment.split_once(" @ ") {
            alternatives
                .trim_matches(|c| c == '(' || c == ')')
                .split(" | ")
                .map(|a| a.trim_matches('"').into())
                .collect()
        } else {
            vec![segment.trim_matches('"').to_owned()]
        };
        out = out.iter().flat_map(|p| choices.iter().map(move |c| format!("{p}/{c}"))).collect();
    }
    out
}

#[test]
fn every_api_route_is_documented_with_the_methods_it_allows_and_nothing_else_is() {
    let doc = document();
    let (routes, skipped) = routed();
    assert!(routes.len() >= 16, "the router was not read: {routes:?}");
    let documented = documented(&doc);
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routed but not in src/http/openapi.json: {undocumented:?}");
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");
    let excluded: BTreeSet<String> = NOT_THE_API.iter().map(|(p, _)| (*p).to_owned()).collect();
    assert_eq!(skipped, excluded, "an /api route left out of the document must be one of NOT_THE_API");
}

#[tokio::test]
async fn each_documented_path_answers_its_methods_and_405_with_allow_for_the_rest() {
    let app = spawn_app().await;
    let doc = document();
    let token = app.admin();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "5f0e3b7c-0000-4000-8000-000000000001").replace("{token}", "not.a-link");
        let allowed: BTreeSet<String> =
            operations.as_object().unwrap().keys().map(|m| m.to_ascii_uppercase()).collect();
        for method in METHODS {
            let res = app
                .client
                .request(method.parse().unwrap(), format!("{}{concrete}", app.base))
                .bearer_auth(&token)
                .header("accept", "application/json")
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = res.status();
            let allow = res.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
            let body: Value = res.json().await.unwrap();
            if allowed.contains(method) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {body}");
                assert_ne!(body["error"]["code"], "RouteNotFound", "{method} {path}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {body}");
                let allow: BTreeSet<String> = allow.unwrap().split(',').map(|m| m.trim().to_owned()).collect();
                assert_eq!(allow, allowed, "{path}: Allow says other methods than the document");
            }
        }
    }
}

#[test]
fn every_operation_lists_each_status_the_edge_can_answer_and_no_catch_all() {
    let doc = document();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            let at = format!("{} {path}", method.to_ascii_uppercase());
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.contains_key("default"), "{at}: a catch-all says nothing; list the statuses");
            let secured = op.get("security").is_none_or(|s| !s.as_array().unwrap().is_empty());
            // Any request: a header sent twice, an unreadable request; a body over the limit.
            let mut must = vec!["400", "413"];
            if secured {
                // No or refused credentials; Entra's keys or the store unavailable; a bug.
                must.extend(["401", "500", "503"]);
            }
            if method == "post" {
                // The origin check and the media-type check run on every change.
                must.extend(["403", "415"]);
            }
            for status in must {
                assert!(responses.contains_key(status), "{at} does not document {status}");
            }
            for (status, response) in responses {
                assert!(status.len() == 3 && status.parse::<u16>().is_ok(), "{at}: {status}");
                let response = resolve(&doc, response);
                let content = response["content"].as_object();
                let content = content.unwrap_or_else(|| panic!("{at} {status}: every answer has a body: say its type"));
                if status.starts_with('4') || status.starts_with('5') {
                    let json = &content["application/json"]["schema"];
                    let is_error = json["$ref"] == "#/components/schemas/Error";
                    let is_health = path == "/api/health" && status == "503";
                    assert!(is_error || is_health, "{at} {status}: errors are the ARM envelope");
                }
                // The review exports are files: CSV and a unified diff, on success only.
                let export = match path.as_str() {
                    "/api/reviews/{campaign}/results.csv" => Some("text/csv"),
                    "/api/reviews/{campaign}/policy-patch" => Some("text/x-diff"),
                    _ => None,
                };
                for media in content.keys() {
                    let file = status == "200" && export == Some(media.as_str());
                    assert!(media == "application/json" || media == "text/html" || file, "{at} {status}: {media}");
                }
            }
        }
    }
}

#[test]
fn only_the_pages_answer_html() {
    let doc = document();
    let pages = ["/api/approvals/{id}", "/api/confirmations/{token}"];
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            let html = op["responses"]
                .as_object()
                .unwrap()
                .values()
                .any(|r| resolve(&doc, r)["content"].get("text/html").is_some());
            assert_eq!(html, pages.contains(&path.as_str()), "{method} {path}");
        }
    }
}

#[test]
fn the_enums_are_the_domains() {
    let doc = document();
    let strings =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect() };
    let statuses: Vec<String> = Status::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(strings(&doc["components"]["schemas"]["Status"]["enum"]), statuses);
    let audit = doc["paths"]["/api/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "action")
        .unwrap();
    let actions: Vec<String> = Action::ALL.iter().map(|a| a.as_str().to_owned()).collect();
    assert_eq!(strings(&audit["schema"]["enum"]), actions);
}

/// A schema's `pattern`, by a JSON pointer into the document.
fn pattern(doc: &Value, pointer: &str) -> String {
    doc.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no pattern at {pointer}")).to_owned()
}

fn matches(pattern: &str, text: &str) -> bool {
    // JSON Schema patterns are ECMA-262 searches (unanchored unless the pattern anchors itself).
    // The scope's pattern repeats large Unicode classes: more than the default NFA size.
    let config = regex_automata::meta::Regex::config().nfa_size_limit(None);
    regex_automata::meta::Regex::builder().configure(config).build(pattern).unwrap().is_match(text)
}

/// A strategy for the strings a fully anchored pattern matches.
fn matching(pattern: &str) -> impl Strategy<Value = String> + use<> {
    let inner = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')).expect("an anchored pattern");
    proptest::string::string_regex(inner).unwrap()
}

const REQUEST: &str = "/components/schemas/ActivationRequest/properties";

#[test]
fn what_the_issue_found_refused_is_no_longer_schema_valid() {
    let doc = document();
    let role = pattern(&doc, &format!("{REQUEST}/roleDefinitionId/pattern"));
    let justification = pattern(&doc, &format!("{REQUEST}/justification/pattern"));
    let link = pattern(&doc, "/paths/~1api~1confirmations~1{token}/get/parameters/0/schema/pattern");
    for empty in ["", " ", "\t", "\n  "] {
        assert!(!matches(&role, empty), "{empty:?}");
        assert!(!matches(&justification, empty), "{empty:?}");
        assert!(Justification::parse(empty).is_err());
    }
    for token in ["0", "not.a-link", "a.b", ""] {
        assert!(!matches(&link, token), "{token:?}");
    }
    assert!(!matches(&justification, "line\u{0}break"));
    assert!(matches(&justification, "INC-7\nsecond line"));
    for scope in [
        "/",
        "/a/b",
        "/subscriptions/x",
        "directory:",
        "group:me",
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/..",
    ] {
        assert!(!matches(&pattern(&doc, &format!("{REQUEST}/scope/pattern")), scope), "{scope}");
        assert!(Scope::parse(scope).is_err(), "{scope}");
    }
    // Every role the server knows by name is spelled by the pattern.
    let names = BUILT_IN_ROLES
        .iter()
        .map(|(n, _)| *n)
        .chain(DIRECTORY_ROLES.iter().map(|(n, _, _)| *n))
        .chain(GROUP_ROLES.iter().map(|(n, _)| *n));
    for name in names {
        assert!(matches(&role, name), "{name} is missing from the roleDefinitionId pattern");
    }
}

#[tokio::test]
async fn a_real_confirmation_link_fits_the_documented_token() {
    let app = spawn_app().await;
    let doc = document();
    let ask = json!({"principalId": ALICE, "roleDefinitionId": "Reader", "scope": SUB1, "justification": "from Teams"});
    let (status, waiting) = app.post(&app.broker(BROKER_APP), "/api/activations", ask).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{waiting}");
    let url = waiting["confirmationUrl"].as_str().unwrap();
    let token = url.rsplit('/').next().unwrap();
    let schema = &doc["paths"]["/api/confirmations/{token}"]["post"]["parameters"][0]["schema"];
    assert!(matches(schema["pattern"].as_str().unwrap(), token), "{token}");
    assert!(token.len() as u64 <= schema["maxLength"].as_u64().unwrap());
    // Without credentials: a live link asks for them; a broken one is said so first.
    let path = format!("/api/confirmations/{token}");
    let (status, body) = app.send(reqwest::Method::POST, None, &path, Some(json!({}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthenticated")));
    let (status, body) = app.send(reqwest::Method::POST, None, "/api/confirmations/0", Some(json!({}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidConfirmationLink")));
}

/// What the document's patterns allow (within its lengths), the parsers accept.
struct Patterns {
    role: String,
    scope: String,
    justification: String,
    duration: String,
    rule: String,
    guid: String,
    idempotency: String,
    system: String,
}

fn patterns() -> Patterns {
    let doc = document();
    let idempotency = doc["paths"]["/api/activations"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap()["schema"]["pattern"]
        .as_str()
        .unwrap()
        .to_owned();
    Patterns {
        role: pattern(&doc, &format!("{REQUEST}/roleDefinitionId/pattern")),
        scope: pattern(&doc, &format!("{REQUEST}/scope/pattern")),
        justification: pattern(&doc, &format!("{REQUEST}/justification/pattern")),
        duration: pattern(&doc, "/components/schemas/Duration/pattern"),
        rule: pattern(&doc, &format!("{REQUEST}/ruleId/pattern")),
        guid: pattern(&doc, &format!("{REQUEST}/principalId/pattern")),
        idempotency,
        system: pattern(&doc, "/components/schemas/Ticket/properties/system/pattern"),
    }
}

fn any_kind_role(value: &str) -> bool {
    [ScopeKind::Azure, ScopeKind::Directory, ScopeKind::Group].iter().any(|k| k.parse_role(value).is_ok())
}

/// 64 cases, seeded, in CI; `PROPTEST_CASES` (scripts/stress) overrides it.
fn config() -> ProptestConfig {
    crate::fuzz::config(64)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn schema_valid_roles_scopes_and_ids_are_accepted(
        (role, scope, rule, guid, key) in {
            let p = patterns();
            (matching(&p.role), matching(&p.scope), matching(&p.rule), matching(&p.guid), matching(&p.idempotency))
        }
    ) {
        prop_assert!(any_kind_role(&role), "{role:?}");
        // The pattern counts characters; the description adds the limits in bytes (UTF-8) that
        // a pattern cannot say: refused exactly when one is passed.
        let within = scope.len() <= 1024 && scope.split('/').all(|name| name.len() <= 260);
        prop_assert_eq!(Scope::parse(&scope).is_ok(), within, "{:?}: {:?}", scope, Scope::parse(&scope).err());
        prop_assert!(RuleId::parse(&rule).is_ok(), "{rule:?}");
        prop_assert!(PrincipalId::parse(&guid).is_ok(), "{guid:?}");
        prop_assume!(key.len() <= 200);
        prop_assert!(IdempotencyKey::parse(&key).is_ok(), "{key:?}");
    }

    #[test]
    fn schema_valid_texts_and_durations_are_accepted(
        (text, duration, system) in {
            let p = patterns();
            (matching(&p.justification), matching(&p.duration), matching(&p.system))
        }
    ) {
        prop_assume!(text.chars().count() <= Justification::MAX_CHARS);
        prop_assert!(Justification::parse(&text).is_ok(), "{text:?}: {:?}", Justification::parse(&text).err());
        prop_assume!(system.chars().count() <= TicketSystem::MAX_CHARS);
        prop_assert!(TicketSystem::parse(&system).is_ok() && TicketNumber::parse(&system).is_ok(), "{system:?}");
        // The one bound a pattern cannot say: longer than zero, at most P90D (in the description).
        match IsoDuration::parse(&duration) {
            Ok(_) | Err(ParseError::OutOfRange(_)) => {}
            Err(e) => prop_assert!(false, "{duration:?}: {e}"),
        }
    }
}

#[test]
fn documented_examples_and_printed_values_fit_their_patterns() {
    let doc = document();
    let p = patterns();
    for d in ["PT8H", "PT30M", "P1D", "P1DT12H", "P2W", "PT1H30M15S", "P90D"] {
        assert!(matches(&p.duration, d), "{d}");
        assert!(matches(&p.duration, &IsoDuration::parse(d).unwrap().to_string()), "{d} printed");
    }
    for bad in ["P", "PT", "P1Y", "PT1H2H", "1H", "P1DT"] {
        assert!(!matches(&p.duration, bad), "{bad}");
    }
    let example = doc.pointer(&format!("{REQUEST}/scope/example")).unwrap().as_str().unwrap();
    assert!(matches(&p.scope, example) && Scope::parse(example).is_ok());
    let mut seen = BTreeMap::new();
    for (kind, sample) in
        [("arm", SUB1), ("directory", "directory:/"), ("group", "group:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa")]
    {
        seen.insert(kind, matches(&p.scope, sample));
    }
    assert!(seen.values().all(|m| *m), "{seen:?}");
}
