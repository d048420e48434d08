//! The agent's HTTP API (version 1): paths and JSON bodies, shared by the
//! server and the leader's client.
//!
//! | method and path      | auth   | body / answer                          |
//! |----------------------|--------|----------------------------------------|
//! | `GET /v1/health`     | none   | [`Health`]                             |
//! | `POST /v1/jobs`      | bearer | [`JobRequest`] → 202 [`JobCreated`]    |
//! | `GET /v1/jobs`       | bearer | `[JobStatus]`                          |
//! | `GET /v1/jobs/{id}`  | bearer | [`JobStatus`]; renews the job's lease  |
//! | `POST /v1/jobs/{id}/cancel` | bearer | [`JobStatus`] once it ended   |
//!
//! Errors are `{"error": "..."}` with 400 (bad request), 401 (token), 404
//! (unknown job), 409 (busy; the backup is not being taken; the repository
//! lock does not name the backup or restore the job belongs to), 503 (the
//! agent is stopping).
//!
//! A job is bound to its leader by a lease: every status request renews it
//! (while it waits, and after its answer), and a job whose status nobody asked
//! for during `[backup] node_timeout` is cancelled (its leader died or lost
//! the network).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backup_id::BackupId;
use crate::config::{NodeName, Role};
use crate::hopsfs::node::{Listed, Uploaded};
use crate::hopsfs::restore::{Restored, StagedBlocks};
use crate::repo::lock::LockInfo;
use crate::repo::manifest::FileEntry;

/// Answer of `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub node: String,
    pub cluster: String,
    pub roles: BTreeSet<Role>,
    pub version: String,
    pub busy: bool,
    /// The running job, if any.
    pub job: Option<String>,
}

/// A node-local job the leader asks for. The node named must be the agent's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
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

    /// The backup step the job is, as logged in `HWDR_STEP` and the manifest.
    pub fn step(&self) -> &'static str {
        match self {
            JobRequest::CollectRondbParts { .. } => "rondb-parts",
            JobRequest::PruneLocalRondb { .. } => "prune-local",
            JobRequest::HopsfsInventory { .. } => "hopsfs-list",
            JobRequest::HopsfsUpload { .. } => "hopsfs-upload",
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

/// The restore steps that run a configured command on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Answer of `POST /v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobCreated {
    pub job_id: String,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    /// The agent stopped before the job finished.
    Aborted,
}

/// How far a job got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub files: u64,
    pub bytes: u64,
}

/// What a finished job produced. Externally tagged: an internally tagged
/// enum cannot carry maps with integer keys through serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
        #[serde(default)]
        blocks: Option<StagedBlocks>,
        #[serde(default)]
        damaged: Vec<String>,
    },
    /// A program ran; the last lines of its output.
    Ran { tail: Vec<String> },
}

/// Answer of `GET /v1/jobs/{id}` (and of its `cancel`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub request: JobRequest,
    /// The repository lock the job is bound to (its leader's), if any.
    #[serde(default)]
    pub lock: Option<LockInfo>,
    pub state: JobState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Progress,
    pub result: Option<JobResult>,
    pub error: Option<String>,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
