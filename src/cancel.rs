//! SIGTERM and SIGINT end a running command cleanly: the signal only sets a
//! flag; every long loop checks it, the runner kills the program it waits
//! for, the leader cancels its agents' jobs, the step fails with
//! "interrupted", the manifest (or restore state) says `failed`, and the lock
//! is released on the way out.
//!
//! A command stops the same way, with a reason of its own, when something it
//! depends on is lost: the repository lock registers its [`Stop`] while it is
//! held ([`watch`]), and once its lease is lost every check fails with "lost
//! the repository lock: <why>". A stop is seen only while it is watched, so
//! it ends with the lock that owns it. Like the signal, it stops the whole
//! process: a test that requests one runs in a process of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// The stops watched now (weak: a stop whose owner is gone is no stop).
static WATCHED: Mutex<Vec<Weak<Stop>>> = Mutex::new(Vec::new());

/// The error every interrupted step fails with (its text names the cause).
pub const INTERRUPTED: &str = "interrupted: stopped by a signal (SIGTERM or SIGINT)";

extern "C" fn on_signal(_: libc::c_int) {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Routes SIGTERM and SIGINT to the flag. Call once, early, in a command that
/// must end cleanly (it holds the repository lock, or records a result).
pub fn install() -> anyhow::Result<()> {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// A reason to stop other than a signal, owned by what may fail under the
/// command (the repository lock): requested now, or due at a time unless
/// that time is moved on first (a lease renewed in time). The first reason
/// that takes effect is kept.
#[derive(Debug, Default)]
pub struct Stop {
    reason: OnceLock<String>,
    /// When the stop comes by itself, and why.
    due: Mutex<Option<(Instant, String)>>,
}

impl Stop {
    /// Asks every check to fail with `reason` (while the stop is watched).
    pub fn request(&self, reason: String) {
        let _ = self.reason.set(reason);
    }

    /// Makes the stop come at `at` with `reason`, replacing the time set
    /// before, unless that one has passed already: a stop that came stays.
    pub fn request_at(&self, at: Instant, reason: String) {
        let mut due = self.due();
        if let Some((_, why)) = due.as_ref().filter(|(then, _)| *then <= Instant::now()) {
            self.request(why.clone());
            return;
        }
        *due = Some((at, reason));
    }

    /// Says better why the stop will come, if it is due (its time kept).
    pub fn update_reason(&self, reason: String) {
        if let Some((_, why)) = self.due().as_mut() {
            *why = reason;
        }
    }

    /// Why the stop was requested, if it was (or came when due).
    pub fn reason(&self) -> Option<String> {
        if let Some(why) = self.reason.get() {
            return Some(why.clone());
        }
        let why = self
            .due()
            .as_ref()
            .filter(|(at, _)| *at <= Instant::now())
            .map(|(_, why)| why.clone())?;
        self.request(why);
        self.reason.get().cloned()
    }

    fn due(&self) -> MutexGuard<'_, Option<(Instant, String)>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps a [`Stop`] watched by [`check`]; dropping it ends the watch.
#[derive(Debug)]
pub struct Watch(Weak<Stop>);

/// Makes [`check`] (and [`requested`]) see `stop` until the [`Watch`] is dropped.
pub fn watch(stop: &Arc<Stop>) -> Watch {
    let weak = Arc::downgrade(stop);
    watched().push(weak.clone());
    Watch(weak)
}

impl Drop for Watch {
    fn drop(&mut self) {
        watched().retain(|w| !w.ptr_eq(&self.0) && w.strong_count() > 0);
    }
}

fn watched() -> MutexGuard<'static, Vec<Weak<Stop>>> {
    // Plain data: a panic elsewhere leaves it usable.
    WATCHED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the command must stop, if it must: a signal ([`INTERRUPTED`]), else
/// the reason of the first watched stop requested.
pub fn reason() -> Option<String> {
    if CANCELLED.load(Ordering::SeqCst) {
        return Some(INTERRUPTED.to_owned());
    }
    watched()
        .iter()
        .filter_map(Weak::upgrade)
        .find_map(|stop| stop.reason())
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    reason().is_some()
}

/// The error of the stop requested ([`INTERRUPTED`] if none is, for a caller
/// that saw one a moment ago).
pub fn stopped() -> anyhow::Error {
    anyhow::Error::msg(reason().unwrap_or_else(|| INTERRUPTED.to_owned()))
}

/// Fails with the reason ([`INTERRUPTED`] for a signal) when a stop was requested.
pub fn check() -> anyhow::Result<()> {
    match reason() {
        Some(why) => Err(anyhow::Error::msg(why)),
        None => Ok(()),
    }
}

/// Sleeps for `duration` unless a stop is requested first (then fails).
pub fn sleep(duration: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + duration;
    loop {
        check()?;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Resolves once a stop is requested (for `tokio::select!` next to a wait
/// on the network).
pub async fn requested_async() {
    while !requested() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop never requested is watched without effect, and its watch ends
    /// with it. (A requested one stops the whole process: see the lock's
    /// lost-lease test, which runs in a process of its own.)
    #[test]
    fn an_unrequested_stop_changes_nothing_and_its_watch_ends() {
        let stop = Arc::new(Stop::default());
        let w = watch(&stop);
        assert!(watched().iter().any(|s| s.ptr_eq(&Arc::downgrade(&stop))));
        assert!(stop.reason().is_none());
        drop(w);
        assert!(!watched().iter().any(|s| s.ptr_eq(&Arc::downgrade(&stop))));
        stop.request("first".into());
        stop.request("second".into());
        assert_eq!(stop.reason().as_deref(), Some("first"));
    }

    #[test]
    fn a_due_stop_comes_unless_moved_on_and_stays_once_come() {
        let stop = Stop::default();
        let soon = Instant::now() + Duration::from_millis(30);
        stop.request_at(soon, "late".into());
        assert_eq!(stop.reason(), None);
        stop.request_at(Instant::now() + Duration::from_secs(60), "later".into());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(stop.reason(), None, "moved on in time");
        stop.request_at(Instant::now(), "now".into());
        stop.update_reason("now, because".into());
        std::thread::sleep(Duration::from_millis(5));
        stop.request_at(Instant::now() + Duration::from_secs(60), "too late to move".into());
        assert_eq!(stop.reason().as_deref(), Some("now, because"));
    }
}
