//! The `graph` provider: Entra directory role assignments and group membership and ownership
//! through Microsoft Graph v1.0 (graph-spec §2, §4), under `{endpoint}/v1.0/` with an app-only
//! token for `https://graph.microsoft.com/.default`. It takes `directory:` and `group:` scopes
//! only; any other scope is refused before a call is made.
//!
//! Graph names nothing for Elevate: assignment ids are made by the server and a membership is a
//! bare link, with no description to carry a marker (§0 items 5–6, §9). So:
//!
//! - **grant** first looks for what it would create: a role assignment of the same principal,
//!   role and `directoryScopeId` (a `$filter` list), or a direct membership or ownership (the
//!   group's `members` or `owners`, paged). Anything found is standing access Elevate did not
//!   make: `AlreadyAssigned`, never touched. Otherwise it creates, and after a create whose
//!   answer was lost (no answer, or a 5xx) it reads again before trying again: nothing existed
//!   when it looked, and only its own create followed, so what is there now is its own (§9). A
//!   duplicate refusal (400, §0 items 1–2) is its own only after such a lost answer in the same
//!   call; otherwise it is `AlreadyAssigned`.
//! - **revoke** and **inspect** go by what Elevate recorded: the assignment id Graph returned
//!   (re-read, and acted on only while it still holds the spec's principal, role and scope), or
//!   for a group the membership itself (`groups/{g}/members/{p}`). With nothing recorded they look
//!   by principal, role and scope only if a grant may have been asked for (`Grant::issued`); if
//!   none was, they send nothing, since what they would find is someone else's.
//! - **list_all** (governance) reads every role assignment at or below a directory scope, or every
//!   direct member and owner of a group, to the last page or not at all. With no marker to read
//!   it calls none of them Elevate's (`elevates: false`); the store's recorded ids tell.
//!
//! Must never: remove a member or owner without `/$ref` (without it Graph deletes the user or
//! group itself, §4.2); delete an assignment or link it did not find as Elevate's own; send the
//! group pseudo-roles' ids (`GROUP_ROLES`) to Graph; send `ConsistencyLevel` (§0 item 11); follow
//! an `@odata.nextLink` off the configured endpoint (the bearer token would travel with it).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{Method, Url};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::adapters::access::transient;
use crate::adapters::azure::{AzureClient, Delivery, Reply, RetryPolicy, parse_retry_after};
use crate::domain::ids::{PrincipalId, RoleDefinitionId};
use crate::domain::scope::{Scope, ScopeKind, ScopeLevel};
use crate::service::ports::{AccessError, AccessProvider, Assignment, AssignmentSpec, Grant, Listed};

pub const TOKEN_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Every call goes under this path of the endpoint.
const VERSION: &str = "v1.0";
/// More pages than a real listing needs (999 members a page: a million members): a server that
/// never stops paging is not followed forever.
const MAX_PAGES: usize = 1_000;
/// `$top` for member and owner lists (§0 item 15: at most 999 on directory lists).
const LINK_PAGE_SIZE: &str = "999";

pub struct GraphAccessProvider {
    client: AzureClient,
    /// Scheme, host and port, no trailing slash.
    endpoint: String,
    base: Url,
    retry: RetryPolicy,
}

/// What a spec asks of Graph, decided before any call.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A `unifiedRoleAssignment`; the role is a directory role's template id.
    Role { role: RoleDefinitionId, directory_scope_id: String },
    /// A direct membership or ownership.
    Link { group: Uuid, link: Link },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Members,
    Owners,
}

impl Link {
    fn as_str(self) -> &'static str {
        match self {
            Link::Members => "members",
            Link::Owners => "owners",
        }
    }

    /// The group role (`GROUP_ROLES`) the link is.
    fn role(self) -> &'static str {
        match self {
            Link::Members => "member",
            Link::Owners => "owner",
        }
    }
}

/// A `unifiedRoleAssignment` as Graph returns it; other properties are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAssignment {
    id: String,
    role_definition_id: String,
    principal_id: String,
    directory_scope_id: Option<String>,
}

#[derive(Deserialize)]
struct WirePage<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// A `directoryObject` listed with `$select=id`.
#[derive(Deserialize)]
struct WireObject {
    id: String,
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

/// The `{code, message}` of a Graph error envelope (§1), or the bare status.
fn error_of(reply: &Reply) -> (String, String) {
    match serde_json::from_slice::<WireError>(&reply.body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (format!("HTTP{}", reply.status), String::from_utf8_lossy(&reply.body).chars().take(300).collect()),
    }
}

/// Whether a Graph message says what `needle` says. Messages are not a contract (§0 item 4):
/// matched leniently, and only to tell apart answers that share a status and code.
fn says(message: &str, needle: &str) -> bool {
    message.to_ascii_lowercase().contains(needle)
}

fn unexpected(what: &str, detail: impl std::fmt::Display) -> AccessError {
    AccessError::Permanent(format!("{what}: unexpected answer from Graph: {detail}"))
}

/// An OData string literal: quoted with `'`, a `'` doubled (§2.3).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The `$filter` that finds one principal's assignment of one role at one scope.
fn assignment_filter(principal: PrincipalId, role: RoleDefinitionId, directory_scope_id: &str) -> String {
    format!(
        "principalId eq {} and roleDefinitionId eq {} and directoryScopeId eq {}",
        literal(&principal.to_string()),
        literal(&role.to_string()),
        literal(directory_scope_id)
    )
}

/// Whether a Graph role assignment id can be put in a path as it is. Ids are opaque (§0 item 6)
/// but every one seen is base64url with a `-1` suffix; anything else (a `/`, `?`, `%`) would
/// address something other than one assignment.
fn is_assignment_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// The id Elevate gives a membership or ownership (Graph gives none): `groups/{g}/members/{p}`.
fn link_id(group: Uuid, link: Link, principal: PrincipalId) -> String {
    format!("groups/{}/{}/{principal}", group.hyphenated(), link.as_str())
}

/// A scope of another kind, or a role that means nothing at it, reached the Graph provider: a
/// routing bug, refused before any call.
fn not_graph(scope: &Scope, role: RoleDefinitionId, why: &str) -> AccessError {
    AccessError::Permanent(format!("`{scope}` with role `{role}` cannot be granted through Microsoft Graph: {why}"))
}

/// What Graph is asked for this spec. INVARIANT: a group pseudo-role id never becomes a
/// `Target::Role`, and a `Target::Link` carries only `members` or `owners`: those ids are never sent.
fn target(spec: &AssignmentSpec) -> Result<Target, AccessError> {
    let (scope, role) = (&spec.scope, spec.role_definition_id);
    match scope.kind() {
        ScopeKind::Azure => Err(not_graph(scope, role, "an Azure RBAC scope is granted through ARM")),
        ScopeKind::Directory => {
            if role.group_role().is_some() {
                return Err(not_graph(scope, role, "a group's `member` or `owner` is not a directory role"));
            }
            let directory_scope_id =
                scope.directory_scope_id().ok_or_else(|| not_graph(scope, role, "no directoryScopeId"))?;
            Ok(Target::Role { role, directory_scope_id })
        }
        ScopeKind::Group => {
            let group = scope.group_id().ok_or_else(|| not_graph(scope, role, "no group id"))?;
            let link = match role.group_role() {
                Some("member") => Link::Members,
                Some("owner") => Link::Owners,
                _ => return Err(not_graph(scope, role, "a group grants only `member` or `owner`")),
            };
            Ok(Target::Link { group, link })
        }
    }
}

/// The assignment Graph returned, as the one `spec` asked for — only if it holds the spec's
/// principal, role and directory scope; otherwise why not.
fn role_assignment(spec: &AssignmentSpec, wire: WireAssignment) -> Result<Assignment, String> {
    if !is_assignment_id(&wire.id) {
        return Err(format!("`{}` is not a role assignment id", wire.id));
    }
    let principal = PrincipalId::parse(&wire.principal_id).map_err(|e| format!("principalId: {e}"))?;
    let role = RoleDefinitionId::parse(&wire.role_definition_id).map_err(|e| format!("roleDefinitionId: {e}"))?;
    let directory_scope_id = wire.directory_scope_id.unwrap_or_default();
    let scope = Scope::parse(&format!("directory:{directory_scope_id}"))
        .map_err(|e| format!("directoryScopeId `{directory_scope_id}`: {e}"))?;
    if principal != spec.principal_id || role != spec.role_definition_id || scope != spec.scope {
        return Err(format!(
            "assignment {} holds role {role} for principal {principal} at `{directory_scope_id}`, not the one asked for",
            wire.id
        ));
    }
    Ok(Assignment {
        id: wire.id,
        name: spec.name,
        scope: spec.scope.clone(),
        principal_id: spec.principal_id,
        role_definition_id: spec.role_definition_id,
        description: None,
    })
}

/// A membership or ownership as an assignment: Elevate's id for it, Elevate's name.
fn link_assignment(spec: &AssignmentSpec, group: Uuid, link: Link) -> Assignment {
    Assignment {
        id: link_id(group, link, spec.principal_id),
        name: spec.name,
        scope: spec.scope.clone(),
        principal_id: spec.principal_id,
        role_definition_id: spec.role_definition_id,
        description: None,
    }
}

/// Refuses a recorded membership id that is not this grant's: the store and the spec disagree,
/// and nothing is done on either's word.
fn check_recorded_link(
    recorded: Option<&str>,
    spec: &AssignmentSpec,
    group: Uuid,
    link: Link,
) -> Result<(), AccessError> {
    let expected = link_id(group, link, spec.principal_id);
    match recorded {
        Some(id) if !id.eq_ignore_ascii_case(&expected) => Err(AccessError::Permanent(format!(
            "recorded id `{id}` is not this grant's membership `{expected}`; not acting on it"
        ))),
        _ => Ok(()),
    }
}

fn is_server_error(status: u16) -> bool {
    (500..=599).contains(&status)
}

impl GraphAccessProvider {
    /// `endpoint` is Graph's base URL (`https://graph.microsoft.com`): https, or plain http on a
    /// loopback host, without a path.
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>, retry: RetryPolicy) -> Result<Self, AccessError> {
        let base = crate::endpoint::parse(endpoint)
            .map_err(|e| AccessError::Permanent(format!("Graph endpoint `{endpoint}`: {e}")))?;
        if base.path() != "/" || base.query().is_some() || base.fragment().is_some() {
            return Err(AccessError::Permanent(format!(
                "Graph endpoint `{endpoint}` must be a base URL without a path (`/{VERSION}` is added)"
            )));
        }
        let client = AzureClient::new(credential, TOKEN_SCOPE, retry).map_err(transient)?;
        Ok(Self { client, endpoint: crate::endpoint::display(&base), base, retry })
    }

    /// `{endpoint}/v1.0/{path}`, with a query already encoded.
    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, AccessError> {
        let mut text = format!("{}/{VERSION}/{path}", self.endpoint);
        for (i, (key, value)) in query.iter().enumerate() {
            text.push(if i == 0 { '?' } else { '&' });
            text.push_str(key);
            text.push('=');
            text.push_str(&crate::endpoint::encode_component(value));
        }
        Url::parse(&text).map_err(|e| AccessError::Permanent(format!("cannot form a Graph URL: {e}")))
    }

    /// Whether an `@odata.nextLink` stays on our endpoint (scheme, host and port) and API version.
    fn may_follow(&self, link: &Url) -> bool {
        self.base.origin() == link.origin() && link.path().starts_with(&format!("/{VERSION}/"))
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

    /// Maps an answer that is not success for this operation. 404 is the caller's to judge first.
    fn refusal(reply: &Reply, what: &str, spec: &AssignmentSpec) -> AccessError {
        let role = spec
            .role_definition_id
            .built_in_name()
            .map_or_else(|| spec.role_definition_id.to_string(), |n| format!("{n} ({})", spec.role_definition_id));
        Self::refusal_at(reply, what, role, &spec.scope)
    }

    /// `refusal` for a call about `role` (a label) at `scope` rather than about one spec.
    fn refusal_at(reply: &Reply, what: &str, role: String, scope: &Scope) -> AccessError {
        let (code, message) = error_of(reply);
        match reply.status {
            403 => {
                AccessError::Forbidden { role, scope: scope.as_str().to_owned(), message: format!("{code}: {message}") }
            }
            // An expired or rejected token: a fresh one may work.
            401 => AccessError::Transient(format!("{what}: Graph refused the token ({code})")),
            // Retried by the client already; still failing.
            408 | 429 | 500..=599 => AccessError::Transient(format!("{what}: Graph answered {} {code}", reply.status)),
            status => AccessError::Permanent(format!("{what}: Graph answered {status} {code}: {message}")),
        }
    }

    /// Every page of a list, from `first`, through `@odata.nextLink`s followed verbatim.
    async fn read_pages<T: serde::de::DeserializeOwned>(
        &self,
        first: Url,
        what: &str,
        on_error: impl Fn(&Reply) -> AccessError,
    ) -> Result<Option<Vec<T>>, AccessError> {
        let mut url = first;
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        for page in 0..MAX_PAGES {
            let reply = self.call(Method::Get, &url, None, what).await?;
            match reply.status {
                200 => {}
                // The listed object is not there. On a later page it was a moment ago: a 404 now
                // proves nothing about what the list holds.
                404 if page == 0 => return Ok(None),
                404 => return Err(AccessError::Transient(format!("{what}: a later page answered 404"))),
                _ => return Err(on_error(&reply)),
            }
            let page: WirePage<T> = serde_json::from_slice(&reply.body).map_err(|e| unexpected(what, e))?;
            found.extend(page.value);
            let Some(link) = page.next_link.filter(|l| !l.is_empty()) else {
                return Ok(Some(found));
            };
            let next = Url::parse(&link).map_err(|e| unexpected(what, format!("@odata.nextLink: {e}")))?;
            if !self.may_follow(&next) {
                return Err(unexpected(
                    what,
                    "@odata.nextLink leads off the Graph endpoint; not sending the token there",
                ));
            }
            if !seen.insert(link) {
                return Err(unexpected(what, "@odata.nextLink repeats an earlier page"));
            }
            url = next;
        }
        Err(unexpected(what, format!("more than {MAX_PAGES} pages")))
    }
}

impl GraphAccessProvider {
    /// The role assignment of the spec's principal, role and scope, by a `$filter` list (§2.3).
    /// Items the filter let through are checked again: Graph's word on the filter is not taken.
    async fn find_role(
        &self,
        spec: &AssignmentSpec,
        role: RoleDefinitionId,
        directory_scope_id: &str,
    ) -> Result<Option<Assignment>, AccessError> {
        let what = "list directory role assignments";
        let filter = assignment_filter(spec.principal_id, role, directory_scope_id);
        let url = self.url("roleManagement/directory/roleAssignments", &[("$filter", filter)])?;
        let listed: Vec<WireAssignment> = self
            .read_pages(url, what, |r| Self::refusal(r, what, spec))
            .await?
            .ok_or_else(|| unexpected(what, "404 for the role assignment collection"))?;
        for wire in listed {
            match role_assignment(spec, wire) {
                Ok(found) => return Ok(Some(found)),
                Err(why) => {
                    tracing::warn!(operation = what, reason = %why, "Graph listed an assignment the filter excludes; ignored")
                }
            }
        }
        Ok(None)
    }

    /// Whether the principal is a direct member (owner) of the group: its `members` (`owners`)
    /// with `$select=id`, every page. `None` when Graph does not know the group.
    async fn is_linked(&self, spec: &AssignmentSpec, group: Uuid, link: Link) -> Result<Option<bool>, AccessError> {
        let what = match link {
            Link::Members => "list group members",
            Link::Owners => "list group owners",
        };
        let url = self.url(
            &format!("groups/{}/{}", group.hyphenated(), link.as_str()),
            &[("$select", "id".to_owned()), ("$top", LINK_PAGE_SIZE.to_owned())],
        )?;
        let listed: Option<Vec<WireObject>> = self.read_pages(url, what, |r| Self::refusal(r, what, spec)).await?;
        let principal = *spec.principal_id.as_uuid();
        Ok(listed.map(|objects| objects.iter().any(|o| Uuid::try_parse(&o.id).is_ok_and(|id| id == principal))))
    }

    /// What exists for the spec's principal, role and scope, whoever made it.
    async fn find(&self, spec: &AssignmentSpec, target: &Target) -> Result<Option<Assignment>, AccessError> {
        match target {
            Target::Role { role, directory_scope_id } => self.find_role(spec, *role, directory_scope_id).await,
            Target::Link { group, link } => Ok(self
                .is_linked(spec, *group, *link)
                .await?
                .unwrap_or(false)
                .then(|| link_assignment(spec, *group, *link))),
        }
    }

    /// Creates what `find` found missing. A create whose answer is lost (none came, or a 5xx)
    /// may have landed, so before trying again it looks: nothing was there before the first
    /// create, and only Elevate's own creates came since, so what is there now is Elevate's
    /// (graph-spec §9). A 429 certainly did not land and is retried by the client without a look.
    async fn create(&self, spec: &AssignmentSpec, target: &Target) -> Result<Assignment, AccessError> {
        let (what, url, body) = match target {
            Target::Role { role, directory_scope_id } => (
                "create directory role assignment",
                self.url("roleManagement/directory/roleAssignments", &[])?,
                // No `id` (server-made) and no `condition` (§2.1).
                json!({
                    "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
                    "roleDefinitionId": role.to_string(),
                    "principalId": spec.principal_id.to_string(),
                    "directoryScopeId": directory_scope_id,
                }),
            ),
            Target::Link { group, link } => (
                match link {
                    Link::Members => "add group member",
                    Link::Owners => "add group owner",
                },
                self.url(&format!("groups/{}/{}/$ref", group.hyphenated(), link.as_str()), &[])?,
                // Built from the configured endpoint (§4.1: national clouds differ).
                json!({"@odata.id": format!("{}/{VERSION}/directoryObjects/{}", self.endpoint, spec.principal_id)}),
            ),
        };
        let started = tokio::time::Instant::now();
        // Why an earlier attempt's answer was lost, once one was.
        let mut lost: Option<String> = None;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (why, wait) = match self.client.send_unrepeatable(Method::Post, &url, Some(&body), what).await {
                Err(e) => return Err(transient(e)),
                Ok(Delivery::Answered(reply)) if is_server_error(reply.status) => (
                    format!("{what}: Graph answered {} {}", reply.status, error_of(&reply).0),
                    reply.header("retry-after").and_then(parse_retry_after),
                ),
                Ok(Delivery::Answered(reply)) => {
                    return self.created(spec, target, &reply, what, lost.as_deref()).await;
                }
                Ok(Delivery::Unanswered(why)) => (why, None),
            };
            tracing::warn!(operation = what, attempt, reason = %why, "the create may have landed; looking before trying again");
            if let Some(found) = self.find(spec, target).await? {
                tracing::info!(operation = what, id = %found.id, "the create whose answer was lost had landed");
                return Ok(found);
            }
            if !self.retry.allows(attempt, started.elapsed()) {
                return Err(AccessError::Transient(format!("{why} (after {attempt} attempts; not found since)")));
            }
            lost = Some(why);
            tokio::time::sleep(self.retry.backoff(attempt).max(wait.unwrap_or_default())).await;
        }
    }

    /// Judges a create's answer.
    async fn created(
        &self,
        spec: &AssignmentSpec,
        target: &Target,
        reply: &Reply,
        what: &str,
        lost: Option<&str>,
    ) -> Result<Assignment, AccessError> {
        let (_, message) = error_of(reply);
        match (target, reply.status) {
            // Something may now exist for the spec: an answer that cannot be checked is
            // `Unconfirmed`, never a plain failure.
            (Target::Role { .. }, 200 | 201) => {
                let wire: WireAssignment = serde_json::from_slice(&reply.body)
                    .map_err(|e| AccessError::Unconfirmed(format!("{what}: unreadable answer: {e}")))?;
                role_assignment(spec, wire).map_err(|why| AccessError::Unconfirmed(format!("{what}: {why}")))
            }
            (Target::Link { group, link }, 200 | 201 | 204) => Ok(link_assignment(spec, *group, *link)),
            // A duplicate (§0 items 1–2; some clients have seen 409 for assignments).
            (Target::Role { .. }, 400 | 409) if says(&message, "conflicting object") => {
                self.duplicate(spec, target, what, lost).await
            }
            (Target::Link { .. }, 400) if says(&message, "already exist") => {
                self.duplicate(spec, target, what, lost).await
            }
            // The principal (or a just-made group) not replicated yet (§0 item 9, §7).
            (_, 404) => Err(AccessError::PrincipalNotFound(format!("{what}: {message}"))),
            (Target::Link { .. }, 400) if says(&message, "don't exist") || says(&message, "do not exist") => {
                Err(AccessError::PrincipalNotFound(format!("{what}: {message}")))
            }
            _ => Err(Self::refusal(reply, what, spec)),
        }
    }

    /// Graph refused a create as a duplicate. After a lost answer in this very call it is
    /// Elevate's own create that landed; otherwise it is access Elevate did not grant (standing,
    /// or made since the look before the create), reported and never touched.
    async fn duplicate(
        &self,
        spec: &AssignmentSpec,
        target: &Target,
        what: &str,
        lost: Option<&str>,
    ) -> Result<Assignment, AccessError> {
        match (target, lost) {
            (Target::Link { group, link }, Some(_)) => Ok(link_assignment(spec, *group, *link)),
            (Target::Role { .. }, Some(why)) => self.find(spec, target).await?.ok_or_else(|| {
                // Found later by principal, role and scope (`inspect` of an issued grant).
                AccessError::Transient(format!(
                    "{what}: Graph reports the assignment exists after a create of ours whose answer was lost ({why}), but cannot list it yet"
                ))
            }),
            (Target::Link { group, link }, None) => {
                Err(AccessError::AlreadyAssigned { existing_id: link_id(*group, *link, spec.principal_id) })
            }
            (Target::Role { directory_scope_id, .. }, None) => {
                // Graph does not name the existing assignment (§0 item 1): look it up for the
                // record, at best.
                let existing_id = match self.find(spec, target).await {
                    Ok(Some(found)) => found.id,
                    _ => format!(
                        "(unnamed by Graph: role {} for principal {} at `{directory_scope_id}`)",
                        spec.role_definition_id, spec.principal_id
                    ),
                };
                Err(AccessError::AlreadyAssigned { existing_id })
            }
        }
    }

    /// Reads an assignment by its recorded id: `None` when it is gone, or when what the id names
    /// is not the spec's (then it is not Elevate's, whatever was recorded).
    async fn read_role(&self, spec: &AssignmentSpec, id: &str) -> Result<Option<Assignment>, AccessError> {
        let what = "read directory role assignment";
        if !is_assignment_id(id) {
            return Err(AccessError::Permanent(format!("recorded id `{id}` is not a Graph role assignment id")));
        }
        let url = self.url(&format!("roleManagement/directory/roleAssignments/{id}"), &[])?;
        let reply = self.call(Method::Get, &url, None, what).await?;
        match reply.status {
            200 => {
                let wire: WireAssignment = serde_json::from_slice(&reply.body).map_err(|e| unexpected(what, e))?;
                match role_assignment(spec, wire) {
                    Ok(found) => Ok(Some(found)),
                    Err(why) => {
                        tracing::error!(operation = what, id, reason = %why, "the recorded assignment id names another assignment; treating it as not Elevate's");
                        Ok(None)
                    }
                }
            }
            404 => Ok(None),
            _ => Err(Self::refusal(&reply, what, spec)),
        }
    }

    /// Deletes a role assignment; a 404 means gone only for a settled grant.
    async fn delete_role(&self, spec: &AssignmentSpec, id: &str, settled: bool) -> Result<(), AccessError> {
        let what = "delete directory role assignment";
        if !is_assignment_id(id) {
            return Err(AccessError::Permanent(format!("`{id}` is not a Graph role assignment id")));
        }
        let url = self.url(&format!("roleManagement/directory/roleAssignments/{id}"), &[])?;
        let reply = self.call(Method::Delete, &url, None, what).await?;
        match reply.status {
            200 | 204 => Ok(()),
            404 if settled => Ok(()),
            404 => Err(AccessError::Transient(format!("{what}: not found yet; too young to call it gone"))),
            _ => Err(Self::refusal(&reply, what, spec)),
        }
    }

    /// Removes the link, always through `/$ref`: without it Graph deletes the object itself.
    async fn delete_link(
        &self,
        spec: &AssignmentSpec,
        group: Uuid,
        link: Link,
        settled: bool,
    ) -> Result<(), AccessError> {
        let what = match link {
            Link::Members => "remove group member",
            Link::Owners => "remove group owner",
        };
        let path = format!("groups/{}/{}/{}/$ref", group.hyphenated(), link.as_str(), spec.principal_id);
        let url = self.url(&path, &[])?;
        let reply = self.call(Method::Delete, &url, None, what).await?;
        let (_, message) = error_of(&reply);
        match reply.status {
            // 404 names the group whether the link or the group is gone (§0 item 3): either way
            // the link is.
            200 | 204 => Ok(()),
            404 | 400 if !settled && (reply.status == 404 || says(&message, "do not exist")) => {
                Err(AccessError::Transient(format!("{what}: not found yet; too young to call it gone")))
            }
            404 => Ok(()),
            400 if says(&message, "do not exist") => Ok(()),
            400 if says(&message, "at least one owner") => {
                Err(AccessError::Permanent(format!("{what}: Graph keeps the last owner of a group: {message}")))
            }
            _ => Err(Self::refusal(&reply, what, spec)),
        }
    }
}

impl GraphAccessProvider {
    /// Every role assignment at or below a `directory:` scope: at an administrative unit, those
    /// whose `directoryScopeId` is it (a `$filter` list, §2.3); at the tenant (`directory:/`),
    /// every assignment, unfiltered, since everything lies below it (§2.3 advises a filter: if
    /// Graph refuses the unfiltered list, that is an error, never an empty list). Items the
    /// filter let through are checked again; one below `scope` that Elevate cannot read (an
    /// app-scoped `directoryScopeId`, say) fails the listing rather than go unreported.
    async fn list_roles(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        let what = "list directory role assignments";
        let directory_scope_id = scope
            .directory_scope_id()
            .ok_or_else(|| AccessError::Permanent(format!("`{scope}` has no directoryScopeId")))?;
        let query = match scope.level() {
            ScopeLevel::AdministrativeUnit => {
                vec![("$filter", format!("directoryScopeId eq {}", literal(&directory_scope_id)))]
            }
            _ => Vec::new(),
        };
        let url = self.url("roleManagement/directory/roleAssignments", &query)?;
        let listed: Vec<WireAssignment> = self
            .read_pages(url, what, |r| Self::refusal_at(r, what, "(any)".into(), scope))
            .await?
            .ok_or_else(|| unexpected(what, "404 for the role assignment collection"))?;
        let mut found = Vec::new();
        for wire in listed {
            let at = wire.directory_scope_id.clone().unwrap_or_default();
            let parsed = match Scope::parse(&format!("directory:{at}")) {
                Ok(parsed) => parsed,
                // Only the tenant has below it what Elevate cannot name; under an administrative
                // unit it is another scope the filter should have excluded.
                Err(e) if scope.level() == ScopeLevel::Directory => {
                    return Err(unexpected(
                        what,
                        format!(
                            "assignment `{}` has directoryScopeId `{at}` Elevate cannot read ({e}); refusing a partial list",
                            wire.id
                        ),
                    ));
                }
                Err(_) => {
                    tracing::warn!(operation = what, id = %wire.id, directory_scope_id = %at, "Graph listed an assignment the filter excludes; ignored");
                    continue;
                }
            };
            if !scope.contains(&parsed) {
                tracing::warn!(operation = what, id = %wire.id, directory_scope_id = %at, "Graph listed an assignment the filter excludes; ignored");
                continue;
            }
            let principal_id = PrincipalId::parse(&wire.principal_id)
                .map_err(|e| unexpected(what, format!("assignment `{}`: principalId: {e}", wire.id)))?;
            let role_definition_id = RoleDefinitionId::parse(&wire.role_definition_id)
                .map_err(|e| unexpected(what, format!("assignment `{}`: roleDefinitionId: {e}", wire.id)))?;
            found.push(Assignment {
                id: wire.id,
                // Graph names nothing: see `list_all`.
                name: Uuid::nil(),
                scope: parsed,
                principal_id,
                role_definition_id,
                description: None,
            });
        }
        Ok(found)
    }

    /// Every direct member and owner of a `group:` scope (§4.4), as Elevate records its own
    /// links (`groups/{g}/members/{p}`). A group Graph does not know is an error, not an empty
    /// list.
    async fn list_links(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        let group = scope.group_id().ok_or_else(|| AccessError::Permanent(format!("`{scope}` names no group")))?;
        let mut found = Vec::new();
        for link in [Link::Members, Link::Owners] {
            let what = match link {
                Link::Members => "list group members",
                Link::Owners => "list group owners",
            };
            let role = ScopeKind::Group
                .parse_role(link.role())
                .map_err(|e| AccessError::Permanent(format!("{what}: no role for `{}`: {e}", link.role())))?;
            let url = self.url(
                &format!("groups/{}/{}", group.hyphenated(), link.as_str()),
                &[("$select", "id".to_owned()), ("$top", LINK_PAGE_SIZE.to_owned())],
            )?;
            let objects: Vec<WireObject> = self
                .read_pages(url, what, |r| Self::refusal_at(r, what, link.role().to_owned(), scope))
                .await?
                .ok_or_else(|| AccessError::Permanent(format!("{what}: Graph does not know group `{group}`")))?;
            for object in objects {
                let principal_id = PrincipalId::parse(&object.id)
                    .map_err(|e| unexpected(what, format!("directory object `{}`: {e}", object.id)))?;
                found.push(Assignment {
                    id: link_id(group, link, principal_id),
                    name: Uuid::nil(),
                    scope: scope.clone(),
                    principal_id,
                    role_definition_id: role,
                    description: None,
                });
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl AccessProvider for GraphAccessProvider {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        let target = target(spec)?;
        // Never create what exists, never touch it: it is standing access.
        if let Some(existing) = self.find(spec, &target).await? {
            return Err(AccessError::AlreadyAssigned { existing_id: existing.id });
        }
        let assignment = self.create(spec, &target).await?;
        if !spec.matches(&assignment) {
            return Err(AccessError::Unconfirmed(format!(
                "Graph's assignment {} is not the one requested",
                assignment.id
            )));
        }
        Ok(assignment)
    }

    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        let spec = &grant.spec;
        let target = target(spec)?;
        // A young grant may not show everywhere yet (graph-spec §7): its absence proves nothing.
        let absent = || {
            if grant.settled {
                Ok(())
            } else {
                Err(AccessError::Transient(
                    "Graph does not show the grant, but it is too young for that to prove it gone; trying again later"
                        .into(),
                ))
            }
        };
        match (&target, grant.recorded.as_deref()) {
            // Never asked for: what would be found is someone else's.
            (_, None) if !grant.issued => Ok(()),
            (Target::Role { .. }, Some(id)) => match self.read_role(spec, id).await? {
                Some(mine) => self.delete_role(spec, &mine.id, grant.settled).await,
                None => absent(),
            },
            (Target::Role { .. }, None) => match self.find(spec, &target).await? {
                Some(mine) => self.delete_role(spec, &mine.id, grant.settled).await,
                None => absent(),
            },
            // The link is the principal's membership itself: removing it removes exactly what
            // the spec names, and a link that is not there answers 404.
            (Target::Link { group, link }, recorded) => {
                check_recorded_link(recorded, spec, *group, *link)?;
                self.delete_link(spec, *group, *link, grant.settled).await
            }
        }
    }

    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        let spec = &grant.spec;
        let target = target(spec)?;
        match (&target, grant.recorded.as_deref()) {
            (_, None) if !grant.issued => Ok(None),
            (Target::Role { .. }, Some(id)) => self.read_role(spec, id).await,
            (Target::Role { .. }, None) => self.find(spec, &target).await,
            (Target::Link { group, link }, recorded) => {
                check_recorded_link(recorded, spec, *group, *link)?;
                self.find(spec, &target).await
            }
        }
    }

    /// Always empty. Graph's role assignments and memberships carry no marker (no description,
    /// §0 item 5), so Graph alone cannot tell Elevate's grants from standing access: only the
    /// store knows which are Elevate's, and the orphan sweep must never delete standing access.
    async fn list_managed(&self, _scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        Ok(Vec::new())
    }

    /// Every directory role assignment at or below a `directory:` scope, or every direct member
    /// and owner of a `group:` scope (not transitive ones), each page to the end; an incomplete
    /// read is an error (`read_pages`: a 404 on a later page, a `nextLink` off the endpoint or
    /// repeating, more than `MAX_PAGES` pages).
    ///
    /// `elevates` is always `false`: Graph keeps no marker (§0 item 5, §9), so Graph alone cannot
    /// tell Elevate's grants from anyone's. Whoever needs that matches `Assignment::id` against the
    /// ids Elevate recorded (an active activation's `roleAssignmentId`: Graph's id for a role,
    /// `groups/{g}/members/{p}` for a link). `name` is the nil UUID: Graph names nothing.
    async fn list_all(&self, scope: &Scope) -> Result<Vec<Listed>, AccessError> {
        let found = match scope.kind() {
            ScopeKind::Directory => self.list_roles(scope).await?,
            ScopeKind::Group => self.list_links(scope).await?,
            ScopeKind::Azure => {
                return Err(AccessError::Permanent(format!(
                    "`{scope}` is an Azure RBAC scope; its assignments are listed through ARM"
                )));
            }
        };
        Ok(found.into_iter().map(|assignment| Listed { assignment, elevates: false }).collect())
    }

    fn kind(&self) -> &'static str {
        "graph"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ports::PrincipalType;

    const ALICE: &str = "11111111-1111-1111-1111-111111111111";
    const GROUP: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
    const AU: &str = "5b51c641-0711-41d2-ac58-d90390d94a00";

    fn spec(scope: &str, role: &str) -> AssignmentSpec {
        let scope = Scope::parse(scope).unwrap();
        AssignmentSpec {
            name: Uuid::from_u128(7),
            role_definition_id: scope
                .kind()
                .parse_role(role)
                .unwrap_or_else(|_| RoleDefinitionId::parse(role).unwrap()),
            scope,
            principal_id: PrincipalId::parse(ALICE).unwrap(),
            principal_type: PrincipalType::User,
            description: String::new(),
        }
    }

    #[derive(Debug)]
    struct NoToken;

    #[async_trait]
    impl TokenCredential for NoToken {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, "none in unit tests"))
        }
    }

    fn provider(endpoint: &str) -> Result<GraphAccessProvider, AccessError> {
        GraphAccessProvider::new(endpoint, Arc::new(NoToken), RetryPolicy::default())
    }

    #[test]
    fn filter_literals_are_quoted_and_encoded() {
        assert_eq!(literal("/"), "'/'");
        assert_eq!(literal("o'brien"), "'o''brien'");
        let filter = assignment_filter(
            PrincipalId::parse(ALICE).unwrap(),
            RoleDefinitionId::parse("62e90394-69f5-4237-9190-012177145e10").unwrap(),
            &format!("/administrativeUnits/{AU}"),
        );
        assert_eq!(
            filter,
            format!(
                "principalId eq '{ALICE}' and roleDefinitionId eq '62e90394-69f5-4237-9190-012177145e10' and directoryScopeId eq '/administrativeUnits/{AU}'"
            )
        );
        assert_eq!(crate::endpoint::encode_component("a eq '/x'+&"), "a%20eq%20%27%2Fx%27%2B%26");
        let p = provider("https://graph.microsoft.com/").unwrap();
        let url = p.url("roleManagement/directory/roleAssignments", &[("$filter", filter)]).unwrap();
        let decoded: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].0, "$filter");
        assert!(decoded[0].1.starts_with(&format!("principalId eq '{ALICE}'")));
        assert!(url.as_str().starts_with("https://graph.microsoft.com/v1.0/roleManagement/directory/roleAssignments?"));
    }

    #[test]
    fn the_endpoint_is_a_base_url_and_next_links_stay_on_it() {
        assert!(provider("https://graph.microsoft.com").is_ok());
        assert!(provider("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "http://graph.microsoft.com",
            "https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/?x=1",
            "https://user:pw@graph.microsoft.com",
            "graph.microsoft.com",
        ] {
            assert!(matches!(provider(bad), Err(AccessError::Permanent(_))), "{bad} was accepted");
        }
        let p = provider("https://graph.microsoft.com").unwrap();
        let follow = |link: &str| p.may_follow(&Url::parse(link).unwrap());
        assert!(follow("https://graph.microsoft.com/v1.0/groups/x/members?$skiptoken=abc"));
        assert!(!follow("https://graph.microsoft.com.evil.example/v1.0/groups/x/members"));
        assert!(!follow("http://graph.microsoft.com/v1.0/groups/x/members"));
        assert!(!follow("https://graph.microsoft.com:8443/v1.0/groups/x/members"));
        assert!(!follow("https://graph.microsoft.com/beta/groups/x/members"));
    }

    #[test]
    fn only_directory_and_group_scopes_with_their_own_roles_are_targets() {
        let ga = spec("directory:/", "Global Administrator");
        assert_eq!(target(&ga).unwrap(), Target::Role { role: ga.role_definition_id, directory_scope_id: "/".into() });
        let ua = spec(&format!("directory:/administrativeUnits/{AU}"), "User Administrator");
        assert!(
            matches!(target(&ua).unwrap(), Target::Role { directory_scope_id, .. } if directory_scope_id == format!("/administrativeUnits/{AU}"))
        );
        let owner = spec(&format!("group:{GROUP}"), "owner");
        assert_eq!(
            target(&owner).unwrap(),
            Target::Link { group: Uuid::parse_str(GROUP).unwrap(), link: Link::Owners }
        );
        let member = spec(&format!("group:{GROUP}"), "member");
        assert_eq!(
            target(&member).unwrap(),
            Target::Link { group: Uuid::parse_str(GROUP).unwrap(), link: Link::Members }
        );

        let azure = spec("/subscriptions/00000000-0000-0000-0000-000000000001", "Reader");
        assert!(matches!(target(&azure), Err(AccessError::Permanent(_))));
        // A group's pseudo-role at a directory scope, and a directory role at a group: never sent.
        let mut pseudo = spec("directory:/", "Global Administrator");
        pseudo.role_definition_id = member.role_definition_id;
        assert!(matches!(target(&pseudo), Err(AccessError::Permanent(_))));
        let mut role_at_group = spec(&format!("group:{GROUP}"), "member");
        role_at_group.role_definition_id = ga.role_definition_id;
        assert!(matches!(target(&role_at_group), Err(AccessError::Permanent(_))));
    }

    #[test]
    fn an_assignment_is_the_specs_only_if_principal_role_and_scope_all_match() {
        let s = spec(&format!("directory:/administrativeUnits/{AU}"), "User Administrator");
        let wire = |principal: &str, role: &str, scope: Option<&str>, id: &str| WireAssignment {
            id: id.into(),
            principal_id: principal.into(),
            role_definition_id: role.into(),
            directory_scope_id: scope.map(str::to_owned),
        };
        let role = "fe930be7-5e62-47db-91af-98c3a49a38b1";
        let au_scope = format!("/administrativeUnits/{}", AU.to_uppercase());
        let ok = role_assignment(&s, wire(ALICE, role, Some(&au_scope), "abc_DEF-1")).unwrap();
        assert!(s.matches(&ok));
        assert_eq!((ok.id.as_str(), ok.description.as_deref()), ("abc_DEF-1", None));
        for (principal, r, scope, id) in [
            ("22222222-2222-2222-2222-222222222222", role, Some(au_scope.as_str()), "x-1"),
            (ALICE, "62e90394-69f5-4237-9190-012177145e10", Some(au_scope.as_str()), "x-1"),
            (ALICE, role, Some("/"), "x-1"),
            (ALICE, role, None, "x-1"),
            (ALICE, role, Some(au_scope.as_str()), "../x"),
            (ALICE, role, Some(au_scope.as_str()), ""),
        ] {
            assert!(role_assignment(&s, wire(principal, r, scope, id)).is_err(), "{principal} {r} {scope:?} {id}");
        }
    }

    #[test]
    fn recorded_ids_are_checked_before_they_address_anything() {
        assert!(is_assignment_id("lAPpYvVpN0KRkAEhdxReEMmO4KwRqtpKkUWt3wOYIz4-1"));
        for bad in ["", "a/b", "a?b", "a%2Fb", "a b", "..", "a.b"] {
            assert!(!is_assignment_id(bad), "{bad:?}");
        }
        let member = spec(&format!("group:{GROUP}"), "member");
        let group = Uuid::parse_str(GROUP).unwrap();
        assert_eq!(link_id(group, Link::Members, member.principal_id), format!("groups/{GROUP}/members/{ALICE}"));
        assert!(check_recorded_link(None, &member, group, Link::Members).is_ok());
        assert!(
            check_recorded_link(Some(&format!("groups/{GROUP}/members/{ALICE}")), &member, group, Link::Members)
                .is_ok()
        );
        assert!(
            check_recorded_link(Some(&format!("groups/{GROUP}/owners/{ALICE}")), &member, group, Link::Members)
                .is_err()
        );
    }

    #[tokio::test]
    async fn nothing_is_sent_for_a_grant_never_asked_for_or_a_scope_of_another_kind() {
        // The credential fails every call: anything sent would be an error, not `Ok`.
        let p = provider("https://graph.microsoft.com").unwrap();
        for s in [spec("directory:/", "Global Administrator"), spec(&format!("group:{GROUP}"), "owner")] {
            let never = Grant { spec: s, recorded: None, issued: false, settled: true };
            assert!(p.revoke(&never).await.is_ok());
            assert!(p.inspect(&never).await.unwrap().is_none());
        }
        let azure = spec("/subscriptions/00000000-0000-0000-0000-000000000001", "Reader");
        assert!(matches!(p.grant(&azure).await, Err(AccessError::Permanent(_))));
        assert!(p.list_managed(&Scope::parse("directory:/").unwrap()).await.unwrap().is_empty());
        assert_eq!(p.kind(), "graph");
    }
}
