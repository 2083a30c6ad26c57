//! Property-based fuzz targets for every parser that takes outside input: tokens and the Easy
//! Auth principal header, scopes, durations and ids, the policy file, request bodies, query
//! strings and forms, confirmation links, queue messages and stored notices, and the HTTP edge
//! as a whole (custom-handler invocations, portal forms and headers included). Properties: no
//! input makes a parser panic; a refusal is a clear error that names the field; what a `Display`
//! prints parses back to the same value; valid inputs are accepted.
//!
//! The CI run is short and seeded (`FUZZ_CASES` cases per target, `FUZZ_SEED`). The long run:
//! `PROPTEST_CASES=100000 cargo test --release --test main -- fuzz::` (scripts/stress, which
//! prints the seed it uses, `PROPTEST_RNG_SEED`, so a failure can be run again).

use std::sync::OnceLock;

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};

use elevate::adapters::identity::dev::{DEV_AUDIENCE, DEV_TENANT, DevIssuer, DevTokenRequest};
use elevate::adapters::identity::easyauth::parse_principal;
use elevate::adapters::identity::jwt::JwtValidator;
use elevate::domain::duration::IsoDuration;
use elevate::domain::ids::{
    ActivationId, Justification, ParseError, PrincipalId, PrincipalRef, RoleDefinitionId, RuleId, TenantId,
    TicketNumber, TicketSystem,
};
use elevate::domain::notification::OutboxItem;
use elevate::domain::policy::Policy;
use elevate::domain::scope::{Scope, ScopeKind};
use elevate::http::dto::{
    self, ActivationRequestDto, AuditQueryDto, DecisionDto, ExtendDto, ListQuery, read_audit_skiptoken,
    write_audit_skiptoken,
};
use elevate::service::ExpiryMessage;
use elevate::service::ports::{AuthError, PageToken};

use crate::support::{ALICE, SUB1, spawn_app, start, test_policy, user};

/// Cases per target in CI; `PROPTEST_CASES` (the long run) overrides it.
const FUZZ_CASES: u32 = 256;
/// The CI run's seed, so that a failure there is the same failure here.
pub const FUZZ_SEED: u64 = 17;

/// The short run: `cases`, seeded with `FUZZ_SEED` (`PROPTEST_RNG_SEED` overrides it). With
/// `PROPTEST_CASES` set, proptest's own settings (a random seed unless `PROPTEST_RNG_SEED`).
pub fn config(cases: u32) -> Config {
    let defaults = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        return defaults;
    }
    let rng_seed = match std::env::var_os("PROPTEST_RNG_SEED") {
        Some(_) => defaults.rng_seed,
        None => proptest::test_runner::RngSeed::Fixed(FUZZ_SEED),
    };
    Config { cases, rng_seed, ..defaults }
}

/// Anything: arbitrary Unicode, ASCII noise, and the characters parsers split on.
fn garbage() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        "[/:.{}\\[\\]\"'%#?&=, \t\n\r\u{0}\u{7f}\u{85}\u{a0}\u{feff}a-zA-Z0-9-]{0,40}",
    ]
}

/// `valid`, edited once: a character inserted, removed or replaced, or a cut.
fn mutated(valid: Vec<String>) -> impl Strategy<Value = String> {
    (proptest::sample::select(valid), any::<prop::sample::Index>(), any::<char>(), 0..4u8).prop_map(
        |(text, at, c, how)| {
            let chars: Vec<char> = text.chars().collect();
            let i = if chars.is_empty() { 0 } else { at.index(chars.len()) };
            let mut out = chars.clone();
            match how {
                0 => out.insert(i, c),
                1 if !out.is_empty() => {
                    out.remove(i);
                }
                2 if !out.is_empty() => out[i] = c,
                _ => out.truncate(i),
            }
            out.into_iter().collect()
        },
    )
}

/// A refusal says what is wrong without echoing a flood of input.
fn clear(e: &ParseError) -> Result<(), TestCaseError> {
    let message = e.to_string();
    prop_assert!(!message.is_empty());
    prop_assert!(message.chars().count() <= 500, "{message}");
    Ok(())
}

fn guid_text() -> impl Strategy<Value = String> {
    (any::<u128>(), any::<bool>()).prop_map(|(n, upper)| {
        let s = uuid::Uuid::from_u128(n).hyphenated().to_string();
        if upper { s.to_ascii_uppercase() } else { s }
    })
}

fn name_segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9._()-]{0,20}"
}

/// Scopes of every level and kind, in the spellings Azure and Elevate accept.
fn valid_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        guid_text().prop_map(|s| format!("/subscriptions/{s}")),
        (guid_text(), name_segment()).prop_map(|(s, rg)| format!("/subscriptions/{s}/resourceGroups/{rg}")),
        (guid_text(), name_segment(), name_segment(), name_segment()).prop_map(|(s, rg, t, n)| format!(
            "/SUBSCRIPTIONS/{s}/resourcegroups/{rg}/providers/Microsoft.Web/{t}/{n}"
        )),
        name_segment().prop_map(|mg| format!("/providers/Microsoft.Management/managementGroups/{mg}/")),
        Just("directory:/".to_owned()),
        guid_text().prop_map(|au| format!("directory:/administrativeUnits/{au}")),
        guid_text().prop_map(|g| format!("GROUP:{g}")),
    ]
}

fn scope_inputs() -> impl Strategy<Value = String> {
    let seeds = vec![
        SUB1.to_owned(),
        format!("{SUB1}/resourceGroups/app/providers/Microsoft.Storage/storageAccounts/st"),
        "/providers/Microsoft.Management/managementGroups/root".to_owned(),
        "directory:/administrativeUnits/aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa".to_owned(),
        "group:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa".to_owned(),
    ];
    prop_oneof![garbage(), valid_scope(), mutated(seeds)]
}

#[test]
fn scopes_never_panic_refuse_clearly_and_round_trip() {
    let mut runner = TestRunner::new(config(FUZZ_CASES));
    runner
        .run(&scope_inputs(), |text| {
            match Scope::parse(&text) {
                Err(e) => clear(&e)?,
                Ok(scope) => {
                    let printed = scope.to_string();
                    let again = Scope::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
                    prop_assert_eq!(&again, &scope);
                    prop_assert_eq!(again.to_string(), printed);
                    prop_assert!(scope.contains(&again) && again.contains(&scope));
                    // The scope says which kind of role a name means: any input is safe there too.
                    let _ = scope.kind().parse_role(&text);
                }
            }
            Ok(())
        })
        .unwrap();
    runner
        .run(&valid_scope(), |text| {
            prop_assert!(Scope::parse(&text).is_ok(), "{text}: {:?}", Scope::parse(&text).err());
            Ok(())
        })
        .unwrap();
}

#[test]
fn durations_never_panic_and_every_valid_one_prints_and_parses_back() {
    let seeds = ["PT8H", "P1D", "PT1H30M", "P2W", "P1DT12H30M5S"].map(String::from).to_vec();
    let inputs = prop_oneof![garbage(), "[pPtT0-9WDHMS ]{0,16}", mutated(seeds)];
    let mut runner = TestRunner::new(config(FUZZ_CASES));
    runner
        .run(&inputs, |text| {
            match IsoDuration::parse(&text) {
                Err(e) => clear(&e)?,
                Ok(d) => {
                    prop_assert!(d.seconds() > 0 && d.seconds() <= 90 * 86400);
                    prop_assert_eq!(IsoDuration::parse(&d.to_string()).ok(), Some(d), "{}", d);
                }
            }
            Ok(())
        })
        .unwrap();
    runner
        .run(&(1..=90 * 86400i64), |seconds| {
            let d = IsoDuration::from_delta(TimeDelta::seconds(seconds)).unwrap();
            prop_assert_eq!(d.seconds(), seconds);
            prop_assert_eq!(IsoDuration::parse(&d.to_string()).ok(), Some(d));
            Ok(())
        })
        .unwrap();
}

#[test]
fn ids_and_names_never_panic_and_round_trip() {
    let role_seeds = vec![
        "Reader".to_owned(),
        "global administrator".to_owned(),
        "member".to_owned(),
        format!("{SUB1}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
    ];
    let inputs =
        prop_oneof![garbage(), guid_text(), mutated(role_seeds), guid_text().prop_map(|g| format!("user:{g}"))];
    let mut runner = TestRunner::new(config(FUZZ_CASES));
    runner
        .run(&inputs, |text| {
            for result in [
                PrincipalId::parse(&text).map(|v| (v.to_string(), PrincipalId::parse(&v.to_string()).ok() == Some(v))),
                ActivationId::parse(&text)
                    .map(|v| (v.to_string(), ActivationId::parse(&v.to_string()).ok() == Some(v))),
                TenantId::parse(&text).map(|v| (v.to_string(), TenantId::parse(&v.to_string()).ok() == Some(v))),
                RoleDefinitionId::parse(&text)
                    .map(|v| (v.to_string(), RoleDefinitionId::parse(&v.to_string()).ok() == Some(v))),
                PrincipalRef::parse(&text)
                    .map(|v| (v.to_string(), PrincipalRef::parse(&v.to_string()).ok() == Some(v))),
                RuleId::parse(&text).map(|v| (v.to_string(), v.as_str() == text)),
                Justification::parse(&text)
                    .map(|v| (v.to_string(), Justification::parse(v.as_str()).ok().as_ref() == Some(&v))),
                TicketSystem::parse(&text).map(|v| (v.to_string(), v.as_str() == text.trim())),
                TicketNumber::parse(&text).map(|v| (v.to_string(), v.as_str() == text.trim())),
            ] {
                match result {
                    Err(e) => clear(&e)?,
                    Ok((printed, round_trips)) => prop_assert!(round_trips, "{text:?} printed as {printed:?}"),
                }
            }
            for kind in [ScopeKind::Azure, ScopeKind::Directory, ScopeKind::Group] {
                match kind.parse_role(&text) {
                    Err(e) => clear(&e)?,
                    // A role read by name prints as its GUID, which reads back (groups by name only).
                    Ok(role) if kind != ScopeKind::Group => {
                        prop_assert_eq!(kind.parse_role(&role.to_string()).ok(), Some(role))
                    }
                    Ok(role) => prop_assert!(role.group_role().is_some()),
                }
            }
            Ok(())
        })
        .unwrap();
}

// ----- tokens --------------------------------------------------------------------------------

struct Issuer {
    issuer: DevIssuer,
    validator: JwtValidator,
}

/// One dev issuer for every token case (RSA key generation is slow).
fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let issuer = DevIssuer::load_or_create(&dir.join("dev.pem")).unwrap();
        let validator = issuer.validator().unwrap();
        Issuer { issuer, validator }
    })
}

fn now() -> DateTime<Utc> {
    start()
}

fn minted(request: &DevTokenRequest) -> String {
    issuer().issuer.mint(request, now()).unwrap()
}

#[test]
fn bearer_tokens_never_panic_and_only_the_issuers_own_are_accepted() {
    let request = DevTokenRequest { mfa: true, roles: vec!["Elevate.Admin".into()], ..user(ALICE) };
    let good = minted(&request);
    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    // Tokens built from parts: JSON of any shape in the header and claims, the real signature.
    let forged = (garbage(), garbage(), prop_oneof![Just("RS256"), Just("none"), Just("HS256")]).prop_map(
        move |(claim, kid, alg)| {
            let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
            let claims = json!({"oid": claim, "tid": DEV_TENANT, "aud": DEV_AUDIENCE, "exp": 4_102_444_800i64});
            format!("{}.{}.{}", b64(&header), b64(&claims), parts[2])
        },
    );
    let inputs = prop_oneof![
        garbage(),
        mutated(vec![good.clone()]),
        forged,
        "[A-Za-z0-9_-]{0,30}\\.[A-Za-z0-9_-]{0,30}\\.[A-Za-z0-9_-]{0,30}"
    ];
    let v = &issuer().validator;
    let mut runner = TestRunner::new(config(FUZZ_CASES));
    runner
        .run(&inputs, |token| {
            let _ = v.unknown_key_id(&token);
            match v.validate(&token, now()) {
                Ok(caller) => {
                    // Only the token itself (or an equivalent encoding the mutation kept valid).
                    prop_assert_eq!(caller.principal_id.to_string(), ALICE);
                    prop_assert!(token.starts_with(good.split('.').next().unwrap()) || token == good);
                }
                Err(AuthError::Invalid(why)) => prop_assert!(!why.is_empty()),
                Err(other) => prop_assert!(false, "{token:?}: {other}"),
            }
            Ok(())
        })
        .unwrap();
    let caller = v.validate(&good, now()).unwrap();
    assert_eq!((caller.principal_id.to_string().as_str(), caller.mfa), (ALICE, true));
    assert!(caller.roles.contains(&"Elevate.Admin".to_owned()));
}

#[test]
fn minted_tokens_for_any_user_are_accepted_and_say_who() {
    let inputs = (any::<u128>(), any::<bool>(), proptest::collection::vec("[A-Za-z.]{1,20}", 0..4));
    TestRunner::new(config(32))
        .run(&inputs, |(oid, mfa, roles)| {
            let oid = uuid::Uuid::from_u128(oid).to_string();
            let request = DevTokenRequest { mfa, roles: roles.clone(), ..user(&oid) };
            let caller = issuer().validator.validate(&minted(&request), now()).unwrap();
            prop_assert_eq!(caller.principal_id.to_string(), oid);
            prop_assert_eq!(caller.mfa, mfa);
            prop_assert_eq!(caller.roles, roles);
            Ok(())
        })
        .unwrap();
}

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn principal_header(claims: &[(String, String)], auth_typ: &str) -> String {
    let claims: Vec<Value> = claims.iter().map(|(t, v)| json!({"typ": t, "val": v})).collect();
    base64::engine::general_purpose::STANDARD.encode(json!({"auth_typ": auth_typ, "claims": claims}).to_string())
}

#[test]
fn easy_auth_principals_never_panic_and_are_read_only_when_whole() {
    let tenant = TenantId::parse(TENANT).unwrap();
    let audiences = vec!["api://elevate".to_owned()];
    let typ = prop_oneof![
        Just("oid".to_owned()),
        Just("http://schemas.microsoft.com/identity/claims/tenantid".to_owned()),
        Just("roles".to_owned()),
        Just("groups".to_owned()),
        Just("amr".to_owned()),
        Just("aud".to_owned()),
        Just("auth_time".to_owned()),
        Just("_claim_names".to_owned()),
        garbage(),
    ];
    let value = prop_oneof![garbage(), Just(TENANT.to_owned()), guid_text(), Just("[\"mfa\",\"pwd\"]".to_owned())];
    let structured =
        (proptest::collection::vec((typ, value), 0..8), prop_oneof![Just("aad"), Just("AAD"), Just("google")])
            .prop_map(|(claims, typ)| principal_header(&claims, typ));
    let bytes = proptest::collection::vec(any::<u8>(), 0..200)
        .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    let inputs = prop_oneof![garbage(), bytes, structured];
    TestRunner::new(config(FUZZ_CASES))
        .run(&inputs, |header| {
            match parse_principal(&header, tenant, &audiences) {
                Err(AuthError::Invalid(why)) => prop_assert!(why.contains("Easy Auth principal"), "{why}"),
                Err(other) => prop_assert!(false, "{other}"),
                Ok(p) => {
                    // Read only with this tenant and an object id that the header really carries.
                    prop_assert_eq!(p.caller.tenant_id, tenant);
                    let decoded = String::from_utf8(
                        base64::engine::general_purpose::STANDARD.decode(header.trim()).unwrap_or_default(),
                    )
                    .unwrap_or_default();
                    prop_assert!(decoded.to_ascii_lowercase().contains(&p.caller.principal_id.to_string()));
                }
            }
            Ok(())
        })
        .unwrap();
    let whole = principal_header(
        &[
            ("http://schemas.microsoft.com/identity/claims/tenantid".into(), TENANT.into()),
            ("http://schemas.microsoft.com/identity/claims/objectidentifier".into(), ALICE.into()),
            ("roles".into(), "Elevate.Auditor".into()),
            ("amr".into(), "mfa".into()),
        ],
        "aad",
    );
    let p = parse_principal(&whole, tenant, &audiences).unwrap();
    assert_eq!((p.caller.principal_id.to_string().as_str(), p.caller.mfa), (ALICE, true));
    assert_eq!(p.caller.roles, ["Elevate.Auditor"]);
}

// ----- policy --------------------------------------------------------------------------------

const FILE: &str = "fuzz-policy.yaml";

/// `value` as a YAML double-quoted scalar that carries any character (escaped unless printable ASCII).
fn yaml_quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            other => out.push_str(&format!("\\U{:08X}", u32::from(other))),
        }
    }
    out.push('"');
    out
}

/// A one-rule policy with `field` set to `value`.
fn policy_with(field: &str, value: &str) -> String {
    let quoted = yaml_quoted(value);
    let mut fields = vec![
        ("scope", serde_json::to_string(SUB1).unwrap()),
        ("roles", "[Reader]".to_owned()),
        ("principals", format!("[\"user:{ALICE}\"]")),
        ("maxDuration", "PT4H".to_owned()),
    ];
    for (name, text) in &mut fields {
        if *name == field {
            *text = if field == "roles" || field == "principals" { format!("[{quoted}]") } else { quoted.clone() };
        }
    }
    let body: String = fields.iter().map(|(n, t)| format!("    {n}: {t}\n")).collect();
    format!("version: 1\nrules:\n  - id: fuzzed\n{body}")
}

#[test]
fn policy_files_never_panic_and_name_the_field_at_fault() {
    let policy = test_policy();
    let lines: Vec<String> = policy.lines().map(str::to_owned).collect();
    // Whole files: noise, and the test policy with one line edited.
    let edited = (proptest::sample::select(lines.clone()), any::<prop::sample::Index>(), garbage()).prop_map({
        let lines = lines.clone();
        move |(_, at, replacement)| {
            let mut out = lines.clone();
            let i = at.index(out.len());
            out[i] = replacement;
            out.join("\n")
        }
    });
    let files = prop_oneof![garbage(), edited, mutated(vec![policy.clone()])];
    TestRunner::new(config(FUZZ_CASES))
        .run(&files, |text| {
            if let Err(e) = Policy::from_yaml(FILE, &text) {
                prop_assert!(!e.0.is_empty());
                for problem in &e.0 {
                    prop_assert_eq!(&problem.file, FILE);
                    prop_assert!(!problem.message.is_empty());
                    prop_assert!(problem.to_string().starts_with(FILE));
                }
            }
            Ok(())
        })
        .unwrap();
    // One field at a time: a value its parser refuses is reported at that field.
    let field = prop_oneof![Just("scope"), Just("roles"), Just("principals"), Just("maxDuration")];
    let value = prop_oneof!["[ -~]{0,30}", scope_inputs(), "P(T?[0-9]{0,3}[DHMSW]){0,3}", guid_text()];
    TestRunner::new(config(FUZZ_CASES))
        .run(&(field, value), |(field, value)| {
            let refused = match field {
                "scope" => Scope::parse(&value).is_err(),
                "roles" => ScopeKind::Azure.parse_role(&value).is_err(),
                "principals" => PrincipalRef::parse(&value).is_err(),
                _ => IsoDuration::parse(&value).is_err(),
            };
            let result = Policy::from_yaml(FILE, &policy_with(field, &value));
            if refused {
                let e = result.err().ok_or_else(|| TestCaseError::fail(format!("{field} {value:?} was accepted")))?;
                prop_assert!(e.0.iter().any(|p| p.path.contains(field)), "{field} {value:?}: {e}");
            }
            Ok(())
        })
        .unwrap();
    assert!(Policy::from_yaml(FILE, &policy_with("maxDuration", "PT2H")).is_ok());
}

// ----- request bodies, queries, forms --------------------------------------------------------

/// A value for one field: mostly valid, sometimes not.
fn field_value(valid: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![3 => proptest::sample::select(valid.clone()), 1 => garbage(), 1 => mutated(valid)]
}

fn request_body() -> impl Strategy<Value = Value> {
    (
        field_value(vec!["Reader".into(), "acdd72a7-3385-48ef-bd42-f606fba81ae7".into(), "member".into()]),
        field_value(vec![SUB1.into(), "group:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa".into(), "directory:/".into()]),
        proptest::option::of(field_value(vec!["PT1H".into(), "P1D".into()])),
        proptest::option::of(field_value(vec!["INC-7 outage".into()])),
        proptest::option::of((field_value(vec!["ServiceNow".into()]), field_value(vec!["INC0012345".into()]))),
        proptest::option::of(field_value(vec!["2026-11-25T14:00:00Z".into(), "2026-11-25T14:00:00+01:00".into()])),
        proptest::option::of(field_value(vec!["dev-reader".into()])),
        proptest::option::of(field_value(vec![ALICE.into()])),
    )
        .prop_map(|(role, scope, duration, justification, ticket, start_at, rule_id, principal)| {
            let mut body = json!({"roleDefinitionId": role, "scope": scope});
            let map = body.as_object_mut().unwrap();
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    map.insert(k.into(), Value::String(v));
                }
            };
            put("duration", duration);
            put("justification", justification);
            put("startAt", start_at);
            put("ruleId", rule_id);
            put("principalId", principal);
            if let Some((system, number)) = ticket {
                map.insert("ticket".into(), json!({"system": system, "number": number}));
            }
            body
        })
}

/// The field `into_input` must name for `body`: the first, in its order of reading, whose own
/// parser refuses the value.
fn first_bad_field(body: &Value) -> Option<&'static str> {
    let s = |k: &str| body.get(k).and_then(Value::as_str);
    let scope = match Scope::parse(s("scope").unwrap()) {
        Ok(scope) => scope,
        Err(_) => return Some("scope"),
    };
    if s("principalId").is_some_and(|p| PrincipalId::parse(p).is_err()) {
        return Some("principalId");
    }
    if scope.kind().parse_role(s("roleDefinitionId").unwrap()).is_err() {
        return Some("roleDefinitionId");
    }
    if s("duration").is_some_and(|d| IsoDuration::parse(d).is_err()) {
        return Some("duration");
    }
    if s("justification").is_some_and(|j| Justification::parse(j).is_err()) {
        return Some("justification");
    }
    if let Some(ticket) = body.get("ticket") {
        if TicketSystem::parse(ticket["system"].as_str().unwrap()).is_err() {
            return Some("ticket.system");
        }
        if TicketNumber::parse(ticket["number"].as_str().unwrap()).is_err() {
            return Some("ticket.number");
        }
    }
    if s("startAt").is_some_and(|t| DateTime::parse_from_rfc3339(t).is_err()) {
        return Some("startAt");
    }
    if s("ruleId").is_some_and(|r| RuleId::parse(r).is_err()) {
        return Some("ruleId");
    }
    None
}

#[test]
fn activation_requests_are_accepted_when_every_field_is_and_otherwise_name_the_first_bad_one() {
    TestRunner::new(config(FUZZ_CASES))
        .run(&request_body(), |body| {
            let bytes = serde_json::to_vec(&body).unwrap();
            let dto: ActivationRequestDto =
                dto::parse_json(&bytes).map_err(|e| TestCaseError::fail(format!("{body}: {}", e.message)))?;
            match (dto.into_input(), first_bad_field(&body)) {
                (Ok(input), None) => {
                    // What a confirmation link shows back reads as the same request.
                    let shown = serde_json::to_vec(&ActivationRequestDto::from(&input)).unwrap();
                    let again = dto::parse_json::<ActivationRequestDto>(&shown).unwrap().into_input().unwrap();
                    prop_assert_eq!(again.scope, input.scope);
                    prop_assert_eq!(again.role_definition_id, input.role_definition_id);
                    prop_assert_eq!(again.duration, input.duration);
                    prop_assert_eq!(again.justification, input.justification);
                    prop_assert_eq!(again.start_at.map(|t| t.timestamp()), input.start_at.map(|t| t.timestamp()));
                }
                (Err(e), Some(field)) => {
                    prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                    prop_assert_eq!(e.target.as_deref(), Some(field), "{}", e.message);
                    prop_assert!(e.message.contains(&format!("`{field}`")), "{}", e.message);
                }
                (Ok(_), Some(field)) => prop_assert!(false, "{body}: `{field}` is bad but the request was accepted"),
                (Err(e), None) => prop_assert!(false, "{body}: refused at {:?}: {}", e.target, e.message),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn bodies_of_any_bytes_are_refused_as_bad_requests_never_panics() {
    let json_like = || request_body().prop_map(|b| b.to_string().into_bytes());
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        json_like(),
        // Cut short anywhere.
        (json_like(), any::<prop::sample::Index>())
            .prop_map(|(b, at)| b[..at.index(b.len() + 1).min(b.len())].to_vec()),
        garbage().prop_map(String::into_bytes),
    ];
    TestRunner::new(config(FUZZ_CASES))
        .run(&bytes, |body: Vec<u8>| {
            for result in [
                dto::parse_json::<ActivationRequestDto>(&body).and_then(|d| d.into_input().map(|_| ())),
                dto::parse_json::<ExtendDto>(&body).and_then(|d| d.into_input().map(|_| ())),
                dto::parse_json::<DecisionDto>(&body).and_then(|d| d.into_input().map(|_| ())),
            ] {
                if let Err(e) = result {
                    prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                    prop_assert!(!e.message.is_empty());
                }
            }
            // A form post of a decision.
            if let Ok(form) = serde_urlencoded::from_bytes::<DecisionDto>(&body)
                && let Err(e) = form.into_input()
            {
                prop_assert!(matches!(e.target.as_deref(), Some("decision" | "justification")), "{:?}", e.target);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn query_strings_and_continuations_never_panic_and_name_the_parameter() {
    let pairs = proptest::collection::vec(
        (
            prop_oneof![
                Just("status"),
                Just("mine"),
                Just("$top"),
                Just("limit"),
                Just("$skiptoken"),
                Just("activationId"),
                Just("principalId"),
                Just("since"),
                Just("until"),
                Just("scope"),
                Just("roleDefinitionId"),
                Just("action"),
            ],
            prop_oneof![
                garbage(),
                Just("Active".to_owned()),
                Just("true".to_owned()),
                Just("10".to_owned()),
                guid_text()
            ],
        ),
        0..5,
    )
    .prop_map(|pairs| serde_urlencoded::to_string(pairs).unwrap());
    let queries = prop_oneof![pairs, garbage()];
    TestRunner::new(config(FUZZ_CASES))
        .run(&queries, |query| {
            if let Ok(q) = dto::parse_query::<ListQuery>(&query) {
                for e in [q.filter().err(), q.page().err()].into_iter().flatten() {
                    prop_assert!(e.target.is_some(), "{query}: {}", e.message);
                }
            }
            if let Ok(q) = dto::parse_query::<AuditQueryDto>(&query) {
                for e in [q.filter().err(), q.page().err()].into_iter().flatten() {
                    let target = e.target.clone().unwrap_or_default();
                    prop_assert!(query.contains(target.trim_start_matches('$')), "{query}: {target}");
                }
            }
            if let Err(e) = read_audit_skiptoken(&query) {
                prop_assert_eq!(e.target.as_deref(), Some("$skiptoken"));
            }
            Ok(())
        })
        .unwrap();
    TestRunner::new(config(FUZZ_CASES))
        .run(&"[^\\p{Cc}]{1,200}", |token| {
            let written = write_audit_skiptoken(&PageToken::new(token.clone()));
            let read = read_audit_skiptoken(&written).unwrap();
            prop_assert_eq!(read.as_str(), token.as_str());
            Ok(())
        })
        .unwrap();
}

// ----- queue messages and stored notices ------------------------------------------------------

#[test]
fn queue_messages_and_notices_never_panic_and_round_trip() {
    let messages = prop_oneof![
        garbage(),
        (garbage(), garbage()).prop_map(|(a, e)| json!({"activationId": a, "expiresAt": e}).to_string()),
        (any::<u128>(), 0..4_000_000_000i64).prop_map(|(id, t)| json!({
            "activationId": uuid::Uuid::from_u128(id).to_string(),
            "expiresAt": DateTime::from_timestamp(t, 0).unwrap(),
        })
        .to_string()),
    ];
    TestRunner::new(config(FUZZ_CASES))
        .run(&messages, |text| {
            if let Ok(m) = serde_json::from_str::<ExpiryMessage>(&text) {
                let again: ExpiryMessage = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
                prop_assert_eq!(again, m);
            }
            let _ = serde_json::from_str::<OutboxItem>(&text);
            Ok(())
        })
        .unwrap();
    TestRunner::new(config(64))
        .run(&(any::<u128>(), 0..4_000_000_000i64), |(id, t)| {
            let at = DateTime::from_timestamp(t, 0).unwrap();
            for item in [
                OutboxItem::expiring_soon(ActivationId::from(uuid::Uuid::from_u128(id)), at, now()),
                OutboxItem::revocation_failing(ActivationId::from(uuid::Uuid::from_u128(id)), now()),
            ] {
                let stored = serde_json::to_string(&item).unwrap();
                prop_assert_eq!(serde_json::from_str::<OutboxItem>(&stored).ok(), Some(item));
            }
            Ok(())
        })
        .unwrap();
}

// ----- the HTTP edge ---------------------------------------------------------------------------

/// A request anyone could send: any route (the API, the portal's forms, the custom-handler
/// invocations, the dev sign-in, confirmation links), any body, with or without credentials and
/// with any of the headers Elevate reads.
fn wire_request() -> impl Strategy<Value = (String, String, String, Vec<(String, String)>, Vec<u8>)> {
    let path = prop_oneof![
        Just("/api/activations".to_owned()),
        Just("/api/activations?validateOnly=true".to_owned()),
        garbage().prop_map(|g| format!("/api/activations/{}", urlencode(&g))),
        garbage().prop_map(|g| format!("/api/activations/{}/extend", urlencode(&g))),
        garbage().prop_map(|g| format!("/api/approvals/{}", urlencode(&g))),
        garbage().prop_map(|g| format!("/api/confirmations/{}", urlencode(&g))),
        garbage().prop_map(|q| format!("/api/audit?{q}")),
        garbage().prop_map(|q| format!("/api/activations?{q}")),
        Just("/api/portal/roles".to_owned()),
        Just("/api/portal/activations/5f0e3b7c-0000-4000-8000-000000000001/extend".to_owned()),
        Just("/api/portal/sign-out".to_owned()),
        garbage().prop_map(|q| format!("/api/portal/audit/export?{q}")),
        Just("/dev/sign-in".to_owned()),
        Just("/expiry".to_owned()),
        Just("/deliver".to_owned()),
        Just("/expiry-sweeper".to_owned()),
        Just("/governance".to_owned()),
    ];
    let method = prop_oneof![Just("GET"), Just("POST"), Just("POST"), Just("PUT")].prop_map(String::from);
    let auth = prop_oneof![Just(""), Just("token"), Just("garbage")].prop_map(String::from);
    let header = (
        prop_oneof![
            Just("content-type"),
            Just("x-ms-client-principal"),
            Just("cookie"),
            Just("origin"),
            Just("sec-fetch-site"),
            Just("x-csrf-token"),
            Just("idempotency-key"),
            Just("accept"),
        ],
        prop_oneof![
            garbage(),
            Just("application/json".to_owned()),
            Just("application/x-www-form-urlencoded".to_owned()),
            Just("text/html".to_owned()),
        ],
    )
        .prop_map(|(n, v)| (n.to_owned(), v));
    let body = prop_oneof![
        garbage().prop_map(String::into_bytes),
        request_body().prop_map(|b| b.to_string().into_bytes()),
        (garbage(), garbage())
            .prop_map(|(a, b)| json!({"Data": {"msg": a}, "Metadata": {"DequeueCount": b}}).to_string().into_bytes()),
        (garbage(), garbage()).prop_map(|(a, b)| serde_urlencoded::to_string([
            ("decision", a),
            ("justification", b.clone()),
            ("csrf", b)
        ])
        .unwrap()
        .into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..200),
    ];
    (method, path, auth, proptest::collection::vec(header, 0..3), body)
}

fn urlencode(text: &str) -> String {
    elevate::endpoint::encode_component(text)
}

#[test]
fn the_http_edge_answers_anything_with_a_well_formed_answer_and_no_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app());
    let token = app.token(ALICE);
    TestRunner::new(config(FUZZ_CASES))
        .run(&wire_request(), |(method, path, auth, headers, body)| {
            let answer = runtime.block_on(async {
                let mut req = app.client.request(method.parse().unwrap(), format!("{}{path}", app.base)).body(body);
                match auth.as_str() {
                    "token" => req = req.bearer_auth(&token),
                    "garbage" => req = req.header("authorization", "Bearer x.y.z"),
                    _ => {}
                }
                for (name, value) in &headers {
                    if let Ok(value) = reqwest::header::HeaderValue::from_str(value) {
                        req = req.header(name.as_str(), value);
                    }
                }
                let res = req.send().await.map_err(|e| format!("no answer (did the handler panic?): {e}"))?;
                let status = res.status();
                let content_type =
                    res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let text = res.text().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, content_type, text))
            });
            let (status, content_type, text) = answer.map_err(TestCaseError::fail)?;
            let at = format!("{method} {path} {headers:?}");
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            // JSON, a page, or an export of the audit (the portal's CSV and JSON Lines).
            prop_assert!(
                ["application/json", "text/html", "text/csv", "application/jsonl"].contains(&essence),
                "{at}: {status} {content_type}"
            );
            if essence == "application/json" {
                let value: Value =
                    serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{at}: {e}: {text}")))?;
                let invocation = ["/expiry", "/deliver", "/governance"].iter().any(|p| path.starts_with(p));
                if !status.is_success() && !invocation {
                    prop_assert!(
                        value["error"]["code"].is_string() && value["error"]["message"].is_string(),
                        "{at}: {text}"
                    );
                }
            }
            // The one designed 5xx: a queue message that is not Elevate's, which the host retries
            // and then moves to the poison queue.
            let poison = path == "/expiry"
                && status == StatusCode::INTERNAL_SERVER_ERROR
                && text.contains("not an expiry message");
            prop_assert!(!status.is_server_error() || poison, "{at}: {status} {text}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn confirmation_links_of_any_shape_are_refused_as_invalid_before_anything_else() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app());
    let links = prop_oneof![garbage(), "[A-Za-z0-9_-]{1,80}\\.[A-Za-z0-9_-]{43}", "[A-Za-z0-9_.-]{0,120}"];
    TestRunner::new(config(64))
        .run(&links, |link| {
            let path = format!("/api/confirmations/{}", urlencode(&link));
            let (status, body) = runtime.block_on(app.send(reqwest::Method::GET, None, &path, None));
            prop_assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
                "{link:?}: {status} {body}"
            );
            if status == StatusCode::BAD_REQUEST {
                prop_assert_eq!(body["error"]["code"].as_str(), Some("InvalidConfirmationLink"), "{}", body);
            }
            Ok(())
        })
        .unwrap();
}
