//! Elevate on the `arm` provider against the fake ARM.
//!
//! In-process apps (manual clock) get their token from the fake managed-identity endpoint through
//! `FakeIdentityCredential`, which speaks the App Service protocol exactly as azure_identity does.
//! They cannot use azure_identity's `ManagedIdentityCredential` itself: it reads
//! `IDENTITY_ENDPOINT` from the process environment, which a test may not change (`set_var` is
//! unsafe and the crate forbids unsafe code). The tests that start the real binary use the real
//! credential; see tests/arm.rs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use chrono::{DateTime, Utc};
use elevate::adapters::access::arm::ArmAccessProvider;
use elevate::adapters::azure::RetryPolicy;
use elevate::service::ports::AccessProvider;

use super::fake_azure::{FakeAzure, MI_HEADER};
use super::{TestApp, spawn_app_on, start, test_policy};

#[derive(Debug)]
pub struct FakeIdentityCredential {
    endpoint: String,
    header: String,
}

impl FakeIdentityCredential {
    pub fn new(fake: &FakeAzure) -> Self {
        Self { endpoint: fake.identity_endpoint(), header: MI_HEADER.into() }
    }

    /// A credential whose tokens the fake ARM does not accept.
    pub fn wrong(fake: &FakeAzure) -> Self {
        Self { endpoint: fake.identity_endpoint(), header: "not-the-identity-header".into() }
    }
}

#[async_trait::async_trait]
impl TokenCredential for FakeIdentityCredential {
    async fn get_token(&self, scopes: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        let resource = scopes.first().and_then(|s| s.strip_suffix("/.default")).unwrap_or_default();
        let res = super::http_client()
            .get(format!("{}?api-version=2019-08-01&resource={resource}", self.endpoint))
            .header("x-identity-header", &self.header)
            .header("metadata", "true")
            .send()
            .await
            .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Io, e.to_string()))?;
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        let token = body["access_token"].as_str().unwrap_or("none").to_owned();
        let expires: i64 = body["expires_on"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok(AccessToken::new(token, azure_core::time::OffsetDateTime::from_unix_timestamp(expires).unwrap()))
    }
}

/// Retries quick enough for tests; the shapes and bounds are production's.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        max_total: Duration::from_secs(20),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
    }
}

pub fn provider(fake: &FakeAzure, retry: RetryPolicy) -> Arc<ArmAccessProvider> {
    Arc::new(ArmAccessProvider::new(&fake.url(), Arc::new(FakeIdentityCredential::new(fake)), retry).unwrap())
}

/// The standard test app on the fake ARM.
pub async fn spawn_arm_app(fake: &FakeAzure) -> TestApp {
    spawn_arm_app_on(fake, None, start()).await
}

pub async fn spawn_arm_app_on(fake: &FakeAzure, db: Option<PathBuf>, at: DateTime<Utc>) -> TestApp {
    let access = provider(fake, fast_retry()) as Arc<dyn AccessProvider>;
    spawn_app_on(&test_policy(), Some(access), db, at).await
}
