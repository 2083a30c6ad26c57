//! My roles: what the caller may activate and on what terms, and a form per rule. A submit is
//! checked with the same assessment as `validateOnly` first: fields the caller can fix are marked
//! next to the field, a missing sign-in proof sends them to sign in again and back to the filled
//! form, and only a request that would be accepted is made.

use chrono::{DateTime, NaiveDateTime, Utc};
use warp::http::StatusCode;

use crate::domain::duration::IsoDuration;
use crate::domain::ids::{Justification, RuleId, Ticket, TicketNumber, TicketSystem};
use crate::domain::policy::{Rule, Violation};
use crate::domain::scope::Scope;
use crate::service::ports::{Caller, IdempotencyKey};
use crate::service::{ActivationInput, Answer, Preview, WouldBe};

use super::super::csrf::{self, Subject};
use super::super::error::ApiError;
use super::super::pages::{esc, see_other};
use super::{FieldError, Form, HttpContext, Nav, PREFIX, Request, Response, field_error, field_of, render};

/// The form's fields, in the order of the page.
const FIELDS: [&str; 7] = ["role", "scope", "duration", "justification", "ticket", "startAt", "rule"];

/// What one rule's form shows: values to keep, errors by field, a check's result.
#[derive(Default)]
struct FormState {
    values: Option<Form>,
    errors: Vec<FieldError>,
    preview: Option<Preview>,
    /// Shown above the form (a refusal that belongs to no field, or "signed in again").
    notice: Option<String>,
}

impl FormState {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|e| e.field == field).map(|e| e.message.as_str())
    }
}

/// `GET /api/portal/roles`: every rule the caller may activate under. A query naming a rule
/// (`rule=…&duration=…`, the way back from signing in again) fills that rule's form.
pub async fn page(ctx: &HttpContext, req: &Request, who: &Caller) -> Result<Response, ApiError> {
    let filled = Form::from_query(&req.query);
    let state = filled.get("rule").map(|rule| {
        let notice = Some(
            "This form was filled in from the address you followed (the way back from signing in again). Check every \
field before you submit. A justification and a ticket are never carried in an address: enter them here."
                .to_owned(),
        );
        (rule.to_owned(), FormState { values: Some(Form(filled.0.clone())), notice, ..FormState::default() })
    });
    render_page(ctx, who, state, StatusCode::OK).await
}

async fn render_page(
    ctx: &HttpContext,
    who: &Caller,
    state: Option<(String, FormState)>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = ctx.clock.now();
    let rules = match ctx.service.eligibilities(who, now).await {
        Ok(rules) => rules,
        Err(e) => return Ok(super::problem(ctx, Some(who), &ApiError::from(e))),
    };
    let approver_ids: Vec<_> = rules
        .iter()
        .flat_map(|r| r.approval.iter().flat_map(|a| a.approvers.iter()))
        .filter_map(|p| match p {
            crate::domain::ids::PrincipalRef::User(id) => Some(*id),
            crate::domain::ids::PrincipalRef::Group(_) => None,
        })
        .collect();
    let names = ctx.service.display_names(&approver_ids).await;
    let token = csrf::token(ctx, &who.principal_id, Subject::NewActivation);
    let mut body = String::from(
        "<h1>My roles</h1><p>The roles you may activate, and on what terms. Access is granted for the time you ask, \
at most the rule's maximum, and removed when it ends.</p>",
    );
    if rules.is_empty() {
        body.push_str("<p class=\"note\" role=\"status\">No rule makes you eligible for any role now.</p>");
    }
    for (i, rule) in rules.iter().enumerate() {
        let own = state.as_ref().filter(|(id, _)| id == rule.id.as_str()).map(|(_, s)| s);
        body.push_str(&rule_section(i, rule, own, &token, &names, now));
    }
    Ok(render(status, Some(who), Nav::Roles, "My roles", &body))
}

fn rule_section(
    i: usize,
    rule: &Rule,
    state: Option<&FormState>,
    token: &str,
    names: &std::collections::HashMap<crate::domain::ids::PrincipalId, crate::domain::ids::DisplayName>,
    now: DateTime<Utc>,
) -> String {
    let id = format!("r{i}");
    let title = rule.description.as_deref().map_or_else(|| rule.id.to_string(), str::to_owned);
    let roles: Vec<String> = rule.roles.iter().map(super::role_label).collect();
    let mut terms = vec![
        ("Rule", format!("<code>{}</code>", esc(rule.id.as_str()))),
        ("Roles", roles.join(", ")),
        ("Scope", format!("{} <small>and everything below it</small>", super::scope_label(&rule.scope))),
        ("Duration", format!("up to {}", esc(&human_duration(rule.max_duration)))),
    ];
    let mut proof = Vec::new();
    if let Some(context) = &rule.auth_context {
        proof.push(format!("authentication context <code>{}</code>", esc(context.as_str())));
    }
    if rule.require_mfa {
        proof.push("multi-factor authentication".to_owned());
    }
    terms.push(("Sign-in", if proof.is_empty() { "any sign-in".to_owned() } else { proof.join(" and ") }));
    let mut asks = Vec::new();
    if rule.require_justification {
        asks.push("a justification");
    }
    if rule.require_ticket {
        asks.push("a ticket");
    }
    terms.push(("You give", if asks.is_empty() { "nothing more".to_owned() } else { asks.join(" and ") }));
    terms.push((
        "Approval",
        match &rule.approval {
            None => "none: active as soon as you ask".to_owned(),
            Some(a) => {
                let who: Vec<String> = a.approvers.iter().map(|p| approver_label(p, names)).collect();
                format!("{} of {} within {}", a.min_approvals, who.join(", "), esc(&human_duration(a.timeout)))
            }
        },
    ));
    if let Some(until) = rule.expires_at {
        terms.push(("Eligible until", super::when(until, now)));
    }
    let terms_html: String = terms.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
    let values = state.and_then(|s| s.values.as_ref());
    let value = |name: &str| values.map(|v| v.text(name)).unwrap_or_default();
    let error = |field: &str| state.and_then(|s| s.error(field));
    let mut form = String::new();
    if let Some(s) = state {
        form.push_str(&summary(&id, s));
    }
    // The role: a choice when the rule has several.
    let chosen_role = value("role");
    let (role_error, role_attrs) = field_error(&format!("{id}-role"), error("role"));
    let role_field = if rule.roles.len() == 1 {
        let only = rule.roles.first().map(|r| r.to_string()).unwrap_or_default();
        format!(
            "<input type=\"hidden\" name=\"role\" value=\"{}\"><p id=\"{id}-role-hint\" class=\"hint\">Role: {}</p>{role_error}",
            esc(&only),
            rule.roles.first().map(super::role_label).unwrap_or_default()
        )
    } else {
        let options: String = rule
            .roles
            .iter()
            .map(|r| {
                let selected = if chosen_role == r.to_string() { " selected" } else { "" };
                format!(
                    "<option value=\"{r}\"{selected}>{}</option>",
                    r.built_in_name().map_or_else(|| r.to_string(), esc)
                )
            })
            .collect();
        format!(
            "<label for=\"{id}-role\">Role <span id=\"{id}-role-hint\" class=\"hint\">One of the rule's roles.</span></label>\
<select id=\"{id}-role\" name=\"role\"{role_attrs}>{options}</select>{role_error}"
        )
    };
    let scope_value = if value("scope").is_empty() { rule.scope.to_string() } else { value("scope") };
    let duration_value = if value("duration").is_empty() { default_duration(rule) } else { value("duration") };
    let required = |yes: bool| if yes { " required" } else { "" };
    let optional = |yes: bool| if yes { "" } else { " (optional)" };
    let (scope_error, scope_attrs) = field_error(&format!("{id}-scope"), error("scope"));
    let (duration_error, duration_attrs) = field_error(&format!("{id}-duration"), error("duration"));
    let (justification_error, justification_attrs) =
        field_error(&format!("{id}-justification"), error("justification"));
    let (ticket_error, ticket_attrs) = field_error(&format!("{id}-ticket"), error("ticket"));
    let (start_error, start_attrs) = field_error(&format!("{id}-start"), error("startAt"));
    form.push_str(&format!(
        "<form method=\"post\" action=\"{PREFIX}/roles#{id}\" novalidate>\
<input type=\"hidden\" name=\"{field}\" value=\"{token}\"><input type=\"hidden\" name=\"rule\" value=\"{rule_id}\">\
<input type=\"hidden\" name=\"key\" value=\"{key}\">{role_field}\
<label for=\"{id}-scope\">Scope <span id=\"{id}-scope-hint\" class=\"hint\">{rule_scope} or a scope below it.</span></label>\
<input type=\"text\" id=\"{id}-scope\" name=\"scope\" value=\"{scope}\" required{scope_attrs}>{scope_error}\
<label for=\"{id}-duration\">Duration <span id=\"{id}-duration-hint\" class=\"hint\">For example 30m, 1h30m or PT2H; at least 5 minutes, at most {max}.</span></label>\
<input type=\"text\" id=\"{id}-duration\" name=\"duration\" value=\"{duration}\" required{duration_attrs}>{duration_error}\
<label for=\"{id}-justification\">Justification{j_opt} <span id=\"{id}-justification-hint\" class=\"hint\">Why you need this access; approvers and auditors read it.</span></label>\
<textarea id=\"{id}-justification\" name=\"justification\" rows=\"2\" maxlength=\"1000\"{j_req}{justification_attrs}>{justification}</textarea>{justification_error}\
<fieldset><legend>Ticket{t_opt}</legend><p id=\"{id}-ticket-hint\" class=\"hint\">The change or incident this is for.</p><div class=\"row\"><div>\
<label for=\"{id}-ticket\">System</label><input type=\"text\" id=\"{id}-ticket\" name=\"ticketSystem\" value=\"{ticket_system}\"{t_req}{ticket_attrs}></div><div>\
<label for=\"{id}-ticket-number\">Number</label><input type=\"text\" id=\"{id}-ticket-number\" name=\"ticketNumber\" value=\"{ticket_number}\"{t_req}{ticket_attrs}></div></div>{ticket_error}</fieldset>\
<label for=\"{id}-start\">Start at (optional) <span id=\"{id}-start-hint\" class=\"hint\">UTC; leave empty to start as soon as allowed.</span></label>\
<input type=\"datetime-local\" id=\"{id}-start\" name=\"startAt\" value=\"{start}\"{start_attrs}>{start_error}\
<div><button type=\"submit\" name=\"intent\" value=\"check\">Check</button><button type=\"submit\" name=\"intent\" value=\"activate\" class=\"approve\">Activate</button></div></form>",
        field = csrf::FIELD,
        token = esc(token),
        rule_id = esc(rule.id.as_str()),
        key = uuid::Uuid::new_v4(),
        rule_scope = super::scope_label(&rule.scope),
        scope = esc(&scope_value),
        max = esc(&human_duration(rule.max_duration)),
        duration = esc(&duration_value),
        j_opt = optional(rule.require_justification),
        j_req = required(rule.require_justification),
        justification = esc(&value("justification")),
        t_opt = optional(rule.require_ticket),
        t_req = required(rule.require_ticket),
        ticket_system = esc(&value("ticketSystem")),
        ticket_number = esc(&value("ticketNumber")),
        start = esc(&value("startAt")),
    ));
    format!(
        "<section class=\"rule\" id=\"{id}\" aria-labelledby=\"{id}-title\"><h2 id=\"{id}-title\">{}</h2><dl>{terms_html}</dl>{form}</section>",
        esc(&title)
    )
}

/// Above a form that came back: the notice, the check's result, or the list of problems, each
/// linking to its field.
fn summary(id: &str, s: &FormState) -> String {
    let mut out = String::new();
    if let Some(notice) = &s.notice {
        out.push_str(&format!("<p class=\"note\" role=\"status\">{}</p>", esc(notice)));
    }
    if !s.errors.is_empty() {
        let items: String = s
            .errors
            .iter()
            .map(|e| format!("<li><a href=\"#{id}-{}\">{}</a></li>", anchor(e.field), esc(&e.message)))
            .collect();
        out.push_str(&format!(
            "<div class=\"note warn\" role=\"alert\" id=\"{id}-problems\"><p><strong>The request was not made.</strong> Please correct:</p><ul>{items}</ul></div>"
        ));
    }
    if let Some(p) = &s.preview {
        let outcome = match p.would_be {
            WouldBe::Active => "It would be <strong>active at once</strong>.".to_owned(),
            WouldBe::Scheduled => "It would be <strong>scheduled</strong> and start by itself.".to_owned(),
            WouldBe::PendingApproval => match &p.rule.approval {
                Some(a) => format!(
                    "It would <strong>wait for {} approval(s)</strong>, for at most {}.",
                    a.min_approvals,
                    esc(&human_duration(a.timeout))
                ),
                None => "It would wait for approval.".to_owned(),
            },
            WouldBe::ConfirmationRequired => "It would wait for your confirmation.".to_owned(),
        };
        let needs = if p.needs.is_empty() {
            "Nothing else is needed.".to_owned()
        } else {
            let list: Vec<String> = p.needs.iter().map(|n| esc(&n.to_string())).collect();
            format!("Still needed: {}.", list.join("; "))
        };
        out.push_str(&format!(
            "<div class=\"note\" role=\"status\" id=\"{id}-check\"><p><strong>Check:</strong> rule <code>{}</code>. {outcome} \
Access for {} would end at {} if it started at {}. {needs}</p></div>",
            esc(p.rule.id.as_str()),
            esc(&human_duration(p.duration)),
            super::super::pages::fmt_time(p.ends),
            super::super::pages::fmt_time(p.start),
        ));
    }
    out
}

/// The element id a field's error links to.
fn anchor(field: &str) -> &'static str {
    match field {
        "role" => "role",
        "scope" => "scope",
        "duration" => "duration",
        "justification" => "justification",
        "ticket" => "ticket",
        "startAt" => "start",
        _ => "title",
    }
}

fn approver_label(
    p: &crate::domain::ids::PrincipalRef,
    names: &std::collections::HashMap<crate::domain::ids::PrincipalId, crate::domain::ids::DisplayName>,
) -> String {
    match p {
        crate::domain::ids::PrincipalRef::User(id) => super::person(id, names),
        crate::domain::ids::PrincipalRef::Group(id) => format!("members of group <code>{id}</code>"),
    }
}

/// An hour, or the rule's maximum when that is shorter.
fn default_duration(rule: &Rule) -> String {
    let hour = IsoDuration::from_hours(1);
    (if rule.max_duration < hour { rule.max_duration } else { hour }).to_string()
}

/// `PT1H30M` as `1 h 30 min`.
fn human_duration(d: IsoDuration) -> String {
    let minutes = d.as_delta().num_minutes();
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// A duration as people type it: ISO 8601 (`PT1H30M`), or hours and minutes (`1h30m`, `90m`,
/// `2h`, `1.5h`).
pub(super) fn parse_duration(text: &str) -> Result<IsoDuration, String> {
    let t = text.trim();
    if t.to_ascii_uppercase().starts_with('P') {
        return IsoDuration::parse(&t.to_ascii_uppercase()).map_err(|e| e.to_string());
    }
    let wrong = || format!("`{}` is not a duration such as 30m, 1h30m or PT2H", crate::domain::ids::shorten(t));
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    let mut minutes = 0f64;
    let mut number = String::new();
    let mut any = false;
    for c in compact.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let n: f64 = number.parse().map_err(|_| wrong())?;
        number.clear();
        minutes += match c {
            'h' => n * 60.0,
            'm' => n,
            _ => return Err(wrong()),
        };
        any = true;
    }
    if !number.is_empty() || !any || !minutes.is_finite() || minutes > 1.0e7 {
        return Err(wrong());
    }
    let whole = minutes.round() as i64;
    IsoDuration::from_delta(chrono::TimeDelta::minutes(whole)).ok_or_else(wrong)
}

/// A start time from the form: `datetime-local` (read as UTC) or RFC 3339.
fn parse_start(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(naive.and_utc());
        }
    }
    Err(format!("`{}` is not a date and time such as 2026-12-01T14:30", crate::domain::ids::shorten(t)))
}

/// The form as a request, or every field's problem at once.
fn read(form: &Form) -> Result<ActivationInput, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut fail = |field: &'static str, message: String| errors.push(FieldError { field, message });
    let rule_id = form.get("rule").and_then(|r| RuleId::parse(r).ok());
    if rule_id.is_none() {
        fail("rule", "the form names no rule; reload the page".to_owned());
    }
    let scope = match form.get("scope").map(Scope::parse) {
        Some(Ok(scope)) => Some(scope),
        Some(Err(e)) => {
            fail("scope", e.to_string());
            None
        }
        None => {
            fail("scope", "enter a scope".to_owned());
            None
        }
    };
    let role = match (&scope, form.get("role")) {
        (Some(scope), Some(role)) => match scope.kind().parse_role(role) {
            Ok(role) => Some(role),
            Err(e) => {
                fail("role", e.to_string());
                None
            }
        },
        (_, None) => {
            fail("role", "choose a role".to_owned());
            None
        }
        (None, Some(_)) => None,
    };
    let duration = match form.get("duration").map(parse_duration) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            fail("duration", e);
            None
        }
        None => {
            fail("duration", "enter a duration".to_owned());
            None
        }
    };
    let justification = match form.get("justification").map(Justification::parse) {
        Some(Ok(j)) => Some(j),
        Some(Err(e)) => {
            fail("justification", e.to_string());
            None
        }
        None => None,
    };
    let ticket = match (form.get("ticketSystem"), form.get("ticketNumber")) {
        (None, None) => None,
        (Some(system), Some(number)) => match (TicketSystem::parse(system), TicketNumber::parse(number)) {
            (Ok(system), Ok(number)) => Some(Ticket { system, number }),
            (Err(e), _) | (_, Err(e)) => {
                fail("ticket", e.to_string());
                None
            }
        },
        _ => {
            fail("ticket", "give both the ticket's system and its number".to_owned());
            None
        }
    };
    let start_at = match form.get("startAt").map(parse_start) {
        Some(Ok(at)) => Some(at),
        Some(Err(e)) => {
            fail("startAt", e);
            None
        }
        None => None,
    };
    match (rule_id, scope, role, duration, errors.is_empty()) {
        (Some(rule_id), Some(scope), Some(role_definition_id), Some(duration), true) => Ok(ActivationInput {
            principal_id: None,
            role_definition_id,
            scope,
            duration: Some(duration),
            justification,
            ticket,
            start_at,
            rule_id: Some(rule_id),
        }),
        _ => Err(errors),
    }
}

/// `POST /api/portal/roles`: check, and unless only a check was asked for, request.
pub async fn submit(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let who = match csrf::caller_for_change(ctx, req, Subject::NewActivation).await {
        Ok(who) => who,
        Err(e) => return Ok(super::problem(ctx, None, &e)),
    };
    let form = Form::parse(req)?;
    let rule = form.text("rule");
    let again = |state: FormState, status: StatusCode| render_page(ctx, &who, Some((rule.clone(), state)), status);
    let input = match read(&form) {
        Ok(input) => input,
        Err(errors) => {
            return again(FormState { values: Some(form), errors, ..FormState::default() }, StatusCode::BAD_REQUEST)
                .await;
        }
    };
    let now = ctx.clock.now();
    let refused = |e: ApiError, form: Form| {
        // The form names its rule: a refusal of eligibility is about what the user typed, the
        // scope (or the role).
        let (field, message) = match e.code {
            "RuleDoesNotApply" | "NotEligible" => (
                "scope",
                format!(
                    "this rule does not cover that role at that scope: ask at {} or a scope below it",
                    RuleId::parse(&rule)
                        .ok()
                        .and_then(|id| ctx.service.policy().rule(&id).map(|r| r.scope.to_string()))
                        .unwrap_or_else(|| "the rule's scope".to_owned())
                ),
            ),
            _ => (field_of(&e, &FIELDS).unwrap_or("rule"), e.message.clone()),
        };
        let status = if e.status == StatusCode::UNAUTHORIZED { StatusCode::FORBIDDEN } else { e.status };
        (FormState { values: Some(form), errors: vec![FieldError { field, message }], ..FormState::default() }, status)
    };
    let preview = match ctx.service.preview_activation(&who, input.clone(), now).await {
        Ok(p) => p,
        Err(e) => {
            let (state, status) = refused(ApiError::from(e), form);
            return again(state, status).await;
        }
    };
    // A sign-in that lacks the rule's proof: sign in again, then back to this form, filled.
    let proof: Vec<&Violation> = preview
        .needs
        .iter()
        .filter(|n| matches!(n, Violation::MfaRequired(_) | Violation::AuthContextRequired { .. }))
        .collect();
    if !proof.is_empty() {
        let context = proof.iter().find_map(|n| match n {
            Violation::AuthContextRequired { context, .. } => Some(context.as_str().to_owned()),
            _ => None,
        });
        let back = back_to_form(&form, &rule);
        return Ok(see_other(&super::sign_in::url(&back, Some(super::sign_in::Proof { context }))));
    }
    let errors: Vec<FieldError> = preview
        .needs
        .iter()
        .map(|n| {
            let e = ApiError::from(crate::service::ServiceError::Refused(n.clone().into()));
            FieldError { field: field_of(&e, &FIELDS).unwrap_or("rule"), message: e.message.clone() }
        })
        .collect();
    if !errors.is_empty() {
        return again(
            FormState { values: Some(form), errors, preview: Some(preview), notice: None },
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    if form.get("intent") == Some("check") {
        return again(FormState { values: Some(form), preview: Some(preview), ..FormState::default() }, StatusCode::OK)
            .await;
    }
    // The page's key: a second click, or a resubmitted page, answers with the first request.
    let key = form.get("key").and_then(|k| IdempotencyKey::parse(k).ok());
    match ctx.service.request(&who, input, key, now).await {
        Ok(Answer::Opened(outcome)) => Ok(see_other(&format!("{PREFIX}/access?requested={}", outcome.activation.id()))),
        Ok(Answer::AwaitsUser(_)) => Ok(super::problem(
            ctx,
            Some(&who),
            &ApiError::new(StatusCode::CONFLICT, "UserConfirmationRequired", "this request needs a confirmation link"),
        )),
        Err(e) => {
            let (state, status) = refused(ApiError::from(e), form);
            again(state, status).await
        }
    }
}

/// The roles page with this form's values in the query, scrolled to the rule's form.
fn back_to_form(form: &Form, rule: &str) -> String {
    // Not the justification or the ticket: an address ends up in browser history and in the
    // platform's request logs.
    let keep = ["rule", "role", "scope", "duration", "startAt"];
    let pairs: Vec<(&str, &str)> = keep.iter().map(|k| (*k, form.get(k).unwrap_or_default())).collect();
    let _ = rule;
    format!("{PREFIX}/roles?{}", super::query_string(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_type_them() {
        let minutes = |t: &str| parse_duration(t).map(|d| d.as_delta().num_minutes());
        assert_eq!(minutes("PT1H30M"), Ok(90));
        assert_eq!(minutes("pt2h"), Ok(120));
        assert_eq!(minutes("1h30m"), Ok(90));
        assert_eq!(minutes("90m"), Ok(90));
        assert_eq!(minutes("1.5h"), Ok(90));
        assert_eq!(minutes(" 2 h "), Ok(120));
        for bad in ["", "h", "10", "1x", "1h30", "..h", "1e400h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn start_times_are_utc() {
        assert_eq!(parse_start("2026-12-01T14:30").map(|t| t.to_rfc3339()), Ok("2026-12-01T14:30:00+00:00".to_owned()));
        assert!(parse_start("2026-12-01T14:30:00+01:00").is_ok_and(|t| t.to_rfc3339() == "2026-12-01T13:30:00+00:00"));
        assert!(parse_start("tomorrow").is_err());
    }

    #[test]
    fn a_form_with_several_problems_names_each_field() {
        let form = Form(vec![
            ("rule".into(), "prod".into()),
            ("role".into(), "Contributor".into()),
            ("scope".into(), "not-a-scope".into()),
            ("duration".into(), "forever".into()),
            ("ticketSystem".into(), "SNOW".into()),
        ]);
        let errors = read(&form).err().unwrap_or_default();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["scope", "duration", "ticket"]);
    }
}
