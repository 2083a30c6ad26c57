//! Infrastructure as code, offline: the ABAC condition that infra/modules/abac.bicep renders is
//! the one Elevate computes from the policy, and the templates wire Elevate as the code expects.

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
