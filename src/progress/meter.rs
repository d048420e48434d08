//! A [`Meter`]: long work's real counters (bytes and objects done of their
//! totals), shown as a bar on a terminal, as `STATUS=` under systemd at most
//! once a second, and not at all elsewhere. A meter of jobs also keeps each
//! job's own share ([`JobShare`]), for the per-node progress a restore
//! records for `hwdr restore <id> --status`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use super::text::{self, Snapshot};
use super::Mode;
use crate::job::JobControl;

/// How often a terminal's bar is redrawn with new numbers.
const BAR_TICK: Duration = Duration::from_millis(200);
/// How often systemd is told: at most once a second.
const STATUS_TICK: Duration = Duration::from_secs(1);
/// A bar's resolution: its position is in thousandths.
const BAR_LEN: u64 = 1000;

/// The counters a meter shows; work adds to them from any thread.
#[derive(Debug)]
struct Counters {
    label: String,
    unit: String,
    started: Instant,
    items: AtomicU64,
    bytes: AtomicU64,
    total_items: AtomicU64,
    total_bytes: AtomicU64,
    /// Totals come from the jobs' own reports ([`Slot::set`]), not up front.
    totals_from_jobs: bool,
    /// A job whose counters are copied in at every tick (the agent's own).
    follow: Option<JobControl>,
    /// Each job's share, by its place in the list of jobs.
    jobs: Mutex<Vec<Option<JobShare>>>,
}

/// Where one job of a meter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its turn (`parallelism`).
    Waiting,
    Running,
    Done,
    Failed,
}

/// One job's share of a [`Meter`], as it last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobShare {
    /// Its place in the list of jobs.
    pub index: usize,
    /// The node that runs it.
    pub node: String,
    pub phase: Phase,
    /// Its counters: done and, where it knows them, totals.
    pub counts: Snapshot,
    /// When its turn came.
    pub started_at: Option<DateTime<Utc>>,
    /// When its counters or phase last changed.
    pub changed_at: DateTime<Utc>,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        if let Some(control) = &self.follow {
            let ((items, bytes), (total_items, total_bytes)) = (control.progress(), control.total());
            for (cell, value) in [
                (&self.items, items),
                (&self.bytes, bytes),
                (&self.total_items, total_items),
                (&self.total_bytes, total_bytes),
            ] {
                cell.store(value, Ordering::Relaxed);
            }
        }
        Snapshot {
            items: self.items.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            total_items: self.total_items.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
        }
    }

    fn status(&self) -> String {
        text::status(&self.label, &self.snapshot(), &self.unit, self.started.elapsed())
    }
}

/// Long work being shown: `label` (`uploading blocks`) and its counters,
/// reported by a thread of its own until the meter is dropped.
pub struct Meter {
    counters: Arc<Counters>,
    stop: Option<mpsc::Sender<()>>,
    reporter: Option<JoinHandle<()>>,
}

impl Meter {
    /// A meter whose totals are known up front: `total_items` objects
    /// (`unit`, e.g. "blocks") of `total_bytes`.
    pub fn with_totals(label: &str, unit: &str, total_items: u64, total_bytes: u64) -> Meter {
        Meter::start(label, unit, (total_items, total_bytes), false, None)
    }

    /// A meter whose totals are the sum of what its jobs report.
    pub fn of_jobs(label: &str, unit: &str) -> Meter {
        Meter::start(label, unit, (0, 0), true, None)
    }

    /// A meter showing the counters of one running job (an agent's).
    pub fn follow(label: &str, unit: &str, control: JobControl) -> Meter {
        Meter::start(label, unit, (0, 0), false, Some(control))
    }

    /// A meter of jobs shown nowhere: only its jobs' shares are kept
    /// ([`Meter::jobs`]), for work a person does not watch as a bar.
    pub fn unshown(unit: &str) -> Meter {
        Meter::show(unit, unit, (0, 0), true, None, Mode::Plain)
    }

    fn start(label: &str, unit: &str, totals: (u64, u64), from_jobs: bool, follow: Option<JobControl>) -> Meter {
        Meter::show(label, unit, totals, from_jobs, follow, super::mode())
    }

    fn show(
        label: &str,
        unit: &str,
        totals: (u64, u64),
        from_jobs: bool,
        follow: Option<JobControl>,
        mode: Mode,
    ) -> Meter {
        let counters = Arc::new(Counters {
            label: label.to_owned(),
            unit: unit.to_owned(),
            started: Instant::now(),
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total_items: AtomicU64::new(totals.0),
            total_bytes: AtomicU64::new(totals.1),
            totals_from_jobs: from_jobs,
            follow,
            jobs: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = mpsc::channel();
        let shown = counters.clone();
        let reporter = match mode {
            Mode::Terminal => Some(std::thread::spawn(move || show_bar(&shown, &stopped))),
            Mode::Journal => Some(std::thread::spawn(move || send_status(&shown, &stopped))),
            Mode::Plain => None,
        };
        Meter {
            counters,
            stop: Some(stop),
            reporter,
        }
    }

    /// Records `items` objects of `bytes` more done.
    pub fn add(&self, items: u64, bytes: u64) {
        self.counters.items.fetch_add(items, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A source of the counters of job `index` (of the list of jobs), on
    /// `node`, which it reports as running totals; waiting for its turn.
    pub fn slot(&self, index: usize, node: &str) -> Slot {
        let share = JobShare {
            index,
            node: node.to_owned(),
            phase: Phase::Waiting,
            counts: Snapshot::default(),
            started_at: None,
            changed_at: Utc::now(),
        };
        let mut jobs = lock(&self.counters.jobs);
        if jobs.len() <= index {
            jobs.resize(index + 1, None);
        }
        jobs[index] = Some(share);
        Slot {
            counters: self.counters.clone(),
            index,
            last: Mutex::new(Snapshot::default()),
        }
    }

    /// Each job's share, in the order of the jobs.
    pub fn jobs(&self) -> Vec<JobShare> {
        lock(&self.counters.jobs).iter().flatten().cloned().collect()
    }

    /// What the meter counts ("blocks").
    pub fn unit(&self) -> &str {
        &self.counters.unit
    }

    /// Where the work stands.
    #[cfg(test)]
    fn snapshot(&self) -> Snapshot {
        self.counters.snapshot()
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(reporter) = self.reporter.take() {
            let _ = reporter.join();
        }
    }
}

/// One job's share of a [`Meter`]: the job reports what it did so far (and
/// its totals), the slot adds what changed since its last report.
pub struct Slot {
    counters: Arc<Counters>,
    index: usize,
    last: Mutex<Snapshot>,
}

impl Slot {
    /// The job's running counters, and its totals if it knows them.
    pub fn set(&self, done: (u64, u64), total: (u64, u64)) {
        let mut last = lock(&self.last);
        let c = &self.counters;
        move_by(&c.items, last.items, done.0);
        move_by(&c.bytes, last.bytes, done.1);
        (last.items, last.bytes) = done;
        if c.totals_from_jobs {
            move_by(&c.total_items, last.total_items, total.0);
            move_by(&c.total_bytes, last.total_bytes, total.1);
            (last.total_items, last.total_bytes) = total;
        }
        let counts = Snapshot {
            items: done.0,
            bytes: done.1,
            total_items: total.0,
            total_bytes: total.1,
        };
        self.share(|share| {
            let changed = share.counts != counts;
            share.counts = counts;
            changed
        });
    }

    /// The job's turn came: it runs.
    pub fn started(&self) {
        self.share(|share| {
            share.phase = Phase::Running;
            share.started_at = Some(Utc::now());
            true
        });
    }

    /// The job ended, well or not.
    pub fn ended(&self, ok: bool) {
        self.share(|share| {
            share.phase = if ok { Phase::Done } else { Phase::Failed };
            true
        });
    }

    /// Changes the job's share with `change`, which says whether it changed.
    fn share(&self, change: impl FnOnce(&mut JobShare) -> bool) {
        let mut jobs = lock(&self.counters.jobs);
        if let Some(share) = jobs.get_mut(self.index).and_then(Option::as_mut) {
            if change(share) {
                share.changed_at = Utc::now();
            }
        }
    }
}

/// `mutex`'s value, also after a thread panicked holding it (the counters
/// stay usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Moves `cell` by the change from `was` to `now`.
fn move_by(cell: &AtomicU64, was: u64, now: u64) {
    if now >= was {
        cell.fetch_add(now - was, Ordering::Relaxed);
    } else {
        cell.fetch_sub(was - now, Ordering::Relaxed);
    }
}

/// The terminal's bar: redrawn until the meter is dropped, then removed.
fn show_bar(counters: &Counters, stopped: &mpsc::Receiver<()>) {
    let bar = super::add(ProgressBar::new(BAR_LEN));
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:25}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(counters.label.clone());
    loop {
        let s = counters.snapshot();
        bar.set_position(s.fraction().map_or(0, |f| (f * BAR_LEN as f64) as u64));
        bar.set_message(text::progress(&s, &counters.unit, counters.started.elapsed()));
        if stopped.recv_timeout(BAR_TICK) != Err(RecvTimeoutError::Timeout) {
            break;
        }
    }
    super::remove(&bar);
}

/// systemd's `STATUS=`, once a second until the meter is dropped, then once
/// more with the final numbers.
fn send_status(counters: &Counters, stopped: &mpsc::Receiver<()>) {
    loop {
        crate::systemd::status(&counters.status());
        if stopped.recv_timeout(STATUS_TICK) != Err(RecvTimeoutError::Timeout) {
            break;
        }
    }
    crate::systemd::status(&counters.status());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_add_what_each_job_reports() {
        let meter = Meter::of_jobs("staging", "blocks");
        let (a, b) = (meter.slot(0, "node1"), meter.slot(1, "node2"));
        a.set((1, 100), (4, 400));
        b.set((2, 50), (2, 50));
        a.set((3, 300), (4, 400));
        let s = meter.snapshot();
        assert_eq!((s.items, s.bytes, s.total_items, s.total_bytes), (5, 350, 6, 450));
    }

    #[test]
    fn known_totals_are_kept() {
        let meter = Meter::with_totals("uploading blocks", "blocks", 10, 1000);
        meter.slot(0, "node1").set((2, 200), (99, 9900));
        meter.add(1, 100);
        let s = meter.snapshot();
        assert_eq!((s.items, s.bytes, s.total_items, s.total_bytes), (3, 300, 10, 1000));
    }

    #[test]
    fn each_job_keeps_its_own_share_and_phase() {
        let meter = Meter::unshown("blocks");
        let (a, b) = (meter.slot(0, "node1"), meter.slot(1, "node2"));
        a.started();
        a.set((1, 100), (4, 400));
        b.started();
        b.set((2, 50), (2, 50));
        b.ended(true);
        let jobs = meter.jobs();
        assert_eq!(jobs.len(), 2);
        assert_eq!((jobs[0].node.as_str(), jobs[0].phase), ("node1", Phase::Running));
        assert_eq!((jobs[0].counts.items, jobs[0].counts.total_bytes), (1, 400));
        assert_eq!((jobs[1].node.as_str(), jobs[1].phase), ("node2", Phase::Done));
        assert!(jobs[1].started_at.is_some());
        let s = meter.snapshot();
        assert_eq!((s.items, s.bytes, s.total_items, s.total_bytes), (3, 150, 6, 450));
    }

    #[test]
    fn a_followed_job_shows_its_own_counters() {
        let control = JobControl::default();
        control.add_total(2, 200);
        control.file_done(150);
        let meter = Meter::follow("job", "files", control);
        let s = meter.snapshot();
        assert_eq!((s.items, s.bytes, s.total_items, s.total_bytes), (1, 150, 2, 200));
    }
}
