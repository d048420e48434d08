//! What a node-local job would run on this node, rendered from this node's
//! own config: the lines `hwdr backup --dry-run` and `hwdr restore --plan`
//! print for it. The leader renders its own node's jobs in-process and asks
//! every other node's agent (`POST /v1/plan`), so a plan shows each node's
//! paths, users and argv, not the leader's. Nothing runs and nothing is
//! looked up (users are named, as a dry run names them); a restore job reads
//! the backup's manifest, as the job itself would.

use std::collections::BTreeSet;

use anyhow::Result;

use super::jobs::{command_step_cmd, complete_manifest};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::hopsfs;
use crate::job::{CommandKind, JobRequest, PlanLine};
use crate::repo::Repository;
use crate::rondb::parts;
use crate::rondb::restore::{self as rr, NdbAction};
use crate::runner::RunAs;

/// The lines of `request` as this node would run it.
pub fn render(config: &Config, request: &JobRequest) -> Result<Vec<PlanLine>> {
    Ok(match request {
        JobRequest::CollectRondbParts { backup_id, .. } => vec![collect_parts(config, *backup_id)],
        JobRequest::PruneLocalRondb { .. } => vec![root(format!(
            "remove the local BACKUP-<id> folders in {} whose backup is complete in the repository, keeping the \
             newest {} ([rondb] keep_local)",
            config.rondb.backup_dir.join("BACKUP").display(),
            config.rondb.keep_local
        ))],
        JobRequest::HopsfsInventory { backup_id, .. } => vec![hdfs(
            config,
            format!(
                "list the finalized blocks and VERSION files of {} into {}/hopsfs/{}/",
                data_dirs(config),
                backup_dir(config, *backup_id),
                config.this_node
            ),
        )],
        JobRequest::HopsfsUpload { .. } => vec![hdfs(
            config,
            format!(
                "copy the assigned blocks into {}/blocks/, each checked against its .meta CRCs",
                Repository::of(config).location()
            ),
        )],
        JobRequest::RestoreStage { backup_id, .. } => stage(config, *backup_id)?,
        JobRequest::RestoreUnstage { backup_id, .. } => {
            let ndb = complete_manifest(config, *backup_id)?.rondb.ndb_backup_id;
            vec![root(format!(
                "remove {}",
                rr::staged_dir(&config.restore, ndb).display()
            ))]
        }
        JobRequest::RestoreRondbData {
            backup_id, data_node, ..
        } => {
            let manifest = complete_manifest(config, *backup_id)?;
            // A node that could not decrypt the backup says so here: the
            // restore's preflight asks before anything runs.
            let password = crate::rondb::password::for_restore(config, &manifest)?;
            let ndb = manifest.rondb.ndb_backup_id;
            let user = named(&config.rondb.user);
            let cmd = rr::ndb_restore_cmd(&config.rondb, &config.restore, user, ndb, *data_node, NdbAction::Data);
            vec![line(&config.rondb.user, rr::shown(cmd, password.is_some()))]
        }
        JobRequest::HopsfsRestore { .. } => vec![place_hopsfs(config)],
        JobRequest::RestoreCommand { step, .. } => {
            let command = match step {
                CommandKind::Opensearch => &config.opensearch,
                CommandKind::Kafka => &config.kafka,
            };
            let cmd = command_step_cmd(config, step.step(), command, named(&command.user))?;
            vec![line(&command.user, cmd.argv_display())]
        }
    })
}

fn collect_parts(config: &Config, id: BackupId) -> PlanLine {
    let ndb = id.ndb_id();
    root(format!(
        "collect the parts of data nodes {:?} from {} into {}/{}",
        config.this().rondb_node_ids,
        parts::node_backup_dir(&config.rondb.backup_dir, ndb).display(),
        backup_dir(config, id),
        parts::repo_rel_dir(ndb)
    ))
}

/// The stage step on this node: the parts of the data nodes it hosts, its
/// HopsFS blocks if the backup holds them.
fn stage(config: &Config, id: BackupId) -> Result<Vec<PlanLine>> {
    let manifest = complete_manifest(config, id)?;
    let mine: BTreeSet<u32> = config.this().rondb_node_ids.iter().copied().collect();
    let ids: Vec<u32> = manifest.rondb.data_node_ids.intersection(&mine).copied().collect();
    let mut lines = Vec::new();
    if !ids.is_empty() {
        lines.push(root(format!(
            "copy the parts of data nodes {ids:?} into {} (checked against the manifest)",
            rr::staged_dir(&config.restore, manifest.rondb.ndb_backup_id).display()
        )));
    }
    if hopsfs::restore::holds_this_node(&manifest, config) {
        lines.push(root(format!(
            "copy the node's VERSION files and blocks from {}/blocks into {} inside each of its data folders ({}) \
             (CRC-checked, owned by {}); the data node keeps running",
            Repository::of(config).location(),
            hopsfs::restore::STAGING,
            data_dirs(config),
            config.hopsfs.user
        )));
    }
    Ok(lines)
}

fn place_hopsfs(config: &Config) -> PlanLine {
    let unit = &config.hopsfs.datanode_unit;
    root(format!(
        "stop {}, move the staged VERSION files and blocks into place in {} (owned by {}:{}), start it again",
        if unit.is_empty() {
            "nothing (no datanode_unit)"
        } else {
            unit
        },
        data_dirs(config),
        config.hopsfs.user,
        config.hopsfs.group
    ))
}

fn backup_dir(config: &Config, id: BackupId) -> String {
    format!("{}/backups/{id}", Repository::of(config).location())
}

fn data_dirs(config: &Config) -> String {
    let dirs: Vec<String> = config
        .hopsfs
        .data_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    dirs.join(", ")
}

/// A user by name only: a plan looks no user up.
fn named(user: &str) -> RunAs {
    RunAs {
        name: user.into(),
        ..RunAs::root()
    }
}

fn line(user: &str, action: String) -> PlanLine {
    PlanLine {
        user: user.into(),
        action,
    }
}

fn root(action: String) -> PlanLine {
    line("root", action)
}

fn hdfs(config: &Config, action: String) -> PlanLine {
    line(&config.hopsfs.user, action)
}
