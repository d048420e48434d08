//! `manifest.json`: what a backup holds and how it went, node by node. It is
//! written last and atomically; a backup folder without one never counts.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fsutil::FileEntry;
use crate::backup_id::BackupId;
use crate::config::{BlockStorage, Role};

/// Version of the manifest format.
pub const FORMAT: u32 = 1;

/// Outcome of a whole backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Every node and step succeeded.
    Complete,
    /// Some node did not deliver its part; the rest is stored.
    Partial,
    /// A step failed; the backup cannot be restored.
    Failed,
}

impl std::fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupStatus::Complete => "complete",
            BackupStatus::Partial => "partial",
            BackupStatus::Failed => "failed",
        })
    }
}

/// Outcome of one step (or of one node's share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    /// Not run because an earlier step failed.
    Skipped,
}

/// The parsed result of `START BACKUP ... WAIT COMPLETED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NdbBackupResult {
    /// The data node that coordinated the backup.
    pub master_node: u32,
    /// The management node that ordered it.
    pub mgm_node: u32,
    pub start_gcp: u64,
    pub stop_gcp: u64,
    pub records: u64,
    pub log_records: u64,
    pub data_bytes: u64,
    pub log_bytes: u64,
}

/// RonDB part of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RondbInfo {
    /// The `yyDDDHHMM` id given to `START BACKUP` and `ndb_restore -b`.
    pub ndb_backup_id: u32,
    pub result: Option<NdbBackupResult>,
    /// Every data node id whose complete part is in the repository.
    pub data_node_ids: BTreeSet<u32>,
    /// Parts per data node id (1 = single-file layout).
    pub parts: std::collections::BTreeMap<u32, u32>,
}

/// HopsFS part of the manifest. Each node's exact block list and VERSION
/// files are in `hopsfs/<node>/` of the backup (files of its `hopsfs-list`
/// step); the blocks themselves are in the repository's block store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopsfsInfo {
    pub block_storage: BlockStorage,
    /// The HopsFS nodes whose inventories are in the backup.
    pub nodes: Vec<String>,
    pub distinct_blocks: u64,
    pub distinct_bytes: u64,
    pub replicas: u64,
    pub replica_bytes: u64,
    /// Blocks this backup added to the store.
    pub new_blocks: u64,
    pub new_bytes: u64,
    /// Replicas that failed their CRC check, or whose length differs from
    /// the block's good replica; each block was taken from another.
    pub bad_replicas: Vec<String>,
    /// The good length (`pool/blk_<id>_<genstamp>` → bytes) of every block
    /// whose replicas disagreed on it: it overrides the length a node's
    /// inventory lists for its bad replica.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lengths: std::collections::BTreeMap<String, u64>,
}

impl HopsfsInfo {
    /// The length block `key` was stored with, given the length an inventory
    /// lists for it.
    pub fn good_len(&self, key: &crate::hopsfs::store::BlockKey, listed: u64) -> u64 {
        if self.lengths.is_empty() {
            return listed;
        }
        self.lengths.get(&key.to_string()).copied().unwrap_or(listed)
    }
}

/// One step on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

/// What one node did for the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub roles: BTreeSet<Role>,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
}

/// The manifest of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: BackupId,
    pub cluster: String,
    pub status: BackupStatus,
    pub hwdr_version: String,
    /// The head node that ran the backup.
    pub leader: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The first step that failed, as `node/step`.
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub rondb: RondbInfo,
    /// Absent when no node has the hopsfs role.
    #[serde(default)]
    pub hopsfs: Option<HopsfsInfo>,
    pub nodes: Vec<NodeRecord>,
}

impl Manifest {
    /// Every file of the backup, from every node and step.
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.nodes
            .iter()
            .flat_map(|n| n.steps.iter())
            .flat_map(|s| s.files.iter())
    }

    /// Total size of the backup's own files.
    pub fn size(&self) -> u64 {
        self.files().map(|f| f.size).sum()
    }
}
