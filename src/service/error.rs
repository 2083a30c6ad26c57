//! What a use case can answer instead of a result. The HTTP edge alone picks status codes.

use crate::domain::activation::TransitionError;
use crate::domain::approver::ApproverDenied;
use crate::domain::ids::ActivationId;
use crate::domain::policy::Refusal;
use crate::domain::review::ReviewRefusal;

use super::confirm::LinkRefusal;

use super::ports::{AccessError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("activation `{0}` was not found")]
    NotFound(ActivationId),
    #[error("{0}")]
    Forbidden(String),
    #[error("application `{0}` may not request access for other principals")]
    BrokerNotAllowed(String),
    #[error(
        "rule requires the user's own multi-factor proof, which a request made on their behalf cannot carry; the user must request it themselves"
    )]
    UserConfirmationRequired,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    ApproverDenied(#[from] ApproverDenied),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("activation `{0}` for the same principal, role and scope is still open; extend or deactivate it instead")]
    OpenActivationExists(ActivationId),
    #[error(
        "the principal already has {limit} open requests or activations, the most allowed at once; cancel or deactivate one, or wait for one to end, then ask again"
    )]
    TooManyOpenRequests { limit: usize },
    /// A continuation that is not one of this list's.
    #[error("is not a continuation of this list; start again without it")]
    InvalidPageToken,
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error(
        "the principal already holds this role at this scope outside Elevate (assignment `{existing_id}`); activation `{activation}` failed and the existing assignment was left untouched"
    )]
    RoleAlreadyAssigned { activation: ActivationId, existing_id: String },
    #[error("the activation kept changing while this request was applied; try again")]
    Contention,
    #[error("revoking access failed, the activation is unchanged and will still expire on time: {0}")]
    RevocationFailed(AccessError),
    #[error(transparent)]
    Access(AccessError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Link(#[from] LinkRefusal),
    #[error("access review campaign `{0}` was not found")]
    CampaignNotFound(String),
    #[error("campaign `{campaign}` has no item {index}")]
    ReviewItemNotFound { campaign: String, index: u32 },
    #[error(transparent)]
    Review(#[from] ReviewRefusal),
    #[error("no access review removal `{0}` is in force")]
    SuspensionNotFound(String),
    /// A bug: retrying will not help. Opaque to the caller, logged in full.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::OpenActivationExists(id) => ServiceError::OpenActivationExists(id),
            StoreError::TooManyOpen { limit } => ServiceError::TooManyOpenRequests { limit },
            StoreError::InvalidPageToken(why) => {
                tracing::debug!(reason = %why, "refused a page token");
                ServiceError::InvalidPageToken
            }
            other => ServiceError::Store(other),
        }
    }
}
