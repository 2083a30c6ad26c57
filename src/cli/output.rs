//! What the client prints: aligned tables and `key: value` details for people, or the API's
//! JSON, pretty-printed, for scripts (`--output json`). Lists print as a JSON array of their
//! items, gathered over every page read.
//!
//! Must never print text from the API (justifications, names, messages) with its control
//! characters: a justification is anybody's input, and an escape sequence would reach the
//! terminal. Every cell and value goes through `one_line`.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::{CliError, one_line};
use super::views::{ActivationView, AuditView, EligibilityView, MeView, PreviewView};

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and details for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Writes to stdout; a closed pipe (`| head`) ends output quietly rather than failing.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let written =
        out.write_all(text.as_bytes()).and_then(|()| if text.ends_with('\n') { Ok(()) } else { out.write_all(b"\n") });
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::usage(format!("cannot write the output: {e}"))),
    }
}

/// A progress or notice line on stderr (never the data: that goes to stdout).
pub fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// Rewrites the current stderr line (a terminal's progress line).
pub fn note_inline(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[K{text}");
    let _ = err.flush();
}

pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A time as people read it: `2026-11-25 14:00 UTC`.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn maybe_time(t: Option<&DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "-".into())
}

/// At most `max` characters, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    let clean = one_line(text);
    if clean.chars().count() <= max {
        return clean;
    }
    let mut out: String = clean.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Columns aligned on the widest cell; the last column is not padded.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self { rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| one_line(c)).collect());
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| self.rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let width = widths.get(i).copied().unwrap_or(0);
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Label: value` lines, labels aligned.
pub struct Details {
    pairs: Vec<(String, String)>,
}

impl Details {
    pub fn new() -> Self {
        Self { pairs: Vec::new() }
    }

    pub fn add(&mut self, label: &str, value: impl AsRef<str>) -> &mut Self {
        self.pairs.push((label.to_owned(), one_line(value.as_ref())));
        self
    }

    pub fn add_some(&mut self, label: &str, value: Option<impl AsRef<str>>) -> &mut Self {
        if let Some(v) = value {
            self.add(label, v);
        }
        self
    }

    pub fn render(&self) -> String {
        let width = self.pairs.iter().map(|(l, _)| l.chars().count() + 1).max().unwrap_or(0);
        self.pairs.iter().map(|(l, v)| format!("{:<width$} {v}\n", format!("{l}:"))).collect()
    }
}

impl Default for Details {
    fn default() -> Self {
        Self::new()
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() { "-".into() } else { items.join(", ") }
}

pub fn eligibilities(rules: &[EligibilityView]) -> String {
    if rules.is_empty() {
        return "No eligible roles.\n".into();
    }
    let mut table = Table::new(&["RULE", "ROLES", "SCOPE", "MAX", "APPROVAL", "REQUIRES", "UNTIL"]);
    for r in rules {
        let roles: Vec<String> = r.roles.iter().map(|x| x.name.clone().unwrap_or_else(|| x.id.clone())).collect();
        let approval = match (r.approval_required, r.min_approvals) {
            (false, _) => "none".to_owned(),
            (true, Some(n)) => format!("{n} within {}", r.approval_timeout.as_deref().unwrap_or("?")),
            (true, None) => "required".to_owned(),
        };
        let mut requires: Vec<String> = Vec::new();
        if r.require_mfa {
            requires.push("mfa".into());
        }
        if let Some(c) = &r.auth_context {
            requires.push(format!("context {c}"));
        }
        if r.require_justification {
            requires.push("justification".into());
        }
        if r.require_ticket {
            requires.push("ticket".into());
        }
        table.row(vec![
            r.rule_id.clone(),
            roles.join(", "),
            r.scope.clone(),
            r.max_duration.clone(),
            approval,
            list_or_dash(&requires),
            maybe_time(r.eligible_until.as_ref()),
        ]);
    }
    table.render()
}

pub fn activations(items: &[ActivationView]) -> String {
    if items.is_empty() {
        return "No activations.\n".into();
    }
    let mut table = Table::new(&["ID", "STATUS", "ROLE", "SCOPE", "PRINCIPAL", "STARTS", "EXPIRES"]);
    for a in items {
        table.row(vec![
            a.id.clone(),
            a.status.clone(),
            a.role().to_owned(),
            a.scope.clone(),
            a.principal_id.clone(),
            maybe_time(a.start_at.as_ref()),
            maybe_time(a.expires_at.as_ref()),
        ]);
    }
    table.render()
}

pub fn approvals(items: &[ActivationView]) -> String {
    if items.is_empty() {
        return "Nothing waits for your decision.\n".into();
    }
    let mut table =
        Table::new(&["ID", "REQUESTER", "ROLE", "SCOPE", "DURATION", "APPROVALS", "DECIDE BY", "JUSTIFICATION"]);
    for a in items {
        let (given, needed) = match &a.pending_extension {
            Some(x) => (0, x.min_approvals),
            None => (a.approvals_given(), a.min_approvals.unwrap_or(1)),
        };
        let by = a.pending_extension.as_ref().map(|x| x.timeout_at).or(a.approval_timeout_at);
        let what = match &a.pending_extension {
            Some(x) => format!("+{} (extension)", x.duration),
            None => a.duration.clone(),
        };
        table.row(vec![
            a.id.clone(),
            a.principal_id.clone(),
            a.role().to_owned(),
            a.scope.clone(),
            what,
            format!("{given} of {needed}"),
            maybe_time(by.as_ref()),
            clip(a.justification.as_deref().unwrap_or("-"), 60),
        ]);
    }
    table.render()
}

/// One activation, in full (with its history when the answer carries it).
pub fn activation(a: &ActivationView) -> String {
    let mut d = Details::new();
    d.add("ID", &a.id)
        .add("Status", &a.status)
        .add("Role", a.role())
        .add("Scope", &a.scope)
        .add("Rule", &a.rule_id)
        .add("Principal", &a.principal_id)
        .add("Duration", &a.duration)
        .add("Requested", time(&a.requested_at))
        .add_some("Starts", a.start_at.as_ref().map(time))
        .add_some(
            "Expires",
            a.expires_at.as_ref().map(|t| {
                if a.expiry_limited_by_eligibility { format!("{} (when eligibility ends)", time(t)) } else { time(t) }
            }),
        )
        .add_some("Justification", a.justification.as_deref())
        .add_some("Ticket", a.ticket.as_ref().map(|t| format!("{} {}", t.system, t.number)));
    if a.status == "PendingApproval" {
        d.add("Approvals", format!("{} of {}", a.approvals_given(), a.min_approvals.unwrap_or(1)));
        d.add_some("Decide by", a.approval_timeout_at.as_ref().map(time));
    }
    if let Some(x) = &a.pending_extension {
        d.add(
            "Extension",
            format!("+{} awaiting {} approval(s) by {}", x.duration, x.min_approvals, time(&x.timeout_at)),
        );
    }
    if let Some(f) = &a.failure {
        d.add("Failure", format!("{}: {}", f.code, f.message));
    }
    if let Some(can) = a.can_decide {
        d.add("You may decide", yes_no(can));
    }
    for decision in &a.approvals {
        let on = if decision.on.as_deref() == Some("Extension") { " (extension)" } else { "" };
        d.add(
            "Decision",
            format!(
                "{}{on} by {} at {}: {}",
                decision.decision,
                decision.approver_id,
                time(&decision.at),
                decision.justification.as_deref().unwrap_or("-")
            ),
        );
    }
    let mut out = d.render();
    if let Some(history) = a.history.as_ref().filter(|h| !h.is_empty()) {
        out.push_str("\nHistory:\n");
        let mut table = Table::new(&["AT", "ACTION", "STATUS", "BY", "DETAIL"]);
        for e in history {
            table.row(vec![
                time(&e.at),
                e.action.clone(),
                status_change(e),
                e.actor.describe(),
                e.detail.clone().unwrap_or_default(),
            ]);
        }
        for line in table.render().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn status_change(e: &AuditView) -> String {
    match &e.status_before {
        Some(before) if *before != e.status_after => format!("{before} → {}", e.status_after),
        _ => e.status_after.clone(),
    }
}

pub fn audit(events: &[AuditView]) -> String {
    if events.is_empty() {
        return "No audit events.\n".into();
    }
    let mut table = Table::new(&["AT", "ACTION", "ACTIVATION", "PRINCIPAL", "BY", "STATUS", "RULE", "DETAIL"]);
    for e in events {
        table.row(vec![
            time(&e.at),
            e.action.clone(),
            e.activation_id.clone(),
            e.principal_id.clone(),
            e.actor.describe(),
            status_change(e),
            e.rule_id.clone(),
            clip(e.detail.as_deref().or(e.justification.as_deref()).unwrap_or(""), 60),
        ]);
    }
    table.render()
}

pub fn preview(p: &PreviewView) -> String {
    let mut d = Details::new();
    d.add("Dry run", "nothing was requested or stored")
        .add("Would be", &p.would_be)
        .add("Ready", if p.ready { "yes" } else { "no: see Needs" })
        .add("Rule", &p.rule_id)
        .add("Principal", &p.principal_id)
        .add("Role", p.role_name.as_deref().unwrap_or(&p.role_definition_id))
        .add("Scope", &p.scope)
        .add("Duration", &p.duration)
        .add("Starts", time(&p.start_at))
        .add("Expires", time(&p.expires_at));
    if let Some(a) = &p.approval {
        d.add("Approval", format!("{} of {} within {}", a.min_approvals, list_or_dash(&a.approvers), a.timeout));
    }
    for need in &p.needs {
        d.add("Needs", format!("{}: {}", need.requirement, need.message));
    }
    d.render()
}

pub fn me(m: &MeView) -> String {
    let mut d = Details::new();
    d.add("Principal", &m.principal_id)
        .add_some("Name", m.name.as_deref())
        .add_some("Tenant", m.tenant_id.as_deref())
        .add("Kind", if m.app_only { "application" } else { "user" })
        .add_some("App id", m.app_id.as_deref())
        .add("Roles", list_or_dash(&m.roles))
        .add(
            "Groups",
            if m.groups_overage {
                "too many for the token (read from the directory)".into()
            } else {
                list_or_dash(&m.groups)
            },
        )
        .add("MFA", yes_no(m.mfa))
        .add("Auth contexts", list_or_dash(&m.auth_contexts));
    d.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell_and_clean_their_cells() {
        let mut t = Table::new(&["ID", "STATUS", "NOTE"]);
        t.row(vec!["1".into(), "Active".into(), "a\u{1b}[2Jb".into()]);
        t.row(vec!["22".into(), "PendingApproval".into(), "".into()]);
        assert_eq!(t.render(), "ID  STATUS           NOTE\n1   Active           a [2Jb\n22  PendingApproval\n");
    }

    #[test]
    fn details_align_their_labels() {
        let mut d = Details::new();
        d.add("ID", "x").add("Status", "Active").add_some("Ticket", None::<&str>);
        assert_eq!(d.render(), "ID:     x\nStatus: Active\n");
    }

    #[test]
    fn long_text_is_clipped() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
