//! The API's answers as the client reads them, for tables and for `--wait`. Lenient on purpose:
//! fields the client does not show are ignored, so a newer Elevate does not break an older
//! client. `--output json` prints the answer itself, not these.

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketView {
    pub system: String,
    pub number: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub approver_id: String,
    /// `Approve` or `Deny`.
    pub decision: String,
    #[serde(default)]
    pub justification: Option<String>,
    pub at: DateTime<Utc>,
    /// `Activation` or `Extension`.
    #[serde(default)]
    pub on: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureView {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionView {
    pub duration: String,
    pub timeout_at: DateTime<Utc>,
    pub min_approvals: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationView {
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    #[serde(default)]
    pub role_name: Option<String>,
    pub scope: String,
    pub rule_id: String,
    pub status: String,
    pub duration: String,
    #[serde(default)]
    pub justification: Option<String>,
    #[serde(default)]
    pub ticket: Option<TicketView>,
    pub requested_at: DateTime<Utc>,
    #[serde(default)]
    pub start_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expiry_limited_by_eligibility: bool,
    #[serde(default)]
    pub approval_timeout_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub min_approvals: Option<u8>,
    #[serde(default)]
    pub approvals: Vec<DecisionView>,
    #[serde(default)]
    pub pending_extension: Option<ExtensionView>,
    #[serde(default)]
    pub failure: Option<FailureView>,
    #[serde(default)]
    pub history: Option<Vec<AuditView>>,
    /// Only on `GET /api/approvals/{id}`.
    #[serde(default)]
    pub can_decide: Option<bool>,
}

impl ActivationView {
    /// The role's built-in name where Elevate knows one, else its id.
    pub fn role(&self) -> &str {
        self.role_name.as_deref().unwrap_or(&self.role_definition_id)
    }

    /// Approvals recorded on the request itself (not on an extension).
    pub fn approvals_given(&self) -> usize {
        self.approvals.iter().filter(|d| d.decision == "Approve" && d.on.as_deref() != Some("Extension")).count()
    }

    /// The latest denial, if any.
    pub fn denial(&self) -> Option<&DecisionView> {
        self.approvals.iter().rev().find(|d| d.decision == "Deny")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EligibilityView {
    pub rule_id: String,
    pub scope: String,
    pub roles: Vec<RoleView>,
    pub max_duration: String,
    #[serde(default)]
    pub require_mfa: bool,
    #[serde(default)]
    pub require_justification: bool,
    #[serde(default)]
    pub require_ticket: bool,
    #[serde(default)]
    pub auth_context: Option<String>,
    #[serde(default)]
    pub approval_required: bool,
    #[serde(default)]
    pub min_approvals: Option<u8>,
    #[serde(default)]
    pub approval_timeout: Option<String>,
    #[serde(default)]
    pub eligible_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ActorView {
    Principal {
        id: String,
    },
    Broker {
        id: String,
        app_id: String,
    },
    System,
    #[serde(other)]
    Other,
}

impl ActorView {
    pub fn describe(&self) -> String {
        match self {
            ActorView::Principal { id } => id.clone(),
            ActorView::Broker { id, app_id } => format!("{id} (broker {app_id})"),
            ActorView::System => "Elevate".into(),
            ActorView::Other => "?".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub activation_id: String,
    pub principal_id: String,
    pub actor: ActorView,
    pub action: String,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub status_before: Option<String>,
    pub status_after: String,
    pub rule_id: String,
    #[serde(default)]
    pub justification: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NeedView {
    /// `mfa`, `authContext`, `justification`, `ticket` (or another a newer Elevate adds).
    pub requirement: String,
    pub message: String,
    /// With `authContext`: the claims request to sign in again with (base64).
    #[serde(default)]
    pub claims: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalTermsView {
    pub min_approvals: u8,
    pub timeout: String,
    #[serde(default)]
    pub approvers: Vec<String>,
}

/// The answer to `POST /api/activations?validateOnly=true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewView {
    pub ready: bool,
    pub would_be: String,
    pub rule_id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    #[serde(default)]
    pub role_name: Option<String>,
    pub scope: String,
    pub duration: String,
    pub start_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub needs: Vec<NeedView>,
    #[serde(default)]
    pub approval: Option<ApprovalTermsView>,
}

/// `GET /api/me`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeView {
    pub principal_id: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub groups_overage: bool,
    #[serde(default)]
    pub mfa: bool,
    #[serde(default)]
    pub auth_contexts: Vec<String>,
    #[serde(default)]
    pub app_only: bool,
    #[serde(default)]
    pub app_id: Option<String>,
}

/// The 202 of a broker's request for a rule that needs the user's own confirmation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmationView {
    pub status: String,
    #[serde(default)]
    pub confirmation_url: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Reads an answer into a view, or says the answer is not what the API promises.
pub fn read<T: serde::de::DeserializeOwned>(
    what: &str,
    value: &serde_json::Value,
) -> Result<T, crate::cli::error::CliError> {
    T::deserialize(value).map_err(|e| {
        crate::cli::error::CliError::unavailable("UnexpectedAnswer", format!("Elevate's answer is not {what}: {e}"))
    })
}
