//! `hwdr verify`: check a backup file by file.

use std::path::Path;

use anyhow::Result;
use tracing::info_span;

use crate::exit::Code;
use crate::outln;
use crate::verify;

/// Options of `hwdr verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::Target,
    /// Also re-read every HopsFS block against its .meta CRCs.
    #[arg(long)]
    full: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `hwdr verify`; exit code 9 when anything is damaged. A backup that
/// does not exist (10) or is not complete (8) is no verdict: the last
/// verify's metric stays as it was.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let Some((repo, id)) = args.target.resolve(&config, super::open_repository_for_metrics)? else {
        return Ok(Code::NotLeader);
    };
    crate::cancel::install()?;
    let _span = info_span!("verify", hwdr_backup_id = %id, hwdr_node = %config.this_node).entered();
    let report = verify::verify(&repo, id, args.full, config.repository.upload_parallelism)?;
    if let Err(e) = crate::metrics::record_verify(&config, report.ok()) {
        tracing::warn!("could not write the metrics: {e:#}");
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for d in &report.damage {
            outln!("DAMAGED {d}");
        }
        outln!(
            "backup {id}: {} ({} files, {} blocks{}, {} read)",
            if report.ok() {
                "ok".to_owned()
            } else {
                format!("damaged, {} problem(s)", report.damage.len())
            },
            report.files_checked,
            report.blocks_checked,
            if args.full {
                " re-read against their CRCs"
            } else {
                " present"
            },
            crate::progress::text::size(report.bytes_read)
        );
        if report.damage.iter().any(|d| d.starts_with("blocks/")) {
            outln!(
                "blocks are damaged or missing in the store: move damaged ones out of {}/blocks, then \
                 `hwdr backup --check-store` takes every block the data nodes still hold again",
                crate::repo::Repository::of(&config).location()
            );
        }
    }
    Ok(if report.ok() { Code::Success } else { Code::Damaged })
}
