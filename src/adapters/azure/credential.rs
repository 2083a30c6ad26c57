//! Which Azure credential Elevate uses: the App Service / Functions managed identity when the
//! platform provides one (`IDENTITY_ENDPOINT` and `IDENTITY_HEADER`), otherwise the developer's
//! own sign-in (`az login`, then `azd auth login`).

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use azure_identity::{DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions};

use super::{AzureError, http_transport};

/// The credential source, for logs and health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    ManagedIdentity,
    DeveloperTools,
}

impl CredentialKind {
    /// Decides from the environment (read through `var`), refusing combinations that would send
    /// azure_identity somewhere unintended.
    pub fn detect(var: impl Fn(&str) -> Option<String>) -> Result<Self, AzureError> {
        let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
        match (set("IDENTITY_ENDPOINT"), set("IDENTITY_HEADER")) {
            (true, true) if set("IDENTITY_SERVER_THUMBPRINT") => Err(AzureError::Setup(
                "IDENTITY_SERVER_THUMBPRINT is set: Service Fabric managed identity is not supported".into(),
            )),
            (true, true) => Ok(CredentialKind::ManagedIdentity),
            // azure_identity would fall back to the instance metadata service: never guess.
            (true, false) => Err(AzureError::Setup(
                "IDENTITY_ENDPOINT is set without IDENTITY_HEADER: not an App Service managed identity".into(),
            )),
            (false, true) => Err(AzureError::Setup("IDENTITY_HEADER is set without IDENTITY_ENDPOINT".into())),
            (false, false) => Ok(CredentialKind::DeveloperTools),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CredentialKind::ManagedIdentity => "managed-identity",
            CredentialKind::DeveloperTools => "developer-tools",
        }
    }

    /// Builds the credential. azure_identity reads the same variables from the process
    /// environment.
    pub fn credential(self) -> Result<Arc<dyn TokenCredential>, AzureError> {
        let setup =
            |e: azure_core::Error| AzureError::Setup(format!("cannot create the {} credential: {e}", self.name()));
        match self {
            CredentialKind::ManagedIdentity => {
                let options = ManagedIdentityCredentialOptions {
                    client_options: ClientOptions { transport: Some(http_transport()?), ..Default::default() },
                    ..Default::default()
                };
                Ok(ManagedIdentityCredential::new(Some(options)).map_err(setup)?)
            }
            CredentialKind::DeveloperTools => Ok(DeveloperToolsCredential::new(None).map_err(setup)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_platform_identity_is_used_only_when_fully_described() {
        let mi = [("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"), ("IDENTITY_HEADER", "h")];
        assert_eq!(CredentialKind::detect(env(&mi)).unwrap(), CredentialKind::ManagedIdentity);
        assert_eq!(CredentialKind::detect(env(&[])).unwrap(), CredentialKind::DeveloperTools);
        assert!(CredentialKind::detect(env(&[("IDENTITY_ENDPOINT", "http://x")])).is_err());
        assert!(CredentialKind::detect(env(&[("IDENTITY_HEADER", "h")])).is_err());
        let sf = [("IDENTITY_ENDPOINT", "http://x"), ("IDENTITY_HEADER", "h"), ("IDENTITY_SERVER_THUMBPRINT", "t")];
        assert!(CredentialKind::detect(env(&sf)).is_err());
    }
}
