//! The independent checker: Elevate's promises, judged from what the store and the fakes hold,
//! never from Elevate's own API or its domain types. It reads the store's rows directly (the
//! SQLite file, or the table through the Table service's REST API) as plain JSON, takes the
//! assignments a fake provider holds, and reports every violation of:
//!
//! - every assignment is an active activation's (the one it recorded, for the principal, role and
//!   scope it asked for) or an accepted standing one, and every standing one is still there;
//! - every activation's audit trail is a valid path through the state machine, written down
//!   here from design.md independently of src/domain/activation.rs, starting at `Requested`
//!   and ending at the status stored; exactly one event per transition (no event twice, no
//!   decision recorded without its event);
//! - whatever expired by the last sweep has no access left and is no longer open;
//! - nothing is granted twice (one assignment per activation, one activation per assignment).
//!
//! It returns the violations; tests assert the list is empty. tests/crash.rs shows, on
//! hand-made bad states, that it catches each kind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fake_azure::Stored;
use super::fake_graph::{FakeGraph, RoleAssignment};

/// The group pseudo-roles' ids as design.md fixes them (`member`, `owner`): what an activation
/// of a group scope records as its role.
const GROUP_MEMBER_ROLE: &str = "e1e7a7e0-0000-4000-8000-6d656d626572";
const GROUP_OWNER_ROLE: &str = "e1e7a7e0-0000-4000-8000-006f776e6572";

/// What the store holds, as plain JSON.
#[derive(Clone, Debug, Default)]
pub struct StoreView {
    /// Activation bodies, by activation id (lowercase).
    pub activations: BTreeMap<String, Value>,
    /// Each activation's audit events (by activation id, lowercase), in the order written.
    pub events: BTreeMap<String, Vec<Value>>,
    /// Notices not yet delivered to every sink (delivered ones are kept, marked done).
    pub pending_notices: Vec<Value>,
}

/// An assignment a fake provider holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The provider's id for it (ARM: the full resource id).
    pub id: String,
    pub principal_id: String,
    /// The role definition (or directory role template) GUID.
    pub role: String,
    pub scope: String,
    pub description: Option<String>,
}

impl Held {
    /// An assignment the fake ARM holds.
    pub fn arm(stored: &Stored) -> Held {
        Held {
            id: format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", stored.scope, stored.name),
            principal_id: stored.principal_id.clone(),
            role: stored.role_guid(),
            scope: stored.scope.clone(),
            description: stored.description.clone(),
        }
    }

    /// A directory role assignment the fake Graph holds: Graph's id, at `directory:{scope}`.
    pub fn graph_role(assignment: &RoleAssignment) -> Held {
        Held {
            id: assignment.id.clone(),
            principal_id: assignment.principal_id.clone(),
            role: assignment.role_definition_id.clone(),
            scope: format!("directory:{}", assignment.directory_scope_id),
            description: None,
        }
    }

    /// A direct membership (`owner`: ownership) of `group` the fake Graph holds. A link has no
    /// id in Graph; Elevate names it `groups/{group}/members/{principal}` (or `owners`).
    pub fn graph_link(group: &str, principal: &str, owner: bool) -> Held {
        let (link, role) = if owner { ("owners", GROUP_OWNER_ROLE) } else { ("members", GROUP_MEMBER_ROLE) };
        Held {
            id: format!("groups/{}/{link}/{}", group.to_ascii_lowercase(), principal.to_ascii_lowercase()),
            principal_id: principal.to_ascii_lowercase(),
            role: role.to_owned(),
            scope: format!("group:{}", group.to_ascii_lowercase()),
            description: None,
        }
    }

    /// Everything the fake Graph holds: every role assignment, and every member and owner of
    /// `groups`.
    pub fn graph(fake: &FakeGraph, groups: &[&str]) -> Vec<Held> {
        let mut held: Vec<Held> = fake.role_assignments().iter().map(Held::graph_role).collect();
        for group in groups {
            held.extend(fake.members(group).iter().map(|m| Held::graph_link(group, m, false)));
            held.extend(fake.owners(group).iter().map(|o| Held::graph_link(group, o, true)));
        }
        held
    }
}

/// Everything the checker judges.
pub struct World<'a> {
    pub store: &'a StoreView,
    /// What the fake providers hold.
    pub held: &'a [Held],
    /// Assignments made outside Elevate that must stay untouched.
    pub standing: &'a [Held],
    /// When the last sweep ran: whatever expired by then must be gone.
    pub swept_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A row the checker cannot read as the wire format says.
    Unreadable { what: String },
    /// An assignment that is neither standing nor an active activation's own.
    UnexplainedAssignment { assignment: String, why: String },
    /// A standing assignment (not Elevate's) has disappeared.
    StandingRemoved { assignment: String },
    /// Two assignments for one activation, or one assignment claimed by two activations.
    GrantedTwice { activation: String, what: String },
    /// An activation with no audit trail.
    NoAudit { activation: String },
    /// An audit step the state machine does not have, or that does not follow the one before.
    InvalidTransition { activation: String, index: usize, step: String },
    /// The trail ends somewhere other than where the activation stands.
    AuditDisagrees { activation: String, stored: String, audited: String },
    /// The same audit event twice.
    DuplicateEvent { activation: String, event: String },
    /// Decisions on the activation and decision events differ in number.
    DecisionsDisagree { activation: String, decisions: usize, events: usize },
    /// An audit event filed under another activation.
    MisfiledEvent { activation: String, event: String },
    /// Expired by the last sweep, yet still open or still holding access.
    AccessOutlivedExpiry { activation: String, expires_at: String, why: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The lifecycle's transitions as design.md draws them: (action, status before, status after).
/// `None` before: the first event.
const TRANSITIONS: &[(&str, Option<&str>, &str)] = &[
    ("Requested", None, "PendingApproval"),
    ("Requested", None, "Scheduled"),
    ("Requested", None, "Provisioning"),
    ("ApprovalRecorded", Some("PendingApproval"), "PendingApproval"),
    ("Approved", Some("PendingApproval"), "Scheduled"),
    ("Approved", Some("PendingApproval"), "Provisioning"),
    ("Denied", Some("PendingApproval"), "Denied"),
    ("Canceled", Some("PendingApproval"), "Canceled"),
    ("Canceled", Some("Scheduled"), "Canceled"),
    ("TimedOut", Some("PendingApproval"), "TimedOut"),
    ("Started", Some("Scheduled"), "Provisioning"),
    ("StartRefused", Some("Scheduled"), "Failed"),
    ("GrantRequested", Some("Provisioning"), "Provisioning"),
    ("Provisioned", Some("Provisioning"), "Active"),
    ("ProvisioningFailed", Some("Provisioning"), "Failed"),
    ("Expired", Some("Provisioning"), "Expired"),
    ("Expired", Some("Active"), "Expired"),
    ("Deactivated", Some("Active"), "Deactivated"),
    ("ExtensionRequested", Some("Active"), "Active"),
    ("ExtensionApprovalRecorded", Some("Active"), "Active"),
    ("ExtensionDenied", Some("Active"), "Active"),
    ("ExtensionTimedOut", Some("Active"), "Active"),
    ("Extended", Some("Active"), "Active"),
];

/// Whether `stored` is `claimed` or a status the lifecycle (`TRANSITIONS`) reaches from it: what
/// a store may hold for an activation a client was told is `claimed`.
pub fn reaches(claimed: &str, stored: &str) -> bool {
    let mut seen = std::collections::BTreeSet::from([claimed]);
    let mut todo = vec![claimed];
    while let Some(at) = todo.pop() {
        if at == stored {
            return true;
        }
        for (_, _, next) in TRANSITIONS.iter().filter(|(_, before, _)| *before == Some(at)) {
            if seen.insert(next) {
                todo.push(next);
            }
        }
    }
    false
}

/// How long a Provisioning activation's grant may exist before it is recorded: the grace the
/// request that asked for it has before the sweeper takes over (design: three minutes).
const GRANT_IN_FLIGHT: chrono::TimeDelta = chrono::TimeDelta::minutes(3);

/// Steps that happen at most once in an activation's life (the rest may repeat: approvals by
/// several approvers, several extensions).
const ONCE: &[&str] = &["Requested", "GrantRequested", "Provisioned", "Started", "Approved"];

/// Events that record an approver's decision (an `Extended` does too when an approver made it).
const DECISIONS: &[&str] = &["ApprovalRecorded", "Approved", "Denied", "ExtensionApprovalRecorded", "ExtensionDenied"];

fn text<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn time(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    text(v, pointer).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

/// `elevate:<activation id>:<expiry>`: the activation id an assignment's description names.
fn marker(description: Option<&str>) -> Option<String> {
    let rest = description?.strip_prefix("elevate:")?;
    let (id, _) = rest.split_once(':')?;
    uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
}

/// Judges `world`; an empty list means every promise holds.
/// `check`, as a test reads it: `Err` with every violation, one a line, when there is any.
pub fn judged(world: &World<'_>) -> Result<(), String> {
    let violations = check(world);
    if violations.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
    Err(format!("{} violation(s):\n{}", violations.len(), lines.join("\n")))
}

pub fn check(world: &World<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for (id, activation) in &world.store.activations {
        check_trail(id, activation, world.store.events.get(id).map(Vec::as_slice).unwrap_or_default(), &mut out);
        check_expiry(id, activation, world.swept_at, &mut out);
    }
    for id in world.store.events.keys() {
        if !world.store.activations.contains_key(id) {
            out.push(Violation::Unreadable { what: format!("audit events for activation {id}, which is not stored") });
        }
    }
    check_assignments(world, &mut out);
    out
}

fn check_trail(id: &str, activation: &Value, events: &[Value], out: &mut Vec<Violation>) {
    let Some(stored) = text(activation, "/state/status") else {
        out.push(Violation::Unreadable { what: format!("activation {id} has no state.status") });
        return;
    };
    if events.is_empty() {
        out.push(Violation::NoAudit { activation: id.to_owned() });
        return;
    }
    let mut seen = BTreeSet::new();
    let mut once = BTreeSet::new();
    let mut at: Option<&str> = None;
    let principal = text(activation, "/request/principalId").unwrap_or_default();
    let mut decision_events = 0;
    let mut pending_extension = false;
    for (index, event) in events.iter().enumerate() {
        let event_id = text(event, "/id").unwrap_or_default().to_owned();
        if !seen.insert(event_id.clone()) {
            out.push(Violation::DuplicateEvent { activation: id.to_owned(), event: event_id.clone() });
        }
        if !text(event, "/activationId").is_some_and(|a| same(a, id)) {
            out.push(Violation::MisfiledEvent { activation: id.to_owned(), event: event_id.clone() });
        }
        let action = text(event, "/action").unwrap_or_default();
        let before = text(event, "/statusBefore");
        let after = text(event, "/statusAfter").unwrap_or_default();
        let step = format!("{action}: {} -> {after}", before.unwrap_or("(none)"));
        let valid = TRANSITIONS.iter().any(|(a, b, c)| *a == action && *b == before && *c == after);
        if !valid || before != at {
            let why =
                if valid { format!("{step}, but the trail stood at {}", at.unwrap_or("(nothing)")) } else { step };
            out.push(Violation::InvalidTransition { activation: id.to_owned(), index, step: why });
        }
        let by_approver = text(event, "/actor/id").is_some_and(|actor| !same(actor, principal));
        // An extension waits for approvers from its request until it is extended, denied or
        // timed out; only then may another be requested.
        let extension_step = match action {
            "ExtensionRequested" => Some(!pending_extension),
            "ExtensionApprovalRecorded" => Some(pending_extension),
            "ExtensionDenied" | "ExtensionTimedOut" => Some(pending_extension),
            // By an approver: the pending one applied; by the requester: at once, none pending.
            "Extended" => Some(if by_approver { pending_extension } else { !pending_extension }),
            _ => None,
        };
        if extension_step == Some(false) {
            out.push(Violation::InvalidTransition {
                activation: id.to_owned(),
                index,
                step: format!("{action} while {} extension waits", if pending_extension { "an" } else { "no" }),
            });
        }
        pending_extension = match action {
            "ExtensionRequested" => true,
            "Extended" | "ExtensionDenied" | "ExtensionTimedOut" => false,
            _ => pending_extension,
        };
        if ONCE.contains(&action) && !once.insert(action) {
            out.push(Violation::InvalidTransition {
                activation: id.to_owned(),
                index,
                step: format!("{action} a second time"),
            });
        }
        if DECISIONS.contains(&action) || (action == "Extended" && by_approver) {
            decision_events += 1;
        }
        at = Some(after);
    }
    if at != Some(stored) {
        out.push(Violation::AuditDisagrees {
            activation: id.to_owned(),
            stored: stored.to_owned(),
            audited: at.unwrap_or_default().to_owned(),
        });
    }
    let decisions = activation.get("approvals").and_then(Value::as_array).map_or(0, Vec::len);
    if decisions != decision_events {
        out.push(Violation::DecisionsDisagree { activation: id.to_owned(), decisions, events: decision_events });
    }
}

fn check_expiry(id: &str, activation: &Value, swept_at: DateTime<Utc>, out: &mut Vec<Violation>) {
    let status = text(activation, "/state/status").unwrap_or_default();
    let Some(expires_at) = time(activation, "/state/expiresAt") else { return };
    if expires_at <= swept_at && (status == "Active" || status == "Provisioning") {
        out.push(Violation::AccessOutlivedExpiry {
            activation: id.to_owned(),
            expires_at: expires_at.to_rfc3339(),
            why: format!("still {status} after the sweep at {swept_at}"),
        });
    }
}

fn check_assignments(world: &World<'_>, out: &mut Vec<Violation>) {
    for standing in world.standing {
        if !world.held.iter().any(|h| same(&h.id, &standing.id)) {
            out.push(Violation::StandingRemoved { assignment: standing.id.clone() });
        }
    }
    // Which activation each assignment is recorded by, to catch one claimed twice.
    let mut claimed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, a) in &world.store.activations {
        if let Some(assignment) = text(a, "/state/roleAssignmentId") {
            claimed.entry(assignment.to_ascii_lowercase()).or_default().push(id.clone());
        }
    }
    for (assignment, by) in &claimed {
        let open = by
            .iter()
            .filter(|id| world.store.activations.get(*id).and_then(|a| text(a, "/state/status")) == Some("Active"))
            .count();
        if open > 1 {
            out.push(Violation::GrantedTwice {
                activation: by.join(", "),
                what: format!("assignment {assignment} is recorded by {open} active activations"),
            });
        }
    }
    let mut per_activation: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for held in world.held {
        if world.standing.iter().any(|s| same(&s.id, &held.id)) {
            continue;
        }
        if let Some(id) = marker(held.description.as_deref()) {
            per_activation.entry(id).or_default().push(&held.id);
        }
        if let Some(why) = unexplained(world, held) {
            out.push(Violation::UnexplainedAssignment { assignment: held.id.clone(), why });
        }
    }
    for (activation, ids) in per_activation {
        if ids.len() > 1 {
            out.push(Violation::GrantedTwice {
                activation,
                what: format!("{} assignments: {}", ids.len(), ids.join(", ")),
            });
        }
    }
}

/// Why `held` is not an active activation's own, or `None` when it is.
fn unexplained(world: &World<'_>, held: &Held) -> Option<String> {
    let owner = world
        .store
        .activations
        .iter()
        .find(|(_, a)| text(a, "/state/roleAssignmentId").is_some_and(|r| same(r, &held.id)))
        .or_else(|| {
            let id = marker(held.description.as_deref())?;
            world.store.activations.get_key_value(&id)
        })
        // Graph carries no marker (graph-spec §0 item 5): a grant in flight, not yet recorded, is
        // known only by the principal, role and scope its activation asked for.
        .or_else(|| {
            world.store.activations.iter().find(|(_, a)| {
                held.description.is_none()
                    && text(a, "/state/status") == Some("Provisioning")
                    && text(a, "/state/roleAssignmentId").is_none()
                    && asks_for(a, held)
            })
        });
    let Some((id, a)) = owner else {
        return Some(match marker(held.description.as_deref()) {
            Some(id) => format!("its marker names activation {id}, which the store does not hold"),
            None => "not standing, and no activation records it".to_owned(),
        });
    };
    let status = text(a, "/state/status").unwrap_or_default();
    // A grant in flight: the request that asked for it has the grace to record it before the
    // sweeper takes over, so for that long the assignment may exist unrecorded.
    let in_flight = status == "Provisioning"
        && time(a, "/state/since").is_some_and(|since| since + GRANT_IN_FLIGHT > world.swept_at);
    if status != "Active" && !in_flight {
        return Some(format!("its activation {id} is {status}"));
    }
    if status == "Active" && !text(a, "/state/roleAssignmentId").is_some_and(|r| same(r, &held.id)) {
        return Some(format!("its activation {id} records another assignment"));
    }
    let request = |field: &str| text(a, &format!("/request/{field}")).unwrap_or_default().to_owned();
    let role = request("roleDefinitionId");
    if !asks_for(a, held) {
        return Some(format!(
            "its activation {id} asked for {role} at {} for {}, not {} at {} for {}",
            request("scope"),
            request("principalId"),
            held.role,
            held.scope,
            held.principal_id
        ));
    }
    let expires_at = time(a, "/state/expiresAt")?;
    (expires_at <= world.swept_at)
        .then(|| format!("its activation {id} expired at {expires_at}, before the sweep at {}", world.swept_at))
}

/// Whether activation `a` asked for `held`'s principal, role and scope.
fn asks_for(a: &Value, held: &Held) -> bool {
    let request = |field: &str| text(a, &format!("/request/{field}")).unwrap_or_default();
    let role_guid = request("roleDefinitionId").rsplit('/').next().unwrap_or_default();
    same(request("principalId"), &held.principal_id)
        && same(role_guid, &held.role)
        && same(request("scope").trim_end_matches('/'), held.scope.trim_end_matches('/'))
}

fn parse(body: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("{what}: {e}"))
}

/// Reads the SQLite store's rows.
pub fn read_sqlite(path: &Path) -> Result<StoreView, String> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let rows = |sql: &str| -> Result<Vec<(String, String)>, String> {
        let mut stmt = conn.prepare(sql).map_err(|e| format!("{sql}: {e}"))?;
        let found = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| format!("{sql}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{sql}: {e}"))?;
        Ok(found)
    };
    let mut view = StoreView::default();
    for (id, body) in rows("SELECT id, body FROM activations")? {
        view.activations.insert(id.to_ascii_lowercase(), parse(&body, &format!("activation {id}"))?);
    }
    for (id, body) in rows("SELECT activation_id, body FROM audit_events ORDER BY seq")? {
        view.events.entry(id.to_ascii_lowercase()).or_default().push(parse(&body, &format!("an event of {id}"))?);
    }
    for (id, body) in rows("SELECT id, body FROM outbox WHERE next_at IS NOT NULL")? {
        view.pending_notices.push(parse(&body, &format!("notice {id}"))?);
    }
    Ok(view)
}

/// Reads the table's entities through the Table service's REST API.
pub async fn read_tables(tables: &elevate::config::TablesSetting) -> Result<StoreView, String> {
    let client = super::raw_table(tables);
    let query = |kind: &'static str| {
        let client = &client;
        async move {
            let mut rows = client
                .query(&format!("Kind eq '{kind}'"), 1000, usize::MAX)
                .await
                .map_err(|e| format!("reading the `{kind}` entities: {e}"))?;
            rows.sort_by(|a, b| {
                let key = |r: &serde_json::Map<String, Value>| {
                    (
                        r.get("PartitionKey").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        r.get("RowKey").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    )
                };
                key(a).cmp(&key(b))
            });
            Ok::<_, String>(rows)
        }
    };
    let body = |row: &serde_json::Map<String, Value>, what: &str| -> Result<Value, String> {
        let text = row.get("Body").and_then(Value::as_str).ok_or_else(|| format!("{what} has no Body"))?;
        parse(text, what)
    };
    let partition = |row: &serde_json::Map<String, Value>| {
        row.get("PartitionKey").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase()
    };
    let mut view = StoreView::default();
    for row in query("activation").await? {
        let id = partition(&row);
        view.activations.insert(id.clone(), body(&row, &format!("activation {id}"))?);
    }
    // Event RowKeys are zero-padded numbers: key order is the order written.
    for row in query("event").await? {
        let id = partition(&row);
        let event = body(&row, &format!("an event of {id}"))?;
        view.events.entry(id).or_default().push(event);
    }
    for row in query("outbox").await? {
        if row.get("Done").and_then(Value::as_bool) != Some(true) {
            view.pending_notices.push(body(&row, "a notice")?);
        }
    }
    Ok(view)
}
