//! `[retention]`: which backups `hwdr prune` keeps.

use std::time::Duration;

use super::raw::RawRetention;
use super::validate::Errors;

/// `[retention]`: which backups `hwdr prune` keeps (restic-style: a backup
/// kept by any rule stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: usize,
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub keep_monthly: usize,
    /// Nothing younger is ever removed.
    pub min_age: Duration,
    /// Failed, partial and unfinished backups are removed after this many days.
    pub keep_failed_days: usize,
}

impl Retention {
    /// Validates `[retention]`.
    pub(super) fn from_raw(t: RawRetention, errors: &mut Errors) -> Retention {
        let mut s = errors.section("retention");
        Retention {
            keep_last: s.count("keep_last", t.keep_last, 7, 0),
            keep_daily: s.count("keep_daily", t.keep_daily, 7, 0),
            keep_weekly: s.count("keep_weekly", t.keep_weekly, 4, 0),
            keep_monthly: s.count("keep_monthly", t.keep_monthly, 6, 0),
            min_age: s.duration("min_age", t.min_age, Duration::from_secs(86_400)),
            keep_failed_days: s.count("keep_failed_days", t.keep_failed_days, 7, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use super::Retention;
    use std::time::Duration;

    #[test]
    fn defaults_and_errors() {
        let defaults = Retention {
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
            min_age: Duration::from_secs(86_400),
            keep_failed_days: 7,
        };
        assert_eq!(load_with("").unwrap().retention, defaults);
        assert_eq!(
            load_with("[retention]\nkeep_last = 0\n").unwrap().retention.keep_last,
            0
        );
        assert_eq!(
            errors_with("[retention]\nkeep_weekly = -1\nmin_age = \"1y\"\nkeep_failed_days = 10001\n"),
            [
                "hwdr.d/50-test.toml: [retention] keep_weekly: -1 must be between 0 and 10000",
                "hwdr.d/50-test.toml: [retention] min_age: '1y' is not a duration (e.g. 90s, 30m, 4h, 1d, 1h30m)",
                "hwdr.d/50-test.toml: [retention] keep_failed_days: 10001 must be between 0 and 10000",
            ]
        );
    }
}
