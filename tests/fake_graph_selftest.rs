//! Self-tests of the strict fake Microsoft Graph (tests/support/fake_graph.rs), over HTTP: every
//! behaviour from graph-spec.md that Elevate's Graph tests will lean on, so the fake cannot drift
//! from the spec unnoticed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde_json::{Value, json};

use crate::support::fake_graph::{
    BUILT_IN_ROLES, FakeGraph, FaultTarget, GLOBAL_ADMINISTRATOR, GROUPS_ADMINISTRATOR, GraphFault,
    HELPDESK_ADMINISTRATOR, LEAST_PRIVILEGE, SECURITY_ADMINISTRATOR, USER_ADMINISTRATOR, role_assignment_id,
};
use crate::support::{ALICE, APPROVERS, BOB, BROKER_SP, OPS, http_client};

/// A plain security group.
const TEAM: &str = OPS;
/// A role-assignable group.
const ADMINS: &str = APPROVERS;
/// A plain group, nested into TEAM by some tests.
const NESTED: &str = "66666666-6666-6666-6666-666666666666";
const AU: &str = "77777777-7777-7777-7777-777777777777";
const SP: &str = BROKER_SP;
/// In the directory nowhere.
const NOBODY: &str = "99999999-9999-9999-9999-999999999999";
/// The principal of the create sample in GD rbacapplication-post-roleassignments.md (§2.1).
const DOC_PRINCIPAL: &str = "ace08ec9-aa11-4ada-9145-addf0398233e";
const DOC_ID: &str = "lAPpYvVpN0KRkAEhdxReEMmO4KwRqtpKkUWt3wOYIz4-1";

const CONFLICT: &str =
    "A conflicting object with one or more of the specified property values is present in the directory.";
const DENIED: &str = "Insufficient privileges to complete the operation.";

struct Graph {
    fake: Arc<FakeGraph>,
    http: reqwest::Client,
}

async fn seeded() -> Graph {
    let fake = FakeGraph::start().await;
    fake.add_user(ALICE, "Alice Smith");
    fake.add_user(BOB, "Bob Jones");
    fake.add_user(DOC_PRINCIPAL, "Doc Sample");
    fake.add_service_principal(SP);
    fake.add_group(TEAM, "Team", false);
    fake.add_group(NESTED, "Nested", false);
    fake.add_group(ADMINS, "Admins", true);
    fake.add_administrative_unit(AU);
    Graph { fake, http: http_client() }
}

async fn body_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    (status, body)
}

impl Graph {
    fn url(&self, path: &str) -> String {
        format!("{}/v1.0{path}", self.fake.url())
    }

    fn authed(&self, builder: RequestBuilder) -> RequestBuilder {
        builder.bearer_auth(&self.fake.token)
    }

    async fn send(&self, builder: RequestBuilder) -> (u16, Value) {
        body_of(self.authed(builder).send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    async fn get_url(&self, url: &str) -> (u16, Value) {
        self.send(self.http.get(url)).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    async fn assign(&self, role: &str, principal: &str, scope: &str) -> (u16, Value) {
        let body = json!({"@odata.type": "#microsoft.graph.unifiedRoleAssignment",
                          "roleDefinitionId": role, "principalId": principal, "directoryScopeId": scope});
        self.post("/roleManagement/directory/roleAssignments", body).await
    }

    fn reference(&self, collection: &str, id: &str) -> Value {
        json!({"@odata.id": format!("{}/v1.0/{collection}/{id}", self.fake.url())})
    }

    async fn add(&self, group: &str, link: &str, object: &str) -> (u16, Value) {
        self.post(&format!("/groups/{group}/{link}/$ref"), self.reference("directoryObjects", object)).await
    }

    /// Lists with a `$filter`, following every `@odata.nextLink`; returns the ids in order.
    async fn list_all(&self, first: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut next = Some(self.url(first));
        while let Some(url) = next {
            let (status, page) = self.get_url(&url).await;
            assert_eq!(status, 200, "{page}");
            ids.extend(page["value"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()));
            next = page["@odata.nextLink"].as_str().map(str::to_owned);
        }
        ids
    }

    fn violations(&self) -> Vec<String> {
        self.fake.violations().into_iter().map(|v| format!("{} {}: {}", v.method, v.path, v.reason)).collect()
    }
}

/// The Graph error envelope of §1, exactly, with this status, code and a message containing `message`.
#[track_caller]
fn assert_graph_error(answer: &(u16, Value), status: u16, code: &str, message: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    let error = body["error"].as_object().unwrap_or_else(|| panic!("no error envelope: {body}"));
    let keys: BTreeSet<&str> = error.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["code", "message", "innerError"]), "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].as_str().unwrap().contains(message), "{body}");
    for key in ["date", "request-id", "client-request-id"] {
        assert!(error["innerError"][key].is_string(), "{key} missing: {body}");
    }
}

fn ids(body: &Value) -> Vec<String> {
    body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().map_or_else(|| v["id"].to_string(), str::to_owned))
        .collect()
}

// ---- §1 ----

#[tokio::test]
async fn every_request_needs_the_fakes_bearer_token() {
    let g = seeded().await;
    let url = g.url(&format!("/users/{ALICE}"));

    let response = g.http.get(&url).header("client-request-id", "my-call-1").send().await.unwrap();
    assert_eq!(response.headers()["client-request-id"], "my-call-1");
    let missing = body_of(response).await;
    assert_graph_error(&missing, 401, "InvalidAuthenticationToken", "Access token is empty.");
    assert_eq!(missing.1["error"]["innerError"]["client-request-id"], "my-call-1");
    assert_eq!(g.fake.violations().len(), 1, "no Authorization header at all is a client bug");

    let wrong = body_of(g.http.get(&url).bearer_auth("fake-graph-token-of-another-fake").send().await.unwrap()).await;
    assert_graph_error(&wrong, 401, "InvalidAuthenticationToken", "CompactToken");
    assert_eq!(g.fake.violations().len(), 1, "a wrong token is not malformed");

    let (status, user) = g.get(&format!("/users/{ALICE}")).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["id"], ALICE);
    assert_ne!(FakeGraph::start().await.token, g.fake.token, "tokens are random per fake");
}

// ---- §3 ----

#[tokio::test]
async fn built_in_role_definitions_are_served_by_template_id() {
    let g = seeded().await;
    assert_eq!(BUILT_IN_ROLES.len(), 21);
    let ga = BUILT_IN_ROLES.iter().find(|r| r.id == GLOBAL_ADMINISTRATOR).unwrap();
    assert!(ga.privileged && !ga.au_assignable);
    let groups_admin = BUILT_IN_ROLES.iter().find(|r| r.id == GROUPS_ADMINISTRATOR).unwrap();
    assert!(!groups_admin.privileged && groups_admin.au_assignable);

    let (status, role) = g.get(&format!("/roleManagement/directory/roleDefinitions/{GLOBAL_ADMINISTRATOR}")).await;
    assert_eq!(status, 200, "{role}");
    assert_eq!(role["id"], GLOBAL_ADMINISTRATOR);
    assert_eq!(role["templateId"], GLOBAL_ADMINISTRATOR);
    assert_eq!(role["displayName"], ga.display_name);
    assert_eq!(role["isBuiltIn"], true);
    assert!(
        role["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#roleManagement/directory/roleDefinitions/$entity")
    );

    let (_, selected) = g
        .get(&format!("/roleManagement/directory/roleDefinitions/{USER_ADMINISTRATOR}?$select=displayName,templateId"))
        .await;
    let keys: BTreeSet<&str> = selected.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["@odata.context", "displayName", "templateId"]), "{selected}");

    let unknown = g.get(&format!("/roleManagement/directory/roleDefinitions/{NOBODY}")).await;
    assert_graph_error(&unknown, 404, "Request_ResourceNotFound", NOBODY);
    assert!(g.violations().is_empty(), "{:?}", g.violations());
}

// ---- §2 ----

#[tokio::test]
async fn a_role_assignment_is_created_with_the_documented_deterministic_id() {
    let g = seeded().await;
    let (status, created) = g.assign(GLOBAL_ADMINISTRATOR, DOC_PRINCIPAL, "/").await;
    assert_eq!(status, 201, "{created}");
    let keys: BTreeSet<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    let expected = [
        "@odata.context",
        "id",
        "roleDefinitionId",
        "principalId",
        "directoryScopeId",
        "appScopeId",
        "condition",
        "principalOrganizationId",
    ];
    assert_eq!(keys, BTreeSet::from(expected), "{created}");
    assert_eq!(created["id"], DOC_ID, "the id of the doc sample, decoded in graph-spec §0 item 6");
    assert_eq!(created["directoryScopeId"], "/");
    assert!(created["appScopeId"].is_null() && created["condition"].is_null());
    assert_eq!(created["principalOrganizationId"], crate::support::fake_entra::TENANT);
    assert_eq!(role_assignment_id(GLOBAL_ADMINISTRATOR, DOC_PRINCIPAL, None), DOC_ID);

    let stored = g.fake.role_assignments();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].id.as_str(), stored[0].role_definition_id.as_str(), stored[0].principal_id.as_str()),
        (DOC_ID, GLOBAL_ADMINISTRATOR, DOC_PRINCIPAL)
    );
    assert_eq!(stored[0].directory_scope_id, "/");

    let path = format!("/roleManagement/directory/roleAssignments/{DOC_ID}");
    let (status, read) = g.get(&path).await;
    assert_eq!((status, &read["principalId"]), (200, &json!(DOC_PRINCIPAL)), "{read}");

    let (status, body) = g.delete(&path).await;
    assert_eq!((status, body), (204, Value::Null), "204 with an empty body");
    assert!(g.fake.role_assignments().is_empty());
    assert_graph_error(&g.get(&path).await, 404, "Request_ResourceNotFound", DOC_ID);
    assert_graph_error(&g.delete(&path).await, 404, "Request_ResourceNotFound", DOC_ID);

    let (status, again) = g.assign(GLOBAL_ADMINISTRATOR, DOC_PRINCIPAL, "/").await;
    assert_eq!((status, &again["id"]), (201, &json!(DOC_ID)), "delete + re-create gives the same id");
    assert!(g.violations().is_empty(), "{:?}", g.violations());
}

#[tokio::test]
async fn administrative_unit_scope_takes_only_au_assignable_roles_and_existing_units() {
    let g = seeded().await;
    let scope = format!("/administrativeUnits/{AU}");
    let (status, created) = g.assign(USER_ADMINISTRATOR, ALICE, &scope).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(id, role_assignment_id(USER_ADMINISTRATOR, ALICE, Some(AU)));
    assert_eq!(id.len(), 64 + 2, "three GUIDs, base64url without padding, then -1");
    assert_eq!(created["directoryScopeId"], scope);
    assert_ne!(id, role_assignment_id(USER_ADMINISTRATOR, ALICE, None));

    assert_eq!(g.assign(HELPDESK_ADMINISTRATOR, ALICE, &scope).await.0, 201);
    for role in [GLOBAL_ADMINISTRATOR, SECURITY_ADMINISTRATOR] {
        assert_graph_error(&g.assign(role, ALICE, &scope).await, 400, "Request_BadRequest", "administrative unit");
    }
    let unknown_unit = format!("/administrativeUnits/{NOBODY}");
    assert_graph_error(&g.assign(USER_ADMINISTRATOR, ALICE, &unknown_unit).await, 400, "Request_BadRequest", NOBODY);
    assert!(g.violations().is_empty(), "well-formed refusals are not violations: {:?}", g.violations());

    let malformed = [
        "",
        "/subscriptions/00000000-0000-0000-0000-000000000001",
        "/administrativeUnits/not-a-guid",
        "administrativeUnits",
    ];
    for scope in malformed {
        let answer = g.assign(USER_ADMINISTRATOR, ALICE, scope).await;
        assert_graph_error(
            &answer,
            400,
            "Request_BadRequest",
            "Must specify valid property scope of entity RoleAssignment",
        );
    }
    let without = g
        .post(
            "/roleManagement/directory/roleAssignments",
            json!({"roleDefinitionId": USER_ADMINISTRATOR, "principalId": ALICE}),
        )
        .await;
    assert_graph_error(&without, 400, "Request_BadRequest", "Must specify valid property scope");
    assert_eq!(g.fake.violations().len(), malformed.len() + 1, "{:?}", g.violations());
    assert_eq!(g.fake.role_assignments().len(), 2);
}

#[tokio::test]
async fn role_assignment_principals_and_roles_must_exist_and_groups_be_role_assignable() {
    let g = seeded().await;
    assert_graph_error(&g.assign(USER_ADMINISTRATOR, NOBODY, "/").await, 404, "Request_ResourceNotFound", NOBODY);
    assert_graph_error(&g.assign(NOBODY, ALICE, "/").await, 404, "Request_ResourceNotFound", NOBODY);
    assert_graph_error(&g.assign(USER_ADMINISTRATOR, TEAM, "/").await, 400, "Request_BadRequest", "role-assignable");
    assert_graph_error(&g.assign(USER_ADMINISTRATOR, AU, "/").await, 400, "Request_BadRequest", AU);
    assert!(g.fake.role_assignments().is_empty());
    assert_eq!(g.assign(USER_ADMINISTRATOR, ADMINS, "/").await.0, 201);
    assert_eq!(g.assign(USER_ADMINISTRATOR, SP, "/").await.0, 201);
    assert_eq!(g.fake.role_assignments().len(), 2);
    assert!(g.violations().is_empty(), "{:?}", g.violations());
}

#[tokio::test]
async fn a_duplicate_role_assignment_is_a_400_conflict_not_a_409() {
    let g = seeded().await;
    let (status, first) = g.assign(USER_ADMINISTRATOR, ALICE, "/").await;
    assert_eq!(status, 201);
    let duplicate = g.assign(USER_ADMINISTRATOR, ALICE, "/").await;
    assert_graph_error(&duplicate, 400, "Request_BadRequest", CONFLICT);
    assert!(!duplicate.1.to_string().contains(first["id"].as_str().unwrap()), "Graph does not name the existing one");
    // The seeded standing access collides the same way.
    g.fake.add_role_assignment(HELPDESK_ADMINISTRATOR, BOB, "/");
    assert_graph_error(&g.assign(HELPDESK_ADMINISTRATOR, BOB, "/").await, 400, "Request_BadRequest", CONFLICT);
    assert_eq!(g.fake.role_assignments().len(), 2);
}

#[tokio::test]
async fn malformed_role_assignment_bodies_are_refused_as_violations() {
    let g = seeded().await;
    let path = g.url("/roleManagement/directory/roleAssignments");
    let valid = json!({"roleDefinitionId": USER_ADMINISTRATOR, "principalId": ALICE, "directoryScopeId": "/"});

    let no_type = g.send(g.http.post(&path).body(valid.to_string())).await;
    assert_graph_error(&no_type, 400, "BadRequest", "must contain the Content-Type header declaration");
    let not_json =
        g.send(g.http.post(&path).header("Content-Type", "application/json").body("{roleDefinitionId:")).await;
    assert_graph_error(&not_json, 400, "BadRequest", "Unable to read JSON request payload");

    let mut cases = Vec::new();
    for (field, value) in [
        ("roleDefinitionId", Value::Null),
        ("principalId", Value::Null),
        ("principalId", json!("alice@contoso.example")),
        ("id", json!(DOC_ID)),
        ("condition", json!("@Resource[x] == 'y'")),
        ("appScopeId", json!("/")),
    ] {
        let mut body = valid.clone();
        body[field] = value.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        }
        cases.push(g.post("/roleManagement/directory/roleAssignments", body).await);
    }
    for answer in &cases {
        assert_eq!(answer.0, 400, "{}", answer.1);
    }
    assert!(g.fake.role_assignments().is_empty());
    assert_eq!(g.fake.violations().len(), 2 + cases.len(), "{:?}", g.violations());
    // Unknown fields are ignored, not refused.
    let mut extra = valid.clone();
    extra["resourceScope"] = json!("/");
    assert_eq!(g.post("/roleManagement/directory/roleAssignments", extra).await.0, 201);
}

#[tokio::test]
async fn role_assignment_lists_filter_with_eq_and_in_joined_by_and() {
    let g = seeded().await;
    let au = format!("/administrativeUnits/{AU}");
    let alice_ua = g.fake.add_role_assignment(USER_ADMINISTRATOR, ALICE, "/");
    let alice_ua_au = g.fake.add_role_assignment(USER_ADMINISTRATOR, ALICE, &au);
    let alice_ga = g.fake.add_role_assignment(GLOBAL_ADMINISTRATOR, ALICE, "/");
    let bob_ua = g.fake.add_role_assignment(USER_ADMINISTRATOR, BOB, "/");
    let list = |filter: &str| format!("/roleManagement/directory/roleAssignments?$filter={}", urlencode(filter));
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    let alice = g.list_all(&list(&format!("principalId eq '{ALICE}'"))).await;
    assert_eq!(sorted(alice), sorted(vec![alice_ua.clone(), alice_ua_au.clone(), alice_ga.clone()]));
    let both = g
        .list_all(&list(&format!("principalId in ('{ALICE}', '{BOB}') and roleDefinitionId eq '{USER_ADMINISTRATOR}'")))
        .await;
    assert_eq!(sorted(both), sorted(vec![alice_ua.clone(), alice_ua_au.clone(), bob_ua.clone()]));
    let exact =
        format!("principalId eq '{ALICE}' and roleDefinitionId eq '{USER_ADMINISTRATOR}' and directoryScopeId eq '/'");
    assert_eq!(g.list_all(&list(&exact)).await, vec![alice_ua.clone()]);
    let at_unit = g
        .list_all(&list(&format!(
            "directoryScopeId eq '{}'",
            au.to_uppercase().replace("/ADMINISTRATIVEUNITS", "/administrativeUnits")
        )))
        .await;
    assert_eq!(at_unit, vec![alice_ua_au], "GUIDs compare case-insensitively");
    assert!(g.list_all(&list("principalId eq 'o''brien'")).await.is_empty(), "'' is an escaped quote");
    assert_eq!(g.list_all("/roleManagement/directory/roleAssignments").await.len(), 4, "no filter lists all");

    let (status, page) = g.get(&format!("{}&$select=id,principalId", list(&exact))).await;
    assert_eq!(status, 200);
    let keys: BTreeSet<&str> = page["value"][0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["id", "principalId"]));
    assert!(page["@odata.context"].as_str().unwrap().ends_with("$metadata#roleManagement/directory/roleAssignments"));
    assert!(g.violations().is_empty(), "{:?}", g.violations());
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn unsupported_filters_and_query_options_are_refused_as_violations() {
    let g = seeded().await;
    let filters = [
        format!("principalId ne '{ALICE}'"),
        format!("principalId eq '{ALICE}' or roleDefinitionId eq '{USER_ADMINISTRATOR}'"),
        "startswith(principalId,'1111')".to_owned(),
        format!("principalId eq {ALICE}"),
        "appScopeId eq '/'".to_owned(),
        "principalId eq 'unterminated".to_owned(),
        format!("principalId in '{ALICE}'"),
        format!("PrincipalId eq '{ALICE}'"),
        String::new(),
    ];
    for filter in &filters {
        let answer = g.get(&format!("/roleManagement/directory/roleAssignments?$filter={}", urlencode(filter))).await;
        assert_graph_error(&answer, 400, "Request_UnsupportedQuery", "filter");
    }
    for option in ["$orderby=principalId", "$expand=principal", "$count=true", "$search=%22x%22", "$top=1000", "$top=0"]
    {
        let (status, body) = g.get(&format!("/roleManagement/directory/roleAssignments?{option}")).await;
        assert_eq!(status, 400, "{option}: {body}");
    }
    let top = g.get("/roleManagement/directory/roleAssignments?$top=1000").await;
    assert_graph_error(
        &top,
        400,
        "Request_BadRequest",
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive.",
    );
    assert_eq!(g.fake.violations().len(), filters.len() + 7, "{:?}", g.violations());
}

#[tokio::test]
async fn lists_come_in_small_pages_with_an_absolute_next_link() {
    let g = seeded().await;
    g.fake.set_page_size(2);
    for role in
        [USER_ADMINISTRATOR, HELPDESK_ADMINISTRATOR, GROUPS_ADMINISTRATOR, GLOBAL_ADMINISTRATOR, SECURITY_ADMINISTRATOR]
    {
        g.fake.add_role_assignment(role, ALICE, "/");
    }
    g.fake.add_role_assignment(USER_ADMINISTRATOR, BOB, "/");
    let filter = urlencode(&format!("principalId eq '{ALICE}'"));
    let (status, first) = g.get(&format!("/roleManagement/directory/roleAssignments?$filter={filter}")).await;
    assert_eq!(status, 200);
    assert_eq!(first["value"].as_array().unwrap().len(), 2);
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&g.url("/roleManagement/directory/roleAssignments?")), "absolute: {next}");
    assert!(next.contains("%24skiptoken=") && next.contains("%24filter="), "carries $skiptoken and the filter: {next}");

    let all = g.list_all(&format!("/roleManagement/directory/roleAssignments?$filter={filter}")).await;
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 5, "no item twice");
    let (_, small) = g.get(&format!("/roleManagement/directory/roleAssignments?$filter={filter}&$top=1")).await;
    assert_eq!(small["value"].as_array().unwrap().len(), 1, "$top below the page size shortens pages");
    assert!(g.violations().is_empty(), "{:?}", g.violations());

    // Tokens are opaque: a made-up one, or one moved to another query, is refused.
    let forged = g.get("/roleManagement/directory/roleAssignments?$skiptoken=2").await;
    assert_graph_error(&forged, 400, "Request_BadRequest", "$skiptoken");
    let token = next.split("%24skiptoken=").nth(1).unwrap();
    let moved = g.get(&format!("/roleManagement/directory/roleAssignments?$skiptoken={token}")).await;
    assert_graph_error(&moved, 400, "Request_BadRequest", "$skiptoken");
    assert_eq!(g.fake.violations().len(), 2);
}

// ---- §4 ----

#[tokio::test]
async fn members_and_owners_are_added_by_reference() {
    let g = seeded().await;
    assert_eq!(g.add(TEAM, "members", ALICE).await, (204, Value::Null), "204 with an empty body");
    let users_form = g.post(&format!("/groups/{TEAM}/members/$ref"), g.reference("users", BOB)).await;
    assert_eq!(users_form.0, 204, "{}", users_form.1);
    let groups_form = g.post(&format!("/groups/{TEAM}/members/$ref"), g.reference("groups", NESTED)).await;
    assert_eq!(groups_form.0, 204, "{}", groups_form.1);
    let mut want = vec![ALICE.to_owned(), BOB.to_owned(), NESTED.to_owned()];
    want.sort();
    assert_eq!(g.fake.members(TEAM), want);

    let duplicate = g.add(TEAM, "members", ALICE).await;
    assert_graph_error(
        &duplicate,
        400,
        "Request_BadRequest",
        "One or more added object references already exist for the following modified properties: 'members'.",
    );
    assert_eq!(g.add(TEAM, "owners", ALICE).await.0, 204, "owners are not members");
    let duplicate_owner = g.add(TEAM, "owners", ALICE).await;
    assert_graph_error(
        &duplicate_owner,
        400,
        "Request_BadRequest",
        "One or more added object references already exist for the following modified properties: 'owners'.",
    );
    assert_eq!(g.fake.owners(TEAM), vec![ALICE.to_owned()]);

    assert_graph_error(&g.add(TEAM, "members", NOBODY).await, 404, "Request_ResourceNotFound", NOBODY);
    assert_graph_error(&g.add(NOBODY, "members", ALICE).await, 404, "Request_ResourceNotFound", NOBODY);
    let wrong_type = g.post(&format!("/groups/{NESTED}/members/$ref"), g.reference("users", TEAM)).await;
    assert_graph_error(&wrong_type, 404, "Request_ResourceNotFound", TEAM);
    assert_graph_error(&g.add(TEAM, "owners", NESTED).await, 400, "Request_BadRequest", "owners");
    assert!(g.violations().is_empty(), "{:?}", g.violations());

    let foreign = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{BOB}")});
    let answer = g.post(&format!("/groups/{NESTED}/members/$ref"), foreign).await;
    assert_graph_error(&answer, 400, "Request_BadRequest", "Unsupported referenced-object resource identifier");
    let bare = g.post(&format!("/groups/{NESTED}/members/$ref"), json!({"id": BOB})).await;
    assert_eq!(bare.0, 400);
    let no_ref = g.post(&format!("/groups/{NESTED}/members"), g.reference("users", BOB)).await;
    assert_graph_error(
        &no_ref,
        405,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    );
    assert_eq!(g.fake.violations().len(), 3, "{:?}", g.violations());
    assert!(g.fake.members(NESTED).is_empty());
}

#[tokio::test]
async fn role_assignable_groups_take_no_nested_groups() {
    let g = seeded().await;
    assert_graph_error(&g.add(ADMINS, "members", NESTED).await, 400, "Request_BadRequest", "role-assignable");
    assert_graph_error(&g.add(NESTED, "members", NESTED).await, 400, "Request_BadRequest", "itself");
    assert_eq!(g.add(ADMINS, "members", ALICE).await.0, 204);
    assert_eq!(g.fake.members(ADMINS), vec![ALICE.to_owned()]);
}

#[tokio::test]
async fn removing_a_link_needs_ref_and_keeps_the_last_owner() {
    let g = seeded().await;
    g.fake.add_member(TEAM, ALICE);
    g.fake.add_member(TEAM, BOB);
    g.fake.add_owner(TEAM, ALICE);
    g.fake.add_owner(TEAM, SP);

    assert_eq!(g.delete(&format!("/groups/{TEAM}/members/{ALICE}/$ref")).await, (204, Value::Null));
    assert_eq!(g.fake.members(TEAM), vec![BOB.to_owned()]);
    let again = g.delete(&format!("/groups/{TEAM}/members/{ALICE}/$ref")).await;
    assert_graph_error(&again, 404, "Request_ResourceNotFound", &format!("Resource '{TEAM}' does not exist"));
    let gone_group = g.delete(&format!("/groups/{NOBODY}/members/{BOB}/$ref")).await;
    assert_graph_error(&gone_group, 404, "Request_ResourceNotFound", NOBODY);

    assert_eq!(g.delete(&format!("/groups/{TEAM}/owners/{SP}/$ref")).await.0, 204);
    let last = g.delete(&format!("/groups/{TEAM}/owners/{ALICE}/$ref")).await;
    assert_graph_error(
        &last,
        400,
        "Request_BadRequest",
        "The group must have at least one owner, hence this owner cannot be removed.",
    );
    assert_eq!(g.fake.owners(TEAM), vec![ALICE.to_owned()]);
    assert!(g.violations().is_empty(), "{:?}", g.violations());

    // Without /$ref Graph deletes Bob from the directory: refused and recorded.
    let deletes_user = g.delete(&format!("/groups/{TEAM}/members/{BOB}")).await;
    assert_graph_error(&deletes_user, 400, "Request_BadRequest", "/$ref");
    assert_eq!(g.fake.members(TEAM), vec![BOB.to_owned()]);
    let bad_member = g.delete(&format!("/groups/{TEAM}/members/bob/$ref")).await;
    assert_graph_error(&bad_member, 400, "Request_UnsupportedQuery", "link property 'members'");
    let violations = g.fake.violations();
    assert_eq!(violations.len(), 2, "{:?}", g.violations());
    assert_eq!(violations[0].method, "DELETE");
    assert_eq!(violations[0].path, format!("/v1.0/groups/{TEAM}/members/{BOB}"));
    assert!(violations[0].reason.contains("without /$ref"), "{}", violations[0].reason);
}

#[tokio::test]
async fn member_lists_carry_odata_types_page_and_go_transitive() {
    let g = seeded().await;
    g.fake.set_page_size(2);
    g.fake.add_member(TEAM, ALICE);
    g.fake.add_member(TEAM, NESTED);
    g.fake.add_member(TEAM, SP);
    g.fake.add_member(NESTED, BOB);
    g.fake.add_owner(TEAM, ALICE);

    let (status, page) = g.get(&format!("/groups/{TEAM}/members?$select=id")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["@odata.nextLink"].is_string(), "3 members in pages of 2");
    for item in page["value"].as_array().unwrap() {
        let keys: BTreeSet<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["@odata.type", "id"]), "{item}");
    }
    let (_, full) = g.get(&format!("/groups/{TEAM}/members")).await;
    let types: BTreeSet<&str> =
        full["value"].as_array().unwrap().iter().map(|m| m["@odata.type"].as_str().unwrap()).collect();
    assert!(types.is_subset(&BTreeSet::from([
        "#microsoft.graph.user",
        "#microsoft.graph.group",
        "#microsoft.graph.servicePrincipal"
    ])));

    let direct: BTreeSet<String> = g.list_all(&format!("/groups/{TEAM}/members")).await.into_iter().collect();
    assert_eq!(direct, [ALICE, NESTED, SP].map(str::to_owned).into());
    let transitive: BTreeSet<String> =
        g.list_all(&format!("/groups/{TEAM}/transitiveMembers?$select=id")).await.into_iter().collect();
    assert_eq!(transitive, [ALICE, NESTED, SP, BOB].map(str::to_owned).into());
    assert_eq!(g.list_all(&format!("/groups/{TEAM}/owners")).await, vec![ALICE.to_owned()]);

    let (status, group) = g.get(&format!("/groups/{ADMINS}?$select=id,isAssignableToRole")).await;
    assert_eq!((status, &group["isAssignableToRole"]), (200, &json!(true)), "{group}");
    assert_graph_error(&g.get(&format!("/groups/{NOBODY}/members")).await, 404, "Request_ResourceNotFound", NOBODY);
    assert_graph_error(&g.get(&format!("/groups/{ALICE}")).await, 404, "Request_ResourceNotFound", ALICE);
    assert!(g.violations().is_empty(), "{:?}", g.violations());
    assert_eq!(g.get(&format!("/groups/{TEAM}/members?$select=mood")).await.0, 400);
    assert_eq!(g.get(&format!("/groups/{TEAM}/members?$filter=id eq '{ALICE}'")).await.0, 400);
    assert_eq!(g.fake.violations().len(), 2);
}

// ---- §5 ----

#[tokio::test]
async fn membership_checks_are_transitive_and_take_at_most_20_ids() {
    let g = seeded().await;
    g.fake.add_member(NESTED, ALICE);
    g.fake.add_member(TEAM, NESTED);
    let check = |ids: Vec<String>| json!({"groupIds": ids});

    let (status, body) = g
        .post(
            &format!("/users/{ALICE}/checkMemberGroups"),
            check(vec![TEAM.into(), ADMINS.into(), NESTED.into(), NOBODY.into()]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), vec![TEAM.to_owned(), NESTED.to_owned()], "transitive, in the order asked");
    assert!(body["@odata.context"].as_str().unwrap().ends_with("$metadata#Collection(Edm.String)"));
    let twenty: Vec<String> = (0..20).map(|_| TEAM.to_owned()).collect();
    assert_eq!(g.post(&format!("/users/{ALICE}/checkMemberGroups"), check(twenty.clone())).await.0, 200);
    assert_graph_error(
        &g.post(&format!("/users/{NOBODY}/checkMemberGroups"), check(vec![TEAM.into()])).await,
        404,
        "Request_ResourceNotFound",
        NOBODY,
    );

    let (status, all) = g.post(&format!("/users/{ALICE}/getMemberGroups"), json!({"securityEnabledOnly": true})).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all).into_iter().collect::<BTreeSet<_>>(), [TEAM, NESTED].map(str::to_owned).into());
    let (_, none) = g.post(&format!("/users/{BOB}/getMemberGroups"), json!({"securityEnabledOnly": true})).await;
    assert!(ids(&none).is_empty());

    let (status, user) = g.get(&format!("/users/{ALICE}?$select=id,displayName,userPrincipalName")).await;
    assert_eq!(status, 200, "{user}");
    let keys: BTreeSet<&str> = user.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["@odata.context", "id", "displayName", "userPrincipalName"]));
    assert_eq!(
        (&user["displayName"], &user["userPrincipalName"]),
        (&json!("Alice Smith"), &json!("alice.smith@contoso.example"))
    );
    assert_eq!(g.get("/users/alice.smith@contoso.example").await.1["id"], ALICE, "a UPN works as a key");
    assert_graph_error(&g.get(&format!("/users/{NOBODY}")).await, 404, "Request_ResourceNotFound", NOBODY);
    assert_graph_error(&g.get(&format!("/users/{TEAM}")).await, 404, "Request_ResourceNotFound", TEAM);
    assert!(g.violations().is_empty(), "{:?}", g.violations());

    let mut too_many = twenty;
    too_many.push(NESTED.into());
    assert_graph_error(
        &g.post(&format!("/users/{ALICE}/checkMemberGroups"), check(too_many)).await,
        400,
        "Request_BadRequest",
        "20",
    );
    assert_eq!(g.post(&format!("/users/{ALICE}/checkMemberGroups"), json!({})).await.0, 400);
    assert_eq!(g.post(&format!("/users/{ALICE}/getMemberGroups"), json!({})).await.0, 400);
    assert_eq!(g.get(&format!("/users/{ALICE}?$select=mood")).await.0, 400);
    assert_eq!(g.fake.violations().len(), 4, "{:?}", g.violations());
}

// ---- §8 ----

#[tokio::test]
async fn each_endpoint_needs_its_least_privileged_permission() {
    let g = seeded().await;
    let denied = |answer: &(u16, Value)| assert_graph_error(answer, 403, "Authorization_RequestDenied", DENIED);

    g.fake.revoke_permission("RoleManagement.ReadWrite.Directory");
    denied(&g.assign(USER_ADMINISTRATOR, ALICE, "/").await);
    denied(&g.get("/roleManagement/directory/roleAssignments").await);
    denied(&g.add(ADMINS, "members", ALICE).await);
    assert_eq!(g.add(TEAM, "members", ALICE).await.0, 204, "a plain group needs no role management");
    g.fake.grant_permission("RoleManagement.Read.Directory");
    assert_eq!(
        g.get("/roleManagement/directory/roleAssignments").await.0,
        200,
        "reading needs only the read permission"
    );
    g.fake.grant_permission("RoleManagement.ReadWrite.Directory");
    assert_eq!(g.add(ADMINS, "members", ALICE).await.0, 204);

    g.fake.revoke_permission("Group.ReadWrite.All");
    denied(&g.add(TEAM, "owners", BOB).await);
    assert_eq!(g.add(TEAM, "members", BOB).await.0, 204, "GroupMember.ReadWrite.All suffices for members");
    g.fake.revoke_permission("GroupMember.ReadWrite.All");
    denied(&g.add(TEAM, "members", NESTED).await);
    denied(&g.delete(&format!("/groups/{TEAM}/members/{BOB}/$ref")).await);
    denied(&g.get(&format!("/groups/{TEAM}/members")).await);
    g.fake.grant_permission("Group.ReadWrite.All");
    assert_eq!(g.add(TEAM, "owners", BOB).await.0, 204, "owners need Group.ReadWrite.All");

    denied(&g.add(TEAM, "members", SP).await);
    g.fake.grant_permission("Application.ReadWrite.All");
    assert_eq!(
        g.add(TEAM, "members", SP).await.0,
        204,
        "a service principal member also needs Application.ReadWrite.All"
    );

    g.fake.revoke_permission("User.Read.All");
    denied(&g.get(&format!("/users/{ALICE}")).await);
    denied(&g.post(&format!("/users/{ALICE}/checkMemberGroups"), json!({"groupIds": [TEAM]})).await);

    for permission in LEAST_PRIVILEGE.iter().chain(&["RoleManagement.Read.Directory", "Application.ReadWrite.All"]) {
        g.fake.revoke_permission(permission);
    }
    denied(&g.get(&format!("/roleManagement/directory/roleDefinitions/{USER_ADMINISTRATOR}")).await);
    denied(&g.get(&format!("/groups/{TEAM}/owners")).await);
    assert!(g.violations().is_empty(), "{:?}", g.violations());
}

// ---- §7 ----

#[tokio::test]
async fn replicating_objects_answer_the_replication_errors_then_work() {
    let g = seeded().await;
    g.fake.replicating(ALICE, 2);
    for _ in 0..2 {
        assert_graph_error(&g.assign(USER_ADMINISTRATOR, ALICE, "/").await, 404, "Request_ResourceNotFound", ALICE);
    }
    let (status, created) = g.assign(USER_ADMINISTRATOR, ALICE, "/").await;
    assert_eq!(status, 201, "{created}");

    g.fake.replicating(NESTED, 1);
    let fresh_group = g.add(NESTED, "members", BOB).await;
    assert_graph_error(
        &fresh_group,
        400,
        "Request_BadRequest",
        "The source resource object or one of the objects being referenced don't exist.",
    );
    assert_eq!(g.add(NESTED, "members", BOB).await.0, 204);

    g.fake.replicating(BOB, 1);
    assert_graph_error(&g.add(TEAM, "members", BOB).await, 404, "Request_ResourceNotFound", BOB);
    assert_eq!(g.add(TEAM, "members", BOB).await.0, 204);

    let id = created["id"].as_str().unwrap();
    g.fake.replicating(id, 1);
    let path = format!("/roleManagement/directory/roleAssignments/{id}");
    assert_graph_error(&g.delete(&path).await, 404, "Request_ResourceNotFound", id);
    assert_eq!(g.delete(&path).await.0, 204);

    g.fake.replicating(BOB, 1);
    let removal = g.delete(&format!("/groups/{TEAM}/members/{BOB}/$ref")).await;
    assert_graph_error(&removal, 404, "Request_ResourceNotFound", TEAM);
    assert_eq!(g.delete(&format!("/groups/{TEAM}/members/{BOB}/$ref")).await.0, 204);
    assert!(g.violations().is_empty(), "{:?}", g.violations());
}

#[tokio::test]
async fn reads_after_a_write_can_show_the_state_before_it() {
    let g = seeded().await;
    g.fake.set_stale_reads(2);
    let (status, created) = g.assign(USER_ADMINISTRATOR, ALICE, "/").await;
    assert_eq!(status, 201);
    let path = format!("/roleManagement/directory/roleAssignments/{}", created["id"].as_str().unwrap());
    assert_eq!(g.get(&path).await.0, 404, "not yet replicated");
    let filter = urlencode(&format!("principalId eq '{ALICE}'"));
    assert!(g.list_all(&format!("/roleManagement/directory/roleAssignments?$filter={filter}")).await.is_empty());
    assert_eq!(g.get(&path).await.0, 200, "two stale reads, then the truth");
    assert_eq!(g.fake.role_assignments().len(), 1, "inspection is never stale");

    assert_eq!(g.delete(&path).await.0, 204);
    assert_eq!(g.get(&path).await.0, 200, "a deleted assignment still shows");
    assert_eq!(g.get(&path).await.0, 200);
    assert_eq!(g.get(&path).await.0, 404);

    assert_eq!(g.add(TEAM, "members", ALICE).await.0, 204);
    let check = json!({"groupIds": [TEAM]});
    assert!(ids(&g.post(&format!("/users/{ALICE}/checkMemberGroups"), check.clone()).await.1).is_empty());
    assert!(g.list_all(&format!("/groups/{TEAM}/members")).await.is_empty());
    assert_eq!(ids(&g.post(&format!("/users/{ALICE}/checkMemberGroups"), check).await.1), vec![TEAM.to_owned()]);

    g.fake.set_stale_reads(0);
    assert_eq!(g.add(TEAM, "members", BOB).await.0, 204);
    assert_eq!(g.list_all(&format!("/groups/{TEAM}/members")).await.len(), 2, "off: read-your-writes");
}

// ---- §6 and crash tests ----

#[tokio::test]
async fn queued_faults_answer_in_order() {
    let g = seeded().await;
    g.fake.push_fault(GraphFault::Throttle { retry_after: "2.128".into() });
    g.fake.push_fault(GraphFault::Unavailable { retry_after: Some("3".into()) });
    g.fake.push_fault(GraphFault::Unavailable { retry_after: None });
    g.fake.push_fault(GraphFault::Status(504));
    g.fake.push_fault(GraphFault::Drop);
    let user = g.url(&format!("/users/{ALICE}"));

    let throttled = g.authed(g.http.get(&user)).send().await.unwrap();
    assert_eq!(throttled.headers()["retry-after"], "2.128");
    let throttled = body_of(throttled).await;
    assert_graph_error(&throttled, 429, "TooManyRequests", "Please retry again later.");
    assert_eq!(throttled.1["error"]["innerError"]["status"], "429");

    let unavailable = g.authed(g.http.get(&user)).send().await.unwrap();
    assert_eq!(unavailable.headers()["retry-after"], "3");
    assert_graph_error(&body_of(unavailable).await, 503, "serviceNotAvailable", "");
    let bare = g.authed(g.http.get(&user)).send().await.unwrap();
    assert!(bare.headers().get("retry-after").is_none());
    assert_eq!(bare.status(), 503);
    assert_graph_error(&g.get(&format!("/users/{ALICE}")).await, 504, "timeout", "");
    assert!(g.authed(g.http.get(&user)).send().await.is_err(), "dropped connection");
    assert_eq!(g.get(&format!("/users/{ALICE}")).await.0, 200, "the queue is empty");

    let statuses: Vec<u16> = g.fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 503, 503, 504, 0, 200]);
    assert!(g.violations().is_empty());
}

#[tokio::test]
async fn faults_can_wait_for_writes_reads_or_a_method_and_a_faulted_write_changes_nothing() {
    let g = seeded().await;
    g.fake.push_fault_for(FaultTarget::Writes, GraphFault::Status(503));
    assert_eq!(g.get(&format!("/users/{ALICE}")).await.0, 200, "a read passes a write fault");
    assert_eq!(
        g.post(&format!("/users/{ALICE}/checkMemberGroups"), json!({"groupIds": [TEAM]})).await.0,
        200,
        "a POST action is a read"
    );
    assert_eq!(g.assign(USER_ADMINISTRATOR, ALICE, "/").await.0, 503);
    assert!(g.fake.role_assignments().is_empty(), "a faulted write is not applied");
    assert_eq!(g.assign(USER_ADMINISTRATOR, ALICE, "/").await.0, 201);

    g.fake.push_fault_for(FaultTarget::Reads, GraphFault::Status(500));
    assert_eq!(g.add(TEAM, "members", ALICE).await.0, 204, "a write passes a read fault");
    assert_graph_error(&g.get(&format!("/groups/{TEAM}/members")).await, 500, "generalException", "");

    g.fake.push_fault_for(FaultTarget::Method("DELETE".into()), GraphFault::Throttle { retry_after: "1".into() });
    assert_eq!(g.add(TEAM, "members", BOB).await.0, 204, "a POST passes a DELETE fault");
    assert_eq!(g.delete(&format!("/groups/{TEAM}/members/{BOB}/$ref")).await.0, 429);
    assert_eq!(g.fake.members(TEAM).len(), 2);

    g.fake.fail_always("/members", 502);
    assert_eq!(g.get(&format!("/groups/{TEAM}/members")).await.0, 502);
    assert_eq!(g.add(TEAM, "members", NESTED).await.0, 502);
    assert_eq!(g.get(&format!("/groups/{TEAM}/owners")).await.0, 200, "other paths are healthy");
    g.fake.heal("/members");
    assert_eq!(g.get(&format!("/groups/{TEAM}/members")).await.0, 200);
}

#[tokio::test]
async fn latency_delays_answers_and_concurrency_is_measured() {
    let g = seeded().await;
    g.fake.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    let path = format!("/users/{ALICE}");
    let (a, b, c) = tokio::join!(g.get(&path), g.get(&path), g.get(&path));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((a.0, b.0, c.0), (200, 200, 200));
    assert_eq!(g.fake.max_in_flight(), 3);
    g.fake.reset_log();
    assert_eq!(g.fake.max_in_flight(), 0);
    assert!(g.fake.requests().is_empty());
}

#[tokio::test]
async fn a_hung_write_is_applied_and_never_answered() {
    let g = seeded().await;
    let applied = g.fake.hang_next_write();
    // Reads and refused writes do not trip it.
    assert_eq!(g.get(&format!("/users/{ALICE}")).await.0, 200);
    assert_eq!(g.assign(USER_ADMINISTRATOR, TEAM, "/").await.0, 400);
    let body = json!({"roleDefinitionId": USER_ADMINISTRATOR, "principalId": ALICE, "directoryScopeId": "/"});
    let request = g.authed(g.http.post(g.url("/roleManagement/directory/roleAssignments")).json(&body));
    let error = request.timeout(Duration::from_millis(500)).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    tokio::time::timeout(Duration::from_secs(5), applied).await.unwrap().unwrap();
    assert_eq!(g.fake.role_assignments().len(), 1, "applied before hanging");
    assert_eq!(g.fake.requests().last().unwrap().status, 0);
    let retried = g.assign(USER_ADMINISTRATOR, ALICE, "/").await;
    assert_graph_error(&retried, 400, "Request_BadRequest", CONFLICT);
}

// ---- strictness and the log ----

#[tokio::test]
async fn malformed_requests_are_refused_and_recorded() {
    let g = seeded().await;
    let eventual = g.send(g.http.get(g.url(&format!("/users/{ALICE}"))).header("ConsistencyLevel", "eventual")).await;
    assert_graph_error(&eventual, 400, "Request_UnsupportedQuery", "ConsistencyLevel");
    let put = g.send(g.http.put(g.url("/roleManagement/directory/roleAssignments")).json(&json!({}))).await;
    assert_graph_error(&put, 405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.");
    let patch = g.send(g.http.patch(g.url(&format!("/groups/{TEAM}"))).json(&json!({"members@odata.bind": []}))).await;
    assert_eq!(patch.0, 405);
    assert_graph_error(&g.get("/me").await, 400, "BadRequest", "Resource not found for the segment 'me'.");
    let beta = g.send(g.http.get(format!("{}/beta/users/{ALICE}", g.fake.url()))).await;
    assert_graph_error(&beta, 400, "BadRequest", "Invalid version");
    assert_graph_error(
        &g.get("/groups/not-a-guid/members").await,
        400,
        "Request_BadRequest",
        "Invalid object identifier 'not-a-guid'.",
    );
    let no_body = g.send(g.http.post(g.url(&format!("/groups/{TEAM}/members/$ref")))).await;
    assert_graph_error(&no_body, 400, "BadRequest", "Content-Type");
    let action_query =
        g.post(&format!("/users/{ALICE}/getMemberGroups?$top=5"), json!({"securityEnabledOnly": true})).await;
    assert_eq!(action_query.0, 400);
    let twice = g.get(&format!("/users/{ALICE}?$select=id&$select=displayName")).await;
    assert_eq!(twice.0, 400);

    let violations = g.fake.violations();
    assert_eq!(violations.len(), 9, "{:?}", g.violations());
    assert!(violations.iter().all(|v| !v.method.is_empty() && v.path.starts_with('/') && !v.reason.is_empty()));
    assert_eq!(violations[1].method, "PUT");
    g.fake.reset_log();
    assert!(g.fake.violations().is_empty());
}

#[tokio::test]
async fn requests_are_logged_with_method_path_query_status_and_time() {
    let g = seeded().await;
    let before = Instant::now();
    assert_eq!(g.get(&format!("/users/{ALICE}?$select=id")).await.0, 200);
    assert_eq!(g.add(TEAM, "members", ALICE).await.0, 204);
    assert_eq!(g.add(TEAM, "members", ALICE).await.0, 400);
    let log = g.fake.requests();
    let seen: Vec<(&str, &str, u16)> = log.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.status)).collect();
    let members = format!("/v1.0/groups/{TEAM}/members/$ref");
    assert_eq!(
        seen,
        vec![("GET", format!("/v1.0/users/{ALICE}").as_str(), 200), ("POST", &members, 204), ("POST", &members, 400)]
    );
    assert_eq!(log[0].query, vec![("$select".to_owned(), "id".to_owned())]);
    assert!(log[0].at >= before && log[0].at <= log[1].at && log[1].at <= log[2].at);
}
