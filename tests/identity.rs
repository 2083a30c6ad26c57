//! Identity against an attacker, in `entra` and `easyauth` modes, with a local stand-in for
//! Entra's issuer (tests/support/fake_entra.rs): every refusal has the right status and code
//! and changes nothing. (Approver rules, CSRF and escaping are in tests/api.rs; they sit behind
//! the same validator.)

use base64::Engine;
use chrono::TimeDelta;
use elevate::adapters::identity::entra::EntraSettings;
use elevate::clock::Clock;
use elevate::config::AuthSetting;
use elevate::domain::ids::{AuthContextId, TenantId};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::fake_entra::{
    CLIENT_ID, FakeEntra, SigningKey, TENANT, hs256_with_public_key, tampered, unsigned, v1_claims, v2_claims,
};
use crate::support::{
    ALICE, BOB, BROKER_APP, BROKER_SP, DANA, SUB1, TestApp, reader_sub1, spawn_app_with_auth, start, test_policy,
};

pub(crate) fn settings(entra: &FakeEntra) -> EntraSettings {
    EntraSettings {
        tenant: TenantId::parse(TENANT).unwrap(),
        audiences: vec![CLIENT_ID.into(), format!("api://{CLIENT_ID}")],
        authority: entra.authority(),
        mfa_auth_context: Some(AuthContextId::parse("c2").unwrap()),
        mfa_max_age: None,
    }
}

async fn entra_app(entra: &FakeEntra) -> TestApp {
    spawn_app_with_auth(&test_policy(), AuthSetting::Entra(settings(entra))).await
}

pub(crate) async fn easyauth_app(entra: &FakeEntra, platform_auth: bool) -> TestApp {
    spawn_app_with_auth(&test_policy(), AuthSetting::EasyAuth { entra: settings(entra), platform_auth }).await
}

pub(crate) fn principal_header(claims: &[(&str, &str)]) -> String {
    let claims: Vec<Value> = claims.iter().map(|(t, v)| json!({"typ": t, "val": v})).collect();
    base64::engine::general_purpose::STANDARD.encode(json!({"auth_typ": "aad", "claims": claims}).to_string())
}

async fn with_principal(app: &TestApp, header: &str, path: &str) -> (StatusCode, Value) {
    let res =
        app.client.get(format!("{}{path}", app.base)).header("X-MS-CLIENT-PRINCIPAL", header).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn v2_and_v1_entra_tokens_are_accepted_with_their_own_evidence() {
    let entra = FakeEntra::start().await;
    let app = entra_app(&entra).await;
    let key = entra.key();

    // v1: App ID URI audience, sts.windows.net issuer, `amr` proves MFA.
    let v1 = key.sign(&v1_claims(ALICE, start()));
    let a = app.activate(&v1, reader_sub1()).await;
    assert_eq!(a["status"], "Active", "{a}");

    // v2: client id audience, no `amr`: MFA is not assumed …
    let mut claims = v2_claims(&entra.v2_issuer(), ALICE, start());
    claims["acrs"] = json!([]);
    let v2 = key.sign(&claims);
    let (status, body) = app.get(&v2, "/api/eligibilities").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rg = json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/other"), "duration": "PT1H"});
    let (status, body) = app.post(&v2, "/api/activations", rg.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "MfaRequired");
    // … the tenant's MFA authentication context proves it.
    claims["acrs"] = json!(["c2"]);
    let stepped = key.sign(&claims);
    assert_eq!(app.activate(&stepped, rg).await["status"], "Active");
}

#[tokio::test]
async fn forged_and_stale_tokens_are_refused_and_change_nothing() {
    let entra = FakeEntra::start().await;
    let app = entra_app(&entra).await;
    let key = entra.key();
    let good = v2_claims(&entra.v2_issuer(), ALICE, start());
    let with = |field: &str, value: Value| {
        let mut c = good.clone();
        c[field] = value;
        c
    };
    let stranger = SigningKey::generate("key-1");
    let before = app.snapshot();
    let cases: Vec<(&str, String)> = vec![
        ("expired", key.sign(&with("exp", json!((start() - TimeDelta::minutes(10)).timestamp())))),
        ("not yet valid", key.sign(&with("nbf", json!((start() + TimeDelta::minutes(10)).timestamp())))),
        ("wrong audience", key.sign(&with("aud", json!("api://someone-else")))),
        ("wrong issuer", key.sign(&with("iss", json!("https://login.microsoftonline.com/evil/v2.0")))),
        ("wrong tenant", key.sign(&with("tid", json!("00000000-0000-0000-0000-00000000beef")))),
        ("no object id", key.sign(&with("oid", Value::Null))),
        ("alg none", unsigned(&good)),
        ("HS256 with the public key", hs256_with_public_key(&key, &good)),
        ("unknown kid", SigningKey::generate("key-unknown").sign(&good)),
        ("right kid, wrong key", stranger.sign(&good)),
        ("tampered payload", tampered(&key.sign(&good), &with("oid", json!(BOB)))),
        ("garbage", "a.b.c".into()),
    ];
    for (what, token) in cases {
        let (status, body) = app.post(&token, "/api/activations", reader_sub1()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], "InvalidToken", "{what}: {body}");
    }
    assert_eq!(app.snapshot(), before);
    // The good token works, so the refusals were the token's fault.
    assert_eq!(app.activate(&key.sign(&good), json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/chat"), "duration": "PT1H", "justification": "INC-7"})).await["status"], "Active");
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_unknown_kids_cannot_hammer_the_directory() {
    let entra = FakeEntra::start().await;
    let app = entra_app(&entra).await;
    let claims = v2_claims(&entra.v2_issuer(), ALICE, start());
    assert_eq!(app.get(&entra.key().sign(&claims), "/api/eligibilities").await.0, StatusCode::OK);
    assert_eq!(entra.key_fetches(), 1);

    // Later, Entra rotates: a token signed with the new key makes Elevate fetch the keys again.
    app.advance(10);
    let rotated = entra.rotate_in(SigningKey::generate("key-2"));
    assert_eq!(app.get(&rotated.sign(&claims), "/api/eligibilities").await.0, StatusCode::OK);
    assert_eq!(entra.key_fetches(), 2);

    // A flood of made-up kids right after: refused, with no fetch (at most one per five minutes).
    let forger = SigningKey::generate("key-forged");
    for _ in 0..5 {
        assert_eq!(app.get(&forger.sign(&claims), "/api/eligibilities").await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(entra.key_fetches(), 2);
    app.advance(6);
    let later = v2_claims(&entra.v2_issuer(), ALICE, app.clock.now());
    assert_eq!(app.get(&forger.sign(&later), "/api/eligibilities").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(entra.key_fetches(), 3);
}

#[tokio::test]
async fn a_forged_client_principal_is_ignored_unless_the_platform_authenticates() {
    let entra = FakeEntra::start().await;
    let admin = principal_header(&[
        ("http://schemas.microsoft.com/identity/claims/objectidentifier", DANA),
        ("http://schemas.microsoft.com/identity/claims/tenantid", TENANT),
        ("name", "Dana"),
        ("roles", "Elevate.Auditor"),
        ("roles", "Elevate.Admin"),
        ("aud", CLIENT_ID),
    ]);
    // Platform authentication off: the header may come from anyone, so it counts for nothing.
    let exposed = easyauth_app(&entra, false).await;
    let (status, body) = with_principal(&exposed, &admin, "/api/audit").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "Unauthenticated");

    // Platform authentication on: App Service set the header, with mapped claim names and
    // repeated roles.
    let app = easyauth_app(&entra, true).await;
    let (status, body) = with_principal(&app, &admin, "/api/audit").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = principal_header(&[("oid", ALICE), ("tid", TENANT), ("preferred_username", "alice@contoso.com")]);
    assert_eq!(with_principal(&app, &user, "/api/audit").await.0, StatusCode::FORBIDDEN);
    let other_tenant =
        principal_header(&[("oid", DANA), ("tid", "00000000-0000-0000-0000-00000000beef"), ("roles", "Elevate.Admin")]);
    let (status, body) = with_principal(&app, &other_tenant, "/api/audit").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "InvalidToken");
    assert_eq!(with_principal(&app, "%%%not base64", "/api/audit").await.0, StatusCode::UNAUTHORIZED);
    // A bearer token still works beside it, validated by Elevate itself.
    let bearer = entra.key().sign(&v2_claims(&entra.v2_issuer(), ALICE, start()));
    assert_eq!(app.get(&bearer, "/api/eligibilities").await.0, StatusCode::OK);
}

#[tokio::test]
async fn brokers_with_entra_app_tokens_act_only_as_allowed() {
    let entra = FakeEntra::start().await;
    let app = entra_app(&entra).await;
    let app_token = |azp: &str, roles: Value| {
        let mut c = v2_claims(&entra.v2_issuer(), BROKER_SP, start());
        for field in ["scp", "name", "acrs"] {
            c.as_object_mut().unwrap().remove(field);
        }
        c["azp"] = json!(azp);
        c["idtyp"] = json!("app");
        c["roles"] = roles;
        entra.key().sign(&c)
    };
    let broker = app_token(BROKER_APP, json!(["Elevate.Broker"]));
    let chat = json!({"principalId": ALICE, "roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/chat"), "justification": "from Teams"});
    assert_eq!(app.activate(&broker, chat.clone()).await["principalId"], ALICE);

    let before = app.snapshot();
    let unlisted = app_token("eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee", json!(["Elevate.Broker"]));
    let (status, body) = app.post(&unlisted, "/api/activations", chat.clone()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("BrokerNotAllowed")));
    let role_less = app_token(BROKER_APP, json!([]));
    assert_eq!(app.post(&role_less, "/api/activations", chat).await.0, StatusCode::FORBIDDEN);
    // A rule that needs MFA is never met by a brokered request: it waits for the user.
    let (status, body) = app
        .post(&broker, "/api/activations", json!({"principalId": ALICE, "roleDefinitionId": "Reader", "scope": SUB1}))
        .await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::ACCEPTED, Some("ConfirmationRequired")));
    // Brokers are not administrators.
    assert_eq!(app.get(&broker, "/api/audit").await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&broker, "/api/activations?mine=false").await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn stale_mfa_does_not_count_when_freshness_is_required() {
    let entra = FakeEntra::start().await;
    let fresh_only = EntraSettings { mfa_max_age: Some(TimeDelta::minutes(30)), ..settings(&entra) };
    let app = spawn_app_with_auth(&test_policy(), AuthSetting::Entra(fresh_only)).await;
    let key = entra.key();
    let rg = |name: &str| json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/{name}"), "duration": "PT1H"});
    let with_auth_time = |minutes_ago: Option<i64>| {
        let mut c = v1_claims(ALICE, start());
        if let Some(m) = minutes_ago {
            c["auth_time"] = json!((start() - TimeDelta::minutes(m)).timestamp());
        }
        key.sign(&c)
    };
    assert_eq!(app.activate(&with_auth_time(Some(5)), rg("a")).await["status"], "Active");
    for (what, token) in
        [("signed in two hours ago", with_auth_time(Some(120))), ("no auth_time", with_auth_time(None))]
    {
        let (status, body) = app.post(&token, "/api/activations", rg("b")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("MfaRequired")),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn easy_auth_sessions_obey_the_same_freshness() {
    let entra = FakeEntra::start().await;
    let fresh_only = EntraSettings { mfa_max_age: Some(TimeDelta::minutes(30)), ..settings(&entra) };
    let app =
        spawn_app_with_auth(&test_policy(), AuthSetting::EasyAuth { entra: fresh_only, platform_auth: true }).await;
    let signed_in = |minutes_ago: i64| {
        let at = (start() - TimeDelta::minutes(minutes_ago)).timestamp().to_string();
        principal_header(&[
            ("oid", ALICE),
            ("tid", TENANT),
            ("name", "Alice"),
            ("http://schemas.microsoft.com/claims/authnmethodsreferences", "mfa"),
            ("auth_time", &at),
        ])
    };
    // An Easy Auth session is a browser session: its changes carry the CSRF token, which a
    // same-origin read hands out in `X-CSRF-Token`.
    let eligibilities = app
        .client
        .get(format!("{}/api/eligibilities", app.base))
        .header("X-MS-CLIENT-PRINCIPAL", signed_in(5))
        .send()
        .await
        .unwrap();
    let csrf = eligibilities.headers()["x-csrf-token"].to_str().unwrap().to_owned();
    let post = |header: String, rg: &str| {
        let body =
            json!({"roleDefinitionId": "Reader", "scope": format!("{SUB1}/resourceGroups/{rg}"), "duration": "PT1H"});
        app.client
            .post(format!("{}/api/activations", app.base))
            .header("X-MS-CLIENT-PRINCIPAL", header)
            .header("X-CSRF-Token", &csrf)
            .json(&body)
            .send()
    };
    assert_eq!(post(signed_in(5), "a").await.unwrap().status(), StatusCode::CREATED);
    let stale = post(signed_in(120), "b").await.unwrap();
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MfaRequired");
}
