//! Requests that wait for their user. A broker (a Teams workflow, a Logic App) may request access
//! for a user, but it cannot carry the user's MFA or authentication context. For a rule that
//! needs them, the request waits in a signed link (15 minutes) that the broker hands to the user.
//! The user opens it, signs in meeting the rule, and confirms; only then is an activation opened,
//! as the user's own request, with the user's evidence.
//!
//! The link is not a bearer token: it only describes the request. Its signature (a
//! [`LinkSigner`]) stops anyone changing what is asked; who may confirm is decided by the
//! caller's own sign-in (the named user, and nobody else). Confirming twice answers with the same
//! activation. Must never accept a link after it expires or with a bad signature, and never let
//! anyone but the named user confirm.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::ids::PrincipalId;

use super::activate::{ActivationInput, Requested};
use super::ports::{Caller, IdempotencyKey};
use super::{Elevate, ServiceError};

/// How long a request waits for its user.
pub const LINK_LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// The link must fit a URL every front end and chat client passes (about 4 KB): a typical
/// request makes a token of under 1 KB; one this large is refused when the link would be made.
pub const MAX_LINK_BYTES: usize = 3_500;

/// Signs and checks what a link says. The key never leaves the adapter.
pub trait LinkSigner: Send + Sync {
    fn sign(&self, payload: &[u8]) -> Vec<u8>;
    /// Constant-time.
    fn verify(&self, payload: &[u8], signature: &[u8]) -> bool;
}

/// Why a link is refused. Each has its own answer at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    #[error("this confirmation link is not valid: use the link exactly as you received it")]
    Invalid,
    #[error("this request waited too long for confirmation; ask for the access again")]
    Expired,
    #[error("this request is for someone else: only the person it names can confirm it")]
    NotTheRequester,
    #[error("this request is too large to wait in a confirmation link: shorten the justification")]
    TooLarge,
}

/// What a link says.
#[derive(Serialize, Deserialize)]
struct Link {
    nonce: Uuid,
    /// The broker's client id.
    broker: String,
    /// Unix seconds.
    expires: i64,
    request: ActivationInput,
}

/// A link made for a brokered request.
#[derive(Clone, Debug)]
pub struct ConfirmationLink {
    /// `{payload}.{signature}`, both base64url: the last segment of the link's path.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// The user who must confirm.
    pub principal_id: PrincipalId,
}

/// A valid, unexpired link, opened.
#[derive(Clone, Debug)]
pub struct PendingConfirmation {
    /// Identifies this link (its CSRF tokens and its idempotency key are bound to it).
    pub nonce: Uuid,
    pub broker: String,
    pub expires_at: DateTime<Utc>,
    pub request: ActivationInput,
}

impl PendingConfirmation {
    /// The user the request is for.
    fn intended(&self) -> Result<PrincipalId, ServiceError> {
        self.request.principal_id.ok_or(ServiceError::Link(LinkRefusal::Invalid))
    }

    /// Only the named user, signed in as themselves, may see or confirm it.
    fn ensure_requester(&self, caller: &Caller) -> Result<(), ServiceError> {
        if self.intended()? == caller.principal_id && !caller.app_only {
            Ok(())
        } else {
            Err(ServiceError::Link(LinkRefusal::NotTheRequester))
        }
    }
}

/// What a request became: an activation, or a link waiting for its user.
#[derive(Debug)]
pub enum Answer {
    Opened(Box<Requested>),
    AwaitsUser(ConfirmationLink),
}

impl Elevate {
    /// Requests an activation; a broker's request for a rule that needs the user's own proof
    /// waits in a confirmation link instead.
    pub async fn request(
        &self,
        caller: &Caller,
        input: ActivationInput,
        idempotency_key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Answer, ServiceError> {
        match self.request_activation(caller, input.clone(), idempotency_key, now).await {
            Ok(requested) => Ok(Answer::Opened(Box::new(requested))),
            Err(ServiceError::UserConfirmationRequired) if self.link_signer.is_some() => {
                let link = self.issue_link(caller, input, now)?;
                tracing::info!(broker = caller.app_id.as_deref().unwrap_or("-"), principal = %link.principal_id, "request waits for the user's confirmation");
                Ok(Answer::AwaitsUser(link))
            }
            Err(e) => Err(e),
        }
    }

    fn issue_link(
        &self,
        caller: &Caller,
        input: ActivationInput,
        now: DateTime<Utc>,
    ) -> Result<ConfirmationLink, ServiceError> {
        let signer = self.link_signer.as_ref().ok_or(ServiceError::UserConfirmationRequired)?;
        let principal_id = input.principal_id.ok_or(ServiceError::UserConfirmationRequired)?;
        let expires_at = now + LINK_LIFETIME;
        let link = Link {
            nonce: Uuid::new_v4(),
            broker: caller.app_id.clone().unwrap_or_else(|| "-".to_owned()),
            expires: expires_at.timestamp(),
            request: input,
        };
        let json = serde_json::to_vec(&link).map_err(|e| ServiceError::Internal(format!("encoding a link: {e}")))?;
        let payload = URL_SAFE_NO_PAD.encode(json);
        let signature = URL_SAFE_NO_PAD.encode(signer.sign(payload.as_bytes()));
        let token = format!("{payload}.{signature}");
        if token.len() > MAX_LINK_BYTES {
            return Err(ServiceError::Link(LinkRefusal::TooLarge));
        }
        Ok(ConfirmationLink { token, expires_at, principal_id })
    }

    /// Checks a link's signature and age, and reads it. Says nothing about who may use it.
    pub fn open_link(&self, token: &str, now: DateTime<Utc>) -> Result<PendingConfirmation, ServiceError> {
        let invalid = || ServiceError::Link(LinkRefusal::Invalid);
        let signer = self.link_signer.as_ref().ok_or_else(invalid)?;
        if token.len() > MAX_LINK_BYTES {
            return Err(invalid());
        }
        let (payload, signature) = token.split_once('.').ok_or_else(invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        if !signer.verify(payload.as_bytes(), &signature) {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let link: Link = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if now.timestamp() >= link.expires {
            return Err(ServiceError::Link(LinkRefusal::Expired));
        }
        let expires_at = DateTime::from_timestamp(link.expires, 0).ok_or_else(invalid)?;
        Ok(PendingConfirmation { nonce: link.nonce, broker: link.broker, expires_at, request: link.request })
    }

    /// The link, for the user it names (and nobody else).
    pub fn confirmation_for(
        &self,
        caller: &Caller,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<PendingConfirmation, ServiceError> {
        let pending = self.open_link(token, now)?;
        pending.ensure_requester(caller)?;
        Ok(pending)
    }

    /// The user, signed in themselves, confirms the request a broker made for them. From here on
    /// it is the user's request, with their evidence; the audit says which broker asked.
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id))]
    pub async fn confirm_link(
        &self,
        caller: &Caller,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Requested, ServiceError> {
        let pending = self.confirmation_for(caller, token, now)?;
        let key = IdempotencyKey::parse(&format!("confirm-{}", pending.nonce))
            .map_err(|e| ServiceError::Internal(format!("a link's idempotency key: {e}")))?;
        self.confirm_brokered_request(caller, pending.request, &pending.broker, key, now).await
    }
}
