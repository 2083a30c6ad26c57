//! Infrastructure as code, offline: the ABAC condition that the RBAC delegation templates render is
//! the one Elevate computes from the policy, the templates wire Elevate as the code expects, and
//! Microsoft Graph permissions are granted only behind `graphAccess`, level by level as graph-spec
//! §8 lists them, to the Function App's own identity; the chat workflows are deployed only behind
//! `chatWorkflows`, their identity wired to Elevate as a broker (tests/workflows.rs runs their
//! definitions). No Bicep CLI exists offline: these tests read the Bicep text.

use std::path::PathBuf;

use elevate::domain::delegation::{assignable_roles, broker_condition};
use elevate::domain::policy::Policy;

fn read(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Evaluates the Bicep string literal `source` (escapes and `${roles}` interpolation, where
/// `var roles = join(assignableRoleIds, ', ')`, the only expression the templates use).
fn render_bicep_string(source: &str, role_ids: &[String]) -> String {
    let mut chars = source.chars().peekable();
    assert_eq!(chars.next(), Some('\''), "a Bicep string starts with a quote");
    let mut out = String::new();
    loop {
        match chars.next().expect("unterminated Bicep string") {
            '\'' => break,
            '\\' => match chars.next().unwrap() {
                '\'' => out.push('\''),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                '$' => out.push('$'),
                other => panic!("unsupported escape \\{other}"),
            },
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let mut expression = String::new();
                let mut depth = 1;
                for c in chars.by_ref() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    expression.push(c);
                }
                assert_eq!(expression, "roles", "unsupported interpolation");
                out.push_str(&role_ids.join(", "));
            }
            c => out.push(c),
        }
    }
    assert_eq!(chars.collect::<String>().trim(), "", "one string literal");
    out
}

#[test]
fn the_bicep_condition_is_the_one_elevate_computes() {
    let policy = Policy::from_yaml("policy.yaml", &read("policy.yaml")).unwrap();
    let roles = assignable_roles(&policy);
    let ids: Vec<String> = roles.iter().map(ToString::to_string).collect();
    let two = ["b24988ac-6180-42a0-ab88-20f7382dd24c".to_owned(), "acdd72a7-3385-48ef-bd42-f606fba81ae7".to_owned()];
    for file in ["infra/modules/broker-rbac-subscription.bicep", "infra/broker-rbac-management-group.bicep"] {
        let bicep = read(file);
        assert!(bicep.contains("var roles = join(assignableRoleIds, ', ')"), "{file}");
        assert!(bicep.contains("condition: condition") && bicep.contains("conditionVersion: '2.0'"), "{file}");
        assert!(bicep.contains("principalType: 'ServicePrincipal'"), "{file}");
        let literal = bicep.lines().find_map(|l| l.strip_prefix("var condition = ")).unwrap();
        assert_eq!(render_bicep_string(literal, &ids), broker_condition(&roles), "{file}");
        // The documented two-role example (azure-spec §3.7), through the template.
        let rendered = render_bicep_string(literal, &two);
        assert!(
            rendered.starts_with("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[")
        );
        assert!(
            rendered
                .contains("GuidEquals {b24988ac-6180-42a0-ab88-20f7382dd24c, acdd72a7-3385-48ef-bd42-f606fba81ae7}")
        );
        assert!(rendered.ends_with("StringEqualsIgnoreCase {'User', 'Group'}))"));
    }
}

#[test]
fn the_templates_configure_elevate_as_it_reads_its_settings() {
    let main = read("infra/main.bicep");
    for needle in [
        "allowSharedKeyAccess: false",
        "DisableLocalAuth: true",
        "requireAuthentication: true",
        "unauthenticatedClientAction: 'Return401'",
        "runtime: { name: 'custom', version: '1.0' }",
        "tier: 'FlexConsumption'",
        "type: 'SystemAssigned'",
        "'azd-service-name': 'elevate'",
        "ELEVATE_PROVIDER: 'arm'",
        "ELEVATE_AUTH_MODE: 'easyauth'",
        "ELEVATE_STORE: 'tables:",
        "conditionVersion",
    ] {
        assert!(
            main.contains(needle) || read("infra/modules/broker-rbac-subscription.bicep").contains(needle),
            "main.bicep lacks {needle}"
        );
    }
    assert!(!main.contains("allowedApplications: []"), "an empty allow-list allows no application");
    // Every app setting the template sets is one Elevate documents.
    let readme = read("README.md");
    let settings = main.split("name: 'appsettings'").nth(1).unwrap().split("\n}\n").next().unwrap();
    for line in settings.lines().map(str::trim).filter(|l| l.starts_with("ELEVATE_")) {
        let name = line.split(':').next().unwrap();
        assert!(readme.contains(&format!("`{name}`")), "{name} is set by main.bicep but not documented");
    }
    let host = read("host.json");
    assert!(host.contains("\"defaultExecutablePath\": \"elevate\""), "the package's binary name");
}

// ---- Microsoft Graph permissions (directory roles and groups), behind `graphAccess` ----

/// The Graph application permissions (graph-spec §8) and their app-role ids, as the spec gives them.
const USER_READ_ALL: (&str, &str) = ("User.Read.All", "df021288-bdef-4463-88db-98f22de89214");
const GROUP_MEMBER_READ_WRITE_ALL: (&str, &str) = ("GroupMember.ReadWrite.All", "dbaae8cf-10b5-4b86-a4a1-f871c94c6695");
const GROUP_READ_WRITE_ALL: (&str, &str) = ("Group.ReadWrite.All", "62a82d76-70ea-41e2-9197-370581804d09");
const ROLE_MANAGEMENT_READ_WRITE_DIRECTORY: (&str, &str) =
    ("RoleManagement.ReadWrite.Directory", "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8");
const GRAPH_LEVELS: [&str; 4] = ["none", "groupMembers", "groupMembersAndOwners", "directoryRoles"];
const GRAPH_MODULE: &str = "infra/graph/graph-access.bicep";

/// What each `graphAccess` level must grant, least privilege per target (graph-spec §4, §5, §8):
/// membership checks need User.Read.All (+ GroupMember.Read.All, inside GroupMember.ReadWrite.All),
/// members GroupMember.ReadWrite.All, owners Group.ReadWrite.All, directory roles and
/// role-assignable groups RoleManagement.ReadWrite.Directory.
fn expected_graph_permissions(level: &str) -> Vec<(&'static str, &'static str)> {
    match level {
        "none" => vec![],
        "groupMembers" => vec![USER_READ_ALL, GROUP_MEMBER_READ_WRITE_ALL],
        "groupMembersAndOwners" => vec![USER_READ_ALL, GROUP_MEMBER_READ_WRITE_ALL, GROUP_READ_WRITE_ALL],
        "directoryRoles" => {
            vec![USER_READ_ALL, GROUP_MEMBER_READ_WRITE_ALL, GROUP_READ_WRITE_ALL, ROLE_MANAGEMENT_READ_WRITE_DIRECTORY]
        }
        other => panic!("unknown graphAccess level {other}"),
    }
}

/// The body of the brace-balanced block opened on the first line that starts (after indentation)
/// with `header`. The templates keep braces balanced inside strings (`${…}`), so counting is enough.
fn bicep_block<'a>(bicep: &'a str, header: &str) -> &'a str {
    let start = bicep
        .lines()
        .find(|l| l.trim_start().starts_with(header))
        .map(|l| l.as_ptr() as usize - bicep.as_ptr() as usize)
        .unwrap_or_else(|| panic!("no line starts with {header}"));
    let open = start + bicep[start..].find('{').unwrap();
    let mut depth = 0;
    for (i, c) in bicep[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &bicep[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced block after {header}");
}

/// Every single-quoted literal in `text`, in order.
fn quoted(text: &str) -> Vec<String> {
    text.split('\'').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The values of the `@allowed([...])` decorator of `param {name}`.
fn allowed_values(bicep: &str, name: &str) -> Vec<String> {
    let lines: Vec<&str> = bicep.lines().collect();
    let at = lines.iter().position(|l| l.starts_with(&format!("param {name} "))).unwrap();
    let decorators = lines[..at].iter().rev().take_while(|l| l.starts_with('@'));
    let allowed = decorators.into_iter().find(|l| l.starts_with("@allowed(")).unwrap();
    quoted(allowed)
}

/// `var graphAppRoleIds` (permission name → app-role id) of the Graph module.
fn graph_app_role_ids(module: &str) -> Vec<(String, String)> {
    bicep_block(module, "var graphAppRoleIds = {")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| match quoted(l).as_slice() {
            [name, id] => (name.clone(), id.clone()),
            _ => panic!("unexpected line in graphAppRoleIds: {l}"),
        })
        .collect()
}

/// `var permissionsByLevel` of the Graph module: level → permission names, in file order.
fn graph_permissions_by_level(module: &str) -> Vec<(String, Vec<String>)> {
    let mut levels: Vec<(String, Vec<String>)> = Vec::new();
    for line in bicep_block(module, "var permissionsByLevel = {").lines().map(str::trim) {
        if let Some((level, rest)) = line.split_once(':') {
            assert!(rest.trim() == "[" || rest.trim() == "[]", "one permission a line: {line}");
            levels.push((level.trim().to_owned(), Vec::new()));
        } else if line.starts_with('\'') {
            levels.last_mut().unwrap().1.extend(quoted(line));
        } else {
            assert!(line.is_empty() || line == "]", "unexpected line in permissionsByLevel: {line}");
        }
    }
    levels
}

#[test]
fn graph_permissions_are_deployed_only_behind_graph_access() {
    let main = read("infra/main.bicep");
    assert_eq!(allowed_values(&main, "graphAccess"), GRAPH_LEVELS, "main.bicep's graphAccess levels");
    assert!(main.contains("param graphAccess string = 'none'\n"), "Graph permissions are opt-in: the default is none");
    // main.bicep itself declares nothing of Microsoft Graph: all of it is in the module…
    assert!(!main.contains("Microsoft.Graph/"), "main.bicep declares a Graph resource");
    assert!(!main.lines().any(|l| l.starts_with("extension ")), "main.bicep loads a Bicep extension");
    assert_eq!(main.matches("'graph/graph-access.bicep'").count(), 1, "one reference to the Graph module");
    // …which is deployed only when graphAccess is not 'none', with the level passed through.
    let header = "module graphAccessGrants 'graph/graph-access.bicep' = if (graphAccess != 'none') {";
    assert!(main.lines().any(|l| l == header), "the Graph module is not behind graphAccess != 'none'");
    let params = bicep_block(bicep_block(&main, header), "params: {");
    let params: Vec<&str> = params.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(params, ["principalId: app.identity.principalId", "graphAccess: graphAccess"]);
    // No other template grants Graph permissions.
    for file in ["infra/broker-rbac-management-group.bicep", "infra/modules/broker-rbac-subscription.bicep"] {
        let bicep = read(file);
        assert!(!bicep.contains("Microsoft.Graph/") && !bicep.contains("graph-access"), "{file}");
    }
    // The parameter files leave it at none unless the operator says otherwise.
    assert!(
        read("infra/main.bicepparam")
            .contains("param graphAccess = readEnvironmentVariable('ELEVATE_GRAPH_ACCESS', 'none')")
    );
    assert!(read("infra/example.bicepparam").contains("param graphAccess = 'none'\n"));
    // Elevate is told where Graph is (national clouds differ).
    assert!(main.contains("param graphEndpoint string = 'https://graph.microsoft.com'\n"));
    assert!(bicep_block(&main, "resource appSettings ").contains("ELEVATE_GRAPH_ENDPOINT: graphEndpoint\n"));
}

#[test]
fn each_graph_access_level_grants_exactly_the_spec_permissions() {
    let module = read(GRAPH_MODULE);
    assert_eq!(allowed_values(&module, "graphAccess"), GRAPH_LEVELS, "the module's levels are main.bicep's");
    assert!(module.contains("var permissions = permissionsByLevel[graphAccess]\n"));
    let ids = graph_app_role_ids(&module);
    let id_of = |name: &str| -> String {
        ids.iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
            .unwrap_or_else(|| panic!("no app-role id for {name}"))
    };
    let levels = graph_permissions_by_level(&module);
    assert_eq!(levels.iter().map(|(level, _)| level.as_str()).collect::<Vec<_>>(), GRAPH_LEVELS);
    for (level, permissions) in &levels {
        let granted: Vec<(String, String)> = permissions.iter().map(|p| (p.clone(), id_of(p))).collect();
        let expected: Vec<(String, String)> =
            expected_graph_permissions(level).into_iter().map(|(p, id)| (p.to_owned(), id.to_owned())).collect();
        assert_eq!(granted, expected, "graphAccess {level}");
    }
    // Every id the module knows is one of graph-spec §8's, and no broader permission appears in
    // the templates' code (comments may name them, to say who deploys).
    let spec = [USER_READ_ALL, GROUP_MEMBER_READ_WRITE_ALL, GROUP_READ_WRITE_ALL, ROLE_MANAGEMENT_READ_WRITE_DIRECTORY];
    assert_eq!(ids, spec.map(|(p, id)| (p.to_owned(), id.to_owned())));
    let code: String = [module, read("infra/main.bicep")]
        .iter()
        .flat_map(|file| file.lines())
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for broad in [
        "19dbc75e-c2e2-444c-a770-ec69d8559fc7", // Directory.ReadWrite.All
        "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9", // Application.ReadWrite.All
        "06b708a9-e830-4db3-a914-8e69da51d44f", // AppRoleAssignment.ReadWrite.All
        "Directory.ReadWrite.All",
        "Application.ReadWrite.All",
        "AppRoleAssignment.ReadWrite.All",
    ] {
        assert!(!code.contains(broad), "{broad} appears in the templates");
    }
}

#[test]
fn graph_app_roles_go_to_elevates_own_identity_on_microsoft_graph() {
    let main = read("infra/main.bicep");
    // The principal is the Function App's system-assigned identity.
    let app = bicep_block(&main, "resource app 'Microsoft.Web/sites@");
    assert!(app.contains("identity: { type: 'SystemAssigned' }"));
    let module = read(GRAPH_MODULE);
    let code: Vec<&str> = module.lines().filter(|l| !l.starts_with("//") && !l.trim().is_empty()).collect();
    assert_eq!(code.first(), Some(&"extension microsoftGraphV1"), "the module starts by loading the Graph extension");
    // Exactly two Graph resources: Graph's own service principal, read, and the assignments.
    let resources: Vec<&&str> = code.iter().filter(|l| l.starts_with("resource ")).collect();
    assert_eq!(
        resources,
        [
            &"resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {",
            &"resource graphAppRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [",
        ]
    );
    let graph = bicep_block(&module, "resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {");
    assert_eq!(graph.trim(), "appId: '00000003-0000-0000-c000-000000000000'", "Microsoft Graph's well-known app id");
    let assignments = module.split("'Microsoft.Graph/appRoleAssignedTo@v1.0' = [").nth(1).unwrap();
    let assignment = bicep_block(assignments, "for permission in permissions: {");
    let properties: Vec<&str> = assignment.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(
        properties,
        [
            "principalId: principalId",
            "resourceId: graph.id",
            // Granted only if Graph's own app role with this id carries this permission's name.
            "appRoleId: filter(graph.appRoles, role => role.id =~ graphAppRoleIds[permission] && role.value == permission)[0].id",
        ]
    );
    // The extension alias resolves to a pinned version of Microsoft's published types.
    let config = read("infra/bicepconfig.json");
    let json: String = config.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let config: serde_json::Value = serde_json::from_str(&json).unwrap();
    let graph_types = config["extensions"]["microsoftGraphV1"].as_str().unwrap();
    let version = graph_types.strip_prefix("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:").unwrap();
    assert!(version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()), "{version}");
}

#[test]
fn the_template_creates_every_queue_a_function_reads_and_lets_the_app_use_them() {
    let bicep = read("infra/main.bicep");
    let at = bicep.find("resource workQueues ").expect("the queues resource");
    let created = quoted(bicep[at..].split("for queue in [").nth(1).unwrap().split(']').next().unwrap());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("functions");
    let mut read_by_functions: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(e.unwrap().path().join("function.json")).ok()?).ok()?;
            let trigger = doc["bindings"].as_array()?.iter().find(|b| b["type"] == "queueTrigger")?.clone();
            Some(trigger["queueName"].as_str()?.to_owned())
        })
        .collect();
    read_by_functions.sort();
    let mut created_sorted = created.clone();
    created_sorted.sort();
    assert_eq!(created_sorted, read_by_functions);
    let names: Vec<&str> = elevate::service::ports::WorkQueue::ALL.iter().map(|q| q.name()).collect::<Vec<_>>();
    assert_eq!(created, names, "Elevate puts on the queues the template creates");
    assert!(bicep.contains("'974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor"));
    // The host's connection and Elevate's queues are the same account, reached by identity.
    assert!(bicep.contains("AzureWebJobsStorage__accountName: storage.name"));
}

// ---- Chat workflows (docs/chat-workflows.md), behind `chatWorkflows` ----

const CHAT_REQUESTS: &str = "infra/modules/chat-requests.bicep";
const CHAT_NOTICES: &str = "infra/modules/chat-notices.bicep";
const CHAT_BROKER_ROLE: &str = "infra/graph/chat-broker-role.bicep";

/// The non-blank, non-comment lines of a block, trimmed.
fn code_lines(block: &str) -> Vec<&str> {
    block.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//")).collect()
}

#[test]
fn chat_workflows_are_deployed_only_behind_chat_workflows() {
    let main = read("infra/main.bicep");
    assert!(main.contains("param chatWorkflows bool = false\n"), "chat workflows are opt-in");
    assert!(main.contains("param chatBrokerRoleFromTemplate bool = true\n"));
    assert!(main.contains("@secure()\nparam chatNoticesWebhookUrl string = ''\n"), "a webhook URL is a secret");
    // Everything of them is in three modules, each behind the parameter.
    for header in [
        "module chatRequestsWorkflow 'modules/chat-requests.bicep' = if (chatWorkflows) {",
        "module chatBrokerRole 'graph/chat-broker-role.bicep' = if (chatWorkflows && chatBrokerRoleFromTemplate) {",
        "module chatNoticesWorkflow 'modules/chat-notices.bicep' = if (chatNotices) {",
    ] {
        assert!(main.lines().any(|l| l == header), "main.bicep lacks `{header}`");
    }
    assert!(
        main.contains("var chatNotices = chatWorkflows && !empty(chatNoticesWebhookUrl) && empty(eventWebhookUrl)\n")
    );
    for resource_type in ["Microsoft.Logic/", "Microsoft.Graph/"] {
        assert!(!main.contains(resource_type), "main.bicep declares a {resource_type} resource itself");
    }
    for file in ["infra/broker-rbac-management-group.bicep", "infra/modules/broker-rbac-subscription.bicep"] {
        assert!(!read(file).contains("chat"), "{file}");
    }
    // The parameter files leave them off unless the operator turns them on.
    let azd = read("infra/main.bicepparam");
    assert!(azd.contains("param chatWorkflows = bool(readEnvironmentVariable('ELEVATE_CHAT_WORKFLOWS', 'false'))\n"));
    assert!(
        azd.contains("param chatNoticesWebhookUrl = readEnvironmentVariable('ELEVATE_CHAT_NOTICES_WEBHOOK_URL', '')\n")
    );
    assert!(read("infra/example.bicepparam").contains("param chatWorkflows = false\n"));
}

#[test]
fn the_request_workflow_is_a_broker_of_this_elevate() {
    let main = read("infra/main.bicep");
    // It calls this Elevate, for the audience Elevate validates.
    let params = code_lines(bicep_block(
        bicep_block(&main, "module chatRequestsWorkflow 'modules/chat-requests.bicep'"),
        "params: {",
    ));
    assert!(params.contains(&"elevateUrl: 'https://${app.properties.defaultHostName}'"));
    assert!(main.contains("ELEVATE_PUBLIC_URL: 'https://${app.properties.defaultHostName}'\n"));
    assert!(params.contains(&"apiClientId: apiClientId"));
    let module = read(CHAT_REQUESTS);
    assert!(module.contains("elevateAudience: { value: 'api://${apiClientId}' }\n"));
    assert!(main.contains("ELEVATE_AUDIENCE: 'api://${apiClientId}'\n"));
    // A Consumption Logic App with a system-assigned identity, carrying its definition file.
    let workflow = bicep_block(&module, "resource requests 'Microsoft.Logic/workflows@2019-05-01' = {");
    assert!(workflow.contains("identity: { type: 'SystemAssigned' }"));
    assert!(!workflow.contains("kind:") && !workflow.contains("sku:"), "Consumption: no Standard plan");
    assert!(workflow.contains("definition: loadJsonContent('../workflows/chat-requests.json')"));
    // Its client id is the system-assigned identity's own, read from Microsoft.ManagedIdentity…
    let identity = code_lines(bicep_block(
        &module,
        "resource requestsIdentity 'Microsoft.ManagedIdentity/identities@2023-01-31' existing = {",
    ));
    assert_eq!(identity, ["scope: requests", "name: 'default'"]);
    assert!(module.contains("output brokerClientId string = requestsIdentity.properties.clientId\n"));
    assert!(module.contains("output brokerPrincipalId string = requests.identity.principalId\n"));
    // …and goes on ELEVATE_BROKER_APP_IDS, and on Easy Auth's allow-list when there is one.
    assert!(
        main.contains("var chatBrokerAppIds = chatWorkflows ? [chatRequestsWorkflow!.outputs.brokerClientId] : []\n")
    );
    let settings = bicep_block(&main, "resource appSettings ");
    assert!(settings.contains("ELEVATE_BROKER_APP_IDS: join(concat(brokerAppIds, chatBrokerAppIds), ',')\n"));
    let auth = bicep_block(&main, "resource auth ");
    assert!(auth.contains("{ allowedApplications: concat(allowedClientAppIds, chatBrokerAppIds) }"));
    assert!(auth.contains("empty(allowedClientAppIds) ? { allowedPrincipals: {} }"), "never an empty allow-list");
    // Its object id gets the app role Elevate.Broker on Elevate's own service principal.
    let params = code_lines(bicep_block(bicep_block(&main, "module chatBrokerRole "), "params: {"));
    assert_eq!(params, ["principalId: chatRequestsWorkflow!.outputs.brokerPrincipalId", "apiClientId: apiClientId"]);
    let role = read(CHAT_BROKER_ROLE);
    let code: Vec<&str> = role.lines().filter(|l| !l.starts_with("//") && !l.trim().is_empty()).collect();
    assert_eq!(code.first(), Some(&"extension microsoftGraphV1"), "the module starts by loading the Graph extension");
    let resources: Vec<&&str> = code.iter().filter(|l| l.starts_with("resource ")).collect();
    assert_eq!(
        resources,
        [
            &"resource elevateApi 'Microsoft.Graph/servicePrincipals@v1.0' existing = {",
            &"resource brokerRole 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {",
        ]
    );
    assert_eq!(code_lines(bicep_block(&role, "resource elevateApi ")), ["appId: apiClientId"]);
    assert_eq!(
        code_lines(bicep_block(&role, "resource brokerRole ")),
        [
            "principalId: principalId",
            "resourceId: elevateApi.id",
            "appRoleId: filter(elevateApi.appRoles, role => role.id =~ brokerAppRoleId && role.value == 'Elevate.Broker')[0].id",
        ]
    );
    let app_roles: serde_json::Value = serde_json::from_str(&read("docs/app-roles.json")).unwrap();
    let broker = app_roles.as_array().unwrap().iter().find(|r| r["value"] == "Elevate.Broker").unwrap();
    assert_eq!(broker["allowedMemberTypes"], serde_json::json!(["Application"]));
    let id = broker["id"].as_str().unwrap();
    assert!(
        role.contains(&format!("var brokerAppRoleId = '{id}'\n")),
        "the id docs/app-roles.json gives Elevate.Broker"
    );
    // checkov cannot parse the extension keyword either: it skips this file by name.
    assert!(read("infra/.checkov.yaml").contains("  - graph/chat-broker-role.bicep\n"));
}

#[test]
fn elevate_sends_its_events_to_the_notices_workflow_only_when_asked() {
    let main = read("infra/main.bicep");
    let settings = bicep_block(&main, "resource appSettings ");
    assert!(settings.contains(
        "ELEVATE_EVENT_WEBHOOK_URL: chatNotices ? chatNoticesWorkflow!.outputs.eventWebhookUrl : eventWebhookUrl\n"
    ));
    let params = code_lines(bicep_block(bicep_block(&main, "module chatNoticesWorkflow "), "params: {"));
    assert!(params.contains(&"teamsWebhookUrl: chatNoticesWebhookUrl"));
    // Elevate refuses to start with an event webhook and no 32-character secret: the deployment
    // stops first.
    assert!(params.contains(&"eventWebhookSecretLength: length(eventWebhookSecret)"));
    let module = read(CHAT_NOTICES);
    assert!(module.contains("@minValue(32)\n#disable-next-line no-unused-params"));
    assert!(module.contains("@secure()\nparam teamsWebhookUrl string\n"));
    // The trigger URL carries its signature: a secure output, never in the deployment history.
    assert!(module.contains("@secure()\noutput eventWebhookUrl string = noticesTrigger.listCallbackUrl().value\n"));
    let trigger = code_lines(bicep_block(
        &module,
        "resource noticesTrigger 'Microsoft.Logic/workflows/triggers@2019-05-01' existing = {",
    ));
    assert_eq!(trigger, ["parent: notices", "name: 'manual'"]);
    let workflow = bicep_block(&module, "resource notices 'Microsoft.Logic/workflows@2019-05-01' = {");
    assert!(workflow.contains("definition: loadJsonContent('../workflows/chat-notices.json')"));
}

#[test]
fn each_workflow_gets_exactly_the_parameters_its_definition_needs() {
    for (module, workflow, block) in [
        (CHAT_REQUESTS, "chat-requests", "resource requests 'Microsoft.Logic/workflows@2019-05-01' = {"),
        (CHAT_NOTICES, "chat-notices", "resource notices 'Microsoft.Logic/workflows@2019-05-01' = {"),
    ] {
        let bicep = read(module);
        let definition: serde_json::Value =
            serde_json::from_str(&read(&format!("infra/workflows/{workflow}.json"))).unwrap();
        let set: Vec<String> = code_lines(bicep_block(bicep_block(&bicep, block), "parameters: {"))
            .iter()
            .map(|l| l.split(':').next().unwrap().to_owned())
            .collect();
        let declared = definition["parameters"].as_object().unwrap();
        for name in &set {
            assert!(declared.contains_key(name), "{module} sets {name}, which {workflow}.json does not declare");
        }
        // Settings without a usable default (an empty string) come from the template.
        for (name, p) in declared {
            if p["defaultValue"] == "" {
                assert!(set.contains(name), "{module} leaves {workflow}.json's {name} empty");
            }
        }
        assert!(bicep.contains("properties: {\n    state: 'Enabled'\n"), "{module}");
    }
}
