//! `hwdr backup`: take a backup of the whole cluster, if this node leads.

use std::path::Path;

use anyhow::Result;
use chrono::Local;
use tracing::{info, info_span, warn};

use crate::agent::client::AgentClient;
use crate::backup_id::BackupId;
use crate::exit::Code;
use crate::leader::{self, BackupOptions, Leadership};
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
    let now = Local::now();
    let opts = BackupOptions {
        id: args.id,
        check_store: args.check_store,
    };
    let id = leader::choose_id(&opts, now)?;
    if args.dry_run {
        super::open_repository(&config)?;
        out!("{}", leader::render_plan(&config, id));
        outln!("dry run: nothing was changed");
        return Ok(Code::Success);
    }
    crate::cancel::install()?;
    let rt = super::runtime()?;
    let client = if leader::needs_agents(&config) {
        Some(AgentClient::new(&config)?)
    } else {
        None
    };
    if !args.force_leader {
        if let Leadership::Follower(leader) = leader::elect(&config, client.as_ref(), &rt)? {
            // Logged, not printed too: under systemd both would reach the journal.
            info!(hwdr_node = %config.this_node, "not the leader: {leader} leads the backup");
            return Ok(Code::NotLeader);
        }
    }
    super::open_repository_for_metrics(&config)?;
    let _span = info_span!("backup", hwdr_backup_id = %id, hwdr_node = %config.this_node).entered();
    let result = leader::run_backup(&config, id, &opts, now, client.as_ref(), &rt);
    if let Err(e) = crate::metrics::write_textfile(&config) {
        warn!("could not write the metrics: {e:#}");
    }
    let manifest = result?;
    // Retention runs after every successful backup; its failure does not
    // make the backup less good.
    match super::prune::prune_now(&config, false, crate::prune::Sweep::IfRemoved) {
        Ok(r) => info!(
            "prune: removed {} backup(s) and {} block(s), {} bytes freed",
            r.removed_backups.len(),
            r.removed_blocks,
            r.freed_bytes
        ),
        Err(e) => warn!("prune after backup {id} failed: {e:#}"),
    }
    outln!(
        "backup {id} complete: {} files, {} bytes, RonDB data nodes {:?}",
        manifest.files().count(),
        manifest.size(),
        manifest.rondb.data_node_ids
    );
    Ok(Code::Success)
}
