//! Use cases. Each takes the authenticated caller and `now`, checks authorisation through the
//! domain, and talks to the ports. Must never read the clock, know HTTP, or name an Azure type.

mod activate;
pub mod confirm;
pub mod error;
mod lifecycle;
pub mod notify;
pub mod ports;
mod query;
mod review;
mod sweep;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::activation::{Activation, Transition};
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::ids::{ActivationId, Justification};
use crate::domain::policy::Policy;

pub use activate::{ActivationInput, Requested};
pub use confirm::{Answer, ConfirmationLink, LinkRefusal, LinkSigner, PendingConfirmation};
pub use error::ServiceError;
pub use lifecycle::ExtensionInput;
pub use query::{ActivationDetails, AuditFilter, DEFAULT_PAGE, ListFilter, MAX_LIST, PageRequest};

pub use review::DecisionInput;
pub use sweep::{SweepFailure, SweepReport, SweepSettings};

use ports::{AccessProvider, Caller, Store, Versioned};

/// Open (non-terminal) requests and activations one principal may hold at once, unless
/// configured otherwise.
pub const DEFAULT_MAX_OPEN_REQUESTS: usize = 10;

/// How many times a use case re-reads and re-applies after losing an optimistic-concurrency race.
const MAX_ATTEMPTS: usize = 5;

/// The application: policy and ports.
pub struct Elevate {
    store: Arc<dyn Store>,
    access: Arc<dyn AccessProvider>,
    policy: Arc<Policy>,
    broker_app_ids: Vec<String>,
    sweep: SweepSettings,
    /// When this process last reconciled against the provider (see `sweep`).
    last_orphan_check: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Delivers the outbox, when any sink is configured.
    notifier: Option<Arc<notify::Notifier>>,
    /// Signs confirmation links; without one, brokered requests that need the user are refused.
    link_signer: Option<Arc<dyn LinkSigner>>,
    /// Open requests and activations one principal may hold at once.
    max_open: usize,
}

impl Elevate {
    pub fn new(
        store: Arc<dyn Store>,
        access: Arc<dyn AccessProvider>,
        policy: Arc<Policy>,
        broker_app_ids: Vec<String>,
        sweep: SweepSettings,
    ) -> Self {
        let broker_app_ids = broker_app_ids.into_iter().map(|a| a.to_ascii_lowercase()).collect();
        Self {
            store,
            access,
            policy,
            broker_app_ids,
            sweep,
            last_orphan_check: std::sync::Mutex::new(None),
            notifier: None,
            link_signer: None,
            max_open: DEFAULT_MAX_OPEN_REQUESTS,
        }
    }

    /// Lets brokered requests that need the user's own proof wait in signed links.
    pub fn with_link_signer(mut self, signer: Arc<dyn LinkSigner>) -> Self {
        self.link_signer = Some(signer);
        self
    }

    /// Lets one principal hold at most `max_open` open requests and activations (at least one).
    pub fn with_max_open_requests(mut self, max_open: usize) -> Self {
        self.max_open = max_open.max(1);
        self
    }

    /// Delivers notices through `notifier` (built on the same store).
    pub fn with_notifier(mut self, notifier: Arc<notify::Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    pub fn notifier(&self) -> Option<&Arc<notify::Notifier>> {
        self.notifier.as_ref()
    }

    /// After a change that queued a notice: deliver it now, in the background.
    fn notify_soon(&self, event: &AuditEvent) {
        if let Some(notifier) = &self.notifier
            && crate::domain::notification::kind_of(event).is_some()
        {
            notifier.kick();
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn access_kind(&self) -> &'static str {
        self.access.kind()
    }

    /// Whether the store answers (health check).
    pub async fn store_ready(&self) -> bool {
        self.store.ping().await.is_ok()
    }

    fn actor(caller: &Caller) -> Actor {
        Actor::Principal { id: caller.principal_id }
    }

    async fn load(&self, id: ActivationId) -> Result<Versioned<Activation>, ServiceError> {
        self.store.get(id).await?.ok_or(ServiceError::NotFound(id))
    }

    /// Applies `step` to the latest stored activation and writes it with its audit event,
    /// re-reading and re-applying when another writer got there first.
    async fn apply<F>(
        &self,
        id: ActivationId,
        actor: &Actor,
        now: DateTime<Utc>,
        mut step: F,
    ) -> Result<Versioned<Activation>, ServiceError>
    where
        F: FnMut(Activation) -> Result<(Transition, Option<Justification>, Option<String>), ServiceError>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.load(id).await?;
            let (transition, justification, detail) = step(current.value)?;
            let event = AuditEvent::of(&transition, actor.clone(), justification, detail, now);
            match self.store.update(&transition.activation, &current.version, &event).await {
                Ok(version) => {
                    self.notify_soon(&event);
                    return Ok(Versioned { value: transition.activation, version });
                }
                Err(ports::StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Contention)
    }
}
