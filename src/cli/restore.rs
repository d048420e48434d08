//! `hwdr restore`: turn a freshly deployed cluster back into the backed-up
//! one, following the runbook, resumable at any step.

use std::path::Path;

use anyhow::Result;
use clap::builder::PossibleValuesParser;
use tracing::info_span;

use crate::backup_id::BackupId;
use crate::exit::Code;
use crate::fleet::Fleet;
use crate::restore::progress::StepProgress;
use crate::restore::state::RestoreState;
use crate::restore::{Options, Restore, STEP_NAMES};
use crate::{out, outln};

/// Options of `hwdr restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup to restore (yymmddHHMM).
    id: BackupId,
    /// Print every step (or those --from/--only pick): its node(s), user,
    /// exact argv and what it waits for.
    #[arg(long, conflicts_with_all = ["status", "resume"])]
    plan: bool,
    /// Show the state of this backup's restore, step by step.
    #[arg(long, conflicts_with_all = ["resume", "from", "only"])]
    status: bool,
    /// Continue after the last finished step (and part).
    #[arg(long, conflicts_with_all = ["from", "only"])]
    resume: bool,
    /// Run from STEP on (for an operator who knows better).
    #[arg(long, value_name = "STEP", conflicts_with = "only", value_parser = steps())]
    from: Option<String>,
    /// Run only STEP.
    #[arg(long, value_name = "STEP", value_parser = steps())]
    only: Option<String>,
    /// Let the HopsFS step remove block files the backup does not name.
    #[arg(long)]
    clean_hopsfs: bool,
}

/// The restore's step names, for `--from`/`--only`: clap lists them in
/// `--help` and names them when a step is mistyped.
fn steps() -> PossibleValuesParser {
    PossibleValuesParser::new(STEP_NAMES)
}

/// Runs `hwdr restore`.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    if args.status {
        let path = RestoreState::path(&config.restore.state_dir, args.id);
        match RestoreState::load(&path)? {
            Some(state) => {
                let progress_file = StepProgress::path(&config.restore.state_dir, args.id);
                match StepProgress::load(&progress_file) {
                    Ok(progress) => out!("{}", state.render(progress.as_ref())),
                    Err(e) => {
                        out!("{}", state.render(None));
                        outln!("the progress of the running step cannot be shown: {e:#}");
                    }
                }
            }
            None => outln!(
                "no restore of backup {} has run here ({} does not exist)",
                args.id,
                path.display()
            ),
        }
        return Ok(Code::Success);
    }
    super::open_repository(&config)?;
    let fleet = Fleet::new(config)?;
    let config = fleet.config();
    let restore = Restore::new(&fleet, args.id)?;
    let opts = Options {
        resume: args.resume,
        from: args.from,
        only: args.only,
        clean_hopsfs: args.clean_hopsfs,
    };
    if args.plan {
        let plan = restore.render_plan(&opts)?;
        out!("{}", plan.text);
        return super::plan_complete(&plan);
    }
    crate::cancel::install()?;
    let _span = info_span!("restore", hwdr_backup_id = %args.id, hwdr_node = %config.this_node).entered();
    restore.preflight()?;
    let state = restore.run(&opts)?;
    if !super::steps_shown_live() {
        out!("{}", state.render(None));
    }
    outln!("restore of backup {} finished", args.id);
    Ok(Code::Success)
}
