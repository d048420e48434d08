//! Restore state: per step and per part (a node, or a RonDB data node), its
//! status, times, error and the last lines of output. Written atomically after
//! every change to `<[restore] state_dir>/restore/<backup id>.json`, so a
//! restore can be resumed and `hwdr restore <id> --status` can show it
//! (with the running step's per-node progress, `progress.rs`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::progress::StepProgress;
use crate::backup_id::BackupId;
use crate::fsutil::{self, mkdir};

/// Where a step or part stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Running,
    Done,
    Failed,
    /// Left out by `--from` or `--only`.
    Skipped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        })
    }
}

/// One part of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartState {
    pub name: String,
    pub node: String,
    pub status: Status,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub output_tail: Vec<String>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    pub name: String,
    pub status: Status,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub parts: Vec<PartState>,
}

/// A restore of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreState {
    pub backup_id: BackupId,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub steps: Vec<StepState>,
}

impl RestoreState {
    /// The state file of backup `id`.
    pub fn path(state_dir: &Path, id: BackupId) -> PathBuf {
        state_dir.join("restore").join(format!("{id}.json"))
    }

    /// Reads the state, if there is one.
    pub fn load(path: &Path) -> Result<Option<RestoreState>> {
        crate::fsutil::read_json(path)
    }

    /// Writes the state atomically.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.updated_at = Utc::now();
        mkdir(path.parent().unwrap_or(Path::new("/")), 0o750)?;
        let mut body = serde_json::to_vec_pretty(self)?;
        body.push(b'\n');
        fsutil::write_atomic(path, &body, 0o640)
    }

    /// The step named `name`.
    pub fn step_mut(&mut self, name: &str) -> Option<&mut StepState> {
        self.steps.iter_mut().find(|s| s.name == name)
    }

    /// A human summary, as `--status` prints it: with `progress` (of the
    /// step that runs), a line per node under that step.
    pub fn render(&self, progress: Option<&StepProgress>) -> String {
        let mut out = format!(
            "restore of backup {} (started {}, updated {})\n",
            self.backup_id,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.updated_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let time = |t: Option<DateTime<Utc>>| {
            t.map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into())
        };
        for s in &self.steps {
            out.push_str(&format!(
                "{:<14} {:<8} {} - {}\n",
                s.name,
                s.status.to_string(),
                time(s.started_at),
                time(s.finished_at)
            ));
            for p in &s.parts {
                out.push_str(&format!("    {:<22} on {:<10} {}\n", p.name, p.node, p.status));
                if let Some(e) = &p.error {
                    out.push_str(&format!("        error: {e}\n"));
                }
                if p.status == Status::Failed {
                    for line in &p.output_tail {
                        out.push_str(&format!("        | {line}\n"));
                    }
                }
            }
            if let Some(p) = progress.filter(|p| p.step == s.name && s.status == Status::Running) {
                out.push_str(&format!("    progress at {}:\n", p.updated_at.format("%H:%M:%S UTC")));
                for line in p.lines() {
                    out.push_str(&format!("      {line}\n"));
                }
            }
            if let Some(e) = &s.error {
                out.push_str(&format!("    error: {e}\n"));
            }
        }
        out
    }
}
