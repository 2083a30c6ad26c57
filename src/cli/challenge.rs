//! What to do after a 401: reads the `WWW-Authenticate` challenge (RFC 6750, with Entra's
//! `insufficient_claims` and RFC 9470's `insufficient_user_authentication`) and writes the exact
//! command that signs in again: `az login ... --claims-challenge ...`, or for a token of the local
//! dev issuer, `elevate token ... --mfa --acrs ...`.
//!
//! Must never decide anything from a token's claims: they are read unverified, for hints only.

use base64::Engine as _;

use super::token::{SignInSettings, TokenClaims, az_login, scope_of, shell_word};

/// A Bearer challenge's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `invalid_token`, `insufficient_claims`, `insufficient_user_authentication`, ...
    pub error: Option<String>,
    /// Base64 of the claims request, with `insufficient_claims`.
    pub claims: Option<String>,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value; `None` if it is not a Bearer challenge.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut challenge = Challenge::default();
        for (name, value) in auth_params(rest) {
            match name.to_ascii_lowercase().as_str() {
                "error" => challenge.error = Some(value),
                "claims" => challenge.claims = Some(value),
                _ => {}
            }
        }
        Some(challenge)
    }

    /// The authentication contexts the claims request asks for (`acrs` `value` or `values`).
    pub fn auth_contexts(&self) -> Vec<String> {
        let Some(raw) = self.claims.as_deref() else {
            return Vec::new();
        };
        let raw = raw.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')));
        // Entra's challenges are base64, but a raw JSON claims request is read as well.
        let json: Option<serde_json::Value> = match decoded {
            Ok(bytes) => serde_json::from_slice(&bytes).ok(),
            Err(_) => serde_json::from_str(raw).ok(),
        };
        let Some(acrs) = json.as_ref().and_then(|j| j.get("access_token")).and_then(|t| t.get("acrs")) else {
            return Vec::new();
        };
        let mut contexts: Vec<String> = Vec::new();
        if let Some(v) = acrs.get("value").and_then(serde_json::Value::as_str) {
            contexts.push(v.to_owned());
        }
        if let Some(values) = acrs.get("values").and_then(serde_json::Value::as_array) {
            contexts.extend(values.iter().filter_map(serde_json::Value::as_str).map(str::to_owned));
        }
        contexts.retain(|c| crate::domain::ids::AuthContextId::parse(c).is_ok());
        contexts
    }
}

/// `name=value` pairs, values a token or a quoted string (with `\` escapes).
fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(c) = chars.peek().copied().filter(|c| *c != '=' && *c != ',' && !c.is_whitespace()) {
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            return params;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            // Another scheme begins (or a token68): this challenge's parameters ended.
            return params;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
                chars.next();
            }
        }
        params.push((name, value));
    }
}

/// What the caller lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lack<'a> {
    /// A claims challenge (an authentication context): base64 claims, and the contexts in it.
    Claims { claims: &'a str },
    /// Multi-factor authentication, without a claims request to ask for it by.
    Mfa,
    /// Any token Elevate accepts (none was sent, or it was refused or has expired).
    Token,
}

impl<'a> Lack<'a> {
    /// What a 401's challenge says is missing.
    pub fn of(challenge: Option<&'a Challenge>) -> Self {
        match challenge {
            Some(Challenge { claims: Some(claims), .. }) => Lack::Claims { claims },
            Some(Challenge { error: Some(e), .. }) if e == "insufficient_user_authentication" => Lack::Mfa,
            _ => Lack::Token,
        }
    }
}

/// The lines that tell how to sign in again: the command first, in the form the token came
/// from (the dev issuer's `elevate token`, else the Azure CLI).
pub fn sign_in_hint(lack: Lack<'_>, settings: &SignInSettings, token: Option<&TokenClaims>) -> String {
    if let Some(claims) = token.filter(|t| t.issued_by_dev_issuer()) {
        return dev_hint(lack, claims);
    }
    let tenant = settings.tenant.clone().or_else(|| token.and_then(|t| t.tid.clone()));
    let scope = settings.scope().or_else(|| token.and_then(TokenClaims::audience).map(scope_of));
    let (why, claims) = match lack {
        Lack::Claims { claims } => {
            ("sign in again with the claims Elevate asks for, then repeat the command:", Some(claims))
        }
        Lack::Mfa => ("sign in again with multi-factor authentication, then repeat the command:", None),
        Lack::Token => ("sign in again, then repeat the command:", None),
    };
    let mut command = az_login(tenant.as_deref(), scope.as_deref(), claims);
    if scope.is_none() {
        command.push_str(" (add --scope <Elevate's App ID URI>/.default, or set ELEVATE_AUDIENCE)");
    }
    let mut hint = format!("{why}\n{command}");
    if settings.token.is_some() {
        hint.push_str(
            "\nthe token came from --token or ELEVATE_TOKEN: pass a new one there, or unset it to use the Azure CLI",
        );
    }
    hint
}

/// For the dev issuer: the `elevate token` command minting what is missing, with the roles and
/// groups the refused token carried.
fn dev_hint(lack: Lack<'_>, claims: &TokenClaims) -> String {
    let user = claims.oid.as_deref().map_or_else(|| "<your object id>".to_owned(), shell_word);
    let mut command = format!("elevate token --user {user} --mfa");
    if let Some(name) = &claims.name {
        command.push_str(&format!(" --name {}", shell_word(name)));
    }
    for role in &claims.roles {
        command.push_str(&format!(" --role {}", shell_word(role)));
    }
    for group in &claims.groups {
        command.push_str(&format!(" --group {}", shell_word(group)));
    }
    let mut contexts = claims.acrs.clone();
    if let Lack::Claims { claims: requested } = lack {
        let challenge = Challenge { error: None, claims: Some(requested.to_owned()) };
        for context in challenge.auth_contexts() {
            if !contexts.contains(&context) {
                contexts.push(context);
            }
        }
    }
    for context in &contexts {
        command.push_str(&format!(" --acrs {}", shell_word(context)));
    }
    format!(
        "mint a dev token that has it, then repeat the command with it in ELEVATE_TOKEN:\nexport ELEVATE_TOKEN=$({command})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c1_claims() -> String {
        base64::engine::general_purpose::STANDARD.encode(r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#)
    }

    #[test]
    fn elevates_own_claims_challenge_is_read() {
        let header = crate::http::error::claims_challenge("c1");
        let challenge = Challenge::parse(&header).unwrap();
        assert_eq!(challenge.error.as_deref(), Some("insufficient_claims"));
        assert_eq!(challenge.claims, Some(c1_claims()));
        assert_eq!(challenge.auth_contexts(), vec!["c1"]);
        assert_eq!(Lack::of(Some(&challenge)), Lack::Claims { claims: &c1_claims() });
    }

    #[test]
    fn quoted_values_commas_and_escapes_are_read() {
        let c =
            Challenge::parse(r#"bearer realm="a, b", error = "insufficient_user_authentication",x=y, claims="q\"z""#)
                .unwrap();
        assert_eq!(c.error.as_deref(), Some("insufficient_user_authentication"));
        assert_eq!(c.claims.as_deref(), Some("q\"z"));
        assert_eq!(Lack::of(Some(&Challenge { claims: None, ..c })), Lack::Mfa);
        assert_eq!(Challenge::parse(r#"Basic realm="x""#), None);
        assert_eq!(Challenge::parse("Bearer"), Some(Challenge::default()));
        assert_eq!(Lack::of(None), Lack::Token);
    }

    #[test]
    fn an_entra_token_is_told_the_az_login_command_with_tenant_scope_and_claims() {
        let settings = SignInSettings { audience: Some("api://elevate".into()), ..Default::default() };
        let token = TokenClaims { tid: Some("t-1".into()), ..Default::default() };
        let claims = c1_claims();
        let hint = sign_in_hint(Lack::Claims { claims: &claims }, &settings, Some(&token));
        assert_eq!(
            hint,
            format!(
                "sign in again with the claims Elevate asks for, then repeat the command:\n\
                 az login --tenant t-1 --scope api://elevate/.default --claims-challenge {claims}"
            )
        );
        // Without an audience setting, the token's own audience names the scope.
        let token = TokenClaims {
            aud: Some(super::super::token::OneOrMany::One("api://from-token".into())),
            ..Default::default()
        };
        let hint = sign_in_hint(Lack::Mfa, &SignInSettings::default(), Some(&token));
        assert!(hint.ends_with("\naz login --scope api://from-token/.default"), "{hint}");
        let hint = sign_in_hint(Lack::Token, &SignInSettings::default(), None);
        assert!(hint.contains("az login (add --scope"), "{hint}");
    }

    #[test]
    fn a_dev_token_is_told_the_elevate_token_command_keeping_its_roles_and_contexts() {
        let token = TokenClaims {
            iss: Some(crate::adapters::identity::dev::DEV_ISSUER.into()),
            oid: Some("11111111-1111-1111-1111-111111111111".into()),
            roles: vec!["Elevate.Admin".into()],
            acrs: vec!["c2".into()],
            ..Default::default()
        };
        let claims = c1_claims();
        let hint = sign_in_hint(Lack::Claims { claims: &claims }, &SignInSettings::default(), Some(&token));
        assert!(
            hint.ends_with(
                "export ELEVATE_TOKEN=$(elevate token --user 11111111-1111-1111-1111-111111111111 --mfa \
                 --role Elevate.Admin --acrs c2 --acrs c1)"
            ),
            "{hint}"
        );
    }
}
