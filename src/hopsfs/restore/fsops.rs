//! The small file-system steps both phases share: folders made and files
//! given the owner and mode of the restored storage, a file system synced.

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

pub(super) fn sync_fs(dir: &Path) -> Result<()> {
    let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    // SAFETY: syncfs only reads the descriptor, which `handle` keeps open.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("syncfs on {}", dir.display()));
    }
    Ok(())
}
