//! `hwdr agent`: run the node service.

use std::path::Path;

use anyhow::Result;

use crate::exit::Code;

/// Runs the agent until SIGTERM.
pub fn run(config_path: &Path) -> Result<Code> {
    let config = super::load_config(config_path)?;
    crate::agent::run(config)?;
    Ok(Code::Success)
}
