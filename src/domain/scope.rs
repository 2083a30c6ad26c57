//! Scopes of the three kinds of privilege, parsed into levels, compared case-insensitively:
//!
//! | Kind | Text | Levels |
//! |---|---|---|
//! | Azure RBAC | an ARM scope: `/providers/Microsoft.Management/managementGroups/{mg}`, `/subscriptions/{id}[/resourceGroups/{rg}[/providers/…]]` | management group, subscription, resource group, resource |
//! | Entra directory role | `directory:/` (the tenant) or `directory:/administrativeUnits/{id}` | directory, administrative unit |
//! | Group membership | `group:{group object id}` | group |
//!
//! `contains` is the only notion of "below" Elevate uses: a rule at a scope applies to that scope
//! and every scope whose path continues it, never across kinds. A management group therefore
//! contains only itself: which subscriptions sit below it is not visible in the path, and
//! guessing would grant access nobody configured (deny by default). An administrative unit lies
//! below `directory:/`; a group has nothing below it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::{DIRECTORY_ROLES, GROUP_ROLES, ParseError, RoleDefinitionId};

/// Where in its hierarchy a scope lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScopeLevel {
    ManagementGroup,
    Subscription,
    ResourceGroup,
    Resource,
    /// The whole Entra tenant (`directory:/`).
    Directory,
    /// An administrative unit (`directory:/administrativeUnits/{id}`).
    AdministrativeUnit,
    /// One group (`group:{id}`).
    Group,
}

/// Which kind of privilege a scope holds, and so which provider grants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScopeKind {
    /// Azure RBAC role assignments, through Azure Resource Manager.
    Azure,
    /// Entra directory role assignments, through Microsoft Graph.
    Directory,
    /// Group membership or ownership, through Microsoft Graph.
    Group,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Azure => "azure",
            ScopeKind::Directory => "directory",
            ScopeKind::Group => "group",
        }
    }
}

impl ScopeKind {
    /// A role for a scope of this kind: for Azure RBAC a GUID, an ARM role definition id or a
    /// built-in Azure role name; for directory roles a template GUID or a built-in directory role
    /// name; for groups `member` or `owner`. Names never cross kinds (Azure's `Owner` is not a
    /// group's `owner`), and the group roles' fixed ids are refused where they mean nothing.
    pub fn parse_role(self, value: &str) -> Result<RoleDefinitionId, ParseError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(ParseError::Empty);
        }
        fn by_name(
            mut table: impl Iterator<Item = (&'static str, &'static str)>,
            wanted: &str,
        ) -> Option<&'static str> {
            table.find(|(name, _)| name.eq_ignore_ascii_case(wanted)).map(|(_, guid)| guid)
        }
        let role = match self {
            ScopeKind::Azure => RoleDefinitionId::parse(value)?,
            ScopeKind::Directory => {
                const EXPECTED: &str =
                    "a directory role (a role template GUID, or a built-in name such as `Global Administrator`)";
                let text = by_name(DIRECTORY_ROLES.iter().map(|(n, g, _)| (*n, *g)), trimmed).unwrap_or(trimmed);
                if uuid::Uuid::try_parse(text).is_err() {
                    return Err(ParseError::malformed(value, EXPECTED));
                }
                RoleDefinitionId::parse(text).map_err(|_| ParseError::malformed(value, EXPECTED))?
            }
            ScopeKind::Group => {
                let guid = by_name(GROUP_ROLES.iter().copied(), trimmed)
                    .ok_or_else(|| ParseError::malformed(value, "`member` or `owner` of the group"))?;
                return RoleDefinitionId::parse(guid);
            }
        };
        if role.group_role().is_some() {
            return Err(ParseError::malformed(value, "a role of this scope's kind, not a group's `member` or `owner`"));
        }
        Ok(role)
    }
}

impl ScopeLevel {
    pub fn kind(self) -> ScopeKind {
        match self {
            ScopeLevel::ManagementGroup
            | ScopeLevel::Subscription
            | ScopeLevel::ResourceGroup
            | ScopeLevel::Resource => ScopeKind::Azure,
            ScopeLevel::Directory | ScopeLevel::AdministrativeUnit => ScopeKind::Directory,
            ScopeLevel::Group => ScopeKind::Group,
        }
    }
}

/// A scope of any kind (see the module doc): an ARM scope, `directory:/…` or `group:{id}`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope {
    /// Canonical text: keywords in ARM's casing, names as given.
    text: String,
    /// Lowercased segments. INVARIANT: comparisons and containment use only these.
    key: Vec<String>,
    level: ScopeLevel,
}

const EXPECTED: &str = "a scope: an ARM scope (`/subscriptions/{id}`, `/subscriptions/{id}/resourceGroups/{name}`, a resource id, or `/providers/Microsoft.Management/managementGroups/{name}`), `directory:/`, `directory:/administrativeUnits/{id}`, or `group:{group object id}`";
const DIRECTORY: &str = "directory:";
const GROUP: &str = "group:";
const MAX_LEN: usize = 1024;

fn valid_name(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.len() <= 260
        && !segment.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '\\' | '%' | '&'))
}

impl Scope {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::malformed(value, EXPECTED);
        if value.is_empty() {
            return Err(ParseError::Empty);
        }
        if value.len() > MAX_LEN {
            return Err(ParseError::TooLong { max: MAX_LEN });
        }
        if let Some(scope) = Self::parse_graph(value) {
            return scope.ok_or_else(bad);
        }
        let body = value.strip_prefix('/').ok_or_else(bad)?;
        let body = body.strip_suffix('/').unwrap_or(body);
        let segments: Vec<&str> = body.split('/').collect();
        if !segments.iter().all(|s| valid_name(s)) {
            return Err(bad());
        }
        let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
        let keys: Vec<&str> = lower.iter().map(String::as_str).collect();
        let (level, text) = match keys.as_slice() {
            ["providers", "microsoft.management", "managementgroups", _] => {
                let name = segments.get(3).ok_or_else(bad)?;
                (ScopeLevel::ManagementGroup, format!("/providers/Microsoft.Management/managementGroups/{name}"))
            }
            ["subscriptions", sub, rest @ ..] => {
                if uuid::Uuid::try_parse(sub).is_err() || sub.len() != 36 {
                    return Err(bad());
                }
                match rest {
                    [] => (ScopeLevel::Subscription, format!("/subscriptions/{sub}")),
                    ["resourcegroups", _, tail @ ..] => {
                        let rg = segments.get(3).ok_or_else(bad)?;
                        let base = format!("/subscriptions/{sub}/resourceGroups/{rg}");
                        match tail {
                            [] => (ScopeLevel::ResourceGroup, base),
                            // providers/{namespace}/{type}/{name}[/{type}/{name}]...
                            ["providers", _, more @ ..] if !more.is_empty() && more.len() % 2 == 0 => {
                                let rest_text = segments.get(4..).ok_or_else(bad)?.join("/");
                                let rest_text = rest_text.strip_prefix("providers/").unwrap_or(&rest_text).to_owned();
                                (ScopeLevel::Resource, format!("{base}/providers/{rest_text}"))
                            }
                            _ => return Err(bad()),
                        }
                    }
                    _ => return Err(bad()),
                }
            }
            _ => return Err(bad()),
        };
        Ok(Scope { text, key: lower, level })
    }

    /// `directory:…` and `group:…` scopes: `None` when the text is of neither kind, `Some(None)`
    /// when it claims one and is malformed.
    fn parse_graph(value: &str) -> Option<Option<Self>> {
        let lower = value.to_ascii_lowercase();
        let guid = |text: &str| uuid::Uuid::try_parse(text).ok().filter(|_| text.len() == 36).map(|u| u.to_string());
        if let Some(path) = lower.strip_prefix(DIRECTORY) {
            let scope = match path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path) {
                "/" => Some(Scope {
                    text: "directory:/".into(),
                    key: vec![DIRECTORY.into()],
                    level: ScopeLevel::Directory,
                }),
                rest => rest.strip_prefix("/administrativeunits/").and_then(guid).map(|au| Scope {
                    text: format!("directory:/administrativeUnits/{au}"),
                    key: vec![DIRECTORY.into(), "administrativeunits".into(), au],
                    level: ScopeLevel::AdministrativeUnit,
                }),
            };
            return Some(scope);
        }
        if let Some(id) = lower.strip_prefix(GROUP) {
            return Some(guid(id).map(|g| Scope {
                text: format!("group:{g}"),
                key: vec![GROUP.into(), g],
                level: ScopeLevel::Group,
            }));
        }
        None
    }

    pub fn level(&self) -> ScopeLevel {
        self.level
    }

    pub fn kind(&self) -> ScopeKind {
        self.level.kind()
    }

    /// The group a `group:` scope names.
    pub fn group_id(&self) -> Option<uuid::Uuid> {
        match self.level {
            ScopeLevel::Group => self.key.get(1).and_then(|g| uuid::Uuid::try_parse(g).ok()),
            _ => None,
        }
    }

    /// Graph's `directoryScopeId` for a `directory:` scope: `/` or `/administrativeUnits/{id}`.
    pub fn directory_scope_id(&self) -> Option<String> {
        match self.level {
            ScopeLevel::Directory => Some("/".into()),
            ScopeLevel::AdministrativeUnit => self.key.get(2).map(|au| format!("/administrativeUnits/{au}")),
            _ => None,
        }
    }

    /// Whether `other` is this scope or lies below it.
    pub fn contains(&self, other: &Scope) -> bool {
        other.key.len() >= self.key.len() && self.key.iter().zip(&other.key).all(|(a, b)| a == b)
    }

    /// Depth in segments: the larger, the more specific.
    pub fn depth(&self) -> usize {
        self.key.len()
    }

    /// The case-insensitive key, for storage indexes and equality.
    pub fn key(&self) -> String {
        format!("/{}", self.key.join("/"))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Scope {}
impl std::hash::Hash for Scope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl TryFrom<String> for Scope {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<Scope> for String {
    fn from(value: Scope) -> String {
        value.text
    }
}
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    #[test]
    fn parses_every_level_case_insensitively() {
        let mg = Scope::parse("/PROVIDERS/microsoft.management/MANAGEMENTGROUPS/Root").unwrap();
        assert_eq!(mg.level(), ScopeLevel::ManagementGroup);
        assert_eq!(mg.as_str(), "/providers/Microsoft.Management/managementGroups/Root");
        let sub = Scope::parse(&format!("{SUB}/")).unwrap();
        assert_eq!(sub.level(), ScopeLevel::Subscription);
        let rg = Scope::parse(&format!("{}/RESOURCEGROUPS/App-RG", SUB.to_uppercase())).unwrap();
        assert_eq!(rg.level(), ScopeLevel::ResourceGroup);
        assert_eq!(rg.as_str(), format!("{SUB}/resourceGroups/App-RG"));
        let res = Scope::parse(&format!("{SUB}/resourceGroups/app-rg/providers/Microsoft.Storage/storageAccounts/st1"))
            .unwrap();
        assert_eq!(res.level(), ScopeLevel::Resource);
        let child = Scope::parse(&format!(
            "{SUB}/resourceGroups/app-rg/providers/Microsoft.Storage/storageAccounts/st1/blobServices/default"
        ))
        .unwrap();
        assert_eq!(child.level(), ScopeLevel::Resource);
    }

    #[test]
    fn refuses_malformed_scopes() {
        for bad in [
            "",
            "subscriptions/00000000-0000-0000-0000-000000000001",
            "/subscriptions/not-a-guid",
            "/subscriptions/00000000-0000-0000-0000-000000000001//resourceGroups/x",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/x/providers/Microsoft.Storage",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/x/providers/Ns/type",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/../x",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/a b",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/a?x=1",
            "/providers/Microsoft.Management/managementGroups",
            "/",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn directory_and_group_scopes_parse_and_nest_only_within_their_kind() {
        let tenant = Scope::parse("DIRECTORY:/").unwrap();
        assert_eq!(
            (tenant.as_str(), tenant.level(), tenant.kind()),
            ("directory:/", ScopeLevel::Directory, ScopeKind::Directory)
        );
        assert_eq!(tenant.directory_scope_id().as_deref(), Some("/"));
        let au = Scope::parse("directory:/AdministrativeUnits/5B51C641-0711-41D2-AC58-D90390D94A00/").unwrap();
        assert_eq!(au.as_str(), "directory:/administrativeUnits/5b51c641-0711-41d2-ac58-d90390d94a00");
        assert_eq!(
            au.directory_scope_id().as_deref(),
            Some("/administrativeUnits/5b51c641-0711-41d2-ac58-d90390d94a00")
        );
        assert!(tenant.contains(&au) && !au.contains(&tenant));
        let group = Scope::parse("group:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa").unwrap();
        assert_eq!(group.kind(), ScopeKind::Group);
        assert_eq!(group.group_id().map(|g| g.to_string()).as_deref(), Some("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"));
        let sub = Scope::parse(SUB).unwrap();
        for (a, b) in [(&tenant, &group), (&group, &tenant), (&tenant, &sub), (&sub, &tenant), (&group, &sub)] {
            assert!(!a.contains(b), "{a} must not contain {b}");
        }
        for bad in [
            "directory:",
            "directory:/users",
            "directory:/administrativeUnits/",
            "directory:/administrativeUnits/not-a-guid",
            "directory:/administrativeUnits/5b51c641-0711-41d2-ac58-d90390d94a00/x",
            "group:",
            "group:not-a-guid",
            "group:/aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
            "groups:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn containment_follows_the_path() {
        let sub = Scope::parse(SUB).unwrap();
        let rg = Scope::parse(&format!("{SUB}/resourceGroups/rg")).unwrap();
        let rg2 = Scope::parse(&format!("{SUB}/resourceGroups/rg2")).unwrap();
        let mg = Scope::parse("/providers/Microsoft.Management/managementGroups/root").unwrap();
        assert!(sub.contains(&rg));
        assert!(!rg.contains(&sub));
        assert!(!rg.contains(&rg2), "a sibling whose name extends another is not below it");
        assert!(!mg.contains(&sub), "management groups contain only themselves");
        assert!(mg.contains(&mg));
    }

    fn arb_scope() -> impl Strategy<Value = Scope> {
        let name = prop::sample::select(vec!["a", "B", "rg", "Rg", "x1"]);
        let sub =
            prop::sample::select(vec!["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-00000000000A"]);
        (sub, prop::option::of(name.clone()), prop::option::of((name.clone(), name)), 0u8..5).prop_map(
            |(sub, rg, res, kind)| {
                let text = if kind == 2 {
                    "directory:/".to_owned()
                } else if kind == 3 {
                    format!("directory:/administrativeUnits/{sub}")
                } else if kind == 4 {
                    format!("group:{sub}")
                } else if kind == 1 {
                    format!("/providers/Microsoft.Management/managementGroups/{sub}")
                } else {
                    match (rg, res) {
                        (None, _) => format!("/subscriptions/{sub}"),
                        (Some(rg), None) => format!("/subscriptions/{sub}/resourceGroups/{rg}"),
                        (Some(rg), Some((t, n))) => {
                            format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/{t}/{n}")
                        }
                    }
                };
                Scope::parse(&text).unwrap()
            },
        )
    }

    proptest! {
        #[test]
        fn containment_is_a_partial_order(a in arb_scope(), b in arb_scope(), c in arb_scope()) {
            prop_assert!(a.contains(&a));
            if a.contains(&b) && b.contains(&a) { prop_assert_eq!(&a, &b); }
            if a.contains(&b) && b.contains(&c) { prop_assert!(a.contains(&c)); }
        }

        #[test]
        fn parsing_never_panics_and_round_trips(s in "\\PC{0,200}") {
            if let Ok(scope) = Scope::parse(&s) {
                let again = Scope::parse(scope.as_str()).unwrap();
                prop_assert_eq!(&again, &scope);
                prop_assert_eq!(again.as_str(), scope.as_str());
            }
        }
    }
}
