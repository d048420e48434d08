//! `hwdr backup`: take a backup of the whole cluster, if this node leads.

use std::path::Path;

use anyhow::Result;
use chrono::Local;
use tracing::info;

use crate::backup::{self, BackupOptions};
use crate::backup_id::BackupId;
use crate::exit::Code;
use crate::fleet::{Fleet, Leadership};
use crate::{out, outln};

/// Options of `hwdr backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Backup id (yymmddHHMM, local time); default: the current minute.
    #[arg(long, value_name = "ID")]
    id: Option<BackupId>,
    /// Print every step with its node, user and exact argv; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Lead even if an earlier head node answers (for an operator who knows
    /// the first head node is gone for good).
    #[arg(long)]
    force_leader: bool,
    /// Look for every block in the repository's store, instead of trusting
    /// that the latest complete backup's blocks are there (after blocks were
    /// removed from the store by hand, e.g. damaged ones `hwdr verify` named).
    #[arg(long)]
    check_store: bool,
}

/// Runs `hwdr backup`.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let opts = BackupOptions {
        id: args.id,
        check_store: args.check_store,
    };
    if args.dry_run {
        let repo = super::open_repository(&config)?;
        let (id, note) = backup::dry_run_id(&repo, &opts, Local::now())?;
        let fleet = Fleet::new(config)?;
        let plan = backup::render_plan(fleet.config(), id, &|jobs| fleet.plan(jobs));
        if let Some(note) = note {
            outln!("{note}");
        }
        out!("{}", plan.text);
        outln!("dry run: nothing was changed");
        return super::plan_complete(&plan);
    }
    crate::cancel::install()?;
    let fleet = Fleet::new(config)?;
    let config = fleet.config();
    if !args.force_leader {
        if let Leadership::Follower(leader) = fleet.elect()? {
            // Logged, not printed too: under systemd both would reach the journal.
            info!(hwdr_node = %config.this_node, "not the leader: {leader} leads the backup");
            return Ok(Code::NotLeader);
        }
    }
    let repo = super::open_repository_for_metrics(config)?;
    let (id, now) = match opts.id {
        Some(id) => (id, Local::now()),
        None => backup::free_minute(&repo)?,
    };
    let manifest = backup::run(&fleet, id, &opts, now)?;
    // Under systemd stdout is the journal too, which has the log's line.
    if crate::progress::mode() != crate::progress::Mode::Journal {
        outln!(
            "backup {id} complete: {}, RonDB data nodes {:?}",
            backup::verdict(&manifest),
            manifest.rondb.data_node_ids
        );
    }
    Ok(Code::Success)
}
