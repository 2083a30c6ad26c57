//! The chat workflows (`infra/workflows/*.json`, deployed by `infra/modules/chat-*.bicep`), run as
//! Azure Logic Apps runs them, without Azure:
//!
//! - both definitions keep to the Workflow Definition Language 2016-06-01 (the structure, trigger
//!   and action shapes, retry policies and operation options the language reference documents);
//! - the request workflow's HTTP action, rendered from its own expressions, sends exactly the body
//!   Elevate's OpenAPI document describes;
//! - the request workflow runs against a running Elevate (Entra mode, with a local issuer): its
//!   managed-identity token comes from a fake identity endpoint (azure-spec §4.1) for the audience
//!   the definition names, shaped as Entra shapes an app-only token (§2.4), and its reply is
//!   what the definition maps Elevate's answer to;
//! - the notices workflow runs on the CloudEvents a running Elevate sends and posts to a fake
//!   Teams Workflows webhook.
//!
//! The interpreter below knows the few expression functions and action types the definitions
//! use, evaluates every argument eagerly (so no expression may lean on a branch not being
//! evaluated), and refuses anything else: a definition that grows a new form fails here until the
//! interpreter learns it from the language reference.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::TimeDelta;
use elevate::adapters::notify::WebhookUrl;
use elevate::adapters::notify::events::EventSecret;
use elevate::config::{AuthSetting, NotificationSettings};
use elevate::domain::duration::IsoDuration;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::support::fake_entra::{CLIENT_ID, FakeEntra, SigningKey, TENANT, v1_claims};
use crate::support::fake_http::{FakeReply, FakeRequest, serve};
use crate::support::fake_webhook::FakeWebhook;
use crate::support::{
    ALICE, BOB, BROKER_APP, BROKER_SP, DANA, SUB1, SUB2, TestApp, spawn_app_with_auth, spawn_with_notifications, start,
    test_policy, user,
};

fn read(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn definition(name: &str) -> Value {
    serde_json::from_str(&read(&format!("infra/workflows/{name}.json"))).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Expressions (Workflow Definition Language: `@expr`, `@{expr}` interpolation, `@@` escape)
// ---------------------------------------------------------------------------------------------

/// The functions the interpreter knows, each as the functions reference describes it.
const FUNCTIONS: [&str; 17] = [
    "body",
    "coalesce",
    "concat",
    "empty",
    "encodeUriComponent",
    "equals",
    "greaterOrEquals",
    "if",
    "json",
    "not",
    "outputs",
    "parameters",
    "replace",
    "string",
    "triggerBody",
    "uriPath",
    "workflow",
];

#[derive(Clone, Debug)]
enum Expr {
    Literal(Value),
    Call(String, Vec<Expr>),
    /// `target[key]`, `target.key`; with `?` a missing property or a null target is null.
    Index {
        target: Box<Expr>,
        key: Box<Expr>,
        optional: bool,
    },
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    source: &'a str,
}

fn parse(source: &str) -> Result<Expr, String> {
    let mut p = Parser { chars: source.chars().collect(), at: 0, source };
    let e = p.expression()?;
    p.blank();
    if p.at != p.chars.len() {
        return Err(format!("trailing input in `{source}` at {}", p.at));
    }
    Ok(e)
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn blank(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.blank();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn identifier(&mut self) -> Result<String, String> {
        self.blank();
        let from = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            self.at += 1;
        }
        if from == self.at {
            return Err(format!("an identifier expected in `{}` at {from}", self.source));
        }
        Ok(self.chars[from..self.at].iter().collect())
    }

    fn expression(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            let optional = self.eat('?');
            if self.eat('[') {
                let key = self.expression()?;
                if !self.eat(']') {
                    return Err(format!("`]` expected in `{}`", self.source));
                }
                e = Expr::Index { target: Box::new(e), key: Box::new(key), optional };
            } else if self.eat('.') {
                let name = self.identifier()?;
                e = Expr::Index { target: Box::new(e), key: Box::new(Expr::Literal(json!(name))), optional };
            } else if optional {
                return Err(format!("`?` without `[` or `.` in `{}`", self.source));
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        self.blank();
        match self.peek() {
            Some('\'') => {
                self.at += 1;
                let mut s = String::new();
                loop {
                    match self.peek() {
                        None => return Err(format!("unterminated string in `{}`", self.source)),
                        Some('\'') if self.chars.get(self.at + 1) == Some(&'\'') => {
                            s.push('\'');
                            self.at += 2;
                        }
                        Some('\'') => {
                            self.at += 1;
                            return Ok(Expr::Literal(json!(s)));
                        }
                        Some(c) => {
                            s.push(c);
                            self.at += 1;
                        }
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let from = self.at;
                self.at += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
                let text: String = self.chars[from..self.at].iter().collect();
                Ok(Expr::Literal(json!(text.parse::<i64>().map_err(|e| e.to_string())?)))
            }
            _ => {
                let name = self.identifier()?;
                if self.eat('(') {
                    let mut args = Vec::new();
                    if !self.eat(')') {
                        loop {
                            args.push(self.expression()?);
                            if self.eat(')') {
                                break;
                            }
                            if !self.eat(',') {
                                return Err(format!("`,` or `)` expected in `{}`", self.source));
                            }
                        }
                    }
                    return Ok(Expr::Call(name, args));
                }
                match name.as_str() {
                    "null" => Ok(Expr::Literal(Value::Null)),
                    "true" => Ok(Expr::Literal(json!(true))),
                    "false" => Ok(Expr::Literal(json!(false))),
                    other => Err(format!("unknown name `{other}` in `{}`", self.source)),
                }
            }
        }
    }
}

/// Every function a parsed expression calls.
fn functions_of(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Literal(_) => {}
        Expr::Call(name, args) => {
            out.insert(name.clone());
            args.iter().for_each(|a| functions_of(a, out));
        }
        Expr::Index { target, key, .. } => {
            functions_of(target, out);
            functions_of(key, out);
        }
    }
}

/// The expressions inside a JSON string value, as the language reads it.
fn expressions_in(s: &str) -> Result<Vec<String>, String> {
    if s.starts_with("@@") {
        return Ok(Vec::new());
    }
    if s.starts_with('@') && !s.starts_with("@{") {
        return Ok(vec![s[1..].to_owned()]);
    }
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("@{") {
        if rest[..at].ends_with('@') {
            rest = &rest[at + 2..];
            continue;
        }
        let body = &rest[at + 2..];
        let end = closing_brace(body).ok_or_else(|| format!("unclosed `@{{` in `{s}`"))?;
        found.push(body[..end].to_owned());
        rest = &body[end + 1..];
    }
    Ok(found)
}

/// The `}` closing an interpolation, outside string literals.
fn closing_brace(body: &str) -> Option<usize> {
    let mut quoted = false;
    let mut depth = 0usize;
    for (i, c) in body.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted && depth == 0 => return Some(i),
            '}' if !quoted => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Every expression anywhere in a definition (trigger schemas and descriptions hold none).
fn all_expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.extend(expressions_in(s).unwrap()),
        Value::Array(items) => items.iter().for_each(|i| all_expressions(i, out)),
        Value::Object(map) => map.values().for_each(|i| all_expressions(i, out)),
        _ => {}
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Succeeded,
    Failed,
    Skipped,
    TimedOut,
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "Succeeded" => Status::Succeeded,
            "Failed" => Status::Failed,
            "Skipped" => Status::Skipped,
            "TimedOut" => Status::TimedOut,
            other => panic!("runAfter status `{other}` is not one of the language's"),
        }
    }
}

/// One run's state: what expressions can see.
struct RunState {
    parameters: Map<String, Value>,
    /// `{headers, body}` of the request that started the run.
    trigger: Value,
    run_name: String,
    actions: BTreeMap<String, (Status, Value)>,
    reply: Option<Value>,
}

fn string_of(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Object(m) if m.contains_key("$content") => {
            // A body of a content type the engine keeps as binary (logic-apps-content-type.md).
            let bytes = STANDARD
                .decode(m["$content"].as_str().ok_or("`$content` is not base64")?)
                .map_err(|e| e.to_string())?;
            String::from_utf8(bytes).map_err(|e| e.to_string())?
        }
        other => other.to_string(),
    })
}

fn as_str(v: &Value, what: &str) -> Result<String, String> {
    v.as_str().map(str::to_owned).ok_or_else(|| format!("{what} takes a string, not {v}"))
}

fn as_bool(v: &Value, what: &str) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| format!("{what} takes a Boolean, not {v}"))
}

/// `equals` and friends compare null as the empty string (functions reference, "Logical
/// comparison functions").
fn comparable(v: &Value) -> Value {
    if v.is_null() { json!("") } else { v.clone() }
}

/// encodeURIComponent as .NET's Uri.EscapeDataString: everything but unreserved characters.
fn encode_uri_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl RunState {
    fn action_outputs(&self, name: &str) -> Result<Value, String> {
        match self.actions.get(name) {
            Some((Status::Skipped, _)) | None => Err(format!("action `{name}` has not run")),
            Some((_, outputs)) => Ok(outputs.clone()),
        }
    }

    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        let arity = |n: usize| {
            if args.len() == n { Ok(()) } else { Err(format!("{name}() takes {n} arguments, got {}", args.len())) }
        };
        match name {
            "parameters" => {
                arity(1)?;
                let key = as_str(&args[0], name)?;
                self.parameters.get(&key).cloned().ok_or_else(|| format!("no parameter `{key}`"))
            }
            "triggerBody" => {
                arity(0)?;
                Ok(self.trigger["body"].clone())
            }
            "workflow" => {
                arity(0)?;
                Ok(json!({"run": {"name": self.run_name}}))
            }
            "outputs" => {
                arity(1)?;
                self.action_outputs(&as_str(&args[0], name)?)
            }
            "body" => {
                arity(1)?;
                Ok(self.action_outputs(&as_str(&args[0], name)?)?.get("body").cloned().unwrap_or(Value::Null))
            }
            "coalesce" => Ok(args.iter().find(|a| !a.is_null()).cloned().unwrap_or(Value::Null)),
            "if" => {
                arity(3)?;
                Ok(if as_bool(&args[0], name)? { args[1].clone() } else { args[2].clone() })
            }
            "empty" => {
                arity(1)?;
                Ok(json!(match &args[0] {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    Value::Object(m) => m.is_empty(),
                    other => return Err(format!("empty() takes a collection, not {other}")),
                }))
            }
            "equals" => {
                arity(2)?;
                let (a, b) = (comparable(&args[0]), comparable(&args[1]));
                Ok(json!(match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => a == b,
                }))
            }
            "greaterOrEquals" => {
                arity(2)?;
                match (args[0].as_f64(), args[1].as_f64()) {
                    (Some(x), Some(y)) => Ok(json!(x >= y)),
                    _ => Err(format!("greaterOrEquals() compares numbers, not {} and {}", args[0], args[1])),
                }
            }
            "not" => {
                arity(1)?;
                Ok(json!(!as_bool(&args[0], name)?))
            }
            "replace" => {
                arity(3)?;
                let s = as_str(&args[0], name)?;
                Ok(json!(s.replace(&as_str(&args[1], name)?, &as_str(&args[2], name)?)))
            }
            "concat" => Ok(json!(args.iter().map(|a| as_str(a, name)).collect::<Result<Vec<_>, _>>()?.concat())),
            "string" => {
                arity(1)?;
                Ok(json!(string_of(&args[0])?))
            }
            "json" => {
                arity(1)?;
                serde_json::from_str(&string_of(&args[0])?).map_err(|e| format!("json(): {e}"))
            }
            "encodeUriComponent" => {
                arity(1)?;
                Ok(json!(encode_uri_component(&as_str(&args[0], name)?)))
            }
            "uriPath" => {
                arity(1)?;
                let url = url::Url::parse(&as_str(&args[0], name)?).map_err(|e| format!("uriPath(): {e}"))?;
                Ok(json!(url.path()))
            }
            other => panic!("the definitions call `{other}()`, which this interpreter does not know"),
        }
    }

    fn eval(&self, e: &Expr) -> Result<Value, String> {
        match e {
            Expr::Literal(v) => Ok(v.clone()),
            Expr::Call(name, args) => {
                let values = args.iter().map(|a| self.eval(a)).collect::<Result<Vec<_>, _>>()?;
                self.call(name, &values)
            }
            Expr::Index { target, key, optional } => {
                let target = self.eval(target)?;
                let key = self.eval(key)?;
                match (&target, &key) {
                    (Value::Null, _) if *optional => Ok(Value::Null),
                    (Value::Object(map), Value::String(k)) => match map.get(k) {
                        Some(v) => Ok(v.clone()),
                        None if *optional => Ok(Value::Null),
                        None => Err(format!("no property `{k}` (without `?`)")),
                    },
                    (Value::Array(items), Value::Number(n)) => {
                        items.get(n.as_u64().unwrap_or(u64::MAX) as usize).cloned().ok_or("index out of range".into())
                    }
                    (t, k) => Err(format!("cannot select `{k}` of {t}")),
                }
            }
        }
    }

    fn eval_source(&self, source: &str) -> Result<Value, String> {
        self.eval(&parse(source)?)
    }

    /// A JSON value with its expressions evaluated, as the engine evaluates action inputs.
    fn render(&self, v: &Value) -> Result<Value, String> {
        match v {
            Value::String(s) => self.render_string(s),
            Value::Array(items) => {
                items.iter().map(|i| self.render(i)).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.render(v)?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn render_string(&self, s: &str) -> Result<Value, String> {
        if let Some(rest) = s.strip_prefix("@@") {
            return Ok(json!(format!("@{rest}")));
        }
        if s.starts_with('@') && !s.starts_with("@{") {
            return self.eval_source(&s[1..]);
        }
        if !s.contains("@{") {
            return Ok(json!(s));
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find("@{") {
            if rest[..at].ends_with('@') {
                out.push_str(&rest[..at + 1]);
                rest = &rest[at + 1..];
                continue;
            }
            out.push_str(&rest[..at]);
            let body = &rest[at + 2..];
            let end = closing_brace(body).ok_or("unclosed interpolation")?;
            out.push_str(&string_of(&self.eval_source(&body[..end])?)?);
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        Ok(json!(out))
    }
}

// ---------------------------------------------------------------------------------------------
// Runs: triggers, actions in runAfter order, HTTP with managed identity and retry policies
// ---------------------------------------------------------------------------------------------

/// A request the HTTP action sent, as it went out.
#[derive(Clone, Debug)]
struct Sent {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Sent {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What came back: status, headers, body (JSON when the content type says so).
#[derive(Clone, Debug)]
struct Received {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

/// Rewrites one attempt's answer, as a network or gateway might.
type Fault = Box<dyn FnMut(usize, Option<Received>) -> Option<Received> + Send + Sync>;

/// What the Logic Apps runtime brings to a run: HTTP, its managed identity's token endpoint, and
/// a record of both.
struct Runtime {
    client: reqwest::Client,
    identity: Option<Arc<FakeIdentity>>,
    fault: Option<Fault>,
    sent: Vec<(Sent, Option<Received>)>,
}

impl Runtime {
    fn new(identity: Option<Arc<FakeIdentity>>) -> Runtime {
        Runtime { client: crate::support::http_client(), identity, fault: None, sent: Vec::new() }
    }

    /// The token the workflow's identity gets for `audience`, fetched as the runtime fetches it.
    async fn token(&self, audience: &str) -> Result<String, String> {
        let identity = self.identity.as_ref().ok_or("this run has no managed identity")?;
        let res = self
            .client
            .get(format!("{}?resource={}&api-version=2019-08-01", identity.endpoint, encode_uri_component(audience)))
            .header("X-IDENTITY-HEADER", &identity.header)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let body: Value = res.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("the identity endpoint refused: {status} {body}"));
        }
        body["access_token"].as_str().map(str::to_owned).ok_or_else(|| format!("no access_token in {body}"))
    }

    async fn send(&self, request: &Sent) -> Option<Received> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).ok()?;
        let mut builder = self.client.request(method, &request.url);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        if !request.body.is_null() {
            builder = builder.body(serde_json::to_vec(&request.body).unwrap());
        }
        let res = builder.send().await.ok()?;
        let status = res.status().as_u16();
        let headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let json_body = headers.iter().any(|(k, v)| k == "content-type" && v.contains("json"));
        let text = res.text().await.ok()?;
        let body = if text.is_empty() {
            Value::Null
        } else if json_body {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        Some(Received { status, headers, body })
    }

    /// The HTTP action: rendered inputs, the identity's token, the retry policy (408, 429, 5xx and
    /// no answer are retried; exceptions-handling reference), without waiting the intervals.
    async fn http(&mut self, inputs: &Value) -> (Status, Value) {
        let allowed = ["method", "uri", "headers", "queries", "body", "authentication", "retryPolicy"];
        for key in inputs.as_object().unwrap().keys() {
            assert!(allowed.contains(&key.as_str()), "HTTP input `{key}` is not one of the language's");
        }
        let mut headers: Vec<(String, String)> = inputs["headers"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect())
            .unwrap_or_default();
        let auth = &inputs["authentication"];
        if !auth.is_null() {
            assert_eq!(auth["type"], "ManagedServiceIdentity", "the only authentication the workflows use");
            let audience = auth["audience"].as_str().expect("an audience");
            match self.token(audience).await {
                Ok(token) => headers.push(("Authorization".into(), format!("Bearer {token}"))),
                Err(e) => return (Status::Failed, json!({"error": e})),
            }
        }
        let request = Sent {
            method: inputs["method"].as_str().unwrap().to_owned(),
            url: inputs["uri"].as_str().unwrap().to_owned(),
            headers,
            body: inputs["body"].clone(),
        };
        let retries = match inputs["retryPolicy"]["type"].as_str() {
            None | Some("default") => 4,
            Some("none") => 0,
            Some("fixed" | "exponential") => inputs["retryPolicy"]["count"].as_u64().unwrap() as usize,
            Some(other) => panic!("retry policy type `{other}`"),
        };
        let mut last = None;
        for attempt in 0..=retries {
            let mut answer = self.send(&request).await;
            if let Some(fault) = self.fault.as_mut() {
                answer = fault(attempt, answer);
            }
            self.sent.push((request.clone(), answer.clone()));
            let retry = answer.as_ref().is_none_or(|r| r.status == 408 || r.status == 429 || r.status >= 500);
            last = answer;
            if !retry {
                break;
            }
        }
        match last {
            Some(r) => {
                let headers: Map<String, Value> = r.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                let status = if (200..300).contains(&r.status) { Status::Succeeded } else { Status::Failed };
                (status, json!({"statusCode": r.status, "headers": headers, "body": r.body}))
            }
            None => (Status::Failed, json!({"error": "no answer"})),
        }
    }
}

/// Runs a definition's actions: each once every action it runs after has finished, if their
/// statuses are among those it names, else Skipped.
fn run_actions<'a>(
    actions: &'a Map<String, Value>,
    state: &'a mut RunState,
    runtime: &'a mut Runtime,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut pending: Vec<&String> = actions.keys().collect();
        while !pending.is_empty() {
            let ready = pending.iter().position(|name| {
                actions[*name]["runAfter"].as_object().unwrap().keys().all(|before| state.actions.contains_key(before))
            });
            let name = pending.remove(ready.expect("runAfter names an action that never runs, or a cycle"));
            let action = &actions[name];
            let runs = action["runAfter"].as_object().unwrap().iter().all(|(before, statuses)| {
                let status = state.actions[before].0;
                statuses.as_array().unwrap().iter().any(|s| Status::parse(s.as_str().unwrap()) == status)
            });
            let result = if runs { run_action(action, state, runtime).await } else { (Status::Skipped, Value::Null) };
            state.actions.insert(name.clone(), result);
        }
    })
}

async fn run_action(action: &Value, state: &mut RunState, runtime: &mut Runtime) -> (Status, Value) {
    match action["type"].as_str().unwrap() {
        "Compose" => match state.render(&action["inputs"]) {
            Ok(v) => (Status::Succeeded, v),
            Err(e) => (Status::Failed, json!({"error": e})),
        },
        "Http" => match state.render(&action["inputs"]) {
            Ok(inputs) => runtime.http(&inputs).await,
            Err(e) => (Status::Failed, json!({"error": e})),
        },
        "Response" => match state.render(&action["inputs"]) {
            Ok(_) if state.reply.is_some() => {
                (Status::Failed, json!({"error": "the request already has its response"}))
            }
            Ok(inputs) => {
                state.reply = Some(inputs.clone());
                (Status::Succeeded, inputs)
            }
            Err(e) => (Status::Failed, json!({"error": e})),
        },
        "If" => {
            let condition = match state.render(&action["expression"]) {
                Ok(Value::Bool(b)) => b,
                other => return (Status::Failed, json!({"error": format!("condition: {other:?}")})),
            };
            let branch = if condition { &action["actions"] } else { &action["else"]["actions"] };
            if let Some(branch) = branch.as_object() {
                run_actions(branch, state, runtime).await;
            }
            (Status::Succeeded, Value::Null)
        }
        other => panic!("action type `{other}` is not one this interpreter knows"),
    }
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A run name shaped as Logic Apps names runs.
fn run_name() -> String {
    format!("08584{:022}CU{:02}", 73_000_000_000 + RUNS.fetch_add(1, Ordering::Relaxed), 17)
}

/// One run of `definition` on a request with `headers` and `body` (a JSON body, or a body the
/// engine keeps as `{$content-type, $content}`): the Response it answered with.
async fn run(
    definition: &Value,
    parameters: &[(&str, Value)],
    headers: Value,
    body: Value,
    runtime: &mut Runtime,
) -> (RunState, Option<Value>) {
    let mut values: Map<String, Value> = definition["parameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, p)| (k.clone(), p["defaultValue"].clone()))
        .collect();
    for (k, v) in parameters {
        assert!(values.contains_key(*k), "the definition declares no parameter `{k}`");
        values.insert((*k).to_owned(), v.clone());
    }
    let mut state = RunState {
        parameters: values,
        trigger: json!({"headers": headers, "body": body}),
        run_name: run_name(),
        actions: BTreeMap::new(),
        reply: None,
    };
    run_actions(definition["actions"].as_object().unwrap(), &mut state, runtime).await;
    let reply = state.reply.clone();
    (state, reply)
}

// ---------------------------------------------------------------------------------------------
// The Logic App's managed identity: a fake token endpoint (azure-spec §4.1) minting app-only
// tokens as Entra does (§2.4), signed by the local Entra stand-in Elevate trusts.
// ---------------------------------------------------------------------------------------------

/// The workflow identity's client id and object id: the tests' allow-listed broker.
const WORKFLOW_CLIENT_ID: &str = BROKER_APP;
const WORKFLOW_OBJECT_ID: &str = BROKER_SP;

struct FakeIdentity {
    endpoint: String,
    header: String,
    state: Arc<Mutex<IdentityState>>,
    _server: tokio::task::JoinHandle<()>,
}

struct IdentityState {
    requests: Vec<FakeRequest>,
    /// Whether the identity holds the app role Elevate.Broker (the assignment the deployment makes).
    broker_role: bool,
    /// The API registration's `requestedAccessTokenVersion`: 2 recommended (docs/deploy.md), 1 possible.
    token_version: u8,
    /// Hand out tokens that expired an hour before the test clock's start.
    expired: bool,
}

impl FakeIdentity {
    async fn start(entra: &FakeEntra) -> Arc<FakeIdentity> {
        let state = Arc::new(Mutex::new(IdentityState {
            requests: Vec::new(),
            broker_role: true,
            token_version: 2,
            expired: false,
        }));
        let key: Arc<SigningKey> = entra.key();
        let v2_issuer = entra.v2_issuer();
        let header = "fake-logic-app-identity-header".to_owned();
        let shared = Arc::clone(&state);
        let expected = header.clone();
        let (addr, server) = serve(Arc::new(move |req: FakeRequest| {
            let state = Arc::clone(&shared);
            let key = Arc::clone(&key);
            let v2_issuer = v2_issuer.clone();
            let expected = expected.clone();
            Box::pin(async move {
                let mut s = state.lock().unwrap();
                s.requests.push(req.clone());
                if req.method != "GET" || req.header("x-identity-header") != Some(expected.as_str()) {
                    return FakeReply::json(401, &json!({"statusCode": 401, "message": "Unauthorized request."}));
                }
                let resource = req.query("resource").unwrap_or_default().to_owned();
                // Entra issues tokens only for a resource it knows: Elevate's App ID URI or client id.
                if resource != format!("api://{CLIENT_ID}") && resource != CLIENT_ID {
                    return FakeReply::json(
                        400,
                        &json!({"error": "invalid_resource", "error_description": format!("AADSTS500011: The resource principal named {resource} was not found in the tenant.")}),
                    );
                }
                let now = if s.expired { start() - TimeDelta::hours(25) } else { start() };
                let mut claims = json!({
                    "tid": TENANT, "oid": WORKFLOW_OBJECT_ID, "sub": WORKFLOW_OBJECT_ID, "idtyp": "app",
                    "iat": now.timestamp(), "nbf": now.timestamp(), "exp": (now + TimeDelta::hours(24)).timestamp(),
                });
                if s.token_version == 2 {
                    claims["ver"] = json!("2.0");
                    claims["aud"] = json!(CLIENT_ID);
                    claims["iss"] = json!(v2_issuer);
                    claims["azp"] = json!(WORKFLOW_CLIENT_ID);
                    claims["azpacr"] = json!("2");
                } else {
                    claims["ver"] = json!("1.0");
                    claims["aud"] = json!(resource);
                    claims["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
                    claims["appid"] = json!(WORKFLOW_CLIENT_ID);
                    claims["appidacr"] = json!("2");
                }
                if s.broker_role {
                    claims["roles"] = json!(["Elevate.Broker"]);
                }
                FakeReply::json(
                    200,
                    &json!({
                        "access_token": key.sign(&claims),
                        "expires_on": (now + TimeDelta::hours(24)).timestamp().to_string(),
                        "resource": resource,
                        "token_type": "Bearer",
                        "client_id": WORKFLOW_CLIENT_ID,
                    }),
                )
            })
        }))
        .await;
        Arc::new(FakeIdentity { endpoint: format!("http://{addr}/msi/token"), header, state, _server: server })
    }

    fn set_broker_role(&self, held: bool) {
        self.state.lock().unwrap().broker_role = held;
    }

    fn set_expired(&self, expired: bool) {
        self.state.lock().unwrap().expired = expired;
    }

    fn set_token_version(&self, version: u8) {
        self.state.lock().unwrap().token_version = version;
    }

    fn resources_asked(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.iter().filter_map(|r| r.query("resource").map(str::to_owned)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The request workflow against a running Elevate
// ---------------------------------------------------------------------------------------------

/// The test policy and one more rule: no MFA, but an approver.
fn chat_policy() -> String {
    format!(
        "{}  - id: chat-approved\n    scope: {SUB2}/resourceGroups/chat\n    roles: [Contributor]\n    principals: [user:{ALICE}]\n    requireMfa: false\n    approval:\n      approvers: [user:{BOB}]\n      timeout: PT1H\n",
        test_policy()
    )
}

struct Chat {
    entra: Arc<FakeEntra>,
    identity: Arc<FakeIdentity>,
    app: TestApp,
    definition: Value,
}

impl Chat {
    async fn start() -> Chat {
        let entra = FakeEntra::start().await;
        let identity = FakeIdentity::start(&entra).await;
        let app = spawn_app_with_auth(&chat_policy(), AuthSetting::Entra(crate::identity::settings(&entra))).await;
        Chat { entra, identity, app, definition: definition("chat-requests") }
    }

    /// The workflow's parameters as infra/modules/chat-requests.bicep sets them, for this Elevate.
    fn parameters(&self) -> Vec<(&'static str, Value)> {
        let module = read("infra/modules/chat-requests.bicep");
        let audience = module
            .lines()
            .find_map(|l| l.trim().strip_prefix("elevateAudience: { value: '"))
            .and_then(|l| l.strip_suffix("' }"))
            .expect("chat-requests.bicep sets elevateAudience")
            .replace("${apiClientId}", CLIENT_ID);
        vec![("elevateUrl", json!(self.app.base)), ("elevateAudience", json!(audience))]
    }

    fn runtime(&self) -> Runtime {
        Runtime::new(Some(Arc::clone(&self.identity)))
    }

    /// One run on a trigger request with `body`, as a Teams flow or any system sends it.
    async fn ask(&self, body: Value, runtime: &mut Runtime) -> (RunState, Value) {
        let (state, reply) =
            run(&self.definition, &self.parameters(), json!({"Content-Type": "application/json"}), body, runtime).await;
        let reply = reply.expect("the workflow answers its caller");
        assert_eq!(reply["statusCode"], 200, "the caller always gets text to post: {reply}");
        (state, reply["body"].clone())
    }

    fn admin(&self) -> String {
        let mut claims = v1_claims(DANA, start());
        claims["roles"] = json!(["Elevate.Admin"]);
        self.entra.key().sign(&claims)
    }

    fn alice(&self) -> String {
        self.entra.key().sign(&v1_claims(ALICE, start()))
    }

    async fn activation(&self, id: &str) -> Value {
        let (status, body) = self.app.get(&self.admin(), &format!("/api/activations/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn chatops() -> Value {
    json!({"user": ALICE, "role": "Reader", "scope": format!("{SUB1}/resourceGroups/chat"), "duration": "PT1H", "justification": "from Teams"})
}

/// The request the run's HTTP action sent to Elevate (the last attempt).
fn sent_to_elevate(runtime: &Runtime) -> &Sent {
    &runtime.sent.last().expect("the workflow called Elevate").0
}

#[tokio::test]
async fn a_self_activation_rule_answers_active_from_chat() {
    let chat = Chat::start().await;
    for version in [2, 1] {
        chat.identity.set_token_version(version);
        let mut runtime = chat.runtime();
        let scope = format!("{SUB1}/resourceGroups/chat/providers/Microsoft.Storage/storageAccounts/stchatv{version}");
        let (_, reply) = chat
            .ask(json!({"user": ALICE, "role": "Reader", "scope": scope, "justification": "from Teams"}), &mut runtime)
            .await;
        assert_eq!(reply["outcome"], "Active", "v{version} token: {reply}");
        assert_eq!(reply["elevateStatus"], 201);
        let text = reply["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("Reader on {scope} is active until 2026-11-25T")), "{text}");
        assert!(text.ends_with("/api/portal/sign-in?returnTo=%2Fapi%2Fportal%2Faccess"), "{text}");

        // Exactly the request the definition renders: path, headers, body, the identity's token.
        let sent = sent_to_elevate(&runtime);
        assert_eq!((sent.method.as_str(), sent.url.clone()), ("POST", format!("{}/api/activations", chat.app.base)));
        assert_eq!(sent.header("content-type"), Some("application/json"));
        assert!(sent.header("idempotency-key").is_some_and(|k| k.starts_with("08584")), "the run's name");
        assert_eq!(sent.body["principalId"], ALICE);
        assert_eq!(sent.body["duration"], Value::Null, "an absent duration is sent as null: the rule's longest");
        let token = sent.header("authorization").unwrap().strip_prefix("Bearer ").unwrap();
        let claims = token_claims(token);
        assert_eq!(claims["idtyp"], "app");
        assert_eq!(claims["oid"], WORKFLOW_OBJECT_ID);
        assert_eq!(claims["roles"], json!(["Elevate.Broker"]));
        assert!(claims.get("scp").is_none() && claims.get("amr").is_none(), "an app-only token carries no user");

        // The activation is Alice's, and the audit names the workflow as the broker that asked.
        let activation = chat.activation(reply["activationId"].as_str().unwrap()).await;
        assert_eq!((activation["principalId"].as_str(), activation["status"].as_str()), (Some(ALICE), Some("Active")));
        assert_eq!(
            activation["history"][0]["actor"],
            json!({"kind": "broker", "id": WORKFLOW_OBJECT_ID, "appId": WORKFLOW_CLIENT_ID})
        );
    }
    // The identity asked for a token for Elevate's App ID URI, as main.bicep's ELEVATE_AUDIENCE.
    assert_eq!(chat.identity.resources_asked(), vec![format!("api://{CLIENT_ID}"); 2]);
}

fn token_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn an_mfa_rule_answers_a_link_that_the_user_completes() {
    let chat = Chat::start().await;
    let before = chat.app.snapshot();
    let mut runtime = chat.runtime();
    let ask = json!({"user": ALICE, "role": "Reader", "scope": SUB1, "duration": "PT1H", "justification": ""});
    let (_, reply) = chat.ask(ask, &mut runtime).await;
    assert_eq!(
        (reply["outcome"].as_str(), reply["elevateStatus"].as_u64()),
        (Some("ConfirmationRequired"), Some(202)),
        "{reply}"
    );
    assert_eq!(chat.app.snapshot(), before, "nothing is stored or granted until Alice confirms");
    assert_eq!(
        sent_to_elevate(&runtime).body["justification"],
        Value::Null,
        "an empty field is left out, not sent empty"
    );
    assert_eq!(runtime.sent.len(), 1, "202 is an answer, not a failure: no retry, and no polling of its Location");

    // The link goes through Elevate's sign-in page (Easy Auth answers 401 to the bare link) and
    // comes back to the confirmation Elevate issued.
    let link = reply["link"].as_str().unwrap();
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "Reader on {SUB1} needs your own multi-factor sign-in: open {link} within 15 minutes"
        )),
        "{text}"
    );
    let elevate_answer = runtime.sent[0].1.as_ref().unwrap();
    let confirmation = url::Url::parse(elevate_answer.body["confirmationUrl"].as_str().unwrap()).unwrap();
    let link = url::Url::parse(link).unwrap();
    assert_eq!(link.path(), "/api/portal/sign-in");
    let back: String = link.query_pairs().find(|(k, _)| k == "returnTo").unwrap().1.into_owned();
    assert_eq!(back, confirmation.path());

    // Alice opens it, signed in with MFA, and confirms: now it is hers and active.
    let (status, a) = chat.app.post(&chat.alice(), &back, json!({})).await;
    assert_eq!(
        (status, a["status"].as_str(), a["principalId"].as_str()),
        (StatusCode::CREATED, Some("Active"), Some(ALICE)),
        "{a}"
    );
}

#[tokio::test]
async fn an_approval_rule_answers_pending_and_errors_come_back_as_text() {
    let chat = Chat::start().await;
    let mut runtime = chat.runtime();
    let ask = json!({"user": ALICE, "role": "Contributor", "scope": format!("{SUB2}/resourceGroups/chat"), "justification": "deploy fix", "ticket": {"system": "", "number": ""}});
    let (_, reply) = chat.ask(ask, &mut runtime).await;
    assert_eq!(reply["outcome"], "PendingApproval", "{reply}");
    assert_eq!(sent_to_elevate(&runtime).body["ticket"], Value::Null, "an empty ticket is left out");
    assert!(
        reply["text"].as_str().unwrap().starts_with(&format!(
            "Your request for Contributor on {SUB2}/resourceGroups/chat is waiting for approval"
        ))
    );

    // Elevate's refusals come back with its code and message, and are not retried.
    let mut runtime = chat.runtime();
    let too_long =
        json!({"user": ALICE, "role": "Reader", "scope": format!("{SUB1}/resourceGroups/chat"), "duration": "P2D"});
    let (_, reply) = chat.ask(too_long, &mut runtime).await;
    assert_eq!((reply["outcome"].as_str(), reply["elevateStatus"].as_u64()), (Some("Refused"), Some(400)), "{reply}");
    let text = reply["text"].as_str().unwrap();
    assert!(text.starts_with("Elevate refused the request (PolicyViolation): "), "{text}");
    assert_eq!(reply["error"]["target"], "duration");
    assert_eq!(runtime.sent.len(), 1, "a 400 is not retried");

    // An Elevate that does not answer: the action retries as its policy says, then the caller
    // is told the request may still go through.
    let mut runtime = chat.runtime();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut parameters = chat.parameters();
    parameters[0].1 = json!(format!("http://{closed}"));
    let (_, reply) = run(&chat.definition, &parameters, json!({}), chatops(), &mut runtime).await;
    let reply = reply.unwrap();
    assert_eq!(reply["body"]["outcome"], "NoAnswer", "{reply}");
    assert!(
        reply["body"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Elevate did not answer in time; the request may still go through.")
    );
    let policy = &chat.definition["actions"]["Request_activation"]["inputs"]["retryPolicy"];
    assert_eq!(runtime.sent.len() as u64, 1 + policy["count"].as_u64().unwrap());

    // Easy Auth refuses before Elevate sees the request: a 401 without a body.
    let mut runtime = chat.runtime();
    runtime.fault = Some(Box::new(|_, _| Some(Received { status: 401, headers: Vec::new(), body: Value::Null })));
    let (_, reply) = chat.ask(chatops(), &mut runtime).await;
    assert_eq!(reply["outcome"], "Refused", "{reply}");
    assert_eq!(reply["text"], "Elevate refused the request (401): Elevate gave no reason");
}

#[tokio::test]
async fn a_retried_action_or_a_resent_request_creates_nothing_new() {
    let chat = Chat::start().await;
    // Elevate takes the request, and its answer is lost on the way back (a gateway's 502): the
    // action's retry policy sends it again, with the same Idempotency-Key, and Elevate replays.
    let mut runtime = chat.runtime();
    runtime.fault = Some(Box::new(|attempt, answer| {
        if attempt == 0 { Some(Received { status: 502, headers: Vec::new(), body: Value::Null }) } else { answer }
    }));
    let ask = json!({"requestId": "teams-run-0858", "user": ALICE, "role": "Reader", "scope": format!("{SUB1}/resourceGroups/chat"), "justification": "from Teams"});
    let (_, reply) = chat.ask(ask.clone(), &mut runtime).await;
    assert_eq!(reply["outcome"], "Active", "{reply}");
    assert_eq!(runtime.sent.len(), 2);
    let (first, second) = (&runtime.sent[0].0, &runtime.sent[1].0);
    assert_eq!(first.header("idempotency-key"), Some("teams-run-0858"), "the caller's request id is the key");
    assert_eq!((first.header("idempotency-key"), &first.body), (second.header("idempotency-key"), &second.body));
    let replayed = runtime.sent[1].1.as_ref().unwrap();
    assert!(replayed.headers.iter().any(|(k, v)| k == "idempotent-replayed" && v == "true"), "{replayed:?}");

    // The Teams flow sends the same request again (its own retry): a new run, the same key,
    // the same answer, nothing new stored.
    let after_first = chat.app.snapshot();
    let mut runtime = chat.runtime();
    let (_, again) = chat.ask(ask, &mut runtime).await;
    assert_eq!(
        (again["outcome"].as_str(), &again["activationId"]),
        (Some("Active"), &reply["activationId"]),
        "{again}"
    );
    assert_eq!(chat.app.snapshot(), after_first, "a resent request creates nothing new");
}

#[tokio::test]
async fn a_workflow_identity_without_the_broker_role_is_refused() {
    let chat = Chat::start().await;
    chat.identity.set_broker_role(false);
    let before = chat.app.snapshot();
    let mut runtime = chat.runtime();
    let (_, reply) = chat.ask(chatops(), &mut runtime).await;
    assert_eq!((reply["outcome"].as_str(), reply["elevateStatus"].as_u64()), (Some("Refused"), Some(403)), "{reply}");
    assert_eq!(reply["error"]["code"], "BrokerNotAllowed");
    assert!(reply["text"].as_str().unwrap().starts_with("Elevate refused the request (BrokerNotAllowed): "));
    assert_eq!(runtime.sent.len(), 1, "a 403 is not retried");
    assert_eq!(chat.app.snapshot(), before);

    // A token Elevate does not accept (here: expired) is a 401, told as such and not retried.
    chat.identity.set_broker_role(true);
    chat.identity.set_expired(true);
    let mut runtime = chat.runtime();
    let (_, reply) = chat.ask(chatops(), &mut runtime).await;
    assert_eq!((reply["outcome"].as_str(), reply["elevateStatus"].as_u64()), (Some("Refused"), Some(401)), "{reply}");
    assert!(reply["text"].as_str().unwrap().starts_with("Elevate refused the request (InvalidToken): "), "{reply}");
    assert_eq!(runtime.sent.len(), 1);
    assert_eq!(chat.app.snapshot(), before);
}

// ---------------------------------------------------------------------------------------------
// The definitions: the language's shapes, and the body Elevate's OpenAPI document describes
// ---------------------------------------------------------------------------------------------

const SCHEMA: &str =
    "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#";

/// Checks `actions` (and nested branches) against the action shapes of the language reference.
fn check_actions(actions: &Map<String, Value>, workflow: &str) {
    for (name, action) in actions {
        assert!(!name.contains(' '), "{workflow}: action names use underscores: `{name}`");
        let keys: BTreeSet<&str> = action.as_object().unwrap().keys().map(String::as_str).collect();
        let run_after = action["runAfter"].as_object().unwrap_or_else(|| panic!("{workflow}.{name}: runAfter"));
        for (before, statuses) in run_after {
            assert!(
                actions.contains_key(before),
                "{workflow}.{name} runs after `{before}`, a sibling it does not have"
            );
            for s in statuses.as_array().unwrap() {
                Status::parse(s.as_str().unwrap());
            }
        }
        let allowed: &[&str] = match action["type"].as_str().unwrap() {
            "Http" => {
                let inputs = &action["inputs"];
                assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&inputs["method"].as_str().unwrap()));
                assert!(inputs["uri"].is_string());
                let retry = &inputs["retryPolicy"];
                match retry["type"].as_str().unwrap() {
                    "none" => assert_eq!(retry.as_object().unwrap().len(), 1),
                    "exponential" | "fixed" => {
                        let count = retry["count"].as_u64().unwrap();
                        assert!((1..=90).contains(&count), "retry count 1 to 90");
                        for interval in ["interval", "minimumInterval", "maximumInterval"] {
                            if let Some(v) = retry.get(interval) {
                                IsoDuration::parse(v.as_str().unwrap()).unwrap();
                            }
                        }
                    }
                    other => panic!("{workflow}.{name}: retry policy `{other}`"),
                }
                if let Some(auth) = inputs.get("authentication") {
                    assert_eq!(auth["type"], "ManagedServiceIdentity");
                    assert_eq!(auth.as_object().unwrap().len(), 2, "type and audience: the system-assigned identity");
                }
                &["type", "inputs", "runAfter", "operationOptions", "runtimeConfiguration"]
            }
            "Compose" => &["type", "inputs", "runAfter"],
            "Response" => {
                assert_eq!(action["kind"], "Http");
                let code = action["inputs"]["statusCode"].as_u64().unwrap();
                assert!((200..600).contains(&code) && !(300..400).contains(&code), "2xx, 4xx or 5xx");
                &["type", "kind", "inputs", "runAfter"]
            }
            "If" => {
                check_actions(action["actions"].as_object().unwrap(), workflow);
                check_actions(action["else"]["actions"].as_object().unwrap(), workflow);
                &["type", "expression", "actions", "else", "runAfter"]
            }
            other => panic!("{workflow}.{name}: action type `{other}`"),
        };
        for key in keys {
            assert!(allowed.contains(&key), "{workflow}.{name}: `{key}` is not part of this action type");
        }
        if let Some(option) = action.get("operationOptions") {
            assert_eq!(option, "DisableAsyncPattern", "{workflow}.{name}");
        }
        if let Some(config) = action.get("runtimeConfiguration") {
            assert_eq!(config, &json!({"secureData": {"properties": ["inputs"]}}), "{workflow}.{name}");
        }
    }
}

#[test]
fn the_definitions_keep_to_the_workflow_definition_language() {
    for workflow in ["chat-requests", "chat-notices"] {
        let d = definition(workflow);
        let top: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(top, BTreeSet::from(["$schema", "contentVersion", "parameters", "triggers", "actions", "outputs"]));
        assert_eq!(d["$schema"], SCHEMA);
        assert_eq!(d["contentVersion"], "1.0.0.0");
        for (name, p) in d["parameters"].as_object().unwrap() {
            let ty = p["type"].as_str().unwrap();
            assert!(
                ["String", "SecureString", "Int", "Float", "Bool", "Array", "Object", "SecureObject"].contains(&ty),
                "{workflow}: parameter {name} of type {ty}"
            );
            assert!(p.get("defaultValue").is_some(), "{workflow}: parameter {name} needs a defaultValue");
            let fits = match ty {
                "String" | "SecureString" => p["defaultValue"].is_string(),
                "Object" => p["defaultValue"].is_object(),
                _ => true,
            };
            assert!(fits, "{workflow}: {name}'s default is a {ty}");
        }
        // One trigger: an HTTP request (POST) with a JSON schema, called through its SAS URL.
        let triggers = d["triggers"].as_object().unwrap();
        assert_eq!(triggers.keys().collect::<Vec<_>>(), ["manual"], "{workflow}");
        let manual = &triggers["manual"];
        assert_eq!((manual["type"].as_str(), manual["kind"].as_str()), (Some("Request"), Some("Http")));
        assert_eq!(manual["inputs"]["method"], "POST");
        assert_eq!(manual["inputs"]["schema"]["type"], "object");
        check_actions(d["actions"].as_object().unwrap(), workflow);
        // Every expression parses, and calls only functions the interpreter knows.
        let mut sources = Vec::new();
        all_expressions(&d, &mut sources);
        assert!(!sources.is_empty());
        let mut used = BTreeSet::new();
        for source in &sources {
            functions_of(&parse(source).unwrap_or_else(|e| panic!("{workflow}: {e}")), &mut used);
        }
        for f in &used {
            assert!(FUNCTIONS.contains(&f.as_str()), "{workflow} calls {f}()");
        }
        // Every parameter the definition uses is declared.
        for source in &sources {
            for declared in source.split("parameters('").skip(1).map(|s| s.split('\'').next().unwrap()) {
                assert!(d["parameters"].get(declared).is_some(), "{workflow} uses undeclared parameter {declared}");
            }
        }
    }
    // The request workflow reads Elevate's answer even when the call fails (4xx, 5xx, no answer),
    // and a 202 is taken as the answer it is: Elevate's Location then is the user's link, which
    // the asynchronous pattern would otherwise poll with the workflow's own token.
    let requests = definition("chat-requests");
    let call = &requests["actions"]["Request_activation"];
    assert_eq!(call["operationOptions"], "DisableAsyncPattern");
    assert_eq!(
        requests["actions"]["Answer"]["runAfter"]["Request_activation"],
        json!(["Succeeded", "Failed", "TimedOut"])
    );
    // Retried are only 408, 429, 5xx and no answer, each with the same Idempotency-Key: a
    // replay, never a second activation.
    assert_eq!(call["inputs"]["retryPolicy"]["type"], "exponential");
    assert_eq!(
        call["inputs"]["headers"]["Idempotency-Key"],
        "@{coalesce(triggerBody()?['requestId'], workflow().run.name)}"
    );
    // The notices workflow leaves retries to Elevate's outbox: a failed post answers 502.
    let notices = definition("chat-notices");
    let listed = &notices["actions"]["Listed"]["actions"];
    assert_eq!(listed["Post_to_Teams"]["inputs"]["retryPolicy"], json!({"type": "none"}));
    assert_eq!(listed["Not_posted"]["inputs"]["statusCode"], 502);
}

/// `#/components/schemas/{name}` of Elevate's OpenAPI document, `$ref`s resolved.
fn openapi_schema(openapi: &Value, schema: &Value) -> Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => openapi_schema(openapi, &openapi["components"]["schemas"][r.rsplit('/').next().unwrap()]),
        None => schema.clone(),
    }
}

/// Whether `value` fits `schema` (the subset the request schema uses: type, required,
/// additionalProperties, properties, maxLength, format uuid).
fn fits(openapi: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = openapi_schema(openapi, schema);
    if value.is_null() {
        // OpenAPI 3.0: `null` only where the schema says `nullable`.
        return if schema["nullable"] == true { Ok(()) } else { Err(format!("{at} is null but not nullable")) };
    }
    if let Some(all) = schema["allOf"].as_array() {
        return all.iter().try_for_each(|part| fits(openapi, part, value, at));
    }
    match schema["type"].as_str() {
        Some("object") => {
            let map = value.as_object().ok_or(format!("{at} is not an object"))?;
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                if map.get(name).is_none_or(Value::is_null) {
                    return Err(format!("{at}.{name} is required"));
                }
            }
            for (k, v) in map {
                let Some(property) = schema["properties"].get(k) else {
                    assert_eq!(schema["additionalProperties"], false);
                    return Err(format!("{at}.{k} is not in the schema"));
                };
                fits(openapi, property, v, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        Some("string") => {
            let s = value.as_str().ok_or(format!("{at} is not a string"))?;
            if let Some(max) = schema["maxLength"].as_u64()
                && s.chars().count() as u64 > max
            {
                return Err(format!("{at} is longer than {max}"));
            }
            if schema["format"] == "uuid" && uuid::Uuid::parse_str(s).is_err() {
                return Err(format!("{at} is not a uuid"));
            }
            Ok(())
        }
        other => panic!("schema type {other:?} at {at}"),
    }
}

#[tokio::test]
async fn the_rendered_request_is_elevates_openapi_request() {
    let openapi: Value = serde_json::from_str(&read("src/http/openapi.json")).unwrap();
    let operation = &openapi["paths"]["/api/activations"]["post"];
    let request_schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    let schema = openapi_schema(&openapi, request_schema);
    let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let idempotency =
        operation["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "Idempotency-Key").unwrap();
    assert_eq!(idempotency["in"], "header");

    let requests = definition("chat-requests");
    let inputs = &requests["actions"]["Request_activation"]["inputs"];
    assert_eq!(inputs["method"], "POST");
    assert!(inputs["uri"].as_str().unwrap().ends_with("/api/activations"), "the path the OpenAPI document names");
    // The body names only the request schema's properties, every required one among them.
    let body_keys: Vec<&str> = inputs["body"].as_object().unwrap().keys().map(String::as_str).collect();
    for key in &body_keys {
        assert!(schema["properties"].get(*key).is_some(), "{key} is not in ActivationRequest");
    }
    for key in &required {
        assert!(body_keys.contains(key), "ActivationRequest requires {key}");
    }
    // Rendered from trigger payloads, full and minimal, it fits the schema: values of the declared
    // types, absent ones as null (Elevate reads a null as absent; the tests above send them).
    let full = json!({"requestId": "r-1", "user": ALICE, "role": "Reader", "scope": SUB1, "duration": "PT1H", "justification": "INC-7", "ticket": {"system": "ServiceNow", "number": "INC0012345"}});
    let minimal = json!({"user": ALICE, "role": "Reader", "scope": SUB1});
    let empty_fields = json!({"user": ALICE, "role": "Reader", "scope": SUB1, "duration": "", "justification": "", "ticket": {"system": "", "number": ""}});
    for payload in [full.clone(), minimal, empty_fields] {
        let state = RunState {
            parameters: Map::from_iter([
                ("elevateUrl".to_owned(), json!("https://elevate.example")),
                ("elevateAudience".to_owned(), json!("api://x")),
            ]),
            trigger: json!({"headers": {}, "body": payload.clone()}),
            run_name: run_name(),
            actions: BTreeMap::new(),
            reply: None,
        };
        let rendered = state.render(inputs).unwrap();
        fits(&openapi, request_schema, &rendered["body"], "body").unwrap_or_else(|e| panic!("{e}: {rendered}"));
        fits(&openapi, &idempotency["schema"], &rendered["headers"]["Idempotency-Key"], "Idempotency-Key").unwrap();
        assert_eq!(rendered["headers"]["Content-Type"], "application/json");
        assert_eq!(rendered["uri"], "https://elevate.example/api/activations");
        assert_eq!(rendered["authentication"], json!({"type": "ManagedServiceIdentity", "audience": "api://x"}));
        let body = rendered["body"].as_object().unwrap();
        for (k, v) in body {
            assert!(!v.is_null() || !required.contains(&k.as_str()), "{k} is required but null");
            assert!(v.as_str() != Some(""), "{k} is sent empty: Elevate refuses empty fields");
        }
        if payload == full {
            assert_eq!(rendered["body"]["ticket"], full["ticket"]);
            assert_eq!(rendered["headers"]["Idempotency-Key"], "r-1");
        } else {
            assert_eq!(rendered["headers"]["Idempotency-Key"], json!(state.run_name));
        }
    }
    // The trigger's schema takes what the README documents, and the caller's request id.
    let trigger = &requests["triggers"]["manual"]["inputs"]["schema"];
    let mut fields: Vec<&str> = trigger["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["duration", "justification", "requestId", "role", "scope", "ticket", "user"]);
    assert_eq!(trigger["required"], json!(["user", "role", "scope"]));
    assert_eq!(
        trigger["properties"]["ticket"]["required"],
        openapi_schema(&openapi, &schema["properties"]["ticket"]["allOf"][0])["required"]
    );
}

// ---------------------------------------------------------------------------------------------
// The notices workflow on a running Elevate's events
// ---------------------------------------------------------------------------------------------

const SECRET: &str = "a webhook secret of at least thirty-two characters";
const ELEVATE_URL: &str = "https://elevate-contoso.azurewebsites.net";

/// A Logic App host for the notices workflow: each request to it is a run; it answers with the
/// run's Response. It keeps every answer.
struct NoticesHost {
    url: String,
    answers: Arc<Mutex<Vec<Value>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl NoticesHost {
    async fn start(teams_url: String) -> NoticesHost {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&answers);
        let definition = Arc::new(definition("chat-notices"));
        let (addr, server) = serve(Arc::new(move |req: FakeRequest| {
            let answers = Arc::clone(&shared);
            let definition = Arc::clone(&definition);
            let teams_url = teams_url.clone();
            Box::pin(async move {
                let content_type = req.header("content-type").unwrap_or_default().to_owned();
                // The engine parses application/json; other types it keeps as binary content.
                let body = if content_type.starts_with("application/json") {
                    serde_json::from_slice(&req.body).unwrap()
                } else {
                    json!({"$content-type": content_type, "$content": STANDARD.encode(&req.body)})
                };
                let headers: Map<String, Value> = req.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                let mut runtime = Runtime::new(None);
                let parameters = [("elevateUrl", json!(ELEVATE_URL)), ("teamsWebhookUrl", json!(teams_url))];
                let (_, reply) = run(&definition, &parameters, Value::Object(headers), body, &mut runtime).await;
                let reply = reply.expect("every run answers Elevate");
                answers.lock().unwrap().push(reply.clone());
                FakeReply::json(reply["statusCode"].as_u64().unwrap() as u16, &reply["body"])
            })
        }))
        .await;
        NoticesHost {
            url: format!(
                "http://{addr}/workflows/chat-notices/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SECRET-SIG"
            ),
            answers,
            _server: server,
        }
    }

    async fn wait_for_answers(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            if self.answers.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.answers.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn elevates_events_become_teams_posts_and_nothing_else() {
    let teams = FakeWebhook::start().await;
    let host = NoticesHost::start(teams.url("teams-chat")).await;
    let notifications = NotificationSettings {
        teams: None,
        events: Some((WebhookUrl::new(&host.url).unwrap(), EventSecret::new(SECRET.into()))),
        expiry_warning: IsoDuration::parse("PT15M").unwrap(),
    };
    let app = spawn_with_notifications(&test_policy(), notifications).await;
    // A display name is anyone's to choose: it must not become a link or markup in the channel.
    let alice = app.mint(elevate::adapters::identity::dev::DevTokenRequest {
        name: Some("[Alice](https://evil.example) <b>".into()),
        ..user(ALICE)
    });
    let chat_reader = json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/chat"), "duration": "PT1H", "justification": "from Teams"});
    let reader = app.activate(&alice, chat_reader).await;
    let posts = teams.wait_for("teams-chat", 1).await;
    assert_eq!(posts.len(), 1);
    let card = &posts[0];
    assert_eq!(card["type"], "message");
    assert_eq!(card["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
    let content = &card["attachments"][0]["content"];
    assert_eq!((content["type"].as_str(), content["version"].as_str()), (Some("AdaptiveCard"), Some("1.4")));
    let text = content["body"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "(Alice)(https://evil.example) (b): Reader on {SUB1}/resourceGroups/chat: active until 2026-11-25T13:00:00"
        )),
        "{text}"
    );
    assert!(!text.contains('[') && !text.contains('<'), "{text}");
    let actions = content["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["type"], "Action.OpenUrl");
    assert_eq!(
        actions[0]["url"],
        format!("{ELEVATE_URL}/api/portal/sign-in?returnTo=%2Fapi%2Fportal%2Faccess"),
        "the only link: Elevate's own"
    );

    // Ended early: posted. Approval needed: answered, and left to Elevate's own approver cards.
    let (status, _) =
        app.post(&alice, &format!("/api/activations/{}/deactivate", reader["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let prod = json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "INC-7"});
    let prod = app.activate(&alice, prod).await;
    let answers = host.wait_for_answers(3).await;
    let mut bodies: Vec<String> = answers.iter().map(|a| a["body"].to_string()).collect();
    bodies.sort();
    let expected =
        [json!({"ignored": "approvalNeeded"}), json!({"posted": "activated"}), json!({"posted": "deactivated"})];
    assert_eq!(bodies, expected.map(|v| v.to_string()));
    assert!(answers.iter().all(|a| a["statusCode"] == 200), "{answers:?}");
    assert_eq!(teams.accepted_json("teams-chat").len(), 2);

    // Teams down: the workflow answers 502, Elevate's outbox sends the events again later, and
    // each reaches the channel once.
    teams.set_down(Some(503));
    let (status, _) = app.decide(&app.token(BOB), prod["id"].as_str().unwrap(), "Approve").await;
    assert_eq!(status, StatusCode::OK);
    // Approved, then active: Teams refuses the first, the workflow answers 502, and Elevate's
    // deliverer holds this sink's notices back until a later run.
    let answers = host.wait_for_answers(4).await;
    assert_eq!(answers[3]["statusCode"], 502, "{answers:?}");
    teams.set_down(None);
    app.advance(10);
    let report = app.sweep().await;
    assert_eq!(report["noticesDelivered"], 2, "{report}");
    let texts: Vec<String> = teams
        .wait_for("teams-chat", 4)
        .await
        .iter()
        .map(|c| c["attachments"][0]["content"]["body"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 4, "each event once: {texts:?}");
    assert!(texts.iter().any(|t| t.ends_with(&format!("Contributor on {SUB2}: approved."))), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains(&format!("Contributor on {SUB2}: active until "))), "{texts:?}");
}
