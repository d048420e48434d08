//! One backup's objects: [`BackupWriter`] adds files to a backup being taken
//! (each with its size and SHA-256 for the manifest) and writes its manifest
//! last; [`BackupReader`] reads them back, checked against the manifest.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::manifest::{self, FileEntry, Manifest};
use super::store::{Access, Backend, ObjectKey, PutOptions, StoreError};
use crate::backup_id::BackupId;
use crate::job::JobControl;

/// Adds objects to one backup.
#[derive(Debug, Clone)]
pub struct BackupWriter {
    backend: Arc<dyn Backend>,
    id: BackupId,
}

impl BackupWriter {
    /// The writer of backup `id` in `backend` (see [`super::Repository`] for
    /// the checked ways to get one).
    pub fn new(backend: Arc<dyn Backend>, id: BackupId) -> BackupWriter {
        BackupWriter { backend, id }
    }

    /// The backup's id.
    pub fn id(&self) -> BackupId {
        self.id
    }

    /// The repository's backend (for what a backup shares with others:
    /// inventory pieces).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// Stores what `data` yields as `rel` (below the backup's folder), for
    /// the manifest: its size, SHA-256, and the bytes it takes in the store.
    pub fn put(&self, rel: &str, data: &mut dyn Read, access: Access) -> Result<FileEntry> {
        let key = ObjectKey::backup_file(self.id, rel)?;
        let written = self
            .backend
            .put(
                &key,
                data,
                PutOptions {
                    access,
                    ..PutOptions::default()
                },
            )
            .with_context(|| format!("storing {key} in {}", self.backend.location()))?;
        Ok(FileEntry {
            path: rel.to_owned(),
            size: written.size,
            sha256: written.sha256,
            stored: Some(written.stored),
        })
    }

    /// [`BackupWriter::put`] of bytes in memory.
    pub fn put_bytes(&self, rel: &str, bytes: &[u8], access: Access) -> Result<FileEntry> {
        self.put(rel, &mut &bytes[..], access)
    }

    /// [`BackupWriter::put`] of a local file, read in 1 MiB pieces; stops
    /// (nothing stored) when `control`'s job is stopped.
    pub fn put_file(&self, rel: &str, path: &Path, access: Access, control: &JobControl) -> Result<FileEntry> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut source = Stoppable {
            inner: BufReader::with_capacity(1 << 20, file),
            control,
        };
        self.put(rel, &mut source, access)
            .with_context(|| format!("copying {}", path.display()))
    }

    /// Writes the backup's manifest, with its checksum: last, atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let bytes = manifest::encode(manifest)?;
        self.backend
            .put(&ObjectKey::manifest(self.id), &mut &bytes[..], PutOptions::default())
            .with_context(|| format!("writing the manifest of backup {}", self.id))?;
        Ok(())
    }
}

/// A source that ends with an error when its job is stopped.
struct Stoppable<'a, R> {
    inner: R,
    control: &'a JobControl,
}

impl<R: Read> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.control.check().map_err(|e| io::Error::other(format!("{e:#}")))?;
        self.inner.read(buf)
    }
}

/// Reads one backup's objects.
#[derive(Debug, Clone)]
pub struct BackupReader {
    backend: Arc<dyn Backend>,
    id: BackupId,
}

impl BackupReader {
    /// The reader of backup `id` in `backend`.
    pub fn new(backend: Arc<dyn Backend>, id: BackupId) -> BackupReader {
        BackupReader { backend, id }
    }

    /// The repository's backend (for what a backup shares with others:
    /// inventory pieces).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// `rel`'s content, unchecked.
    pub fn open(&self, rel: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        self.backend.get(&ObjectKey::backup_file(self.id, rel)?)
    }

    /// `entry`'s content, checked against its size and SHA-256 as it is read:
    /// the read that reaches the end fails if they differ (so what was read
    /// before must not be trusted until then).
    pub fn open_checked(&self, entry: &FileEntry) -> Result<Checked<Box<dyn Read + Send>>, StoreError> {
        let key = ObjectKey::backup_file(self.id, &entry.path)?;
        let name = self.backend.location_of(&key);
        Ok(Checked::new(self.backend.get(&key)?, entry.clone(), name))
    }

    /// `entry`'s whole content, checked.
    pub fn read_checked(&self, entry: &FileEntry) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_checked(entry)?
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", entry.path))?;
        Ok(bytes)
    }

    /// Reads `entry` through and says how it differs from the manifest, if
    /// it does (for `hwdr verify`); `Ok(None)` when it matches.
    pub fn check(&self, entry: &FileEntry) -> Result<Option<String>> {
        let mut source = match self.open(&entry.path) {
            Ok(source) => source,
            Err(StoreError::NotFound(_)) => return Ok(Some("missing".into())),
            Err(e) => return Err(e.into()),
        };
        let (size, sha256) = hash(&mut source).with_context(|| format!("reading {}", entry.path))?;
        Ok(if size != entry.size {
            Some(format!("{size} bytes, the manifest says {}", entry.size))
        } else if sha256 != entry.sha256 {
            Some("SHA-256 differs from the manifest".into())
        } else {
            None
        })
    }
}

/// Size and SHA-256 of everything `source` yields.
fn hash(source: &mut dyn Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0;
    loop {
        crate::cancel::check().map_err(|e| io::Error::other(format!("{e:#}")))?;
        let n = source.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// A reader checked against a manifest entry: at its end it fails (with
/// [`io::ErrorKind::InvalidData`], naming the object) if the size or SHA-256
/// differ.
pub struct Checked<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    entry: FileEntry,
    /// Where the object is, for the message.
    name: String,
}

impl<R: Read> Checked<R> {
    /// Checks what `inner` yields against `entry`; `name` says where it is.
    pub fn new(inner: R, entry: FileEntry, name: String) -> Checked<R> {
        Checked {
            inner,
            hasher: Sha256::new(),
            size: 0,
            entry,
            name,
        }
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let sha = hex::encode(self.hasher.clone().finalize());
            if self.size != self.entry.size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} does not match the manifest: it has {} bytes, the manifest says {}; it is damaged",
                        self.name, self.size, self.entry.size
                    ),
                ));
            }
            if sha != self.entry.sha256 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} does not match the manifest: its SHA-256 differs from the manifest's; it is damaged",
                        self.name
                    ),
                ));
            }
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}
