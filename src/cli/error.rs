//! The command-line client's one error enum. Each variant is one exit code (`EXIT_CODES`), and
//! prints as a single line, `elevate: <code>: <message>`, with an optional hint below it.
//!
//! Must never print a token, a Debug dump or a stack trace: messages are the API's own (with
//! control characters removed) or written here.

use std::process::ExitCode;

/// The exit codes, as `--help` and docs/cli.md show them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  Elevate refused the request (a 4xx answer other than 401: not eligible, policy violation, not found, conflict)
  2  usage error: bad or missing arguments, an unusable --url
  3  sign-in needed: no token, the token was refused, or a claims challenge (MFA, authentication context)
  4  the activation ended without access while waiting: Denied, TimedOut, Failed, Canceled, Expired
  5  Elevate could not be reached, answered 5xx, or answered something unreadable
  6  --wait gave up after --timeout: the request is still open (see `elevate show <id>`)
  7  audit verify: the audit trail was tampered with (edited, deleted, inserted or reordered events, or a broken seal)";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments or settings that cannot work (after clap's own checks, which also exit 2).
    #[error("{0}")]
    Usage(String),
    /// A 4xx answer other than 401, with the API's stable code and message.
    #[error("{message}")]
    Refused { code: String, message: String, hint: Option<String> },
    /// No usable credentials: none given, the Azure CLI could not give one, or a 401.
    #[error("{message}")]
    SignIn { code: String, message: String, hint: Option<String> },
    /// `--wait` saw the activation reach a final status other than `Active`.
    #[error("{message}")]
    Ended { status: String, message: String },
    /// `--wait` ran out of time with the request still open.
    #[error("{message}")]
    StillPending { message: String, hint: String },
    /// No answer, a 5xx, or an answer that is not what the API promises.
    #[error("{message}")]
    Unavailable { code: String, message: String },
    /// `audit verify` found the trail tampered with.
    #[error("{message}")]
    Tampered { message: String },
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        CliError::Unavailable { code: code.to_owned(), message: message.into() }
    }

    /// The process exit code of this error (`EXIT_CODES`).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::SignIn { .. } => 3,
            CliError::Ended { .. } => 4,
            CliError::Unavailable { .. } => 5,
            CliError::StillPending { .. } => 6,
            CliError::Tampered { .. } => 7,
        }
    }

    /// The short code printed after `elevate:`: the API's own where there is one.
    pub fn code(&self) -> &str {
        match self {
            CliError::Usage(_) => "UsageError",
            CliError::Refused { code, .. } | CliError::SignIn { code, .. } | CliError::Unavailable { code, .. } => code,
            CliError::Ended { status, .. } => status,
            CliError::StillPending { .. } => "StillPending",
            CliError::Tampered { .. } => "AuditTampered",
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            CliError::Refused { hint, .. } | CliError::SignIn { hint, .. } => hint.as_deref(),
            CliError::StillPending { hint, .. } => Some(hint),
            CliError::Usage(_) | CliError::Ended { .. } | CliError::Unavailable { .. } | CliError::Tampered { .. } => {
                None
            }
        }
    }

    /// What goes to stderr: one line, then the hint (which may be a command to run).
    pub fn report(&self) -> String {
        let mut out = format!("elevate: {}: {}", one_line(self.code()), one_line(&self.to_string()));
        if let Some(hint) = self.hint() {
            for line in hint.lines() {
                out.push_str("\n  ");
                out.push_str(&one_line(line));
            }
        }
        out
    }

    pub fn exit(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }
}

/// Text from elsewhere (the API, a token tool) made safe for one terminal line: control
/// characters, escapes included, become spaces, and runs of whitespace one space.
pub fn one_line(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_documented_exit_code() {
        let cases = [
            (CliError::Refused { code: "Forbidden".into(), message: "m".into(), hint: None }, 1),
            (CliError::usage("m"), 2),
            (CliError::SignIn { code: "MfaRequired".into(), message: "m".into(), hint: None }, 3),
            (CliError::Ended { status: "Denied".into(), message: "m".into() }, 4),
            (CliError::unavailable("ConnectionFailed", "m"), 5),
            (CliError::StillPending { message: "m".into(), hint: "h".into() }, 6),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
            assert!(EXIT_CODES.contains(&format!("\n  {code}  ")), "{code} is documented");
        }
    }

    #[test]
    fn a_report_is_one_line_and_control_characters_cannot_reach_the_terminal() {
        let e = CliError::Refused {
            code: "PolicyViolation".into(),
            message: "bad\n\u{1b}[31mred\ttext".into(),
            hint: None,
        };
        assert_eq!(e.report(), "elevate: PolicyViolation: bad [31mred text");
        let e = CliError::SignIn { code: "C".into(), message: "m".into(), hint: Some("run:\naz login".into()) };
        assert_eq!(e.report(), "elevate: C: m\n  run:\n  az login");
    }
}
