//! The repository in a folder (a local disk, or NFS mounted on every node).
//!
//! An object is a file at `<root>/<name>`. A put writes a temp file in the
//! same folder (`.<name>.tmp-<pid>-<n>`), fsyncs it, renames it into place
//! (or hard-links it, for a create-only put, which then fails if the name
//! exists) and fsyncs the folder. A batch writes its temp files without an
//! fsync each; a flush makes them durable with one `syncfs` of the file
//! system before renaming them, and the commit also `syncfs`es after its
//! renames so the names are durable too (a flush leaves that to the next
//! `syncfs`). Files are `0640` (`0600` when private) and folders `0750`,
//! whatever the umask. A folder is created only when a file cannot be
//! created for lack of it. This is the only module that touches the
//! repository with `std::fs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use super::{copy_hashed, Access, Backend, Batch, ObjectKey, ObjectMeta, Put, PutOptions, StoreError, Written};

/// Mode of the repository's folders.
const DIR_MODE: u32 = 0o750;

/// Tells temp files of one process apart.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A repository folder.
#[derive(Debug, Clone)]
pub struct Posix {
    root: PathBuf,
}

impl Posix {
    /// The repository in folder `root` (nothing is checked yet).
    pub fn new(root: &Path) -> Posix {
        Posix {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Writes `data` to a new temp file next to `key`'s file, with `access`;
    /// fsynced if `durable`. Returns the temp path and what was written.
    fn write_temp(
        &self,
        key: &ObjectKey,
        data: &mut dyn Read,
        access: Access,
        durable: bool,
    ) -> Result<(PathBuf, Written), StoreError> {
        let path = self.path(key);
        let tmp = temp_path(&path);
        let mode = match access {
            Access::Group => 0o640,
            Access::Owner => 0o600,
        };
        let mut file = create_new(&tmp, mode)?;
        let written = (|| {
            if umask_narrows(mode) {
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| io_error(format!("setting the mode of {}", tmp.display()), e))?;
            }
            let written = copy_hashed(key, data, &mut file)?;
            if durable {
                file.sync_all()
                    .map_err(|e| io_error(format!("fsync {}", tmp.display()), e))?;
            }
            Ok(written)
        })();
        match written {
            Ok(written) => Ok((tmp, written)),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Moves a written temp file to `key`'s name (for a create-only put, a
    /// hard link that fails if the name exists, then the temp name goes).
    fn publish(&self, tmp: &Path, key: &ObjectKey, create_only: bool) -> Result<(), StoreError> {
        let path = self.path(key);
        let done = if create_only {
            fs::hard_link(tmp, &path).map(|()| {
                let _ = fs::remove_file(tmp);
            })
        } else {
            fs::rename(tmp, &path)
        };
        done.map_err(|e| {
            let _ = fs::remove_file(tmp);
            if e.kind() == ErrorKind::AlreadyExists {
                StoreError::AlreadyExists(key.to_string())
            } else {
                io_error(format!("renaming {} to {}", tmp.display(), path.display()), e)
            }
        })
    }

    /// `syncfs` of the repository's file system.
    fn sync_all(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.root).map_err(|e| io_error(format!("opening {}", self.root.display()), e))?;
        // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io_error(
                format!("syncfs on the repository {}", self.root.display()),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

impl Backend for Posix {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn check_location(&self) -> Result<(), String> {
        if self.root.is_dir() {
            Ok(())
        } else {
            Err(format!(
                "repository {} does not exist or is not a folder (is it mounted?)",
                self.root.display()
            ))
        }
    }

    fn put(&self, key: &ObjectKey, data: &mut dyn Read, options: PutOptions) -> Result<Written, StoreError> {
        let (tmp, written) = self.write_temp(key, data, options.access, true)?;
        self.publish(&tmp, key, options.create_only)?;
        let dir = self.path(key);
        sync_dir(dir.parent().unwrap_or(&self.root))?;
        Ok(written)
    }

    fn batch(&self) -> Box<dyn Batch + '_> {
        Box::new(PosixBatch {
            store: self,
            pending: Vec::new(),
            names_unsynced: false,
        })
    }

    fn get(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError> {
        Ok(Box::new(self.open(key)?))
    }

    fn get_range(&self, key: &ObjectKey, range: std::ops::Range<u64>) -> Result<Box<dyn Read + Send>, StoreError> {
        let mut file = self.open(key)?;
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| io_error(format!("reading {key}"), e))?;
        Ok(Box::new(file.take(range.end.saturating_sub(range.start))))
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        match fs::metadata(self.path(key)) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: m.len(),
                modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(e) => Err(io_error(format!("stat {}", self.path(key).display()), e)),
        }
    }

    fn list(&self, prefix: &str, each: &mut dyn FnMut(ObjectMeta) -> anyhow::Result<()>) -> anyhow::Result<()> {
        // The folder holding every name with `prefix`, and the start of names in it.
        let (dir, start) = match prefix.rsplit_once('/') {
            Some((dir, start)) => (self.root.join(dir), start),
            None => (self.root.clone(), prefix),
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("listing {}", dir.display()))),
        };
        for entry in entries {
            let entry = entry.map_err(|e| anyhow::Error::new(e).context(format!("listing {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(start) {
                walk(&entry.path(), &mut |path, meta| self.listed(path, meta, each))?;
            }
        }
        Ok(())
    }

    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(format!("listing {}", dir.display()), e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_temp_name(&name) && !name.starts_with(".removing-") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(format!("removing {}", self.path(key).display()), e)),
        }
    }

    fn remove_leftovers(&self, before: SystemTime, dry_run: bool) -> anyhow::Result<(u64, u64)> {
        let mut found = (0, 0);
        walk(&self.root, &mut |path, meta| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if is_temp_name(&name) && meta.modified().is_ok_and(|m| m < before) {
                tracing::info!(
                    "{} leftover {} ({})",
                    if dry_run { "would remove" } else { "removing" },
                    path.display(),
                    crate::progress::text::size(meta.len())
                );
                if !dry_run {
                    fs::remove_file(path)?;
                }
                found.0 += 1;
                found.1 += meta.len();
            }
            Ok(())
        })?;
        Ok(found)
    }

    fn delete_prefix(&self, prefix: &str) -> anyhow::Result<()> {
        let dir = ObjectKey::parse(prefix.trim_end_matches('/'))?;
        let path = self.path(&dir);
        // Renamed first: what is half removed never looks like what it was.
        let doomed = path.with_file_name(format!(
            ".removing-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        match fs::rename(&path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("renaming {}", path.display()))),
        }
        fs::remove_dir_all(&doomed).map_err(|e| anyhow::Error::new(e).context(format!("removing {}", doomed.display())))
    }
}

impl Posix {
    fn open(&self, key: &ObjectKey) -> Result<File, StoreError> {
        File::open(self.path(key)).map_err(|e| match e.kind() {
            ErrorKind::NotFound => StoreError::NotFound(key.to_string()),
            _ => io_error(format!("opening {}", self.path(key).display()), e),
        })
    }

    /// A file found by a listing, as an object (temp files are not objects).
    fn listed(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        each: &mut dyn FnMut(ObjectMeta) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_temp_name(&name) {
            return Ok(());
        }
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return Ok(());
        };
        let Ok(key) = ObjectKey::parse(&rel.to_string_lossy()) else {
            return Ok(());
        };
        each(ObjectMeta {
            key,
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }
}

/// A batch of the folder's puts: temp files now, one `syncfs`, then renames.
struct PosixBatch<'a> {
    store: &'a Posix,
    /// Written temp files and the names they get.
    pending: Vec<(PathBuf, ObjectKey, bool)>,
    /// Renames done since the last `syncfs`: the commit's `syncfs` makes
    /// them durable.
    names_unsynced: bool,
}

impl Batch for PosixBatch<'_> {
    fn put_group(&mut self, puts: &mut [Put<'_>]) -> Result<Vec<Written>, StoreError> {
        let mut group = Vec::new();
        let mut written = Vec::new();
        for put in puts.iter_mut() {
            match self.store.write_temp(put.key, put.data, put.options.access, false) {
                Ok((tmp, w)) => {
                    group.push((tmp, put.key.clone(), put.options.create_only));
                    written.push(w);
                }
                Err(e) => {
                    for (tmp, _, _) in &group {
                        let _ = fs::remove_file(tmp);
                    }
                    return Err(e);
                }
            }
        }
        self.pending.extend(group);
        Ok(written)
    }

    fn pending(&self) -> usize {
        self.pending.len()
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        crate::fault::point("store-before-sync", None).map_err(injected)?;
        // Also makes the names of the flushes before durable.
        self.store.sync_all()?;
        self.names_unsynced = false;
        crate::fault::point("store-before-rename", None).map_err(injected)?;
        // In the order of the puts: a block's `.meta` before the block.
        for (tmp, key, create_only) in std::mem::take(&mut self.pending) {
            self.names_unsynced = true;
            self.store.publish(&tmp, &key, create_only)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        if self.names_unsynced {
            self.store.sync_all()?;
            self.names_unsynced = false;
        }
        Ok(())
    }
}

impl Drop for PosixBatch<'_> {
    fn drop(&mut self) {
        for (tmp, _, _) in &self.pending {
            let _ = fs::remove_file(tmp);
        }
    }
}

fn injected(e: anyhow::Error) -> StoreError {
    io_error(format!("{e:#}"), io::Error::other("fault injection"))
}

fn io_error(what: String, e: io::Error) -> StoreError {
    StoreError::Io(what, e)
}

/// The temp name used while `path` is being written.
fn temp_path(path: &Path) -> PathBuf {
    static PID: OnceLock<u32> = OnceLock::new();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let pid = PID.get_or_init(std::process::id);
    path.with_file_name(format!(".{name}.tmp-{pid}-{n}"))
}

/// Creates the new file `path` with `mode` (before the umask), and its
/// folder first if that is missing: a folder that exists costs no call.
fn create_new(path: &Path, mode: u32) -> Result<File, StoreError> {
    let open = || OpenOptions::new().write(true).create_new(true).mode(mode).open(path);
    let created = match open() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            mkdir(dir).map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
            open()
        }
        other => other,
    };
    created.map_err(|e| io_error(format!("creating {}", path.display()), e))
}

/// Whether the process's umask takes bits off `mode`, so that a file created
/// with it needs a `chmod` (also when the umask cannot be read). hwdr never
/// changes its umask, so it is read once.
fn umask_narrows(mode: u32) -> bool {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    let umask = UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(value.trim(), 8).ok()
    });
    umask.is_none_or(|u| u & mode != 0)
}

/// hwdr's temp names: `.<name>.tmp-<pid>[-<n>]`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, tail)| !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
}

/// Creates a folder and its missing parents with exactly [`DIR_MODE`].
fn mkdir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        mkdir(parent)?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("fsync folder {}", dir.display()), e))
}

/// Calls `each` for every file below `path` (or `path` itself if a file).
fn walk(path: &Path, each: &mut dyn FnMut(&Path, &fs::Metadata) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("stat {}", path.display()))),
    };
    if meta.is_file() {
        return each(path, &meta);
    }
    if !meta.is_dir() {
        return Ok(());
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        crate::cancel::check()?;
        for entry in
            fs::read_dir(&dir).map_err(|e| anyhow::Error::new(e).context(format!("listing {}", dir.display())))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let meta = entry.metadata()?;
                each(&entry.path(), &meta)?;
            }
        }
    }
    Ok(())
}
