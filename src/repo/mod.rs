//! The backup repository: a folder reachable from every node (or, through
//! another [`store::Backend`], a bucket), holding objects named by
//! [`store::ObjectKey`]:
//!
//! ```text
//! hwdr-repo.json                   format and cluster name (`hwdr repo init`)
//! lock, locks/<host>-<pid>-<random>.json   the lock: see [`lock`]
//! backups/<id>/manifest.json       written last
//! backups/<id>/config/...          [config_backup] paths, under their absolute path
//! backups/<id>/rondb/users.sql, schemas.sql
//! backups/<id>/rondb/BACKUP-<ndb id>/...  every data node's part, merged
//! backups/<id>/hopsfs/<node>/...   inventories, VERSION files, assignments
//! blocks/<BP-…>/…/blk_<id>_<gs>[.meta]     the block store
//! ```
//!
//! Everything here goes through the backend: no code outside
//! [`store::posix`] touches the repository with `std::fs`.

pub(crate) mod backup;
mod keyring;
pub mod keys;
pub mod lock;
pub(crate) mod manifest;
mod sealing;
pub mod store;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::backup_id::BackupId;
use crate::config::RepositoryLocation;
use crate::exit::HwdrError;
use backup::{BackupReader, BackupWriter};
use manifest::Manifest;
use store::object::ObjectBackend;
use store::{Backend, ObjectKey, PutOptions, StoreError};

/// Version of the repository layout: 2 since manifests carry a checksum of
/// their own content (format 1: hwdr 0.1, `hwdr repo upgrade` seals them).
const REPO_FORMAT: u32 = 2;

/// An encrypted repository's format: 2 with every object but the marker,
/// `keys/` and the lock sealed. An hwdr that knows only 2 refuses it, rather
/// than write plaintext into it.
const SEALED_FORMAT: u32 = 3;

/// The object that makes a location a repository (written by `hwdr repo init`).
pub const MARKER: &str = "hwdr-repo.json";

#[derive(Debug, Serialize, Deserialize)]
struct RepoMarker {
    format: u32,
    cluster: String,
    /// Whether the store honours create-only puts (`hwdr repo init` probes
    /// it): then the lock also takes the object `lock` create-only. Absent
    /// in markers from before: unknown, taken as no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    create_only: Option<bool>,
    /// Whether every object but the marker, `keys/` and the lock is sealed
    /// with the data key (`hwdr repo init --encrypt`). Absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted: Option<bool>,
}

/// A repository: its backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
}

/// What a backup's `manifest.json` says.
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

/// Why backup `id`, whose manifest is [`ManifestState::Missing`], cannot be
/// used (restored, verified, drilled): [`HwdrError::Refused`].
pub fn no_manifest(id: BackupId) -> HwdrError {
    HwdrError::Refused(format!(
        "backup {id} has no manifest: it is not a complete backup (unfinished, or being taken); `hwdr list` \
         shows its state"
    ))
}

/// A backup as found in the repository.
#[derive(Debug)]
pub struct Entry {
    pub id: BackupId,
    /// When it was started (the time of its oldest object).
    pub started: Option<SystemTime>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// The location was empty and is now a repository; whether the store
    /// honours create-only puts; for an encrypted one, the id of the data
    /// key's first wrap.
    Created { create_only: bool, key: Option<String> },
    /// The location already was this cluster's repository.
    Existing,
    /// It already was, with a marker from before the create-only probe: the
    /// probe's answer is now recorded in it.
    Recorded { create_only: bool },
}

impl Repository {
    /// The repository in `backend`; nothing is checked. Commands use
    /// [`Repository::open`]; this is for steps of a command that already did.
    pub fn new(backend: Arc<dyn Backend>) -> Repository {
        Repository { backend }
    }

    /// The repository in folder `root` (nothing is checked).
    pub fn at(root: &Path) -> Repository {
        Repository::new(Arc::new(store::posix::Posix::new(root)))
    }

    /// The configured repository (`[repository]`), nothing checked. Its
    /// objects are sealed if its marker says it is encrypted: decided on the
    /// first data object touched (see [`sealing`]); a key that does not open
    /// it fails that call.
    pub fn of(config: &crate::config::Config) -> Repository {
        let r = &config.repository;
        Repository::new(Arc::new(sealing::OnDemand::new(
            Repository::store(config),
            r.key.clone(),
            r.compression,
        )))
    }

    /// The configured location's store itself: objects as they are stored
    /// (sealed ones sealed).
    pub fn store(config: &crate::config::Config) -> Arc<dyn Backend> {
        match &config.repository.location {
            RepositoryLocation::Path(root) => Arc::new(store::posix::Posix::new(root)),
            RepositoryLocation::Object(settings) => Arc::new(ObjectBackend::new(settings)),
        }
    }

    /// The repository's backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The backend, shared.
    pub fn shared_backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// Where it is, for messages.
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// The configured repository of `cluster`, for every command that reads
    /// or writes it: its location must be there and hold the marker
    /// `hwdr-repo.json` of that cluster. An unmounted repository (a missing
    /// folder, or the empty mount point) must never look like a repository
    /// without backups.
    pub fn open(config: &crate::config::Config) -> Result<Repository> {
        let repo = Repository::of(config);
        repo.backend.check_location().map_err(anyhow::Error::msg)?;
        match repo.marker()? {
            Some(marker) => {
                repo.check_marker(&marker, &config.cluster)?;
                if marker.encrypted == Some(true) {
                    sealing::open_key_id(repo.backend(), config.repository.key.as_ref())?;
                }
            }
            None => bail!(
                "repository {} is not an hwdr repository (no {MARKER}): is it mounted? To create one there, run \
                 `hwdr repo init`",
                repo.location()
            ),
        }
        Ok(repo)
    }

    /// Makes the configured, existing and empty location the repository of
    /// the cluster (`hwdr repo init`). Never creates the folder itself; a
    /// location that already is this cluster's repository is left as it is.
    /// `encrypt`: a new random data key, wrapped by the configured key file
    /// or passphrase file, seals every object but the marker, keys and lock.
    pub fn init(config: &crate::config::Config, encrypt: bool) -> Result<Init> {
        let repo = Repository::of(config);
        let secret = match (encrypt, &config.repository.key) {
            (false, _) => None,
            (true, Some(source)) => Some(source.read()?),
            (true, None) => bail!("--encrypt needs a key: set [repository] key_file or passphrase_file first"),
        };
        repo.backend
            .check_location()
            .map_err(|e| anyhow::anyhow!("{e}: create it (or mount the repository's file system there) first"))?;
        if let Some(mut marker) = repo.marker()? {
            repo.check_marker(&marker, &config.cluster)?;
            if encrypt && marker.encrypted != Some(true) {
                bail!(
                    "{} already is a plaintext repository: encryption is chosen when a repository is created",
                    repo.location()
                );
            }
            if marker.create_only.is_some() {
                return Ok(Init::Existing);
            }
            let create_only = lock::probe_create_only(repo.backend())?;
            marker.create_only = Some(create_only);
            repo.put_marker(&marker, false)?;
            return Ok(Init::Recorded { create_only });
        }
        let mut others = repo.backend.list_children("")?;
        // A freshly formatted ext4 file system holds lost+found; an init that
        // stopped half-way may have left its probe.
        // An encrypted init that stopped half-way may have left its key.
        others.retain(|name| name != "lost+found" && name != "keys" && !name.starts_with(lock::PROBE_PREFIX));
        if !others.is_empty() {
            bail!(
                "{} is not empty and not an hwdr repository (it holds {}): use an empty folder",
                repo.location(),
                others.join(", ")
            );
        }
        let create_only = lock::probe_create_only(repo.backend())?;
        // The key before the marker: a marker saying "encrypted" always has one.
        let key = match secret {
            Some(secret) => {
                let data = store::sealed::DataKey::generate().context("drawing the data key")?;
                let wrap = keys::WrappedKey::wrap(&data, &secret, chrono::Utc::now())?;
                keys::store(repo.backend(), &wrap)?;
                Some(wrap.id)
            }
            None => None,
        };
        let marker = RepoMarker {
            format: if key.is_some() { SEALED_FORMAT } else { REPO_FORMAT },
            cluster: config.cluster.clone(),
            create_only: Some(create_only),
            encrypted: key.is_some().then_some(true),
        };
        repo.put_marker(&marker, true)?;
        Ok(Init::Created { create_only, key })
    }

    fn put_marker(&self, marker: &RepoMarker, create_only: bool) -> Result<()> {
        let body = serde_json::to_vec_pretty(marker)?;
        let options = PutOptions {
            create_only,
            ..PutOptions::default()
        };
        self.backend
            .put(&ObjectKey::marker(), &mut &body[..], options)
            .with_context(|| format!("writing {MARKER} in {}", self.location()))?;
        Ok(())
    }

    /// Brings a format-1 repository (hwdr 0.1) to the current format: every
    /// manifest that parses is written again with its checksum, then the
    /// marker. Manifests that do not parse are left as they are and named
    /// (they will be listed as damaged). Holds the lock.
    pub fn upgrade(config: &crate::config::Config) -> Result<Upgrade> {
        let repo = Repository::of(config);
        repo.backend.check_location().map_err(anyhow::Error::msg)?;
        let marker = repo
            .marker()?
            .ok_or_else(|| anyhow::anyhow!("{} is not an hwdr repository (no {MARKER})", repo.location()))?;
        if marker.format == REPO_FORMAT || marker.format != 1 || marker.cluster != config.cluster {
            repo.check_marker(&marker, &config.cluster)?;
            return Ok(Upgrade::default());
        }
        let _lock = repo.lock("upgrade", None)?;
        let mut done = Upgrade::default();
        for id in repo.backup_ids()? {
            let bytes = match repo.get(&ObjectKey::manifest(id))? {
                Some(bytes) => bytes,
                None => continue,
            };
            match manifest::decode_legacy(&bytes) {
                Ok(mut m) => {
                    m.format = manifest::FORMAT;
                    repo.writer(id).write_manifest(&m)?;
                    done.sealed.push(id);
                }
                // Sealed already (an upgrade that stopped half-way).
                Err(_) if manifest::decode(&bytes).is_ok() => {}
                Err(why) => done.damaged.push((id, why)),
            }
        }
        let upgraded = RepoMarker {
            format: REPO_FORMAT,
            ..marker
        };
        repo.put_marker(&upgraded, false)?;
        Ok(done)
    }

    /// An object's bytes, `None` if it does not exist.
    fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>> {
        let mut bytes = Vec::new();
        match self.backend.get(key) {
            Ok(mut r) => r.read_to_end(&mut bytes).with_context(|| format!("reading {key}"))?,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {key}"))),
        };
        Ok(Some(bytes))
    }

    /// The ids of every backup (by folder name), sorted.
    pub(crate) fn backup_ids(&self) -> Result<Vec<BackupId>> {
        Ok(self
            .backend
            .list_children("backups/")
            .with_context(|| format!("listing the backups of {}", self.location()))?
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect())
    }

    fn marker(&self) -> Result<Option<RepoMarker>> {
        sealing::read_marker(self.backend())
    }

    /// Whether the repository is encrypted (its marker says so).
    pub fn encrypted(&self) -> Result<bool> {
        Ok(self.marker()?.is_some_and(|m| m.encrypted == Some(true)))
    }

    fn check_marker(&self, marker: &RepoMarker, cluster: &str) -> Result<()> {
        // Another cluster's repository first: whatever its format, it is not ours.
        if marker.cluster != cluster {
            bail!(
                "repository {} belongs to cluster '{}', not '{cluster}'",
                self.location(),
                marker.cluster
            );
        }
        if marker.format == 1 {
            bail!(
                "repository {} has format 1 (hwdr 0.1): its manifests carry no checksum; run `hwdr repo upgrade` once \
                 to check and seal them",
                self.location()
            );
        }
        let encrypted = marker.encrypted == Some(true);
        let known = if encrypted { SEALED_FORMAT } else { REPO_FORMAT };
        if marker.format != known {
            bail!(
                "{}/{MARKER} has format {}, this hwdr knows {REPO_FORMAT} (and {SEALED_FORMAT}, encrypted)",
                self.location(),
                marker.format
            );
        }
        Ok(())
    }

    /// Takes the repository lock for `operation` (of backup `id`).
    pub fn lock(&self, operation: &str, id: Option<BackupId>) -> Result<lock::RepoLock> {
        self.lock_as(lock::LockInfo::for_this_process(
            operation,
            id.map(|id| id.to_string()),
            chrono::Utc::now(),
        ))
    }

    /// Takes the repository lock for `info`: its lease, and the object
    /// `lock` create-only where `hwdr repo init` found the store honours that.
    pub fn lock_as(&self, info: lock::LockInfo) -> Result<lock::RepoLock> {
        let guard = self.marker()?.and_then(|m| m.create_only).unwrap_or(false);
        lock::RepoLock::acquire(self.backend.clone(), info, guard)
    }

    /// Who holds the lock, if anyone.
    pub fn lock_holder(&self) -> Result<Option<lock::LockInfo>> {
        lock::holder(self.backend.as_ref())
    }

    /// Everyone the lock's objects name, the holder first (a contender's
    /// lease is there for a moment while it tries).
    pub fn lock_holders(&self) -> Result<Vec<lock::LockInfo>> {
        lock::holders(self.backend.as_ref())
    }

    /// Starts backup `id`, under the repository lock (which keeps any other
    /// backup out): a taken id, one with any object, is an error, never an
    /// overwrite.
    pub fn create_backup(&self, id: BackupId, lock: &lock::RepoLock) -> Result<BackupWriter> {
        if lock.info().backup_id.as_deref() != Some(id.to_string().as_str()) {
            bail!("starting backup {id} under a lock for {}", lock.info().describe());
        }
        self.check_id_free(id)?;
        Ok(self.writer(id))
    }

    /// Fails with [`HwdrError::IdTaken`] if a backup has `id`, saying what
    /// holds it, the next free id and how to pick one.
    pub fn check_id_free(&self, id: BackupId) -> Result<()> {
        let taken = self.backup_ids()?;
        if !taken.contains(&id) {
            return Ok(());
        }
        let next = std::iter::successors(id.next(), BackupId::next).find(|n| !taken.contains(n));
        let advice = match next {
            Some(next) => format!(
                "the next free id is {next} ({}): pick it with `--id {next}`, or omit --id to use the current minute",
                next.minute().format("%Y-%m-%d %H:%M")
            ),
            None => "omit --id to use the current minute".into(),
        };
        Err(HwdrError::IdTaken(format!(
            "backup id {id} is already taken: {}/backups/{id} holds the {}; {advice}",
            self.location(),
            self.describe_backup(id)
        ))
        .into())
    }

    /// What backup `id` is, for a message: "failed backup of 18:19".
    pub fn describe_backup(&self, id: BackupId) -> String {
        match self.read_manifest(id) {
            Ok(ManifestState::Ok(m)) => format!(
                "{} backup of {}",
                m.status,
                m.started_at.with_timezone(&chrono::Local).format("%H:%M")
            ),
            Ok(ManifestState::Missing) => "unfinished backup".into(),
            Ok(ManifestState::Damaged(_)) => "backup with a damaged manifest".into(),
            Err(_) => "backup whose manifest cannot be read".into(),
        }
    }

    /// Whether backup `id` exists (in whatever state): the repository shows
    /// its folder.
    pub fn has_backup(&self, id: BackupId) -> Result<bool> {
        Ok(self.backup_ids()?.contains(&id))
    }

    /// The writer of backup `id` if it is being taken: it was started and has
    /// no manifest yet. Parts are only ever added to such a backup.
    pub fn backup_in_progress(&self, id: BackupId) -> Result<BackupWriter> {
        if !self.has_backup(id)? {
            bail!(
                "backup {id} is not being taken: {}/backups/{id} does not exist",
                self.location()
            );
        }
        if self.backend.head(&ObjectKey::manifest(id))?.is_some() {
            bail!("backup {id} is already finished: it has a manifest");
        }
        Ok(self.writer(id))
    }

    /// Backup `id`'s writer (nothing checked).
    pub fn writer(&self, id: BackupId) -> BackupWriter {
        BackupWriter::new(self.backend.clone(), id)
    }

    /// Backup `id`'s reader (nothing checked).
    pub fn reader(&self, id: BackupId) -> BackupReader {
        BackupReader::new(self.backend.clone(), id)
    }

    /// The block store.
    pub fn blocks(&self) -> crate::hopsfs::store::BlockStore {
        crate::hopsfs::store::BlockStore::new(self.backend.clone())
    }

    /// The manifest of backup `id`, judged. A backup that does not exist is
    /// [`HwdrError::NotFound`].
    pub fn read_manifest(&self, id: BackupId) -> Result<ManifestState> {
        if !self.has_backup(id)? {
            return Err(HwdrError::NotFound(format!(
                "no backup {id} in {}; `hwdr list` shows what there is",
                self.location()
            ))
            .into());
        }
        Ok(self.judge(id))
    }

    /// The manifest of backup `id` if the backup may be used (restored,
    /// drilled): it exists, passed its checks, and is complete. Anything else
    /// is [`HwdrError::NotFound`] or [`HwdrError::Refused`], naming why.
    pub fn complete_manifest(&self, id: BackupId) -> Result<Manifest> {
        let refused = |why: String| anyhow::Error::from(HwdrError::Refused(why));
        match self.read_manifest(id)? {
            ManifestState::Missing => Err(no_manifest(id).into()),
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

    /// Every backup with its manifest judged, in no particular order. Folders
    /// whose name is not a backup id are skipped.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for id in self.backup_ids()? {
            entries.push(Entry {
                id,
                started: self.started(id)?,
                manifest: self.judge(id),
            });
        }
        Ok(entries)
    }

    /// When backup `id` was started: the time of its oldest object.
    fn started(&self, id: BackupId) -> Result<Option<SystemTime>> {
        let mut oldest: Option<SystemTime> = None;
        self.backend.list(&ObjectKey::backup_prefix(id), &mut |o| {
            oldest = Some(oldest.map_or(o.modified, |t| t.min(o.modified)));
            Ok(())
        })?;
        Ok(oldest)
    }

    /// Reads and checks the manifest of backup `id`.
    fn judge(&self, id: BackupId) -> ManifestState {
        let bytes = match self.get(&ObjectKey::manifest(id)) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return ManifestState::Missing,
            Err(e) => return ManifestState::Damaged(format!("cannot be read: {e:#}")),
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
}
