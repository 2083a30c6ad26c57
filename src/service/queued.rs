//! Work at a chosen moment (issue: revocation within seconds): an activation that becomes active,
//! or whose end moves, puts an expiry message on the `expiry` queue, visible at its end; the
//! queue-triggered function revokes that one activation then. Every change that queues a notice
//! puts a `deliver` message, so a notice goes out inside an invocation even when the instance
//! is frozen right after answering. Putting never fails a request: the sweeper does both a tick
//! later without any queue.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::activation::{Activation, State};
use crate::domain::ids::ActivationId;

use super::ports::{MAX_QUEUE_DELAY, Queue, WorkQueue};
use super::{Elevate, ServiceError};

/// How long a request waits for a queue to take its message before going on without it.
const PUT_TIMEOUT: Duration = Duration::from_secs(3);

/// The body of an `expiry` message: which activation, and the end it was queued for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpiryMessage {
    pub activation_id: ActivationId,
    pub expires_at: DateTime<Utc>,
}

/// What an expiry message came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpiryOutcome {
    /// The activation was due: the sweeper's step for it ran (revoked and recorded).
    Settled(&'static str),
    /// It arrived before the end it was queued for (a chained message, or clocks): put back.
    NotYet { visible_at: DateTime<Utc> },
    /// Nothing to do: the activation ended, was extended, or was already revoked.
    Stale(&'static str),
}

impl ExpiryOutcome {
    pub fn describe(&self) -> String {
        match self {
            ExpiryOutcome::Settled(what) => format!("settled: {what}"),
            ExpiryOutcome::NotYet { visible_at } => format!("not yet due: put back until {visible_at}"),
            ExpiryOutcome::Stale(why) => format!("stale: {why}"),
        }
    }
}

/// How long until `at`, as a queue delay: never negative, at most `max`.
fn delay_until(at: DateTime<Utc>, now: DateTime<Utc>, max: Duration) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO).min(max)
}

impl Elevate {
    /// Puts expiry and delivery work on Storage queues (see the module docs).
    pub fn with_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    async fn put(&self, queue: WorkQueue, message: &str, delay: Duration) -> Result<(), String> {
        let Some(q) = &self.queue else { return Ok(()) };
        match tokio::time::timeout(PUT_TIMEOUT, q.put(queue, message, delay)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", PUT_TIMEOUT.as_secs())),
        }
    }

    /// After a write: an activation that became active, or whose end moved, gets the message
    /// that revokes it at its end. Best effort, logged.
    pub(super) async fn queue_expiry(&self, before: Option<&Activation>, after: &Activation, now: DateTime<Utc>) {
        if self.queue.is_none() {
            return;
        }
        let State::Active { expires_at, .. } = after.state() else { return };
        let unchanged =
            before.is_some_and(|b| matches!(b.state(), State::Active { expires_at: e, .. } if e == expires_at));
        if unchanged {
            return;
        }
        self.put_expiry(after.id(), *expires_at, now).await;
    }

    async fn put_expiry(&self, id: ActivationId, expires_at: DateTime<Utc>, now: DateTime<Utc>) {
        let message = ExpiryMessage { activation_id: id, expires_at };
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(activation = %id, error = %e, "could not write an expiry message");
                return;
            }
        };
        let max = self.queue.as_ref().map_or(MAX_QUEUE_DELAY, |q| q.max_delay());
        if let Err(e) = self.put(WorkQueue::Expiry, &text, delay_until(expires_at, now, max)).await {
            tracing::warn!(activation = %id, error = %e, "could not queue the expiry; the sweeper revokes it at its next tick");
        }
    }

    /// After a change that queued a notice: a `deliver` message, so it goes out inside an
    /// invocation. Best effort, logged.
    pub(super) async fn queue_delivery(&self) {
        if self.queue.is_none() || !self.notifier.as_ref().is_some_and(|n| n.has_sinks()) {
            return;
        }
        if let Err(e) = self.put(WorkQueue::Deliver, "{}", Duration::ZERO).await {
            tracing::warn!(error = %e, "could not queue delivery; the sweeper delivers at its next tick");
        }
    }

    /// The `expiry` queue's work: revoke this one activation if it is due. A stale message is a
    /// no-op; an early one is put back. An error leaves the message to be retried (and, after
    /// the host's maximum, moved to the poison queue); the sweeper still revokes.
    #[tracing::instrument(skip_all, fields(activation = %message.activation_id))]
    pub async fn on_expiry(&self, message: &ExpiryMessage, now: DateTime<Utc>) -> Result<ExpiryOutcome, ServiceError> {
        let Some(item) = self.store.get(message.activation_id).await? else {
            return Ok(ExpiryOutcome::Stale("no such activation"));
        };
        if let State::Active { expires_at, .. } = item.value.state() {
            if *expires_at != message.expires_at {
                // The end moved; the write that moved it queued its own message.
                return Ok(ExpiryOutcome::Stale("its end moved"));
            }
            if *expires_at > now {
                let text = serde_json::to_string(message).map_err(|e| ServiceError::Internal(e.to_string()))?;
                let q = self.queue.as_ref().ok_or_else(|| ServiceError::Internal("no queue".into()))?;
                let delay = delay_until(*expires_at, now, q.max_delay());
                q.put(WorkQueue::Expiry, &text, delay)
                    .await
                    .map_err(|e| ServiceError::Internal(format!("putting the expiry back: {e}")))?;
                let visible_at = now + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::zero());
                return Ok(ExpiryOutcome::NotYet { visible_at });
            }
        }
        match item.value.due_at() {
            Some(due) if due <= now => {
                let settled = self.settle(item, now).await?;
                // What it settled may have queued a notice (access expired): out now.
                if let Some(notifier) = &self.notifier {
                    notifier.kick();
                }
                self.queue_delivery().await;
                Ok(ExpiryOutcome::Settled(settled))
            }
            _ => Ok(ExpiryOutcome::Stale("not active and not due")),
        }
    }

    /// The `deliver` queue's work: the outbox, now.
    pub async fn on_deliver(&self, budget: Duration) -> Option<super::notify::DeliveryReport> {
        match &self.notifier {
            Some(notifier) => Some(notifier.deliver_now(budget).await),
            None => None,
        }
    }

    /// The earliest time something falls due after `now` and at or before `now + horizon`, for
    /// a standalone sweeper that wakes when work is due rather than on the minute.
    pub async fn next_due(&self, now: DateTime<Utc>, horizon: chrono::TimeDelta) -> Option<DateTime<Utc>> {
        match self.store.upcoming(now, now + horizon, 1).await {
            Ok(found) => found.first().and_then(Activation::due_at),
            Err(e) => {
                tracing::debug!(error = %e, "could not look ahead for due work");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_never_negative_and_never_past_seven_days() {
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap_or_default();
        assert_eq!(delay_until(now - chrono::TimeDelta::minutes(5), now, MAX_QUEUE_DELAY), Duration::ZERO);
        assert_eq!(delay_until(now + chrono::TimeDelta::seconds(90), now, MAX_QUEUE_DELAY), Duration::from_secs(90));
        assert_eq!(delay_until(now + chrono::TimeDelta::days(9), now, MAX_QUEUE_DELAY), MAX_QUEUE_DELAY);
    }

    #[test]
    fn an_expiry_message_reads_back_as_written_and_refuses_strangers() {
        let m = ExpiryMessage {
            activation_id: ActivationId::new_random(),
            expires_at: "2026-12-01T12:00:00Z".parse().unwrap_or_default(),
        };
        let text = serde_json::to_string(&m).unwrap_or_default();
        assert!(text.contains("\"activationId\"") && text.contains("\"expiresAt\":\"2026-12-01T12:00:00Z\""), "{text}");
        assert_eq!(serde_json::from_str::<ExpiryMessage>(&text).ok(), Some(m));
        assert!(
            serde_json::from_str::<ExpiryMessage>(r#"{"activationId":"x","expiresAt":"2026-12-01T12:00:00Z"}"#)
                .is_err()
        );
    }
}
