//! RonDB: the head-node steps of a backup (users, schemas, `START BACKUP`)
//! and the data-node steps (collecting this node's parts, pruning old local
//! backups). The node-local steps are plain functions: the leader calls them
//! in-process for itself, an agent calls them for a remote leader.

pub mod dump;
pub mod mgm;
pub mod parts;
pub mod password;
pub mod restore;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::backup_id::BackupId;
use crate::config::Config;
use crate::job::JobControl;
use crate::repo::manifest::BackupStatus;
use crate::repo::manifest::FileEntry;
use crate::repo::{ManifestState, Repository};

/// What collecting a node's parts stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    pub files: Vec<FileEntry>,
    /// Part count per data node id.
    pub parts: BTreeMap<u32, u32>,
}

/// Finds this node's complete parts of backup `id` (for the data node ids the
/// config places here) under `[rondb] backup_dir` and copies them into the
/// backup's folder in the repository, which must exist and not be finished,
/// `[repository] upload_parallelism` files at once.
pub fn collect_parts(config: &Config, id: BackupId, control: &JobControl) -> Result<Collected> {
    let node_ids: BTreeSet<u32> = config.this().rondb_node_ids.iter().copied().collect();
    let backup = Repository::of(config).backup_in_progress(id)?;
    let ndb_id = id.ndb_id();
    let src = parts::node_backup_dir(&config.rondb.backup_dir, ndb_id);
    let found = parts::find_parts(&src, ndb_id, &node_ids)?;
    let threads = config.repository.upload_parallelism;
    let files = parts::copy_parts(&src, &backup, ndb_id, &found, threads, control)?;
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    info!(
        files = files.len(),
        bytes, "collected the parts of data nodes {node_ids:?}"
    );
    Ok(Collected {
        files,
        parts: found.iter().map(|p| (p.node_id, p.parts)).collect(),
    })
}

/// Removes local `BACKUP-<id>` folders of hwdr backups, keeping the newest
/// `[rondb] keep_local` (by the backup times in the manifests, never by id)
/// and every one whose parts are not in a complete backup of the repository.
/// Folders not named by an hwdr id are left alone.
pub fn prune_local(config: &Config, control: &JobControl) -> Result<Vec<String>> {
    let root = config.rondb.backup_dir.join("BACKUP");
    let repo = Repository::of(config);
    let my_ids: BTreeSet<u32> = config.this().rondb_node_ids.iter().copied().collect();
    // Only folders whose backup is complete in the repository may go.
    let mut stored: Vec<(DateTime<Utc>, BackupId, String)> = Vec::new();
    for (id, name) in local_backups(&root)? {
        control.check()?;
        match repo.read_manifest(id) {
            Ok(ManifestState::Ok(m))
                if m.status == BackupStatus::Complete && my_ids.is_subset(&m.rondb.data_node_ids) =>
            {
                stored.push((m.started_at, id, name));
            }
            Ok(ManifestState::Damaged(why)) => warn!("keeping {name}: the manifest of backup {id} is damaged: {why}"),
            Ok(_) => info!("keeping {name}: backup {id} is not complete in the repository"),
            Err(_) => info!("keeping {name}: backup {id} is not in the repository"),
        }
    }
    // Newest first, by when the backups were taken.
    stored.sort_by(|a, b| b.cmp(a));
    let mut removed = Vec::new();
    for (_, id, name) in stored.into_iter().skip(config.rondb.keep_local) {
        control.check()?;
        let path = root.join(&name);
        fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        info!("removed local RonDB backup {name} (backup {id} is in the repository)");
        removed.push(name);
    }
    Ok(removed)
}

/// The `BACKUP-<ndb id>` folders below `root` that an hwdr id names.
fn local_backups(root: &Path) -> Result<Vec<(BackupId, String)>> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    let mut ours = Vec::new();
    for entry in entries {
        let name = entry
            .with_context(|| format!("listing {}", root.display()))?
            .file_name();
        let name = name.to_string_lossy().into_owned();
        let id = name
            .strip_prefix("BACKUP-")
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(|n| BackupId::from_ndb_id(n).ok());
        if let Some(id) = id {
            ours.push((id, name));
        }
    }
    Ok(ours)
}
