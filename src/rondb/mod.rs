//! RonDB: the head-node steps of a backup (users, schemas, `START BACKUP`)
//! and the data-node step (collecting this node's parts).

pub mod dump;
pub mod mgm;
pub mod parts;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use tracing::info;

use crate::config::Config;
use crate::repo::fsutil::FileEntry;

/// What collecting a node's parts stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    pub files: Vec<FileEntry>,
    /// Part count per data node id.
    pub parts: BTreeMap<u32, u32>,
}

/// The node-local step: finds this node's complete parts of backup `ndb_id`
/// for `node_ids` under `[rondb] backup_dir` and copies them into
/// `backup_dir` (the backup's folder in the repository).
pub fn collect_parts(config: &Config, ndb_id: u32, node_ids: &BTreeSet<u32>, backup_dir: &Path) -> Result<Collected> {
    let src = parts::node_backup_dir(&config.rondb.backup_dir, ndb_id);
    let found = parts::find_parts(&src, ndb_id, node_ids)?;
    let files = parts::copy_parts(&src, backup_dir, ndb_id, &found)?;
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    info!(files = files.len(), bytes, "collected parts of data nodes {node_ids:?}");
    Ok(Collected {
        files,
        parts: found.iter().map(|p| (p.node_id, p.parts)).collect(),
    })
}
