//! hwdr's command line ([`Cli`]) and one module per subcommand.

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

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::backup_id::BackupId;
use crate::config::Config;
use crate::fleet::{Fleet, Leadership};
use crate::repo::Repository;

// The one definition of the command line: `main.rs` parses it, and the
// dev-only generator docgen/ renders the shell completions and man pages
// from it, so they cannot drift from `--help`.

/// Disaster recovery for Hopsworks clusters: consistent, verified backups of
/// RonDB and HopsFS, and restores that follow the runbook.
#[derive(Debug, Parser)]
#[command(name = "hwdr", version, about)]
pub struct Cli {
    /// Main configuration file; drop-ins are read from hwdr.d/*.toml beside it.
    #[arg(long, global = true, value_name = "PATH", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Show the log on a terminal too (`-vv`: and debug lines).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, each run by its module in `cli/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a backup of the whole cluster into the repository.
    Backup(backup::Args),
    /// List the backups in the repository, newest first.
    List(list::Args),
    /// Restore the cluster from a backup, step by step (resumable).
    Restore(restore::Args),
    /// Check that a backup is whole: files, checksums, blocks.
    Verify(verify::Args),
    /// Remove backups no retention rule keeps, and blocks no backup names.
    Prune(prune::Args),
    /// Restore drill: a backup's RonDB part into a spare cluster, every block re-read.
    Drill(drill::Args),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(config::Command),
    /// Set up the repository.
    #[command(subcommand)]
    Repo(repo::Command),
    /// Manage the keys of an encrypted repository.
    #[command(subcommand)]
    Key(key::Command),
    /// A cluster CA and node certificates for mutual TLS, for clusters
    /// without Hopsworks' own PKI.
    #[command(subcommand)]
    Tls(tls::Command),
    /// Remove a stale repository lock left by a process that died.
    Unlock(unlock::Args),
    /// Run the node agent (the hwdr-agent service).
    Agent,
    /// Log that a unit failed, with its own MESSAGE_ID (the OnFailure= hook
    /// of hwdr's units: hwdr-failure@.service).
    #[command(hide = true)]
    OnFailure {
        /// The unit that failed.
        unit: String,
    },
}

/// Which backup a command works on, and whether only the leader works
/// (`hwdr verify`, `hwdr drill`: their timers fire on every node).
#[derive(Debug, clap::Args)]
pub struct Target {
    #[command(flatten)]
    which: Which,
    /// Exit with 7 ("not the leader") unless this node leads.
    #[arg(long)]
    leader_only: bool,
}

/// The backup asked for: an id or `--latest`, exactly one (so the usage
/// line of a command missing both names both: `<ID|--latest>`).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Which {
    /// The backup (yymmddHHMM).
    id: Option<BackupId>,
    /// The newest complete backup.
    #[arg(long)]
    latest: bool,
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
        let id = match self.which.id {
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
