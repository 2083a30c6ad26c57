//! The Azure Table Storage store: what several Function instances share in Azure.
//!
//! One table holds everything, in these entities:
//!
//! | PartitionKey          | RowKey                             | What                                              |
//! |-----------------------|------------------------------------|---------------------------------------------------|
//! | activation id         | `activation`                       | the activation (JSON body, status, due key, seq)  |
//! | activation id         | `event_000001`, …                  | its audit events, numbered                        |
//! | `due`                 | `<due ms, 15 digits>_<id>`         | the due index the sweeper reads                   |
//! | `open`                | SHA-256(principal/role/scope)      | the one open activation per principal, role, scope |
//! | `open_<principal>`    | activation id                      | the principal's open activations (the cap)        |
//! | `list`                | `<newest-first key>`               | every activation, newest first (admins, auditors) |
//! | `list_<principal>`    | `<newest-first key>`               | the principal's activations, newest first         |
//! | `awaiting_<rule id>`  | `<newest-first key>_<episode>`     | what awaits a decision by the rule's approvers    |
//! | `idempotency`         | SHA-256(caller, key)               | which activation an `Idempotency-Key` produced    |
//! | activation id         | `outbox_<notice id>`               | a notice waiting for delivery                     |
//! | `outbox`              | notice id                          | the index of waiting notices                      |
//! | `meta`                | `indexes`                          | marks that the list indexes cover every activation |
//! | `record-<kind>`       | record id                          | a governance record (JSON `Body`; its ETag is its version) |
//!
//! A notice about no activation (a governance alert's) is kept under the nil activation id
//! (`notification::NO_ACTIVATION`), in a partition no activation has.
//!
//! A `record-` partition is never one of the others: activation ids begin with a hex digit,
//! never `r`, and no fixed partition or `_` prefix above begins with `record-`. A record's id may
//! be any RowKey, `activation` included, so the scans across partitions select by `Kind`
//! (`activation`, `event`), and a record's is `record`. A record is one entity, replaced with
//! `If-Match` its ETag (inserted when new); no index, audit event or notice goes with it. Each
//! write carries a fresh `WriteId`, so a retried write whose answer was lost recognises itself
//! instead of reporting a conflict with its own first attempt.
//!
//! The newest-first key is the inverted `requested_at` milliseconds and the id
//! (`newest_first_key`), so a partition read in key order lists newest first; an `awaiting`
//! entry adds its episode (`0` for the request, the extension's request time for an extension).
//!
//! An activation and its events share a partition, so a state change and its audit event commit
//! in one entity group transaction, conditional on the activation's ETag: a 412 is a conflict
//! the service resolves by re-reading, never a lost update. The event's RowKey is the next
//! number, so two writers can never both append the same transition.
//!
//! The indexes cannot join that transaction (other partitions), so each is kept a **superset**
//! of what it indexes: an entry is written *before* the transaction, an old one deleted *after*
//! it. A crash in between leaves an extra entry, never a missing one. Readers check each entry
//! against the activation and skip stale ones; once older than `STALE_AFTER` they remove them
//! (younger ones may belong to a write in flight). This holds for the due index the sweeper
//! reads, for the list indexes (`list`, `list_<principal>`: written once, at insert) and for the
//! `awaiting` index (written when a decision becomes due, removed when it is made). The notice a
//! change implies is the transaction's third entity; its index entry, like the due one, is
//! written first. The `open` and `idempotency` entries follow the same rule: taken before the
//! transaction, released after; a stale `open` entry (its activation finished or never written)
//! is taken over with its ETag.
//!
//! The cap on a principal's open activations is a reservation in `open_<principal>`, made
//! before the transaction: write ours, then read the partition. At most the cap entries: done.
//! More: each other entry is checked against its activation (stale ones, finished or never
//! written and older than `STALE_AFTER`, are removed and not counted) and when the live ones
//! still exceed the cap ours is withdrawn and the request refused. Two racing requests each see
//! the other's entry, so the cap is never exceeded (near the cap both may be refused). An
//! activation's entry is removed when it finishes.
//!
//! Lists read only their index: a page reads at most `limit + 1` entries of each partition it
//! merges (one; for the approvals inbox, one per rule the caller approves) and point-reads the
//! `limit` it returns. A filter on status is applied after the point reads, so a page may come
//! back short (still with its continuation). The audit trail of one activation is one
//! partition, read in order; the trail across activations (by principal, or since a time) is a
//! filtered scan of every event: fine for occasional audits, not indexed.
//!
//! Tables written before the list indexes existed are indexed once, on first use: the `meta`
//! entry records that it was done.
//!
//! Each audit event is linked into its activation's hash chain as it is written: event `n + 1`
//! carries the hash of event `n`, which the activation entity keeps (`AuditHead`) beside the
//! event count (`Seq`). Both are read with the activation, and the write that appends the next
//! event is conditional on the activation's ETag, so the head it links to is still the head when
//! it lands. An activation written before the chain existed has no `AuditHead`: its next event
//! starts the chain (no predecessor hash), after the legacy events it counts.
//!
//! The store's `Version` carries the ETag, the event count, the due key, the awaiting key and
//! the chain's head, so an update needs no extra read.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use tokio::sync::OnceCell;

use super::table_client::{BatchFailure, BatchOp, Properties, Stored, TableClient, TableError, literal};
use super::{newest_first_key, parse_newest_first};
use crate::domain::activation::{Activation, State};
use crate::domain::audit::{AuditEvent, AuditHash};
use crate::domain::ids::{ActivationId, PrincipalId, RuleId};
use crate::domain::notification::OutboxItem;
use crate::service::ports::{
    ActivationQuery, AuditQuery, AwaitingQuery, DueCursor, IdempotencyKey, IdempotencyRecord, Page, PageToken,
    RecordId, RecordKind, Store, StoreError, Version, Versioned, check_record_body,
};

const ACTIVATION_ROW: &str = "activation";
const DUE: &str = "due";
const OPEN: &str = "open";
const IDEMPOTENCY: &str = "idempotency";
const OUTBOX: &str = "outbox";
const LIST_ALL: &str = "list";
const META: &str = "meta";
const INDEXES_ROW: &str = "indexes";
/// What begins a record partition's key; the kind follows.
const RECORD_PREFIX: &str = "record-";
const RECORD_KIND: &str = "record";
/// Index entries this much older than their due time, whose activation is gone or no longer
/// due then, are removed. Younger ones may belong to a write in flight and are only skipped.
const STALE_AFTER: TimeDelta = TimeDelta::minutes(10);
/// Point reads the sweeper's due scan runs at once.
const READ_CONCURRENCY: usize = 16;

pub struct TableStore {
    table: Arc<TableClient>,
    /// Set once this process knows the list indexes cover every activation.
    indexed: OnceCell<()>,
}

fn store_error(e: TableError) -> StoreError {
    match e {
        TableError::Transient(m) => StoreError::Unavailable(m),
        TableError::TooLarge(m) => StoreError::TooLarge(m),
        TableError::PreconditionFailed => StoreError::Conflict,
        TableError::Failed(m) => StoreError::Unavailable(m),
        other @ (TableError::NotFound | TableError::Conflict(_) | TableError::InvalidKey(_)) => {
            StoreError::Corrupt(other.to_string())
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Milliseconds rounded up (nothing is due before its instant), zero-padded to sort as text.
fn due_key(at: DateTime<Utc>) -> String {
    let ms = at.timestamp_millis();
    let ms = if at.timestamp_subsec_nanos().is_multiple_of(1_000_000) { ms } else { ms.saturating_add(1) };
    format!("{:015}", ms.max(0))
}

fn due_row(due: &str, id: ActivationId) -> String {
    format!("{due}_{id}")
}

fn event_row(seq: u64) -> String {
    format!("event_{seq:06}")
}

fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn open_row(a: &Activation) -> String {
    let r = a.request();
    digest(&[&r.principal_id.to_string(), &r.role_definition_id.to_string(), &r.scope.key()])
}

/// The principal's open activations: the cap's reservations.
fn held_partition(principal: PrincipalId) -> String {
    format!("open_{principal}")
}

fn list_partition(principal: PrincipalId) -> String {
    format!("list_{principal}")
}

fn awaiting_partition(rule: &RuleId) -> String {
    format!("awaiting_{rule}")
}

fn list_row(a: &Activation) -> String {
    newest_first_key(a.request().requested_at, a.id())
}

/// The activation's entry in the `awaiting` index while it awaits a decision: its list key and
/// the episode (`0` for the request, the extension's request time for an extension), so the
/// entry of a decided episode is never mistaken for the next one's.
fn awaiting_row(a: &Activation) -> Option<String> {
    if !a.awaits_decision() {
        return None;
    }
    let episode = if let State::Active { extension: Some(e), .. } = a.state() {
        e.requested_at.timestamp_millis().max(1)
    } else {
        0
    };
    Some(format!("{}_{episode:015}", list_row(a)))
}

/// Reads an `awaiting` RowKey used as a page token back.
fn check_awaiting_token(token: &PageToken) -> Result<(), StoreError> {
    let refuse = || StoreError::InvalidPageToken(format!("`{}`", crate::domain::ids::shorten(token.as_str())));
    let (key, episode) = token.as_str().rsplit_once('_').ok_or_else(refuse)?;
    if episode.len() != 15 || !episode.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    parse_newest_first(&PageToken::new(key.to_owned())).map(|_| ())
}

fn index_entity(partition: &str, row: &str, id: ActivationId, at: DateTime<Utc>) -> Properties {
    entity(partition, row, json!({ "ActivationId": id.to_string(), "At": timestamp(at) }))
}

/// An index entry as a list page reads it.
struct IndexEntry {
    partition: String,
    row: String,
    id: ActivationId,
    /// When it was written: removed as stale only once older than `STALE_AFTER`.
    at: Option<DateTime<Utc>>,
}

fn read_index_entry(p: &Properties) -> Result<IndexEntry, StoreError> {
    Ok(IndexEntry {
        partition: text(p, "PartitionKey")?.to_owned(),
        row: text(p, "RowKey")?.to_owned(),
        id: parse_id(p, "ActivationId")?,
        at: p.get("At").and_then(Value::as_str).and_then(|t| t.parse::<DateTime<Utc>>().ok()),
    })
}

/// Whether an index entry still describes the activation, by the partition it lies in.
fn entry_matches(entry: &IndexEntry, a: &Activation) -> bool {
    let partition = entry.partition.as_str();
    if partition == LIST_ALL {
        entry.row == list_row(a)
    } else if partition.starts_with("list_") {
        entry.row == list_row(a) && partition == list_partition(a.request().principal_id)
    } else {
        awaiting_row(a).as_deref() == Some(entry.row.as_str()) && partition == awaiting_partition(&a.request().rule_id)
    }
}

fn bad_token(token: &PageToken) -> StoreError {
    StoreError::InvalidPageToken(format!("`{}`", crate::domain::ids::shorten(token.as_str())))
}

/// An audit event's place in the trail across activations: its time, partition and row.
type AuditPosition = (String, String, String);

fn audit_position(token: &PageToken) -> Result<AuditPosition, StoreError> {
    let mut parts = token.as_str().splitn(3, '|');
    let (Some(at), Some(partition), Some(row)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad_token(token));
    };
    let canonical = at.parse::<DateTime<Utc>>().ok().map(timestamp);
    let id = ActivationId::parse(partition).ok().map(|id| id.to_string());
    if canonical.as_deref() != Some(at) || id.as_deref() != Some(partition) || !is_event_row(row) {
        return Err(bad_token(token));
    }
    Ok((at.to_owned(), partition.to_owned(), row.to_owned()))
}

fn is_event_row(row: &str) -> bool {
    row.strip_prefix("event_").is_some_and(|n| (6..=20).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

fn idempotency_row(caller: PrincipalId, key: &IdempotencyKey) -> String {
    digest(&[&caller.to_string(), key.as_str()])
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("unencodable value: {e}")))
}

fn text<'a>(p: &'a Properties, name: &str) -> Result<&'a str, StoreError> {
    p.get(name).and_then(Value::as_str).ok_or_else(|| StoreError::Corrupt(format!("an entity lacks `{name}`")))
}

fn parse_id(p: &Properties, name: &str) -> Result<ActivationId, StoreError> {
    ActivationId::parse(text(p, name)?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn entity(partition: &str, row: &str, fields: Value) -> Properties {
    let mut p = match fields {
        Value::Object(m) => m,
        _ => Properties::new(),
    };
    p.insert("PartitionKey".into(), partition.into());
    p.insert("RowKey".into(), row.into());
    p
}

/// The parts of our opaque `Version`.
struct Tag {
    seq: u64,
    /// The hash of event `seq`, when it has one (none before the chain existed).
    head: Option<AuditHash>,
    due: Option<String>,
    /// The activation's `awaiting` RowKey, while it awaits a decision.
    awaiting: Option<String>,
    etag: String,
}

impl Tag {
    fn version(&self) -> Version {
        Version(format!(
            "{}|{}|{}|{}|{}",
            self.seq,
            self.due.as_deref().unwrap_or("-"),
            self.awaiting.as_deref().unwrap_or("-"),
            self.head.map_or_else(|| "-".to_owned(), |h| h.to_string()),
            self.etag
        ))
    }

    fn parse(version: &Version) -> Result<Tag, StoreError> {
        let mut parts = version.0.splitn(5, '|');
        let (Some(seq), Some(due), Some(awaiting), Some(head), Some(etag)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(StoreError::Conflict);
        };
        Ok(Tag {
            seq: seq.parse().map_err(|_| StoreError::Conflict)?,
            head: if head == "-" { None } else { Some(AuditHash::parse(head).map_err(|_| StoreError::Conflict)?) },
            due: (due != "-").then(|| due.to_owned()),
            awaiting: (awaiting != "-").then(|| awaiting.to_owned()),
            etag: etag.to_owned(),
        })
    }
}

/// The activation, after its `seq` events, the latest of which hashes to `head`.
fn activation_entity(a: &Activation, seq: u64, head: Option<&AuditHash>) -> Result<Properties, StoreError> {
    let r = a.request();
    let mut e = entity(
        &a.id().to_string(),
        ACTIVATION_ROW,
        json!({
            "Kind": "activation",
            "PrincipalId": r.principal_id.to_string(),
            "RoleDefinitionId": r.role_definition_id.to_string(),
            "ScopeKey": r.scope.key(),
            "Status": a.status().as_str(),
            "Open": !a.status().is_terminal(),
            "DueAt": a.due_at().map(due_key).unwrap_or_default(),
            "RequestedAt": timestamp(r.requested_at),
            "Seq": seq.to_string(),
            "Body": encode(a)?,
        }),
    );
    if let Some(head) = head {
        e.insert("AuditHead".into(), head.to_string().into());
    }
    Ok(e)
}

fn event_entity(e: &AuditEvent, seq: u64) -> Result<Properties, StoreError> {
    Ok(entity(
        &e.activation_id.to_string(),
        &event_row(seq),
        json!({
            "Kind": "event",
            "EventId": e.id.to_string(),
            "ActivationId": e.activation_id.to_string(),
            "PrincipalId": e.principal_id.to_string(),
            "At": timestamp(e.at),
            "Body": encode(e)?,
        }),
    ))
}

fn outbox_row(id: uuid::Uuid) -> String {
    format!("outbox_{id}")
}

fn outbox_entity(item: &OutboxItem) -> Result<Properties, StoreError> {
    Ok(entity(
        &item.activation_id.to_string(),
        &outbox_row(item.id),
        json!({ "Kind": "outbox", "NextAt": timestamp(item.next_at), "Body": encode(item)? }),
    ))
}

fn outbox_index(item: &OutboxItem) -> Properties {
    entity(
        OUTBOX,
        &item.id.to_string(),
        json!({
            "ActivationId": item.activation_id.to_string(),
            "At": timestamp(item.at),
            // Never later than the notice's own: written after it, so a failed index write
            // only makes a pass look at the notice early.
            "NextAt": timestamp(item.next_at),
        }),
    )
}

fn read_activation(stored: Stored) -> Result<Versioned<Activation>, StoreError> {
    let p = &stored.properties;
    let value: Activation = serde_json::from_str(text(p, "Body")?)
        .map_err(|e| StoreError::Corrupt(format!("undecodable activation: {e}")))?;
    let seq =
        text(p, "Seq")?.parse().map_err(|_| StoreError::Corrupt("an activation's `Seq` is not a number".into()))?;
    let due = text(p, "DueAt")?;
    let awaiting = awaiting_row(&value);
    // Absent before the chain existed; unreadable only if tampered with, which `audit verify`
    // reports: the activation must still be writable (it must still expire).
    let head = p.get("AuditHead").and_then(Value::as_str).and_then(|h| AuditHash::parse(h).ok());
    let tag = Tag { seq, head, due: (!due.is_empty()).then(|| due.to_owned()), awaiting, etag: stored.etag };
    Ok(Versioned { value, version: tag.version() })
}

fn record_partition(kind: &RecordKind) -> String {
    format!("{RECORD_PREFIX}{kind}")
}

/// A record as written by one `put_record` call: `WriteId` tells that call's write from any other.
fn record_entity(kind: &RecordKind, id: &RecordId, body: &str, write: &str) -> Properties {
    entity(&record_partition(kind), id.as_str(), json!({ "Kind": RECORD_KIND, "WriteId": write, "Body": body }))
}

fn read_record(stored: Stored) -> Result<Versioned<String>, StoreError> {
    let body = text(&stored.properties, "Body")?.to_owned();
    Ok(Versioned { value: body, version: Version(stored.etag) })
}

/// The ETag a record's version holds. Anything else (a wildcard `*` above all, which would match
/// whatever is stored) is a version this store never made: a conflict, and nothing is sent.
fn record_etag(version: &Version) -> Result<&str, StoreError> {
    let tag = version.0.as_str();
    let quoted = tag.strip_prefix("W/").unwrap_or(tag);
    if quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"') {
        Ok(tag)
    } else {
        Err(StoreError::Conflict)
    }
}

fn read_event(p: &Properties) -> Result<AuditEvent, StoreError> {
    serde_json::from_str(text(p, "Body")?).map_err(|e| StoreError::Corrupt(format!("undecodable audit event: {e}")))
}

impl TableStore {
    pub fn new(table: TableClient) -> Self {
        Self { table: Arc::new(table), indexed: OnceCell::new() }
    }

    async fn get_activation(&self, id: ActivationId) -> Result<Option<Versioned<Activation>>, StoreError> {
        self.table.get(&id.to_string(), ACTIVATION_ROW).await.map_err(store_error)?.map(read_activation).transpose()
    }

    /// Whether event `seq` of activation `id` is the event `event_id`: tells a retried write that
    /// landed from a write someone else made.
    async fn event_landed(&self, id: ActivationId, seq: u64, event_id: uuid::Uuid) -> Result<bool, StoreError> {
        let stored = self.table.get(&id.to_string(), &event_row(seq)).await.map_err(store_error)?;
        Ok(stored.is_some_and(|s| s.properties.get("EventId").and_then(Value::as_str) == Some(&event_id.to_string())))
    }

    async fn put_due(&self, due: &str, id: ActivationId) -> Result<(), StoreError> {
        let row = due_row(due, id);
        let e = entity(DUE, &row, json!({ "ActivationId": id.to_string() }));
        self.table.replace(&e, None).await.map_err(store_error).map(|_| ())
    }

    /// Best effort: a leftover index entry is skipped by the sweeper and removed later.
    async fn drop_due(&self, due: &str, id: ActivationId) {
        match self.table.delete(DUE, &due_row(due, id), "*").await {
            Ok(()) | Err(TableError::NotFound) => {}
            Err(e) => {
                tracing::warn!(activation = %id, error = %e, "could not remove an old due-index entry; the sweeper will")
            }
        }
    }

    /// Best effort: frees the open-activation slot `row` if `id` still holds it.
    async fn release_open(&self, row: &str, id: ActivationId) {
        let result = async {
            let Some(lock) = self.table.get(OPEN, row).await? else { return Ok(()) };
            if lock.properties.get("ActivationId").and_then(Value::as_str) == Some(&id.to_string()) {
                match self.table.delete(OPEN, row, &lock.etag).await {
                    Ok(()) | Err(TableError::NotFound | TableError::PreconditionFailed) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(activation = %id, error = %e, "could not free the open-activation slot; the next request takes it over");
        }
    }

    /// Takes the idempotency record for `r`. `Ok(etag)` when ours (also after a retried insert
    /// that landed), `IdempotencyKeyTaken` when another request holds the key.
    async fn take_idempotency(&self, r: &IdempotencyRecord) -> Result<String, StoreError> {
        let row = idempotency_row(r.caller, &r.key);
        let e = entity(
            IDEMPOTENCY,
            &row,
            json!({
                "Caller": r.caller.to_string(),
                "Key": r.key.as_str(),
                "RequestHash": r.request_hash,
                "ActivationId": r.activation_id.to_string(),
            }),
        );
        match self.table.insert(&e).await {
            Ok(etag) => Ok(etag),
            Err(TableError::Conflict(_)) => match self.table.get(IDEMPOTENCY, &row).await.map_err(store_error)? {
                Some(s)
                    if s.properties.get("ActivationId").and_then(Value::as_str)
                        == Some(&r.activation_id.to_string()) =>
                {
                    Ok(s.etag)
                }
                _ => Err(StoreError::IdempotencyKeyTaken),
            },
            Err(e) => Err(store_error(e)),
        }
    }

    /// Takes the open-activation slot for `a`, taking over a stale holder. Returns the ETag.
    async fn take_open(&self, a: &Activation) -> Result<String, StoreError> {
        let row = open_row(a);
        let mine = entity(
            OPEN,
            &row,
            json!({ "ActivationId": a.id().to_string(), "At": timestamp(a.request().requested_at) }),
        );
        for _ in 0..5 {
            match self.table.insert(&mine).await {
                Ok(etag) => return Ok(etag),
                Err(TableError::Conflict(_)) => {}
                Err(e) => return Err(store_error(e)),
            }
            let Some(lock) = self.table.get(OPEN, &row).await.map_err(store_error)? else { continue };
            let holder = parse_id(&lock.properties, "ActivationId")?;
            if holder == a.id() {
                return Ok(lock.etag);
            }
            let stale = match self.get_activation(holder).await? {
                Some(held) if !held.value.status().is_terminal() => {
                    return Err(StoreError::OpenActivationExists(holder));
                }
                Some(_) => true,
                None => {
                    // Written by a request still in flight, or by one that crashed: only age tells.
                    let at = text(&lock.properties, "At")?
                        .parse::<DateTime<Utc>>()
                        .map_err(|e| StoreError::Corrupt(format!("an open-slot entry's `At`: {e}")))?;
                    if a.request().requested_at - at < STALE_AFTER {
                        return Err(StoreError::Unavailable(
                            "another request for the same principal, role and scope is being written; retry shortly"
                                .into(),
                        ));
                    }
                    true
                }
            };
            if stale {
                match self.table.replace(&mine, Some(&lock.etag)).await {
                    Ok(etag) => return Ok(etag),
                    Err(TableError::PreconditionFailed | TableError::NotFound) => continue,
                    Err(e) => return Err(store_error(e)),
                }
            }
        }
        Err(StoreError::Unavailable("the open-activation slot kept changing; retry".into()))
    }

    /// The index entry of a notice, written before the notice itself.
    async fn index_notice(&self, item: Option<&OutboxItem>) -> Result<(), StoreError> {
        match item {
            Some(item) => self.table.replace(&outbox_index(item), None).await.map(|_| ()).map_err(store_error),
            None => Ok(()),
        }
    }

    /// Activations whose due-index entries lie in `(lower, upper)` (as keys) and still match
    /// them. With `clean_before`, index entries older than it that match nothing are removed.
    async fn scan_due(
        &self,
        lower: String,
        upper: String,
        clean_before: Option<String>,
        limit: usize,
    ) -> Result<Vec<Versioned<Activation>>, StoreError> {
        let mut cursor = lower;
        let mut found = Vec::new();
        while found.len() < limit {
            let filter = format!(
                "PartitionKey eq {} and RowKey gt {} and RowKey lt {}",
                literal(DUE),
                literal(&cursor),
                literal(&upper)
            );
            let want = limit - found.len();
            let entries = self.table.query(&filter, want, want).await.map_err(store_error)?;
            let Some(last) = entries.last() else { break };
            cursor = text(last, "RowKey")?.to_owned();
            let checks = futures_util::stream::iter(entries.into_iter().map(|entry| async move {
                let row = text(&entry, "RowKey")?.to_owned();
                let id = parse_id(&entry, "ActivationId")?;
                let due = row.split_once('_').map_or("", |(d, _)| d).to_owned();
                let current = self.get_activation(id).await?;
                Ok::<_, StoreError>((row, id, due, current))
            }))
            .buffered(READ_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
            for check in checks {
                let (row, id, due, current) = check?;
                let current_due = current.as_ref().and_then(|c| Tag::parse(&c.version).ok()).and_then(|t| t.due);
                match current {
                    Some(c) if current_due.as_deref() == Some(due.as_str()) => found.push(c),
                    _ if clean_before.as_ref().is_some_and(|before| &due < before) => {
                        tracing::debug!(activation = %id, "removing a stale due-index entry");
                        if let Err(e) = self.table.delete(DUE, &row, "*").await
                            && !matches!(e, TableError::NotFound)
                        {
                            tracing::warn!(activation = %id, error = %e, "could not remove a stale due-index entry");
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(found)
    }

    /// Writes (or rewrites) an index entry.
    async fn put_index(
        &self,
        partition: &str,
        row: &str,
        id: ActivationId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.table.replace(&index_entity(partition, row, id, at), None).await.map(|_| ()).map_err(store_error)
    }

    /// Best effort: a leftover entry is skipped by readers and removed once stale.
    async fn drop_index(&self, partition: &str, row: &str, id: ActivationId) {
        match self.table.delete(partition, row, "*").await {
            Ok(()) | Err(TableError::NotFound) => {}
            Err(e) => {
                tracing::warn!(activation = %id, partition, error = %e, "could not remove an index entry; readers skip it and remove it later")
            }
        }
    }

    /// The list entries of a new activation, and its `awaiting` entry if it awaits a decision.
    async fn index_new(&self, a: &Activation, at: DateTime<Utc>) -> Result<(), StoreError> {
        let row = list_row(a);
        let principal = list_partition(a.request().principal_id);
        let awaiting = async {
            match awaiting_row(a) {
                Some(row) => self.put_index(&awaiting_partition(&a.request().rule_id), &row, a.id(), at).await,
                None => Ok(()),
            }
        };
        futures_util::try_join!(
            self.put_index(LIST_ALL, &row, a.id(), at),
            self.put_index(&principal, &row, a.id(), at),
            awaiting
        )?;
        Ok(())
    }

    /// Indexes, once per table, the activations written before the list indexes existed.
    /// INVARIANT: every list and the cap rely on it; every entry point that reads an index or
    /// inserts calls it first.
    async fn ensure_indexes(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.indexed
            .get_or_try_init(|| async {
                if self.table.get(META, INDEXES_ROW).await.map_err(store_error)?.is_some() {
                    return Ok(());
                }
                // By `Kind` too: a governance record may be called `activation`.
                let filter = format!("RowKey eq {} and Kind eq {}", literal(ACTIVATION_ROW), literal(ACTIVATION_ROW));
                let rows = self.table.query(&filter, 1000, usize::MAX).await.map_err(store_error)?;
                let written = futures_util::stream::iter(rows.into_iter().map(|p| async move {
                    let a: Activation = serde_json::from_str(text(&p, "Body")?)
                        .map_err(|e| StoreError::Corrupt(format!("undecodable activation: {e}")))?;
                    self.index_new(&a, now).await?;
                    if !a.status().is_terminal() {
                        let held = held_partition(a.request().principal_id);
                        self.put_index(&held, &a.id().to_string(), a.id(), a.request().requested_at).await?;
                    }
                    Ok::<_, StoreError>(())
                }))
                .buffer_unordered(READ_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
                let count = written.len();
                written.into_iter().collect::<Result<Vec<()>, _>>()?;
                let marker = entity(META, INDEXES_ROW, json!({ "Version": "1", "At": timestamp(now) }));
                self.table.replace(&marker, None).await.map_err(store_error)?;
                tracing::info!(activations = count, "indexed the activations written before the list indexes");
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Reserves one of the principal's `max_open` open activations for `a` (see the module
    /// doc). Returns the reservation's ETag.
    async fn reserve_held(&self, a: &Activation, max_open: usize) -> Result<String, StoreError> {
        let partition = held_partition(a.request().principal_id);
        let row = a.id().to_string();
        let now = a.request().requested_at;
        let etag = match self.table.insert(&index_entity(&partition, &row, a.id(), now)).await {
            Ok(etag) => etag,
            // A retry of this very insert.
            Err(TableError::Conflict(_)) => {
                self.table.get(&partition, &row).await.map_err(store_error)?.map(|s| s.etag).ok_or_else(|| {
                    StoreError::Unavailable("an open-activation reservation kept changing; retry".into())
                })?
            }
            Err(e) => return Err(store_error(e)),
        };
        let filter = format!("PartitionKey eq {}", literal(&partition));
        let enough = max_open.saturating_add(1);
        let first = self.table.query(&filter, enough.min(1000), enough).await.map_err(store_error)?;
        if first.len() <= max_open {
            return Ok(etag);
        }
        let entries = self.table.query(&filter, 1000, usize::MAX).await.map_err(store_error)?;
        // Over the cap on the face of it: count only the live reservations.
        let stale_before = now - STALE_AFTER;
        let checks = futures_util::stream::iter(entries.into_iter().map(|p| async move {
            let entry = read_index_entry(&p)?;
            if entry.id == a.id() {
                return Ok::<_, StoreError>((entry, true));
            }
            let live = match self.get_activation(entry.id).await? {
                Some(held) => !held.value.status().is_terminal(),
                // Being written, or never will be: only age tells.
                None => entry.at.is_none_or(|at| at >= stale_before),
            };
            Ok((entry, live))
        }))
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        let mut live = 0usize;
        for check in checks {
            let (entry, is_live) = check?;
            if is_live {
                live += 1;
            } else {
                tracing::debug!(activation = %entry.id, "removing a stale open-activation reservation");
                self.drop_index(&entry.partition, &entry.row, entry.id).await;
            }
        }
        if live > max_open {
            self.undo(&partition, &row, &etag).await;
            return Err(StoreError::TooManyOpen { limit: max_open });
        }
        Ok(etag)
    }

    /// Removes an index entry that matched nothing, if it is still the one read and older than
    /// `stale_before` (read again: a writer may have just rewritten it).
    async fn remove_stale_entry(&self, entry: &IndexEntry, stale_before: DateTime<Utc>) {
        let result = async {
            let Some(stored) = self.table.get(&entry.partition, &entry.row).await? else { return Ok(()) };
            let at = stored.properties.get("At").and_then(Value::as_str).and_then(|t| t.parse::<DateTime<Utc>>().ok());
            if at.is_none_or(|at| at < stale_before) {
                match self.table.delete(&entry.partition, &entry.row, &stored.etag).await {
                    Ok(()) | Err(TableError::NotFound | TableError::PreconditionFailed) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(activation = %entry.id, partition = %entry.partition, error = %e, "could not remove a stale index entry");
        }
    }

    /// A newest-first page from the index `partitions`, merged: at most `limit + 1` entries of
    /// each after `after`, the first `limit` of them point-read and checked; what matches
    /// nothing is skipped (and removed once stale), what `keep` refuses is left out.
    async fn index_page(
        &self,
        partitions: &[String],
        after: Option<&str>,
        limit: usize,
        now: DateTime<Utc>,
        keep: impl Fn(&Activation) -> bool,
    ) -> Result<Page<Activation>, StoreError> {
        let want = limit.saturating_add(1);
        let reads = futures_util::stream::iter(partitions.iter().cloned().map(|partition| async move {
            let mut filter = format!("PartitionKey eq {}", literal(&partition));
            if let Some(after) = after {
                filter.push_str(&format!(" and RowKey gt {}", literal(after)));
            }
            self.table.query(&filter, want, want).await.map_err(store_error)
        }))
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        let mut entries = Vec::new();
        for read in reads {
            for p in &read? {
                entries.push(read_index_entry(p)?);
            }
        }
        entries.sort_by(|x, y| x.row.cmp(&y.row).then_with(|| x.partition.cmp(&y.partition)));
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = entries.last().filter(|_| more).map(|e| PageToken::new(e.row.clone()));
        let loaded = futures_util::stream::iter(entries.into_iter().map(|entry| async move {
            let current = self.get_activation(entry.id).await?;
            Ok::<_, StoreError>((entry, current))
        }))
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        let stale_before = now - STALE_AFTER;
        let mut items = Vec::new();
        for result in loaded {
            let (entry, current) = result?;
            match current {
                // Still what the index says; the filter may leave it out.
                Some(c) if entry_matches(&entry, &c.value) => items.extend(keep(&c.value).then_some(c.value)),
                _ if entry.at.is_none_or(|at| at < stale_before) => {
                    tracing::debug!(activation = %entry.id, partition = %entry.partition, "removing a stale index entry");
                    self.remove_stale_entry(&entry, stale_before).await;
                }
                _ => {}
            }
        }
        Ok(Page { items, next })
    }

    async fn undo(&self, partition: &str, row: &str, etag: &str) {
        if let Err(e) = self.table.delete(partition, row, etag).await
            && !matches!(e, TableError::NotFound | TableError::PreconditionFailed)
        {
            tracing::warn!(partition, error = %e, "could not undo a reservation; it is taken over once stale");
        }
    }
}

#[async_trait]
impl Store for TableStore {
    async fn insert(
        &self,
        activation: &Activation,
        event: &AuditEvent,
        idempotency: Option<&IdempotencyRecord>,
        max_open: usize,
    ) -> Result<Version, StoreError> {
        let id = activation.id();
        let partition = id.to_string();
        let event = &event.clone().linked(1, None);
        let head = event.chain.as_ref().map(|c| c.hash);
        let entities = [activation_entity(activation, 1, head.as_ref())?, event_entity(event, 1)?];
        for e in &entities {
            super::table_client::check_size(e).map_err(store_error)?;
        }
        let now = activation.request().requested_at;
        self.ensure_indexes(now).await?;
        let notice = OutboxItem::for_event(event);
        let mut taken: Vec<(String, String, String)> = Vec::new();
        if let Some(r) = idempotency {
            let etag = self.take_idempotency(r).await?;
            taken.push((IDEMPOTENCY.into(), idempotency_row(r.caller, &r.key), etag));
        }
        let open = !activation.status().is_terminal();
        if open {
            let reserved = async {
                let etag = self.take_open(activation).await?;
                taken.push((OPEN.into(), open_row(activation), etag));
                let etag = self.reserve_held(activation, max_open).await?;
                taken.push((held_partition(activation.request().principal_id), id.to_string(), etag));
                Ok::<_, StoreError>(())
            };
            if let Err(e) = reserved.await {
                for (p, r, tag) in &taken {
                    self.undo(p, r, tag).await;
                }
                return Err(e);
            }
        }
        let due = activation.due_at().map(due_key);
        let indexed = async {
            let due_entry = async {
                match &due {
                    Some(due) => self.put_due(due, id).await,
                    None => Ok(()),
                }
            };
            futures_util::try_join!(self.index_new(activation, event.at), due_entry, self.index_notice(notice.as_ref()))
                .map(|_| ())
        };
        if let Err(e) = indexed.await {
            for (p, r, tag) in &taken {
                self.undo(p, r, tag).await;
            }
            return Err(e);
        }
        let [a, e] = entities;
        let mut ops = vec![BatchOp::Insert(a), BatchOp::Insert(e)];
        if let Some(item) = &notice {
            ops.push(BatchOp::Insert(outbox_entity(item)?));
        }
        match self.table.batch(&partition, &ops).await {
            Ok(etags) => {
                let etag = etags.into_iter().next().unwrap_or_default();
                Ok(Tag { seq: 1, head, due, awaiting: awaiting_row(activation), etag }.version())
            }
            Err(BatchFailure { error: TableError::Conflict(_), .. }) => {
                if self.event_landed(id, 1, event.id).await? {
                    // Our own earlier attempt landed and only its answer was lost.
                    let stored = self.get_activation(id).await?.ok_or(StoreError::Duplicate(id))?;
                    return Ok(stored.version);
                }
                for (p, r, tag) in &taken {
                    self.undo(p, r, tag).await;
                }
                Err(StoreError::Duplicate(id))
            }
            // The outcome is unknown: the reservations stay, and are taken over once stale.
            Err(BatchFailure { error: e @ TableError::Transient(_), .. }) => Err(store_error(e)),
            Err(f) => {
                for (p, r, tag) in &taken {
                    self.undo(p, r, tag).await;
                }
                Err(store_error(f.error))
            }
        }
    }

    async fn get(&self, id: ActivationId) -> Result<Option<Versioned<Activation>>, StoreError> {
        self.get_activation(id).await
    }

    async fn update(
        &self,
        activation: &Activation,
        expected: &Version,
        event: &AuditEvent,
    ) -> Result<Version, StoreError> {
        let id = activation.id();
        let tag = Tag::parse(expected)?;
        let seq = tag.seq + 1;
        // INVARIANT: the batch below is conditional on `tag.etag`, the ETag the head was read
        // with: it lands only while `tag.head` is still the latest event's hash.
        let event = &event.clone().linked(seq, tag.head);
        let head = event.chain.as_ref().map(|c| c.hash);
        let entities = [activation_entity(activation, seq, head.as_ref())?, event_entity(event, seq)?];
        for e in &entities {
            super::table_client::check_size(e).map_err(store_error)?;
        }
        let due = activation.due_at().map(due_key);
        if let Some(new) = &due
            && tag.due.as_ref() != Some(new)
        {
            self.put_due(new, id).await?;
        }
        let awaiting = awaiting_row(activation);
        if let Some(new) = &awaiting
            && tag.awaiting.as_ref() != Some(new)
        {
            self.put_index(&awaiting_partition(&activation.request().rule_id), new, id, event.at).await?;
        }
        let notice = OutboxItem::for_event(event);
        self.index_notice(notice.as_ref()).await?;
        let [a, e] = entities;
        let mut ops = vec![
            BatchOp::Replace { row_key: ACTIVATION_ROW.into(), properties: a, if_match: tag.etag.clone() },
            BatchOp::Insert(e),
        ];
        if let Some(item) = &notice {
            ops.push(BatchOp::Insert(outbox_entity(item)?));
        }
        let etag = match self.table.batch(&id.to_string(), &ops).await {
            Ok(etags) => etags.into_iter().next().unwrap_or_default(),
            Err(f) => match f.error {
                TableError::PreconditionFailed | TableError::Conflict(_) | TableError::NotFound => {
                    // Either someone else changed it, or a retry of ours that landed found its
                    // own write: only the numbered event tells which.
                    if !self.event_landed(id, seq, event.id).await? {
                        return Err(StoreError::Conflict);
                    }
                    let stored = self.get_activation(id).await?.ok_or(StoreError::Conflict)?;
                    Tag::parse(&stored.version)?.etag
                }
                other => return Err(store_error(other)),
            },
        };
        if let Some(old) = &tag.due
            && due.as_ref() != Some(old)
        {
            self.drop_due(old, id).await;
        }
        if let Some(old) = &tag.awaiting
            && awaiting.as_ref() != Some(old)
        {
            self.drop_index(&awaiting_partition(&activation.request().rule_id), old, id).await;
        }
        if activation.status().is_terminal() {
            self.release_open(&open_row(activation), id).await;
            self.drop_index(&held_partition(activation.request().principal_id), &id.to_string(), id).await;
        }
        Ok(Tag { seq, head, due, awaiting, etag }.version())
    }

    async fn idempotency(
        &self,
        caller: PrincipalId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(stored) = self.table.get(IDEMPOTENCY, &idempotency_row(caller, key)).await.map_err(store_error)?
        else {
            return Ok(None);
        };
        let p = &stored.properties;
        Ok(Some(IdempotencyRecord {
            caller,
            key: key.clone(),
            request_hash: text(p, "RequestHash")?.to_owned(),
            activation_id: parse_id(p, "ActivationId")?,
        }))
    }

    async fn list(&self, query: &ActivationQuery) -> Result<Page<Activation>, StoreError> {
        if let Some(token) = &query.after {
            parse_newest_first(token)?;
        }
        self.ensure_indexes(query.now).await?;
        let partition = query.principal_id.map_or_else(|| LIST_ALL.to_owned(), list_partition);
        let statuses = &query.statuses;
        let after = query.after.as_ref().map(PageToken::as_str);
        self.index_page(&[partition], after, query.limit, query.now, |a| {
            statuses.is_empty() || statuses.contains(&a.status())
        })
        .await
    }

    async fn awaiting_decision(&self, query: &AwaitingQuery) -> Result<Page<Activation>, StoreError> {
        if let Some(token) = &query.after {
            check_awaiting_token(token)?;
        }
        if query.rules.is_empty() {
            return Ok(Page { items: Vec::new(), next: None });
        }
        self.ensure_indexes(query.now).await?;
        let mut partitions: Vec<String> = query.rules.iter().map(awaiting_partition).collect();
        partitions.sort();
        partitions.dedup();
        let after = query.after.as_ref().map(PageToken::as_str);
        self.index_page(&partitions, after, query.limit, query.now, |_| true).await
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<Versioned<Activation>>, StoreError> {
        // `_` sorts after every digit, and the empty string before everything.
        let lower = after.map(|c| due_row(&due_key(c.due_at), c.id)).unwrap_or_default();
        let upper = format!("{:015}", now.timestamp_millis().max(0).saturating_add(1));
        self.scan_due(lower, upper, Some(due_key(now - STALE_AFTER)), limit).await
    }

    async fn upcoming(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Activation>, StoreError> {
        // After every entry of `now`'s millisecond, up to and including `until`'s.
        let lower = format!("{:015}`", now.timestamp_millis().max(0));
        let upper = format!("{:015}", until.timestamp_millis().max(0).saturating_add(1));
        Ok(self.scan_due(lower, upper, None, limit).await?.into_iter().map(|v| v.value).collect())
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>, StoreError> {
        let want = query.limit.saturating_add(1);
        let mut extra = String::new();
        if let Some(p) = query.principal_id {
            extra.push_str(&format!(" and PrincipalId eq {}", literal(&p.to_string())));
        }
        if let Some(since) = query.since {
            extra.push_str(&format!(" and At ge {}", literal(&timestamp(since))));
        }
        if let Some(id) = query.activation_id {
            // One partition, in order: reads what it returns.
            let lower = match &query.after {
                Some(token) if is_event_row(token.as_str()) => token.as_str().to_owned(),
                Some(token) => return Err(bad_token(token)),
                None => "event_".to_owned(),
            };
            let filter = format!(
                "PartitionKey eq {} and RowKey gt {} and RowKey lt {}{extra}",
                literal(&id.to_string()),
                literal(&lower),
                literal("event`")
            );
            let rows = self.table.query(&filter, want, want).await.map_err(store_error)?;
            let mut found = Vec::with_capacity(rows.len());
            for p in &rows {
                found.push((text(p, "RowKey")?.to_owned(), read_event(p)?));
            }
            let more = found.len() > query.limit;
            found.truncate(query.limit);
            let next = found.last().filter(|_| more).map(|(row, _)| PageToken::new(row.clone()));
            return Ok(Page { items: found.into_iter().map(|(_, e)| e).collect(), next });
        }
        // Across activations: a filtered scan of every event (not indexed), resumed after the
        // last (time, partition, row) returned.
        let after = query.after.as_ref().map(audit_position).transpose()?;
        let mut filter = format!("Kind eq {}{extra}", literal("event"));
        if let Some((at, _, _)) = &after {
            filter.push_str(&format!(" and At ge {}", literal(at)));
        }
        let rows = self.table.query(&filter, 1000, usize::MAX).await.map_err(store_error)?;
        let mut keyed = Vec::with_capacity(rows.len());
        for p in &rows {
            let order = (text(p, "At")?.to_owned(), text(p, "PartitionKey")?.to_owned(), text(p, "RowKey")?.to_owned());
            if after.as_ref().is_some_and(|a| &order <= a) {
                continue;
            }
            keyed.push((order, p));
        }
        keyed.sort_by(|x, y| x.0.cmp(&y.0));
        let more = keyed.len() > query.limit;
        keyed.truncate(query.limit);
        let next = keyed
            .last()
            .filter(|_| more)
            .map(|((at, partition, row), _)| PageToken::new(format!("{at}|{partition}|{row}")));
        let items = keyed.into_iter().map(|(_, p)| read_event(p)).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next })
    }

    async fn enqueue(&self, item: &OutboxItem) -> Result<bool, StoreError> {
        self.index_notice(Some(item)).await?;
        match self.table.insert(&outbox_entity(item)?).await {
            Ok(_) => Ok(true),
            Err(TableError::Conflict(_)) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Versioned<OutboxItem>>, StoreError> {
        let entries = self
            .table
            .query(
                &format!("PartitionKey eq {} and NextAt le {}", literal(OUTBOX), literal(&timestamp(now))),
                1000,
                // Only due entries match, so a little over `limit` reads is enough; the rest
                // wait for the next pass.
                limit.saturating_mul(2),
            )
            .await
            .map_err(store_error)?;
        let stale_before = now - STALE_AFTER;
        let loaded = futures_util::stream::iter(entries.into_iter().map(|entry| async move {
            let id = text(&entry, "RowKey")?.to_owned();
            let activation = text(&entry, "ActivationId")?.to_owned();
            let at = text(&entry, "At")?.parse::<DateTime<Utc>>().ok();
            let stored = self.table.get(&activation, &format!("outbox_{id}")).await.map_err(store_error)?;
            Ok::<_, StoreError>((id, at, stored))
        }))
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        let mut due = Vec::new();
        for result in loaded {
            let (id, at, stored) = result?;
            match stored {
                Some(stored) if stored.properties.get("Done").and_then(Value::as_bool) == Some(true) => {
                    // Done, but its index entry outlived it.
                    if let Err(e) = self.table.delete(OUTBOX, &id, "*").await
                        && !matches!(e, TableError::NotFound)
                    {
                        tracing::warn!(notice = %id, error = %e, "could not remove a done notice's index entry");
                    }
                }
                Some(stored) => {
                    let item: OutboxItem = serde_json::from_str(text(&stored.properties, "Body")?)
                        .map_err(|e| StoreError::Corrupt(format!("undecodable notice: {e}")))?;
                    if item.next_at <= now {
                        due.push(Versioned { value: item, version: Version(stored.etag) });
                    }
                }
                // Delivered (its entry removal failed), or never written: a transaction that
                // failed after the index entry. A young one may be a write in flight.
                None if at.is_none_or(|at| at < stale_before) => {
                    if let Err(e) = self.table.delete(OUTBOX, &id, "*").await
                        && !matches!(e, TableError::NotFound)
                    {
                        tracing::warn!(notice = %id, error = %e, "could not remove a stale outbox-index entry");
                    }
                }
                None => {}
            }
        }
        due.sort_by_key(|v| (v.value.next_at, v.value.id));
        due.truncate(limit);
        Ok(due)
    }

    async fn outbox_save(&self, item: &OutboxItem, expected: &Version) -> Result<Version, StoreError> {
        // An ETag taken before the notice was marked done no longer matches: done stays done.
        let etag = self.table.replace(&outbox_entity(item)?, Some(&expected.0)).await.map_err(|e| match e {
            TableError::NotFound => StoreError::Conflict,
            other => store_error(other),
        })?;
        // The index learns the next attempt, so passes read only what is due.
        if let Err(e) = self.table.replace(&outbox_index(item), None).await {
            tracing::warn!(notice = %item.id, error = %e, "could not update an outbox-index entry; a pass reads it early");
        }
        Ok(Version(etag))
    }

    async fn outbox_remove(&self, item: &OutboxItem, expected: &Version) -> Result<(), StoreError> {
        // The entity stays, marked done, in the activation's partition: a notice with the same
        // id is then never queued again. Only its index entry goes.
        let mut done = outbox_entity(item)?;
        done.insert("Done".into(), Value::Bool(true));
        match self.table.replace(&done, Some(&expected.0)).await {
            Ok(_) => {}
            Err(TableError::NotFound | TableError::PreconditionFailed) => return Err(StoreError::Conflict),
            Err(e) => return Err(store_error(e)),
        }
        match self.table.delete(OUTBOX, &item.id.to_string(), "*").await {
            Ok(()) | Err(TableError::NotFound) => Ok(()),
            Err(e) => {
                tracing::warn!(notice = %item.id, error = %e, "could not remove an outbox-index entry; the next pass will");
                Ok(())
            }
        }
    }

    async fn record(&self, kind: &RecordKind, id: &RecordId) -> Result<Option<Versioned<String>>, StoreError> {
        self.table.get(&record_partition(kind), id.as_str()).await.map_err(store_error)?.map(read_record).transpose()
    }

    async fn records(&self, kind: &RecordKind, limit: usize) -> Result<Vec<(RecordId, Versioned<String>)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A query's rows carry no ETag (`odata=nometadata`): each record listed is point-read for
        // its version, which also pairs that version with the very body it read.
        let partition = record_partition(kind);
        let filter = format!("PartitionKey eq {}", literal(&partition));
        let rows = self.table.query(&filter, limit.min(1000), limit).await.map_err(store_error)?;
        let mut ids = Vec::with_capacity(rows.len());
        for p in &rows {
            let row = text(p, "RowKey")?;
            ids.push(RecordId::parse(row).map_err(|e| StoreError::Corrupt(format!("a stored record id: {e}")))?);
        }
        let partition = &partition;
        let loaded = futures_util::stream::iter(ids.into_iter().map(|id| async move {
            let stored = self.table.get(partition, id.as_str()).await.map_err(store_error)?;
            Ok::<_, StoreError>((id, stored))
        }))
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        let mut found = Vec::with_capacity(loaded.len());
        for result in loaded {
            // Records are never deleted; one gone between the query and its read is left out.
            if let (id, Some(stored)) = result? {
                found.push((id, read_record(stored)?));
            }
        }
        Ok(found)
    }

    async fn put_record(
        &self,
        kind: &RecordKind,
        id: &RecordId,
        body: &str,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        check_record_body(body)?;
        let write = uuid::Uuid::new_v4().to_string();
        let e = record_entity(kind, id, body, &write);
        super::table_client::check_size(&e).map_err(store_error)?;
        let written = match expected {
            None => self.table.insert(&e).await,
            Some(version) => self.table.replace(&e, Some(record_etag(version)?)).await,
        };
        match written {
            Ok(etag) => Ok(Version(etag)),
            // Taken (insert), changed (412) or absent (404, a replace): not the record expected,
            // unless this is a retry of ours whose first attempt landed and only its answer was
            // lost, which then finds its own write.
            Err(TableError::Conflict(_) | TableError::PreconditionFailed | TableError::NotFound) => {
                match self.table.get(&record_partition(kind), id.as_str()).await.map_err(store_error)? {
                    Some(stored) if stored.properties.get("WriteId").and_then(Value::as_str) == Some(&write) => {
                        Ok(Version(stored.etag))
                    }
                    _ => Err(StoreError::Conflict),
                }
            }
            Err(other) => Err(store_error(other)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.table.ensure_table().await.map_err(store_error)?;
        self.table.query(&format!("PartitionKey eq {}", literal("health")), 1, 1).await.map(|_| ()).map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_sort_as_their_instants_and_round_up() {
        let at: DateTime<Utc> = "2026-11-25T12:00:00.0005Z".parse().unwrap();
        assert_eq!(due_key(at), format!("{:015}", at.timestamp_millis() + 1));
        let earlier = due_key("2026-11-25T11:59:59.999Z".parse().unwrap());
        let later = due_key("2026-11-25T12:00:00Z".parse().unwrap());
        assert!(earlier < later);
        // Everything at `now`'s millisecond sorts below the scan's upper bound.
        let upper = format!("{:015}", "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap().timestamp_millis() + 1);
        assert!(due_row(&later, ActivationId::new_random()) < upper);
    }

    #[test]
    fn versions_round_trip_and_refuse_garbage() {
        let awaiting = format!(
            "{}_{:015}",
            newest_first_key("2026-11-25T12:00:00Z".parse().unwrap(), ActivationId::new_random()),
            0
        );
        let tag = Tag {
            seq: 3,
            head: Some(AuditHash::of(b"head")),
            due: Some("001764072000000".into()),
            awaiting: Some(awaiting.clone()),
            etag: "W/\"datetime'x|y'\"".into(),
        };
        let back = Tag::parse(&tag.version()).unwrap();
        assert_eq!(
            (back.seq, back.head, back.due.as_deref(), back.awaiting.as_deref(), back.etag.as_str()),
            (3, tag.head, Some("001764072000000"), Some(awaiting.as_str()), tag.etag.as_str())
        );
        let none =
            Tag::parse(&Tag { seq: 1, head: None, due: None, awaiting: None, etag: "e".into() }.version()).unwrap();
        assert_eq!((none.head, none.due, none.awaiting), (None, None, None));
        assert!(matches!(Tag::parse(&Version("1|-|-|nothex|e".into())), Err(StoreError::Conflict)));
        assert!(matches!(Tag::parse(&Version("7".into())), Err(StoreError::Conflict)));
        assert!(matches!(Tag::parse(&Version("x|-|-|e".into())), Err(StoreError::Conflict)));
        assert!(matches!(Tag::parse(&Version("1|-|e".into())), Err(StoreError::Conflict)), "a version of old");
        assert!(matches!(Tag::parse(&Version("1|-|-|e".into())), Err(StoreError::Conflict)), "before the chain");
    }

    #[test]
    fn reservation_keys_are_hex_digests() {
        let key = IdempotencyKey::parse("a/b#c?d").unwrap();
        let row = idempotency_row(PrincipalId::parse("11111111-1111-1111-1111-111111111111").unwrap(), &key);
        assert_eq!(row.len(), 64);
        super::super::table_client::check_key("RowKey", &row).unwrap();
    }
}
