//! SIGTERM and SIGINT end a running command cleanly: the signal only sets a
//! flag; every long loop checks it, the runner kills the program it waits
//! for, the leader cancels its agents' jobs, the step fails with
//! "interrupted", the manifest (or restore state) says `failed`, and the lock
//! is released on the way out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static CANCELLED: AtomicBool = AtomicBool::new(false);

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

/// Whether a stop was requested.
pub fn requested() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// Fails with [`INTERRUPTED`] when a stop was requested.
pub fn check() -> anyhow::Result<()> {
    if requested() {
        anyhow::bail!(INTERRUPTED);
    }
    Ok(())
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
