//! `[rondb]`: the runbook's RonDB programs and paths.

use std::path::PathBuf;

use super::nodes::{NodeSpec, Role};
use super::raw::RawRondb;
use super::validate::{Errors, Section};

/// `[rondb]`: the runbook's programs and paths.
#[derive(Debug, Clone)]
pub struct RondbSettings {
    pub user: String,
    pub mgm_client: PathBuf,
    pub mysqlpump: PathBuf,
    pub mysqldump: PathBuf,
    pub mysql: PathBuf,
    pub socket: PathBuf,
    /// `BackupDataDir`: RonDB writes `BACKUP/BACKUP-<id>/` below it.
    pub backup_dir: PathBuf,
    pub exclude_users: Vec<String>,
    /// Databases `mysqldump` leaves out (system ones and ones NDB does not hold).
    pub exclude_databases: Vec<String>,
    /// How many local `BACKUP-<id>` folders a data node keeps after a backup.
    pub keep_local: usize,
    pub ndb_restore: PathBuf,
    /// Hopsworks' `mysql-client.sh` wrapper.
    pub mysql_client: PathBuf,
    /// The management server for `ndb_restore --ndb-connectstring`.
    pub connectstring: String,
    /// The password of RonDB's own backup encryption (`START BACKUP ...
    /// ENCRYPT PASSWORD`, `ndb_restore --decrypt`); `None`: off. The file
    /// is read when it is needed ([`crate::rondb::password`]), on the nodes
    /// that need it.
    pub backup_password_file: Option<PathBuf>,
}

pub(super) const DEFAULT_EXCLUDE_USERS: [&str; 4] = ["root", "mysql.sys", "mysql.session", "mysql.infoschema"];
const DEFAULT_EXCLUDE_DATABASES: [&str; 6] = [
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "ndbinfo",
    "glassfish_timers",
];

impl RondbSettings {
    /// Validates `[rondb]`; the connectstring defaults to the first head node.
    pub(super) fn from_raw(r: RawRondb, nodes: &[NodeSpec], errors: &mut Errors) -> RondbSettings {
        let mut s = errors.section("rondb");
        let mut rondb = RondbSettings {
            user: r.user.unwrap_or_else(|| "mysql".into()),
            mgm_client: s.abs_path(
                "mgm_client",
                r.mgm_client,
                "/srv/hops/mysql-cluster/ndb/scripts/mgm-client.sh",
            ),
            mysqlpump: s.abs_path("mysqlpump", r.mysqlpump, "/srv/hops/mysql/bin/mysqlpump"),
            mysqldump: s.abs_path("mysqldump", r.mysqldump, "/srv/hops/mysql/bin/mysqldump"),
            mysql: s.abs_path("mysql", r.mysql, "/srv/hops/mysql/bin/mysql"),
            socket: s.abs_path("socket", r.socket, "/srv/hops/mysql-cluster/mysql.sock"),
            backup_dir: s.abs_path("backup_dir", r.backup_dir, "/srv/hops/mysql-cluster/ndb/backups"),
            exclude_users: r
                .exclude_users
                .unwrap_or_else(|| DEFAULT_EXCLUDE_USERS.map(String::from).to_vec()),
            exclude_databases: r
                .exclude_databases
                .unwrap_or_else(|| DEFAULT_EXCLUDE_DATABASES.map(String::from).to_vec()),
            keep_local: s.count("keep_local", r.keep_local, 1, 0),
            ndb_restore: s.abs_path("ndb_restore", r.ndb_restore, "/srv/hops/mysql/bin/ndb_restore"),
            mysql_client: s.abs_path(
                "mysql_client",
                r.mysql_client,
                "/srv/hops/mysql-cluster/ndb/scripts/mysql-client.sh",
            ),
            connectstring: String::new(),
            backup_password_file: r
                .backup_password_file
                .map(|f| s.abs_path("backup_password_file", Some(f), "")),
        };
        rondb.connectstring = connectstring(r.connectstring, nodes, &mut s);
        rondb.check_names(&mut s);
        rondb
    }

    /// The user and the excluded users and databases are names `mysqlpump`
    /// and `mysqldump` take in a comma-separated list.
    fn check_names(&self, s: &mut Section<'_, '_>) {
        if self.user.is_empty() {
            s.err("user", "must not be empty");
        }
        for (key, list) in [
            ("exclude_users", &self.exclude_users),
            ("exclude_databases", &self.exclude_databases),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|u| u.is_empty() || u.contains(',') || u.contains(char::is_whitespace))
            {
                s.err(key, format!("'{bad}' is not a valid name"));
            }
        }
    }
}

/// `[rondb] connectstring`: ndb_restore talks to the management server, by
/// default on the first head node, at RonDB's port 1186.
fn connectstring(raw: Option<String>, nodes: &[NodeSpec], s: &mut Section<'_, '_>) -> String {
    match raw {
        Some(cs) => {
            s.address("connectstring", &cs);
            cs
        }
        None => nodes
            .iter()
            .find(|n| n.has(Role::Head))
            .and_then(|n| n.address.rsplit_once(':'))
            .map(|(host, _)| format!("{host}:1186"))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use std::path::Path;

    #[test]
    fn the_management_server_defaults_to_the_first_head_node() {
        let c = load_with("").unwrap();
        assert_eq!(c.rondb.connectstring, "127.0.0.1:1186");
        assert_eq!(c.rondb.keep_local, 1);
        assert_eq!(c.rondb.ndb_restore, Path::new("/srv/hops/mysql/bin/ndb_restore"));
        let c = load_with("[rondb]\nconnectstring = \"mgm1:1186\"\n").unwrap();
        assert_eq!(c.rondb.connectstring, "mgm1:1186");
        assert_eq!(c.rondb.backup_password_file, None);
        let c = load_with("[rondb]\nbackup_password_file = \"/etc/hwdr/rondb-backup.pw\"\n").unwrap();
        assert_eq!(
            c.rondb.backup_password_file.as_deref(),
            Some(Path::new("/etc/hwdr/rondb-backup.pw"))
        );
    }

    #[test]
    fn each_key_is_named_with_its_file() {
        let rondb = r#"
[rondb]
user = ""
socket = "mysql.sock"
keep_local = -1
connectstring = "mgm1"
exclude_users = ["root", "a b"]
exclude_databases = ["x,y"]
backup_password_file = "rondb-backup.pw"
"#;
        assert_eq!(
            errors_with(rondb),
            [
                "hwdr.d/50-test.toml: [rondb] socket: 'mysql.sock' must be an absolute path",
                "hwdr.d/50-test.toml: [rondb] keep_local: -1 must be between 0 and 10000",
                "hwdr.d/50-test.toml: [rondb] backup_password_file: 'rondb-backup.pw' must be an absolute path",
                "hwdr.d/50-test.toml: [rondb] connectstring: 'mgm1' must be host:port",
                "hwdr.d/50-test.toml: [rondb] user: must not be empty",
                "hwdr.d/50-test.toml: [rondb] exclude_users: 'a b' is not a valid name",
                "hwdr.d/50-test.toml: [rondb] exclude_databases: 'x,y' is not a valid name",
            ]
        );
    }
}
