//! `hwdr backup` as the leading head node runs it: the steps of [`STEPS`] in
//! order (lock, head steps, every node's share, checks, the manifest last),
//! then what follows a backup (local prune, metrics, retention). The dry run
//! ([`render_plan`]) prints the same list.
//!
//! The run keeps its state in one `Run`; each step is a method of it:
//! the RonDB steps in `rondb.rs`, the HopsFS ones in `hopsfs.rs`, the
//! completeness checks in `checks.rs`, what follows the manifest in
//! `after.rs`. How each node's steps ran is kept by `record.rs`.

mod after;
mod checks;
mod hopsfs;
mod id;
mod plan;
mod record;
mod rondb;
mod steps;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Local, Utc};
use tracing::{error, info, info_span};

pub use id::{dry_run_id, free_minute};
pub use plan::render_plan;
pub use steps::{Step, STEPS};

use crate::backup_id::{BackupId, NDB_RESTORE_MAX_ID};
use crate::config::{Config, NodeSpec, Role};
use crate::exit::HwdrError;
use crate::fleet::Fleet;
use crate::logging::{MSG_BACKUP_COMPLETED, MSG_BACKUP_FAILED, MSG_BACKUP_STARTED};
use crate::repo::backup::BackupWriter;
use crate::repo::lock::{LockInfo, RepoLock};
use crate::repo::manifest::{self, BackupStatus, Manifest, NodeRecord, RondbInfo};
use crate::repo::Repository;
use crate::rondb::password::BackupPassword;
use crate::runner::RunAs;
use record::{Failure, Recorder};

/// What `hwdr backup` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Use this id instead of the current minute.
    pub id: Option<BackupId>,
    /// Look for every block in the store instead of trusting the latest
    /// complete backup's list (`hwdr backup --check-store`).
    pub check_store: bool,
}

/// Runs backup `id` on the fleet this node leads, then what follows a
/// backup: the metrics, and after a complete one the retention. Returns the
/// manifest of a complete backup; a failed or partial backup still writes
/// its manifest and returns the error of the first failing step.
pub fn run(fleet: &Fleet, id: BackupId, opts: &BackupOptions, now: DateTime<Local>) -> Result<Manifest> {
    let config = fleet.config();
    let _span = info_span!("backup", hwdr_backup_id = %id, hwdr_node = %config.this_node).entered();
    let result = take(fleet, id, opts, now);
    after::metrics_and_retention(config, id, result)
}

/// What a complete backup holds, as the journal and the terminal say it:
/// `30 files and 1204 HopsFS blocks, 3.5 MiB` ([`Manifest::backup_size`]).
pub fn verdict(m: &Manifest) -> String {
    let files = m.files().count();
    let size = crate::progress::text::size(m.backup_size());
    match m.hopsfs.as_ref().map_or(0, |h| h.distinct_blocks) {
        0 => format!("{files} files, {size}"),
        blocks => format!("{files} files and {blocks} HopsFS blocks, {size}"),
    }
}

/// Runs every step of [`STEPS`]: the backup and its manifest.
fn take(fleet: &Fleet, id: BackupId, opts: &BackupOptions, now: DateTime<Local>) -> Result<Manifest> {
    let mut run = Run::begin(fleet, id, opts, now)?;
    for step in STEPS {
        run.step(step)?;
    }
    run.end()
}

/// A backup in progress: what its steps share and leave each other.
struct Run<'a> {
    fleet: &'a Fleet,
    config: &'a Config,
    id: BackupId,
    opts: &'a BackupOptions,
    /// `[rondb] user`, looked up.
    mysql: RunAs,
    /// `[rondb] backup_password_file`, read: RonDB encrypts its backup.
    rondb_password: Option<BackupPassword>,
    /// Held until the manifest is written (released before the local prune).
    lock: Option<RepoLock>,
    dir: BackupWriter,
    started_at: DateTime<Utc>,
    /// This node, the leader.
    this: &'a NodeSpec,
    rondb_nodes: Vec<&'a NodeSpec>,
    hopsfs_nodes: Vec<&'a NodeSpec>,
    /// Every other node with a share, in config order.
    remote: Vec<&'a NodeSpec>,
    steps: Recorder,
    rondb: RondbInfo,
    hopsfs: hopsfs::Part,
    /// From the `check` step on: every node's record, and the failures.
    records: Vec<NodeRecord>,
    failures: Vec<Failure>,
    status: BackupStatus,
    manifest: Option<Manifest>,
}

impl<'a> Run<'a> {
    /// Checks the RonDB user, opens the repository and does [`Step::Lock`]:
    /// takes the lock and creates the backup's folder.
    fn begin(fleet: &'a Fleet, id: BackupId, opts: &'a BackupOptions, now: DateTime<Local>) -> Result<Run<'a>> {
        let config = fleet.config();
        let mysql = config.rondb_user().map_err(|e| HwdrError::Config(format!("{e:#}")))?;
        let rondb_password = crate::rondb::password::for_backup(config)?;
        let repo = Repository::open(config)?;
        let info = LockInfo::for_this_process("backup", Some(id.to_string()), now.with_timezone(&Utc));
        let lock = repo.lock_as(info)?;
        let dir = repo.create_backup(id, &lock)?;
        let started_at = Utc::now();
        let ndb = id.ndb_id();
        if ndb > NDB_RESTORE_MAX_ID {
            bail!("RonDB backup id {ndb} of backup {id} is above {NDB_RESTORE_MAX_ID}: ndb_restore could not read it");
        }
        info!(
            message_id = MSG_BACKUP_STARTED,
            ndb_backup_id = ndb,
            "backup {id} started (RonDB backup id {ndb})"
        );
        let this = config.this();
        let with = |role: Role| config.nodes.iter().filter(move |n| n.has(role));
        let remote: Vec<&NodeSpec> = config
            .nodes
            .iter()
            .filter(|n| n.name != this.name && (n.has(Role::Rondb) || n.has(Role::Hopsfs)))
            .collect();
        Ok(Run {
            fleet,
            config,
            id,
            opts,
            mysql,
            lock: Some(lock),
            dir,
            started_at,
            this,
            rondb_nodes: with(Role::Rondb).collect(),
            hopsfs_nodes: with(Role::Hopsfs).collect(),
            steps: Recorder::new(this, &remote),
            remote,
            rondb: RondbInfo {
                ndb_backup_id: ndb,
                result: None,
                data_node_ids: Default::default(),
                parts: Default::default(),
                encrypted: rondb_password.is_some(),
            },
            rondb_password,
            hopsfs: hopsfs::Part::default(),
            records: Vec::new(),
            failures: Vec::new(),
            status: BackupStatus::Failed,
            manifest: None,
        })
    }

    /// Runs `step`; a failing step is recorded (and stops the steps after
    /// it), only a manifest that cannot be written fails here.
    fn step(&mut self, step: Step) -> Result<()> {
        match step {
            // Taken by `begin`: no step runs without it.
            Step::Lock => {}
            Step::Agents => self.check_agents(),
            Step::Config => self.copy_config(),
            Step::Users => self.dump_users_and_schemas(),
            // Dumped side by side with the users.
            Step::Schemas => {}
            Step::NdbBackup => self.ndb_backup(),
            Step::RondbParts => self.collect_parts(),
            Step::Hopsfs => self.hopsfs_in_cloud(),
            Step::HopsfsList => self.hopsfs_list(),
            Step::HopsfsPlan => self.hopsfs_plan(),
            Step::HopsfsUpload => self.hopsfs_upload(),
            // Between the upload rounds, in `hopsfs_upload`.
            Step::HopsfsRetry => {}
            Step::Check => self.check(),
            Step::Manifest => self.write_manifest()?,
            Step::PruneLocal => self.prune_local(),
        }
        Ok(())
    }

    /// [`Step::Agents`]: the agent of every other node with a share answers.
    fn check_agents(&mut self) {
        if self.remote.is_empty() {
            return;
        }
        let (fleet, remote) = (self.fleet, &self.remote);
        self.steps.head().run(Step::Agents.name(), |_| {
            let problems = fleet.check_agents(remote);
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            Ok(())
        });
    }

    /// [`Step::Config`]: copies `[config_backup] paths` into the backup.
    fn copy_config(&mut self) {
        let (paths, dir) = (&self.config.config_paths, &self.dir);
        self.steps.head().run(Step::Config.name(), |files| {
            files.extend(crate::config_backup::copy_paths(paths, dir)?);
            Ok(())
        });
    }

    /// [`Step::Manifest`]: writes the manifest, last, and logs how the
    /// backup ended.
    fn write_manifest(&mut self) -> Result<()> {
        let id = self.id;
        let first = self.failures.first();
        let manifest = Manifest {
            format: manifest::FORMAT,
            backup_id: id,
            cluster: self.config.cluster.clone(),
            status: self.status,
            hwdr_version: env!("CARGO_PKG_VERSION").into(),
            leader: self.this.name.to_string(),
            started_at: self.started_at,
            finished_at: Utc::now(),
            failed_step: first.map(|(s, _)| s.clone()),
            error: first.map(|(_, e)| format!("{e:#}")),
            rondb: self.rondb.clone(),
            hopsfs: std::mem::take(&mut self.hopsfs).into_info(),
            nodes: std::mem::take(&mut self.records),
            checksum: None,
        };
        self.dir.write_manifest(&manifest)?;
        match self.failures.first() {
            None => info!(
                message_id = MSG_BACKUP_COMPLETED,
                hwdr_size_bytes = manifest.backup_size(),
                files = manifest.files().count(),
                "backup {id} complete: {}",
                verdict(&manifest)
            ),
            Some((step, e)) => {
                let status = self.status;
                error!(message_id = MSG_BACKUP_FAILED, failed_step = %step, status = %status, "backup {id} {status} at {step}: {e:#}")
            }
        }
        self.manifest = Some(manifest);
        Ok(())
    }

    /// The manifest of a complete backup, or the error of the first failing
    /// step (a partial backup says so, for its exit code).
    fn end(self) -> Result<Manifest> {
        let (id, status) = (self.id, self.status);
        let manifest = self.manifest.ok_or_else(|| anyhow!("backup {id} wrote no manifest"))?;
        let Some((step, e)) = self.failures.into_iter().next() else {
            return Ok(manifest);
        };
        let err = e.context(format!("backup {id} {status} at step {step}"));
        if status == BackupStatus::Partial {
            return Err(err.context(HwdrError::Partial(format!(
                "backup {id} is partial: not every node delivered its part"
            ))));
        }
        Err(err)
    }
}
