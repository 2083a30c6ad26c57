//! The tamper-evident audit trail, beyond what each write links (`domain::audit`): sealing
//! every UTC day that is over under one root (`seal_and_export`, run by the governance pass),
//! exporting sealed days to append-only storage (`AuditArchive`), and checking everything the
//! store holds against its chains and seals (`verify`, behind `elevate audit verify`).
//!
//! Seals are governance records: kind `audit-seal`, id the day (`2026-11-25`), body a
//! `DaySeal`. A seal is written only if none exists and never rewritten. Two cursors (kind
//! `audit-cursor`, ids `seal` and `export`) say which day comes next; they only save work, and
//! `verify` trusts them for nothing but "this day should have a seal by now".
//!
//! Must never rewrite a seal, an event or an exported blob, and never stop an activation's
//! lifecycle: a failure here is reported and retried by the next pass.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::audit::{AuditEvent, DaySeal, SealLeaf, TrailProblem, check_trail, day_bounds};
use crate::domain::ids::ActivationId;

use super::ports::{ActivationQuery, AuditQuery, RecordId, RecordKind, Store, StoreError, Version};

/// A day is sealed once it has been over this long: writes in flight at midnight land first.
pub const SEAL_GRACE: TimeDelta = TimeDelta::minutes(10);
/// Reading a day's events stops at an event this far past the day's end. The Table store reads
/// events in time order; SQLite in write order, where an event's time can only trail its write
/// by the length of one request. One that lands later is reported by `verify`.
const STRAGGLERS: TimeDelta = TimeDelta::hours(1);
/// Days one pass seals (and exports) at most: a first pass over a long history catches up over
/// several passes.
const DAYS_PER_PASS: usize = 31;
/// Events per store read.
const PAGE: usize = 1000;
/// Events per store read when `verify` scans the whole trail: a Table store's scan across
/// activations reads from the page's start to the end each time, so fewer, larger pages.
const VERIFY_PAGE: usize = 20_000;

pub const SEAL_KIND: &str = "audit-seal";
pub const CURSOR_KIND: &str = "audit-cursor";

/// Where sealed days go: storage where a blob, once written, cannot be changed or deleted
/// (Azure Blob Storage with a time-based immutability policy).
#[async_trait]
pub trait AuditArchive: Send + Sync {
    /// Writes `body` as `name` unless a blob of that name exists; then says whether the one
    /// there holds the same bytes. Never overwrites.
    async fn put_once(&self, name: &str, body: &[u8]) -> Result<Archived, ArchiveError>;
    /// Where it writes, for logs (no secret).
    fn describe(&self) -> String;
}

/// What `put_once` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archived {
    Created,
    /// It was there already (an earlier pass, or a retry whose answer was lost).
    AlreadyThere {
        same: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Worth retrying on the next pass.
    #[error("audit archive unavailable: {0}")]
    Unavailable(String),
    /// Configuration or permissions: retrying will not help until someone fixes it.
    #[error("audit archive refused: {0}")]
    Refused(String),
}

/// What one sealing pass did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SealReport {
    pub sealed: Vec<NaiveDate>,
    pub exported: Vec<NaiveDate>,
    pub failures: Vec<String>,
}

impl SealReport {
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.exported.is_empty() && self.failures.is_empty()
    }
}

impl super::Elevate {
    /// Exports sealed audit days to `archive` (`ELEVATE_AUDIT_EXPORT`).
    pub fn with_audit_archive(mut self, archive: std::sync::Arc<dyn AuditArchive>) -> Self {
        self.audit_archive = Some(archive);
        self
    }

    /// Seals the audit days that are over, and exports them when an archive is configured.
    pub async fn seal_audit(&self, now: DateTime<Utc>) -> SealReport {
        seal_and_export(&*self.store, self.audit_archive.as_deref(), now).await
    }
}

/// A cursor: the next day to seal or export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    next: NaiveDate,
}

fn kind(name: &str) -> Result<RecordKind, StoreError> {
    RecordKind::parse(name).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn day_id(day: NaiveDate) -> Result<RecordId, StoreError> {
    RecordId::parse(&day.format("%Y-%m-%d").to_string()).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn cursor_id(name: &str) -> Result<RecordId, StoreError> {
    RecordId::parse(name).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The last day that is over by `SEAL_GRACE` at `now`.
pub fn last_closed_day(now: DateTime<Utc>) -> Option<NaiveDate> {
    (now - SEAL_GRACE).date_naive().pred_opt()
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("unencodable audit record: {e}")))
}

async fn read_cursor(store: &dyn Store, name: &str) -> Result<Option<(NaiveDate, Version)>, StoreError> {
    let Some(stored) = store.record(&kind(CURSOR_KIND)?, &cursor_id(name)?).await? else { return Ok(None) };
    let cursor: Cursor = serde_json::from_str(&stored.value)
        .map_err(|e| StoreError::Corrupt(format!("the audit `{name}` cursor is unreadable: {e}")))?;
    Ok(Some((cursor.next, stored.version)))
}

/// Moves a cursor forward; another pass that moved it first wins (it did the same work).
async fn write_cursor(
    store: &dyn Store,
    name: &str,
    next: NaiveDate,
    expected: Option<&Version>,
) -> Result<(), StoreError> {
    match store.put_record(&kind(CURSOR_KIND)?, &cursor_id(name)?, &encode(&Cursor { next })?, expected).await {
        Ok(_) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The seal of `day`, as stored.
pub async fn stored_seal(store: &dyn Store, day: NaiveDate) -> Result<Option<DaySeal>, StoreError> {
    let Some(stored) = store.record(&kind(SEAL_KIND)?, &day_id(day)?).await? else { return Ok(None) };
    serde_json::from_str(&stored.value)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("the seal of {day} is unreadable: {e}")))
}

/// The events of the days `from..=to`, by day, read oldest first from `from`'s start until the
/// store has no more or an event lies `STRAGGLERS` past `to`.
async fn events_of_days(
    store: &dyn Store,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<BTreeMap<NaiveDate, Vec<AuditEvent>>, StoreError> {
    let (start, _) = day_bounds(from);
    let (_, end) = day_bounds(to);
    let mut by_day: BTreeMap<NaiveDate, Vec<AuditEvent>> = BTreeMap::new();
    let mut query = AuditQuery { since: Some(start), limit: PAGE, ..AuditQuery::default() };
    loop {
        let page = store.audit(&query).await?;
        let mut past = false;
        for event in page.items {
            past |= event.at >= end + STRAGGLERS;
            if event.at >= start && event.at < end {
                by_day.entry(event.at.date_naive()).or_default().push(event);
            }
        }
        match page.next {
            Some(next) if !past => query.after = Some(next),
            _ => return Ok(by_day),
        }
    }
}

/// The first day with an event (the store's oldest-first order), if any.
async fn first_day(store: &dyn Store) -> Result<Option<NaiveDate>, StoreError> {
    let page = store.audit(&AuditQuery { limit: 1, ..AuditQuery::default() }).await?;
    Ok(page.items.first().map(|e| e.at.date_naive()))
}

/// A day's blob: its events as JSON Lines in the seal's order, then one line holding the seal
/// (`{"seal": …}`). The same events and seal always make the same bytes.
pub fn day_blob(seal: &DaySeal, events: &[AuditEvent]) -> Result<Vec<u8>, StoreError> {
    let mut sorted: Vec<&AuditEvent> = events.iter().collect();
    sorted.sort_by_key(|e| (e.activation_id.to_string(), e.chain.as_ref().map_or(0, |c| c.seq), e.at, e.id));
    let mut out = Vec::new();
    for event in sorted {
        out.extend_from_slice(encode(event)?.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(encode(&serde_json::json!({ "seal": seal }))?.as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// The blob name of a day: `YYYY/MM/DD.jsonl`.
pub fn blob_name(day: NaiveDate) -> String {
    day.format("%Y/%m/%d.jsonl").to_string()
}

/// Seals the days that are over and not yet sealed (at most `DAYS_PER_PASS`), then exports
/// sealed days not yet exported when an archive is given. Idempotent: a day sealed or exported
/// by another pass is left as it is.
pub async fn seal_and_export(store: &dyn Store, archive: Option<&dyn AuditArchive>, now: DateTime<Utc>) -> SealReport {
    let mut report = SealReport::default();
    if let Err(e) = seal(store, now, &mut report).await {
        tracing::warn!(error = %e, "could not seal the audit; the next pass retries");
        report.failures.push(format!("sealing the audit: {e}"));
    }
    if let Some(archive) = archive
        && let Err(e) = export(store, archive, &mut report).await
    {
        tracing::warn!(error = %e, archive = %archive.describe(), "could not export the sealed audit; the next pass retries");
        report.failures.push(format!("exporting the sealed audit: {e}"));
    }
    report
}

async fn seal(store: &dyn Store, now: DateTime<Utc>, report: &mut SealReport) -> Result<(), StoreError> {
    let Some(last_closed) = last_closed_day(now) else { return Ok(()) };
    let cursor = read_cursor(store, "seal").await?;
    let from = match &cursor {
        Some((next, _)) => *next,
        None => match first_day(store).await? {
            Some(day) => day,
            // Nothing written yet: the first event will come after now.
            None => return Ok(()),
        },
    };
    if from > last_closed {
        return Ok(());
    }
    let to = from.iter_days().take(DAYS_PER_PASS).take_while(|d| *d <= last_closed).last().unwrap_or(from);
    let mut events = events_of_days(store, from, to).await?;
    for day in from.iter_days().take_while(|d| *d <= to) {
        let seal = DaySeal::of(day, events.remove(&day).as_deref().unwrap_or_default(), now);
        match store.put_record(&kind(SEAL_KIND)?, &day_id(day)?, &encode(&seal)?, None).await {
            Ok(_) => {
                tracing::info!(day = %day, events = seal.events, root = %seal.root, "sealed the day's audit");
                report.sealed.push(day);
            }
            // Sealed by another pass: a seal is never rewritten.
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    let next = to.succ_opt().ok_or_else(|| StoreError::Corrupt(format!("no day follows {to}")))?;
    write_cursor(store, "seal", next, cursor.as_ref().map(|(_, v)| v)).await
}

async fn export(store: &dyn Store, archive: &dyn AuditArchive, report: &mut SealReport) -> Result<(), StoreError> {
    let Some((sealed_until, _)) = read_cursor(store, "seal").await? else { return Ok(()) };
    let cursor = read_cursor(store, "export").await?;
    let from = match &cursor {
        Some((next, _)) => *next,
        None => match first_day(store).await? {
            Some(day) => day,
            None => return Ok(()),
        },
    };
    let mut next = from;
    for day in from.iter_days().take_while(|d| *d < sealed_until).take(DAYS_PER_PASS) {
        let Some(seal) = stored_seal(store, day).await? else {
            report.failures.push(format!("exporting {day}: the day has no seal"));
            break;
        };
        let events = events_of_days(store, day, day).await?.remove(&day).unwrap_or_default();
        if DaySeal::root_of(day, &events).0 != seal.root {
            // Exported all the same: the immutable copy keeps the seal, which shows it.
            report.failures.push(format!("exporting {day}: the day's events no longer match its seal"));
        }
        let body = day_blob(&seal, &events)?;
        match archive.put_once(&blob_name(day), &body).await {
            Ok(Archived::Created) => {
                tracing::info!(day = %day, archive = %archive.describe(), "exported the day's sealed audit");
                report.exported.push(day);
            }
            Ok(Archived::AlreadyThere { same: true }) => {}
            Ok(Archived::AlreadyThere { same: false }) => report.failures.push(format!(
                "exporting {day}: the archive already holds another copy of the day, which stands (compare them)"
            )),
            Err(e) => {
                report.failures.push(format!("exporting {day}: {e}"));
                break;
            }
        }
        next = day.succ_opt().unwrap_or(day);
    }
    if next != from {
        write_cursor(store, "export", next, cursor.as_ref().map(|(_, v)| v)).await?;
    }
    Ok(())
}

/// One thing `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationId>,
    /// The event's position in its activation's trail as read (from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<NaiveDate>,
    pub message: String,
}

impl Finding {
    fn day(day: NaiveDate, message: String) -> Self {
        Finding { activation: None, position: None, event: None, day: Some(day), message }
    }

    fn of_trail(activation: ActivationId, p: TrailProblem) -> Self {
        Finding { activation: Some(activation), position: p.position, event: p.event, day: None, message: p.problem }
    }
}

/// What `verify` found. Clean when `problems` is empty; `notes` are not problems (legacy
/// events, days not sealed yet).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub activations: usize,
    pub events: usize,
    pub legacy_events: usize,
    pub sealed_days: usize,
    pub problems: Vec<Finding>,
    pub notes: Vec<Finding>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the whole audit the store holds: every activation's trail against its chain and its
/// status, every event against the activations, and every sealed day against its seal. Writes
/// no audit data (a Table store's list reads may tidy stale index entries, as every read does);
/// a store that cannot be read is an error, not a finding.
pub async fn verify(store: &dyn Store, now: DateTime<Utc>) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    // Every event, by day (leaves only: what the seals cover), and which activations they name.
    let mut days: BTreeMap<NaiveDate, Vec<SealLeaf>> = BTreeMap::new();
    let mut named: BTreeMap<ActivationId, usize> = BTreeMap::new();
    let mut query = AuditQuery { limit: VERIFY_PAGE, ..AuditQuery::default() };
    loop {
        let page = store.audit(&query).await?;
        for event in &page.items {
            report.events += 1;
            *named.entry(event.activation_id).or_default() += 1;
            days.entry(event.at.date_naive()).or_default().push(SealLeaf::of(event));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    // Read after the events, so an activation written meanwhile is not missed by this check.
    let mut held: HashSet<ActivationId> = HashSet::new();
    let mut list = ActivationQuery { limit: 100, now, ..ActivationQuery::default() };
    loop {
        let page = store.list(&list).await?;
        for activation in &page.items {
            if !held.insert(activation.id()) {
                continue;
            }
            report.activations += 1;
            let trail = trail_of(store, activation.id()).await?;
            let check = check_trail(activation.id(), &trail, Some(activation.status()));
            if check.legacy > 0 {
                report.legacy_events += check.legacy;
                report.notes.push(Finding {
                    activation: Some(activation.id()),
                    position: None,
                    event: None,
                    day: None,
                    message: format!("{} event(s) unchained (legacy): written before the hash chain", check.legacy),
                });
            }
            report.problems.extend(check.problems.into_iter().map(|p| Finding::of_trail(activation.id(), p)));
        }
        match page.next {
            Some(next) => list.after = Some(next),
            None => break,
        }
    }
    for (id, count) in &named {
        if !held.contains(id) {
            report.problems.push(Finding {
                activation: Some(*id),
                position: None,
                event: None,
                day: None,
                message: format!(
                    "{count} event(s) of an activation the store does not hold: inserted, or the activation deleted"
                ),
            });
        }
    }
    check_seals(store, now, &days, &mut report).await?;
    Ok(report)
}

/// One activation's trail, oldest first.
async fn trail_of(store: &dyn Store, id: ActivationId) -> Result<Vec<AuditEvent>, StoreError> {
    let mut events = Vec::new();
    let mut query = AuditQuery { activation_id: Some(id), limit: PAGE, ..AuditQuery::default() };
    loop {
        let page = store.audit(&query).await?;
        events.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(events),
        }
    }
}

async fn check_seals(
    store: &dyn Store,
    now: DateTime<Utc>,
    days: &BTreeMap<NaiveDate, Vec<SealLeaf>>,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    let mut sealed: HashSet<NaiveDate> = HashSet::new();
    for (id, stored) in store.records(&kind(SEAL_KIND)?, usize::MAX).await? {
        let seal: DaySeal = match serde_json::from_str(&stored.value) {
            Ok(seal) => seal,
            Err(e) => {
                let day = NaiveDate::parse_from_str(id.as_str(), "%Y-%m-%d").unwrap_or_default();
                report.problems.push(Finding::day(day, format!("the seal record `{id}` is unreadable: {e}")));
                continue;
            }
        };
        if day_id(seal.day)?.as_str() != id.as_str() {
            report
                .problems
                .push(Finding::day(seal.day, format!("the seal stored as `{id}` is the seal of another day")));
            continue;
        }
        sealed.insert(seal.day);
        report.sealed_days += 1;
        let leaves = days.get(&seal.day).map(Vec::as_slice).unwrap_or_default();
        let (root, events, _) = DaySeal::root_of_leaves(seal.day, leaves);
        if root != seal.root {
            let what = match events.cmp(&seal.events) {
                std::cmp::Ordering::Less => format!("{} event(s) fewer: deleted", seal.events - events),
                std::cmp::Ordering::Greater => {
                    format!("{} event(s) more: inserted, or written late into a sealed day", events - seal.events)
                }
                std::cmp::Ordering::Equal => "as many events, but not the same: edited, or replaced".to_owned(),
            };
            report.problems.push(Finding::day(
                seal.day,
                format!(
                    "does not match its seal: sealed {} event(s) under root {}, now {events} under {root} ({what})",
                    seal.events, seal.root
                ),
            ));
        }
    }
    let sealed_until = read_cursor(store, "seal").await?.map(|(next, _)| next);
    let last_closed = last_closed_day(now);
    for (day, leaves) in days {
        if sealed.contains(day) || leaves.is_empty() {
            continue;
        }
        if sealed_until.is_some_and(|until| *day < until) {
            report.problems.push(Finding::day(
                *day,
                format!(
                    "has {} event(s) but no seal, though sealing has passed it: its seal was deleted",
                    leaves.len()
                ),
            ));
        } else if last_closed.is_some_and(|closed| *day <= closed) {
            report.notes.push(Finding::day(*day, "is over but not sealed yet (the governance pass seals it)".into()));
        }
    }
    if let Some(until) = sealed_until {
        // A day with no events has a seal too (of nothing): a missing one was deleted.
        let first = sealed.iter().min().copied().or_else(|| days.keys().next().copied());
        if let Some(first) = first {
            for day in first.iter_days().take_while(|d| *d < until) {
                if !sealed.contains(&day) && days.get(&day).is_none_or(Vec::is_empty) {
                    report.problems.push(Finding::day(
                        day,
                        "has no seal, though sealing has passed it: its seal was deleted".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_closes_ten_minutes_after_midnight() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(last_closed_day(at("2026-11-26T00:09:59Z")), Some(day("2026-11-24")));
        assert_eq!(last_closed_day(at("2026-11-26T00:10:00Z")), Some(day("2026-11-25")));
        assert_eq!(blob_name(day("2026-01-05")), "2026/01/05.jsonl");
    }
}
