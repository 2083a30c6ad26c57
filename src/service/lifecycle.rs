//! Ending and extending activations: cancel, deactivate, extend.

use chrono::{DateTime, Utc};

use crate::domain::activation::{Activation, State, Status};
use crate::domain::duration::IsoDuration;
use crate::domain::ids::{ActivationId, Justification};
use crate::domain::policy::ExtensionDraft;

use super::ports::{AccessError, Caller};
use super::{Elevate, ServiceError};

/// How long after a grant its absence may be believed (graph-spec §7: Graph replicates writes;
/// Terraform waits for three reads in a row).
pub const GRANT_SETTLES: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

#[derive(Clone, Debug)]
pub struct ExtensionInput {
    pub duration: IsoDuration,
    pub justification: Option<Justification>,
}

impl Elevate {
    /// The requester withdraws a request that has granted nothing yet.
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id, activation = %id))]
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: ActivationId,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        let current = self.load(id).await?;
        self.ensure_requester(caller, &current.value)?;
        let updated = self.apply(id, &Elevate::actor(caller), now, |a| Ok((a.cancel(now)?, None, None))).await?;
        fail_point!("cancel.after_record");
        Ok(updated.value)
    }

    /// Ends access early: revoke, verify it is gone, then record. If the provider fails,
    /// nothing changes and the activation still expires on time.
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id, activation = %id))]
    pub async fn deactivate(
        &self,
        caller: &Caller,
        id: ActivationId,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        let current = self.load(id).await?;
        if current.value.request().principal_id != caller.principal_id && !caller.is_admin() {
            return Err(self.hidden_or_forbidden(
                caller,
                &current.value,
                "only the requester or an Elevate.Admin may deactivate",
            ));
        }
        if current.value.status() != Status::Active {
            return Err(current
                .value
                .deactivate(now)
                .err()
                .map(ServiceError::from)
                .unwrap_or(ServiceError::Contention));
        }
        self.revoke_and_verify(&current.value, now).await.map_err(ServiceError::RevocationFailed)?;
        fail_point!("deactivate.after_revoke");
        let updated = self.apply(id, &Elevate::actor(caller), now, |a| Ok((a.deactivate(now)?, None, None))).await?;
        fail_point!("deactivate.after_record");
        tracing::info!("access revoked early");
        Ok(updated.value)
    }

    /// More time under the same rule, up to its maximum from the original start; re-approved
    /// when the rule demands approval.
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id, activation = %id))]
    pub async fn extend(
        &self,
        caller: &Caller,
        id: ActivationId,
        input: ExtensionInput,
        now: DateTime<Utc>,
    ) -> Result<Activation, ServiceError> {
        let current = self.load(id).await?;
        self.ensure_requester(caller, &current.value)?;
        let subject = self.subject(caller).await?;
        if let Some(deny) = self.left_group(&current.value).await? {
            return Err(ServiceError::Refused(deny.into()));
        }
        let policy = self.effective_policy().await?;
        let updated = self
            .apply(id, &Elevate::actor(caller), now, |a| {
                let State::Active { activated_at, expires_at, .. } = a.state().clone() else {
                    return Err(a.extend_refusal());
                };
                let draft = ExtensionDraft {
                    request: a.request(),
                    activated_at,
                    current_expiry: expires_at,
                    additional: input.duration,
                    justification: input.justification.clone(),
                };
                let extension = policy.authorize_extension(draft, &subject, now)?;
                Ok((
                    a.extend(extension, now)?,
                    input.justification.clone(),
                    Some(format!("extend by {}", input.duration)),
                ))
            })
            .await?;
        fail_point!("extend.after_record");
        Ok(updated.value)
    }

    /// Deletes the activation's assignment and confirms with a read that it is gone.
    pub(super) async fn revoke_and_verify(
        &self,
        activation: &Activation,
        now: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        let mut grant = super::ports::Grant::of(activation)
            .ok_or_else(|| AccessError::Permanent(format!("activation {} has no grant to revoke", activation.id())))?;
        // A grant younger than replication may not show everywhere yet: "not found" is no proof
        // that it is gone, so the provider keeps trying (the activation stays due).
        grant.settled = activation.granted_at().is_none_or(|at| now - at >= GRANT_SETTLES);
        self.revoke_grant(&grant).await
    }

    /// Deletes a grant of Elevate's own and confirms with a read that it is gone.
    pub(super) async fn revoke_grant(&self, grant: &super::ports::Grant) -> Result<(), AccessError> {
        self.access.revoke(grant).await?;
        fail_point!("revoke.after_delete");
        match self.access.inspect(grant).await? {
            None => Ok(()),
            Some(still) => Err(AccessError::Transient(format!("assignment {} still present after delete", still.id))),
        }
    }

    fn ensure_requester(&self, caller: &Caller, activation: &Activation) -> Result<(), ServiceError> {
        if activation.request().principal_id == caller.principal_id {
            Ok(())
        } else {
            Err(self.hidden_or_forbidden(caller, activation, "only the requester may do this"))
        }
    }

    /// Callers who may not see an activation learn nothing about it (404); those who may see it
    /// but not act on it get 403.
    pub(super) fn hidden_or_forbidden(&self, caller: &Caller, activation: &Activation, why: &str) -> ServiceError {
        if self.may_view(caller, activation) {
            ServiceError::Forbidden(why.to_owned())
        } else {
            ServiceError::NotFound(activation.id())
        }
    }
}

trait ExtendRefusal {
    fn extend_refusal(&self) -> ServiceError;
}

impl ExtendRefusal for Activation {
    fn extend_refusal(&self) -> ServiceError {
        ServiceError::Transition(crate::domain::activation::TransitionError::WrongStatus {
            status: self.status(),
            action: "extended",
        })
    }
}
