//! `hwdr repo init`: make the configured, existing folder this cluster's
//! repository. Every other command requires its marker, so an unmounted
//! repository (an empty mount point) is never taken for an empty one.

use std::path::Path;

use anyhow::Result;

use crate::exit::Code;
use crate::outln;
use crate::repo::{Init, Repository, MARKER};

/// `hwdr repo ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Mark the configured repository folder (existing and empty, mounted) as
    /// this cluster's repository; once, before the first backup.
    Init {
        /// Seal every object with a new random data key, wrapped by the
        /// configured [repository] key_file or passphrase_file.
        #[arg(long)]
        encrypt: bool,
    },
    /// Bring a repository written by hwdr 0.1 (format 1) to the current
    /// format: seal every manifest with its checksum. Once, after upgrading.
    Upgrade,
}

/// Runs `hwdr repo init` or `hwdr repo upgrade`.
pub fn run(config_path: &Path, command: Command) -> Result<Code> {
    let config = super::load_config(config_path)?;
    match command {
        Command::Init { encrypt } => init(&config, encrypt),
        Command::Upgrade => upgrade(&config),
    }
}

fn upgrade(config: &crate::config::Config) -> Result<Code> {
    let done = Repository::upgrade(config)?;
    for id in &done.sealed {
        outln!("backup {id}: manifest sealed with its checksum");
    }
    for (id, why) in &done.damaged {
        outln!("backup {id}: DAMAGED manifest.json: {why} (left as it is; it lists as damaged)");
    }
    outln!(
        "{} is at the current format: {} manifest(s) sealed, {} damaged",
        crate::repo::Repository::of(config).location(),
        done.sealed.len(),
        done.damaged.len()
    );
    Ok(Code::Success)
}

fn init(config: &crate::config::Config, encrypt: bool) -> Result<Code> {
    let path = crate::repo::Repository::of(config).location();
    match Repository::init(config, encrypt)? {
        Init::Created { create_only, key } => {
            outln!(
                "{path} is now the repository of cluster '{}' ({MARKER} written)",
                config.cluster
            );
            outln!("{}", create_only_line(create_only));
            if let (Some(id), Some(source)) = (key, &config.repository.key) {
                outln!(
                    "encrypted: a new data key, wrapped as key {id} by {}; BACK UP {0} AWAY FROM THE REPOSITORY: \
                     without it every backup is lost",
                    source.path().display()
                );
            }
        }
        Init::Existing => outln!(
            "{path} already is the repository of cluster '{}': nothing to do",
            config.cluster
        ),
        Init::Recorded { create_only } => {
            outln!(
                "{path} already is the repository of cluster '{}'; {MARKER} now records:",
                config.cluster
            );
            outln!("{}", create_only_line(create_only));
        }
    }
    Ok(Code::Success)
}

/// What the create-only probe found, and what the lock makes of it.
fn create_only_line(honoured: bool) -> &'static str {
    if honoured {
        "the store honours create-only writes: the lock takes its lease and, as a second guard, the object `lock`"
    } else {
        "the store does not honour create-only writes: the lock relies on its lease alone, which is safe without them"
    }
}
