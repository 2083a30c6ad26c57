//! Bounded, jittered retries and the throttle gate that makes one 429 slow every worker.
//!
//! These wait on tokio's monotonic clock: they pace network calls and decide nothing about
//! access, so they are not "time" in the domain's sense (that is always a `now` parameter).

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// How hard to try before reporting a transient failure to the caller (who retries later: the
/// sweeper on its next tick).
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// Stop starting new attempts after this long.
    pub max_total: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// One attempt's limit, connection and answer included.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            max_total: Duration::from_secs(60),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt may start after `attempt` attempts and `elapsed` time.
    pub fn allows(&self, attempt: u32, elapsed: Duration) -> bool {
        attempt < self.max_attempts && elapsed < self.max_total
    }

    /// Exponential backoff with full jitter: uniform in [base/2, min(max, base * 2^(attempt-1))].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.max_delay).max(self.base_delay);
        let floor = self.base_delay / 2;
        let span = ceiling.saturating_sub(floor).as_millis() as u64;
        floor + Duration::from_millis(rand::thread_rng().gen_range(0..=span))
    }
}

/// `Retry-After` as delta-seconds (what ARM and Storage send), decimals included (Graph has
/// sent `2.128`, graph-spec §0 item 13). An HTTP-date is not honoured (it would need the wall
/// clock); the caller's backoff applies instead.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A hostile or broken server must not park us for hours.
    const CAP: u64 = 300;
    let seconds: u64 = whole.parse().unwrap_or(u64::MAX);
    if seconds >= CAP {
        return Some(Duration::from_secs(CAP));
    }
    let millis: u64 = format!("{:0<3}", fraction).get(..3).and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(Duration::from_secs(seconds) + Duration::from_millis(millis))
}

/// Shared by every worker of one client: after a 429, nobody sends until the server's
/// `Retry-After` has passed.
#[derive(Debug, Default)]
pub struct Throttle {
    until: Mutex<Option<Instant>>,
}

impl Throttle {
    pub fn hold(&self, wait: Duration) {
        let until = Instant::now() + wait;
        if let Ok(mut guard) = self.until.lock() {
            *guard = Some(guard.map_or(until, |current| current.max(until)));
        }
    }

    /// Whether a hold is in force now.
    pub fn is_holding(&self) -> bool {
        self.until.lock().ok().and_then(|g| *g).is_some_and(|at| at > Instant::now())
    }

    pub async fn wait(&self) {
        loop {
            let until = self.until.lock().ok().and_then(|g| *g);
            match until {
                Some(at) if at > Instant::now() => tokio::time::sleep_until(at).await,
                _ => return,
            }
        }
    }

    /// Waits for the hold to pass, but no longer than `limit`; whether it has passed.
    pub async fn wait_at_most(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400"), Some(Duration::from_secs(300)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("2.128"), Some(Duration::from_millis(2_128)));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_retry_after("0.0004"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999999"), Some(Duration::from_secs(300)));
        assert_eq!(parse_retry_after(".5"), None);
        assert_eq!(parse_retry_after("1."), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("1.5s"), None);
        assert_eq!(parse_retry_after("+1"), None);
    }

    #[test]
    fn backoff_grows_within_its_bounds() {
        let policy = RetryPolicy::default();
        for attempt in 1..=40 {
            let d = policy.backoff(attempt);
            assert!(d >= policy.base_delay / 2 && d <= policy.max_delay, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn attempts_and_time_are_bounded() {
        let policy = RetryPolicy::default();
        assert!(policy.allows(1, Duration::ZERO));
        assert!(!policy.allows(policy.max_attempts, Duration::ZERO));
        assert!(!policy.allows(1, policy.max_total));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_makes_every_waiter_wait() {
        let throttle = std::sync::Arc::new(Throttle::default());
        throttle.hold(Duration::from_secs(5));
        let start = Instant::now();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let t = std::sync::Arc::clone(&throttle);
                tokio::spawn(async move {
                    t.wait().await;
                    Instant::now()
                })
            })
            .collect();
        for w in waiters {
            assert!(w.await.unwrap() - start >= Duration::from_secs(5));
        }
        // A caller with less time than the hold gives up instead of waiting it out.
        throttle.hold(Duration::from_secs(30));
        assert!(!throttle.wait_at_most(Duration::from_secs(2)).await);
        assert!(throttle.wait_at_most(Duration::from_secs(60)).await);
        // A shorter hold never shortens a longer one.
        throttle.hold(Duration::from_secs(10));
        throttle.hold(Duration::from_secs(1));
        let before = Instant::now();
        throttle.wait().await;
        assert!(Instant::now() - before >= Duration::from_secs(10));
    }
}
