//! Progress and cancellation of a node-local job, shared by the function doing
//! the work and whoever watches it (the agent's API, or the leader in-process).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};

/// Counters a job updates and a flag it checks between files (and inside
/// long copies). Cheap to clone: clones share the same job.
#[derive(Debug, Default, Clone)]
pub struct JobControl {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    files: AtomicU64,
    bytes: AtomicU64,
    cancel: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl JobControl {
    /// Records one finished file of `size` bytes.
    pub fn file_done(&self, size: u64) {
        self.inner.files.fetch_add(1, Ordering::Relaxed);
        self.inner.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Files and bytes done so far.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.inner.files.load(Ordering::Relaxed),
            self.inner.bytes.load(Ordering::Relaxed),
        )
    }

    /// Asks the job to stop at its next check.
    pub fn cancel(&self) {
        self.cancel_because("it was cancelled");
    }

    /// Asks the job to stop at its next check, saying why (the first reason
    /// given is the one kept).
    pub fn cancel_because(&self, reason: &str) {
        let mut kept = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
        kept.get_or_insert_with(|| reason.to_owned());
        self.inner.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether the job was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.load(Ordering::SeqCst)
    }

    /// Whether the job should stop: it was cancelled, or the process got
    /// SIGTERM/SIGINT.
    pub fn should_stop(&self) -> bool {
        self.is_cancelled() || crate::cancel::requested()
    }

    /// Fails if the job was asked to stop (or the process got SIGTERM in a
    /// one-shot command).
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            let reason = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
            bail!(
                "the job was stopped before it finished: {}",
                reason.as_deref().unwrap_or("it was cancelled")
            );
        }
        crate::cancel::check()
    }

    /// Sleeps for `duration`, waking early (with an error) when the job is
    /// asked to stop.
    pub fn sleep(&self, duration: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + duration;
        loop {
            self.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_job_says_why_and_wakes_from_its_sleep() {
        let control = JobControl::default();
        let watcher = control.clone();
        let t = std::thread::spawn(move || control.sleep(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(100));
        watcher.cancel_because("its lease lapsed");
        watcher.cancel_because("a later reason");
        let err = t.join().unwrap().unwrap_err().to_string();
        assert!(err.contains("its lease lapsed"), "{err}");
        assert!(watcher.is_cancelled());
    }
}
