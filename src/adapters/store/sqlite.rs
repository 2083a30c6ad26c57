//! The embedded SQLite store: the default for one instance and for local use.
//!
//! Each write is one `BEGIN IMMEDIATE` transaction holding the activation row and its audit
//! event, guarded by the row version; the cap on a principal's open activations is counted in
//! the insert's transaction, so it is exact. `due_at` is indexed (partial index, terminal rows
//! leave it) so the sweeper's query reads only what is due. Lists are keyset-paginated over
//! indexes in their order (`requested_at DESC, id`; audit by `seq`), never with OFFSET; the
//! approvals inbox reads `awaiting_rule`, set while an activation awaits a decision. Governance
//! records (`records`) are rows of their own, keyed by (kind, id), versioned like activations
//! but written alone: no audit event, no notice. Each audit event is linked into its
//! activation's hash chain inside its write transaction (`link`). Schema
//! changes are numbered migrations; a database written by a newer Elevate is refused rather
//! than guessed at.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{newest_first_key, parse_newest_first};
use crate::domain::activation::Activation;
use crate::domain::audit::{AuditEvent, AuditHash};
use crate::domain::ids::{ActivationId, PrincipalId};
use crate::domain::notification::OutboxItem;
use crate::service::ports::{
    ActivationQuery, AuditQuery, AwaitingQuery, DueCursor, IdempotencyKey, IdempotencyRecord, Page, PageToken,
    RecordId, RecordKind, Store, StoreError, Version, Versioned, check_record_body,
};

/// How long a delivered notice is remembered (to refuse the same id again).
const DONE_KEPT: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Numbered migrations. INVARIANT: append only; never edit one that has shipped.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE activations (
    id                 TEXT PRIMARY KEY NOT NULL,
    principal_id       TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    scope_key          TEXT NOT NULL,
    status             TEXT NOT NULL,
    open               INTEGER NOT NULL,
    due_at             INTEGER,
    requested_at       INTEGER NOT NULL,
    version            INTEGER NOT NULL,
    body               TEXT NOT NULL
) STRICT;
CREATE INDEX activations_due ON activations(due_at, id) WHERE due_at IS NOT NULL;
CREATE UNIQUE INDEX activations_open ON activations(principal_id, role_definition_id, scope_key) WHERE open = 1;
CREATE INDEX activations_by_principal ON activations(principal_id, requested_at);
CREATE INDEX activations_by_status ON activations(status, requested_at);
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    activation_id TEXT NOT NULL,
    principal_id  TEXT NOT NULL,
    at            INTEGER NOT NULL,
    body          TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_activation ON audit_events(activation_id, seq);
CREATE INDEX audit_by_principal ON audit_events(principal_id, seq);
CREATE INDEX audit_by_time ON audit_events(at, seq);
CREATE TABLE idempotency_keys (
    caller        TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    activation_id TEXT NOT NULL,
    PRIMARY KEY (caller, key)
) STRICT;
"#,
    ),
    (
        2,
        r#"
CREATE TABLE outbox (
    id            TEXT PRIMARY KEY NOT NULL,
    activation_id TEXT NOT NULL,
    at            INTEGER NOT NULL,
    next_at       INTEGER,
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL
) STRICT;
CREATE INDEX outbox_next ON outbox(next_at, id) WHERE next_at IS NOT NULL;
CREATE INDEX outbox_done ON outbox(at) WHERE next_at IS NULL;
"#,
    ),
    (
        3,
        r#"
ALTER TABLE activations ADD COLUMN awaiting_rule TEXT;
UPDATE activations SET awaiting_rule = json_extract(body, '$.request.ruleId')
    WHERE status = 'PendingApproval'
       OR (status = 'Active' AND json_extract(body, '$.state.extension') IS NOT NULL);
CREATE INDEX activations_awaiting ON activations(awaiting_rule, requested_at DESC, id) WHERE awaiting_rule IS NOT NULL;
CREATE INDEX activations_newest ON activations(requested_at DESC, id);
CREATE INDEX activations_principal_newest ON activations(principal_id, requested_at DESC, id);
CREATE INDEX activations_principal_status_newest ON activations(principal_id, status, requested_at DESC, id);
CREATE INDEX activations_status_newest ON activations(status, requested_at DESC, id);
DROP INDEX activations_by_principal;
DROP INDEX activations_by_status;
"#,
    ),
    (
        4,
        r#"
CREATE TABLE records (
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT;
"#,
    ),
];

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

/// Opens a connection with the settings every Elevate connection uses.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("creating `{}`: {e}", dir.display())))?;
    }
    let conn =
        Connection::open(path).map_err(|e| StoreError::Unavailable(format!("opening `{}`: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;
    Ok(conn)
}

fn sql(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Unavailable(format!("database busy: {f}"))
        }
        other => StoreError::Corrupt(other.to_string()),
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// `due_at` rounds up, so nothing is read as due before the instant it is due.
fn due_millis(at: DateTime<Utc>) -> i64 {
    let ms = at.timestamp_millis();
    if at.timestamp_subsec_nanos().is_multiple_of(1_000_000) { ms } else { ms.saturating_add(1) }
}

/// The rule whose approvers an activation waits for, if it waits for a decision.
fn awaiting_rule(a: &Activation) -> Option<String> {
    a.awaits_decision().then(|| a.request().rule_id.to_string())
}

fn limit_arg(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Adds the keyset condition "after `token`" in newest-first order.
fn after_newest_first(
    sql_text: &mut String,
    args: &mut Vec<rusqlite::types::Value>,
    token: Option<&PageToken>,
) -> Result<(), StoreError> {
    if let Some(token) = token {
        let (ms, id) = parse_newest_first(token)?;
        sql_text.push_str(" AND requested_at <= ? AND (requested_at < ? OR id > ?)");
        args.extend([ms.into(), ms.into(), id.to_string().into()]);
    }
    Ok(())
}

/// Runs a newest-first query that asked for `limit + 1` rows, and makes the page.
fn newest_first_page(
    conn: &Connection,
    sql_text: &str,
    args: Vec<rusqlite::types::Value>,
    limit: usize,
) -> Result<Page<Activation>, StoreError> {
    let mut stmt = conn.prepare_cached(sql_text).map_err(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0)).map_err(sql)?;
    let mut items = rows.map(|r| decode::<Activation>(&r.map_err(sql)?)).collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next = match items.last() {
        Some(last) if more => Some(PageToken::new(newest_first_key(last.request().requested_at, last.id()))),
        _ => None,
    };
    Ok(Page { items, next })
}

fn parse_seq(token: &PageToken) -> Result<i64, StoreError> {
    token
        .as_str()
        .strip_prefix('s')
        .filter(|d| !d.is_empty() && d.len() <= 18 && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| StoreError::InvalidPageToken(format!("`{}`", crate::domain::ids::shorten(token.as_str()))))
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("undecodable row: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("unencodable value: {e}")))
}

/// Writes the notice an event implies, in the event's transaction (or a notice that is not a
/// state change). `activation_id` is not read back: a notice about an alert has the nil id there
/// (`notification::NO_ACTIVATION`).
fn insert_notice(conn: &Connection, item: &OutboxItem) -> Result<bool, StoreError> {
    let added = conn
        .execute(
            "INSERT INTO outbox (id, activation_id, at, next_at, version, body) VALUES (?1, ?2, ?3, ?4, 1, ?5) ON CONFLICT(id) DO NOTHING",
            params![item.id.to_string(), item.activation_id.to_string(), millis(item.at), millis(item.next_at), encode(item)?],
        )
        .map_err(sql)?;
    Ok(added == 1)
}

/// Links `event` into its activation's hash chain: the next position after the events stored,
/// after the hash of the latest. Read inside the write transaction, which the activation's
/// version guards and `BEGIN IMMEDIATE` serialises, so no other event can be appended between
/// this read and the insert.
///
/// A latest event whose hash cannot be read (tampered with, or legacy) gives no predecessor:
/// the write goes on (an activation must still expire), and `audit verify` reports the break.
fn link(tx: &rusqlite::Transaction<'_>, event: &AuditEvent) -> Result<AuditEvent, StoreError> {
    let activation = event.activation_id.to_string();
    let count: i64 = tx
        .query_row("SELECT count(*) FROM audit_events WHERE activation_id = ?1", params![activation], |r| r.get(0))
        .map_err(sql)?;
    let last: Option<String> = tx
        .query_row(
            "SELECT body FROM audit_events WHERE activation_id = ?1 ORDER BY seq DESC LIMIT 1",
            params![activation],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    let prev = last.and_then(|body| chain_hash(&body));
    let seq = u64::try_from(count).unwrap_or(0).saturating_add(1);
    Ok(event.clone().linked(seq, prev))
}

/// The chain hash a stored event's body carries, if it can be read.
fn chain_hash(body: &str) -> Option<AuditHash> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    AuditHash::parse(value.pointer("/chain/hash")?.as_str()?).ok()
}

fn insert_event(tx: &rusqlite::Transaction<'_>, event: &AuditEvent) -> Result<(), StoreError> {
    if let Some(item) = OutboxItem::for_event(event) {
        insert_notice(tx, &item)?;
    }
    let event = &link(tx, event)?;
    tx.execute(
        "INSERT INTO audit_events (id, activation_id, principal_id, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            event.id.to_string(),
            event.activation_id.to_string(),
            event.principal_id.to_string(),
            millis(event.at),
            encode(event)?
        ],
    )
    .map_err(sql)?;
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = open_connection(path)?;
        migrate(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs blocking SQLite work off the async threads.
    async fn with<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Corrupt("store lock poisoned".into()))?;
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }
}

/// Applies pending migrations, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .map_err(sql)?;
    let current: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(sql)?;
    let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > latest {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this Elevate knows ({latest}); upgrade Elevate"
        )));
    }
    for (version, script) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        tx.execute_batch(script).map_err(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, datetime('now'))",
            params![version],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(version, "applied store migration");
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(
        &self,
        activation: &Activation,
        event: &AuditEvent,
        idempotency: Option<&IdempotencyRecord>,
        max_open: usize,
    ) -> Result<Version, StoreError> {
        let a = activation.clone();
        let event = event.clone();
        let record = idempotency.cloned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            if let Some(r) = &record {
                let taken: Option<String> = tx
                    .query_row(
                        "SELECT activation_id FROM idempotency_keys WHERE caller = ?1 AND key = ?2",
                        params![r.caller.to_string(), r.key.as_str()],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(sql)?;
                if taken.is_some() {
                    return Err(StoreError::IdempotencyKeyTaken);
                }
                tx.execute(
                    "INSERT INTO idempotency_keys (caller, key, request_hash, activation_id) VALUES (?1, ?2, ?3, ?4)",
                    params![r.caller.to_string(), r.key.as_str(), r.request_hash, r.activation_id.to_string()],
                )
                .map_err(sql)?;
            }
            let request = a.request();
            let open = !a.status().is_terminal();
            if open {
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT id FROM activations WHERE principal_id = ?1 AND role_definition_id = ?2 AND scope_key = ?3 AND open = 1",
                        params![request.principal_id.to_string(), request.role_definition_id.to_string(), request.scope.key()],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(sql)?;
                if let Some(id) = existing {
                    return Err(StoreError::OpenActivationExists(ActivationId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?));
                }
                // Counted inside the write transaction: exact, whoever else is inserting.
                let held: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM activations INDEXED BY activations_open WHERE principal_id = ?1 AND open = 1",
                        params![request.principal_id.to_string()],
                        |row| row.get(0),
                    )
                    .map_err(sql)?;
                if usize::try_from(held).unwrap_or(usize::MAX) >= max_open {
                    return Err(StoreError::TooManyOpen { limit: max_open });
                }
            }
            let inserted = tx
                .execute(
                    "INSERT INTO activations (id, principal_id, role_definition_id, scope_key, status, open, due_at, requested_at, version, body, awaiting_rule)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10) ON CONFLICT(id) DO NOTHING",
                    params![
                        a.id().to_string(),
                        request.principal_id.to_string(),
                        request.role_definition_id.to_string(),
                        request.scope.key(),
                        a.status().as_str(),
                        i64::from(open),
                        a.due_at().map(due_millis),
                        millis(request.requested_at),
                        encode(&a)?,
                        awaiting_rule(&a)
                    ],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::Duplicate(a.id()));
            }
            insert_event(&tx, &event)?;
            tx.commit().map_err(sql)?;
            Ok(Version("1".into()))
        })
        .await
    }

    async fn get(&self, id: ActivationId) -> Result<Option<Versioned<Activation>>, StoreError> {
        self.with(move |conn| {
            let row: Option<(i64, String)> = conn
                .query_row("SELECT version, body FROM activations WHERE id = ?1", params![id.to_string()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(sql)?;
            row.map(|(version, body)| Ok(Versioned { value: decode(&body)?, version: Version(version.to_string()) }))
                .transpose()
        })
        .await
    }

    async fn update(
        &self,
        activation: &Activation,
        expected: &Version,
        event: &AuditEvent,
    ) -> Result<Version, StoreError> {
        let a = activation.clone();
        let event = event.clone();
        let expected: i64 = expected.0.parse().map_err(|_| StoreError::Conflict)?;
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            let changed = tx
                .execute(
                    "UPDATE activations SET status = ?1, open = ?2, due_at = ?3, version = version + 1, body = ?4, awaiting_rule = ?7
                     WHERE id = ?5 AND version = ?6",
                    params![
                        a.status().as_str(),
                        i64::from(!a.status().is_terminal()),
                        a.due_at().map(due_millis),
                        encode(&a)?,
                        a.id().to_string(),
                        expected,
                        awaiting_rule(&a)
                    ],
                )
                .map_err(sql)?;
            if changed == 0 {
                return Err(StoreError::Conflict);
            }
            insert_event(&tx, &event)?;
            tx.commit().map_err(sql)?;
            Ok(Version((expected + 1).to_string()))
        })
        .await
    }

    async fn idempotency(
        &self,
        caller: PrincipalId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = key.clone();
        self.with(move |conn| {
            let row: Option<(String, String)> = conn
                .query_row(
                    "SELECT request_hash, activation_id FROM idempotency_keys WHERE caller = ?1 AND key = ?2",
                    params![caller.to_string(), key.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            row.map(|(request_hash, id)| {
                Ok(IdempotencyRecord {
                    caller,
                    key,
                    request_hash,
                    activation_id: ActivationId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn list(&self, query: &ActivationQuery) -> Result<Page<Activation>, StoreError> {
        let query = query.clone();
        self.with(move |conn| {
            let mut sql_text = String::from("SELECT body FROM activations WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(p) = query.principal_id {
                sql_text.push_str(" AND principal_id = ?");
                args.push(p.to_string().into());
            }
            if !query.statuses.is_empty() {
                let marks = vec!["?"; query.statuses.len()].join(", ");
                sql_text.push_str(&format!(" AND status IN ({marks})"));
                args.extend(query.statuses.iter().map(|s| rusqlite::types::Value::from(s.as_str().to_owned())));
            }
            after_newest_first(&mut sql_text, &mut args, query.after.as_ref())?;
            sql_text.push_str(" ORDER BY requested_at DESC, id LIMIT ?");
            args.push(limit_arg(query.limit.saturating_add(1)).into());
            newest_first_page(conn, &sql_text, args, query.limit)
        })
        .await
    }

    async fn awaiting_decision(&self, query: &AwaitingQuery) -> Result<Page<Activation>, StoreError> {
        let query = query.clone();
        self.with(move |conn| {
            if query.rules.is_empty() {
                return Ok(Page { items: Vec::new(), next: None });
            }
            let marks = vec!["?"; query.rules.len()].join(", ");
            let mut sql_text = format!("SELECT body FROM activations WHERE awaiting_rule IN ({marks})");
            let mut args: Vec<rusqlite::types::Value> =
                query.rules.iter().map(|r| rusqlite::types::Value::from(r.to_string())).collect();
            after_newest_first(&mut sql_text, &mut args, query.after.as_ref())?;
            sql_text.push_str(" ORDER BY requested_at DESC, id LIMIT ?");
            args.push(limit_arg(query.limit.saturating_add(1)).into());
            newest_first_page(conn, &sql_text, args, query.limit)
        })
        .await
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<Versioned<Activation>>, StoreError> {
        let (after_due, after_id) =
            after.map_or((i64::MIN, String::new()), |c| (due_millis(c.due_at), c.id.to_string()));
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT version, body FROM activations INDEXED BY activations_due
                     WHERE due_at IS NOT NULL AND due_at <= ?1 AND (due_at > ?2 OR (due_at = ?2 AND id > ?3))
                     ORDER BY due_at, id LIMIT ?4",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![millis(now), after_due, after_id, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(sql)?;
            rows.map(|r| {
                let (version, body) = r.map_err(sql)?;
                Ok(Versioned { value: decode(&body)?, version: Version(version.to_string()) })
            })
            .collect()
        })
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>, StoreError> {
        let query = query.clone();
        self.with(move |conn| {
            let mut sql_text = String::from("SELECT seq, body FROM audit_events WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(a) = query.activation_id {
                sql_text.push_str(" AND activation_id = ?");
                args.push(a.to_string().into());
            }
            if let Some(p) = query.principal_id {
                sql_text.push_str(" AND principal_id = ?");
                args.push(p.to_string().into());
            }
            if let Some(since) = query.since {
                sql_text.push_str(" AND at >= ?");
                args.push(millis(since).into());
            }
            if let Some(token) = &query.after {
                sql_text.push_str(" AND seq > ?");
                args.push(parse_seq(token)?.into());
            }
            sql_text.push_str(" ORDER BY seq LIMIT ?");
            args.push(limit_arg(query.limit.saturating_add(1)).into());
            let mut stmt = conn.prepare_cached(&sql_text).map_err(sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(sql)?;
            let mut found = Vec::new();
            for row in rows {
                let (seq, body) = row.map_err(sql)?;
                found.push((seq, decode::<AuditEvent>(&body)?));
            }
            let more = found.len() > query.limit;
            found.truncate(query.limit);
            let next = found.last().filter(|_| more).map(|(seq, _)| PageToken::new(format!("s{seq}")));
            Ok(Page { items: found.into_iter().map(|(_, e)| e).collect(), next })
        })
        .await
    }

    async fn upcoming(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Activation>, StoreError> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM activations INDEXED BY activations_due
                     WHERE due_at IS NOT NULL AND due_at > ?1 AND due_at <= ?2 ORDER BY due_at, id LIMIT ?3",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![millis(now), millis(until), i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(sql)?;
            rows.map(|r| decode(&r.map_err(sql)?)).collect()
        })
        .await
    }

    async fn enqueue(&self, item: &OutboxItem) -> Result<bool, StoreError> {
        let item = item.clone();
        self.with(move |conn| insert_notice(conn, &item)).await
    }

    async fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Versioned<OutboxItem>>, StoreError> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT version, body FROM outbox INDEXED BY outbox_next
                     WHERE next_at IS NOT NULL AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![millis(now), i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(sql)?;
            rows.map(|r| {
                let (version, body) = r.map_err(sql)?;
                Ok(Versioned { value: decode(&body)?, version: Version(version.to_string()) })
            })
            .collect()
        })
        .await
    }

    async fn outbox_save(&self, item: &OutboxItem, expected: &Version) -> Result<Version, StoreError> {
        let item = item.clone();
        let expected: i64 = expected.0.parse().map_err(|_| StoreError::Conflict)?;
        self.with(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE outbox SET next_at = ?1, version = version + 1, body = ?2
                     WHERE id = ?3 AND version = ?4 AND next_at IS NOT NULL",
                    params![millis(item.next_at), encode(&item)?, item.id.to_string(), expected],
                )
                .map_err(sql)?;
            if changed == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(Version((expected + 1).to_string()))
        })
        .await
    }

    async fn outbox_remove(&self, item: &OutboxItem, expected: &Version) -> Result<(), StoreError> {
        let item = item.clone();
        let expected: i64 = expected.0.parse().map_err(|_| StoreError::Conflict)?;
        self.with(move |conn| {
            // Kept as done, so a notice with the same id is not queued again; forgotten after
            // DONE_KEPT.
            let changed = conn
                .execute(
                    "UPDATE outbox SET next_at = NULL, version = version + 1, body = ?1
                     WHERE id = ?2 AND version = ?3 AND next_at IS NOT NULL",
                    params![encode(&item)?, item.id.to_string(), expected],
                )
                .map_err(sql)?;
            if changed == 0 {
                return Err(StoreError::Conflict);
            }
            conn.execute("DELETE FROM outbox WHERE next_at IS NULL AND at < ?1", params![millis(item.at - DONE_KEPT)])
                .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn record(&self, kind: &RecordKind, id: &RecordId) -> Result<Option<Versioned<String>>, StoreError> {
        let (kind, id) = (kind.clone(), id.clone());
        self.with(move |conn| {
            let row: Option<(i64, String)> = conn
                .query_row(
                    "SELECT version, body FROM records WHERE kind = ?1 AND id = ?2",
                    params![kind.as_str(), id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            Ok(row.map(|(version, body)| Versioned { value: body, version: Version(version.to_string()) }))
        })
        .await
    }

    async fn records(&self, kind: &RecordKind, limit: usize) -> Result<Vec<(RecordId, Versioned<String>)>, StoreError> {
        let kind = kind.clone();
        self.with(move |conn| {
            // The primary key's order: ids compare bytewise (BINARY), as Table Storage's RowKeys.
            let mut stmt = conn
                .prepare_cached("SELECT id, version, body FROM records WHERE kind = ?1 ORDER BY id LIMIT ?2")
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![kind.as_str(), limit_arg(limit)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(sql)?;
            rows.map(|r| {
                let (id, version, body) = r.map_err(sql)?;
                let id = RecordId::parse(&id).map_err(|e| StoreError::Corrupt(format!("a stored record id: {e}")))?;
                Ok((id, Versioned { value: body, version: Version(version.to_string()) }))
            })
            .collect()
        })
        .await
    }

    async fn put_record(
        &self,
        kind: &RecordKind,
        id: &RecordId,
        body: &str,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        check_record_body(body)?;
        // A version this store never made matches nothing.
        let expected: Option<i64> = expected.map(|v| v.0.parse().map_err(|_| StoreError::Conflict)).transpose()?;
        let (kind, id, body) = (kind.clone(), id.clone(), body.to_owned());
        self.with(move |conn| {
            let (changed, version) = match expected {
                None => (
                    conn.execute(
                        "INSERT INTO records (kind, id, version, body) VALUES (?1, ?2, 1, ?3) ON CONFLICT(kind, id) DO NOTHING",
                        params![kind.as_str(), id.as_str(), body],
                    )
                    .map_err(sql)?,
                    1,
                ),
                Some(expected) => (
                    conn.execute(
                        "UPDATE records SET version = version + 1, body = ?1 WHERE kind = ?2 AND id = ?3 AND version = ?4",
                        params![body, kind.as_str(), id.as_str(), expected],
                    )
                    .map_err(sql)?,
                    expected.saturating_add(1),
                ),
            };
            if changed == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(Version(version.to_string()))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(sql)).await
    }
}

/// The default database location, relative to the working directory.
pub fn default_path() -> PathBuf {
    PathBuf::from(".elevate/elevate.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions.first(), Some(&1));
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x')", []).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(err.to_string().contains("newer than this Elevate knows"), "{err}");
    }

    #[test]
    fn the_due_query_uses_the_due_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        let conn = store.conn.lock().unwrap();
        let plan: Vec<String> = conn
            .prepare("EXPLAIN QUERY PLAN SELECT version, body FROM activations INDEXED BY activations_due WHERE due_at IS NOT NULL AND due_at <= 1 AND (due_at > 0 OR (due_at = 0 AND id > '')) ORDER BY due_at, id LIMIT 10")
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("activations_due")), "{plan:?}");
        assert!(!plan.iter().any(|p| p.starts_with("SCAN activations") && !p.contains("INDEX")), "{plan:?}");
    }

    #[test]
    fn migration_3_marks_what_awaits_a_decision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            // A database as Elevate left it before migration 3.
            let mut conn = open_connection(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .unwrap();
            let tx = conn.transaction().unwrap();
            for (version, script) in MIGRATIONS.iter().filter(|(v, _)| *v < 3) {
                tx.execute_batch(script).unwrap();
                tx.execute("INSERT INTO schema_migrations VALUES (?1, 'x')", params![version]).unwrap();
            }
            for (id, status, state) in [
                ("a", "PendingApproval", r#"{"status":"PendingApproval"}"#),
                ("b", "Active", r#"{"status":"Active","extension":{"additional":"PT1H"}}"#),
                ("c", "Active", r#"{"status":"Active","extension":null}"#),
                ("d", "Expired", r#"{"status":"Expired"}"#),
            ] {
                let body = format!(r#"{{"request":{{"ruleId":"rule-{id}"}},"state":{state}}}"#);
                tx.execute(
                    "INSERT INTO activations (id, principal_id, role_definition_id, scope_key, status, open, requested_at, version, body)
                     VALUES (?1, 'p', 'r', ?1, ?2, 1, 0, 1, ?3)",
                    params![id, status, body],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let conn = store.conn.lock().unwrap();
        let marked: Vec<(String, Option<String>)> = conn
            .prepare("SELECT id, awaiting_rule FROM activations ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected = [("a", Some("rule-a")), ("b", Some("rule-b")), ("c", None), ("d", None)];
        assert_eq!(marked, expected.map(|(id, rule)| (id.to_owned(), rule.map(str::to_owned))).to_vec());
    }

    #[test]
    fn a_database_before_records_gets_the_records_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            // A database as Elevate left it before migration 4.
            let mut conn = open_connection(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .unwrap();
            let tx = conn.transaction().unwrap();
            for (version, script) in MIGRATIONS.iter().filter(|(v, _)| *v < 4) {
                tx.execute_batch(script).unwrap();
                tx.execute("INSERT INTO schema_migrations VALUES (?1, 'x')", params![version]).unwrap();
            }
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let conn = store.conn.lock().unwrap();
        conn.execute("INSERT INTO records (kind, id, version, body) VALUES ('alert', 'a', 1, '{}')", []).unwrap();
        let version: i64 = conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 4);
    }

    #[test]
    fn records_are_listed_from_the_primary_key_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        let conn = store.conn.lock().unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT id, version, body FROM records WHERE kind = 'alert' ORDER BY id LIMIT 10",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("sqlite_autoindex_records")), "{plan:?}");
        assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
    }

    /// The plan of each list query: an index in the list's order, no scan, no sort.
    #[test]
    fn list_queries_read_an_index_in_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        let conn = store.conn.lock().unwrap();
        let keyset = "AND requested_at <= 5 AND (requested_at < 5 OR id > 'x') ORDER BY requested_at DESC, id LIMIT 11";
        for (query, index) in [
            (format!("SELECT body FROM activations WHERE 1 = 1 {keyset}"), "activations_newest"),
            (
                format!("SELECT body FROM activations WHERE 1 = 1 AND principal_id = 'p' {keyset}"),
                "activations_principal_newest",
            ),
            (
                format!(
                    "SELECT body FROM activations WHERE 1 = 1 AND principal_id = 'p' AND status IN ('Active') {keyset}"
                ),
                "activations_principal_status_newest",
            ),
            (
                format!("SELECT body FROM activations WHERE 1 = 1 AND status IN ('Active') {keyset}"),
                "activations_status_newest",
            ),
            (format!("SELECT body FROM activations WHERE awaiting_rule IN ('r') {keyset}"), "activations_awaiting"),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(plan.iter().any(|p| p.contains(index)), "{query}: {plan:?}");
            assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{query}: {plan:?}");
        }
    }
}
