//! `AccessProvider::list_all`: every assignment at or below a scope, Elevate's or not, for
//! governance. On the fake ARM through the real `ArmAccessProvider`, on the local simulation, on
//! the fake Graph, and routed. A listing is whole or an error, never a shorter list.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use elevate::adapters::access::graph::GraphAccessProvider;
use elevate::adapters::access::local::LocalAccessProvider;
use elevate::adapters::access::routed::RoutedAccess;
use elevate::domain::ids::{ActivationId, PrincipalId, RoleDefinitionId};
use elevate::domain::scope::{Scope, ScopeKind};
use elevate::service::ports::{AccessError, AccessProvider, AssignmentSpec, Listed, PrincipalType, marker};
use uuid::Uuid;

use crate::support::arm::{FakeIdentityCredential, fast_retry, provider};
use crate::support::fake_azure::{FakeAzure, Stored};
use crate::support::fake_graph::{
    FakeGraph, FaultTarget, GLOBAL_ADMINISTRATOR, GraphFault, SECURITY_ADMINISTRATOR, USER_ADMINISTRATOR,
    role_assignment_id,
};
use crate::support::{ALICE, BOB, CAROL, DANA, ERIN, OPS, SUB1, SUB2, http_client};

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const MG: &str = "/providers/Microsoft.Management/managementGroups/platform";
const AU: &str = "77777777-7777-7777-7777-777777777777";
const TEAM: &str = OPS;

fn rg() -> String {
    format!("{SUB1}/resourceGroups/app")
}

fn scope(text: &str) -> Scope {
    Scope::parse(text).unwrap()
}

fn expiry() -> DateTime<Utc> {
    "2026-11-25T14:00:00Z".parse().unwrap()
}

/// What Elevate asks for when it grants `role` at `at` to `principal` for a fresh activation.
fn elevate_spec(at: &str, principal: &str, role: &str) -> AssignmentSpec {
    let activation = ActivationId::parse(&Uuid::new_v4().to_string()).unwrap();
    let at = scope(at);
    AssignmentSpec {
        name: activation.role_assignment_name(),
        role_definition_id: at.kind().parse_role(role).unwrap(),
        scope: at,
        principal_id: PrincipalId::parse(principal).unwrap(),
        principal_type: PrincipalType::User,
        description: marker(activation, expiry()),
    }
}

/// `(id, principal, scope, elevates)` of each, sorted by id.
fn summary(listed: &[Listed]) -> Vec<(String, String, String, bool)> {
    let mut rows: Vec<_> = listed
        .iter()
        .map(|l| {
            let a = &l.assignment;
            (a.id.clone(), a.principal_id.to_string(), a.scope.as_str().to_owned(), l.elevates)
        })
        .collect();
    rows.sort();
    rows
}

fn row(id: &str, principal: &str, at: &str, elevates: bool) -> (String, String, String, bool) {
    (id.to_owned(), principal.to_owned(), scope(at).as_str().to_owned(), elevates)
}

fn sorted(mut rows: Vec<(String, String, String, bool)>) -> Vec<(String, String, String, bool)> {
    rows.sort();
    rows
}

/// How many list requests the fake ARM answered, and with which statuses.
fn list_statuses(fake: &FakeAzure) -> Vec<u16> {
    fake.seen().iter().filter(|s| s.method == "GET").map(|s| s.status).collect()
}

/// How many assignments the fake ARM itself returns when listing at `at` (all pages).
async fn raw_count(fake: &FakeAzure, at: &str) -> usize {
    let mut url =
        format!("{}{at}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01", fake.url());
    let mut count = 0;
    loop {
        let body: serde_json::Value = http_client()
            .get(&url)
            .header("authorization", format!("Bearer {}", fake.token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        count += body["value"].as_array().unwrap().len();
        match body["nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return count,
        }
    }
}

// ---- ARM ----

#[tokio::test]
async fn arm_lists_elevates_grants_and_what_was_assigned_behind_its_back_but_nothing_above() {
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    fake.place_in_management_group(SUB1, MG);

    let mine = arm.grant(&elevate_spec(SUB1, ALICE, "Reader")).await.unwrap();
    let at_scope = fake.assign_outside(SUB1, BOB, CONTRIBUTOR);
    let below = fake.assign_outside(&rg(), CAROL, READER);
    // A description that starts like a marker but is none.
    let look_alike = Stored {
        name: Uuid::new_v4(),
        scope: rg(),
        principal_id: DANA.into(),
        principal_type: Some("User".into()),
        role_definition_id: format!("{SUB1}/providers/Microsoft.Authorization/roleDefinitions/{OWNER}"),
        description: Some("elevate: break-glass, ask Dana".into()),
    };
    fake.seed(look_alike.clone());
    let look_alike_id = format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", rg(), look_alike.name);
    // Above SUB1 (inherited from its management group and the root), and beside it.
    let at_mg = fake.assign_outside(MG, ERIN, OWNER);
    fake.assign_outside("/", ERIN, OWNER);
    fake.assign_outside(SUB2, ALICE, OWNER);

    // ARM itself returns what lies above too: the provider must drop it.
    assert_eq!(raw_count(&fake, SUB1).await, 6);
    let listed = arm.list_all(&scope(SUB1)).await.unwrap();
    assert_eq!(
        summary(&listed),
        sorted(vec![
            row(&mine.id, ALICE, SUB1, true),
            row(&at_scope, BOB, SUB1, false),
            row(&below, CAROL, &rg(), false),
            row(&look_alike_id, DANA, &rg(), false),
        ])
    );
    let elevates: Vec<_> = listed.iter().filter(|l| l.elevates).map(|l| l.assignment.clone()).collect();
    assert_eq!(elevates, vec![mine.clone()]);
    assert_eq!(arm.list_managed(&scope(SUB1)).await.unwrap(), vec![mine]);

    // At the resource group, the subscription's assignments are above it.
    assert_eq!(raw_count(&fake, &rg()).await, 6);
    assert_eq!(
        summary(&arm.list_all(&scope(&rg())).await.unwrap()),
        sorted(vec![row(&below, CAROL, &rg(), false), row(&look_alike_id, DANA, &rg(), false)])
    );
    // A management group contains only itself; the root above it is dropped.
    assert_eq!(summary(&arm.list_all(&scope(MG)).await.unwrap()), vec![row(&at_mg, ERIN, MG, false)]);
}

#[tokio::test]
async fn arm_reads_every_page_and_lists_each_assignment_once() {
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    fake.set_page_size(2);
    let principals = [ALICE, BOB, CAROL, DANA, ERIN, "66666666-6666-6666-6666-666666666666", OPS];
    let mut expected = Vec::new();
    for (i, principal) in principals.iter().enumerate() {
        let at = format!("{SUB1}/resourceGroups/rg{i}");
        expected.push(row(&fake.assign_outside(&at, principal, READER), principal, &at, false));
    }
    // Above, and on a page of its own: read, then dropped.
    fake.assign_outside("/", ERIN, OWNER);
    fake.reset_log();

    let listed = arm.list_all(&scope(SUB1)).await.unwrap();
    assert_eq!(listed.len(), 7);
    assert_eq!(summary(&listed), sorted(expected));
    // Eight assignments, two a page.
    assert_eq!(list_statuses(&fake), vec![200, 200, 200, 200]);
}

#[tokio::test]
async fn a_failed_later_page_fails_the_listing_instead_of_shortening_it() {
    for (status, transient) in [(500, true), (404, true), (400, false)] {
        let fake = FakeAzure::start().await;
        let arm = provider(&fake, fast_retry());
        fake.set_page_size(1);
        for at in [SUB1.to_owned(), rg(), format!("{SUB1}/resourceGroups/other")] {
            fake.assign_outside(&at, BOB, READER);
        }
        fake.fail_list_page(2, status);

        let listed = arm.list_all(&scope(SUB1)).await;
        match &listed {
            Err(AccessError::Transient(m)) if transient => {
                assert!(m.contains("list role assignments"), "{m}");
                if status == 404 {
                    assert!(m.contains("later page answered 404"), "{m}");
                }
            }
            Err(AccessError::Permanent(m)) if !transient => assert!(m.contains("400"), "{m}"),
            other => panic!("{status}: {other:?}"),
        }
        // Two pages were read whole before the third failed (500 is retried by the client).
        let statuses = list_statuses(&fake);
        assert_eq!(statuses.get(..2), Some(&[200, 200][..]), "{status}: {statuses:?}");
        assert!(statuses[2..].iter().all(|s| *s == status), "{status}: {statuses:?}");
        // The same bound holds for Elevate's own listing.
        assert!(arm.list_managed(&scope(SUB1)).await.is_err(), "{status}");
    }
}

#[tokio::test]
async fn a_server_that_never_stops_paging_is_an_error_at_the_bound() {
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    fake.set_page_size(1);
    fake.assign_outside(SUB1, BOB, READER);
    fake.set_endless_paging(true);

    let listed = arm.list_all(&scope(SUB1)).await;
    assert!(matches!(&listed, Err(AccessError::Permanent(m)) if m.contains("more than 1000 pages")), "{listed:?}");
    assert_eq!(list_statuses(&fake).len(), 1000);
}

#[tokio::test]
async fn an_unreadable_assignment_below_the_scope_fails_the_listing_one_above_does_not() {
    let foreign = |at: &str, principal: &str| Stored {
        name: Uuid::new_v4(),
        scope: at.to_owned(),
        principal_id: principal.to_owned(),
        principal_type: None,
        role_definition_id: format!("/providers/Microsoft.Authorization/roleDefinitions/{READER}"),
        description: None,
    };

    // Above (the root, which Elevate cannot parse as a scope): dropped.
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    fake.seed(foreign("/", "not-a-guid"));
    let kept = fake.assign_outside(SUB1, BOB, READER);
    assert_eq!(summary(&arm.list_all(&scope(SUB1)).await.unwrap()), vec![row(&kept, BOB, SUB1, false)]);

    // Below, with a principal Elevate cannot read: the listing fails. Elevate's own listing
    // never reads unmarked entries, so it does not.
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    fake.seed(foreign(&rg(), "not-a-guid"));
    let listed = arm.list_all(&scope(SUB1)).await;
    assert!(matches!(&listed, Err(AccessError::Permanent(m)) if m.contains("principalId")), "{listed:?}");
    assert_eq!(arm.list_managed(&scope(SUB1)).await.unwrap(), vec![]);

    // Below, at a scope Elevate cannot parse: the listing fails too.
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    let odd = format!("{}/providers/Microsoft.Web", rg());
    fake.seed(foreign(&odd, BOB));
    let listed = arm.list_all(&scope(SUB1)).await;
    assert!(matches!(&listed, Err(AccessError::Permanent(m)) if m.contains(&odd)), "{listed:?}");
}

#[tokio::test]
async fn arm_refuses_to_list_a_scope_of_another_kind_before_any_call() {
    let fake = FakeAzure::start().await;
    let arm = provider(&fake, fast_retry());
    for other in ["directory:/", &format!("group:{TEAM}")] {
        assert!(matches!(arm.list_all(&scope(other)).await, Err(AccessError::Permanent(_))), "{other}");
    }
    assert!(fake.seen().is_empty());
}

// ---- local simulation ----

#[tokio::test]
async fn the_local_simulation_lists_its_own_grants_and_those_made_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalAccessProvider::open(&dir.path().join("sim.db")).unwrap();
    let mine = local.grant(&elevate_spec(SUB1, ALICE, "Reader")).await.unwrap();
    let role = |name: &str| RoleDefinitionId::parse(name).unwrap();
    let principal = |id: &str| PrincipalId::parse(id).unwrap();
    let at_scope = local.seed_foreign(&scope(SUB1), principal(BOB), role("Contributor")).await.unwrap();
    let below = local.seed_foreign(&scope(&rg()), principal(CAROL), role("Reader")).await.unwrap();
    local.seed_foreign(&scope(SUB2), principal(DANA), role("Owner")).await.unwrap();
    local.seed_foreign(&scope(MG), principal(ERIN), role("Owner")).await.unwrap();
    let au = format!("directory:/administrativeUnits/{AU}");
    let user_admin = ScopeKind::Directory.parse_role("User Administrator").unwrap();
    let at_au = local.seed_foreign(&scope(&au), principal(DANA), user_admin).await.unwrap();

    let listed = local.list_all(&scope(SUB1)).await.unwrap();
    assert_eq!(
        summary(&listed),
        sorted(vec![
            row(&mine.id, ALICE, SUB1, true),
            row(&at_scope, BOB, SUB1, false),
            row(&below, CAROL, &rg(), false),
        ])
    );
    assert_eq!(local.list_managed(&scope(SUB1)).await.unwrap(), vec![mine]);
    assert_eq!(summary(&local.list_all(&scope(&rg())).await.unwrap()), vec![row(&below, CAROL, &rg(), false)]);
    assert_eq!(summary(&local.list_all(&scope("directory:/")).await.unwrap()), vec![row(&at_au, DANA, &au, false)]);
    assert_eq!(local.list_all(&scope(&format!("group:{TEAM}"))).await.unwrap(), vec![]);
}

#[tokio::test]
async fn routed_access_lists_through_the_provider_of_the_scopes_kind() {
    let dir = tempfile::tempdir().unwrap();
    let azure = Arc::new(LocalAccessProvider::open(&dir.path().join("azure.db")).unwrap());
    let graph = Arc::new(LocalAccessProvider::open(&dir.path().join("graph.db")).unwrap());
    let ga = ScopeKind::Directory.parse_role("Global Administrator").unwrap();
    let reader = RoleDefinitionId::parse("Reader").unwrap();
    let alice = PrincipalId::parse(ALICE).unwrap();
    let in_azure = azure.seed_foreign(&scope(SUB1), alice, reader).await.unwrap();
    // Misplaced on purpose: only routing keeps it out of the directory's listing.
    azure.seed_foreign(&scope("directory:/"), alice, ga).await.unwrap();
    let in_graph = graph.seed_foreign(&scope("directory:/"), alice, ga).await.unwrap();
    graph.seed_foreign(&scope(SUB1), PrincipalId::parse(BOB).unwrap(), reader).await.unwrap();
    let routed = RoutedAccess::new(azure, graph);

    assert_eq!(summary(&routed.list_all(&scope(SUB1)).await.unwrap()), vec![row(&in_azure, ALICE, SUB1, false)]);
    assert_eq!(
        summary(&routed.list_all(&scope("directory:/")).await.unwrap()),
        vec![row(&in_graph, ALICE, "directory:/", false)]
    );
}

// ---- Graph ----

struct Graph {
    fake: Arc<FakeGraph>,
    provider: GraphAccessProvider,
    _azure: Arc<FakeAzure>,
}

impl Drop for Graph {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let violations = self.fake.violations();
            assert!(violations.is_empty(), "Elevate sent what Graph would refuse: {violations:#?}");
        }
    }
}

async fn graph() -> Graph {
    let fake = FakeGraph::start().await;
    for (id, name) in [(ALICE, "Alice Smith"), (BOB, "Bob Jones"), (CAROL, "Carol Diaz")] {
        fake.add_user(id, name);
    }
    fake.add_group(TEAM, "Team", false);
    fake.add_administrative_unit(AU);
    let azure = FakeAzure::start().await;
    azure.wire_graph(&fake.token);
    let provider =
        GraphAccessProvider::new(&fake.url(), Arc::new(FakeIdentityCredential::new(&azure)), fast_retry()).unwrap();
    Graph { fake, provider, _azure: azure }
}

#[tokio::test]
async fn graph_lists_every_directory_role_assignment_at_or_below_the_scope_and_marks_none() {
    let g = graph().await;
    g.fake.set_page_size(1);
    let mine = g.provider.grant(&elevate_spec("directory:/", ALICE, "Global Administrator")).await.unwrap();
    assert_eq!(mine.id, role_assignment_id(GLOBAL_ADMINISTRATOR, ALICE, None));
    let at_root = g.fake.add_role_assignment(SECURITY_ADMINISTRATOR, BOB, "/");
    let au = format!("directory:/administrativeUnits/{AU}");
    let at_au = g.fake.add_role_assignment(USER_ADMINISTRATOR, CAROL, &format!("/administrativeUnits/{AU}"));
    g.fake.reset_log();

    let listed = g.provider.list_all(&scope("directory:/")).await.unwrap();
    // Graph keeps no marker: Elevate's own grant is told apart by its recorded id, not here.
    assert_eq!(
        summary(&listed),
        sorted(vec![
            row(&mine.id, ALICE, "directory:/", false),
            row(&at_root, BOB, "directory:/", false),
            row(&at_au, CAROL, &au, false),
        ])
    );
    let ga = listed.iter().find(|l| l.assignment.id == mine.id).unwrap();
    assert_eq!(ga.assignment.role_definition_id, mine.role_definition_id);
    assert_eq!((ga.assignment.name, ga.assignment.description.as_deref()), (Uuid::nil(), None));
    // The tenant's listing is unfiltered (everything is below it), three pages of one.
    let requests = g.fake.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests.iter().all(|r| r.status == 200 && !r.query.iter().any(|(k, _)| k == "$filter")));

    g.fake.reset_log();
    let listed = g.provider.list_all(&scope(&au)).await.unwrap();
    assert_eq!(summary(&listed), vec![row(&at_au, CAROL, &au, false)]);
    let requests = g.fake.requests();
    let filter = requests.first().and_then(|r| r.query.iter().find(|(k, _)| k == "$filter")).map(|(_, v)| v.clone());
    assert_eq!(filter, Some(format!("directoryScopeId eq '/administrativeUnits/{AU}'")));
}

#[tokio::test]
async fn graph_lists_a_groups_direct_members_and_owners() {
    let g = graph().await;
    g.fake.set_page_size(1);
    g.fake.add_member(TEAM, BOB);
    g.fake.add_owner(TEAM, CAROL);
    let mine = g.provider.grant(&elevate_spec(&format!("group:{TEAM}"), ALICE, "member")).await.unwrap();
    assert_eq!(mine.id, format!("groups/{TEAM}/members/{ALICE}"));

    let at = format!("group:{TEAM}");
    let listed = g.provider.list_all(&scope(&at)).await.unwrap();
    assert_eq!(
        summary(&listed),
        sorted(vec![
            row(&mine.id, ALICE, &at, false),
            row(&format!("groups/{TEAM}/members/{BOB}"), BOB, &at, false),
            row(&format!("groups/{TEAM}/owners/{CAROL}"), CAROL, &at, false),
        ])
    );
    let role_of = |id: &str| listed.iter().find(|l| l.assignment.id == id).unwrap().assignment.role_definition_id;
    assert_eq!(role_of(&mine.id), ScopeKind::Group.parse_role("member").unwrap());
    assert_eq!(role_of(&format!("groups/{TEAM}/owners/{CAROL}")), ScopeKind::Group.parse_role("owner").unwrap());

    // A group Graph does not know is an error, not an empty list.
    let unknown = g.provider.list_all(&scope("group:99999999-9999-9999-9999-999999999999")).await;
    assert!(matches!(&unknown, Err(AccessError::Permanent(m)) if m.contains("does not know")), "{unknown:?}");
}

#[tokio::test]
async fn a_later_graph_page_that_fails_fails_the_listing() {
    let g = graph().await;
    g.fake.set_page_size(1);
    g.fake.add_member(TEAM, BOB);
    g.fake.add_member(TEAM, CAROL);
    g.fake.push_fault_for(FaultTarget::LaterPage, GraphFault::Status(404));
    let listed = g.provider.list_all(&scope(&format!("group:{TEAM}"))).await;
    assert!(matches!(&listed, Err(AccessError::Transient(m)) if m.contains("later page")), "{listed:?}");

    g.fake.add_role_assignment(SECURITY_ADMINISTRATOR, BOB, "/");
    g.fake.add_role_assignment(USER_ADMINISTRATOR, CAROL, "/");
    g.fake.push_fault_for(FaultTarget::LaterPage, GraphFault::Status(404));
    let listed = g.provider.list_all(&scope("directory:/")).await;
    assert!(matches!(&listed, Err(AccessError::Transient(_))), "{listed:?}");
    // Whole again once Graph answers.
    assert_eq!(g.provider.list_all(&scope("directory:/")).await.unwrap().len(), 2);
}

#[tokio::test]
async fn graph_refuses_to_list_an_azure_scope_before_any_call() {
    let g = graph().await;
    assert!(matches!(g.provider.list_all(&scope(SUB1)).await, Err(AccessError::Permanent(_))));
    assert!(g.fake.requests().is_empty());
}
