//! SIGTERM and SIGINT end a running command cleanly: the signal only sets a
//! flag; the runner kills the program it waits for, the step fails, the
//! manifest says `failed`, and the lock is released on the way out.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static CANCELLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Routes SIGTERM and SIGINT to the flag. Call once, early, in a command that
/// holds the repository lock.
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

/// Fails with a clear error when a stop was requested.
pub fn check() -> anyhow::Result<()> {
    if requested() {
        anyhow::bail!("stopped by a signal (SIGTERM or SIGINT)");
    }
    Ok(())
}
