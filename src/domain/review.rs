//! Access reviews: a campaign asks reviewers, item by item, whether each principal's eligibility
//! for a rule should stay. The policy declares the reviews (`policy::ReviewDefinition`); this
//! module holds a campaign's items and decisions, who may decide, and what each item comes to
//! when the campaign ends. No I/O; time is a parameter.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{Justification, PrincipalId, PrincipalRef, RuleId};
use super::policy::{Period, Policy, ReviewDefinition, Reviewers, Undecided};

/// Keep or remove one eligibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Keep,
    Remove,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Keep => "keep",
            Verdict::Remove => "remove",
        }
    }

    pub fn parse(value: &str) -> Option<Verdict> {
        match value {
            "keep" => Some(Verdict::Keep),
            "remove" => Some(Verdict::Remove),
            _ => None,
        }
    }
}

/// What the activation history suggests, and why in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub verdict: Verdict,
    pub reason: String,
    /// The last activation under the rule through this entry, if the history holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activated: Option<DateTime<Utc>>,
}

impl Recommendation {
    /// Remove when the eligibility was not used within `inactive_after` of `now`.
    pub fn from_history(last: Option<DateTime<Utc>>, inactive_after: TimeDelta, now: DateTime<Utc>) -> Self {
        let days = inactive_after.num_days();
        match last {
            Some(at) if now - at < inactive_after => Recommendation {
                verdict: Verdict::Keep,
                reason: format!("activated within the last {days} days"),
                last_activated: Some(at),
            },
            Some(at) => Recommendation {
                verdict: Verdict::Remove,
                reason: format!("not activated in the last {days} days"),
                last_activated: Some(at),
            },
            None => Recommendation {
                verdict: Verdict::Remove,
                reason: format!("no activation found in the last {days} days"),
                last_activated: None,
            },
        }
    }
}

/// One reviewer's word on an item. Decisions are kept, never replaced: the latest counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemDecision {
    pub verdict: Verdict,
    pub by: PrincipalId,
    pub at: DateTime<Utc>,
    pub justification: Justification,
}

/// How an item ended: as decided, or by the review's rule for undecided items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Basis {
    Decided,
    Undecided(Undecided),
}

/// One principal's eligibility under one rule, to be kept or removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewItem {
    pub campaign: CampaignId,
    /// Position in the campaign (its record id's suffix).
    pub index: u32,
    pub rule: RuleId,
    pub entry: PrincipalRef,
    pub recommendation: Recommendation,
    #[serde(default)]
    pub decisions: Vec<ItemDecision>,
}

impl ReviewItem {
    /// The decision that counts: the latest.
    pub fn latest(&self) -> Option<&ItemDecision> {
        self.decisions.last()
    }

    /// Records a reviewer's decision: it replaces their earlier one (each reviewer holds one
    /// place, so none can crowd out the others), and is now the latest. Every decision ever
    /// made is in the review log as well.
    pub fn decide(&mut self, decision: ItemDecision) {
        self.decisions.retain(|d| d.by != decision.by);
        self.decisions.push(decision);
    }

    /// What the item comes to when the campaign ends.
    pub fn outcome(&self, undecided: Undecided) -> (Verdict, Basis) {
        match (self.latest(), undecided) {
            (Some(d), _) => (d.verdict, Basis::Decided),
            (None, Undecided::Keep) => (Verdict::Keep, Basis::Undecided(undecided)),
            (None, Undecided::Remove) => (Verdict::Remove, Basis::Undecided(undecided)),
            (None, Undecided::Recommendation) => (self.recommendation.verdict, Basis::Undecided(undecided)),
        }
    }
}

/// A campaign's id: the review's id and the day its run started (`quarterly-20260401`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CampaignId(String);

impl CampaignId {
    pub fn of(review: &RuleId, period: &Period) -> CampaignId {
        CampaignId(format!("{review}-{}", period.starts.format("%Y%m%d")))
    }

    /// As given in an address: the characters a review id has, a `-` and eight digits.
    pub fn parse(value: &str) -> Result<CampaignId, String> {
        let ok = value.len() <= 80
            && value.rsplit_once('-').is_some_and(|(review, day)| {
                RuleId::parse(review).is_ok() && day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit())
            });
        if ok {
            Ok(CampaignId(value.to_owned()))
        } else {
            Err("a campaign id is a review id, `-` and the start day as eight digits (`quarterly-20260401`)".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CampaignId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CampaignId::parse(&value)
    }
}

impl From<CampaignId> for String {
    fn from(value: CampaignId) -> Self {
        value.0
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a campaign stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum CampaignState {
    /// Reviewers may decide until `ends`.
    Open,
    /// Ended; results are being applied (suspensions written, open activations ended). Kept
    /// until every removal has taken effect, so a pass that fails half-way is finished by the
    /// next.
    Applying { ended_at: DateTime<Utc> },
    /// Every result has taken effect.
    Applied { ended_at: DateTime<Utc>, applied_at: DateTime<Utc>, kept: u32, removed: u32 },
}

/// One run of a review.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    pub id: CampaignId,
    pub review: RuleId,
    pub starts: DateTime<Utc>,
    pub ends: DateTime<Utc>,
    pub items: u32,
    pub when_undecided: Undecided,
    #[serde(flatten)]
    pub state: CampaignState,
    /// When reviewers were reminded (once per campaign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminded_at: Option<DateTime<Utc>>,
}

impl Campaign {
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.state == CampaignState::Open && now < self.ends
    }

    /// Reviewers are due their reminder: open, not yet reminded, within `before` of the end.
    pub fn reminder_due(&self, before: TimeDelta, now: DateTime<Utc>) -> bool {
        before > TimeDelta::zero() && self.is_open(now) && self.reminded_at.is_none() && now >= self.ends - before
    }
}

/// Why a caller may not decide on an item.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReviewRefusal {
    #[error("campaign `{0}` has ended; its results stand")]
    Ended(CampaignId),
    #[error("you are not a reviewer of this item")]
    NotReviewer,
    #[error("nobody reviews their own eligibility unless the review is a self-review")]
    OwnEligibility,
}

/// Whether `principal` (with `groups`) may decide on `item` under `review`. Deny by default.
pub fn may_decide(
    review: &ReviewDefinition,
    policy: &Policy,
    item: &ReviewItem,
    principal: &PrincipalId,
    groups: &[PrincipalId],
) -> Result<(), ReviewRefusal> {
    // One's own: the entry names them, or a group they are in (keeping a group keeps oneself).
    let own = item.entry.matches(principal, groups);
    let reviewer = match &review.reviewers {
        Reviewers::SelfReview => item.entry == PrincipalRef::User(*principal),
        Reviewers::Named(named) => named.iter().any(|n| n.matches(principal, groups)),
        Reviewers::Approvers => policy.rule(&item.rule).is_some_and(|r| r.is_approver(principal, groups)),
    };
    match (reviewer, own, &review.reviewers) {
        (false, _, _) => Err(ReviewRefusal::NotReviewer),
        (true, true, Reviewers::Named(_) | Reviewers::Approvers) => Err(ReviewRefusal::OwnEligibility),
        (true, _, _) => Ok(()),
    }
}

/// Whether `principal` reviews anything in a campaign of `review` (to list campaigns for them).
pub fn reviews_any(
    review: &ReviewDefinition,
    policy: &Policy,
    principal: &PrincipalId,
    groups: &[PrincipalId],
) -> bool {
    match &review.reviewers {
        Reviewers::Named(named) => named.iter().any(|n| n.matches(principal, groups)),
        Reviewers::Approvers => {
            review.rules.iter().any(|r| policy.rule(r).is_some_and(|rule| rule.is_approver(principal, groups)))
        }
        Reviewers::SelfReview => review
            .rules
            .iter()
            .any(|r| policy.rule(r).is_some_and(|rule| rule.principals.contains(&PrincipalRef::User(*principal)))),
    }
}

/// The items of a new campaign: every entry of every reviewed rule, in the policy's order.
/// Entries already suspended are not reviewed again.
pub fn items_of(
    review: &ReviewDefinition,
    policy: &Policy,
    campaign: &CampaignId,
    last_activated: impl Fn(&RuleId, &PrincipalRef) -> Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<ReviewItem> {
    let mut items = Vec::new();
    for rule in review.rules.iter().filter_map(|id| policy.rule(id)) {
        for entry in rule.principals.iter().filter(|e| !rule.suspended.contains(e)) {
            let index = u32::try_from(items.len()).unwrap_or(u32::MAX);
            items.push(ReviewItem {
                campaign: campaign.clone(),
                index,
                rule: rule.id.clone(),
                entry: *entry,
                recommendation: Recommendation::from_history(
                    last_activated(&rule.id, entry),
                    review.inactive_after,
                    now,
                ),
                decisions: Vec::new(),
            });
        }
    }
    items
}

/// The results as CSV: one line per item, with how it ended and the latest decision. Cells a
/// spreadsheet would run as a formula are prefixed with `'`.
pub fn results_csv(items: &[ReviewItem], undecided: Undecided) -> String {
    let mut out = String::from(
        "campaign,rule,principal,recommendation,recommendationReason,outcome,basis,decidedBy,decidedAt,justification,decisions\r\n",
    );
    for item in items {
        let (verdict, basis) = item.outcome(undecided);
        let basis = match basis {
            Basis::Decided => "decided".to_owned(),
            Basis::Undecided(u) => format!("undecided ({})", u.as_str()),
        };
        let latest = item.latest();
        let cells = [
            item.campaign.to_string(),
            item.rule.to_string(),
            item.entry.to_string(),
            item.recommendation.verdict.as_str().to_owned(),
            item.recommendation.reason.clone(),
            verdict.as_str().to_owned(),
            basis,
            latest.map(|d| d.by.to_string()).unwrap_or_default(),
            latest.map(|d| d.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default(),
            latest.map(|d| d.justification.as_str().to_owned()).unwrap_or_default(),
            item.decisions.len().to_string(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(value: &str) -> String {
    let guarded =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if guarded.contains([',', '"', '\n', '\r']) { format!("\"{}\"", guarded.replace('"', "\"\"")) } else { guarded }
}

/// A patch a maintainer applies to the policy file to make a campaign's removals permanent:
/// a unified diff of `source` (the policy file's text, named `file`) that deletes each removed
/// entry from its rule's `principals`. The patch is checked before it is handed out: applied
/// in memory, the file must still load, with exactly those entries gone and nothing else
/// changed. Entries that cannot be found on a line of their own in their rule's block — or a
/// patch that fails the check — are listed at the top for the maintainer to remove by hand; a
/// patch never guesses.
pub fn policy_patch(file: &str, source: &str, removals: &[(RuleId, PrincipalRef)]) -> String {
    let lines: Vec<&str> = source.split_inclusive('\n').collect();
    let mut drop = vec![false; lines.len()];
    let mut by_hand = Vec::new();
    let mut placed = Vec::new();
    for (rule, entry) in removals {
        match locate(&lines, rule, entry).and_then(|i| drop.get_mut(i)) {
            Some(d) => {
                *d = true;
                placed.push((rule.clone(), *entry));
            }
            None => by_hand.push((rule.clone(), *entry)),
        }
    }
    let patched: String = lines.iter().zip(&drop).filter(|(_, d)| !**d).map(|(l, _)| *l).collect();
    if !placed.is_empty() && !removes_exactly(file, source, &patched, &placed) {
        by_hand.append(&mut placed);
        drop.iter_mut().for_each(|d| *d = false);
    }
    let mut out: String = by_hand
        .iter()
        .map(|(rule, entry)| format!("# remove `{entry}` from rule `{rule}` by hand: not on a line of its own\n"))
        .collect();
    if drop.iter().any(|d| *d) {
        out.push_str(&format!("--- a/{file}\n+++ b/{file}\n"));
        out.push_str(&hunks(&lines, &drop));
    }
    out
}

/// Whether `patched` loads and differs from `source` by exactly `removed` (rules, their order
/// and every other entry the same).
fn removes_exactly(file: &str, source: &str, patched: &str, removed: &[(RuleId, PrincipalRef)]) -> bool {
    let (Ok(before), Ok(after)) = (Policy::from_yaml(file, source), Policy::from_yaml(file, patched)) else {
        return false;
    };
    before.rules().len() == after.rules().len()
        && before.rules().iter().zip(after.rules()).all(|(b, a)| {
            let expected: Vec<&PrincipalRef> =
                b.principals.iter().filter(|e| !removed.contains(&(b.id.clone(), **e))).collect();
            b.id == a.id && a.principals.iter().collect::<Vec<_>>() == expected
        })
}

/// Unified-diff hunks deleting the `drop` lines, one line of context each side; removals
/// close together share a hunk.
fn hunks(lines: &[&str], drop: &[bool]) -> String {
    let dropped: Vec<usize> = drop.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i).collect();
    // Groups of dropped lines whose context would touch or overlap.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &i in &dropped {
        match groups.last_mut() {
            Some((_, last)) if i <= *last + 3 => *last = i,
            _ => groups.push((i, i)),
        }
    }
    let mut out = String::new();
    let mut removed_before = 0;
    for (first, last) in groups {
        let from = first.saturating_sub(1);
        let to = (last + 1).min(lines.len().saturating_sub(1));
        let old_len = to - from + 1;
        let removed = (from..=to).filter(|i| drop.get(*i).copied().unwrap_or(false)).count();
        out.push_str(&format!("@@ -{},{old_len} +{},{} @@\n", from + 1, from + 1 - removed_before, old_len - removed));
        for i in from..=to {
            let mark = if drop.get(i).copied().unwrap_or(false) { '-' } else { ' ' };
            if let Some(line) = lines.get(i) {
                push_line(&mut out, mark, line);
            }
        }
        removed_before += removed;
    }
    out
}

fn push_line(out: &mut String, mark: char, line: &str) {
    out.push(mark);
    out.push_str(line);
    if !line.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
}

/// The line holding `- user:<id>` as a block-list item of its own under rule `rule`'s
/// `principals:` key. `None` when there is not exactly one such line.
fn locate(lines: &[&str], rule: &RuleId, entry: &PrincipalRef) -> Option<usize> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let item = |l: &str| l.trim().strip_prefix('-').map(|v| v.trim().trim_matches(['"', '\'']).to_owned());
    let start = lines.iter().position(|l| {
        let t = l.trim().trim_start_matches('-').trim();
        t.strip_prefix("id:").is_some_and(|v| v.trim().trim_matches(['"', '\'']) == rule.as_str())
    })?;
    let dash = indent(lines.get(start)?);
    // The rule's block: what is indented deeper than its own dash.
    let block = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > dash);
    let wanted = entry.to_string();
    let mut key: Option<usize> = None;
    let mut found = Vec::new();
    for (i, l) in block {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match key {
            None if t.starts_with("principals:") => {
                if !t.trim_start_matches("principals:").trim().is_empty() {
                    return None; // a flow list: not one line per entry
                }
                key = Some(indent(l));
            }
            None => {}
            Some(k)
                if indent(l) >= k && t.starts_with('-') && item(l).is_some_and(|v| v.eq_ignore_ascii_case(&wanted)) =>
            {
                found.push(i);
            }
            Some(k) if indent(l) >= k && t.starts_with('-') => {}
            Some(_) => break,
        }
    }
    match found.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    const ALICE: &str = "11111111-1111-1111-1111-111111111111";
    const BOB: &str = "22222222-2222-2222-2222-222222222222";
    const CAROL: &str = "33333333-3333-3333-3333-333333333333";
    const TEAM: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";

    fn policy(reviewers: &str) -> Policy {
        let yaml = format!(
            "version: 1\nrules:\n  - id: prod-owner\n    scope: /subscriptions/00000000-0000-0000-0000-000000000001\n    roles: [Owner]\n    principals:\n      - user:{ALICE}\n      - group:{TEAM}\n    approval:\n      approvers: [user:{BOB}]\n  - id: prod-reader\n    scope: /subscriptions/00000000-0000-0000-0000-000000000001\n    roles: [Reader]\n    principals: [user:{ALICE}, user:{BOB}]\n    approval:\n      approvers: [user:{CAROL}]\nreviews:\n  - id: quarterly\n    rules: [prod-owner]\n    reviewers: {reviewers}\n    startsAt: 2026-01-01T00:00:00Z\n    everyDays: 90\n    durationDays: 14\n    whenUndecided: recommendation\n"
        );
        Policy::from_yaml("p.yaml", &yaml).unwrap()
    }

    fn item(policy: &Policy) -> ReviewItem {
        let review = policy.reviews().first().unwrap();
        let campaign = CampaignId::parse("quarterly-20260101").unwrap();
        items_of(review, policy, &campaign, |_, _| None, at("2026-01-01T00:00:00Z")).remove(0)
    }

    fn pid(s: &str) -> PrincipalId {
        PrincipalId::parse(s).unwrap()
    }

    #[test]
    fn items_cover_every_entry_of_the_reviewed_rules_only() {
        let p = policy("approvers");
        let review = p.reviews().first().unwrap();
        let campaign = CampaignId::parse("quarterly-20260101").unwrap();
        let now = at("2026-01-01T00:00:00Z");
        let last =
            |_: &RuleId, e: &PrincipalRef| (*e == PrincipalRef::User(pid(ALICE))).then(|| now - TimeDelta::days(3));
        let items = items_of(review, &p, &campaign, last, now);
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[0].entry.to_string(), items[0].recommendation.verdict),
            (format!("user:{ALICE}"), Verdict::Keep)
        );
        assert_eq!(
            (items[1].entry.to_string(), items[1].recommendation.verdict),
            (format!("group:{TEAM}"), Verdict::Remove)
        );
        let suspended = p.with_suspended([(&items[1].rule, items[1].entry)]);
        assert_eq!(
            items_of(review, &suspended, &campaign, last, now).len(),
            1,
            "a suspended entry is not reviewed again"
        );
    }

    #[test]
    fn approvers_review_but_never_their_own_eligibility() {
        let p = policy("approvers");
        let review = p.reviews().first().unwrap();
        let it = item(&p);
        assert_eq!(may_decide(review, &p, &it, &pid(BOB), &[]), Ok(()));
        assert_eq!(may_decide(review, &p, &it, &pid(CAROL), &[]), Err(ReviewRefusal::NotReviewer));
        assert_eq!(may_decide(review, &p, &it, &pid(ALICE), &[]), Err(ReviewRefusal::NotReviewer));
        let own = ReviewItem { entry: PrincipalRef::User(pid(BOB)), ..it.clone() };
        assert_eq!(may_decide(review, &p, &own, &pid(BOB), &[]), Err(ReviewRefusal::OwnEligibility));
        // Through a group: an approver in the group under review may not keep it.
        let group = ReviewItem { entry: PrincipalRef::Group(pid(TEAM)), ..it };
        assert_eq!(may_decide(review, &p, &group, &pid(BOB), &[pid(TEAM)]), Err(ReviewRefusal::OwnEligibility));
        assert_eq!(may_decide(review, &p, &group, &pid(BOB), &[]), Ok(()));
    }

    #[test]
    fn named_reviewers_include_group_members_and_self_review_only_oneself() {
        let p = policy(&format!("[group:{TEAM}]"));
        assert!(p.named_groups().contains(&pid(TEAM)), "a reviewer group is read from the directory on overage");
        let review = p.reviews().first().unwrap();
        let it = item(&p);
        assert_eq!(may_decide(review, &p, &it, &pid(CAROL), &[pid(TEAM)]), Ok(()));
        let team = ReviewItem { entry: PrincipalRef::Group(pid(TEAM)), ..it.clone() };
        assert_eq!(may_decide(review, &p, &team, &pid(CAROL), &[pid(TEAM)]), Err(ReviewRefusal::OwnEligibility));
        assert_eq!(may_decide(review, &p, &it, &pid(CAROL), &[]), Err(ReviewRefusal::NotReviewer));
        let yaml_self = policy("approvers");
        let mut review = yaml_self.reviews().first().unwrap().clone();
        review.reviewers = Reviewers::SelfReview;
        assert_eq!(may_decide(&review, &yaml_self, &it, &pid(ALICE), &[]), Ok(()));
        assert_eq!(may_decide(&review, &yaml_self, &it, &pid(BOB), &[]), Err(ReviewRefusal::NotReviewer));
    }

    #[test]
    fn outcomes_follow_the_latest_decision_or_the_rule_for_undecided_items() {
        let p = policy("approvers");
        let mut it = item(&p);
        it.recommendation.verdict = Verdict::Remove;
        assert_eq!(it.outcome(Undecided::Keep), (Verdict::Keep, Basis::Undecided(Undecided::Keep)));
        assert_eq!(it.outcome(Undecided::Remove).0, Verdict::Remove);
        assert_eq!(it.outcome(Undecided::Recommendation).0, Verdict::Remove);
        let decide = |verdict| ItemDecision {
            verdict,
            by: pid(BOB),
            at: at("2026-01-02T00:00:00Z"),
            justification: Justification::parse("checked").unwrap(),
        };
        it.decisions.push(decide(Verdict::Remove));
        it.decisions.push(decide(Verdict::Keep));
        assert_eq!(it.outcome(Undecided::Remove), (Verdict::Keep, Basis::Decided));
    }

    #[test]
    fn campaign_ids_are_review_and_day() {
        let p = policy("approvers");
        let review = p.reviews().first().unwrap();
        let period = review.period_at(at("2026-04-03T00:00:00Z")).unwrap();
        let id = CampaignId::of(&review.id, &period);
        assert_eq!(id.as_str(), "quarterly-20260401");
        assert_eq!(CampaignId::parse(id.as_str()), Ok(id));
        for bad in ["", "quarterly", "quarterly-2026041", "quarterly-2026040a", "../x-20260401", "Q-20260401"] {
            assert!(CampaignId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_csv_guards_formulas_and_quotes_separators() {
        let p = policy("approvers");
        let mut it = item(&p);
        it.decisions.push(ItemDecision {
            verdict: Verdict::Remove,
            by: pid(BOB),
            at: at("2026-01-02T00:00:00Z"),
            justification: Justification::parse("=HYPERLINK(\"x\"), left the team").unwrap(),
        });
        let csv = results_csv(&[it], Undecided::Keep);
        let line = csv.lines().nth(1).unwrap();
        assert!(line.contains("remove,decided,"), "{line}");
        assert!(line.contains("\"'=HYPERLINK(\"\"x\"\"), left the team\""), "{line}");
    }

    #[test]
    fn the_patch_removes_block_list_lines_checks_itself_and_names_what_it_cannot_place() {
        let source = format!(
            "version: 1\nrules:\n  - id: prod-owner\n    description: |\n      - id: prod-reader\n    scope: /subscriptions/00000000-0000-0000-0000-000000000001\n    principals:\n      - user:{ALICE}\n      - group:{TEAM}\n      - user:{CAROL}\n    roles: [Owner]\n  - id: prod-reader\n    scope: /subscriptions/00000000-0000-0000-0000-000000000001\n    roles: [Reader]\n    principals: [user:{ALICE}, user:{BOB}]\n"
        );
        let owner = RuleId::parse("prod-owner").unwrap();
        let reader = RuleId::parse("prod-reader").unwrap();
        let patch = policy_patch(
            "policy.yaml",
            &source,
            &[(owner.clone(), PrincipalRef::User(pid(ALICE))), (reader, PrincipalRef::User(pid(BOB)))],
        );
        assert!(patch.starts_with(&format!("# remove `user:{BOB}` from rule `prod-reader` by hand")), "{patch}");
        assert!(
            patch.contains(&format!("--- a/policy.yaml\n+++ b/policy.yaml\n@@ -7,3 +7,2 @@\n     principals:\n-      - user:{ALICE}\n       - group:{TEAM}\n")),
            "{patch}"
        );
        assert_eq!(patch.lines().filter(|l| l.starts_with("-  ")).count(), 1, "{patch}");
        // Adjacent removals share one hunk.
        let both = policy_patch(
            "policy.yaml",
            &source,
            &[(owner.clone(), PrincipalRef::User(pid(ALICE))), (owner.clone(), PrincipalRef::Group(pid(TEAM)))],
        );
        assert!(both.contains("@@ -7,4 +7,2 @@\n     principals:\n-      - user:"), "{both}");
        assert_eq!(both.matches("@@ -").count(), 1, "one hunk: {both}");
        // Removing every entry would leave a rule no policy loads: the maintainer decides.
        let all = policy_patch(
            "policy.yaml",
            &source,
            &[
                (owner.clone(), PrincipalRef::User(pid(ALICE))),
                (owner.clone(), PrincipalRef::Group(pid(TEAM))),
                (owner, PrincipalRef::User(pid(CAROL))),
            ],
        );
        assert!(!all.contains("--- a/") && all.lines().count() == 3, "{all}");
    }
}
