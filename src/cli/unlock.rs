//! `hwdr unlock`: remove a stale repository lock.

use std::path::Path;

use anyhow::Result;

use crate::exit::Code;
use crate::outln;
use crate::repo::lock;

/// Options of `hwdr unlock`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the lock even if its holder may still run (another host's lock
    /// cannot be checked from here).
    #[arg(long)]
    force: bool,
}

/// Runs `hwdr unlock`.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let repo = super::open_repository(&config)?;
    match lock::unlock(&repo.lock_path(), args.force)? {
        Some(holder) => outln!(
            "removed the lock of {} by pid {} on {} since {}",
            holder.operation,
            holder.pid,
            holder.host,
            holder.since
        ),
        None => outln!("the repository is not locked"),
    }
    Ok(Code::Success)
}
