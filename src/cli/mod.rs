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

use crate::backup_id::BackupId;
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

/// Which backup a command works on, and whether only the leader works
/// (`hwdr verify`, `hwdr drill`: their timers fire on every node).
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The backup (yymmddHHMM).
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    id: Option<BackupId>,
    /// The newest complete backup.
    #[arg(long)]
    latest: bool,
    /// Exit with 7 ("not the leader") unless this node leads.
    #[arg(long)]
    leader_only: bool,
}

impl Target {
    /// The backup to work on, or `None` when `--leader-only` and another
    /// node leads (it prints who).
    pub fn resolve(&self, config: &Config) -> anyhow::Result<Option<BackupId>> {
        if self.leader_only {
            if let Some(leader) = other_leader(config, &runtime()?)? {
                println!("not the leader: {leader} leads");
                return Ok(None);
            }
        }
        match self.id {
            Some(id) => Ok(Some(id)),
            None => crate::verify::latest_complete(&crate::repo::Repository::new(&config.repository)).map(Some),
        }
    }
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
