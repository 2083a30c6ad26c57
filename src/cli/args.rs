//! The client's command line (clap derive). Values are parsed into domain types here, at the
//! edge, so a malformed id or duration is a usage error (exit 2) before anything is sent.
//! Environment variables are read by `Connection::settings`, not by clap.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use crate::domain::activation::Status;
use crate::domain::duration::IsoDuration;
use crate::domain::ids::{ActivationId, Justification, PrincipalId, RuleId, TicketNumber, TicketSystem};

use super::error::EXIT_CODES;
use super::output::Format;

/// The client's subcommands (flattened into `elevate`'s own).
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// List the rules under which you may activate a role
    #[command(after_help = EXIT_CODES)]
    Eligible(Plain),
    /// Ask for a role: active at once, after approval, or at --start-at
    #[command(after_help = EXIT_CODES)]
    Activate(ActivateArgs),
    /// List your activations (with --all, everyone's: Elevate.Admin or Elevate.Auditor)
    #[command(after_help = EXIT_CODES)]
    List(ListArgs),
    /// Show one activation with its history
    #[command(after_help = EXIT_CODES)]
    Show(IdArgs),
    /// End an active activation now (the role assignment is removed)
    #[command(after_help = EXIT_CODES)]
    Deactivate(IdArgs),
    /// Ask for more time on an active activation (approved like the request, if the rule says so)
    #[command(after_help = EXIT_CODES)]
    Extend(ExtendArgs),
    /// Withdraw a request that is pending approval or scheduled
    #[command(after_help = EXIT_CODES)]
    Cancel(IdArgs),
    /// List the requests waiting for your decision, or show one
    #[command(after_help = EXIT_CODES)]
    Approvals(ApprovalsArgs),
    /// Approve a request (or its pending extension)
    #[command(after_help = EXIT_CODES)]
    Approve(DecideArgs),
    /// Deny a request (or its pending extension)
    #[command(after_help = EXIT_CODES)]
    Deny(DecideArgs),
    /// Read the audit trail (Elevate.Admin or Elevate.Auditor); `audit verify` checks it for tampering
    #[command(after_help = EXIT_CODES)]
    Audit(AuditArgs),
    /// Show who Elevate takes you for: id, app roles, groups, MFA, authentication contexts
    #[command(after_help = EXIT_CODES)]
    Whoami(Plain),
}

/// Where Elevate is, who you are, and how to print: every client command takes these.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Connection")]
pub struct Connection {
    /// Elevate's address, e.g. https://elevate.example.com (http:// only to localhost) [env: ELEVATE_URL]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A bearer token for the API (dev and CI; prefer the variable, which `ps` does not show)
    /// [env: ELEVATE_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The API's App ID URI (api://<client id>): without a token, the Azure CLI sign-in is asked
    /// for `<audience>/.default` [env: ELEVATE_AUDIENCE]
    #[arg(long, value_name = "URI")]
    pub audience: Option<String>,
    /// The Entra tenant to take the Azure CLI token from [env: ELEVATE_TENANT_ID]
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Output: tables for people, or the API's JSON for scripts
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct Plain {
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ActivateArgs {
    /// The role: a built-in name (Reader, Contributor, ...) or a role definition GUID
    #[arg(long)]
    pub role: String,
    /// Where: an ARM scope (/subscriptions/<id>[/resourceGroups/<name>...])
    #[arg(long)]
    pub scope: String,
    /// How long, ISO 8601 (PT1H, PT30M); default: the rule's maximum
    #[arg(long, value_parser = duration)]
    pub duration: Option<IsoDuration>,
    /// Why (required by most rules)
    #[arg(long, value_parser = justification)]
    pub justification: Option<Justification>,
    /// The ticket system, e.g. ServiceNow (with --ticket-number)
    #[arg(long, value_parser = ticket_system, requires = "ticket_number")]
    pub ticket_system: Option<TicketSystem>,
    /// The ticket number, e.g. INC0012345 (with --ticket-system)
    #[arg(long, value_parser = ticket_number, requires = "ticket_system")]
    pub ticket_number: Option<TicketNumber>,
    /// Start later, at an RFC 3339 time (2026-11-25T14:00:00Z): the request is Scheduled
    #[arg(long, value_parser = instant)]
    pub start_at: Option<DateTime<Utc>>,
    /// The rule to use, when several rules grant the role at the scope
    #[arg(long, value_parser = rule)]
    pub rule: Option<RuleId>,
    /// Only say what would happen (POST ?validateOnly=true): nothing is requested or stored.
    /// Exits 0 if the request would be accepted as it stands, 3 if it needs a fresh sign-in,
    /// 1 if it lacks something else
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    /// Wait until the activation is Active (through approval and a scheduled start), printing
    /// progress on stderr; exits 4 if it ends otherwise, 6 at --timeout
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 900, requires = "wait")]
    pub timeout: u64,
    /// With --wait: milliseconds between polls
    #[arg(long, value_name = "MS", default_value_t = 3000, hide = true, value_parser = clap::value_parser!(u64).range(10..))]
    pub poll_interval_ms: u64,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this status: PendingApproval, Scheduled, Provisioning, Active, Denied, Canceled,
    /// TimedOut, Expired, Deactivated, Failed
    #[arg(long, value_parser = status)]
    pub status: Option<Status>,
    /// Everyone's activations, not only yours (Elevate.Admin or Elevate.Auditor)
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// The activation's id
    #[arg(value_parser = activation_id)]
    pub id: ActivationId,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ExtendArgs {
    /// The activation's id
    #[arg(value_parser = activation_id)]
    pub id: ActivationId,
    /// How much longer, ISO 8601 (PT30M)
    #[arg(long, value_parser = duration)]
    pub duration: IsoDuration,
    /// Why
    #[arg(long, value_parser = justification)]
    pub justification: Option<Justification>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ApprovalsArgs {
    /// Show this request (with whether you may decide on it) instead of the list
    #[arg(value_parser = activation_id)]
    pub id: Option<ActivationId>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    /// The activation's id
    #[arg(value_parser = activation_id)]
    pub id: ActivationId,
    /// Why (recorded in the audit trail)
    #[arg(long, value_parser = justification)]
    pub justification: Justification,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Events of this activation
    #[arg(long, value_parser = activation_id)]
    pub activation: Option<ActivationId>,
    /// Events of this principal's activations (object id)
    #[arg(long, value_parser = principal_id)]
    pub principal: Option<PrincipalId>,
    /// Events at or after this RFC 3339 time
    #[arg(long, value_parser = instant)]
    pub since: Option<DateTime<Utc>>,
    /// Events at or before this RFC 3339 time
    #[arg(long, value_parser = instant)]
    pub until: Option<DateTime<Utc>>,
    /// Events of activations of this role (a name or a GUID)
    #[arg(long)]
    pub role: Option<String>,
    /// Events of activations at this scope
    #[arg(long)]
    pub scope: Option<String>,
    /// Only this action (Requested, Approved, Denied, Expired, ...)
    #[arg(long)]
    pub action: Option<String>,
    /// How many events to read (one page); more with --all
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=(crate::service::MAX_LIST as i64)))]
    pub top: Option<u16>,
    /// Every event, following the pages to the end
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// What `elevate audit` does besides reading the trail through the API.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the audit trail in the store itself (ELEVATE_STORE and the other settings, as
    /// `elevate serve` reads them) against its hash chains and daily seals: reports every
    /// edited, deleted, inserted or reordered event and every day that no longer matches its
    /// seal. Exits 0 when the trail is intact, 7 when anything is wrong, 2 for bad settings, 5
    /// when the store cannot be read
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Output: lines for people, or the report as JSON for scripts
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

fn duration(s: &str) -> Result<IsoDuration, String> {
    IsoDuration::parse(s).map_err(|e| e.to_string())
}

fn justification(s: &str) -> Result<Justification, String> {
    Justification::parse(s).map_err(|e| e.to_string())
}

fn ticket_system(s: &str) -> Result<TicketSystem, String> {
    TicketSystem::parse(s).map_err(|e| e.to_string())
}

fn ticket_number(s: &str) -> Result<TicketNumber, String> {
    TicketNumber::parse(s).map_err(|e| e.to_string())
}

fn rule(s: &str) -> Result<RuleId, String> {
    RuleId::parse(s).map_err(|e| e.to_string())
}

fn activation_id(s: &str) -> Result<ActivationId, String> {
    ActivationId::parse(s).map_err(|e| e.to_string())
}

fn principal_id(s: &str) -> Result<PrincipalId, String> {
    PrincipalId::parse(s).map_err(|e| e.to_string())
}

fn status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        format!("not a status; one of {}", all.join(", "))
    })
}

fn instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "not an RFC 3339 time such as 2026-11-25T14:00:00Z".to_owned())
}
