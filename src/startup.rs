//! Builds the application from `Settings` and serves it. Tests use the very same functions with a
//! manual clock and port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;

use crate::adapters::access::arm::ArmAccessProvider;
use crate::adapters::access::graph::GraphAccessProvider;
use crate::adapters::access::local::LocalAccessProvider;
use crate::adapters::access::routed::RoutedAccess;
use crate::adapters::azure::RetryPolicy;
use crate::adapters::azure::credential::CredentialKind;
use crate::adapters::azure::{AzureClient, SharedKey, Signer};
use crate::adapters::directory::GraphDirectory;
use crate::adapters::identity::dev::{DevIssuer, DevIssuerError};
use crate::adapters::identity::easyauth::EasyAuthAuthenticator;
use crate::adapters::identity::entra::{EntraAuthenticator, EntraSettings};
use crate::adapters::identity::jwt::BearerAuthenticator;
use crate::adapters::notify::events::EventSink;
use crate::adapters::notify::teams::TeamsSink;
use crate::adapters::queue::QueueClient;
use crate::adapters::signing::HmacLinkSigner;
use crate::adapters::store::sqlite::SqliteStore;
use crate::adapters::store::table_client::TableClient;
use crate::adapters::store::tables::TableStore;
use crate::adapters::work_queue::StorageQueues;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    AuthSetting, GroupChecks, ProviderSetting, RunMode, Settings, StoreSetting, TablesAuth, TablesSetting,
};
use crate::domain::policy::{Policy, PolicyError};
use crate::http::HttpContext;
use crate::service::notify::Notifier;
use crate::service::ports::NotificationSink;
use crate::service::ports::{AccessError, AccessProvider, Authenticator, Directory, Store, StoreError};
use crate::service::{Elevate, SweepSettings};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read policy file `{path}`: {source}")]
    PolicyFile { path: String, source: std::io::Error },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the access provider: {0}")]
    Access(#[from] AccessError),
    #[error(transparent)]
    DevIssuer(#[from] DevIssuerError),
    #[error("cannot set up authentication: {0}")]
    Auth(String),
    #[error("cannot set up notifications: {0}")]
    Notifications(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A built application, with handles tests and the CLI need.
pub struct Built {
    pub context: Arc<HttpContext>,
    pub service: Arc<Elevate>,
    pub dev_issuer: Option<Arc<DevIssuer>>,
    /// Present with the `local` provider.
    pub local_access: Option<Arc<LocalAccessProvider>>,
    /// Present in `entra` and `easyauth` modes, to load the signing keys at start.
    pub entra: Option<Arc<EntraAuthenticator>>,
}

pub fn load_policy(path: &Path) -> Result<Policy, StartupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| StartupError::PolicyFile { path: path.display().to_string(), source })?;
    Ok(Policy::from_yaml(&path.display().to_string(), &text)?)
}

/// The Table Storage store the settings describe. SharedKey signatures use the real clock: the
/// service refuses dates far from its own.
pub fn table_store(tables: &TablesSetting) -> Result<TableStore, StartupError> {
    let setup = |m: String| StartupError::Store(StoreError::Unavailable(m));
    let signer = match &tables.auth {
        TablesAuth::Entra(kind) => Signer::Bearer {
            credential: kind.credential().map_err(|e| setup(e.to_string()))?,
            scope: STORAGE_SCOPE.to_owned(),
        },
        TablesAuth::SharedKey { account, key } => {
            Signer::SharedKey(SharedKey::new(account, key.expose(), Arc::new(SystemClock)).map_err(setup)?)
        }
    };
    let client = AzureClient::with_signer(signer, RetryPolicy::default()).map_err(|e| setup(e.to_string()))?;
    let table = TableClient::new(client, &tables.endpoint, &tables.table).map_err(setup)?;
    let auth = match &tables.auth {
        TablesAuth::Entra(kind) => kind.name(),
        TablesAuth::SharedKey { .. } => "shared-key",
    };
    tracing::info!(endpoint = %tables.endpoint, table = %tables.table, auth, "store: Azure Table Storage");
    Ok(TableStore::new(table))
}

/// The Storage queues the settings describe, behind the service's `Queue` port.
pub fn storage_queues(setting: &crate::config::QueueSetting) -> Result<StorageQueues, StartupError> {
    let setup = |m: String| StartupError::Store(StoreError::Unavailable(format!("queues: {m}")));
    let signer = match &setting.auth {
        TablesAuth::Entra(kind) => Signer::Bearer {
            credential: kind.credential().map_err(|e| setup(e.to_string()))?,
            scope: STORAGE_SCOPE.to_owned(),
        },
        TablesAuth::SharedKey { account, key } => Signer::SharedKey(
            SharedKey::new(account, key.expose(), Arc::new(SystemClock))
                .map_err(setup)?
                .for_service(crate::adapters::azure::shared_key::Service::Queue),
        ),
    };
    let client = AzureClient::with_signer(signer, RetryPolicy::default()).map_err(|e| setup(e.to_string()))?;
    let queues = QueueClient::new(client, &setting.endpoint).map_err(setup)?;
    tracing::info!(endpoint = %setting.endpoint, "expiry and delivery work also goes through Storage queues");
    StorageQueues::new(queues, "").map_err(setup)
}

/// The Blob container sealed audit days are exported to (`ELEVATE_AUDIT_EXPORT`).
pub fn audit_archive(
    setting: &crate::config::AuditExportSetting,
) -> Result<crate::adapters::blob::BlobArchive, StartupError> {
    let setup = |m: String| StartupError::Store(StoreError::Unavailable(format!("audit export: {m}")));
    let signer = match &setting.auth {
        TablesAuth::Entra(kind) => Signer::Bearer {
            credential: kind.credential().map_err(|e| setup(e.to_string()))?,
            scope: STORAGE_SCOPE.to_owned(),
        },
        TablesAuth::SharedKey { account, key } => {
            Signer::SharedKey(SharedKey::new(account, key.expose(), Arc::new(SystemClock)).map_err(setup)?)
        }
    };
    let client = AzureClient::with_signer(signer, RetryPolicy::default()).map_err(|e| setup(e.to_string()))?;
    let archive =
        crate::adapters::blob::BlobArchive::new(client, &setting.endpoint, &setting.container).map_err(setup)?;
    tracing::info!(endpoint = %setting.endpoint, container = %setting.container, "sealed audit days are exported to Blob Storage");
    Ok(archive)
}

/// The notification sinks the settings name, behind one notifier.
fn notifier(
    settings: &Settings,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> Result<Option<Arc<Notifier>>, StartupError> {
    let n = &settings.notifications;
    let mut sinks: Vec<Arc<dyn NotificationSink>> = Vec::new();
    if let Some(url) = &n.teams {
        sinks.push(Arc::new(TeamsSink::new(url.clone()).map_err(StartupError::Notifications)?));
        tracing::info!(host = url.host(), "notifications: Teams (Adaptive Cards)");
    }
    if let Some((url, secret)) = &n.events {
        let sink = EventSink::new(url.clone(), secret.clone(), &settings.public_url, Arc::clone(clock))
            .map_err(StartupError::Notifications)?;
        sinks.push(Arc::new(sink));
        tracing::info!(host = url.host(), "notifications: signed CloudEvents");
    }
    // Even without sinks: it clears the notices the store queues, so none pile up.
    Ok(Some(Arc::new(Notifier::new(
        Arc::clone(store),
        Arc::clone(clock),
        sinks,
        &settings.public_url,
        n.expiry_warning.as_delta(),
    ))))
}

/// The confirmation links' key, derived from the one secret so that neither a page's CSRF token
/// nor a link's signature can stand in for the other.
fn link_signing_key(key: &[u8; 32]) -> [u8; 32] {
    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        [&b"elevate confirmation links|"[..], key].concat(),
    ))
    .into()
}

/// The token scope for Azure Storage data-plane calls.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

pub fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Built, StartupError> {
    build_with(settings, clock, Ports::default())
}

/// Ports that replace what the settings name (tests pass providers on fakes, with their own
/// credential).
#[derive(Default)]
pub struct Ports {
    pub access: Option<Arc<dyn AccessProvider>>,
    pub directory: Option<Arc<dyn Directory>>,
    /// Instead of the queues `settings.queues` describes.
    pub queue: Option<Arc<dyn crate::service::ports::Queue>>,
}

/// Builds the application, with `ports` where given.
pub fn build_with(settings: &Settings, clock: Arc<dyn Clock>, ports: Ports) -> Result<Built, StartupError> {
    let Ports { access, directory: given_directory, queue: given_queue } = ports;
    let policy = Arc::new(load_policy(&settings.policy_file)?);
    tracing::info!(file = %settings.policy_file.display(), rules = policy.rules().len(), "policy loaded");
    for warning in policy.warnings() {
        tracing::warn!(%warning, "policy composition");
    }
    let (store, local_access): (Arc<dyn Store>, Option<Arc<LocalAccessProvider>>) = match &settings.store {
        StoreSetting::Sqlite(path) => {
            let store = Arc::new(SqliteStore::open(path)?);
            let local = match (&settings.provider, &access) {
                (ProviderSetting::Local, None) => Some(Arc::new(LocalAccessProvider::open(path)?)),
                (ProviderSetting::Local | ProviderSetting::Arm { .. }, _) => None,
            };
            (store, local)
        }
        StoreSetting::Tables(tables) => {
            let store = Arc::new(table_store(tables)?);
            let local = match (&settings.provider, &access) {
                (ProviderSetting::Local, None) => Some(Arc::new(LocalAccessProvider::open(&tables.local_file)?)),
                (ProviderSetting::Local | ProviderSetting::Arm { .. }, _) => None,
            };
            (store, local)
        }
    };
    // One credential for ARM and Graph, provider and directory alike, so that one token cache
    // serves each scope.
    let mut shared_credential: Option<Arc<dyn TokenCredential>> = None;
    let mut token_source = |kind: CredentialKind| -> Result<Arc<dyn TokenCredential>, StartupError> {
        if let Some(credential) = &shared_credential {
            return Ok(Arc::clone(credential));
        }
        let credential = kind.credential().map_err(|e| StartupError::Access(AccessError::Permanent(e.to_string())))?;
        Ok(Arc::clone(shared_credential.insert(credential)))
    };
    let access: Arc<dyn AccessProvider> = match (access, &settings.provider, &local_access) {
        (Some(given), _, _) => given,
        (None, ProviderSetting::Local, Some(local)) => Arc::clone(local) as Arc<dyn AccessProvider>,
        (None, ProviderSetting::Local, None) => {
            return Err(StartupError::Access(AccessError::Permanent("no local store".into())));
        }
        (None, ProviderSetting::Arm { endpoint, credential, graph_endpoint }, _) => {
            tracing::info!(endpoint = %endpoint, credential = credential.name(), "role assignments through Azure Resource Manager");
            let arm = Arc::new(ArmAccessProvider::new(endpoint, token_source(*credential)?, RetryPolicy::default())?);
            // Directory roles and groups through Microsoft Graph, with the same identity; only
            // called for rules of those kinds.
            let graph =
                Arc::new(GraphAccessProvider::new(graph_endpoint, token_source(*credential)?, RetryPolicy::default())?);
            if policy.rules().iter().any(|r| r.scope.kind() != crate::domain::scope::ScopeKind::Azure) {
                tracing::info!(endpoint = %graph_endpoint, "directory roles and groups through Microsoft Graph");
            }
            Arc::new(RoutedAccess::new(arm, graph))
        }
    };
    let directory: Option<Arc<dyn Directory>> = match (given_directory, settings.group_checks, &settings.provider) {
        (Some(given), _, _) => Some(given),
        (None, GroupChecks::Graph, ProviderSetting::Arm { graph_endpoint, credential, .. }) => {
            tracing::info!(endpoint = %graph_endpoint, "group membership checked with Microsoft Graph");
            Some(Arc::new(GraphDirectory::new(graph_endpoint, token_source(*credential)?, RetryPolicy::default())?))
        }
        (None, GroupChecks::Graph | GroupChecks::Token, _) => None,
    };
    let mut entra: Option<Arc<EntraAuthenticator>> = None;
    let (auth, dev_issuer): (Arc<dyn Authenticator>, Option<Arc<DevIssuer>>) = match &settings.auth {
        AuthSetting::Dev { key_file } => {
            let issuer = Arc::new(DevIssuer::load_or_create(key_file)?);
            let validator = issuer.validator().map_err(|e| StartupError::Auth(e.to_string()))?;
            tracing::warn!(
                "ELEVATE_AUTH_MODE=dev: tokens come from the local dev issuer; never use this mode with real access"
            );
            (Arc::new(BearerAuthenticator::new(validator)), Some(issuer))
        }
        AuthSetting::Entra(settings) => {
            let authenticator = entra_authenticator(settings)?;
            entra = Some(Arc::clone(&authenticator));
            (authenticator as Arc<dyn Authenticator>, None)
        }
        AuthSetting::EasyAuth { entra: settings, platform_auth } => {
            let bearer = entra_authenticator(settings)?;
            entra = Some(Arc::clone(&bearer));
            let easy = EasyAuthAuthenticator::new(bearer, settings.tenant, settings.audiences.clone(), *platform_auth);
            (Arc::new(easy) as Arc<dyn Authenticator>, None)
        }
    };
    let sweep = SweepSettings {
        concurrency: settings.sweep_concurrency,
        orphan_interval: settings.orphan_sweep_interval.as_delta(),
        ..SweepSettings::default()
    };
    let csrf_key: [u8; 32] = match &settings.link_key {
        Some(key) => sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(key.bytes())).into(),
        None => {
            if settings.mode == RunMode::FunctionsHost {
                tracing::warn!(
                    "ELEVATE_LINK_KEY is not set: approval forms and confirmation links work only on the instance that made them; set it when the app scales out"
                );
            }
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            key
        }
    };
    let notifier = notifier(settings, &store, &clock)?;
    let queues = match given_queue {
        Some(queue) => Some(queue),
        None => settings
            .queues
            .as_ref()
            .map(|q| storage_queues(q).map(|q| Arc::new(q) as Arc<dyn crate::service::ports::Queue>))
            .transpose()?,
    };
    let mut service = Elevate::new(store, access, policy, settings.broker_app_ids.clone(), sweep)
        .with_link_signer(Arc::new(HmacLinkSigner::new(link_signing_key(&csrf_key))))
        .with_max_open_requests(settings.max_open_requests);
    if let Some(directory) = directory {
        service = service.with_directory(directory);
    }
    if let Some(notifier) = notifier {
        service = service.with_notifier(notifier);
    }
    if let Some(queue) = queues {
        service = service.with_queue(queue);
    }
    if let Some(export) = &settings.audit_export {
        service = service.with_audit_archive(Arc::new(audit_archive(export)?));
    }
    let service = Arc::new(service);
    let context = Arc::new(HttpContext {
        service: Arc::clone(&service),
        auth,
        clock,
        dev: dev_issuer.clone().map(|issuer| issuer as Arc<dyn crate::service::ports::DevIssuerKeys>),
        csrf_key,
        public_url: settings.public_url.clone(),
        own_origins: crate::http::csrf::own_origins(&settings.public_url),
        auth_mode: settings.auth.name(),
        functions_host: settings.mode == RunMode::FunctionsHost,
    });
    Ok(Built { context, service, dev_issuer, local_access, entra })
}

fn entra_authenticator(settings: &EntraSettings) -> Result<Arc<EntraAuthenticator>, StartupError> {
    tracing::info!(tenant = %settings.tenant, authority = %settings.authority, "Entra ID tokens accepted");
    Ok(Arc::new(EntraAuthenticator::new(settings.clone()).map_err(|e| StartupError::Auth(e.to_string()))?))
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    context: Arc<HttpContext>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(crate::http::filter(context)).incoming(listener).graceful(shutdown).run().await;
}

/// Standalone mode: a sweep at the start of every minute (the timer's `0 */1 * * * *`), and as
/// soon as an activation falls due in between, until `stop` fires. Under the Functions host the
/// timer trigger and the `expiry` queue do this instead.
pub async fn run_sweeper(service: Arc<Elevate>, clock: Arc<dyn Clock>, mut stop: tokio::sync::watch::Receiver<bool>) {
    // The `now` of the last pass: what fell due after it (while that pass ran, or since) is
    // swept at once; what was due at it and is still due (a revocation that keeps failing)
    // waits for the minute, so a failure never makes the loop spin.
    let mut last: Option<DateTime<Utc>> = None;
    loop {
        let now = clock.now();
        let from = last.unwrap_or(now).min(now);
        let minute = until_next_minute(now);
        let horizon = (now - from) + chrono::TimeDelta::from_std(minute).unwrap_or(chrono::TimeDelta::minutes(1));
        let wait = match service.next_due(from, horizon).await {
            Some(at) => (at - now).to_std().unwrap_or_default().min(minute),
            None => minute,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let at = clock.now();
        let report = service.sweep(at).await;
        last = Some(at);
        if !report.failures.is_empty() {
            tracing::error!(failures = report.failures.len(), "sweep left failures; they stay due");
        }
    }
}

/// Standalone mode: the governance pass at seven minutes past every hour (the `governance`
/// timer's `0 7 * * * *`), until `stop` fires.
pub async fn run_governance(
    service: Arc<Elevate>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = clock.now();
        let into_hour = now.timestamp().rem_euclid(3600);
        let wait = (7 * 60 - into_hour).rem_euclid(3600);
        let wait = std::time::Duration::from_secs(if wait == 0 { 3600 } else { wait as u64 });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = service.governance(clock.now()).await {
            tracing::error!(error = %e, "governance pass failed; the next hour tries again");
        }
    }
}

/// Standalone mode: the weekly digest on Mondays at 08:00 UTC (the `digest` timer's
/// `0 0 8 * * 1`), until `stop` fires.
pub async fn run_digest(service: Arc<Elevate>, clock: Arc<dyn Clock>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let wait = until_next_digest(clock.now());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = service.digest(clock.now()).await {
            tracing::error!(error = %e, "the weekly digest failed; next week's runs again");
        }
    }
}

/// How long from `now` to the next Monday 08:00 UTC (a week when it is that instant).
fn until_next_digest(now: DateTime<Utc>) -> std::time::Duration {
    const WEEK: i64 = 7 * 24 * 3600;
    // The Unix epoch fell on a Thursday: Monday 00:00 is 4 days after a multiple of a week.
    let since_monday_eight = (now.timestamp() - 4 * 24 * 3600 - 8 * 3600).rem_euclid(WEEK);
    let wait = WEEK - since_monday_eight;
    std::time::Duration::from_secs(wait.unsigned_abs())
}

fn until_next_minute(now: DateTime<Utc>) -> std::time::Duration {
    let into_minute = now.timestamp_subsec_millis() as u64 + (now.timestamp().rem_euclid(60) as u64) * 1000;
    std::time::Duration::from_millis(60_000 - into_minute.min(59_999))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Whether the settings say the sweeper must run in-process.
pub fn runs_own_sweeper(settings: &Settings) -> bool {
    settings.mode == RunMode::Standalone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweeper_wakes_on_the_minute() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(until_next_minute(at("2026-11-25T12:00:00Z")).as_millis(), 60_000);
        assert_eq!(until_next_minute(at("2026-11-25T12:00:59.500Z")).as_millis(), 500);
        assert_eq!(until_next_minute(at("2026-11-25T12:00:30Z")).as_millis(), 30_000);
    }

    #[test]
    fn the_digest_wakes_on_monday_at_eight() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        // 2026-11-25 is a Wednesday; the next Monday is the 30th.
        assert_eq!(until_next_digest(at("2026-11-25T12:00:00Z")), hours(4 * 24 + 20));
        assert_eq!(until_next_digest(at("2026-11-30T07:00:00Z")), hours(1));
        assert_eq!(until_next_digest(at("2026-11-30T08:00:00Z")), hours(7 * 24), "just run: next week");
        assert_eq!(until_next_digest(at("2026-11-30T09:00:00Z")), hours(7 * 24 - 1));
    }
}
