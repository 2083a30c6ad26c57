//! Expiry latency benchmark: how long after its `expiresAt` an activation's role assignment is
//! confirmed removed, when 1,000 activations end within the same minute and the fake ARM of
//! tests/support/fake_azure.rs answers every call after 100 ms. Two ways to revoke:
//! - standalone: `startup::run_sweeper`, which wakes when the next activation falls due
//!   (`Elevate::next_due`), at the default concurrency (16) and at 64;
//! - the queue path: each activation's `expiry` message on Azurite's Queue service, read by a
//!   harness that plays the Functions host (reads of `batchSize` 16 messages, another read when
//!   at most `newBatchThreshold` 8 are in hand, as host.json says; a read every 100 ms while the
//!   queue is empty) and posts each to `/expiry` of the app served with `functions_host`,
//!   deleting it on 2xx. The `deliver` queue is read the same way meanwhile. Also with the
//!   largest batch the host allows (32 + 16). No timer tick and no sweeper run on this path.
//!
//! The ends: spread evenly over one minute of the clock (12:05:00–12:05:59.94), over sixty
//! seconds that straddle a minute (standalone only), or all at one instant. Then the time from a
//! request that needs approval to its Teams card at a webhook receiver: standalone (the delivery
//! started in-process after the write), and with the `deliver` queue, where the card goes out
//! through whichever comes first, that in-process delivery or the invocation of the queue's
//! message; the time to that invocation is measured as well.
//!
//!   cargo bench --bench expiry_latency
//!   cargo bench --bench expiry_latency -- --only=queue     # or standalone, notices
//!
//! Time: an activation lasts at least five minutes, so the app runs on a clock that moves with
//! real time from a chosen start (`BenchClock`); activations are requested with a `now` five
//! minutes before the end they are to have, then the clock is set a few seconds before the first
//! end and real time runs. The latency of one activation is the real instant the access provider
//! confirmed its assignment gone (the read after the DELETE answered "not found": `Stamped`)
//! minus the real instant at which the clock read its `expiresAt`. On the queue path the clock is
//! never moved after messages are put, and each expiry message is put to become visible when
//! its `expiresAt` comes on that clock (`Rebased`): the service computes its delay from the
//! request's `now`, which here lies five minutes back. Each queue run has an emulator of its own,
//! and reports the emulator's own stalls (`Emulator`, `Stalls`).
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it is a seconds-long smoke run with
//! 20 activations and 5 ms latency that checks the outcomes (every assignment removed and
//! confirmed, none early, nothing left in the fake ARM or due in the store, every expiry message
//! settled and deleted, every card delivered) and judges no time. Needs Azurite
//! (`npm ci --prefix tests/js`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "the benchmark uses only part of the support")]
#[path = "../tests/support/azurite.rs"]
mod azurite;
#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/support/fake_azure.rs"]
mod fake_azure;
#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/support/fake_http.rs"]
mod fake_http;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use elevate::adapters::access::arm::ArmAccessProvider;
use elevate::adapters::azure::RetryPolicy;
use elevate::adapters::azure::{AzureClient, SharedKey, Signer};
use elevate::adapters::identity::dev::DevTokenRequest;
use elevate::adapters::notify::WebhookUrl;
use elevate::adapters::queue::{QueueClient, QueueMessage, QueueName};
use elevate::adapters::work_queue::StorageQueues;
use elevate::clock::{Clock, SystemClock};
use elevate::config::{
    AuthSetting, DEV_STORAGE_ACCOUNT, DEV_STORAGE_KEY, GroupChecks, NotificationSettings, ProviderSetting, RunMode,
    Settings, StoreSetting,
};
use elevate::domain::duration::IsoDuration;
use elevate::domain::ids::{PrincipalId, RoleDefinitionId, TenantId};
use elevate::domain::scope::Scope;
use elevate::service::ports::{
    AccessError, AccessProvider, Assignment, AssignmentSpec, Caller, Grant, Queue, QueueError, WorkQueue,
};
use elevate::service::{ActivationInput, Elevate, ExpiryMessage};
use elevate::startup::{Built, Ports};
use fake_azure::FakeAzure;
use fake_http::{FakeReply, FakeRequest};
use serde_json::{Value, json};
use uuid::Uuid;

const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";
const SUB2: &str = "/subscriptions/00000000-0000-0000-0000-000000000002";
const ALICE: &str = "11111111-1111-1111-1111-111111111111";
const BOB: &str = "22222222-2222-2222-2222-222222222222";
/// The shortest activation the policy allows, and what every one here asks for.
const DURATION: TimeDelta = TimeDelta::minutes(5);
/// The goal: p99 from `expiresAt` to confirmed removal.
const GOAL_P99: f64 = 5.0;
/// How long the host harness waits before reading an empty queue again.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long a message read by the harness stays hidden (handling takes well under a second).
const READ_VISIBILITY: Duration = Duration::from_secs(60);

/// A token the fake accepts, cached as azure_identity's credentials cache theirs.
#[derive(Debug)]
struct StaticToken(String);

#[async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(&self, _: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            self.0.clone(),
            azure_core::time::OffsetDateTime::from_unix_timestamp(4_102_444_800).unwrap(),
        ))
    }
}

/// The app's clock: real time from a chosen start, which can be set forward. Knows which real
/// instant any time it reads corresponds to (at its current setting).
struct BenchClock {
    origin: Instant,
    at_origin: DateTime<Utc>,
    offset: Mutex<TimeDelta>,
}

impl BenchClock {
    fn starting_at(at: DateTime<Utc>) -> Self {
        Self { origin: Instant::now(), at_origin: at, offset: Mutex::new(TimeDelta::zero()) }
    }

    fn unshifted(&self) -> DateTime<Utc> {
        self.at_origin + TimeDelta::from_std(self.origin.elapsed()).unwrap()
    }

    /// From now on the clock reads `to`, and moves on with real time.
    fn set(&self, to: DateTime<Utc>) {
        *self.offset.lock().unwrap() = to - self.unshifted();
    }

    /// The real instant at which the clock reads `at`.
    fn instant_of(&self, at: DateTime<Utc>) -> Instant {
        let since = at - self.at_origin - *self.offset.lock().unwrap();
        match since.to_std() {
            Ok(after) => self.origin + after,
            Err(_) => self.origin - (-since).to_std().unwrap(),
        }
    }

    /// Real time until the clock reads `at`.
    fn until(&self, at: DateTime<Utc>) -> Duration {
        self.instant_of(at).saturating_duration_since(Instant::now())
    }
}

impl Clock for BenchClock {
    /// Millisecond precision, as the system clock.
    fn now(&self) -> DateTime<Utc> {
        (self.unshifted() + *self.offset.lock().unwrap()).trunc_subsecs(3)
    }
}

/// The access provider, with the real instant each revoked assignment was confirmed gone: the
/// read after a successful DELETE that finds nothing (what the service waits for).
struct Stamped {
    inner: Arc<dyn AccessProvider>,
    /// When each assignment's first DELETE was sent.
    started: Mutex<HashMap<Uuid, Instant>>,
    deleted: Mutex<HashSet<Uuid>>,
    confirmed: Mutex<HashMap<Uuid, Instant>>,
}

impl Stamped {
    fn new(inner: Arc<dyn AccessProvider>) -> Self {
        Self {
            inner,
            started: Mutex::new(HashMap::new()),
            deleted: Mutex::new(HashSet::new()),
            confirmed: Mutex::new(HashMap::new()),
        }
    }

    fn confirmed(&self) -> HashMap<Uuid, Instant> {
        self.confirmed.lock().unwrap().clone()
    }

    fn confirmed_count(&self) -> usize {
        self.confirmed.lock().unwrap().len()
    }
}

#[async_trait]
impl AccessProvider for Stamped {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        self.inner.grant(spec).await
    }

    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        self.started.lock().unwrap().entry(grant.spec.name).or_insert_with(Instant::now);
        let result = self.inner.revoke(grant).await;
        if result.is_ok() {
            self.deleted.lock().unwrap().insert(grant.spec.name);
        }
        result
    }

    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        let result = self.inner.inspect(grant).await;
        if matches!(result, Ok(None)) && self.deleted.lock().unwrap().contains(&grant.spec.name) {
            self.confirmed.lock().unwrap().entry(grant.spec.name).or_insert_with(Instant::now);
        }
        result
    }

    async fn list_managed(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        self.inner.list_managed(scope).await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

/// Storage queues on which an expiry message becomes visible when the app's clock reaches its
/// `expiresAt` (see the module docs); deliver messages go as they come.
struct Rebased {
    inner: StorageQueues,
    clock: Arc<BenchClock>,
    /// Each `deliver` put: when it started and how long it took.
    deliver_puts: Mutex<Vec<(Instant, Duration)>>,
}

#[async_trait]
impl Queue for Rebased {
    async fn put(&self, queue: WorkQueue, message: &str, delay: Duration) -> Result<(), QueueError> {
        let delay = match (queue, serde_json::from_str::<ExpiryMessage>(message)) {
            (WorkQueue::Expiry, Ok(expiry)) => self.clock.until(expiry.expires_at),
            _ => delay,
        };
        let started = Instant::now();
        let result = self.inner.put(queue, message, delay).await;
        if queue == WorkQueue::Deliver {
            self.deliver_puts.lock().unwrap().push((started, started.elapsed()));
        }
        result
    }
}

/// When the activations end: `n` ends spread evenly over `spread` from `first` (all at `first`
/// when `spread` is zero).
#[derive(Clone, Copy)]
struct Ends {
    n: usize,
    first: DateTime<Utc>,
    spread: TimeDelta,
}

impl Ends {
    fn all(&self) -> Vec<DateTime<Utc>> {
        let n = self.n as i64;
        (0..n).map(|i| self.first + TimeDelta::milliseconds(self.spread.num_milliseconds() * i / n)).collect()
    }

    fn last(&self) -> DateTime<Utc> {
        self.all().last().copied().unwrap_or(self.first)
    }

    fn describe(&self) -> String {
        let time = |t: DateTime<Utc>| t.format("%H:%M:%S%.3f").to_string();
        if self.spread.is_zero() {
            format!("all end at {}", time(self.first))
        } else {
            format!("ends {}-{}", time(self.first), time(self.last()))
        }
    }
}

/// The Functions host's queue listener, as far as concurrency goes (host.json `extensions.queues`).
#[derive(Clone, Copy)]
struct HostShape {
    batch_size: u8,
    new_batch_threshold: usize,
}

impl HostShape {
    fn describe(&self) -> String {
        format!("host batch {} + {}", self.batch_size, self.new_batch_threshold)
    }
}

/// host.json as shipped.
const HOST_JSON: HostShape = HostShape { batch_size: 16, new_batch_threshold: 8 };
/// The most the queue trigger allows per instance (`batchSize` ≤ 32).
const HOST_LARGEST: HostShape = HostShape { batch_size: 32, new_batch_threshold: 16 };

fn policy() -> String {
    format!(
        "version: 1
rules:
  - id: self
    scope: {SUB}
    roles: [Reader]
    principals: ['user:{ALICE}']
    maxDuration: PT5M
    requireMfa: false
    requireJustification: false
  - id: approved
    scope: {SUB2}
    roles: [Reader]
    principals: ['user:{ALICE}']
    maxDuration: PT1H
    requireMfa: false
    requireJustification: false
    approval:
      approvers: ['user:{BOB}']
      timeout: PT1H
"
    )
}

fn settings(dir: &Path, mode: RunMode, concurrency: usize, public_url: String, teams: Option<WebhookUrl>) -> Settings {
    let policy_file = dir.join("policy.yaml");
    std::fs::write(&policy_file, policy()).unwrap();
    Settings {
        mode,
        port: 0,
        policy_file,
        store: StoreSetting::Sqlite(dir.join("elevate.db")),
        provider: ProviderSetting::Local,
        auth: AuthSetting::Dev { key_file: dir.join("dev.pem") },
        public_url,
        broker_app_ids: Vec::new(),
        link_key: None,
        sweep_concurrency: concurrency,
        orphan_sweep_interval: IsoDuration::parse("PT1H").unwrap(),
        notifications: NotificationSettings { teams, ..NotificationSettings::default() },
        // One requester holds every activation: the cap on open requests is not measured.
        max_open_requests: 100_000,
        group_checks: GroupChecks::Token,
        queues: None,
        audit_export: None,
    }
}

fn arm(fake: &FakeAzure) -> Arc<dyn AccessProvider> {
    Arc::new(
        ArmAccessProvider::new(&fake.url(), Arc::new(StaticToken(fake.token.clone())), RetryPolicy::default()).unwrap(),
    )
}

fn alice() -> Caller {
    Caller {
        principal_id: PrincipalId::parse(ALICE).unwrap(),
        tenant_id: TenantId::parse("5b51c641-0711-41d2-ac58-d90390d94a00").unwrap(),
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

/// Requests one activation per end, each requested `DURATION` before it; returns each one's
/// role assignment name and end.
async fn create(service: &Elevate, ends: &Ends) -> Vec<(Uuid, DateTime<Utc>)> {
    let caller = alice();
    let reader = RoleDefinitionId::parse("Reader").unwrap();
    let five_minutes = IsoDuration::parse("PT5M").unwrap();
    let mut made = Vec::new();
    let all: Vec<(usize, DateTime<Utc>)> = ends.all().into_iter().enumerate().collect();
    for chunk in all.chunks(64) {
        let requests = chunk.iter().map(|(i, end)| {
            let input = ActivationInput {
                principal_id: None,
                role_definition_id: reader,
                scope: Scope::parse(&format!("{SUB}/resourceGroups/rg{i}")).unwrap(),
                duration: Some(five_minutes),
                justification: None,
                ticket: None,
                start_at: None,
                rule_id: None,
            };
            service.request_activation(&caller, input, None, *end - DURATION)
        });
        for (result, (_, end)) in futures_util::future::join_all(requests).await.into_iter().zip(chunk) {
            let activation = result.unwrap().activation;
            assert_eq!(activation.status().to_string(), "Active");
            assert_eq!(activation.expires_at(), Some(*end));
            made.push((activation.id().role_assignment_name(), *end));
        }
    }
    made
}

/// Waits until `n` removals are confirmed, or fails the run at `deadline`.
async fn all_confirmed(stamped: &Stamped, n: usize, deadline: Instant) {
    while stamped.confirmed_count() < n {
        assert!(Instant::now() < deadline, "only {} of {n} removals were confirmed in time", stamped.confirmed_count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Seconds from each activation's end to its confirmed removal, sorted. None may be early.
fn latencies(made: &[(Uuid, DateTime<Utc>)], stamped: &Stamped, clock: &BenchClock) -> Vec<f64> {
    let confirmed = stamped.confirmed();
    let out = made
        .iter()
        .map(|(name, end)| {
            let at = *confirmed.get(name).unwrap_or_else(|| panic!("assignment {name} never confirmed removed"));
            let seconds = seconds(clock.instant_of(*end), at);
            assert!(seconds >= 0.0, "assignment {name} was removed {:.3} s before its end", -seconds);
            seconds
        })
        .collect();
    sorted(out)
}

/// Seconds from `from` to `to`, negative if `to` came first.
fn seconds(from: Instant, to: Instant) -> f64 {
    if to >= from { (to - from).as_secs_f64() } else { -(from - to).as_secs_f64() }
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// Where each activation's time went, in seconds: its end to the DELETE, and the DELETE to
/// the read that confirmed it.
fn revocation_steps(
    made: &[(Uuid, DateTime<Utc>)],
    stamped: &Stamped,
    clock: &BenchClock,
) -> Vec<(&'static str, Vec<f64>)> {
    let (started, confirmed) = (stamped.started.lock().unwrap().clone(), stamped.confirmed());
    let waited = made.iter().map(|(name, end)| seconds(clock.instant_of(*end), started[name])).collect();
    let revoking = made.iter().map(|(name, _)| seconds(started[name], confirmed[name])).collect();
    vec![("end to DELETE sent", sorted(waited)), ("DELETE sent to confirmed", sorted(revoking))]
}

/// The value at rank ⌈p·n⌉ of sorted values; NaN (printed as such) when there are none, as for
/// the `deliver` steps of a run whose app has no notification sink.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// After a run: nothing in the fake ARM, nothing due in the store (every activation recorded
/// as ended).
async fn check_settled(service: &Elevate, clock: &BenchClock, fake: &FakeAzure) {
    assert!(fake.assignments().is_empty(), "{} assignments left in the fake ARM", fake.assignments().len());
    fake.set_latency(Duration::ZERO);
    let report = service.sweep(clock.now()).await;
    assert_eq!(report.examined, 0, "activations still due after the run: {report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
}

struct ExpiryFigures {
    label: String,
    latencies: Vec<f64>,
    arm_calls: usize,
    arm_in_flight: usize,
    /// The most `/expiry` invocations the harness had in hand at once (the queue path).
    invocations_in_flight: Option<usize>,
    /// Steps of each revocation, in seconds (sorted).
    steps: Vec<(&'static str, Vec<f64>)>,
    /// What the queue emulator's stalls did (the queue path).
    emulator: Option<String>,
}

impl ExpiryFigures {
    fn print(&self) {
        let l = &self.latencies;
        let p99 = percentile(l, 0.99);
        let host = self.invocations_in_flight.map(|n| format!("  invocations in flight {n:>3}")).unwrap_or_default();
        println!(
            "{:<62} n {:>5}  p50 {:>6.2} s  p99 {:>6.2} s  max {:>6.2} s  p99 <= {GOAL_P99} s: {:<3}  ARM calls {:>5}  ARM in flight {:>3}{host}",
            self.label,
            l.len(),
            percentile(l, 0.5),
            p99,
            l.last().copied().unwrap_or_default(),
            if p99 <= GOAL_P99 { "yes" } else { "no" },
            self.arm_calls,
            self.arm_in_flight,
        );
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(name, v)| format!("{name} {:.3}/{:.3} s", percentile(v, 0.5), percentile(v, 0.99)))
            .collect();
        println!("{:<62}   p50/p99: {}", "", steps.join(", "));
        if let Some(emulator) = &self.emulator {
            println!("{:<62}   {emulator}", "");
        }
    }
}

/// Standalone: the in-process sweeper of `startup::run_sweeper`, waking when the next
/// activation falls due.
async fn standalone(
    ends: Ends,
    latency: Duration,
    concurrency: usize,
    lead: TimeDelta,
    grace: Duration,
) -> ExpiryFigures {
    let fake = FakeAzure::start().await;
    fake.set_page_size(1000);
    let stamped = Arc::new(Stamped::new(arm(&fake)));
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(BenchClock::starting_at(ends.first - DURATION));
    let settings = settings(dir.path(), RunMode::Standalone, concurrency, "http://127.0.0.1".into(), None);
    let ports = Ports { access: Some(Arc::clone(&stamped) as Arc<dyn AccessProvider>), ..Ports::default() };
    let Built { service, .. } =
        elevate::startup::build_with(&settings, Arc::clone(&clock) as Arc<dyn Clock>, ports).unwrap();
    let made = create(&service, &ends).await;
    // A process's first pass also reconciles against ARM, and this one queues the "expiring
    // soon" notices: both are taken before the measurement, as a running process took them.
    clock.set(ends.first - TimeDelta::minutes(1));
    service.sweep(clock.now()).await;

    fake.set_latency(latency);
    fake.reset_log();
    clock.set(ends.first - lead);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(elevate::startup::run_sweeper(
        Arc::clone(&service),
        Arc::clone(&clock) as Arc<dyn Clock>,
        stopped,
    ));
    all_confirmed(&stamped, made.len(), clock.instant_of(ends.last()) + grace).await;
    let (arm_calls, arm_in_flight) = (fake.seen().len(), fake.max_in_flight());
    stop.send(true).unwrap();
    sweeper.await.unwrap();
    check_settled(&service, &clock, &fake).await;
    ExpiryFigures {
        label: format!("standalone, {}, concurrency {concurrency}", ends.describe()),
        latencies: latencies(&made, &stamped, &clock),
        arm_calls,
        arm_in_flight,
        invocations_in_flight: None,
        steps: revocation_steps(&made, &stamped, &clock),
        emulator: None,
    }
}

/// One invocation the host harness made.
struct Invocation {
    read_at: Instant,
    answered_at: Instant,
    deleted_at: Instant,
    status: u16,
    result: String,
    /// The role assignment an expiry message is about.
    assignment: Option<Uuid>,
}

/// One function's queue listener in the host harness.
struct Listener {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Invocation>>>,
    peak: Arc<AtomicUsize>,
    /// Each read of the queue: when it was sent and how long it took.
    reads: Arc<Mutex<Vec<(Instant, Duration)>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a listener did.
struct Listened {
    invocations: Vec<Invocation>,
    /// The most messages in hand at once.
    peak: usize,
    reads: Vec<(Instant, Duration)>,
}

impl Listener {
    /// Reads `queue` as the host does and posts each message to `url`: a read of up to
    /// `batch_size` messages, handled concurrently; the next read once at most
    /// `new_batch_threshold` are still in hand; after an empty read, the next after `IDLE_POLL`.
    /// A message answered 2xx is deleted.
    fn start(
        client: Arc<QueueClient>,
        queue: QueueName,
        function: &'static str,
        url: String,
        shape: HostShape,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(AtomicUsize::new(0));
        let reads = Arc::new(Mutex::new(Vec::new()));
        let (stopping, logged, peaked, read) =
            (Arc::clone(&stop), Arc::clone(&log), Arc::clone(&peak), Arc::clone(&reads));
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let in_hand = Arc::new(AtomicUsize::new(0));
            let finished = Arc::new(tokio::sync::Notify::new());
            while !stopping.load(Ordering::SeqCst) {
                if in_hand.load(Ordering::SeqCst) > shape.new_batch_threshold {
                    let _ = tokio::time::timeout(Duration::from_millis(50), finished.notified()).await;
                    continue;
                }
                let sent = Instant::now();
                let messages = client.get_messages(&queue, shape.batch_size, READ_VISIBILITY).await.unwrap_or_default();
                let read_at = Instant::now();
                read.lock().unwrap().push((sent, read_at - sent));
                if messages.is_empty() {
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
                for message in messages {
                    peaked.fetch_max(in_hand.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    let (client, queue, http, url) = (Arc::clone(&client), queue.clone(), http.clone(), url.clone());
                    let (logged, in_hand, finished) =
                        (Arc::clone(&logged), Arc::clone(&in_hand), Arc::clone(&finished));
                    tokio::spawn(async move {
                        let invocation = invoke(&http, &url, function, &client, &queue, message, read_at).await;
                        logged.lock().unwrap().push(invocation);
                        in_hand.fetch_sub(1, Ordering::SeqCst);
                        finished.notify_one();
                    });
                }
            }
            while in_hand.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self { stop, log, peak, reads, task }
    }

    fn invocations(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Stops reading, once what is in hand is done.
    async fn stop(self) -> Listened {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        Listened {
            invocations: std::mem::take(&mut *self.log.lock().unwrap()),
            peak: self.peak.load(Ordering::SeqCst),
            reads: std::mem::take(&mut *self.reads.lock().unwrap()),
        }
    }
}

/// Posts one message as the host's payload (azure-spec §6) and deletes it on 2xx.
async fn invoke(
    http: &reqwest::Client,
    url: &str,
    function: &str,
    client: &QueueClient,
    queue: &QueueName,
    m: QueueMessage,
    read_at: Instant,
) -> Invocation {
    let payload = json!({
        "Data": {"msg": m.text},
        "Metadata": {
            "DequeueCount": m.dequeue_count,
            "ExpirationTime": m.expiration_time.to_rfc3339(),
            "Id": m.id.as_str(),
            "InsertionTime": m.insertion_time.to_rfc3339(),
            "NextVisibleTime": m.next_visible_time.to_rfc3339(),
            "PopReceipt": m.pop_receipt.as_str(),
            "sys": {"MethodName": function, "UtcNow": SystemClock.now().to_rfc3339()}
        }
    });
    let (status, result) = match http.post(url).json(&payload).send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            let answer: Value = res.json().await.unwrap_or_default();
            (status, answer["ReturnValue"]["result"].as_str().unwrap_or_default().to_owned())
        }
        Err(e) => (0, e.to_string()),
    };
    let answered_at = Instant::now();
    if (200..300).contains(&status) {
        client.delete_message(queue, &m.id, &m.pop_receipt).await.unwrap();
    }
    let deleted_at = Instant::now();
    let assignment =
        serde_json::from_str::<ExpiryMessage>(&m.text).ok().map(|e| e.activation_id.role_assignment_name());
    Invocation { read_at, answered_at, deleted_at, status, result, assignment }
}

/// How an app puts its queue work.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queues {
    /// No queue: standalone.
    Without,
    /// Storage queues as they are.
    Plain,
    /// Storage queues, expiry messages timed on the benchmark's clock (`Rebased`).
    Rebased,
}

/// Azurite's Queue service, started for one run and stopped with it. Not the shared one of
/// tests/support/azurite.rs: the emulator sweeps its message extents once a minute, and with a
/// few thousand left by deleted messages the sweep holds every call for seconds (9.2 s with 2,153
/// in one measured sweep), growing with what earlier runs left. A fresh one per run keeps the runs
/// independent; what stalls remain are reported (`Stalls`).
struct Emulator {
    base: String,
    /// Closing it stops the emulator: the wrapper shell waits on its stdin, then kills it.
    stdin: Option<std::process::ChildStdin>,
    shell: std::process::Child,
}

impl Emulator {
    async fn start() -> Self {
        let bin = azurite::queue_bin();
        assert!(
            bin.exists(),
            "Azurite is not installed at {}: run ./scripts/test, or `npm ci --prefix tests/js`",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = format!(
            "'{}' --queueHost 127.0.0.1 --queuePort {port} --inMemoryPersistence --disableTelemetry --silent & pid=$!; read _; kill $pid",
            bin.display()
        );
        let mut shell = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start Azurite");
        let stdin = shell.stdin.take();
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Azurite's Queue service did not start on port {port}"
            );
            assert!(shell.try_wait().unwrap().is_none(), "Azurite's Queue service exited at start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { base: format!("http://127.0.0.1:{port}/{DEV_STORAGE_ACCOUNT}"), stdin, shell }
    }

    /// A client signing with the well-known development key.
    fn client(&self) -> QueueClient {
        let key = SharedKey::new(DEV_STORAGE_ACCOUNT, DEV_STORAGE_KEY, Arc::new(SystemClock)).unwrap();
        QueueClient::new(AzureClient::with_signer(Signer::SharedKey(key), RetryPolicy::default()).unwrap(), &self.base)
            .unwrap()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.shell.wait();
    }
}

/// Calls to the emulator that took over a second, found by a probe that asks for a queue's
/// message count every 50 ms: each as when it was sent and when it was answered.
struct Stalls {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, Instant)>>,
}

impl Stalls {
    fn watch(client: Arc<QueueClient>, queue: QueueName) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut found = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let _ = client.approximate_count(&queue).await;
                if sent.elapsed() > Duration::from_secs(1) {
                    found.push((sent, Instant::now()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            found
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<(Instant, Instant)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// An app served on a loopback port; with queues, on `emulator` under a fresh prefix, for the
/// host harness to read.
struct HostedApp {
    built: Built,
    /// The queue port, when expiry messages are timed on the benchmark's clock.
    rebased: Option<Arc<Rebased>>,
    base: String,
    /// The harness's client, with queues.
    client: Option<Arc<QueueClient>>,
    prefix: String,
    stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl HostedApp {
    async fn start(
        clock: &Arc<BenchClock>,
        access: Arc<dyn AccessProvider>,
        teams: Option<WebhookUrl>,
        queues: Queues,
        emulator: Option<&Emulator>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("b{}-", &Uuid::new_v4().simple().to_string()[..12]);
        let emulator = emulator.filter(|_| queues != Queues::Without);
        let storage = || StorageQueues::new(emulator.unwrap().client(), &prefix).unwrap();
        let rebased = (queues == Queues::Rebased).then(|| {
            Arc::new(Rebased { inner: storage(), clock: Arc::clone(clock), deliver_puts: Mutex::new(Vec::new()) })
        });
        let (mode, queue): (RunMode, Option<Arc<dyn Queue>>) = match (queues, &rebased) {
            (Queues::Without, _) => (RunMode::Standalone, None),
            (_, Some(rebased)) => (RunMode::FunctionsHost, Some(Arc::clone(rebased) as Arc<dyn Queue>)),
            (_, None) => (RunMode::FunctionsHost, Some(Arc::new(storage()))),
        };
        let listener = elevate::startup::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = settings(dir.path(), mode, elevate::config::DEFAULT_SWEEP_CONCURRENCY, base.clone(), teams);
        let ports = Ports { access: Some(access), directory: None, queue };
        let built = elevate::startup::build_with(&settings, Arc::clone(clock) as Arc<dyn Clock>, ports).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(elevate::startup::serve(listener, Arc::clone(&built.context), async {
            let _ = stopped.await;
        }));
        let client = emulator.map(|e| Arc::new(e.client()));
        if let Some(client) = &client {
            for function in ["expiry", "deliver"] {
                client.ensure_queue(&QueueName::parse(&format!("{prefix}{function}")).unwrap()).await.unwrap();
            }
        }
        Self { built, rebased, base, client, prefix, stop, _dir: dir }
    }

    fn queue(&self, function: &str) -> QueueName {
        QueueName::parse(&format!("{}{function}", self.prefix)).unwrap()
    }

    fn listen(&self, function: &'static str, shape: HostShape) -> Listener {
        Listener::start(
            Arc::clone(self.client.as_ref().unwrap()),
            self.queue(function),
            function,
            format!("{}/{function}", self.base),
            shape,
        )
    }
}

/// The queue path: each activation's expiry message, read by the host harness and posted to
/// `/expiry`. No timer tick and no sweeper run meanwhile.
async fn through_queue(
    ends: Ends,
    latency: Duration,
    shape: HostShape,
    setup: TimeDelta,
    grace: Duration,
) -> ExpiryFigures {
    let fake = FakeAzure::start().await;
    fake.set_page_size(1000);
    let stamped = Arc::new(Stamped::new(arm(&fake)));
    // Messages are put against this clock, so it is never moved: requests are made while it runs
    // towards the first end, `setup` ahead.
    let clock = Arc::new(BenchClock::starting_at(ends.first - setup));
    let emulator = Emulator::start().await;
    let access = Arc::clone(&stamped) as Arc<dyn AccessProvider>;
    let app = HostedApp::start(&clock, access, None, Queues::Rebased, Some(&emulator)).await;
    let stalls = Stalls::watch(Arc::new(emulator.client()), app.queue("expiry"));
    let expiry = app.listen("expiry", shape);
    // The host reads the deliver queue too: every change that queues a notice puts a message.
    let deliver = app.listen("deliver", shape);
    let made = create(&app.built.service, &ends).await;
    let margin = ends.first - clock.now();
    assert!(
        margin > TimeDelta::seconds(1),
        "requesting {} activations took longer than the {} s set aside; the first end is {} ms away",
        made.len(),
        setup.num_seconds(),
        margin.num_milliseconds()
    );
    fake.set_latency(latency);
    fake.reset_log();

    all_confirmed(&stamped, made.len(), clock.instant_of(ends.last()) + grace).await;
    let (arm_calls, arm_in_flight) = (fake.seen().len(), fake.max_in_flight());
    let waited = Instant::now();
    while expiry.invocations() < made.len() && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let listened = expiry.stop().await;
    deliver.stop().await;
    let stalls = stalls.stop().await;
    let expiries = &listened.invocations;
    let failed: Vec<String> = expiries
        .iter()
        .filter(|i| !(200..300).contains(&i.status))
        .map(|i| format!("{} {}", i.status, i.result))
        .collect();
    assert!(failed.is_empty(), "expiry invocations failed: {failed:?}");
    let settled = expiries.iter().filter(|i| i.result == "settled: expired and revoked").count();
    assert_eq!(settled, made.len(), "{:?}", expiries.iter().map(|i| &i.result).collect::<Vec<_>>());
    let left = app.client.as_ref().unwrap().approximate_count(&app.queue("expiry")).await.unwrap();
    assert_eq!(left, 0, "expiry messages left");
    check_settled(&app.built.service, &clock, &fake).await;
    let _ = app.stop.send(());
    // The queue's part: from the end to the harness reading the message, and from the
    // confirmation to the invocation's answer (the Expired record, the deliver message).
    let (started, confirmed) = (stamped.started.lock().unwrap().clone(), stamped.confirmed());
    let end_of: HashMap<Uuid, DateTime<Utc>> = made.iter().copied().collect();
    let handled: Vec<(Uuid, &Invocation)> =
        expiries.iter().filter_map(|i| i.assignment.filter(|a| end_of.contains_key(a)).map(|a| (a, i))).collect();
    let to_read = handled.iter().map(|(a, i)| seconds(clock.instant_of(end_of[a]), i.read_at)).collect();
    let read_to_delete = handled.iter().map(|(a, i)| seconds(i.read_at, started[a])).collect();
    let answering = handled.iter().map(|(a, i)| seconds(confirmed[a], i.answered_at)).collect();
    let deleting = handled.iter().map(|(_, i)| seconds(i.answered_at, i.deleted_at)).collect();
    let measured_from = clock.instant_of(ends.first);
    let measured_to = confirmed.values().max().copied().unwrap_or(measured_from);
    let reads = listened
        .reads
        .iter()
        .filter(|(at, _)| (measured_from..=measured_to).contains(at))
        .map(|(_, took)| took.as_secs_f64())
        .collect();
    let puts = app.rebased.as_ref().unwrap().deliver_puts.lock().unwrap().clone();
    let deliver_puts = puts.iter().filter(|(at, _)| *at >= measured_from).map(|(_, took)| took.as_secs_f64()).collect();
    let mut steps = vec![("end to message read", sorted(to_read)), ("read to DELETE sent", sorted(read_to_delete))];
    steps.extend(revocation_steps(&made, &stamped, &clock).into_iter().skip(1));
    steps.push(("confirmed to answered", sorted(answering)));
    steps.push(("message delete", sorted(deleting)));
    steps.push(("each queue read", sorted(reads)));
    steps.push(("each deliver put", sorted(deliver_puts)));
    // The emulator's stalls in the window, and the activations whose message waited through one.
    let stalls: Vec<(Instant, Instant)> =
        stalls.into_iter().filter(|(from, to)| *to > measured_from && *from < measured_to).collect();
    let latencies = latencies(&made, &stamped, &clock);
    let mut spared = Vec::new();
    for (a, i) in &handled {
        let (due, read) = (clock.instant_of(end_of[a]), i.read_at);
        if !stalls.iter().any(|(from, to)| *from < read && *to > due) {
            spared.push(seconds(due, confirmed[a]));
        }
    }
    let spared = sorted(spared);
    let longest = stalls.iter().map(|(from, to)| seconds(*from, *to)).fold(0.0, f64::max);
    let emulator = if stalls.is_empty() {
        "emulator: no call over 1 s in the window".to_owned()
    } else if spared.is_empty() {
        format!("emulator: {} calls over 1 s (longest {longest:.1} s); every message waited through one", stalls.len())
    } else {
        format!(
            "emulator: {} calls over 1 s (longest {longest:.1} s); {} messages waited through one; the other {}: p50 {:.2} s  p99 {:.2} s  max {:.2} s",
            stalls.len(),
            latencies.len() - spared.len(),
            spared.len(),
            percentile(&spared, 0.5),
            percentile(&spared, 0.99),
            spared.last().copied().unwrap_or_default(),
        )
    };
    ExpiryFigures {
        label: format!("queue path, {}, {}", ends.describe(), shape.describe()),
        latencies,
        arm_calls,
        arm_in_flight,
        invocations_in_flight: Some(listened.peak),
        steps,
        emulator: Some(emulator),
    }
}

/// A webhook receiver standing in for a Teams Workflows trigger: answers 202 and keeps each
/// request with the instant it arrived.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&got);
        let (addr, server) = fake_http::serve(Arc::new(move |req: FakeRequest| {
            let keep = Arc::clone(&keep);
            Box::pin(async move {
                keep.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&req.body).into_owned()));
                FakeReply::empty(202)
            })
        }))
        .await;
        let url = format!("http://{addr}/teams/triggers/manual/paths/invoke?api-version=2016-10-01&sig=bench");
        Self { url, got, _server: server }
    }

    /// When the first card naming `id` arrived.
    async fn card_for(&self, id: &str) -> Instant {
        let started = Instant::now();
        loop {
            if let Some((at, _)) = self.got.lock().unwrap().iter().find(|(_, body)| body.contains(id)) {
                return *at;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no card for activation {id}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

struct NoticeFigures {
    label: String,
    /// Milliseconds, sorted: request sent → 201 answered, → card at the receiver, and (with the
    /// deliver queue) → the invocation of its `deliver` message answered.
    answered: Vec<f64>,
    card: Vec<f64>,
    invocation: Vec<f64>,
    /// Invocations that delivered a card themselves (the others found it delivered, or in hand).
    delivered_by_invocation: usize,
}

impl NoticeFigures {
    fn print(&self) {
        let ms = |v: &[f64]| {
            format!(
                "p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
                percentile(v, 0.5),
                percentile(v, 0.99),
                v.last().copied().unwrap_or_default()
            )
        };
        println!(
            "{:<62} n {:>5}  request to 201: p50 {:>6.1} ms",
            self.label,
            self.card.len(),
            percentile(&self.answered, 0.5)
        );
        println!("{:<62}          request to card:       {}", "", ms(&self.card));
        if !self.invocation.is_empty() {
            println!(
                "{:<62}          request to invocation: {}  (the invocation delivered {} of {} cards)",
                "",
                ms(&self.invocation),
                self.delivered_by_invocation,
                self.invocation.len()
            );
        }
    }
}

/// Requests that need approval, one at a time, through the HTTP API; each one's Teams card is
/// timed at the receiver. With the deliver queue, the harness reads it as the host does.
async fn notices(n: usize, with_queue: bool) -> NoticeFigures {
    let fake = FakeAzure::start().await;
    let receiver = Receiver::start().await;
    let teams = Some(WebhookUrl::new(&receiver.url).unwrap());
    let clock = Arc::new(BenchClock::starting_at("2026-12-01T12:00:00Z".parse().unwrap()));
    let http = reqwest::Client::new();
    // Standalone serves the same API without the host's routes; its sweeper would only add a
    // delivery on the minute, so it is not run.
    let emulator = if with_queue { Some(Emulator::start().await) } else { None };
    let queues = if with_queue { Queues::Plain } else { Queues::Without };
    let app = HostedApp::start(&clock, arm(&fake), teams, queues, emulator.as_ref()).await;
    let deliver = with_queue.then(|| app.listen("deliver", HOST_JSON));
    let request = DevTokenRequest {
        object_id: ALICE.into(),
        mfa: true,
        lifetime: TimeDelta::hours(24),
        ..DevTokenRequest::default()
    };
    let token = app.built.dev_issuer.as_ref().unwrap().mint(&request, clock.now()).unwrap();
    let mut figures = NoticeFigures {
        label: format!(
            "notice, {}",
            if with_queue { "with the deliver queue (host batch 16 + 8)" } else { "standalone" }
        ),
        answered: Vec::new(),
        card: Vec::new(),
        invocation: Vec::new(),
        delivered_by_invocation: 0,
    };
    // The first request warms the app up; it is not counted.
    for i in 0..=n {
        let sent = Instant::now();
        let res = http
            .post(format!("{}/api/activations", app.base))
            .bearer_auth(&token)
            .json(&json!({"roleDefinitionId": "Reader", "scope": format!("{SUB2}/resourceGroups/n{i}"), "duration": "PT1H"}))
            .send()
            .await
            .unwrap();
        let answered = Instant::now();
        assert_eq!(res.status().as_u16(), 201);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "PendingApproval", "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let card = receiver.card_for(&id).await;
        let invocation = match &deliver {
            Some(listener) => {
                let started = Instant::now();
                loop {
                    let found = listener
                        .log
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|inv| inv.read_at > sent)
                        .map(|inv| (inv.answered_at, inv.status, inv.result.clone()));
                    if let Some((at, status, result)) = found {
                        assert_eq!(status, 200, "{result}");
                        if i > 0 && result.starts_with("delivered 1") {
                            figures.delivered_by_invocation += 1;
                        }
                        break Some(at);
                    }
                    assert!(started.elapsed() < Duration::from_secs(10), "no deliver invocation for request {i}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            None => None,
        };
        if i == 0 {
            continue;
        }
        let ms = |at: Instant| (at - sent).as_secs_f64() * 1000.0;
        figures.answered.push(ms(answered));
        figures.card.push(ms(card));
        if let Some(at) = invocation {
            figures.invocation.push(ms(at));
        }
    }
    if let Some(listener) = deliver {
        listener.stop().await;
    }
    let _ = app.stop.send(());
    for v in [&mut figures.answered, &mut figures.card, &mut figures.invocation] {
        v.sort_by(f64::total_cmp);
    }
    figures
}

struct Sizes {
    n: usize,
    latency: Duration,
    /// Ends spread evenly over one minute of the clock.
    spread: Ends,
    /// All ends at one instant.
    burst: Ends,
    /// The standalone runs: when the activations end, and the sweep concurrency.
    standalone: Vec<(Ends, usize)>,
    /// How far ahead of the first end the standalone sweeper starts.
    lead: TimeDelta,
    /// How far ahead of the first end the queue path starts requesting.
    setup: TimeDelta,
    /// How long after the last end a run may take to remove everything.
    grace: Duration,
    notices: usize,
    hosts: Vec<HostShape>,
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn main() {
    elevate::adapters::azure::install_tls_provider();
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    // `--only=standalone`, `--only=queue` or `--only=notices` runs that part alone.
    let only = args.iter().find_map(|a| a.strip_prefix("--only=")).map(str::to_owned);
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let default = elevate::config::DEFAULT_SWEEP_CONCURRENCY;
    let sizes = if full {
        let spread = Ends { n: 1_000, first: at("2026-12-01T12:05:00Z"), spread: TimeDelta::seconds(60) };
        let burst = Ends { n: 1_000, first: at("2026-12-01T12:05:30Z"), spread: TimeDelta::zero() };
        // Sixty seconds that straddle a minute: the sweeper's last pass cannot end on the tick.
        let straddling = Ends { first: at("2026-12-01T12:05:30Z"), ..spread };
        Sizes {
            n: 1_000,
            latency: Duration::from_millis(100),
            spread,
            burst,
            standalone: vec![(spread, default), (spread, 64), (straddling, default), (burst, default), (burst, 64)],
            lead: TimeDelta::seconds(3),
            // A fresh emulator sweeps its extents as it starts, then a minute later: a burst
            // 25 s after the start is over before that sweep; the spread, a minute long, meets it.
            setup: TimeDelta::seconds(25),
            // Standalone, what falls due during the sweeper's last pass waits for the minute.
            grace: Duration::from_secs(150),
            notices: 200,
            hosts: vec![HOST_JSON, HOST_LARGEST],
        }
    } else {
        // Ends just before a minute, so that nothing waits long for the standalone tick.
        let spread = Ends { n: 20, first: at("2026-12-01T12:05:57Z"), spread: TimeDelta::seconds(1) };
        let burst = Ends { spread: TimeDelta::zero(), ..spread };
        Sizes {
            n: 20,
            latency: Duration::from_millis(5),
            spread,
            burst,
            standalone: vec![(spread, default), (burst, default)],
            lead: TimeDelta::seconds(1),
            setup: TimeDelta::seconds(5),
            grace: Duration::from_secs(20),
            notices: 5,
            hosts: vec![HOST_JSON],
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "expiry latency benchmark: {} activations, fake ARM latency {} ms per call; queues on a fresh Azurite per run",
        sizes.n,
        sizes.latency.as_millis(),
    );
    if runs("standalone") {
        for &(ends, concurrency) in &sizes.standalone {
            runtime.block_on(standalone(ends, sizes.latency, concurrency, sizes.lead, sizes.grace)).print();
        }
    }
    if runs("queue") {
        runtime.block_on(through_queue(sizes.spread, sizes.latency, HOST_JSON, sizes.setup, sizes.grace)).print();
        for &shape in &sizes.hosts {
            runtime.block_on(through_queue(sizes.burst, sizes.latency, shape, sizes.setup, sizes.grace)).print();
        }
    }
    if runs("notices") {
        runtime.block_on(notices(sizes.notices, false)).print();
        runtime.block_on(notices(sizes.notices, true)).print();
    }
}
