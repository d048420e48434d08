//! `hwdr`: disaster recovery for Hopsworks clusters. This file only parses
//! the command line and dispatches; each subcommand lives in `cli/`.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hwdr::exit::{self, Code};
use hwdr::{cli, config, logging};

/// Disaster recovery for Hopsworks clusters: consistent, verified backups of
/// RonDB and HopsFS, and restores that follow the runbook.
#[derive(Debug, Parser)]
#[command(name = "hwdr", version, about)]
struct Cli {
    /// Main configuration file; drop-ins are read from hwdr.d/*.toml beside it.
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Show the log on a terminal too (`-vv`: and debug lines).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Take a backup of the whole cluster into the repository.
    Backup(cli::backup::Args),
    /// List the backups in the repository, newest first.
    List(cli::list::Args),
    /// Restore the cluster from a backup, step by step (resumable).
    Restore(cli::restore::Args),
    /// Check that a backup is whole: files, checksums, blocks.
    Verify(cli::verify::Args),
    /// Remove backups no retention rule keeps, and blocks no backup names.
    Prune(cli::prune::Args),
    /// Restore drill: a backup's RonDB part into a spare cluster, every block re-read.
    Drill(cli::drill::Args),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(cli::config::Command),
    /// Set up the repository.
    #[command(subcommand)]
    Repo(cli::repo::Command),
    /// Manage the keys of an encrypted repository.
    #[command(subcommand)]
    Key(cli::key::Command),
    /// A cluster CA and node certificates for mutual TLS, for clusters
    /// without Hopsworks' own PKI.
    #[command(subcommand)]
    Tls(cli::tls::Command),
    /// Remove a stale repository lock left by a process that died.
    Unlock(cli::unlock::Args),
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Code::Usage.into()
            } else {
                Code::Success.into()
            };
        }
    };
    logging::init(cli.verbose);
    // Fault injection for the tests (a no-op unless built with `failpoints`).
    let _faults = hwdr::fault::setup();
    let result = match cli.command {
        Command::Backup(args) => cli::backup::run(&cli.config, args),
        Command::List(args) => cli::list::run(&cli.config, args),
        Command::Restore(args) => cli::restore::run(&cli.config, args),
        Command::Verify(args) => cli::verify::run(&cli.config, args),
        Command::Prune(args) => cli::prune::run(&cli.config, args),
        Command::Drill(args) => cli::drill::run(&cli.config, args),
        Command::Config(cmd) => cli::config::run(&cli.config, cmd),
        Command::Repo(cmd) => cli::repo::run(&cli.config, cmd),
        Command::Key(cmd) => cli::key::run(&cli.config, cmd),
        Command::Tls(cmd) => cli::tls::run(&cli.config, cmd),
        Command::Unlock(args) => cli::unlock::run(&cli.config, args),
        Command::Agent => cli::agent::run(&cli.config),
        Command::OnFailure { unit } => cli::on_failure::run(&unit),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("hwdr: error: {e:#}");
            exit::code_for(&e).into()
        }
    }
}
