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
    pub hopsfs: Option<RawHopsfs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHopsfs {
    pub user: Option<String>,
    pub group: Option<String>,
    pub data_dirs: Option<Vec<String>>,
    pub block_storage: Option<String>,
    pub datanode_unit: Option<String>,
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
    pub token_file: Option<String>,
    pub request_timeout: Option<String>,
    pub shutdown_timeout: Option<String>,
}
