//! A node-local job: what the leader asks a node to do ([`JobRequest`]),
//! what it gives back ([`JobResult`]), and its progress and cancellation
//! ([`JobControl`]), shared by the function doing the work and whoever
//! watches it (the agent's API, or the leader in-process). The agent's API
//! carries these in its own wire types (`agent::api`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::backup::Step;
use crate::backup_id::BackupId;
use crate::config::{NodeName, Role};
use crate::hopsfs::node::{Listed, Uploaded};
use crate::hopsfs::restore::{Restored, StagedBlocks};
use crate::repo::manifest::FileEntry;

/// Counters a job updates and a flag it checks between files (and inside
/// long copies). Cheap to clone: clones share the same job.
#[derive(Debug, Default, Clone)]
pub struct JobControl {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    files: AtomicU64,
    bytes: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    cancel: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl JobControl {
    /// Records one finished file of `size` bytes.
    pub fn file_done(&self, size: u64) {
        self.inner.files.fetch_add(1, Ordering::Relaxed);
        self.inner.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Files and bytes done so far.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.inner.files.load(Ordering::Relaxed),
            self.inner.bytes.load(Ordering::Relaxed),
        )
    }

    /// Records that the job will do `files` more files (0: not known) of
    /// `bytes` more bytes (0: not known), as it learns of them.
    pub fn add_total(&self, files: u64, bytes: u64) {
        self.inner.total_files.fetch_add(files, Ordering::Relaxed);
        self.inner.total_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The totals of [`JobControl::add_total`], zeros where not known.
    pub fn total(&self) -> (u64, u64) {
        (
            self.inner.total_files.load(Ordering::Relaxed),
            self.inner.total_bytes.load(Ordering::Relaxed),
        )
    }

    /// Asks the job to stop at its next check.
    pub fn cancel(&self) {
        self.cancel_because("it was cancelled");
    }

    /// Asks the job to stop at its next check, saying why (the first reason
    /// given is the one kept).
    pub fn cancel_because(&self, reason: &str) {
        let mut kept = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
        kept.get_or_insert_with(|| reason.to_owned());
        self.inner.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether the job was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.load(Ordering::SeqCst)
    }

    /// Whether the job should stop: it was cancelled, or the process got
    /// SIGTERM/SIGINT.
    pub fn should_stop(&self) -> bool {
        self.is_cancelled() || crate::cancel::requested()
    }

    /// Fails if the job was asked to stop (or the process got SIGTERM in a
    /// one-shot command).
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            let reason = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
            bail!(
                "the job was stopped before it finished: {}",
                reason.as_deref().unwrap_or("it was cancelled")
            );
        }
        crate::cancel::check()
    }

    /// Sleeps for `duration`, waking early (with an error) when the job is
    /// asked to stop.
    pub fn sleep(&self, duration: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + duration;
        loop {
            self.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// A node-local job the leader asks for. The node named must be the one
/// that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRequest {
    /// Copy this node's RonDB parts of a backup into the repository.
    CollectRondbParts { node: NodeName, backup_id: BackupId },
    /// Remove old local `BACKUP-<id>` folders already in the repository.
    PruneLocalRondb { node: NodeName },
    /// List this node's HopsFS blocks and VERSION files into the backup.
    HopsfsInventory { node: NodeName, backup_id: BackupId },
    /// Upload the blocks the leader assigned to this node in `round`.
    HopsfsUpload {
        node: NodeName,
        backup_id: BackupId,
        round: u32,
    },
    /// Restore this node's HopsFS storage from a complete backup: stage it
    /// (if the `stage` step did not), stop the data node's unit, move the
    /// staged VERSION files and blocks into place, start it again. With
    /// `clean`, block files the backup does not name are removed.
    HopsfsRestore {
        node: NodeName,
        backup_id: BackupId,
        clean: bool,
    },
    /// Stage what this node needs to restore a complete backup, checking
    /// it: its RonDB parts for `ndb_restore`, its HopsFS blocks next to its
    /// data folders. Nothing of the node's data changes.
    RestoreStage { node: NodeName, backup_id: BackupId },
    /// Remove this node's staged RonDB copies of a backup (after a restore).
    RestoreUnstage { node: NodeName, backup_id: BackupId },
    /// `ndb_restore -r` of one data node hosted here.
    RestoreRondbData {
        node: NodeName,
        backup_id: BackupId,
        data_node: u32,
    },
    /// Run this node's own `[opensearch]` or `[kafka]` command for the
    /// restore of `backup_id`: the request names the step, never a program.
    RestoreCommand {
        node: NodeName,
        backup_id: BackupId,
        step: CommandKind,
    },
}

impl JobRequest {
    /// The node the job is for.
    pub fn node(&self) -> &NodeName {
        match self {
            JobRequest::CollectRondbParts { node, .. }
            | JobRequest::PruneLocalRondb { node }
            | JobRequest::HopsfsInventory { node, .. }
            | JobRequest::HopsfsUpload { node, .. }
            | JobRequest::HopsfsRestore { node, .. }
            | JobRequest::RestoreStage { node, .. }
            | JobRequest::RestoreUnstage { node, .. }
            | JobRequest::RestoreRondbData { node, .. }
            | JobRequest::RestoreCommand { node, .. } => node,
        }
    }

    /// What a job that moves data counts ("files", "blocks"), for its
    /// progress; `None` for the others.
    pub fn progress_unit(&self) -> Option<&'static str> {
        match self {
            JobRequest::CollectRondbParts { .. } => Some("files"),
            JobRequest::HopsfsUpload { .. } | JobRequest::HopsfsRestore { .. } | JobRequest::RestoreStage { .. } => {
                Some("blocks")
            }
            _ => None,
        }
    }

    /// The backup the job works on, if any.
    pub fn backup_id(&self) -> Option<BackupId> {
        match self {
            JobRequest::CollectRondbParts { backup_id, .. }
            | JobRequest::HopsfsInventory { backup_id, .. }
            | JobRequest::HopsfsUpload { backup_id, .. }
            | JobRequest::HopsfsRestore { backup_id, .. }
            | JobRequest::RestoreStage { backup_id, .. }
            | JobRequest::RestoreUnstage { backup_id, .. }
            | JobRequest::RestoreRondbData { backup_id, .. }
            | JobRequest::RestoreCommand { backup_id, .. } => Some(*backup_id),
            JobRequest::PruneLocalRondb { .. } => None,
        }
    }

    /// The operation that must hold the repository lock, for this very
    /// backup, while the job runs: jobs that add to a backup run only during
    /// that backup, and jobs that change a node's data only during a restore
    /// of that backup. A token alone starts nothing destructive.
    pub fn needs_lock(&self) -> Option<(&'static str, BackupId)> {
        let id = self.backup_id()?;
        match self {
            JobRequest::CollectRondbParts { .. }
            | JobRequest::HopsfsInventory { .. }
            | JobRequest::HopsfsUpload { .. } => Some(("backup", id)),
            JobRequest::HopsfsRestore { .. }
            | JobRequest::RestoreStage { .. }
            | JobRequest::RestoreUnstage { .. }
            | JobRequest::RestoreRondbData { .. }
            | JobRequest::RestoreCommand { .. } => Some(("restore", id)),
            JobRequest::PruneLocalRondb { .. } => None,
        }
    }

    /// The backup the job adds to, which must be in progress.
    pub fn adds_to(&self) -> Option<BackupId> {
        match self {
            JobRequest::CollectRondbParts { .. }
            | JobRequest::HopsfsInventory { .. }
            | JobRequest::HopsfsUpload { .. } => self.backup_id(),
            _ => None,
        }
    }

    /// The step the job is, as logged in `HWDR_STEP` and the manifest: a
    /// backup's [`Step`], or a restore's step.
    pub fn step(&self) -> &'static str {
        match self {
            JobRequest::CollectRondbParts { .. } => Step::RondbParts.name(),
            JobRequest::PruneLocalRondb { .. } => Step::PruneLocal.name(),
            JobRequest::HopsfsInventory { .. } => Step::HopsfsList.name(),
            // Every round's job: the manifest's record names the round.
            JobRequest::HopsfsUpload { .. } => Step::HopsfsUpload.name(),
            JobRequest::HopsfsRestore { .. } => "hopsfs",
            JobRequest::RestoreStage { .. } => "stage",
            JobRequest::RestoreUnstage { .. } => "unstage",
            JobRequest::RestoreRondbData { .. } => "rondb-data",
            JobRequest::RestoreCommand { step, .. } => step.step(),
        }
    }

    /// The role a node needs to run the job.
    pub fn role(&self) -> Option<Role> {
        match self {
            JobRequest::CollectRondbParts { .. }
            | JobRequest::PruneLocalRondb { .. }
            | JobRequest::RestoreUnstage { .. }
            | JobRequest::RestoreRondbData { .. } => Some(Role::Rondb),
            JobRequest::HopsfsInventory { .. } | JobRequest::HopsfsUpload { .. } | JobRequest::HopsfsRestore { .. } => {
                Some(Role::Hopsfs)
            }
            // RonDB parts, HopsFS blocks, or both: what the node holds of the backup.
            JobRequest::RestoreStage { .. } | JobRequest::RestoreCommand { .. } => None,
        }
    }

    /// A short description for logs and `STATUS=`.
    pub fn describe(&self) -> String {
        match self {
            JobRequest::CollectRondbParts { backup_id, .. } => format!("collect RonDB parts for backup {backup_id}"),
            JobRequest::PruneLocalRondb { .. } => "prune local RonDB backups".into(),
            JobRequest::HopsfsInventory { backup_id, .. } => format!("list HopsFS blocks for backup {backup_id}"),
            JobRequest::HopsfsUpload { backup_id, round, .. } => {
                format!("upload HopsFS blocks for backup {backup_id} (round {round})")
            }
            JobRequest::HopsfsRestore { backup_id, .. } => format!("restore HopsFS blocks from backup {backup_id}"),
            JobRequest::RestoreStage { backup_id, .. } => {
                format!("stage the RonDB parts and HopsFS blocks of backup {backup_id}")
            }
            JobRequest::RestoreUnstage { backup_id, .. } => {
                format!("remove the staged RonDB parts of backup {backup_id}")
            }
            JobRequest::RestoreRondbData {
                backup_id, data_node, ..
            } => {
                format!("restore the RonDB data of node {data_node} from backup {backup_id}")
            }
            JobRequest::RestoreCommand { step, .. } => format!("run the {} command", step.step()),
        }
    }
}

/// One line of a plan (`--dry-run`, `--plan`): what a job does on its node,
/// as which user; an exact argv where it runs a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLine {
    /// The user it runs as, by name.
    pub user: String,
    /// The argv, or what hwdr does itself.
    pub action: String,
}

/// A plan as text (`--dry-run`, `--plan`), and the parts it could not show:
/// `node: why` for each node whose agent did not answer or could not
/// render its job.
#[derive(Debug, Clone, Default)]
pub struct RenderedPlan {
    /// The plan.
    pub text: String,
    /// `node: why` of each part not shown.
    pub missing: Vec<String>,
}

/// The restore steps that run a configured command on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// `[opensearch] reindex_command`.
    Opensearch,
    /// `[kafka] restore_command`.
    Kafka,
}

impl CommandKind {
    /// The restore step's name.
    pub fn step(self) -> &'static str {
        match self {
            CommandKind::Opensearch => "opensearch",
            CommandKind::Kafka => "kafka",
        }
    }
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Files stored, and the part count per data node id.
    RondbParts {
        files: Vec<FileEntry>,
        parts: BTreeMap<u32, u32>,
    },
    /// Local backup folders removed.
    Pruned { removed: Vec<String> },
    /// A HopsFS inventory was stored.
    HopsfsListed(Listed),
    /// HopsFS blocks were uploaded.
    HopsfsUploaded(Uploaded),
    /// A node's HopsFS storage was restored.
    HopsfsRestored(Restored),
    /// What a node staged for a restore: RonDB files for ndb_restore (paths
    /// in the staging folder), HopsFS blocks, and the files and blocks of
    /// the backup found missing or damaged (the restore is then refused).
    Staged {
        files: Vec<String>,
        blocks: Option<StagedBlocks>,
        damaged: Vec<String>,
    },
    /// A program ran; the last lines of its output.
    Ran { tail: Vec<String> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_job_says_why_and_wakes_from_its_sleep() {
        let control = JobControl::default();
        let watcher = control.clone();
        let t = std::thread::spawn(move || control.sleep(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(100));
        watcher.cancel_because("its lease lapsed");
        watcher.cancel_because("a later reason");
        let err = t.join().unwrap().unwrap_err().to_string();
        assert!(err.contains("its lease lapsed"), "{err}");
        assert!(watcher.is_cancelled());
    }
}
