//! `[drill]`: restore drills into a spare RonDB cluster.

use std::path::PathBuf;

use super::raw::RawDrill;
use super::rondb::RondbSettings;
use super::validate::Errors;

/// `[drill]`: restore drills into a spare RonDB cluster.
#[derive(Debug, Clone, Default)]
pub struct DrillSettings {
    /// The spare cluster's management server; `None`: no RonDB drill.
    pub connectstring: Option<String>,
    /// `ndb_restore` used for the drill (default `[rondb] ndb_restore`).
    pub ndb_restore: PathBuf,
    /// A client wrapper of the spare cluster's mysqld, for users and schemas.
    pub mysql_client: Option<PathBuf>,
    /// Run after the restore; must exit 0.
    pub check_command: Vec<String>,
    /// The user the check runs as.
    pub user: String,
}

impl DrillSettings {
    /// Validates `[drill]`; the program and user default to `[rondb]`'s.
    pub(super) fn from_raw(d: RawDrill, rondb: &RondbSettings, errors: &mut Errors) -> DrillSettings {
        let mut s = errors.section("drill");
        if let Some(cs) = &d.connectstring {
            s.address("connectstring", cs);
        }
        DrillSettings {
            connectstring: d.connectstring,
            ndb_restore: match d.ndb_restore {
                Some(p) => s.abs_path("ndb_restore", Some(p), ""),
                None => rondb.ndb_restore.clone(),
            },
            mysql_client: d.mysql_client.map(|p| s.abs_path("mysql_client", Some(p), "")),
            check_command: match d.check_command {
                Some(argv) => s.argv("check_command", Some(argv), &[]),
                None => Vec::new(),
            },
            user: d.user.unwrap_or_else(|| rondb.user.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};

    #[test]
    fn no_drill_unless_configured_and_rondb_defaults() {
        let c = load_with("[rondb]\nuser = \"mysql2\"\n").unwrap();
        assert_eq!(c.drill.connectstring, None);
        assert_eq!(c.drill.ndb_restore, c.rondb.ndb_restore);
        assert_eq!(c.drill.user, "mysql2");
        assert!(c.drill.check_command.is_empty() && c.drill.mysql_client.is_none());
    }

    #[test]
    fn each_key_is_named_with_its_file() {
        let drill = r#"
[drill]
connectstring = "spare"
ndb_restore = "ndb_restore"
mysql_client = "bin/mysql-client.sh"
check_command = []
"#;
        assert_eq!(
            errors_with(drill),
            [
                "hwdr.d/50-test.toml: [drill] connectstring: 'spare' must be host:port",
                "hwdr.d/50-test.toml: [drill] ndb_restore: 'ndb_restore' must be an absolute path",
                "hwdr.d/50-test.toml: [drill] mysql_client: 'bin/mysql-client.sh' must be an absolute path",
                "hwdr.d/50-test.toml: [drill] check_command: must name a program",
            ]
        );
    }
}
