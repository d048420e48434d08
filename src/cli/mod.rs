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

/// `Some(leader)` when another head node leads (or this node has no head
/// role): timers fire on every node, and only the leader does the work.
pub fn other_leader(config: &Config, rt: &tokio::runtime::Runtime) -> anyhow::Result<Option<String>> {
    let client = if crate::leader::needs_agents(config) {
        Some(crate::agent::client::AgentClient::new(config)?)
    } else {
        None
    };
    Ok(match crate::leader::elect(config, client.as_ref(), rt)? {
        crate::leader::Leadership::Leader => None,
        crate::leader::Leadership::Follower(leader) => Some(leader),
    })
}

/// A runtime for the few network calls of a one-shot command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Loads the configuration; errors select the "invalid config" exit code.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}
