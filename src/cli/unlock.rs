//! `hwdr unlock`: remove a stale repository lock, and cancel the agents' jobs
//! that were bound to it (their leader is gone; left running they would
//! answer the next backup or restore with "busy").

use std::path::Path;

use anyhow::Result;

use crate::agent::api::JobState;
use crate::config::Config;
use crate::exit::Code;
use crate::fleet::{self, Fleet};
use crate::outln;
use crate::repo::lock::{self, LockInfo};

/// Options of `hwdr unlock`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the lock even if its holder may still run (another host's
    /// process cannot be checked from here; its lease can: one that ran out
    /// goes without --force). A holder whose lease is removed stops.
    #[arg(long)]
    force: bool,
}

/// Runs `hwdr unlock`.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let repo = super::open_repository(&config)?;
    let removed = lock::unlock(repo.backend(), args.force)?;
    for holder in &removed {
        outln!("removed the lock: {}", holder.describe());
    }
    if removed.is_empty() {
        outln!("the repository is not locked");
    }
    let current = repo.lock_holder().ok().flatten();
    cancel_orphans(&config, current.as_ref())?;
    Ok(Code::Success)
}

/// Cancels every running agent job bound to a lock other than `current`
/// (none: every bound job is an orphan), waiting for each to stop.
fn cancel_orphans(config: &Config, current: Option<&LockInfo>) -> Result<()> {
    if !fleet::needs_agents(config) {
        return Ok(());
    }
    let fleet = match Fleet::new(config.clone()) {
        Ok(fleet) => fleet,
        Err(e) => {
            outln!("warn: cannot ask the agents about their jobs: {e:#}");
            return Ok(());
        }
    };
    for node in &config.nodes {
        let jobs = match fleet.jobs(node) {
            Ok(jobs) => jobs,
            Err(e) => {
                outln!("warn: cannot ask node {} about its jobs: {e:#}", node.name);
                continue;
            }
        };
        let orphans = jobs
            .into_iter()
            .filter(|j| j.state == JobState::Running && j.lock.is_some() && j.lock.as_ref() != current);
        for job in orphans {
            let what = job.request.describe();
            match fleet.cancel_and_wait(node, &job.id) {
                Ok(s) if s.state == JobState::Running => outln!(
                    "cancelled job {} on {} ({what}); it is still stopping",
                    job.id,
                    node.name
                ),
                Ok(s) => outln!(
                    "cancelled job {} on {} ({what}): {}",
                    job.id,
                    node.name,
                    serde_json::to_value(s.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
                Err(e) => outln!("warn: cannot cancel job {} on {}: {e:#}", job.id, node.name),
            }
        }
    }
    Ok(())
}
