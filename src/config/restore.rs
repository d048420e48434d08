//! `[restore]`: how `hwdr restore` runs.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawRestore;
use super::validate::Errors;

/// `[restore]`: how `hwdr restore` runs.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// Where restore state is kept, per backup, step by step.
    pub state_dir: PathBuf,
    /// Where RonDB parts and SQL files are staged on each node for `ndb_restore`.
    pub staging_dir: PathBuf,
    pub ndb_restore_parallelism: usize,
    pub restore_epoch: bool,
    pub safemode_timeout: Duration,
    pub safemode_poll: Duration,
    pub ndb_restore_timeout: Duration,
    /// Limit of the other programs (mysql-client.sh, reindex, kafka).
    pub command_timeout: Duration,
}

impl RestoreSettings {
    /// Validates `[restore]`.
    pub(super) fn from_raw(r: RawRestore, errors: &mut Errors) -> RestoreSettings {
        let mut s = errors.section("restore");
        let hour = Duration::from_secs(3600);
        RestoreSettings {
            state_dir: s.abs_path("state_dir", r.state_dir, "/var/lib/hwdr"),
            staging_dir: s.abs_path(
                "staging_dir",
                r.staging_dir,
                "/srv/hops/mysql-cluster/ndb/backups/hwdr-restore",
            ),
            ndb_restore_parallelism: s.count("ndb_restore_parallelism", r.ndb_restore_parallelism, 2, 1),
            restore_epoch: r.restore_epoch.unwrap_or(false),
            safemode_timeout: s.duration("safemode_timeout", r.safemode_timeout, hour),
            safemode_poll: s.duration("safemode_poll", r.safemode_poll, Duration::from_secs(10)),
            ndb_restore_timeout: s.duration("ndb_restore_timeout", r.ndb_restore_timeout, 6 * hour),
            command_timeout: s.duration("command_timeout", r.command_timeout, hour),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn defaults_and_errors() {
        let r = load_with("").unwrap().restore;
        assert_eq!(r.state_dir, Path::new("/var/lib/hwdr"));
        assert_eq!((r.ndb_restore_parallelism, r.restore_epoch), (2, false));
        assert_eq!(r.ndb_restore_timeout, Duration::from_secs(6 * 3600));
        assert_eq!(r.safemode_poll, Duration::from_secs(10));
        let restore = r#"
[restore]
staging_dir = "staging"
ndb_restore_parallelism = 0
safemode_poll = "often"
"#;
        assert_eq!(
            errors_with(restore),
            [
                "hwdr.d/50-test.toml: [restore] staging_dir: 'staging' must be an absolute path",
                "hwdr.d/50-test.toml: [restore] ndb_restore_parallelism: 0 must be between 1 and 10000",
                "hwdr.d/50-test.toml: [restore] safemode_poll: 'often' is not a duration (e.g. 90s, 30m, 4h, 1d, 1h30m)",
            ]
        );
    }
}
