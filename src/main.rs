//! `elevate`: serve (standalone or under the Functions host), mint dev tokens, check a policy,
//! and the command-line client (`elevate::cli`) that talks to a running Elevate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use elevate::adapters::identity::dev::{DevIssuer, DevTokenRequest};
use elevate::clock::{Clock, SystemClock};
use elevate::config::{RunMode, Settings};
use elevate::domain::duration::IsoDuration;
use elevate::domain::ids::{AuthContextId, PrincipalId};
use elevate::{startup, telemetry};

#[derive(Parser)]
#[command(
    name = "elevate",
    version,
    about = "Just-in-time privileged access for Azure RBAC",
    after_help = "The client commands (eligible ... whoami) talk to a running Elevate at --url or ELEVATE_URL; \
                  `elevate <command> --help` lists their exit codes, and docs/cli.md is their manual."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Text,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Object id of the user (a GUID).
    #[arg(long)]
    user: String,
    /// Claim multi-factor authentication (`amr` contains `mfa`).
    #[arg(long)]
    mfa: bool,
    /// App role, e.g. Elevate.Admin (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Group object id (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Authentication context satisfied, e.g. c1 (repeatable).
    #[arg(long = "acrs")]
    auth_contexts: Vec<String>,
    #[arg(long)]
    name: Option<String>,
    /// Mint an app-only token for this client id (a broker) instead of a user token.
    #[arg(long)]
    app: Option<String>,
    /// Stand for a user in over 200 groups: Entra's overage pointer instead of `groups`.
    #[arg(long)]
    groups_overage: bool,
    /// Lifetime as an ISO 8601 duration.
    #[arg(long, default_value = "PT1H")]
    ttl: String,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default). Standalone it also runs the expiry sweeper every minute.
    Serve {
        /// Run as an Azure Functions custom handler (host.json passes this).
        #[arg(long)]
        functions_host: bool,
        /// Address to listen on (standalone). Use 0.0.0.0 in a container.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
        bind: IpAddr,
        #[arg(long, value_enum)]
        log_format: Option<Format>,
    },
    /// Print a token from the local dev issuer (dev mode only).
    Token(TokenArgs),
    /// Print the role definitions a policy can grant (a JSON array: Elevate's allow-list for
    /// infra/main.bicep), or with --condition the ABAC condition its identity is held to.
    AssignableRoles {
        #[arg(default_value = "policy.yaml")]
        file: std::path::PathBuf,
        #[arg(long)]
        condition: bool,
    },
    /// Run one governance pass against the configured store and provider (as the hourly
    /// `governance` timer does) and print its report as JSON.
    Governance,
    /// Validate a policy file and print what it allows.
    CheckPolicy {
        #[arg(default_value = "policy.yaml")]
        file: std::path::PathBuf,
    },
    #[command(flatten)]
    Client(elevate::cli::ClientCommand),
}

fn main() -> ExitCode {
    // Before any HTTP client exists: reqwest is built without a default TLS provider.
    elevate::adapters::azure::install_tls_provider();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve {
        functions_host: false,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        log_format: None,
    }) {
        // The client has its own exit codes (elevate::cli::EXIT_CODES).
        Command::Client(command) => return elevate::cli::run(command),
        Command::Serve { functions_host, bind, log_format } => serve(functions_host, bind, log_format),
        Command::Token(args) => token(args),
        Command::CheckPolicy { file } => check_policy(&file),
        Command::Governance => governance(),
        Command::AssignableRoles { file, condition } => assignable_roles(&file, condition),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("elevate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(functions_host: bool, bind: IpAddr, log_format: Option<Format>) -> Result<(), String> {
    let mode = if functions_host { RunMode::FunctionsHost } else { RunMode::Standalone };
    let format = match (log_format, mode) {
        (Some(Format::Json), _) | (None, RunMode::FunctionsHost) => telemetry::LogFormat::Json,
        _ => telemetry::LogFormat::Text,
    };
    telemetry::init(format);
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(ToOwned::to_owned));
    let settings =
        Settings::from_env(mode, |k| std::env::var(k).ok(), exe_dir.as_deref()).map_err(|e| e.to_string())?;
    // The host always talks to 127.0.0.1.
    let ip = if mode == RunMode::FunctionsHost { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { bind };
    settings.check_listen(ip).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let built = startup::build(&settings, Arc::clone(&clock)).map_err(|e| e.to_string())?;
        let listener = startup::bind(SocketAddr::new(ip, settings.port)).await.map_err(|e| e.to_string())?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(address = %local, mode = ?mode, auth = settings.auth.name(), provider = built.service.access_kind(), "Elevate listening");
        if let Some(entra) = built.entra.clone() {
            // Load the signing keys now rather than on the first request; failures are logged and
            // retried on demand.
            let now = clock.now();
            tokio::spawn(async move {
                let _ = entra.refresh(now, false).await;
            });
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let own = startup::runs_own_sweeper(&settings);
        let governance = own.then(|| {
            tokio::spawn(startup::run_governance(Arc::clone(&built.service), Arc::clone(&clock), stop_rx.clone()))
        });
        let digest = own.then(|| {
            tokio::spawn(startup::run_digest(Arc::clone(&built.service), Arc::clone(&clock), stop_rx.clone()))
        });
        let sweeper =
            own.then(|| tokio::spawn(startup::run_sweeper(Arc::clone(&built.service), Arc::clone(&clock), stop_rx)));
        startup::serve(listener, Arc::clone(&built.context), startup::shutdown_signal()).await;
        let _ = stop_tx.send(true);
        for task in [sweeper, governance, digest].into_iter().flatten() {
            let _ = task.await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

fn token(args: TokenArgs) -> Result<(), String> {
    let TokenArgs { user, mfa, roles, groups, auth_contexts, name, app, groups_overage, ttl } = args;
    let user = PrincipalId::parse(&user).map_err(|e| format!("--user {e}"))?;
    for g in &groups {
        PrincipalId::parse(g).map_err(|e| format!("--group {e}"))?;
    }
    for c in &auth_contexts {
        AuthContextId::parse(c).map_err(|e| format!("--acrs {e}"))?;
    }
    if let Some(app) = &app {
        PrincipalId::parse(app).map_err(|e| format!("--app {e}"))?;
    }
    let ttl = IsoDuration::parse(&ttl).map_err(|e| format!("--ttl {e}"))?;
    if ttl > IsoDuration::from_hours(24) {
        return Err("--ttl must be at most PT24H".into());
    }
    if std::env::var("WEBSITE_SITE_NAME").is_ok_and(|v| !v.is_empty()) {
        return Err("dev tokens are refused on App Service (WEBSITE_SITE_NAME is set)".into());
    }
    let key = std::env::var("ELEVATE_DEV_KEY")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| ".elevate/dev-issuer.pem".into());
    let issuer = DevIssuer::load_or_create(std::path::Path::new(&key)).map_err(|e| e.to_string())?;
    let request = DevTokenRequest {
        object_id: user.to_string(),
        name,
        roles,
        groups,
        mfa,
        auth_contexts,
        app_id: app,
        groups_overage,
        lifetime: ttl.as_delta(),
    };
    let token = issuer.mint(&request, SystemClock.now()).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

fn governance() -> Result<(), String> {
    telemetry::init(telemetry::LogFormat::Text);
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(ToOwned::to_owned));
    let settings = Settings::from_env(RunMode::Standalone, |k| std::env::var(k).ok(), exe_dir.as_deref())
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let built = startup::build(&settings, Arc::clone(&clock)).map_err(|e| e.to_string())?;
        let report = built.service.governance(clock.now()).await.map_err(|e| e.to_string())?;
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        if report.failures.is_empty() {
            Ok(())
        } else {
            Err(format!("{} part(s) could not be read", report.failures.len()))
        }
    })
}

fn check_policy(file: &std::path::Path) -> Result<(), String> {
    let policy = startup::load_policy(file).map_err(|e| e.to_string())?;
    println!("{}: {} rule(s) valid", file.display(), policy.rules().len());
    for warning in policy.warnings() {
        println!("  warning: {warning}");
    }
    for rule in policy.rules() {
        let approval = rule
            .approval
            .as_ref()
            .map_or("self-activation".to_owned(), |a| format!("{} approval(s) within {}", a.min_approvals, a.timeout));
        let roles: Vec<String> =
            rule.roles.iter().map(|r| r.built_in_name().map_or_else(|| r.to_string(), str::to_owned)).collect();
        println!(
            "  {} ({}) {} at {}: max {}, {}",
            rule.id,
            rule.scope.kind().as_str(),
            roles.join(", "),
            rule.scope,
            rule.max_duration,
            approval
        );
    }
    Ok(())
}

fn assignable_roles(file: &std::path::Path, condition: bool) -> Result<(), String> {
    use elevate::domain::delegation;
    let policy = startup::load_policy(file).map_err(|e| e.to_string())?;
    let roles = delegation::assignable_roles(&policy);
    if condition {
        println!("{}", delegation::broker_condition(&roles));
    } else {
        let list: Vec<String> = roles.iter().map(ToString::to_string).collect();
        println!("{}", serde_json::to_string(&list).map_err(|e| e.to_string())?);
    }
    Ok(())
}
