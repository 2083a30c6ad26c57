//! Identifiers and small values that arrive from the wire or the policy file.
//!
//! Every one has a private field and a `parse` constructor: once a value exists it is valid.
//! Nothing here does I/O or reads the clock.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value from outside could not be accepted. Messages are lowercase and quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("`{value}` is not {expected}")]
    Malformed { value: String, expected: &'static str },
    #[error("{0}")]
    OutOfRange(String),
}

impl ParseError {
    pub(crate) fn malformed(value: &str, expected: &'static str) -> Self {
        ParseError::Malformed { value: shorten(value), expected }
    }
}

/// Quotes user input in messages without letting it flood a log line.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let mut s: String = value.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

fn parse_guid(value: &str, expected: &'static str) -> Result<Uuid, ParseError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ParseError::Empty);
    }
    // Only the hyphenated 8-4-4-4-12 form: ARM and Entra never use another one for object ids.
    if trimmed.len() != 36 {
        return Err(ParseError::malformed(value, expected));
    }
    Uuid::try_parse(trimmed).map_err(|_| ParseError::malformed(value, expected))
}

/// Serde, `Display` and `Debug` for a newtype whose `parse` is written by hand.
macro_rules! parsed_string_impls {
    ($name:ident, |$v:ident| $display:expr) => {
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.to_string()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $v = self;
                fmt::Display::fmt(&$display, f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
    };
}

macro_rules! guid_newtype {
    ($(#[$doc:meta])* $name:ident, $expected:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, ParseError> {
                parse_guid(value, $expected).map(Self)
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }
        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.to_string()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Lowercase hyphenated: the form Entra and ARM print.
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

guid_newtype!(
    /// An Entra object id: a user, a group or a service principal.
    PrincipalId,
    "an object id (a GUID)"
);
guid_newtype!(
    /// The id of one activation (request) in Elevate.
    ActivationId,
    "an activation id (a GUID)"
);
guid_newtype!(
    /// An Entra tenant id.
    TenantId,
    "a tenant id (a GUID)"
);

impl ActivationId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The name of the role assignment this activation creates: UUIDv5 of the activation id,
    /// so that every retry of the same grant converges on one assignment.
    pub fn role_assignment_name(&self) -> Uuid {
        Uuid::new_v5(&ROLE_ASSIGNMENT_NAMESPACE, self.0.as_bytes())
    }
}

/// Namespace for role assignment names. INVARIANT: never change it, or retries of grants made
/// by an older version would create a second assignment.
const ROLE_ASSIGNMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1f_3a5e_8d2c_4c1b_9e07_5b3a_e1e7_a7e0);

/// A role definition, by its GUID. Accepts the bare GUID, a full ARM role definition id
/// (`/subscriptions/../providers/Microsoft.Authorization/roleDefinitions/{guid}`), or the
/// name of a well-known built-in role.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleDefinitionId(Uuid);

/// Built-in Azure roles that may be named instead of their GUID (azure-spec §3.3).
pub const BUILT_IN_ROLES: &[(&str, &str)] = &[
    ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
    ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
    ("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
    ("User Access Administrator", "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"),
    ("Role Based Access Control Administrator", "f58310d9-a9f6-439a-9e8d-f62e7b41a168"),
    ("Storage Table Data Contributor", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"),
    ("Storage Queue Data Contributor", "974c5e8b-45b9-4653-ba55-5f855dd0fb88"),
    ("Storage Blob Data Owner", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"),
    ("Monitoring Metrics Publisher", "3913510d-42f4-4e42-8a64-420c390055eb"),
];

/// Built-in Entra directory roles that may be named instead of their template id (graph-spec §3:
/// for built-ins the role definition id is the template id): name, template id, and whether the
/// role may be assigned at an administrative unit.
pub const DIRECTORY_ROLES: &[(&str, &str, bool)] = &[
    ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10", false),
    ("Privileged Role Administrator", "e8611ab8-c189-46e8-94e1-60213ab1f814", false),
    ("Privileged Authentication Administrator", "7be44c8a-adaf-4e2a-84d6-ab2649e08a13", true),
    ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d", false),
    ("Conditional Access Administrator", "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9", false),
    ("Application Administrator", "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", false),
    ("Cloud Application Administrator", "158c047a-c907-4556-b7ef-446551a6b5f7", false),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1", true),
    ("Authentication Administrator", "c4e39bd9-1100-46d3-8c65-fb160da0071f", true),
    ("Helpdesk Administrator", "729827e3-9c14-49f7-bb1b-9608f156bbb8", true),
    ("Password Administrator", "966707d0-3269-4727-9be2-8c3a10f19b9d", true),
    ("Hybrid Identity Administrator", "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2", false),
    ("Intune Administrator", "3a2c62db-5318-420d-8d74-23affee5d9d5", false),
    ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de", false),
    ("SharePoint Administrator", "f28a1f50-f6e7-4571-818b-6a12f2af6b6c", true),
    ("Teams Administrator", "69091246-20e8-4a56-aa4d-066075b2a7a8", true),
    ("Groups Administrator", "fdd7a751-b60b-444a-984c-02652fe8fa1c", true),
    ("Billing Administrator", "b0f54661-2d74-4c50-afa3-1ec803f12efe", false),
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451", false),
    ("Directory Writers", "9360feb5-f418-4baa-8175-e2a00bac4301", false),
    ("Directory Readers", "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", false),
];

/// What a group scope grants, as role definitions: Elevate's own fixed ids for membership and
/// ownership (Graph has no role definition for either). INVARIANT: never sent to any API.
pub const GROUP_ROLES: &[(&str, &str)] =
    &[("member", "e1e7a7e0-0000-4000-8000-6d656d626572"), ("owner", "e1e7a7e0-0000-4000-8000-006f776e6572")];

impl RoleDefinitionId {
    /// `member` or `owner`, for the group roles.
    pub fn group_role(&self) -> Option<&'static str> {
        let me = self.to_string();
        GROUP_ROLES.iter().find(|(_, guid)| *guid == me).map(|(name, _)| *name)
    }

    /// For a built-in directory role, whether it may be assigned at an administrative unit;
    /// `None` for any other role (a custom directory role is for Graph to judge).
    pub fn assignable_at_administrative_unit(&self) -> Option<bool> {
        let me = self.to_string();
        DIRECTORY_ROLES.iter().find(|(_, guid, _)| *guid == me).map(|(_, _, au)| *au)
    }

    /// Azure RBAC role names and ARM role definition ids (the kind-free form the wire and the
    /// store use): see `parse_for` for directory roles and groups.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(ParseError::Empty);
        }
        const EXPECTED: &str = "a role definition (a GUID, an ARM role definition id, or a built-in role name)";
        if let Some((_, guid)) = BUILT_IN_ROLES.iter().find(|(name, _)| name.eq_ignore_ascii_case(trimmed)) {
            return parse_guid(guid, EXPECTED).map(Self);
        }
        let last = match trimmed.rsplit_once('/') {
            Some((prefix, last)) => {
                let lower = prefix.to_ascii_lowercase();
                if !lower.ends_with("/providers/microsoft.authorization/roledefinitions") {
                    return Err(ParseError::malformed(value, EXPECTED));
                }
                last
            }
            None => trimmed,
        };
        parse_guid(last, EXPECTED).map(Self).map_err(|_| ParseError::malformed(value, EXPECTED))
    }

    /// The display name for built-in roles (Azure, directory) and the group roles.
    pub fn built_in_name(&self) -> Option<&'static str> {
        let me = self.to_string();
        BUILT_IN_ROLES
            .iter()
            .find(|(_, guid)| *guid == me)
            .map(|(name, _)| *name)
            .or_else(|| DIRECTORY_ROLES.iter().find(|(_, guid, _)| *guid == me).map(|(name, _, _)| *name))
            .or_else(|| self.group_role())
    }
}

parsed_string_impls!(RoleDefinitionId, |v| v.0.hyphenated());

/// Who a policy rule names: a user or a group, by object id (`user:<oid>`, `group:<oid>`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PrincipalRef {
    User(PrincipalId),
    Group(PrincipalId),
}

impl PrincipalRef {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "a principal (`user:<object id>` or `group:<object id>`)";
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(ParseError::Empty);
        }
        let (kind, id) = trimmed.split_once(':').ok_or_else(|| ParseError::malformed(value, EXPECTED))?;
        let id = PrincipalId::parse(id).map_err(|_| ParseError::malformed(value, EXPECTED))?;
        match kind.to_ascii_lowercase().as_str() {
            "user" => Ok(PrincipalRef::User(id)),
            "group" => Ok(PrincipalRef::Group(id)),
            _ => Err(ParseError::malformed(value, EXPECTED)),
        }
    }

    /// Whether a subject with this object id and these group memberships is this principal.
    pub fn matches(&self, principal: &PrincipalId, groups: &[PrincipalId]) -> bool {
        match self {
            PrincipalRef::User(id) => id == principal,
            PrincipalRef::Group(id) => groups.contains(id),
        }
    }
}

impl TryFrom<String> for PrincipalRef {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<PrincipalRef> for String {
    fn from(value: PrincipalRef) -> String {
        value.to_string()
    }
}
impl fmt::Display for PrincipalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrincipalRef::User(id) => write!(f, "user:{id}"),
            PrincipalRef::Group(id) => write!(f, "group:{id}"),
        }
    }
}
impl fmt::Debug for PrincipalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn bounded_text(value: &str, max: usize) -> Result<String, ParseError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ParseError::Empty);
    }
    if trimmed.chars().count() > max {
        return Err(ParseError::TooLong { max });
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ParseError::ControlCharacter);
    }
    Ok(trimmed.to_owned())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;
            pub fn parse(value: &str) -> Result<Self, ParseError> {
                bounded_text(value, $max).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

text_newtype!(
    /// Why somebody asks for access or decides on a request. Free text, attacker-controlled:
    /// always escaped when shown.
    Justification,
    1000
);
text_newtype!(
    /// A ticket system name, such as `ServiceNow`.
    TicketSystem,
    64
);
text_newtype!(
    /// A ticket number, such as `INC0012345`.
    TicketNumber,
    128
);
text_newtype!(
    /// A human-readable name taken from a token (`name` claim); display only, never trusted.
    DisplayName,
    256
);

/// A ticket reference given with a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub system: TicketSystem,
    pub number: TicketNumber,
}

/// A policy rule's stable id: lowercase letters, digits, `-`, `_` and `.`, 1 to 64 characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleId(String);

impl RuleId {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "a rule id (1 to 64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit)";
        if value.is_empty() {
            return Err(ParseError::Empty);
        }
        let ok = value.len() <= 64
            && value.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if ok { Ok(Self(value.to_owned())) } else { Err(ParseError::malformed(value, EXPECTED)) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
parsed_string_impls!(RuleId, |v| v.0.as_str());

/// A Conditional Access authentication context id as it appears in the `acrs` claim: `c1`..`c99`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AuthContextId(String);

impl AuthContextId {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "an authentication context id (`c1` to `c99`)";
        let lower = value.trim().to_ascii_lowercase();
        let digits = lower.strip_prefix('c').ok_or_else(|| ParseError::malformed(value, EXPECTED))?;
        match digits.parse::<u8>() {
            Ok(n) if (1..=99).contains(&n) && !digits.starts_with('0') => Ok(Self(lower)),
            _ => Err(ParseError::malformed(value, EXPECTED)),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
parsed_string_impls!(AuthContextId, |v| v.0.as_str());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_ids_are_lowercased_guids() {
        let id = PrincipalId::parse("CE2CE14E-85D7-4629-BDBC-454D0519D987").unwrap();
        assert_eq!(id.to_string(), "ce2ce14e-85d7-4629-bdbc-454d0519d987");
        assert!(PrincipalId::parse("ce2ce14e85d74629bdbc454d0519d987").is_err());
        assert!(PrincipalId::parse("").is_err());
        assert!(PrincipalId::parse("not-a-guid").is_err());
    }

    #[test]
    fn role_definitions_accept_guid_arm_id_and_built_in_name() {
        let guid = RoleDefinitionId::parse("b24988ac-6180-42a0-ab88-20f7382dd24c").unwrap();
        let arm = RoleDefinitionId::parse(
            "/subscriptions/a925f2f7-5c63-4b7b-8799-25a5f97bc3b2/providers/Microsoft.Authorization/roleDefinitions/B24988AC-6180-42A0-AB88-20F7382DD24C",
        )
        .unwrap();
        let name = RoleDefinitionId::parse("contributor").unwrap();
        assert_eq!(guid, arm);
        assert_eq!(guid, name);
        assert_eq!(guid.built_in_name(), Some("Contributor"));
        assert!(RoleDefinitionId::parse("/foo/b24988ac-6180-42a0-ab88-20f7382dd24c").is_err());
        assert!(RoleDefinitionId::parse("Superuser").is_err());
    }

    #[test]
    fn principal_refs_need_a_kind() {
        let id = "ce2ce14e-85d7-4629-bdbc-454d0519d987";
        assert!(matches!(PrincipalRef::parse(&format!("user:{id}")), Ok(PrincipalRef::User(_))));
        assert!(matches!(PrincipalRef::parse(&format!("Group:{id}")), Ok(PrincipalRef::Group(_))));
        assert!(PrincipalRef::parse(id).is_err());
        assert!(PrincipalRef::parse(&format!("app:{id}")).is_err());
    }

    #[test]
    fn justifications_are_trimmed_and_bounded() {
        assert_eq!(Justification::parse("  INC-1 ").unwrap().as_str(), "INC-1");
        assert_eq!(Justification::parse("   "), Err(ParseError::Empty));
        assert_eq!(Justification::parse(&"x".repeat(1001)), Err(ParseError::TooLong { max: 1000 }));
        assert_eq!(Justification::parse("a\u{0}b"), Err(ParseError::ControlCharacter));
    }

    #[test]
    fn rule_ids_and_auth_contexts_are_strict() {
        assert!(RuleId::parse("prod-contributor").is_ok());
        assert!(RuleId::parse("Prod").is_err());
        assert!(RuleId::parse("-x").is_err());
        assert_eq!(AuthContextId::parse("C1").unwrap().as_str(), "c1");
        assert!(AuthContextId::parse("c0").is_err());
        assert!(AuthContextId::parse("c01").is_err());
        assert!(AuthContextId::parse("c100").is_err());
    }

    #[test]
    fn role_assignment_names_are_deterministic() {
        let id = ActivationId::parse("05c5a614-a7d6-4502-b150-c2fb455033ff").unwrap();
        assert_eq!(id.role_assignment_name(), id.role_assignment_name());
        assert_ne!(id.role_assignment_name(), *id.as_uuid());
        assert_eq!(id.role_assignment_name().get_version_num(), 5);
    }
}
