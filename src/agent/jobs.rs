//! The node-local jobs behind the API: one dispatcher, called by the agent for
//! a remote leader and by the leader in-process for its own node (the
//! leader's side, running a job on a set of nodes, is [`crate::fleet`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};

use crate::backup_id::BackupId;
use crate::config::{CommandStep, Config};
use crate::hopsfs;
use crate::job::{CommandKind, JobControl, JobRequest, JobResult};
use crate::repo::manifest::Manifest;
use crate::repo::Repository;
use crate::rondb;
use crate::rondb::restore::NdbAction;
use crate::runner::{self, Cmd, Failure, RunAs};
use crate::systemd;

/// Runs `request` on this node.
pub fn execute(config: &Config, request: &JobRequest, control: &JobControl) -> Result<JobResult> {
    Ok(match request {
        JobRequest::CollectRondbParts { backup_id, .. } => {
            let collected = rondb::collect_parts(config, *backup_id, control)?;
            JobResult::RondbParts {
                files: collected.files,
                parts: collected.parts,
            }
        }
        JobRequest::PruneLocalRondb { .. } => JobResult::Pruned {
            removed: rondb::prune_local(config, control)?,
        },
        JobRequest::HopsfsInventory { backup_id, .. } => {
            JobResult::HopsfsListed(hopsfs::node::take_inventory(config, *backup_id, control)?)
        }
        JobRequest::HopsfsUpload { backup_id, round, .. } => {
            JobResult::HopsfsUploaded(hopsfs::node::upload(config, *backup_id, *round, control)?)
        }
        JobRequest::HopsfsRestore { backup_id, clean, .. } => {
            JobResult::HopsfsRestored(hopsfs::restore::place_node(config, *backup_id, *clean, control)?)
        }
        JobRequest::RestoreStage { backup_id, .. } => stage(config, *backup_id, control)?,
        JobRequest::RestoreUnstage { backup_id, .. } => {
            rondb::restore::unstage(&config.restore, backup_id.ndb_id())?;
            JobResult::Ran { tail: Vec::new() }
        }
        JobRequest::RestoreRondbData {
            backup_id, data_node, ..
        } => {
            let manifest = complete_manifest(config, *backup_id)?;
            let password = rondb::password::for_restore(config, &manifest)?;
            let user = config.rondb_user()?;
            let ndb = manifest.rondb.ndb_backup_id;
            let cmd =
                rondb::restore::ndb_restore_cmd(&config.rondb, &config.restore, user, ndb, *data_node, NdbAction::Data);
            let cmd = rondb::restore::decrypting(cmd, password.as_ref()).stopped_by(control);
            let key = config.origins.key("rondb", "backup_password_file");
            let outcome = rondb::restore::run_ndb_restore(cmd, ndb, &key)?;
            JobResult::Ran { tail: outcome.tail }
        }
        JobRequest::RestoreCommand { step, .. } => {
            let (command, user) = match step {
                CommandKind::Opensearch => (&config.opensearch, config.opensearch_user()?),
                CommandKind::Kafka => (&config.kafka, config.kafka_user()?),
            };
            JobResult::Ran {
                tail: run_command_step(config, step.step(), command, user, Some(control))?,
            }
        }
    })
}

/// Stages what this node needs to restore backup `id`: the parts of the
/// RonDB data nodes it hosts, and its HopsFS blocks if the backup holds them.
fn stage(config: &Config, id: BackupId, control: &JobControl) -> Result<JobResult> {
    let manifest = complete_manifest(config, id)?;
    let mine: BTreeSet<u32> = config.this().rondb_node_ids.iter().copied().collect();
    let ids: BTreeSet<u32> = manifest.rondb.data_node_ids.intersection(&mine).copied().collect();
    let parts = if ids.is_empty() {
        rondb::restore::StagedParts::default()
    } else {
        rondb::restore::stage_parts(config, &manifest, &ids, control)?
    };
    let blocks = if hopsfs::restore::holds_this_node(&manifest, config) {
        Some(hopsfs::restore::stage_node(config, id, control)?)
    } else {
        None
    };
    Ok(JobResult::Staged {
        files: parts.files,
        blocks,
        damaged: parts.damaged,
    })
}

/// Checks a request against this node's own config before it is accepted.
pub fn check_request(config: &Config, request: &JobRequest) -> Result<()> {
    match request {
        JobRequest::RestoreRondbData { data_node, .. } if !config.this().rondb_node_ids.contains(data_node) => {
            bail!("data node {data_node} is not hosted on node {}", config.this_node)
        }
        JobRequest::RestoreCommand { step, .. } => {
            let node = match step {
                CommandKind::Opensearch => &config.opensearch.node,
                CommandKind::Kafka => &config.kafka.node,
            };
            if node != &config.this_node {
                bail!(
                    "the {} command runs on node {node}, not on {}",
                    step.step(),
                    config.this_node
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The manifest of a backup that may be restored.
pub fn complete_manifest(config: &Config, id: BackupId) -> Result<Manifest> {
    Repository::of(config).complete_manifest(id)
}

/// Runs an `[opensearch]`/`[kafka]` command as its `user`; fails on a non-zero
/// exit or an `ERROR` line. Returns the last lines of its output.
pub fn run_command_step(
    config: &Config,
    step: &str,
    command: &CommandStep,
    user: RunAs,
    control: Option<&JobControl>,
) -> Result<Vec<String>> {
    let mut cmd = command_step_cmd(config, step, command, user)?;
    if let Some(control) = control {
        cmd = cmd.stopped_by(control);
    }
    let program = cmd.program.display().to_string();
    let outcome = runner::run(cmd)?;
    outcome.check(&program)?;
    let text = format!("{}\n{}", outcome.stdout, outcome.tail.join("\n"));
    if let Some(line) = text.lines().find(|l| l.trim_start().starts_with("ERROR")) {
        return Err(outcome.failed(&program, Failure::ErrorLine(line.to_owned())).into());
    }
    Ok(outcome.tail)
}

/// The command of an `[opensearch]`/`[kafka]` step, as `user`.
pub fn command_step_cmd(config: &Config, step: &str, command: &CommandStep, user: RunAs) -> Result<Cmd> {
    let (program, args) = command
        .argv
        .split_first()
        .ok_or_else(|| anyhow!("[{step}]: no program"))?;
    Ok(Cmd::new(program, user, config.restore.command_timeout).args(args))
}

/// Runs `request` on this node from async code: the work on the blocking
/// pool, and around a HopsFS restore the data node's unit stopped and started
/// again through systemd's D-Bus API (`[hopsfs] datanode_unit`). A restore
/// that fails leaves the unit stopped: a data node must not start on a
/// half-restored tree.
pub async fn execute_async(config: Arc<Config>, request: JobRequest, control: JobControl) -> Result<JobResult> {
    let unit = match &request {
        JobRequest::HopsfsRestore { backup_id, .. } => {
            // Staged (and so checked) while the data node still runs: a
            // damaged backup never stops it, and its downtime is only the
            // renames into place.
            let (c, id, ctl) = (config.clone(), *backup_id, control.clone());
            tokio::task::spawn_blocking(move || {
                let staged = hopsfs::restore::stage_node(&c, id, &ctl)?;
                hopsfs::restore::refuse_damage(id, &staged)
            })
            .await
            .unwrap_or_else(|e| Err(anyhow!("the stage panicked: {e}")))?;
            (!config.hopsfs.datanode_unit.is_empty()).then(|| config.hopsfs.datanode_unit.clone())
        }
        _ => None,
    };
    if let Some(unit) = &unit {
        systemd::stop_unit(unit).await?;
    }
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        execute(&config, &request, &control)
    })
    .await
    .unwrap_or_else(|e| Err(anyhow!("the job panicked: {e}")))?;
    if let Some(unit) = &unit {
        systemd::start_unit(unit).await?;
    }
    Ok(result)
}
