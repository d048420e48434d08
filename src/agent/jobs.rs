//! The node-local jobs behind the API: one dispatcher, called by the agent for
//! a remote leader and by the leader in-process for its own node.

use std::sync::Arc;

use anyhow::{anyhow, Result};

use super::api::{JobRequest, JobResult};
use crate::config::Config;
use crate::hopsfs;
use crate::job::JobControl;
use crate::rondb;
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
            JobResult::HopsfsRestored(hopsfs::restore::restore_node(config, *backup_id, *clean, control)?)
        }
    })
}

/// Runs `request` on this node from async code: the work on the blocking
/// pool, and around a HopsFS restore the data node's unit stopped and started
/// again through systemd's D-Bus API (`[hopsfs] datanode_unit`). A restore
/// that fails leaves the unit stopped: a data node must not start on a
/// half-restored tree.
pub async fn execute_async(config: Arc<Config>, request: JobRequest, control: Arc<JobControl>) -> Result<JobResult> {
    let unit = match &request {
        JobRequest::HopsfsRestore { .. } if !config.hopsfs.datanode_unit.is_empty() => {
            Some(config.hopsfs.datanode_unit.clone())
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
