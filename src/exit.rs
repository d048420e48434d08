//! Exit codes of `hwdr` and the error kinds that select them.
//!
//! Every code is documented in the README ("Exit codes"); scripts and systemd units match on
//! them (`SuccessExitStatus=` for "not the leader").

use std::process::ExitCode;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// The command did what was asked.
    Success = 0,
    /// Any failure without a more specific code.
    Failure = 1,
    /// The command line could not be parsed (clap's own code).
    Usage = 2,
    /// The configuration is invalid.
    InvalidConfig = 3,
    /// The requested backup id is already taken.
    IdTaken = 4,
    /// Another backup or restore holds the repository lock.
    LockHeld = 5,
    /// The backup finished but some node did not deliver its part.
    Partial = 6,
    /// This head node is not the leader; another one runs the backup.
    NotLeader = 7,
    /// The backup cannot be used: a restore was refused (incomplete,
    /// damaged, or the cluster does not match it; nothing was changed), or
    /// `hwdr verify` was asked to check a backup that is not complete.
    Refused = 8,
    /// `hwdr verify` found damage, or a damaged manifest stopped `hwdr prune`.
    Damaged = 9,
    /// No backup has the id asked for.
    NotFound = 10,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}

/// Errors a caller matches on to pick an exit code. Everything else is an
/// `anyhow::Error` and exits with [`Code::Failure`].
#[derive(Debug, thiserror::Error)]
pub enum HwdrError {
    /// The configuration failed to load or validate.
    #[error("{0}")]
    Config(String),
    /// The backup id exists in the repository or on a RonDB data node.
    #[error("{0}")]
    IdTaken(String),
    /// The repository lock is held by another process (or a dead one).
    #[error("{0}")]
    LockHeld(String),
    /// A backup ended with some nodes missing.
    #[error("{0}")]
    Partial(String),
    /// A restore was refused before it changed anything, or a backup that
    /// is not complete was to be verified.
    #[error("{0}")]
    Refused(String),
    /// Damage that stops a command before it changes anything.
    #[error("{0}")]
    Damaged(String),
    /// No backup has the id asked for.
    #[error("{0}")]
    NotFound(String),
}

impl HwdrError {
    /// The exit code this error selects.
    pub fn code(&self) -> Code {
        match self {
            HwdrError::Config(_) => Code::InvalidConfig,
            HwdrError::IdTaken(_) => Code::IdTaken,
            HwdrError::LockHeld(_) => Code::LockHeld,
            HwdrError::Partial(_) => Code::Partial,
            HwdrError::Refused(_) => Code::Refused,
            HwdrError::Damaged(_) => Code::Damaged,
            HwdrError::NotFound(_) => Code::NotFound,
        }
    }
}

/// What every error hwdr prints starts with, argument errors included.
pub const ERROR_PREFIX: &str = "hwdr: error:";

/// Prints `err`'s chain once on stderr, after [`ERROR_PREFIX`], and returns
/// the exit code it selects.
pub fn report(err: &anyhow::Error) -> Code {
    eprintln!("{ERROR_PREFIX} {err:#}");
    code_for(err)
}

/// Prints what clap says about the command line: help and `--version` on
/// stdout (success), an error on stderr with [`ERROR_PREFIX`] in place of
/// clap's own `error:`, keeping its usage and tip lines ([`Code::Usage`]).
pub fn report_usage(err: &clap::Error) -> Code {
    if !err.use_stderr() {
        let _ = err.print();
        return Code::Success;
    }
    eprint!("{}", usage_text(&err.render().to_string()));
    Code::Usage
}

/// clap's rendered error with hwdr's prefix; other text (the help `hwdr`
/// alone prints) unchanged.
fn usage_text(rendered: &str) -> String {
    match rendered.strip_prefix("error:") {
        Some(rest) => format!("{ERROR_PREFIX}{rest}"),
        None => rendered.to_owned(),
    }
}

/// The exit code for an error chain: the first [`HwdrError`] in it decides.
pub fn code_for(err: &anyhow::Error) -> Code {
    // downcast_ref on the error itself also sees `.context(HwdrError)` layers.
    err.downcast_ref::<HwdrError>()
        .or_else(|| err.chain().find_map(|cause| cause.downcast_ref::<HwdrError>()))
        .map_or(Code::Failure, HwdrError::code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_get_hwdrs_prefix_and_keep_their_usage_lines() {
        let clap = "error: unexpected argument '--bogus' found\n\nUsage: hwdr list [OPTIONS]\n";
        assert_eq!(
            usage_text(clap),
            "hwdr: error: unexpected argument '--bogus' found\n\nUsage: hwdr list [OPTIONS]\n"
        );
        assert_eq!(usage_text("Disaster recovery\n"), "Disaster recovery\n");
    }
}
