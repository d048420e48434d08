//! `hwdr repo init`: make the configured, existing folder this cluster's
//! repository. Every other command requires its marker, so an unmounted
//! repository (an empty mount point) is never taken for an empty one.

use std::path::Path;

use anyhow::Result;

use crate::exit::Code;
use crate::outln;
use crate::repo::{Init, Repository, MARKER};

/// `hwdr repo ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Mark the configured repository folder (existing and empty, mounted) as
    /// this cluster's repository; once, before the first backup.
    Init,
}

/// Runs `hwdr repo init`.
pub fn run(config_path: &Path, Command::Init: Command) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let path = config.repository.display();
    match Repository::init(&config.repository, &config.cluster)? {
        Init::Created => outln!(
            "{path} is now the repository of cluster '{}' ({MARKER} written)",
            config.cluster
        ),
        Init::Existing => outln!(
            "{path} already is the repository of cluster '{}': nothing to do",
            config.cluster
        ),
    }
    Ok(Code::Success)
}
