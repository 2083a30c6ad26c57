//! Use cases. Each takes the authenticated caller and `now`, checks authorisation through the
//! domain, and talks to the ports. Must never read the clock, know HTTP, or name an Azure type.

mod activate;
pub mod audit_chain;
mod campaign;
pub mod confirm;
mod digest;
pub mod error;
mod governance;
mod lifecycle;
pub mod notify;
pub mod ports;
mod query;
mod queued;
mod review;
mod sweep;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::activation::{Activation, Transition};
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::ids::{ActivationId, Justification};
use crate::domain::policy::Policy;

pub use activate::{ActivationInput, Preview, Requested, WouldBe};
pub use campaign::{
    CampaignSummary, CampaignView, ItemInput, ItemView, Lifted, LogEntry, LogLine, ReviewReport, Suspension,
};
pub use confirm::{Answer, ConfirmationLink, LinkRefusal, LinkSigner, PendingConfirmation};
pub use digest::{DigestReport, RoleCount};
pub use error::ServiceError;
pub use governance::{Alert, AlertStatus, GovernanceReport};
pub use lifecycle::ExtensionInput;
pub use query::{ActivationDetails, AuditFilter, DEFAULT_PAGE, ListFilter, MAX_LIST, PageRequest};

pub use queued::{ExpiryMessage, ExpiryOutcome};
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
    /// Asked what a sign-in cannot say (group membership now, names); `None`: the token's word.
    directory: Option<Arc<dyn ports::Directory>>,
    /// Open requests and activations one principal may hold at once.
    max_open: usize,
    /// Storage queues for expiry on time and notices without delay (`queued`); `None`: the
    /// sweeper alone.
    queue: Option<Arc<dyn ports::Queue>>,
    /// Where sealed audit days are exported (`audit_chain`); `None`: sealed, not exported.
    audit_archive: Option<Arc<dyn audit_chain::AuditArchive>>,
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
            directory: None,
            max_open: DEFAULT_MAX_OPEN_REQUESTS,
            queue: None,
            audit_archive: None,
        }
    }

    /// Checks group membership with the directory when it matters (see `subject`, `left_group`).
    pub fn with_directory(mut self, directory: Arc<dyn ports::Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The policy's view of a caller: the groups their sign-in carried — or, when it could not
    /// carry them all (Entra's group overage), those of the policy's groups the directory says
    /// they belong to. Without a directory an overage matches no group: deny by default.
    async fn subject(&self, caller: &Caller) -> Result<crate::domain::policy::Subject, ServiceError> {
        let mut subject = caller.subject();
        if caller.groups_overage
            && let Some(directory) = &self.directory
        {
            let named = self.policy.named_groups();
            if !named.is_empty() {
                subject.groups =
                    directory.member_of(caller.principal_id, &named).await.map_err(ServiceError::Access)?;
            }
        }
        Ok(subject)
    }

    /// Whether the requester has left the group through which their rule made them eligible: a
    /// token says what was true at sign-in, the directory what is true now. `None` when they
    /// are still in it, when eligibility came through a user entry, or without a directory.
    async fn left_group(&self, activation: &Activation) -> Result<Option<crate::domain::policy::Deny>, ServiceError> {
        let request = activation.request();
        let (Some(directory), crate::domain::ids::PrincipalRef::Group(group)) = (&self.directory, request.eligible_via)
        else {
            return Ok(None);
        };
        let found = directory.member_of(request.principal_id, &[group]).await.map_err(ServiceError::Access)?;
        Ok((!found.contains(&group)).then(|| crate::domain::policy::Deny::LeftGroup {
            rule: request.rule_id.clone(),
            principal: request.principal_id,
            group,
        }))
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

    /// After every write of an activation: a notice it queued goes out now (in the background,
    /// and through the `deliver` queue), and an end it set gets its expiry message.
    async fn after_write(
        &self,
        before: Option<&Activation>,
        after: &Activation,
        event: &AuditEvent,
        now: DateTime<Utc>,
    ) {
        if let Some(notifier) = &self.notifier
            && crate::domain::notification::kind_of(event).is_some()
        {
            notifier.kick();
            self.queue_delivery().await;
        }
        self.queue_expiry(before, after, now).await;
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
            // Only the expiry message compares before and after.
            let before = self.queue.as_ref().map(|_| current.value.clone());
            let (transition, justification, detail) = step(current.value)?;
            let event = AuditEvent::of(&transition, actor.clone(), justification, detail, now);
            match self.store.update(&transition.activation, &current.version, &event).await {
                Ok(version) => {
                    self.after_write(before.as_ref(), &transition.activation, &event, now).await;
                    return Ok(Versioned { value: transition.activation, version });
                }
                Err(ports::StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Contention)
    }
}
