//! Wire shapes (camelCase JSON) and their conversion to and from domain values. Parsing here
//! names the offending field in every error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::activation::{Activation, ApprovalRecord, Decision, DecisionSubject, State, Status};
use crate::domain::audit::AuditEvent;
use crate::domain::duration::IsoDuration;
use crate::domain::ids::{ActivationId, Justification, PrincipalId, RuleId, Ticket, TicketNumber, TicketSystem};
use crate::domain::policy::Rule;
use crate::domain::scope::Scope;
use crate::service::ports::PageToken;
use crate::service::{
    ActivationInput, AuditFilter, DEFAULT_PAGE, DecisionInput, ExtensionInput, ListFilter, MAX_LIST, PageRequest,
};

use super::error::ApiError;

/// Parses a JSON body into `T`, naming the path of the first problem.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            warp::http::StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            "a JSON body is required",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else {
            format!("invalid body: {inner}")
        };
        let err = ApiError::new(warp::http::StatusCode::BAD_REQUEST, "InvalidRequestBody", message);
        if path == "." { err } else { err.with_target(path) }
    })?;
    de.end().map_err(|_| {
        ApiError::new(warp::http::StatusCode::BAD_REQUEST, "InvalidRequestBody", "trailing data after the JSON body")
    })?;
    Ok(value)
}

fn field<T, E: std::fmt::Display>(name: &str, result: Result<T, E>) -> Result<T, ApiError> {
    result.map_err(|e| ApiError::invalid(name, e))
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        ApiError::invalid(
            name,
            format!("`{}` is not an RFC 3339 time such as `2026-11-25T14:00:00Z`", crate::domain::ids::shorten(value)),
        )
    })
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TicketDto {
    pub system: String,
    pub number: String,
}

/// The body of `POST /api/activations`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActivationRequestDto {
    pub role_definition_id: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
}

impl ActivationRequestDto {
    pub fn into_input(self) -> Result<ActivationInput, ApiError> {
        // The scope says which kind of role the name means (Azure's `Owner`, a group's `owner`).
        let scope = field("scope", Scope::parse(&self.scope))?;
        Ok(ActivationInput {
            principal_id: self
                .principal_id
                .as_deref()
                .map(|p| field("principalId", PrincipalId::parse(p)))
                .transpose()?,
            role_definition_id: field("roleDefinitionId", scope.kind().parse_role(&self.role_definition_id))?,
            scope,
            duration: self.duration.as_deref().map(|d| field("duration", IsoDuration::parse(d))).transpose()?,
            justification: self
                .justification
                .as_deref()
                .map(|j| field("justification", Justification::parse(j)))
                .transpose()?,
            ticket: self
                .ticket
                .map(|t| {
                    Ok::<_, ApiError>(Ticket {
                        system: field("ticket.system", TicketSystem::parse(&t.system))?,
                        number: field("ticket.number", TicketNumber::parse(&t.number))?,
                    })
                })
                .transpose()?,
            start_at: self.start_at.as_deref().map(|s| time("startAt", s)).transpose()?,
            rule_id: self.rule_id.as_deref().map(|r| field("ruleId", RuleId::parse(r))).transpose()?,
        })
    }
}

/// What a confirmation link asks for, shown back on the wire: a request body that would ask for
/// the same again.
impl From<&ActivationInput> for ActivationRequestDto {
    fn from(r: &ActivationInput) -> Self {
        Self {
            // A group's roles by name: their fixed ids are Elevate's own and not taken back.
            role_definition_id: r
                .role_definition_id
                .group_role()
                .map_or_else(|| r.role_definition_id.to_string(), str::to_owned),
            scope: r.scope.to_string(),
            duration: r.duration.map(|d| d.to_string()),
            justification: r.justification.as_ref().map(|j| j.as_str().to_owned()),
            ticket: r.ticket.as_ref().map(|t| TicketDto { system: t.system.to_string(), number: t.number.to_string() }),
            start_at: r.start_at.map(|s| s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            rule_id: r.rule_id.as_ref().map(ToString::to_string),
            principal_id: r.principal_id.map(|p| p.to_string()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtendDto {
    pub duration: String,
    pub justification: Option<String>,
}

impl ExtendDto {
    pub fn into_input(self) -> Result<ExtensionInput, ApiError> {
        Ok(ExtensionInput {
            duration: field("duration", IsoDuration::parse(&self.duration))?,
            justification: self
                .justification
                .as_deref()
                .map(|j| field("justification", Justification::parse(j)))
                .transpose()?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DecisionDto {
    pub decision: String,
    pub justification: String,
    /// Only for form posts from the approval page.
    #[serde(default)]
    pub csrf: Option<String>,
}

impl DecisionDto {
    pub fn into_input(self) -> Result<DecisionInput, ApiError> {
        let decision = match self.decision.as_str() {
            "Approve" | "approve" => Decision::Approve,
            "Deny" | "deny" => Decision::Deny,
            other => {
                return Err(ApiError::invalid(
                    "decision",
                    format!("`{}` is not `Approve` or `Deny`", crate::domain::ids::shorten(other)),
                ));
            }
        };
        Ok(DecisionInput {
            decision,
            justification: field("justification", Justification::parse(&self.justification))?,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketView {
    pub system: String,
    pub number: String,
}

impl From<&Ticket> for TicketView {
    fn from(t: &Ticket) -> Self {
        Self { system: t.system.to_string(), number: t.number.to_string() }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    pub approver_id: String,
    pub decision: Decision,
    pub justification: String,
    pub at: DateTime<Utc>,
    /// `Activation`, or `Extension` for a decision on an extension.
    pub on: &'static str,
}

impl From<&ApprovalRecord> for ApprovalView {
    fn from(r: &ApprovalRecord) -> Self {
        Self {
            approver_id: r.approver_id.to_string(),
            decision: r.decision,
            justification: r.justification.to_string(),
            at: r.at,
            on: match r.subject {
                DecisionSubject::Activation => "Activation",
                DecisionSubject::Extension(_) => "Extension",
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionView {
    pub duration: IsoDuration,
    pub justification: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub timeout_at: DateTime<Utc>,
    pub min_approvals: u8,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureView {
    pub code: String,
    pub message: String,
}

/// The public shape of an activation (design.md).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationView {
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_name: Option<&'static str>,
    pub scope: String,
    pub rule_id: String,
    pub status: &'static str,
    pub duration: IsoDuration,
    pub justification: Option<String>,
    pub ticket: Option<TicketView>,
    pub requested_at: DateTime<Utc>,
    pub start_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `expiresAt` is earlier than asked: eligibility under the rule ends then.
    pub expiry_limited_by_eligibility: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_timeout_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_approvals: Option<u8>,
    pub approvals: Vec<ApprovalView>,
    pub role_assignment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_extension: Option<ExtensionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<AuditEvent>>,
}

impl ActivationView {
    pub fn of(a: &Activation, history: Option<Vec<AuditEvent>>) -> Self {
        let r = a.request();
        let (approval_timeout_at, min_approvals) = match a.state() {
            State::PendingApproval { timeout_at, min_approvals } => (Some(*timeout_at), Some(*min_approvals)),
            _ => (None, r.approval.map(|t| t.min_approvals)),
        };
        let (role_assignment_id, pending_extension) = match a.state() {
            State::Active { role_assignment_id, extension, .. } => (
                Some(role_assignment_id.clone()),
                extension.as_ref().map(|e| ExtensionView {
                    duration: e.additional,
                    justification: e.justification.as_ref().map(ToString::to_string),
                    requested_at: e.requested_at,
                    timeout_at: e.timeout_at,
                    min_approvals: e.min_approvals,
                }),
            ),
            _ => (None, None),
        };
        let failure = match a.state() {
            State::Failed { failure, .. } => {
                Some(FailureView { code: failure.code.clone(), message: failure.message.clone() })
            }
            _ => None,
        };
        ActivationView {
            id: a.id().to_string(),
            principal_id: r.principal_id.to_string(),
            role_definition_id: r.role_definition_id.to_string(),
            role_name: r.role_definition_id.built_in_name(),
            scope: r.scope.to_string(),
            rule_id: r.rule_id.to_string(),
            status: a.status().as_str(),
            duration: r.duration,
            justification: r.justification.as_ref().map(ToString::to_string),
            ticket: r.ticket.as_ref().map(TicketView::from),
            requested_at: r.requested_at,
            start_at: a.starts_at(),
            expires_at: a.expires_at(),
            expiry_limited_by_eligibility: a.expiry_limit().is_some(),
            approval_timeout_at,
            min_approvals,
            approvals: a.approvals().iter().map(ApprovalView::from).collect(),
            role_assignment_id,
            pending_extension,
            failure,
            history,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EligibilityView {
    pub rule_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub scope: String,
    pub roles: Vec<RoleView>,
    pub max_duration: IsoDuration,
    pub require_mfa: bool,
    pub require_justification: bool,
    pub require_ticket: bool,
    pub auth_context: Option<String>,
    pub approval_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_approvals: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<IsoDuration>,
    pub eligible_until: Option<DateTime<Utc>>,
}

impl From<&Rule> for EligibilityView {
    fn from(rule: &Rule) -> Self {
        Self {
            rule_id: rule.id.to_string(),
            description: rule.description.clone(),
            scope: rule.scope.to_string(),
            roles: rule.roles.iter().map(|r| RoleView { id: r.to_string(), name: r.built_in_name() }).collect(),
            max_duration: rule.max_duration,
            require_mfa: rule.require_mfa,
            require_justification: rule.require_justification,
            require_ticket: rule.require_ticket,
            auth_context: rule.auth_context.as_ref().map(ToString::to_string),
            approval_required: rule.approval.is_some(),
            min_approvals: rule.approval.as_ref().map(|a| a.min_approvals),
            approval_timeout: rule.approval.as_ref().map(|a| a.timeout),
            eligible_until: rule.expires_at,
        }
    }
}

#[derive(Serialize)]
pub struct List<T: Serialize> {
    pub value: Vec<T>,
}

/// A page of a list, with the link to the next one when more may follow.
#[derive(Serialize)]
pub struct Paged<T: Serialize> {
    pub value: Vec<T>,
    #[serde(rename = "nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// Query parameters of `GET /api/activations`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub mine: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "$top")]
    pub top: Option<String>,
    #[serde(rename = "$skiptoken")]
    pub skiptoken: Option<String>,
}

impl ListQuery {
    const PATH: &'static str = "/api/activations";

    pub fn filter(&self) -> Result<ListFilter, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    ApiError::invalid("status", format!("`{}` is not a status", crate::domain::ids::shorten(s)))
                })
            })
            .transpose()?;
        Ok(ListFilter { status, mine: parse_bool("mine", self.mine.as_deref(), true)? })
    }

    pub fn page(&self) -> Result<PageRequest, ApiError> {
        page_request(Self::PATH, self.limit.as_deref(), self.top.as_deref(), self.skiptoken.as_deref())
    }

    /// The link to the page after `page` (the filter as asked, the page size, the token).
    pub fn next_link(
        &self,
        public_url: &str,
        top: usize,
        next: Option<&PageToken>,
    ) -> Result<Option<String>, ApiError> {
        let filter = self.filter()?;
        let status = filter.status.map(Status::as_str);
        let mine = if filter.mine { "true" } else { "false" };
        Ok(next_link(public_url, Self::PATH, &[("status", status), ("mine", Some(mine))], top, next))
    }
}

/// Query parameters of `GET /api/approvals`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsQuery {
    pub status: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "$top")]
    pub top: Option<String>,
    #[serde(rename = "$skiptoken")]
    pub skiptoken: Option<String>,
}

impl ApprovalsQuery {
    const PATH: &'static str = "/api/approvals";

    /// Only `Pending` is a status the inbox knows.
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        if let Some(s) = self.status.as_deref().filter(|s| !s.eq_ignore_ascii_case("Pending")) {
            return Err(ApiError::invalid(
                "status",
                format!("`{}` is not supported; use `Pending`", crate::domain::ids::shorten(s)),
            ));
        }
        page_request(Self::PATH, self.limit.as_deref(), self.top.as_deref(), self.skiptoken.as_deref())
    }

    pub fn next_link(&self, public_url: &str, top: usize, next: Option<&PageToken>) -> Option<String> {
        let status = self.status.as_ref().map(|_| "Pending");
        next_link(public_url, Self::PATH, &[("status", status)], top, next)
    }
}

/// Query parameters of `GET /api/audit`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditQueryDto {
    pub activation_id: Option<String>,
    pub principal_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub role_definition_id: Option<String>,
    pub scope: Option<String>,
    pub action: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "$top")]
    pub top: Option<String>,
    #[serde(rename = "$skiptoken")]
    pub skiptoken: Option<String>,
}

impl AuditQueryDto {
    const PATH: &'static str = "/api/audit";

    pub fn filter(&self) -> Result<AuditFilter, ApiError> {
        let activation_id = self
            .activation_id
            .as_deref()
            .map(|a| ActivationId::parse(a).map_err(|e| ApiError::invalid("activationId", e)))
            .transpose()?;
        let principal_id = self
            .principal_id
            .as_deref()
            .map(|p| PrincipalId::parse(p).map_err(|e| ApiError::invalid("principalId", e)))
            .transpose()?;
        let since = self.since.as_deref().map(|s| time("since", s)).transpose()?;
        let until = self.until.as_deref().map(|s| time("until", s)).transpose()?;
        if let (Some(since), Some(until)) = (since, until)
            && until < since
        {
            return Err(ApiError::invalid("until", "lies before `since`"));
        }
        let scope = self.scope.as_deref().map(|s| field("scope", Scope::parse(s))).transpose()?;
        let role_definition_id =
            self.role_definition_id.as_deref().map(|r| audit_role(r, scope.as_ref())).transpose()?;
        let action = self
            .action
            .as_deref()
            .map(|a| {
                crate::domain::activation::Action::parse(a).ok_or_else(|| {
                    ApiError::invalid("action", format!("`{}` is not an audit action", crate::domain::ids::shorten(a)))
                })
            })
            .transpose()?;
        Ok(AuditFilter { activation_id, principal_id, since, until, role_definition_id, scope, action })
    }

    /// The same query, as query-string pairs (for the next page and the exports).
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("activationId", self.activation_id.as_deref()),
            ("principalId", self.principal_id.as_deref()),
            ("since", self.since.as_deref()),
            ("until", self.until.as_deref()),
            ("roleDefinitionId", self.role_definition_id.as_deref()),
            ("scope", self.scope.as_deref()),
            ("action", self.action.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect()
    }

    pub fn page(&self) -> Result<PageRequest, ApiError> {
        page_request(Self::PATH, self.limit.as_deref(), self.top.as_deref(), self.skiptoken.as_deref())
    }

    pub fn next_link(&self, public_url: &str, top: usize, next: Option<&PageToken>) -> Option<String> {
        let params: Vec<(&str, Option<&str>)> = self.pairs().into_iter().map(|(k, v)| (k, Some(v))).collect();
        next_link(public_url, Self::PATH, &params, top, next)
    }
}

/// A role to search the audit for: read in the scope's kind when a scope is given, else in the
/// first kind that knows the name (Azure, then directory, then group).
fn audit_role(value: &str, scope: Option<&Scope>) -> Result<crate::domain::ids::RoleDefinitionId, ApiError> {
    use crate::domain::scope::ScopeKind;
    match scope {
        Some(scope) => field("roleDefinitionId", scope.kind().parse_role(value)),
        None => {
            let first = ScopeKind::Azure.parse_role(value);
            let found = first
                .clone()
                .or_else(|_| ScopeKind::Directory.parse_role(value))
                .or_else(|_| ScopeKind::Group.parse_role(value));
            field("roleDefinitionId", found.or(first))
        }
    }
}

/// The audit list's continuation, opaque as the API's `$skiptoken` (the portal's pages use it).
pub fn write_audit_skiptoken(token: &PageToken) -> String {
    write_skiptoken(AuditQueryDto::PATH, token)
}

pub fn read_audit_skiptoken(raw: &str) -> Result<PageToken, ApiError> {
    read_skiptoken(AuditQueryDto::PATH, raw)
}

/// A page size: a whole number from 1 to `MAX_LIST`.
fn page_size(name: &str, value: &str) -> Result<usize, ApiError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIST).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(name, format!("must be a whole number from 1 to {MAX_LIST}"))),
    }
}

/// `$top` (or its older name `limit`) and `$skiptoken` of the list at `path`.
fn page_request(
    path: &str,
    limit: Option<&str>,
    top: Option<&str>,
    skiptoken: Option<&str>,
) -> Result<PageRequest, ApiError> {
    let limit = limit.map(|v| page_size("limit", v)).transpose()?;
    let top = top.map(|v| page_size("$top", v)).transpose()?;
    let top = match (top, limit) {
        (Some(t), Some(l)) if t != l => {
            return Err(ApiError::invalid(
                "$top",
                "and `limit` (its older name) ask for different page sizes; give one",
            ));
        }
        (t, l) => t.or(l).unwrap_or(DEFAULT_PAGE),
    };
    let after = skiptoken.map(|t| read_skiptoken(path, t)).transpose()?;
    Ok(PageRequest { top, after })
}

/// A `$skiptoken` is the store's page token with the list's path, base64url: opaque to clients,
/// and refused by any other list.
fn write_skiptoken(path: &str, token: &PageToken) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{path}\n{}", token.as_str()))
}

fn read_skiptoken(path: &str, raw: &str) -> Result<PageToken, ApiError> {
    use base64::Engine as _;
    let refuse = || ApiError::invalid("$skiptoken", "is not a continuation of this list; start again without it");
    if raw.len() > 2048 {
        return Err(refuse());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).map_err(|_| refuse())?;
    let text = String::from_utf8(bytes).map_err(|_| refuse())?;
    let token = text.strip_prefix(path).and_then(|t| t.strip_prefix('\n')).ok_or_else(refuse)?;
    if token.is_empty() || token.chars().any(char::is_control) {
        return Err(refuse());
    }
    Ok(PageToken::new(token.to_owned()))
}

/// `{public URL}{path}?{params}&$top=…&$skiptoken=…`, when there is a next page.
fn next_link(
    public_url: &str,
    path: &str,
    params: &[(&str, Option<&str>)],
    top: usize,
    next: Option<&PageToken>,
) -> Option<String> {
    let token = next?;
    let mut query: Vec<String> =
        params.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={}", crate::endpoint::encode_component(v)))).collect();
    query.push(format!("$top={top}"));
    query.push(format!("$skiptoken={}", write_skiptoken(path, token)));
    Some(format!("{public_url}{path}?{}", query.join("&")))
}

pub fn parse_query<T: serde::de::DeserializeOwned + Default>(raw: &str) -> Result<T, ApiError> {
    if raw.is_empty() {
        return Ok(T::default());
    }
    serde_urlencoded::from_str(raw).map_err(|e| {
        ApiError::new(warp::http::StatusCode::BAD_REQUEST, "InvalidQuery", format!("invalid query string: {e}"))
    })
}

pub fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    time(name, value)
}

pub fn parse_bool(name: &str, value: Option<&str>, default: bool) -> Result<bool, ApiError> {
    match value {
        None => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => Err(ApiError::invalid(name, "must be `true` or `false`")),
    }
}

/// One unmet term in a `validateOnly` answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NeedView {
    /// `authContext`, `mfa`, `justification` or `ticket`.
    pub requirement: &'static str,
    pub message: String,
    /// The request field that meets it, where one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_context: Option<String>,
    /// For `authContext`: the claims request to sign in again with (base64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<String>,
}

impl NeedView {
    pub fn of(v: &crate::domain::policy::Violation) -> Self {
        use crate::domain::policy::Violation as V;
        let (requirement, target, auth_context) = match v {
            V::AuthContextRequired { context, .. } => ("authContext", None, Some(context.to_string())),
            V::MfaRequired(_) => ("mfa", None, None),
            V::JustificationRequired(_) => ("justification", Some("justification"), None),
            V::TicketRequired(_) => ("ticket", Some("ticket"), None),
            _ => ("policy", None, None),
        };
        Self {
            requirement,
            message: v.to_string(),
            target,
            claims: auth_context.as_deref().map(super::error::encoded_claims),
            auth_context,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalTermsView {
    pub min_approvals: u8,
    pub timeout: IsoDuration,
    /// `user:{id}` and `group:{id}` entries of the rule.
    pub approvers: Vec<String>,
}

/// The answer to `POST /api/activations?validateOnly=true`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewView {
    pub validate_only: bool,
    /// Whether the request would be accepted as it stands (`needs` is empty).
    pub ready: bool,
    pub would_be: &'static str,
    pub rule_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_description: Option<String>,
    pub principal_id: String,
    pub role_definition_id: String,
    pub role_name: Option<&'static str>,
    pub scope: String,
    pub duration: IsoDuration,
    pub start_at: DateTime<Utc>,
    /// When access would end if it started at `startAt`; an approval moves both.
    pub expires_at: DateTime<Utc>,
    pub needs: Vec<NeedView>,
    pub approval: Option<ApprovalTermsView>,
}

impl From<&crate::service::Preview> for PreviewView {
    fn from(p: &crate::service::Preview) -> Self {
        Self {
            validate_only: true,
            ready: p.needs.is_empty(),
            would_be: p.would_be.as_str(),
            rule_id: p.rule.id.to_string(),
            rule_description: p.rule.description.clone(),
            principal_id: p.principal_id.to_string(),
            role_definition_id: p.role_definition_id.to_string(),
            role_name: p.role_definition_id.built_in_name(),
            scope: p.scope.to_string(),
            duration: p.duration,
            start_at: p.start,
            expires_at: p.ends,
            needs: p.needs.iter().map(NeedView::of).collect(),
            approval: p.rule.approval.as_ref().map(|a| ApprovalTermsView {
                min_approvals: a.min_approvals,
                timeout: a.timeout,
                approvers: a.approvers.iter().map(ToString::to_string).collect(),
            }),
        }
    }
}

/// `GET /api/me`: who the credentials say the caller is, as Elevate reads them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeView {
    pub principal_id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    pub app_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub groups_overage: bool,
    pub mfa: bool,
    pub auth_contexts: Vec<String>,
}

impl From<&crate::service::ports::Caller> for MeView {
    fn from(c: &crate::service::ports::Caller) -> Self {
        Self {
            principal_id: c.principal_id.to_string(),
            tenant_id: c.tenant_id.to_string(),
            name: c.name.as_ref().map(|n| n.as_str().to_owned()),
            app_only: c.app_only,
            app_id: c.app_id.clone(),
            roles: c.roles.clone(),
            groups: c.groups.iter().map(ToString::to_string).collect(),
            groups_overage: c.groups_overage,
            mfa: c.mfa,
            auth_contexts: c.auth_contexts.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A governance alert on the wire (`GET /api/alerts`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub id: String,
    pub kind: &'static str,
    pub severity: crate::domain::governance::Severity,
    pub status: &'static str,
    pub title: String,
    pub items: Vec<String>,
    pub remediation: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<&crate::service::Alert> for AlertView {
    fn from(a: &crate::service::Alert) -> Self {
        Self {
            id: a.finding.id.clone(),
            kind: a.finding.kind.as_str(),
            severity: a.finding.severity,
            status: a.status.as_str(),
            title: a.finding.title.clone(),
            items: a.finding.items.clone(),
            remediation: a.finding.remediation.clone(),
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            resolved_at: a.resolved_at,
        }
    }
}
