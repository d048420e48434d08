//! `hwdr drill`: a restore drill of a backup.

use std::path::Path;

use anyhow::Result;
use tracing::info_span;

use crate::drill;
use crate::exit::Code;
use crate::outln;

/// Options of `hwdr drill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::Target,
}

/// Runs `hwdr drill`: exit 0 when it passes, 1 with the failing step.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let Some((_repo, id)) = args.target.resolve(&config, super::open_repository)? else {
        return Ok(Code::NotLeader);
    };
    crate::cancel::install()?;
    let _span = info_span!("drill", hwdr_backup_id = %id, hwdr_node = %config.this_node).entered();
    let report = drill::drill(&config, id)?;
    let live = super::steps_shown_live();
    for (step, what) in report.steps.iter().filter(|_| !live) {
        outln!("ok    {step}: {what}");
    }
    match &report.failure {
        None => {
            outln!("drill of backup {id}: passed");
            Ok(Code::Success)
        }
        Some((step, why)) => {
            if !live {
                outln!("FAIL  {step}: {why}");
            }
            anyhow::bail!("drill of backup {id} failed at step {step}: {why}")
        }
    }
}
