//! The ports the service needs, implemented by adapters. No Azure, SQL or HTTP type crosses them.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::activation::{Activation, Status};
use crate::domain::audit::AuditEvent;
use crate::domain::ids::{
    ActivationId, AuthContextId, DisplayName, ParseError, PrincipalId, RoleDefinitionId, RuleId, TenantId,
};
use crate::domain::notification::{AlertNotice, Bulletin, OutboxItem};
use crate::domain::policy::Subject;
use crate::domain::scope::Scope;

/// An opaque version (a row version in SQLite, an ETag in Table Storage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(pub String);

#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// A client-chosen `Idempotency-Key`: 1 to 200 visible ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        if value.is_empty() {
            return Err(ParseError::Empty);
        }
        if value.len() > 200 {
            return Err(ParseError::TooLong { max: 200 });
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::malformed(value, "an idempotency key (visible ASCII characters)"));
        }
        Ok(Self(value.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

/// What a governance record is about (`alert`, `review`, …): 1 to 32 lower-case ASCII letters
/// and `-`. Part of a Table Storage PartitionKey, so nothing else may appear in it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKind(String);

impl RecordKind {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(value: &str) -> Result<Self, ParseError> {
        parse_key(value, Self::MAX_CHARS, |c| c.is_ascii_lowercase() || c == '-', "a record kind (a-z and `-`)")
            .map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One governance record of a kind: 1 to 200 ASCII letters, digits, `-`, `_`, `.` and `:`.
/// INVARIANT: safe as a Table Storage RowKey and an SQLite key as it is (no `/`, `\`, `#`, `?`,
/// control or non-ASCII characters), and ordered as both stores order keys: bytewise.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(String);

impl RecordId {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(value: &str) -> Result<Self, ParseError> {
        parse_key(
            value,
            Self::MAX_CHARS,
            |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'),
            "a record id (ASCII letters, digits, `-`, `_`, `.` and `:`)",
        )
        .map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A record key as given (never trimmed): not empty, at most `max` characters, each `allowed`.
fn parse_key(value: &str, max: usize, allowed: fn(char) -> bool, expected: &'static str) -> Result<String, ParseError> {
    if value.is_empty() {
        return Err(ParseError::Empty);
    }
    if value.chars().count() > max {
        return Err(ParseError::TooLong { max });
    }
    // Said without quoting the value: a log line is no place for control characters.
    if value.chars().any(char::is_control) {
        return Err(ParseError::ControlCharacter);
    }
    if !value.chars().all(allowed) {
        return Err(ParseError::malformed(value, expected));
    }
    Ok(value.to_owned())
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKind({:?})", self.0)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({:?})", self.0)
    }
}

/// The most a record's body holds: 64 KiB counted in UTF-8 and in UTF-16 alike. Table Storage
/// measures a string property in UTF-16 (64 KiB, 32 Ki units), so a body of ASCII JSON holds up
/// to 32 Ki characters.
pub const MAX_RECORD_BODY_BYTES: usize = 64 * 1024;

/// Refuses a record body over `MAX_RECORD_BODY_BYTES` (`StoreError::TooLarge`). Every store
/// checks it before writing anything, so every store holds the same records.
pub fn check_record_body(body: &str) -> Result<(), StoreError> {
    let utf16 = body.encode_utf16().count().saturating_mul(2);
    let size = body.len().max(utf16);
    if size > MAX_RECORD_BODY_BYTES {
        return Err(StoreError::TooLarge(format!(
            "a record body of {size} bytes (the larger of UTF-8 and UTF-16); records hold at most {MAX_RECORD_BODY_BYTES}"
        )));
    }
    Ok(())
}

/// Remembers which activation a caller's idempotency key produced, and for which request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub caller: PrincipalId,
    pub key: IdempotencyKey,
    /// SHA-256 of the canonical request, so a reused key with another request is refused.
    pub request_hash: String,
    pub activation_id: ActivationId,
}

/// Where a list resumes: made by the store that answered the previous page and read back only
/// by it. Opaque to everyone else; a store refuses one it did not make
/// (`StoreError::InvalidPageToken`). It marks a position, never grants anything: the query's
/// filters always come from the caller, not from the token.
#[derive(Clone, PartialEq, Eq)]
pub struct PageToken(String);

impl PageToken {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageToken({:?})", self.0)
    }
}

/// One page of a list. `next` is set when more may follow; a page may hold fewer items than
/// asked (even none) and still have a `next` (a filter dropped what the page read).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageToken>,
}

/// Activations newest first (`requested_at` descending, then id), from an index by principal
/// or the index of everyone's.
#[derive(Clone, Debug, Default)]
pub struct ActivationQuery {
    pub principal_id: Option<PrincipalId>,
    /// Empty means every status.
    pub statuses: Vec<Status>,
    /// At most this many items (and about this many index entries read).
    pub limit: usize,
    pub after: Option<PageToken>,
    /// Index entries older than this by the store's grace period, matching nothing, are removed.
    pub now: DateTime<Utc>,
}

/// Activations awaiting an approver's decision (pending requests, and active activations with a
/// pending extension) under any of `rules`, newest first.
#[derive(Clone, Debug, Default)]
pub struct AwaitingQuery {
    pub rules: Vec<RuleId>,
    pub limit: usize,
    pub after: Option<PageToken>,
    pub now: DateTime<Utc>,
}

/// Audit events oldest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub activation_id: Option<ActivationId>,
    pub principal_id: Option<PrincipalId>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
    pub after: Option<PageToken>,
}

/// Resumes a due scan after the last item seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueCursor {
    pub due_at: DateTime<Utc>,
    pub id: ActivationId,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored version changed since it was read (optimistic concurrency).
    #[error("the activation was changed by someone else")]
    Conflict,
    #[error("activation `{0}` for the same principal, role and scope is still open")]
    OpenActivationExists(ActivationId),
    #[error("the idempotency key was used concurrently")]
    IdempotencyKeyTaken,
    #[error("activation `{0}` already exists")]
    Duplicate(ActivationId),
    /// The principal already holds `limit` open (non-terminal) activations. Nothing was written.
    #[error("the principal already has {limit} open requests or activations")]
    TooManyOpen { limit: usize },
    /// A page token this store did not make, or for another list.
    #[error("not a page token of this list: {0}")]
    InvalidPageToken(String),
    /// Worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A value exceeds what the store can hold (Table Storage: 64 KiB per string, 1 MiB per
    /// entity). Nothing was written.
    #[error("too large to store: {0}")]
    TooLarge(String),
    /// A bug or corruption: retrying will not help.
    #[error("store failure: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Where activations, audit events and idempotency records live.
///
/// INVARIANT: `insert` and `update` write the activation, its audit event and the notice the
/// event implies (`OutboxItem::for_event`) atomically, and `update` succeeds only if the stored
/// version is still `expected`. An activation whose status is not terminal is unique per
/// (principal, role, scope), and `insert` never lets a principal hold more than `max_open` of
/// them (exactly `max_open` where the store can tell, never more under concurrency).
///
/// INVARIANT: the audit event `insert` and `update` write is linked into its activation's hash
/// chain (`AuditEvent::linked`: the next position, after the hash of the latest event), read and
/// written under the same version check as the activation, so the chain never forks. The event
/// passed in need not be linked; `audit` returns it as stored, linked.
///
/// INVARIANT: lists read indexes: a page costs about `limit` index entries and point reads,
/// whatever the history holds.
#[async_trait]
pub trait Store: Send + Sync {
    async fn insert(
        &self,
        activation: &Activation,
        event: &AuditEvent,
        idempotency: Option<&IdempotencyRecord>,
        max_open: usize,
    ) -> Result<Version, StoreError>;
    async fn get(&self, id: ActivationId) -> Result<Option<Versioned<Activation>>, StoreError>;
    async fn update(
        &self,
        activation: &Activation,
        expected: &Version,
        event: &AuditEvent,
    ) -> Result<Version, StoreError>;
    async fn idempotency(
        &self,
        caller: PrincipalId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Newest first, a page at a time.
    async fn list(&self, query: &ActivationQuery) -> Result<Page<Activation>, StoreError>;
    /// What waits for a decision under the query's rules, newest first, a page at a time.
    async fn awaiting_decision(&self, query: &AwaitingQuery) -> Result<Page<Activation>, StoreError>;
    /// Activations whose `due_at` is at or before `now`, in (due_at, id) order after `after`.
    /// INVARIANT: reads an index; cost grows with due items, not with history.
    async fn due(
        &self,
        now: DateTime<Utc>,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<Versioned<Activation>>, StoreError>;
    /// Activations due after `now` and at or before `until`, in due order: read-only (the
    /// sweeper's look ahead for expiry warnings).
    async fn upcoming(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Activation>, StoreError>;
    /// Oldest first, a page at a time.
    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>, StoreError>;
    /// Adds a notice that is not a state change, unless one with its id exists (then `false`).
    async fn enqueue(&self, item: &OutboxItem) -> Result<bool, StoreError>;
    /// Notices whose next attempt is due at `now`, oldest first.
    async fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Versioned<OutboxItem>>, StoreError>;
    /// Saves a notice's delivery state if it is unchanged since read (`Conflict` otherwise): the
    /// claim that keeps two deliverers from sending one notice twice.
    async fn outbox_save(&self, item: &OutboxItem, expected: &Version) -> Result<Version, StoreError>;
    /// Removes a fully delivered notice if it is unchanged since read.
    async fn outbox_remove(&self, item: &OutboxItem, expected: &Version) -> Result<(), StoreError>;
    /// A governance record: a JSON document under a kind (`alert`, `review`, …) and an id, with
    /// a version for optimistic concurrency. Not activations: no audit event is written with it.
    async fn record(&self, kind: &RecordKind, id: &RecordId) -> Result<Option<Versioned<String>>, StoreError>;
    /// Every record of a kind, in id order, at most `limit` (a caller asking for more than exist
    /// gets them all).
    async fn records(&self, kind: &RecordKind, limit: usize) -> Result<Vec<(RecordId, Versioned<String>)>, StoreError>;
    /// Writes `body` as the record: `expected` None = only if none exists (else
    /// `StoreError::Conflict`); Some(v) = only if its version is still v (else Conflict). Returns
    /// the new version. A body over `MAX_RECORD_BODY_BYTES` is `StoreError::TooLarge`, and
    /// nothing is written.
    async fn put_record(
        &self,
        kind: &RecordKind,
        id: &RecordId,
        body: &str,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The principal types ARM knows; Elevate grants to users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalType {
    User,
    Group,
    ServicePrincipal,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "User",
            PrincipalType::Group => "Group",
            PrincipalType::ServicePrincipal => "ServicePrincipal",
        }
    }
}

/// A role assignment Elevate wants to exist.
#[derive(Clone, Debug, PartialEq)]
pub struct AssignmentSpec {
    /// Deterministic: UUIDv5 of the activation id.
    pub name: Uuid,
    pub scope: Scope,
    pub principal_id: PrincipalId,
    pub principal_type: PrincipalType,
    pub role_definition_id: RoleDefinitionId,
    /// `elevate:<activation id>:<expiresAt RFC 3339>`.
    pub description: String,
}

impl AssignmentSpec {
    /// Whether `found` is this very assignment: name, principal, role and scope.
    pub fn matches(&self, found: &Assignment) -> bool {
        found.name == self.name
            && found.principal_id == self.principal_id
            && found.role_definition_id == self.role_definition_id
            && found.scope == self.scope
    }

    /// The assignment for an activation whose expiry is fixed (Provisioning or later).
    pub fn for_activation(activation: &Activation) -> Option<AssignmentSpec> {
        let expires_at = activation.expires_at()?;
        let request = activation.request();
        Some(AssignmentSpec {
            name: activation.id().role_assignment_name(),
            scope: request.scope.clone(),
            principal_id: request.principal_id,
            principal_type: PrincipalType::User,
            role_definition_id: request.role_definition_id,
            description: marker(activation.id(), expires_at),
        })
    }
}

/// The description marker that lets an assignment be traced to its activation and expiry even
/// without the store.
pub fn marker(id: ActivationId, expires_at: DateTime<Utc>) -> String {
    format!("elevate:{id}:{}", expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Reads a marker back: the activation id and expiry.
pub fn parse_marker(description: &str) -> Option<(ActivationId, DateTime<Utc>)> {
    let rest = description.strip_prefix("elevate:")?;
    let (id, at) = rest.split_once(':')?;
    let id = ActivationId::parse(id).ok()?;
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    Some((id, at))
}

/// A role assignment as the provider reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// The full ARM id.
    pub id: String,
    pub name: Uuid,
    pub scope: Scope,
    pub principal_id: PrincipalId,
    pub role_definition_id: RoleDefinitionId,
    pub description: Option<String>,
}

/// One assignment found at or below a scope, and whether it carries Elevate's marker.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub assignment: Assignment,
    /// Whether it carries Elevate's marker (`parse_marker` reads its description). A provider
    /// whose assignments cannot carry one (Graph) says `false` for all: see its `list_all`.
    pub elevates: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The principal already holds the role at the scope through an assignment that is not
    /// this activation's. It must never be deleted by Elevate.
    #[error("principal already holds the role at this scope through assignment `{existing_id}`")]
    AlreadyAssigned { existing_id: String },
    /// Elevate's own identity may not do this: a configuration error.
    #[error("Elevate is not allowed to manage role `{role}` at scope `{scope}`: {message}")]
    Forbidden { role: String, scope: String, message: String },
    /// The directory does not know the principal yet (replication delay after it was created):
    /// retried for a few minutes, then a failure.
    #[error("the directory does not know the principal yet: {0}")]
    PrincipalNotFound(String),
    /// Worth retrying (throttling, timeouts, 5xx).
    #[error("access provider unavailable: {0}")]
    Transient(String),
    /// The provider answered that it granted, but its answer could not be confirmed as the
    /// assignment asked for (unreadable, or another principal, role or scope). Something may
    /// exist under Elevate's name: it must be revoked by name before anything is called failed.
    #[error("the grant could not be confirmed: {0}")]
    Unconfirmed(String),
    #[error("access provider refused: {0}")]
    Permanent(String),
}

impl AccessError {
    pub fn is_transient(&self) -> bool {
        matches!(self, AccessError::Transient(_) | AccessError::PrincipalNotFound(_))
    }
}

/// Elevate's own grant as far as Elevate knows it: what it asked for, and the provider's id of
/// what was created once that is recorded. Revocations and reads go by these alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub spec: AssignmentSpec,
    /// The provider's id, once recorded (an `Active` activation's `roleAssignmentId`). Graph's
    /// ids are made by the server, so an interrupted grant has none yet.
    pub recorded: Option<String>,
    /// Whether the provider may have been asked to create it. With nothing recorded and nothing
    /// asked, a provider without deterministic names has nothing to look for (and must not look:
    /// what it would find by principal, role and scope is someone else's).
    pub issued: bool,
    /// Whether the grant is old enough for the provider to show it everywhere. Graph replicates
    /// writes (graph-spec §7): for a young grant a "not found" may only mean "not here yet", so
    /// it must not be taken as "gone". ARM ignores this.
    pub settled: bool,
}

impl Grant {
    /// The grant of an activation whose expiry is fixed (Provisioning or later).
    pub fn of(activation: &Activation) -> Option<Grant> {
        let recorded = match activation.state() {
            crate::domain::activation::State::Active { role_assignment_id, .. } => Some(role_assignment_id.clone()),
            _ => None,
        };
        // ARM grants go by a deterministic name and are not recorded before the call: one may
        // always exist, and looking for it by that name is always safe.
        let issued = recorded.is_some()
            || activation.grant_requested()
            || activation.request().scope.kind() == crate::domain::scope::ScopeKind::Azure;
        AssignmentSpec::for_activation(activation).map(|spec| Grant { spec, recorded, issued, settled: true })
    }

    /// An assignment the provider listed, as a grant to revoke (the orphan sweep).
    pub fn listed(assignment: &Assignment) -> Grant {
        Grant {
            spec: AssignmentSpec {
                name: assignment.name,
                scope: assignment.scope.clone(),
                principal_id: assignment.principal_id,
                principal_type: PrincipalType::User,
                role_definition_id: assignment.role_definition_id,
                description: assignment.description.clone().unwrap_or_default(),
            },
            recorded: Some(assignment.id.clone()),
            issued: true,
            settled: true,
        }
    }
}

/// Grants and revokes access: Azure RBAC through ARM, directory roles and groups through Graph,
/// or a local simulation.
#[async_trait]
pub trait AccessProvider: Send + Sync {
    /// Creates the assignment, or confirms that this very assignment exists (ARM: the same name).
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError>;
    /// Removes Elevate's own grant — by its deterministic name (ARM), or by the id recorded when
    /// it was made (Graph) — and never anything else; succeeds when it is already gone.
    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError>;
    /// Reads the grant back: by name (ARM), by the recorded id, or, when nothing is recorded (an
    /// interrupted grant), by principal, role and scope (Graph).
    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError>;
    /// Assignments at or below `scope` that carry an Elevate marker.
    async fn list_managed(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError>;
    /// Every assignment at or below `scope`, Elevate's or not, read a page at a time (governance:
    /// what is assigned outside Elevate). Bounded like `list_managed`.
    ///
    /// INVARIANT: all or nothing. A read that cannot be completed (a failed or missing later
    /// page, a paging bound reached, an entry at or below `scope` that cannot be read) is an
    /// error, never a shorter list: "nothing outside Elevate" must not come from a partial read.
    ///
    /// The default refuses, so a provider that has not learnt to list everything is never taken
    /// for one that found nothing.
    async fn list_all(&self, scope: &Scope) -> Result<Vec<Listed>, AccessError> {
        Err(AccessError::Permanent(format!(
            "the `{}` access provider cannot list every assignment at `{scope}`",
            self.kind()
        )))
    }
    /// A short name for logs and health (`local`, `arm`).
    fn kind(&self) -> &'static str;
}

/// An authenticated caller, as the identity adapter saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    pub principal_id: PrincipalId,
    pub tenant_id: TenantId,
    pub name: Option<DisplayName>,
    /// The client application (`azp`/`appid`).
    pub app_id: Option<String>,
    /// An application acting as itself (no user).
    pub app_only: bool,
    pub roles: Vec<String>,
    pub groups: Vec<PrincipalId>,
    /// The token could not carry the caller's groups (over 200: Entra's "overage" claim), so
    /// `groups` is not the whole truth: ask the directory, or match no group (deny by default).
    pub groups_overage: bool,
    pub mfa: bool,
    pub auth_contexts: Vec<AuthContextId>,
}

pub const ROLE_ADMIN: &str = "Elevate.Admin";
pub const ROLE_AUDITOR: &str = "Elevate.Auditor";
pub const ROLE_BROKER: &str = "Elevate.Broker";

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    pub fn is_admin(&self) -> bool {
        self.has_role(ROLE_ADMIN)
    }
    pub fn can_read_audit(&self) -> bool {
        self.is_admin() || self.has_role(ROLE_AUDITOR)
    }
    pub fn subject(&self) -> Subject {
        Subject {
            principal_id: self.principal_id,
            groups: self.groups.clone(),
            mfa: self.mfa,
            auth_contexts: self.auth_contexts.clone(),
        }
    }
}

/// What a request presented to prove who it is. Taken from headers by the HTTP edge.
#[derive(Clone, Default)]
pub struct Credentials {
    pub bearer: Option<String>,
    /// Easy Auth's `X-MS-CLIENT-PRINCIPAL`, as sent: not to be trusted by itself.
    pub client_principal: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("client_principal", &self.client_principal.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    Missing,
    #[error("the token is not acceptable: {0}")]
    Invalid(String),
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

/// Turns credentials into a caller. Never trusts a caller-supplied identity field.
#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, credentials: &Credentials, now: DateTime<Utc>) -> Result<Caller, AuthError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        let id = ActivationId::parse("05c5a614-a7d6-4502-b150-c2fb455033ff").unwrap();
        let at: DateTime<Utc> = "2026-11-25T14:00:00Z".parse().unwrap();
        let m = marker(id, at);
        assert_eq!(m, "elevate:05c5a614-a7d6-4502-b150-c2fb455033ff:2026-11-25T14:00:00Z");
        assert_eq!(parse_marker(&m), Some((id, at)));
        assert_eq!(parse_marker("JIT grant"), None);
    }

    #[test]
    fn record_kinds_are_lower_case_letters_and_dashes() {
        for good in ["alert", "access-review", "-", &"a".repeat(32)] {
            assert_eq!(RecordKind::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(RecordKind::parse("").unwrap_err(), ParseError::Empty);
        assert_eq!(RecordKind::parse(&"a".repeat(33)).unwrap_err(), ParseError::TooLong { max: 32 });
        assert_eq!(RecordKind::parse("al\u{0}ert").unwrap_err(), ParseError::ControlCharacter);
        for bad in ["Alert", "alert_1", "alert1", "al ert", " alert", "alert/x", "é"] {
            assert!(matches!(RecordKind::parse(bad), Err(ParseError::Malformed { .. })), "{bad:?}");
        }
        assert_eq!(RecordKind::parse("alert").unwrap().to_string(), "alert");
    }

    #[test]
    fn record_ids_are_safe_as_keys_everywhere() {
        let every = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:";
        for good in [every, "a", ":", &"x".repeat(200)] {
            let id = RecordId::parse(good).unwrap();
            assert_eq!((id.as_str(), id.to_string().as_str()), (good, good));
        }
        assert_eq!(RecordId::parse("").unwrap_err(), ParseError::Empty);
        assert_eq!(RecordId::parse(&"x".repeat(201)).unwrap_err(), ParseError::TooLong { max: 200 });
        for control in ["a\u{0}", "a\tb", "a\nb", "\u{7f}", "\u{9f}"] {
            assert_eq!(RecordId::parse(control).unwrap_err(), ParseError::ControlCharacter, "{control:?}");
        }
        for bad in ["a/b", "a\\b", "a#b", "a?b", "a b", " a", "a'b", "a%2F", "é", "a|b"] {
            assert!(matches!(RecordId::parse(bad), Err(ParseError::Malformed { .. })), "{bad:?}");
        }
        assert_eq!(format!("{:?}", RecordId::parse("a-1").unwrap()), r#"RecordId("a-1")"#);
    }

    #[test]
    fn record_bodies_hold_64_kib_in_utf8_and_in_utf16() {
        check_record_body("").unwrap();
        check_record_body(&"x".repeat(MAX_RECORD_BODY_BYTES / 2)).unwrap();
        assert!(matches!(check_record_body(&"x".repeat(MAX_RECORD_BODY_BYTES / 2 + 1)), Err(StoreError::TooLarge(_))));
        check_record_body(&"€".repeat(MAX_RECORD_BODY_BYTES / 3)).unwrap();
        assert!(check_record_body(&"€".repeat(MAX_RECORD_BODY_BYTES / 3 + 1)).is_err());
        // Four bytes in UTF-8, two units in UTF-16: 16 Ki of them.
        check_record_body(&"😀".repeat(MAX_RECORD_BODY_BYTES / 4)).unwrap();
        assert!(check_record_body(&"😀".repeat(MAX_RECORD_BODY_BYTES / 4 + 1)).is_err());
    }
}

/// A notice ready for a sink: the outbox item, what it tells of, and the page that shows it.
#[derive(Clone, Debug)]
pub struct Notice {
    pub item: OutboxItem,
    pub subject: NoticeSubject,
    /// For an activation, its approval page (`{public URL}/api/approvals/{id}`): decisions and
    /// the outcome. For an alert, the alerts page (`{public URL}/api/portal/alerts`). For a
    /// bulletin, its page (`{public URL}{path}`).
    pub url: String,
}

/// What a notice tells of, as sinks render it.
#[derive(Clone, Debug)]
pub enum NoticeSubject {
    /// As it is now (read when the notice goes out).
    Activation(Box<Activation>),
    /// As it was when it opened (carried by the notice).
    Alert(AlertNotice),
    /// As it was composed (carried by the notice).
    Bulletin(Bulletin),
}

/// Why a sink did not take a notice. Every failure is retried later.
#[derive(Clone, Debug)]
pub struct DeliveryError {
    /// Names the sink's host at most: webhook URLs carry signatures.
    pub message: String,
    /// What the receiver asked for (`Retry-After` on 429/503).
    pub retry_after: Option<std::time::Duration>,
}

/// Somewhere notices go: a Teams Workflows webhook, a CloudEvents endpoint.
#[async_trait]
pub trait NotificationSink: Send + Sync {
    /// A stable name, recorded on the notices it has taken.
    fn name(&self) -> &'static str;
    async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError>;
}

/// The local dev issuer as the edge sees it (dev mode only): what its OpenID discovery routes
/// publish. Minting stays with the adapter and `elevate token`.
pub trait DevIssuerKeys: Send + Sync {
    /// The `iss` of its tokens.
    fn issuer(&self) -> &'static str;
    /// Its public signing keys, as a JWKS document.
    fn key_set(&self) -> serde_json::Value;
    /// A token for the portal's dev sign-in (dev mode only, which is refused outside loopback and
    /// with real providers): whoever can reach the port signs in as anyone, with any app role.
    fn sign_in_token(&self, who: &DevSignIn, now: DateTime<Utc>) -> Result<String, String>;
}

/// Whom the dev sign-in signs in, and with what evidence.
#[derive(Clone, Debug)]
pub struct DevSignIn {
    pub principal_id: PrincipalId,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub mfa: bool,
    pub auth_contexts: Vec<AuthContextId>,
}

/// The directory (Microsoft Graph), for what a sign-in cannot say: whether a principal is still in
/// a group now, and what a principal is called. Display names are for people, never decisions.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Which of `groups` the principal belongs to now, transitively.
    async fn member_of(&self, principal: PrincipalId, groups: &[PrincipalId]) -> Result<Vec<PrincipalId>, AccessError>;
    /// The principal's display name, if the directory knows the principal.
    async fn display_name(&self, principal: PrincipalId) -> Result<Option<DisplayName>, AccessError>;
}

/// The Storage queues Elevate puts work on, each read by a queue-triggered function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkQueue {
    /// Revoke one activation when its end comes (`ExpiryMessage`).
    Expiry,
    /// Deliver the outbox now.
    Deliver,
}

impl WorkQueue {
    pub const ALL: [WorkQueue; 2] = [WorkQueue::Expiry, WorkQueue::Deliver];

    /// The queue's name (`functions/*/function.json` and `infra/` use the same).
    pub fn name(self) -> &'static str {
        match self {
            WorkQueue::Expiry => "expiry",
            WorkQueue::Deliver => "deliver",
        }
    }
}

/// The longest a queue message can stay invisible (Storage: 7 days); later work is chained.
pub const MAX_QUEUE_DELAY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueueError(pub String);

/// Work started at a chosen moment inside a function invocation (Storage queues). Putting is
/// best effort for the service: the sweeper does the same work a tick later without a queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Puts `message` on `queue`, visible after `delay` (at most `max_delay`).
    async fn put(&self, queue: WorkQueue, message: &str, delay: std::time::Duration) -> Result<(), QueueError>;

    /// The longest a message can wait; work further ahead is chained through messages that
    /// put themselves back.
    fn max_delay(&self) -> std::time::Duration {
        MAX_QUEUE_DELAY
    }
}
