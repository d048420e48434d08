//! `hwdr backup`: take a backup of the whole cluster.

use std::path::Path;

use anyhow::Result;
use chrono::Local;
use tracing::info_span;

use crate::backup_id::BackupId;
use crate::exit::Code;
use crate::leader::{self, BackupOptions};

/// Options of `hwdr backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Backup id (yymmddHHMM, local time); default: the current minute.
    #[arg(long, value_name = "ID")]
    id: Option<BackupId>,
    /// Print every step with its node, user and exact argv; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `hwdr backup`.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let now = Local::now();
    let id = leader::choose_id(&BackupOptions { id: args.id }, now)?;
    if args.dry_run {
        print!("{}", leader::render_plan(&config, id));
        println!("dry run: nothing was changed");
        return Ok(Code::Success);
    }
    crate::cancel::install()?;
    let _span = info_span!("backup", hwdr_backup_id = %id, hwdr_node = %config.this_node).entered();
    let manifest = leader::run_backup(&config, id, now)?;
    println!(
        "backup {id} complete: {} files, {} bytes, RonDB data nodes {:?}",
        manifest.files().count(),
        manifest.size(),
        manifest.rondb.data_node_ids
    );
    Ok(Code::Success)
}
