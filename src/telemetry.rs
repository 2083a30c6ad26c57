//! Logging: JSON lines under the Functions host (App Insights ingests them), readable text in a
//! terminal. `RUST_LOG` filters (default `info`). Nothing here may log secrets or tokens.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber once; later calls are ignored (tests start many apps).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.compact().with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}
