//! One module per subcommand.

pub mod agent;
pub mod backup;
pub mod config;
pub mod drill;
pub mod key;
pub mod list;
pub mod on_failure;
pub(crate) mod out;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod tls;
pub mod unlock;
pub mod verify;

use std::path::Path;

use crate::backup_id::BackupId;
use crate::config::Config;
use crate::fleet::{Fleet, Leadership};
use crate::repo::Repository;

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
    /// The repository (opened with `open`) and the backup to work on, or
    /// `None` when `--leader-only` and another node leads (it prints who).
    pub fn resolve(
        &self,
        config: &Config,
        open: fn(&Config) -> anyhow::Result<Repository>,
    ) -> anyhow::Result<Option<(Repository, BackupId)>> {
        // Timers fire on every node, and only the leader does the work.
        if self.leader_only {
            if let Leadership::Follower(leader) = Fleet::new(config.clone())?.elect()? {
                crate::outln!("not the leader: {leader} leads");
                return Ok(None);
            }
        }
        let repo = open(config)?;
        let id = match self.id {
            Some(id) => id,
            None => crate::verify::latest_complete(&repo)?,
        };
        Ok(Some((repo, id)))
    }
}

/// The configured repository, checked: every command that reads or writes it
/// opens it here ([`Repository::open`]).
pub fn open_repository(config: &Config) -> anyhow::Result<Repository> {
    Repository::open(config)
}

/// Success when every node showed its part of a printed plan (`--dry-run`,
/// `--plan`); otherwise a failure naming each part missing.
pub fn plan_complete(plan: &crate::job::RenderedPlan) -> anyhow::Result<crate::exit::Code> {
    if plan.missing.is_empty() {
        return Ok(crate::exit::Code::Success);
    }
    anyhow::bail!(
        "the plan is incomplete: {} parts could not be shown (every node renders its own):\n  - {}",
        plan.missing.len(),
        plan.missing.join("\n  - ")
    )
}

/// [`open_repository`] for the commands that keep the metrics text file
/// (backup, verify, prune): a repository that does not open shows there as
/// `hwdr_repository_ok 0`, so the alert fires.
pub fn open_repository_for_metrics(config: &Config) -> anyhow::Result<Repository> {
    open_repository(config).inspect_err(|_| {
        if let Err(e) = crate::metrics::write_textfile(config) {
            tracing::warn!("could not write the metrics: {e:#}");
        }
    })
}

/// Whether a person watched the steps go by on this terminal (stdout too):
/// a step list printed after them would only repeat them.
pub fn steps_shown_live() -> bool {
    use std::io::IsTerminal;
    crate::progress::live() && std::io::stdout().is_terminal()
}

/// Loads the configuration; errors select the "invalid config" exit code.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}
