//! What a person sees while a command runs, and what `systemctl status`
//! shows: the presenter of step lines, warnings and progress meters.
//!
//! [`Mode`] is decided once, at start-up ([`crate::logging::init`]):
//! - on a terminal (stderr is a TTY, not the journal) each step is one line
//!   as it ends (a spinner while it runs), long work an indicatif bar, and
//!   log lines appear only with `-v`: they and warnings are printed through
//!   [`println`], above the bars;
//! - under systemd the journal has the log, and a [`Meter`] sends `STATUS=`;
//! - elsewhere (a pipe, a file, cron) the log on stderr is the whole story.

mod meter;
pub mod text;

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use meter::{JobShare, Meter, Phase, Slot};

/// Where this process's output goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A person at a terminal: step lines and bars on stderr.
    Terminal,
    /// Under systemd: the journal, and `STATUS=` for progress.
    Journal,
    /// A pipe or a file: the log on stderr only.
    Plain,
}

static MODE: OnceLock<Mode> = OnceLock::new();
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Sets the mode (once; later calls change nothing).
pub fn set_mode(mode: Mode) {
    let _ = MODE.set(mode);
}

/// The mode set at start-up; [`Mode::Plain`] if none was.
pub fn mode() -> Mode {
    MODE.get().copied().unwrap_or(Mode::Plain)
}

/// Whether steps and progress are shown live on a terminal.
pub fn live() -> bool {
    mode() == Mode::Terminal
}

/// The terminal's bars, drawn on stderr.
fn bars() -> &'static MultiProgress {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Prints `line` on stderr; on a terminal above the bars, which are
/// drawn again after it.
pub fn println(line: &str) {
    let print = || {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    };
    if live() {
        bars().suspend(print);
    } else {
        print();
    }
}

/// Adds `bar` to the terminal's bars.
fn add(bar: ProgressBar) -> ProgressBar {
    bars().add(bar)
}

/// Takes `bar` off the terminal, leaving no line behind.
fn remove(bar: &ProgressBar) {
    bar.finish_and_clear();
    bars().remove(bar);
}

/// One step of a command as a person sees it: a spinner with its name while
/// it runs, then one line, `ok    users: 2 files, 48.2 KiB (0.8 s)` or
/// `FAIL  ndb-backup: why (3.2 s)`. Shown on a terminal only: the log has
/// the step's own started and done lines.
pub struct StepLine {
    name: String,
    started: Instant,
    spinner: Option<ProgressBar>,
}

/// Starts showing step `name`.
pub fn step(name: &str) -> StepLine {
    let spinner = live().then(|| {
        let bar = add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        bar.set_message(format!("{name} …"));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    StepLine {
        name: name.to_owned(),
        started: Instant::now(),
        spinner,
    }
}

impl StepLine {
    /// The step ended well; `what` is its summary (may be empty).
    pub fn done(mut self, what: &str) {
        self.end("ok", what);
    }

    /// The step failed: why.
    pub fn failed(mut self, why: &str) {
        self.end("FAIL", why);
    }

    /// The step did not run: why.
    pub fn skipped(mut self, why: &str) {
        self.end("skip", why);
    }

    fn end(&mut self, mark: &str, what: &str) {
        let Some(spinner) = self.spinner.take() else {
            return;
        };
        remove(&spinner);
        let took = text::duration(self.started.elapsed());
        let name = &self.name;
        match what {
            "" => println(&format!("{mark:<5} {name} ({took})")),
            _ => println(&format!("{mark:<5} {name}: {what} ({took})")),
        }
    }
}

impl Drop for StepLine {
    fn drop(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            remove(&spinner);
        }
    }
}
