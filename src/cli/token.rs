//! Where the client's bearer token comes from: `--token` or `ELEVATE_TOKEN` first (dev and CI),
//! else the Azure CLI sign-in, through azure_identity's developer credential, for the API's
//! audience (`--audience` or `ELEVATE_AUDIENCE`, scope `<audience>/.default`).
//!
//! Must never print, log or put into an error a token: `BearerToken` has no `Display`, and its
//! `Debug` shows nothing of it.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_identity::{AzureCliCredential, AzureCliCredentialOptions, DeveloperToolsCredential};
use base64::Engine as _;
use serde::Deserialize;

use super::error::{CliError, one_line};

/// How long the Azure CLI may take to hand out a token.
const CREDENTIAL_TIMEOUT: Duration = Duration::from_secs(60);

/// A bearer token for Elevate's API.
pub struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// A token as given: surrounding whitespace dropped (a `$(...)` with a newline), then one
    /// run of visible ASCII, which is all a JWT can be and all an HTTP header may carry.
    pub fn parse(raw: &str, from: &str) -> Result<Self, CliError> {
        let token = raw.trim();
        if token.is_empty() {
            return Err(CliError::SignIn {
                code: "NoCredentials".into(),
                message: format!("{from} is empty"),
                hint: None,
            });
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(CliError::usage(format!("{from} is not a token: it has spaces or non-ASCII characters")));
        }
        Ok(Self(token.to_owned()))
    }

    /// The secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the token says about its holder, read without checking its signature: for sign-in
    /// hints only, never to decide anything.
    pub fn peek(&self) -> Option<TokenClaims> {
        let payload = self.0.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// A string or a list of strings (`aud` may be either).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn first(&self) -> Option<&str> {
        match self {
            OneOrMany::One(s) => Some(s),
            OneOrMany::Many(v) => v.first().map(String::as_str),
        }
    }
}

/// The claims a sign-in hint uses. Unverified (see `BearerToken::peek`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenClaims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub aud: Option<OneOrMany>,
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub oid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub acrs: Vec<String>,
}

impl TokenClaims {
    /// Whether the local dev issuer (`elevate token`) signed it.
    pub fn issued_by_dev_issuer(&self) -> bool {
        self.iss.as_deref() == Some(crate::adapters::identity::dev::DEV_ISSUER)
    }

    /// The audience the token was issued for (its first, if several).
    pub fn audience(&self) -> Option<&str> {
        self.aud.as_ref().and_then(OneOrMany::first)
    }
}

/// Where the token is to come from, read from flags and environment.
#[derive(Debug, Default, Clone)]
pub struct SignInSettings {
    /// `--token`, else `ELEVATE_TOKEN`, with the name of where it came from.
    pub token: Option<(String, &'static str)>,
    /// `--audience` or `ELEVATE_AUDIENCE`: the API's App ID URI or client id.
    pub audience: Option<String>,
    /// `--tenant` or `ELEVATE_TENANT_ID`.
    pub tenant: Option<String>,
}

impl SignInSettings {
    /// The scope to ask Entra for: `<audience>/.default`.
    pub fn scope(&self) -> Option<String> {
        self.audience.as_deref().map(scope_of)
    }
}

/// `api://x` → `api://x/.default`; a scope already ending so is kept.
pub fn scope_of(audience: &str) -> String {
    let audience = audience.trim().trim_end_matches('/');
    if audience.ends_with("/.default") { audience.to_owned() } else { format!("{audience}/.default") }
}

/// The token: the one given, else one from the Azure CLI for the audience.
pub async fn acquire(settings: &SignInSettings) -> Result<BearerToken, CliError> {
    if let Some((raw, from)) = &settings.token {
        return BearerToken::parse(raw, from);
    }
    let Some(scope) = settings.scope() else {
        return Err(CliError::SignIn {
            code: "NoCredentials".into(),
            message: "no token: pass --token or set ELEVATE_TOKEN, or name Elevate's API with --audience or \
                      ELEVATE_AUDIENCE (api://<client id>) to use your Azure CLI sign-in"
                .into(),
            hint: None,
        });
    };
    if scope.chars().any(|c| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'))) {
        return Err(CliError::usage(format!(
            "--audience `{}` is not an App ID URI or client id",
            one_line(settings.audience.as_deref().unwrap_or_default())
        )));
    }
    let credential = credential(settings.tenant.as_deref())?;
    let failed = |message: String| CliError::SignIn {
        code: "AzureCliSignInNeeded".into(),
        message,
        hint: Some(format!(
            "sign in with the Azure CLI, then run this again:\n{}",
            az_login(settings.tenant.as_deref(), Some(&scope), None)
        )),
    };
    let answer = tokio::time::timeout(CREDENTIAL_TIMEOUT, credential.get_token(&[scope.as_str()], None)).await;
    match answer {
        Ok(Ok(token)) => BearerToken::parse(token.token.secret(), "the Azure CLI's token"),
        Ok(Err(e)) => {
            Err(failed(format!("the Azure CLI gave no token for `{scope}`: {}", shorten(&one_line(&e.to_string())))))
        }
        Err(_) => Err(failed(format!("the Azure CLI gave no token within {}s", CREDENTIAL_TIMEOUT.as_secs()))),
    }
}

fn credential(tenant: Option<&str>) -> Result<Arc<dyn TokenCredential>, CliError> {
    let setup =
        |e: azure_core::Error| CliError::usage(format!("cannot use the Azure CLI: {}", one_line(&e.to_string())));
    match tenant {
        Some(tenant) => {
            let options = AzureCliCredentialOptions { tenant_id: Some(tenant.to_owned()), ..Default::default() };
            Ok(AzureCliCredential::new(Some(options)).map_err(setup)?)
        }
        None => Ok(DeveloperToolsCredential::new(None).map_err(setup)?),
    }
}

/// The `az login` command that signs in for `scope` (with `claims`, a base64 claims challenge).
pub fn az_login(tenant: Option<&str>, scope: Option<&str>, claims: Option<&str>) -> String {
    let mut command = String::from("az login");
    if let Some(tenant) = tenant {
        command.push_str(" --tenant ");
        command.push_str(&shell_word(tenant));
    }
    if let Some(scope) = scope {
        command.push_str(" --scope ");
        command.push_str(&shell_word(scope));
    }
    if let Some(claims) = claims {
        command.push_str(" --claims-challenge ");
        command.push_str(&shell_word(claims));
    }
    command
}

/// A word as a POSIX shell reads it back: as is when plainly safe, else single-quoted.
pub fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '+' | '@' | ','));
    if safe { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// At most 400 characters of a credential's (often long) error.
fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(400).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.sig", enc(r#"{"alg":"RS256"}"#), enc(&claims.to_string()))
    }

    #[test]
    fn a_token_is_never_shown_by_debug() {
        let token = BearerToken::parse("  abc.def.ghi\n", "--token").unwrap();
        assert_eq!(token.expose(), "abc.def.ghi");
        assert_eq!(format!("{token:?}"), "BearerToken(..)");
    }

    #[test]
    fn a_token_with_spaces_or_nothing_in_it_is_refused() {
        assert_eq!(BearerToken::parse("a b", "--token").unwrap_err().exit_code(), 2);
        assert_eq!(BearerToken::parse("  ", "ELEVATE_TOKEN").unwrap_err().exit_code(), 3);
    }

    #[test]
    fn the_claims_of_a_token_are_read_for_hints() {
        let token = BearerToken::parse(
            &jwt(serde_json::json!({"iss": crate::adapters::identity::dev::DEV_ISSUER, "aud": "api://x", "oid": "o", "acrs": ["c2"]})),
            "--token",
        )
        .unwrap();
        let claims = token.peek().unwrap();
        assert!(claims.issued_by_dev_issuer());
        assert_eq!(claims.audience(), Some("api://x"));
        assert_eq!(claims.acrs, vec!["c2"]);
        assert!(BearerToken::parse("opaque", "--token").unwrap().peek().is_none());
    }

    #[test]
    fn the_scope_is_the_audience_default() {
        assert_eq!(scope_of("api://abc"), "api://abc/.default");
        assert_eq!(scope_of("api://abc/"), "api://abc/.default");
        assert_eq!(scope_of("api://abc/.default"), "api://abc/.default");
    }

    #[test]
    fn the_az_login_command_is_quoted_for_a_shell() {
        assert_eq!(
            az_login(Some("t1"), Some("api://abc/.default"), Some("eyJh+/=")),
            "az login --tenant t1 --scope api://abc/.default --claims-challenge eyJh+/="
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[tokio::test]
    async fn without_a_token_or_an_audience_the_client_says_what_to_give() {
        let err = acquire(&SignInSettings::default()).await.unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("ELEVATE_TOKEN") && err.to_string().contains("ELEVATE_AUDIENCE"), "{err}");
    }
}
