//! One contract for every `Store`: run against SQLite and against Table Storage on the real
//! Azurite emulator. Whatever the service relies on is asserted here, so a store that passes
//! can back Elevate.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use elevate::domain::activation::{Activation, Status};
use elevate::domain::audit::{Actor, AuditEvent};
use elevate::domain::duration::IsoDuration;
use elevate::domain::ids::{ActivationId, Justification, PrincipalId, RoleDefinitionId};
use elevate::domain::policy::{ActivationDraft, Policy, Subject};
use elevate::domain::scope::Scope;
use elevate::service::ports::{
    ActivationQuery, AuditQuery, AwaitingQuery, DueCursor, IdempotencyKey, IdempotencyRecord, MAX_RECORD_BODY_BYTES,
    Page, PageToken, RecordId, RecordKind, Store, StoreError, Version, Versioned,
};
use futures_util::StreamExt;

use crate::support::{ALICE, BOB, SUB1, SUB2, start};

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
/// No cap on open activations (the tests of the cap set one).
const NO_CAP: usize = usize::MAX;
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";

/// A group whose members (any principal) may activate: history that is nobody's in particular.
const MEMBERS: &str = "eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee";
const APPROVER: &str = "33333333-3333-3333-3333-333333333333";

fn policy() -> Policy {
    Policy::from_yaml(
        "contract.yaml",
        &format!(
            "version: 1\nrules:\n  - id: direct\n    scope: {SUB1}\n    roles: [Reader, Contributor]\n    principals: [user:{ALICE}, user:{BOB}, group:{MEMBERS}]\n  - id: approved\n    scope: {SUB2}\n    roles: [Reader, Contributor]\n    principals: [user:{ALICE}, user:{BOB}]\n    approval:\n      approvers: [user:{APPROVER}]\n      timeout: PT1H\n"
        ),
    )
    .unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    start() + TimeDelta::minutes(minutes)
}

/// A freshly opened activation (Provisioning on SUB1, PendingApproval on SUB2) and its event.
fn open(principal: &str, role: &str, scope: &str, now: DateTime<Utc>) -> (Activation, AuditEvent) {
    let draft = ActivationDraft {
        principal_id: PrincipalId::parse(principal).unwrap(),
        role_definition_id: RoleDefinitionId::parse(role).unwrap(),
        scope: Scope::parse(scope).unwrap(),
        rule_id: None,
        duration: Some(IsoDuration::from_hours(1)),
        justification: Some(Justification::parse("INC-1").unwrap()),
        ticket: None,
        start_at: None,
    };
    let subject = Subject { principal_id: draft.principal_id, groups: vec![], mfa: true, auth_contexts: vec![] };
    let authorized = policy().authorize_activation(draft, &subject, now).unwrap();
    let t = Activation::open(ActivationId::new_random(), authorized, now);
    let event = AuditEvent::of(&t, Actor::Principal { id: PrincipalId::parse(principal).unwrap() }, None, None, now);
    (t.activation, event)
}

/// Opened by `principal` as a member of MEMBERS (a Reader at `scope` under SUB1).
fn open_member(principal: PrincipalId, scope: &str, now: DateTime<Utc>) -> (Activation, AuditEvent) {
    let draft = ActivationDraft {
        principal_id: principal,
        role_definition_id: RoleDefinitionId::parse(READER).unwrap(),
        scope: Scope::parse(scope).unwrap(),
        rule_id: None,
        duration: Some(IsoDuration::from_hours(1)),
        justification: Some(Justification::parse("history").unwrap()),
        ticket: None,
        start_at: None,
    };
    let members = PrincipalId::parse(MEMBERS).unwrap();
    let subject = Subject { principal_id: principal, groups: vec![members], mfa: true, auth_contexts: vec![] };
    let authorized = policy().authorize_activation(draft, &subject, now).unwrap();
    let t = Activation::open(ActivationId::new_random(), authorized, now);
    let event = AuditEvent::of(&t, Actor::Principal { id: principal }, None, None, now);
    (t.activation, event)
}

/// The approver of rule `approved` approves what is pending (a request or an extension).
fn approved(a: &Activation, now: DateTime<Utc>) -> (Activation, AuditEvent) {
    let approver = PrincipalId::parse(APPROVER).unwrap();
    let subject = Subject { principal_id: approver, groups: vec![], mfa: true, auth_contexts: vec![] };
    let capability = elevate::domain::approver::authorize_approver(&policy(), a, &subject, now).unwrap();
    let t = a.clone().approve(capability, Justification::parse("ok").unwrap(), now).unwrap();
    let e = AuditEvent::of(&t, Actor::Principal { id: approver }, None, None, now);
    (t.activation, e)
}

/// The requester of an active activation asks for 30 more minutes.
fn extension_requested(a: &Activation, now: DateTime<Utc>) -> (Activation, AuditEvent) {
    let elevate::domain::activation::State::Active { activated_at, expires_at, .. } = a.state().clone() else {
        panic!("not active: {a:?}")
    };
    let draft = elevate::domain::policy::ExtensionDraft {
        request: a.request(),
        activated_at,
        current_expiry: expires_at,
        additional: IsoDuration::parse("PT30M").unwrap(),
        justification: Some(Justification::parse("more").unwrap()),
    };
    let principal = a.request().principal_id;
    let subject = Subject { principal_id: principal, groups: vec![], mfa: true, auth_contexts: vec![] };
    let extension = policy().authorize_extension(draft, &subject, now).unwrap();
    let t = a.clone().extend(extension, now).unwrap();
    let e = AuditEvent::of(&t, Actor::Principal { id: principal }, None, None, now);
    (t.activation, e)
}

fn provisioned(a: &Activation, now: DateTime<Utc>) -> (Activation, AuditEvent) {
    let t = a.clone().provisioned(format!("/assignments/{}", a.id()), now).unwrap();
    let e = AuditEvent::of(&t, Actor::System, None, None, now);
    (t.activation, e)
}

fn expired(a: &Activation, now: DateTime<Utc>) -> (Activation, AuditEvent) {
    let t = a.clone().expire(now).unwrap();
    let e = AuditEvent::of(&t, Actor::System, None, None, now);
    (t.activation, e)
}

async fn inserted(
    store: &dyn Store,
    principal: &str,
    role: &str,
    scope: &str,
    now: DateTime<Utc>,
) -> Versioned<Activation> {
    let (a, e) = open(principal, role, scope, now);
    let version = store.insert(&a, &e, None, NO_CAP).await.unwrap();
    Versioned { value: a, version }
}

/// Every contract test, for one way of making a fresh, empty store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = elevate::adapters::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod tables {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::table_store()).await;
                }
            )*
        }
    };
}

contract!(
    an_insert_reads_back_with_its_event,
    a_stale_version_is_a_conflict_and_changes_nothing,
    two_concurrent_updates_one_wins,
    one_open_activation_per_principal_role_and_scope,
    idempotency_keys_are_taken_once,
    a_duplicate_id_is_refused,
    due_reads_only_what_is_due_in_order_with_a_cursor,
    a_new_due_time_replaces_the_old_one,
    listing_filters_and_orders_newest_first,
    audit_queries_by_activation_principal_and_time,
    ping_answers,
    a_change_queues_its_notice_in_the_same_write,
    a_notice_is_claimed_once_and_done_is_final,
    upcoming_reads_ahead_without_touching_anything,
    pages_join_to_the_whole_list_once_in_order,
    the_inbox_finds_an_old_request_behind_a_thousand_newer_ones,
    the_awaiting_index_follows_requests_and_extensions,
    the_open_cap_refuses_the_one_too_many_and_frees_as_activations_end,
    concurrent_inserts_never_exceed_the_open_cap,
    audit_pages_join_to_the_trail_oldest_first,
    a_record_is_created_read_back_and_replaced_with_its_version,
    two_concurrent_record_writes_one_wins,
    records_are_listed_by_kind_in_id_order_up_to_the_limit,
    record_ids_of_every_allowed_character_round_trip,
    an_oversize_record_body_is_refused_and_nothing_is_stored,
);

pub fn table_store() -> Arc<dyn Store> {
    let dir = std::env::temp_dir();
    let settings = crate::support::azurite::azurite().tables(dir.join("unused.db"));
    Arc::new(elevate::startup::table_store(&settings).unwrap())
}

async fn an_insert_reads_back_with_its_event(store: Arc<dyn Store>) {
    let (a, e) = open(ALICE, READER, SUB1, at(0));
    let v1 = store.insert(&a, &e, None, NO_CAP).await.unwrap();
    let got = store.get(a.id()).await.unwrap().unwrap();
    assert_eq!(got.value, a);
    assert_eq!(got.version, v1);
    assert!(store.get(ActivationId::new_random()).await.unwrap().is_none());
    let (b, f) = provisioned(&a, at(1));
    let v2 = store.update(&b, &v1, &f).await.unwrap();
    assert_ne!(v1, v2);
    let got = store.get(a.id()).await.unwrap().unwrap();
    assert_eq!((got.value.status(), got.version), (Status::Active, v2));
    let events =
        store.audit(&AuditQuery { activation_id: Some(a.id()), limit: 10, ..Default::default() }).await.unwrap().items;
    // Stored as given, linked into the activation's hash chain.
    let unlinked: Vec<AuditEvent> = events.iter().map(|x| AuditEvent { chain: None, ..x.clone() }).collect();
    assert_eq!(unlinked, vec![e, f]);
}

async fn a_stale_version_is_a_conflict_and_changes_nothing(store: Arc<dyn Store>) {
    let first = inserted(&*store, ALICE, READER, SUB1, at(0)).await;
    let (b, f) = provisioned(&first.value, at(1));
    let v2 = store.update(&b, &first.version, &f).await.unwrap();
    let (c, g) = expired(&b, at(61));
    // The version read before the last change.
    assert!(matches!(store.update(&c, &first.version, &g).await, Err(StoreError::Conflict)));
    assert!(matches!(store.update(&c, &Version("garbage".into()), &g).await, Err(StoreError::Conflict)));
    let got = store.get(b.id()).await.unwrap().unwrap();
    assert_eq!((got.value, got.version.clone()), (b.clone(), v2.clone()));
    let events =
        store.audit(&AuditQuery { activation_id: Some(b.id()), limit: 10, ..Default::default() }).await.unwrap().items;
    assert_eq!(events.len(), 2, "a refused update writes no event");
    store.update(&c, &v2, &g).await.unwrap();
}

async fn two_concurrent_updates_one_wins(store: Arc<dyn Store>) {
    for round in 0..5 {
        let first = inserted(&*store, ALICE, READER, SUB1, at(round * 100)).await;
        let (b, f) = provisioned(&first.value, at(round * 100 + 1));
        let (c, g) = {
            let failure = elevate::domain::activation::Failure { code: "X".into(), message: "y".into() };
            let t = first.value.clone().fail(failure, at(round * 100 + 1));
            let t = t.unwrap();
            let e = AuditEvent::of(&t, Actor::System, None, None, at(round * 100 + 1));
            (t.activation, e)
        };
        let (s1, s2) = (Arc::clone(&store), Arc::clone(&store));
        let (v1, v2) = (first.version.clone(), first.version.clone());
        let one = tokio::spawn(async move { s1.update(&b, &v1, &f).await });
        let two = tokio::spawn(async move { s2.update(&c, &v2, &g).await });
        let results = [one.await.unwrap(), two.await.unwrap()];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results.iter().filter(|r| matches!(r, Err(StoreError::Conflict))).count();
        assert_eq!((wins, conflicts), (1, 1), "round {round}: {results:?}");
        let events = store
            .audit(&AuditQuery { activation_id: Some(first.value.id()), limit: 10, ..Default::default() })
            .await
            .unwrap()
            .items;
        assert_eq!(events.len(), 2, "exactly one transition recorded");
        let stored = store.get(first.value.id()).await.unwrap().unwrap();
        assert_eq!(stored.value.status(), events[1].status_after);
        // Let the next round open the same slot.
        if !stored.value.status().is_terminal() {
            let (d, h) = expired(&stored.value, at(round * 100 + 61));
            store.update(&d, &stored.version, &h).await.unwrap();
        }
    }
}

async fn one_open_activation_per_principal_role_and_scope(store: Arc<dyn Store>) {
    let first = inserted(&*store, ALICE, READER, SUB1, at(0)).await;
    let (again, e) = open(ALICE, READER, SUB1, at(1));
    match store.insert(&again, &e, None, NO_CAP).await {
        Err(StoreError::OpenActivationExists(id)) => assert_eq!(id, first.value.id()),
        other => panic!("{other:?}"),
    }
    assert!(store.get(again.id()).await.unwrap().is_none(), "nothing written");
    // Another role, scope or principal is another slot.
    inserted(&*store, ALICE, CONTRIBUTOR, SUB1, at(1)).await;
    inserted(&*store, BOB, READER, SUB1, at(1)).await;
    inserted(&*store, ALICE, READER, SUB2, at(1)).await;
    // Once finished, the slot is free again.
    let (b, f) = provisioned(&first.value, at(1));
    let v = store.update(&b, &first.version, &f).await.unwrap();
    let (c, g) = expired(&b, at(61));
    store.update(&c, &v, &g).await.unwrap();
    let (next, e) = open(ALICE, READER, SUB1, at(62));
    store.insert(&next, &e, None, NO_CAP).await.unwrap();
}

async fn idempotency_keys_are_taken_once(store: Arc<dyn Store>) {
    let key = IdempotencyKey::parse("retry/me#1?").unwrap();
    let caller = PrincipalId::parse(ALICE).unwrap();
    assert!(store.idempotency(caller, &key).await.unwrap().is_none());
    let (a, e) = open(ALICE, READER, SUB1, at(0));
    let record = IdempotencyRecord { caller, key: key.clone(), request_hash: "h1".into(), activation_id: a.id() };
    store.insert(&a, &e, Some(&record), NO_CAP).await.unwrap();
    assert_eq!(store.idempotency(caller, &key).await.unwrap(), Some(record));
    let (b, f) = open(ALICE, CONTRIBUTOR, SUB1, at(0));
    let other = IdempotencyRecord { caller, key: key.clone(), request_hash: "h2".into(), activation_id: b.id() };
    assert!(matches!(store.insert(&b, &f, Some(&other), NO_CAP).await, Err(StoreError::IdempotencyKeyTaken)));
    assert!(store.get(b.id()).await.unwrap().is_none());
    // The same key from another caller is another key.
    let bob = PrincipalId::parse(BOB).unwrap();
    let (c, g) = open(BOB, READER, SUB1, at(0));
    let theirs = IdempotencyRecord { caller: bob, key: key.clone(), request_hash: "h3".into(), activation_id: c.id() };
    store.insert(&c, &g, Some(&theirs), NO_CAP).await.unwrap();
    // A refused insert releases the key it took.
    let fresh = IdempotencyKey::parse("k2").unwrap();
    let (d, h) = open(ALICE, READER, SUB1, at(0));
    let lost = IdempotencyRecord { caller, key: fresh.clone(), request_hash: "h4".into(), activation_id: d.id() };
    assert!(matches!(store.insert(&d, &h, Some(&lost), NO_CAP).await, Err(StoreError::OpenActivationExists(_))));
    assert!(store.idempotency(caller, &fresh).await.unwrap().is_none(), "released");
}

async fn a_duplicate_id_is_refused(store: Arc<dyn Store>) {
    let first = inserted(&*store, ALICE, READER, SUB1, at(0)).await;
    let (b, f) = provisioned(&first.value, at(1));
    let v = store.update(&b, &first.version, &f).await.unwrap();
    let (c, g) = expired(&b, at(61));
    store.update(&c, &v, &g).await.unwrap();
    // The same id again, with a new event.
    let event = AuditEvent { id: uuid::Uuid::new_v4(), at: at(62), ..g };
    assert!(matches!(store.insert(&c, &event, None, NO_CAP).await, Err(StoreError::Duplicate(id)) if id == c.id()));
}

async fn due_reads_only_what_is_due_in_order_with_a_cursor(store: Arc<dyn Store>) {
    // Active activations expiring at minute 61, 62, …, and one not due for long.
    let mut ids = Vec::new();
    for (i, role) in [READER, CONTRIBUTOR].iter().enumerate() {
        for (j, principal) in [ALICE, BOB].iter().enumerate() {
            let minute = (i * 2 + j) as i64;
            let a = inserted(&*store, principal, role, SUB1, at(minute)).await;
            let (b, f) = provisioned(&a.value, at(minute));
            store.update(&b, &a.version, &f).await.unwrap();
            ids.push((b.due_at().unwrap(), b.id()));
        }
    }
    ids.sort();
    let pending = inserted(&*store, ALICE, READER, SUB2, at(-1)).await; // times out at 59
    assert!(store.due(at(58), None, 10).await.unwrap().is_empty());
    let due: Vec<_> = store.due(at(59), None, 10).await.unwrap().into_iter().map(|v| v.value.id()).collect();
    assert_eq!(due, vec![pending.value.id()]);
    let all: Vec<_> = store.due(at(200), None, 100).await.unwrap().into_iter().map(|v| v.value.id()).collect();
    assert_eq!(all.len(), 5);
    // Pages of two follow the cursor without repeats or gaps.
    let mut seen = Vec::new();
    let mut cursor: Option<DueCursor> = None;
    loop {
        let page = store.due(at(200), cursor.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        let last = page.last().unwrap();
        cursor = Some(DueCursor { due_at: last.value.due_at().unwrap(), id: last.value.id() });
        seen.extend(page.iter().map(|v| (v.value.due_at().unwrap(), v.value.id())));
    }
    let mut expected: Vec<_> = ids.clone();
    expected.push((at(59), pending.value.id()));
    expected.sort();
    assert_eq!(seen, expected);
    // What is due carries a version the sweeper can update with.
    let first = store.due(at(200), None, 1).await.unwrap().remove(0);
    let (t, e) = {
        let t = first.value.clone().time_out(at(200)).unwrap();
        let e = AuditEvent::of(&t, Actor::System, None, None, at(200));
        (t.activation, e)
    };
    store.update(&t, &first.version, &e).await.unwrap();
    assert_eq!(store.due(at(200), None, 100).await.unwrap().len(), 4, "terminal activations leave the index");
}

async fn a_new_due_time_replaces_the_old_one(store: Arc<dyn Store>) {
    let a = inserted(&*store, ALICE, READER, SUB1, at(0)).await; // Provisioning: due within a minute
    let provisioning_due = a.value.due_at().unwrap();
    let (b, f) = provisioned(&a.value, at(0));
    store.update(&b, &a.version, &f).await.unwrap();
    let expires = b.due_at().unwrap();
    assert!(expires > provisioning_due + TimeDelta::minutes(30));
    // Long after the old due time, only the new one counts, and only once.
    assert!(store.due(expires - TimeDelta::minutes(1), None, 10).await.unwrap().is_empty());
    let due = store.due(expires, None, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].value, b);
}

async fn listing_filters_and_orders_newest_first(store: Arc<dyn Store>) {
    let a1 = inserted(&*store, ALICE, READER, SUB1, at(0)).await;
    let a2 = inserted(&*store, ALICE, CONTRIBUTOR, SUB1, at(5)).await;
    let b1 = inserted(&*store, BOB, READER, SUB2, at(3)).await;
    let (x, e) = provisioned(&a1.value, at(6));
    store.update(&x, &a1.version, &e).await.unwrap();
    let ids = |v: Page<Activation>| v.items.into_iter().map(|a| a.id()).collect::<Vec<_>>();
    let all = store.list(&ActivationQuery { limit: 10, now: at(6), ..Default::default() }).await.unwrap();
    assert_eq!(ids(all), vec![a2.value.id(), b1.value.id(), a1.value.id()]);
    let alice = store
        .list(&ActivationQuery {
            principal_id: Some(PrincipalId::parse(ALICE).unwrap()),
            limit: 10,
            now: at(6),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(alice), vec![a2.value.id(), a1.value.id()]);
    let active = store
        .list(&ActivationQuery { statuses: vec![Status::Active], limit: 10, now: at(6), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ids(active), vec![a1.value.id()]);
    let two = store
        .list(&ActivationQuery {
            statuses: vec![Status::Active, Status::PendingApproval],
            limit: 10,
            now: at(6),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(two), vec![b1.value.id(), a1.value.id()]);
    let limited = store.list(&ActivationQuery { limit: 1, now: at(6), ..Default::default() }).await.unwrap();
    assert!(limited.next.is_some(), "more follow");
    assert_eq!(ids(limited), vec![a2.value.id()]);
}

async fn audit_queries_by_activation_principal_and_time(store: Arc<dyn Store>) {
    let a = inserted(&*store, ALICE, READER, SUB1, at(0)).await;
    let b = inserted(&*store, BOB, READER, SUB1, at(2)).await;
    let (x, e) = provisioned(&a.value, at(4));
    store.update(&x, &a.version, &e).await.unwrap();
    let alice = PrincipalId::parse(ALICE).unwrap();
    let by_principal =
        store.audit(&AuditQuery { principal_id: Some(alice), limit: 10, ..Default::default() }).await.unwrap().items;
    assert_eq!(by_principal.iter().map(|e| e.at).collect::<Vec<_>>(), vec![at(0), at(4)]);
    assert!(by_principal.iter().all(|e| e.principal_id == alice));
    let since = store.audit(&AuditQuery { since: Some(at(1)), limit: 10, ..Default::default() }).await.unwrap().items;
    assert_eq!(
        since.iter().map(|e| (e.activation_id, e.at)).collect::<Vec<_>>(),
        vec![(b.value.id(), at(2)), (a.value.id(), at(4))]
    );
    let first = store.audit(&AuditQuery { limit: 1, ..Default::default() }).await.unwrap().items;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].at, at(0), "oldest first");
}

async fn a_change_queues_its_notice_in_the_same_write(store: Arc<dyn Store>) {
    let pending = inserted(&*store, ALICE, READER, SUB2, at(0)).await;
    let due = store.outbox_due(at(0), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].value.kind, elevate::domain::notification::Kind::ApprovalNeeded);
    assert_eq!(due[0].value.activation_id, pending.value.id());
    let events = store
        .audit(&AuditQuery { activation_id: Some(pending.value.id()), limit: 5, ..Default::default() })
        .await
        .unwrap()
        .items;
    assert_eq!(due[0].value.id, events[0].id, "the notice is keyed by its audit event");
    // A refused update queues nothing.
    let (c, g) = {
        let t = pending.value.clone().time_out(at(60)).unwrap();
        let e = AuditEvent::of(&t, Actor::System, None, None, at(60));
        (t.activation, e)
    };
    assert!(store.update(&c, &Version("1|-|stale".into()), &g).await.is_err());
    assert_eq!(store.outbox_due(at(60), 10).await.unwrap().len(), 1);
    store.update(&c, &pending.version, &g).await.unwrap();
    let kinds: Vec<_> = store.outbox_due(at(60), 10).await.unwrap().into_iter().map(|v| v.value.kind).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    // Not before its time.
    assert!(store.outbox_due(at(-1), 10).await.unwrap().is_empty());
}

async fn a_notice_is_claimed_once_and_done_is_final(store: Arc<dyn Store>) {
    use elevate::domain::notification::OutboxItem;
    let id = ActivationId::new_random();
    let notice = OutboxItem::expiring_soon(id, at(60), at(45));
    assert!(store.enqueue(&notice).await.unwrap());
    assert!(!store.enqueue(&notice).await.unwrap(), "one notice per id");
    let read = store.outbox_due(at(45), 10).await.unwrap().remove(0);
    let mut mine = read.value.clone();
    mine.next_at = at(47);
    let mut theirs = read.value.clone();
    theirs.next_at = at(48);
    let (s1, s2) = (Arc::clone(&store), Arc::clone(&store));
    let (v1, v2) = (read.version.clone(), read.version.clone());
    let (a, b) =
        tokio::join!(
            async move { s1.outbox_save(&mine, &v1).await },
            async move { s2.outbox_save(&theirs, &v2).await }
        );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1, "exactly one claim wins: {a:?} {b:?}");
    let (winner, version) = match (a, b) {
        (Ok(v), _) => (at(47), v),
        (_, Ok(v)) => (at(48), v),
        _ => unreachable!(),
    };
    assert!(store.outbox_due(at(46), 10).await.unwrap().is_empty(), "leased");
    let mut done = read.value.clone();
    done.next_at = winner;
    done.delivered = vec!["teams".into()];
    assert!(matches!(store.outbox_remove(&done, &read.version).await, Err(StoreError::Conflict)), "stale claim");
    store.outbox_remove(&done, &version).await.unwrap();
    assert!(store.outbox_due(at(500), 10).await.unwrap().is_empty(), "done is not due again");
    assert!(!store.enqueue(&notice).await.unwrap(), "and is not queued again");
    assert!(matches!(store.outbox_save(&done, &version).await, Err(StoreError::Conflict)));
}

async fn upcoming_reads_ahead_without_touching_anything(store: Arc<dyn Store>) {
    let a = inserted(&*store, ALICE, READER, SUB1, at(0)).await;
    let (b, f) = provisioned(&a.value, at(0));
    store.update(&b, &a.version, &f).await.unwrap(); // expires at 60
    let pending = inserted(&*store, BOB, READER, SUB2, at(0)).await; // times out at 60
    assert!(store.upcoming(at(0), at(44), 10).await.unwrap().is_empty());
    let ahead = store.upcoming(at(45), at(60), 10).await.unwrap();
    let mut ids: Vec<_> = ahead.iter().map(Activation::id).collect();
    ids.sort_by_key(ToString::to_string);
    let mut expected = vec![b.id(), pending.value.id()];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(ids, expected);
    assert!(store.upcoming(at(60), at(90), 10).await.unwrap().is_empty(), "what is due now is not upcoming");
    assert_eq!(store.due(at(60), None, 10).await.unwrap().len(), 2);
}

fn ids(page: &Page<Activation>) -> Vec<ActivationId> {
    page.items.iter().map(Activation::id).collect()
}

/// Newest first: `requested_at` (to the millisecond) descending, then id.
fn newest_first(list: &mut [Activation]) {
    list.sort_by(|x, y| {
        y.request()
            .requested_at
            .timestamp_millis()
            .cmp(&x.request().requested_at.timestamp_millis())
            .then_with(|| x.id().to_string().cmp(&y.id().to_string()))
    });
}

/// Every page of `query`, joined; checks that no page is over its size.
async fn walk(store: &dyn Store, mut query: ActivationQuery) -> (Vec<ActivationId>, usize) {
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = store.list(&query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= query.limit, "a page of {} for {}", page.items.len(), query.limit);
        seen.extend(ids(&page));
        match page.next {
            Some(token) => query.after = Some(token),
            None => return (seen, pages),
        }
        assert!(pages < 100, "the pages do not end");
    }
}

async fn pages_join_to_the_whole_list_once_in_order(store: Arc<dyn Store>) {
    let alice = PrincipalId::parse(ALICE).unwrap();
    let mut mine = Vec::new();
    for i in 0..13 {
        // Two at a time share their instant: the id orders them.
        let a = inserted(&*store, ALICE, READER, &format!("{SUB1}/resourceGroups/rg{i}"), at(i / 2)).await;
        if i % 3 == 0 {
            let (b, e) = provisioned(&a.value, at(10));
            store.update(&b, &a.version, &e).await.unwrap();
            mine.push(b);
        } else {
            mine.push(a.value);
        }
    }
    let mut theirs = Vec::new();
    for i in 0..5 {
        theirs.push(inserted(&*store, BOB, READER, &format!("{SUB1}/resourceGroups/rg{i}"), at(i)).await.value);
    }
    newest_first(&mut mine);
    let expected: Vec<_> = mine.iter().map(Activation::id).collect();
    // Alice's, four at a time, while a new one arrives between the first and second page.
    let mut query = ActivationQuery { principal_id: Some(alice), limit: 4, now: at(20), ..Default::default() };
    let first = store.list(&query).await.unwrap();
    assert_eq!(ids(&first), expected[..4].to_vec());
    let newer = inserted(&*store, ALICE, CONTRIBUTOR, SUB1, at(15)).await;
    query.after = first.next.clone();
    let (rest, pages) = walk(&*store, query).await;
    assert_eq!([ids(&first), rest].concat(), expected, "each once, in order, and nothing newer");
    assert_eq!(pages, 3);
    // Everyone's, five at a time: Alice's, Bob's and the newer one, each once.
    let (everyone, _) = walk(&*store, ActivationQuery { limit: 5, now: at(20), ..Default::default() }).await;
    let mut all: Vec<Activation> = mine.iter().chain(&theirs).cloned().chain([newer.value.clone()]).collect();
    newest_first(&mut all);
    assert_eq!(everyone, all.iter().map(Activation::id).collect::<Vec<_>>());
    assert!(
        !ids(&store
            .list(&ActivationQuery { principal_id: Some(alice), limit: 100, now: at(20), ..Default::default() })
            .await
            .unwrap())
        .iter()
        .any(|id| theirs.iter().any(|t| t.id() == *id)),
        "nobody else's"
    );
    // Filtered by status: pages may be short, but joined they are exactly the matches.
    let (active, _) = walk(
        &*store,
        ActivationQuery {
            principal_id: Some(alice),
            statuses: vec![Status::Active],
            limit: 2,
            now: at(20),
            ..Default::default()
        },
    )
    .await;
    let expected_active: Vec<_> = mine.iter().filter(|a| a.status() == Status::Active).map(Activation::id).collect();
    assert_eq!(active, expected_active);
    assert_eq!(active.len(), 5);
    // A token the store did not make is refused, never a failure.
    for garbage in ["garbage", "000000000000001_not-an-id", "s12", "", "999999999999999_"] {
        let query = ActivationQuery { after: Some(PageToken::new(garbage.into())), limit: 5, ..Default::default() };
        assert!(matches!(store.list(&query).await, Err(StoreError::InvalidPageToken(_))), "{garbage:?}");
    }
}

async fn the_inbox_finds_an_old_request_behind_a_thousand_newer_ones(store: Arc<dyn Store>) {
    let rule = elevate::domain::ids::RuleId::parse("approved").unwrap();
    let old = inserted(&*store, ALICE, READER, SUB2, at(-50)).await;
    assert_eq!(old.value.status(), Status::PendingApproval);
    // 1,051 newer activations of others: 1,000 active (the old inbox read the newest 1,000
    // pending or active, then dropped them as not awaiting: the old request was the 1,001st)
    // and 51 finished.
    futures_util::stream::iter(0..1051)
        .map(|i| {
            let store = Arc::clone(&store);
            async move {
                let then = at(-40) + TimeDelta::seconds(i);
                let (a, _) = open_member(PrincipalId::parse(&uuid::Uuid::new_v4().to_string()).unwrap(), SUB1, then);
                let (b, e) = provisioned(&a, then);
                let (b, e) = if i % 21 == 0 { expired(&b, then + TimeDelta::hours(1)) } else { (b, e) };
                store.insert(&b, &e, None, NO_CAP).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let inbox = |after: Option<PageToken>, rules: Vec<elevate::domain::ids::RuleId>| AwaitingQuery {
        rules,
        limit: 10,
        after,
        now: at(0),
    };
    let page = store.awaiting_decision(&inbox(None, vec![rule.clone()])).await.unwrap();
    assert_eq!(ids(&page), vec![old.value.id()]);
    assert!(page.next.is_none());
    let direct = elevate::domain::ids::RuleId::parse("direct").unwrap();
    assert!(store.awaiting_decision(&inbox(None, vec![direct])).await.unwrap().items.is_empty(), "another rule's");
    // What the inbox read before: the newest 1,000 pending or active. It missed the old one.
    let old_inbox = store
        .list(&ActivationQuery {
            statuses: vec![Status::PendingApproval, Status::Active],
            limit: 1000,
            now: at(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!ids(&old_inbox).contains(&old.value.id()), "the old inbox would have found it");
    // Decided, it leaves the inbox.
    let (b, e) = approved(&old.value, at(1));
    store.update(&b, &old.version, &e).await.unwrap();
    assert!(store.awaiting_decision(&inbox(None, vec![rule])).await.unwrap().items.is_empty());
}

async fn the_awaiting_index_follows_requests_and_extensions(store: Arc<dyn Store>) {
    let rule = elevate::domain::ids::RuleId::parse("approved").unwrap();
    let inbox = |after: Option<PageToken>| AwaitingQuery { rules: vec![rule.clone()], limit: 2, after, now: at(30) };
    // Five pending requests, newest first, two a page.
    let mut pending = Vec::new();
    for (i, (principal, role)) in
        [(ALICE, READER), (ALICE, CONTRIBUTOR), (BOB, READER), (BOB, CONTRIBUTOR)].into_iter().enumerate()
    {
        let scope = if i % 2 == 0 { SUB2.to_owned() } else { format!("{SUB2}/resourceGroups/x") };
        pending.push(inserted(&*store, principal, role, &scope, at(i as i64)).await);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.awaiting_decision(&inbox(after)).await.unwrap();
        seen.extend(ids(&page));
        match page.next {
            Some(t) => after = Some(t),
            None => break,
        }
    }
    let mut expected: Vec<Activation> = pending.iter().map(|v| v.value.clone()).collect();
    newest_first(&mut expected);
    assert_eq!(seen, expected.iter().map(Activation::id).collect::<Vec<_>>());
    // Approved and active, nothing waits; an extension waits again, until approved.
    let first = &pending[0];
    let (b, e) = approved(&first.value, at(10));
    let v = store.update(&b, &first.version, &e).await.unwrap();
    let (c, f) = provisioned(&b, at(10));
    let v = store.update(&c, &v, &f).await.unwrap();
    let waiting = |page: Page<Activation>| ids(&page).contains(&first.value.id());
    assert!(!waiting(store.awaiting_decision(&AwaitingQuery { limit: 10, ..inbox(None) }).await.unwrap()));
    let (d, g) = extension_requested(&c, at(20));
    let v = store.update(&d, &v, &g).await.unwrap();
    assert!(waiting(store.awaiting_decision(&AwaitingQuery { limit: 10, ..inbox(None) }).await.unwrap()));
    let (x, h) = approved(&d, at(21));
    let v = store.update(&x, &v, &h).await.unwrap();
    assert!(!waiting(store.awaiting_decision(&AwaitingQuery { limit: 10, ..inbox(None) }).await.unwrap()));
    // A second extension is a new episode: it waits again.
    let (y, k) = extension_requested(&x, at(25));
    store.update(&y, &v, &k).await.unwrap();
    let page = store.awaiting_decision(&AwaitingQuery { limit: 10, ..inbox(None) }).await.unwrap();
    assert!(waiting(page.clone()));
    assert_eq!(page.items.iter().find(|a| a.id() == first.value.id()), Some(&y));
    assert!(matches!(
        store.awaiting_decision(&inbox(Some(PageToken::new("x".into())))).await,
        Err(StoreError::InvalidPageToken(_))
    ));
}

async fn the_open_cap_refuses_the_one_too_many_and_frees_as_activations_end(store: Arc<dyn Store>) {
    let scope = |i: usize| format!("{SUB1}/resourceGroups/cap{i}");
    let mut held = Vec::new();
    for i in 0..3 {
        let (a, e) = open(ALICE, READER, &scope(i), at(i as i64));
        let v = store.insert(&a, &e, None, 3).await.unwrap();
        held.push(Versioned { value: a, version: v });
    }
    let (fourth, e) = open(ALICE, READER, &scope(3), at(4));
    assert!(matches!(store.insert(&fourth, &e, None, 3).await, Err(StoreError::TooManyOpen { limit: 3 })));
    assert!(store.get(fourth.id()).await.unwrap().is_none(), "nothing written");
    let events =
        store.audit(&AuditQuery { activation_id: Some(fourth.id()), limit: 10, ..Default::default() }).await.unwrap();
    assert!(events.items.is_empty());
    // Pending approval counts too; another principal has caps of their own.
    let (pending, e) = open(ALICE, READER, SUB2, at(4));
    assert!(matches!(store.insert(&pending, &e, None, 3).await, Err(StoreError::TooManyOpen { .. })));
    inserted(&*store, BOB, READER, &scope(0), at(4)).await;
    // A refused request releases what it took: its key, and its (principal, role, scope) slot.
    let key = IdempotencyKey::parse("cap-key").unwrap();
    let alice = PrincipalId::parse(ALICE).unwrap();
    let record =
        IdempotencyRecord { caller: alice, key: key.clone(), request_hash: "h".into(), activation_id: fourth.id() };
    assert!(store.insert(&fourth, &e_of(&fourth), Some(&record), 3).await.is_err());
    assert!(store.idempotency(alice, &key).await.unwrap().is_none());
    // Once one ends, there is room for one more.
    let first = &held[0];
    let (b, f) = provisioned(&first.value, at(5));
    let v = store.update(&b, &first.version, &f).await.unwrap();
    let (c, g) = expired(&b, at(65));
    store.update(&c, &v, &g).await.unwrap();
    store.insert(&fourth, &e_of(&fourth), None, 3).await.unwrap();
    let (fifth, e) = open(ALICE, READER, &scope(5), at(66));
    assert!(matches!(store.insert(&fifth, &e, None, 3).await, Err(StoreError::TooManyOpen { limit: 3 })));
}

/// The event that opened `a` (its first).
fn e_of(a: &Activation) -> AuditEvent {
    let t = elevate::domain::activation::Transition {
        activation: a.clone(),
        action: elevate::domain::activation::Action::Requested,
        before: None,
        note: None,
    };
    AuditEvent::of(&t, Actor::Principal { id: a.request().principal_id }, None, None, a.request().requested_at)
}

/// Inserts `count` open activations for Bob at once under a cap of `cap`: how many were taken.
async fn race_for_the_cap(store: &Arc<dyn Store>, count: usize, cap: usize) -> usize {
    let results = futures_util::future::join_all((0..count).map(|i| {
        let store = Arc::clone(store);
        async move {
            let (a, e) = open(BOB, READER, &format!("{SUB1}/resourceGroups/race{i}"), at(0));
            store.insert(&a, &e, None, cap).await
        }
    }))
    .await;
    for r in &results {
        assert!(matches!(r, Ok(_) | Err(StoreError::TooManyOpen { .. })), "{r:?}");
    }
    results.iter().filter(|r| r.is_ok()).count()
}

async fn open_count(store: &dyn Store, principal: &str) -> usize {
    let query = ActivationQuery {
        principal_id: Some(PrincipalId::parse(principal).unwrap()),
        limit: 500,
        now: at(0),
        ..Default::default()
    };
    store.list(&query).await.unwrap().items.iter().filter(|a| !a.status().is_terminal()).count()
}

async fn concurrent_inserts_never_exceed_the_open_cap(store: Arc<dyn Store>) {
    let taken = race_for_the_cap(&store, 12, 4).await;
    assert!(taken <= 4, "{taken} taken under a cap of 4");
    assert_eq!(open_count(&*store, BOB).await, taken);
    // What the race left free is taken one at a time, exactly up to the cap.
    let mut more = 0;
    for i in 0..10 {
        let (a, e) = open(BOB, CONTRIBUTOR, &format!("{SUB1}/resourceGroups/after{i}"), at(1));
        match store.insert(&a, &e, None, 4).await {
            Ok(_) => more += 1,
            Err(StoreError::TooManyOpen { limit: 4 }) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(taken + more, 4);
    assert_eq!(open_count(&*store, BOB).await, 4);
}

async fn audit_pages_join_to_the_trail_oldest_first(store: Arc<dyn Store>) {
    // Written in time order, as they happen.
    let mut opened = Vec::new();
    for (i, principal) in [ALICE, BOB, ALICE, BOB].into_iter().enumerate() {
        let role = if i < 2 { READER } else { CONTRIBUTOR };
        opened.push(inserted(&*store, principal, role, SUB1, at(i as i64)).await);
    }
    let mut activations = Vec::new();
    for (i, a) in opened.iter().enumerate() {
        let (b, e) = provisioned(&a.value, at(10 + i as i64));
        let v = store.update(&b, &a.version, &e).await.unwrap();
        activations.push((b, v));
    }
    let (b, v) = &activations[0];
    let (c, g) = expired(b, at(70));
    store.update(&c, v, &g).await.unwrap();
    let whole = |query: AuditQuery| {
        let store = Arc::clone(&store);
        async move {
            let all = store.audit(&AuditQuery { limit: 100, after: None, ..query.clone() }).await.unwrap();
            assert!(all.next.is_none());
            let mut joined = Vec::new();
            let mut after = None;
            loop {
                let page = store.audit(&AuditQuery { limit: 2, after, ..query.clone() }).await.unwrap();
                assert!(page.items.len() <= 2);
                joined.extend(page.items.iter().map(|e| e.id));
                match page.next {
                    Some(t) => after = Some(t),
                    None => break,
                }
            }
            assert_eq!(joined, all.items.iter().map(|e| e.id).collect::<Vec<_>>());
            all.items
        }
    };
    let everything = whole(AuditQuery::default()).await;
    assert_eq!(everything.len(), 9);
    assert!(everything.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    let first = whole(AuditQuery { activation_id: Some(c.id()), ..Default::default() }).await;
    assert_eq!(first.len(), 3);
    let alice = PrincipalId::parse(ALICE).unwrap();
    let hers = whole(AuditQuery { principal_id: Some(alice), ..Default::default() }).await;
    assert_eq!(hers.len(), 5);
    let later = whole(AuditQuery { since: Some(at(11)), ..Default::default() }).await;
    assert_eq!(later.len(), 4);
    for garbage in ["garbage", "s", "event_x", "2026-11-25T12:00:00.000Z|x|event_000001"] {
        for query in [AuditQuery::default(), AuditQuery { activation_id: Some(c.id()), ..Default::default() }] {
            let query = AuditQuery { after: Some(PageToken::new(garbage.into())), limit: 2, ..query };
            assert!(matches!(store.audit(&query).await, Err(StoreError::InvalidPageToken(_))), "{garbage:?}");
        }
    }
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

fn kind(value: &str) -> RecordKind {
    RecordKind::parse(value).unwrap()
}

fn rid(value: &str) -> RecordId {
    RecordId::parse(value).unwrap()
}

fn versioned(body: &str, version: &Version) -> Versioned<String> {
    Versioned { value: body.to_owned(), version: version.clone() }
}

async fn a_record_is_created_read_back_and_replaced_with_its_version(store: Arc<dyn Store>) {
    let (alert, id) = (kind("alert"), rid("alert-1"));
    assert_eq!(store.record(&alert, &id).await.unwrap(), None, "an unknown record");
    let v1 = store.put_record(&alert, &id, r#"{"state":"open"}"#, None).await.unwrap();
    assert_eq!(store.record(&alert, &id).await.unwrap(), Some(versioned(r#"{"state":"open"}"#, &v1)));
    let v2 = store.put_record(&alert, &id, r#"{"state":"closed"}"#, Some(&v1)).await.unwrap();
    assert_ne!(v1, v2);
    assert_eq!(store.record(&alert, &id).await.unwrap(), Some(versioned(r#"{"state":"closed"}"#, &v2)));
    // The version read before the last write; a second create; versions this store never made.
    let stale = store.put_record(&alert, &id, r#"{"state":"stale"}"#, Some(&v1)).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    let again = store.put_record(&alert, &id, r#"{"state":"again"}"#, None).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    for made_up in ["garbage", "*", "", "0"] {
        let result = store.put_record(&alert, &id, r#"{"state":"made up"}"#, Some(&Version(made_up.into()))).await;
        assert!(matches!(result, Err(StoreError::Conflict)), "{made_up:?}: {result:?}");
    }
    assert_eq!(store.record(&alert, &id).await.unwrap(), Some(versioned(r#"{"state":"closed"}"#, &v2)), "unchanged");
    // A version is no way to create a record that does not exist.
    let absent = store.put_record(&alert, &rid("alert-2"), "{}", Some(&v2)).await;
    assert!(matches!(absent, Err(StoreError::Conflict)), "{absent:?}");
    assert_eq!(store.record(&alert, &rid("alert-2")).await.unwrap(), None);
    // The same id under another kind is another record.
    assert_eq!(store.record(&kind("review"), &id).await.unwrap(), None);
    let v3 = store.put_record(&alert, &id, r#"{"state":"reopened"}"#, Some(&v2)).await.unwrap();
    assert_eq!(store.record(&alert, &id).await.unwrap(), Some(versioned(r#"{"state":"reopened"}"#, &v3)));
    let trail = store.audit(&AuditQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert!(trail.items.is_empty(), "records write no audit events: {trail:?}");
}

async fn two_concurrent_record_writes_one_wins(store: Arc<dyn Store>) {
    let alert = kind("alert");
    for round in 0..5 {
        let id = rid(&format!("race-{round}"));
        let mut expected: Option<Version> = None;
        // First two creates, then two replaces from the same version.
        for step in ["create", "replace"] {
            let race = |body: String| {
                let (store, alert, id, expected) = (Arc::clone(&store), alert.clone(), id.clone(), expected.clone());
                tokio::spawn(async move { store.put_record(&alert, &id, &body, expected.as_ref()).await })
            };
            let bodies = [format!(r#"{{"{step}":1}}"#), format!(r#"{{"{step}":2}}"#)];
            let (one, two) = (race(bodies[0].clone()), race(bodies[1].clone()));
            let results = [one.await.unwrap(), two.await.unwrap()];
            let wins: Vec<usize> = (0..2).filter(|&i| results[i].is_ok()).collect();
            let conflicts = results.iter().filter(|r| matches!(r, Err(StoreError::Conflict))).count();
            assert_eq!((wins.len(), conflicts), (1, 1), "round {round}, {step}: {results:?}");
            let winner = wins[0];
            let version = results[winner].as_ref().unwrap().clone();
            let stored = store.record(&alert, &id).await.unwrap();
            assert_eq!(stored, Some(versioned(&bodies[winner], &version)), "round {round}, {step}: the winner's");
            expected = Some(version);
        }
    }
}

async fn records_are_listed_by_kind_in_id_order_up_to_the_limit(store: Arc<dyn Store>) {
    let (alert, review, archive) = (kind("alert"), kind("review"), kind("alert-archive"));
    for id in ["c", "a", "e", "b", "d"] {
        store.put_record(&alert, &rid(id), &format!(r#"{{"id":"{id}"}}"#), None).await.unwrap();
    }
    store.put_record(&review, &rid("a"), r#"{"review":"a"}"#, None).await.unwrap();
    store.put_record(&archive, &rid("aa"), r#"{"archived":"aa"}"#, None).await.unwrap();
    let v = store.record(&alert, &rid("d")).await.unwrap().unwrap().version;
    let v = store.put_record(&alert, &rid("d"), r#"{"id":"d","seen":true}"#, Some(&v)).await.unwrap();
    let all = store.records(&alert, 10).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    for (id, listed) in &all {
        assert_eq!(Some(listed), store.record(&alert, id).await.unwrap().as_ref(), "{id}: as a read finds it");
    }
    assert_eq!(all[3].1, versioned(r#"{"id":"d","seen":true}"#, &v), "the latest version");
    let first: Vec<RecordId> = store.records(&alert, 2).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(first, [rid("a"), rid("b")]);
    assert!(store.records(&alert, 0).await.unwrap().is_empty());
    assert_eq!(store.records(&alert, usize::MAX).await.unwrap(), all, "asking for more gets them all");
    let reviews = store.records(&review, 10).await.unwrap();
    assert_eq!(reviews.len(), 1);
    assert_eq!((reviews[0].0.as_str(), reviews[0].1.value.as_str()), ("a", r#"{"review":"a"}"#));
    let archived: Vec<RecordId> = store.records(&archive, 10).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(archived, [rid("aa")], "a kind that begins with another's name is another kind");
    assert!(store.records(&kind("none"), 10).await.unwrap().is_empty());
}

async fn record_ids_of_every_allowed_character_round_trip(store: Arc<dyn Store>) {
    let longest_kind = kind("abcdefghijklmnopqrstuvwxyz------");
    let every = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:";
    // `activation` and `event_000001` are other entities' RowKeys in Table Storage.
    let mut ids: Vec<String> = [every, "-", "_", ".", "..", ":", "Z", "a", "activation", "event_000001"]
        .into_iter()
        .map(str::to_owned)
        .chain(["2026-11-25T12:00:00.000Z".to_owned(), "x".repeat(RecordId::MAX_CHARS)])
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let body = format!(r#"{{"n":{i},"id":"{id}"}}"#);
        let v = store.put_record(&longest_kind, &rid(id), &body, None).await.unwrap();
        assert_eq!(store.record(&longest_kind, &rid(id)).await.unwrap(), Some(versioned(&body, &v)), "{id}");
    }
    // Bytewise order: `-` `.` digits `:` upper case `_` lower case.
    ids.sort();
    let listed: Vec<String> =
        store.records(&longest_kind, 100).await.unwrap().into_iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(listed, ids);
    // Nothing that reads activations takes a record for one.
    let page = store.list(&ActivationQuery { limit: 10, now: at(0), ..Default::default() }).await.unwrap();
    assert!(page.items.is_empty(), "{page:?}");
    let trail = store.audit(&AuditQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert!(trail.items.is_empty(), "{trail:?}");
    inserted(&*store, ALICE, READER, SUB1, at(0)).await;
    assert_eq!(
        store.list(&ActivationQuery { limit: 10, now: at(0), ..Default::default() }).await.unwrap().items.len(),
        1
    );
}

async fn an_oversize_record_body_is_refused_and_nothing_is_stored(store: Arc<dyn Store>) {
    let alert = kind("alert");
    // 64 KiB as Table Storage counts a string (UTF-16): 32 Ki ASCII characters.
    let most = "x".repeat(MAX_RECORD_BODY_BYTES / 2);
    let v = store.put_record(&alert, &rid("big"), &most, None).await.unwrap();
    assert_eq!(store.record(&alert, &rid("big")).await.unwrap(), Some(versioned(&most, &v)));
    let over = format!("{most}x");
    match store.put_record(&alert, &rid("bigger"), &over, None).await {
        Err(StoreError::TooLarge(m)) => assert!(m.contains("65536"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.record(&alert, &rid("bigger")).await.unwrap(), None, "nothing stored");
    let replaced = store.put_record(&alert, &rid("big"), &over, Some(&v)).await;
    assert!(matches!(replaced, Err(StoreError::TooLarge(_))), "{replaced:?}");
    assert_eq!(store.record(&alert, &rid("big")).await.unwrap(), Some(versioned(&most, &v)), "unchanged");
    // And 64 KiB of UTF-8: three bytes a character.
    let euros = "€".repeat(MAX_RECORD_BODY_BYTES / 3);
    let e = store.put_record(&alert, &rid("euros"), &euros, None).await.unwrap();
    assert_eq!(store.record(&alert, &rid("euros")).await.unwrap(), Some(versioned(&euros, &e)));
    let more = store.put_record(&alert, &rid("more-euros"), &format!("{euros}€"), None).await;
    assert!(matches!(more, Err(StoreError::TooLarge(_))), "{more:?}");
    let listed: Vec<RecordId> = store.records(&alert, 10).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed, [rid("big"), rid("euros")]);
}

/// Where the store can count inside its write transaction, the cap is exact under concurrency.
mod sqlite_only {
    use super::*;

    #[tokio::test]
    async fn concurrent_inserts_take_exactly_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(elevate::adapters::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        assert_eq!(race_for_the_cap(&store, 12, 4).await, 4);
        assert_eq!(open_count(&*store, BOB).await, 4);
    }
}

/// What only the Table Storage store has to get right: continuation, key and size checks,
/// the due index's leftovers, and retries whose first attempt landed.
mod tables_only {
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;

    use elevate::adapters::store::table_client::{Properties, TableError};
    use serde_json::json;

    use super::*;
    use crate::support::azurite::azurite;
    use crate::support::fake_http::{FakeReply, FakeRequest, serve};
    use crate::support::raw_table;

    fn entity(partition: &str, row: &str, extra: serde_json::Value) -> Properties {
        let mut p: Properties = serde_json::from_value(extra).unwrap();
        p.insert("PartitionKey".into(), partition.into());
        p.insert("RowKey".into(), row.into());
        p
    }

    #[tokio::test]
    async fn queries_follow_continuations_to_the_end() {
        let table = raw_table(&azurite().tables(std::env::temp_dir().join("unused.db")));
        for i in 0..7 {
            table.insert(&entity("p", &format!("r{i}"), json!({"N": i.to_string()}))).await.unwrap();
        }
        table.insert(&entity("q", "other", json!({}))).await.unwrap();
        // Two per page: four pages, each but the last with continuation headers.
        let rows = table.query("PartitionKey eq 'p'", 2, usize::MAX).await.unwrap();
        let rows: Vec<_> = rows.iter().map(|r| r["RowKey"].as_str().unwrap().to_owned()).collect();
        assert_eq!(rows, (0..7).map(|i| format!("r{i}")).collect::<Vec<_>>());
        assert_eq!(table.query("PartitionKey eq 'p'", 2, 3).await.unwrap().len(), 3, "stops at the bound");
    }

    #[tokio::test]
    async fn bad_keys_and_oversized_values_are_refused_before_sending() {
        let table = raw_table(&azurite().tables(std::env::temp_dir().join("unused.db")));
        // Azurite would answer 500 with an empty body for this key; Azure 400.
        assert!(matches!(table.get("bad/key", "r").await, Err(TableError::InvalidKey(_))));
        assert!(matches!(table.insert(&entity("p", "a#b", json!({}))).await, Err(TableError::InvalidKey(_))));
        let huge = entity("p", "big", json!({"Body": "x".repeat(33_000)}));
        match table.insert(&huge).await {
            Err(TableError::TooLarge(m)) => assert!(m.contains("`Body`"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(table.get("p", "big").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn stale_due_index_entries_are_skipped_and_old_ones_removed() {
        let settings = azurite().tables(std::env::temp_dir().join("unused.db"));
        let store = elevate::startup::table_store(&settings).unwrap();
        let table = raw_table(&settings);
        let a = inserted(&store, ALICE, READER, SUB1, at(0)).await;
        let (b, f) = provisioned(&a.value, at(0));
        store.update(&b, &a.version, &f).await.unwrap();
        // Leftovers a crash between index write and transaction could leave: one old, one young,
        // and one for an activation that was never written.
        let old = format!("{:015}_{}", at(-30).timestamp_millis(), b.id());
        let young = format!("{:015}_{}", at(55).timestamp_millis(), b.id());
        let ghost = format!("{:015}_{}", at(-30).timestamp_millis(), ActivationId::new_random());
        for row in [&old, &young, &ghost] {
            let id = row.split_once('_').unwrap().1;
            table.insert(&entity("due", row, json!({"ActivationId": id}))).await.unwrap();
        }
        let due = store.due(at(58), None, 10).await.unwrap();
        assert!(due.is_empty(), "leftovers are never returned: {due:?}");
        assert!(table.get("due", &old).await.unwrap().is_none(), "old leftover removed");
        assert!(table.get("due", &ghost).await.unwrap().is_none(), "ghost removed");
        assert!(table.get("due", &young).await.unwrap().is_some(), "a young one may be a write in flight");
        let due = store.due(at(60), None, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].value, b);
    }

    /// An activation's newest-first key, as the list indexes write it.
    fn list_key(requested_at: DateTime<Utc>, id: ActivationId) -> String {
        format!("{:015}_{id}", 999_999_999_999_999 - requested_at.timestamp_millis())
    }

    fn index_entry(partition: &str, row: &str, id: ActivationId, written: DateTime<Utc>) -> Properties {
        let at = written.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        entity(partition, row, json!({"ActivationId": id.to_string(), "At": at}))
    }

    #[tokio::test]
    async fn stale_list_and_inbox_entries_are_skipped_and_old_ones_removed() {
        let settings = azurite().tables(std::env::temp_dir().join("unused.db"));
        let store = elevate::startup::table_store(&settings).unwrap();
        let table = raw_table(&settings);
        let a = inserted(&store, ALICE, READER, SUB2, at(0)).await;
        let episode = "_000000000000000";
        // Leftovers of writes that never landed (old and young), and an old entry whose key no
        // longer describes its activation.
        let (old_ghost, young_ghost) = (ActivationId::new_random(), ActivationId::new_random());
        let mut written = Vec::new();
        for (partition, suffix) in [("list", ""), (&*format!("list_{ALICE}"), ""), ("awaiting_approved", episode)] {
            for (row, id, when) in [
                (list_key(at(-30), old_ghost), old_ghost, at(-30)),
                (list_key(at(-1), young_ghost), young_ghost, at(-1)),
                (list_key(at(-20), a.value.id()), a.value.id(), at(-20)),
            ] {
                let row = format!("{row}{suffix}");
                table.insert(&index_entry(partition, &row, id, when)).await.unwrap();
                written.push((partition.to_owned(), row, id == young_ghost));
            }
        }
        let all = store.list(&ActivationQuery { limit: 10, now: at(0), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&all), vec![a.value.id()]);
        let alice = PrincipalId::parse(ALICE).unwrap();
        let query = ActivationQuery { principal_id: Some(alice), limit: 10, now: at(0), ..Default::default() };
        assert_eq!(ids(&store.list(&query).await.unwrap()), vec![a.value.id()]);
        let rule = elevate::domain::ids::RuleId::parse("approved").unwrap();
        let inbox = AwaitingQuery { rules: vec![rule], limit: 10, after: None, now: at(0) };
        assert_eq!(ids(&store.awaiting_decision(&inbox).await.unwrap()), vec![a.value.id()]);
        for (partition, row, young) in written {
            let kept = table.get(&partition, &row).await.unwrap().is_some();
            assert_eq!(kept, young, "{partition} {row}: only a young leftover may be a write in flight");
        }
    }

    #[tokio::test]
    async fn stale_open_reservations_are_not_counted_and_are_removed() {
        let settings = azurite().tables(std::env::temp_dir().join("unused.db"));
        let store = elevate::startup::table_store(&settings).unwrap();
        let table = raw_table(&settings);
        let held = format!("open_{ALICE}");
        let live = inserted(&store, ALICE, READER, &format!("{SUB1}/resourceGroups/a"), at(0)).await;
        let done = inserted(&store, ALICE, READER, &format!("{SUB1}/resourceGroups/b"), at(0)).await;
        let (p, e) = provisioned(&done.value, at(1));
        let v = store.update(&p, &done.version, &e).await.unwrap();
        let (b, e) = expired(&p, at(61));
        store.update(&b, &v, &e).await.unwrap();
        assert!(table.get(&held, &done.value.id().to_string()).await.unwrap().is_none(), "released when it ended");
        // Leftovers: a finished activation's reservation, and one of a write that never landed.
        let ghost = ActivationId::new_random();
        table.insert(&index_entry(&held, &done.value.id().to_string(), done.value.id(), at(0))).await.unwrap();
        table.insert(&index_entry(&held, &ghost.to_string(), ghost, at(-30))).await.unwrap();
        // Four entries, two live: a cap of two has room for this one.
        let (c, f) = open(ALICE, READER, &format!("{SUB1}/resourceGroups/c"), at(5));
        store.insert(&c, &f, None, 2).await.unwrap();
        assert!(table.get(&held, &done.value.id().to_string()).await.unwrap().is_none(), "removed");
        assert!(table.get(&held, &ghost.to_string()).await.unwrap().is_none(), "removed");
        assert!(table.get(&held, &live.value.id().to_string()).await.unwrap().is_some());
        // A young one may be a write in flight: it counts.
        let young = ActivationId::new_random();
        table.insert(&index_entry(&held, &young.to_string(), young, at(5))).await.unwrap();
        let (d, g) = open(ALICE, READER, &format!("{SUB1}/resourceGroups/d"), at(6));
        assert!(matches!(store.insert(&d, &g, None, 3).await, Err(StoreError::TooManyOpen { limit: 3 })));
        assert!(table.get(&held, &d.id().to_string()).await.unwrap().is_none(), "withdrawn");
    }

    #[tokio::test]
    async fn a_table_written_before_the_list_indexes_is_indexed_on_first_use() {
        let settings = azurite().tables(std::env::temp_dir().join("unused.db"));
        let before = elevate::startup::table_store(&settings).unwrap();
        let pending = inserted(&before, ALICE, READER, SUB2, at(0)).await;
        let active = inserted(&before, ALICE, READER, SUB1, at(1)).await;
        let (b, e) = provisioned(&active.value, at(1));
        before.update(&b, &active.version, &e).await.unwrap();
        let theirs = inserted(&before, BOB, READER, SUB1, at(2)).await;
        // What an older Elevate left: no list indexes, no cap reservations, no marker.
        let table = raw_table(&settings);
        for row in table.query("PartitionKey ne 'none'", 1000, usize::MAX).await.unwrap() {
            let partition = row["PartitionKey"].as_str().unwrap();
            if partition == "meta" || ["list", "awaiting_", "open_"].iter().any(|p| partition.starts_with(p)) {
                table.delete(partition, row["RowKey"].as_str().unwrap(), "*").await.unwrap();
            }
        }
        let store = elevate::startup::table_store(&settings).unwrap();
        let alice = PrincipalId::parse(ALICE).unwrap();
        let query = ActivationQuery { principal_id: Some(alice), limit: 10, now: at(3), ..Default::default() };
        assert_eq!(ids(&store.list(&query).await.unwrap()), vec![active.value.id(), pending.value.id()]);
        let all = store.list(&ActivationQuery { limit: 10, now: at(3), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&all), vec![theirs.value.id(), active.value.id(), pending.value.id()]);
        let rule = elevate::domain::ids::RuleId::parse("approved").unwrap();
        let inbox = AwaitingQuery { rules: vec![rule], limit: 10, after: None, now: at(3) };
        assert_eq!(ids(&store.awaiting_decision(&inbox).await.unwrap()), vec![pending.value.id()]);
        // Alice's two open ones are reserved again: a cap of two is full.
        let (c, f) = open(ALICE, CONTRIBUTOR, SUB1, at(4));
        assert!(matches!(store.insert(&c, &f, None, 2).await, Err(StoreError::TooManyOpen { limit: 2 })));
        assert!(table.get("meta", "indexes").await.unwrap().is_some());
    }

    /// With a history of 1,000 finished activations of others, a page reads its own index
    /// entries and point-reads what it returns: counted by a proxy in front of Azurite.
    #[tokio::test]
    async fn a_page_reads_what_it_returns_whatever_the_history() {
        use crate::support::table_proxy::{Read, counting_proxy};
        let settings = azurite().tables(std::env::temp_dir().join("unused.db"));
        let direct = Arc::new(elevate::startup::table_store(&settings).unwrap()) as Arc<dyn Store>;
        futures_util::stream::iter(0..1000)
            .map(|i| {
                let store = Arc::clone(&direct);
                async move {
                    let then = at(-300) + TimeDelta::seconds(i);
                    let member = PrincipalId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
                    let (a, _) = open_member(member, SUB1, then);
                    let (b, e) = expired(&provisioned(&a, then).0, then + TimeDelta::hours(1));
                    store.insert(&b, &e, None, NO_CAP).await.unwrap();
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let mut hers = Vec::new();
        for i in 0..8 {
            hers.push(inserted(&*direct, ALICE, READER, &format!("{SUB1}/resourceGroups/r{i}"), at(i)).await);
        }
        let pending = inserted(&*direct, BOB, READER, SUB2, at(9)).await;
        let (proxy, counts, _server) = counting_proxy(&azurite().base).await;
        let proxied = elevate::config::TablesSetting {
            endpoint: format!("{proxy}/{}", elevate::config::DEV_STORAGE_ACCOUNT),
            ..settings.clone()
        };
        let store = elevate::startup::table_store(&proxied).unwrap();
        store.ping().await.unwrap();
        store.list(&ActivationQuery { limit: 1, now: at(10), ..Default::default() }).await.unwrap();
        counts.take();
        let alice = PrincipalId::parse(ALICE).unwrap();
        let page = store
            .list(&ActivationQuery { principal_id: Some(alice), limit: 5, now: at(10), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 5);
        assert_eq!(counts.take(), Read { queries: 1, point_reads: 5, entities: 6 + 5, other: 0 });
        let page = store
            .list(&ActivationQuery {
                principal_id: Some(alice),
                limit: 5,
                after: page.next,
                now: at(10),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((page.items.len(), page.next.is_none()), (3, true));
        assert_eq!(counts.take(), Read { queries: 1, point_reads: 3, entities: 3 + 3, other: 0 });
        // Everyone's newest ten: the index's first eleven entries, ten point reads.
        let page = store.list(&ActivationQuery { limit: 10, now: at(10), ..Default::default() }).await.unwrap();
        assert_eq!(page.items.len(), 10);
        assert_eq!(counts.take(), Read { queries: 1, point_reads: 10, entities: 11 + 10, other: 0 });
        let rule = elevate::domain::ids::RuleId::parse("approved").unwrap();
        let inbox = AwaitingQuery { rules: vec![rule], limit: 10, after: None, now: at(10) };
        assert_eq!(ids(&store.awaiting_decision(&inbox).await.unwrap()), vec![pending.value.id()]);
        assert_eq!(counts.take(), Read { queries: 1, point_reads: 1, entities: 1 + 1, other: 0 });
        let trail = store
            .audit(&AuditQuery { activation_id: Some(hers[0].value.id()), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(trail.items.len(), 1);
        assert_eq!(counts.take(), Read { queries: 1, point_reads: 0, entities: 1, other: 0 });
        // The cap: one reservation, one read of the principal's reservations.
        let (c, f) = open(ALICE, CONTRIBUTOR, SUB1, at(11));
        store.insert(&c, &f, None, 10).await.unwrap();
        let insert = counts.take();
        assert_eq!((insert.queries, insert.entities), (1, 9), "{insert:?}");
    }

    #[tokio::test]
    async fn a_record_is_one_entity_in_its_kind_partition() {
        let settings = azurite().tables(std::env::temp_dir().join("unused.db"));
        let store = elevate::startup::table_store(&settings).unwrap();
        let v = store.put_record(&kind("alert"), &rid("a-1"), r#"{"n":1}"#, None).await.unwrap();
        let stored = raw_table(&settings).get("record-alert", "a-1").await.unwrap().unwrap();
        assert_eq!(
            (stored.properties["Kind"].as_str(), stored.properties["Body"].as_str()),
            (Some("record"), Some(r#"{"n":1}"#))
        );
        assert_eq!(Version(stored.etag), v, "the ETag is the version");
    }

    /// A proxy in front of Azurite that forwards every request, but answers the next `lose`
    /// record writes with 503 once the service has applied them: an answer lost on its way back.
    async fn lossy_proxy(target: &str, lose: Arc<AtomicUsize>) -> (String, tokio::task::JoinHandle<()>) {
        let target = target.trim_end_matches('/').to_owned();
        let client = crate::support::http_client();
        let (addr, task) = serve(Arc::new(move |req: FakeRequest| {
            let (lose, target, client) = (Arc::clone(&lose), target.clone(), client.clone());
            Box::pin(async move {
                let mut url = format!("{target}{}", req.path);
                if !req.raw_query.is_empty() {
                    url.push('?');
                    url.push_str(&req.raw_query);
                }
                let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
                let mut forward = client.request(method, url).body(req.body.clone());
                for (name, value) in &req.headers {
                    if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                        forward = forward.header(name, value);
                    }
                }
                let Ok(answer) = forward.send().await else { return FakeReply::Drop };
                let is_record_write = String::from_utf8_lossy(&req.body).contains("\"WriteId\"");
                if is_record_write && lose.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
                    return FakeReply::empty(503);
                }
                let status = answer.status().as_u16();
                let headers: Vec<(String, String)> = answer
                    .headers()
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "content-length" | "connection" | "transfer-encoding"))
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                let body = answer.bytes().await.unwrap_or_default().to_vec();
                FakeReply::Respond { status, headers, body }
            })
        }))
        .await;
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn a_record_write_whose_answer_was_lost_is_recognised_on_retry() {
        let settings = azurite().tables(std::env::temp_dir().join("unused.db"));
        let lose = Arc::new(AtomicUsize::new(0));
        let (proxy, _server) = lossy_proxy(&azurite().base, Arc::clone(&lose)).await;
        let proxied = elevate::config::TablesSetting {
            endpoint: format!("{proxy}/{}", elevate::config::DEV_STORAGE_ACCOUNT),
            ..settings.clone()
        };
        let store = elevate::startup::table_store(&proxied).unwrap();
        let (alert, id) = (kind("alert"), rid("a-1"));
        // The create lands, its answer is lost, the retry meets the record: ours, not a conflict.
        lose.store(1, SeqCst);
        let v1 = store.put_record(&alert, &id, r#"{"n":1}"#, None).await.unwrap();
        assert_eq!(lose.load(SeqCst), 0, "an answer was lost");
        assert_eq!(store.record(&alert, &id).await.unwrap(), Some(versioned(r#"{"n":1}"#, &v1)));
        // The same for a replace: the retry's ETag no longer matches, but the write is ours.
        lose.store(1, SeqCst);
        let v2 = store.put_record(&alert, &id, r#"{"n":2}"#, Some(&v1)).await.unwrap();
        assert_eq!(lose.load(SeqCst), 0, "an answer was lost");
        assert_eq!(store.record(&alert, &id).await.unwrap(), Some(versioned(r#"{"n":2}"#, &v2)));
        // Another write from the old version, or another create, is still a conflict.
        assert!(matches!(store.put_record(&alert, &id, r#"{"n":3}"#, Some(&v1)).await, Err(StoreError::Conflict)));
        assert!(matches!(store.put_record(&alert, &id, r#"{"n":3}"#, None).await, Err(StoreError::Conflict)));
        assert_eq!(store.record(&alert, &id).await.unwrap(), Some(versioned(r#"{"n":2}"#, &v2)));
    }

    #[tokio::test]
    async fn a_write_whose_answer_was_lost_is_recognised_on_retry() {
        let store = super::table_store();
        let (a, e) = open(ALICE, READER, SUB1, at(0));
        let v1 = store.insert(&a, &e, None, NO_CAP).await.unwrap();
        // The same insert again (what a retry after a lost answer sends): ours, not a duplicate.
        assert_eq!(store.insert(&a, &e, None, NO_CAP).await.unwrap(), v1);
        let (b, f) = provisioned(&a, at(1));
        let v2 = store.update(&b, &v1, &f).await.unwrap();
        assert_eq!(store.update(&b, &v1, &f).await.unwrap(), v2, "our own transition, already applied");
        // Another writer's transition from the same version is still a conflict.
        let (c, g) = provisioned(&a, at(1));
        assert!(matches!(store.update(&c, &v1, &g).await, Err(StoreError::Conflict)));
        let events = store
            .audit(&AuditQuery { activation_id: Some(a.id()), limit: 10, ..Default::default() })
            .await
            .unwrap()
            .items;
        assert_eq!(events.len(), 2);
    }
}

/// What Azurite never does but Azure may: pages with fewer rows than asked, or none, that still
/// carry a continuation; and a continuation that does not advance.
mod continuation {
    use std::sync::{Arc, Mutex};

    use elevate::adapters::azure::{AzureClient, RetryPolicy, SharedKey, Signer};
    use elevate::adapters::store::table_client::TableClient;
    use serde_json::json;

    use crate::support::fake_http::{FakeReply, FakeRequest, serve};

    async fn client_for(
        pages: Vec<(serde_json::Value, Option<(&'static str, &'static str)>)>,
    ) -> (TableClient, Arc<Mutex<Vec<FakeRequest>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let pages = Arc::new(Mutex::new(pages.into_iter()));
        let (addr, _server) = serve(Arc::new(move |req: FakeRequest| {
            let log = Arc::clone(&log);
            let pages = Arc::clone(&pages);
            Box::pin(async move {
                log.lock().unwrap().push(req.clone());
                if req.method == "POST" {
                    return FakeReply::empty(409); // the table exists
                }
                let Some((body, next)) = pages.lock().unwrap().next() else { return FakeReply::empty(500) };
                let mut reply = FakeReply::json(200, &body);
                if let Some((p, r)) = next {
                    reply = reply
                        .with_header("x-ms-continuation-NextPartitionKey", p)
                        .with_header("x-ms-continuation-NextRowKey", r);
                }
                reply
            })
        }))
        .await;
        let key = SharedKey::new(
            elevate::config::DEV_STORAGE_ACCOUNT,
            elevate::config::DEV_STORAGE_KEY,
            Arc::new(elevate::clock::SystemClock),
        )
        .unwrap();
        let retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
        let azure = AzureClient::with_signer(Signer::SharedKey(key), retry).unwrap();
        (TableClient::new(azure, &format!("http://{addr}/devstoreaccount1"), "elevate").unwrap(), seen)
    }

    #[tokio::test]
    async fn empty_and_short_pages_with_a_continuation_are_followed() {
        let (table, seen) = client_for(vec![
            (json!({"value": []}), Some(("1!8!cA--", "1!8!cjE-"))),
            (json!({"value": [{"PartitionKey": "p", "RowKey": "r1"}]}), Some(("1!8!cA--", "1!8!cjI-"))),
            (json!({"value": [{"PartitionKey": "p", "RowKey": "r2"}]}), None),
        ])
        .await;
        let rows = table.query("PartitionKey eq 'p'", 1000, usize::MAX).await.unwrap();
        assert_eq!(rows.iter().map(|r| r["RowKey"].as_str().unwrap()).collect::<Vec<_>>(), vec!["r1", "r2"]);
        let gets: Vec<FakeRequest> = seen.lock().unwrap().iter().filter(|r| r.method == "GET").cloned().collect();
        assert_eq!(gets.len(), 3);
        assert_eq!(gets[1].query("NextPartitionKey"), Some("1!8!cA--"));
        assert_eq!(gets[1].query("NextRowKey"), Some("1!8!cjE-"));
        assert_eq!(gets[2].query("NextRowKey"), Some("1!8!cjI-"));
        assert_eq!(gets[0].query("$filter"), Some("PartitionKey eq 'p'"));
        assert!(gets[0].header("authorization").unwrap().starts_with("SharedKey devstoreaccount1:"));
        assert_eq!(gets[0].header("x-ms-version"), Some("2019-02-02"));
    }

    /// Hands out one token and remembers which scopes it was asked for.
    #[derive(Debug, Default)]
    struct RecordingToken(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl azure_core::credentials::TokenCredential for RecordingToken {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            self.0.lock().unwrap().extend(scopes.iter().map(|s| (*s).to_owned()));
            Ok(azure_core::credentials::AccessToken::new(
                "storage-token",
                azure_core::time::OffsetDateTime::from_unix_timestamp(4_102_444_800).unwrap(),
            ))
        }
    }

    /// In Azure (shared keys off) the store sends an Entra token for Storage, never a key.
    #[tokio::test]
    async fn with_entra_the_store_sends_a_storage_token() {
        let seen = Arc::new(Mutex::new(Vec::<FakeRequest>::new()));
        let log = Arc::clone(&seen);
        let (addr, _server) = serve(Arc::new(move |req: FakeRequest| {
            log.lock().unwrap().push(req.clone());
            Box::pin(async move {
                if req.method == "POST" { FakeReply::empty(409) } else { FakeReply::json(200, &json!({"value": []})) }
            })
        }))
        .await;
        let credential = Arc::new(RecordingToken::default());
        let signer = Signer::Bearer {
            credential: Arc::clone(&credential) as Arc<dyn azure_core::credentials::TokenCredential>,
            scope: elevate::startup::STORAGE_SCOPE.to_owned(),
        };
        let azure =
            AzureClient::with_signer(signer, RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }).unwrap();
        let table = TableClient::new(azure, &format!("http://{addr}"), "elevate").unwrap();
        table.query("PartitionKey eq 'p'", 10, 10).await.unwrap();
        assert_eq!(
            credential.0.lock().unwrap().first().map(String::as_str),
            Some("https://storage.azure.com/.default")
        );
        for req in seen.lock().unwrap().iter() {
            assert_eq!(req.header("authorization"), Some("Bearer storage-token"), "{} {}", req.method, req.path);
            assert!(req.header("x-ms-date").is_none(), "no SharedKey date");
        }
        assert_eq!(seen.lock().unwrap().len(), 2, "create-if-missing, then the query");
    }

    #[tokio::test]
    async fn a_continuation_that_does_not_advance_is_an_error_not_a_loop() {
        let page = (json!({"value": []}), Some(("1!8!cA--", "1!8!cjE-")));
        let (table, _) = client_for(vec![page.clone(), page.clone(), page]).await;
        let err = table.query("PartitionKey eq 'p'", 1000, usize::MAX).await.unwrap_err();
        assert!(err.to_string().contains("does not advance"), "{err}");
    }
}
