//! What the policy says of access reviews (`reviews:`): which rules are reviewed, by whom, how
//! often, and what happens to an item nobody decided. Campaigns themselves are
//! `domain::review`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::super::ids::{PrincipalRef, RuleId};

/// Who decides on a campaign's items.
#[derive(Clone, Debug, PartialEq)]
pub enum Reviewers {
    /// The principals named (users, or members of the groups named).
    Named(Vec<PrincipalRef>),
    /// Each item's rule's approvers.
    Approvers,
    /// Each principal decides on their own eligibility (user entries only).
    SelfReview,
}

/// What an item nobody decided becomes when the campaign ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Undecided {
    Keep,
    Remove,
    /// The recommendation made from the activation history.
    Recommendation,
}

impl Undecided {
    pub fn as_str(self) -> &'static str {
        match self {
            Undecided::Keep => "keep",
            Undecided::Remove => "remove",
            Undecided::Recommendation => "recommendation",
        }
    }
}

/// One review declared in the policy: a campaign starts at `starts_at` and then every `every`
/// (once when `every` is None), and runs for `duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewDefinition {
    pub id: RuleId,
    pub description: Option<String>,
    pub rules: Vec<RuleId>,
    pub reviewers: Reviewers,
    pub starts_at: DateTime<Utc>,
    pub every: Option<TimeDelta>,
    pub duration: TimeDelta,
    pub when_undecided: Undecided,
    /// Reviewers are reminded this long before the end (zero: never).
    pub remind_before: TimeDelta,
    /// An eligibility not activated for this long is recommended for removal.
    pub inactive_after: TimeDelta,
}

/// One run of a review: from `starts` to `ends`; `index` counts runs from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub index: i64,
    pub starts: DateTime<Utc>,
    pub ends: DateTime<Utc>,
}

impl ReviewDefinition {
    /// The run in progress at `now`, if one is.
    pub fn period_at(&self, now: DateTime<Utc>) -> Option<Period> {
        if now < self.starts_at {
            return None;
        }
        let index = match self.every {
            Some(every) if every > TimeDelta::zero() => {
                let elapsed = (now - self.starts_at).num_seconds();
                elapsed.checked_div(every.num_seconds())?
            }
            Some(_) | None => 0,
        };
        let starts = self.starts_at + self.every.unwrap_or_default() * i32::try_from(index).ok()?;
        let ends = starts + self.duration;
        (now < ends).then_some(Period { index, starts, ends })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    fn quarterly() -> ReviewDefinition {
        ReviewDefinition {
            id: RuleId::parse("quarterly").unwrap(),
            description: None,
            rules: vec![],
            reviewers: Reviewers::Approvers,
            starts_at: at("2026-01-01T00:00:00Z"),
            every: Some(TimeDelta::days(90)),
            duration: TimeDelta::days(14),
            when_undecided: Undecided::Keep,
            remind_before: TimeDelta::days(3),
            inactive_after: TimeDelta::days(30),
        }
    }

    #[test]
    fn a_run_is_found_only_while_it_lasts() {
        let r = quarterly();
        assert_eq!(r.period_at(at("2025-12-31T23:59:59Z")), None);
        let first = r.period_at(at("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!((first.index, first.ends), (0, at("2026-01-15T00:00:00Z")));
        assert_eq!(r.period_at(at("2026-01-15T00:00:00Z")), None, "the end is exclusive");
        let second = r.period_at(at("2026-04-05T12:00:00Z")).unwrap();
        assert_eq!((second.index, second.starts), (1, at("2026-04-01T00:00:00Z")));
        let once = ReviewDefinition { every: None, ..quarterly() };
        assert!(once.period_at(at("2026-01-10T00:00:00Z")).is_some());
        assert_eq!(once.period_at(at("2026-04-05T12:00:00Z")), None);
    }
}
