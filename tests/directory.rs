//! Group-based rules made honest (issue 12): the requester's membership of the group their rule
//! named is checked with Microsoft Graph (transitive) when an approver decides, when a scheduled
//! start arrives and for an extension; a token with group overage is resolved through Graph
//! instead of denied. Against the strict fake Graph, with the real credential path.

use std::sync::Arc;

use elevate::adapters::access::local::LocalAccessProvider;
use elevate::adapters::directory::GraphDirectory;
use elevate::service::ports::{AccessProvider, Directory};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::arm::{FakeIdentityCredential, fast_retry};
use crate::support::fake_azure::FakeAzure;
use crate::support::fake_graph::{FakeGraph, GraphFault};
use crate::support::*;

/// A nested group: OPS holds TEAM, and Alice is in TEAM (so in OPS transitively).
const TEAM: &str = "eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee";

fn policy() -> String {
    format!(
        r#"
version: 1
defaults:
  maxDuration: PT4H
  requireMfa: true
  requireJustification: true
rules:
  - id: ops-contributor
    scope: {SUB2}
    roles: [Contributor]
    principals: [group:{OPS}]
    approval:
      approvers: [user:{BOB}]
      timeout: PT2H
  - id: ops-reader
    scope: {SUB1}
    roles: [Reader]
    principals: [group:{OPS}]
    requireJustification: false
"#
    )
}

struct Rig {
    app: TestApp,
    graph: Arc<FakeGraph>,
    local: Arc<LocalAccessProvider>,
    _azure: Arc<FakeAzure>,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let azure = FakeAzure::start().await;
    let graph = FakeGraph::start().await;
    azure.wire_graph(&graph.token);
    for (id, name) in [(ALICE, "Alice Smith"), (BOB, "Bob Jones")] {
        graph.add_user(id, name);
    }
    graph.add_group(OPS, "Operations", false);
    graph.add_group(TEAM, "Platform team", false);
    graph.add_member(OPS, TEAM);
    graph.add_member(TEAM, ALICE);
    let directory =
        GraphDirectory::new(&graph.url(), Arc::new(FakeIdentityCredential::new(&azure)), fast_retry()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalAccessProvider::open(&dir.path().join("sim.db")).unwrap());
    let access = Arc::clone(&local) as Arc<dyn AccessProvider>;
    let app = spawn_with_ports(&policy(), access, Some(Arc::new(directory) as Arc<dyn Directory>), start()).await;
    Rig { app, graph, local, _azure: azure, _dir: dir }
}

/// Alice's token, as Entra issues it while she is in OPS (through TEAM).
fn alice_in_ops(app: &TestApp) -> String {
    app.mint(elevate::adapters::identity::dev::DevTokenRequest { groups: vec![OPS.into()], ..user(ALICE) })
}

fn prod() -> Value {
    json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "INC-5"})
}

#[tokio::test]
async fn an_approval_needs_the_requester_still_in_the_group() {
    let Rig { app, graph, .. } = rig().await;
    let a = app.activate(&alice_in_ops(&app), prod()).await;
    assert_eq!(a["status"], "PendingApproval");
    // Alice leaves the team (and so OPS) after asking; her token still says OPS.
    graph.remove_member(TEAM, ALICE);
    let before = app.snapshot();
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "RequesterNoLongerEligible");
    assert!(body["error"]["message"].as_str().unwrap().contains(OPS), "{body}");
    assert_eq!(app.snapshot(), before, "refused, nothing changed");
    // Denying needs no such check.
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Deny").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("Denied")), "{body}");
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn membership_through_a_nested_group_counts_and_graph_failures_refuse_nothing_silently() {
    let Rig { app, graph, .. } = rig().await;
    let a = app.activate(&alice_in_ops(&app), prod()).await;
    // Graph is down: the approval is not recorded (a retryable error), and nothing changed.
    let before = app.snapshot();
    graph.push_fault(GraphFault::Unavailable { retry_after: Some("0".into()) });
    graph.fail_always("checkMemberGroups", 503);
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(app.snapshot(), before);
    // Back: Alice is in OPS through TEAM (transitive), so the approval stands.
    graph.heal("checkMemberGroups");
    graph.reset_log();
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("Active")), "{body}");
    let checks: Vec<_> = graph.requests().into_iter().filter(|r| r.path.ends_with("/checkMemberGroups")).collect();
    assert_eq!(checks.len(), 1, "one transitive check: {checks:?}");
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn a_scheduled_start_needs_the_requester_still_in_the_group() {
    let Rig { app, graph, local, .. } = rig().await;
    let a = app
        .activate(
            &alice_in_ops(&app),
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H", "startAt": "2026-11-25T12:30:00Z"}),
        )
        .await;
    assert_eq!(a["status"], "Scheduled");
    graph.remove_member(TEAM, ALICE);
    app.advance(31);
    let report = app.sweep().await;
    assert_eq!(report["startsRefused"], 1, "{report}");
    let after = app.activation(&id_of(&a)).await;
    assert_eq!(after["status"], "Failed");
    assert_eq!(after["failure"]["code"], "NoLongerEligible");
    assert!(local.all().await.unwrap().is_empty(), "nothing granted");
}

#[tokio::test]
async fn a_graph_failure_at_a_scheduled_start_leaves_it_due() {
    let Rig { app, graph, .. } = rig().await;
    let a = app
        .activate(
            &alice_in_ops(&app),
            json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H", "startAt": "2026-11-25T12:30:00Z"}),
        )
        .await;
    app.advance(31);
    graph.fail_always("checkMemberGroups", 503);
    let report = app.sweep().await;
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Scheduled", "nothing starts unchecked");
    graph.heal("checkMemberGroups");
    app.advance(1);
    let report = app.sweep().await;
    assert_eq!(report["started"], 1, "{report}");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");
}

#[tokio::test]
async fn an_extension_needs_the_requester_still_in_the_group() {
    let Rig { app, graph, .. } = rig().await;
    let a = app
        .activate(&alice_in_ops(&app), json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"}))
        .await;
    assert_eq!(a["status"], "Active");
    graph.remove_member(TEAM, ALICE);
    let (status, body) = app
        .post(
            &alice_in_ops(&app),
            &format!("/api/activations/{}/extend", id_of(&a)),
            json!({"duration": "PT30M", "justification": "more"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "NotEligible");
}

#[tokio::test]
async fn a_token_with_group_overage_is_resolved_through_graph() {
    let Rig { app, graph, .. } = rig().await;
    let overage = app.mint(elevate::adapters::identity::dev::DevTokenRequest { groups_overage: true, ..user(ALICE) });
    // Through Graph, Alice is in OPS: she may activate.
    let (status, eligible) = app.get(&overage, "/api/eligibilities").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(eligible["value"].as_array().map(Vec::len), Some(2), "{eligible}");
    let a = app.activate(&overage, json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"})).await;
    assert_eq!(a["status"], "Active");
    // Out of the group, the same token gets nothing.
    graph.remove_member(TEAM, ALICE);
    let (status, body) = app
        .post(
            &overage,
            "/api/activations",
            json!({"roleDefinitionId": "Contributor", "scope": SUB2, "duration": "PT1H", "justification": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "NotEligible");
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn without_graph_an_overage_matches_no_group() {
    let app = spawn_app_with(&policy()).await;
    let overage = app.mint(elevate::adapters::identity::dev::DevTokenRequest { groups_overage: true, ..user(ALICE) });
    let (status, eligible) = app.get(&overage, "/api/eligibilities").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(eligible["value"], json!([]), "deny by default");
}

#[tokio::test]
async fn display_names_come_from_graph_and_are_cached() {
    let azure = FakeAzure::start().await;
    let graph = FakeGraph::start().await;
    azure.wire_graph(&graph.token);
    graph.add_user(ALICE, "Alice Smith");
    let directory =
        GraphDirectory::new(&graph.url(), Arc::new(FakeIdentityCredential::new(&azure)), fast_retry()).unwrap();
    let alice = elevate::domain::ids::PrincipalId::parse(ALICE).unwrap();
    for _ in 0..3 {
        assert_eq!(directory.display_name(alice).await.unwrap().map(|n| n.to_string()).as_deref(), Some("Alice Smith"));
    }
    assert_eq!(graph.requests().len(), 1, "cached after the first read");
    let nobody = elevate::domain::ids::PrincipalId::parse(ERIN).unwrap();
    assert_eq!(directory.display_name(nobody).await.unwrap(), None);
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn the_approval_page_names_people_from_graph() {
    let Rig { app, .. } = rig().await;
    let a = app.activate(&alice_in_ops(&app), prod()).await;
    let (status, _) = app.decide(&app.token(BOB), &id_of(&a), "Deny").await;
    assert_eq!(status, StatusCode::OK);
    let page = app
        .client
        .get(format!("{}/api/approvals/{}", app.base, id_of(&a)))
        .bearer_auth(app.token(BOB))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Alice Smith"), "the requester's name, from Graph: {page}");
    assert!(page.contains("Bob Jones"), "the approver's name, from Graph");
}
