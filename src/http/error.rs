//! The only place that picks HTTP status codes and stable error codes.
//!
//! Errors use the ARM envelope `{"error":{"code","message","target"?,"details"?}}`. 5xx bodies
//! are opaque (a reference id); the cause goes to the log under the same reference.

use base64::Engine;
use serde::Serialize;
use warp::http::StatusCode;

use crate::domain::activation::TransitionError;
use crate::domain::approver::ApproverDenied;
use crate::domain::policy::{Deny, Refusal, Violation};
use crate::domain::review::ReviewRefusal;
use crate::service::ports::{AccessError, AuthError, StoreError};
use crate::service::{LinkRefusal, ServiceError};

#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// An error answer. Boxed: it travels through many `Result`s and is rarely built.
#[derive(Debug, Clone)]
pub struct ApiError(Box<ApiErrorParts>);

impl std::ops::Deref for ApiError {
    type Target = ApiErrorParts;
    fn deref(&self) -> &ApiErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorParts {
        &mut self.0
    }
}

#[derive(Debug, Clone)]
pub struct ApiErrorParts {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<ErrorDetail>,
    /// A `WWW-Authenticate` value for 401s.
    pub challenge: Option<String>,
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [ErrorDetail],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(ApiErrorParts {
            status,
            code,
            message: message.into(),
            target: None,
            details: Vec::new(),
            challenge: None,
            retry_after: None,
        }))
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// 400 for a field that could not be parsed.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidField", format!("`{field}` {why}")).with_target(field)
    }

    /// 415: a body of a media type this route does not take (`accepted` names those it does).
    pub fn unsupported_media_type(accepted: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("send the body as {accepted} with a matching `Content-Type`"),
        )
        .with_target("Content-Type")
    }

    /// 403: a state change started by a page of another site (`Origin`, `Sec-Fetch-Site`).
    pub fn cross_origin(origin: &str) -> Self {
        let shown: String = origin.chars().take(100).collect();
        Self::new(
            StatusCode::FORBIDDEN,
            "CrossOriginRequest",
            format!(
                "a change requested from `{shown}` is refused: only Elevate's own pages (ELEVATE_PUBLIC_URL) may post to it"
            ),
        )
        .with_target("Origin")
    }

    /// 403: a change authenticated by a browser session without the form's security token.
    pub fn csrf_invalid() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "CsrfTokenInvalid",
            "the form is missing its security token or it does not match; reload the page and try again",
        )
        .with_target("csrf")
    }

    pub fn not_found_route(method: &str, path: &str) -> Self {
        let shown: String = path.chars().take(200).collect();
        Self::new(StatusCode::NOT_FOUND, "RouteNotFound", format!("no route for {method} `{shown}`"))
    }

    /// An opaque 5xx: the cause is logged with a reference the client can quote.
    pub fn internal(status: StatusCode, code: &'static str, cause: &dyn std::fmt::Display) -> Self {
        let reference = uuid::Uuid::new_v4();
        tracing::error!(%reference, code, error = %cause, "request failed");
        Self::new(
            status,
            code,
            format!("the request could not be completed; quote reference {reference} to your administrator"),
        )
    }

    pub fn body(&self) -> Vec<u8> {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                target: self.target.as_deref(),
                details: &self.details,
            },
        };
        serde_json::to_vec(&body)
            .unwrap_or_else(|_| br#"{"error":{"code":"InternalError","message":"error"}}"#.to_vec())
    }

    fn unauthorized(code: &'static str, message: impl Into<String>, challenge: String) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, code, message);
        e.challenge = Some(challenge);
        e
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => ApiError::unauthorized(
                "Unauthenticated",
                "sign in: send `Authorization: Bearer <token>`",
                r#"Bearer realm="elevate""#.into(),
            ),
            AuthError::Invalid(why) => ApiError::unauthorized(
                "InvalidToken",
                format!("the credentials were refused: {why}"),
                r#"Bearer realm="elevate", error="invalid_token""#.into(),
            ),
            AuthError::Unavailable(why) => {
                ApiError::internal(StatusCode::SERVICE_UNAVAILABLE, "IdentityProviderUnavailable", &why)
            }
        }
    }
}

/// The claims challenge Entra clients understand for a missing authentication context.
pub fn claims_challenge(context: &str) -> String {
    format!(r#"Bearer realm="elevate", error="insufficient_claims", claims="{}""#, encoded_claims(context))
}

/// The claims request for `context`, base64 as a challenge carries it (and `az login
/// --claims-challenge` takes it).
pub fn encoded_claims(context: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(claims_request(context))
}

/// The claims request for `context` as JSON (what a sign-in page passes on).
pub fn claims_request(context: &str) -> String {
    serde_json::json!({"access_token": {"acrs": {"essential": true, "value": context}}}).to_string()
}

fn mfa_challenge() -> String {
    r#"Bearer realm="elevate", error="insufficient_user_authentication", error_description="multi-factor authentication required""#.into()
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            ServiceError::NotFound(_) => ApiError::new(S::NOT_FOUND, "ActivationNotFound", message),
            ServiceError::Forbidden(_) => ApiError::new(S::FORBIDDEN, "Forbidden", message),
            ServiceError::BrokerNotAllowed(_) => {
                ApiError::new(S::FORBIDDEN, "BrokerNotAllowed", message).with_target("principalId")
            }
            ServiceError::UserConfirmationRequired => ApiError::new(S::FORBIDDEN, "UserConfirmationRequired", message),
            ServiceError::Refused(Refusal::Denied(deny)) => match deny {
                Deny::RuleNotFound(_) => ApiError::new(S::BAD_REQUEST, "RuleNotFound", message).with_target("ruleId"),
                Deny::NotEligible { .. } => ApiError::new(S::FORBIDDEN, "NotEligible", message),
                Deny::RuleDoesNotApply { .. } => {
                    ApiError::new(S::FORBIDDEN, "RuleDoesNotApply", message).with_target("ruleId")
                }
                Deny::EligibilityExpired { .. } => ApiError::new(S::FORBIDDEN, "EligibilityExpired", message),
                Deny::LeftGroup { .. } => ApiError::new(S::FORBIDDEN, "NotEligible", message),
                Deny::Suspended { .. } => ApiError::new(S::FORBIDDEN, "EligibilitySuspended", message),
            },
            ServiceError::Refused(Refusal::Violation(v)) => match &v {
                Violation::MfaRequired(_) => ApiError::unauthorized("MfaRequired", message, mfa_challenge()),
                Violation::AuthContextRequired { context, .. } => {
                    ApiError::unauthorized("AuthContextRequired", message, claims_challenge(context.as_str()))
                }
                Violation::DurationTooLong { .. }
                | Violation::DurationTooShort { .. }
                | Violation::ExtensionTooLong { .. } => {
                    ApiError::new(S::BAD_REQUEST, "PolicyViolation", message).with_target("duration")
                }
                Violation::JustificationRequired(_) => {
                    ApiError::new(S::BAD_REQUEST, "PolicyViolation", message).with_target("justification")
                }
                Violation::TicketRequired(_) => {
                    ApiError::new(S::BAD_REQUEST, "PolicyViolation", message).with_target("ticket")
                }
                Violation::StartInPast(_) | Violation::StartTooFar(_) => {
                    ApiError::new(S::BAD_REQUEST, "PolicyViolation", message).with_target("startAt")
                }
                Violation::NotAssignableAtScope { .. } => {
                    ApiError::new(S::BAD_REQUEST, "PolicyViolation", message).with_target("scope")
                }
                Violation::OutlastsEligibility { .. } => {
                    ApiError::new(S::BAD_REQUEST, "PolicyViolation", message).with_target("duration")
                }
            },
            ServiceError::ApproverDenied(d) => match d {
                ApproverDenied::SelfApproval => ApiError::new(S::FORBIDDEN, "SelfApprovalForbidden", message),
                ApproverDenied::NotAnApprover(_) => ApiError::new(S::FORBIDDEN, "NotAnApprover", message),
                ApproverDenied::MfaRequired(_) => ApiError::unauthorized("MfaRequired", message, mfa_challenge()),
                ApproverDenied::RequesterNoLongerEligible(_) => {
                    ApiError::new(S::CONFLICT, "RequesterNoLongerEligible", message)
                }
                ApproverDenied::NothingPending => ApiError::new(S::CONFLICT, "NotPending", message),
                ApproverDenied::AlreadyDecided => ApiError::new(S::CONFLICT, "AlreadyDecided", message),
            },
            ServiceError::Transition(t) => match t {
                TransitionError::WrongStatus { .. } => ApiError::new(S::CONFLICT, "InvalidState", message),
                TransitionError::ApprovalWindowClosed(_) => ApiError::new(S::CONFLICT, "ApprovalTimedOut", message),
                TransitionError::AlreadyDecided => ApiError::new(S::CONFLICT, "AlreadyDecided", message),
                TransitionError::ExtensionPending => ApiError::new(S::CONFLICT, "ExtensionPending", message),
                TransitionError::NoExtensionPending => ApiError::new(S::CONFLICT, "NotPending", message),
                TransitionError::NotYetDue(_) => ApiError::new(S::CONFLICT, "InvalidState", message),
                TransitionError::EligibilityEndsTooSoon(_) => {
                    ApiError::new(S::CONFLICT, "EligibilityEndsTooSoon", message)
                }
            },
            ServiceError::OpenActivationExists(id) => {
                let mut e = ApiError::new(S::CONFLICT, "ActivationAlreadyOpen", message);
                e.details.push(ErrorDetail {
                    code: "OpenActivation".into(),
                    message: id.to_string(),
                    target: Some("id".into()),
                });
                e
            }
            ServiceError::TooManyOpenRequests { .. } => {
                ApiError::new(S::TOO_MANY_REQUESTS, "TooManyOpenRequests", message)
            }
            ServiceError::InvalidPageToken => ApiError::invalid("$skiptoken", message),
            ServiceError::IdempotencyKeyReused => {
                ApiError::new(S::CONFLICT, "IdempotencyKeyReused", message).with_target("Idempotency-Key")
            }
            ServiceError::RoleAlreadyAssigned { activation, .. } => {
                let mut e = ApiError::new(S::CONFLICT, "RoleAssignmentExists", message);
                e.details.push(ErrorDetail {
                    code: "FailedActivation".into(),
                    message: activation.to_string(),
                    target: Some("id".into()),
                });
                e
            }
            ServiceError::Contention => {
                let mut e = ApiError::new(S::CONFLICT, "ConcurrentModification", message);
                e.retry_after = Some(1);
                e
            }
            ServiceError::RevocationFailed(cause) => {
                tracing::error!(error = %cause, "revocation failed");
                let mut e = ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "RevocationFailed",
                    "access could not be revoked right now; the activation is unchanged and still expires on time; try again",
                );
                e.retry_after = Some(30);
                e
            }
            ServiceError::Access(cause) => match cause {
                AccessError::Transient(_) | AccessError::PrincipalNotFound(_) => {
                    let mut e = ApiError::internal(S::SERVICE_UNAVAILABLE, "ProviderUnavailable", &cause);
                    e.retry_after = Some(30);
                    e
                }
                AccessError::Forbidden { .. }
                | AccessError::Permanent(_)
                | AccessError::Unconfirmed(_)
                | AccessError::AlreadyAssigned { .. } => ApiError::internal(S::BAD_GATEWAY, "ProviderError", &cause),
            },
            ServiceError::Link(refusal) => match refusal {
                LinkRefusal::Invalid => ApiError::new(S::BAD_REQUEST, "InvalidConfirmationLink", message),
                LinkRefusal::Expired => ApiError::new(S::GONE, "ConfirmationLinkExpired", message),
                LinkRefusal::NotTheRequester => ApiError::new(S::FORBIDDEN, "NotTheRequester", message),
                LinkRefusal::TooLarge => ApiError::new(S::BAD_REQUEST, "RequestTooLargeForConfirmation", message)
                    .with_target("justification"),
            },
            ServiceError::CampaignNotFound(_) => ApiError::new(S::NOT_FOUND, "CampaignNotFound", message),
            ServiceError::ReviewItemNotFound { .. } => ApiError::new(S::NOT_FOUND, "ReviewItemNotFound", message),
            ServiceError::SuspensionNotFound(_) => ApiError::new(S::NOT_FOUND, "SuspensionNotFound", message),
            ServiceError::Review(refusal) => match refusal {
                ReviewRefusal::Ended(_) => ApiError::new(S::CONFLICT, "CampaignEnded", message),
                ReviewRefusal::NotReviewer => ApiError::new(S::FORBIDDEN, "NotReviewer", message),
                ReviewRefusal::OwnEligibility => ApiError::new(S::FORBIDDEN, "OwnEligibility", message),
            },
            ServiceError::Internal(cause) => ApiError::internal(S::INTERNAL_SERVER_ERROR, "InternalError", &cause),
            ServiceError::Store(cause) => match cause {
                StoreError::Unavailable(_) => {
                    let mut e = ApiError::internal(S::SERVICE_UNAVAILABLE, "StoreUnavailable", &cause);
                    e.retry_after = Some(5);
                    e
                }
                StoreError::Conflict => ApiError::new(
                    S::CONFLICT,
                    "ConcurrentModification",
                    "what this request changes was changed by another meanwhile; read it again and retry",
                ),
                StoreError::TooLarge(detail) => ApiError::new(
                    S::PAYLOAD_TOO_LARGE,
                    "StoreLimitExceeded",
                    format!("the request is too large to store: {detail}"),
                ),
                StoreError::OpenActivationExists(_)
                | StoreError::TooManyOpen { .. }
                | StoreError::InvalidPageToken(_)
                | StoreError::IdempotencyKeyTaken
                | StoreError::Duplicate(_)
                | StoreError::Corrupt(_) => ApiError::internal(S::INTERNAL_SERVER_ERROR, "InternalError", &cause),
            },
        }
    }
}
