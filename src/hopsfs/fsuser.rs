//! Reading files as another user without leaving the process: Linux keeps a
//! per-thread filesystem uid and gid (`setfsuid(2)`), used only for
//! permission checks. Opening a data node's files under the `hdfs` fsuid means
//! hwdr reads exactly what `hdfs` may read, while it stays root to write the
//! repository with the descriptor it got.

use std::cell::Cell;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use nix::unistd::{setfsgid, setfsuid, Gid, Uid};

thread_local! {
    /// The identity this thread has already switched to and checked: a
    /// switch that worked once works again (only a thread without
    /// `CAP_SETUID` is refused, and hwdr drops no capability), so a worker
    /// reading a million blocks checks once, not once per block.
    static CHECKED: Cell<Option<(Uid, Gid)>> = const { Cell::new(None) };
}

/// The process's effective uid (hwdr never changes its own).
fn effective() -> Uid {
    static EUID: OnceLock<Uid> = OnceLock::new();
    *EUID.get_or_init(Uid::effective)
}

/// The filesystem identity of the current thread, restored when dropped.
#[derive(Debug)]
pub struct FsUser {
    previous: Option<(Uid, Gid)>,
}

impl FsUser {
    /// Switches this thread's filesystem uid and gid. Not root: only the
    /// current user is allowed (no switch).
    pub fn switch(uid: Uid, gid: Gid) -> Result<FsUser> {
        let euid = effective();
        if !euid.is_root() {
            if uid != euid {
                bail!("hwdr runs as uid {euid} and cannot read files as uid {uid}: run it as root");
            }
            return Ok(FsUser { previous: None });
        }
        let old_gid = setfsgid(gid);
        let old_uid = setfsuid(uid);
        if CHECKED.get() != Some((uid, gid)) {
            // setfsuid reports no errors: calling it again returns the value in force.
            if setfsuid(uid) != uid || setfsgid(gid) != gid {
                setfsuid(old_uid);
                setfsgid(old_gid);
                bail!("cannot switch the filesystem identity to uid {uid} gid {gid}");
            }
            CHECKED.set(Some((uid, gid)));
        }
        Ok(FsUser {
            previous: Some((old_uid, old_gid)),
        })
    }
}

impl Drop for FsUser {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.previous {
            setfsuid(uid);
            setfsgid(gid);
        }
    }
}
