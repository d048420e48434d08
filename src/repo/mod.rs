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

pub(crate) mod fsutil;
pub mod lock;
pub(crate) mod manifest;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::backup_id::BackupId;
use crate::exit::HwdrError;
use manifest::Manifest;

/// Version of the repository layout: 2 since manifests carry a checksum of
/// their own content (format 1: hwdr 0.1, `hwdr repo upgrade` seals them).
const REPO_FORMAT: u32 = 2;

/// The file that makes a folder a repository (written by `hwdr repo init`).
pub const MARKER: &str = "hwdr-repo.json";

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

/// What a backup folder's `manifest.json` says.
#[derive(Debug)]
pub enum ManifestState {
    /// There is none: the backup is unfinished, or being taken.
    Missing,
    /// It cannot be trusted: it does not read, parse or match its checksum,
    /// or it contradicts its folder. The reason.
    Damaged(String),
    /// It passed every check.
    Ok(Box<Manifest>),
}

/// A backup folder as found in the repository.
#[derive(Debug)]
pub struct Entry {
    pub id: BackupId,
    pub dir: PathBuf,
    pub manifest: ManifestState,
}

/// What `hwdr repo upgrade` did.
#[derive(Debug, Default)]
pub struct Upgrade {
    /// Backups whose manifest was sealed with its checksum.
    pub sealed: Vec<BackupId>,
    /// Backups whose manifest does not parse, and why (left as they are).
    pub damaged: Vec<(BackupId, String)>,
}

/// What `hwdr repo init` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// The folder was empty and is now a repository.
    Created,
    /// The folder already was this cluster's repository.
    Existing,
}

impl Repository {
    /// The repository at `root`; nothing is checked. Commands use
    /// [`Repository::open`]; this is for steps of a command that already did.
    pub fn new(root: &Path) -> Repository {
        Repository {
            root: root.to_path_buf(),
        }
    }

    /// The repository of `cluster` at `root`, for every command that reads or
    /// writes it: the folder must exist and hold the marker `hwdr-repo.json`
    /// of that cluster. An unmounted repository (a missing folder, or the
    /// empty mount point) must never look like a repository without backups.
    pub fn open(root: &Path, cluster: &str) -> Result<Repository> {
        let repo = Repository::new(root);
        if !root.is_dir() {
            bail!(
                "repository {} does not exist or is not a folder (is it mounted?)",
                root.display()
            );
        }
        match repo.marker()? {
            Some(marker) => repo.check_marker(&marker, cluster)?,
            None => bail!(
                "repository {} is not an hwdr repository (no {MARKER}): is it mounted? To create one there, run \
                 `hwdr repo init`",
                root.display()
            ),
        }
        Ok(repo)
    }

    /// Makes the existing, empty folder `root` the repository of `cluster`
    /// (`hwdr repo init`). Never creates the folder itself; a folder that is
    /// already this cluster's repository is left as it is.
    pub fn init(root: &Path, cluster: &str) -> Result<Init> {
        let repo = Repository::new(root);
        if !root.is_dir() {
            bail!(
                "{} does not exist or is not a folder: create it (or mount the repository's file system there) first",
                root.display()
            );
        }
        if let Some(marker) = repo.marker()? {
            repo.check_marker(&marker, cluster)?;
            mkdir(&root.join("backups"), 0o750)?;
            return Ok(Init::Existing);
        }
        let mut others: Vec<String> = fs::read_dir(root)
            .with_context(|| format!("listing {}", root.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing {}", root.display()))?;
        // A freshly formatted ext4 file system holds lost+found.
        others.retain(|name| name != "lost+found");
        if !others.is_empty() {
            others.sort();
            bail!(
                "{} is not empty and not an hwdr repository (it holds {}): use an empty folder",
                root.display(),
                others.join(", ")
            );
        }
        let marker = RepoMarker {
            format: REPO_FORMAT,
            cluster: cluster.to_owned(),
        };
        fsutil::write_atomic(&root.join(MARKER), &serde_json::to_vec_pretty(&marker)?, 0o640)?;
        mkdir(&root.join("backups"), 0o750)?;
        Ok(Init::Created)
    }

    /// Brings a format-1 repository of `cluster` (hwdr 0.1) to the current
    /// format: every manifest that parses is written again with its checksum
    /// (atomically), then the marker. Manifests that do not parse are left as
    /// they are and named (they will be listed as damaged). Holds the lock.
    pub fn upgrade(root: &Path, cluster: &str) -> Result<Upgrade> {
        let repo = Repository::new(root);
        let marker = repo
            .marker()?
            .ok_or_else(|| anyhow::anyhow!("{} is not an hwdr repository (no {MARKER})", root.display()))?;
        if marker.format == REPO_FORMAT {
            repo.check_marker(&marker, cluster)?;
            return Ok(Upgrade::default());
        }
        if marker.format != 1 || marker.cluster != cluster {
            repo.check_marker(&marker, cluster)?;
        }
        let _lock = lock::RepoLock::acquire(
            &repo.lock_path(),
            lock::LockInfo::for_this_process("upgrade", None, chrono::Utc::now()),
        )?;
        let mut done = Upgrade::default();
        for id in repo.backup_ids()? {
            let path = repo.backup_dir(id).join("manifest.json");
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            match manifest::decode_legacy(&bytes) {
                Ok(mut m) => {
                    m.format = manifest::FORMAT;
                    fsutil::write_atomic(&path, &manifest::encode(&m)?, 0o640)?;
                    done.sealed.push(id);
                }
                // Sealed already (an upgrade that stopped half-way).
                Err(_) if manifest::decode(&bytes).is_ok() => {}
                Err(why) => done.damaged.push((id, why)),
            }
        }
        let marker = RepoMarker {
            format: REPO_FORMAT,
            cluster: cluster.to_owned(),
        };
        fsutil::write_atomic(&root.join(MARKER), &serde_json::to_vec_pretty(&marker)?, 0o640)?;
        Ok(done)
    }

    /// The ids of every backup folder (by folder name).
    fn backup_ids(&self) -> Result<Vec<BackupId>> {
        let dir = self.root.join("backups");
        let read = match fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut ids = Vec::new();
        for item in read {
            let item = item.with_context(|| format!("listing {}", dir.display()))?;
            if let Some(id) = item.file_name().to_str().and_then(|n| n.parse().ok()) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn marker(&self) -> Result<Option<RepoMarker>> {
        let path = self.root.join(MARKER);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn check_marker(&self, marker: &RepoMarker, cluster: &str) -> Result<()> {
        // Another cluster's repository first: whatever its format, it is not ours.
        if marker.cluster != cluster {
            bail!(
                "repository {} belongs to cluster '{}', not '{cluster}'",
                self.root.display(),
                marker.cluster
            );
        }
        if marker.format == 1 {
            bail!(
                "repository {} has format 1 (hwdr 0.1): its manifests carry no checksum; run `hwdr repo upgrade` once \
                 to check and seal them",
                self.root.display()
            );
        }
        if marker.format != REPO_FORMAT {
            bail!(
                "{} has format {}, this hwdr knows {REPO_FORMAT}",
                self.root.join(MARKER).display(),
                marker.format
            );
        }
        Ok(())
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

    /// Creates the folder of a new backup; a taken id is an error, never an
    /// overwrite.
    pub fn create_backup_dir(&self, id: BackupId) -> Result<PathBuf> {
        mkdir(&self.root.join("backups"), 0o750)?;
        let dir = self.backup_dir(id);
        match fs::DirBuilder::new().mode(0o750).create(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o750))
                    .with_context(|| format!("setting the mode of {}", dir.display()))?;
                Ok(dir)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(HwdrError::IdTaken(format!(
                "backup id {id} is already taken: {} exists; omit --id to use the next free minute, or pick \
                 another id",
                dir.display()
            ))
            .into()),
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

    /// Writes the manifest of a backup, with its checksum: last, atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.backup_dir(manifest.backup_id).join("manifest.json");
        fsutil::write_atomic(&path, &manifest::encode(manifest)?, 0o640)
    }

    /// The manifest of backup `id`, judged. A backup folder that does not
    /// exist is [`HwdrError::NotFound`].
    pub fn read_manifest(&self, id: BackupId) -> Result<ManifestState> {
        let dir = self.backup_dir(id);
        if !dir.is_dir() {
            return Err(
                HwdrError::NotFound(format!("no backup {id} in {}; see `hwdr list`", self.root.display())).into(),
            );
        }
        Ok(judge(&dir.join("manifest.json"), id))
    }

    /// The manifest of backup `id` if the backup may be used (restored,
    /// drilled): it exists, passed its checks, and is complete. Anything else
    /// is [`HwdrError::NotFound`] or [`HwdrError::Refused`], naming why.
    pub fn complete_manifest(&self, id: BackupId) -> Result<Manifest> {
        let refused = |why: String| anyhow::Error::from(HwdrError::Refused(why));
        match self.read_manifest(id)? {
            ManifestState::Missing => Err(refused(format!(
                "backup {id} has no manifest: it is not a complete backup (unfinished, or being taken)"
            ))),
            ManifestState::Damaged(why) => Err(refused(format!(
                "backup {id} is damaged: manifest.json: {why}; it cannot be used"
            ))),
            ManifestState::Ok(m) if m.status != manifest::BackupStatus::Complete => Err(refused(format!(
                "backup {id} is {}, not complete (failed at {}: {}): it cannot be restored",
                m.status,
                m.failed_step.as_deref().unwrap_or("?"),
                m.error.as_deref().unwrap_or("?")
            ))),
            ManifestState::Ok(m) => Ok(*m),
        }
    }

    /// The manifest of the newest complete backup (by its end time), if any;
    /// damaged manifests never count.
    pub fn latest_complete(&self) -> Result<Option<Manifest>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter_map(|e| match e.manifest {
                ManifestState::Ok(m) if m.status == manifest::BackupStatus::Complete => Some(*m),
                _ => None,
            })
            .max_by_key(|m| (m.finished_at, m.backup_id)))
    }

    /// Every backup folder with its manifest judged, in no particular order.
    /// Folders whose name is not a backup id are skipped.
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
            entries.push(Entry {
                id,
                manifest: judge(&item.path().join("manifest.json"), id),
                dir: item.path(),
            });
        }
        Ok(entries)
    }
}

/// Reads and checks the manifest at `path` of backup `id`'s folder.
fn judge(path: &Path, id: BackupId) -> ManifestState {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return ManifestState::Missing,
        Err(e) => return ManifestState::Damaged(format!("cannot be read: {e}")),
    };
    let manifest = match manifest::decode(&bytes) {
        Ok(m) => m,
        Err(why) => return ManifestState::Damaged(why),
    };
    // The folder, the visible id and the NDB id must all name one backup.
    let ndb = manifest.rondb.ndb_backup_id;
    if manifest.backup_id != id || BackupId::from_ndb_id(ndb).ok() != Some(id) {
        return ManifestState::Damaged(format!(
            "it names backup {} with RonDB id {ndb}, but lies in the folder of {id}",
            manifest.backup_id
        ));
    }
    // A complete backup holds every data node's part; one naming none could
    // only be "restored" with `ndb_restore -n 0`.
    if manifest.status == manifest::BackupStatus::Complete && manifest.rondb.data_node_ids.is_empty() {
        return ManifestState::Damaged("it says complete but names no RonDB data node".into());
    }
    ManifestState::Ok(Box::new(manifest))
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
