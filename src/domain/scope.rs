//! ARM scopes, parsed into levels, compared case-insensitively.
//!
//! `contains` is the only notion of "below" Elevate uses: a rule at a scope applies to that scope
//! and every scope whose path continues it. A management group therefore contains only itself:
//! which subscriptions sit below it is not visible in the path, and guessing would grant access
//! nobody configured (deny by default).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::ParseError;

/// How deep in the ARM hierarchy a scope lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScopeLevel {
    ManagementGroup,
    Subscription,
    ResourceGroup,
    Resource,
}

/// An ARM scope: `/providers/Microsoft.Management/managementGroups/{mg}`, `/subscriptions/{sub}`,
/// `/subscriptions/{sub}/resourceGroups/{rg}` or a resource below a resource group.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope {
    /// Canonical text: keywords in ARM's casing, names as given.
    text: String,
    /// Lowercased segments. INVARIANT: comparisons and containment use only these.
    key: Vec<String>,
    level: ScopeLevel,
}

const EXPECTED: &str = "an ARM scope (`/subscriptions/{id}`, `/subscriptions/{id}/resourceGroups/{name}`, a resource id, or `/providers/Microsoft.Management/managementGroups/{name}`)";
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

    pub fn level(&self) -> ScopeLevel {
        self.level
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
        (sub, prop::option::of(name.clone()), prop::option::of((name.clone(), name)), any::<bool>()).prop_map(
            |(sub, rg, res, mg)| {
                let text = if mg {
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
