//! `activate --wait`: polls the activation until it is `Active`, has ended otherwise, or the
//! client's own `--timeout` has passed, with a progress line on stderr.
//!
//! Must never decide an activation's fate: it only reads what Elevate says. A failed poll (no
//! answer, a 5xx) is retried until the timeout; a refusal or a lost sign-in ends the wait.

use std::io::IsTerminal as _;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::domain::activation::Status;

use super::client::ApiClient;
use super::error::CliError;
use super::output::{self, time};
use super::views::{ActivationView, read};

pub struct WaitSettings {
    pub timeout: Duration,
    pub interval: Duration,
}

/// Where the wait ended: the last answer read, and whether that is success.
pub struct Waited {
    pub body: Value,
    pub verdict: Result<(), CliError>,
}

/// What an activation's status means for the wait.
enum Verdict {
    Granted,
    Pending,
    Ended(CliError),
}

fn judge(a: &ActivationView) -> Result<Verdict, CliError> {
    let status = Status::parse(&a.status).ok_or_else(|| {
        CliError::unavailable(
            "UnexpectedAnswer",
            format!("activation {} has a status this client does not know: `{}`", a.id, a.status),
        )
    })?;
    let ended = |message: String| Ok(Verdict::Ended(CliError::Ended { status: status.as_str().to_owned(), message }));
    match status {
        Status::Active => Ok(Verdict::Granted),
        Status::PendingApproval | Status::Scheduled | Status::Provisioning => Ok(Verdict::Pending),
        Status::Denied => match a.denial() {
            Some(d) => ended(format!(
                "activation {} was denied by {}: {}",
                a.id,
                d.approver_id,
                d.justification.as_deref().unwrap_or("no reason given")
            )),
            None => ended(format!("activation {} was denied", a.id)),
        },
        Status::TimedOut => ended(format!(
            "nobody decided on activation {} in time{}",
            a.id,
            a.approval_timeout_at.as_ref().map(|t| format!(" (by {})", time(t))).unwrap_or_default()
        )),
        Status::Failed => match &a.failure {
            Some(f) => ended(format!("activation {} failed: {}: {}", a.id, f.code, f.message)),
            None => ended(format!("activation {} failed", a.id)),
        },
        Status::Canceled => ended(format!("activation {} was canceled", a.id)),
        Status::Expired | Status::Deactivated => {
            ended(format!("activation {} has already ended ({})", a.id, status.as_str()))
        }
    }
}

/// One progress line: where the request stands.
fn progress(a: &ActivationView) -> String {
    match a.status.as_str() {
        "PendingApproval" => format!(
            "activation {}: waiting for approval ({} of {}{})",
            a.id,
            a.approvals_given(),
            a.min_approvals.unwrap_or(1),
            a.approval_timeout_at.as_ref().map(|t| format!(", decide by {}", time(t))).unwrap_or_default()
        ),
        "Scheduled" => format!(
            "activation {}: scheduled{}",
            a.id,
            a.start_at.as_ref().map(|t| format!(" to start at {}", time(t))).unwrap_or_default()
        ),
        "Provisioning" => format!("activation {}: the role is being granted", a.id),
        other => format!("activation {}: {other}", a.id),
    }
}

/// Polls until the activation settles or `settings.timeout` passes. `Err` only when the wait
/// cannot go on (sign-in lost, a refusal).
pub async fn until_active(
    client: &ApiClient,
    body: Value,
    view: ActivationView,
    settings: &WaitSettings,
) -> Result<Waited, CliError> {
    let started = Instant::now();
    let deadline = started + settings.timeout;
    let tty = std::io::stderr().is_terminal();
    let path = format!("/api/activations/{}", crate::endpoint::encode_component(&view.id));
    let mut last_line = super::error::one_line(&progress(&view));
    output::note(&format!("{last_line}; waiting up to {}s", settings.timeout.as_secs()));
    let (mut body, mut view) = (body, view);
    loop {
        match judge(&view)? {
            Verdict::Granted => return finish(tty, body, Ok(())),
            Verdict::Ended(e) => return finish(tty, body, Err(e)),
            Verdict::Pending => {}
        }
        let now = Instant::now();
        if now >= deadline {
            let error = CliError::StillPending {
                message: format!(
                    "activation {} is still {} after {}s",
                    view.id,
                    view.status,
                    settings.timeout.as_secs()
                ),
                hint: format!("follow it with: elevate show {id}\nwithdraw it with: elevate cancel {id}", id = view.id),
            };
            return finish(tty, body, Err(error));
        }
        tokio::time::sleep(settings.interval.min(deadline - now)).await;
        match client.get(&path, &[]).await {
            Ok(next) => {
                view = read("an activation", &next)?;
                body = next;
                let line = super::error::one_line(&progress(&view));
                if tty {
                    output::note_inline(&format!("{line} ({}s)", started.elapsed().as_secs()));
                } else if line != last_line {
                    output::note(&line);
                }
                last_line = line;
            }
            Err(e @ CliError::Unavailable { .. }) => {
                output::note(&format!("{}; trying again", super::error::one_line(&e.to_string())));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Ends the progress: a terminal's in-place line is closed; elsewhere the last status change
/// has been printed already.
fn finish(tty: bool, body: Value, verdict: Result<(), CliError>) -> Result<Waited, CliError> {
    if tty {
        output::note("");
    }
    Ok(Waited { body, verdict })
}
