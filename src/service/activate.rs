//! Requesting an activation, and provisioning the role assignment once it may start.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::activation::{Activation, Failure, Status};
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::duration::IsoDuration;
use crate::domain::ids::{ActivationId, Justification, PrincipalId, RoleDefinitionId, RuleId, Ticket};
use crate::domain::policy::{ActivationDraft, Refusal, Subject, Violation};
use crate::domain::scope::{Scope, ScopeKind};

use super::ports::{
    AccessError, AssignmentSpec, Caller, Grant, IdempotencyKey, IdempotencyRecord, StoreError, Versioned,
};
use super::{Elevate, ServiceError};

/// How long a grant keeps being retried while the directory does not know the principal yet
/// (replication delay after the principal was created, azure-spec §3.4).
pub const PRINCIPAL_REPLICATION_WAIT: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// How long a request (or a decision) waits on its grant: less than the grace after which the
/// sweeper takes an interrupted grant over (`Activation::PROVISIONING_GRACE`).
pub const CALLER_GRANT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(150);

/// A parsed activation request from the wire (serialisable: a confirmation link carries one).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivationInput {
    /// Set only by brokers acting for a user.
    pub principal_id: Option<PrincipalId>,
    pub role_definition_id: RoleDefinitionId,
    pub scope: Scope,
    pub duration: Option<IsoDuration>,
    pub justification: Option<Justification>,
    pub ticket: Option<Ticket>,
    pub start_at: Option<DateTime<Utc>>,
    pub rule_id: Option<RuleId>,
}

impl ActivationInput {
    /// A stable digest of what was asked, to tell a retry from a reused key.
    fn digest(&self, principal: &PrincipalId) -> String {
        let ticket = self.ticket.as_ref().map(|t| format!("{}\u{1f}{}", t.system, t.number));
        let parts = [
            principal.to_string(),
            self.role_definition_id.to_string(),
            self.scope.key(),
            self.duration.map(|d| d.to_string()).unwrap_or_default(),
            self.justification.as_ref().map(|j| j.as_str().to_owned()).unwrap_or_default(),
            ticket.unwrap_or_default(),
            self.start_at.map(|s| s.to_rfc3339()).unwrap_or_default(),
            self.rule_id.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        ];
        let mut hash = Sha256::new();
        for part in parts {
            hash.update(part.as_bytes());
            hash.update([0x1e]);
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl ActivationInput {
    fn into_draft(self, principal: PrincipalId) -> ActivationDraft {
        ActivationDraft {
            principal_id: principal,
            role_definition_id: self.role_definition_id,
            scope: self.scope,
            rule_id: self.rule_id,
            duration: self.duration,
            justification: self.justification,
            ticket: self.ticket,
            start_at: self.start_at,
        }
    }
}

/// What a request would become if it were made now (`validateOnly`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WouldBe {
    Active,
    Scheduled,
    PendingApproval,
    /// A broker asked for a rule that needs the user's own proof: a confirmation link.
    ConfirmationRequired,
}

impl WouldBe {
    pub fn as_str(self) -> &'static str {
        match self {
            WouldBe::Active => "Active",
            WouldBe::Scheduled => "Scheduled",
            WouldBe::PendingApproval => "PendingApproval",
            WouldBe::ConfirmationRequired => "ConfirmationRequired",
        }
    }
}

/// The answer to `validateOnly`: the rule, the window, what is still missing, who approves.
#[derive(Clone, Debug)]
pub struct Preview {
    pub principal_id: PrincipalId,
    pub role_definition_id: RoleDefinitionId,
    pub scope: Scope,
    pub rule: crate::domain::policy::Rule,
    pub duration: IsoDuration,
    pub start: DateTime<Utc>,
    pub ends: DateTime<Utc>,
    /// Unmet terms; empty when the request would be accepted as it stands.
    pub needs: Vec<Violation>,
    pub would_be: WouldBe,
}

/// The outcome of a request: the activation, and whether it was an idempotent replay.
#[derive(Debug)]
pub struct Requested {
    pub activation: Activation,
    pub replayed: bool,
}

impl Elevate {
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id, role = %input.role_definition_id, scope = %input.scope))]
    pub async fn request_activation(
        &self,
        caller: &Caller,
        input: ActivationInput,
        idempotency_key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Requested, ServiceError> {
        self.open_activation(caller, input, idempotency_key, None, now).await
    }

    /// The user confirms, signed in themselves, a request a broker made for them (a rule needing
    /// their own MFA or authentication context). It is the user's request from here on, with
    /// their evidence; the audit says which broker asked. `key` makes a repeated confirmation
    /// answer with the same activation.
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id, broker = %broker_app_id))]
    pub async fn confirm_brokered_request(
        &self,
        caller: &Caller,
        input: ActivationInput,
        broker_app_id: &str,
        key: IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Requested, ServiceError> {
        if caller.app_only {
            return Err(ServiceError::Forbidden("only the user a request is for can confirm it".into()));
        }
        if input.principal_id.is_some_and(|p| p != caller.principal_id) {
            return Err(ServiceError::Forbidden("this request is for someone else".into()));
        }
        let detail = format!("requested through broker application `{broker_app_id}`, confirmed by the user");
        self.open_activation(caller, ActivationInput { principal_id: None, ..input }, Some(key), Some(detail), now)
            .await
    }

    async fn open_activation(
        &self,
        caller: &Caller,
        input: ActivationInput,
        idempotency_key: Option<IdempotencyKey>,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Requested, ServiceError> {
        let (principal, mut subject, actor) = self.requester(caller, input.principal_id)?;
        if !matches!(actor, Actor::Broker { .. }) {
            subject = self.subject(caller).await?;
        }
        let digest = input.digest(&principal);
        if let Some(key) = &idempotency_key
            && let Some(replay) = self.replay(caller, key, &digest).await?
        {
            return Ok(replay);
        }
        let draft = input.into_draft(principal);
        let brokered = matches!(actor, Actor::Broker { .. });
        let policy = self.effective_policy().await?;
        let authorized = policy.authorize_activation(draft, &subject, now).map_err(|refusal| match refusal {
            Refusal::Violation(Violation::MfaRequired(_) | Violation::AuthContextRequired { .. }) if brokered => {
                ServiceError::UserConfirmationRequired
            }
            other => ServiceError::Refused(other),
        })?;
        // The caller's own name labels their own request; a broker's caller is not the requester.
        let name = if brokered { None } else { caller.name.clone() };
        let authorized = authorized.with_principal_name(name);
        let id = ActivationId::new_random();
        let opened = Activation::open(id, authorized, now);
        let event = AuditEvent::of(&opened, actor, None, detail, now);
        let record = idempotency_key.map(|key| IdempotencyRecord {
            caller: caller.principal_id,
            key,
            request_hash: digest.clone(),
            activation_id: id,
        });
        let version = match self.store.insert(&opened.activation, &event, record.as_ref(), self.max_open).await {
            Ok(version) => {
                self.after_write(None, &opened.activation, &event, now).await;
                version
            }
            Err(StoreError::IdempotencyKeyTaken) => {
                // A concurrent retry with the same key won the race: answer as it did.
                let key = record.map(|r| r.key).ok_or(ServiceError::IdempotencyKeyReused)?;
                return self.replay(caller, &key, &digest).await?.ok_or(ServiceError::Contention);
            }
            Err(e) => return Err(e.into()),
        };
        fail_point!("activate.after_insert");
        tracing::info!(activation = %id, status = %opened.activation.status(), rule = %opened.activation.request().rule_id, "activation requested");
        let stored = Versioned { value: opened.activation, version };
        let activation = if stored.value.status() == Status::Provisioning {
            self.provision_or_defer(stored, now).await?
        } else {
            stored.value
        };
        Ok(Requested { activation, replayed: false })
    }

    /// What `input` would become if requested now, with nothing stored and no notice sent:
    /// the same eligibility and terms as a request, but every unmet term the caller could still
    /// meet is listed instead of refusing on the first.
    pub async fn preview_activation(
        &self,
        caller: &Caller,
        input: ActivationInput,
        now: DateTime<Utc>,
    ) -> Result<Preview, ServiceError> {
        let (principal, mut subject, actor) = self.requester(caller, input.principal_id)?;
        let brokered = matches!(actor, Actor::Broker { .. });
        if !brokered {
            subject = self.subject(caller).await?;
        }
        let start_at = input.start_at;
        let draft = input.into_draft(principal);
        let policy = self.effective_policy().await?;
        let assessed = policy.assess(&draft, &subject, now).map_err(ServiceError::Refused)?;
        let mut needs = assessed.needs;
        let needs_user =
            needs.iter().any(|n| matches!(n, Violation::MfaRequired(_) | Violation::AuthContextRequired { .. }));
        let would_be = if brokered && needs_user {
            // The user's own sign-in meets these when they confirm; a broker cannot.
            needs.retain(|n| !matches!(n, Violation::MfaRequired(_) | Violation::AuthContextRequired { .. }));
            if self.link_signer.is_none() {
                return Err(ServiceError::UserConfirmationRequired);
            }
            WouldBe::ConfirmationRequired
        } else if assessed.rule.approval.is_some() {
            WouldBe::PendingApproval
        } else if start_at.is_some_and(|at| at > now) {
            WouldBe::Scheduled
        } else {
            WouldBe::Active
        };
        Ok(Preview {
            principal_id: principal,
            role_definition_id: draft.role_definition_id,
            scope: draft.scope,
            rule: assessed.rule.clone(),
            duration: assessed.duration,
            start: assessed.start,
            ends: assessed.ends,
            needs,
            would_be,
        })
    }

    /// Who will hold the access, the evidence about them, and who acts. Only allow-listed
    /// brokers with the broker app role may name another principal.
    fn requester(
        &self,
        caller: &Caller,
        principal: Option<PrincipalId>,
    ) -> Result<(PrincipalId, Subject, Actor), ServiceError> {
        match principal {
            None => Ok((caller.principal_id, caller.subject(), Elevate::actor(caller))),
            Some(p) if p == caller.principal_id => Ok((p, caller.subject(), Elevate::actor(caller))),
            Some(p) => {
                let app_id = caller.app_id.clone().unwrap_or_default();
                let allowed = caller.app_only
                    && caller.has_role(super::ports::ROLE_BROKER)
                    && self.broker_app_ids.contains(&app_id.to_ascii_lowercase());
                if !allowed {
                    return Err(ServiceError::BrokerNotAllowed(if app_id.is_empty() {
                        caller.principal_id.to_string()
                    } else {
                        app_id
                    }));
                }
                // Nothing about the user's sign-in travels with a brokered request: no groups,
                // no MFA. Group-based and MFA-requiring rules therefore need the user.
                let subject = Subject { principal_id: p, groups: Vec::new(), mfa: false, auth_contexts: Vec::new() };
                Ok((p, subject, Actor::Broker { id: caller.principal_id, app_id }))
            }
        }
    }

    async fn replay(
        &self,
        caller: &Caller,
        key: &IdempotencyKey,
        digest: &str,
    ) -> Result<Option<Requested>, ServiceError> {
        let Some(record) = self.store.idempotency(caller.principal_id, key).await? else {
            return Ok(None);
        };
        if record.request_hash != digest {
            return Err(ServiceError::IdempotencyKeyReused);
        }
        let activation = self.load(record.activation_id).await?.value;
        Ok(Some(Requested { activation, replayed: true }))
    }

    /// For a caller waiting on an answer: a transient provider failure leaves the activation
    /// Provisioning (reported as such) for the sweeper to finish.
    pub(super) async fn provision_or_defer(
        &self,
        current: Versioned<Activation>,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        let pending = current.value.clone();
        // A caller's grant gives up before the sweeper may take the activation over, so the two
        // never grant at once. Dropping it mid-way is a crash in miniature: the activation stays
        // Provisioning and the sweeper finishes it, as after any crash.
        match tokio::time::timeout(CALLER_GRANT_DEADLINE, self.provision(current, now)).await {
            Ok(Err(ServiceError::Access(e))) if e.is_transient() => Ok(pending),
            Ok(other) => other,
            Err(_) => {
                tracing::warn!(activation = %pending.id(), "the grant took too long for the caller; the sweeper finishes it");
                Ok(pending)
            }
        }
    }

    /// Creates the role assignment of a Provisioning activation and records the outcome.
    /// A transient provider failure changes nothing and is returned as `ServiceError::Access`.
    pub(super) async fn provision(
        &self,
        current: Versioned<Activation>,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        let id = current.value.id();
        let Some(spec) = AssignmentSpec::for_activation(&current.value) else {
            return Ok(current.value);
        };
        if current.value.expires_at().is_some_and(|at| at <= now) {
            // Too late to grant: the sweeper will close it.
            return Ok(current.value);
        }
        // Graph names nothing. So first make sure the principal does not already hold it (that is
        // standing access, reported and never touched); only then record that a grant is being
        // asked for. From that record on — and only from it — an interrupted grant is looked for
        // by principal, role and scope, and what is found is ours.
        let graph = spec.scope.kind() != ScopeKind::Azure;
        let current = if graph && !current.value.grant_requested() {
            let look = Grant { spec: spec.clone(), recorded: None, issued: true, settled: true };
            match self.access.inspect(&look).await {
                Ok(None) => match self.apply(id, &Actor::System, now, |a| Ok((a.granting(now)?, None, None))).await {
                    Ok(recorded) => recorded,
                    // Another worker recorded it first: it is granting; leave it to them.
                    Err(ServiceError::Transition(_)) => return Ok(self.load(id).await?.value),
                    Err(e) => return Err(e),
                },
                Ok(Some(existing)) => return self.standing(id, existing.id, now).await,
                Err(e) if e.is_transient() => return Err(ServiceError::Access(e)),
                Err(e) => {
                    // Nothing was asked for: a failure needs no clean-up.
                    let failure = Failure { code: "ProvisioningFailed".into(), message: e.to_string() };
                    return self.mark_failed(id, &failure, now).await;
                }
            }
        } else {
            current
        };
        fail_point!("provision.before_grant");
        // Recorded before this attempt (Graph): what the provider's own pre-check finds now is an
        // earlier attempt of ours that landed (or this very one, its answer lost).
        let asked_before = graph;
        let provisioning_since = match current.value.state() {
            crate::domain::activation::State::Provisioning { since, .. } => *since,
            _ => now,
        };
        let failure = match self.access.grant(&spec).await {
            Ok(assignment) => return self.record_grant(id, &spec, assignment, now).await,
            Err(e) if e.is_transient() && !matches!(e, AccessError::PrincipalNotFound(_)) => {
                tracing::warn!(activation = %id, error = %e, "grant failed transiently; the sweeper will retry");
                return Err(ServiceError::Access(e));
            }
            Err(AccessError::PrincipalNotFound(message)) if now - provisioning_since < PRINCIPAL_REPLICATION_WAIT => {
                tracing::warn!(activation = %id, "the directory does not know the principal yet; the sweeper will retry");
                return Err(ServiceError::Access(AccessError::PrincipalNotFound(message)));
            }
            Err(AccessError::AlreadyAssigned { existing_id }) if asked_before => {
                // Graph found the assignment an earlier attempt of ours made: adopt it.
                let ours = Grant { spec: spec.clone(), recorded: None, issued: true, settled: true };
                return match self.access.inspect(&ours).await.map_err(ServiceError::Access)? {
                    Some(assignment) => {
                        tracing::warn!(activation = %id, assignment = %assignment.id, "an earlier grant of ours landed after all; recording it");
                        self.record_grant(id, &spec, assignment, now).await
                    }
                    None => Err(ServiceError::Access(AccessError::Transient(format!(
                        "{existing_id} exists but cannot be read back yet; retrying"
                    )))),
                };
            }
            // ARM refused the PUT as a duplicate of an assignment under another name, so none
            // exists under ours (ARM allows one per principal, role and scope).
            Err(AccessError::AlreadyAssigned { existing_id }) => return self.standing(id, existing_id, now).await,
            Err(AccessError::PrincipalNotFound(message)) => {
                tracing::error!(activation = %id, "the directory still does not know the principal; giving up");
                Failure {
                    code: "PrincipalNotFound".into(),
                    message: format!(
                        "the directory did not know principal {} for {} minutes: {message}",
                        spec.principal_id,
                        PRINCIPAL_REPLICATION_WAIT.num_minutes()
                    ),
                }
            }
            Err(AccessError::Unconfirmed(message)) => {
                tracing::error!(activation = %id, error = %message, "grant could not be confirmed; revoking by name");
                Failure {
                    code: "GrantUnconfirmed".into(),
                    message: format!("the grant could not be confirmed and was revoked: {message}"),
                }
            }
            // Refused outright for want of permission: nothing was created, nothing to clean up
            // (trying would only meet the same refusal, for ever).
            Err(e @ AccessError::Forbidden { .. }) => {
                tracing::error!(activation = %id, error = %e, "grant refused: Elevate may not do this");
                let failure = Failure { code: "ProvisioningFailed".into(), message: e.to_string() };
                return self.mark_failed(id, &failure, now).await;
            }
            Err(e) => {
                tracing::error!(activation = %id, error = %e, "grant refused");
                Failure { code: "ProvisioningFailed".into(), message: e.to_string() }
            }
        };
        self.fail_provisioning(&current.value, failure, now).await
    }

    /// The principal already holds it outside Elevate: reported, the activation fails, and the
    /// standing assignment is never touched (nothing of Elevate's can exist to clean up).
    async fn standing(
        &self,
        id: ActivationId,
        existing_id: String,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        tracing::warn!(activation = %id, existing = %existing_id, "principal already holds the role outside Elevate; not touching it");
        let failure = Failure {
            code: "RoleAssignmentExists".into(),
            message: format!(
                "the principal already holds this role at this scope through assignment {existing_id}, which Elevate did not create"
            ),
        };
        self.mark_failed(id, &failure, now).await?;
        Err(ServiceError::RoleAlreadyAssigned { activation: id, existing_id })
    }

    /// Records a grant the provider made. If the activation was finished meanwhile (another
    /// worker gave up on it, or it was closed), what was just granted is taken back by name: a
    /// finished activation never leaves access behind.
    async fn record_grant(
        &self,
        id: ActivationId,
        spec: &AssignmentSpec,
        assignment: super::ports::Assignment,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        fail_point!("provision.after_grant");
        let updated = self
            .apply(id, &Actor::System, now, |a| {
                if a.status() != Status::Provisioning {
                    return Err(ServiceError::Contention);
                }
                Ok((
                    a.provisioned(assignment.id.clone(), now)?,
                    None,
                    Some(format!("role assignment {}", assignment.id)),
                ))
            })
            .await;
        match updated {
            Ok(v) => {
                tracing::info!(activation = %id, expires_at = ?v.value.expires_at(), "access granted");
                fail_point!("provision.after_record");
                Ok(v.value)
            }
            // Someone else moved it first: it is ours to keep only while it is still open.
            Err(ServiceError::Contention) => {
                let now_stored = self.load(id).await?.value;
                if now_stored.status().is_terminal() {
                    tracing::error!(activation = %id, status = %now_stored.status(), "granted after the activation was finished; revoking by name");
                    // Just made: Graph may not show it everywhere yet, so "not found" is no proof.
                    let grant = Grant {
                        spec: spec.clone(),
                        recorded: Some(assignment.id.clone()),
                        issued: true,
                        settled: false,
                    };
                    self.revoke_grant(&grant).await.map_err(ServiceError::RevocationFailed)?;
                }
                Ok(now_stored)
            }
            Err(e) => Err(e),
        }
    }

    /// Ends a Provisioning activation as Failed — but only once nothing can be left under
    /// Elevate's name: a grant that failed may still have landed (an answer lost or unreadable,
    /// a retried write). If that revocation fails, the activation stays Provisioning, and so due,
    /// and the caller hears of a transient failure.
    async fn fail_provisioning(
        &self,
        current: &Activation,
        failure: Failure,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        let id = current.id();
        // Asked for (ARM: always possibly, by its name; Graph: once recorded), so it may exist.
        // A young Graph grant's absence proves nothing: it stays due until it has settled, and
        // the sweeper's next attempt, after that, ends it.
        if let Err(e) = self.revoke_and_verify(current, now).await {
            tracing::error!(activation = %id, error = %e, "could not yet make sure nothing was left behind; it stays due");
            return Err(ServiceError::Access(AccessError::Transient(format!(
                "a failed grant could not be cleaned up yet: {e}"
            ))));
        }
        fail_point!("provision.failed.after_revoke");
        self.mark_failed(id, &failure, now).await
    }

    /// Ends the activation as Failed, the failure's message in its audit entry.
    async fn mark_failed(
        &self,
        id: ActivationId,
        failure: &Failure,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        let failed = self
            .apply(id, &Actor::System, now, |a| {
                Ok((a.fail(failure.clone(), now)?, None, Some(failure.message.clone())))
            })
            .await?;
        fail_point!("provision.after_fail");
        Ok(failed.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gives_up_on_its_grant_before_the_sweeper_may_take_over() {
        let grace = crate::domain::activation::Activation::PROVISIONING_GRACE.to_std().unwrap();
        assert!(CALLER_GRANT_DEADLINE < grace, "{CALLER_GRANT_DEADLINE:?} must be shorter than {grace:?}");
    }
}
