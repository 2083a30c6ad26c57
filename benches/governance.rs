//! Governance benchmark: one governance pass (`Elevate::governance`) over 100,000 role
//! assignments read in pages through the real ARM adapter, against the fake ARM of
//! `tests/support/fake_azure.rs` answering every call after a fixed latency, with 50,000
//! eligibilities in the policy and a year of audit history in the SQLite store. It must finish
//! well within the timer function's five-minute `functionTimeout` (host.json).
//!
//! The estate, built to look like a large tenant (azure-spec §3.6: at most 4,000 role assignments
//! per subscription, so 100,000 span 25 subscriptions):
//! - 25 subscriptions of 4,000 assignments each, listed at the subscription (the policy's managed
//!   scopes) in the fake's pages of 100 with an absolute `nextLink` (`$skiptoken`), as ARM pages.
//! - 500 rules (20 per subscription: Owner with approval and Contributor at the subscription, 18
//!   at resource groups), each for 100 of 5,000 users: 50,000 eligibilities, 10 per user.
//! - Per subscription: 40 assignments Elevate made (real activations, carrying its marker), 3
//!   standing Owners (2 accepted under `standing:`), 6 more accepted standing exceptions, 70 more
//!   assignments of managed roles made behind Elevate's back, and 3,881 assignments of roles no
//!   rule manages (service principals and users with data-plane and reader roles).
//! - 365 days of history at 500 activations a day plus 20 users who
//!   activate three times a day for the last week, each activation with the audit events of a real
//!   self-activation (two).
//!
//! Measured: the first pass (opens every alert), then a second an hour later (the same causes:
//! every alert updated, none opened), then a third after 500 of the outside assignments were
//! removed (they resolve).
//!
//!   cargo bench --bench governance             # the estate above at 100 ms per ARM call
//!   cargo bench --bench governance -- --latency-ms=0   # what the pass itself costs
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it is a small smoke run that checks
//! the same outcomes at a size that takes seconds, and judges no time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/support/fake_azure.rs"]
mod fake_azure;
#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/support/fake_http.rs"]
mod fake_http;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use chrono::{DateTime, TimeDelta, Utc};
use elevate::adapters::access::arm::ArmAccessProvider;
use elevate::adapters::azure::RetryPolicy;
use elevate::adapters::store::sqlite::SqliteStore;
use elevate::domain::ids::{PrincipalId, RoleDefinitionId, TenantId};
use elevate::domain::policy::Policy;
use elevate::domain::scope::Scope;
use elevate::service::ports::Caller;
use elevate::service::{ActivationInput, Elevate, GovernanceReport, SweepSettings};
use fake_azure::{FakeAzure, Stored};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
/// Roles of the resource-group rules: Virtual Machine Contributor, Storage Blob Data Contributor,
/// Key Vault Secrets Officer, Website Contributor.
const RG_ROLES: [&str; 4] = [
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "de139f84-1756-47ae-9be6-808fbbe84772",
];
/// Roles no rule manages: Reader, Storage Blob Data Reader, Monitoring Reader, Key Vault Secrets
/// User, AcrPull.
const UNMANAGED_ROLES: [&str; 5] = [
    "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05",
    "4633458b-17de-408a-b874-0445c86b69e6",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d",
];
const APPROVER: &str = "a9999999-0000-4000-8000-000000000001";
const TENANT: &str = "5b51c641-0711-41d2-ac58-d90390d94a00";
/// ARM's limit per subscription (azure-spec §3.6).
const PER_SUBSCRIPTION: usize = 4_000;

/// The estate's size; the full run and the smoke run differ only in these.
#[derive(Clone, Copy)]
struct Shape {
    subscriptions: usize,
    per_subscription: usize,
    /// Resource-group rules per subscription (besides Owner and Contributor at the subscription).
    rg_rules: usize,
    principals_per_rule: usize,
    users: usize,
    /// Activations Elevate holds open per subscription.
    ours: usize,
    /// Managed-role assignments made behind Elevate's back per subscription, not accepted.
    outside: usize,
    /// Of them, removed before the third pass (in all).
    removed: usize,
    history_days: i64,
    per_day: usize,
    heavy_users: usize,
    latency: Duration,
}

const FULL: Shape = Shape {
    subscriptions: 25,
    per_subscription: PER_SUBSCRIPTION,
    rg_rules: 18,
    principals_per_rule: 100,
    users: 5_000,
    ours: 40,
    outside: 71,
    removed: 500,
    history_days: 365,
    per_day: 500,
    heavy_users: 20,
    latency: Duration::from_millis(100),
};

const SMOKE: Shape = Shape {
    subscriptions: 3,
    per_subscription: 300,
    rg_rules: 4,
    principals_per_rule: 10,
    users: 60,
    ours: 4,
    outside: 7,
    removed: 5,
    history_days: 30,
    per_day: 20,
    heavy_users: 2,
    latency: Duration::from_millis(5),
};

/// Standing exceptions per subscription: 2 Owners and 6 Contributors.
const STANDING_OWNERS: usize = 2;
const STANDING_CONTRIBUTORS: usize = 6;

/// A token the fake accepts, cached as azure_identity's credentials cache theirs.
#[derive(Debug)]
struct StaticToken(String);

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(&self, _: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            self.0.clone(),
            azure_core::time::OffsetDateTime::from_unix_timestamp(4_102_444_800).unwrap(),
        ))
    }
}

fn subscription(i: usize) -> String {
    format!("/subscriptions/00000000-0000-4000-8000-{:012}", 100 + i)
}

fn user(i: usize) -> String {
    format!("11111111-0000-4000-8000-{i:012}")
}

fn standing_owner(sub: usize, k: usize) -> String {
    format!("22222222-0000-4000-8000-{:012}", sub * 10 + k)
}

/// The rules, in order: per subscription Owner, Contributor, then the resource-group rules.
struct Rule {
    id: String,
    scope: String,
    role: &'static str,
    principals: Vec<usize>,
}

fn rules(shape: &Shape) -> Vec<Rule> {
    let per_sub = 2 + shape.rg_rules;
    let mut out = Vec::new();
    for s in 0..shape.subscriptions {
        for j in 0..per_sub {
            let r = s * per_sub + j;
            // Rule r is for users r·n … r·n + n − 1 (mod the pool): every user in the same number
            // of rules.
            let principals =
                (0..shape.principals_per_rule).map(|k| (r * shape.principals_per_rule + k) % shape.users).collect();
            let (id, scope, role) = match j {
                0 => (format!("s{s}-owner"), subscription(s), OWNER),
                1 => (format!("s{s}-contributor"), subscription(s), CONTRIBUTOR),
                _ => (
                    format!("s{s}-rg{}", j - 2),
                    format!("{}/resourceGroups/rg{}", subscription(s), j - 2),
                    RG_ROLES[j % RG_ROLES.len()],
                ),
            };
            out.push(Rule { id, scope, role, principals });
        }
    }
    out
}

fn policy_yaml(shape: &Shape, rules: &[Rule]) -> String {
    let mut y = String::from(
        "version: 1\ndefaults:\n  maxDuration: PT4H\n  requireMfa: true\n  requireJustification: false\nrules:\n",
    );
    for rule in rules {
        let principals: Vec<String> = rule.principals.iter().map(|u| format!("'user:{}'", user(*u))).collect();
        y.push_str(&format!(
            "  - id: {}\n    scope: {}\n    roles: [{}]\n    principals: [{}]\n",
            rule.id,
            rule.scope,
            rule.role,
            principals.join(", ")
        ));
        if rule.role == OWNER {
            y.push_str(&format!(
                "    maxDuration: PT1H\n    approval:\n      approvers: ['user:{APPROVER}']\n      timeout: PT1H\n"
            ));
        }
    }
    y.push_str("standing:\n");
    for s in 0..shape.subscriptions {
        for k in 0..STANDING_OWNERS {
            y.push_str(&format!(
                "  - principal: 'user:{}'\n    role: {OWNER}\n    scope: {}\n    reason: break-glass account\n    owner: platform-team@contoso.example\n",
                standing_owner(s, k),
                subscription(s)
            ));
        }
        for k in 0..STANDING_CONTRIBUTORS {
            y.push_str(&format!(
                "  - principal: 'user:{}'\n    role: {CONTRIBUTOR}\n    scope: {}/resourceGroups/legacy{k}\n    reason: deployment pipeline\n    owner: platform-team@contoso.example\n",
                standing_contributor(s, k),
                subscription(s)
            ));
        }
    }
    y
}

fn standing_contributor(sub: usize, k: usize) -> String {
    format!("33333333-0000-4000-8000-{:012}", sub * 10 + k)
}

fn role_definition(sub: &str, guid: &str) -> String {
    format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

fn stored(name: u128, scope: String, principal: String, principal_type: &str, sub: &str, role: &str) -> Stored {
    Stored {
        name: Uuid::from_u128(name),
        scope,
        principal_id: principal,
        principal_type: Some(principal_type.into()),
        role_definition_id: role_definition(sub, role),
        description: None,
    }
}

/// What is assigned behind Elevate's back, per subscription. Returns the ARM ids of the
/// assignments that should be alerts (`outside`), in order, and those of them that are Owners.
fn seed_estate(fake: &FakeAzure, shape: &Shape) -> (Vec<String>, HashSet<String>) {
    let mut outside = Vec::new();
    let mut owners = HashSet::new();
    let mut name: u128 = 0x5eed_0000_0000_0000_0000_0000_0000_0000;
    let mut next = || {
        name += 1;
        name
    };
    for s in 0..shape.subscriptions {
        let sub = subscription(s);
        let mut count = shape.ours;
        // Three standing Owners at the subscription; two are accepted, the third is an alert (and
        // three permanent holders are one more than allowed).
        for k in 0..3 {
            let principal = standing_owner(s, k);
            let a = stored(next(), sub.clone(), principal, "User", &sub, OWNER);
            if k == 2 {
                let id = format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", a.scope, a.name);
                owners.insert(id.clone());
                outside.push(id);
            }
            fake.seed(a);
            count += 1;
        }
        for k in 0..STANDING_CONTRIBUTORS {
            let scope = format!("{sub}/resourceGroups/legacy{k}");
            fake.seed(stored(next(), scope, standing_contributor(s, k), "User", &sub, CONTRIBUTOR));
            count += 1;
        }
        // Managed roles behind Elevate's back: Contributor anywhere in the subscription, or a
        // resource-group rule's role in its group.
        for k in 0..shape.outside.saturating_sub(1) {
            let principal = format!("44444444-0000-4000-8000-{:012}", s * 1_000 + k);
            let a = if k % 2 == 0 {
                stored(next(), format!("{sub}/resourceGroups/app{k}"), principal, "User", &sub, CONTRIBUTOR)
            } else {
                let j = k % shape.rg_rules;
                let role = RG_ROLES[(j + 2) % RG_ROLES.len()];
                stored(next(), format!("{sub}/resourceGroups/rg{j}"), principal, "User", &sub, role)
            };
            outside.push(format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", a.scope, a.name));
            fake.seed(a);
            count += 1;
        }
        // The bulk: roles no rule manages, mostly service principals on resources.
        let mut k = 0;
        while count < shape.per_subscription {
            let role = UNMANAGED_ROLES[k % UNMANAGED_ROLES.len()];
            let (principal, kind) = if k % 4 == 0 {
                (user(k % shape.users), "User")
            } else {
                (format!("55555555-0000-4000-8000-{:012}", s * 10_000 + k), "ServicePrincipal")
            };
            let scope = match k % 3 {
                0 => sub.clone(),
                1 => format!("{sub}/resourceGroups/rg{}", k % 40),
                _ => format!("{sub}/resourceGroups/rg{}/providers/Microsoft.Storage/storageAccounts/sa{k}", k % 40),
            };
            fake.seed(stored(next(), scope, principal, kind, &sub, role));
            count += 1;
            k += 1;
        }
    }
    (outside, owners)
}

fn caller(principal: &str) -> Caller {
    Caller {
        principal_id: PrincipalId::parse(principal).unwrap(),
        tenant_id: TenantId::parse(TENANT).unwrap(),
        name: None,
        app_id: None,
        app_only: false,
        roles: Vec::new(),
        groups: Vec::new(),
        groups_overage: false,
        mfa: true,
        auth_contexts: Vec::new(),
    }
}

/// `ours` Contributor activations per subscription, through the service (each a real PUT with
/// Elevate's marker).
async fn activate_ours(service: &Elevate, shape: &Shape, rules: &[Rule], t0: DateTime<Utc>) {
    let per_sub = 2 + shape.rg_rules;
    let contributor = RoleDefinitionId::parse(CONTRIBUTOR).unwrap();
    let asks: Vec<(String, String)> = (0..shape.subscriptions)
        .flat_map(|s| {
            let rule = &rules[s * per_sub + 1];
            (0..shape.ours).map(move |k| {
                (
                    user(rule.principals[k % rule.principals.len()]),
                    format!("{}/resourceGroups/work{k}", subscription(s)),
                )
            })
        })
        .collect();
    for chunk in asks.chunks(64) {
        let requests = chunk.iter().map(|(principal, scope)| {
            let input = ActivationInput {
                principal_id: None,
                role_definition_id: contributor,
                scope: Scope::parse(scope).unwrap(),
                duration: None,
                justification: None,
                ticket: None,
                start_at: None,
                rule_id: None,
            };
            async move { service.request_activation(&caller(principal), input, None, t0).await }
        });
        for result in futures_util::future::join_all(requests).await {
            assert_eq!(result.unwrap().activation.status().to_string(), "Active");
        }
    }
}

/// A year of history: `per_day` activations a day by eligible users of random rules, and
/// `heavy_users` who activated their Contributor rule three times a day in the last week; each
/// activation the audit events of a real self-activation, copied with its principal, rule, role,
/// scope and times. Returns how many events it wrote.
fn add_history(db: &std::path::Path, shape: &Shape, rules: &[Rule], t0: DateTime<Utc>) -> usize {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    // A real activation's events, as templates.
    let (template_activation, template_principal, templates): (String, String, Vec<String>) = {
        let (activation, principal): (String, String) = conn
            .query_row("SELECT activation_id, principal_id FROM audit_events ORDER BY seq LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let mut stmt = conn.prepare("SELECT body FROM audit_events WHERE activation_id = ?1 ORDER BY seq").unwrap();
        let bodies = stmt.query_map([&activation], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect();
        (activation, principal, bodies)
    };
    assert!(templates.iter().any(|t| t.contains(r#""action":"Requested""#)), "{templates:?}");
    let per_sub = 2 + shape.rg_rules;
    let mut rng = StdRng::seed_from_u64(14);
    let mut activations: Vec<(DateTime<Utc>, usize, usize)> = Vec::new();
    let start = t0 - TimeDelta::days(shape.history_days);
    for day in 0..shape.history_days {
        for _ in 0..shape.per_day {
            let r = rng.gen_range(0..rules.len());
            let u = rules[r].principals[rng.gen_range(0..rules[r].principals.len())];
            let at = start + TimeDelta::days(day) + TimeDelta::seconds(rng.gen_range(0..86_400));
            activations.push((at, r, u));
        }
    }
    for h in 0..shape.heavy_users {
        let r = (h % shape.subscriptions) * per_sub + 1;
        let u = rules[r].principals[h % rules[r].principals.len()];
        for i in 0..21 {
            activations.push((t0 - TimeDelta::hours(8 * i + 1), r, u));
        }
    }
    activations.sort_by_key(|a| a.0);
    let tx = conn.transaction().unwrap();
    tx.execute_batch("PRAGMA synchronous = OFF").ok();
    let mut written = 0;
    {
        let mut insert = tx
            .prepare("INSERT INTO audit_events (id, activation_id, principal_id, at, body) VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        for (n, (at, r, u)) in activations.iter().enumerate() {
            let rule = &rules[*r];
            let activation = Uuid::from_u128(0x4157_0000_0000_4000_8000_0000_0000_0000 | n as u128).to_string();
            let principal = user(*u);
            let scope = if rule.scope.contains("/resourceGroups/") {
                rule.scope.clone()
            } else {
                format!("{}/resourceGroups/h{}", rule.scope, n % 50)
            };
            for (k, template) in templates.iter().enumerate() {
                // The template's principal and activation wherever they appear (the actor too).
                let text = template.replace(&template_principal, &principal).replace(&template_activation, &activation);
                let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
                let id = Uuid::from_u128(0xe7e7_0000_0000_4000_8000_0000_0000_0000 | ((n as u128) << 4) | k as u128);
                let when = *at + TimeDelta::seconds(k as i64);
                event["id"] = id.to_string().into();
                event["at"] = when.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true).into();
                event["ruleId"] = rule.id.clone().into();
                event["roleDefinitionId"] = rule.role.into();
                event["scope"] = scope.clone().into();
                insert
                    .execute(rusqlite::params![
                        id.to_string(),
                        activation,
                        principal,
                        when.timestamp_millis(),
                        event.to_string()
                    ])
                    .unwrap();
                written += 1;
            }
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    written
}

/// Peak resident set of this process (the fake ARM, the store and the pass), from /proc.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Pass {
    elapsed: Duration,
    report: GovernanceReport,
    pages: usize,
    max_in_flight: usize,
}

async fn pass(service: &Elevate, fake: &FakeAzure, now: DateTime<Utc>) -> Pass {
    fake.reset_log();
    let started = Instant::now();
    let report = service.governance(now).await.unwrap();
    let elapsed = started.elapsed();
    let pages = fake.seen().iter().filter(|s| s.method == "GET").count();
    Pass { elapsed, report, pages, max_in_flight: fake.max_in_flight() }
}

fn print(label: &str, p: &Pass, latency: Duration) {
    // What the pages alone cost one after another: the floor of a pass that lists sequentially.
    let sequential = latency * p.pages as u32;
    println!(
        "{label:<30} {:>8.2} s  list pages {} (one after another: {:.2} s), max in flight {:>2}  assignments {:>7}  open {:>5}  opened {:>5}  resolved {:>4}  failures {}",
        p.elapsed.as_secs_f64(),
        p.pages,
        sequential.as_secs_f64(),
        p.max_in_flight,
        p.report.assignments_listed,
        p.report.open,
        p.report.opened.len(),
        p.report.resolved.len(),
        p.report.failures.len()
    );
    for f in &p.report.failures {
        println!("    failure: {f}");
    }
}

async fn run(shape: Shape) {
    let t0: DateTime<Utc> = "2026-12-01T09:00:00Z".parse().unwrap();
    let fake = FakeAzure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elevate.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let access = Arc::new(
        ArmAccessProvider::new(&fake.url(), Arc::new(StaticToken(fake.token.clone())), RetryPolicy::default()).unwrap(),
    );
    let rules = rules(&shape);
    let eligibilities: usize = rules.iter().map(|r| r.principals.len()).sum();
    let setup = Instant::now();
    let policy = Policy::from_yaml("bench.yaml", &policy_yaml(&shape, &rules)).unwrap();
    let parsed = setup.elapsed();
    let settings = SweepSettings { orphan_interval: TimeDelta::days(1), ..SweepSettings::default() };
    let service =
        Elevate::new(store, access, Arc::new(policy), Vec::new(), settings).with_max_open_requests(usize::MAX);
    let (outside, owners) = seed_estate(&fake, &shape);
    activate_ours(&service, &shape, &rules, t0 - TimeDelta::minutes(30)).await;
    let events = add_history(&db, &shape, &rules, t0);
    let total = fake.assignments().len();
    assert_eq!(total, shape.subscriptions * shape.per_subscription, "the estate's size");
    println!(
        "estate: {total} assignments in {} subscriptions ({} per list page), {} rules, {eligibilities} eligibilities, {} standing exceptions, {events} audit events over {} days; policy parsed in {:.2} s; setup {:.1} s",
        shape.subscriptions,
        100,
        rules.len(),
        shape.subscriptions * (STANDING_OWNERS + STANDING_CONTRIBUTORS),
        shape.history_days,
        parsed.as_secs_f64(),
        setup.elapsed().as_secs_f64()
    );

    fake.set_latency(shape.latency);
    let first = pass(&service, &fake, t0).await;
    print("first pass (opens)", &first, shape.latency);
    let second = pass(&service, &fake, t0 + TimeDelta::hours(1)).await;
    print("second pass (same causes)", &second, shape.latency);
    fake.set_latency(Duration::ZERO);
    // Not the Owners: removing one would also resolve its subscription's permanent-holder alert.
    let removable: Vec<&String> = outside.iter().filter(|id| !owners.contains(*id)).take(shape.removed).collect();
    let removed: HashSet<String> = removable.iter().map(|id| id.to_ascii_lowercase()).collect();
    // Removed as an administrator would: a DELETE to ARM.
    let client = reqwest::Client::new();
    for id in &removable {
        let res = client
            .delete(format!("{}{id}?api-version={}", fake.url(), fake_azure::API_VERSION))
            .bearer_auth(&fake.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    fake.set_latency(shape.latency);
    let third = pass(&service, &fake, t0 + TimeDelta::hours(2)).await;
    print(&format!("third pass ({} removed)", shape.removed), &third, shape.latency);
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS of the whole process (fake ARM, store, passes): {rss:.0} MiB");
    }

    // What every pass must have found, whatever the timings.
    for p in [&first, &second, &third] {
        assert!(p.report.failures.is_empty(), "{:?}", p.report.failures);
        assert!(p.pages >= total / 100, "listed in pages of 100: {} pages", p.pages);
    }
    assert_eq!(first.report.assignments_listed, total);
    let opened: HashSet<&str> = first.report.opened.iter().map(String::as_str).collect();
    for id in &outside {
        assert!(opened.contains(format!("outside:{}", id.to_ascii_lowercase()).as_str()), "{id} not raised");
    }
    let outside_opened = first.report.opened.iter().filter(|id| id.starts_with("outside:")).count();
    assert_eq!(outside_opened, outside.len(), "only the managed roles behind Elevate's back are alerts");
    let permanent = first.report.opened.iter().filter(|id| id.starts_with("permanent:")).count();
    assert_eq!(permanent, shape.subscriptions, "three standing Owners per subscription, two allowed");
    let frequent = first.report.opened.iter().filter(|id| id.starts_with("frequent:")).count();
    assert_eq!(frequent, shape.heavy_users, "{:?}", first.report.opened);
    assert!(first.report.opened.iter().any(|id| id.starts_with("stale:")));
    assert!(second.report.opened.is_empty() && second.report.resolved.is_empty(), "{:?}", second.report);
    assert_eq!(second.report.open, first.report.open);
    let resolved: HashSet<String> = third.report.resolved.iter().cloned().collect();
    let expected: HashSet<String> = removed.iter().map(|id| format!("outside:{id}")).collect();
    assert_eq!(resolved, expected, "exactly the removed ones resolve");
    assert_eq!(third.report.open, first.report.open - shape.removed);
}

fn main() {
    elevate::adapters::azure::install_tls_provider();
    let full = std::env::args().any(|a| a == "--bench");
    let mut shape = if full { FULL } else { SMOKE };
    // `--latency-ms=N` replaces the fake's latency (0 shows what the pass itself costs).
    if let Some(ms) = std::env::args().find_map(|a| a.strip_prefix("--latency-ms=").map(str::to_owned)) {
        shape.latency = Duration::from_millis(ms.parse().expect("--latency-ms takes whole milliseconds"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "governance benchmark: fake ARM latency {} ms per call; the timer's functionTimeout is 300 s",
        shape.latency.as_millis()
    );
    runtime.block_on(run(shape));
    if !full {
        println!("(smoke run: figures are not judged)");
    }
}
