//! `[backup]`: limits of the backup's steps.

use std::time::Duration;

use super::raw::RawBackup;
use super::validate::Errors;

/// `[backup]`: limits of the backup's steps.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// How long `START BACKUP ... WAIT COMPLETED` may take.
    pub ndb_backup_timeout: Duration,
    /// How long `mysqlpump` and `mysqldump` may take each.
    pub dump_timeout: Duration,
    /// How many nodes ship their parts at once.
    pub parallelism: usize,
    /// How long a node's agent may go without answering before the node
    /// fails the backup.
    pub node_timeout: Duration,
}

impl BackupSettings {
    /// Validates `[backup]`.
    pub(super) fn from_raw(b: RawBackup, errors: &mut Errors) -> BackupSettings {
        let mut s = errors.section("backup");
        BackupSettings {
            ndb_backup_timeout: s.duration(
                "ndb_backup_timeout",
                b.ndb_backup_timeout,
                Duration::from_secs(6 * 3600),
            ),
            dump_timeout: s.duration("dump_timeout", b.dump_timeout, Duration::from_secs(3600)),
            parallelism: s.count("parallelism", b.parallelism, 4, 1),
            node_timeout: s.duration("node_timeout", b.node_timeout, Duration::from_secs(60)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use std::time::Duration;

    #[test]
    fn defaults_and_errors() {
        let b = load_with("").unwrap().backup;
        assert_eq!(b.ndb_backup_timeout, Duration::from_secs(6 * 3600));
        assert_eq!((b.dump_timeout, b.parallelism), (Duration::from_secs(3600), 4));
        let b = load_with("[backup]\nnode_timeout = \"2m\"\n").unwrap().backup;
        assert_eq!(b.node_timeout, Duration::from_secs(120));
        assert_eq!(
            errors_with("[backup]\ndump_timeout = \"soon\"\nparallelism = 0\n"),
            [
                "hwdr.d/50-test.toml: [backup] dump_timeout: 'soon' is not a duration (e.g. 90s, 30m, 4h, 1d, 1h30m)",
                "hwdr.d/50-test.toml: [backup] parallelism: 0 must be between 1 and 10000",
            ]
        );
    }
}
