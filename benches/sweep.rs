//! Sweep benchmark: how long one sweep takes to revoke N due activations through the `arm`
//! provider, against the fake ARM answering every call after a fixed latency, compared with the
//! ideal (N × calls per activation × latency / concurrency); and again with a large history of
//! finished activations in the store, which must not slow it (the sweep reads an index of due
//! items, never history).
//!
//!   cargo bench --bench sweep                  # 1,000 and 10,000 due; 0 and 1,000,000 finished
//!   cargo bench --bench sweep -- --quick       # 1,000 due only
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it is a small smoke run that
//! checks the same things at a size that takes seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/support/fake_azure.rs"]
mod fake_azure;
#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/support/fake_http.rs"]
mod fake_http;

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
use elevate::service::{ActivationInput, Elevate, SweepSettings};
use fake_azure::FakeAzure;

const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";
const PRINCIPAL: &str = "11111111-1111-1111-1111-111111111111";
/// DELETE, then the GET that confirms the assignment is gone.
const CALLS_PER_EXPIRY: u32 = 2;

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

struct Figures {
    elapsed: Duration,
    ideal: Duration,
    arm_calls: usize,
    max_in_flight: usize,
}

async fn sweep_once(due: usize, history: usize, latency: Duration, concurrency: usize) -> Figures {
    let fake = FakeAzure::start().await;
    fake.set_page_size(1000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elevate.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let access = Arc::new(
        ArmAccessProvider::new(&fake.url(), Arc::new(StaticToken(fake.token.clone())), RetryPolicy::default()).unwrap(),
    );
    let policy = Policy::from_yaml(
        "bench.yaml",
        &format!(
            "version: 1\nrules:\n  - id: bench\n    scope: {SUB}\n    roles: [Reader]\n    principals: ['user:{PRINCIPAL}']\n    maxDuration: PT1H\n    requireMfa: false\n    requireJustification: false\n"
        ),
    )
    .unwrap();
    let settings = SweepSettings { concurrency, orphan_interval: TimeDelta::days(1), ..SweepSettings::default() };
    // One requester holds every due activation: the cap on open requests is not what this measures.
    let service =
        Elevate::new(store, access, Arc::new(policy), Vec::new(), settings).with_max_open_requests(usize::MAX);
    let t0: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
    // The first pass of a process also reconciles against ARM; take it before measuring.
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
    let reader = RoleDefinitionId::parse("Reader").unwrap();
    for chunk in (0..due).collect::<Vec<_>>().chunks(64) {
        let requests = chunk.iter().map(|i| {
            let input = ActivationInput {
                principal_id: None,
                role_definition_id: reader,
                scope: Scope::parse(&format!("{SUB}/resourceGroups/rg{i}")).unwrap(),
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
    if history > 0 {
        add_history(&db, history);
    }

    fake.set_latency(latency);
    fake.reset_log();
    let started = Instant::now();
    let report = service.sweep(t0 + TimeDelta::minutes(61)).await;
    let elapsed = started.elapsed();
    assert_eq!(report.expired, due, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(fake.assignments().is_empty());
    let ideal = latency * CALLS_PER_EXPIRY * due as u32 / concurrency as u32;
    Figures { elapsed, ideal, arm_calls: fake.seen().len(), max_in_flight: fake.max_in_flight() }
}

/// `count` finished activations, each with an audit event, copied from a real one's shape.
fn add_history(db: &std::path::Path, count: usize) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA synchronous = OFF; BEGIN;").unwrap();
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1)
         INSERT INTO activations (id, principal_id, role_definition_id, scope_key, status, open, due_at, requested_at, version, body)
         SELECT printf('%08x-0000-4000-8000-%012x', i / 65536, i), printf('22222222-2222-2222-2222-%012x', i % 5000),
                'acdd72a7-3385-48ef-bd42-f606fba81ae7', printf('/subscriptions/00000000-0000-0000-0000-000000000002/resourcegroups/h%d', i % 997),
                'Expired', 0, NULL, 1700000000000 + i, 3, '{\"history\":true}'
         FROM n",
        [count as i64],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO audit_events (id, activation_id, principal_id, at, body)
         SELECT 'h-' || id, id, principal_id, requested_at, '{\"history\":true}' FROM activations WHERE status = 'Expired'",
        [],
    )
    .unwrap();
    // History accumulates over months in a real store; it is not a write-ahead log waiting to be
    // checkpointed by the very sweep being measured.
    conn.execute_batch("COMMIT; PRAGMA synchronous = FULL; PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
}

fn print(label: &str, due: usize, f: &Figures) {
    println!(
        "{label:<34} due {due:>6}  elapsed {:>8.2} s  ideal {:>8.2} s  ratio {:>5.2}  ARM calls {:>6}  max in flight {:>3}",
        f.elapsed.as_secs_f64(),
        f.ideal.as_secs_f64(),
        f.elapsed.as_secs_f64() / f.ideal.as_secs_f64(),
        f.arm_calls,
        f.max_in_flight
    );
}

fn main() {
    elevate::adapters::azure::install_tls_provider();
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let (sizes, history, latency) = if full {
        (if quick { vec![1_000] } else { vec![1_000, 10_000] }, 1_000_000, Duration::from_millis(100))
    } else {
        (vec![64], 20_000, Duration::from_millis(20))
    };
    let concurrency = elevate::config::DEFAULT_SWEEP_CONCURRENCY;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("sweep benchmark: fake ARM latency {} ms per call, concurrency {concurrency}", latency.as_millis());
    let mut worst: f64 = 0.0;
    for due in sizes {
        let empty = runtime.block_on(sweep_once(due, 0, latency, concurrency));
        print("empty history", due, &empty);
        let loaded = runtime.block_on(sweep_once(due, history, latency, concurrency));
        print(&format!("{history} finished in the store"), due, &loaded);
        let slowdown = loaded.elapsed.as_secs_f64() / empty.elapsed.as_secs_f64();
        println!("{:<34} due {due:>6}  history slowdown {slowdown:.3}x (must be <= 1.5x)", "");
        worst = worst.max(slowdown);
    }
    // Only a real run judges speed; the smoke run's timings are too small to mean anything.
    if full {
        assert!(worst <= 1.5, "a large history slowed the sweep by {worst:.2}x");
    }
}
