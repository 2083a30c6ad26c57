//! Store benchmark, on SQLite and on Table Storage (the real Azurite emulator):
//! - activations per second, and p50/p99 latency of one activation request (insert, grant,
//!   record Active), with 16 requests in flight through the service;
//! - one sweep of N due activations with an empty store, then with 100,000 finished activations
//!   (and their audit events) in it: the sweep reads the due index, so history must not slow it.
//!
//! The access provider answers at once (in memory), so the figures are the store's.
//!
//!   cargo bench --bench store        # 2,000 activations; sweep of 500 due; 100,000 finished
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it is a seconds-long smoke run that
//! checks the results but judges no timing. Needs Azurite (`npm ci --prefix tests/js`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "the benchmark uses only part of the support")]
#[path = "../tests/support/azurite.rs"]
mod azurite;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use elevate::adapters::store::sqlite::SqliteStore;
use elevate::domain::activation::Activation;
use elevate::domain::audit::{Actor, AuditEvent};
use elevate::domain::duration::IsoDuration;
use elevate::domain::ids::{ActivationId, PrincipalId, RoleDefinitionId, TenantId};
use elevate::domain::policy::{ActivationDraft, Policy, Subject};
use elevate::domain::scope::Scope;
use elevate::service::ports::{AccessError, AccessProvider, Assignment, AssignmentSpec, Caller, Grant, Store};
use elevate::service::{ActivationInput, Elevate, SweepSettings};
use futures_util::StreamExt;
use uuid::Uuid;

const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";
const PRINCIPAL: &str = "11111111-1111-1111-1111-111111111111";
const IN_FLIGHT: usize = 16;

/// Role assignments in memory: grants and revocations cost nothing.
#[derive(Default)]
struct InstantAccess(Mutex<HashMap<Uuid, Assignment>>);

#[async_trait]
impl AccessProvider for InstantAccess {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        let a = Assignment {
            id: format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", spec.scope.as_str(), spec.name),
            name: spec.name,
            scope: spec.scope.clone(),
            principal_id: spec.principal_id,
            role_definition_id: spec.role_definition_id,
            description: Some(spec.description.clone()),
        };
        self.0.lock().unwrap().insert(spec.name, a.clone());
        Ok(a)
    }
    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        self.0.lock().unwrap().remove(&grant.spec.name);
        Ok(())
    }
    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        Ok(self.0.lock().unwrap().get(&grant.spec.name).cloned())
    }
    async fn list_managed(&self, _: &Scope) -> Result<Vec<Assignment>, AccessError> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }
    fn kind(&self) -> &'static str {
        "memory"
    }
}

fn policy() -> Policy {
    Policy::from_yaml(
        "bench.yaml",
        &format!(
            "version: 1\nrules:\n  - id: bench\n    scope: {SUB}\n    roles: [Reader]\n    principals: ['user:{PRINCIPAL}', 'group:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa']\n    maxDuration: PT1H\n    requireMfa: false\n    requireJustification: false\n"
        ),
    )
    .unwrap()
}

fn t0() -> DateTime<Utc> {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

/// The requester of activation `i`: one of 500 members of the eligible group, since one principal
/// may hold only a few open activations at once (`ELEVATE_MAX_OPEN_REQUESTS`).
fn caller(i: usize) -> Caller {
    Caller {
        principal_id: PrincipalId::parse(&format!("33333333-3333-3333-3333-{:012x}", i % 500)).unwrap(),
        tenant_id: TenantId::parse("5b51c641-0711-41d2-ac58-d90390d94a00").unwrap(),
        name: None,
        app_id: None,
        app_only: false,
        roles: Vec::new(),
        groups: vec![PrincipalId::parse("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa").unwrap()],
        groups_overage: false,
        mfa: true,
        auth_contexts: Vec::new(),
    }
}

fn input(i: usize, prefix: &str) -> ActivationInput {
    ActivationInput {
        principal_id: None,
        role_definition_id: RoleDefinitionId::parse("Reader").unwrap(),
        scope: Scope::parse(&format!("{SUB}/resourceGroups/{prefix}{i}")).unwrap(),
        duration: Some(IsoDuration::from_hours(1)),
        justification: None,
        ticket: None,
        start_at: None,
        rule_id: None,
    }
}

fn service(store: Arc<dyn Store>) -> Elevate {
    let settings = SweepSettings { orphan_interval: TimeDelta::days(365), ..SweepSettings::default() };
    Elevate::new(store, Arc::new(InstantAccess::default()), Arc::new(policy()), Vec::new(), settings)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `count` activation requests, IN_FLIGHT at a time: throughput and latency.
async fn activations(store: Arc<dyn Store>, count: usize) -> (f64, Duration, Duration) {
    let service = Arc::new(service(store));
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures_util::stream::iter(0..count)
        .map(|i| {
            let service = Arc::clone(&service);
            let caller = caller(i);
            async move {
                let began = Instant::now();
                let done = service.request_activation(&caller, input(i, "a"), None, t0()).await.unwrap();
                assert_eq!(done.activation.status().to_string(), "Active");
                began.elapsed()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    latencies.sort();
    (count as f64 / elapsed.as_secs_f64(), percentile(&latencies, 0.5), percentile(&latencies, 0.99))
}

/// A finished (Expired) activation and its event, as history.
fn finished(i: usize) -> (Activation, AuditEvent) {
    let principal = PrincipalId::parse(&format!("22222222-2222-2222-2222-{:012x}", i % 5000)).unwrap();
    let draft = ActivationDraft {
        principal_id: principal,
        role_definition_id: RoleDefinitionId::parse("Reader").unwrap(),
        scope: Scope::parse(&format!("{SUB}/resourceGroups/h{}", i % 997)).unwrap(),
        rule_id: None,
        duration: Some(IsoDuration::from_hours(1)),
        justification: None,
        ticket: None,
        start_at: None,
    };
    let group = PrincipalId::parse("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa").unwrap();
    let subject = Subject { principal_id: principal, groups: vec![group], mfa: true, auth_contexts: vec![] };
    let then = t0() - TimeDelta::days(30) + TimeDelta::seconds(i as i64);
    let authorized = policy().authorize_activation(draft, &subject, then).unwrap();
    let opened = Activation::open(ActivationId::new_random(), authorized, then).activation;
    let active = opened.provisioned("/x".into(), then).unwrap().activation;
    let t = active.expire(then + TimeDelta::hours(1)).unwrap();
    let event = AuditEvent::of(&t, Actor::System, None, None, then + TimeDelta::hours(1));
    (t.activation, event)
}

async fn add_history(store: &Arc<dyn Store>, count: usize) {
    futures_util::stream::iter(0..count)
        .map(|i| {
            let store = Arc::clone(store);
            async move {
                let (a, e) = finished(i);
                store.insert(&a, &e, None, usize::MAX).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// One sweep of `due` expired activations, with `history` finished ones already in the store.
async fn sweep(store: Arc<dyn Store>, due: usize, history: usize) -> Duration {
    if history > 0 {
        add_history(&store, history).await;
    }
    let service = service(store);
    for i in 0..due {
        service.request_activation(&caller(i), input(i, "s"), None, t0()).await.unwrap();
    }
    let started = Instant::now();
    let report = service.sweep(t0() + TimeDelta::hours(2)).await;
    let elapsed = started.elapsed();
    assert_eq!(report.expired, due, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    elapsed
}

fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap()), dir)
}

fn tables() -> Arc<dyn Store> {
    let settings = azurite::azurite().tables(std::env::temp_dir().join("unused.db"));
    Arc::new(elevate::startup::table_store(&settings).unwrap())
}

fn main() {
    elevate::adapters::azure::install_tls_provider();
    let full = std::env::args().any(|a| a == "--bench");
    let (count, due, history) = if full { (2_000, 500, 100_000) } else { (40, 10, 200) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("store benchmark: {count} activations ({IN_FLIGHT} in flight), sweep of {due} due, {history} finished");
    for name in ["sqlite", "azurite"] {
        let make = || -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
            match name {
                "sqlite" => {
                    let (s, d) = sqlite();
                    (s, Some(d))
                }
                _ => (tables(), None),
            }
        };
        let (store, _dir) = make();
        let (rate, p50, p99) = runtime.block_on(activations(store, count));
        println!(
            "{name:<8} activations: {rate:>8.1}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        let (store, _dir) = make();
        let empty = runtime.block_on(sweep(store, due, 0));
        let (store, _dir) = make();
        let loaded_started = Instant::now();
        let loaded = runtime.block_on(sweep(store, due, history));
        println!(
            "{name:<8} sweep of {due} due: {:>8.3} s empty, {:>8.3} s with {history} finished ({:.2}x; loading took {:.0} s)",
            empty.as_secs_f64(),
            loaded.as_secs_f64(),
            loaded.as_secs_f64() / empty.as_secs_f64(),
            (loaded_started.elapsed() - loaded).as_secs_f64()
        );
        if full {
            assert!(loaded.as_secs_f64() <= empty.as_secs_f64() * 1.5 + 0.05, "history slowed the {name} sweep");
        }
    }
}
