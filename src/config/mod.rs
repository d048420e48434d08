//! Configuration: `/etc/hwdr/hwdr.toml` plus `hwdr.d/*.toml`, the same on every
//! node, parsed ([`raw`]), merged ([`load`]) and validated once into the types
//! the rest of hwdr uses. Every error names the file and the key.

mod load;
mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::Origins;

use crate::exit::HwdrError;

/// Where the configuration lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/hwdr/hwdr.toml";

/// The roles a node can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the namenodes, mysqld and the management server; leads backups.
    Head,
    /// Hosts RonDB data nodes.
    Rondb,
    /// Hosts a HopsFS data node.
    Hopsfs,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Head => "head",
            Role::Rondb => "rondb",
            Role::Hopsfs => "hopsfs",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "head" => Ok(Role::Head),
            "rondb" => Ok(Role::Rondb),
            "hopsfs" => Ok(Role::Hopsfs),
            _ => Err(format!("unknown role '{s}' (expected head, rondb or hopsfs)")),
        }
    }
}

/// A node name: letters, digits, `.`, `_`, `-`, at most 63 characters, not
/// starting with a punctuation mark. Safe to use in a path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeName(String);

impl NodeName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if s.len() > 63 || !first_ok || !s.chars().all(ok_char) {
            return Err(format!(
                "invalid node name '{s}' (letters, digits, '.', '_', '-', at most 63, starting with a letter or digit)"
            ));
        }
        Ok(NodeName(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `[[nodes]]` entry.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The node's name, unique in the cluster.
    pub name: NodeName,
    /// `host:port` where its agent listens.
    pub address: String,
    /// What runs on it.
    pub roles: BTreeSet<Role>,
    /// RonDB data node ids hosted here (only with the `rondb` role).
    pub rondb_node_ids: Vec<u32>,
}

impl NodeSpec {
    /// Whether the node has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

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
}

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

/// `[agent]`: the node service.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Where the agent listens (default: this node's `[[nodes]]` address).
    pub listen: String,
    /// The cluster's shared bearer token; readable by its owner only.
    pub token_file: PathBuf,
    /// Limit of one HTTP request from the leader to an agent.
    pub request_timeout: Duration,
    /// How long the agent waits for a complete request header.
    pub header_timeout: Duration,
    /// How long the agent keeps a connection with no request open.
    pub idle_timeout: Duration,
    /// How long a stopping agent waits for its running job.
    pub shutdown_timeout: Duration,
}

/// Where HopsFS keeps its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockStorage {
    /// On the data nodes' disks: hwdr backs the blocks up.
    Local,
    /// In cloud object storage (S3, ...), which keeps them durable: hwdr
    /// backs up no blocks.
    Cloud,
}

/// `[hopsfs]`: the data nodes' storage.
#[derive(Debug, Clone)]
pub struct HopsfsSettings {
    /// The user the data node runs as and reads its blocks as.
    pub user: String,
    /// The group of its files.
    pub group: String,
    /// `dfs.datanode.data.dir`: every storage folder of a data node.
    pub data_dirs: Vec<PathBuf>,
    pub block_storage: BlockStorage,
    /// systemd unit of the data node, stopped while its blocks are restored;
    /// empty: not managed by hwdr.
    pub datanode_unit: String,
    /// The argv that asks the namenode about safe mode (run as `user`).
    pub safemode_command: Vec<String>,
    /// Reuse the listing of a block folder whose inode, mtime and ctime have
    /// not changed (`<[restore] state_dir>/hopsfs-list/`).
    pub list_cache: bool,
}

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

/// A restore step that runs one program on one node (`[opensearch]`, `[kafka]`).
#[derive(Debug, Clone)]
pub struct CommandStep {
    /// Where it runs (default: the leader, the first head node).
    pub node: NodeName,
    pub user: String,
    pub argv: Vec<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: String,
    /// Every node, in the order of the file (the leader order of head nodes).
    pub nodes: Vec<NodeSpec>,
    /// Which entry of `nodes` this host is.
    pub this_node: NodeName,
    pub repository: PathBuf,
    pub rondb: RondbSettings,
    /// Files and folders copied into every backup (the cluster definition).
    pub config_paths: Vec<PathBuf>,
    pub backup: BackupSettings,
    pub agent: AgentSettings,
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

const DEFAULT_EXCLUDE_USERS: [&str; 4] = ["root", "mysql.sys", "mysql.session", "mysql.infoschema"];
const DEFAULT_EXCLUDE_DATABASES: [&str; 6] = [
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "ndbinfo",
    "glassfish_timers",
];

impl Config {
    /// Loads and validates `path` and its drop-ins.
    pub fn load(path: &Path) -> Result<Config, HwdrError> {
        let loaded = load::load(path).map_err(|errors| HwdrError::Config(errors.join("\n")))?;
        let mut v = Validator {
            origins: &loaded.origins,
            errors: Vec::new(),
        };
        let config = v.config(loaded.raw, path);
        match config {
            Some(mut config) if v.errors.is_empty() => {
                config.origins = loaded.origins;
                config.files = loaded.files;
                Ok(config)
            }
            _ => Err(HwdrError::Config(v.errors.join("\n"))),
        }
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

struct Validator<'a> {
    origins: &'a Origins,
    errors: Vec<String>,
}

impl Validator<'_> {
    fn err(&mut self, section: &str, key: &str, msg: impl fmt::Display) {
        self.errors.push(format!("{}: {msg}", self.origins.key(section, key)));
    }

    fn required(&mut self, section: &str, key: &str, value: Option<String>) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v,
            Some(_) => {
                self.err(section, key, "must not be empty");
                String::new()
            }
            None => {
                self.err(section, key, "is required");
                String::new()
            }
        }
    }

    fn abs_path(&mut self, section: &str, key: &str, value: Option<String>, default: &str) -> PathBuf {
        let value = value.unwrap_or_else(|| default.to_owned());
        let path = PathBuf::from(&value);
        if !path.is_absolute() {
            self.err(section, key, format!("'{value}' must be an absolute path"));
        }
        path
    }

    fn duration(&mut self, section: &str, key: &str, value: Option<String>, default: Duration) -> Duration {
        match value.map(|v| parse_duration(&v)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(section, key, e);
                default
            }
        }
    }

    fn count(&mut self, section: &str, key: &str, value: Option<i64>, default: usize, min: usize) -> usize {
        match value {
            None => default,
            Some(n) if n >= min as i64 && n <= 10_000 => n as usize,
            Some(n) => {
                self.err(section, key, format!("{n} must be between {min} and 10000"));
                default
            }
        }
    }

    /// An argv list: absolute program, no empty elements.
    fn argv(&mut self, section: &str, key: &str, value: Option<Vec<String>>, default: &[&str]) -> Vec<String> {
        let argv = value.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
        match argv.first() {
            None => self.err(section, key, "must name a program"),
            Some(p) if !Path::new(p).is_absolute() => self.err(section, key, format!("'{p}' must be an absolute path")),
            _ => {}
        }
        if argv.iter().any(|a| a.is_empty() || a.contains('\0')) {
            self.err(section, key, "arguments must not be empty");
        }
        argv
    }

    fn command_step(
        &mut self,
        section: &str,
        raw: raw::RawCommandStep,
        first_head: &Option<NodeName>,
        nodes: &[NodeSpec],
        command_key: &str,
        default: &[&str],
    ) -> CommandStep {
        let (given, other) = match command_key {
            "reindex_command" => (raw.reindex_command, raw.restore_command.map(|_| "restore_command")),
            _ => (raw.restore_command, raw.reindex_command.map(|_| "reindex_command")),
        };
        if let Some(other) = other {
            self.err(section, other, format!("not a key of [{section}] (use {command_key})"));
        }
        let argv = self.argv(section, command_key, given, default);
        let node = match raw.node {
            Some(n) => match n.parse::<NodeName>() {
                Ok(name) if nodes.iter().any(|o| o.name == name) => Some(name),
                Ok(_) => {
                    self.err(section, "node", format!("'{n}' is not a [[nodes]] entry"));
                    None
                }
                Err(e) => {
                    self.err(section, "node", e);
                    None
                }
            },
            None => first_head.clone(),
        };
        CommandStep {
            node: node.unwrap_or_else(|| NodeName("unknown".into())),
            user: raw.user.unwrap_or_else(|| "root".into()),
            argv,
        }
    }

    fn config(&mut self, raw: raw::RawConfig, path: &Path) -> Option<Config> {
        let cluster_raw = raw.cluster.unwrap_or_default();
        let cluster = self.required("cluster", "name", cluster_raw.name);
        if !cluster.is_empty() && cluster.parse::<NodeName>().is_err() {
            self.err(
                "cluster",
                "name",
                format!("invalid cluster name '{cluster}' (letters, digits, '.', '_', '-')"),
            );
        }

        let nodes = self.nodes(raw.nodes.unwrap_or_default());
        let this_node = self.this_node(raw.node.unwrap_or_default().name, &nodes);

        let repo = raw.repository.unwrap_or_default();
        let repository = match repo.path {
            None => {
                self.err("repository", "path", "is required");
                PathBuf::new()
            }
            some => self.abs_path("repository", "path", some, ""),
        };

        let r = raw.rondb.unwrap_or_default();
        let mut rondb = RondbSettings {
            user: r.user.unwrap_or_else(|| "mysql".into()),
            mgm_client: self.abs_path(
                "rondb",
                "mgm_client",
                r.mgm_client,
                "/srv/hops/mysql-cluster/ndb/scripts/mgm-client.sh",
            ),
            mysqlpump: self.abs_path("rondb", "mysqlpump", r.mysqlpump, "/srv/hops/mysql/bin/mysqlpump"),
            mysqldump: self.abs_path("rondb", "mysqldump", r.mysqldump, "/srv/hops/mysql/bin/mysqldump"),
            mysql: self.abs_path("rondb", "mysql", r.mysql, "/srv/hops/mysql/bin/mysql"),
            socket: self.abs_path("rondb", "socket", r.socket, "/srv/hops/mysql-cluster/mysql.sock"),
            backup_dir: self.abs_path(
                "rondb",
                "backup_dir",
                r.backup_dir,
                "/srv/hops/mysql-cluster/ndb/backups",
            ),
            exclude_users: r
                .exclude_users
                .unwrap_or_else(|| DEFAULT_EXCLUDE_USERS.map(String::from).to_vec()),
            exclude_databases: r
                .exclude_databases
                .unwrap_or_else(|| DEFAULT_EXCLUDE_DATABASES.map(String::from).to_vec()),
            keep_local: self.count("rondb", "keep_local", r.keep_local, 1, 0),
            ndb_restore: self.abs_path("rondb", "ndb_restore", r.ndb_restore, "/srv/hops/mysql/bin/ndb_restore"),
            mysql_client: self.abs_path(
                "rondb",
                "mysql_client",
                r.mysql_client,
                "/srv/hops/mysql-cluster/ndb/scripts/mysql-client.sh",
            ),
            connectstring: String::new(),
        };
        // ndb_restore talks to the management server: by default on the first
        // head node, at RonDB's port 1186.
        rondb.connectstring = match r.connectstring {
            Some(cs) => {
                if let Err(e) = check_address(&cs) {
                    self.err("rondb", "connectstring", e);
                }
                cs
            }
            None => nodes
                .iter()
                .find(|n| n.has(Role::Head))
                .and_then(|n| n.address.rsplit_once(':'))
                .map(|(host, _)| format!("{host}:1186"))
                .unwrap_or_default(),
        };
        if rondb.user.is_empty() {
            self.err("rondb", "user", "must not be empty");
        }
        for (key, list) in [
            ("exclude_users", &rondb.exclude_users),
            ("exclude_databases", &rondb.exclude_databases),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|u| u.is_empty() || u.contains(',') || u.contains(char::is_whitespace))
            {
                self.err("rondb", key, format!("'{bad}' is not a valid name"));
            }
        }

        let config_paths = raw
            .config_backup
            .unwrap_or_default()
            .paths
            .unwrap_or_default()
            .into_iter()
            .map(|p| self.abs_path("config_backup", "paths", Some(p), ""))
            .collect();

        let b = raw.backup.unwrap_or_default();
        let backup = BackupSettings {
            ndb_backup_timeout: self.duration(
                "backup",
                "ndb_backup_timeout",
                b.ndb_backup_timeout,
                Duration::from_secs(6 * 3600),
            ),
            dump_timeout: self.duration("backup", "dump_timeout", b.dump_timeout, Duration::from_secs(3600)),
            parallelism: self.count("backup", "parallelism", b.parallelism, 4, 1),
            node_timeout: self.duration("backup", "node_timeout", b.node_timeout, Duration::from_secs(60)),
        };

        let a = raw.agent.unwrap_or_default();
        let this_address = this_node
            .as_ref()
            .and_then(|n| nodes.iter().find(|o| &o.name == n))
            .map(|n| n.address.clone())
            .unwrap_or_default();
        let listen = a.listen.unwrap_or(this_address);
        if let Err(e) = check_address(&listen) {
            self.err("agent", "listen", e);
        }
        let agent = AgentSettings {
            listen,
            token_file: self.abs_path("agent", "token_file", a.token_file, "/etc/hwdr/agent.token"),
            request_timeout: self.duration("agent", "request_timeout", a.request_timeout, Duration::from_secs(10)),
            header_timeout: self.duration("agent", "header_timeout", a.header_timeout, Duration::from_secs(10)),
            idle_timeout: self.duration("agent", "idle_timeout", a.idle_timeout, Duration::from_secs(60)),
            shutdown_timeout: self.duration("agent", "shutdown_timeout", a.shutdown_timeout, Duration::from_secs(75)),
        };

        let h = raw.hopsfs.unwrap_or_default();
        let block_storage = match h.block_storage.as_deref() {
            None | Some("local") => BlockStorage::Local,
            Some("cloud") => BlockStorage::Cloud,
            Some(other) => {
                self.err(
                    "hopsfs",
                    "block_storage",
                    format!("'{other}' is neither \"local\" nor \"cloud\""),
                );
                BlockStorage::Local
            }
        };
        let data_dirs: Vec<PathBuf> = h
            .data_dirs
            .unwrap_or_else(|| vec!["/srv/hopsworks-data/hops/hopsdata/hdfs/dn".into()])
            .into_iter()
            .map(|d| self.abs_path("hopsfs", "data_dirs", Some(d), ""))
            .collect();
        if data_dirs.is_empty() {
            self.err("hopsfs", "data_dirs", "at least one data folder is required");
        }
        let datanode_unit = h.datanode_unit.unwrap_or_else(|| "datanode.service".into());
        if !datanode_unit.is_empty()
            && !datanode_unit
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c))
        {
            self.err(
                "hopsfs",
                "datanode_unit",
                format!("'{datanode_unit}' is not a systemd unit name"),
            );
        }
        let safemode_command = self.argv(
            "hopsfs",
            "safemode_command",
            h.safemode_command,
            &["/srv/hops/hadoop/bin/hdfs", "dfsadmin", "-safemode", "get"],
        );
        let hopsfs = HopsfsSettings {
            user: h.user.unwrap_or_else(|| "hdfs".into()),
            group: h.group.unwrap_or_else(|| "hadoop".into()),
            data_dirs,
            block_storage,
            datanode_unit,
            safemode_command,
            list_cache: h.list_cache.unwrap_or(true),
        };

        let r = raw.restore.unwrap_or_default();
        let restore = RestoreSettings {
            state_dir: self.abs_path("restore", "state_dir", r.state_dir, "/var/lib/hwdr"),
            staging_dir: self.abs_path(
                "restore",
                "staging_dir",
                r.staging_dir,
                "/srv/hops/mysql-cluster/ndb/backups/hwdr-restore",
            ),
            ndb_restore_parallelism: self.count("restore", "ndb_restore_parallelism", r.ndb_restore_parallelism, 2, 1),
            restore_epoch: r.restore_epoch.unwrap_or(false),
            safemode_timeout: self.duration(
                "restore",
                "safemode_timeout",
                r.safemode_timeout,
                Duration::from_secs(3600),
            ),
            safemode_poll: self.duration("restore", "safemode_poll", r.safemode_poll, Duration::from_secs(10)),
            ndb_restore_timeout: self.duration(
                "restore",
                "ndb_restore_timeout",
                r.ndb_restore_timeout,
                Duration::from_secs(6 * 3600),
            ),
            command_timeout: self.duration(
                "restore",
                "command_timeout",
                r.command_timeout,
                Duration::from_secs(3600),
            ),
        };
        let first_head = nodes.iter().find(|n| n.has(Role::Head)).map(|n| n.name.clone());
        let opensearch = self.command_step(
            "opensearch",
            raw.opensearch.unwrap_or_default(),
            &first_head,
            &nodes,
            "reindex_command",
            &["/srv/hops/epipe/bin/reindex-epipe.sh"],
        );
        let kafka = self.command_step(
            "kafka",
            raw.kafka.unwrap_or_default(),
            &first_head,
            &nodes,
            "restore_command",
            &["/srv/hops/kafka/bin/kafka-restore.sh"],
        );

        let t = raw.retention.unwrap_or_default();
        let retention = Retention {
            keep_last: self.count("retention", "keep_last", t.keep_last, 7, 0),
            keep_daily: self.count("retention", "keep_daily", t.keep_daily, 7, 0),
            keep_weekly: self.count("retention", "keep_weekly", t.keep_weekly, 4, 0),
            keep_monthly: self.count("retention", "keep_monthly", t.keep_monthly, 6, 0),
            min_age: self.duration("retention", "min_age", t.min_age, Duration::from_secs(86_400)),
            keep_failed_days: self.count("retention", "keep_failed_days", t.keep_failed_days, 7, 0),
        };
        let metrics_textfile = self.abs_path(
            "metrics",
            "textfile",
            raw.metrics.unwrap_or_default().textfile,
            "/var/lib/prometheus/node-exporter/hwdr.prom",
        );

        let d = raw.drill.unwrap_or_default();
        if let Some(cs) = &d.connectstring {
            if let Err(e) = check_address(cs) {
                self.err("drill", "connectstring", e);
            }
        }
        let drill = DrillSettings {
            connectstring: d.connectstring,
            ndb_restore: match d.ndb_restore {
                Some(p) => self.abs_path("drill", "ndb_restore", Some(p), ""),
                None => rondb.ndb_restore.clone(),
            },
            mysql_client: d
                .mysql_client
                .map(|p| self.abs_path("drill", "mysql_client", Some(p), "")),
            check_command: match d.check_command {
                Some(argv) => self.argv("drill", "check_command", Some(argv), &[]),
                None => Vec::new(),
            },
            user: d.user.unwrap_or_else(|| rondb.user.clone()),
        };

        let this_node = this_node?;
        Some(Config {
            cluster,
            nodes,
            this_node,
            repository,
            rondb,
            config_paths,
            backup,
            agent,
            hopsfs,
            restore,
            opensearch,
            kafka,
            retention,
            drill,
            metrics_textfile,
            origins: Origins::default(),
            files: vec![path.to_path_buf()],
        })
    }

    fn nodes(&mut self, raw: Vec<raw::RawNode>) -> Vec<NodeSpec> {
        if raw.is_empty() {
            self.errors.push(format!(
                "{}: [[nodes]]: at least one node is required",
                self.origins.file_of("nodes")
            ));
        }
        let file = self.origins.file_of("nodes").to_owned();
        let mut nodes: Vec<NodeSpec> = Vec::new();
        let mut ndb_ids: BTreeMap<u32, String> = BTreeMap::new();
        for (i, n) in raw.into_iter().enumerate() {
            let at = format!("{file}: [[nodes]] #{}", i + 1);
            let mut err = |key: &str, msg: String| self.errors.push(format!("{at} {key}: {msg}"));
            let name = match n.name.as_deref().map(str::parse::<NodeName>) {
                None => {
                    err("name", "is required".into());
                    continue;
                }
                Some(Err(e)) => {
                    err("name", e);
                    continue;
                }
                Some(Ok(name)) => name,
            };
            if nodes.iter().any(|o| o.name == name) {
                err("name", format!("'{name}' appears twice"));
            }
            let address = n.address.unwrap_or_default();
            if let Err(e) = check_address(&address) {
                err("address", e);
            }
            let mut roles = BTreeSet::new();
            for r in n.roles.unwrap_or_default() {
                match r.parse() {
                    Ok(role) => {
                        roles.insert(role);
                    }
                    Err(e) => err("roles", e),
                }
            }
            if roles.is_empty() {
                err("roles", "at least one of head, rondb, hopsfs is required".into());
            }
            let mut rondb_node_ids = Vec::new();
            for id in n.rondb_node_ids.unwrap_or_default() {
                match u32::try_from(id) {
                    Ok(id @ 1..=255) => {
                        if let Some(other) = ndb_ids.insert(id, name.to_string()) {
                            err("rondb_node_ids", format!("data node id {id} is also on node '{other}'"));
                        }
                        rondb_node_ids.push(id);
                    }
                    _ => err("rondb_node_ids", format!("{id} is not a RonDB node id (1-255)")),
                }
            }
            if roles.contains(&Role::Rondb) && rondb_node_ids.is_empty() {
                err(
                    "rondb_node_ids",
                    "a rondb node needs the ids of the data nodes it hosts".into(),
                );
            }
            if !roles.contains(&Role::Rondb) && !rondb_node_ids.is_empty() {
                err(
                    "rondb_node_ids",
                    "only nodes with the rondb role host data nodes".into(),
                );
            }
            nodes.push(NodeSpec {
                name,
                address,
                roles,
                rondb_node_ids,
            });
        }
        if !nodes.is_empty() && !nodes.iter().any(|n| n.has(Role::Head)) {
            self.errors
                .push(format!("{file}: [[nodes]]: no node has the head role"));
        }
        nodes
    }

    fn this_node(&mut self, name: Option<String>, nodes: &[NodeSpec]) -> Option<NodeName> {
        let (name, how) = match name {
            Some(name) => (name, "is"),
            None => match nix::unistd::gethostname() {
                Ok(host) => (
                    host.to_string_lossy().into_owned(),
                    "defaults to the host name, which is",
                ),
                Err(e) => {
                    self.err("node", "name", format!("not set and the host name is unreadable: {e}"));
                    return None;
                }
            },
        };
        let found = name
            .parse::<NodeName>()
            .ok()
            .filter(|n| nodes.iter().any(|o| &o.name == n));
        if found.is_none() && !nodes.is_empty() {
            self.err(
                "node",
                "name",
                format!("{how} '{name}', which is not a [[nodes]] entry"),
            );
        }
        found
    }
}

fn check_address(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("'{address}' must be host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!("'{address}' has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("'{address}' has no valid port")),
    }
}

/// Parses `90s`, `30m`, `4h`, `2d` or sums such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration (e.g. 90s, 30m, 4h, 1d, 1h30m)");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|x| total.checked_add(x)).ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "10", "5x", "m", "0s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_names() {
        assert!("head1".parse::<NodeName>().is_ok());
        assert!("ndb-1.prod_a".parse::<NodeName>().is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "a b", &"x".repeat(64)] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad}");
        }
    }

    fn config_in(dir: &Path, text: &str) -> Result<Config, HwdrError> {
        let path = dir.join("hwdr.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    const MINIMAL: &str = r#"
[cluster]
name = "prod"
[[nodes]]
name = "head1"
address = "127.0.0.1:7878"
roles = ["head"]
[[nodes]]
name = "ndb1"
address = "127.0.0.2:7878"
roles = ["rondb"]
rondb_node_ids = [2, 3]
[node]
name = "head1"
[repository]
path = "/mnt/hwdr"
"#;

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
