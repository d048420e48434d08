//! One module per subcommand.

pub mod agent;
pub mod backup;
pub mod config;
pub mod drill;
pub mod list;
pub mod on_failure;
pub mod prune;
pub mod restore;
pub mod unlock;
pub mod verify;

use std::path::Path;

use crate::config::Config;

/// Loads the configuration; errors select the "invalid config" exit code.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}
