//! Per-node progress of the restore step that runs jobs on the nodes
//! (`stage`, `rondb-data`, `hopsfs`), for `hwdr restore <id> --status` from
//! another terminal: while the step runs, the leader writes what each node's
//! job last reported (its share of the step's [`Meter`]) to
//! `<[restore] state_dir>/restore/<backup id>.progress.json`, at most once a
//! [`RECORD_TICK`] and only when something changed, and removes the file
//! when the step ends.
//!
//! The file is written to a temp name and renamed (a reader never sees half
//! of it), without `fsync`: it only informs, is rewritten every tick, and
//! the state file (written durably) stays the record of the restore. A file
//! a crash left behind shows only under a step the state still has running.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::backup_id::BackupId;
use crate::progress::text::{self, Snapshot};
use crate::progress::{JobShare, Meter, Phase};

/// How often the progress file is written, at most.
pub const RECORD_TICK: Duration = Duration::from_secs(1);

/// The progress of one running step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    pub step: String,
    /// What the nodes count ("blocks", "objects").
    pub unit: String,
    /// When this was written.
    pub updated_at: DateTime<Utc>,
    pub nodes: Vec<NodeProgress>,
}

/// What one part's job last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProgress {
    /// The part of the step (as in the state file).
    pub part: String,
    pub node: String,
    /// `waiting`, `running`, `done` or `failed`.
    pub state: String,
    pub items: u64,
    pub bytes: u64,
    /// Totals; 0 where not known (yet).
    pub total_items: u64,
    pub total_bytes: u64,
    pub started_at: Option<DateTime<Utc>>,
    /// When its numbers last changed.
    pub updated_at: DateTime<Utc>,
}

impl StepProgress {
    /// The progress file of the restore of backup `id`.
    pub fn path(state_dir: &Path, id: BackupId) -> PathBuf {
        state_dir.join("restore").join(format!("{id}.progress.json"))
    }

    /// Reads the progress file, if there is one.
    pub fn load(path: &Path) -> Result<Option<StepProgress>> {
        crate::fsutil::read_json(path)
    }

    /// Step `step`'s progress from its meter's job shares; `parts` names
    /// each job's part, in the order of the jobs.
    fn of(step: &str, parts: &[&str], meter: &Meter, now: DateTime<Utc>) -> StepProgress {
        let nodes = meter
            .jobs()
            .into_iter()
            .map(|share| NodeProgress::of(parts.get(share.index).copied(), share))
            .collect();
        StepProgress {
            step: step.to_owned(),
            unit: meter.unit().to_owned(),
            updated_at: now,
            nodes,
        }
    }

    /// Writes the file: a temp file renamed over it (see the module's text).
    fn save(&self, path: &Path) -> Result<()> {
        let (tmp, mut file) = crate::fsutil::create_temp(path, 0o640)?;
        let written = serde_json::to_writer_pretty(&mut file, self)
            .with_context(|| format!("writing {}", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// One line per part, as `--status` shows them under the step:
    /// `node1       hopsfs: 41% (3.3 of 8.1 GiB, 120 of 290 blocks, …)`.
    pub fn lines(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{:<10} {}: {}", n.node, n.what(&self.step), n.progress(&self.unit)))
            .collect()
    }
}

impl NodeProgress {
    fn of(part: Option<&str>, share: JobShare) -> NodeProgress {
        let c = share.counts;
        NodeProgress {
            part: part.unwrap_or(&share.node).to_owned(),
            state: match share.phase {
                Phase::Waiting => "waiting",
                Phase::Running => "running",
                Phase::Done => "done",
                Phase::Failed => "failed",
            }
            .into(),
            node: share.node,
            items: c.items,
            bytes: c.bytes,
            total_items: c.total_items,
            total_bytes: c.total_bytes,
            started_at: share.started_at,
            updated_at: share.changed_at,
        }
    }

    /// The step, and the part where it is not just the node
    /// (`rondb-data node 2`).
    fn what(&self, step: &str) -> String {
        if self.part == self.node || self.part == format!("{}/{step}", self.node) {
            step.to_owned()
        } else {
            format!("{step} {}", self.part)
        }
    }

    /// `41% (3.3 of 8.1 GiB, 120 of 290 blocks, 690 MiB/s, ETA 7 s)` while
    /// it runs (`running` for a job that counts nothing), `done (…)` after.
    fn progress(&self, unit: &str) -> String {
        let counts = Snapshot {
            items: self.items,
            bytes: self.bytes,
            total_items: self.total_items,
            total_bytes: self.total_bytes,
        };
        let counted = counts != Snapshot::default();
        let elapsed = self
            .started_at
            .and_then(|s| (self.updated_at - s).to_std().ok())
            .unwrap_or_default();
        match self.state.as_str() {
            "running" if counted => text::progress(&counts, unit, elapsed),
            "done" | "failed" if counted => {
                format!("{} ({}, {} {unit})", self.state, text::size(self.bytes), self.items)
            }
            state => state.to_owned(),
        }
    }
}

/// Runs `work` (step `step`'s jobs, whose parts are `parts`, measured by
/// `meter`) while a thread records their progress to `path`; the file is
/// removed when `work` returns. A file that cannot be written is a warning:
/// the restore goes on.
pub fn recorded<R>(path: &Path, step: &str, parts: &[&str], meter: &Meter, work: impl FnOnce() -> R) -> R {
    let (stop, stopped) = mpsc::channel::<()>();
    let result = std::thread::scope(|scope| {
        scope.spawn(move || record(path, step, parts, meter, &stopped));
        let result = work();
        drop(stop);
        result
    });
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            warn!("could not remove the progress file {}: {e}", path.display())
        }
        _ => {}
    }
    result
}

/// Writes the progress file every [`RECORD_TICK`] where it changed, until
/// `stopped`.
fn record(path: &Path, step: &str, parts: &[&str], meter: &Meter, stopped: &mpsc::Receiver<()>) {
    let mut last: Option<StepProgress> = None;
    let mut warned = false;
    loop {
        let now = StepProgress::of(step, parts, meter, Utc::now());
        if last.as_ref().is_none_or(|l| l.nodes != now.nodes) {
            match now.save(path) {
                Ok(()) => last = Some(now),
                Err(e) if !warned => {
                    warned = true;
                    warn!("could not record the progress of step {step}: {e:#}");
                }
                Err(_) => {}
            }
        }
        if stopped.recv_timeout(RECORD_TICK) != Err(RecvTimeoutError::Timeout) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(part: &str, state: &str, counts: (u64, u64, u64, u64)) -> NodeProgress {
        let started = "2026-11-23T20:00:00Z".parse().unwrap();
        NodeProgress {
            part: part.into(),
            node: part.split('/').next().unwrap().into(),
            state: state.into(),
            items: counts.0,
            bytes: counts.1,
            total_items: counts.2,
            total_bytes: counts.3,
            started_at: Some(started),
            updated_at: started + chrono::Duration::seconds(5),
        }
    }

    #[test]
    fn each_node_shows_its_share_or_its_end() {
        let progress = StepProgress {
            step: "hopsfs".into(),
            unit: "blocks".into(),
            updated_at: Utc::now(),
            nodes: vec![
                node("node1", "running", (120, 3_543_348_019, 290, 8_697_308_774)),
                node("node2", "done", (290, 8_697_308_774, 290, 8_697_308_774)),
                node("node3", "waiting", (0, 0, 0, 0)),
            ],
        };
        assert_eq!(
            progress.lines(),
            [
                "node1      hopsfs: 40% (3.3 of 8.1 GiB, 120 of 290 blocks, 676 MiB/s, ETA 8 s)",
                "node2      hopsfs: done (8.1 GiB, 290 blocks)",
                "node3      hopsfs: waiting",
            ]
        );
    }

    #[test]
    fn a_part_other_than_its_node_is_named() {
        let mut n = node("node 2", "running", (0, 0, 0, 0));
        n.node = "node1".into();
        assert_eq!(n.what("rondb-data"), "rondb-data node 2");
        assert_eq!(n.progress("files"), "running");
        assert_eq!(node("node1/stage", "running", (0, 0, 0, 0)).what("stage"), "stage");
    }

    #[test]
    fn the_file_is_written_while_the_work_runs_and_removed_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.progress.json");
        let meter = Meter::unshown("blocks");
        let slot = meter.slot(0, "node1");
        let seen = recorded(&path, "hopsfs", &["node1"], &meter, || {
            slot.started();
            slot.set((1, 100), (4, 400));
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let read = StepProgress::load(&path).unwrap();
                if let Some(p) = read.filter(|p| p.nodes.first().is_some_and(|n| n.items == 1)) {
                    return p;
                }
                assert!(std::time::Instant::now() < deadline, "never recorded");
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        assert_eq!(seen.step, "hopsfs");
        assert_eq!(seen.lines(), ["node1      hopsfs: 25% (100 of 400 B, 1 of 4 blocks)"]);
        assert!(!path.exists());
    }
}
