//! Backup ids: the `yymmddHHMM` name people see and the `yyDDDHHMM` number
//! handed to RonDB.
//!
//! `ndb_restore -b` reads the id as a signed 32-bit int and clamps anything
//! above 2147483647, so a `yymmddHHMM` id (2611231819) cannot be restored by
//! number. The NDB id replaces month and day by the day of the year
//! (263271819): one-to-one with the visible id and below 2^31 until 2099.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest backup id `ndb_restore -b` accepts (a signed 32-bit int).
pub const NDB_RESTORE_MAX_ID: u32 = 2_147_483_647;

/// A validated backup id: a minute of local time between 2000 and 2099.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(NaiveDateTime);

/// Why a string is not a backup id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackupIdError {
    /// Not exactly ten ASCII digits.
    #[error("backup id '{0}' must be exactly 10 digits (yymmddHHMM)")]
    Format(String),
    /// Ten digits that are not a real minute of a real day.
    #[error("backup id '{0}' is not a real date and time (yymmddHHMM)")]
    NotADate(String),
    /// An NDB id that does not decode to a real minute.
    #[error("NDB backup id {0} is not a yyDDDHHMM id of hwdr")]
    BadNdbId(u32),
}

impl BackupId {
    /// The id for a local wall-clock time, truncated to the minute.
    pub fn from_datetime(time: NaiveDateTime) -> Option<Self> {
        if !(2000..=2099).contains(&time.year()) {
            return None;
        }
        let minute = time.date().and_hms_opt(time.hour(), time.minute(), 0)?;
        Some(BackupId(minute))
    }

    /// The id of the minute after this one (`None` after 2099).
    pub fn next(&self) -> Option<Self> {
        Self::from_datetime(self.0 + chrono::Duration::minutes(1))
    }

    /// The minute this id names, local time.
    pub fn minute(&self) -> NaiveDateTime {
        self.0
    }

    /// The id handed to `START BACKUP` and `ndb_restore -b`: `yyDDDHHMM`.
    pub fn ndb_id(&self) -> u32 {
        let t = self.0;
        let yy = (t.year() - 2000) as u32;
        yy * 10_000_000 + t.ordinal() * 10_000 + t.hour() * 100 + t.minute()
    }

    /// The backup id an NDB id (`yyDDDHHMM`) was derived from.
    pub fn from_ndb_id(ndb: u32) -> Result<Self, BackupIdError> {
        let bad = || BackupIdError::BadNdbId(ndb);
        let yy = ndb / 10_000_000;
        let day = (ndb / 10_000) % 1000;
        let hour = (ndb / 100) % 100;
        let minute = ndb % 100;
        if yy > 99 {
            return Err(bad());
        }
        let date = NaiveDate::from_yo_opt(2000 + yy as i32, day).ok_or_else(bad)?;
        let time = date.and_hms_opt(hour, minute, 0).ok_or_else(bad)?;
        Ok(BackupId(time))
    }
}

impl FromStr for BackupId {
    type Err = BackupIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BackupIdError::Format(s.to_owned()));
        }
        let num = |range: std::ops::Range<usize>| -> u32 {
            // Ten ASCII digits were checked above, so this cannot fail.
            s[range].parse().unwrap_or(u32::MAX)
        };
        let not_a_date = || BackupIdError::NotADate(s.to_owned());
        let date = NaiveDate::from_ymd_opt(2000 + num(0..2) as i32, num(2..4), num(4..6)).ok_or_else(not_a_date)?;
        let time = date.and_hms_opt(num(6..8), num(8..10), 0).ok_or_else(not_a_date)?;
        Ok(BackupId(time))
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%y%m%d%H%M"))
    }
}

impl Serialize for BackupId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackupId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_the_shared_convention() {
        let id: BackupId = "2611231819".parse().unwrap();
        assert_eq!(id.to_string(), "2611231819");
        assert_eq!(id.ndb_id(), 263_271_819);
    }

    #[test]
    fn the_next_id_is_the_next_minute_across_days_and_ends_in_2099() {
        let id = |s: &str| s.parse::<BackupId>().unwrap();
        assert_eq!(id("2611231819").next(), Some(id("2611231820")));
        assert_eq!(id("2612312359").next(), Some(id("2701010000")));
        assert_eq!(id("9912312359").next(), None);
    }

    #[test]
    fn rejects_non_digits_wrong_length_and_unreal_dates() {
        for bad in [
            "",
            "261123181",
            "26112318190",
            "26112318a9",
            "+611231819",
            "２611231819",
        ] {
            assert!(
                matches!(bad.parse::<BackupId>(), Err(BackupIdError::Format(_))),
                "{bad}"
            );
        }
        for bad in ["2613231819", "2602301200", "2611232400", "2611231860", "2500291200"] {
            assert!(
                matches!(bad.parse::<BackupId>(), Err(BackupIdError::NotADate(_))),
                "{bad}"
            );
        }
        // 2024 is a leap year.
        assert!("2402291200".parse::<BackupId>().is_ok());
    }

    #[test]
    fn ndb_id_is_one_to_one_and_in_range_until_2099() {
        let mut t = NaiveDate::from_ymd_opt(2000, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let end = NaiveDate::from_ymd_opt(2099, 12, 31)
            .unwrap()
            .and_hms_opt(23, 59, 0)
            .unwrap();
        let mut last = 0;
        // Walk every 7 hours 13 minutes of the century: ids grow strictly, stay
        // in ndb_restore's range and decode back to the same id.
        while t <= end {
            let id = BackupId::from_datetime(t).unwrap();
            let ndb = id.ndb_id();
            assert!(ndb <= NDB_RESTORE_MAX_ID);
            assert!(ndb > last || t.year() == 2000 && last == 0);
            assert_eq!(BackupId::from_ndb_id(ndb).unwrap(), id);
            last = ndb;
            t += chrono::Duration::minutes(433);
        }
        let last_id = BackupId::from_datetime(end).unwrap();
        assert_eq!(last_id.ndb_id(), 993_652_359);
    }

    #[test]
    fn from_ndb_id_rejects_numbers_that_are_not_ours() {
        assert!(BackupId::from_ndb_id(263_671_819).is_err()); // day 367
        assert!(BackupId::from_ndb_id(253_661_200).is_err()); // 2025 has 365 days
        assert!(BackupId::from_ndb_id(263_272_419).is_err()); // hour 24
        assert!(BackupId::from_ndb_id(2_611_231_819).is_err());
    }

    #[test]
    fn from_datetime_truncates_seconds_and_rejects_other_centuries() {
        let t = NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(18, 19, 42)
            .unwrap();
        assert_eq!(BackupId::from_datetime(t).unwrap().to_string(), "2611231819");
        let old = NaiveDate::from_ymd_opt(1999, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert!(BackupId::from_datetime(old).is_none());
    }
}
