//! Host conformance: the tests play the Azure Functions host. They read `host.json` and every
//! `functions/*/function.json`, start the real binary as the host does (port in the environment,
//! arguments from host.json, readiness = any answer to `GET /`), send requests to the routes the
//! function files declare, fire the timer with the payload variants of azure-spec §1.5, and check
//! that answers have the shape the host parses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::process::{self, Process};
use crate::support::{ALICE, BOB, http_client, raw_http, timer_payload};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct Function {
    name: String,
    trigger: Value,
}

fn functions() -> Vec<Function> {
    let mut all: Vec<Function> = std::fs::read_dir(repo().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("function.json").exists())
        .map(|p| {
            let doc = read_json(&p.join("function.json"));
            let trigger = doc["bindings"].as_array().unwrap().iter().find(|b| b["direction"] == "in").unwrap().clone();
            Function { name: p.file_name().unwrap().to_string_lossy().into_owned(), trigger }
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// The real binary, started as the host starts a custom handler.
struct Handler {
    process: Process,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Handler {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Handler {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

async fn start_handler() -> Handler {
    let host = read_json(&repo().join("host.json"));
    let description = &host["customHandler"]["description"];
    let exe = process::exe();
    assert_eq!(
        exe.file_name().unwrap().to_string_lossy(),
        description["defaultExecutablePath"].as_str().unwrap(),
        "host.json must name the binary cargo builds"
    );
    let args: Vec<String> =
        description["arguments"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("policy.yaml"), dir.path().join("policy.yaml")).unwrap();
    let process = process::start(
        dir.path(),
        &args,
        &[
            ("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "8a1e3c9e-0000-4000-8000-000000000001".into()),
            ("FUNCTIONS_APP_ROOT_PATH", dir.path().display().to_string()),
            ("ELEVATE_AUTH_MODE", "dev".into()),
            ("ELEVATE_POLICY_FILE", dir.path().join("policy.yaml").display().to_string()),
        ],
    )
    .await;
    Handler { process, dir }
}

impl Handler {
    fn token(&self, user: &str, extra: &[&str]) -> String {
        process::token(self.dir.path(), user, extra)
    }
}

/// ASP.NET route template matching, enough for our templates: literals, `{p}`, `{p?}`,
/// `{p:constraint}`, `{*p}`.
fn template_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, seg) in t.iter().enumerate() {
        let param = seg.starts_with('{') && seg.ends_with('}');
        match p.get(i) {
            Some(actual) if !param => {
                if !seg.eq_ignore_ascii_case(actual) {
                    return false;
                }
            }
            Some(_) => {
                if seg.starts_with("{*") {
                    return true;
                }
            }
            None => {
                return param
                    && (seg.ends_with("?}") || seg.starts_with("{*"))
                    && t[i..].iter().all(|s| s.ends_with("?}") || s.starts_with("{*"));
            }
        }
    }
    p.len() <= t.len()
}

/// Every concrete path a template declares, with sample values for its parameters.
fn expand(template: &str, samples: &BTreeMap<&str, Vec<String>>) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut results = Vec::new();
    for seg in template.split('/') {
        if seg.ends_with("?}") {
            results.extend(out.iter().map(|p| p.trim_start_matches('/').to_owned()));
        }
        let next: Vec<String> = if seg.starts_with('{') {
            let name = seg.trim_matches(|c| c == '{' || c == '}' || c == '?' || c == '*').split(':').next().unwrap();
            out.iter().flat_map(|p| samples[name].iter().map(move |v| format!("{p}/{v}"))).collect()
        } else {
            out.iter().map(|p| format!("{p}/{seg}")).collect()
        };
        out = next;
    }
    results.extend(out.iter().map(|p| p.trim_start_matches('/').to_owned()));
    results.sort();
    results.dedup();
    results
}

#[test]
fn host_json_declares_the_custom_handler() {
    let host = read_json(&repo().join("host.json"));
    assert_eq!(host["version"], "2.0");
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "elevate");
    assert_eq!(host["customHandler"]["enableProxyingHttpRequest"], true);
    assert!(host["customHandler"].get("enableForwardingHttpRequest").is_none(), "the legacy mode must not be set too");
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    assert!(host["extensionBundle"]["id"].as_str().unwrap().starts_with("Microsoft.Azure.Functions.ExtensionBundle"));
    let queues = &host["extensions"]["queues"];
    assert_eq!(queues["messageEncoding"], "base64", "Elevate puts base64 text");
    assert_eq!(queues["maxDequeueCount"], elevate::http::invoke::MAX_DEQUEUE_COUNT);
    let polling = queues["maxPollingInterval"].as_str().unwrap();
    assert!(polling <= "00:00:05", "a short poll: access ends within seconds ({polling})");
    let names: Vec<String> = functions().iter().map(|f| f.name.clone()).collect();
    for required in [
        "activations",
        "approvals",
        "audit",
        "confirmations",
        "deliver",
        "eligibilities",
        "expiry",
        "expiry-sweeper",
        "health",
    ] {
        assert!(names.contains(&required.to_owned()), "functions/{required} is missing");
    }
    for f in functions() {
        match f.trigger["type"].as_str().unwrap() {
            "httpTrigger" => {
                assert_eq!(f.trigger["authLevel"], "anonymous", "{}: Easy Auth and the handler authenticate", f.name);
                assert!(
                    f.trigger["methods"].as_array().unwrap().iter().all(|m| m
                        .as_str()
                        .unwrap()
                        .chars()
                        .all(|c| c.is_ascii_lowercase()))
                );
            }
            "timerTrigger" => {
                // NCRONTAB with seconds: the sweeper every minute, governance hourly, the digest
                // on Mondays at 08:00 UTC.
                let schedule = match f.name.as_str() {
                    "governance" => "0 7 * * * *",
                    "digest" => "0 0 8 * * 1",
                    _ => "0 */1 * * * *",
                };
                assert_eq!(f.trigger["schedule"], schedule, "{}", f.name);
                assert_eq!(f.trigger["runOnStartup"], false);
            }
            "queueTrigger" => {
                // The queue is named as the function is (and as infra/ creates it), read through
                // the host's own storage connection (identity-based in Azure).
                assert_eq!(f.trigger["queueName"], f.name.as_str());
                assert_eq!(f.trigger["connection"], "AzureWebJobsStorage");
                assert_eq!(f.trigger["name"], "msg");
            }
            other => panic!("{}: unexpected trigger {other}", f.name),
        }
    }
}

#[test]
fn route_templates_are_understood() {
    assert!(template_matches("activations/{id?}/{action?}", "activations"));
    assert!(template_matches("activations/{id?}/{action?}", "activations/x/cancel"));
    assert!(!template_matches("activations/{id?}/{action?}", "activations/x/cancel/more"));
    assert!(!template_matches("audit", "auditx"));
    let samples = BTreeMap::from([("id", vec!["1".to_owned()]), ("action", vec!["a".to_owned(), "b".to_owned()])]);
    assert_eq!(
        expand("activations/{id?}/{action?}", &samples),
        ["activations", "activations/1", "activations/1/a", "activations/1/b"]
    );
}

#[tokio::test]
async fn every_declared_route_reaches_the_handler_and_every_api_path_is_declared() {
    let handler = start_handler().await;
    let alice = handler.token(ALICE, &[]);
    let bob = handler.token(BOB, &[]);
    let client = http_client();
    // A real activation, so routes with an id reach real state.
    let created: Value = client
        .post(format!("{}/api/activations", handler.base))
        .bearer_auth(&alice)
        .json(&json!({"roleDefinitionId": "Contributor", "scope": "/subscriptions/00000000-0000-0000-0000-000000000002", "duration": "PT1H", "justification": "host test", "ticket": {"system": "SNOW", "number": "1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["status"], "PendingApproval", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let samples = BTreeMap::from([
        ("id", vec![id.clone()]),
        ("action", vec!["deactivate".to_owned(), "cancel".to_owned(), "extend".to_owned()]),
        ("token", vec!["not.a-link".to_owned()]),
        ("path", vec!["roles".to_owned(), "access".to_owned(), "audit/export".to_owned()]),
        ("campaign", vec!["quarterly-20261125".to_owned()]),
        ("part", vec!["items".to_owned(), "log".to_owned(), "results.csv".to_owned(), "policy-patch".to_owned()]),
        ("index", vec!["0".to_owned()]),
        ("verb", vec!["lift".to_owned()]),
        // `/api/` itself (the empty route: `{ignored:maxlength(0)?}`).
        ("ignored", vec![]),
    ]);

    let mut declared: Vec<(String, String)> = Vec::new();
    for f in functions().iter().filter(|f| f.trigger["type"] == "httpTrigger") {
        let template = f.trigger["route"].as_str().unwrap().to_owned();
        for method in f.trigger["methods"].as_array().unwrap() {
            let method = method.as_str().unwrap().to_ascii_uppercase();
            declared.push((method.clone(), template.clone()));
            let mut reached_one = false;
            for path in expand(&template, &samples) {
                let url = format!("{}/api/{path}", handler.base);
                let req = client
                    .request(method.parse().unwrap(), &url)
                    .bearer_auth(&bob)
                    .header("accept", "application/json");
                let req = if method == "POST" { req.json(&json!({})) } else { req };
                let res = req.send().await.unwrap();
                let status = res.status();
                let content_type =
                    res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                assert!(content_type.starts_with("application/json"), "{method} /api/{path}: {content_type}");
                let body: Value = res.json().await.unwrap();
                if let Some(code) = body["error"]["code"].as_str() {
                    assert!(body["error"]["message"].is_string(), "{method} /api/{path}: not the ARM envelope: {body}");
                    if code != "RouteNotFound" && code != "MethodNotAllowed" {
                        reached_one = true;
                    }
                } else {
                    assert!(status.is_success(), "{method} /api/{path}: {status} {body}");
                    reached_one = true;
                }
            }
            assert!(reached_one, "function {} declares {method} {template}, but the handler serves none of it", f.name);
        }
    }

    let openapi: Value =
        http_client().get(format!("{}/api/openapi.json", handler.base)).send().await.unwrap().json().await.unwrap();
    for (path, operations) in openapi["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let concrete = path
                .trim_start_matches("/api/")
                .replace("{id}", &id)
                .replace("{token}", "not.a-link")
                .replace("{campaign}", "quarterly-20261125")
                .replace("{index}", "0");
            let covered =
                declared.iter().any(|(m, t)| m.eq_ignore_ascii_case(method) && template_matches(t, &concrete));
            assert!(covered, "{method} {path} is in the OpenAPI document but no function.json routes it");
        }
    }
}

#[tokio::test]
async fn the_timer_is_answered_in_the_shape_the_host_parses() {
    let handler = start_handler().await;
    let timers: Vec<Function> = functions().into_iter().filter(|f| f.trigger["type"] == "timerTrigger").collect();
    assert_eq!(timers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["digest", "expiry-sweeper", "governance"]);
    let mut first_run = timer_payload(false, true);
    first_run["Data"]["timer"]["ScheduleStatus"]["Last"] = json!("0001-01-01T00:00:00+00:00");
    let variants = [
        timer_payload(false, true),
        timer_payload(false, false),
        timer_payload(true, true),
        first_run,
        json!({"Data": {}, "Metadata": {}}),
    ];
    for timer in &timers {
        for payload in &variants {
            let body = payload.to_string();
            // As the host sends it: chunked, no Content-Length, with its headers.
            let request = format!(
                "POST /{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=utf-8\r\nX-Azure-Functions-InvocationId: 83a33220-a921-460a-bec0-b3f043dcf1ff\r\nX-Azure-Functions-HostVersion: 4.24.4.4\r\nUser-Agent: Azure-Functions-Host/4.24.4.4\r\ntraceparent: 00-bb2bd5eef54cb15a1506d0326d2489e7-d3f54c84c7034d76-00\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                timer.name,
                body.len()
            );
            let (status, answer) = raw_http(&handler.base, request.into_bytes()).await;
            assert!((200..300).contains(&status), "EnsureSuccessStatusCode would fail: {status} {answer}");
            let parsed: Value = serde_json::from_str(answer.trim()).unwrap_or_else(|_| panic!("not JSON: {answer}"));
            assert!(parsed["Outputs"].is_object(), "{parsed}");
            assert!(parsed["Logs"].as_array().unwrap().iter().all(Value::is_string), "{parsed}");
            assert!(parsed["ReturnValue"].is_object(), "{parsed}");
            assert!(parsed["ReturnValue"]["failures"].as_array().unwrap().is_empty());
        }
        let res =
            http_client().post(format!("{}/{}", handler.base, timer.name)).json(&variants[0]).send().await.unwrap();
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    }
}

#[tokio::test]
async fn logs_are_json_lines_under_the_host_and_carry_no_tokens() {
    let handler = start_handler().await;
    let alice = handler.token(ALICE, &[]);
    let res =
        http_client().get(format!("{}/api/eligibilities", handler.base)).bearer_auth(&alice).send().await.unwrap();
    assert!(res.status().is_success());
    let res = http_client()
        .get(format!("{}/api/eligibilities", handler.base))
        .bearer_auth(format!("{alice}tampered"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = std::fs::read_to_string(&handler.log).unwrap();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(entry["level"].is_string() && entry["timestamp"].is_string(), "{line}");
    }
    let signature = alice.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "a token reached the log");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_the_handler_cleanly() {
    let mut handler = start_handler().await;
    let pid = handler.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = handler.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still running 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(std::fs::read_to_string(&handler.log).unwrap().contains("stopped"));
}

/// SIGTERM while a request is in flight: the request is finished, then the process exits.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_finishes_in_flight_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut handler = start_handler().await;
    let alice = handler.token(ALICE, &[]);
    let body = json!({"roleDefinitionId": "Reader", "scope": "/subscriptions/00000000-0000-0000-0000-000000000001", "duration": "PT1H"}).to_string();
    let (first, rest) = body.split_at(10);
    let mut stream = tokio::net::TcpStream::connect(handler.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /api/activations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = handler.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let started = Instant::now();
    while handler.child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A queue message as the host delivers it in payload mode (azure-spec §6): the decoded text in
/// `Data.msg`, the queue's metadata beside it.
fn queue_payload(message: &str, dequeue_count: u64) -> Value {
    json!({
        "Data": {"msg": message},
        "Metadata": {
            "DequeueCount": dequeue_count,
            "ExpirationTime": "9999-12-31T23:59:59+00:00",
            "Id": "1c7c2d06-5d2e-4e38-9b3c-6c0c6f3c0a11",
            "InsertionTime": "2026-11-25T12:34:03+00:00",
            "NextVisibleTime": "2026-11-25T12:34:13+00:00",
            "PopReceipt": "MjVOb3YyMDI2",
            "sys": {"MethodName": "expiry", "UtcNow": "2026-11-25T12:34:03.12Z", "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}
        }
    })
}

#[tokio::test]
async fn queue_invocations_are_answered_so_the_host_deletes_or_retries_them() {
    let handler = start_handler().await;
    let alice = handler.token(ALICE, &[]);
    let pending: Value = http_client()
        .post(format!("{}/api/activations", handler.base))
        .bearer_auth(&alice)
        .json(&json!({"roleDefinitionId": "Contributor", "scope": "/subscriptions/00000000-0000-0000-0000-000000000002", "duration": "PT1H", "justification": "host test", "ticket": {"system": "SNOW", "number": "1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = pending["id"].as_str().unwrap();
    let queues: Vec<Function> = functions().into_iter().filter(|f| f.trigger["type"] == "queueTrigger").collect();
    assert_eq!(queues.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["deliver", "expiry"]);
    let send = |name: &'static str, payload: Value| {
        let base = handler.base.clone();
        async move {
            let body = payload.to_string();
            let request = format!(
                "POST /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=utf-8\r\nX-Azure-Functions-InvocationId: 83a33220-a921-460a-bec0-b3f043dcf1ff\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            );
            let (status, answer) = raw_http(&base, request.into_bytes()).await;
            let parsed: Value = serde_json::from_str(answer.trim()).unwrap_or_else(|_| panic!("not JSON: {answer}"));
            assert!(
                parsed["Outputs"].is_object() && parsed["Logs"].as_array().unwrap().iter().all(Value::is_string),
                "{parsed}"
            );
            (status, parsed)
        }
    };
    // A message for an activation that is not active: done with, deleted (2xx).
    let stale = json!({"activationId": id, "expiresAt": "2026-11-25T13:00:00Z"}).to_string();
    let (status, answer) = send("expiry", queue_payload(&stale, 1)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ReturnValue"]["result"], "stale: not active and not due");
    // The host may hand JSON it parsed itself.
    let (status, _) = send("expiry", json!({"Data": {"msg": {"activationId": id, "expiresAt": "2026-11-25T13:00:00Z"}}, "Metadata": {"DequeueCount": "2"}})).await;
    assert_eq!(status, 200);
    // Not an expiry message: 5xx, so the host retries it and in the end moves it to the poison
    // queue, where someone looks at it; the last attempt is logged as such.
    let (status, answer) = send("expiry", queue_payload("{\"activationId\": 7}", 1)).await;
    assert_eq!(status, 500, "{answer}");
    let (status, _) = send("expiry", queue_payload("garbage", 5)).await;
    assert_eq!(status, 500);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        std::fs::read_to_string(&handler.log).unwrap().contains("POISON"),
        "the last failed delivery is logged loudly"
    );
    let (status, answer) = send("deliver", queue_payload("{}", 1)).await;
    assert_eq!(status, 200, "{answer}");
    // Only the host posts to a queue function.
    let (status, _) =
        raw_http(&handler.base, b"GET /expiry HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(status, 405);
}
