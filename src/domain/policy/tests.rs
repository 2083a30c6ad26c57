//! Unit tests of the policy: evaluation and loading.

use super::*;

pub(crate) const ALICE: &str = "11111111-1111-1111-1111-111111111111";
const BOB: &str = "22222222-2222-2222-2222-222222222222";
const OPS: &str = "99999999-9999-9999-9999-999999999999";
const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

fn policy() -> Policy {
    let text = format!(
        r#"
version: 1
defaults:
  maxDuration: PT8H
  requireMfa: true
rules:
  - id: sub-reader
    scope: {SUB}
    roles: [Reader]
    principals: [user:{ALICE}, group:{OPS}]
    requireJustification: false
  - id: rg-reader
    scope: {SUB}/resourceGroups/app
    roles: [acdd72a7-3385-48ef-bd42-f606fba81ae7]
    principals: [user:{ALICE}]
    maxDuration: PT1H
  - id: old
    scope: {SUB}
    roles: [Contributor]
    principals: [user:{ALICE}]
    expiresAt: 2020-01-01T00:00:00Z
  - id: prod
    scope: {SUB}
    roles: [Owner]
    principals: [user:{ALICE}]
    requireTicket: true
    authContext: c1
    approval:
      approvers: [user:{BOB}]
      timeout: PT2H
"#
    );
    Policy::from_yaml("test.yaml", &text).unwrap()
}

fn now() -> DateTime<Utc> {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

fn subject(mfa: bool) -> Subject {
    Subject { principal_id: PrincipalId::parse(ALICE).unwrap(), groups: vec![], mfa, auth_contexts: vec![] }
}

fn draft(role: &str, scope: &str) -> ActivationDraft {
    ActivationDraft {
        principal_id: PrincipalId::parse(ALICE).unwrap(),
        role_definition_id: RoleDefinitionId::parse(role).unwrap(),
        scope: Scope::parse(scope).unwrap(),
        rule_id: None,
        duration: None,
        justification: Some(Justification::parse("INC-1").unwrap()),
        ticket: None,
        start_at: None,
    }
}

#[test]
fn defaults_are_inherited_and_overridable() {
    let p = policy();
    let sub = p.rule(&RuleId::parse("sub-reader").unwrap()).unwrap();
    assert_eq!(sub.max_duration, IsoDuration::from_hours(8));
    assert!(sub.require_mfa);
    assert!(!sub.require_justification);
    let rg = p.rule(&RuleId::parse("rg-reader").unwrap()).unwrap();
    assert_eq!(rg.max_duration, IsoDuration::from_hours(1));
    assert!(rg.require_justification);
}

#[test]
fn managed_scopes_cover_every_rule_once() {
    // Every rule of the test policy sits at or below the one subscription.
    let scopes: Vec<String> = policy().managed_scopes().iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(scopes, [SUB]);
    let text = format!(
        "version: 1\nrules:\n  - {{id: a, scope: '{SUB}/resourceGroups/app', roles: [Reader], principals: ['user:{ALICE}']}}\n  - {{id: b, scope: '/subscriptions/00000000-0000-0000-0000-000000000002', roles: [Reader], principals: ['user:{ALICE}']}}\n  - {{id: c, scope: '{SUB}', roles: [Reader], principals: ['user:{ALICE}']}}\n"
    );
    let p = Policy::from_yaml("t.yaml", &text).unwrap();
    let scopes: Vec<String> = p.managed_scopes().iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(scopes, ["/subscriptions/00000000-0000-0000-0000-000000000002", SUB]);
}

#[test]
fn the_most_specific_rule_wins_unless_one_is_named() {
    let p = policy();
    let req =
        p.authorize_activation(draft("Reader", &format!("{SUB}/resourceGroups/APP")), &subject(true), now()).unwrap();
    assert_eq!(req.request().rule_id.as_str(), "rg-reader");
    let mut named = draft("Reader", &format!("{SUB}/resourceGroups/app"));
    named.rule_id = Some(RuleId::parse("sub-reader").unwrap());
    let req = p.authorize_activation(named, &subject(true), now()).unwrap();
    assert_eq!(req.request().rule_id.as_str(), "sub-reader");
}

#[test]
fn deny_by_default_with_a_reason() {
    let p = policy();
    let bob = Subject { principal_id: PrincipalId::parse(BOB).unwrap(), ..subject(true) };
    let mut d = draft("Reader", SUB);
    d.principal_id = bob.principal_id;
    assert!(matches!(p.authorize_activation(d, &bob, now()), Err(Refusal::Denied(Deny::NotEligible { .. }))));
    assert!(matches!(
        p.authorize_activation(
            draft("Reader", "/subscriptions/00000000-0000-0000-0000-000000000002"),
            &subject(true),
            now()
        ),
        Err(Refusal::Denied(Deny::NotEligible { .. }))
    ));
    assert!(matches!(
        p.authorize_activation(draft("Contributor", SUB), &subject(true), now()),
        Err(Refusal::Denied(Deny::EligibilityExpired { .. }))
    ));
    assert!(matches!(
        p.authorize_activation(draft("Reader", SUB), &subject(false), now()),
        Err(Refusal::Violation(Violation::MfaRequired(_)))
    ));
}

#[test]
fn group_membership_makes_eligible() {
    let p = policy();
    let carol = PrincipalId::parse("33333333-3333-3333-3333-333333333333").unwrap();
    let s = Subject {
        principal_id: carol,
        groups: vec![PrincipalId::parse(OPS).unwrap()],
        mfa: true,
        auth_contexts: vec![],
    };
    let mut d = draft("Reader", SUB);
    d.principal_id = carol;
    let req = p.authorize_activation(d, &s, now()).unwrap();
    assert_eq!(req.request().eligible_via.to_string(), format!("group:{OPS}"));
}

#[test]
fn auth_context_and_ticket_are_enforced() {
    let p = policy();
    assert!(matches!(
        p.authorize_activation(draft("Owner", SUB), &subject(true), now()),
        Err(Refusal::Violation(Violation::AuthContextRequired { .. }))
    ));
    let with_context = Subject { auth_contexts: vec![AuthContextId::parse("c1").unwrap()], ..subject(true) };
    assert!(matches!(
        p.authorize_activation(draft("Owner", SUB), &with_context, now()),
        Err(Refusal::Violation(Violation::TicketRequired(_)))
    ));
}

/// Security review, issue 11, item 4: `requireMfa` used to be dropped when the rule also
/// named an authentication context.
#[test]
fn an_authentication_context_does_not_stand_in_for_required_mfa() {
    let text = format!(
        "version: 1\ndefaults: {{requireMfa: true}}\nrules:\n  - {{id: both, scope: '{SUB}', roles: [Reader], principals: ['user:{ALICE}'], authContext: c1}}\n  - {{id: context-only, scope: '{SUB}', roles: [Contributor], principals: ['user:{ALICE}'], authContext: c1, requireMfa: false}}\n"
    );
    let p = Policy::from_yaml("t.yaml", &text).unwrap();
    let evidence = |mfa: bool, context: bool| Subject {
        auth_contexts: if context { vec![AuthContextId::parse("c1").unwrap()] } else { vec![] },
        ..subject(mfa)
    };
    let outcome = |role: &str, s: &Subject| match p.authorize_activation(draft(role, SUB), s, now()) {
        Ok(_) => "ok",
        Err(Refusal::Violation(Violation::AuthContextRequired { .. })) => "AuthContextRequired",
        Err(Refusal::Violation(Violation::MfaRequired(_))) => "MfaRequired",
        Err(other) => panic!("{other}"),
    };
    // (mfa, context) → outcome; the context is asked for first.
    for (mfa, context, both, context_only) in [
        (false, false, "AuthContextRequired", "AuthContextRequired"),
        (true, false, "AuthContextRequired", "AuthContextRequired"),
        (false, true, "MfaRequired", "ok"),
        (true, true, "ok", "ok"),
    ] {
        let s = evidence(mfa, context);
        assert_eq!(
            (outcome("Reader", &s), outcome("Contributor", &s)),
            (both, context_only),
            "mfa {mfa}, context {context}"
        );
    }
    // Extensions are held to the same evidence.
    let request = p.authorize_activation(draft("Reader", SUB), &evidence(true, true), now()).unwrap();
    let extension = |s: &Subject| {
        let draft = ExtensionDraft {
            request: request.request(),
            activated_at: now(),
            current_expiry: now() + TimeDelta::hours(1),
            additional: IsoDuration::from_hours(1),
            justification: Some(Justification::parse("more").unwrap()),
        };
        p.authorize_extension(draft, s, now())
    };
    assert!(matches!(extension(&evidence(false, true)), Err(Refusal::Violation(Violation::MfaRequired(_)))));
    assert!(extension(&evidence(true, true)).is_ok());
}

fn eligibility(ends: Option<&str>) -> Eligibility {
    Eligibility { rule: RuleId::parse("r").unwrap(), ends: ends.map(|at| at.parse().unwrap()) }
}

#[test]
fn access_is_cut_at_the_end_of_eligibility_and_refused_under_the_minimum() {
    let minutes = |m: i64| now() + TimeDelta::minutes(m);
    let open_ended = eligibility(None);
    assert_eq!(
        open_ended.window(now(), IsoDuration::from_hours(1)).unwrap(),
        AccessWindow { expires_at: minutes(60), limit: None }
    );
    let ending = eligibility(Some("2026-11-25T12:15:00Z"));
    assert_eq!(
        ending.window(now(), IsoDuration::from_minutes(15)).unwrap(),
        AccessWindow { expires_at: minutes(15), limit: None },
        "ending exactly at the end is not a cut"
    );
    let cut = ending.window(minutes(3), IsoDuration::parse("PT14M50S").unwrap()).unwrap();
    let limit = cut.limit.unwrap();
    assert_eq!((cut.expires_at, limit.requested_expiry), (minutes(15), minutes(17) + TimeDelta::seconds(50)));
    assert_eq!(limit.shortened_by(), TimeDelta::seconds(170));
    assert_eq!(
        limit.describe(&RuleId::parse("r").unwrap()),
        "expiry limited by eligibility: rule `r` ends at 2026-11-25T12:15:00Z, so access ends then, PT2M50S before the requested 2026-11-25T12:17:50Z"
    );
    assert!(ending.window(minutes(10), IsoDuration::from_hours(1)).is_ok(), "five minutes left is enough");
    let refused = ending.window(minutes(10) + TimeDelta::seconds(1), IsoDuration::from_hours(1)).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "eligibility under rule `r` ends at 2026-11-25T12:15:00Z, less than the minimum `PT5M` after access would begin at 2026-11-25T12:10:01Z"
    );
    assert!(ending.window(minutes(20), IsoDuration::from_hours(1)).is_err(), "after the end");
}

#[test]
fn a_start_is_authorised_only_while_the_rule_still_applies() {
    let p = policy();
    let request = p.authorize_activation(draft("Reader", SUB), &subject(true), now()).unwrap().into_request();
    assert_eq!(
        p.authorize_start(&request, now()).unwrap().window(),
        AccessWindow { expires_at: now() + TimeDelta::hours(8), limit: None }
    );
    let moved = ActivationRequest { rule_id: RuleId::parse("gone").unwrap(), ..request.clone() };
    assert!(matches!(p.authorize_start(&moved, now()), Err(StartRefusal::NoLongerEligible(Deny::RuleNotFound(_)))));
    let via_group =
        ActivationRequest { eligible_via: PrincipalRef::parse(&format!("group:{BOB}")).unwrap(), ..request.clone() };
    let refused = p.authorize_start(&via_group, now()).unwrap_err();
    assert_eq!(refused.code(), "NoLongerEligible");
    assert!(matches!(refused, StartRefusal::NoLongerEligible(Deny::RuleDoesNotApply { .. })));
}

#[test]
fn problems_name_file_rule_and_field() {
    let text = format!(
        "version: 1\nrules:\n  - id: a\n    scope: /nope\n    roles: [Superuser]\n    principals: [user:{ALICE}]\n    maxDuration: PT48H\n  - id: a\n    scope: {SUB}\n    roles: [Reader]\n    principals: []\n    approval:\n      approvers: [user:{BOB}]\n      minApprovals: 2\n"
    );
    let err = Policy::from_yaml("p.yaml", &text).unwrap_err();
    let all = err.to_string();
    for needle in [
        "p.yaml: rules[0] (a).scope:",
        "p.yaml: rules[0] (a).roles[0]: `Superuser`",
        "p.yaml: rules[0] (a).maxDuration: `P2D` must lie between `PT5M` and `P1D`",
        "p.yaml: rules[1].id: rule id `a` is used more than once",
        "p.yaml: rules[1] (a).principals: must name at least one principal",
        "p.yaml: rules[1] (a).approval.minApprovals: needs 2 approvals but only 1 approver(s) are listed",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn structural_problems_carry_a_path_and_line() {
    let err = Policy::from_yaml(
        "p.yaml",
        "version: 1\nrules:\n  - id: a\n    scope: x\n    roles: []\n    principals: []\n    maxDuraton: PT1H\n",
    )
    .unwrap_err();
    let all = err.to_string();
    assert!(all.contains("rules[0]"), "{all}");
    assert!(all.contains("maxDuraton"), "{all}");
    assert!(all.contains("line"), "{all}");
}

const AU: &str = "5b51c641-0711-41d2-ac58-d90390d94a00";
const GROUP: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";

fn graph_policy() -> Policy {
    let text = format!(
        "version: 1\ndefaults:\n  maxDuration: PT1H\nrules:\n  - id: ga\n    scope: directory:/\n    roles: [Global Administrator, User Administrator]\n    principals: [user:{ALICE}]\n  - id: au-users\n    scope: directory:/administrativeUnits/{AU}\n    roles: [fe930be7-5e62-47db-91af-98c3a49a38b1]\n    principals: [user:{ALICE}]\n  - id: group-owner\n    scope: group:{GROUP}\n    roles: [owner, Member]\n    principals: [user:{ALICE}]\n"
    );
    Policy::from_yaml("graph.yaml", &text).unwrap()
}

fn graph_draft(kind_scope: &str, role: &str) -> ActivationDraft {
    let scope = Scope::parse(kind_scope).unwrap();
    ActivationDraft { role_definition_id: scope.kind().parse_role(role).unwrap(), scope, ..draft("Reader", SUB) }
}

#[test]
fn directory_roles_and_groups_are_rules_like_any_other() {
    let p = graph_policy();
    let ga = p.authorize_activation(graph_draft("directory:/", "global administrator"), &subject(true), now()).unwrap();
    assert_eq!(ga.request().rule_id.as_str(), "ga");
    assert_eq!(ga.request().role_definition_id.to_string(), "62e90394-69f5-4237-9190-012177145e10");
    assert_eq!(ga.request().role_definition_id.built_in_name(), Some("Global Administrator"));
    // Narrowed to an administrative unit: the AU rule is the most specific for User Administrator.
    let au = format!("directory:/administrativeUnits/{AU}");
    let ua = p.authorize_activation(graph_draft(&au, "User Administrator"), &subject(true), now()).unwrap();
    assert_eq!(ua.request().rule_id.as_str(), "au-users");
    // Global Administrator cannot be held at an administrative unit: refused, with the reason.
    let refused = p.authorize_activation(graph_draft(&au, "Global Administrator"), &subject(true), now());
    assert!(matches!(refused, Err(Refusal::Violation(Violation::NotAssignableAtScope { .. }))), "{refused:?}");
    let owner = p.authorize_activation(graph_draft(&format!("group:{GROUP}"), "OWNER"), &subject(true), now()).unwrap();
    assert_eq!(owner.request().role_definition_id.group_role(), Some("owner"));
    // Kinds never mix: a group rule grants nothing at a subscription, nor the reverse.
    let azure_owner = p.authorize_activation(draft("Owner", SUB), &subject(true), now());
    assert!(matches!(azure_owner, Err(Refusal::Denied(Deny::NotEligible { .. }))), "{azure_owner:?}");
    assert!(ScopeKind::Azure.parse_role("owner").unwrap().group_role().is_none(), "Azure's Owner, not a group's");
    assert!(ScopeKind::Group.parse_role("Reader").is_err());
    assert!(ScopeKind::Directory.parse_role("member").is_err());
    assert!(
        ScopeKind::Azure.parse_role("e1e7a7e0-0000-4000-8000-6d656d626572").is_err(),
        "the group ids stay Elevate's"
    );
    assert_eq!(p.managed_scopes().len(), 2, "directory:/ contains the AU rule's scope; the group stands alone");
}

#[test]
fn graph_rule_problems_are_precise() {
    let text = format!(
        "version: 1\nrules:\n  - id: a\n    scope: directory:/administrativeUnits/{AU}\n    roles: [Global Administrator, Tenant Overlord]\n    principals: [user:{ALICE}]\n  - id: b\n    scope: group:{GROUP}\n    roles: [Owner, reader]\n    principals: [user:{ALICE}]\n  - id: c\n    scope: directory:/users\n    roles: [Global Administrator]\n    principals: [user:{ALICE}]\n"
    );
    let all = Policy::from_yaml("g.yaml", &text).unwrap_err().to_string();
    for needle in [
        "g.yaml: rules[0] (a).roles[0]: `Global Administrator` cannot be assigned at an administrative unit",
        "g.yaml: rules[0] (a).roles[1]: `Tenant Overlord`",
        "g.yaml: rules[1] (b).roles[1]: `reader`",
        "g.yaml: rules[2] (c).scope:",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // `Owner` of a group is its owner (names are read case-insensitively in the scope's kind).
    assert!(!all.contains("rules[1] (b).roles[0]"), "{all}");
}

#[test]
fn composition_hazards_are_warned_about() {
    let text = format!(
        "version: 1\nrules:\n  - id: join-ops\n    scope: group:{OPS}\n    roles: [member, owner]\n    principals: [user:{ALICE}]\n  - id: ops-reader\n    scope: {SUB}\n    roles: [Reader]\n    principals: [group:{OPS}]\n"
    );
    let warnings = Policy::from_yaml("w.yaml", &text).unwrap().warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("ownership") && warnings[0].contains("standing members"), "{warnings:?}");
    assert!(warnings[1].contains("`ops-reader`"), "{warnings:?}");
    assert!(policy().warnings().is_empty());
}
