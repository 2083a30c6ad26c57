//! The command-line client in the `elevate` binary: `elevate eligible | activate | list | show |
//! deactivate | extend | cancel | approvals | approve | deny | audit | whoami`, against a running
//! Elevate (`--url` or `ELEVATE_URL`). docs/cli.md is its manual.
//!
//! Layout: `args` (clap), `commands` (one function per command), `client` (HTTP), `token`
//! (where the bearer token comes from), `challenge` (what to do after a 401), `wait`
//! (`activate --wait`), `output` (tables and JSON), `views` (the answers as read), `error` (one
//! enum, one exit code per variant).
//!
//! Must never print a token, a Debug dump or a panic: every failure is one `CliError` line on
//! stderr and its exit code. It talks to Elevate only through the public HTTP API, as any other
//! client would; the library's domain types are used only to parse arguments at the edge. The
//! one exception is `audit verify` (`verify`): it must not trust a running Elevate's word, so
//! it reads the store itself, configured as `elevate serve` is.

mod args;
mod challenge;
mod client;
mod commands;
pub mod error;
mod output;
mod token;
mod verify;
mod views;
mod wait;

use std::process::ExitCode;

pub use args::ClientCommand;
pub use error::{CliError, EXIT_CODES};

/// Reads a setting from the environment: unset and empty are the same.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Runs one client command and reports its outcome as the process's exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::unavailable("RuntimeSetup", format!("cannot start: {e}")))
        .and_then(|runtime| runtime.block_on(commands::execute(command, &env)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::note(&e.report());
            e.exit()
        }
    }
}
