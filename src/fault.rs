//! Fault injection for the tests that kill, stop or slow hwdr at a chosen
//! step. Compiled in only with the cargo feature `failpoints` (the tests'
//! build); in every other build [`point`] is an empty inline function.
//!
//! Points are configured with the `FAILPOINTS` environment variable of the
//! `fail` crate (`name=action;...`, e.g. `hopsfs-place=3*off->return(kill)`).
//! The action `return(<arg>)` selects what happens at the point:
//!
//! | arg          | what happens                                              |
//! |--------------|-----------------------------------------------------------|
//! | `kill`       | the process sends itself SIGKILL (a crash at that point)   |
//! | `sleep:<ms>` | the thread waits, waking early when the job is stopped     |
//! | `fail`       | the step fails with "injected failure at <name>"           |
//!
//! A few points are settings the tests shorten instead, read with [`value`]:
//! `lock-lease-ms=return(<ms>)` is the length of the repository lock's lease.

use anyhow::Result;

use crate::job::JobControl;

/// Sets the points up from `FAILPOINTS`; keep the guard alive in `main`.
#[cfg(feature = "failpoints")]
pub fn setup() -> Option<fail::FailScenario<'static>> {
    Some(fail::FailScenario::setup())
}

/// Without the feature there is nothing to set up.
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> Option<()> {
    None
}

/// A point named `name`: does what `FAILPOINTS` says for it, if anything.
#[cfg(feature = "failpoints")]
pub fn point(name: &str, control: Option<&JobControl>) -> Result<()> {
    let Some(arg) = fail::eval(name, |arg| arg.unwrap_or_default()) else {
        return Ok(());
    };
    tracing::warn!("fault injection at {name}: {arg}");
    if arg == "kill" {
        // SAFETY: kill(2) on our own pid has no memory effects.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    if let Some(ms) = arg.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
        let wait = std::time::Duration::from_millis(ms);
        return match control {
            Some(control) => control.sleep(wait),
            None => crate::cancel::sleep(wait),
        };
    }
    if arg == "fail" {
        anyhow::bail!("injected failure at {name}");
    }
    Ok(())
}

/// Without the feature a point does nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn point(_name: &str, _control: Option<&JobControl>) -> Result<()> {
    Ok(())
}

/// The argument `FAILPOINTS` gives point `name` (`name=return(<arg>)`), for
/// a setting the tests shorten.
#[cfg(feature = "failpoints")]
pub fn value(name: &str) -> Option<String> {
    fail::eval(name, |arg| arg.unwrap_or_default())
}

/// Without the feature no setting is changed.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn value(_name: &str) -> Option<String> {
    None
}
