//! `[hopsfs]`: the HopsFS data nodes' storage.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::raw::RawHopsfs;
use super::validate::{Errors, Section};

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

impl HopsfsSettings {
    /// Validates `[hopsfs]`.
    pub(super) fn from_raw(h: RawHopsfs, errors: &mut Errors) -> HopsfsSettings {
        let mut s = errors.section("hopsfs");
        let block_storage = block_storage(h.block_storage.as_deref(), &mut s);
        let data_dirs: Vec<PathBuf> = h
            .data_dirs
            .unwrap_or_else(|| vec!["/srv/hopsworks-data/hops/hopsdata/hdfs/dn".into()])
            .into_iter()
            .map(|d| s.abs_path("data_dirs", Some(d), ""))
            .collect();
        if data_dirs.is_empty() {
            s.err("data_dirs", "at least one data folder is required");
        }
        let datanode_unit = h.datanode_unit.unwrap_or_else(|| "datanode.service".into());
        if !datanode_unit.is_empty()
            && !datanode_unit
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c))
        {
            s.err("datanode_unit", format!("'{datanode_unit}' is not a systemd unit name"));
        }
        let safemode_command = s.argv(
            "safemode_command",
            h.safemode_command,
            &["/srv/hops/hadoop/bin/hdfs", "dfsadmin", "-safemode", "get"],
        );
        HopsfsSettings {
            user: h.user.unwrap_or_else(|| "hdfs".into()),
            group: h.group.unwrap_or_else(|| "hadoop".into()),
            data_dirs,
            block_storage,
            datanode_unit,
            safemode_command,
            list_cache: h.list_cache.unwrap_or(true),
        }
    }
}

/// `[hopsfs] block_storage`: `local` (the default) or `cloud`.
fn block_storage(raw: Option<&str>, s: &mut Section<'_, '_>) -> BlockStorage {
    match raw {
        None | Some("local") => BlockStorage::Local,
        Some("cloud") => BlockStorage::Cloud,
        Some(other) => {
            s.err("block_storage", format!("'{other}' is neither \"local\" nor \"cloud\""));
            BlockStorage::Local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use super::BlockStorage;

    #[test]
    fn defaults_follow_hopsworks() {
        let h = load_with("").unwrap().hopsfs;
        assert_eq!((h.user.as_str(), h.group.as_str()), ("hdfs", "hadoop"));
        assert_eq!((h.block_storage, h.list_cache), (BlockStorage::Local, true));
        assert_eq!(h.datanode_unit, "datanode.service");
        let h = load_with("[hopsfs]\nblock_storage = \"cloud\"\ndatanode_unit = \"\"\n")
            .unwrap()
            .hopsfs;
        assert_eq!((h.block_storage, h.datanode_unit.as_str()), (BlockStorage::Cloud, ""));
    }

    #[test]
    fn each_key_is_named_with_its_file() {
        let hopsfs = r#"
[hopsfs]
block_storage = "s3"
data_dirs = ["/data/1", "data/2"]
datanode_unit = "datanode service"
safemode_command = ["hdfs", ""]
"#;
        assert_eq!(
            errors_with(hopsfs),
            [
                "hwdr.d/50-test.toml: [hopsfs] block_storage: 's3' is neither \"local\" nor \"cloud\"",
                "hwdr.d/50-test.toml: [hopsfs] data_dirs: 'data/2' must be an absolute path",
                "hwdr.d/50-test.toml: [hopsfs] datanode_unit: 'datanode service' is not a systemd unit name",
                "hwdr.d/50-test.toml: [hopsfs] safemode_command: 'hdfs' must be an absolute path",
                "hwdr.d/50-test.toml: [hopsfs] safemode_command: arguments must not be empty",
            ]
        );
        assert_eq!(
            errors_with("[hopsfs]\ndata_dirs = []\nsafemode_command = []\n"),
            [
                "hwdr.d/50-test.toml: [hopsfs] data_dirs: at least one data folder is required",
                "hwdr.d/50-test.toml: [hopsfs] safemode_command: must name a program",
            ]
        );
    }
}
