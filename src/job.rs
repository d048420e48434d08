//! Progress and cancellation of a node-local job, shared by the function doing
//! the work and whoever watches it (the agent's API, or the leader in-process).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{bail, Result};

/// Counters a job updates and a flag it checks between files.
#[derive(Debug, Default)]
pub struct JobControl {
    files: AtomicU64,
    bytes: AtomicU64,
    cancel: AtomicBool,
}

impl JobControl {
    /// Records one finished file of `size` bytes.
    pub fn file_done(&self, size: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Files and bytes done so far.
    pub fn progress(&self) -> (u64, u64) {
        (self.files.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    /// Asks the job to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether [`JobControl::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Fails if the job was asked to stop (or the process got SIGTERM in a
    /// one-shot command).
    pub fn check(&self) -> Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            bail!("the job was stopped before it finished");
        }
        crate::cancel::check()
    }
}
