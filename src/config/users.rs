//! The users and the group the configuration names, looked up on this host;
//! an error names the key that set them.

use anyhow::{anyhow, Result};

use super::Config;
use crate::runner::RunAs;

impl Config {
    /// `[rondb] user`: runs the RonDB programs and owns the staged files.
    pub fn rondb_user(&self) -> Result<RunAs> {
        RunAs::lookup(&self.rondb.user, &self.origins.key("rondb", "user"))
    }

    /// `[hopsfs] user`: reads the blocks and owns the restored ones.
    pub fn hdfs_user(&self) -> Result<RunAs> {
        RunAs::lookup(&self.hopsfs.user, &self.origins.key("hopsfs", "user"))
    }

    /// `[hopsfs] group`: the group of the restored blocks.
    pub fn hopsfs_group(&self) -> Result<uzers::Group> {
        uzers::get_group_by_name(&self.hopsfs.group).ok_or_else(|| {
            anyhow!(
                "{}: no such group '{}'",
                self.origins.key("hopsfs", "group"),
                self.hopsfs.group
            )
        })
    }

    /// `[opensearch] user`: runs the reindex.
    pub fn opensearch_user(&self) -> Result<RunAs> {
        self.root_or_lookup("opensearch", &self.opensearch.user)
    }

    /// `[kafka] user`: runs the topics' restore.
    pub fn kafka_user(&self) -> Result<RunAs> {
        self.root_or_lookup("kafka", &self.kafka.user)
    }

    /// `[drill] user`: runs the drill's check.
    pub fn drill_user(&self) -> Result<RunAs> {
        self.root_or_lookup("drill", &self.drill.user)
    }

    // These steps run as root by default, which needs no lookup.
    fn root_or_lookup(&self, section: &str, user: &str) -> Result<RunAs> {
        if user == "root" {
            Ok(RunAs::root())
        } else {
            RunAs::lookup(user, &self.origins.key(section, "user"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load_with;

    fn error(result: anyhow::Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn a_missing_user_or_group_names_its_key() {
        let c = load_with(
            "[rondb]\nuser = \"no-such-user-hwdr\"\n[hopsfs]\nuser = \"no-such-hdfs-hwdr\"\ngroup = \"no-such-group-hwdr\"\n",
        )
        .unwrap();
        assert_eq!(
            error(c.rondb_user()),
            "hwdr.d/50-test.toml: [rondb] user: no such user 'no-such-user-hwdr'"
        );
        assert_eq!(
            error(c.hdfs_user()),
            "hwdr.d/50-test.toml: [hopsfs] user: no such user 'no-such-hdfs-hwdr'"
        );
        assert_eq!(
            error(c.hopsfs_group()),
            "hwdr.d/50-test.toml: [hopsfs] group: no such group 'no-such-group-hwdr'"
        );
        // [drill] user follows [rondb] user, but is its own key.
        assert_eq!(
            error(c.drill_user()),
            "hwdr.toml: [drill] user: no such user 'no-such-user-hwdr'"
        );
    }

    #[test]
    fn command_steps_run_as_root_unless_told() {
        let c = load_with("[rondb]\nuser = \"root\"\n[kafka]\nuser = \"no-such-kafka-hwdr\"\n").unwrap();
        assert_eq!(c.rondb_user().unwrap().uid.as_raw(), 0);
        assert_eq!(c.opensearch_user().unwrap().name, "root");
        assert_eq!(c.drill_user().unwrap().name, "root");
        assert_eq!(
            error(c.kafka_user()),
            "hwdr.d/50-test.toml: [kafka] user: no such user 'no-such-kafka-hwdr'"
        );
    }
}
