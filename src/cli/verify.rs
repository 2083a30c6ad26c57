//! `elevate audit verify`: checks the audit trail in the store itself against its hash chains
//! and daily seals (`service::audit_chain::verify`) and says which activation, which event and
//! what is wrong. The store is the one `elevate serve` would use, from the same settings.
//!
//! Writes no audit data, seal or activation (SQLite applies pending schema migrations on open,
//! as `serve` would; a Table store's list reads tidy stale index entries, as they always do).
//! Must never print a setting's value (connection strings hold keys).

use std::sync::Arc;

use crate::adapters::store::sqlite::SqliteStore;
use crate::clock::{Clock, SystemClock};
use crate::config::{RunMode, Settings, StoreSetting};
use crate::service::audit_chain::{Finding, VerifyReport, verify};
use crate::service::ports::Store;

use super::Env;
use super::args::VerifyArgs;
use super::error::CliError;
use super::output::{self, Format, print};

pub async fn run(args: &VerifyArgs, env: Env<'_>) -> Result<(), CliError> {
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(ToOwned::to_owned));
    let settings =
        Settings::from_env(RunMode::Standalone, env, exe_dir.as_deref()).map_err(|e| CliError::usage(e.to_string()))?;
    let store: Arc<dyn Store> = match &settings.store {
        StoreSetting::Sqlite(path) => {
            if !path.exists() {
                return Err(CliError::usage(format!(
                    "there is no SQLite store at `{}` (ELEVATE_STORE)",
                    path.display()
                )));
            }
            Arc::new(SqliteStore::open(path).map_err(|e| CliError::unavailable("StoreUnavailable", e.to_string()))?)
        }
        StoreSetting::Tables(tables) => Arc::new(
            crate::startup::table_store(tables)
                .map_err(|e| CliError::unavailable("StoreUnavailable", e.to_string()))?,
        ),
    };
    let report = verify(&*store, SystemClock.now())
        .await
        .map_err(|e| CliError::unavailable("StoreUnavailable", format!("cannot read the audit: {e}")))?;
    match args.output {
        Format::Json => print(&output::json(
            &serde_json::to_value(&report)
                .map_err(|e| CliError::unavailable("Internal", format!("cannot encode the report: {e}")))?,
        ))?,
        Format::Table => print(&render(&report))?,
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(CliError::Tampered {
            message: format!("the audit trail was tampered with: {} problem(s) found", report.problems.len()),
        })
    }
}

/// Where a finding is: the activation and event, or the day.
fn place(f: &Finding) -> String {
    let mut out = Vec::new();
    if let Some(a) = f.activation {
        out.push(format!("activation {a}"));
    }
    match (f.position, f.event) {
        (Some(p), Some(e)) => out.push(format!("event {p} ({e})")),
        (None, Some(e)) => out.push(format!("event {e}")),
        (Some(p), None) => out.push(format!("event {p}")),
        (None, None) => {}
    }
    if let Some(d) = f.day {
        out.push(format!("day {d}"));
    }
    out.join(" ")
}

/// One line per finding, problems first, then a summary.
pub fn render(report: &VerifyReport) -> String {
    let mut out = String::new();
    for f in &report.problems {
        out.push_str(&format!("TAMPERED  {}: {}\n", place(f), super::error::one_line(&f.message)));
    }
    for f in &report.notes {
        out.push_str(&format!("note      {}: {}\n", place(f), super::error::one_line(&f.message)));
    }
    out.push_str(&format!(
        "checked {} activation(s), {} event(s) ({} unchained legacy), {} sealed day(s): {}\n",
        report.activations,
        report.events,
        report.legacy_events,
        report.sealed_days,
        if report.is_clean() { "intact".to_owned() } else { format!("{} problem(s)", report.problems.len()) }
    ));
    out
}
