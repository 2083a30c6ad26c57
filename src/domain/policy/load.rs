//! Loading the YAML policy file: every problem reported with its file, rule, field and line.

use super::*;

// ----- loading -------------------------------------------------------------------------------

/// One problem in a policy file: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem {
    pub file: String,
    /// `rules[2] (prod-contributor).maxDuration`, or the serde path for structural errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

/// Every problem found in a policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError(pub Vec<PolicyProblem>);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid policy ({} problem{})", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDefaults {
    max_duration: Option<String>,
    require_mfa: Option<bool>,
    require_justification: Option<bool>,
    require_ticket: Option<bool>,
    auth_context: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawApproval {
    approvers: Vec<String>,
    min_approvals: Option<u32>,
    timeout: Option<String>,
    approver_mfa: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    id: String,
    description: Option<String>,
    scope: String,
    roles: Vec<String>,
    principals: Vec<String>,
    max_duration: Option<String>,
    require_mfa: Option<bool>,
    require_justification: Option<bool>,
    require_ticket: Option<bool>,
    auth_context: Option<String>,
    approval: Option<RawApproval>,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStanding {
    principal: String,
    role: String,
    scope: String,
    reason: String,
    owner: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFrequent {
    count: usize,
    window: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGovernance {
    privileged_roles: Option<Vec<String>>,
    max_permanent_holders: Option<usize>,
    stale_after_days: Option<u32>,
    frequent_activations: Option<RawFrequent>,
    long_maximum: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    version: u32,
    #[serde(default)]
    defaults: RawDefaults,
    rules: Vec<RawRule>,
    #[serde(default)]
    standing: Vec<RawStanding>,
    #[serde(default)]
    governance: RawGovernance,
    #[serde(default)]
    reviews: Vec<RawReview>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawReviewers {
    Mode(String),
    Named(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawReview {
    id: String,
    description: Option<String>,
    rules: Vec<String>,
    reviewers: RawReviewers,
    starts_at: String,
    every_days: Option<u32>,
    duration_days: u32,
    when_undecided: Option<Undecided>,
    remind_days_before: Option<u32>,
    inactive_days: Option<u32>,
}

/// A role named in `standing:` or `governance:`: read in the scope's kind when there is one, else
/// as an Azure role and then as a directory role.
fn any_role(value: &str, scope: Option<&Scope>) -> Result<RoleDefinitionId, ParseError> {
    match scope {
        Some(scope) => scope.kind().parse_role(value),
        None => ScopeKind::Azure
            .parse_role(value)
            .or_else(|first| ScopeKind::Directory.parse_role(value).map_err(|_| first)),
    }
}

fn load_standing(p: &mut Problems<'_>, raw: &[RawStanding]) -> Vec<StandingException> {
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let here = |field: &str| format!("standing[{i}].{field}");
        let id = s.principal.trim();
        let id = id.strip_prefix("user:").or_else(|| id.strip_prefix("group:")).unwrap_or(id);
        let principal = p.parse(|| here("principal"), PrincipalId::parse(id));
        let scope = p.parse(|| here("scope"), Scope::parse(&s.scope));
        let role = p.parse(|| here("role"), any_role(&s.role, scope.as_ref()));
        if s.reason.trim().is_empty() {
            p.add(here("reason"), "say why this assignment stays standing");
        }
        if s.owner.trim().is_empty() {
            p.add(here("owner"), "name who answers for this assignment");
        }
        if let (Some(principal), Some(role), Some(scope)) = (principal, role, scope) {
            out.push(StandingException {
                principal,
                role,
                scope,
                reason: s.reason.trim().to_owned(),
                owner: s.owner.trim().to_owned(),
            });
        }
    }
    out
}

fn load_governance(p: &mut Problems<'_>, raw: &RawGovernance) -> GovernanceSettings {
    let mut g = GovernanceSettings::default();
    if let Some(roles) = &raw.privileged_roles {
        g.privileged_roles = roles
            .iter()
            .enumerate()
            .filter_map(|(i, r)| p.parse(|| format!("governance.privilegedRoles[{i}]"), any_role(r, None)))
            .collect();
    }
    if let Some(n) = raw.max_permanent_holders {
        g.max_permanent_holders = n;
    }
    if let Some(days) = raw.stale_after_days {
        if !(1..=3650).contains(&days) {
            p.add("governance.staleAfterDays".into(), "must be a number of days from 1 to 3650");
        }
        g.stale_after = TimeDelta::days(i64::from(days));
    }
    if let Some(f) = &raw.frequent_activations {
        if f.count == 0 {
            p.add("governance.frequentActivations.count".into(), "must be at least 1");
        }
        g.frequent_count = f.count;
        if let Some(window) = p.parse(|| "governance.frequentActivations.window".into(), IsoDuration::parse(&f.window))
        {
            check_bounds(
                p,
                "governance.frequentActivations.window".into(),
                window,
                IsoDuration::from_hours(1),
                IsoDuration::from_hours(90 * 24),
            );
            g.frequent_window = window.as_delta();
        }
    }
    if let Some(text) = &raw.long_maximum
        && let Some(max) = p.parse(|| "governance.longMaximum".into(), IsoDuration::parse(text))
    {
        g.long_maximum = max;
    }
    g
}

fn load_reviews(p: &mut Problems<'_>, raw: &[RawReview], rules: &[Rule]) -> Vec<ReviewDefinition> {
    let mut out: Vec<ReviewDefinition> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let here = |field: &str| format!("reviews[{i}].{field}");
        let id = p.parse(|| here("id"), RuleId::parse(&r.id));
        if let Some(id) = &id
            && out.iter().any(|o| &o.id == id)
        {
            p.add(here("id"), format!("review `{id}` is declared twice"));
        }
        if r.rules.is_empty() {
            p.add(here("rules"), "name at least one rule to review");
        }
        let mut reviewed = Vec::new();
        for (j, text) in r.rules.iter().enumerate() {
            let Some(rule_id) = p.parse(|| format!("reviews[{i}].rules[{j}]"), RuleId::parse(text)) else { continue };
            match rules.iter().find(|rule| rule.id == rule_id) {
                Some(_) if reviewed.contains(&rule_id) => {
                    p.add(format!("reviews[{i}].rules[{j}]"), format!("rule `{rule_id}` is named twice"));
                }
                Some(_) => reviewed.push(rule_id),
                None => p.add(format!("reviews[{i}].rules[{j}]"), format!("no rule `{rule_id}` in this policy")),
            }
        }
        let reviewers = match &r.reviewers {
            RawReviewers::Mode(mode) if mode == "approvers" => {
                for rule in rules.iter().filter(|rule| reviewed.contains(&rule.id) && rule.approval.is_none()) {
                    p.add(
                        here("reviewers"),
                        format!("rule `{}` has no approvers, so nobody could review it as its approver", rule.id),
                    );
                }
                Some(Reviewers::Approvers)
            }
            RawReviewers::Mode(mode) if mode == "self" => {
                for rule in rules.iter().filter(|rule| reviewed.contains(&rule.id)) {
                    if let Some(group) = rule.principals.iter().find(|e| matches!(e, PrincipalRef::Group(_))) {
                        p.add(
                            here("reviewers"),
                            format!("self-review covers user entries only; rule `{}` names `{group}`", rule.id),
                        );
                    }
                }
                Some(Reviewers::SelfReview)
            }
            RawReviewers::Mode(other) => {
                p.add(
                    here("reviewers"),
                    format!("`{other}` is not `approvers`, `self` or a list of `user:<id>`/`group:<id>`"),
                );
                None
            }
            RawReviewers::Named(names) if names.is_empty() => {
                p.add(here("reviewers"), "name at least one reviewer");
                None
            }
            RawReviewers::Named(names) => Some(Reviewers::Named(
                names
                    .iter()
                    .enumerate()
                    .filter_map(|(j, n)| p.parse(|| format!("reviews[{i}].reviewers[{j}]"), PrincipalRef::parse(n)))
                    .collect(),
            )),
        };
        let starts_at = match DateTime::parse_from_rfc3339(r.starts_at.trim()) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(_) => {
                p.add(
                    here("startsAt"),
                    format!("`{}` is not an RFC 3339 time such as `2027-01-01T00:00:00Z`", r.starts_at),
                );
                None
            }
        };
        let days = |p: &mut Problems<'_>, field: &str, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Some(TimeDelta::days(i64::from(value)))
            } else {
                p.add(here(field), format!("must be a number of days from {min} to {max}"));
                None
            }
        };
        let every = r.every_days.map(|d| days(p, "everyDays", d, 1, 3650));
        let duration = days(p, "durationDays", r.duration_days, 1, 365);
        if let (Some(Some(every)), Some(duration)) = (every, duration)
            && duration > every
        {
            p.add(here("durationDays"), "a run must end before the next one starts: at most `everyDays`");
        }
        let remind_before = days(p, "remindDaysBefore", r.remind_days_before.unwrap_or(3), 0, 365);
        if let (Some(remind), Some(duration)) = (remind_before, duration)
            && remind >= duration
            && remind > TimeDelta::zero()
        {
            p.add(here("remindDaysBefore"), "must be less than `durationDays`");
        }
        let inactive_after = days(p, "inactiveDays", r.inactive_days.unwrap_or(30), 1, 3650);
        if let (
            Some(id),
            Some(reviewers),
            Some(starts_at),
            Some(every),
            Some(duration),
            Some(remind_before),
            Some(inactive_after),
        ) = (
            id,
            reviewers,
            starts_at,
            every.map_or(Some(None), |e| e.map(Some)),
            duration,
            remind_before,
            inactive_after,
        ) {
            out.push(ReviewDefinition {
                id,
                description: r.description.clone(),
                rules: reviewed,
                reviewers,
                starts_at,
                every,
                duration,
                when_undecided: r.when_undecided.unwrap_or(Undecided::Keep),
                remind_before,
                inactive_after,
            });
        }
    }
    out
}

/// Collects problems with their paths while a raw policy is turned into a [`Policy`].
struct Problems<'a> {
    file: &'a str,
    found: Vec<PolicyProblem>,
}

impl Problems<'_> {
    fn add(&mut self, path: String, message: impl Into<String>) {
        self.found.push(PolicyProblem { file: self.file.to_owned(), path, message: message.into() });
    }

    fn parse<T>(&mut self, path: impl Fn() -> String, result: Result<T, ParseError>) -> Option<T> {
        result.map_err(|e| self.add(path(), e.to_string())).ok()
    }
}

impl Policy {
    /// Parses and validates a policy document (YAML; JSON is valid YAML). `file` names the source
    /// in every problem reported.
    pub fn from_yaml(file: &str, text: &str) -> Result<Policy, PolicyError> {
        let problem =
            |path: String, message: String| PolicyError(vec![PolicyProblem { file: file.to_owned(), path, message }]);
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawPolicy = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let location =
                inner.location().map(|l| format!(" (line {}, column {})", l.line(), l.column())).unwrap_or_default();
            problem(if path == "." { String::new() } else { path }, format!("{inner}{location}"))
        })?;
        let mut p = Problems { file, found: Vec::new() };
        if raw.version != 1 {
            p.add("version".into(), format!("unsupported version `{}`; this Elevate reads version 1", raw.version));
        }
        let d = &raw.defaults;
        let default_max = match &d.max_duration {
            Some(text) => p.parse(|| "defaults.maxDuration".into(), IsoDuration::parse(text)),
            None => Some(IsoDuration::from_hours(8)),
        };
        let default_context = match &d.auth_context {
            Some(text) => p.parse(|| "defaults.authContext".into(), AuthContextId::parse(text)),
            None => None,
        };
        if let Some(max) = default_max {
            check_bounds(&mut p, "defaults.maxDuration".into(), max, MIN_ACTIVATION, MAX_ACTIVATION);
        }
        if raw.rules.is_empty() {
            p.add("rules".into(), "the policy has no rules, so nobody could activate anything");
        }
        let mut ids = HashSet::new();
        let mut rules = Vec::new();
        for (index, r) in raw.rules.iter().enumerate() {
            let here = |field: &str| format!("rules[{index}] ({}).{field}", r.id);
            let id = p.parse(|| format!("rules[{index}].id"), RuleId::parse(&r.id));
            if let Some(id) = &id
                && !ids.insert(id.clone())
            {
                p.add(format!("rules[{index}].id"), format!("rule id `{id}` is used more than once"));
            }
            let scope = p.parse(|| here("scope"), Scope::parse(&r.scope));
            if r.roles.is_empty() {
                p.add(here("roles"), "must name at least one role");
            }
            let roles: Vec<_> = r
                .roles
                .iter()
                .enumerate()
                .filter_map(|(i, role)| {
                    // Roles are read in the scope's kind: `Owner` of a subscription, `owner` of a group.
                    let kind = scope.as_ref().map_or(ScopeKind::Azure, Scope::kind);
                    p.parse(|| here(&format!("roles[{i}]")), kind.parse_role(role))
                })
                .collect();
            if let Some(scope) = &scope {
                for (i, role) in roles.iter().enumerate() {
                    if !role_fits_scope(*role, scope) {
                        p.add(
                            here(&format!("roles[{i}]")),
                            format!(
                                "`{}` cannot be assigned at an administrative unit (graph-spec: only some directory roles can); use `directory:/`",
                                role.built_in_name().unwrap_or("this role")
                            ),
                        );
                    }
                }
            }
            if r.principals.is_empty() {
                p.add(here("principals"), "must name at least one principal");
            }
            let principals: Vec<_> = r
                .principals
                .iter()
                .enumerate()
                .filter_map(|(i, who)| p.parse(|| here(&format!("principals[{i}]")), PrincipalRef::parse(who)))
                .collect();
            let max_duration = match &r.max_duration {
                Some(text) => p.parse(|| here("maxDuration"), IsoDuration::parse(text)),
                None => default_max,
            };
            if let (Some(max), Some(_)) = (max_duration, &r.max_duration) {
                check_bounds(&mut p, here("maxDuration"), max, MIN_ACTIVATION, MAX_ACTIVATION);
            }
            let auth_context = match &r.auth_context {
                Some(text) => p.parse(|| here("authContext"), AuthContextId::parse(text)).map(Some),
                None => Some(default_context.clone()),
            };
            let approval = r.approval.as_ref().map(|a| {
                if a.approvers.is_empty() {
                    p.add(here("approval.approvers"), "must name at least one approver");
                }
                let approvers: Vec<_> = a
                    .approvers
                    .iter()
                    .enumerate()
                    .filter_map(|(i, who)| {
                        p.parse(|| here(&format!("approval.approvers[{i}]")), PrincipalRef::parse(who))
                    })
                    .collect();
                let min = a.min_approvals.unwrap_or(1);
                let users_only = approvers.iter().all(|x| matches!(x, PrincipalRef::User(_)));
                if min == 0 || min > u32::from(MAX_MIN_APPROVALS) {
                    p.add(here("approval.minApprovals"), format!("must be between 1 and {MAX_MIN_APPROVALS}"));
                } else if users_only && !approvers.is_empty() && min as usize > approvers.len() {
                    p.add(
                        here("approval.minApprovals"),
                        format!("needs {min} approvals but only {} approver(s) are listed", approvers.len()),
                    );
                }
                let timeout = match &a.timeout {
                    Some(text) => p.parse(|| here("approval.timeout"), IsoDuration::parse(text)),
                    None => Some(IsoDuration::from_hours(24)),
                };
                if let Some(t) = timeout {
                    check_bounds(&mut p, here("approval.timeout"), t, MIN_APPROVAL_WINDOW, MAX_APPROVAL_WINDOW);
                }
                timeout.map(|timeout| ApprovalPolicy {
                    approvers,
                    min_approvals: u8::try_from(min).unwrap_or(MAX_MIN_APPROVALS),
                    timeout,
                    approver_mfa: a.approver_mfa.unwrap_or(false),
                })
            });
            let expires_at = match &r.expires_at {
                Some(text) => match DateTime::parse_from_rfc3339(text.trim()) {
                    Ok(at) => Some(Some(at.with_timezone(&Utc))),
                    Err(_) => {
                        p.add(
                            here("expiresAt"),
                            format!("`{text}` is not an RFC 3339 time such as `2027-06-30T00:00:00Z`"),
                        );
                        None
                    }
                },
                None => Some(None),
            };
            if let (Some(id), Some(scope), Some(max_duration), Some(auth_context), Some(expires_at)) =
                (id, scope, max_duration, auth_context, expires_at)
            {
                let approval = match approval {
                    Some(Some(a)) => Some(a),
                    Some(None) => continue,
                    None => None,
                };
                rules.push(Rule {
                    id,
                    description: r.description.clone(),
                    scope,
                    roles,
                    principals,
                    max_duration,
                    require_mfa: r.require_mfa.or(d.require_mfa).unwrap_or(true),
                    require_justification: r.require_justification.or(d.require_justification).unwrap_or(true),
                    require_ticket: r.require_ticket.or(d.require_ticket).unwrap_or(false),
                    auth_context,
                    approval,
                    expires_at,
                    suspended: Vec::new(),
                });
            }
        }
        let standing = load_standing(&mut p, &raw.standing);
        let governance = load_governance(&mut p, &raw.governance);
        let reviews = load_reviews(&mut p, &raw.reviews, &rules);
        if p.found.is_empty() {
            Ok(Policy { rules, standing, governance, reviews, source: (file.to_owned(), text.to_owned()) })
        } else {
            Err(PolicyError(p.found))
        }
    }
}

fn check_bounds(p: &mut Problems<'_>, path: String, value: IsoDuration, min: IsoDuration, max: IsoDuration) {
    if value < min || value > max {
        p.add(path, format!("`{value}` must lie between `{min}` and `{max}`"));
    }
}
