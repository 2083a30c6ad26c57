//! Audit events: one per state change, written atomically with it (design invariant 3), and
//! the tamper-evident form of the trail: each activation's events form a hash chain, and each
//! UTC day's events are sealed under one root (`DaySeal`).
//!
//! This module only computes and checks; it never reads a store or a clock. The store links an
//! event into its chain when it writes it (`AuditEvent::linked`), under the same version check
//! as the activation change, so two writers can never both extend a chain from one head.
//!
//! What the chain proves, and what it cannot: a hash chain without a secret key shows any edit,
//! deletion, insertion or reordering of events *unless* the forger recomputes every later hash
//! as well. The day seals and their export to immutable storage (`service::audit_chain`) close
//! that gap for days already sealed: a rewritten trail no longer matches its seal.

use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::activation::{Action, Activation, Status, Transition};
use super::ids::{ActivationId, Justification, PrincipalId, RoleDefinitionId, RuleId, Ticket};
use super::scope::Scope;

/// Who caused a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Actor {
    /// A signed-in person or application acting for itself.
    Principal { id: PrincipalId },
    /// An allow-listed broker application acting for a user.
    Broker { id: PrincipalId, app_id: String },
    /// Elevate itself (the sweeper, provisioning).
    System,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: Uuid,
    pub activation_id: ActivationId,
    pub principal_id: PrincipalId,
    pub actor: Actor,
    pub action: Action,
    pub at: DateTime<Utc>,
    pub status_before: Option<Status>,
    pub status_after: Status,
    pub rule_id: RuleId,
    /// The role and scope of the activation, so the trail can be searched by them. Events
    /// written before these were recorded have neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_definition_id: Option<RoleDefinitionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    pub justification: Option<Justification>,
    pub ticket: Option<Ticket>,
    pub detail: Option<String>,
    /// The event's place in its activation's hash chain, set by the store as it writes the
    /// event. Events written before the chain existed have none ("unchained (legacy)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
}

impl AuditEvent {
    /// The event for a transition. `justification` is the one given for this step (a decision's
    /// or an extension's), or else the request's. The detail is the transition's own note, then
    /// the caller's `detail`.
    pub fn of(
        transition: &Transition,
        actor: Actor,
        justification: Option<Justification>,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let a: &Activation = &transition.activation;
        let request = a.request();
        AuditEvent {
            id: Uuid::new_v4(),
            activation_id: a.id(),
            principal_id: request.principal_id,
            actor,
            action: transition.action,
            at: now,
            status_before: transition.before,
            status_after: a.status(),
            rule_id: request.rule_id.clone(),
            role_definition_id: Some(request.role_definition_id),
            scope: Some(request.scope.clone()),
            justification: justification.or_else(|| request.justification.clone()),
            ticket: request.ticket.clone(),
            detail: match (transition.note.clone(), detail) {
                (Some(note), Some(detail)) => Some(format!("{note}; {detail}")),
                (note, detail) => note.or(detail),
            },
            chain: None,
        }
    }
}

/// The version of the canonical encoding below. INVARIANT: an encoding, once shipped, never
/// changes; a new one gets a new number and `AuditEvent::canonical` keeps the old ones.
pub const CHAIN_VERSION: u32 = 1;

/// A SHA-256 digest, written as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AuditHash([u8; 32]);

impl AuditHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// 64 hex digits, either case (written back in lower case).
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = || format!("`{}` is not a SHA-256 digest (64 hex digits)", crate::domain::ids::shorten(text));
        if text.len() != 64 {
            return Err(refuse());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            let digits = std::str::from_utf8(pair).map_err(|_| refuse())?;
            *byte = u8::from_str_radix(digits, 16).map_err(|_| refuse())?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for AuditHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for AuditHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditHash({self})")
    }
}

impl TryFrom<String> for AuditHash {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AuditHash> for String {
    fn from(value: AuditHash) -> String {
        value.to_string()
    }
}

/// An event's link in its activation's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainLink {
    /// The canonical encoding the hash was taken over (`CHAIN_VERSION` when written).
    pub version: u32,
    /// The event's position in its activation's trail, from 1 (legacy events count too).
    pub seq: u64,
    /// The hash of event `seq - 1`; none for the first event, and for the first chained event
    /// after legacy ones (they have no hash to carry).
    pub prev: Option<AuditHash>,
    /// SHA-256 of the event's canonical encoding (`AuditEvent::canonical`).
    pub hash: AuditHash,
}

/// What an event's own hash says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashCheck {
    /// Written before the chain existed: nothing to check.
    Legacy,
    Intact,
    /// The content no longer matches the hash it was written with: edited.
    Mismatch {
        computed: AuditHash,
    },
    /// An encoding this Elevate does not know (written by a newer one, or forged).
    UnknownVersion(u32),
}

fn text<T: fmt::Display>(value: Option<&T>) -> Value {
    value.map_or(Value::Null, |v| Value::String(v.to_string()))
}

impl AuditEvent {
    /// The canonical encoding, version 1: the UTF-8 text of one JSON array, with no whitespace,
    /// strings escaped as `serde_json` writes them (`"` and `\` escaped, control characters as
    /// `\n`, `\t`… or `\u00XX`, everything else as is), `null` for an absent value:
    ///
    /// ```text
    /// ["elevate-audit", version, seq, prev, id, activationId, principalId,
    ///  actorKind, actorId, actorAppId, action, at, statusBefore, statusAfter, ruleId,
    ///  roleDefinitionId, scope, justification, ticketSystem, ticketNumber, detail]
    /// ```
    ///
    /// `version` and `seq` are JSON numbers; `prev` the previous event's hash in lower-case hex,
    /// or `null`; ids as Elevate writes them (lower-case GUIDs); `actorKind` `principal`,
    /// `broker` or `system`, `actorId` and `actorAppId` `null` where the kind has none;
    /// `action`, `statusBefore` and `statusAfter` their API names (`Requested`, `Active`); `at`
    /// RFC 3339 in UTC with `Z` and the fewest fractional digits of 0, 3, 6 or 9 that hold it
    /// exactly; `scope` as written in the API. Every field of the event is in it, so none can be
    /// changed without changing the hash, and so are the chain's version, position and
    /// predecessor, so an event cannot be moved or relinked either.
    ///
    /// Version 0 is the same array with `seq` 0 and `prev` `null`: what a legacy event (no
    /// chain) is sealed by.
    pub fn canonical(&self, version: u32, seq: u64, prev: Option<&AuditHash>) -> Vec<u8> {
        let (actor_kind, actor_id, app_id) = match &self.actor {
            Actor::Principal { id } => ("principal", Some(id), None),
            Actor::Broker { id, app_id } => ("broker", Some(id), Some(app_id)),
            Actor::System => ("system", None, None),
        };
        let array = json!([
            "elevate-audit",
            version,
            seq,
            text(prev),
            self.id.to_string(),
            self.activation_id.to_string(),
            self.principal_id.to_string(),
            actor_kind,
            text(actor_id),
            text(app_id),
            self.action.as_str(),
            self.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            self.status_before.map_or(Value::Null, |s| Value::String(s.as_str().to_owned())),
            self.status_after.as_str(),
            self.rule_id.to_string(),
            text(self.role_definition_id.as_ref()),
            text(self.scope.as_ref()),
            text(self.justification.as_ref()),
            text(self.ticket.as_ref().map(|t| &t.system)),
            text(self.ticket.as_ref().map(|t| &t.number)),
            text(self.detail.as_ref()),
        ]);
        array.to_string().into_bytes()
    }

    /// The event as event `seq` of its activation's chain, after the event whose hash is `prev`.
    pub fn linked(mut self, seq: u64, prev: Option<AuditHash>) -> AuditEvent {
        let hash = AuditHash::of(&self.canonical(CHAIN_VERSION, seq, prev.as_ref()));
        self.chain = Some(ChainLink { version: CHAIN_VERSION, seq, prev, hash });
        self
    }

    /// The hash of the event as it stands: of its chained encoding, or for a legacy event of
    /// version 0. What a day is sealed by, so an edit shows there even when the chain's own
    /// hashes were recomputed.
    pub fn content_hash(&self) -> AuditHash {
        match &self.chain {
            Some(c) => AuditHash::of(&self.canonical(c.version, c.seq, c.prev.as_ref())),
            None => AuditHash::of(&self.canonical(0, 0, None)),
        }
    }

    /// Whether the event still matches the hash it was written with.
    pub fn check_hash(&self) -> HashCheck {
        let Some(chain) = &self.chain else { return HashCheck::Legacy };
        if chain.version != CHAIN_VERSION {
            return HashCheck::UnknownVersion(chain.version);
        }
        let computed = self.content_hash();
        if computed == chain.hash { HashCheck::Intact } else { HashCheck::Mismatch { computed } }
    }
}

/// Something wrong with one activation's trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailProblem {
    /// The event's position as read (from 1), and its id; none for a problem of the whole trail.
    pub position: Option<usize>,
    pub event: Option<Uuid>,
    pub problem: String,
}

/// What checking one activation's trail found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrailCheck {
    pub events: usize,
    /// Events written before the chain existed (at the start of the trail).
    pub legacy: usize,
    pub problems: Vec<TrailProblem>,
}

/// Checks one activation's trail, read oldest first, against its chain; `status` is the
/// activation's current status (its last event must have left it there), `None` when the
/// activation itself is missing.
///
/// Finds: an edited event (its hash no longer matches), a deleted, inserted or reordered one
/// (its position or its predecessor's hash does not match), an event of another activation,
/// a legacy event after chained ones (inserted, or its chain stripped), and a trail whose end
/// does not leave the activation as it is (its latest events deleted).
pub fn check_trail(activation: ActivationId, events: &[AuditEvent], status: Option<Status>) -> TrailCheck {
    let mut check = TrailCheck { events: events.len(), ..TrailCheck::default() };
    let mut previous: Option<&AuditEvent> = None;
    let mut chained = false;
    for (index, event) in events.iter().enumerate() {
        let position = index + 1;
        let mut report = |problem: String| {
            check.problems.push(TrailProblem { position: Some(position), event: Some(event.id), problem });
        };
        if event.activation_id != activation {
            report(format!("belongs to activation `{}`, not this one: moved here", event.activation_id));
        }
        match event.check_hash() {
            HashCheck::Legacy if chained => {
                report("has no hash, yet follows chained events: inserted, or its hash stripped".into())
            }
            HashCheck::Legacy => check.legacy += 1,
            HashCheck::UnknownVersion(v) => {
                report(format!("says it is hashed by encoding {v}, which this Elevate does not know"))
            }
            HashCheck::Mismatch { computed } => report(format!(
                "edited: its content hashes to {computed}, not to the {} it was written with",
                event.chain.as_ref().map(|c| c.hash.to_string()).unwrap_or_default()
            )),
            HashCheck::Intact => {}
        }
        if let Some(link) = &event.chain {
            chained = true;
            if link.seq != position as u64 {
                report(format!(
                    "was written as event {} but is read as event {position}: events before it were deleted or inserted, or the trail reordered",
                    link.seq
                ));
            }
            let expected = previous.and_then(|p| p.chain.as_ref()).map(|c| c.hash);
            if link.prev != expected {
                let said = link.prev.map_or_else(|| "none".to_owned(), |h| h.to_string());
                let is = expected.map_or_else(|| "none".to_owned(), |h| h.to_string());
                report(format!(
                    "names {said} as the previous event's hash, but the event before it has {is}: the chain is broken here (an event deleted, inserted or moved)"
                ));
            }
        }
        previous = Some(event);
    }
    match (events.last(), status) {
        (Some(last), Some(status)) if last.status_after != status => check.problems.push(TrailProblem {
            position: None,
            event: None,
            problem: format!(
                "the activation is {} but its last event leaves it {}: its latest events were deleted",
                status.as_str(),
                last.status_after.as_str()
            ),
        }),
        (None, Some(status)) => check.problems.push(TrailProblem {
            position: None,
            event: None,
            problem: format!("the activation is {} but has no audit events: they were deleted", status.as_str()),
        }),
        _ => {}
    }
    check
}

/// The version of the day seal's root encoding.
pub const SEAL_VERSION: u32 = 1;

/// One UTC day's audit events under one root: a record written once when the day is over,
/// never rewritten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaySeal {
    pub version: u32,
    pub day: NaiveDate,
    pub events: u64,
    pub activations: u64,
    pub root: AuditHash,
    pub sealed_at: DateTime<Utc>,
}

/// The instants a UTC day spans: `[start, end)`.
pub fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
    (start, start + chrono::TimeDelta::days(1))
}

/// What a day's seal covers of one event: where it belongs and what it hashes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealLeaf {
    pub activation_id: ActivationId,
    /// Its chain position; none for a legacy event.
    pub seq: Option<u64>,
    pub at: DateTime<Utc>,
    pub id: Uuid,
    /// `AuditEvent::content_hash`.
    pub hash: AuditHash,
}

impl SealLeaf {
    pub fn of(event: &AuditEvent) -> SealLeaf {
        SealLeaf {
            activation_id: event.activation_id,
            seq: event.chain.as_ref().map(|c| c.seq),
            at: event.at,
            id: event.id,
            hash: event.content_hash(),
        }
    }
}

impl DaySeal {
    /// The root of a day's events, version 1: SHA-256 of the text of the JSON array
    /// `["elevate-audit-seal", 1, "<day YYYY-MM-DD>", [[activationId, seq, hash], ...]]`, one
    /// inner array per event whose `at` lies in the day, sorted by activation id, then chain
    /// position (`seq`; a legacy event sorts as 0 and is written `null`), then `at`, then event
    /// id; `hash` is the event's `content_hash` in lower-case hex. Events of other days are
    /// ignored. Returns the root, the events and the activations it covers.
    pub fn root_of(day: NaiveDate, events: &[AuditEvent]) -> (AuditHash, u64, u64) {
        let leaves: Vec<SealLeaf> = events.iter().map(SealLeaf::of).collect();
        Self::root_of_leaves(day, &leaves)
    }

    /// `root_of`, from the leaves of the events.
    pub fn root_of_leaves(day: NaiveDate, leaves: &[SealLeaf]) -> (AuditHash, u64, u64) {
        let (start, end) = day_bounds(day);
        let mut leaves: Vec<&SealLeaf> = leaves.iter().filter(|l| l.at >= start && l.at < end).collect();
        leaves.sort_by_key(|l| (l.activation_id.to_string(), l.seq.unwrap_or(0), l.at, l.id));
        let mut activations: Vec<ActivationId> = leaves.iter().map(|l| l.activation_id).collect();
        activations.dedup();
        let entries: Vec<Value> =
            leaves.iter().map(|l| json!([l.activation_id.to_string(), l.seq, l.hash.to_string()])).collect();
        let text = json!(["elevate-audit-seal", SEAL_VERSION, day.format("%Y-%m-%d").to_string(), entries]).to_string();
        (AuditHash::of(text.as_bytes()), leaves.len() as u64, activations.len() as u64)
    }

    /// The seal of `day`'s events, made at `now`.
    pub fn of(day: NaiveDate, events: &[AuditEvent], now: DateTime<Utc>) -> DaySeal {
        let (root, events, activations) = Self::root_of(day, events);
        DaySeal { version: SEAL_VERSION, day, events, activations, root, sealed_at: now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{ActivationId, Justification, PrincipalId, RoleDefinitionId, RuleId};

    const A: &str = "05c5a614-a7d6-4502-b150-c2fb455033ff";
    const P: &str = "11111111-1111-1111-1111-111111111111";

    fn event(n: u128, action: Action, before: Option<Status>, after: Status) -> AuditEvent {
        AuditEvent {
            id: Uuid::from_u128(n),
            activation_id: ActivationId::parse(A).unwrap(),
            principal_id: PrincipalId::parse(P).unwrap(),
            actor: Actor::Principal { id: PrincipalId::parse(P).unwrap() },
            action,
            at: "2026-11-25T14:00:00.5Z".parse::<DateTime<Utc>>().unwrap() + chrono::TimeDelta::minutes(n as i64),
            status_before: before,
            status_after: after,
            rule_id: RuleId::parse("prod-reader").unwrap(),
            role_definition_id: Some(RoleDefinitionId::parse("acdd72a7-3385-48ef-bd42-f606fba81ae7").unwrap()),
            scope: Some(Scope::parse("/subscriptions/00000000-0000-0000-0000-000000000001").unwrap()),
            justification: Some(Justification::parse("incident \"42\"\n").unwrap()),
            ticket: None,
            detail: None,
            chain: None,
        }
    }

    /// Three events, chained as a store chains them.
    fn trail() -> Vec<AuditEvent> {
        let raw = [
            event(1, Action::Requested, None, Status::Provisioning),
            event(2, Action::Provisioned, Some(Status::Provisioning), Status::Active),
            event(3, Action::Deactivated, Some(Status::Active), Status::Deactivated),
        ];
        let mut prev = None;
        let mut out = Vec::new();
        for (i, e) in raw.into_iter().enumerate() {
            let e = e.linked(i as u64 + 1, prev);
            prev = e.chain.as_ref().map(|c| c.hash);
            out.push(e);
        }
        out
    }

    fn id() -> ActivationId {
        ActivationId::parse(A).unwrap()
    }

    #[test]
    fn the_canonical_encoding_is_pinned() {
        let e = event(1, Action::Requested, None, Status::Provisioning);
        let text = String::from_utf8(e.canonical(1, 1, None)).unwrap();
        assert_eq!(
            text,
            r#"["elevate-audit",1,1,null,"00000000-0000-0000-0000-000000000001","05c5a614-a7d6-4502-b150-c2fb455033ff","11111111-1111-1111-1111-111111111111","principal","11111111-1111-1111-1111-111111111111",null,"Requested","2026-11-25T14:01:00.500Z",null,"Provisioning","prod-reader","acdd72a7-3385-48ef-bd42-f606fba81ae7","/subscriptions/00000000-0000-0000-0000-000000000001","incident \"42\"",null,null,null]"#
        );
        // The hash of that text, as any SHA-256 tool computes it.
        let linked = e.linked(1, None);
        assert_eq!(linked.chain.as_ref().unwrap().hash, AuditHash::of(text.as_bytes()));
    }

    #[test]
    fn a_linked_event_round_trips_through_json_and_checks_intact() {
        for e in trail() {
            let back: AuditEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
            assert_eq!(back, e);
            assert_eq!(back.check_hash(), HashCheck::Intact);
        }
        let legacy: AuditEvent =
            serde_json::from_str(&serde_json::to_string(&event(1, Action::Requested, None, Status::Active)).unwrap())
                .unwrap();
        assert_eq!((legacy.chain.clone(), legacy.check_hash()), (None, HashCheck::Legacy));
        assert!(!serde_json::to_string(&legacy).unwrap().contains("chain"), "legacy events are written as before");
    }

    #[test]
    fn hashes_parse_from_hex_only() {
        let h = AuditHash::of(b"x");
        assert_eq!(AuditHash::parse(&h.to_string()).unwrap(), h);
        assert_eq!(AuditHash::parse(&h.to_string().to_uppercase()).unwrap(), h);
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"é".repeat(32)] {
            assert!(AuditHash::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<AuditHash>("\"zz\"").is_err());
    }

    #[test]
    fn an_intact_trail_has_no_problems() {
        let check = check_trail(id(), &trail(), Some(Status::Deactivated));
        assert_eq!(check, TrailCheck { events: 3, legacy: 0, problems: vec![] });
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let edits: Vec<fn(&mut AuditEvent)> = vec![
            |e| e.id = Uuid::from_u128(99),
            |e| e.principal_id = PrincipalId::parse("22222222-2222-2222-2222-222222222222").unwrap(),
            |e| e.actor = Actor::System,
            |e| e.action = Action::Expired,
            |e| e.at += chrono::TimeDelta::nanoseconds(1),
            |e| e.status_before = None,
            |e| e.status_after = Status::Failed,
            |e| e.rule_id = RuleId::parse("other").unwrap(),
            |e| e.role_definition_id = None,
            |e| e.scope = None,
            |e| e.justification = None,
            |e| e.detail = Some("x".into()),
            |e| {
                e.ticket = Some(crate::domain::ids::Ticket {
                    system: crate::domain::ids::TicketSystem::parse("SN").unwrap(),
                    number: crate::domain::ids::TicketNumber::parse("1").unwrap(),
                })
            },
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut events = trail();
            edit(&mut events[1]);
            assert!(matches!(events[1].check_hash(), HashCheck::Mismatch { .. }), "edit {i}");
            let check = check_trail(id(), &events, Some(Status::Deactivated));
            assert!(
                check.problems.iter().any(|p| p.position == Some(2) && p.problem.starts_with("edited")),
                "{i}: {check:?}"
            );
        }
    }

    #[test]
    fn deleted_inserted_and_reordered_events_are_found() {
        let mut deleted = trail();
        deleted.remove(1);
        let check = check_trail(id(), &deleted, Some(Status::Deactivated));
        assert!(check.problems.iter().any(|p| p.position == Some(2) && p.problem.contains("broken")), "{check:?}");

        let mut tail = trail();
        tail.pop();
        let check = check_trail(id(), &tail, Some(Status::Deactivated));
        assert!(
            check.problems.iter().any(|p| p.position.is_none() && p.problem.contains("latest events were deleted"))
        );

        let mut reordered = trail();
        reordered.swap(1, 2);
        let check = check_trail(id(), &reordered, Some(Status::Deactivated));
        assert!(check.problems.iter().any(|p| p.problem.contains("read as event 2")), "{check:?}");

        let mut inserted = trail();
        inserted.insert(1, event(9, Action::Approved, Some(Status::Provisioning), Status::Provisioning));
        let check = check_trail(id(), &inserted, Some(Status::Deactivated));
        assert!(check.problems.iter().any(|p| p.position == Some(2) && p.problem.contains("follows chained")));

        let mut stripped = trail();
        stripped[2].chain = None;
        assert!(!check_trail(id(), &stripped, Some(Status::Deactivated)).problems.is_empty());

        let other = ActivationId::parse("99999999-a7d6-4502-b150-c2fb455033ff").unwrap();
        assert!(
            check_trail(other, &trail(), Some(Status::Deactivated))
                .problems
                .iter()
                .any(|p| p.problem.contains("moved"))
        );
        assert!(!check_trail(id(), &[], Some(Status::Active)).problems.is_empty(), "an activation without events");
    }

    #[test]
    fn legacy_events_before_the_chain_are_counted_not_failed() {
        let legacy = event(1, Action::Requested, None, Status::Provisioning);
        let chained = event(2, Action::Provisioned, Some(Status::Provisioning), Status::Active).linked(2, None);
        let check = check_trail(id(), &[legacy.clone(), chained], Some(Status::Active));
        assert_eq!((check.legacy, check.problems.len()), (1, 0), "{check:?}");
        let check = check_trail(id(), &[legacy], Some(Status::Provisioning));
        assert_eq!((check.legacy, check.problems.len()), (1, 0));
    }

    #[test]
    fn a_day_root_covers_the_days_events_in_a_fixed_order() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let events = trail();
        let (root, n, activations) = DaySeal::root_of(day, &events);
        assert_eq!((n, activations), (3, 1));
        let mut shuffled = events.clone();
        shuffled.reverse();
        assert_eq!(DaySeal::root_of(day, &shuffled).0, root, "the order read does not matter");
        let mut edited = events.clone();
        edited[0].detail = Some("x".into());
        assert_ne!(DaySeal::root_of(day, &edited).0, root);
        assert_ne!(DaySeal::root_of(day, &events[..2]).0, root);
        let next = day.succ_opt().unwrap();
        assert_eq!(DaySeal::root_of(next, &events).1, 0, "another day's events are left out");
        let seal = DaySeal::of(day, &events, "2026-11-26T00:10:00Z".parse().unwrap());
        let back: DaySeal = serde_json::from_str(&serde_json::to_string(&seal).unwrap()).unwrap();
        assert_eq!(back, seal);
        assert!(serde_json::to_string(&seal).unwrap().contains(r#""day":"2026-11-25""#));
    }
}
