//! The command-line client (`elevate eligible | activate | ... | whoami`): the real binary against
//! an in-process Elevate, its JSON output parsed and its exit codes checked (docs/cli.md).

use std::process::Command;

use chrono::TimeDelta;
use elevate::adapters::identity::dev::DevTokenRequest;
use elevate::config::AuthSetting;
use elevate::domain::ids::{AuthContextId, TenantId};
use serde_json::{Value, json};

use crate::support::fake_entra::{CLIENT_ID, FakeEntra, TENANT, v1_claims};
use crate::support::{
    ALICE, BOB, CAROL, DANA, SUB1, SUB2, TestApp, spawn_app, spawn_app_with_auth, start, test_policy, user,
};

/// What one run of `elevate` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and parses stdout as JSON.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    fn ok(&self) {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
    }

    /// The one line of a failure without a hint.
    fn one_line_error(&self) -> &str {
        assert_eq!(self.stderr.lines().count(), 1, "one line expected: {}", self.stderr);
        self.stderr.trim_end()
    }
}

/// Runs the binary with `args` and only the environment given (no ELEVATE_* of the caller's).
async fn run(args: Vec<String>, env: Vec<(&'static str, String)>) -> Run {
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_elevate"));
        command.args(&args);
        for name in ["ELEVATE_URL", "ELEVATE_TOKEN", "ELEVATE_AUDIENCE", "ELEVATE_TENANT_ID"] {
            command.env_remove(name);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    })
    .await
    .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `elevate <args> --url <app>` with `token` in ELEVATE_TOKEN.
async fn elevate(app: &TestApp, token: &str, args: &[&str]) -> Run {
    let mut argv: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    argv.extend(["--url".to_owned(), app.base.clone()]);
    run(argv, vec![("ELEVATE_TOKEN", token.to_owned())]).await
}

const READER_SUB1: [&str; 7] = ["activate", "--role", "Reader", "--scope", SUB1, "--duration", "PT1H"];

fn prod_one() -> Vec<&'static str> {
    vec!["activate", "--role", "Contributor", "--scope", SUB2, "--duration", "PT1H", "--justification", "INC-1 outage"]
}

fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(more).copied().collect()
}

/// The values of the `Label: value` lines of a detail view.
fn details<'a>(stdout: &'a str, label: &str) -> Vec<&'a str> {
    stdout.lines().filter_map(|l| l.strip_prefix(label)?.strip_prefix(':')).map(str::trim).collect()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

/// Waits until `approver` has `count` requests to decide (the CLI made them), and returns their ids.
async fn pending_for(app: &TestApp, approver: &str, count: usize) -> Vec<String> {
    for _ in 0..600 {
        let (_, body) = app.get(&app.token(approver), "/api/approvals").await;
        let found: Vec<String> =
            body["value"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no request reached the approver within 15 s")
}

#[tokio::test]
async fn eligible_lists_the_callers_rules_as_json_and_as_a_table() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let rules = elevate(&app, &alice, &["eligible", "--output", "json"]).await.json();
    let rule_ids: Vec<&str> = rules.as_array().unwrap().iter().map(|r| r["ruleId"].as_str().unwrap()).collect();
    assert_eq!(
        rule_ids,
        ["self-reader", "rg-contributor", "ticketed", "prod-one", "prod-two", "ending-soon", "stepped-up", "chatops"]
    );
    let prod = rules.as_array().unwrap().iter().find(|r| r["ruleId"] == "prod-one").unwrap();
    assert_eq!((prod["approvalRequired"].as_bool(), prod["minApprovals"].as_u64()), (Some(true), Some(1)));

    let table = elevate(&app, &alice, &["eligible"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    let mut lines = table.stdout.lines();
    assert!(lines.next().unwrap().starts_with("RULE "), "{}", table.stdout);
    let self_reader = lines.find(|l| l.starts_with("self-reader ")).unwrap();
    let cells: Vec<&str> = self_reader.split_whitespace().collect();
    assert_eq!(cells, ["self-reader", "Reader", SUB1, "PT8H", "none", "mfa", "-"]);
}

#[tokio::test]
async fn a_self_activation_is_shown_listed_extended_and_deactivated() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let created = elevate(&app, &alice, &with(&READER_SUB1, &["-o", "json"])).await.json();
    assert_eq!(created["status"], "Active");
    assert_eq!(created["ruleId"], "self-reader");
    assert_eq!(created["roleName"], "Reader");
    assert_eq!(created["scope"], SUB1);
    assert_eq!(created["expiresAt"], "2026-11-25T13:00:00Z");
    let id = created["id"].as_str().unwrap().to_owned();

    let shown = elevate(&app, &alice, &["show", &id, "-o", "json"]).await.json();
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["status"], "Active");
    let actions: Vec<&str> =
        shown["history"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["Requested", "Provisioned"]);
    let table = elevate(&app, &alice, &["show", &id]).await;
    assert_eq!(details(&table.stdout, "Status"), ["Active"], "{}", table.stdout);
    assert!(table.stdout.contains("\nHistory:\n  AT "), "{}", table.stdout);

    assert_eq!(ids(&elevate(&app, &alice, &["list", "-o", "json"]).await.json()), [id.as_str()]);

    let extended = elevate(&app, &alice, &["extend", &id, "--duration", "PT30M", "-o", "json"]).await.json();
    assert_eq!(extended["status"], "Active");
    assert_eq!(extended["expiresAt"], "2026-11-25T13:30:00Z");

    let ended = elevate(&app, &alice, &["deactivate", &id, "-o", "json"]).await.json();
    assert_eq!((ended["id"].as_str(), ended["status"].as_str()), (Some(id.as_str()), Some("Deactivated")));
    assert_eq!(elevate(&app, &alice, &["list", "--status", "active", "-o", "json"]).await.json(), json!([]));
    assert_eq!(ids(&elevate(&app, &alice, &["list", "--status", "Deactivated", "-o", "json"]).await.json()), [id]);
    assert!(app.assignments().await.is_empty(), "deactivation removed the role assignment");
}

#[tokio::test]
async fn each_activate_sends_its_own_idempotency_key() {
    let app = spawn_app().await;
    if app.tables.is_some() {
        return; // the keys are read from the SQLite store
    }
    let alice = app.token(ALICE);
    let first = elevate(&app, &alice, &with(&READER_SUB1, &["-o", "json"])).await.json();
    let second = elevate(&app, &alice, &with(&prod_one(), &["-o", "json"])).await.json();
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let mut stmt = conn.prepare("SELECT key, activation_id FROM idempotency_keys ORDER BY activation_id").unwrap();
    let rows: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let mut expected = vec![first["id"].as_str().unwrap().to_owned(), second["id"].as_str().unwrap().to_owned()];
    expected.sort();
    assert_eq!(rows.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(), expected);
    assert_ne!(rows[0].0, rows[1].0, "a fresh key per invocation");
    assert!(rows.iter().all(|(key, _)| uuid::Uuid::parse_str(key).is_ok()), "{rows:?}");
}

#[tokio::test]
async fn approvers_list_approve_and_deny_and_requesters_cancel() {
    let app = spawn_app().await;
    let (alice, bob) = (app.token(ALICE), app.token(BOB));
    let pending = elevate(&app, &alice, &with(&prod_one(), &["-o", "json"])).await.json();
    assert_eq!((pending["status"].as_str(), pending["minApprovals"].as_u64()), (Some("PendingApproval"), Some(1)));
    let id = pending["id"].as_str().unwrap().to_owned();

    assert_eq!(ids(&elevate(&app, &bob, &["approvals", "-o", "json"]).await.json()), [id.as_str()]);
    let one = elevate(&app, &bob, &["approvals", &id, "-o", "json"]).await.json();
    assert_eq!((one["id"].as_str(), one["canDecide"].as_bool()), (Some(id.as_str()), Some(true)));
    let table = elevate(&app, &bob, &["approvals"]).await;
    assert!(
        table.stdout.lines().nth(1).unwrap().starts_with(&format!("{id}  {ALICE}  Contributor")),
        "{}",
        table.stdout
    );

    let own = elevate(&app, &alice, &["approve", &id, "--justification", "trust me"]).await;
    assert_eq!(own.code, 1);
    assert!(own.one_line_error().starts_with("elevate: SelfApprovalForbidden: "), "{}", own.stderr);

    let approved =
        elevate(&app, &bob, &["approve", &id, "--justification", "matches INC-1", "-o", "json"]).await.json();
    assert_eq!(approved["status"], "Active");
    assert_eq!(approved["approvals"][0]["approverId"], BOB);
    assert_eq!(approved["approvals"][0]["justification"], "matches INC-1");
    elevate(&app, &alice, &["deactivate", &id]).await.ok();

    let second = elevate(&app, &alice, &with(&prod_one(), &["-o", "json"])).await.json();
    let second_id = second["id"].as_str().unwrap();
    let canceled = elevate(&app, &alice, &["cancel", second_id, "-o", "json"]).await.json();
    assert_eq!(canceled["status"], "Canceled");

    let third = elevate(&app, &alice, &with(&prod_one(), &["-o", "json"])).await.json();
    let third_id = third["id"].as_str().unwrap();
    let denied =
        elevate(&app, &app.token(CAROL), &["deny", third_id, "--justification", "not now", "-o", "json"]).await.json();
    assert_eq!(denied["status"], "Denied");
    assert_eq!(elevate(&app, &bob, &["approvals", "-o", "json"]).await.json(), json!([]));
}

#[tokio::test]
async fn activate_wait_follows_a_concurrent_approval_to_active() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let args = with(&prod_one(), &["--wait", "--poll-interval-ms", "50", "--timeout", "60", "-o", "json"]);
    let waiting = elevate(&app, &alice, &args);
    let approve = async {
        let id = pending_for(&app, BOB, 1).await.remove(0);
        let (status, body) = app.decide(&app.token(BOB), &id, "Approve").await;
        assert_eq!(status, 200, "{body}");
        id
    };
    let (done, id) = tokio::join!(waiting, approve);
    let last = done.json();
    assert_eq!((last["id"].as_str(), last["status"].as_str()), (Some(id.as_str()), Some("Active")));
    // A poll may land while the approved role is being granted (on a slower store it often
    // does): that line is optional, the others are not.
    let progress: Vec<&str> =
        done.stderr.lines().filter(|l| *l != format!("activation {id}: the role is being granted")).collect();
    assert_eq!(
        progress,
        [
            format!(
                "activation {id}: waiting for approval (0 of 1, decide by 2026-11-25 13:00 UTC); waiting up to 60s"
            ),
            format!("activation {id}: Active"),
        ]
    );
}

#[tokio::test]
async fn activate_wait_exits_4_when_the_request_is_denied() {
    let app = spawn_app().await;
    let (alice, args) = (app.token(ALICE), with(&prod_one(), &["--wait", "--poll-interval-ms", "50", "-o", "json"]));
    let waiting = elevate(&app, &alice, &args);
    let deny = async {
        let id = pending_for(&app, BOB, 1).await.remove(0);
        let (status, body) = app.decide(&app.token(BOB), &id, "Deny").await;
        assert_eq!(status, 200, "{body}");
        id
    };
    let (done, id) = tokio::join!(waiting, deny);
    assert_eq!(done.code, 4, "{}", done.stderr);
    assert_eq!(
        done.stderr.lines().last().unwrap(),
        format!("elevate: Denied: activation {id} was denied by {BOB}: reviewed")
    );
    let last: Value = serde_json::from_str(&done.stdout).unwrap();
    assert_eq!(last["status"], "Denied");
}

#[tokio::test]
async fn activate_wait_exits_6_when_its_timeout_passes_and_leaves_the_request_open() {
    let app = spawn_app().await;
    let done = elevate(
        &app,
        &app.token(ALICE),
        &with(&prod_one(), &["--wait", "--timeout", "1", "--poll-interval-ms", "100", "-o", "json"]),
    )
    .await;
    assert_eq!(done.code, 6, "{}", done.stderr);
    let last: Value = serde_json::from_str(&done.stdout).unwrap();
    let id = last["id"].as_str().unwrap();
    assert_eq!(last["status"], "PendingApproval");
    assert!(
        done.stderr.contains(&format!(
            "elevate: StillPending: activation {id} is still PendingApproval after 1s\n  follow it with: elevate show {id}\n"
        )),
        "{}",
        done.stderr
    );
    assert_eq!(app.activation(id).await["status"], "PendingApproval");
}

#[tokio::test]
async fn a_dry_run_says_what_would_happen_and_stores_nothing() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    // A read first: on Table Storage the store writes its index marker on first use.
    let _ = app.get(&app.token(ALICE), "/api/activations").await;
    let before = app.snapshot();
    let preview = elevate(&app, &alice, &with(&prod_one(), &["--dry-run", "-o", "json"])).await.json();
    assert_eq!(preview["validateOnly"], true);
    assert_eq!(preview["ready"], true);
    assert_eq!(preview["wouldBe"], "PendingApproval");
    assert_eq!(preview["ruleId"], "prod-one");
    assert_eq!(preview["principalId"], ALICE);
    assert_eq!(preview["expiresAt"], "2026-11-25T13:00:00Z");
    assert_eq!(preview["approval"]["minApprovals"], 1);
    assert_eq!(preview["approval"]["approvers"], json!([format!("user:{BOB}"), format!("user:{CAROL}")]));
    assert_eq!(app.snapshot(), before, "a dry run stores nothing");
    assert_eq!(elevate(&app, &alice, &["list", "-o", "json"]).await.json(), json!([]));

    // Without the justification the rule wants: shown, and exit 1.
    let lacking = elevate(&app, &alice, &["activate", "--dry-run", "--role", "Contributor", "--scope", SUB2]).await;
    assert_eq!(lacking.code, 1, "{}", lacking.stderr);
    assert_eq!(details(&lacking.stdout, "Would be"), ["PendingApproval"], "{}", lacking.stdout);
    assert_eq!(details(&lacking.stdout, "Ready"), ["no: see Needs"], "{}", lacking.stdout);
    assert_eq!(
        details(&lacking.stdout, "Needs"),
        ["justification: rule `prod-one` requires a justification"],
        "{}",
        lacking.stdout
    );
    assert!(lacking.one_line_error().starts_with("elevate: NotReady: "), "{}", lacking.stderr);

    // A rule behind an authentication context: exit 3 and the command minting a token with it.
    let stepped = elevate(
        &app,
        &alice,
        &[
            "activate",
            "--dry-run",
            "--role",
            "Contributor",
            "--scope",
            &format!("{SUB2}/resourceGroups/secure"),
            "--justification",
            "x",
        ],
    )
    .await;
    assert_eq!(stepped.code, 3, "{}", stepped.stderr);
    assert!(
        stepped.stderr.ends_with(&format!("export ELEVATE_TOKEN=$(elevate token --user {ALICE} --mfa --acrs c1)\n")),
        "{}",
        stepped.stderr
    );
    assert_eq!(app.snapshot(), before, "no dry run stored anything");
}

#[tokio::test]
async fn whoami_shows_the_caller_as_elevate_reads_the_token() {
    let app = spawn_app().await;
    let me = elevate(&app, &app.admin(), &["whoami", "-o", "json"]).await.json();
    assert_eq!(me["principalId"], DANA);
    assert_eq!(me["roles"], json!(["Elevate.Admin"]));
    assert_eq!(me["mfa"], true);
    assert_eq!(me["authContexts"], json!([]));
    assert_eq!(me["appOnly"], false);
    let table = elevate(&app, &app.admin(), &["whoami"]).await;
    assert_eq!(details(&table.stdout, "Principal"), [DANA], "{}", table.stdout);
    assert_eq!(details(&table.stdout, "Roles"), ["Elevate.Admin"], "{}", table.stdout);
    assert_eq!(details(&table.stdout, "MFA"), ["yes"], "{}", table.stdout);
}

#[tokio::test]
async fn audit_filters_pages_and_follows_next_links_with_all() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let id =
        elevate(&app, &alice, &with(&READER_SUB1, &["-o", "json"])).await.json()["id"].as_str().unwrap().to_owned();
    elevate(&app, &alice, &["deactivate", &id]).await.ok();
    let expected: Vec<String> =
        app.audit_for(&id).await.iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(expected, ["Requested", "Provisioned", "Deactivated"]);

    let auditor = app.auditor();
    let all = elevate(&app, &auditor, &["audit", "--activation", &id, "--top", "1", "--all", "-o", "json"]).await;
    let actions: Vec<String> =
        all.json().as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions, expected);
    assert_eq!(all.stderr, "");

    let first = elevate(&app, &auditor, &["audit", "--activation", &id, "--top", "1", "-o", "json"]).await;
    assert_eq!(first.json().as_array().unwrap().len(), 1);
    assert_eq!(first.stderr, "elevate: showing the first 1 events; pass --all for every one\n");

    let deactivations =
        elevate(&app, &auditor, &["audit", "--action", "Deactivated", "--principal", ALICE, "-o", "json"]).await.json();
    let found: Vec<(&str, &str)> = deactivations
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["activationId"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(found, [(id.as_str(), "Deactivated")]);

    let table = elevate(&app, &auditor, &["audit", "--activation", &id]).await;
    assert_eq!(table.stdout.lines().count(), 4, "{}", table.stdout);
    assert!(table.stdout.starts_with("AT "), "{}", table.stdout);
}

#[tokio::test]
async fn list_all_shows_everyones_activations_to_an_admin_only() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);
    let id =
        elevate(&app, &alice, &with(&READER_SUB1, &["-o", "json"])).await.json()["id"].as_str().unwrap().to_owned();
    let everyone = elevate(&app, &app.admin(), &["list", "--all", "--status", "Active", "-o", "json"]).await.json();
    assert_eq!(ids(&everyone), [id]);
    assert_eq!(elevate(&app, &app.admin(), &["list", "-o", "json"]).await.json(), json!([]), "the admin's own: none");
    let refused = elevate(&app, &alice, &["list", "--all"]).await;
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.one_line_error(),
        "elevate: Forbidden: listing activations of others needs Elevate.Admin or Elevate.Auditor"
    );
}

#[tokio::test]
async fn each_failure_has_its_exit_code_and_one_line() {
    let app = spawn_app().await;
    let alice = app.token(ALICE);

    // No token, no audience: sign-in needed (3).
    let none = run(vec!["list".into(), "--url".into(), app.base.clone()], vec![]).await;
    assert_eq!(none.code, 3);
    assert!(
        none.one_line_error().starts_with("elevate: NoCredentials: no token: pass --token or set ELEVATE_TOKEN"),
        "{}",
        none.stderr
    );

    // Nobody listening: cannot reach Elevate (5).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = run(
        vec!["eligible".into(), "--url".into(), format!("http://127.0.0.1:{port}"), "--token".into(), alice.clone()],
        vec![],
    )
    .await;
    assert_eq!(down.code, 5, "{}", down.stderr);
    assert!(
        down.one_line_error()
            .starts_with(&format!("elevate: ConnectionFailed: cannot reach Elevate at http://127.0.0.1:{port}: ")),
        "{}",
        down.stderr
    );

    // 403 and 400: the API's code and message (1).
    let forbidden = elevate(&app, &alice, &["audit"]).await;
    assert_eq!(forbidden.code, 1);
    assert_eq!(
        forbidden.one_line_error(),
        "elevate: Forbidden: reading the audit trail needs Elevate.Admin or Elevate.Auditor"
    );
    let too_long =
        elevate(&app, &alice, &["activate", "--role", "Reader", "--scope", SUB1, "--duration", "PT9H"]).await;
    assert_eq!(too_long.code, 1);
    assert_eq!(
        too_long.one_line_error(),
        "elevate: PolicyViolation: duration `PT9H` exceeds the maximum `PT8H` of rule `self-reader`"
    );
    let missing = elevate(&app, &alice, &["show", "0b7c2a5e-49d5-4d8e-9f3a-6a1f3e0c9d11"]).await;
    assert_eq!(
        (missing.code, missing.one_line_error()),
        (1, "elevate: ActivationNotFound: activation `0b7c2a5e-49d5-4d8e-9f3a-6a1f3e0c9d11` was not found")
    );

    // Usage errors (2): clap's, a malformed id, plain http to another host.
    assert_eq!(elevate(&app, &alice, &["activate", "--role", "Reader"]).await.code, 2);
    assert_eq!(elevate(&app, &alice, &["show", "nope"]).await.code, 2);
    let plain = run(
        vec!["eligible".into(), "--url".into(), "http://elevate.example.com".into()],
        vec![("ELEVATE_TOKEN", alice.clone())],
    )
    .await;
    assert_eq!(plain.code, 2);
    assert!(
        plain.one_line_error().starts_with("elevate: UsageError: --url `http://elevate.example.com` plain http://"),
        "{}",
        plain.stderr
    );

    // A refused token (3), and the token is never printed.
    let expired = app.mint(DevTokenRequest { lifetime: TimeDelta::minutes(5), ..user(ALICE) });
    app.advance(60);
    let refused = elevate(&app, &expired, &["list"]).await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.starts_with("elevate: InvalidToken: "), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!("export ELEVATE_TOKEN=$(elevate token --user {ALICE} --mfa)")),
        "{}",
        refused.stderr
    );
    for r in [&none, &down, &forbidden, &too_long, &plain, &refused] {
        assert!(!r.stderr.contains(&alice) && !r.stdout.contains(&alice) && !r.stderr.contains(&expired));
    }
}

#[tokio::test]
async fn a_token_without_mfa_is_told_how_to_sign_in_with_it() {
    let app = spawn_app().await;
    let no_mfa = app.mint(DevTokenRequest { mfa: false, roles: vec!["Elevate.Auditor".into()], ..user(ALICE) });
    let r = elevate(&app, &no_mfa, &READER_SUB1).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines[0].starts_with("elevate: MfaRequired: rule `self-reader` requires multi-factor authentication"),
        "{}",
        r.stderr
    );
    assert_eq!(
        lines[1..],
        [
            "  mint a dev token that has it, then repeat the command with it in ELEVATE_TOKEN:",
            &format!("  export ELEVATE_TOKEN=$(elevate token --user {ALICE} --mfa --role Elevate.Auditor)"),
        ]
    );
    assert_eq!(r.stdout, "");
}

#[tokio::test]
async fn an_entra_claims_challenge_prints_the_az_login_command_with_its_claims() {
    let entra = FakeEntra::start().await;
    let settings = elevate::adapters::identity::entra::EntraSettings {
        tenant: TenantId::parse(TENANT).unwrap(),
        audiences: vec![CLIENT_ID.into(), format!("api://{CLIENT_ID}")],
        authority: entra.authority(),
        mfa_auth_context: Some(AuthContextId::parse("c2").unwrap()),
        mfa_max_age: None,
    };
    let app = spawn_app_with_auth(&test_policy(), AuthSetting::Entra(settings)).await;
    let token = entra.key().sign(&v1_claims(ALICE, start()));
    let scope = format!("{SUB2}/resourceGroups/secure");
    let body = json!({"roleDefinitionId": "Contributor", "scope": scope, "justification": "x"});
    let res =
        app.client.post(format!("{}/api/activations", app.base)).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let header = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let claims = header.split("claims=\"").nth(1).unwrap().trim_end_matches('"');

    let r =
        elevate(&app, &token, &["activate", "--role", "Contributor", "--scope", &scope, "--justification", "x"]).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.starts_with("elevate: AuthContextRequired: "), "{}", r.stderr);
    assert!(
        r.stderr.lines().any(|l| l
            == format!("  az login --tenant {TENANT} --scope api://{CLIENT_ID}/.default --claims-challenge {claims}")),
        "{}",
        r.stderr
    );
    // --audience and --tenant, when given, are what the command names.
    let r = elevate(
        &app,
        &token,
        &[
            "activate",
            "--role",
            "Contributor",
            "--scope",
            &scope,
            "--justification",
            "x",
            "--audience",
            "api://elevate",
            "--tenant",
            "contoso.onmicrosoft.com",
        ],
    )
    .await;
    assert!(
        r.stderr.lines().any(|l| l
            == format!(
                "  az login --tenant contoso.onmicrosoft.com --scope api://elevate/.default --claims-challenge {claims}"
            )),
        "{}",
        r.stderr
    );
}
