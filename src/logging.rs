//! Logging: journald with hwdr's fields under systemd, readable text on
//! stderr elsewhere (on a terminal only with `-v`: see [`crate::progress`]).
//!
//! Spans carry the fields operators filter on: `hwdr_backup_id`, `hwdr_step`,
//! `hwdr_node` become `HWDR_BACKUP_ID`, `HWDR_STEP`, `HWDR_NODE` in the
//! journal, so `journalctl -u hwdr-backup HWDR_BACKUP_ID=2611231819` shows one
//! backup. Events that alerting matches on carry a fixed `message_id`.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::progress::{self, Mode};

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

/// Installs the global subscriber and decides the [`Mode`] of output.
/// `HWDR_LOG` (an `EnvFilter` directive) overrides the level, `info` by
/// default, `debug` with `verbose` ≥ 2. On a terminal the log shows only
/// with `verbose` ≥ 1 (`-v`); without it only warnings do, briefly.
pub fn init(verbose: u8) {
    let level = if verbose >= 2 { "debug" } else { "info" };
    let filter = || EnvFilter::try_from_env("HWDR_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            progress::set_mode(Mode::Journal);
            let layer = journald
                .with_field_prefix(None)
                .with_syslog_identifier("hwdr".into())
                .with_filter(filter());
            tracing_subscriber::registry().with(layer).init();
            return;
        }
    }
    let terminal = std::io::stderr().is_terminal();
    progress::set_mode(if terminal { Mode::Terminal } else { Mode::Plain });
    let text = fmt::layer()
        .with_writer(|| AboveBars(Vec::new()))
        .with_ansi(terminal)
        .with_target(false)
        .with_filter(filter());
    if terminal && verbose == 0 {
        tracing_subscriber::registry().with(Warnings).init();
    } else {
        tracing_subscriber::registry().with(text).init();
    }
}

/// One log line, printed through the presenter when it is complete (above
/// a terminal's bars; as is elsewhere).
struct AboveBars(Vec<u8>);

impl std::io::Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for AboveBars {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let line = text.trim_end_matches('\n');
        if !line.is_empty() {
            progress::println(line);
        }
    }
}

/// On a terminal without `-v`: hwdr's own warnings, one short line each
/// (`warning: …`), without span prefixes; not the programs' output lines,
/// which stay in the log.
struct Warnings;

impl<S: Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() != Level::WARN || meta.fields().field("stream").is_some() {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        progress::println(&format!("warning: {}", message.0));
    }
}

/// The `message` of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }
}
