//! The backup repository: a folder reachable from every node.
//!
//! ```text
//! <path>/hwdr-repo.json            format and cluster name
//! <path>/lock                      see [`lock`]
//! <path>/backups/<id>/manifest.json
//! <path>/backups/<id>/config/...   [config_backup] paths, under their absolute path
//! <path>/backups/<id>/rondb/users.sql, schemas.sql
//! <path>/backups/<id>/rondb/BACKUP-<ndb id>/...  every data node's part, merged
//! ```

pub mod fsutil;
pub mod lock;
pub mod manifest;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::backup_id::BackupId;
use crate::exit::HwdrError;
use manifest::Manifest;

/// Version of the repository layout.
const REPO_FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct RepoMarker {
    format: u32,
    cluster: String,
}

/// A repository at a path.
#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
}

/// A backup folder as found in the repository.
#[derive(Debug)]
pub struct Entry {
    pub id: BackupId,
    pub dir: PathBuf,
    /// `None` when the folder has no (readable) manifest.
    pub manifest: Result<Option<Manifest>, String>,
}

impl Repository {
    /// The repository at `root`; nothing is checked or created yet.
    pub fn new(root: &Path) -> Repository {
        Repository {
            root: root.to_path_buf(),
        }
    }

    /// The repository's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The folder of backup `id`.
    pub fn backup_dir(&self, id: BackupId) -> PathBuf {
        self.root.join("backups").join(id.to_string())
    }

    /// Checks the repository is there and belongs to `cluster`; marks a new,
    /// existing folder as a repository. Never creates the folder itself: a
    /// missing mount must not turn into a backup on the root file system.
    pub fn open_for_writing(&self, cluster: &str) -> Result<()> {
        if !self.root.is_dir() {
            bail!(
                "repository {} does not exist or is not a folder (is it mounted?)",
                self.root.display()
            );
        }
        let marker_path = self.root.join("hwdr-repo.json");
        match fs::read(&marker_path) {
            Ok(bytes) => {
                let marker: RepoMarker =
                    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", marker_path.display()))?;
                if marker.format != REPO_FORMAT {
                    bail!(
                        "{} has format {}, this hwdr knows {REPO_FORMAT}",
                        marker_path.display(),
                        marker.format
                    );
                }
                if marker.cluster != cluster {
                    bail!(
                        "repository {} belongs to cluster '{}', not '{cluster}'",
                        self.root.display(),
                        marker.cluster
                    );
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let marker = RepoMarker {
                    format: REPO_FORMAT,
                    cluster: cluster.to_owned(),
                };
                fsutil::write_atomic(&marker_path, &serde_json::to_vec_pretty(&marker)?, 0o644)?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", marker_path.display())),
        }
        mkdir(&self.root.join("backups"), 0o750)
    }

    /// Creates the folder of a new backup; a taken id is an error, never an
    /// overwrite.
    pub fn create_backup_dir(&self, id: BackupId) -> Result<PathBuf> {
        let dir = self.backup_dir(id);
        match fs::DirBuilder::new().mode(0o750).create(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o750))
                    .with_context(|| format!("setting the mode of {}", dir.display()))?;
                Ok(dir)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(HwdrError::IdTaken(format!("backup id {id} is already taken: {} exists", dir.display())).into())
            }
            Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }

    /// The folder of backup `id` if it is being taken: it exists and has no
    /// manifest yet. Parts are only ever added to such a backup.
    pub fn backup_in_progress(&self, id: BackupId) -> Result<PathBuf> {
        let dir = self.backup_dir(id);
        if !dir.is_dir() {
            bail!("backup {id} is not being taken: {} does not exist", dir.display());
        }
        if dir.join("manifest.json").exists() {
            bail!("backup {id} is already finished: {} has a manifest", dir.display());
        }
        Ok(dir)
    }

    /// Writes the manifest of a backup: last, atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.backup_dir(manifest.backup_id).join("manifest.json");
        let mut body = serde_json::to_vec_pretty(manifest)?;
        body.push(b'\n');
        fsutil::write_atomic(&path, &body, 0o640)
    }

    /// Reads the manifest of backup `id`; `None` if it has none.
    pub fn read_manifest(&self, id: BackupId) -> Result<Option<Manifest>> {
        let path = self.backup_dir(id).join("manifest.json");
        let manifest: Manifest = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        // The folder, the visible id and the NDB id must all name one backup.
        let ndb = manifest.rondb.ndb_backup_id;
        if manifest.backup_id != id || BackupId::from_ndb_id(ndb).ok() != Some(id) {
            bail!(
                "{} is inconsistent: it names backup {} with RonDB id {ndb}, but lies in the folder of {id}",
                path.display(),
                manifest.backup_id
            );
        }
        Ok(Some(manifest))
    }

    /// The manifest of backup `id` if the backup may be restored: it exists
    /// and is complete.
    pub fn complete_manifest(&self, id: BackupId) -> Result<Manifest> {
        let manifest = self
            .read_manifest(id)?
            .ok_or_else(|| anyhow::anyhow!("backup {id} has no manifest"))?;
        if manifest.status != manifest::BackupStatus::Complete {
            bail!(
                "backup {id} is {}, not complete: it cannot be restored",
                manifest.status
            );
        }
        Ok(manifest)
    }

    /// The manifest of the newest complete backup (by its end time), if any.
    pub fn latest_complete(&self) -> Result<Option<Manifest>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter_map(|e| e.manifest.ok().flatten())
            .filter(|m| m.status == manifest::BackupStatus::Complete)
            .max_by_key(|m| (m.finished_at, m.backup_id)))
    }

    /// Every backup folder, in no particular order. Folders whose name is not
    /// a backup id are skipped.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let dir = self.root.join("backups");
        let read = match fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut entries = Vec::new();
        for item in read {
            let item = item.with_context(|| format!("listing {}", dir.display()))?;
            let Some(id) = item.file_name().to_str().and_then(|n| n.parse::<BackupId>().ok()) else {
                continue;
            };
            let manifest = self.read_manifest(id).map_err(|e| format!("{e:#}"));
            entries.push(Entry {
                id,
                dir: item.path(),
                manifest,
            });
        }
        Ok(entries)
    }
}

/// Creates a folder (and its missing parents) with exactly `mode`, whatever
/// the umask; folders that exist are left as they are.
pub fn mkdir(path: &Path, mode: u32) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        mkdir(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display())),
        // Made meanwhile by another thread or node.
        Err(e) if e.kind() == ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}
