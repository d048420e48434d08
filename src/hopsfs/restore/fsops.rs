//! The small file-system steps both phases share: folders made and files
//! given the owner and mode of the restored storage, a copy's bytes sent to
//! the disk as they are written, a file system synced.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use nix::unistd::{Gid, Uid};

use crate::config::Config;
use crate::hopsfs::fsuser::FsUser;

/// Owner of everything restored.
#[derive(Clone, Copy)]
pub(super) struct Owner {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

pub(super) fn owner(config: &Config) -> Result<Owner> {
    let hdfs = config.hdfs_user()?;
    let group = config.hopsfs_group()?;
    Ok(Owner {
        uid: hdfs.uid.as_raw(),
        gid: group.gid(),
    })
}

/// Runs `f` with this thread's file system identity `owner`'s: what it
/// creates is the data node's from the start, so a stage killed mid-copy
/// (other copies in flight) leaves no file of root's.
pub(super) fn as_owner<R>(owner: Owner, f: impl FnOnce() -> Result<R>) -> Result<R> {
    let _as_owner = FsUser::switch(Uid::from_raw(owner.uid), Gid::from_raw(owner.gid))?;
    f()
}

pub(super) fn make_dir(path: &Path, mode: u32, owner: Owner) -> Result<()> {
    if !path.is_dir() {
        fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    }
    set_owner_mode(path, mode, owner)
}

pub(super) fn set_owner_mode(path: &Path, mode: u32, owner: Owner) -> Result<()> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
        .with_context(|| format!("chown {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", path.display()))
}

/// How much of a copy is handed to the disk at once.
const WINDOW: u64 = 8 << 20;

/// Sends a file's bytes to the disk as they are written (`sync_file_range`),
/// waiting for the window before the last: a copy has at most two windows
/// not yet on the disk, so the page cache never fills with dirty pages (the
/// kernel would then stall every writer at once) and the `syncfs` that makes
/// a stage durable finds little left to write. Durability itself still comes
/// from that `syncfs`.
#[derive(Default)]
pub(super) struct Writeback {
    /// Bytes written so far, and of those handed to the disk.
    written: u64,
    started: u64,
}

impl Writeback {
    /// Records `n` more bytes written to `file`; hands a full window to the disk.
    pub(super) fn wrote(&mut self, file: &File, n: usize) -> Result<()> {
        self.written += n as u64;
        if self.written - self.started < WINDOW {
            return Ok(());
        }
        // The window before this one: wait until it is on the disk.
        if self.started >= WINDOW {
            let wait =
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            range(file, self.started - WINDOW, WINDOW, wait)?;
        }
        self.start(file)
    }

    /// Hands what is left to the disk, without waiting.
    pub(super) fn finish(&mut self, file: &File) -> Result<()> {
        if self.written > self.started {
            self.start(file)?;
        }
        Ok(())
    }

    fn start(&mut self, file: &File) -> Result<()> {
        range(
            file,
            self.started,
            self.written - self.started,
            libc::SYNC_FILE_RANGE_WRITE,
        )?;
        self.started = self.written;
        Ok(())
    }
}

fn range(file: &File, from: u64, len: u64, flags: libc::c_uint) -> Result<()> {
    let (Ok(from), Ok(len)) = (libc::off64_t::try_from(from), libc::off64_t::try_from(len)) else {
        anyhow::bail!("sync_file_range: offset {from} + {len} out of range");
    };
    // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), from, len, flags) } != 0 {
        return Err(std::io::Error::last_os_error()).context("sync_file_range");
    }
    Ok(())
}

pub(super) fn sync_fs(dir: &Path) -> Result<()> {
    let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    // SAFETY: syncfs only reads the descriptor, which `handle` keeps open.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("syncfs on {}", dir.display()));
    }
    Ok(())
}
