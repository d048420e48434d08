//! `hwdr prune`: apply `[retention]` and sweep unreferenced HopsFS blocks.

use std::path::Path;

use anyhow::Result;
use chrono::Utc;

use crate::config::Config;
use crate::exit::Code;
use crate::outln;
use crate::prune::{self, PruneReport};

/// Options of `hwdr prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Prunes the repository of `config` and records the metrics.
pub fn prune_now(config: &Config, dry_run: bool, when: prune::Sweep) -> Result<PruneReport> {
    let repo = if dry_run {
        super::open_repository(config)?
    } else {
        super::open_repository_for_metrics(config)?
    };
    let report = prune::prune(&repo, &config.retention, Utc::now(), dry_run, when);
    match report {
        Ok(report) if !dry_run => {
            crate::metrics::record_prune(config, report.freed_bytes)?;
            Ok(report)
        }
        Ok(report) => Ok(report),
        Err(e) => {
            // Whatever stopped it (a damaged manifest) shows in the metrics too.
            if !dry_run {
                if let Err(m) = crate::metrics::write_textfile(config) {
                    tracing::warn!("could not write the metrics: {m:#}");
                }
            }
            Err(e)
        }
    }
}

/// Runs `hwdr prune`.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    crate::cancel::install()?;
    let report = prune_now(&config, args.dry_run, prune::Sweep::Always)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Code::Success);
    }
    for d in &report.decisions {
        outln!(
            "{} {}  ({})",
            if d.keep { "keep  " } else { "remove" },
            d.id,
            d.reasons.join(", ")
        );
    }
    outln!(
        "{} {} backup(s), {} block(s), {} inventory piece(s) and {} leftover file(s), {} freed",
        if args.dry_run { "would remove" } else { "removed" },
        report.removed_backups.len(),
        report.removed_blocks,
        report.removed_pieces,
        report.removed_leftovers,
        crate::progress::text::size(report.freed_bytes)
    );
    Ok(Code::Success)
}
