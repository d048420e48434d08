//! `hwdr drill`: a restore drill of a backup.

use std::path::Path;

use anyhow::Result;
use tracing::info_span;

use crate::backup_id::BackupId;
use crate::exit::Code;
use crate::repo::Repository;
use crate::{drill, verify};

/// Options of `hwdr drill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup to drill (yymmddHHMM).
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    id: Option<BackupId>,
    /// Drill the newest complete backup.
    #[arg(long)]
    latest: bool,
    /// Exit with 7 ("not the leader") unless this node leads.
    #[arg(long)]
    leader_only: bool,
}

/// Runs `hwdr drill`: exit 0 when it passes, 1 with the failing step.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    if args.leader_only {
        if let Some(leader) = super::other_leader(&config, &super::runtime()?)? {
            println!("not the leader: {leader} runs the drill");
            return Ok(Code::NotLeader);
        }
    }
    let id = match args.id {
        Some(id) => id,
        None => verify::latest_complete(&Repository::new(&config.repository))?,
    };
    crate::cancel::install()?;
    let _span = info_span!("drill", hwdr_backup_id = %id, hwdr_node = %config.this_node).entered();
    let report = drill::drill(&config, id)?;
    for (step, what) in &report.steps {
        println!("ok    {step}: {what}");
    }
    match &report.failure {
        None => {
            println!("drill of backup {id}: passed");
            Ok(Code::Success)
        }
        Some((step, why)) => {
            println!("FAIL  {step}: {why}");
            anyhow::bail!("drill of backup {id} failed at step {step}: {why}")
        }
    }
}
