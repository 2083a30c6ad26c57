//! Directory roles and groups end to end (issue 12's "done when"): Global Administrator at the
//! tenant, User Administrator on an administrative unit, and membership of a group, each
//! requested, approved where the rule says, activated, expired and revoked through the API
//! against the strict fake Graph — as RBAC is against the fake ARM — with the routed provider and
//! the real credential path. Also standing access, bad input, and a crash between Graph's answer
//! and Elevate's record.

use std::sync::Arc;

use chrono::Utc;
use elevate::adapters::access::arm::ArmAccessProvider;
use elevate::adapters::access::graph::GraphAccessProvider;
use elevate::adapters::access::routed::RoutedAccess;
use elevate::adapters::directory::GraphDirectory;
use elevate::service::ports::{AccessProvider, Directory};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::arm::{FakeIdentityCredential, fast_retry};
use crate::support::fake_azure::{FakeAzure, MI_HEADER};
use crate::support::fake_graph::{FakeGraph, GLOBAL_ADMINISTRATOR, HELPDESK_ADMINISTRATOR, USER_ADMINISTRATOR};
use crate::support::process::{self, Process};
use crate::support::*;

const AU: &str = "a0a0a0a0-0000-4000-8000-000000000001";
const PRIVILEGED: &str = "a0a0a0a0-0000-4000-8000-0000000000aa";

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
    approval:
      approvers: [user:{BOB}]
      timeout: PT1H
  - id: au-helpdesk
    scope: directory:/administrativeUnits/{AU}
    roles: [Helpdesk Administrator]
    principals: [user:{ALICE}]
  - id: privileged-member
    scope: group:{PRIVILEGED}
    roles: [member]
    principals: [user:{ALICE}]
    approval:
      approvers: [user:{BOB}]
      timeout: PT1H
"#
    )
}

struct Rig {
    app: TestApp,
    graph: Arc<FakeGraph>,
    _azure: Arc<FakeAzure>,
}

async fn fakes() -> (Arc<FakeAzure>, Arc<FakeGraph>) {
    let azure = FakeAzure::start().await;
    let graph = FakeGraph::start().await;
    azure.wire_graph(&graph.token);
    for (id, name) in [(ALICE, "Alice Smith"), (BOB, "Bob Jones")] {
        graph.add_user(id, name);
    }
    graph.add_administrative_unit(AU);
    graph.add_group(PRIVILEGED, "Privileged operators", false);
    (azure, graph)
}

fn routed(azure: &FakeAzure, graph: &FakeGraph) -> (Arc<dyn AccessProvider>, Arc<dyn Directory>) {
    let credential = || Arc::new(FakeIdentityCredential::new(azure));
    let arm = Arc::new(ArmAccessProvider::new(&azure.url(), credential(), fast_retry()).unwrap());
    let graph_access = Arc::new(GraphAccessProvider::new(&graph.url(), credential(), fast_retry()).unwrap());
    let directory = Arc::new(GraphDirectory::new(&graph.url(), credential(), fast_retry()).unwrap());
    (Arc::new(RoutedAccess::new(arm, graph_access)), directory)
}

async fn rig() -> Rig {
    let (azure, graph) = fakes().await;
    let (access, directory) = routed(&azure, &graph);
    let app = spawn_with_ports(&policy(), access, Some(directory), start()).await;
    Rig { app, graph, _azure: azure }
}

fn ask(role: &str, scope: &str) -> Value {
    json!({"roleDefinitionId": role, "scope": scope, "duration": "PT1H", "justification": "INC-12 break-glass"})
}

fn actions(audit: &[Value]) -> Vec<String> {
    audit.iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn global_administrator_is_approved_granted_and_revoked_at_expiry() {
    let Rig { app, graph, .. } = rig().await;
    let a = app.activate(&app.token(ALICE), ask("Global Administrator", "directory:/")).await;
    assert_eq!(a["status"], "PendingApproval", "{a}");
    assert_eq!(a["roleName"], "Global Administrator");
    assert!(graph.role_assignments().is_empty(), "nothing before approval");
    let (status, approved) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!((status, approved["status"].as_str()), (StatusCode::OK, Some("Active")), "{approved}");
    let held = graph.role_assignments();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].role_definition_id.as_str(), held[0].principal_id.as_str()), (GLOBAL_ADMINISTRATOR, ALICE));
    assert_eq!(held[0].directory_scope_id, "/");
    assert_eq!(approved["roleAssignmentId"], held[0].id, "Graph's id is what was recorded");

    app.advance(30);
    assert_eq!(app.sweep().await["expired"], 0, "not yet");
    app.advance(35);
    let report = app.sweep().await;
    assert_eq!(report["expired"], 1, "{report}");
    assert!(graph.role_assignments().is_empty(), "revoked at expiry");
    let audit = app.audit_for(&id_of(&a)).await;
    assert_eq!(actions(&audit), ["Requested", "Approved", "GrantRequested", "Provisioned", "Expired"]);
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn user_administrator_on_an_administrative_unit_is_approved_granted_and_revoked_at_expiry() {
    let Rig { app, graph, .. } = rig().await;
    let scope = format!("directory:/administrativeUnits/{AU}");
    let a = app.activate(&app.token(ALICE), ask("User Administrator", &scope)).await;
    assert_eq!(a["status"], "PendingApproval", "{a}");
    let (status, approved) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!((status, approved["status"].as_str()), (StatusCode::OK, Some("Active")), "{approved}");
    let held = graph.role_assignments();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].role_definition_id, USER_ADMINISTRATOR);
    assert_eq!(held[0].directory_scope_id, format!("/administrativeUnits/{AU}"));
    app.advance(61);
    assert_eq!(app.sweep().await["expired"], 1);
    assert!(graph.role_assignments().is_empty(), "revoked at expiry");
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn helpdesk_administrator_on_an_administrative_unit_self_activates_and_ends_early() {
    let Rig { app, graph, .. } = rig().await;
    let scope = format!("directory:/administrativeUnits/{AU}");
    let a = app.activate(&app.token(ALICE), ask("Helpdesk Administrator", &scope)).await;
    assert_eq!(a["status"], "Active", "{a}");
    assert_eq!(graph.role_assignments()[0].role_definition_id, HELPDESK_ADMINISTRATOR);
    app.advance(6);
    // Ended early by the requester: revoked, and confirmed gone.
    let (status, ended) =
        app.post(&app.token(ALICE), &format!("/api/activations/{}/deactivate", id_of(&a)), json!({})).await;
    assert_eq!((status, ended["status"].as_str()), (StatusCode::OK, Some("Deactivated")), "{ended}");
    assert!(graph.role_assignments().is_empty());
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn group_membership_is_approved_granted_and_revoked_at_expiry() {
    let Rig { app, graph, .. } = rig().await;
    let a = app.activate(&app.token(ALICE), ask("member", &format!("group:{PRIVILEGED}"))).await;
    assert_eq!((a["status"].as_str(), a["roleName"].as_str()), (Some("PendingApproval"), Some("member")), "{a}");
    let (status, approved) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!((status, approved["status"].as_str()), (StatusCode::OK, Some("Active")), "{approved}");
    assert_eq!(graph.members(PRIVILEGED), [ALICE]);
    app.advance(61);
    assert_eq!(app.sweep().await["expired"], 1);
    assert!(graph.members(PRIVILEGED).is_empty(), "membership removed at expiry");
    assert!(graph.requests().iter().all(|r| r.method != "DELETE" || r.path.ends_with("/$ref")));
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

#[tokio::test]
async fn standing_access_in_the_directory_is_reported_and_never_removed() {
    let Rig { app, graph, .. } = rig().await;
    let standing = graph.add_role_assignment(HELPDESK_ADMINISTRATOR, ALICE, &format!("/administrativeUnits/{AU}"));
    graph.add_member(PRIVILEGED, ALICE);
    let scope = format!("directory:/administrativeUnits/{AU}");
    for (role, scope) in [("Helpdesk Administrator", scope.as_str())] {
        let (status, body) = app.post(&app.token(ALICE), "/api/activations", ask(role, scope)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "RoleAssignmentExists");
    }
    let a = app.activate(&app.token(ALICE), ask("member", &format!("group:{PRIVILEGED}"))).await;
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    app.advance(24 * 60);
    app.sweep().await;
    assert_eq!(graph.role_assignments().iter().map(|r| r.id.clone()).collect::<Vec<_>>(), [standing]);
    assert_eq!(graph.members(PRIVILEGED), [ALICE], "the standing membership stays");
    assert!(graph.requests().iter().all(|r| r.method != "DELETE"), "nothing Elevate did not grant is deleted");
}

#[tokio::test]
async fn directory_and_group_requests_refuse_bad_input_and_change_nothing() {
    let Rig { app, graph, .. } = rig().await;
    let before = app.snapshot();
    let au = format!("directory:/administrativeUnits/{AU}");
    let cases = [
        (ask("Global Administrator", &au), StatusCode::BAD_REQUEST, "PolicyViolation", "scope"),
        (ask("member", "directory:/"), StatusCode::BAD_REQUEST, "InvalidField", "roleDefinitionId"),
        (ask("Owner", "directory:/"), StatusCode::BAD_REQUEST, "InvalidField", "roleDefinitionId"),
        (ask("Reader", &format!("group:{PRIVILEGED}")), StatusCode::BAD_REQUEST, "InvalidField", "roleDefinitionId"),
        (ask("member", "group:not-a-guid"), StatusCode::BAD_REQUEST, "InvalidField", "scope"),
        (ask("member", "directory:/administrativeUnits/x"), StatusCode::BAD_REQUEST, "InvalidField", "scope"),
        (ask("owner", &format!("group:{PRIVILEGED}")), StatusCode::FORBIDDEN, "NotEligible", ""),
    ];
    for (body, status, code, target) in cases {
        let (got, answer) = app.post(&app.token(ALICE), "/api/activations", body.clone()).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body} → {answer}");
        if !target.is_empty() {
            assert_eq!(answer["error"]["target"], target, "{answer}");
        }
    }
    assert_eq!(app.snapshot(), before);
    assert!(graph.requests().is_empty(), "nothing reached Graph");
}

/// The binary on the fakes, as under the Functions host (the test fires the timer).
async fn start_on_fakes(azure: &FakeAzure, graph: &FakeGraph, dir: &std::path::Path) -> Process {
    std::fs::write(dir.join("policy.yaml"), policy()).unwrap();
    process::start(
        dir,
        &["serve".to_owned(), "--functions-host".to_owned()],
        &[
            ("ELEVATE_AUTH_MODE", "dev".into()),
            ("ELEVATE_PROVIDER", "arm".into()),
            ("ELEVATE_ARM_ENDPOINT", azure.url()),
            ("ELEVATE_GRAPH_ENDPOINT", graph.url()),
            ("IDENTITY_ENDPOINT", azure.identity_endpoint()),
            ("IDENTITY_HEADER", MI_HEADER.into()),
            ("ELEVATE_STORE", format!("sqlite:{}", dir.join("elevate.db").display())),
            ("ELEVATE_POLICY_FILE", dir.join("policy.yaml").display().to_string()),
        ],
    )
    .await
}

/// SIGKILL between Graph's answer and Elevate's record: on restart the interrupted grant is
/// found by principal, role and scope and recorded once (nothing granted twice), and it is
/// revoked at expiry.
#[tokio::test]
async fn a_crash_between_graphs_answer_and_the_record_is_recovered_and_expires() {
    let (azure, graph) = fakes().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = start_on_fakes(&azure, &graph, dir.path()).await;
    let token = process::token(dir.path(), ALICE, &[]);
    let applied = graph.hang_next_write();
    let request = {
        let url = format!("{}/api/activations", first.base);
        let body = ask("Helpdesk Administrator", &format!("directory:/administrativeUnits/{AU}"));
        tokio::spawn(async move { http_client().post(url).bearer_auth(token).json(&body).send().await })
    };
    applied.await.unwrap();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(request.await.unwrap().is_err(), "the caller saw the process die");
    assert_eq!(graph.role_assignments().len(), 1, "Graph made it; Elevate never recorded it");

    // Restarted later (over the same store, a clock moved on past the grace).
    #[expect(clippy::disallowed_methods, reason = "the killed process stamped its records with the wall clock")]
    let now = Utc::now();
    let (access, directory) = routed(&azure, &graph);
    let db = dir.path().join("elevate.db");
    let later = spawn_ports_on_db(&policy(), access, Some(directory), db, now + chrono::TimeDelta::minutes(4)).await;
    let report = later.sweep().await;
    assert_eq!(report["provisioned"], 1, "{report}");
    let (_, listed) = later.get(&later.admin(), "/api/activations?mine=false").await;
    let a = listed["value"][0].clone();
    assert_eq!(a["status"], "Active", "{listed}");
    assert_eq!(a["roleAssignmentId"], graph.role_assignments()[0].id);
    assert_eq!(graph.role_assignments().len(), 1, "nothing granted twice");
    later.advance(61);
    assert_eq!(later.sweep().await["expired"], 1);
    assert!(graph.role_assignments().is_empty(), "revoked at expiry");
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

/// Review finding F1: a pre-check that fails must not let the standing assignment it would have
/// found be taken for Elevate's own later. Nothing is recorded as asked for until absence was
/// seen, so the retry sees the standing assignment, reports it, and never touches it.
#[tokio::test]
async fn a_failed_pre_check_never_turns_standing_access_into_ours() {
    let Rig { app, graph, .. } = rig().await;
    let standing = graph.add_role_assignment(HELPDESK_ADMINISTRATOR, ALICE, &format!("/administrativeUnits/{AU}"));
    graph.fail_always("roleManagement/directory/roleAssignments", 503);
    let scope = format!("directory:/administrativeUnits/{AU}");
    let a = app.activate(&app.token(ALICE), ask("Helpdesk Administrator", &scope)).await;
    assert_eq!(a["status"], "Provisioning", "the pre-check could not run: {a}");
    graph.heal("roleManagement/directory/roleAssignments");
    app.advance(4);
    let report = app.sweep().await;
    assert_eq!(report["provisioningFailed"], 1, "{report}");
    let after = app.activation(&id_of(&a)).await;
    assert_eq!(
        (after["status"].as_str(), after["failure"]["code"].as_str()),
        (Some("Failed"), Some("RoleAssignmentExists"))
    );
    app.advance(24 * 60);
    app.sweep().await;
    assert_eq!(graph.role_assignments().iter().map(|r| r.id.clone()).collect::<Vec<_>>(), [standing]);
    assert!(graph.requests().iter().all(|r| r.method != "DELETE"), "nothing deleted");
    let audit = app.audit_for(&id_of(&a)).await;
    assert!(!actions(&audit).contains(&"GrantRequested".to_owned()), "never recorded as asked for: {audit:?}");
}

/// Review finding F2: right after a grant, Graph may answer "not found" from a replica that has
/// not seen it (graph-spec §7). Ending access then must not take that for "gone".
#[tokio::test]
async fn a_young_grant_is_not_taken_for_gone_on_a_stale_not_found() {
    let Rig { app, graph, .. } = rig().await;
    let scope = format!("directory:/administrativeUnits/{AU}");
    // Reads after the grant's write show the directory as it was before it, for a while.
    graph.set_stale_reads(5);
    let a = app.activate(&app.token(ALICE), ask("Helpdesk Administrator", &scope)).await;
    assert_eq!(a["status"], "Active");
    let path = format!("/api/activations/{}/deactivate", id_of(&a));
    let (status, body) = app.post(&app.token(ALICE), &path, json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a stale read is no proof: {body}");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active", "still held, still due");
    assert_eq!(graph.role_assignments().len(), 1);
    // Once settled, the same request ends it for real.
    graph.set_stale_reads(0);
    app.advance(6);
    let (status, body) = app.post(&app.token(ALICE), &path, json!({})).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("Deactivated")), "{body}");
    assert!(graph.role_assignments().is_empty());
}

/// The orphan check for the kinds without a marker (graph-spec §9): an active grant removed
/// outside Elevate ends its activation, so the id Graph reuses is never acted on again — not even
/// when an administrator re-creates the same assignment as standing access before it would have
/// expired.
#[tokio::test]
async fn a_grant_removed_outside_elevate_ends_its_activation_and_its_id_is_left_alone() {
    let Rig { app, graph, .. } = rig().await;
    let scope = format!("directory:/administrativeUnits/{AU}");
    let mut body = ask("Helpdesk Administrator", &scope);
    body["duration"] = json!("PT2H");
    let a = app.activate(&app.token(ALICE), body).await;
    assert_eq!(a["status"], "Active");
    assert_eq!(app.sweep().await["grantsRemovedOutside"], 0, "young grants are not judged");
    // An administrator removes it in the portal.
    let id = graph.role_assignments()[0].id.clone();
    graph.remove_role_assignment(&id);
    app.advance(61);
    let report = app.sweep().await;
    assert_eq!(report["grantsRemovedOutside"], 1, "{report}");
    let ended = app.activation(&id_of(&a)).await;
    assert_eq!(ended["status"], "Deactivated");
    let audit = app.audit_for(&id_of(&a)).await;
    assert!(audit.last().unwrap()["detail"].as_str().unwrap().contains("removed outside Elevate"), "{audit:?}");
    // The administrator then grants the same role as standing access: Graph reuses the id.
    let standing = graph.add_role_assignment(HELPDESK_ADMINISTRATOR, ALICE, &format!("/administrativeUnits/{AU}"));
    assert_eq!(standing, id, "the same id");
    app.advance(120);
    app.sweep().await;
    assert_eq!(
        graph.role_assignments().len(),
        1,
        "the standing assignment outlives the activation it shares an id with"
    );
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}

/// Review finding: a grant refused for want of permission created nothing; it must fail at once
/// rather than stay due for ever trying to remove what never existed.
#[tokio::test]
async fn a_grant_graph_refuses_for_want_of_permission_fails_cleanly() {
    let Rig { app, graph, .. } = rig().await;
    graph.revoke_permission("GroupMember.ReadWrite.All");
    graph.revoke_permission("Group.ReadWrite.All");
    graph.revoke_permission("Directory.ReadWrite.All");
    let a = app.activate(&app.token(ALICE), ask("member", &format!("group:{PRIVILEGED}"))).await;
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["failure"]["code"].as_str()),
        (Some("Failed"), Some("ProvisioningFailed")),
        "{body}"
    );
    assert!(body["failure"]["message"].as_str().unwrap().contains("not allowed"), "{body}");
    assert!(graph.members(PRIVILEGED).is_empty());
    app.advance(120);
    let report = app.sweep().await;
    assert_eq!(report["failures"], json!([]), "nothing left due: {report}");
}

/// Review finding: a grant Graph refuses outright (a 400, not a permission) created nothing, but
/// while it is young that absence proves nothing. Once it has settled, the sweeper's next attempt
/// fails it — rather than asking Graph again every minute until it would have expired.
#[tokio::test]
async fn a_grant_graph_refuses_outright_fails_once_it_has_settled() {
    let Rig { app, graph, .. } = rig().await;
    graph.fail_always("members/$ref", 400);
    let a = app.activate(&app.token(ALICE), ask("member", &format!("group:{PRIVILEGED}"))).await;
    let (status, body) = app.decide(&app.token(BOB), &id_of(&a), "Approve").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("Provisioning")), "{body}");
    app.advance(6);
    let report = app.sweep().await;
    assert_eq!(report["provisioningFailed"], 1, "{report}");
    let ended = app.activation(&id_of(&a)).await;
    assert_eq!(
        (ended["status"].as_str(), ended["failure"]["code"].as_str()),
        (Some("Failed"), Some("ProvisioningFailed")),
        "{ended}"
    );
    assert!(graph.members(PRIVILEGED).is_empty());
    let creates = |g: &FakeGraph| g.requests().iter().filter(|r| r.method == "POST").count();
    let before = creates(&graph);
    app.advance(2);
    let report = app.sweep().await;
    assert_eq!(report["failures"], json!([]), "nothing left due: {report}");
    assert_eq!(creates(&graph), before, "no more attempts once it has failed");
    assert!(graph.violations().is_empty(), "{:?}", graph.violations());
}
