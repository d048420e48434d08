//! The node-local jobs behind the API: one dispatcher, called by the agent for
//! a remote leader and by the leader in-process for its own node.

use anyhow::Result;

use super::api::{JobRequest, JobResult};
use crate::config::Config;
use crate::hopsfs;
use crate::job::JobControl;
use crate::rondb;

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
    })
}
