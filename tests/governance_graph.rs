//! Governance alerts against the strict fake Graph, through the routed provider and the real
//! credential path, as tests/governance.rs does against the fake ARM: for a directory role and a
//! group's membership and ownership that the policy manages, an assignment made behind Elevate's
//! back is raised as *assigned outside Elevate* and resolved once removed; one at a directory
//! scope or group the policy does not manage, one Elevate granted (activated through the API), and
//! one accepted under `standing:` raise nothing; Global Administrator held standing by more than
//! `maxPermanentHolders` is an alert. The timer is fired as the host fires it. Runs on SQLite and,
//! with `ELEVATE_TEST_STORE=tables`, on Azurite.

use std::sync::Arc;

use elevate::adapters::access::arm::ArmAccessProvider;
use elevate::adapters::access::graph::GraphAccessProvider;
use elevate::adapters::access::routed::RoutedAccess;
use elevate::adapters::directory::GraphDirectory;
use elevate::service::ports::{AccessProvider, Directory};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::governance::{alerts, governance};
use crate::support::arm::{FakeIdentityCredential, fast_retry};
use crate::support::fake_azure::FakeAzure;
use crate::support::fake_graph::{FakeGraph, GLOBAL_ADMINISTRATOR, USER_ADMINISTRATOR};
use crate::support::*;

/// The administrative unit the policy manages User Administrator on, and one it does not.
const AU: &str = "a0a0a0a0-0000-4000-8000-000000000001";
const OTHER_AU: &str = "a0a0a0a0-0000-4000-8000-000000000002";
/// The group whose membership and ownership the policy manages, and one it does not.
const PRIVILEGED: &str = "a0a0a0a0-0000-4000-8000-0000000000aa";
const UNMANAGED: &str = "a0a0a0a0-0000-4000-8000-0000000000bb";
/// Holders made behind Elevate's back.
const MALLORY: &str = "77777777-7777-7777-7777-00000000000a";
const TRENT: &str = "77777777-7777-7777-7777-00000000000b";

fn policy() -> String {
    format!(
        r#"
version: 1
defaults:
  maxDuration: PT2H
  requireMfa: true
  requireJustification: true
rules:
  - id: global-admin
    scope: directory:/
    roles: [Global Administrator]
    principals: [user:{ALICE}]
    maxDuration: PT1H
    approval:
      approvers: [user:{BOB}]
      timeout: PT1H
  - id: au-users
    scope: directory:/administrativeUnits/{AU}
    roles: [User Administrator]
    principals: [user:{ALICE}]
  - id: privileged-member
    scope: group:{PRIVILEGED}
    roles: [member]
    principals: [user:{ALICE}]
  - id: privileged-owner
    scope: group:{PRIVILEGED}
    roles: [owner]
    principals: [user:{ALICE}]
standing:
  - principal: user:{CAROL}
    role: Global Administrator
    scope: directory:/
    reason: break-glass account
    owner: identity-team@contoso.example
  - principal: user:{CAROL}
    role: owner
    scope: group:{PRIVILEGED}
    reason: the group's accountable owner
    owner: identity-team@contoso.example
governance:
  maxPermanentHolders: 1
"#
    )
}

struct Rig {
    app: TestApp,
    graph: Arc<FakeGraph>,
    _azure: Arc<FakeAzure>,
}

/// The app on the routed provider (ARM and Graph) with the Graph directory, both fakes reached
/// with tokens from the fake managed-identity endpoint.
async fn rig() -> Rig {
    rig_with(&policy()).await
}

async fn rig_with(policy: &str) -> Rig {
    let azure = FakeAzure::start().await;
    let graph = FakeGraph::start().await;
    azure.wire_graph(&graph.token);
    for (id, name) in
        [(ALICE, "Alice Smith"), (BOB, "Bob Jones"), (CAROL, "Carol Diaz"), (MALLORY, "Mallory"), (TRENT, "Trent")]
    {
        graph.add_user(id, name);
    }
    graph.add_administrative_unit(AU);
    graph.add_administrative_unit(OTHER_AU);
    graph.add_group(PRIVILEGED, "Privileged operators", false);
    graph.add_group(UNMANAGED, "Book club", false);
    // The group's accountable owner, accepted under `standing:`.
    graph.add_owner(PRIVILEGED, CAROL);
    let credential = || Arc::new(FakeIdentityCredential::new(&azure));
    let arm = Arc::new(ArmAccessProvider::new(&azure.url(), credential(), fast_retry()).unwrap());
    let graph_access = Arc::new(GraphAccessProvider::new(&graph.url(), credential(), fast_retry()).unwrap());
    let directory: Arc<dyn Directory> =
        Arc::new(GraphDirectory::new(&graph.url(), credential(), fast_retry()).unwrap());
    let access: Arc<dyn AccessProvider> = Arc::new(RoutedAccess::new(arm, graph_access));
    let app = spawn_with_ports(policy, access, Some(directory), start()).await;
    Rig { app, graph, _azure: azure }
}

fn ask(role: &str, scope: &str) -> Value {
    json!({"roleDefinitionId": role, "scope": scope, "duration": "PT1H", "justification": "INC-14 directory work"})
}

fn ids_of_kind(alerts: &[Value], kind: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        alerts.iter().filter(|a| a["kind"] == kind).map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn outside(id: &str) -> String {
    format!("outside:{}", id.to_ascii_lowercase())
}

fn link(group: &str, link: &str, principal: &str) -> String {
    outside(&format!("groups/{group}/{link}/{principal}"))
}

#[tokio::test]
async fn directory_roles_and_groups_assigned_outside_elevate_are_raised_and_resolved() {
    let Rig { app, graph, .. } = rig().await;

    // Elevate's own grants, activated through the API: Global Administrator (approved), User
    // Administrator on the managed unit, and the group's membership and ownership.
    let alice = app.token(ALICE);
    let ga = app.activate(&alice, ask("Global Administrator", "directory:/")).await;
    let (status, approved) = app.decide(&app.token(BOB), &id_of(&ga), "Approve").await;
    assert_eq!((status, approved["status"].as_str()), (StatusCode::OK, Some("Active")), "{approved}");
    let au_scope = format!("directory:/administrativeUnits/{AU}");
    for (role, scope) in [
        ("User Administrator", au_scope.as_str()),
        ("member", &format!("group:{PRIVILEGED}")),
        ("owner", &format!("group:{PRIVILEGED}")),
    ] {
        let a = app.activate(&alice, ask(role, scope)).await;
        assert_eq!(a["status"], "Active", "{a}");
    }
    assert_eq!(graph.role_assignments().len(), 2, "Elevate's two role assignments");
    assert_eq!(graph.members(PRIVILEGED), [ALICE]);

    // Behind Elevate's back, where the policy manages: Global Administrator at the tenant, User
    // Administrator on the managed unit, a member and an owner of the managed group.
    let ga_outside = graph.add_role_assignment(GLOBAL_ADMINISTRATOR, MALLORY, "/");
    let ua_outside = graph.add_role_assignment(USER_ADMINISTRATOR, MALLORY, &format!("/administrativeUnits/{AU}"));
    graph.add_member(PRIVILEGED, MALLORY);
    graph.add_owner(PRIVILEGED, TRENT);
    // Accepted under `standing:`: Carol's Global Administrator (and her ownership, seeded above).
    graph.add_role_assignment(GLOBAL_ADMINISTRATOR, CAROL, "/");
    // Where the policy manages nothing: User Administrator on another unit, the other group.
    graph.add_role_assignment(USER_ADMINISTRATOR, TRENT, &format!("/administrativeUnits/{OTHER_AU}"));
    graph.add_member(UNMANAGED, MALLORY);
    graph.add_owner(UNMANAGED, TRENT);

    let report = governance(&app).await;
    assert_eq!(report["failures"], json!([]), "{report}");
    let open = alerts(&app, "Open").await;
    let mut expected = vec![
        outside(&ga_outside),
        outside(&ua_outside),
        link(PRIVILEGED, "members", MALLORY),
        link(PRIVILEGED, "owners", TRENT),
    ];
    expected.sort();
    assert_eq!(ids_of_kind(&open, "AssignedOutsideElevate"), expected, "{open:#?}");
    let ga_alert = open.iter().find(|a| a["id"] == outside(&ga_outside).as_str()).unwrap();
    assert_eq!(ga_alert["severity"], "High", "Global Administrator is privileged");
    assert_eq!(ga_alert["title"], "Global Administrator assigned outside Elevate at directory:/");
    let member_alert = open.iter().find(|a| a["id"] == link(PRIVILEGED, "members", MALLORY).as_str()).unwrap();
    assert_eq!(member_alert["severity"], "Medium");
    assert!(
        member_alert["items"][0].as_str().unwrap().contains(&format!("principal {MALLORY} holds")),
        "{member_alert}"
    );

    // Two standing holders of Global Administrator (Carol, accepted; Mallory, not) where one is
    // allowed; Alice's activation is not standing.
    let permanent: Vec<&Value> = open.iter().filter(|a| a["kind"] == "TooManyPermanentHolders").collect();
    assert_eq!(permanent.len(), 1, "{open:#?}");
    assert!(permanent[0]["id"].as_str().unwrap().starts_with(&format!("permanent:{GLOBAL_ADMINISTRATOR}:")));
    let mut holders: Vec<&str> =
        permanent[0]["items"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    holders.sort_unstable();
    assert_eq!(holders, [format!("principal {CAROL}"), format!("principal {MALLORY}")]);

    // Nothing about what Elevate granted, what is accepted, or what the policy does not manage
    // (the list of outside alerts above is exact); not even a mention.
    let told = serde_json::to_string(&open).unwrap();
    assert!(!told.contains(OTHER_AU) && !told.contains(UNMANAGED), "{told}");

    // Removed behind Elevate's back again: those alerts resolve, the rest stay.
    app.advance(10);
    graph.remove_role_assignment(&ga_outside);
    graph.remove_member(PRIVILEGED, MALLORY);
    graph.remove_owner(PRIVILEGED, TRENT);
    let report = governance(&app).await;
    let mut resolved: Vec<String> =
        report["resolved"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    resolved.sort();
    let mut expected_resolved = vec![
        outside(&ga_outside),
        link(PRIVILEGED, "members", MALLORY),
        link(PRIVILEGED, "owners", TRENT),
        permanent[0]["id"].as_str().unwrap().to_owned(),
    ];
    expected_resolved.sort();
    assert_eq!(resolved, expected_resolved, "{report}");
    let open = alerts(&app, "Open").await;
    assert_eq!(ids_of_kind(&open, "AssignedOutsideElevate"), [outside(&ua_outside)]);
    assert!(ids_of_kind(&open, "TooManyPermanentHolders").is_empty());
    // Alerts report; Elevate's grants and everything else are as they were.
    assert_eq!(app.activation(&id_of(&ga)).await["status"], "Active");
    assert_eq!(graph.role_assignments().len(), 5, "Elevate's two, Mallory's on the unit, Carol's, Trent's");
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn a_graph_listing_that_fails_neither_raises_nor_resolves_what_depends_on_it() {
    let Rig { app, graph, .. } = rig().await;
    graph.add_member(PRIVILEGED, MALLORY);
    let report = governance(&app).await;
    let opened: Vec<&str> = report["opened"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(
        opened.iter().filter(|id| id.starts_with("outside:")).collect::<Vec<_>>(),
        [&link(PRIVILEGED, "members", MALLORY)],
        "{report}"
    );
    graph.remove_member(PRIVILEGED, MALLORY);
    graph.fail_always("/owners", 403);
    let report = governance(&app).await;
    assert_eq!(report["resolved"], json!([]), "an unread owner list says nothing about members either: {report}");
    let failures = report["failures"].as_array().unwrap();
    assert!(failures.iter().any(|f| f.as_str().unwrap().contains(PRIVILEGED)), "{report}");
    graph.heal("/owners");
    let report = governance(&app).await;
    assert_eq!(report["resolved"], json!([link(PRIVILEGED, "members", MALLORY)]), "{report}");
}

/// An access review over a group's membership and Global Administrator: when it ends, the
/// removals take effect in Graph — the membership and the role assignment Elevate granted are
/// removed, and the eligibilities refused from then on.
#[tokio::test]
async fn an_access_review_removal_ends_directory_role_and_group_access_in_graph() {
    let policy = format!(
        "{}reviews:\n  - id: directory\n    rules: [privileged-member, global-admin]\n    reviewers: [user:{CAROL}]\n    startsAt: 2026-11-25T12:00:00Z\n    durationDays: 7\n    whenUndecided: remove\n",
        policy()
    );
    let Rig { app, graph, .. } = rig_with(&policy).await;
    let report = governance(&app).await;
    assert_eq!(report["reviews"]["started"], json!(["directory-20261125"]), "{report}");

    // Half an hour before the end, Alice holds both through the eligibilities under review.
    app.advance(7 * 24 * 60 - 30);
    let (alice, bob) = (app.token(ALICE), app.token(BOB));
    let member = app.activate(&alice, ask("member", &format!("group:{PRIVILEGED}"))).await;
    assert_eq!(member["status"], "Active", "{member}");
    let ga = app.activate(&alice, ask("Global Administrator", "directory:/")).await;
    let (_, approved) = app.decide(&bob, &id_of(&ga), "Approve").await;
    assert_eq!(approved["status"], "Active", "{approved}");
    assert_eq!(graph.members(PRIVILEGED), [ALICE]);
    assert_eq!(graph.role_assignments().len(), 1);

    // Nobody decided: both are removed when the campaign ends.
    app.advance(31);
    let applied = governance(&app).await["reviews"].clone();
    assert_eq!(applied["applied"], json!(["directory-20261125"]), "{applied}");
    assert_eq!((applied["suspended"].as_u64(), applied["ended"].as_u64()), (Some(2), Some(2)), "{applied}");
    assert!(graph.members(PRIVILEGED).is_empty(), "the membership is gone");
    assert!(graph.role_assignments().is_empty(), "the role assignment is gone");
    for id in [id_of(&member), id_of(&ga)] {
        assert_eq!(app.activation(&id).await["status"], "Deactivated");
    }
    let (status, refused) =
        app.post(&app.token(ALICE), "/api/activations", ask("member", &format!("group:{PRIVILEGED}"))).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("EligibilitySuspended")));
}
