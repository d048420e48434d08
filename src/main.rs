//! `hwdr`: disaster recovery for Hopsworks clusters. This file only parses
//! the command line (defined in `cli/mod.rs`) and dispatches; each
//! subcommand lives in `cli/`.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use clap::Parser;

use hwdr::cli::{self, Cli, Command};
use hwdr::exit::{self, Code};
use hwdr::logging;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code: Code = exit::report_usage(&e);
            return code.into();
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
        Err(e) => exit::report(&e).into(),
    }
}
