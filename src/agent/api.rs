//! The agent's HTTP API (version 1): paths and JSON bodies, shared by the
//! server and the leader's client. These types are the wire contract and
//! nothing else: strings, numbers and flat records, none of hwdr's own
//! types. `agent::wire` converts: the server validates what comes in into
//! hwdr's types (ids and node names parsed as everywhere else), and the
//! leader's client converts the answers back. A change here is a change of
//! the wire.
//!
//! | method and path      | caller                 | body / answer                   |
//! |----------------------|------------------------|---------------------------------|
//! | `GET /v1/health`     | anyone                 | [`Health`] (details only to an authenticated caller) |
//! | `GET /metrics`       | a cluster certificate (or anyone, see `[agent] metrics_without_certificate`; anyone with `auth = token`) | Prometheus text |
//! | `POST /v1/jobs`      | head node              | [`JobRequest`] → 202 [`JobCreated`] |
//! | `GET /v1/jobs`       | head node              | `[JobStatus]`                   |
//! | `GET /v1/jobs/{id}`  | head node              | [`JobStatus`]; renews the job's lease |
//! | `POST /v1/jobs/{id}/cancel` | head node       | [`JobStatus`] once it ended     |
//! | `POST /v1/plan`      | head node              | [`JobRequest`] → [`JobPlan`]    |
//!
//! "Head node" is what `[agent] auth` asks for (agent/access.rs): with
//! `mtls`, a client certificate of the cluster's CA naming a node with the
//! head role; with `token`, the bearer token; with `mtls+token`, both.
//!
//! Errors are `{"error": "..."}` with 400 (bad request; plain HTTP to a TLS
//! agent), 401 (no certificate or token), 403 (a certificate that is not a
//! head node's), 404 (unknown job), 409 (busy; the backup is not being
//! taken; the repository lock does not name the backup or restore the job
//! belongs to), 503 (the agent is stopping).
//!
//! A job is bound to its leader by a lease: every status request renews it
//! (while it waits, and after its answer), and a job whose status nobody asked
//! for during `[backup] node_timeout` is cancelled (its leader died or lost
//! the network).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Answer of `GET /v1/health`. A caller that did not authenticate (no
/// certificate, or no token) learns only the node's name and `[agent]
/// auth`; the rest is for the cluster's own nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub node: String,
    /// The agent's `[agent] auth` (absent from agents older than mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<HealthDetail>,
}

/// What [`Health`] tells an authenticated caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthDetail {
    pub cluster: String,
    pub roles: BTreeSet<Role>,
    pub version: String,
    pub busy: bool,
    /// The running job, if any.
    pub job: Option<String>,
}

/// A node's role. The set in [`Health`] is sent in the order declared here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Head,
    Rondb,
    Hopsfs,
}

/// A node-local job the leader asks for, as sent: one variant per
/// [`crate::job::JobRequest`], whose docs say what each does. The agent
/// validates the node name (it must be its own) and the backup id first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobRequest {
    CollectRondbParts {
        node: String,
        backup_id: String,
    },
    PruneLocalRondb {
        node: String,
    },
    HopsfsInventory {
        node: String,
        backup_id: String,
    },
    HopsfsUpload {
        node: String,
        backup_id: String,
        round: u32,
    },
    HopsfsRestore {
        node: String,
        backup_id: String,
        clean: bool,
    },
    RestoreStage {
        node: String,
        backup_id: String,
    },
    RestoreUnstage {
        node: String,
        backup_id: String,
    },
    RestoreRondbData {
        node: String,
        backup_id: String,
        data_node: u32,
    },
    RestoreCommand {
        node: String,
        backup_id: String,
        step: CommandKind,
    },
}

/// The restore step whose configured command a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Opensearch,
    Kafka,
}

/// Answer of `POST /v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobCreated {
    pub job_id: String,
}

/// One line of the answer of `POST /v1/plan`: what the job would do on
/// the node, as which user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLine {
    pub user: String,
    pub action: String,
}

/// Answer of `POST /v1/plan`: the job as this node would run it, rendered
/// from its own config; nothing runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPlan {
    pub lines: Vec<PlanLine>,
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
    /// What the whole job will do, once the node knows (0: not known); not
    /// sent by agents that do not report it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total_files: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a finished job produced. Externally tagged: an internally tagged
/// enum cannot carry maps with integer keys through serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    /// Files stored, and the part count per data node id.
    RondbParts {
        files: Vec<StoredFile>,
        parts: BTreeMap<u32, u32>,
    },
    /// Local backup folders removed.
    Pruned {
        removed: Vec<String>,
    },
    HopsfsListed(Listed),
    HopsfsUploaded(Uploaded),
    HopsfsRestored(Restored),
    /// RonDB files staged for ndb_restore, HopsFS blocks, and what of the
    /// backup was found missing or damaged.
    Staged {
        files: Vec<String>,
        #[serde(default)]
        blocks: Option<StagedBlocks>,
        #[serde(default)]
        damaged: Vec<String>,
    },
    /// A program ran; the last lines of its output.
    Ran {
        tail: Vec<String>,
    },
}

/// A file stored in the repository: path in the backup folder, size, SHA-256,
/// and the bytes it takes in the store (not sent by agents older than it; a
/// leader that does not know it ignores it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<u64>,
}

/// What listing a node's HopsFS blocks stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub files: Vec<StoredFile>,
    pub blocks: u64,
    pub bytes: u64,
    pub skipped: Vec<String>,
}

/// A HopsFS replica that could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadReplica {
    pub pool: String,
    pub id: u64,
    pub genstamp: u64,
    pub error: String,
}

/// What a HopsFS upload stored; `stored_bytes`, the bytes the blocks take
/// in the store, is not sent by agents older than it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub blocks: u64,
    pub bytes: u64,
    pub bad: Vec<BadReplica>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
}

/// What a node's HopsFS restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub blocks_written: u64,
    pub bytes_written: u64,
    pub blocks_kept: u64,
    pub removed: Vec<String>,
}

/// What staging a node's HopsFS blocks found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedBlocks {
    pub blocks: u64,
    pub bytes: u64,
    pub kept: u64,
    pub damaged: Vec<String>,
    #[serde(default)]
    pub damaged_count: u64,
}

/// Who holds the repository lock a job is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub host: String,
    pub pid: u32,
    pub pid_start: Option<u64>,
    pub since: DateTime<Utc>,
    pub operation: String,
    pub backup_id: Option<String>,
}

/// Answer of `GET /v1/jobs/{id}` (and of its `cancel`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub request: JobRequest,
    /// The repository lock the job is bound to (its leader's), if any.
    #[serde(default)]
    pub lock: Option<LockHolder>,
    pub state: JobState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Progress,
    pub result: Option<JobResult>,
    pub error: Option<String>,
    /// Of a job that failed because a program did: its last output lines
    /// (`error` quotes them too). Sent only when there are some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tail: Vec<String>,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
