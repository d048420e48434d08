//! Crash-safe writing of local files (hwdr's state, the metrics file, the
//! listing cache, staged files): temp name in the same folder, fsync,
//! rename, fsync the folder; and folders with exact modes. The repository
//! is not written here: it goes through [`crate::repo::store`].

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The temp name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Opens a new temp file for `path` with `mode`, replacing a leftover one.
pub fn create_temp(path: &Path, mode: u32) -> Result<(PathBuf, File)> {
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    // The umask may have narrowed the mode; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode of {}", tmp.display()))?;
    Ok((tmp, file))
}

/// Makes a finished temp file durable under its final name.
pub fn commit_temp(tmp: &Path, file: File, path: &Path) -> Result<()> {
    file.sync_all().with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    fs::rename(tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (tmp, mut file) = create_temp(path, mode)?;
    let result = file
        .write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    commit_temp(&tmp, file, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Fsyncs a folder so the names in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync folder {}", dir.display()))
}

/// Size and SHA-256 of a file (stopping when the process is asked to).
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        crate::cancel::check()?;
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// An anonymous scratch file in folder `dir` (made if missing), gone when
/// closed: for what is written as a stream before it is stored (an
/// inventory, a dump), so a crash leaves nothing behind.
pub fn spool(dir: &Path) -> Result<File> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    mkdir(dir, 0o750)?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".spool.tmp-{}-{n}", std::process::id()));
    let _ = fs::remove_file(&path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(file)
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

/// Reads the JSON file `path` (hwdr's own state); `None` if it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Reads a secret file (a token, a TLS key): it must be a regular file owned
/// by root that only its owner may read. `key` names the config key in the
/// errors, which say how to fix the file. The checks are on the opened file,
/// so a file swapped between check and read cannot slip through.
pub fn read_private(path: &Path, key: &str) -> Result<Vec<u8>> {
    let mut file = File::open(path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{key}: {} is not a regular file", path.display());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{key}: {} has mode {mode:04o}; it must be readable by its owner only (chmod 600)",
            path.display()
        );
    }
    if meta.uid() != 0 {
        bail!(
            "{key}: {} is owned by uid {}; it must be owned by root (chown root:root)",
            path.display(),
            meta.uid()
        );
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        write_atomic(&path, b"{}", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn hash_file_hashes_what_the_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a");
        fs::write(&src, b"abc").unwrap();
        assert_eq!(
            hash_file(&src).unwrap(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned()
            )
        );
    }

    #[test]
    fn a_private_file_is_a_regular_file_of_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private(&path, "k").unwrap(), b"x");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private(&path, "k").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "k: {} has mode 0644; it must be readable by its owner only (chmod 600)",
                path.display()
            )
        );
        let err = read_private(dir.path(), "k").unwrap_err().to_string();
        assert!(err.ends_with("is not a regular file"), "{err}");
        let err = read_private(&dir.path().join("none"), "k").unwrap_err();
        assert!(err.to_string().starts_with("k: cannot read"), "{err}");
    }
}
