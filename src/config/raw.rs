//! The configuration exactly as written in TOML: every key optional, unknown
//! keys rejected. [`super::Config`] is built from this after validation.

use serde::Deserialize;

/// One configuration file, or the merge of all of them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub cluster: Option<RawCluster>,
    pub nodes: Option<Vec<RawNode>>,
    pub node: Option<RawThisNode>,
    pub repository: Option<RawRepository>,
    pub rondb: Option<RawRondb>,
    pub config_backup: Option<RawConfigBackup>,
    pub backup: Option<RawBackup>,
    pub agent: Option<RawAgent>,
    pub tls: Option<RawTls>,
    pub hopsfs: Option<RawHopsfs>,
    pub restore: Option<RawRestore>,
    pub opensearch: Option<RawCommandStep>,
    pub kafka: Option<RawCommandStep>,
    pub retention: Option<RawRetention>,
    pub metrics: Option<RawMetrics>,
    pub drill: Option<RawDrill>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    pub connectstring: Option<String>,
    pub ndb_restore: Option<String>,
    pub mysql_client: Option<String>,
    pub check_command: Option<Vec<String>>,
    pub user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub keep_last: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
    pub min_age: Option<String>,
    pub keep_failed_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub textfile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestore {
    pub state_dir: Option<String>,
    pub staging_dir: Option<String>,
    pub ndb_restore_parallelism: Option<i64>,
    pub restore_epoch: Option<bool>,
    pub safemode_timeout: Option<String>,
    pub safemode_poll: Option<String>,
    pub ndb_restore_timeout: Option<String>,
    pub command_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommandStep {
    pub node: Option<String>,
    pub user: Option<String>,
    pub reindex_command: Option<Vec<String>>,
    pub restore_command: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHopsfs {
    pub user: Option<String>,
    pub group: Option<String>,
    pub data_dirs: Option<Vec<String>>,
    pub block_storage: Option<String>,
    pub datanode_unit: Option<String>,
    pub safemode_command: Option<Vec<String>>,
    pub list_cache: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<String>,
    pub address: Option<String>,
    pub roles: Option<Vec<String>>,
    pub rondb_node_ids: Option<Vec<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThisNode {
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepository {
    pub path: Option<String>,
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub ca_file: Option<String>,
    pub credentials_file: Option<String>,
    pub profile: Option<String>,
    pub upload_parallelism: Option<i64>,
    pub part_size_mib: Option<i64>,
    pub request_timeout: Option<String>,
    pub retries: Option<i64>,
    pub retry_timeout: Option<String>,
    pub key_file: Option<String>,
    pub passphrase_file: Option<String>,
    pub compression_level: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRondb {
    pub user: Option<String>,
    pub mgm_client: Option<String>,
    pub mysqlpump: Option<String>,
    pub mysqldump: Option<String>,
    pub mysql: Option<String>,
    pub socket: Option<String>,
    pub backup_dir: Option<String>,
    pub exclude_users: Option<Vec<String>>,
    pub exclude_databases: Option<Vec<String>>,
    pub keep_local: Option<i64>,
    pub ndb_restore: Option<String>,
    pub mysql_client: Option<String>,
    pub connectstring: Option<String>,
    pub backup_password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfigBackup {
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    pub ndb_backup_timeout: Option<String>,
    pub dump_timeout: Option<String>,
    pub parallelism: Option<i64>,
    pub node_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub listen: Option<String>,
    pub auth: Option<String>,
    pub token_file: Option<String>,
    pub metrics_without_certificate: Option<bool>,
    pub request_timeout: Option<String>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub shutdown_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificate: Option<String>,
    pub key: Option<String>,
    pub ca: Option<String>,
    pub reload_interval: Option<String>,
}
