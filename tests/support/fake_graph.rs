//! A strict fake of Microsoft Graph v1.0 for what Elevate grants in Entra: directory role
//! assignments and group membership and ownership, built from `shared/graph-spec.md` (§n below).
//! Shapes, status codes and messages are Graph's as far as the spec records them; what Graph would
//! refuse, the fake refuses. A request that is malformed, rather than merely unlucky, is also
//! recorded in [`FakeGraph::violations`], so a test can assert that Elevate never sent one.
//!
//! Reproduced:
//! - §1: the bearer token (401 `InvalidAuthenticationToken`), the error envelope with `innerError`,
//!   `request-id`/`client-request-id`, `Content-Type: application/json` required on bodies.
//! - §2: role assignments — create with validation and server-made deterministic ids (§0 items
//!   5–7, 19, 20), a duplicate is a 400 (§0 item 1), get, delete (204, then 404), list with `$filter`
//!   (`eq`/`in` on `principalId`, `roleDefinitionId`, `directoryScopeId`, joined by `and`) in small
//!   pages with an absolute `@odata.nextLink` and an opaque `$skiptoken` (§6.3, §0 item 15).
//! - §3: the built-in template table (`id == templateId`), `GET roleDefinitions/{id}`, and which
//!   roles may be scoped to an administrative unit.
//! - §4: `$ref` add and remove of members and owners with the duplicate, not-a-member (404 naming the
//!   group) and last-owner answers (§0 items 2, 3, 17); a DELETE without `/$ref` (which deletes the
//!   object in Graph) is refused; lists of members, owners and transitive members; role-assignable
//!   groups need `RoleManagement.ReadWrite.Directory` and take no nested groups (ED groups-concept).
//! - §5: `checkMemberGroups` (at most 20 ids, transitive), `getMemberGroups`, `GET users/{id}`.
//! - §8: application permissions per endpoint; a missing one is a 403 `Authorization_RequestDenied`.
//! - §6, §7: a fault queue (429 with `Retry-After`, 503, any status, a dropped connection), latency,
//!   a write applied but never answered, replication lag per object (§0 item 9) and stale reads
//!   after a write (§0 item 10).
//! - §0 items 13–14, §1, §6: seeded random faults (`FakeGraph::set_random_faults`): 429 storms with
//!   a decimal `Retry-After`, 500 `generalException`, 503 `serviceNotAvailable` and 504 `timeout`
//!   (503 with `Retry-After`), dropped connections, creates and deletes applied and never
//!   answered (§0 item 14: a POST is not idempotent), slow answers.
//!
//! Not reproduced, and refused as a violation when asked for: other resources and API versions,
//! `$expand`, `$count` and advanced queries, `$orderby`, `$search`, `appScopeId`, `PATCH` with
//! `members@odata.bind`, reads of `members/{id}` or `members/$ref`, JSON batching, Microsoft 365,
//! dynamic or mail-enabled groups, devices and contacts. Not modelled at all: throttling computed
//! from resource units (§0 item 12; faults are injected instead), token contents (§8: opaque), the
//! 11,000-group limit of `getMemberGroups`. Where the spec marks a message [U] the fake's wording is
//! plausible, not Graph's (§0 item 4: never branch on messages). The request's shape is checked
//! before its permission, so a malformed request is always recorded.
//!
//! Deliberately stricter than Graph where the spec says "don't": `id` or `condition` in a create
//! body (§2.1), an `@odata.id` on another host than the fake's own (§4.1: build it from the
//! configured endpoint), `ConsistencyLevel` without `$count` (§0 item 11).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::fake_entra::TENANT;
use super::fake_http::{FakeReply, FakeRequest, Handler, serve};

pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
pub const USER_ADMINISTRATOR: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
pub const HELPDESK_ADMINISTRATOR: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
pub const GROUPS_ADMINISTRATOR: &str = "fdd7a751-b60b-444a-984c-02652fe8fa1c";
pub const SECURITY_ADMINISTRATOR: &str = "194ae4cb-b126-40b2-bd5b-6091b380977d";

/// A built-in Entra role: §3's table, copied verbatim.
#[derive(Clone, Copy, Debug)]
pub struct BuiltInRole {
    /// The template id, which is also the role definition's id.
    pub id: &'static str,
    pub display_name: &'static str,
    pub privileged: bool,
    /// Assignable at `/administrativeUnits/{id}` (§0 item 19).
    pub au_assignable: bool,
}

const fn role(id: &'static str, display_name: &'static str, privileged: bool, au_assignable: bool) -> BuiltInRole {
    BuiltInRole { id, display_name, privileged, au_assignable }
}

pub const BUILT_IN_ROLES: &[BuiltInRole] = &[
    role(GLOBAL_ADMINISTRATOR, "Global Administrator", true, false),
    role("e8611ab8-c189-46e8-94e1-60213ab1f814", "Privileged Role Administrator", true, false),
    role("7be44c8a-adaf-4e2a-84d6-ab2649e08a13", "Privileged Authentication Administrator", true, true),
    role(SECURITY_ADMINISTRATOR, "Security Administrator", true, false),
    role("b1be1c3e-b65d-4f19-8427-f6fa0d97feb9", "Conditional Access Administrator", true, false),
    role("9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "Application Administrator", true, false),
    role("158c047a-c907-4556-b7ef-446551a6b5f7", "Cloud Application Administrator", true, false),
    role(USER_ADMINISTRATOR, "User Administrator", true, true),
    role("c4e39bd9-1100-46d3-8c65-fb160da0071f", "Authentication Administrator", true, true),
    role(HELPDESK_ADMINISTRATOR, "Helpdesk Administrator", true, true),
    role("966707d0-3269-4727-9be2-8c3a10f19b9d", "Password Administrator", true, true),
    role("8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2", "Hybrid Identity Administrator", true, false),
    role("3a2c62db-5318-420d-8d74-23affee5d9d5", "Intune Administrator", true, false),
    role("29232cdf-9323-42fd-ade2-1d097af3e4de", "Exchange Administrator", false, false),
    role("f28a1f50-f6e7-4571-818b-6a12f2af6b6c", "SharePoint Administrator", false, true),
    role("69091246-20e8-4a56-aa4d-066075b2a7a8", "Teams Administrator", false, true),
    role(GROUPS_ADMINISTRATOR, "Groups Administrator", false, true),
    role("b0f54661-2d74-4c50-afa3-1ec803f12efe", "Billing Administrator", false, false),
    role("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader", true, false),
    role("9360feb5-f418-4baa-8175-e2a00bac4301", "Directory Writers", true, false),
    role("88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "Directory Readers", false, false),
];

/// §8's least-privilege set: what a fake grants until a test revokes something.
pub const LEAST_PRIVILEGE: &[&str] =
    &["RoleManagement.ReadWrite.Directory", "GroupMember.ReadWrite.All", "Group.ReadWrite.All", "User.Read.All"];

// What each endpoint needs: any one permission of each list (§8, and the per-API pages it cites).
const ROLES_WRITE: &[&str] = &["RoleManagement.ReadWrite.Directory"];
const ROLES_READ: &[&str] = &[
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const MEMBERS_WRITE: &[&str] = &["GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"];
const OWNERS_WRITE: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
const MEMBERS_READ: &[&str] = &[
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const USERS_READ: &[&str] = &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
/// A service principal as a group member (§4.1).
const SERVICE_PRINCIPAL_MEMBER: &[&str] = &["Application.ReadWrite.All"];

/// `innerError.date` of every error: fixed, as nothing may depend on it.
const ERROR_DATE: &str = "2026-11-25T12:00:00";
const JSON_CONTENT_TYPE: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// What the next requests meet, in order.
#[derive(Clone, Debug)]
pub enum GraphFault {
    /// 429 `TooManyRequests` with this `Retry-After` (seconds, maybe decimal: "2.128", §0 item 13).
    Throttle { retry_after: String },
    /// 503 `serviceNotAvailable`, with or without `Retry-After` (§0 item 14).
    Unavailable { retry_after: Option<String> },
    /// Any status in the error envelope.
    Status(u16),
    /// Close the connection without answering.
    Drop,
}

/// Shares of the Graph requests that meet each fault, drawn from a seeded generator in the order
/// requests arrive (`FakeGraph::set_random_faults`). Shares add up to at most 1.
#[derive(Clone, Debug, Default)]
pub struct GraphRandomFaults {
    /// A 429 storm begins: this request and the next `storm - 1` answer 429 with `Retry-After`.
    pub throttle: f64,
    pub storm: usize,
    /// Seconds, maybe decimal (§0 item 13).
    pub retry_after: String,
    /// 500, 503 (with `Retry-After`, §0 item 14) or 504, in the error envelope, nothing applied.
    pub server_error: f64,
    /// The connection dropped unanswered before anything is applied.
    pub drop: f64,
    /// A write applied, then its connection dropped unanswered.
    pub drop_after_apply: f64,
    /// Answered normally, after `slow_by`.
    pub slow: f64,
    pub slow_by: Duration,
}

/// How many Graph requests met each random fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphRandomInjected {
    pub throttled: usize,
    pub storms: usize,
    pub server_errors: usize,
    pub dropped: usize,
    pub dropped_after_apply: usize,
    pub slow: usize,
}

/// What a random draw does to one request.
enum Drawn {
    Fault(GraphFault),
    DropAfterApply,
    Slow(Duration),
}

/// Which requests a queued fault waits for.
#[derive(Clone, Debug)]
pub enum FaultTarget {
    Any,
    /// Requests that change the directory: creates, deletes, `$ref` adds and removes.
    Writes,
    /// Everything else, `checkMemberGroups` and `getMemberGroups` included.
    Reads,
    /// One HTTP method, e.g. "DELETE".
    Method(String),
    /// A list's later page (a request carrying `$skiptoken`).
    LaterPage,
}

impl FaultTarget {
    fn matches(&self, method: &str, write: bool, later_page: bool) -> bool {
        match self {
            FaultTarget::LaterPage => later_page,
            FaultTarget::Any => true,
            FaultTarget::Writes => write,
            FaultTarget::Reads => !write,
            FaultTarget::Method(m) => m.eq_ignore_ascii_case(method),
        }
    }
}

/// A directory role assignment as stored (§2); ids lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignment {
    pub id: String,
    pub role_definition_id: String,
    pub principal_id: String,
    /// `/` or `/administrativeUnits/{id}`.
    pub directory_scope_id: String,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct GraphRequest {
    pub method: String,
    /// Path as sent, without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// 0 when the connection was dropped or never answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// A request real Graph would refuse as malformed, or one the fake does not reproduce.
#[derive(Clone, Debug)]
pub struct Violation {
    pub method: String,
    pub path: String,
    pub reason: String,
}

/// The id Graph gives an assignment (§0 item 6): base64url of the little-endian GUID bytes of
/// role ‖ principal [‖ administrative unit], then `-1`. Tests may compute it; Elevate must not.
pub fn role_assignment_id(role: &str, principal: &str, administrative_unit: Option<&str>) -> String {
    let mut bytes = Vec::with_capacity(48);
    for id in [Some(role), Some(principal), administrative_unit].into_iter().flatten() {
        bytes.extend_from_slice(&Uuid::parse_str(id).expect("a GUID").to_bytes_le());
    }
    format!("{}-1", URL_SAFE_NO_PAD.encode(bytes))
}

// ---- the directory ----

#[derive(Clone, Debug)]
enum Kind {
    User { display_name: String, user_principal_name: String },
    ServicePrincipal,
    Group { display_name: String, role_assignable: bool },
    AdministrativeUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Members,
    Owners,
}

impl Link {
    fn name(self) -> &'static str {
        match self {
            Link::Members => "members",
            Link::Owners => "owners",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Listing {
    Members,
    Owners,
    TransitiveMembers,
}

/// Everything a write changes, so a stale read can be served from a copy taken before it.
#[derive(Clone, Debug, Default)]
struct Directory {
    objects: BTreeMap<Uuid, Kind>,
    members: BTreeMap<Uuid, BTreeSet<Uuid>>,
    owners: BTreeMap<Uuid, BTreeSet<Uuid>>,
    assignments: BTreeMap<String, RoleAssignment>,
}

impl Directory {
    fn group(&self, id: Uuid) -> Option<bool> {
        match self.objects.get(&id) {
            Some(Kind::Group { role_assignable, .. }) => Some(*role_assignable),
            _ => None,
        }
    }

    fn links(&self, link: Link) -> &BTreeMap<Uuid, BTreeSet<Uuid>> {
        match link {
            Link::Members => &self.members,
            Link::Owners => &self.owners,
        }
    }

    fn links_mut(&mut self, link: Link) -> &mut BTreeMap<Uuid, BTreeSet<Uuid>> {
        match link {
            Link::Members => &mut self.members,
            Link::Owners => &mut self.owners,
        }
    }

    /// Members of `group` and, through nested groups, theirs (nested groups included).
    fn transitive_members(&self, group: Uuid) -> Vec<Uuid> {
        let mut seen = BTreeSet::from([group]);
        let mut out = Vec::new();
        let mut queue = VecDeque::from([group]);
        while let Some(g) = queue.pop_front() {
            for m in self.members.get(&g).into_iter().flatten() {
                if seen.insert(*m) {
                    out.push(*m);
                    if self.group(*m).is_some() {
                        queue.push_back(*m);
                    }
                }
            }
        }
        out
    }

    /// Every group `object` belongs to, directly or through nested groups.
    fn member_of(&self, object: Uuid) -> BTreeSet<Uuid> {
        let mut found = BTreeSet::new();
        let mut queue = VecDeque::from([object]);
        while let Some(o) = queue.pop_front() {
            for (g, members) in &self.members {
                if members.contains(&o) && *g != object && found.insert(*g) {
                    queue.push_back(*g);
                }
            }
        }
        found
    }

    fn user_by_id_or_upn(&self, key: &str) -> Option<Uuid> {
        if let Some(id) = guid(key) {
            return matches!(self.objects.get(&id), Some(Kind::User { .. })).then_some(id);
        }
        self.objects.iter().find_map(|(id, kind)| match kind {
            Kind::User { user_principal_name, .. } if user_principal_name.eq_ignore_ascii_case(key) => Some(*id),
            _ => None,
        })
    }
}

/// A directory object as Graph serialises it inside a `directoryObject` collection.
fn object_json(id: Uuid, kind: &Kind) -> Value {
    match kind {
        Kind::User { display_name, user_principal_name } => json!({
            "@odata.type": "#microsoft.graph.user", "id": id, "displayName": display_name,
            "userPrincipalName": user_principal_name, "businessPhones": [], "givenName": null,
            "jobTitle": null, "mail": null, "mobilePhone": null, "officeLocation": null,
            "preferredLanguage": null, "surname": null,
        }),
        Kind::Group { display_name, role_assignable } => json!({
            "@odata.type": "#microsoft.graph.group", "id": id, "displayName": display_name,
            "description": null, "groupTypes": [], "isAssignableToRole": role_assignable,
            "mailEnabled": false, "mailNickname": display_name.replace(' ', ""), "securityEnabled": true,
        }),
        Kind::ServicePrincipal => json!({
            "@odata.type": "#microsoft.graph.servicePrincipal", "id": id,
            "appId": Uuid::new_v5(&Uuid::NAMESPACE_OID, id.as_bytes()),
            "displayName": format!("Service principal {}", &id.to_string()[..8]),
            "servicePrincipalType": "Application",
        }),
        Kind::AdministrativeUnit => json!({
            "@odata.type": "#microsoft.graph.administrativeUnit", "id": id, "displayName": null,
        }),
    }
}

/// Properties `$select` may name on a `directoryObject` collection (users, groups, service principals).
const DIRECTORY_OBJECT_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "userPrincipalName",
    "businessPhones",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "description",
    "groupTypes",
    "isAssignableToRole",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "appId",
    "servicePrincipalType",
];

impl RoleAssignment {
    fn wire(&self) -> Value {
        json!({
            "id": self.id,
            "roleDefinitionId": self.role_definition_id,
            "principalId": self.principal_id,
            "directoryScopeId": self.directory_scope_id,
            "appScopeId": null,
            "condition": null,
            "principalOrganizationId": TENANT,
        })
    }
}

const ASSIGNMENT_PROPERTIES: &[&str] = &[
    "id",
    "roleDefinitionId",
    "principalId",
    "directoryScopeId",
    "appScopeId",
    "condition",
    "principalOrganizationId",
];

fn role_definition_json(role: &BuiltInRole) -> Value {
    json!({
        "id": role.id,
        "description": format!("Built-in role {} (fake Graph).", role.display_name),
        "displayName": role.display_name,
        "isBuiltIn": true,
        "isEnabled": true,
        "resourceScopes": ["/"],
        "templateId": role.id,
        "version": "1",
        "rolePermissions": [],
    })
}

fn guid(s: &str) -> Option<Uuid> {
    if s.len() == 36 { Uuid::try_parse(s).ok() } else { None }
}

fn seed_guid(s: &str) -> Uuid {
    guid(s).unwrap_or_else(|| panic!("fake Graph: `{s}` is not a GUID"))
}

// ---- answers ----

/// A non-2xx answer in the Graph error envelope (§1).
#[derive(Debug)]
struct Refusal {
    status: u16,
    code: &'static str,
    message: String,
    /// Set when the request was malformed (or asked for something the fake does not reproduce).
    violation: Option<String>,
    headers: Vec<(String, String)>,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { status, code, message: message.into(), violation: None, headers: Vec::new() }
    }

    fn violation(mut self, why: impl Into<String>) -> Refusal {
        self.violation = Some(why.into());
        self
    }

    fn header(mut self, name: &str, value: &str) -> Refusal {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn not_found(id: impl Display) -> Refusal {
    Refusal::new(
        404,
        "Request_ResourceNotFound",
        format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
    )
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal::new(400, "Request_BadRequest", message)
}

/// A malformed request: 400 with `code` and `message`, recorded as a violation.
fn malformed(code: &'static str, message: impl Into<String>) -> Refusal {
    let message = message.into();
    Refusal::new(400, code, message.clone()).violation(message)
}

fn invalid_object_id(id: &str) -> Refusal {
    malformed("Request_BadRequest", format!("Invalid object identifier '{id}'."))
}

fn fault_refusal(fault: GraphFault) -> Result<Reply, Refusal> {
    Err(match fault {
        GraphFault::Throttle { retry_after } => {
            Refusal::new(429, "TooManyRequests", "Please retry again later.").header("Retry-After", &retry_after)
        }
        GraphFault::Unavailable { retry_after } => {
            let r = Refusal::new(503, "serviceNotAvailable", "The service is temporarily unavailable.");
            match retry_after {
                Some(after) => r.header("Retry-After", &after),
                None => r,
            }
        }
        GraphFault::Status(status) => {
            let code = match status {
                429 => "TooManyRequests",
                500 => "generalException",
                503 => "serviceNotAvailable",
                504 => "timeout",
                _ => "UnknownError",
            };
            Refusal::new(status, code, "Injected by the fake Graph.")
        }
        GraphFault::Drop => return Ok(Reply::Drop),
    })
}

enum Reply {
    Json(u16, Value),
    NoContent,
    Drop,
    Hang,
}

// ---- routes ----

#[derive(Clone, Copy, Debug)]
enum Route<'a> {
    Assignments,
    Assignment(&'a str),
    RoleDefinition(&'a str),
    Group(&'a str),
    List(&'a str, Listing),
    AddLink(&'a str, Link),
    RemoveLink(&'a str, Link, &'a str),
    /// `/groups/{g}/members/{id}` without `/$ref`.
    LinkedObject(&'a str, Link, &'a str),
    User(&'a str),
    CheckMemberGroups(&'a str),
    GetMemberGroups(&'a str),
}

impl<'a> Route<'a> {
    fn parse(segments: &[&'a str]) -> Option<Route<'a>> {
        let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
        let link = |s: &str| {
            if is(s, "members") {
                Some(Link::Members)
            } else if is(s, "owners") {
                Some(Link::Owners)
            } else {
                None
            }
        };
        let action = |s: &str| s.strip_prefix("microsoft.graph.").unwrap_or(s).to_ascii_lowercase();
        Some(match *segments {
            [rm, d, c] if is(rm, "roleManagement") && is(d, "directory") && is(c, "roleAssignments") => {
                Route::Assignments
            }
            [rm, d, c, id] if is(rm, "roleManagement") && is(d, "directory") && is(c, "roleAssignments") => {
                Route::Assignment(id)
            }
            [rm, d, c, id] if is(rm, "roleManagement") && is(d, "directory") && is(c, "roleDefinitions") => {
                Route::RoleDefinition(id)
            }
            [g, id] if is(g, "groups") => Route::Group(id),
            [g, id, l] if is(g, "groups") => match link(l) {
                Some(Link::Members) => Route::List(id, Listing::Members),
                Some(Link::Owners) => Route::List(id, Listing::Owners),
                None if is(l, "transitiveMembers") => Route::List(id, Listing::TransitiveMembers),
                None => return None,
            },
            [g, id, l, "$ref"] if is(g, "groups") => Route::AddLink(id, link(l)?),
            [g, id, l, m, "$ref"] if is(g, "groups") => Route::RemoveLink(id, link(l)?, m),
            [g, id, l, m] if is(g, "groups") => Route::LinkedObject(id, link(l)?, m),
            [u, id] if is(u, "users") => Route::User(id),
            [u, id, a] if is(u, "users") && action(a) == "checkmembergroups" => Route::CheckMemberGroups(id),
            [u, id, a] if is(u, "users") && action(a) == "getmembergroups" => Route::GetMemberGroups(id),
            _ => return None,
        })
    }

    fn methods(self) -> &'static [&'static str] {
        match self {
            Route::Assignments => &["GET", "POST"],
            Route::Assignment(_) => &["GET", "DELETE"],
            Route::LinkedObject(..) => &["GET", "DELETE"],
            Route::AddLink(..) | Route::CheckMemberGroups(_) | Route::GetMemberGroups(_) => &["POST"],
            Route::RemoveLink(..) => &["DELETE"],
            Route::RoleDefinition(_) | Route::Group(_) | Route::List(..) | Route::User(_) => &["GET"],
        }
    }

    fn is_write(self, method: &str) -> bool {
        match self {
            Route::Assignments => method == "POST",
            Route::Assignment(_) | Route::LinkedObject(..) => method == "DELETE",
            Route::AddLink(..) | Route::RemoveLink(..) => true,
            _ => false,
        }
    }

    /// The query options this route accepts.
    fn options(self) -> &'static [&'static str] {
        match self {
            Route::Assignments => &["$filter", "$top", "$skiptoken", "$select"],
            Route::List(..) => &["$top", "$skiptoken", "$select"],
            Route::Assignment(_) | Route::RoleDefinition(_) | Route::Group(_) | Route::User(_) => &["$select"],
            _ => &[],
        }
    }
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| path.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- $filter (§2.3) ----

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Literal(String),
    Open,
    Close,
    Comma,
}

fn tokenize(filter: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = filter.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '\'' => {
                chars.next();
                let mut literal = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            literal.push('\'');
                        }
                        Some('\'') => break,
                        Some(ch) => literal.push(ch),
                        None => return Err("unterminated string literal".into()),
                    }
                }
                tokens.push(Token::Literal(literal));
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if matches!(ch, ' ' | '(' | ')' | ',' | '\'') {
                        break;
                    }
                    word.push(ch);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

const FILTERABLE: &[&str] = &["principalId", "roleDefinitionId", "directoryScopeId"];

/// `clause (and clause)*`, a clause being `prop eq 'v'` or `prop in ('v', ...)`: (property, values).
fn parse_filter(filter: &str) -> Result<Vec<(&'static str, Vec<String>)>, String> {
    let tokens = tokenize(filter)?;
    let mut it = tokens.into_iter().peekable();
    let mut clauses = Vec::new();
    loop {
        let property = match it.next() {
            Some(Token::Word(w)) => FILTERABLE
                .iter()
                .find(|p| **p == w)
                .copied()
                .ok_or_else(|| format!("property or function '{w}' is not supported"))?,
            other => return Err(format!("expected a property, found {other:?}")),
        };
        let values = match it.next() {
            Some(Token::Word(op)) if op == "eq" => match it.next() {
                Some(Token::Literal(v)) => vec![v],
                other => return Err(format!("'{property} eq' needs a quoted string, found {other:?}")),
            },
            Some(Token::Word(op)) if op == "in" => {
                if it.next() != Some(Token::Open) {
                    return Err(format!("'{property} in' needs a parenthesised list"));
                }
                let mut values = Vec::new();
                loop {
                    match it.next() {
                        Some(Token::Literal(v)) => values.push(v),
                        other => return Err(format!("'{property} in' needs quoted strings, found {other:?}")),
                    }
                    match it.next() {
                        Some(Token::Comma) => {}
                        Some(Token::Close) => break,
                        other => return Err(format!("unexpected {other:?} in a list")),
                    }
                }
                values
            }
            other => return Err(format!("operator {other:?} is not supported on '{property}' (only eq and in)")),
        };
        clauses.push((property, values));
        match it.next() {
            None => return Ok(clauses),
            Some(Token::Word(w)) if w == "and" => {}
            Some(other) => return Err(format!("only 'and' may join clauses, found {other:?}")),
        }
    }
}

// ---- the fake ----

struct State {
    dir: Directory,
    /// The directory before the last write, and how many more reads see it (§7).
    stale: Option<(Directory, usize)>,
    stale_reads: usize,
    permissions: BTreeSet<String>,
    /// Object id (lowercase) → how many more writes naming it meet a replication error.
    replicating: HashMap<String, usize>,
    faults: VecDeque<(FaultTarget, GraphFault)>,
    /// Requests whose path contains the key fail with the status, every time.
    targeted: Vec<(String, u16)>,
    page_size: usize,
    latency: Duration,
    hang_next_write: Option<tokio::sync::oneshot::Sender<()>>,
    requests: Vec<GraphRequest>,
    violations: Vec<Violation>,
    in_flight: usize,
    max_in_flight: usize,
    /// Faults drawn at random for every request, from a seeded generator.
    random: Option<(rand::rngs::StdRng, GraphRandomFaults)>,
    /// Requests left in the current 429 storm.
    storm_left: usize,
    injected: GraphRandomInjected,
}

impl State {
    fn require(&self, any_of: &[&str]) -> Result<(), Refusal> {
        if any_of.iter().any(|p| self.permissions.contains(*p)) {
            Ok(())
        } else {
            Err(Refusal::new(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."))
        }
    }

    /// True (and one fewer left) when a write naming `id` must meet a replication error.
    fn still_replicating(&mut self, id: impl Display) -> bool {
        match self.replicating.get_mut(&id.to_string()) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// The copy to mutate's "before", when stale reads are on.
    fn before_write(&self) -> Option<Directory> {
        (self.stale_reads > 0).then(|| self.dir.clone())
    }

    /// A write was applied: arm stale reads and a pending hang.
    fn commit(&mut self, before: Option<Directory>, reply: Reply) -> Reply {
        if let Some(before) = before {
            self.stale = Some((before, self.stale_reads));
        }
        if let Some(applied) = self.hang_next_write.take() {
            let _ = applied.send(());
            return Reply::Hang;
        }
        reply
    }

    fn take_fault(&mut self, method: &str, write: bool, later_page: bool, path: &str) -> Option<GraphFault> {
        if let Some(at) = self.faults.iter().position(|(target, _)| target.matches(method, write, later_page)) {
            return self.faults.remove(at).map(|(_, fault)| fault);
        }
        let path = path.to_ascii_lowercase();
        self.targeted.iter().find(|(k, _)| path.contains(k.as_str())).map(|(_, status)| GraphFault::Status(*status))
    }
}

/// The directory a read sees: before the last write while stale reads last (§7), else the current one.
fn view<'a>(dir: &'a Directory, stale: &'a mut Option<(Directory, usize)>) -> &'a Directory {
    if let Some((before, left)) = stale.as_mut()
        && *left > 0
    {
        *left -= 1;
        return before;
    }
    dir
}

/// Refuses a `$select` naming a property `known` lacks.
fn check_select(select: Option<&str>, known: &[&str], type_name: &str) -> Result<(), Refusal> {
    let unknown = select.into_iter().flat_map(|s| s.split(',')).map(str::trim).find(|p| !known.contains(p));
    match unknown {
        Some(unknown) => Err(malformed(
            "Request_BadRequest",
            format!("Could not find a property named '{unknown}' on type 'microsoft.graph.{type_name}'."),
        )),
        None => Ok(()),
    }
}

/// Applies a checked `$select`: only the named properties (and `@odata.*`) remain.
fn project(entity: Value, select: Option<&str>) -> Value {
    let (Some(select), Value::Object(map)) = (select, &entity) else { return entity };
    let wanted: Vec<&str> = select.split(',').map(str::trim).collect();
    Value::Object(
        map.iter()
            .filter(|(k, _)| k.starts_with("@odata.") || wanted.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

pub struct FakeGraph {
    state: Mutex<State>,
    /// The one bearer token the fake accepts.
    pub token: String,
    addr: OnceLock<SocketAddr>,
}

impl FakeGraph {
    pub async fn start() -> Arc<FakeGraph> {
        let fake = Arc::new(FakeGraph {
            state: Mutex::new(State {
                dir: Directory::default(),
                stale: None,
                stale_reads: 0,
                permissions: LEAST_PRIVILEGE.iter().map(|p| (*p).to_owned()).collect(),
                replicating: HashMap::new(),
                faults: VecDeque::new(),
                targeted: Vec::new(),
                page_size: 3,
                latency: Duration::ZERO,
                hang_next_write: None,
                requests: Vec::new(),
                violations: Vec::new(),
                in_flight: 0,
                max_in_flight: 0,
                random: None,
                storm_left: 0,
                injected: GraphRandomInjected::default(),
            }),
            token: format!("fake-graph-token-{}", Uuid::new_v4()),
            addr: OnceLock::new(),
        });
        let for_handler = Arc::clone(&fake);
        let handler: Handler = Arc::new(move |req| {
            let fake = Arc::clone(&for_handler);
            Box::pin(async move { fake.handle(req).await })
        });
        let (addr, _task) = serve(handler).await;
        fake.addr.set(addr).unwrap();
        fake
    }

    /// `http://127.0.0.1:<port>`; Elevate calls `{url}/v1.0/...`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr.get().unwrap())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    // ---- seeding (no request, no permission check, no stale-read snapshot) ----

    /// A user; its `userPrincipalName` is made from the display name.
    pub fn add_user(&self, id: &str, display_name: &str) {
        let user_principal_name = format!("{}@contoso.example", display_name.to_ascii_lowercase().replace(' ', "."));
        let kind = Kind::User { display_name: display_name.into(), user_principal_name };
        self.state().dir.objects.insert(seed_guid(id), kind);
    }
    pub fn add_service_principal(&self, id: &str) {
        self.state().dir.objects.insert(seed_guid(id), Kind::ServicePrincipal);
    }
    /// A security group; only a role-assignable one can hold a directory role (§0 item 20).
    pub fn add_group(&self, id: &str, display_name: &str, role_assignable: bool) {
        let kind = Kind::Group { display_name: display_name.into(), role_assignable };
        self.state().dir.objects.insert(seed_guid(id), kind);
    }
    pub fn add_administrative_unit(&self, id: &str) {
        self.state().dir.objects.insert(seed_guid(id), Kind::AdministrativeUnit);
    }
    /// Standing membership, nested groups included (never into a role-assignable group).
    pub fn add_member(&self, group: &str, member: &str) {
        let (group, member) = (seed_guid(group), seed_guid(member));
        let mut s = self.state();
        let role_assignable = s.dir.group(group).unwrap_or_else(|| panic!("fake Graph: no group {group}"));
        match s.dir.objects.get(&member) {
            None | Some(Kind::AdministrativeUnit) => panic!("fake Graph: {member} cannot be a member"),
            Some(Kind::Group { .. }) if role_assignable => panic!("fake Graph: no groups in role-assignable groups"),
            Some(_) => {}
        }
        s.dir.members.entry(group).or_default().insert(member);
    }
    /// Someone leaves a group (directly), as an administrator would make them.
    pub fn remove_member(&self, group: &str, member: &str) {
        let (group, member) = (seed_guid(group), seed_guid(member));
        if let Some(members) = self.state().dir.members.get_mut(&group) {
            members.remove(&member);
        }
    }
    /// A standing owner (a user or a service principal).
    pub fn add_owner(&self, group: &str, owner: &str) {
        let (group, owner) = (seed_guid(group), seed_guid(owner));
        let mut s = self.state();
        assert!(s.dir.group(group).is_some(), "fake Graph: no group {group}");
        assert!(
            matches!(s.dir.objects.get(&owner), Some(Kind::User { .. } | Kind::ServicePrincipal)),
            "fake Graph: {owner} cannot own a group"
        );
        s.dir.owners.entry(group).or_default().insert(owner);
    }
    /// An administrator removes an owner, outside Elevate.
    pub fn remove_owner(&self, group: &str, owner: &str) {
        let (group, owner) = (seed_guid(group), seed_guid(owner));
        if let Some(owners) = self.state().dir.owners.get_mut(&group) {
            owners.remove(&owner);
        }
    }
    /// Standing access made outside Elevate; returns its id.
    pub fn add_role_assignment(&self, role: &str, principal: &str, directory_scope_id: &str) -> String {
        let au = directory_scope_id.strip_prefix("/administrativeUnits/");
        assert!(au.is_some() || directory_scope_id == "/", "fake Graph: bad scope {directory_scope_id}");
        let id = role_assignment_id(role, principal, au);
        let assignment = RoleAssignment {
            id: id.clone(),
            role_definition_id: seed_guid(role).to_string(),
            principal_id: seed_guid(principal).to_string(),
            directory_scope_id: au.map_or_else(|| "/".into(), |au| format!("/administrativeUnits/{}", seed_guid(au))),
        };
        self.state().dir.assignments.insert(id.clone(), assignment);
        id
    }

    /// An administrator removes an assignment (by id), outside Elevate.
    pub fn remove_role_assignment(&self, id: &str) {
        self.state().dir.assignments.remove(id);
    }

    // ---- test controls ----

    /// The next `writes` writes naming `id` (principal, group, member, AU or assignment id) meet
    /// the replication errors of §0 item 9 and §7.
    pub fn replicating(&self, id: &str, writes: usize) {
        self.state().replicating.insert(id.to_ascii_lowercase(), writes);
    }
    pub fn grant_permission(&self, permission: &str) {
        self.state().permissions.insert(permission.into());
    }
    pub fn revoke_permission(&self, permission: &str) {
        self.state().permissions.remove(permission);
    }
    /// Applied to the next request, whatever it is, after those queued before it.
    pub fn push_fault(&self, fault: GraphFault) {
        self.push_fault_for(FaultTarget::Any, fault);
    }
    /// Applied to the next request `target` matches; requests it does not match pass.
    pub fn push_fault_for(&self, target: FaultTarget, fault: GraphFault) {
        self.state().faults.push_back((target, fault));
    }
    /// Every request whose path contains `path_contains` (case-insensitive) fails with `status`.
    pub fn fail_always(&self, path_contains: &str, status: u16) {
        self.state().targeted.push((path_contains.to_ascii_lowercase(), status));
    }
    pub fn heal(&self, path_contains: &str) {
        self.state().targeted.retain(|(k, _)| *k != path_contains.to_ascii_lowercase());
    }
    /// Faults at random from now on, drawn from a generator seeded with `seed`.
    pub fn set_random_faults(&self, seed: u64, faults: GraphRandomFaults) {
        use rand::SeedableRng;
        let mut s = self.state();
        s.random = Some((rand::rngs::StdRng::seed_from_u64(seed), faults));
        s.storm_left = 0;
    }
    /// No more random faults (a storm in progress ends too).
    pub fn clear_random_faults(&self) {
        let mut s = self.state();
        s.random = None;
        s.storm_left = 0;
    }
    pub fn random_injected(&self) -> GraphRandomInjected {
        self.state().injected
    }
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }
    /// Items per page of every list (default 3).
    pub fn set_page_size(&self, n: usize) {
        assert!(n > 0);
        self.state().page_size = n;
    }
    /// After each write, the next `n` directory reads show the state before it (§7); 0 turns it off.
    pub fn set_stale_reads(&self, n: usize) {
        let mut s = self.state();
        s.stale_reads = n;
        if n == 0 {
            s.stale = None;
        }
    }
    /// The next successful write is applied, then never answered; the receiver fires once applied.
    pub fn hang_next_write(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.state().hang_next_write = Some(tx);
        rx
    }

    // ---- inspection (always the current state, never a stale one) ----

    pub fn role_assignments(&self) -> Vec<RoleAssignment> {
        self.state().dir.assignments.values().cloned().collect()
    }
    pub fn members(&self, group: &str) -> Vec<String> {
        self.linked(group, Link::Members)
    }
    pub fn owners(&self, group: &str) -> Vec<String> {
        self.linked(group, Link::Owners)
    }
    fn linked(&self, group: &str, link: Link) -> Vec<String> {
        let s = self.state();
        s.dir.links(link).get(&seed_guid(group)).into_iter().flatten().map(Uuid::to_string).collect()
    }
    pub fn requests(&self) -> Vec<GraphRequest> {
        self.state().requests.clone()
    }
    pub fn violations(&self) -> Vec<Violation> {
        self.state().violations.clone()
    }
    pub fn max_in_flight(&self) -> usize {
        self.state().max_in_flight
    }
    pub fn reset_log(&self) {
        let mut s = self.state();
        s.requests.clear();
        s.violations.clear();
        s.max_in_flight = 0;
    }

    // ---- serving ----

    async fn handle(&self, req: FakeRequest) -> FakeReply {
        let at = Instant::now();
        let latency = {
            let mut s = self.state();
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            s.latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let request_id = Uuid::new_v4().to_string();
        let client_request_id = req.header("client-request-id").map_or_else(|| request_id.clone(), str::to_owned);
        let drawn = self.draw(&req);
        if let Some(Drawn::Slow(by)) = drawn {
            tokio::time::sleep(by).await;
        }
        let answer = match drawn {
            Some(Drawn::Fault(fault)) => self.answer(&req, Some(fault)),
            Some(Drawn::DropAfterApply) => {
                let _ = self.answer(&req, None);
                Ok(Reply::Drop)
            }
            Some(Drawn::Slow(_)) | None => self.answer(&req, None),
        };
        let mut s = self.state();
        s.in_flight -= 1;
        let ids = vec![
            ("request-id".to_owned(), request_id.clone()),
            ("client-request-id".into(), client_request_id.clone()),
        ];
        let (status, reply) = match answer {
            Ok(Reply::Json(status, body)) => {
                let mut headers = ids;
                headers.push(("Content-Type".into(), JSON_CONTENT_TYPE.into()));
                (status, FakeReply::Respond { status, headers, body: serde_json::to_vec(&body).unwrap() })
            }
            Ok(Reply::NoContent) => (204, FakeReply::Respond { status: 204, headers: ids, body: Vec::new() }),
            Ok(Reply::Drop) => (0, FakeReply::Drop),
            Ok(Reply::Hang) => (0, FakeReply::Hang),
            Err(refusal) => {
                if let Some(reason) = refusal.violation {
                    s.violations.push(Violation { method: req.method.clone(), path: req.path.clone(), reason });
                }
                let mut inner =
                    json!({"date": ERROR_DATE, "request-id": request_id, "client-request-id": client_request_id});
                if refusal.status == 429 {
                    // The throttling sample's extra inner fields (§6.1).
                    inner["code"] = json!("429");
                    inner["message"] = json!("Please retry after");
                    inner["status"] = json!("429");
                }
                let body = json!({"error": {"code": refusal.code, "message": refusal.message, "innerError": inner}});
                let mut headers = ids;
                headers.push(("Content-Type".into(), JSON_CONTENT_TYPE.into()));
                headers.extend(refusal.headers);
                let status = refusal.status;
                (status, FakeReply::Respond { status, headers, body: serde_json::to_vec(&body).unwrap() })
            }
        };
        s.requests.push(GraphRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            status,
            at,
        });
        reply
    }

    /// The random fault `req` meets, if any (a storm in progress first).
    fn draw(&self, req: &FakeRequest) -> Option<Drawn> {
        use rand::Rng;
        let mut s = self.state();
        let s = &mut *s;
        let (rng, f) = s.random.as_mut()?;
        let throttle = || GraphFault::Throttle { retry_after: f.retry_after.clone() };
        if s.storm_left > 0 {
            s.storm_left -= 1;
            s.injected.throttled += 1;
            return Some(Drawn::Fault(throttle()));
        }
        let draw: f64 = rng.r#gen();
        let mut edge = f.throttle;
        if draw < edge {
            s.storm_left = f.storm.saturating_sub(1);
            s.injected.storms += 1;
            s.injected.throttled += 1;
            return Some(Drawn::Fault(throttle()));
        }
        edge += f.server_error;
        if draw < edge {
            s.injected.server_errors += 1;
            return Some(Drawn::Fault(match rng.gen_range(0..3) {
                0 => GraphFault::Status(500),
                1 => GraphFault::Unavailable { retry_after: Some(f.retry_after.clone()) },
                _ => GraphFault::Status(504),
            }));
        }
        edge += f.drop;
        if draw < edge {
            s.injected.dropped += 1;
            return Some(Drawn::Fault(GraphFault::Drop));
        }
        edge += f.drop_after_apply;
        if draw < edge {
            // A read applies nothing: it goes through untouched.
            if !matches!(req.method.as_str(), "POST" | "DELETE") || req.path.ends_with("MemberGroups") {
                return None;
            }
            s.injected.dropped_after_apply += 1;
            return Some(Drawn::DropAfterApply);
        }
        edge += f.slow;
        if draw < edge {
            s.injected.slow += 1;
            return Some(Drawn::Slow(f.slow_by));
        }
        None
    }

    /// The answer to `req`; `injected` (a random fault) is met where a queued one would be.
    fn answer(&self, req: &FakeRequest, injected: Option<GraphFault>) -> Result<Reply, Refusal> {
        match req.header("authorization") {
            None => {
                return Err(Refusal::new(401, "InvalidAuthenticationToken", "Access token is empty.")
                    .header("WWW-Authenticate", "Bearer realm=\"\"")
                    .violation("no Authorization header"));
            }
            Some(v) if v != format!("Bearer {}", self.token) => {
                return Err(Refusal::new(
                    401,
                    "InvalidAuthenticationToken",
                    "CompactToken parsing failed with error code: 80049217",
                )
                .header("WWW-Authenticate", "Bearer realm=\"\""));
            }
            Some(_) => {}
        }
        if req.header("consistencylevel").is_some() && req.query("$count").is_none() {
            return Err(malformed(
                "Request_UnsupportedQuery",
                "The ConsistencyLevel header is only meaningful with $count=true (graph-spec §0 item 11).",
            ));
        }
        let path = percent_decode(&req.path);
        let mut segments = path.trim_start_matches('/').split('/');
        let version = segments.next().unwrap_or_default();
        if version != "v1.0" {
            return Err(malformed("BadRequest", format!("Invalid version: {version}")));
        }
        let segments: Vec<&str> = segments.collect();
        let Some(route) = Route::parse(&segments) else {
            let last = segments.last().copied().unwrap_or_default();
            return Err(malformed("BadRequest", format!("Resource not found for the segment '{last}'.")));
        };
        let method = req.method.as_str();
        if !route.methods().contains(&method) {
            return Err(Refusal::new(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
            .violation(format!("{method} is not allowed on {route:?}")));
        }
        check_query(req, route)?;
        let body = if method == "POST" { json_body(req)? } else { Value::Null };

        let mut guard = self.state();
        let s = &mut *guard;
        if let Some(fault) = injected
            .or_else(|| s.take_fault(method, route.is_write(method), req.query("$skiptoken").is_some(), &req.path))
        {
            return fault_refusal(fault);
        }
        match (route, method) {
            (Route::Assignments, "GET") => self.list_assignments(s, req),
            (Route::Assignments, _) => self.create_assignment(s, &body),
            (Route::Assignment(id), "GET") => {
                s.require(ROLES_READ)?;
                let dir = view(&s.dir, &mut s.stale);
                let a = dir.assignments.get(id).ok_or_else(|| not_found(id))?;
                self.entity(req, a.wire(), "unifiedRoleAssignment", "roleManagement/directory/roleAssignments")
            }
            (Route::Assignment(id), _) => {
                s.require(ROLES_WRITE)?;
                if s.still_replicating(id.to_ascii_lowercase()) || !s.dir.assignments.contains_key(id) {
                    return Err(not_found(id));
                }
                let before = s.before_write();
                s.dir.assignments.remove(id);
                Ok(s.commit(before, Reply::NoContent))
            }
            (Route::RoleDefinition(id), _) => {
                s.require(ROLES_READ)?;
                let role =
                    BUILT_IN_ROLES.iter().find(|r| r.id.eq_ignore_ascii_case(id)).ok_or_else(|| not_found(id))?;
                self.entity(
                    req,
                    role_definition_json(role),
                    "unifiedRoleDefinition",
                    "roleManagement/directory/roleDefinitions",
                )
            }
            (Route::Group(g), _) => {
                let group = guid(g).ok_or_else(|| invalid_object_id(g))?;
                s.require(MEMBERS_READ)?;
                let dir = view(&s.dir, &mut s.stale);
                let kind = dir
                    .objects
                    .get(&group)
                    .filter(|k| matches!(k, Kind::Group { .. }))
                    .ok_or_else(|| not_found(group))?;
                self.entity(req, object_json(group, kind), "group", "groups")
            }
            (Route::List(g, listing), _) => self.list_links(s, req, g, listing),
            (Route::AddLink(g, link), _) => self.add_link(s, g, link, &body),
            (Route::RemoveLink(g, link, m), _) => self.remove_link(s, g, link, m),
            (Route::LinkedObject(g, link, m), _) => {
                let l = link.name();
                Err(if method == "DELETE" {
                    bad_request(format!("DELETE /groups/{g}/{l}/{m} deletes the object itself in Microsoft Graph; remove a {l} link with /{l}/{m}/$ref."))
                        .violation(format!("DELETE of /groups/{g}/{l}/{m} without /$ref (graph-spec §4.2)"))
                } else {
                    malformed(
                        "BadRequest",
                        format!("GET /groups/{{id}}/{l}/{{id}} is not reproduced by the fake Graph."),
                    )
                })
            }
            (Route::User(u), _) => {
                s.require(USERS_READ)?;
                let dir = view(&s.dir, &mut s.stale);
                let id = dir.user_by_id_or_upn(u).ok_or_else(|| not_found(u))?;
                self.entity(req, object_json(id, dir.objects.get(&id).unwrap()), "user", "users")
            }
            (Route::CheckMemberGroups(u), _) => self.check_member_groups(s, u, &body),
            (Route::GetMemberGroups(u), _) => {
                if !body.get("securityEnabledOnly").is_some_and(Value::is_boolean) {
                    return Err(malformed(
                        "Request_BadRequest",
                        "The parameter 'securityEnabledOnly' is required and must be a boolean.",
                    ));
                }
                s.require(USERS_READ)?;
                s.require(MEMBERS_READ)?;
                let dir = view(&s.dir, &mut s.stale);
                let user = dir.user_by_id_or_upn(u).ok_or_else(|| not_found(u))?;
                // Every fake group is a security group, so securityEnabledOnly filters nothing.
                let groups: Vec<String> = dir.member_of(user).iter().map(Uuid::to_string).collect();
                Ok(Reply::Json(200, json!({"@odata.context": self.context("Collection(Edm.String)"), "value": groups})))
            }
        }
    }

    fn context(&self, what: &str) -> String {
        format!("{}/v1.0/$metadata#{what}", self.url())
    }

    /// A single entity as a GET answers it: `$select` applied, `@odata.context`, no `@odata.type`.
    fn entity(&self, req: &FakeRequest, entity: Value, type_name: &str, collection: &str) -> Result<Reply, Refusal> {
        let select = req.query("$select");
        let known: Vec<&str> = entity
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .map(String::as_str)
            .filter(|k| !k.starts_with('@'))
            .collect();
        check_select(select, &known, type_name)?;
        let mut entity = project(entity, select);
        if let Some(map) = entity.as_object_mut() {
            map.remove("@odata.type");
            let context = match select {
                Some(select) => format!("{collection}({select})/$entity"),
                None => format!("{collection}/$entity"),
            };
            map.insert("@odata.context".into(), json!(self.context(&context)));
        }
        Ok(Reply::Json(200, entity))
    }
}

/// Query options the route accepts, each once; `$top` within 1..=999 (§0 item 15).
fn check_query(req: &FakeRequest, route: Route<'_>) -> Result<(), Refusal> {
    let allowed = route.options();
    let mut seen = BTreeSet::new();
    for (key, value) in &req.query {
        if !seen.insert(key.as_str()) {
            return Err(malformed("Request_BadRequest", format!("Query option '{key}' was specified more than once.")));
        }
        if !allowed.contains(&key.as_str()) {
            return Err(malformed(
                "Request_UnsupportedQuery",
                format!("Query option '{key}' is not supported here by the fake Graph."),
            ));
        }
        if key == "$top" && !value.parse::<usize>().is_ok_and(|n| (1..=999).contains(&n)) {
            return Err(malformed(
                "Request_BadRequest",
                format!("Invalid page size specified: '{value}'. Must be between 1 and 999 inclusive."),
            ));
        }
    }
    Ok(())
}

impl FakeGraph {
    /// One page of `items`, with an absolute `@odata.nextLink` when more remain (§6.3).
    fn page(&self, req: &FakeRequest, items: Vec<Value>, page_size: usize, context: &str) -> Result<Reply, Refusal> {
        let kept: Vec<(String, String)> = req.query.iter().filter(|(k, _)| k != "$skiptoken").cloned().collect();
        let fingerprint = {
            let mut sorted = kept.clone();
            sorted.sort();
            let digest = Sha256::digest(format!("{}{sorted:?}", req.path.to_ascii_lowercase()).as_bytes());
            digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
        };
        let offset = match req.query("$skiptoken") {
            None => 0,
            Some(token) => {
                let decoded =
                    URL_SAFE_NO_PAD.decode(token).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
                match decoded.split_once(':') {
                    Some((offset, print)) if print == fingerprint => offset.parse().unwrap_or(usize::MAX),
                    _ => {
                        return Err(malformed(
                            "Request_BadRequest",
                            "$skiptoken is invalid: follow @odata.nextLink verbatim (graph-spec §6.3).",
                        ));
                    }
                }
            }
        };
        let size = req.query("$top").and_then(|t| t.parse().ok()).map_or(page_size, |top: usize| top.min(page_size));
        let page: Vec<Value> = items.iter().skip(offset).take(size).cloned().collect();
        let mut body = json!({"@odata.context": self.context(context), "value": page});
        let next = offset.saturating_add(size);
        if next < items.len() {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &kept {
                query.append_pair(k, v);
            }
            query.append_pair("$skiptoken", &URL_SAFE_NO_PAD.encode(format!("{next}:{fingerprint}")));
            body["@odata.nextLink"] = json!(format!("{}{}?{}", self.url(), req.path, query.finish()));
        }
        Ok(Reply::Json(200, body))
    }

    // ---- role assignments (§2) ----

    fn create_assignment(&self, s: &mut State, body: &Value) -> Result<Reply, Refusal> {
        let Some(fields) = body.as_object() else {
            return Err(malformed("BadRequest", "The request body must be a JSON object."));
        };
        for read_only in ["id", "condition"] {
            if fields.get(read_only).is_some_and(|v| !v.is_null()) {
                return Err(malformed(
                    "Request_BadRequest",
                    format!("Property '{read_only}' must not be sent on create (graph-spec §2.1)."),
                ));
            }
        }
        if fields.get("appScopeId").is_some_and(|v| !v.is_null()) {
            return Err(malformed(
                "Request_BadRequest",
                "appScopeId is not reproduced by the fake Graph; use directoryScopeId.",
            ));
        }
        let role = required_guid(fields, "roleDefinitionId")?;
        let principal = required_guid(fields, "principalId")?;
        let scope_error =
            || malformed("Request_BadRequest", "Must specify valid property scope of entity RoleAssignment");
        let administrative_unit = match fields.get("directoryScopeId").and_then(Value::as_str) {
            Some("/") => None,
            Some(scope) => match scope.strip_prefix("/administrativeUnits/").and_then(guid) {
                Some(au) => Some(au),
                None => return Err(scope_error()),
            },
            None => return Err(scope_error()),
        };
        s.require(ROLES_WRITE)?;
        for id in [Some(principal), Some(role), administrative_unit].into_iter().flatten() {
            if s.still_replicating(id) {
                return Err(not_found(id));
            }
        }
        let definition = BUILT_IN_ROLES.iter().find(|r| r.id == role.to_string()).ok_or_else(|| not_found(role))?;
        if let Some(au) = administrative_unit {
            if !matches!(s.dir.objects.get(&au), Some(Kind::AdministrativeUnit)) {
                return Err(bad_request(format!("Administrative unit '{au}' does not exist.")));
            }
            if !definition.au_assignable {
                return Err(bad_request(format!(
                    "Role '{}' cannot be assigned at an administrative unit scope.",
                    definition.display_name
                )));
            }
        }
        match s.dir.objects.get(&principal) {
            None => return Err(not_found(principal)),
            Some(Kind::Group { role_assignable: false, .. }) => {
                return Err(bad_request(format!(
                    "Group '{principal}' is not role-assignable (isAssignableToRole is false)."
                )));
            }
            Some(Kind::AdministrativeUnit) => {
                return Err(bad_request(format!("'{principal}' cannot be assigned a role.")));
            }
            Some(_) => {}
        }
        let au_text = administrative_unit.map(|au| au.to_string());
        let id = role_assignment_id(&role.to_string(), &principal.to_string(), au_text.as_deref());
        if s.dir.assignments.contains_key(&id) {
            return Err(bad_request(
                "A conflicting object with one or more of the specified property values is present in the directory.",
            ));
        }
        let assignment = RoleAssignment {
            id: id.clone(),
            role_definition_id: role.to_string(),
            principal_id: principal.to_string(),
            directory_scope_id: au_text.map_or_else(|| "/".into(), |au| format!("/administrativeUnits/{au}")),
        };
        let mut entity = assignment.wire();
        entity["@odata.context"] = json!(self.context("roleManagement/directory/roleAssignments/$entity"));
        let before = s.before_write();
        s.dir.assignments.insert(id, assignment);
        Ok(s.commit(before, Reply::Json(201, entity)))
    }

    fn list_assignments(&self, s: &mut State, req: &FakeRequest) -> Result<Reply, Refusal> {
        let clauses = match req.query("$filter") {
            None => Vec::new(),
            Some(filter) => parse_filter(filter).map_err(|why| {
                Refusal::new(
                    400,
                    "Request_UnsupportedQuery",
                    format!("Unsupported or invalid query filter clause specified for resource 'unifiedRoleAssignment': {why}."),
                )
                .violation(format!("$filter `{filter}`: {why}"))
            })?,
        };
        let select = req.query("$select");
        check_select(select, ASSIGNMENT_PROPERTIES, "unifiedRoleAssignment")?;
        s.require(ROLES_READ)?;
        let page_size = s.page_size;
        let dir = view(&s.dir, &mut s.stale);
        let mut items = Vec::new();
        for a in dir.assignments.values() {
            let matches = clauses.iter().all(|(property, values)| {
                let actual = match *property {
                    "principalId" => &a.principal_id,
                    "roleDefinitionId" => &a.role_definition_id,
                    _ => &a.directory_scope_id,
                };
                values.iter().any(|v| v.eq_ignore_ascii_case(actual))
            });
            if matches {
                items.push(project(a.wire(), select));
            }
        }
        self.page(req, items, page_size, "roleManagement/directory/roleAssignments")
    }

    // ---- members and owners (§4) ----

    fn list_links(&self, s: &mut State, req: &FakeRequest, g: &str, listing: Listing) -> Result<Reply, Refusal> {
        let group = guid(g).ok_or_else(|| invalid_object_id(g))?;
        let select = req.query("$select");
        check_select(select, DIRECTORY_OBJECT_PROPERTIES, "directoryObject")?;
        s.require(MEMBERS_READ)?;
        let page_size = s.page_size;
        let dir = view(&s.dir, &mut s.stale);
        if dir.group(group).is_none() {
            return Err(not_found(group));
        }
        let ids: Vec<Uuid> = match listing {
            Listing::Members => dir.members.get(&group).into_iter().flatten().copied().collect(),
            Listing::Owners => dir.owners.get(&group).into_iter().flatten().copied().collect(),
            Listing::TransitiveMembers => dir.transitive_members(group),
        };
        let items = ids.into_iter().map(|id| project(object_json(id, dir.objects.get(&id).unwrap()), select)).collect();
        self.page(req, items, page_size, "directoryObjects")
    }

    fn add_link(&self, s: &mut State, g: &str, link: Link, body: &Value) -> Result<Reply, Refusal> {
        let l = link.name();
        let group = guid(g).ok_or_else(|| invalid_object_id(g))?;
        let reference = body.get("@odata.id").and_then(Value::as_str).ok_or_else(|| {
            malformed("Request_BadRequest", format!("The request body needs an '@odata.id' reference for '{l}'."))
        })?;
        let (collection, object) = self.parse_reference(reference).ok_or_else(|| {
            malformed(
                "Request_BadRequest",
                format!("Unsupported referenced-object resource identifier for link property '{l}'."),
            )
        })?;
        s.require(if link == Link::Members { MEMBERS_WRITE } else { OWNERS_WRITE })?;
        let role_assignable = s.dir.group(group).ok_or_else(|| not_found(group))?;
        if s.still_replicating(group) {
            return Err(bad_request("The source resource object or one of the objects being referenced don't exist."));
        }
        if role_assignable {
            s.require(ROLES_WRITE)?;
        }
        if s.still_replicating(object) {
            return Err(not_found(object));
        }
        let kind = s.dir.objects.get(&object).ok_or_else(|| not_found(object))?;
        let kind_matches = match collection.as_str() {
            "users" => matches!(kind, Kind::User { .. }),
            "groups" => matches!(kind, Kind::Group { .. }),
            "serviceprincipals" => matches!(kind, Kind::ServicePrincipal),
            _ => true,
        };
        if !kind_matches {
            return Err(not_found(object));
        }
        match (link, kind) {
            (_, Kind::AdministrativeUnit) | (Link::Owners, Kind::Group { .. }) => {
                return Err(bad_request(format!("An object of this type cannot be added to '{l}'.")));
            }
            (Link::Members, Kind::Group { .. }) if role_assignable || object == group => {
                return Err(bad_request(
                    "A group cannot be added as a member of a role-assignable group or of itself.",
                ));
            }
            (Link::Members, Kind::ServicePrincipal) => s.require(SERVICE_PRINCIPAL_MEMBER)?,
            _ => {}
        }
        if s.dir.links(link).get(&group).is_some_and(|set| set.contains(&object)) {
            return Err(bad_request(format!(
                "One or more added object references already exist for the following modified properties: '{l}'."
            )));
        }
        let before = s.before_write();
        s.dir.links_mut(link).entry(group).or_default().insert(object);
        Ok(s.commit(before, Reply::NoContent))
    }

    /// `{base}/v1.0/{directoryObjects|users|groups|servicePrincipals}/{id}` → (collection, id).
    fn parse_reference(&self, reference: &str) -> Option<(String, Uuid)> {
        let rest = reference.strip_prefix(&format!("{}/v1.0/", self.url()))?;
        let (collection, id) = rest.split_once('/')?;
        let collection = collection.to_ascii_lowercase();
        ["directoryobjects", "users", "groups", "serviceprincipals"].contains(&collection.as_str()).then_some(())?;
        Some((collection, guid(id)?))
    }

    fn remove_link(&self, s: &mut State, g: &str, link: Link, m: &str) -> Result<Reply, Refusal> {
        let l = link.name();
        let group = guid(g).ok_or_else(|| invalid_object_id(g))?;
        let object = guid(m).ok_or_else(|| {
            malformed(
                "Request_UnsupportedQuery",
                format!("Unsupported referenced-object resource identifier for link property '{l}'."),
            )
        })?;
        s.require(if link == Link::Members { MEMBERS_WRITE } else { OWNERS_WRITE })?;
        let role_assignable = s.dir.group(group).ok_or_else(|| not_found(group))?;
        if role_assignable {
            s.require(ROLES_WRITE)?;
        }
        // Either end not yet replicated: Graph says the group is missing (§7).
        let replicating = s.still_replicating(group);
        let replicating = s.still_replicating(object) || replicating;
        let present = s.dir.links(link).get(&group).is_some_and(|set| set.contains(&object));
        if replicating || !present {
            return Err(not_found(group));
        }
        if link == Link::Owners && s.dir.owners.get(&group).is_some_and(|set| set.len() == 1) {
            return Err(bad_request("The group must have at least one owner, hence this owner cannot be removed."));
        }
        let before = s.before_write();
        if let Some(set) = s.dir.links_mut(link).get_mut(&group) {
            set.remove(&object);
        }
        Ok(s.commit(before, Reply::NoContent))
    }

    // ---- membership checks (§5) ----

    fn check_member_groups(&self, s: &mut State, u: &str, body: &Value) -> Result<Reply, Refusal> {
        let Some(ids) = body.get("groupIds").and_then(Value::as_array) else {
            return Err(malformed("Request_BadRequest", "The parameter 'groupIds' is required and must be a list."));
        };
        if ids.len() > 20 {
            return Err(malformed("Request_BadRequest", "At most 20 groupIds may be checked per request."));
        }
        let mut groups = Vec::new();
        for id in ids {
            let text = id.as_str().unwrap_or_default();
            groups.push(guid(text).ok_or_else(|| invalid_object_id(text))?);
        }
        s.require(USERS_READ)?;
        s.require(MEMBERS_READ)?;
        let dir = view(&s.dir, &mut s.stale);
        let user = dir.user_by_id_or_upn(u).ok_or_else(|| not_found(u))?;
        let member_of = dir.member_of(user);
        let mut value: Vec<String> = Vec::new();
        for g in groups {
            if member_of.contains(&g) && !value.contains(&g.to_string()) {
                value.push(g.to_string());
            }
        }
        Ok(Reply::Json(200, json!({"@odata.context": self.context("Collection(Edm.String)"), "value": value})))
    }
}

/// A required GUID property of a create body.
fn required_guid(fields: &Map<String, Value>, name: &str) -> Result<Uuid, Refusal> {
    match fields.get(name) {
        None | Some(Value::Null) => {
            Err(malformed("Request_BadRequest", format!("The property '{name}' is required but was not supplied.")))
        }
        Some(value) => {
            let text = value.as_str().unwrap_or_default();
            guid(text).ok_or_else(|| invalid_object_id(text))
        }
    }
}

/// A request body: `Content-Type: application/json` and valid JSON (§1).
fn json_body(req: &FakeRequest) -> Result<Value, Refusal> {
    let json = req
        .header("content-type")
        .is_some_and(|c| c.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(malformed(
            "BadRequest",
            "Write requests (excluding DELETE) must contain the Content-Type header declaration.",
        ));
    }
    serde_json::from_slice(&req.body).map_err(|_| {
        malformed(
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )
    })
}
