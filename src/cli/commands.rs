//! One function per client command: connect, make one call (or follow pages), print.
//!
//! Must never print anything but the command's result on stdout (progress and errors go to
//! stderr), so that `--output json` is always parseable.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::service::{DEFAULT_PAGE, MAX_LIST};

use super::Env;
use super::args::{
    ActivateArgs, ApprovalsArgs, AuditArgs, ClientCommand, Connection, DecideArgs, ExtendArgs, IdArgs, ListArgs,
};
use super::challenge::Lack;
use super::client::{ApiClient, Repeat};
use super::error::{CliError, one_line};
use super::output::{self, Details, Format, print};
use super::token::{self, SignInSettings};
use super::views::{ActivationView, AuditView, ConfirmationView, EligibilityView, MeView, PreviewView, read};
use super::wait::{self, WaitSettings};

pub async fn execute(command: ClientCommand, env: Env<'_>) -> Result<(), CliError> {
    match command {
        ClientCommand::Eligible(a) => eligible(&a.connection, env).await,
        ClientCommand::Activate(a) => activate(&a, env).await,
        ClientCommand::List(a) => list(&a, env).await,
        ClientCommand::Show(a) => show(&a, env).await,
        ClientCommand::Deactivate(a) => change(&a, "deactivate", env).await,
        ClientCommand::Cancel(a) => change(&a, "cancel", env).await,
        ClientCommand::Extend(a) => extend(&a, env).await,
        ClientCommand::Approvals(a) => approvals(&a, env).await,
        ClientCommand::Approve(a) => decide(&a, "Approve", env).await,
        ClientCommand::Deny(a) => decide(&a, "Deny", env).await,
        ClientCommand::Audit(a) => match &a.command {
            Some(super::args::AuditCommand::Verify(v)) => super::verify::run(v, env).await,
            None => audit(&a, env).await,
        },
        ClientCommand::Whoami(a) => whoami(&a.connection, env).await,
    }
}

/// The client for `--url` (or `ELEVATE_URL`) with a token from `token::acquire`.
async fn connect(c: &Connection, env: Env<'_>) -> Result<ApiClient, CliError> {
    let (raw, from) = match (&c.url, env("ELEVATE_URL")) {
        (Some(url), _) => (url.clone(), "--url"),
        (None, Some(url)) => (url, "ELEVATE_URL"),
        (None, None) => return Err(CliError::usage("no Elevate address: pass --url or set ELEVATE_URL")),
    };
    let base = crate::endpoint::parse(&raw).map_err(|e| CliError::usage(format!("{from} `{}` {e}", one_line(&raw))))?;
    let settings = SignInSettings {
        token: c.token.clone().map(|t| (t, "--token")).or_else(|| env("ELEVATE_TOKEN").map(|t| (t, "ELEVATE_TOKEN"))),
        audience: c.audience.clone().or_else(|| env("ELEVATE_AUDIENCE")),
        tenant: c.tenant.clone().or_else(|| env("ELEVATE_TENANT_ID")),
    };
    let token = token::acquire(&settings).await?;
    ApiClient::new(base, token, settings)
}

fn activation_path(id: &impl std::fmt::Display, action: Option<&str>) -> String {
    let id = crate::endpoint::encode_component(&id.to_string());
    match action {
        Some(action) => format!("/api/activations/{id}/{action}"),
        None => format!("/api/activations/{id}"),
    }
}

fn read_all<T: serde::de::DeserializeOwned>(what: &str, items: &[Value]) -> Result<Vec<T>, CliError> {
    items.iter().map(|v| read(what, v)).collect()
}

/// Prints one activation: the answer itself, or its details.
fn print_activation(body: &Value, format: Format, headline: Option<&str>) -> Result<(), CliError> {
    match format {
        Format::Json => print(&output::json(body)),
        Format::Table => {
            let view: ActivationView = read("an activation", body)?;
            let mut text = headline.map(|h| format!("{h}\n")).unwrap_or_default();
            text.push_str(&output::activation(&view));
            print(&text)
        }
    }
}

async fn eligible(c: &Connection, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(c, env).await?;
    let got = client.collect(client.url("/api/eligibilities", &[])?, None).await?;
    match c.output {
        Format::Json => print(&output::json(&Value::Array(got.items))),
        Format::Table => print(&output::eligibilities(&read_all::<EligibilityView>("a rule", &got.items)?)),
    }
}

/// The body of `POST /api/activations`.
fn request_body(a: &ActivateArgs) -> Value {
    let mut body = Map::new();
    body.insert("roleDefinitionId".into(), json!(a.role));
    body.insert("scope".into(), json!(a.scope));
    if let Some(d) = &a.duration {
        body.insert("duration".into(), json!(d.to_string()));
    }
    if let Some(j) = &a.justification {
        body.insert("justification".into(), json!(j.as_str()));
    }
    if let (Some(system), Some(number)) = (&a.ticket_system, &a.ticket_number) {
        body.insert("ticket".into(), json!({"system": system.as_str(), "number": number.as_str()}));
    }
    if let Some(t) = &a.start_at {
        body.insert("startAt".into(), json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    }
    if let Some(r) = &a.rule {
        body.insert("ruleId".into(), json!(r.as_str()));
    }
    Value::Object(body)
}

async fn activate(a: &ActivateArgs, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(&a.connection, env).await?;
    let format = a.connection.output;
    let body = request_body(a);
    if a.dry_run {
        return dry_run(&client, &body, format).await;
    }
    // One key per invocation: the client's own retries of this POST are then replays.
    let key = uuid::Uuid::new_v4().to_string();
    let answer = client.post(&client.url("/api/activations", &[])?, Some(&body), Some(&key), Repeat::Safe).await?;
    if answer.status == 202 {
        return awaiting_confirmation(&answer.body, format);
    }
    let view: ActivationView = read("an activation", &answer.body)?;
    if !a.wait {
        return print_activation(&answer.body, format, None);
    }
    let settings =
        WaitSettings { timeout: Duration::from_secs(a.timeout), interval: Duration::from_millis(a.poll_interval_ms) };
    let waited = wait::until_active(&client, answer.body, view, &settings).await?;
    print_activation(&waited.body, format, None)?;
    waited.verdict
}

/// A broker's request that waits for the user's own confirmation (202).
fn awaiting_confirmation(body: &Value, format: Format) -> Result<(), CliError> {
    match format {
        Format::Json => print(&output::json(body)),
        Format::Table => {
            let c: ConfirmationView = read("a confirmation", body)?;
            let mut d = Details::new();
            d.add("Status", &c.status)
                .add_some("Confirm at", c.confirmation_url.as_deref())
                .add_some("Note", c.message.as_deref());
            print(&d.render())
        }
    }
}

async fn dry_run(client: &ApiClient, body: &Value, format: Format) -> Result<(), CliError> {
    let url = client.url("/api/activations", &[("validateOnly", "true".into())])?;
    let answer = client.post(&url, Some(body), None, Repeat::Safe).await?;
    if answer.body.get("validateOnly") != Some(&Value::Bool(true)) {
        // An Elevate that does not know validateOnly took the request as a real one.
        let id = answer.body.get("id").and_then(Value::as_str).map(one_line).unwrap_or_else(|| "?".into());
        return Err(CliError::unavailable(
            "ValidateOnlyUnsupported",
            format!(
                "this Elevate does not support --dry-run and took the request as real (answer {}, activation {id}); \
                 withdraw it with `elevate cancel {id}` or `elevate deactivate {id}`",
                answer.status
            ),
        ));
    }
    let preview: PreviewView = read("a dry-run answer", &answer.body)?;
    match format {
        Format::Json => print(&output::json(&answer.body))?,
        Format::Table => print(&output::preview(&preview))?,
    }
    if preview.ready {
        return Ok(());
    }
    let messages: Vec<String> = preview.needs.iter().map(|n| one_line(&n.message)).collect();
    let message =
        if messages.is_empty() { "the request would not be accepted as it stands".into() } else { messages.join("; ") };
    let sign_in = preview.needs.iter().find(|n| n.requirement == "authContext" || n.requirement == "mfa");
    match sign_in {
        Some(need) => {
            let lack = match need.claims.as_deref() {
                Some(claims) => Lack::Claims { claims },
                None => Lack::Mfa,
            };
            Err(CliError::SignIn { code: "SignInNeeded".into(), message, hint: Some(client.sign_in_hint(lack)) })
        }
        None => Err(CliError::Refused { code: "NotReady".into(), message, hint: None }),
    }
}

async fn list(a: &ListArgs, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(&a.connection, env).await?;
    let mut query = vec![("$top", MAX_LIST.to_string())];
    if let Some(s) = a.status {
        query.push(("status", s.as_str().to_owned()));
    }
    if a.all {
        query.push(("mine", "false".into()));
    }
    let got = client.collect(client.url("/api/activations", &query)?, None).await?;
    match a.connection.output {
        Format::Json => print(&output::json(&Value::Array(got.items))),
        Format::Table => print(&output::activations(&read_all::<ActivationView>("an activation", &got.items)?)),
    }
}

async fn show(a: &IdArgs, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(&a.connection, env).await?;
    let body = client.get(&activation_path(&a.id, None), &[]).await?;
    print_activation(&body, a.connection.output, None)
}

/// `deactivate` and `cancel`.
async fn change(a: &IdArgs, action: &str, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(&a.connection, env).await?;
    let url = client.url(&activation_path(&a.id, Some(action)), &[])?;
    let answer = client.post(&url, None, None, Repeat::Once).await?;
    let headline = if action == "cancel" { "Canceled." } else { "Deactivated." };
    print_activation(&answer.body, a.connection.output, Some(headline))
}

async fn extend(a: &ExtendArgs, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(&a.connection, env).await?;
    let mut body = Map::new();
    body.insert("duration".into(), json!(a.duration.to_string()));
    if let Some(j) = &a.justification {
        body.insert("justification".into(), json!(j.as_str()));
    }
    let url = client.url(&activation_path(&a.id, Some("extend")), &[])?;
    let answer = client.post(&url, Some(&Value::Object(body)), None, Repeat::Once).await?;
    let pending = answer.body.get("pendingExtension").is_some_and(|p| !p.is_null());
    let headline = if pending { "Extension requested: it waits for approval." } else { "Extended." };
    print_activation(&answer.body, a.connection.output, Some(headline))
}

async fn approvals(a: &ApprovalsArgs, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(&a.connection, env).await?;
    if let Some(id) = &a.id {
        let path = format!("/api/approvals/{}", crate::endpoint::encode_component(&id.to_string()));
        let body = client.get(&path, &[]).await?;
        return print_activation(&body, a.connection.output, None);
    }
    let got = client.collect(client.url("/api/approvals", &[("$top", MAX_LIST.to_string())])?, None).await?;
    match a.connection.output {
        Format::Json => print(&output::json(&Value::Array(got.items))),
        Format::Table => print(&output::approvals(&read_all::<ActivationView>("an activation", &got.items)?)),
    }
}

/// `approve` and `deny`.
async fn decide(a: &DecideArgs, decision: &str, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(&a.connection, env).await?;
    let url = client.url(&format!("/api/approvals/{}", crate::endpoint::encode_component(&a.id.to_string())), &[])?;
    let body = json!({"decision": decision, "justification": a.justification.as_str()});
    let answer = client.post(&url, Some(&body), None, Repeat::Once).await?;
    let headline = if decision == "Approve" { "Approved." } else { "Denied." };
    print_activation(&answer.body, a.connection.output, Some(headline))
}

async fn audit(a: &AuditArgs, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(&a.connection, env).await?;
    let time = |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let top = a.top.map(usize::from);
    let page = top.unwrap_or(if a.all { MAX_LIST } else { DEFAULT_PAGE });
    let mut query = vec![("$top", page.to_string())];
    let filters = [
        ("activationId", a.activation.as_ref().map(ToString::to_string)),
        ("principalId", a.principal.as_ref().map(ToString::to_string)),
        ("since", a.since.as_ref().map(time)),
        ("until", a.until.as_ref().map(time)),
        ("roleDefinitionId", a.role.clone()),
        ("scope", a.scope.clone()),
        ("action", a.action.clone()),
    ];
    query.extend(filters.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let limit = if a.all { None } else { Some(page) };
    let got = client.collect(client.url("/api/audit", &query)?, limit).await?;
    match a.connection.output {
        Format::Json => print(&output::json(&Value::Array(got.items)))?,
        Format::Table => print(&output::audit(&read_all::<AuditView>("an audit event", &got.items)?))?,
    }
    if got.more {
        output::note(&format!("elevate: showing the first {page} events; pass --all for every one"));
    }
    Ok(())
}

async fn whoami(c: &Connection, env: Env<'_>) -> Result<(), CliError> {
    let client = connect(c, env).await?;
    let body = client.get("/api/me", &[]).await?;
    match c.output {
        Format::Json => print(&output::json(&body)),
        Format::Table => print(&output::me(&read::<MeView>("a caller", &body)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn activate_args(args: &[&str]) -> ActivateArgs {
        let mut argv = vec!["elevate", "activate"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            ClientCommand::Activate(a) => a,
            _ => panic!("not activate"),
        }
    }

    #[test]
    fn the_request_body_has_the_apis_field_names() {
        let a = activate_args(&[
            "--role",
            "Reader",
            "--scope",
            "/subscriptions/x",
            "--duration",
            "pt90m",
            "--justification",
            " INC-1 ",
            "--ticket-system",
            "ServiceNow",
            "--ticket-number",
            "INC0012345",
            "--start-at",
            "2026-11-25T15:00:00+01:00",
            "--rule",
            "self-reader",
        ]);
        assert_eq!(
            request_body(&a),
            json!({
                "roleDefinitionId": "Reader", "scope": "/subscriptions/x", "duration": "PT1H30M",
                "justification": "INC-1", "ticket": {"system": "ServiceNow", "number": "INC0012345"},
                "startAt": "2026-11-25T14:00:00Z", "ruleId": "self-reader"
            })
        );
        let a = activate_args(&["--role", "Reader", "--scope", "/subscriptions/x"]);
        assert_eq!(request_body(&a), json!({"roleDefinitionId": "Reader", "scope": "/subscriptions/x"}));
    }

    #[test]
    fn bad_values_are_usage_errors_before_anything_is_sent() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["elevate"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).map(|_| ()).map_err(|e| e.exit_code())
        };
        assert_eq!(parse(&["activate", "--role", "Reader", "--scope", "/s", "--duration", "1h"]), Err(2));
        assert_eq!(parse(&["activate", "--role", "R", "--scope", "/s", "--ticket-system", "SN"]), Err(2));
        assert_eq!(parse(&["activate", "--role", "R", "--scope", "/s", "--dry-run", "--wait"]), Err(2));
        assert_eq!(parse(&["show", "not-a-guid"]), Err(2));
        assert_eq!(parse(&["list", "--status", "Sleeping"]), Err(2));
        assert_eq!(parse(&["approve", "0b7c2a5e-49d5-4d8e-9f3a-6a1f3e0c9d11"]), Err(2));
        assert_eq!(parse(&["audit", "--top", "0"]), Err(2));
        assert_eq!(parse(&["list", "--status", "active", "--all", "-o", "json"]), Ok(()));
    }

    #[tokio::test]
    async fn a_missing_or_unusable_url_is_a_usage_error() {
        let none = |_: &str| None;
        let c = Connection { url: None, token: Some("t".into()), audience: None, tenant: None, output: Format::Table };
        let e = connect(&c, &none).await.err().unwrap();
        assert_eq!((e.exit_code(), e.to_string()), (2, "no Elevate address: pass --url or set ELEVATE_URL".into()));
        let env = |k: &str| (k == "ELEVATE_URL").then(|| "http://elevate.example.com".to_owned());
        let e = connect(&c, &env).await.err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("ELEVATE_URL `http://elevate.example.com` plain http://"), "{e}");
    }
}
