//! Typed configuration, read once from the environment at start. Invalid configuration fails
//! fast with a message naming the variable. Secrets never appear in `Debug` output.

use std::path::{Path, PathBuf};

use crate::adapters::azure::credential::CredentialKind;
use crate::adapters::identity::entra::EntraSettings;
use crate::adapters::notify::WebhookUrl;
use crate::adapters::notify::events::EventSecret;
use crate::domain::duration::IsoDuration;
use crate::domain::ids::{AuthContextId, PrincipalId, TenantId};

/// Whether the Functions host runs us (host.json passes `--functions-host`) or we run alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    Standalone,
    FunctionsHost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSetting {
    Sqlite(PathBuf),
    /// Azure Table Storage (or Azurite), shared by every instance.
    Tables(TablesSetting),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablesSetting {
    /// The Table service endpoint without the table: `https://acct.table.core.windows.net`, or
    /// Azurite's path-style `http://127.0.0.1:10002/devstoreaccount1`.
    pub endpoint: String,
    pub table: String,
    pub auth: TablesAuth,
    /// Where the `local` provider keeps its simulated role assignments (a SQLite file shared by
    /// the processes of one machine).
    pub local_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TablesAuth {
    /// Entra tokens for `https://storage.azure.com/.default` (Azure, shared keys off).
    Entra(CredentialKind),
    /// SharedKey from a connection string (Azurite, or accounts that allow shared keys).
    SharedKey { account: String, key: StorageKey },
}

/// A storage account key: its `Debug` prints no value.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageKey(String);

impl StorageKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(<redacted>)")
    }
}

/// Azurite's well-known development account (public, from its README).
pub const DEV_STORAGE_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_STORAGE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The table Elevate uses unless told otherwise (and the one `infra/` creates).
pub const DEFAULT_TABLE: &str = "elevate";

/// A storage service a connection string names an endpoint of.
#[derive(Clone, Copy)]
enum StorageService {
    Table,
    Queue,
    Blob,
}

impl StorageService {
    /// Its name in endpoint hosts and in the `…Endpoint` key (`table`, `queue`).
    fn name(self) -> &'static str {
        match self {
            StorageService::Table => "table",
            StorageService::Queue => "queue",
            StorageService::Blob => "blob",
        }
    }

    /// Azurite's default port for it.
    fn emulator_port(self) -> u16 {
        match self {
            StorageService::Table => 10002,
            StorageService::Queue => 10001,
            StorageService::Blob => 10000,
        }
    }
}

/// Parses a storage connection string into one service's endpoint and the shared key. Never
/// echoes it: it holds the account key.
fn storage_connection(
    variable: &'static str,
    value: &str,
    service: StorageService,
) -> Result<(String, TablesAuth), ConfigError> {
    let mut pairs = std::collections::HashMap::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(bad(variable, "a connection string is `Name=value` pairs separated by `;`"));
        };
        pairs.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    if pairs.get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        // Azurite's well-known key is public: the emulator is for this machine only.
        let endpoint = match pairs.get("developmentstorageproxyuri") {
            Some(uri) => check_url(variable, uri)?,
            None => format!("http://127.0.0.1:{}", service.emulator_port()),
        };
        let auth =
            TablesAuth::SharedKey { account: DEV_STORAGE_ACCOUNT.into(), key: StorageKey(DEV_STORAGE_KEY.into()) };
        return Ok((format!("{endpoint}/{DEV_STORAGE_ACCOUNT}"), auth));
    }
    let account = pairs
        .get("accountname")
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| bad(variable, "the connection string needs `AccountName` (letters and digits)"))?
        .clone();
    let key = pairs
        .get("accountkey")
        .filter(|k| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(k).is_ok_and(|b| !b.is_empty())
        })
        .ok_or_else(|| {
            bad(variable, "the connection string needs `AccountKey` (base64); SAS tokens are not supported")
        })?
        .clone();
    let endpoint = match pairs.get(&format!("{}endpoint", service.name())) {
        Some(e) => check_url(variable, e)?,
        None => {
            let protocol = pairs.get("defaultendpointsprotocol").map_or("https", String::as_str);
            if protocol != "https" {
                return Err(bad(
                    variable,
                    format!("without `{}Endpoint`, the protocol must be https", capitalised(service.name())),
                ));
            }
            let suffix = pairs.get("endpointsuffix").map_or("core.windows.net", String::as_str);
            // A DNS name and nothing else: no port, user, path or anything the URL parser would
            // read as another host (`x@evil.example`).
            let plain = !suffix.is_empty()
                && suffix
                    .split('.')
                    .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if !plain {
                return Err(bad(variable, "`EndpointSuffix` must be a DNS name such as `core.windows.net`"));
            }
            check_url(variable, &format!("https://{account}.{}.{suffix}", service.name()))?
        }
    };
    Ok((endpoint, TablesAuth::SharedKey { account, key: StorageKey(key) }))
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// Parses `ELEVATE_STORE`'s connection string form.
fn connection_string(value: &str, table: String, local_file: PathBuf) -> Result<TablesSetting, ConfigError> {
    let (endpoint, auth) = storage_connection("ELEVATE_STORE", value, StorageService::Table)?;
    Ok(TablesSetting { endpoint, table, auth, local_file })
}

/// Storage queues: work started at a chosen moment inside a function invocation (expiry on time,
/// notices without delay). `None`: no queue; the sweeper alone does both, a tick later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSetting {
    /// The Queue service endpoint: `https://acct.queue.core.windows.net`, or Azurite's
    /// path-style `http://127.0.0.1:10001/devstoreaccount1`.
    pub endpoint: String,
    pub auth: TablesAuth,
}

/// `ELEVATE_AUDIT_EXPORT`: the Blob container sealed audit days are exported to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditExportSetting {
    /// The Blob service endpoint: `https://acct.blob.core.windows.net`, or Azurite's path-style
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: String,
    pub container: String,
    pub auth: TablesAuth,
}

/// The container `infra/` creates for the audit export.
pub const DEFAULT_AUDIT_CONTAINER: &str = "audit";

/// `ELEVATE_AUDIT_EXPORT`: unset or `off`, none; the container's URL
/// (`https://acct.blob.core.windows.net/audit`, Entra tokens); or a storage connection string,
/// with the container in `ELEVATE_AUDIT_EXPORT_CONTAINER` (default `audit`).
fn audit_export(
    on_app_service: bool,
    get: &impl Fn(&str) -> Option<String>,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<AuditExportSetting>, ConfigError> {
    const VARIABLE: &str = "ELEVATE_AUDIT_EXPORT";
    let value = match get(VARIABLE) {
        None => return Ok(None),
        Some(v) if v == "off" => return Ok(None),
        Some(v) => v,
    };
    if value.contains('=') {
        let container = get("ELEVATE_AUDIT_EXPORT_CONTAINER").unwrap_or_else(|| DEFAULT_AUDIT_CONTAINER.to_owned());
        crate::adapters::blob::check_container_name(&container)
            .map_err(|m| bad("ELEVATE_AUDIT_EXPORT_CONTAINER", m))?;
        let (endpoint, auth) = storage_connection(VARIABLE, &value, StorageService::Blob)?;
        if on_app_service && endpoint.ends_with(&format!("/{DEV_STORAGE_ACCOUNT}")) {
            return Err(bad(
                VARIABLE,
                "the development storage emulator (its key is public) is refused on App Service (WEBSITE_SITE_NAME is set)",
            ));
        }
        return Ok(Some(AuditExportSetting { endpoint, container, auth }));
    }
    let url = check_url(VARIABLE, &value)?;
    if url.contains(['?', '#']) {
        return Err(bad(VARIABLE, "takes the container's URL without a query (no SAS)"));
    }
    let Some((endpoint, container)) = url.trim_end_matches('/').rsplit_once('/').filter(|(e, _)| !e.ends_with('/'))
    else {
        return Err(bad(VARIABLE, "needs the container's URL, e.g. `https://acct.blob.core.windows.net/audit`"));
    };
    crate::adapters::blob::check_container_name(container)
        .map_err(|m| bad(VARIABLE, format!("the URL must end with the container name: {m}")))?;
    let credential = CredentialKind::detect(var).map_err(|e| bad("IDENTITY_ENDPOINT", e.to_string()))?;
    Ok(Some(AuditExportSetting {
        endpoint: endpoint.to_owned(),
        container: container.to_owned(),
        auth: TablesAuth::Entra(credential),
    }))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderSetting {
    /// Simulated role assignments kept in this SQLite file.
    Local,
    /// Azure RBAC through Azure Resource Manager.
    /// Azure RBAC through Azure Resource Manager, and directory roles and groups through
    /// Microsoft Graph (at `graph_endpoint`, under `/v1.0`), with the same credential.
    Arm { endpoint: String, graph_endpoint: String, credential: CredentialKind },
}

/// A secret: its `Debug` prints no value.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKey(Vec<u8>);

impl LinkKey {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

/// Default bound on concurrent revocations in one sweep.
pub const DEFAULT_SWEEP_CONCURRENCY: usize = 16;
/// Default cadence of the orphan sweep (assignments whose Elevate marker expired while the store
/// does not hold them as active).
pub const DEFAULT_ORPHAN_SWEEP_INTERVAL: &str = "PT1H";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthSetting {
    /// The local dev issuer with its key file.
    Dev { key_file: PathBuf },
    /// Entra ID bearer tokens, validated by Elevate.
    Entra(EntraSettings),
    /// Entra ID bearer tokens, and Easy Auth's client principal when the platform's
    /// authentication is on (`WEBSITE_AUTH_ENABLED=True`).
    EasyAuth { entra: EntraSettings, platform_auth: bool },
}

impl AuthSetting {
    pub fn name(&self) -> &'static str {
        match self {
            AuthSetting::Dev { .. } => "dev",
            AuthSetting::Entra(_) => "entra",
            AuthSetting::EasyAuth { .. } => "easyauth",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub mode: RunMode,
    pub port: u16,
    pub policy_file: PathBuf,
    pub store: StoreSetting,
    pub provider: ProviderSetting,
    pub auth: AuthSetting,
    /// Base URL for links (no trailing slash).
    pub public_url: String,
    pub broker_app_ids: Vec<String>,
    /// Keys the approval page's CSRF tokens and the confirmation links. Must be shared by every
    /// instance of a scaled-out app; a random per-process key otherwise.
    pub link_key: Option<LinkKey>,
    /// At most this many activations are revoked at once by one sweep.
    pub sweep_concurrency: usize,
    /// How often the sweeper also looks for orphaned Elevate assignments in Azure.
    pub orphan_sweep_interval: IsoDuration,
    pub notifications: NotificationSettings,
    /// Open requests and activations one principal may hold at once.
    pub max_open_requests: usize,
    /// Where group membership is checked when a rule names a group.
    pub group_checks: GroupChecks,
    /// Storage queues for expiry on time and notices without delay (`ELEVATE_QUEUES`).
    pub queues: Option<QueueSetting>,
    /// Where sealed audit days are exported (`ELEVATE_AUDIT_EXPORT`).
    pub audit_export: Option<AuditExportSetting>,
}

/// `ELEVATE_GROUP_CHECKS`: whose word counts for group membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupChecks {
    /// The sign-in's `groups` claim, as of the sign-in; a token with group overage matches no
    /// group. The only choice without Microsoft Graph (the `local` provider).
    Token,
    /// Microsoft Graph as well (transitive): when an approver decides, when a scheduled start
    /// arrives and for an extension the requester must still be in the group their rule named,
    /// and a token with group overage is resolved through Graph instead of denied.
    Graph,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn bad(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { variable, message: message.into() }
}

/// An endpoint variable: https, or plain http to loopback only (`crate::endpoint`). Returns the
/// URL as the parser reads it, without the trailing `/` of a bare base.
pub fn check_url(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    crate::endpoint::parse(value).map(|url| crate::endpoint::display(&url)).map_err(|e| bad(variable, e.to_string()))
}

/// Tenant, audience and authority for Entra token validation.
fn entra_settings(get: &impl Fn(&str) -> Option<String>) -> Result<EntraSettings, ConfigError> {
    let tenant_text =
        get("ELEVATE_TENANT_ID").ok_or_else(|| bad("ELEVATE_TENANT_ID", "is required: the Entra tenant id"))?;
    let tenant = TenantId::parse(&tenant_text)
        .map_err(|_| bad("ELEVATE_TENANT_ID", format!("`{tenant_text}` is not a tenant id (a GUID)")))?;
    let audience = get("ELEVATE_AUDIENCE").ok_or_else(|| {
        bad("ELEVATE_AUDIENCE", "is required: the API's client id or App ID URI (`api://<client id>`)")
    })?;
    if audience.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("ELEVATE_AUDIENCE", "must not contain spaces"));
    }
    // v2 tokens carry the client id, v1 tokens the App ID URI: accept both forms of one app.
    let mut audiences = vec![audience.clone()];
    if let Some(id) = audience.strip_prefix("api://").filter(|id| PrincipalId::parse(id).is_ok()) {
        audiences.push(id.to_owned());
    } else if PrincipalId::parse(&audience).is_ok() {
        audiences.push(format!("api://{audience}"));
    }
    let authority = match get("ELEVATE_AUTHORITY") {
        Some(a) => check_url("ELEVATE_AUTHORITY", &a)?,
        None => format!("https://login.microsoftonline.com/{tenant}"),
    };
    let mfa_auth_context = match get("ELEVATE_MFA_AUTH_CONTEXT") {
        None => None,
        Some(c) => Some(AuthContextId::parse(&c).map_err(|_| {
            bad("ELEVATE_MFA_AUTH_CONTEXT", format!("`{c}` is not an authentication context id (`c1` to `c99`)"))
        })?),
    };
    let mfa_max_age = match get("ELEVATE_MFA_MAX_AGE") {
        None => None,
        Some(text) => Some(
            IsoDuration::parse(&text)
                .ok()
                .map(|d| d.as_delta())
                .filter(|d| (60..=86_400).contains(&d.num_seconds()))
                .ok_or_else(|| {
                bad("ELEVATE_MFA_MAX_AGE", format!("`{text}` is not an ISO 8601 duration from PT1M to P1D"))
            })?,
        ),
    };
    Ok(EntraSettings { tenant, audiences, authority, mfa_auth_context, mfa_max_age })
}

impl Settings {
    /// Refuses to listen beyond this machine with the dev identity: a dev token is a password
    /// anyone with the key file can print, so only loopback clients may present one.
    pub fn check_listen(&self, ip: std::net::IpAddr) -> Result<(), ConfigError> {
        if matches!(self.auth, AuthSetting::Dev { .. }) && !ip.is_loopback() {
            return Err(bad(
                "ELEVATE_AUTH_MODE",
                format!(
                    "`dev` identity listens on loopback only, not on {ip}: use `--bind 127.0.0.1`, or set ELEVATE_AUTH_MODE to `entra` or `easyauth`"
                ),
            ));
        }
        Ok(())
    }

    /// Reads settings through `var` (the process environment in production, a map in tests).
    /// `exe_dir` is where the binary lives (the default policy file is looked for there first).
    pub fn from_env(
        mode: RunMode,
        var: impl Fn(&str) -> Option<String>,
        exe_dir: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let on_app_service = get("WEBSITE_SITE_NAME").is_some();

        let port = match get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad("FUNCTIONS_CUSTOMHANDLER_PORT", format!("`{p}` is not a port number")))?,
            None if mode == RunMode::FunctionsHost => {
                return Err(bad("FUNCTIONS_CUSTOMHANDLER_PORT", "the Functions host must set it"));
            }
            None => 7071,
        };

        let policy_file = match get("ELEVATE_POLICY_FILE") {
            Some(p) => PathBuf::from(p),
            None => {
                let beside = exe_dir.map(|d| d.join("policy.yaml"));
                match beside {
                    Some(path) if path.exists() => path,
                    _ => PathBuf::from("policy.yaml"),
                }
            }
        };

        let local_file = || {
            get("ELEVATE_LOCAL_ASSIGNMENTS_FILE")
                .map_or_else(|| PathBuf::from(".elevate/local-assignments.db"), PathBuf::from)
        };
        let store = match get("ELEVATE_STORE") {
            None => StoreSetting::Sqlite(PathBuf::from(".elevate/elevate.db")),
            Some(s) => match s.split_once(':') {
                Some(("sqlite", path)) if !path.trim().is_empty() => StoreSetting::Sqlite(PathBuf::from(path.trim())),
                Some(("sqlite", _)) => {
                    return Err(bad("ELEVATE_STORE", "`sqlite:` needs a file path, e.g. `sqlite:.elevate/elevate.db`"));
                }
                Some(("tables", url)) => {
                    let url = check_url("ELEVATE_STORE", url)?;
                    if url.contains(['?', '#']) {
                        return Err(bad("ELEVATE_STORE", "`tables:` takes the table's URL without a query (no SAS)"));
                    }
                    let Some((endpoint, table)) = url.rsplit_once('/').filter(|(e, _)| !e.ends_with('/')) else {
                        return Err(bad(
                            "ELEVATE_STORE",
                            "`tables:` needs the table's URL, e.g. `tables:https://acct.table.core.windows.net/elevate`",
                        ));
                    };
                    crate::adapters::store::table_client::check_table_name(table)
                        .map_err(|m| bad("ELEVATE_STORE", format!("the URL must end with the table name: {m}")))?;
                    let credential =
                        CredentialKind::detect(&var).map_err(|e| bad("IDENTITY_ENDPOINT", e.to_string()))?;
                    StoreSetting::Tables(TablesSetting {
                        endpoint: endpoint.to_owned(),
                        table: table.to_owned(),
                        auth: TablesAuth::Entra(credential),
                        local_file: local_file(),
                    })
                }
                _ if s.contains('=') => {
                    let table = get("ELEVATE_STORE_TABLE").unwrap_or_else(|| DEFAULT_TABLE.to_owned());
                    crate::adapters::store::table_client::check_table_name(&table)
                        .map_err(|m| bad("ELEVATE_STORE_TABLE", m))?;
                    let setting = connection_string(&s, table, local_file())?;
                    if on_app_service && setting.endpoint.ends_with(&format!("/{DEV_STORAGE_ACCOUNT}")) {
                        return Err(bad(
                            "ELEVATE_STORE",
                            "the development storage emulator (its key is public) is refused on App Service (WEBSITE_SITE_NAME is set)",
                        ));
                    }
                    StoreSetting::Tables(setting)
                }
                _ => {
                    return Err(bad(
                        "ELEVATE_STORE",
                        "must be `sqlite:<path>`, `tables:<table endpoint URL>` or a storage connection string",
                    ));
                }
            },
        };

        let base_url = |variable: &'static str, default: &str| -> Result<String, ConfigError> {
            let url = match get(variable) {
                Some(e) => check_url(variable, &e)?,
                None => default.to_owned(),
            };
            let after_host = url.split_once("://").map_or("", |(_, rest)| rest);
            if after_host.contains(['/', '?', '#']) {
                return Err(bad(variable, format!("must be a base URL without a path, e.g. `{default}`")));
            }
            Ok(url)
        };
        let arm = || -> Result<ProviderSetting, ConfigError> {
            let endpoint = base_url("ELEVATE_ARM_ENDPOINT", "https://management.azure.com")?;
            let graph_endpoint = base_url("ELEVATE_GRAPH_ENDPOINT", "https://graph.microsoft.com")?;
            let credential = CredentialKind::detect(&var).map_err(|e| bad("IDENTITY_ENDPOINT", e.to_string()))?;
            Ok(ProviderSetting::Arm { endpoint, graph_endpoint, credential })
        };
        let provider = match get("ELEVATE_PROVIDER").as_deref() {
            None if on_app_service => arm()?,
            None | Some("local") => {
                if on_app_service {
                    return Err(bad(
                        "ELEVATE_PROVIDER",
                        "`local` simulates Azure and is refused on App Service (WEBSITE_SITE_NAME is set)",
                    ));
                }
                ProviderSetting::Local
            }
            Some("arm") => arm()?,
            Some(other) => {
                return Err(bad("ELEVATE_PROVIDER", format!("`{other}` is not `arm` or `local`")));
            }
        };

        let default_auth = if mode == RunMode::FunctionsHost { "entra" } else { "dev" };
        let auth = match get("ELEVATE_AUTH_MODE").as_deref().unwrap_or(default_auth) {
            "dev" => {
                if on_app_service {
                    return Err(bad(
                        "ELEVATE_AUTH_MODE",
                        "`dev` mode is refused on App Service (WEBSITE_SITE_NAME is set)",
                    ));
                }
                // Container Apps, too, hands the process a real managed identity on loopback.
                if get("CONTAINER_APP_NAME").is_some() {
                    return Err(bad(
                        "ELEVATE_AUTH_MODE",
                        "`dev` mode is refused in Azure Container Apps (CONTAINER_APP_NAME is set)",
                    ));
                }
                AuthSetting::Dev {
                    key_file: get("ELEVATE_DEV_KEY")
                        .map_or_else(|| PathBuf::from(".elevate/dev-issuer.pem"), PathBuf::from),
                }
            }
            "entra" => AuthSetting::Entra(entra_settings(&get)?),
            "easyauth" => AuthSetting::EasyAuth {
                entra: entra_settings(&get)?,
                platform_auth: get("WEBSITE_AUTH_ENABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            },
            other => {
                return Err(bad("ELEVATE_AUTH_MODE", format!("`{other}` is not `entra`, `easyauth` or `dev`")));
            }
        };
        // INVARIANT: dev identity only while everything is local. Anyone who can read the dev key
        // can mint any identity (an Elevate.Admin, an approver): with real access behind it that is
        // standing Owner for whoever reads a file. The listening address is checked by `check_listen`.
        let on_loopback = |url: &str| crate::endpoint::parse(url).is_ok_and(|u| crate::endpoint::is_loopback(&u));
        if let (AuthSetting::Dev { .. }, ProviderSetting::Arm { endpoint, graph_endpoint, credential }) =
            (&auth, &provider)
            && (!on_loopback(endpoint) || !on_loopback(graph_endpoint) || *credential == CredentialKind::DeveloperTools)
        {
            return Err(bad(
                "ELEVATE_AUTH_MODE",
                format!(
                    "`dev` identity is refused with real access (ELEVATE_PROVIDER=arm at `{endpoint}` and Graph at `{graph_endpoint}` must both be on loopback, and not with your own Azure sign-in, which a loopback proxy could carry to Azure): anyone who reads the dev key could mint an Owner or a Global Administrator; use `entra` or `easyauth`, or the `local` provider"
                ),
            ));
        }
        if get("ELEVATE_DEV_KEY").is_some() && !matches!(auth, AuthSetting::Dev { .. }) {
            return Err(bad("ELEVATE_DEV_KEY", "is only valid with ELEVATE_AUTH_MODE=dev"));
        }

        let public_url = match get("ELEVATE_PUBLIC_URL") {
            Some(u) => check_url("ELEVATE_PUBLIC_URL", &u)?,
            None => format!("http://127.0.0.1:{port}"),
        };

        let notifications = notification_settings(&get)?;

        let broker_app_ids = match get("ELEVATE_BROKER_APP_IDS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    PrincipalId::parse(s).map(|id| id.to_string()).map_err(|_| {
                        bad("ELEVATE_BROKER_APP_IDS", format!("`{s}` is not a client (application) id GUID"))
                    })
                })
                .collect::<Result<_, _>>()?,
        };

        let link_key = match get("ELEVATE_LINK_KEY") {
            None => None,
            Some(k) if k.len() >= 32 => Some(LinkKey(k.into_bytes())),
            Some(_) => return Err(bad("ELEVATE_LINK_KEY", "must be at least 32 characters of random text")),
        };
        let sweep_concurrency = match get("ELEVATE_SWEEP_CONCURRENCY") {
            None => DEFAULT_SWEEP_CONCURRENCY,
            Some(n) => n.parse::<usize>().ok().filter(|n| (1..=256).contains(n)).ok_or_else(|| {
                bad("ELEVATE_SWEEP_CONCURRENCY", format!("`{n}` is not a whole number from 1 to 256"))
            })?,
        };
        let orphan_text =
            get("ELEVATE_ORPHAN_SWEEP_INTERVAL").unwrap_or_else(|| DEFAULT_ORPHAN_SWEEP_INTERVAL.to_owned());
        let orphan_sweep_interval = IsoDuration::parse(&orphan_text)
            .ok()
            .filter(|d| (300..=86_400).contains(&d.as_delta().num_seconds()))
            .ok_or_else(|| {
                bad(
                    "ELEVATE_ORPHAN_SWEEP_INTERVAL",
                    format!("`{orphan_text}` is not an ISO 8601 duration from PT5M to P1D"),
                )
            })?;

        let max_open_requests = max_open_requests(&get)?;
        let group_checks = match (get("ELEVATE_GROUP_CHECKS").as_deref(), &provider) {
            (None, ProviderSetting::Arm { .. }) | (Some("graph"), ProviderSetting::Arm { .. }) => GroupChecks::Graph,
            (None | Some("token"), _) => GroupChecks::Token,
            (Some("graph"), ProviderSetting::Local) => {
                return Err(bad(
                    "ELEVATE_GROUP_CHECKS",
                    "`graph` needs Microsoft Graph, which comes with ELEVATE_PROVIDER=arm",
                ));
            }
            (Some(other), _) => {
                return Err(bad("ELEVATE_GROUP_CHECKS", format!("`{other}` is not `graph` or `token`")));
            }
        };

        let queues = queues(mode, on_app_service, &get, &var)?;
        let audit_export = audit_export(on_app_service, &get, &var)?;

        Ok(Settings {
            mode,
            port,
            policy_file,
            store,
            provider,
            auth,
            public_url,
            broker_app_ids,
            link_key,
            sweep_concurrency,
            orphan_sweep_interval,
            notifications,
            max_open_requests,
            group_checks,
            queues,
            audit_export,
        })
    }
}

/// `ELEVATE_QUEUES`: `off`; the Queue service URL (Entra tokens); or a storage connection string.
/// Unset, under the Functions host, the queues of the host's own storage (`AzureWebJobsStorage`,
/// identity-based or a connection string), which its queue triggers read; standalone, none.
fn queues(
    mode: RunMode,
    on_app_service: bool,
    get: &impl Fn(&str) -> Option<String>,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<QueueSetting>, ConfigError> {
    const VARIABLE: &str = "ELEVATE_QUEUES";
    let entra = |endpoint: String| -> Result<Option<QueueSetting>, ConfigError> {
        let credential = CredentialKind::detect(var).map_err(|e| bad("IDENTITY_ENDPOINT", e.to_string()))?;
        Ok(Some(QueueSetting { endpoint, auth: TablesAuth::Entra(credential) }))
    };
    let connection = |value: &str, variable: &'static str| -> Result<Option<QueueSetting>, ConfigError> {
        let (endpoint, auth) = storage_connection(variable, value, StorageService::Queue)?;
        if on_app_service && endpoint.ends_with(&format!("/{DEV_STORAGE_ACCOUNT}")) {
            return Err(bad(
                variable,
                "the development storage emulator (its key is public) is refused on App Service (WEBSITE_SITE_NAME is set)",
            ));
        }
        Ok(Some(QueueSetting { endpoint, auth }))
    };
    match get(VARIABLE) {
        Some(v) if v == "off" => Ok(None),
        Some(v) if v.contains('=') => connection(&v, VARIABLE),
        Some(v) => {
            let url = check_url(VARIABLE, &v)?;
            let after_host = url.split_once("://").map_or("", |(_, rest)| rest);
            if after_host.contains(['?', '#']) {
                return Err(bad(VARIABLE, "takes the Queue service URL without a query (no SAS)"));
            }
            entra(url.trim_end_matches('/').to_owned())
        }
        None if mode == RunMode::FunctionsHost => {
            if let Some(uri) = get("AzureWebJobsStorage__queueServiceUri") {
                return entra(
                    check_url("AzureWebJobsStorage__queueServiceUri", &uri)?.trim_end_matches('/').to_owned(),
                );
            }
            if let Some(account) = get("AzureWebJobsStorage__accountName") {
                if account.is_empty() || !account.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(bad("AzureWebJobsStorage__accountName", "is not a storage account name"));
                }
                return entra(format!("https://{account}.queue.core.windows.net"));
            }
            match get("AzureWebJobsStorage") {
                Some(conn) if conn.contains('=') => connection(&conn, "AzureWebJobsStorage"),
                _ => Ok(None),
            }
        }
        None => Ok(None),
    }
}

/// `ELEVATE_MAX_OPEN_REQUESTS`: 1 to 1000, default `DEFAULT_MAX_OPEN_REQUESTS`.
fn max_open_requests(get: &impl Fn(&str) -> Option<String>) -> Result<usize, ConfigError> {
    match get("ELEVATE_MAX_OPEN_REQUESTS") {
        None => Ok(crate::service::DEFAULT_MAX_OPEN_REQUESTS),
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("ELEVATE_MAX_OPEN_REQUESTS", format!("`{n}` is not a whole number from 1 to 1000"))),
    }
}

/// Where notices go. A webhook URL is a secret (it carries a SAS signature): errors never echo it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationSettings {
    pub teams: Option<WebhookUrl>,
    pub events: Option<(WebhookUrl, EventSecret)>,
    /// How long before expiry "expiring soon" goes out.
    pub expiry_warning: IsoDuration,
}

pub const DEFAULT_EXPIRY_WARNING: &str = "PT15M";

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            teams: None,
            events: None,
            expiry_warning: IsoDuration::parse(DEFAULT_EXPIRY_WARNING).unwrap_or_else(|_| IsoDuration::from_hours(1)),
        }
    }
}

fn webhook(variable: &'static str, value: &str) -> Result<WebhookUrl, ConfigError> {
    let checked = check_url(variable, value)?;
    WebhookUrl::new(&checked).map_err(|m| bad(variable, m))
}

fn notification_settings(get: &impl Fn(&str) -> Option<String>) -> Result<NotificationSettings, ConfigError> {
    let teams = get("ELEVATE_TEAMS_WEBHOOK_URL").map(|u| webhook("ELEVATE_TEAMS_WEBHOOK_URL", &u)).transpose()?;
    let events = match (get("ELEVATE_EVENT_WEBHOOK_URL"), get("ELEVATE_EVENT_WEBHOOK_SECRET")) {
        (None, None) => None,
        (Some(u), Some(secret)) if secret.len() >= 32 => {
            Some((webhook("ELEVATE_EVENT_WEBHOOK_URL", &u)?, EventSecret::new(secret)))
        }
        (Some(_), Some(_)) => {
            return Err(bad("ELEVATE_EVENT_WEBHOOK_SECRET", "must be at least 32 characters of random text"));
        }
        (Some(_), None) => {
            return Err(bad(
                "ELEVATE_EVENT_WEBHOOK_SECRET",
                "is required with ELEVATE_EVENT_WEBHOOK_URL: events are always signed",
            ));
        }
        (None, Some(_)) => {
            return Err(bad("ELEVATE_EVENT_WEBHOOK_URL", "is required with ELEVATE_EVENT_WEBHOOK_SECRET"));
        }
    };
    let text = get("ELEVATE_EXPIRY_WARNING").unwrap_or_else(|| DEFAULT_EXPIRY_WARNING.to_owned());
    let expiry_warning =
        IsoDuration::parse(&text).ok().filter(|d| (60..=86_400).contains(&d.as_delta().num_seconds())).ok_or_else(
            || bad("ELEVATE_EXPIRY_WARNING", format!("`{text}` is not an ISO 8601 duration from PT1M to P1D")),
        )?;
    Ok(NotificationSettings { teams, events, expiry_warning })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(mode: RunMode, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_env(mode, |k| map.get(k).cloned(), None)
    }

    #[test]
    fn standalone_defaults_are_local_and_useful() {
        let s = read(RunMode::Standalone, &[]).unwrap();
        assert_eq!(s.port, 7071);
        assert_eq!(s.store, StoreSetting::Sqlite(".elevate/elevate.db".into()));
        assert_eq!(s.provider, ProviderSetting::Local);
        assert_eq!(s.auth.name(), "dev");
        assert_eq!(s.public_url, "http://127.0.0.1:7071");
    }

    #[test]
    fn table_storage_is_a_table_url_or_a_connection_string() {
        let s = read(RunMode::Standalone, &[("ELEVATE_STORE", "tables:https://acct.table.core.windows.net/elevate")])
            .unwrap();
        let StoreSetting::Tables(t) = s.store else { panic!() };
        assert_eq!((t.endpoint.as_str(), t.table.as_str()), ("https://acct.table.core.windows.net", "elevate"));
        assert_eq!(t.auth, TablesAuth::Entra(CredentialKind::DeveloperTools));

        let s = read(RunMode::Standalone, &[("ELEVATE_STORE", "UseDevelopmentStorage=true")]).unwrap();
        let StoreSetting::Tables(t) = s.store else { panic!() };
        assert_eq!(t.endpoint, "http://127.0.0.1:10002/devstoreaccount1");
        assert_eq!(t.table, DEFAULT_TABLE);
        assert!(matches!(t.auth, TablesAuth::SharedKey { ref account, .. } if account == DEV_STORAGE_ACCOUNT));

        let conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net";
        let s = read(RunMode::Standalone, &[("ELEVATE_STORE", conn), ("ELEVATE_STORE_TABLE", "audit2026")]).unwrap();
        let StoreSetting::Tables(t) = s.store else { panic!() };
        assert_eq!((t.endpoint.as_str(), t.table.as_str()), ("https://acct.table.core.windows.net", "audit2026"));
        assert!(!format!("{t:?}").contains("c2VjcmV0"), "the key stays out of Debug output");
    }

    #[test]
    fn bad_table_settings_are_refused_without_echoing_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ELEVATE_STORE", "tables:https://acct.table.core.windows.net")], "ELEVATE_STORE"),
            (&[("ELEVATE_STORE", "tables:https://acct.table.core.windows.net/el-evate")], "ELEVATE_STORE"),
            (
                &[("ELEVATE_STORE", "tables:https://acct.table.core.windows.net/elevate?sv=1&sig=c2VjcmV0")],
                "ELEVATE_STORE",
            ),
            (&[("ELEVATE_STORE", "tables:http://acct.table.core.windows.net/elevate")], "ELEVATE_STORE"),
            (&[("ELEVATE_STORE", "AccountName=acct;AccountKey=c2VjcmV0 not base64")], "ELEVATE_STORE"),
            (&[("ELEVATE_STORE", "AccountName=a/b;AccountKey=c2VjcmV0LWtleQ==")], "ELEVATE_STORE"),
            (
                &[("ELEVATE_STORE", "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=c2VjcmV0LWtleQ==")],
                "ELEVATE_STORE",
            ),
            (
                &[(
                    "ELEVATE_STORE",
                    "AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;TableEndpoint=http://evil.example.com",
                )],
                "ELEVATE_STORE",
            ),
            (
                &[("ELEVATE_STORE", "UseDevelopmentStorage=true"), ("ELEVATE_STORE_TABLE", "tables")],
                "ELEVATE_STORE_TABLE",
            ),
        ];
        for (vars, variable) in cases {
            let err = read(RunMode::Standalone, vars).unwrap_err();
            assert_eq!(err.variable, *variable, "{vars:?}");
            assert!(!err.to_string().contains("c2VjcmV0"), "the key leaked into {err}");
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("FUNCTIONS_CUSTOMHANDLER_PORT", "seventy")], "FUNCTIONS_CUSTOMHANDLER_PORT"),
            (&[("ELEVATE_STORE", "postgres://x")], "ELEVATE_STORE"),
            (&[("ELEVATE_PROVIDER", "aws")], "ELEVATE_PROVIDER"),
            (&[("ELEVATE_AUTH_MODE", "none")], "ELEVATE_AUTH_MODE"),
            (&[("ELEVATE_PUBLIC_URL", "http://elevate.example.com")], "ELEVATE_PUBLIC_URL"),
            (&[("ELEVATE_BROKER_APP_IDS", "not-a-guid")], "ELEVATE_BROKER_APP_IDS"),
            (&[("ELEVATE_TEAMS_WEBHOOK_URL", "http://x.logic.azure.com/a?sig=secret")], "ELEVATE_TEAMS_WEBHOOK_URL"),
            (
                &[("ELEVATE_EVENT_WEBHOOK_URL", "https://x.logic.azure.com/a?sig=secret")],
                "ELEVATE_EVENT_WEBHOOK_SECRET",
            ),
            (
                &[
                    ("ELEVATE_EVENT_WEBHOOK_URL", "https://x.logic.azure.com/a?sig=secret"),
                    ("ELEVATE_EVENT_WEBHOOK_SECRET", "short secret"),
                ],
                "ELEVATE_EVENT_WEBHOOK_SECRET",
            ),
            (
                &[("ELEVATE_EVENT_WEBHOOK_SECRET", "0123456789012345678901234567890123456789")],
                "ELEVATE_EVENT_WEBHOOK_URL",
            ),
            (&[("ELEVATE_EXPIRY_WARNING", "PT1S")], "ELEVATE_EXPIRY_WARNING"),
        ];
        for (vars, variable) in cases {
            let err = read(RunMode::Standalone, vars).unwrap_err();
            assert_eq!(err.variable, *variable);
            assert!(!err.to_string().contains("secret"), "a secret leaked into {err}");
        }
    }

    #[test]
    fn dev_and_local_are_refused_on_app_service() {
        let err =
            read(RunMode::Standalone, &[("WEBSITE_SITE_NAME", "prod"), ("ELEVATE_PROVIDER", "local")]).unwrap_err();
        assert_eq!(err.variable, "ELEVATE_PROVIDER");
        let err = read(
            RunMode::FunctionsHost,
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "1"),
                ("WEBSITE_SITE_NAME", "p"),
                ("ELEVATE_PROVIDER", "local"),
                ("ELEVATE_AUTH_MODE", "dev"),
            ],
        )
        .unwrap_err();
        assert!(err.variable == "ELEVATE_PROVIDER" || err.variable == "ELEVATE_AUTH_MODE");
        // A hosted process with a real managed identity on loopback, without WEBSITE_SITE_NAME.
        let err =
            read(RunMode::Standalone, &[("CONTAINER_APP_NAME", "elevate"), ("ELEVATE_AUTH_MODE", "dev")]).unwrap_err();
        assert_eq!(err.variable, "ELEVATE_AUTH_MODE");
    }

    #[test]
    fn arm_is_configured_and_checked() {
        let entra = [
            ("ELEVATE_AUTH_MODE", "entra"),
            ("ELEVATE_TENANT_ID", "5b51c641-0711-41d2-ac58-d90390d94a00"),
            ("ELEVATE_AUDIENCE", "api://x"),
        ];
        let s = read(RunMode::Standalone, &[&[("ELEVATE_PROVIDER", "arm")], &entra[..]].concat()).unwrap();
        assert_eq!(
            s.provider,
            ProviderSetting::Arm {
                endpoint: "https://management.azure.com".into(),
                graph_endpoint: "https://graph.microsoft.com".into(),
                credential: CredentialKind::DeveloperTools
            }
        );
        // On App Service `arm` is the default, with the platform's managed identity.
        let s = read(
            RunMode::Standalone,
            &[
                ("WEBSITE_SITE_NAME", "prod"),
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:41234/msi/token"),
                ("IDENTITY_HEADER", "h"),
                ("ELEVATE_AUTH_MODE", "dev"),
            ],
        );
        // (dev auth is refused there; the provider was decided first)
        assert_eq!(s.unwrap_err().variable, "ELEVATE_AUTH_MODE");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("ELEVATE_PROVIDER", "arm"), ("ELEVATE_ARM_ENDPOINT", "http://arm.example.com")],
                "ELEVATE_ARM_ENDPOINT",
            ),
            (
                &[("ELEVATE_PROVIDER", "arm"), ("ELEVATE_ARM_ENDPOINT", "https://management.azure.com/x")],
                "ELEVATE_ARM_ENDPOINT",
            ),
            (&[("ELEVATE_PROVIDER", "arm"), ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi")], "IDENTITY_ENDPOINT"),
            (&[("ELEVATE_SWEEP_CONCURRENCY", "0")], "ELEVATE_SWEEP_CONCURRENCY"),
            (&[("ELEVATE_LINK_KEY", "short")], "ELEVATE_LINK_KEY"),
            (
                &[
                    ("ELEVATE_AUTH_MODE", "entra"),
                    ("ELEVATE_TENANT_ID", "5b51c641-0711-41d2-ac58-d90390d94a00"),
                    ("ELEVATE_AUDIENCE", "api://x"),
                    ("ELEVATE_MFA_MAX_AGE", "P7D"),
                ],
                "ELEVATE_MFA_MAX_AGE",
            ),
            (&[("ELEVATE_AUTH_MODE", "entra"), ("ELEVATE_AUDIENCE", "api://x")], "ELEVATE_TENANT_ID"),
            (
                &[("ELEVATE_AUTH_MODE", "entra"), ("ELEVATE_TENANT_ID", "5b51c641-0711-41d2-ac58-d90390d94a00")],
                "ELEVATE_AUDIENCE",
            ),
            (&[("ELEVATE_SWEEP_CONCURRENCY", "many")], "ELEVATE_SWEEP_CONCURRENCY"),
            (&[("ELEVATE_ORPHAN_SWEEP_INTERVAL", "PT1M")], "ELEVATE_ORPHAN_SWEEP_INTERVAL"),
            (&[("ELEVATE_ORPHAN_SWEEP_INTERVAL", "hourly")], "ELEVATE_ORPHAN_SWEEP_INTERVAL"),
        ];
        for (vars, variable) in cases {
            assert_eq!(read(RunMode::Standalone, vars).unwrap_err().variable, *variable, "{vars:?}");
        }
        let s = read(
            RunMode::Standalone,
            &[("ELEVATE_SWEEP_CONCURRENCY", "32"), ("ELEVATE_ORPHAN_SWEEP_INTERVAL", "PT15M")],
        )
        .unwrap();
        assert_eq!((s.sweep_concurrency, s.orphan_sweep_interval.as_delta().num_minutes()), (32, 15));
    }

    #[test]
    fn dev_identity_is_refused_with_real_access() {
        // The review's finding: dev mode in front of real ARM started with only a warning.
        let err = read(RunMode::Standalone, &[("ELEVATE_PROVIDER", "arm")]).unwrap_err();
        assert_eq!(err.variable, "ELEVATE_AUTH_MODE");
        assert!(err.message.contains("ELEVATE_PROVIDER=arm"), "{err}");
        let err = read(
            RunMode::Standalone,
            &[
                ("ELEVATE_AUTH_MODE", "dev"),
                ("ELEVATE_PROVIDER", "arm"),
                ("ELEVATE_ARM_ENDPOINT", "https://management.azure.com"),
            ],
        )
        .unwrap_err();
        assert_eq!(err.variable, "ELEVATE_AUTH_MODE");
        // Not even on loopback with your own Azure sign-in: a local proxy could carry it to Azure.
        let loopback =
            [("ELEVATE_AUTH_MODE", "dev"), ("ELEVATE_PROVIDER", "arm"), ("ELEVATE_ARM_ENDPOINT", "http://127.0.0.1:9")];
        assert_eq!(read(RunMode::Standalone, &loopback).unwrap_err().variable, "ELEVATE_AUTH_MODE");
        // A fake ARM on loopback with the tests' fake managed identity, and the local simulation,
        // stay usable.
        let fake_identity = [("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token"), ("IDENTITY_HEADER", "h")];
        // Graph too: a dev token must not reach a Global Administrator either.
        let err = read(RunMode::Standalone, &[&loopback[..], &fake_identity[..]].concat()).unwrap_err();
        assert!(err.message.contains("graph.microsoft.com"), "{err}");
        let fake_graph = [("ELEVATE_GRAPH_ENDPOINT", "http://127.0.0.1:10")];
        let s = read(RunMode::Standalone, &[&loopback[..], &fake_identity[..], &fake_graph[..]].concat()).unwrap();
        assert!(s.check_listen("127.0.0.1".parse().unwrap()).is_ok());
        // Loopback only: not every interface, not a LAN address, not IPv6 any.
        let local = read(RunMode::Standalone, &[]).unwrap();
        for ip in ["0.0.0.0", "10.1.2.3", "::"] {
            let err = local.check_listen(ip.parse().unwrap()).unwrap_err();
            assert_eq!(err.variable, "ELEVATE_AUTH_MODE", "{ip}");
        }
        assert!(local.check_listen("::1".parse().unwrap()).is_ok());
        let entra = read(
            RunMode::Standalone,
            &[
                ("ELEVATE_AUTH_MODE", "entra"),
                ("ELEVATE_TENANT_ID", "5b51c641-0711-41d2-ac58-d90390d94a00"),
                ("ELEVATE_AUDIENCE", "api://x"),
            ],
        )
        .unwrap();
        assert!(entra.check_listen("0.0.0.0".parse().unwrap()).is_ok());
    }

    #[test]
    fn connection_strings_meet_the_endpoint_rule_too() {
        // The review's finding: the emulator's proxy address and the endpoint suffix escaped the
        // https/loopback rule, and a suffix could smuggle another host after an `@`.
        for value in [
            "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://0.0.0.0:18099",
            "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://evil.example\\@127.0.0.1:1",
            "AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=x@0.0.0.0:18099",
            "AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net:444",
            "AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net/x",
        ] {
            let err = read(RunMode::Standalone, &[("ELEVATE_STORE", value)]).unwrap_err();
            assert_eq!(err.variable, "ELEVATE_STORE", "{value}");
            assert!(!err.to_string().contains("c2VjcmV0"), "the key leaked: {err}");
        }
        let ok = read(
            RunMode::Standalone,
            &[("ELEVATE_STORE", "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://127.0.0.1:10102")],
        )
        .unwrap();
        let StoreSetting::Tables(t) = ok.store else { panic!("tables") };
        assert_eq!(t.endpoint, "http://127.0.0.1:10102/devstoreaccount1");
        let err = read(
            RunMode::Standalone,
            &[
                ("WEBSITE_SITE_NAME", "prod"),
                ("ELEVATE_STORE", "UseDevelopmentStorage=true"),
                ("ELEVATE_AUTH_MODE", "entra"),
            ],
        )
        .unwrap_err();
        assert_eq!(err.variable, "ELEVATE_STORE");
    }

    #[test]
    fn group_checks_follow_the_provider_unless_told() {
        assert_eq!(read(RunMode::Standalone, &[]).unwrap().group_checks, GroupChecks::Token);
        let entra = [
            ("ELEVATE_AUTH_MODE", "entra"),
            ("ELEVATE_TENANT_ID", "5b51c641-0711-41d2-ac58-d90390d94a00"),
            ("ELEVATE_AUDIENCE", "api://x"),
            ("ELEVATE_PROVIDER", "arm"),
        ];
        assert_eq!(read(RunMode::Standalone, &entra).unwrap().group_checks, GroupChecks::Graph);
        let token = [&entra[..], &[("ELEVATE_GROUP_CHECKS", "token")]].concat();
        assert_eq!(read(RunMode::Standalone, &token).unwrap().group_checks, GroupChecks::Token);
        for bad in [&[("ELEVATE_GROUP_CHECKS", "graph")][..], &[("ELEVATE_GROUP_CHECKS", "ldap")][..]] {
            assert_eq!(read(RunMode::Standalone, bad).unwrap_err().variable, "ELEVATE_GROUP_CHECKS");
        }
    }

    #[test]
    fn the_host_must_give_a_port() {
        assert_eq!(read(RunMode::FunctionsHost, &[]).unwrap_err().variable, "FUNCTIONS_CUSTOMHANDLER_PORT");
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        assert!(check_url("X", "https://elevate.contoso.com/").is_ok());
        assert!(check_url("X", "http://127.0.0.1:7071").is_ok());
        assert!(check_url("X", "http://localhost").is_ok());
        assert!(check_url("X", "http://[::1]:8080").is_ok());
        assert!(check_url("X", "http://127.0.0.1.evil.com").is_err());
        assert!(check_url("X", "http://localhost@evil.com").is_err());
        assert!(check_url("X", "ftp://x").is_err());
        assert!(check_url("X", "https://").is_err());
    }

    #[test]
    fn the_open_request_cap_is_a_bounded_number() {
        let settings = read(RunMode::Standalone, &[]).unwrap();
        assert_eq!(settings.max_open_requests, crate::service::DEFAULT_MAX_OPEN_REQUESTS);
        let settings = read(RunMode::Standalone, &[("ELEVATE_MAX_OPEN_REQUESTS", "3")]).unwrap();
        assert_eq!(settings.max_open_requests, 3);
        for bad in ["0", "-1", "ten", "1001", "2.5"] {
            let err = read(RunMode::Standalone, &[("ELEVATE_MAX_OPEN_REQUESTS", bad)]).unwrap_err();
            assert_eq!(err.variable, "ELEVATE_MAX_OPEN_REQUESTS", "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
