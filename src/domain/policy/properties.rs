//! Property tests of the policy.

use super::*;
use proptest::prelude::*;

const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";
const PEOPLE: [&str; 3] = [
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "99999999-9999-9999-9999-999999999999",
];

fn policy() -> Policy {
    Policy::from_yaml(
        "p.yaml",
        &format!(
            "version: 1\nrules:\n  - id: a\n    scope: {SUB}\n    roles: [Reader, Contributor]\n    principals: [user:{p0}, group:{p2}]\n    maxDuration: PT2H\n    requireTicket: true\n  - id: b\n    scope: {SUB}/resourceGroups/rg\n    roles: [Owner]\n    principals: [user:{p1}]\n    requireMfa: false\n    requireJustification: false\n    expiresAt: 2026-11-25T13:00:00Z\n  - id: c\n    scope: {SUB}/resourceGroups/rg\n    roles: [Contributor]\n    principals: [user:{p0}]\n    authContext: c2\n",
            p0 = PEOPLE[0],
            p1 = PEOPLE[1],
            p2 = PEOPLE[2]
        ),
    )
    .unwrap()
}

fn draft() -> impl Strategy<Value = (ActivationDraft, Subject, i64)> {
    let who = 0usize..2;
    let group = any::<bool>();
    let role = prop::sample::select(vec!["Reader", "Contributor", "Owner"]);
    let scope = prop::sample::select(vec![
        SUB.to_owned(),
        format!("{SUB}/resourceGroups/rg"),
        format!("{SUB}/resourceGroups/RG/providers/Microsoft.Web/sites/x"),
        "/subscriptions/00000000-0000-0000-0000-000000000002".to_owned(),
    ]);
    let minutes = prop::option::of(1i64..200);
    let flags = (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), prop::option::of(0i64..120));
    (who, group, role, scope, minutes, flags, -30i64..120).prop_map(
        |(who, group, role, scope, minutes, (just, ticket, mfa, acrs, start), now_offset)| {
            let principal = PrincipalId::parse(PEOPLE[who]).unwrap();
            let now = "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::minutes(now_offset);
            let d = ActivationDraft {
                principal_id: principal,
                role_definition_id: RoleDefinitionId::parse(role).unwrap(),
                scope: Scope::parse(&scope).unwrap(),
                rule_id: None,
                duration: minutes.map(IsoDuration::from_minutes),
                justification: just.then(|| Justification::parse("why").unwrap()),
                ticket: ticket.then(|| Ticket {
                    system: super::super::ids::TicketSystem::parse("SNOW").unwrap(),
                    number: super::super::ids::TicketNumber::parse("1").unwrap(),
                }),
                start_at: start.map(|m| now + TimeDelta::minutes(m)),
            };
            let s = Subject {
                principal_id: principal,
                groups: if group { vec![PrincipalId::parse(PEOPLE[2]).unwrap()] } else { vec![] },
                mfa,
                auth_contexts: if acrs { vec![AuthContextId::parse("c2").unwrap()] } else { vec![] },
            };
            (d, s, now_offset)
        },
    )
}

proptest! {
    /// Whatever is asked, an authorised request meets every term of the rule it names.
    #[test]
    fn nothing_is_authorised_without_meeting_its_rule((d, s, offset) in draft()) {
        let p = policy();
        let now = "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::minutes(offset);
        if let Ok(ok) = p.authorize_activation(d.clone(), &s, now) {
            let r = ok.request();
            let rule = p.rule(&r.rule_id).unwrap();
            prop_assert!(rule.matching_principal(&s.principal_id, &s.groups).is_some());
            prop_assert!(rule.covers(&r.role_definition_id, &r.scope));
            prop_assert!(r.duration <= rule.max_duration && r.duration >= MIN_ACTIVATION);
            prop_assert!(!rule.require_justification || r.justification.is_some());
            prop_assert!(!rule.require_ticket || r.ticket.is_some());
            // Each demand holds on its own: a context is no proof of MFA.
            if let Some(c) = &rule.auth_context {
                prop_assert!(s.auth_contexts.contains(c));
            }
            prop_assert!(!rule.require_mfa || s.mfa);
            prop_assert!(!rule.is_expired(now));
            if let Some(end) = rule.expires_at {
                prop_assert!(r.start_at.unwrap_or(now).max(now) + r.duration.as_delta() <= end);
            }
        }
    }

    /// Access that begins is never longer than asked, never past the end of eligibility, and
    /// never shorter than the minimum; a cut is reported exactly when it happened.
    #[test]
    fn access_windows_respect_eligibility(begin in 0i64..7200, asked in 300i64..86_400, ends in prop::option::of(0i64..10_000)) {
        let at = |s: i64| "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(s);
        let eligibility = Eligibility { rule: RuleId::parse("r").unwrap(), ends: ends.map(at) };
        let duration = IsoDuration::parse(&format!("PT{asked}S")).unwrap();
        match eligibility.window(at(begin), duration) {
            Ok(w) => {
                prop_assert!(w.expires_at <= at(begin + asked));
                prop_assert!(w.expires_at - at(begin) >= MIN_ACTIVATION.as_delta());
                if let Some(end) = ends {
                    prop_assert!(w.expires_at <= at(end));
                }
                prop_assert_eq!(w.limit.is_some(), w.expires_at < at(begin + asked));
            }
            Err(e) => prop_assert!(ends.is_some_and(|end| end - begin < MIN_ACTIVATION.seconds()), "{e}"),
        }
    }

    #[test]
    fn loading_arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = Policy::from_yaml("fuzz.yaml", &text);
    }

    /// Documents of the right shape with wrong values reach the validator, not just the YAML
    /// parser: every value a key can carry, well or badly formed.
    #[test]
    fn loading_policy_shaped_documents_never_panics(
        scope in prop_oneof![Just("/subscriptions/00000000-0000-0000-0000-000000000001".to_owned()), "\\PC{0,40}"],
        role in prop_oneof![Just("Reader".to_owned()), "\\PC{0,40}"],
        principal in prop_oneof![Just("user:11111111-1111-1111-1111-111111111111".to_owned()), "\\PC{0,40}"],
        duration in prop_oneof![Just("PT1H".to_owned()), "\\PC{0,12}"],
        min in any::<i64>(),
        context in "\\PC{0,6}",
        expires in prop_oneof![Just("2027-06-30T00:00:00Z".to_owned()), "\\PC{0,25}"],
    ) {
        let doc = serde_json::json!({
            "version": 1,
            "defaults": {"maxDuration": duration, "requireMfa": true},
            "rules": [{
                "id": "r", "scope": scope, "roles": [role], "principals": [principal],
                "maxDuration": duration, "authContext": context, "expiresAt": expires,
                "approval": {"approvers": [principal], "minApprovals": min, "timeout": duration},
            }],
        });
        let _ = Policy::from_yaml("fuzz.yaml", &doc.to_string());
    }
}

/// The JSON Schema published for editors describes exactly the fields the loader accepts.
#[test]
fn the_schema_and_the_loader_agree() {
    let schema: serde_json::Value = serde_json::from_str(include_str!("../../../policy.schema.json")).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v["properties"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let rule = &schema["$defs"]["rule"];
    assert_eq!(
        keys(rule),
        [
            "approval",
            "authContext",
            "description",
            "expiresAt",
            "id",
            "maxDuration",
            "principals",
            "requireJustification",
            "requireMfa",
            "requireTicket",
            "roles",
            "scope"
        ]
    );
    assert_eq!(keys(&rule["properties"]["approval"]), ["approverMfa", "approvers", "minApprovals", "timeout"]);
    assert_eq!(
        keys(&schema["properties"]["defaults"]),
        ["authContext", "maxDuration", "requireJustification", "requireMfa", "requireTicket"]
    );
    // Every field the schema names is one the loader takes: a rule using all of them loads.
    let all = "version: 1\ndefaults: {maxDuration: PT1H, requireMfa: true, requireJustification: true, requireTicket: false, authContext: c1}\nrules:\n  - id: x\n    description: d\n    scope: /subscriptions/00000000-0000-0000-0000-000000000001\n    roles: [Reader]\n    principals: [user:11111111-1111-1111-1111-111111111111]\n    maxDuration: PT1H\n    requireMfa: true\n    requireJustification: true\n    requireTicket: true\n    authContext: c2\n    approval: {approvers: [user:22222222-2222-2222-2222-222222222222], minApprovals: 1, timeout: PT1H, approverMfa: true}\n    expiresAt: 2030-01-01T00:00:00Z\n";
    Policy::from_yaml("all.yaml", all).unwrap();
}

#[test]
fn the_shipped_example_policy_is_valid() {
    let policy = Policy::from_yaml("policy.yaml", include_str!("../../../policy.yaml")).unwrap();
    assert_eq!(policy.rules().len(), 4);
}
