//! Restoring one HopsFS data node from a backup, in two phases, so that
//! nothing on the node changes before everything it needs was read and
//! checked:
//!
//! 1. **stage** ([`stage_node`]): every block of the node's inventory that is
//!    not already in place and intact is copied from the block store into
//!    `<data dir>/.hwdr-staging/` (inside the storage folder, so on the same
//!    file system), checked against its CRCs on the way, owned by `[hopsfs]
//!    user:group` with the mode it had; the VERSION files likewise. A stored
//!    block that is missing or fails its CRCs is reported as damage, naming
//!    it; the free space is checked first. Once all is staged and synced, a
//!    marker `staged.json` names the backup. The data node keeps running.
//! 2. **place** ([`place_node`]): the data node's unit stopped (by the
//!    caller, [`crate::agent::jobs`]), the folders are made and every staged
//!    file is renamed into place: no copy, no temp file in `current/`. Blocks
//!    already in place are kept; with `clean`, block files the backup does not
//!    name are removed. The staging folder goes, the file system is synced.
//!
//! Both are idempotent and resumable after a crash at any point: a staged or
//! placed block is not copied again, temp files of an interrupted stage are
//! removed by the next one, and the placement continues from where it was.
//!
//! This file holds this node's part of a backup and the staging folder's
//! layout; `walk` streams the inventory, `stage` and `place` are the two
//! phases, `fsops` the folder, owner and sync steps they share.

mod fsops;
mod place;
mod stage;
mod walk;

pub use place::{place_node, Restored};
pub use stage::{refuse_damage, stage_node, StagedBlocks};

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::node::inventory_rel;
use super::store::{BlockKey, BlockStore};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::repo::backup::BackupReader;
use crate::repo::manifest::{FileEntry, HopsfsInfo, Manifest};
use crate::repo::Repository;

/// The staging folder's name inside a storage folder.
pub const STAGING: &str = ".hwdr-staging";

/// This node's part of a complete backup: the manifest, its HopsFS part, the
/// backup folder and the inventory path, checked against the manifest.
struct Prepared {
    manifest: Manifest,
    hopsfs: HopsfsInfo,
    backup: BackupReader,
    store: BlockStore,
    /// The node's inventory, as the manifest lists it.
    inventory: FileEntry,
}

/// Whether backup `id` holds HopsFS blocks of this node.
pub fn holds_this_node(manifest: &Manifest, config: &Config) -> bool {
    manifest
        .hopsfs
        .as_ref()
        .is_some_and(|h| h.nodes.iter().any(|n| n == config.this_node.as_str()))
}

fn prepare(config: &Config, id: BackupId) -> Result<Prepared> {
    let node = config.this_node.as_str();
    let repo = Repository::of(config);
    let manifest = repo.complete_manifest(id)?;
    let hopsfs = manifest
        .hopsfs
        .clone()
        .ok_or_else(|| anyhow!("backup {id} holds no HopsFS data"))?;
    if !hopsfs.nodes.iter().any(|n| n == node) {
        bail!("backup {id} holds no HopsFS inventory of node {node}");
    }
    let inventory = entry(&manifest, &inventory_rel(node))?;
    Ok(Prepared {
        manifest,
        hopsfs,
        backup: repo.reader(id),
        store: repo.blocks(),
        inventory,
    })
}

/// The manifest's entry of file `rel`.
fn entry(manifest: &Manifest, rel: &str) -> Result<FileEntry> {
    manifest
        .files()
        .find(|f| f.path == rel)
        .cloned()
        .ok_or_else(|| anyhow!("{rel} is not in the manifest of backup {}", manifest.backup_id))
}

/// The staging folder of storage folder `dir`.
pub fn staging_dir(dir: &Path) -> PathBuf {
    dir.join(STAGING)
}

/// Where block `key` is staged below a staging folder (the store's layout).
fn staged_block(staging: &Path, key: &BlockKey) -> PathBuf {
    staging.join(&key.pool).join(format!(
        "subdir{}/subdir{}/blk_{}_{}",
        (key.id >> 16) & 0xff,
        (key.id >> 8) & 0xff,
        key.id,
        key.genstamp
    ))
}

fn staged_meta(staging: &Path, key: &BlockKey) -> PathBuf {
    let mut p = staged_block(staging, key).into_os_string();
    p.push(".meta");
    PathBuf::from(p)
}

/// Where a pool's VERSION is staged; the storage folder's is `staging/VERSION`.
fn staged_pool_version(staging: &Path, pool: &str) -> PathBuf {
    staging.join(pool).join("VERSION")
}
