//! Configuration: `/etc/hwdr/hwdr.toml` plus `hwdr.d/*.toml`, the same on every
//! node, parsed ([`raw`]), merged ([`load`]) and validated once into the types
//! the rest of hwdr uses. Each section validates itself in its own module,
//! into one error collector: every error names the file and the key.

mod agent;
mod backup;
mod cluster;
mod command_step;
mod config_backup;
mod drill;
mod duration;
mod hopsfs;
mod load;
mod metrics;
mod nodes;
mod raw;
mod repository;
mod restore;
mod retention;
mod rondb;
#[cfg(test)]
mod test_support;
mod tls;
mod users;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use agent::{AgentSettings, Auth};
pub use backup::BackupSettings;
pub use command_step::CommandStep;
pub use drill::DrillSettings;
pub use duration::parse_duration;
pub use hopsfs::{BlockStorage, HopsfsSettings};
pub use load::Origins;
pub use nodes::{NodeName, NodeSpec, Role};
pub use repository::{KeySource, ObjectScheme, ObjectSettings, RepositoryLocation, RepositorySettings};
pub use restore::RestoreSettings;
pub use retention::Retention;
pub use rondb::RondbSettings;
pub use tls::TlsSettings;

use crate::exit::HwdrError;
use load::Loaded;
use validate::Errors;

/// Where the configuration lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/hwdr/hwdr.toml";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: String,
    /// Every node, in the order of the file (the leader order of head nodes).
    pub nodes: Vec<NodeSpec>,
    /// Which entry of `nodes` this host is.
    pub this_node: NodeName,
    pub repository: RepositorySettings,
    pub rondb: RondbSettings,
    /// Files and folders copied into every backup (the cluster definition).
    pub config_paths: Vec<PathBuf>,
    pub backup: BackupSettings,
    pub agent: AgentSettings,
    /// `[tls]`: this node's certificate, key and the cluster's CA, if set.
    pub tls: Option<TlsSettings>,
    pub hopsfs: HopsfsSettings,
    pub restore: RestoreSettings,
    pub opensearch: CommandStep,
    pub kafka: CommandStep,
    pub retention: Retention,
    pub drill: DrillSettings,
    /// `[metrics] textfile`: the Prometheus text file hwdr writes.
    pub metrics_textfile: PathBuf,
    /// Which file set which key, for later error messages.
    pub origins: Origins,
    /// The files read, main file first.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// Loads and validates `path` and its drop-ins.
    pub fn load(path: &Path) -> Result<Config, HwdrError> {
        let loaded = load::load(path).map_err(|errors| HwdrError::Config(errors.join("\n")))?;
        Config::validate(loaded).map_err(|errors| HwdrError::Config(errors.join("\n")))
    }

    /// Validates every section into one collector, so all errors are
    /// reported at once and always in this order; later sections see the
    /// validated earlier ones they default from.
    fn validate(loaded: Loaded) -> Result<Config, Vec<String>> {
        let Loaded { raw, origins, files } = loaded;
        let mut errors = Errors::new(&origins);
        let cluster = cluster::name(raw.cluster.unwrap_or_default(), &mut errors);
        let nodes = nodes::nodes(raw.nodes.unwrap_or_default(), &mut errors);
        let this_node = nodes::this_node(raw.node.unwrap_or_default(), &nodes, &mut errors);
        let this_address = this_node
            .as_ref()
            .and_then(|n| nodes.iter().find(|o| &o.name == n))
            .map(|n| n.address.clone())
            .unwrap_or_default();
        let repository = RepositorySettings::from_raw(raw.repository.unwrap_or_default(), &mut errors);
        let rondb = RondbSettings::from_raw(raw.rondb.unwrap_or_default(), &nodes, &mut errors);
        let config_paths = config_backup::paths(raw.config_backup.unwrap_or_default(), &mut errors);
        let backup = BackupSettings::from_raw(raw.backup.unwrap_or_default(), &mut errors);
        let tls = raw.tls.map(|t| TlsSettings::from_raw(t, &mut errors));
        let agent = AgentSettings::from_raw(raw.agent.unwrap_or_default(), this_address, tls.is_some(), &mut errors);
        let hopsfs = HopsfsSettings::from_raw(raw.hopsfs.unwrap_or_default(), &mut errors);
        let restore = RestoreSettings::from_raw(raw.restore.unwrap_or_default(), &mut errors);
        let opensearch = CommandStep::from_raw(
            &command_step::OPENSEARCH,
            raw.opensearch.unwrap_or_default(),
            &nodes,
            &mut errors,
        );
        let kafka = CommandStep::from_raw(&command_step::KAFKA, raw.kafka.unwrap_or_default(), &nodes, &mut errors);
        let retention = Retention::from_raw(raw.retention.unwrap_or_default(), &mut errors);
        let metrics_textfile = metrics::textfile(raw.metrics.unwrap_or_default(), &mut errors);
        let drill = DrillSettings::from_raw(raw.drill.unwrap_or_default(), &rondb, &mut errors);
        let errors = errors.into_list();
        // Without this node there is an error already.
        let Some(this_node) = this_node.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        Ok(Config {
            cluster,
            nodes,
            this_node,
            repository,
            rondb,
            config_paths,
            backup,
            agent,
            tls,
            hopsfs,
            restore,
            opensearch,
            kafka,
            retention,
            drill,
            metrics_textfile,
            origins,
            files,
        })
    }

    /// The `[[nodes]]` entry of this host.
    pub fn this(&self) -> &NodeSpec {
        self.node(&self.this_node).unwrap_or(&self.nodes[0])
    }

    /// The `[[nodes]]` entry named `name`.
    pub fn node(&self, name: &NodeName) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| &n.name == name)
    }

    /// Every RonDB data node id in the cluster and the node hosting it.
    pub fn rondb_data_nodes(&self) -> BTreeMap<u32, &NodeSpec> {
        self.nodes
            .iter()
            .flat_map(|n| n.rondb_node_ids.iter().map(move |id| (*id, n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::rondb::DEFAULT_EXCLUDE_USERS;
    use super::test_support::{config_in, MINIMAL};
    use super::*;

    #[test]
    fn minimal_config_gets_the_runbook_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = config_in(dir.path(), MINIMAL).unwrap();
        assert_eq!(c.rondb.user, "mysql");
        assert_eq!(c.rondb.backup_dir, Path::new("/srv/hops/mysql-cluster/ndb/backups"));
        assert_eq!(c.rondb.exclude_users, DEFAULT_EXCLUDE_USERS);
        assert_eq!(c.this().name.as_str(), "head1");
        assert_eq!(c.rondb_data_nodes().keys().copied().collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn every_problem_is_reported_with_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = MINIMAL
            .replace("127.0.0.2:7878", "nohost")
            .replace("rondb_node_ids = [2, 3]", "rondb_node_ids = [2, 300]")
            .replace("path = \"/mnt/hwdr\"", "path = \"relative\"")
            .replace("name = \"head1\"\n[repository]", "name = \"head9\"\n[repository]");
        let err = config_in(dir.path(), &text).unwrap_err().to_string();
        assert!(
            err.contains("hwdr.toml: [[nodes]] #2 address: 'nohost' must be host:port"),
            "{err}"
        );
        assert!(
            err.contains("hwdr.toml: [[nodes]] #2 rondb_node_ids: 300 is not a RonDB node id"),
            "{err}"
        );
        assert!(
            err.contains("hwdr.toml: [repository] path: 'relative' must be an absolute path"),
            "{err}"
        );
        assert!(
            err.contains("hwdr.toml: [node] name: is 'head9', which is not a [[nodes]] entry"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hwdr.toml.example");
        std::fs::copy(example, dir.path().join("hwdr.toml")).unwrap();
        std::fs::create_dir(dir.path().join("hwdr.d")).unwrap();
        std::fs::write(dir.path().join("hwdr.d/50-node.toml"), "[node]\nname = \"ndb2\"\n").unwrap();
        let c = Config::load(&dir.path().join("hwdr.toml")).unwrap();
        assert_eq!(c.this().rondb_node_ids, [3]);
        assert_eq!(c.agent.listen, "10.0.0.12:7878");
        assert_eq!(c.origins.key("node", "name"), "hwdr.d/50-node.toml: [node] name");
    }

    #[test]
    fn duplicate_data_node_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{MINIMAL}\n[[nodes]]\nname = \"ndb2\"\naddress = \"127.0.0.3:7878\"\nroles = [\"rondb\"]\nrondb_node_ids = [3]\n"
        );
        // The appended [[nodes]] lands after [repository]: TOML puts it in the same array.
        let err = config_in(dir.path(), &text).unwrap_err().to_string();
        assert!(err.contains("data node id 3 is also on node 'ndb1'"), "{err}");
    }
}
