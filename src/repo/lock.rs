//! The repository lock: one backup, restore or prune at a time per cluster.
//!
//! The object `lock`, put create-only, holding who took it. It is removed
//! when the holder ends (on every exit path: errors, panics unwinding,
//! SIGTERM through [`crate::cancel`]). A lock whose process is gone is
//! reported as stale with what to do; it is never taken over silently.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::{Backend, ObjectKey, PutOptions, StoreError};
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

/// A held lock; dropping it removes the lock object if it is still ours.
#[derive(Debug)]
pub struct RepoLock {
    backend: Arc<dyn Backend>,
    info: LockInfo,
}

impl RepoLock {
    /// Takes the lock or explains who holds it.
    pub fn acquire(backend: Arc<dyn Backend>, info: LockInfo) -> Result<RepoLock> {
        let body = serde_json::to_vec_pretty(&info)?;
        match backend.put(&ObjectKey::lock(), &mut &body[..], PutOptions::create_only()) {
            Ok(_) => Ok(RepoLock { backend, info }),
            Err(StoreError::AlreadyExists(_)) => Err(held_error(backend.as_ref()).into()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("taking the lock of {}", backend.location()))),
        }
    }

    /// Who holds it.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        // Only remove the lock if it is still ours.
        if read(self.backend.as_ref()).ok().flatten().as_ref() == Some(&self.info) {
            let _ = self.backend.delete(&ObjectKey::lock());
        }
    }
}

fn held_error(backend: &dyn Backend) -> HwdrError {
    let at = format!("{}/lock", backend.location());
    match read(backend) {
        Ok(Some(holder)) if holder.is_stale() => HwdrError::LockHeld(format!(
            "stale lock {at}: {} but that process is gone; check the backup it left, then run `hwdr unlock`",
            holder.describe()
        )),
        Ok(Some(holder)) => HwdrError::LockHeld(format!("the repository is locked: {} ({at})", holder.describe())),
        Ok(None) => HwdrError::LockHeld(format!("the repository lock {at} was just released; try again")),
        Err(e) => HwdrError::LockHeld(format!("the repository lock {at} exists but is unreadable: {e:#}")),
    }
}

/// Reads the lock; `None` when there is none.
pub fn read(backend: &dyn Backend) -> Result<Option<LockInfo>> {
    let mut bytes = Vec::new();
    match backend.get(&ObjectKey::lock()) {
        Ok(mut r) => r.read_to_end(&mut bytes).context("reading the repository lock")?,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context("reading the repository lock")),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("parsing the lock {}/lock", backend.location()))
}

/// Removes the lock: only a stale one unless `force`.
pub fn unlock(backend: &dyn Backend, force: bool) -> Result<Option<LockInfo>> {
    let Some(holder) = read(backend)? else {
        return Ok(None);
    };
    if !force && !holder.is_stale() {
        return Err(HwdrError::LockHeld(format!(
            "the lock is not stale: {}; use --force only if you know that process is gone",
            holder.describe()
        ))
        .into());
    }
    backend
        .delete(&ObjectKey::lock())
        .context("removing the repository lock")?;
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may hold spaces, so count after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::store::memory::Memory;

    fn backend() -> Arc<dyn Backend> {
        Arc::new(Memory::new())
    }

    #[test]
    fn second_holder_is_refused_and_drop_releases() {
        let b = backend();
        let lock = RepoLock::acquire(b.clone(), LockInfo::for_this_process("backup", None, Utc::now())).unwrap();
        let err = RepoLock::acquire(b.clone(), LockInfo::for_this_process("backup", None, Utc::now())).unwrap_err();
        assert!(
            err.to_string().contains("the repository is locked: backup by pid"),
            "{err}"
        );
        drop(lock);
        assert!(read(b.as_ref()).unwrap().is_none());
    }

    #[test]
    fn dead_holder_is_reported_stale_not_taken() {
        let b = backend();
        let mut info = LockInfo::for_this_process("backup", Some("2611231819".into()), Utc::now());
        // A pid above the kernel's maximum is never alive.
        info.pid = 4_194_304 + 1;
        b.put(
            &ObjectKey::lock(),
            &mut &serde_json::to_vec(&info).unwrap()[..],
            PutOptions::default(),
        )
        .unwrap();
        let err = RepoLock::acquire(b.clone(), LockInfo::for_this_process("backup", None, Utc::now())).unwrap_err();
        assert!(err.to_string().starts_with("stale lock"), "{err}");
        assert!(read(b.as_ref()).unwrap().is_some());
        assert!(unlock(b.as_ref(), false).unwrap().is_some());
        assert!(read(b.as_ref()).unwrap().is_none());
    }

    #[test]
    fn live_lock_is_not_removed_without_force() {
        let b = backend();
        let _lock = RepoLock::acquire(b.clone(), LockInfo::for_this_process("backup", None, Utc::now())).unwrap();
        assert!(unlock(b.as_ref(), false).is_err());
        assert!(unlock(b.as_ref(), true).unwrap().is_some());
    }
}
