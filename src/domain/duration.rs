//! ISO 8601 durations (`PT8H`, `P1D`, `PT1H30M`), the only way durations appear on the wire and
//! in the policy file.

use std::fmt;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use super::ids::ParseError;

/// A positive whole number of seconds, written as an ISO 8601 duration.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IsoDuration(i64);

const EXPECTED: &str = "an ISO 8601 duration such as `PT8H`, `PT30M` or `P1D`";
/// Longest duration accepted anywhere (policy windows included): 90 days.
const MAX_SECONDS: i64 = 90 * 24 * 3600;

impl IsoDuration {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::malformed(value, EXPECTED);
        let text = value.trim().to_ascii_uppercase();
        if text.is_empty() {
            return Err(ParseError::Empty);
        }
        let rest = text.strip_prefix('P').ok_or_else(bad)?;
        let (date, time) = match rest.split_once('T') {
            Some((d, t)) => {
                if t.is_empty() {
                    return Err(bad());
                }
                (d, Some(t))
            }
            None => (rest, None),
        };
        let mut total: i64 = 0;
        let mut any = false;
        let mut add = |part: &str, units: &[(char, i64)]| -> Result<(), ParseError> {
            let mut number = String::new();
            let mut last_unit = 0usize;
            for c in part.chars() {
                if c.is_ascii_digit() {
                    number.push(c);
                    continue;
                }
                let position = units.iter().position(|(u, _)| *u == c).ok_or_else(bad)?;
                // Units must appear in order, each at most once, each with a number.
                if position < last_unit || number.is_empty() || number.len() > 9 {
                    return Err(bad());
                }
                last_unit = position + 1;
                let n: i64 = number.parse().map_err(|_| bad())?;
                let factor = units.get(position).map(|(_, f)| *f).ok_or_else(bad)?;
                total = total.checked_add(n.checked_mul(factor).ok_or_else(bad)?).ok_or_else(bad)?;
                any = true;
                number.clear();
            }
            if number.is_empty() { Ok(()) } else { Err(bad()) }
        };
        add(date, &[('W', 7 * 86400), ('D', 86400)])?;
        if let Some(time) = time {
            add(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
        }
        if !any {
            return Err(bad());
        }
        if total <= 0 {
            return Err(ParseError::OutOfRange("must be longer than zero".into()));
        }
        if total > MAX_SECONDS {
            return Err(ParseError::OutOfRange("must be at most `P90D`".into()));
        }
        Ok(Self(total))
    }

    pub const fn from_minutes(minutes: i64) -> Self {
        Self(minutes * 60)
    }

    pub const fn from_hours(hours: i64) -> Self {
        Self(hours * 3600)
    }

    /// The whole seconds of `delta`, if that is a duration this type can hold (at least a
    /// second, at most `P90D`).
    pub fn from_delta(delta: TimeDelta) -> Option<Self> {
        let seconds = delta.num_seconds();
        (1..=MAX_SECONDS).contains(&seconds).then_some(Self(seconds))
    }

    pub fn seconds(&self) -> i64 {
        self.0
    }

    pub fn as_delta(&self) -> TimeDelta {
        TimeDelta::seconds(self.0)
    }
}

impl TryFrom<String> for IsoDuration {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<IsoDuration> for String {
    fn from(value: IsoDuration) -> String {
        value.to_string()
    }
}
impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, rem) = (self.0 / 86400, self.0 % 86400);
        let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        f.write_str("P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if rem > 0 {
            f.write_str("T")?;
            if h > 0 {
                write!(f, "{h}H")?;
            }
            if m > 0 {
                write!(f, "{m}M")?;
            }
            if s > 0 {
                write!(f, "{s}S")?;
            }
        }
        Ok(())
    }
}
impl fmt::Debug for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_common_forms() {
        for (text, secs, printed) in [
            ("PT8H", 8 * 3600, "PT8H"),
            ("pt30m", 1800, "PT30M"),
            ("PT1H30M", 5400, "PT1H30M"),
            ("P1D", 86400, "P1D"),
            ("P1DT2H", 93600, "P1DT2H"),
            ("P1W", 604800, "P7D"),
            ("PT90S", 90, "PT1M30S"),
        ] {
            let d = IsoDuration::parse(text).unwrap();
            assert_eq!(d.seconds(), secs, "{text}");
            assert_eq!(d.to_string(), printed);
        }
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in
            ["", "8h", "P", "PT", "PT0H", "PTH", "PT1H1H", "PT1M1H", "P1Y", "PT-1H", "P1.5D", "PT99999999999H", "P91D"]
        {
            assert!(IsoDuration::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn printing_round_trips(secs in 1i64..=MAX_SECONDS) {
            let d = IsoDuration(secs);
            prop_assert_eq!(IsoDuration::parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = IsoDuration::parse(&s);
        }
    }
}
