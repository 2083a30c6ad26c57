//! The sweeper: one idempotent pass over what is due. Expire (revoke, verify, record), time out
//! stale approvals and extensions, start scheduled activations, finish or close interrupted
//! provisioning. Up to `concurrency` activations are worked on at once. A failure on one
//! activation never stops the others: it stays due and is reported on every pass until it
//! succeeds.
//!
//! On a slower cadence it also reconciles against the provider: an assignment that carries
//! Elevate's marker, whose activation the store holds as finished (or does not know and whose
//! marker has expired), is revoked. That covers a lost or restored store. An assignment whose
//! name is not the one Elevate derives from the marker's activation is never touched.

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use serde::Serialize;

use crate::domain::activation::{Activation, State, Status};
use crate::domain::audit::Actor;
use crate::domain::ids::ActivationId;
use crate::domain::scope::ScopeKind;

use super::ports::{AccessError, DueCursor, Versioned, parse_marker};
use super::{Elevate, ServiceError};

#[derive(Clone, Copy, Debug)]
pub struct SweepSettings {
    /// Due items read per store query.
    pub batch: usize,
    /// Activations worked on at once.
    pub concurrency: usize,
    /// How often a pass also looks for orphaned assignments.
    pub orphan_interval: TimeDelta,
    /// After this long a pass starts no more work: what is left stays due for the next tick.
    /// Under the Functions host a timer invocation is cut at `functionTimeout` (5 minutes in
    /// host.json), which would lose the report and the work in flight.
    pub time_budget: std::time::Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            batch: 200,
            concurrency: 16,
            orphan_interval: TimeDelta::hours(1),
            time_budget: std::time::Duration::from_secs(240),
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub examined: usize,
    pub expired: usize,
    pub timed_out: usize,
    pub extensions_timed_out: usize,
    pub started: usize,
    /// Scheduled starts the policy, asked again, no longer allowed (now Failed; nothing granted).
    pub starts_refused: usize,
    pub provisioned: usize,
    pub provisioning_failed: usize,
    /// Lost a race with another writer; the other writer's outcome stands.
    pub skipped: usize,
    /// Due but not started: the pass ran out of its time budget. The next tick continues.
    pub deferred: usize,
    /// Whether this pass also reconciled against the provider.
    pub orphan_check: bool,
    /// Elevate assignments found whose activation is finished or unknown and past its marker.
    pub orphans_found: usize,
    pub orphans_revoked: usize,
    /// Active directory-role and group grants found removed outside Elevate (their activations
    /// end): the orphan check of the kinds that carry no marker.
    pub grants_removed_outside: usize,
    /// "Expiring soon" notices queued by this pass.
    pub expiry_warnings: usize,
    /// Notices delivered to every sink by this pass.
    pub notices_delivered: usize,
    /// Notices that failed somewhere and wait for a later pass.
    pub notices_retrying: usize,
    pub failures: Vec<SweepFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepFailure {
    /// `None` when the pass itself failed (the store could not be read).
    pub activation_id: Option<ActivationId>,
    pub status: Option<Status>,
    pub error: String,
}

enum Outcome {
    Deferred,
    Expired,
    TimedOut,
    ExtensionTimedOut,
    Started(Status),
    StartRefused,
    Provisioned(Status),
    Nothing,
}

impl Elevate {
    #[tracing::instrument(skip_all, fields(now = %now))]
    pub async fn sweep(&self, now: DateTime<Utc>) -> SweepReport {
        let mut report = SweepReport::default();
        let mut cursor: Option<DueCursor> = None;
        // Paces the pass against its budget; decides nothing about access (that is `now`).
        let started = tokio::time::Instant::now();
        let budget = self.sweep.time_budget;
        loop {
            if started.elapsed() >= budget {
                tracing::warn!(
                    budget_s = budget.as_secs(),
                    "sweep time budget spent; the rest stays due for the next tick"
                );
                break;
            }
            let batch = match self.store.due(now, cursor.as_ref(), self.sweep.batch).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "sweep could not read due activations");
                    report.failures.push(SweepFailure {
                        activation_id: None,
                        status: None,
                        error: format!("reading due activations: {e}"),
                    });
                    break;
                }
            };
            let full = batch.len() >= self.sweep.batch;
            if let Some(last) = batch.last() {
                cursor = last.value.due_at().map(|due_at| DueCursor { due_at, id: last.value.id() });
            }
            report.examined += batch.len();
            let outcomes = futures_util::stream::iter(batch)
                .map(|item| async move {
                    let (id, status) = (item.value.id(), item.value.status());
                    if started.elapsed() >= budget {
                        return (id, status, Ok(Outcome::Deferred));
                    }
                    (id, status, self.sweep_one(item, now).await)
                })
                .buffer_unordered(self.sweep.concurrency.max(1))
                .collect::<Vec<_>>()
                .await;
            for (id, status, outcome) in outcomes {
                match outcome {
                    Ok(Outcome::Deferred) => report.deferred += 1,
                    Ok(Outcome::Expired) => report.expired += 1,
                    Ok(Outcome::TimedOut) => report.timed_out += 1,
                    Ok(Outcome::ExtensionTimedOut) => report.extensions_timed_out += 1,
                    Ok(Outcome::Started(after)) => {
                        report.started += 1;
                        count_provisioning(&mut report, after);
                    }
                    Ok(Outcome::StartRefused) => report.starts_refused += 1,
                    Ok(Outcome::Provisioned(after)) => count_provisioning(&mut report, after),
                    Ok(Outcome::Nothing) => {}
                    Err(ServiceError::Contention) => report.skipped += 1,
                    Err(e) => {
                        if let (ServiceError::RevocationFailed(_), Some(notifier)) = (&e, &self.notifier) {
                            notifier.revocation_failing(id, now).await;
                        }
                        tracing::error!(activation = %id, status = %status, error = %e, "sweep could not finish an activation; it stays due");
                        report.failures.push(SweepFailure {
                            activation_id: Some(id),
                            status: Some(status),
                            error: e.to_string(),
                        });
                    }
                }
            }
            if !full {
                break;
            }
        }
        if started.elapsed() < budget && self.orphan_check_due(now) {
            self.sweep_orphans(now, &mut report).await;
            self.reconcile_graph_grants(now, &mut report).await;
        }
        if let Some(notifier) = &self.notifier
            && started.elapsed() < budget
        {
            report.expiry_warnings = notifier.warn_expiring(now).await;
            let delivered = notifier.deliver_now(budget.saturating_sub(started.elapsed())).await;
            report.notices_delivered = delivered.delivered;
            report.notices_retrying = delivered.retrying;
        }
        if report.examined > 0 || !report.failures.is_empty() || report.orphans_found > 0 {
            tracing::info!(report = ?report, "sweep finished");
        }
        report
    }

    /// The sweeper's step for one due activation (the `expiry` queue's work), in a word.
    pub(super) async fn settle(
        &self,
        item: Versioned<Activation>,
        now: DateTime<Utc>,
    ) -> Result<&'static str, ServiceError> {
        let id = item.value.id();
        let outcome = self.sweep_one(item, now).await;
        if let (Err(ServiceError::RevocationFailed(_)), Some(notifier)) = (&outcome, &self.notifier) {
            notifier.revocation_failing(id, now).await;
        }
        Ok(match outcome? {
            Outcome::Expired => "expired and revoked",
            Outcome::TimedOut => "timed out",
            Outcome::ExtensionTimedOut => "extension timed out",
            Outcome::Started(_) => "started",
            Outcome::StartRefused => "start refused",
            Outcome::Provisioned(_) => "provisioning finished",
            Outcome::Deferred | Outcome::Nothing => "nothing to do",
        })
    }

    async fn sweep_one(&self, item: Versioned<Activation>, now: DateTime<Utc>) -> Result<Outcome, ServiceError> {
        let id = item.value.id();
        match item.value.state().clone() {
            State::PendingApproval { timeout_at, .. } if timeout_at <= now => {
                self.apply_fresh(id, &item, now, |a| Ok((a.time_out(now)?, None, None))).await?;
                fail_point!("timeout.after_record");
                Ok(Outcome::TimedOut)
            }
            State::Scheduled { start_at } if start_at <= now => {
                // The policy is asked again: it may have changed since the request was allowed;
                // and the directory, whether the requester is still in the group that made them
                // eligible (a directory failure leaves it due: nothing starts unchecked).
                let left = self.left_group(&item.value).await?;
                let policy = self.effective_policy().await?;
                let permit = |a: &Activation| match &left {
                    Some(deny) => Err(crate::domain::policy::StartRefusal::NoLongerEligible(deny.clone())),
                    None => policy.authorize_start(a.request(), now),
                };
                let started = self
                    .apply_fresh(id, &item, now, |a| match permit(&a) {
                        Ok(permit) => Ok((a.start(permit, now)?, None, None)),
                        Err(refusal) => {
                            tracing::warn!(activation = %id, code = refusal.code(), reason = %refusal, "scheduled start refused; nothing granted");
                            Ok((a.refuse_start(refusal, now)?, None, None))
                        }
                    })
                    .await?;
                fail_point!("start.after_record");
                if started.value.status() != Status::Provisioning {
                    return Ok(Outcome::StartRefused);
                }
                Ok(Outcome::Started(self.provision_closing(started, now).await?))
            }
            State::Provisioning { expires_at, .. } if expires_at <= now => {
                // Interrupted and out of time: make sure nothing was left behind, then close.
                self.revoke_and_verify(&item.value, now).await.map_err(ServiceError::RevocationFailed)?;
                fail_point!("expire.provisioning.after_revoke");
                self.apply_fresh(id, &item, now, |a| {
                    Ok((a.expire(now)?, None, Some("provisioning was interrupted; closed at expiry".into())))
                })
                .await?;
                Ok(Outcome::Expired)
            }
            State::Provisioning { .. } => {
                // Interrupted: the assignment may or may not exist. A read tells which.
                let grant = crate::service::ports::Grant::of(&item.value)
                    .ok_or_else(|| ServiceError::Internal(format!("provisioning activation {id} has no expiry")))?;
                let found = self.access.inspect(&grant).await.map_err(ServiceError::Access)?;
                let spec = crate::service::ports::AssignmentSpec::for_activation(&item.value);
                let after = match found {
                    // Under our name but not what was asked: never treated as the grant.
                    Some(assignment) if !spec.as_ref().is_some_and(|s| s.matches(&assignment)) => {
                        tracing::error!(activation = %id, assignment = %assignment.id, "the assignment under this activation's name is not the one asked for; revoking it");
                        self.revoke_and_verify(&item.value, now).await.map_err(ServiceError::RevocationFailed)?;
                        let failure = crate::domain::activation::Failure {
                            code: "GrantUnconfirmed".into(),
                            message: format!("assignment {} did not match the request and was revoked", assignment.id),
                        };
                        self.apply_fresh(id, &item, now, |a| {
                            Ok((a.fail(failure.clone(), now)?, None, Some(failure.message.clone())))
                        })
                        .await?
                        .value
                    }
                    Some(assignment) => {
                        self.apply_fresh(id, &item, now, |a| {
                            Ok((
                                a.provisioned(assignment.id.clone(), now)?,
                                None,
                                Some("recovered interrupted provisioning".into()),
                            ))
                        })
                        .await?
                        .value
                    }
                    None => {
                        return Ok(Outcome::Provisioned(self.provision_closing(item, now).await?));
                    }
                };
                fail_point!("recover.after_record");
                Ok(Outcome::Provisioned(after.status()))
            }
            State::Active { expires_at, .. } if expires_at <= now => {
                self.revoke_and_verify(&item.value, now).await.map_err(ServiceError::RevocationFailed)?;
                fail_point!("expire.after_revoke");
                self.apply_fresh(id, &item, now, |a| Ok((a.expire(now)?, None, None))).await?;
                tracing::info!(activation = %id, "access expired and revoked");
                fail_point!("expire.after_record");
                Ok(Outcome::Expired)
            }
            State::Active { extension: Some(ext), .. } if ext.timeout_at <= now => {
                self.apply_fresh(id, &item, now, |a| Ok((a.time_out(now)?, None, None))).await?;
                fail_point!("extension.timeout.after_record");
                Ok(Outcome::ExtensionTimedOut)
            }
            State::PendingApproval { .. }
            | State::Scheduled { .. }
            | State::Active { .. }
            | State::Denied { .. }
            | State::Canceled { .. }
            | State::TimedOut { .. }
            | State::Expired { .. }
            | State::Deactivated { .. }
            | State::Failed { .. } => Ok(Outcome::Nothing),
        }
    }

    /// Provisions, counting a pre-existing assignment as the recorded failure it is.
    async fn provision_closing(&self, item: Versioned<Activation>, now: DateTime<Utc>) -> Result<Status, ServiceError> {
        match self.provision(item, now).await {
            Ok(after) => Ok(after.status()),
            Err(ServiceError::RoleAlreadyAssigned { .. }) => Ok(Status::Failed),
            Err(e) => Err(e),
        }
    }

    /// Writes one sweeper transition, but only onto the version the sweeper read: if another
    /// writer changed the activation meanwhile, its outcome stands (reported as skipped).
    async fn apply_fresh<F>(
        &self,
        id: ActivationId,
        read: &Versioned<Activation>,
        now: DateTime<Utc>,
        step: F,
    ) -> Result<Versioned<Activation>, ServiceError>
    where
        F: FnOnce(
            Activation,
        ) -> Result<
            (crate::domain::activation::Transition, Option<crate::domain::ids::Justification>, Option<String>),
            ServiceError,
        >,
    {
        let (transition, justification, detail) = step(read.value.clone())?;
        let event = crate::domain::audit::AuditEvent::of(&transition, Actor::System, justification, detail, now);
        match self.store.update(&transition.activation, &read.version, &event).await {
            Ok(version) => {
                // The sweep delivers its notices itself at the end of the pass (a background
                // delivery started here would hold the outbox while the pass's own delivery
                // looks); the expiry queue's handler asks for delivery after its step.
                self.queue_expiry(Some(&read.value), &transition.activation, now).await;
                Ok(Versioned { value: transition.activation, version })
            }
            Err(super::ports::StoreError::Conflict) => {
                tracing::debug!(activation = %id, "another writer changed the activation first");
                Err(ServiceError::Contention)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Elevate {
    /// Whether the orphan check is due, claiming it for this pass if so.
    fn orphan_check_due(&self, now: DateTime<Utc>) -> bool {
        let Ok(mut last) = self.last_orphan_check.lock() else {
            return false;
        };
        match *last {
            Some(at) if now >= at && now - at < self.sweep.orphan_interval => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Reconciles the provider's Elevate assignments at the policy's scopes with the store.
    async fn sweep_orphans(&self, now: DateTime<Utc>, report: &mut SweepReport) {
        report.orphan_check = true;
        let scopes = self.policy.managed_scopes();
        for scope in &scopes {
            let assignments = match self.access.list_managed(scope).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(scope = %scope, error = %e, "orphan check could not list role assignments");
                    report.failures.push(SweepFailure {
                        activation_id: None,
                        status: None,
                        error: format!("listing role assignments at `{scope}`: {e}"),
                    });
                    continue;
                }
            };
            for assignment in assignments {
                let Some((activation_id, marker_expiry)) = assignment.description.as_deref().and_then(parse_marker)
                else {
                    continue;
                };
                if assignment.name != activation_id.role_assignment_name() {
                    tracing::warn!(assignment = %assignment.id, activation = %activation_id, "an assignment carries an Elevate marker under a name Elevate did not give it; not touching it");
                    continue;
                }
                let known = match self.store.get(activation_id).await {
                    Ok(found) => found.map(|v| v.value.status()),
                    Err(e) => {
                        report.failures.push(SweepFailure {
                            activation_id: Some(activation_id),
                            status: None,
                            error: format!("orphan check could not read the activation: {e}"),
                        });
                        continue;
                    }
                };
                let orphaned = match known {
                    // The due sweep owns it (an extension may have moved its expiry past the marker).
                    Some(status) if !status.is_terminal() => false,
                    Some(_) => true,
                    None => marker_expiry <= now,
                };
                if !orphaned {
                    continue;
                }
                report.orphans_found += 1;
                tracing::warn!(assignment = %assignment.id, activation = %activation_id, store_status = ?known, marker_expiry = %marker_expiry, "orphaned Elevate role assignment: the store does not hold it as active; revoking");
                let revoked = async {
                    let grant = crate::service::ports::Grant::listed(&assignment);
                    self.access.revoke(&grant).await?;
                    fail_point!("orphan.after_revoke");
                    match self.access.inspect(&grant).await? {
                        None => Ok(()),
                        Some(_) => Err(AccessError::Transient("still present after delete".into())),
                    }
                };
                match revoked.await {
                    Ok(()) => report.orphans_revoked += 1,
                    Err(e) => {
                        tracing::error!(assignment = %assignment.id, error = %e, "could not revoke an orphaned assignment; retrying on the next orphan check");
                        report.failures.push(SweepFailure {
                            activation_id: Some(activation_id),
                            status: known,
                            error: format!("revoking orphaned assignment `{}`: {e}", assignment.id),
                        });
                    }
                }
            }
        }
    }
}

impl Elevate {
    /// The orphan check for directory roles and groups. Their assignments carry no marker
    /// (graph-spec §9), so it runs the other way round: every active grant of those kinds that has
    /// settled is read back by the id recorded for it. One that is gone was removed outside
    /// Elevate: what its id names is made sure gone (Graph reuses ids), and its activation ends,
    /// audited and notified, so the id is never acted on again — in particular not at its expiry,
    /// when it might name someone's standing access by then.
    pub(super) async fn reconcile_graph_grants(&self, now: DateTime<Utc>, report: &mut SweepReport) {
        if self.policy.rules().iter().all(|r| r.scope.kind() == ScopeKind::Azure) {
            return;
        }
        // Active access ends within a day of its start (extensions included): all of it is due
        // within this horizon, so the due index lists every active grant.
        let active = match self.store.upcoming(now, now + TimeDelta::hours(25), RECONCILE_MAX).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "could not list active grants to reconcile with Graph");
                report.failures.push(SweepFailure {
                    activation_id: None,
                    status: None,
                    error: format!("listing active grants: {e}"),
                });
                return;
            }
        };
        for a in active {
            let settled = a.granted_at().is_some_and(|at| now - at >= super::lifecycle::GRANT_SETTLES);
            if a.status() != Status::Active || a.request().scope.kind() == ScopeKind::Azure || !settled {
                continue;
            }
            let Some(grant) = super::ports::Grant::of(&a) else { continue };
            let outcome = async {
                if self.access.inspect(&grant).await?.is_some() {
                    return Ok(false);
                }
                self.access.revoke(&grant).await?;
                Ok::<_, AccessError>(true)
            };
            match outcome.await {
                Ok(false) => {}
                Ok(true) => {
                    tracing::warn!(activation = %a.id(), assignment = grant.recorded.as_deref().unwrap_or("-"), "a directory-role or group grant was removed outside Elevate; ending its activation");
                    let ended = self
                        .apply(a.id(), &Actor::System, now, |current| {
                            if current.status() != Status::Active {
                                return Err(ServiceError::Contention);
                            }
                            Ok((
                                current.deactivate(now)?,
                                None,
                                Some("the grant was removed outside Elevate; the activation ends here".into()),
                            ))
                        })
                        .await;
                    match ended {
                        Ok(_) => report.grants_removed_outside += 1,
                        Err(ServiceError::Contention) => {}
                        Err(e) => report.failures.push(SweepFailure {
                            activation_id: Some(a.id()),
                            status: Some(Status::Active),
                            error: format!("ending an activation whose grant was removed outside Elevate: {e}"),
                        }),
                    }
                }
                Err(e) => report.failures.push(SweepFailure {
                    activation_id: Some(a.id()),
                    status: Some(Status::Active),
                    error: format!("reading back a directory-role or group grant: {e}"),
                }),
            }
        }
    }
}

/// Active grants one reconciliation reads back at most.
const RECONCILE_MAX: usize = 10_000;

fn count_provisioning(report: &mut SweepReport, after: Status) {
    match after {
        Status::Active => report.provisioned += 1,
        Status::Failed => report.provisioning_failed += 1,
        Status::PendingApproval
        | Status::Scheduled
        | Status::Provisioning
        | Status::Denied
        | Status::Canceled
        | Status::TimedOut
        | Status::Expired
        | Status::Deactivated => {}
    }
}
