//! Stores behind the `Store` port, and the list positions both of them use.

pub mod sqlite;
pub mod table_client;
pub mod tables;

use chrono::{DateTime, Utc};

use crate::domain::ids::ActivationId;
use crate::service::ports::{PageToken, StoreError};

/// Milliseconds are subtracted from this, so that later instants sort first as text.
const NEWEST_FIRST_BASE: i64 = 999_999_999_999_999;

/// An activation's place in a newest-first list (`requested_at` descending, then id ascending)
/// as text that sorts in that order: the inverted milliseconds, 15 digits, `_`, the id.
/// Both stores use it: as the Table index's RowKey, and as the page token of each.
pub(crate) fn newest_first_key(requested_at: DateTime<Utc>, id: ActivationId) -> String {
    let ms = requested_at.timestamp_millis().clamp(0, NEWEST_FIRST_BASE);
    format!("{:015}_{id}", NEWEST_FIRST_BASE - ms)
}

/// Reads a `newest_first_key` back: the milliseconds of `requested_at` and the id.
pub(crate) fn parse_newest_first(token: &PageToken) -> Result<(i64, ActivationId), StoreError> {
    let refuse = || StoreError::InvalidPageToken(format!("`{}`", crate::domain::ids::shorten(token.as_str())));
    let (inverted, id) = token.as_str().split_once('_').ok_or_else(refuse)?;
    if inverted.len() != 15 || !inverted.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    let inverted: i64 = inverted.parse().map_err(|_| refuse())?;
    let id = ActivationId::parse(id).map_err(|_| refuse())?;
    // The id must be written as `newest_first_key` writes it, so the position is exact.
    if id.to_string() != token.as_str().get(16..).unwrap_or_default() {
        return Err(refuse());
    }
    Ok((NEWEST_FIRST_BASE - inverted, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_keys_sort_later_instants_first_and_read_back() {
        let id = ActivationId::new_random();
        let early: DateTime<Utc> = "2026-11-25T12:00:00.001Z".parse().unwrap();
        let late: DateTime<Utc> = "2026-11-25T12:00:00.002Z".parse().unwrap();
        assert!(newest_first_key(late, id) < newest_first_key(early, id));
        let key = newest_first_key(early, id);
        assert_eq!(parse_newest_first(&PageToken::new(key)).unwrap(), (early.timestamp_millis(), id));
        for bad in ["", "_", "12_x", "99999999999999a_05c5a614-a7d6-4502-b150-c2fb455033ff", "000000000000001_nope"] {
            assert!(parse_newest_first(&PageToken::new(bad.into())).is_err(), "{bad}");
        }
        let upper = newest_first_key(early, id).to_uppercase();
        assert!(parse_newest_first(&PageToken::new(upper)).is_err(), "ids are written in lower case");
    }
}
