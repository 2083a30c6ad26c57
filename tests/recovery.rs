//! Failures half-way: lost responses, provider outages, process restarts, concurrent sweepers.
//! The service runs against the real SQLite store and the local provider behind a wrapper that
//! injects faults.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::TimeDelta;
use elevate::adapters::access::local::LocalAccessProvider;
use elevate::adapters::store::sqlite::SqliteStore;
use elevate::clock::{Clock, ManualClock};
use elevate::domain::activation::Status;
use elevate::domain::ids::{PrincipalId, RoleDefinitionId, TenantId};
use elevate::domain::policy::Policy;
use elevate::domain::scope::Scope;
use elevate::service::ports::{
    AccessError, AccessProvider, Assignment, AssignmentSpec, AuditQuery, Caller, Grant, Store,
};
use elevate::service::{ActivationInput, Elevate, SweepSettings};

use crate::support::{ALICE, SUB1, start, test_policy};

/// The local provider with faults on demand. Each counter says how many of the next calls fail.
struct Faulty {
    inner: Arc<LocalAccessProvider>,
    /// Grant happens, but the caller sees a transient error (a lost response).
    lose_grant_responses: AtomicUsize,
    /// Grant does not happen; transient error.
    fail_grants: AtomicUsize,
    fail_revokes: AtomicUsize,
}

fn take(counter: &AtomicUsize) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

#[async_trait]
impl AccessProvider for Faulty {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        if take(&self.fail_grants) {
            return Err(AccessError::Transient("injected: 503".into()));
        }
        let result = self.inner.grant(spec).await;
        if take(&self.lose_grant_responses) {
            return Err(AccessError::Transient("injected: connection dropped after the PUT".into()));
        }
        result
    }
    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        if take(&self.fail_revokes) {
            return Err(AccessError::Transient("injected: 429".into()));
        }
        self.inner.revoke(grant).await
    }
    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        self.inner.inspect(grant).await
    }
    async fn list_managed(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        self.inner.list_managed(scope).await
    }
    fn kind(&self) -> &'static str {
        "faulty"
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    db: PathBuf,
    clock: Arc<ManualClock>,
    faults: Arc<Faulty>,
    store: Arc<SqliteStore>,
    service: Elevate,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("elevate.db");
        let inner = Arc::new(LocalAccessProvider::open(&db).unwrap());
        let faults = Arc::new(Faulty {
            inner,
            lose_grant_responses: AtomicUsize::new(0),
            fail_grants: AtomicUsize::new(0),
            fail_revokes: AtomicUsize::new(0),
        });
        let store = Arc::new(SqliteStore::open(&db).unwrap());
        let service = Rig::service_on(&store, &faults);
        Rig { _dir: dir, db, clock: Arc::new(ManualClock::new(start())), faults, store, service }
    }

    /// A second Elevate on the same database: what a restarted process would be.
    fn service_on(store: &Arc<SqliteStore>, faults: &Arc<Faulty>) -> Elevate {
        let policy = Arc::new(Policy::from_yaml("test.yaml", &test_policy()).unwrap());
        Elevate::new(
            Arc::clone(store) as Arc<dyn Store>,
            Arc::clone(faults) as Arc<dyn AccessProvider>,
            policy,
            vec![],
            SweepSettings { batch: 3, ..SweepSettings::default() },
        )
    }

    fn restarted(&self) -> Elevate {
        let store = Arc::new(SqliteStore::open(&self.db).unwrap());
        Rig::service_on(&store, &self.faults)
    }

    fn alice() -> Caller {
        Caller {
            principal_id: PrincipalId::parse(ALICE).unwrap(),
            tenant_id: TenantId::parse("de7e1e7a-0000-4000-8000-000000000001").unwrap(),
            name: None,
            app_id: None,
            app_only: false,
            roles: vec![],
            groups: vec![],
            groups_overage: false,
            mfa: true,
            auth_contexts: vec![],
        }
    }

    fn reader(scope: &str) -> ActivationInput {
        ActivationInput {
            principal_id: None,
            role_definition_id: RoleDefinitionId::parse("Reader").unwrap(),
            scope: Scope::parse(scope).unwrap(),
            duration: Some(elevate::domain::duration::IsoDuration::from_hours(1)),
            justification: None,
            ticket: None,
            start_at: None,
            rule_id: None,
        }
    }

    async fn request(&self, scope: &str) -> elevate::domain::activation::Activation {
        self.service
            .request_activation(&Rig::alice(), Rig::reader(scope), None, self.clock.now())
            .await
            .unwrap()
            .activation
    }

    async fn status(&self, id: elevate::domain::ids::ActivationId) -> Status {
        self.store.get(id).await.unwrap().unwrap().value.status()
    }

    async fn held(&self) -> usize {
        self.faults.inner.all().await.unwrap().len()
    }

    async fn events(&self, id: elevate::domain::ids::ActivationId, action: &str) -> usize {
        let all = self
            .store
            .audit(&AuditQuery { activation_id: Some(id), limit: 500, ..AuditQuery::default() })
            .await
            .unwrap()
            .items;
        all.iter().filter(|e| format!("{:?}", e.action) == action).count()
    }
}

#[tokio::test]
async fn a_lost_grant_response_is_finished_by_the_next_sweep_after_a_restart() {
    let rig = Rig::new();
    rig.faults.lose_grant_responses.store(1, Ordering::SeqCst);
    let a = rig.request(SUB1).await;
    assert_eq!(a.status(), Status::Provisioning, "the request does not know whether the grant happened");
    assert_eq!(a.expires_at(), Some(start() + TimeDelta::hours(1)), "expiry is fixed before the grant");
    assert_eq!(rig.held().await, 1);

    let report = rig.service.sweep(rig.clock.now()).await;
    assert_eq!(report.examined, 0, "the request that started provisioning keeps it for a grace period");
    rig.clock.advance(TimeDelta::minutes(2));
    assert_eq!(rig.service.sweep(rig.clock.now()).await.examined, 0, "longer than one grant may take");
    rig.clock.advance(TimeDelta::minutes(1));
    let restarted = rig.restarted();
    let report = restarted.sweep(rig.clock.now()).await;
    assert_eq!(report.provisioned, 1, "{report:?}");
    assert_eq!(rig.status(a.id()).await, Status::Active);
    assert_eq!(rig.held().await, 1, "one assignment, not two");
    assert_eq!(rig.events(a.id(), "Provisioned").await, 1);
}

#[tokio::test]
async fn a_failed_grant_is_retried_by_the_sweeper() {
    let rig = Rig::new();
    rig.faults.fail_grants.store(2, Ordering::SeqCst);
    let a = rig.request(SUB1).await;
    assert_eq!(a.status(), Status::Provisioning);
    assert_eq!(rig.held().await, 0);
    rig.clock.advance(TimeDelta::minutes(3));
    let report = rig.service.sweep(rig.clock.now()).await;
    assert_eq!(report.provisioned, 0, "still failing: stays Provisioning");
    assert_eq!(report.failures.len(), 1, "and is reported on every pass: {report:?}");
    assert_eq!(rig.status(a.id()).await, Status::Provisioning);
    rig.clock.advance(TimeDelta::minutes(1));
    let report = rig.service.sweep(rig.clock.now()).await;
    assert_eq!(report.provisioned, 1, "{report:?}");
    assert_eq!(rig.status(a.id()).await, Status::Active);
}

#[tokio::test]
async fn a_failing_revocation_stays_due_and_is_reported_until_it_succeeds() {
    let rig = Rig::new();
    let a = rig.request(SUB1).await;
    let b = rig.request(&format!("{SUB1}/resourceGroups/other")).await;
    rig.faults.fail_revokes.store(2, Ordering::SeqCst);
    rig.clock.advance(TimeDelta::hours(1));
    let first = rig.service.sweep(rig.clock.now()).await;
    assert_eq!(first.expired, 0);
    assert_eq!(first.failures.len(), 2, "both fail, neither stops the other: {first:?}");
    assert_eq!(rig.status(a.id()).await, Status::Active);
    assert_eq!(rig.held().await, 2);
    rig.clock.advance(TimeDelta::minutes(1));
    let second = rig.service.sweep(rig.clock.now()).await;
    assert_eq!(second.expired, 2, "{second:?}");
    assert_eq!(rig.status(b.id()).await, Status::Expired);
    assert_eq!(rig.held().await, 0);
}

#[tokio::test]
async fn provisioning_interrupted_past_its_expiry_is_cleaned_up() {
    let rig = Rig::new();
    rig.faults.lose_grant_responses.store(1, Ordering::SeqCst);
    let a = rig.request(SUB1).await;
    assert_eq!(rig.held().await, 1);
    rig.clock.advance(TimeDelta::hours(2));
    let report = rig.restarted().sweep(rig.clock.now()).await;
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(rig.status(a.id()).await, Status::Expired);
    assert_eq!(rig.held().await, 0, "no access outlives its expiry");
}

#[tokio::test]
async fn concurrent_sweepers_expire_each_activation_once() {
    let rig = Rig::new();
    let mut ids = Vec::new();
    for rg in 0..7 {
        ids.push(rig.request(&format!("{SUB1}/resourceGroups/rg{rg}")).await.id());
    }
    rig.clock.advance(TimeDelta::hours(1));
    let other = rig.restarted();
    let now = rig.clock.now();
    let (x, y) = tokio::join!(rig.service.sweep(now), other.sweep(now));
    assert_eq!(x.expired + y.expired, 7, "{x:?} {y:?}");
    assert!(x.failures.is_empty() && y.failures.is_empty(), "{x:?} {y:?}");
    for id in ids {
        assert_eq!(rig.events(id, "Expired").await, 1);
    }
    assert_eq!(rig.held().await, 0);
}

#[tokio::test]
async fn the_sweep_reads_past_its_batch_size() {
    let rig = Rig::new();
    for rg in 0..10 {
        rig.request(&format!("{SUB1}/resourceGroups/rg{rg}")).await;
    }
    rig.faults.fail_revokes.store(4, Ordering::SeqCst);
    rig.clock.advance(TimeDelta::hours(1));
    let report = rig.service.sweep(rig.clock.now()).await;
    assert_eq!(report.examined, 10, "batches of 3 must not stop at failures: {report:?}");
    assert_eq!(report.expired, 6);
    assert_eq!(report.failures.len(), 4);
}

/// Standalone mode sweeps at the start of every minute by itself (tokio's clock is paused and
/// jumps ahead; the manual clock says the activation is due).
#[tokio::test(start_paused = true)]
async fn the_standalone_sweeper_runs_every_minute_by_itself() {
    let rig = Rig::new();
    let a = rig.request(SUB1).await;
    rig.clock.advance(TimeDelta::hours(1));
    let service = Arc::new(rig.restarted());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(elevate::startup::run_sweeper(
        Arc::clone(&service),
        Arc::clone(&rig.clock) as Arc<dyn Clock>,
        stopped,
    ));
    for _ in 0..200 {
        if rig.status(a.id()).await == Status::Expired {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert_eq!(rig.status(a.id()).await, Status::Expired);
    stop.send(true).unwrap();
    task.await.unwrap();
}
