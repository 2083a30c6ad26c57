//! The `arm` provider: Azure RBAC role assignments through Azure Resource Manager REST,
//! api-version 2022-04-01 (azure-spec §3).
//!
//! Names are deterministic (UUIDv5 of the activation id), so a retried PUT converges on one
//! assignment. The same role for the same principal at the same scope under another name is
//! standing access Elevate did not grant: it is reported and never deleted. Elevate deletes only
//! by its own names, and follows `nextLink` only to the endpoint it was configured with (the
//! bearer token must never travel elsewhere).

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{Method, Url};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::adapters::access::transient;
use crate::adapters::azure::{AzureClient, Reply, RetryPolicy};
use crate::domain::ids::{PrincipalId, RoleDefinitionId};
use crate::domain::scope::{Scope, ScopeKind, ScopeLevel};
use crate::service::ports::{AccessError, AccessProvider, Assignment, AssignmentSpec, Grant, Listed, parse_marker};

pub const API_VERSION: &str = "2022-04-01";
pub const TOKEN_SCOPE: &str = "https://management.azure.com/.default";
/// More pages than any real listing has (ARM pages hold hundreds; a subscription holds at most
/// 4,000 assignments): a server that never stops paging is not followed forever.
const MAX_PAGES: usize = 1_000;

pub struct ArmAccessProvider {
    client: AzureClient,
    /// Scheme, host and port, no trailing slash.
    endpoint: String,
}

#[derive(Deserialize)]
struct WireAssignment {
    id: String,
    name: String,
    properties: WireProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireProperties {
    role_definition_id: String,
    principal_id: String,
    scope: String,
    description: Option<String>,
}

#[derive(Deserialize)]
struct WirePage {
    value: Vec<WireAssignment>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    error: WireErrorBody,
}

#[derive(Deserialize)]
struct WireErrorBody {
    code: String,
    message: String,
}

fn unexpected(what: &str, detail: impl std::fmt::Display) -> AccessError {
    AccessError::Permanent(format!("{what}: unexpected answer from ARM: {detail}"))
}

impl WireAssignment {
    fn into_assignment(self) -> Result<Assignment, String> {
        Ok(Assignment {
            name: Uuid::try_parse(&self.name).map_err(|e| format!("name `{}`: {e}", self.name))?,
            scope: Scope::parse(&self.properties.scope).map_err(|e| format!("scope: {e}"))?,
            principal_id: PrincipalId::parse(&self.properties.principal_id).map_err(|e| format!("principalId: {e}"))?,
            role_definition_id: RoleDefinitionId::parse(&self.properties.role_definition_id)
                .map_err(|e| format!("roleDefinitionId: {e}"))?,
            description: self.properties.description,
            id: self.id,
        })
    }
}

/// The `{code, message}` of an ARM error envelope, or the bare status.
fn error_of(reply: &Reply) -> (String, String) {
    match serde_json::from_slice::<WireError>(&reply.body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (format!("HTTP{}", reply.status), String::from_utf8_lossy(&reply.body).chars().take(300).collect()),
    }
}

/// The existing assignment's name from a `RoleAssignmentExists` message: "… The ID of the
/// existing role assignment is 716c4d159bc8476da3c16ccb70082517." (32 hex digits, no dashes).
fn existing_name(message: &str) -> Option<Uuid> {
    let last = message.trim().trim_end_matches('.').rsplit(' ').next()?;
    if last.len() == 32 && last.bytes().all(|b| b.is_ascii_hexdigit()) { Uuid::try_parse(last).ok() } else { None }
}

/// The role definition id to send for an assignment at `scope`: subscription-level below a
/// subscription, tenant-level (built-in roles) at a management group.
fn role_definition_path(scope: &Scope, role: RoleDefinitionId) -> Result<String, AccessError> {
    match scope.level() {
        ScopeLevel::ManagementGroup => Ok(format!("/providers/Microsoft.Authorization/roleDefinitions/{role}")),
        ScopeLevel::Subscription | ScopeLevel::ResourceGroup | ScopeLevel::Resource => {
            let subscription = scope.as_str().split('/').take(3).collect::<Vec<_>>().join("/");
            Ok(format!("{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"))
        }
        ScopeLevel::Directory | ScopeLevel::AdministrativeUnit | ScopeLevel::Group => Err(not_azure(scope)),
    }
}

/// A scope of another kind reached the ARM provider: a routing bug, refused before any call.
fn not_azure(scope: &Scope) -> AccessError {
    AccessError::Permanent(format!("`{scope}` is not an Azure RBAC scope; ARM cannot grant it"))
}

impl ArmAccessProvider {
    /// `endpoint` is ARM's base URL (`https://management.azure.com`), already checked by
    /// configuration (https, or plain http on loopback only).
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>, retry: RetryPolicy) -> Result<Self, AccessError> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let parsed =
            Url::parse(&endpoint).map_err(|e| AccessError::Permanent(format!("ARM endpoint `{endpoint}`: {e}")))?;
        if parsed.path() != "/" || parsed.query().is_some() {
            return Err(AccessError::Permanent(format!("ARM endpoint `{endpoint}` must be a base URL without a path")));
        }
        let client = AzureClient::new(credential, TOKEN_SCOPE, retry).map_err(transient)?;
        Ok(Self { client, endpoint })
    }

    /// Whether ARM's throttling currently holds every worker back.
    pub fn is_throttled(&self) -> bool {
        self.client.is_throttled()
    }

    fn url(&self, path_and_query: &str) -> Result<Url, AccessError> {
        Url::parse(&format!("{}{path_and_query}", self.endpoint))
            .map_err(|e| AccessError::Permanent(format!("cannot form an ARM URL: {e}")))
    }

    fn assignment_url(&self, scope: &Scope, name: Uuid) -> Result<Url, AccessError> {
        if scope.kind() != ScopeKind::Azure {
            return Err(not_azure(scope));
        }
        self.url(&format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={API_VERSION}",
            scope.as_str()
        ))
    }

    /// Whether a `nextLink` stays on our endpoint (same scheme, host and port).
    fn same_origin(&self, link: &Url) -> bool {
        Url::parse(&self.endpoint).is_ok_and(|base| base.origin() == link.origin())
    }

    /// Maps an answer that is not success for this operation.
    fn refusal(reply: &Reply, what: &str, role: Option<RoleDefinitionId>, scope: &Scope) -> AccessError {
        let (code, message) = error_of(reply);
        match (reply.status, code.as_str()) {
            (403, _) => AccessError::Forbidden {
                role: role.map_or_else(
                    || "(any)".to_owned(),
                    |r| r.built_in_name().map_or_else(|| r.to_string(), |n| format!("{n} ({r})")),
                ),
                scope: scope.as_str().to_owned(),
                message: format!("{code}: {message}"),
            },
            (400, "PrincipalNotFound") => AccessError::PrincipalNotFound(message),
            // An expired or rejected token: a fresh one may work.
            (401, _) => AccessError::Transient(format!("{what}: ARM refused the token ({code})")),
            // Past the client's own retries, or a server error it does not retry: try again later.
            (408 | 429 | 500..=599, _) => {
                AccessError::Transient(format!("{what}: ARM answered {} {code}", reply.status))
            }
            (status, _) => AccessError::Permanent(format!("{what}: ARM answered {status} {code}: {message}")),
        }
    }

    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Reply, AccessError> {
        self.client.send(method, url, body, what).await.map_err(transient)
    }

    /// Lists the assignments at or below `scope` that `keep` keeps, following `nextLink` to the
    /// end. ARM lists what lies above the scope too (inherited from management groups and the
    /// root `/`): those are dropped, whatever they hold.
    ///
    /// All or nothing: a page that fails (a 404 on a later page is transient: the listing must
    /// start again), a `nextLink` off our endpoint or repeating an earlier page, more than
    /// `MAX_PAGES` pages, or a kept entry at or below `scope` that cannot be read is an error.
    /// Entries `keep` drops are not read further, so a foreign entry Elevate cannot parse fails
    /// `Keep::All` listings only.
    async fn list_below(&self, scope: &Scope, keep: Keep) -> Result<Vec<Listed>, AccessError> {
        if scope.kind() != ScopeKind::Azure {
            return Err(not_azure(scope));
        }
        let what = "list role assignments";
        // Without a filter ARM lists assignments at, above and below the scope.
        let mut url = self.url(&format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?api-version={API_VERSION}",
            scope.as_str()
        ))?;
        let mut found = Vec::new();
        let mut seen_links = std::collections::HashSet::new();
        for page in 0..MAX_PAGES {
            let reply = self.call(Method::Get, &url, None, what).await?;
            match reply.status {
                200 => {}
                404 if page > 0 => {
                    return Err(AccessError::Transient(format!(
                        "{what}: a later page answered 404; the listing must start again"
                    )));
                }
                _ => return Err(Self::refusal(&reply, what, None, scope)),
            }
            let page: WirePage = serde_json::from_slice(&reply.body).map_err(|e| unexpected(what, e))?;
            for wire in page.value {
                let elevates = wire.properties.description.as_deref().and_then(parse_marker).is_some();
                if !keep.keeps(elevates) {
                    continue;
                }
                if !at_or_below(scope, &wire.properties.scope).map_err(|e| unexpected(what, e))? {
                    continue;
                }
                let assignment = wire.into_assignment().map_err(|e| unexpected(what, e))?;
                found.push(Listed { assignment, elevates });
            }
            let Some(link) = page.next_link.filter(|l| !l.is_empty()) else {
                return Ok(found);
            };
            let next = Url::parse(&link).map_err(|e| unexpected(what, format!("nextLink: {e}")))?;
            if !self.same_origin(&next) {
                return Err(unexpected(what, "nextLink leads to another host; not sending the token there"));
            }
            if !seen_links.insert(link) {
                return Err(unexpected(what, "nextLink repeats an earlier page"));
            }
            url = next;
        }
        Err(unexpected(what, format!("more than {MAX_PAGES} pages; refusing a partial list")))
    }
}

/// Which listed assignments a listing keeps, judged by the marker alone.
#[derive(Clone, Copy, Debug)]
enum Keep {
    /// Those carrying Elevate's marker (`list_managed`).
    Marked,
    /// All of them (`list_all`).
    All,
}

impl Keep {
    fn keeps(self, elevates: bool) -> bool {
        match self {
            Keep::Marked => elevates,
            Keep::All => true,
        }
    }
}

/// Whether ARM's `scope` text of a listed assignment is `scope` or lies below it. Text Elevate
/// cannot parse is above it (the root `/`, say) unless its path continues `scope`: then it is an
/// entry Elevate must report and cannot, an error.
fn at_or_below(scope: &Scope, listed: &str) -> Result<bool, String> {
    match Scope::parse(listed) {
        Ok(parsed) => Ok(scope.contains(&parsed)),
        Err(e) => {
            let key = scope.key();
            let text = listed.trim_end_matches('/').to_ascii_lowercase();
            let below = text.strip_prefix(key.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if below { Err(format!("scope `{listed}`: {e}")) } else { Ok(false) }
        }
    }
}

fn parse_assignment(reply: &Reply, what: &str) -> Result<Assignment, AccessError> {
    serde_json::from_slice::<WireAssignment>(&reply.body)
        .map_err(|e| unexpected(what, e))?
        .into_assignment()
        .map_err(|e| unexpected(what, e))
}

#[async_trait]
impl AccessProvider for ArmAccessProvider {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        let what = "create role assignment";
        let url = self.assignment_url(&spec.scope, spec.name)?;
        let body = json!({
            "properties": {
                "roleDefinitionId": role_definition_path(&spec.scope, spec.role_definition_id)?,
                "principalId": spec.principal_id.to_string(),
                // Always sent: the ABAC condition on Elevate's own identity evaluates it, and it
                // avoids PrincipalNotFound during directory replication (azure-spec §3.4, §3.7).
                "principalType": spec.principal_type.as_str(),
                "description": spec.description,
            }
        });
        let reply = self.call(Method::Put, &url, Some(&body), what).await?;
        // After a 2xx (or a 409 naming our own assignment) something may exist under our name:
        // an answer that cannot be checked is `Unconfirmed`, never a plain failure.
        let unconfirmed = |e: AccessError| AccessError::Unconfirmed(e.to_string());
        let assignment = match reply.status {
            200 | 201 => parse_assignment(&reply, what).map_err(unconfirmed)?,
            409 => {
                let (code, message) = error_of(&reply);
                if code != "RoleAssignmentExists" {
                    return Err(Self::refusal(&reply, what, Some(spec.role_definition_id), &spec.scope));
                }
                match existing_name(&message) {
                    // A retry of our own PUT that had succeeded: converged.
                    Some(existing) if existing == spec.name => {
                        let mine = Grant { spec: spec.clone(), recorded: None, issued: true, settled: true };
                        let read = self.inspect(&mine).await.map_err(|e| match e {
                            AccessError::Permanent(m) => AccessError::Unconfirmed(m),
                            other => other,
                        })?;
                        read.ok_or_else(|| {
                            AccessError::Transient(format!(
                                "{what}: ARM reports assignment {} exists but cannot read it yet",
                                spec.name
                            ))
                        })?
                    }
                    Some(existing) => {
                        return Err(AccessError::AlreadyAssigned {
                            existing_id: format!(
                                "{}/providers/Microsoft.Authorization/roleAssignments/{}",
                                spec.scope.as_str(),
                                existing.hyphenated()
                            ),
                        });
                    }
                    None => return Err(unexpected(what, format!("RoleAssignmentExists without an id: {message}"))),
                }
            }
            _ => return Err(Self::refusal(&reply, what, Some(spec.role_definition_id), &spec.scope)),
        };
        if !spec.matches(&assignment) {
            return Err(AccessError::Unconfirmed(format!(
                "{what}: ARM answered with assignment {} (principal {}, role {}, scope {}), not the one requested",
                assignment.id, assignment.principal_id, assignment.role_definition_id, assignment.scope
            )));
        }
        Ok(assignment)
    }

    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        let (scope, name) = (&grant.spec.scope, grant.spec.name);
        let what = "delete role assignment";
        let url = self.assignment_url(scope, name)?;
        let reply = self.call(Method::Delete, &url, None, what).await?;
        match reply.status {
            // 200 with the deleted assignment, 204 when there was nothing to delete.
            200 | 204 | 404 => Ok(()),
            _ => Err(Self::refusal(&reply, what, None, scope)),
        }
    }

    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        let (scope, name) = (&grant.spec.scope, grant.spec.name);
        let what = "read role assignment";
        let url = self.assignment_url(scope, name)?;
        let reply = self.call(Method::Get, &url, None, what).await?;
        match reply.status {
            200 => parse_assignment(&reply, what).map(Some),
            404 => Ok(None),
            _ => Err(Self::refusal(&reply, what, None, scope)),
        }
    }

    async fn list_managed(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        Ok(self.list_below(scope, Keep::Marked).await?.into_iter().map(|l| l.assignment).collect())
    }

    /// Every assignment at or below `scope` that ARM lists, `elevates` when it carries Elevate's
    /// marker. Past `MAX_PAGES` pages, on a failed page or on an entry at or below `scope` that
    /// cannot be read, an error: never a partial list (see `list_below`). A management group
    /// contains only itself (`Scope::contains`): the subscriptions under it are listed at theirs.
    async fn list_all(&self, scope: &Scope) -> Result<Vec<Listed>, AccessError> {
        self.list_below(scope, Keep::All).await
    }

    fn kind(&self) -> &'static str {
        "arm"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_existing_assignment_is_read_from_arms_message() {
        let message = "The role assignment already exists. The ID of the existing role assignment is 716c4d159bc8476da3c16ccb70082517.";
        assert_eq!(existing_name(message), Some(Uuid::try_parse("716c4d15-9bc8-476d-a3c1-6ccb70082517").unwrap()));
        assert_eq!(existing_name("The role assignment already exists."), None);
        assert_eq!(existing_name("… is 716c4d15-9bc8-476d-a3c1-6ccb70082517."), None);
    }

    #[test]
    fn listed_scopes_are_kept_only_at_or_below_and_unreadable_ones_below_are_errors() {
        let sub = Scope::parse("/subscriptions/00000000-0000-0000-0000-000000000001").unwrap();
        let below = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/App";
        assert_eq!(at_or_below(&sub, "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000001"), Ok(true));
        assert_eq!(at_or_below(&sub, below), Ok(true));
        assert_eq!(at_or_below(&Scope::parse(below).unwrap(), sub.as_str()), Ok(false));
        assert_eq!(at_or_below(&sub, "/subscriptions/00000000-0000-0000-0000-000000000002"), Ok(false));
        assert_eq!(at_or_below(&sub, "/providers/Microsoft.Management/managementGroups/platform"), Ok(false));
        // The root and other text Elevate cannot parse: above unless its path continues the scope.
        assert_eq!(at_or_below(&sub, "/"), Ok(false));
        assert_eq!(at_or_below(&sub, "/subscriptions/00000000-0000-0000-0000-0000000000012/x"), Ok(false));
        assert!(at_or_below(&sub, &format!("{below}/providers/Microsoft.Web")).is_err());
    }

    #[test]
    fn role_definitions_are_addressed_for_the_scope() {
        let role = RoleDefinitionId::parse("Reader").unwrap();
        let rg = Scope::parse("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/app").unwrap();
        assert_eq!(
            role_definition_path(&rg, role).unwrap(),
            "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
        );
        let mg = Scope::parse("/providers/Microsoft.Management/managementGroups/platform").unwrap();
        assert_eq!(
            role_definition_path(&mg, role).unwrap(),
            "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
        );
    }
}
