//! Logging: journald with hwdr's fields under systemd, readable text on
//! stderr elsewhere.
//!
//! Spans carry the fields operators filter on: `hwdr_backup_id`, `hwdr_step`,
//! `hwdr_node` become `HWDR_BACKUP_ID`, `HWDR_STEP`, `HWDR_NODE` in the
//! journal, so `journalctl -u hwdr-backup HWDR_BACKUP_ID=2611231819` shows one
//! backup. Events that alerting matches on carry a fixed `message_id`.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// `MESSAGE_ID` of "backup started".
pub const MSG_BACKUP_STARTED: &str = "79ee74680f1a43a0bc2d51664419b262";
/// `MESSAGE_ID` of "backup completed".
pub const MSG_BACKUP_COMPLETED: &str = "13039cfd13dd4ff1a83ae38db9fcd47d";
/// `MESSAGE_ID` of "backup failed" (also partial).
pub const MSG_BACKUP_FAILED: &str = "7b2501e68c884f468ff45228b1f1201b";
/// `MESSAGE_ID` of "an hwdr unit failed", logged by the `OnFailure=` hook.
pub const MSG_UNIT_FAILED: &str = "e2fcd5d96e3640afb842ee01439b2b41";

/// Whether stderr is connected to the journal (systemd sets `JOURNAL_STREAM`
/// to the device and inode of the stream it gave us).
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino()),
        Err(_) => false,
    }
}

/// Installs the global subscriber. `HWDR_LOG` (an `EnvFilter` directive)
/// overrides the level, `info` by default.
pub fn init() {
    let filter = || EnvFilter::try_from_env("HWDR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            let layer = journald
                .with_field_prefix(None)
                .with_syslog_identifier("hwdr".into())
                .with_filter(filter());
            tracing_subscriber::registry().with(layer).init();
            return;
        }
    }
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter());
    tracing_subscriber::registry().with(layer).init();
}
