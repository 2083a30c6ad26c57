//! Graph sweep benchmark: how long one sweep takes to revoke N due activations of Entra
//! directory roles (User Administrator on N/2 administrative units) and group memberships (N/2
//! groups) through the `graph` provider, against the strict fake Graph answering every call after
//! a fixed latency, compared with the ideal (N × calls per revocation × latency / concurrency);
//! and again under a 429 storm (`Retry-After: 1`), which the client's throttle gate must hold
//! every worker back for.
//!
//!   cargo bench --bench graph_sweep            # 1,000 due at 100 ms
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it is a small smoke run that
//! checks the same things at a size that takes seconds, and judges no time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

/// The fake Graph's one import from the fake Entra (the tenant its answers name).
mod fake_entra {
    pub const TENANT: &str = "5b51c641-0711-41d2-ac58-d90390d94a00";
}
#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/support/fake_graph.rs"]
mod fake_graph;
#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/support/fake_http.rs"]
mod fake_http;

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use chrono::{DateTime, TimeDelta, Utc};
use elevate::adapters::access::graph::GraphAccessProvider;
use elevate::adapters::azure::RetryPolicy;
use elevate::adapters::store::sqlite::SqliteStore;
use elevate::domain::ids::{PrincipalId, TenantId};
use elevate::domain::policy::Policy;
use elevate::domain::scope::Scope;
use elevate::service::ports::Caller;
use elevate::service::{ActivationInput, Elevate, SweepSettings};
use fake_graph::{FakeGraph, GraphFault};

const PRINCIPAL: &str = "11111111-1111-1111-1111-111111111111";

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

fn au(i: usize) -> String {
    format!("a0000000-0000-4000-8000-{i:012x}")
}

fn group(i: usize) -> String {
    format!("b0000000-0000-4000-8000-{i:012x}")
}

struct Figures {
    elapsed: Duration,
    ideal: Duration,
    calls: usize,
    per_revocation: f64,
    max_in_flight: usize,
}

async fn sweep_once(due: usize, latency: Duration, concurrency: usize, storm: usize) -> Figures {
    let graph = FakeGraph::start().await;
    graph.add_user(PRINCIPAL, "Alice Smith");
    let half = due / 2;
    let mut rules = format!(
        "version: 1\ndefaults:\n  maxDuration: PT1H\n  requireMfa: false\n  requireJustification: false\nrules:\n  - id: users\n    scope: directory:/\n    roles: [User Administrator]\n    principals: ['user:{PRINCIPAL}']\n"
    );
    for i in 0..half {
        graph.add_administrative_unit(&au(i));
        graph.add_group(&group(i), &format!("Group {i}"), false);
        rules.push_str(&format!(
            "  - id: g{i}\n    scope: group:{}\n    roles: [member]\n    principals: ['user:{PRINCIPAL}']\n",
            group(i)
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("elevate.db")).unwrap());
    let retry = RetryPolicy { max_total: Duration::from_secs(120), ..RetryPolicy::default() };
    let access =
        Arc::new(GraphAccessProvider::new(&graph.url(), Arc::new(StaticToken(graph.token.clone())), retry).unwrap());
    let policy = Policy::from_yaml("bench.yaml", &rules).unwrap();
    let settings = SweepSettings { concurrency, orphan_interval: TimeDelta::days(1), ..SweepSettings::default() };
    let service =
        Elevate::new(store, access, Arc::new(policy), Vec::new(), settings).with_max_open_requests(usize::MAX);
    let t0: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
    service.sweep(t0).await;

    let caller = Caller {
        principal_id: PrincipalId::parse(PRINCIPAL).unwrap(),
        tenant_id: TenantId::parse("5b51c641-0711-41d2-ac58-d90390d94a00").unwrap(),
        name: None,
        app_id: None,
        app_only: false,
        roles: Vec::new(),
        groups: Vec::new(),
        groups_overage: false,
        mfa: true,
        auth_contexts: Vec::new(),
    };
    let asks: Vec<(String, &str)> = (0..half)
        .flat_map(|i| {
            [
                (format!("directory:/administrativeUnits/{}", au(i)), "User Administrator"),
                (format!("group:{}", group(i)), "member"),
            ]
        })
        .collect();
    for chunk in asks.chunks(32) {
        let requests = chunk.iter().map(|(scope, role)| {
            let scope = Scope::parse(scope).unwrap();
            let input = ActivationInput {
                principal_id: None,
                role_definition_id: scope.kind().parse_role(role).unwrap(),
                scope,
                duration: None,
                justification: None,
                ticket: None,
                start_at: None,
                rule_id: None,
            };
            service.request_activation(&caller, input, None, t0)
        });
        for result in futures_util::future::join_all(requests).await {
            assert_eq!(result.unwrap().activation.status().to_string(), "Active");
        }
    }
    assert_eq!(graph.role_assignments().len(), half);

    graph.set_latency(latency);
    graph.reset_log();
    for _ in 0..storm {
        graph.push_fault(GraphFault::Throttle { retry_after: "1".into() });
    }
    let started = Instant::now();
    let report = service.sweep(t0 + TimeDelta::minutes(61)).await;
    let elapsed = started.elapsed();
    assert_eq!(report.expired, half * 2, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(graph.role_assignments().is_empty());
    assert!((0..half).all(|i| graph.members(&group(i)).is_empty()));
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
    let calls = graph.requests().len();
    let per_revocation = calls as f64 / (half * 2) as f64;
    let ideal = latency.mul_f64(per_revocation * (half * 2) as f64 / concurrency as f64);
    Figures { elapsed, ideal, calls, per_revocation, max_in_flight: graph.max_in_flight() }
}

fn print(label: &str, due: usize, f: &Figures) {
    println!(
        "{label:<24} due {due:>5}  elapsed {:>7.2} s  ideal {:>7.2} s  ratio {:>5.2}  Graph calls {:>5} ({:.2} each)  max in flight {:>3}",
        f.elapsed.as_secs_f64(),
        f.ideal.as_secs_f64(),
        f.elapsed.as_secs_f64() / f.ideal.as_secs_f64(),
        f.calls,
        f.per_revocation,
        f.max_in_flight
    );
}

fn main() {
    elevate::adapters::azure::install_tls_provider();
    let full = std::env::args().any(|a| a == "--bench");
    let (due, latency, storm) =
        if full { (1_000, Duration::from_millis(100), 30) } else { (40, Duration::from_millis(5), 3) };
    let concurrency = elevate::config::DEFAULT_SWEEP_CONCURRENCY;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "graph sweep benchmark: fake Graph latency {} ms per call, concurrency {concurrency}",
        latency.as_millis()
    );
    let calm = runtime.block_on(sweep_once(due, latency, concurrency, 0));
    print("no throttling", due, &calm);
    let stormy = runtime.block_on(sweep_once(due, latency, concurrency, storm));
    print(&format!("{storm} x 429 (Retry-After 1)"), due, &stormy);
    if !full {
        println!("(smoke run: figures are not judged)");
    }
}
