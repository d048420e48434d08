//! The repository lock: one backup, restore or prune at a time per cluster.
//!
//! A file created with `O_EXCL` in the repository, holding who took it. It is
//! removed when the holder ends (on every exit path: errors, panics unwinding,
//! SIGTERM through [`crate::cancel`]). A lock whose process is gone is reported
//! as stale with what to do; it is never taken over silently.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::exit::HwdrError;

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// Start time of the process (clock ticks since boot), to tell a reused pid.
    pub pid_start: Option<u64>,
    pub since: DateTime<Utc>,
    /// `backup`, `restore`, `prune`, ...
    pub operation: String,
    pub backup_id: Option<String>,
}

impl LockInfo {
    /// A lock record for this process.
    pub fn for_this_process(operation: &str, backup_id: Option<String>, now: DateTime<Utc>) -> LockInfo {
        let pid = std::process::id();
        LockInfo {
            host: this_host(),
            pid,
            pid_start: process_start(pid),
            since: now,
            operation: operation.to_owned(),
            backup_id,
        }
    }

    /// Whether the holder is known to be dead: it ran on this host and its pid
    /// is gone or belongs to a newer process.
    pub fn is_stale(&self) -> bool {
        if self.host != this_host() {
            return false;
        }
        match (process_start(self.pid), self.pid_start) {
            (None, _) => true,
            (Some(now), Some(then)) => now != then,
            (Some(_), None) => false,
        }
    }

    /// "backup of backup <id> by pid <pid> on host <host> since <time>".
    pub fn describe(&self) -> String {
        let id = self
            .backup_id
            .as_deref()
            .map(|id| format!(" of backup {id}"))
            .unwrap_or_default();
        format!(
            "{}{id} by pid {} on host {} since {}",
            self.operation,
            self.pid,
            self.host,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A held lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct RepoLock {
    path: PathBuf,
    info: LockInfo,
}

impl RepoLock {
    /// Takes the lock at `path` or explains who holds it.
    pub fn acquire(path: &Path, info: LockInfo) -> Result<RepoLock> {
        let body = serde_json::to_vec_pretty(&info)?;
        match OpenOptions::new().write(true).create_new(true).mode(0o640).open(path) {
            Ok(mut file) => {
                let written = file.write_all(&body).and_then(|_| file.sync_all());
                if let Err(e) = written {
                    let _ = fs::remove_file(path);
                    return Err(e).with_context(|| format!("writing lock {}", path.display()));
                }
                super::fsutil::sync_dir(path.parent().unwrap_or(Path::new("/")))?;
                Ok(RepoLock {
                    path: path.to_path_buf(),
                    info,
                })
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(held_error(path).into()),
            Err(e) => Err(e).with_context(|| format!("creating lock {}", path.display())),
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        // Only remove the file if it is still ours.
        if read(&self.path).ok().flatten().as_ref() == Some(&self.info) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn held_error(path: &Path) -> HwdrError {
    match read(path) {
        Ok(Some(holder)) if holder.is_stale() => HwdrError::LockHeld(format!(
            "stale lock {}: {} but that process is gone; check the backup it left, then run `hwdr unlock`",
            path.display(),
            holder.describe()
        )),
        Ok(Some(holder)) => HwdrError::LockHeld(format!(
            "the repository is locked: {} ({})",
            holder.describe(),
            path.display()
        )),
        Ok(None) => HwdrError::LockHeld(format!(
            "the repository lock {} was just released; try again",
            path.display()
        )),
        Err(e) => HwdrError::LockHeld(format!(
            "the repository lock {} exists but is unreadable: {e:#}",
            path.display()
        )),
    }
}

/// Reads a lock file; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<LockInfo>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("parsing lock {}", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading lock {}", path.display())),
    }
}

/// Removes the lock at `path`: only a stale one unless `force`.
pub fn unlock(path: &Path, force: bool) -> Result<Option<LockInfo>> {
    let Some(holder) = read(path)? else {
        return Ok(None);
    };
    if !force && !holder.is_stale() {
        return Err(HwdrError::LockHeld(format!(
            "the lock is not stale: {}; use --force only if you know that process is gone",
            holder.describe()
        ))
        .into());
    }
    fs::remove_file(path).with_context(|| format!("removing lock {}", path.display()))?;
    Ok(Some(holder))
}

/// This host's name.
pub fn this_host() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The start time of `pid` in clock ticks since boot, if it runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may hold spaces, so count after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let lock = RepoLock::acquire(&path, LockInfo::for_this_process("backup", None, Utc::now())).unwrap();
        let err = RepoLock::acquire(&path, LockInfo::for_this_process("backup", None, Utc::now())).unwrap_err();
        assert!(
            err.to_string().contains("the repository is locked: backup by pid"),
            "{err}"
        );
        drop(lock);
        assert!(!path.exists());
    }

    #[test]
    fn dead_holder_is_reported_stale_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let mut info = LockInfo::for_this_process("backup", Some("2611231819".into()), Utc::now());
        // A pid above the kernel's maximum is never alive.
        info.pid = 4_194_304 + 1;
        fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
        let err = RepoLock::acquire(&path, LockInfo::for_this_process("backup", None, Utc::now())).unwrap_err();
        assert!(err.to_string().starts_with("stale lock"), "{err}");
        assert!(path.exists());
        assert!(unlock(&path, false).unwrap().is_some());
        assert!(!path.exists());
    }

    #[test]
    fn live_lock_is_not_removed_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let _lock = RepoLock::acquire(&path, LockInfo::for_this_process("backup", None, Utc::now())).unwrap();
        assert!(unlock(&path, false).is_err());
        assert!(unlock(&path, true).unwrap().is_some());
    }
}
