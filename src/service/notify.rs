//! Delivering the outbox: every notice to every sink, at least once, never twice in a row from
//! two deliverers, never in the way of an activation.
//!
//! A deliverer claims a notice by saving it with a lease (`next_at` = now + LEASE) under its
//! version: whoever loses that race skips the notice. It then offers the notice to each sink that
//! has not taken it yet; the notice is removed once all have, or saved with the sinks that took
//! it and a backoff before the next try (429 and 5xx honour `Retry-After`). Deliveries start at
//! once after a change (in the background) and again on every sweep.
//!
//! Each pass reads the time from the clock port: a pass that goes round again because notices
//! were queued while it ran must see them as due, which a `now` fixed at the start would not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::ports::{DeliveryError, Notice, NoticeSubject, NotificationSink, Store, StoreError};
use crate::clock::Clock;
use crate::domain::activation::State;
use crate::domain::notification::{AlertNotice, Bulletin, OutboxItem, Subject};

/// How long a claimed notice is left to its deliverer before another may try.
const LEASE: TimeDelta = TimeDelta::minutes(2);
/// Notices one pass handles.
const PASS: usize = 100;
/// How long a background pass (after a change) may run.
const BACKGROUND_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Notifier {
    store: Arc<dyn Store>,
    /// Read once per pass (see the module doc).
    clock: Arc<dyn Clock>,
    sinks: Vec<Arc<dyn NotificationSink>>,
    /// Base URL for links, no trailing slash.
    public_url: String,
    /// How long before expiry the "expiring soon" notice goes out.
    pub expiry_warning: TimeDelta,
    running: tokio::sync::Mutex<()>,
    again: AtomicBool,
}

/// What one delivery pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReport {
    /// Notices every sink has taken.
    pub delivered: usize,
    /// Notices that failed somewhere and wait for their next attempt.
    pub retrying: usize,
    /// Notices another deliverer had claimed.
    pub skipped: usize,
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sinks: Vec<Arc<dyn NotificationSink>>,
        public_url: &str,
        expiry_warning: TimeDelta,
    ) -> Self {
        Self {
            store,
            clock,
            sinks,
            public_url: public_url.trim_end_matches('/').to_owned(),
            expiry_warning,
            running: tokio::sync::Mutex::new(()),
            again: AtomicBool::new(false),
        }
    }

    pub fn sink_names(&self) -> Vec<&'static str> {
        self.sinks.iter().map(|s| s.name()).collect()
    }

    /// Starts a delivery pass in the background: the caller never waits for a webhook.
    /// Whether any sink is configured (without one, nothing is ever delivered).
    pub fn has_sinks(&self) -> bool {
        !self.sinks.is_empty()
    }

    pub fn kick(self: &Arc<Self>) {
        if self.sinks.is_empty() {
            return;
        }
        let notifier = Arc::clone(self);
        tokio::spawn(async move {
            notifier.deliver(BACKGROUND_BUDGET).await;
        });
    }

    /// Delivers what is due, starting no new notice after `budget` (a sweep must end within the
    /// timer's timeout however slow a webhook is). One pass at a time per process; a request for
    /// another while one runs makes it go round again.
    pub async fn deliver(&self, budget: std::time::Duration) -> DeliveryReport {
        self.deliver_with(budget, false).await
    }

    /// As `deliver`, but when a delivery is already running, waits for it (within `budget`) and
    /// then delivers what is left: what the sweep and the `deliver` queue use, so that when they
    /// return, what was due has been offered.
    pub async fn deliver_now(&self, budget: std::time::Duration) -> DeliveryReport {
        self.deliver_with(budget, true).await
    }

    async fn deliver_with(&self, budget: std::time::Duration, wait: bool) -> DeliveryReport {
        let deadline = tokio::time::Instant::now() + budget;
        let mut report = DeliveryReport::default();
        // A sink that failed once in this call is not called again until the next: a dead or
        // hanging endpoint costs one timeout per call, not one per notice.
        let mut failing: Vec<&'static str> = Vec::new();
        loop {
            let guard = match self.running.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    self.again.store(true, Ordering::SeqCst);
                    if !wait {
                        return report;
                    }
                    match tokio::time::timeout_at(deadline, self.running.lock()).await {
                        Ok(guard) => guard,
                        Err(_) => return report,
                    }
                }
            };
            loop {
                self.again.store(false, Ordering::SeqCst);
                let pass = self.pass(self.clock.now(), deadline, &mut failing).await;
                report.delivered += pass.delivered;
                report.retrying += pass.retrying;
                report.skipped += pass.skipped;
                if !self.again.load(Ordering::SeqCst) || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            drop(guard);
            // A call that came after the last look but before the lock was released found it
            // held and left its notices to us: look once more, or they would wait for a sweep.
            if !self.again.load(Ordering::SeqCst) || tokio::time::Instant::now() >= deadline {
                return report;
            }
        }
    }

    async fn pass(
        &self,
        now: DateTime<Utc>,
        deadline: tokio::time::Instant,
        failing: &mut Vec<&'static str>,
    ) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let due = match self.store.outbox_due(now, PASS).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the outbox; notices wait for the next pass");
                return report;
            }
        };
        for read in due {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            let mut item = read.value;
            item.next_at = now + LEASE;
            let claimed = match self.store.outbox_save(&item, &read.version).await {
                Ok(version) => version,
                Err(StoreError::Conflict) => {
                    report.skipped += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(notice = %item.id, error = %e, "could not claim a notice");
                    continue;
                }
            };
            fail_point!("deliver.after_claim");
            match self.offer(&mut item, failing).await {
                Ok(()) => match self.store.outbox_remove(&item, &claimed).await {
                    Ok(()) => report.delivered += 1,
                    Err(e) => {
                        tracing::warn!(notice = %item.id, error = %e, "delivered, but could not remove the notice")
                    }
                },
                Err(failure) => {
                    item.attempts += 1;
                    let asked = failure.retry_after.and_then(|d| TimeDelta::from_std(d).ok());
                    item.next_at = item.retry_at(now, asked);
                    item.last_error = Some(failure.message.clone());
                    tracing::warn!(
                        notice = %item.id,
                        kind = ?item.kind,
                        attempts = item.attempts,
                        next_at = %item.next_at,
                        error = %failure.message,
                        "notice not delivered; it will be retried"
                    );
                    if let Err(e) = self.store.outbox_save(&item, &claimed).await {
                        tracing::warn!(notice = %item.id, error = %e, "could not record a failed delivery");
                    }
                    fail_point!("deliver.after_retry_saved");
                    report.retrying += 1;
                }
            }
        }
        report
    }

    /// Offers the notice to each sink that has not taken it; records those that do. With no
    /// sinks configured, every notice is simply done.
    async fn offer(&self, item: &mut OutboxItem, failing: &mut Vec<&'static str>) -> Result<(), DeliveryError> {
        if self.sinks.is_empty() {
            return Ok(());
        }
        let (subject, url) = match item.subject() {
            // An alert's notice carries what it tells: nothing to read.
            Subject::Alert(alert) => {
                (NoticeSubject::Alert(alert.clone()), format!("{}/api/portal/alerts", self.public_url))
            }
            Subject::Bulletin(bulletin) => (NoticeSubject::Bulletin(bulletin.clone()), self.page(&bulletin.path)),
            Subject::Activation(id) => match self.store.get(id).await {
                Ok(Some(a)) => {
                    (NoticeSubject::Activation(Box::new(a.value)), format!("{}/api/approvals/{id}", self.public_url))
                }
                Ok(None) => {
                    tracing::error!(notice = %item.id, activation = %id, "a notice names an unknown activation; dropping it");
                    return Ok(());
                }
                Err(e) => {
                    return Err(DeliveryError { message: format!("reading the activation: {e}"), retry_after: None });
                }
            },
        };
        let notice = Notice { item: item.clone(), subject, url };
        let mut first_failure = None;
        for sink in &self.sinks {
            if item.delivered.iter().any(|d| d == sink.name()) {
                continue;
            }
            if failing.contains(&sink.name()) {
                first_failure.get_or_insert(DeliveryError {
                    message: format!("{}: not tried, it failed moments ago", sink.name()),
                    retry_after: None,
                });
                continue;
            }
            match sink.deliver(&notice).await {
                Ok(()) => item.delivered.push(sink.name().to_owned()),
                Err(e) => {
                    failing.push(sink.name());
                    first_failure.get_or_insert(DeliveryError {
                        message: format!("{}: {}", sink.name(), e.message),
                        retry_after: e.retry_after,
                    });
                }
            }
        }
        fail_point!("deliver.after_offer");
        first_failure.map_or(Ok(()), Err)
    }

    /// The absolute URL of an Elevate page (`path` as [`Bulletin::check`] admits it), with what
    /// a URL cannot hold as is percent-encoded; the portal's home if it cannot be made one.
    fn page(&self, path: &str) -> String {
        let home = format!("{}/api/portal", self.public_url);
        match url::Url::parse(&format!("{}{path}", self.public_url)) {
            Ok(url) => url.to_string(),
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "a bulletin's page is not a URL; linking the portal instead");
                home
            }
        }
    }

    /// Queues "expiring soon" for active access that ends within the warning lead time, once
    /// per expiry. Returns how many were queued.
    pub async fn warn_expiring(&self, now: DateTime<Utc>) -> usize {
        if self.sinks.is_empty() || self.expiry_warning <= TimeDelta::zero() {
            return 0;
        }
        let upcoming = match self.store.upcoming(now, now + self.expiry_warning, 1000).await {
            Ok(upcoming) => upcoming,
            Err(e) => {
                tracing::warn!(error = %e, "could not look ahead for expiring access");
                return 0;
            }
        };
        let mut queued = 0;
        for a in upcoming {
            if let State::Active { expires_at, .. } = a.state()
                && *expires_at > now
                && *expires_at <= now + self.expiry_warning
            {
                match self.store.enqueue(&OutboxItem::expiring_soon(a.id(), *expires_at, now)).await {
                    Ok(true) => queued += 1,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(activation = %a.id(), error = %e, "could not queue an expiry warning"),
                }
            }
        }
        queued
    }

    /// Queues "revocation failing" (at most hourly per activation).
    pub async fn revocation_failing(&self, activation: crate::domain::ids::ActivationId, now: DateTime<Utc>) {
        if self.sinks.is_empty() {
            return;
        }
        if let Err(e) = self.store.enqueue(&OutboxItem::revocation_failing(activation, now)).await {
            tracing::warn!(activation = %activation, error = %e, "could not queue a revocation-failing notice");
        }
    }

    /// Queues "alert opened", once per opening. `true` when it was queued now (not before, and
    /// there is someone to tell): then a delivery is worth starting.
    pub async fn alert_opened(&self, notice: AlertNotice, now: DateTime<Utc>) -> bool {
        if self.sinks.is_empty() {
            return false;
        }
        let alert = notice.alert_id.clone();
        match self.store.enqueue(&OutboxItem::alert_opened(notice, now)).await {
            Ok(queued) => queued,
            Err(e) => {
                tracing::warn!(alert = %alert, error = %e, "could not queue an alert-opened notice");
                false
            }
        }
    }

    /// Queues a governance bulletin, once per bulletin id. `true` when it was queued now (not
    /// before, and there is someone to tell): then a delivery is worth starting. A bulletin that
    /// fails [`Bulletin::check`] is refused, logged as an error.
    pub async fn bulletin(&self, bulletin: Bulletin, now: DateTime<Utc>) -> bool {
        if let Err(e) = bulletin.check() {
            tracing::error!(bulletin = %bulletin.id, kind = bulletin.kind.as_str(), error = %e, "a bulletin was refused");
            return false;
        }
        if self.sinks.is_empty() {
            return false;
        }
        let id = bulletin.id.clone();
        match self.store.enqueue(&OutboxItem::bulletin(bulletin, now)).await {
            Ok(queued) => queued,
            Err(e) => {
                tracing::warn!(bulletin = %id, error = %e, "could not queue a bulletin");
                false
            }
        }
    }
}

impl super::Elevate {
    /// Queues a governance bulletin and, if it is new, starts its delivery as after a change (a
    /// background pass, and a `deliver` message when queues are on; the sweeper retries what
    /// fails). `true` when it was queued now; `false` without sinks, for a bulletin already
    /// queued (the same id), or one refused (logged).
    pub(super) async fn announce(&self, bulletin: Bulletin, now: DateTime<Utc>) -> bool {
        let Some(notifier) = &self.notifier else {
            return false;
        };
        let queued = notifier.bulletin(bulletin, now).await;
        if queued {
            notifier.kick();
            self.queue_delivery().await;
        }
        queued
    }
}
